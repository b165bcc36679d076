"""Helpers for the gateway tests: an in-process server on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from engine.codes import AccountType
from gateway.server import ExchangeServer, ServerConfig, parse_start
from ledger.opening import OpeningBalance

from ..procs import kill_group, popen, signal_group

TOKENS = {"A001": "A001-test-token-0001", "A002": "A002-test-token-0002",  # 16+ characters
          "A003": "A003-test-token-0003", "A004": "A004-test-token-0004",
          "OPS": "OPS-test-token-00000"}
START = parse_start("2024-03-04T10:00:00")  # a Monday, listed segment open
RICH = 10**12  # fen
ACCOUNTS = [
    OpeningBalance("A001", AccountType.COVERED_ENTITY, RICH, {"CEA": 10**7}),
    OpeningBalance("A002", AccountType.COVERED_ENTITY, RICH, {"CEA": 10**7}),
    OpeningBalance("A003", AccountType.INSTITUTION, RICH, {"CEA": 10**7}),
    OpeningBalance("A004", AccountType.INDIVIDUAL, 100_000, {"CEA": 0}),  # 1,000.00 CNY
]


def config(tmp_path, **kw) -> ServerConfig:
    kw.setdefault("ledger", None)
    kw.setdefault("journal_prealloc", 64 << 10)  # small: tests make many data directories
    return ServerConfig(data_dir=tmp_path / "data", port=0, start_us=START, tokens=TOKENS,
                        accounts=ACCOUNTS, **kw)


def run_with_server(cfg: ServerConfig, body):
    """Open the exchange, listen, run ``await body(server, host, port)``, stop; its result."""

    async def main():
        server = ExchangeServer(cfg)
        server.open()
        host, port = await server.start()
        try:
            return await body(server, host, port)
        finally:
            await server.stop()

    return asyncio.run(main())


async def until(predicate, timeout: float = 5.0, what: str = "condition"):
    """Wait until ``predicate()`` is true (polling); fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def start_server_process(data_dir, *args, timeout: float = 300.0):
    """``cea serve --data-dir DATA_DIR --port 0 ARGS`` in a subprocess in its own process
    group, once it listens (within ``timeout`` s: a cold start compiles the kernels):
    (process, port, what it printed so far). Whatever fails on the way, the group is killed;
    after that the caller owns it: stop it inside ``try``/``finally: kill_group(proc)``, or
    use ``server_process``."""
    root = Path(__file__).resolve().parents[2]
    proc = popen([sys.executable, "-m", "cea", "serve", "--data-dir", str(data_dir),
                  "--port", "0", *args], cwd=root, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    # a server that never says it listens: its group killed, the read below ends at EOF
    watchdog = threading.Timer(timeout, signal_group, (proc,))
    watchdog.daemon = True
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"listening on [\d.]+:(\d+)", line)
            if m:
                return proc, int(m.group(1)), "".join(lines)
        signal_group(proc)
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"server did not start: {''.join(lines)}{err}")
    except BaseException:
        kill_group(proc)
        raise
    finally:
        watchdog.cancel()


@contextmanager
def server_process(data_dir, *args, timeout: float = 300.0):
    """``with server_process(data_dir, ARGS) as (proc, port, out)``: ``start_server_process``,
    and the process group killed on the way out (after whatever stop the body did)."""
    proc, port, out = start_server_process(data_dir, *args, timeout=timeout)
    try:
        yield proc, port, out
    finally:
        kill_group(proc)


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``; [] once it is gone)."""
    kids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
        except OSError:
            pass
    return kids


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ledger_child(pid: int, timeout: float = 10.0) -> int:
    """The ledger process of the ``cea serve`` process ``pid`` (its multiprocessing child
    that is not the resource tracker)."""
    deadline = time.monotonic() + timeout
    while True:
        for kid in children(pid):
            cmd = cmdline(kid)
            if "multiprocessing" in cmd and "resource_tracker" not in cmd:
                return kid
        if time.monotonic() > deadline:
            raise AssertionError(f"no ledger process under {pid}: "
                                 f"{[(k, cmdline(k)) for k in children(pid)]}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead and not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
