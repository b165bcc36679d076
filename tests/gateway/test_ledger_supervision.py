"""The ledger process under supervision (docs/operations.md): killed or failing, it is
noticed and reported within a second while trading goes on, and the ledger catches up at the
next start; a signal to the whole process group stops the server in bounded time; a
SIGKILLed server leaves no ledger process behind."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import os
import select
import signal
import sqlite3
import subprocess
import time

from engine.codes import Side
from gateway import publisher
from gateway.client import Client, ClientError
from gateway.journal import rebuild
from gateway.protocol import ExecKind
from gateway.server import ServerConfig

from .support import (TOKENS, alive, config, ledger_child, run_with_server, server_process,
                      until)
from .test_marketdata import _trade_a_while
from .test_recovery import _ledger_matches_engine


def _trades(server) -> int:
    return int(server.exchange.engine.book.globals()[1]) - 1


def _ledger_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cea.serve" and r.levelno >= logging.ERROR]


async def _cross(host, port, tag: str) -> None:
    """A buy and a sell that trade: both acknowledged, the trade reported."""
    async with Client(host, port, "A001", TOKENS["A001"]) as a, \
            Client(host, port, "A002", TOKENS["A002"]) as b:
        r = await a.place(f"b{tag}", "CEA", Side.BUY, 10, 6000)
        assert r.exec == ExecKind.ACCEPTED, r
        r = await b.place(f"s{tag}", "CEA", Side.SELL, 10, 6000)
        assert r.exec == ExecKind.ACCEPTED, r
        await until(lambda: any(x.trade_id for x in b.reports), what="the trade's report")


def _catches_up(tmp_path) -> None:
    """A restart feeds the ledger what it missed; a clean stop leaves it settled."""
    async def body(server, host, port):
        state = server.ledger_state()
        assert state["alive"] and state["failed"] is None, state
        await until(lambda: server.ledger_state()["behind"] == 0, timeout=30,
                    what="the ledger to catch up")

    run_with_server(config(tmp_path, ledger="sqlite"), body)
    data = tmp_path / "data"
    _ledger_matches_engine(data, rebuild(data).exchange)


def test_killed_ledger_is_reported_trading_goes_on_and_it_catches_up(tmp_path, caplog,
                                                                       monkeypatch):
    caplog.set_level(logging.INFO, logger="cea.serve")
    monkeypatch.setattr(publisher, "WARN_EVERY_S", 0.3)  # (10 s in service)

    async def body(server, host, port):
        pub = server.ledger
        await _trade_a_while(host, port, 20)
        await until(lambda: server.ledger_state()["behind"] == 0, timeout=10,
                    what="the ledger to settle")
        state = server.ledger_state()
        assert state["enabled"] and state["alive"] and state["failed"] is None, state
        settled_trades = _trades(server)
        assert settled_trades > 0

        t0 = time.monotonic()
        os.kill(pub.process.pid, signal.SIGKILL)
        await until(lambda: server.ledger_state()["failed"] is not None, timeout=1.0,
                    what="the server to notice the ledger's death")
        noticed = time.monotonic() - t0
        state = server.ledger_state()
        assert not state["alive"] and "died" in state["failed"], state
        errors = _ledger_errors(caplog)
        assert len(errors) == 1 and "ledger process died" in errors[0], errors
        assert "catches up" in errors[0]

        # trading goes on, settlement behind; nothing is kept for the dead process
        queued = len(pub.queue._buffer)
        await _cross(host, port, "after")
        await _trade_a_while(host, port, 10)
        assert _trades(server) > settled_trades
        await until(lambda: server.ledger_state()["behind"] > 0, what="settlement behind")
        assert pub.buffer == [] and len(pub.queue._buffer) == queued
        await asyncio.sleep(0.8)
        assert len(_ledger_errors(caplog)) == 1  # the error once; then warnings, spaced
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                    and "journal records behind" in r.getMessage()]
        assert warnings, caplog.text
        assert all(b.created - a.created >= 0.25 for a, b in zip(warnings, warnings[1:]))
        return noticed

    noticed = run_with_server(config(tmp_path, ledger="sqlite"), body)
    print(f"ledger death noticed after {noticed * 1000:.0f} ms")
    assert any("settlement resumes" in r.getMessage() for r in caplog.records)  # at stop
    _catches_up(tmp_path)


def test_failing_ledger_is_reported_and_catches_up(tmp_path, caplog):
    """The ledger cannot write (here: its database locked by another writer past its busy
    timeout, as a full disk would fail it): the child replies its error and ends."""
    caplog.set_level(logging.INFO, logger="cea.serve")

    async def body(server, host, port):
        await _trade_a_while(host, port, 10)
        await until(lambda: server.ledger_state()["behind"] == 0, timeout=10,
                    what="the ledger to settle")
        lock = sqlite3.connect(server.data_dir / "ledger.sqlite", isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            await _cross(host, port, "locked")  # the ledger's next transaction waits, fails
            await until(lambda: server.ledger_state()["failed"] is not None, timeout=15,
                        what="the ledger's failure")
        finally:
            lock.rollback()
            lock.close()
        state = server.ledger_state()
        assert "the ledger failed" in state["failed"] and "locked" in state["failed"], state
        assert state["behind"] > 0
        errors = _ledger_errors(caplog)
        assert len(errors) == 1 and "locked" in errors[0], errors
        await _cross(host, port, "after")  # trading goes on

    run_with_server(config(tmp_path, ledger="sqlite"), body)
    _catches_up(tmp_path)


def test_stop_is_bounded_whatever_the_ledger_does(tmp_path, caplog):
    """A ledger that never answers (here: stopped with SIGSTOP) is killed once ``stop``'s
    timeout (5 s) has passed; what it had not settled it settles at the next start."""
    caplog.set_level(logging.INFO, logger="cea.serve")
    stopping = {}

    async def body(server, host, port):
        await _trade_a_while(host, port, 10)
        os.kill(server.ledger.process.pid, signal.SIGSTOP)
        await _cross(host, port, "stuck")
        await asyncio.sleep(0.2)
        state = server.ledger_state()
        assert state["alive"] and state["failed"] is None and state["behind"] > 0, state
        stopping["at"] = time.monotonic()

    run_with_server(config(tmp_path, ledger="sqlite"), body)
    took = time.monotonic() - stopping["at"]
    print(f"stop with a stuck ledger took {took:.2f} s")
    assert 4.5 < took < 8, took
    assert any("did not settle within" in r.getMessage() and "resumes" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING), caplog.text
    _catches_up(tmp_path)


# ---------------------------------------------------------------- cea serve, as a process

async def _load(port: int, seconds: float, then=None) -> int:
    """Two sessions send crossing orders as fast as the server takes them for ``seconds``,
    then ``then()`` is called while they keep sending, until the server goes (or 2 s):
    the number of reports received."""
    a = Client("127.0.0.1", port, "A001", TOKENS["A001"])
    b = Client("127.0.0.1", port, "A002", TOKENS["A002"])
    await a.connect()
    await b.connect()
    a.keep_reports = b.keep_reports = False
    count = [0]
    a.on_execution = b.on_execution = lambda r: count.__setitem__(0, count[0] + 1)
    loop = asyncio.get_running_loop()
    end, stop_at, i = loop.time() + seconds, None, 0
    try:
        while stop_at is None or loop.time() < stop_at + 2:
            for _ in range(20):
                i += 1
                a.new_order(f"b{i}", "CEA", Side.BUY, 5, 6000 + i % 7)
                b.new_order(f"s{i}", "CEA", Side.SELL, 5, 6000 - i % 5)
            await asyncio.sleep(0.002)
            if stop_at is None and loop.time() >= end:
                stop_at = loop.time()
                if then is None:
                    break
                then()
    except (ClientError, ConnectionError, OSError):
        pass
    for c in (a, b):
        c.reconnect = False
        try:
            await asyncio.wait_for(c.close(), 2)
        except (ClientError, ConnectionError, OSError, asyncio.TimeoutError):
            pass
    return count[0]


def _serve(tmp_path):
    """``cea serve`` (demo accounts, the tests' tokens, ledger on) in its own process group."""
    tokens = tmp_path / "tokens.csv"
    with open(tokens, "w", newline="") as f:
        csv.writer(f).writerows([("account", "token"), *TOKENS.items()])
    return server_process(tmp_path / "data", "--start", "2024-03-04", "--rate-limit", "0",
                          "--tokens", str(tokens))


def test_sigterm_to_the_process_group_under_load_stops_within_10s(tmp_path):
    data = tmp_path / "data"
    with _serve(tmp_path) as (proc, port, _):
        ledger = ledger_child(proc.pid)
        sent = {}

        def sigterm():
            sent["at"] = time.monotonic()
            os.killpg(proc.pid, signal.SIGTERM)  # as `timeout`, systemd, a terminal send it

        reports = asyncio.run(_load(port, 2.0, then=sigterm))
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - sent["at"]
        print(f"SIGTERM to the process group: exited after {took:.2f} s ({reports} reports)")
        deadline = time.monotonic() + 2
        while alive(ledger) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(ledger)
        assert proc.returncode is not None and took < 10, (proc.returncode, took)
        err = proc.stderr.read()  # (its end: nothing of the server holds it now)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
    assert reports > 100
    # what the ledger had not settled (if the stop had to kill it) it settles at the next start
    run_with_server(ServerConfig(data_dir=data, port=0, ledger="sqlite", tokens=TOKENS),
                    lambda server, host, port: until(
                        lambda: server.ledger_state()["behind"] == 0, timeout=30))
    _ledger_matches_engine(data, rebuild(data).exchange)


def test_cea_serve_says_on_stderr_that_its_ledger_died_and_trades_on(tmp_path):
    with _serve(tmp_path) as (proc, port, _):
        ledger = ledger_child(proc.pid)
        fd = proc.stderr.fileno()  # read raw, as it comes (the text wrapper is never used)
        os.set_blocking(fd, False)
        os.kill(ledger, signal.SIGKILL)
        t0, err = time.monotonic(), b""
        while b"ledger process died" not in err and time.monotonic() - t0 < 1.0:
            select.select([fd], [], [], 0.05)
            with contextlib.suppress(BlockingIOError):
                err += os.read(fd, 1 << 16)
        assert b"ledger process died" in err, err
        assert b"catches up" in err and b"Traceback" not in err, err
        reports = asyncio.run(_load(port, 0.5))
        assert reports > 100 and proc.poll() is None  # still trading
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_sigkilled_server_leaves_no_ledger_process(tmp_path):
    with _serve(tmp_path) as (proc, port, _):
        ledger = ledger_child(proc.pid)
        assert alive(ledger)
        asyncio.run(_load(port, 0.5, then=lambda: proc.send_signal(
            signal.SIGKILL)))
        proc.wait(10)
        t0 = time.monotonic()
        while alive(ledger) and time.monotonic() - t0 < 2:
            time.sleep(0.01)
        assert not alive(ledger), f"the ledger process {ledger} outlived its server"
        print(f"the ledger process ended {time.monotonic() - t0:.3f} s after the server's "
              "SIGKILL was reaped")
