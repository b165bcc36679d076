"""Durability: a clean restart, a torn journal tail, corruption, and the server killed with
SIGKILL under load, many times, recovering every acknowledged order and trade exactly."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal

import pytest

from engine.codes import NO_REF, OrderStatus, Side
from gateway.client import Client, ClientError
from gateway.journal import JOURNAL, JournalError, rebuild, verify
from gateway.protocol import ExecKind
from ledger.core import Ledger, engine_balances

from ..procs import kill_group
from .support import config, run_with_server, start_server_process, until
from .test_marketdata import _trade_a_while

KILL_CYCLES = int(os.environ.get("CEA_KILL_CYCLES", "6"))


def settled(server) -> bool:
    """No session left and nothing waiting for a turn: every disconnect's cancels applied."""
    return not (server.by_account or server.queue or server.system or server._scheduled)


def _ledger_matches_engine(data_dir, exchange) -> None:
    led = Ledger.open(str(data_dir / "ledger.sqlite"), exchange.instruments)
    try:
        expected, fees = engine_balances(exchange.engine.balances, exchange.account_name,
                                         exchange.instruments)
        rec = led.reconcile(expected, fees)
        assert rec.ok, rec.problems
        assert led.trade_count() == exchange.engine.book.globals()[1] - 1
    finally:
        led.close()


def test_clean_restart_restores_the_same_state(tmp_path):
    async def trade(server, host, port):
        await _trade_a_while(host, port, 40)
        async with Client(host, port, "A003", "A003-test-token-0003",
                          cancel_on_disconnect=False) as c:
            await c.place("rest", "CEA", Side.BUY, 100, 5800)
        # the hash of the state the stop snapshots: after the traders' disconnect cancels
        await until(lambda: settled(server), what="the disconnects applied")
        return server.exchange.state_hash()

    before = run_with_server(config(tmp_path, ledger="sqlite"), trade)

    async def reopened(server, host, port):
        assert server.recovery.replayed == 0  # the snapshot written at stop is current
        assert server.exchange.engine.best_bid() == (5800, 100)
        return server.exchange.state_hash()

    assert run_with_server(config(tmp_path, ledger="sqlite"), reopened) == before
    data = tmp_path / "data"
    assert rebuild(data, use_snapshot=False).state_hash == before  # the journal alone
    report = verify(data)
    assert report.ok, report.lines
    assert any("matches the replay" in line for line in report.lines)
    _ledger_matches_engine(data, rebuild(data).exchange)


def test_torn_tail_is_cut_and_corruption_is_refused(tmp_path):
    async def trade(server, host, port):
        await _trade_a_while(host, port, 10)
        return server.exchange.state_hash()

    before = run_with_server(config(tmp_path), trade)
    journal = tmp_path / "data" / JOURNAL
    good = journal.read_bytes()
    end = rebuild(tmp_path / "data").end  # the records end here; zeros follow (preallocated)
    assert len(good) > end and not good[end:].strip(b"\0")
    # half a record written over the zeros: a write the crash cut short
    torn = good[:end] + good[end - 30:end - 3]
    journal.write_bytes(torn + bytes(len(good) - len(torn)))
    report = verify(tmp_path / "data")
    assert report.ok and any("torn last record" in line for line in report.lines)
    rec = rebuild(tmp_path / "data", truncate=True)
    assert (rec.truncated, rec.state_hash) == (len(good) - end, before)
    assert journal.read_bytes() == good[:end]
    # a damaged record with intact ones after it is not a torn tail: refuse to guess
    damaged = bytearray(good[:end])
    damaged[end // 2] ^= 0xFF
    journal.write_bytes(bytes(damaged))
    with pytest.raises(JournalError, match="corrupt in the middle"):
        rebuild(tmp_path / "data", use_snapshot=False)


# ---------------------------------------------------------------- kill and recover

def _start(data_dir, files):
    return start_server_process(
        data_dir, "--tokens", str(files / "tokens.csv"), "--accounts", str(files / "accounts.csv"),
        "--start", "2024-03-04T10:00:00", "--snapshot-every", "40", "--rate-limit", "0")


IN_FLIGHT = 60  # orders sent and not yet acknowledged, at most, while loading


async def _load_until_killed(port, proc, cycle, rng, acked, trades):
    """Two accounts send bursts of orders and cancels, keeping at most IN_FLIGHT orders
    unacknowledged, until a number of acknowledgements drawn for the cycle (20 .. 300) has
    come back; then one more burst and, with it in flight, the kill. The kill point is a
    count of replies, not a time: the same work per cycle on a fast or a slow machine."""
    sent = 0
    got = [0]  # acknowledgements of this cycle

    def on_report(account):
        def record(r):
            if r.exec in (ExecKind.ACCEPTED, ExecKind.REJECTED):
                if (account, r.cl_ord_id) not in acked:
                    got[0] += 1
                acked.setdefault((account, r.cl_ord_id), r.exec)
            if r.trade_id:
                trades.setdefault((r.trade_id, r.side), (r.price, r.qty, account, r.cl_ord_id))
        return record

    a = Client("127.0.0.1", port, "A001", "A001-test-token-0001", on_execution=on_report("A001"))
    b = Client("127.0.0.1", port, "A002", "A002-test-token-0002", on_execution=on_report("A002"))
    await a.connect()
    await b.connect()
    a.keep_reports = b.keep_reports = False
    kill_after = rng.randint(20, 300)
    i = 0

    def burst():
        nonlocal i, sent
        for _ in range(rng.randint(1, 40)):
            i += 1
            client, side = (a, Side.BUY) if i % 2 else (b, Side.SELL)
            if i % 7 == 0:
                client.cancel(f"c{cycle}-{i - 14}")
            else:
                client.new_order(f"c{cycle}-{i}", "CEA", side, rng.randint(1, 60),
                                 rng.randint(5960, 6040))
                sent += 1

    try:
        while got[0] < kill_after:
            burst()
            await until(lambda: sent - got[0] <= IN_FLIGHT, timeout=60, what="replies")
        burst()
        proc.send_signal(signal.SIGKILL)  # mid-stream: orders in flight, batches half done
        await until(lambda: proc.poll() is not None, timeout=30, what="the server killed")
        # the clients see their connections end
        await until(lambda: not (a.connected.is_set() or b.connected.is_set()), timeout=30,
                    what="the connections closed")
    except ClientError:
        pass
    for c in (a, b):
        c.reconnect = False
        await c.close()


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path):
    files = tmp_path
    (files / "tokens.csv").write_text("account,token\nA001,A001-test-token-0001\n"
                                      "A002,A002-test-token-0002\nOPS,OPS-test-token-00000\n")
    (files / "accounts.csv").write_text(
        "account,type,cash,CEA\nA001,COVERED_ENTITY,100000000.00,0\n"
        "A002,COVERED_ENTITY,0.00,2000000\n")
    data = tmp_path / "data"
    rng = random.Random(20261201)
    acked: dict = {}
    trades: dict = {}
    survived = 0
    for cycle in range(KILL_CYCLES):
        proc, port, out = _start(data, files)
        if cycle:
            m = re.search(r"state hash ([0-9a-f]{64})", out)
            assert m, out
            # the recovered state is the state of one uninterrupted run over the journal
            assert m.group(1) == rebuild(data, use_snapshot=False).state_hash, out
        try:
            asyncio.run(_load_until_killed(port, proc, cycle, rng, acked, trades))
        finally:
            kill_group(proc)  # the server and anything of its group (its ledger process)
        assert proc.returncode == -signal.SIGKILL
        survived += 1

    # a last clean start recovers the last kill; then a graceful stop settles the ledger
    proc, port, out = _start(data, files)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, err
    final = rebuild(data, use_snapshot=False)
    ex = final.exchange
    assert final.state_hash == rebuild(data).state_hash
    assert survived == KILL_CYCLES and len(acked) > 100 and len(trades) > 10

    # every acknowledged order is there, accepted ones as accepted
    for (account, clid), kind in acked.items():
        handle = ex.order_handle(account, clid)
        assert handle != NO_REF, (account, clid)
        status = ex.engine.book.order_state(handle)[0]
        assert (status != OrderStatus.NONE) == (kind == ExecKind.ACCEPTED), (account, clid)
    # every trade a participant was told of is in the journal, as told; none twice
    events = {}
    rebuild(data, use_snapshot=False, on_turn=lambda seq, applied: events.update(
        (int(r[11]), r) for ev in applied.settled for r in ev.tolist() if r[0] == 3))
    assert sorted(events) == list(range(1, len(events) + 1))
    for (trade_id, side), (price, qty, account, clid) in trades.items():
        r = events[trade_id]
        order, acct = (r[5], r[6]) if side == Side.BUY else (r[12], r[13])
        assert (r[8], r[9], ex.account_name(acct), ex.order_name(order)) == (
            price, qty, account, clid)
    _ledger_matches_engine(data, ex)
    assert verify(data).ok


def test_journal_is_preallocated_and_commits_keep_its_size(tmp_path):
    """With fsync on, records overwrite zeros the file already has (a commit syncs data
    alone); the zeros after the last record are the end, not damage."""
    async def trade(server, host, port):
        journal = server.journal
        await _trade_a_while(host, port, 10)
        await until(lambda: journal._extender is None or not journal._extender.is_alive())
        size = (server.data_dir / JOURNAL).stat().st_size
        assert size >= journal.pos + 1 and size == journal.allocated
        async with Client(host, port, "A003", "A003-test-token-0003") as c:
            assert (await c.place("p", "CEA", Side.BUY, 1, 5800)).exec == ExecKind.ACCEPTED
        assert (server.data_dir / JOURNAL).stat().st_size == size  # no append
        return server.exchange.state_hash()

    before = run_with_server(config(tmp_path, journal_prealloc=1 << 16), trade)
    data = tmp_path / "data"
    assert rebuild(data, use_snapshot=False).state_hash == before
    report = verify(data)
    assert report.ok and not any("torn" in line for line in report.lines), report.lines


def test_sync_thread_option_acknowledges_after_durability(tmp_path):
    """The optional sync thread (``ServerConfig.sync_thread``: fdatasync off the loop, in a
    thread without the GIL): a report leaves only once its record is durable, and the journal
    alone rebuilds the same state."""
    async def trade(server, host, port):
        assert server.sync is not None
        syncs = server.sync.syncs
        await _trade_a_while(host, port, 20)
        async with Client(host, port, "A003", "A003-test-token-0003",
                          cancel_on_disconnect=False) as c:
            report = await c.place("rest", "CEA", Side.BUY, 100, 5800)
            assert report.exec == ExecKind.ACCEPTED
            # the record of what the client was told about is durable
            handle = server.exchange.order_handle("A003", "rest")
            assert handle >= 0 and server.durable >= 1 and server.sync.syncs > syncs
            assert server.sync.durable >= server.durable
            assert (await c.balance()).cash_reserved == 100 * 5800
        assert not server.waiting or server.waiting[0][0] > server.durable
        return server.exchange.state_hash()

    before = run_with_server(config(tmp_path, sync_thread=True), trade)
    assert rebuild(tmp_path / "data", use_snapshot=False).state_hash == before
