"""The per-account report stream: every execution report numbered, kept, resent on logon.

A participant that logs off (or whose connection drops, or whose server is killed) gets
every report it missed on its next logon, in order, none twice; cancel-on-disconnect
reports go into the stream, never to another session as stray messages; an order's status
can be asked by its ``cl_ord_id``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from engine.codes import Reason, Side
from gateway import protocol as P
from gateway.client import Client
from gateway.reportlog import REPORTS, ReportLog

from ..procs import kill_group
from .support import TOKENS, config, run_with_server, start_server_process, until

X = P.ExecKind


def _numbers(reports) -> list[int]:
    return [r.report_seq for r in reports if r.report_seq]


async def _rest_and_leave(host, port, n: int, prefix: str = "b") -> tuple[int, list]:
    """A001 rests ``n`` buy orders of 10 t, stays resting after logging off; returns the
    last report number it saw and its reports."""
    c = Client(host, port, "A001", TOKENS["A001"], cancel_on_disconnect=False)
    await c.connect()
    for i in range(n):
        c.new_order(f"{prefix}{i}", "CEA", Side.BUY, 10, 6000)
    await until(lambda: len(c.reports) >= n, what="acceptances")
    await c.close()
    assert [r.exec for r in c.reports] == [X.ACCEPTED] * n
    return c.last_report_seq, list(c.reports)


async def _sell_into(host, port, n: int) -> None:
    """A002 sells ``n`` × 10 t at 60.00 (fills A001's resting bids while it is away)."""
    async with Client(host, port, "A002", TOKENS["A002"]) as s:
        for i in range(n):
            s.new_order(f"s{i}", "CEA", Side.SELL, 10, 6000)
        await until(lambda: sum(r.exec == X.FILL for r in s.reports) >= n, what="fills")


def test_fills_made_while_logged_off_arrive_on_logon(tmp_path):
    async def body(server, host, port):
        last, first_reports = await _rest_and_leave(host, port, 5)
        assert _numbers(first_reports) == [1, 2, 3, 4, 5] and last == 5
        await _sell_into(host, port, 3)
        # back: everything after 5, then live; nothing twice, nothing skipped
        async with Client(host, port, "A001", TOKENS["A001"], report_seq=last) as c:
            assert c.logon.report_seq == 8
            await until(lambda: len(c.reports) >= 3, what="the missed fills")
            assert [(r.exec, r.cl_ord_id, r.report_seq) for r in c.reports] == [
                (X.FILL, "b0", 6), (X.FILL, "b1", 7), (X.FILL, "b2", 8)]
            r = await c.place("b9", "CEA", Side.BUY, 10, 5990)
            assert (r.exec, r.report_seq) == (X.ACCEPTED, 9)
            assert c.report_gaps == c.report_duplicates == 0
        # leaving cancelled b3, b4 and b9 (cancel-on-disconnect): 10, 11, 12 of the stream;
        # a client that starts afresh without a number starts after them
        async with Client(host, port, "A001", TOKENS["A001"]) as c:
            assert c.last_report_seq == c.logon.report_seq == 12
            await asyncio.sleep(0.1)
            assert c.reports == []
        # and one that asks for everything gets the whole stream, in order
        async with Client(host, port, "A001", TOKENS["A001"], report_seq=0) as c:
            await until(lambda: len(c.reports) >= 12, what="the whole stream")
            assert _numbers(c.reports) == list(range(1, 13))
            assert [r.exec for r in c.reports[9:]] == [X.CANCELLED] * 3

    run_with_server(config(tmp_path), body)


def test_a_long_stream_is_resent_in_order_under_backpressure(tmp_path):
    """More than fits one read of the log or the session's output bound: sent as the peer
    reads, in order, while new reports keep coming."""
    n = 6_000

    async def body(server, host, port):
        c = Client(host, port, "A001", TOKENS["A001"], cancel_on_disconnect=False)
        await c.connect()
        c.keep_reports = False
        frames = P.order_frames(n)
        frames["cl_ord_id"] = [f"o{i}".encode() for i in range(n)]
        frames["side"], frames["qty"], frames["price"] = Side.BUY, 1, 5500
        c.send_frames(frames)
        await until(lambda: c.last_report_seq >= n, timeout=30, what="acceptances")
        await c.close()
        got = []
        async with Client(host, port, "A001", TOKENS["A001"], report_seq=0,
                          on_reports=lambda rows: got.extend(
                              rows["report_seq"].tolist())) as c:
            c.keep_reports = False
            c.new_order("late", "CEA", Side.BUY, 1, 5500)  # a live report during the resend
            await until(lambda: len(got) >= n + 1, timeout=30, what="the resend")
            assert got == list(range(1, n + 2))

    run_with_server(config(tmp_path, max_open_orders=0), body)


def test_fast_reconnect_gets_no_stray_answers(tmp_path):
    """The old session's MassCancel and cancel-on-disconnect are answered to no one; their
    CANCELLED reports are in the account's stream, numbered, and reach the new session
    (which resumes after what it saw) once each."""

    async def body(server, host, port):
        for attempt in range(30):
            old = Client(host, port, "A001", TOKENS["A001"])
            await old.connect()
            await old.place(f"r{attempt}", "CEA", Side.BUY, 10, 5500)
            seen = old.last_report_seq
            old.send(P.MassCancel("", 0))
            old.abort()  # gone before reading the answer
            new = None
            while new is None:  # the old session may not be gone yet
                try:
                    new = Client(host, port, "A001", TOKENS["A001"], report_seq=seen)
                    await new.connect()
                except Exception:  # noqa: BLE001 - "this account already has a session"
                    new = None
                    await asyncio.sleep(0.001)
            acks = []
            new._expect("MassCancel").add_done_callback(lambda f: acks.append(f))
            await until(lambda: any(r.exec == X.CANCELLED for r in new.reports),
                        what="the cancel report")
            await asyncio.sleep(0.02)
            assert not acks, "an AdminAck the new session never asked for"
            assert [(r.exec, r.cl_ord_id) for r in new.reports] == [(X.CANCELLED, f"r{attempt}")]
            assert new.reports[0].report_seq == seen + 1
            assert new.report_duplicates == new.report_gaps == 0
            await new.close()

    run_with_server(config(tmp_path), body)


def test_order_status_query(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as b, \
                Client(host, port, "A002", TOKENS["A002"]) as s:
            await b.place("open", "CEA", Side.BUY, 100, 6000)
            await b.place("gone", "CEA", Side.BUY, 100, 5900)
            await b.cancel_wait("gone")
            await s.place("s1", "CEA", Side.SELL, 40, 6000)
            await until(lambda: any(r.exec == X.PARTIAL_FILL for r in b.reports))
            await b.place("bad", "CEA", Side.BUY, 100, 1)  # outside the band
            await s.place("s2", "CEA", Side.SELL, 60, 6000)
            await until(lambda: any(r.exec == X.FILL for r in b.reports))
            full = await b.order_status("open")
            assert (full.status, full.qty, full.filled, full.open, full.side, full.instrument) \
                == ("FILLED", 100, 100, 0, Side.BUY, 0)
            assert full.report_seq == b.last_report_seq
            cancelled = await b.order_status("gone")
            assert (cancelled.status, cancelled.open, cancelled.reason) == (
                "CANCELLED", 0, Reason.USER)
            assert (await b.order_status("bad")).status == "REJECTED"
            assert (await b.order_status("never")).status == "UNKNOWN"
            assert (await s.order_status("open")).status == "UNKNOWN"  # another account's
            await b.place("rest", "CEA", Side.BUY, 7, 5950)
            st = await b.order_status("rest")
            assert (st.status, st.open, st.filled) == ("OPEN", 7, 0)

    run_with_server(config(tmp_path), body)


def _tokens_and_accounts(files):
    (files / "tokens.csv").write_text(
        "account,token\n" + "".join(f"{a},{TOKENS[a]}\n" for a in ("A001", "A002", "OPS")))
    (files / "accounts.csv").write_text(
        "account,type,cash,CEA\nA001,COVERED_ENTITY,100000000.00,0\n"
        "A002,COVERED_ENTITY,0.00,2000000\n")
    return ["--tokens", str(files / "tokens.csv"), "--accounts", str(files / "accounts.csv"),
            "--start", "2024-03-04T10:00:00"]


@pytest.mark.parametrize("lose_log", [False, True], ids=["log-kept", "log-lost"])
def test_missed_fills_survive_kill_9(tmp_path, lose_log):
    """Log a client off, trade against its resting orders, kill -9 the server, restart it:
    the client gets every missed fill on logon, no gap, no duplicate. With ``lose_log`` the
    report log is cut back as if the crash came between the journal's write and the log's:
    recovery rebuilds the same reports from the journal."""
    data, args = tmp_path / "data", _tokens_and_accounts(tmp_path)
    proc, port, _ = start_server_process(data, *args)
    try:
        async def before():
            last, _ = await _rest_and_leave("127.0.0.1", port, 20)
            await _sell_into("127.0.0.1", port, 12)
            return last

        last = asyncio.run(before())
        time.sleep(0.2)  # the server's timer has written the log out (to the page cache)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    log = ReportLog(data / REPORTS)
    full = log.read(log_account := 1, 1, 1 << 20)  # A001 is account 1 (the operator is 0)
    assert full[1] == 32
    log.close()
    if lose_log:
        size = (data / REPORTS).stat().st_size
        os.truncate(data / REPORTS, size - 100)  # a torn record, and the fills' records lost
    proc, port, out = start_server_process(data, *args)
    try:
        async def after():
            async with Client("127.0.0.1", port, "A001", TOKENS["A001"], report_seq=last) as c:
                await until(lambda: len(c.reports) >= 12, what="the missed fills")
                await asyncio.sleep(0.1)
                return list(c.reports), c

        reports, c = asyncio.run(after())
    finally:
        kill_group(proc)
    assert last == 20
    assert [(r.exec, r.cl_ord_id, r.report_seq) for r in reports] == [
        (X.FILL, f"b{i}", 21 + i) for i in range(12)]
    assert c.report_gaps == c.report_duplicates == 0
    if lose_log:
        assert "reports rebuilt" in out and " 0 reports rebuilt" not in out, out
    log = ReportLog(data / REPORTS)
    assert log.read(log_account, 1, 1 << 20) == full  # the same bytes, rebuilt or kept
    log.close()


def test_guessing_tokens_costs_time_and_is_logged(tmp_path, caplog):
    """A brute force from one address: after the first free failure each guess waits out a
    doubling backoff (answered late, later ones refused without a look at the token), every
    failure is logged, and the right token works again once the backoff has passed."""
    from gateway.client import ClientError

    async def body(server, host, port):
        async def guess(account="A001", token="wrong-token-guess-0001", after=0.0):
            await asyncio.sleep(after)
            c = Client(host, port, account, token)
            try:
                await c.connect()
            except ClientError as e:
                return str(e)
            await c.close()
            return "accepted"

        refusals = []
        t0 = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - t0 < 2.0:  # one guess after the other
            refusals.append(await guess())
        assert all("wrong token" in r for r in refusals)
        assert len(refusals) <= 6, refusals  # waits 0.25, 0.5, 1 (the cap): not 11,000 in 2 s
        # many at once: one is checked, the others refused without a look at the token
        # (and the right token from the same address is refused too while the backoff lasts)
        *burst, right = await asyncio.gather(*(guess() for _ in range(20)),
                                             guess("A002", TOKENS["A002"], after=0.2))
        assert sum("too many failed logons" in r for r in burst) >= 15, burst
        assert "too many failed logons" in right
        await asyncio.sleep(1.1)  # ... and accepted once it has passed
        assert await guess("A001", TOKENS["A001"]) == "accepted"

    with caplog.at_level("WARNING", logger="cea.serve"):
        run_with_server(config(tmp_path, logon_backoff_cap=1.0), body)
    assert any("failed logon" in r.getMessage() and "A001" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_client_resumes_by_itself_across_a_server_restart(tmp_path):
    """``Client(reconnect=True)``: the server stops and comes back on the same port; the
    client logs on again by itself with its last number and gets the fills it missed."""
    import dataclasses

    from gateway.server import ExchangeServer

    async def main():
        cfg = config(tmp_path)
        first = ExchangeServer(cfg)
        first.open()
        host, port = await first.start()
        c = Client(host, port, "A001", TOKENS["A001"], cancel_on_disconnect=False,
                   reconnect=True)
        await c.connect()
        for i in range(5):
            await c.place(f"b{i}", "CEA", Side.BUY, 10, 6000)
        await first.stop()
        second = ExchangeServer(dataclasses.replace(cfg, port=port))
        second.open()
        await second.start()
        try:
            await _sell_into(host, port, 3)
            await until(lambda: sum(r.exec == X.FILL for r in c.reports) >= 3, timeout=10,
                        what="the fills, after the client reconnected")
            await asyncio.sleep(0.1)
            assert c.reconnects >= 1
            assert _numbers(c.reports) == list(range(1, 9))
            assert [r.cl_ord_id for r in c.reports[5:]] == ["b0", "b1", "b2"]
            assert c.report_gaps == c.report_duplicates == 0
        finally:
            await c.close()
            await second.stop()

    asyncio.run(main())
