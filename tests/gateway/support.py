"""Helpers for the gateway tests: an in-process server on a free loopback port."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

from engine.codes import AccountType
from gateway.server import ExchangeServer, ServerConfig, parse_start
from ledger.session import OpeningBalance

TOKENS = {"A001": "t1", "A002": "t2", "A003": "t3", "A004": "t4", "OPS": "ops"}
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


def start_server_process(data_dir, *args):
    """``cea serve --data-dir DATA_DIR --port 0 ARGS`` in a subprocess, once it listens:
    (process, port, what it printed so far)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "cea", "serve", "--data-dir", str(data_dir),
                             "--port", "0", *args], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"listening on [\d.]+:(\d+)", line)
        if m:
            return proc, int(m.group(1)), "".join(lines)
    _, err = proc.communicate()
    raise AssertionError(f"server did not start: {''.join(lines)}{err}")
