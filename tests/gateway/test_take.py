"""The targeted take (issue 20) through ``cea serve``'s native protocol: the Take message, the
public order view (OrdersRequest / MdOrders, Subscribe(orders=True)), the reports of both
sides, every reject reason, reservation, bad frames, and a take across a SIGKILL and restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct

import numpy as np
import pytest

from engine.codes import OrderStatus, Reason, Segment, Side
from engine.rules import MAX_QTY
from gateway import protocol as P
from gateway.client import Client
from gateway.journal import rebuild
from gateway.marketdata import MarketData
from gateway.protocol import ExecKind, GatewayReason

from ..procs import kill_group
from .support import START, TOKENS, config, run_with_server, start_server_process, until

X = ExecKind
HOUR = 3_600_000_000


def mine(client: Client, clid: str) -> list[P.ExecutionReport]:
    return [r for r in client.reports if r.cl_ord_id == clid]


async def numbers(client: Client, side: str = "asks") -> list[tuple[int, int, int]]:
    view = await client.listed_orders("CEA")
    assert isinstance(view, P.MdOrders), view
    return getattr(view, side)


def test_take_message_layout_and_hex():
    frame = P.encode(P.Take("t1", 0, Side.BUY, 40, 7))
    assert len(frame) == P.TAKE.itemsize == P.BINARY_SIZES[P.MsgType.TAKE] == 38
    assert frame.hex(" ") == ("24 00 12 74 31" + " 00" * 18 + " 00 00 01 28 00 00 00"
                              " 07 00 00 00 00 00 00 00")
    f = P.take_frames(1)
    f["cl_ord_id"], f["side"], f["qty"], f["target"] = b"t1", 1, 40, 7
    assert f.tobytes() == frame
    assert P.FrameReader(P.CLIENT).feed(frame) == [P.Take("t1", 0, 1, 40, 7)]
    # a target that does not fit wraps as the u64 field holds it
    assert P.FrameReader(P.CLIENT).feed(P.encode(P.Take("t", 0, 1, 1, -1)))[0].target == \
        2**64 - 1
    assert P.MsgType.TAKE == 18 and P.MsgType.ORDERS_REQUEST == 27 and P.MsgType.MD_ORDERS == 45
    assert P.encode(P.OrdersRequest("CEA")).hex(" ") == "06 00 1b 91 a3 43 45 41"


def test_take_fills_at_the_targets_price_and_the_target_keeps_its_place(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b, \
                Client(host, port, "A003", TOKENS["A003"]) as c:
            book = await b.subscribe("CEA", orders=True)
            assert book.orders is not None and book.orders.asks == []
            for clid, price in (("s0", 6010), ("s1", 6010), ("s3", 6010), ("s9", 6020)):
                assert (await a.place(clid, "CEA", Side.SELL, 100, price)).exec == X.ACCEPTED
            asks = await numbers(b)
            st = {k: await a.order_status(k) for k in ("s0", "s1", "s3", "s9")}
            assert asks == [(st[k].order_no, p, 100) for k, p in
                            (("s0", 6010), ("s1", 6010), ("s3", 6010), ("s9", 6020))]
            target = st["s1"].order_no  # the second order of its level: no time priority
            r = await b.take_wait("t1", "CEA", Side.BUY, 40, target)
            assert (r.exec, r.price, r.qty, r.filled, r.open, r.segment, r.side) == (
                X.ACCEPTED, 6010, 40, 0, 40, Segment.LISTED, Side.BUY)
            await until(lambda: len(mine(b, "t1")) == 2 and len(mine(a, "s1")) == 2)
            fill = mine(b, "t1")[1]
            assert (fill.exec, fill.price, fill.qty, fill.filled, fill.open) == (
                X.FILL, 6010, 40, 40, 0)
            other = mine(a, "s1")[1]
            assert (other.exec, other.price, other.qty, other.filled, other.open,
                    other.trade_id) == (X.PARTIAL_FILL, 6010, 40, 40, 60, fill.trade_id)
            # market data: the trade (aggressor: the taker), then the view with less open
            await until(lambda: book.trades and book.orders.asks[1][2] == 60)
            trade = book.trades[-1]
            assert (trade.price, trade.qty, trade.aggressor, trade.trade_id) == (
                6010, 40, Side.BUY, fill.trade_id)
            assert book.asks[0] == (6010, 260, 3)
            assert [o[0] for o in book.orders.asks] == [st[k].order_no
                                                         for k in ("s0", "s1", "s3", "s9")]
            assert (await b.order_status("t1")).status == "FILLED"
            # the target kept its place: a buy of 150 takes s0, then s1 (not s3)
            assert (await c.place("b1", "CEA", Side.BUY, 150, 6010)).exec == X.ACCEPTED
            await until(lambda: len(mine(a, "s1")) == 3)
            assert [(x.exec, x.qty, x.open) for x in mine(a, "s1")[1:]] == [
                (X.PARTIAL_FILL, 40, 60), (X.PARTIAL_FILL, 50, 10)]
            assert [x.exec for x in mine(a, "s3")] == [X.ACCEPTED]
            assert (await a.order_status("s0")).status == "FILLED"
            # the taker's balances: 40 t bought (sellable tomorrow), cash paid at 60.10
            bal_b = await b.balance()
            assert bal_b.holdings[0][3] == 40
            assert bal_b.cash == 10**12 - 40 * 6010

    run_with_server(config(tmp_path), body)


def test_every_reject_reason_reaches_the_client(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b, \
                Client(host, port, "A004", TOKENS["A004"]) as poor, \
                Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            # six ask levels and one bid of A001's
            for k in range(6):
                await a.place(f"s{k}", "CEA", Side.SELL, 100, 6010 + k)
            await a.place("b0", "CEA", Side.BUY, 100, 6000)
            no = {k: (await a.order_status(k)).order_no for k in
                  ("s0", "s4", "s5", "b0")}
            # the view lists the best five levels: s0 .. s4, not s5
            assert [o[0] for o in await numbers(b)] == list(range(no["s0"], no["s4"] + 1))

            async def reject(client, clid, side, qty, target, instrument="CEA"):
                r = await client.take_wait(clid, instrument, side, qty, target)
                assert r.exec == X.REJECTED and r.instrument == P.NO_INSTRUMENT, r
                return r.reason

            assert await reject(b, "r1", Side.BUY, 10, 10**9) == Reason.UNKNOWN_TARGET
            assert await reject(b, "r2", Side.SELL, 10, no["s0"]) == Reason.TARGET_SAME_SIDE
            assert await reject(b, "r3", Side.BUY, 10, no["s5"]) == \
                Reason.TARGET_NOT_IN_BEST_FIVE
            assert await reject(a, "r4", Side.BUY, 10, no["s0"]) == Reason.TARGET_OWN_ORDER
            assert await reject(b, "r5", Side.BUY, 101, no["s0"]) == \
                Reason.TARGET_QTY_EXCEEDED
            assert await reject(b, "r6", Side.BUY, 0, no["s0"]) == Reason.INVALID_QTY
            assert await reject(b, "r7", Side.BUY, MAX_QTY + 1, no["s0"]) == Reason.INVALID_QTY
            assert await reject(b, "r8", 3, 10, no["s0"]) == Reason.MALFORMED
            assert await reject(b, "r9", Side.BUY, 10, no["s0"], "NOPE") == Reason.MALFORMED
            # reservation at the target's price: 1,000.00 CNY and no allowances
            assert await reject(poor, "p1", Side.BUY, 100, no["s0"]) == \
                Reason.INSUFFICIENT_FUNDS
            assert await reject(poor, "p2", Side.SELL, 10, no["b0"]) == \
                Reason.INSUFFICIENT_ALLOWANCES
            assert await reject(ops, "o1", Side.BUY, 10, no["s0"]) == Reason.UNKNOWN_ACCOUNT
            # an engine reject uses the id up
            assert await reject(b, "r1", Side.BUY, 10, no["s0"]) == Reason.DUPLICATE_ORDER_ID
            assert (await b.order_status("r1")).status == "REJECTED"
            # a filled target is gone: UNKNOWN_TARGET
            assert (await b.take_wait("ok", "CEA", Side.BUY, 100, no["s0"])).exec == X.ACCEPTED
            assert await reject(b, "r10", Side.BUY, 1, no["s0"]) == Reason.UNKNOWN_TARGET
            # halted: the gateway's reject (not in the stream), the id not used up
            assert (await ops.halt("CEA")).ok
            r = await b.take_wait("h1", "CEA", Side.BUY, 10, no["s4"])
            assert (r.exec, r.reason, r.report_seq) == (X.REJECTED,
                                                        GatewayReason.INSTRUMENT_HALTED, 0)
            assert (await b.order_status("h1")).status == "UNKNOWN"
            assert (await ops.resume("CEA")).ok
            # the midday break: MARKET_CLOSED; a BLOCK order in the afternoon: not LISTED
            assert (await ops.set_clock(START + 2 * HOUR)).ok  # 12:00
            assert await reject(b, "h1", Side.BUY, 10, no["s4"]) == Reason.MARKET_CLOSED
            assert (await ops.set_clock(START + 3 * HOUR + HOUR // 2)).ok  # 13:30
            assert (await a.place("blk", "CEA", Side.SELL, 100_000, 6100)).segment == \
                Segment.BLOCK
            blk = (await a.order_status("blk")).order_no
            assert await reject(b, "r11", Side.BUY, 10, blk) == Reason.TARGET_NOT_LISTED
            # nothing of all this traded but "ok"
            assert server.exchange.engine.book.globals()[1] - 1 == 1

    run_with_server(config(tmp_path), body)


def test_throttled_take(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A002", TOKENS["A002"]) as b:
            for i in range(30):
                b.take(f"t{i}", "CEA", Side.BUY, 1, 10**6)
            await until(lambda: len(b.reports) == 30)
            reasons = {r.reason for r in b.reports}
            assert reasons == {GatewayReason.THROTTLED, Reason.UNKNOWN_TARGET}
            assert all(r.exec == X.REJECTED for r in b.reports)
            assert all(r.report_seq == 0 for r in b.reports
                       if r.reason == GatewayReason.THROTTLED)

    run_with_server(config(tmp_path, rate_limit=20, burst=10), body)


def test_take_frames_never_count_against_the_open_order_limit(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b:
            await a.place("s0", "CEA", Side.SELL, 100, 6010)
            await b.place("own1", "CEA", Side.BUY, 1, 5900)
            await b.place("own2", "CEA", Side.BUY, 1, 5900)
            r = await b.place("own3", "CEA", Side.BUY, 1, 5900)
            assert r.reason == GatewayReason.OPEN_ORDER_LIMIT  # at its 2 open orders
            target = (await numbers(b))[0][0]
            assert (await b.take_wait("t1", "CEA", Side.BUY, 10, target)).exec == X.ACCEPTED
            await until(lambda: len(mine(b, "t1")) == 2)
            assert server.exchange.orders.n_open[server.exchange.account_handle("A002")] == 2

    run_with_server(config(tmp_path, max_open_orders=2), body)


def test_public_order_view_is_anonymous(tmp_path):
    async def body(server, host, port):
        seen: list = []
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A003", TOKENS["A003"]) as c, \
                Client(host, port, "A002", TOKENS["A002"],
                       on_market_data=seen.append) as b:
            await b.subscribe("CEA", orders=True)
            await a.place("SecretSell1", "CEA", Side.SELL, 100, 6010)
            await c.place("SecretBuy22", "CEA", Side.BUY, 70, 5990)
            await until(lambda: any(isinstance(m, P.MdOrders) and m.bids and m.asks
                                    for m in seen))
            view = await b.listed_orders("CEA")
            frames = [P.encode(m) for m in seen if isinstance(m, P.MdOrders)] + [
                P.encode(view)]
            for frame in frames:  # the bytes on the wire (msgpack encodes one way)
                for secret in (b"A001", b"A003", b"Secret", b"SecretSell1", b"SecretBuy22"):
                    assert secret not in frame
            assert view.bids == [((await c.order_status("SecretBuy22")).order_no, 5990, 70)]
            assert view.asks == [((await a.order_status("SecretSell1")).order_no, 6010, 100)]
            assert (view.instrument, view.instrument_id, view.complete) == ("CEA", 0, True)
            assert view.seq == b.books[("CEA", 0)].seq  # as of the channel's number
            for entries in (view.bids, view.asks):
                assert all(len(e) == 3 and all(isinstance(v, int) for v in e) for e in entries)
            refused = await b.listed_orders("NOPE")
            assert (refused.command, refused.ok, refused.reason) == (
                "OrdersRequest", False, GatewayReason.UNKNOWN_INSTRUMENT)
            # a BLOCK subscription with orders: no MdOrders (no takes there)
            n = sum(isinstance(m, P.MdOrders) for m in seen)
            theirs: list = []
            async with Client(host, port, "A004", TOKENS["A004"],
                              on_market_data=theirs.append) as d:
                await d.subscribe("CEA", 1, orders=True)
                await a.place("x", "CEA", Side.SELL, 1, 6011)
                await until(lambda: sum(isinstance(m, P.MdOrders) for m in seen) > n)
                await asyncio.sleep(0.05)
                assert d.books[("CEA", 1)].orders is None
                assert not any(isinstance(m, P.MdOrders) for m in theirs)

    run_with_server(config(tmp_path), body)


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_md_orders_is_capped_and_says_so(impl):
    from engine import batch as B
    from engine.codes import Action
    from gateway.apply import apply_orders
    from gateway.exchange import Exchange, Genesis

    ex = Exchange(Genesis([("CEA", 6000)]), impl=impl, md_ring=16)
    ex.engine.open_account("S")
    ex.engine.allowance_in("S", 1000)
    ex.orders.reserve_accounts(len(ex.engine.accounts))
    cmds = B.empty_commands(7)
    cmds["ts"] = START
    cmds["order"] = np.arange(7)
    cmds["account"] = ex.account_handle("S")
    cmds["action"] = Action.NEW
    cmds["side"] = Side.SELL
    cmds["type"], cmds["tif"], cmds["stp"] = 1, 1, 1
    cmds["qty"] = 10
    cmds["price"] = [6010, 6010, 6011, 6012, 6013, 6014, 6015]
    ex.orders.intern_many(cmds["account"], np.zeros(7, np.int16),
                          np.frombuffer(b"".join(P.encode_clid(f"s{k}") for k in range(7)),
                                        np.uint8).reshape(7, 20))
    apply_orders(ex, cmds)
    full = ex.md.orders(ex.engine.book, 0)
    assert [o[0] for o in full.asks] == [0, 1, 2, 3, 4, 5] and full.complete  # five levels
    cut = ex.md.orders(ex.engine.book, 0, limit=2)
    assert cut.asks == [(0, 6010, 10), (1, 6010, 10)] and not cut.complete
    assert full.bids == [] and full.seq == ex.md.seq(0) and isinstance(ex.md, MarketData)


def test_bad_take_frames_get_clear_answers_and_lose_nothing(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"], cancel_on_disconnect=False) as a:
            await a.place("s0", "CEA", Side.SELL, 100, 6010)
            target = (await a.order_status("s0")).order_no
        async with Client(host, port, "A002", TOKENS["A002"]) as b:
            raw = P.encode_raw_clid
            b.send_frames(raw(P.MsgType.TAKE, b"z1", 7, 1, 10, target)  # unknown instrument
                          + raw(P.MsgType.TAKE, b"z2", 0, 1, 0, target)  # qty 0
                          + raw(P.MsgType.TAKE, b"z3", 0, 1, 10, 2**64 - 1)  # huge target
                          + raw(P.MsgType.TAKE, b"z4", 0, 1, 10, 2**63)
                          + raw(P.MsgType.TAKE, b"bad id", 0, 1, 10, target)
                          + raw(P.MsgType.TAKE, b"z5", 0, 1, 10, target))  # good
            await until(lambda: len(b.reports) >= 7)
            got = [(r.cl_ord_id, r.exec, r.reason) for r in b.reports]
            assert got == [("z1", X.REJECTED, Reason.MALFORMED),
                           ("z2", X.REJECTED, Reason.INVALID_QTY),
                           ("z3", X.REJECTED, Reason.UNKNOWN_TARGET),
                           ("z4", X.REJECTED, Reason.UNKNOWN_TARGET),
                           ("bad id", X.REJECTED, Reason.MALFORMED),
                           ("z5", X.ACCEPTED, 0), ("z5", X.FILL, 0)]
        # a Take frame of the wrong size: what came before is answered, then Error, close
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(P.encode(P.Logon("A003", TOKENS["A003"])))
            good = P.encode(P.Take("z6", 0, 1, 10, target))
            short = struct.pack("<HB", 35, P.MsgType.TAKE) + good[3:37]
            writer.write(good + short + P.encode(P.Take("z7", 0, 1, 10, target)))
            data = b""
            while True:  # until the server closes the connection
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                if not chunk:
                    break
                data += chunk
        finally:
            writer.close()
        msgs = P.FrameReader(P.SERVER).feed(data)
        assert isinstance(msgs[0], P.LogonAck)
        assert [(m.cl_ord_id, m.exec) for m in msgs if isinstance(m, P.ExecutionReport)] == [
            ("z6", X.ACCEPTED), ("z6", X.FILL)]
        err = msgs[-1]
        assert isinstance(err, P.Error) and err.reason == GatewayReason.PROTOCOL_ERROR
        assert err.text == "a frame of its type cannot be 35 bytes long"
        assert server.exchange.orders.find(server.exchange.account_handle("A003"), "z7") < 0

    run_with_server(config(tmp_path), body)


def _files(tmp_path) -> list[str]:
    (tmp_path / "tokens.csv").write_text(
        "account,token\n" + "".join(f"{a},{TOKENS[a]}\n" for a in ("A001", "A002", "OPS")))
    (tmp_path / "accounts.csv").write_text(
        "account,type,cash,CEA\nA001,COVERED_ENTITY,100000000.00,0\n"
        "A002,COVERED_ENTITY,0.00,2000000\n")
    return ["--tokens", str(tmp_path / "tokens.csv"), "--accounts",
            str(tmp_path / "accounts.csv"), "--start", "2024-03-04T10:00:00"]


def test_take_survives_sigkill_and_restart(tmp_path):
    """A take acknowledged, the server killed with SIGKILL: the restarted exchange holds the
    same trade (same id, once), the same open quantity of the target and the same reports;
    the take's id stays used."""
    data, args = tmp_path / "data", _files(tmp_path)
    proc, port, _ = start_server_process(data, *args)
    try:
        async def before():
            async with Client("127.0.0.1", port, "A002", TOKENS["A002"],
                              cancel_on_disconnect=False) as s:
                await s.place("s0", "CEA", Side.SELL, 100, 6010)
                await s.place("s1", "CEA", Side.SELL, 100, 6020)
                target = (await s.order_status("s1")).order_no
                async with Client("127.0.0.1", port, "A001", TOKENS["A001"]) as b:
                    assert (await b.take_wait("t1", "CEA", Side.BUY, 30, target)).exec == \
                        X.ACCEPTED
                    await until(lambda: len(mine(b, "t1")) == 2)
                    fill = mine(b, "t1")[1]
                    last = b.last_report_seq
                await until(lambda: len(mine(s, "s1")) == 2)
                return target, fill, last, mine(s, "s1")[1]

        target, fill, last, theirs = asyncio.run(before())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    assert (fill.exec, fill.price, fill.qty) == (X.FILL, 6020, 30)
    assert (theirs.exec, theirs.open, theirs.trade_id) == (X.PARTIAL_FILL, 70, fill.trade_id)
    replay = rebuild(data, use_snapshot=False)
    proc, port, out = start_server_process(data, *args)
    try:
        assert f"state hash {replay.state_hash}" in out, out

        async def after():
            async with Client("127.0.0.1", port, "A001", TOKENS["A001"],
                              report_seq=last) as b:
                await asyncio.sleep(0.2)
                assert b.reports == []  # nothing missed, nothing twice
                st = await b.order_status("t1")
                assert (st.status, st.filled, st.open) == ("FILLED", 30, 0)
                r = await b.take_wait("t1", "CEA", Side.BUY, 30, target)
                assert (r.exec, r.reason) == (X.REJECTED, Reason.DUPLICATE_ORDER_ID)
                view = await b.listed_orders("CEA")
                assert view.asks[1] == (target, 6020, 70)
                return await b.balance()

        bal = asyncio.run(after())
    finally:
        kill_group(proc)
    assert bal.holdings[0][3] == 30
    ex = rebuild(data, use_snapshot=False).exchange
    assert ex.engine.book.globals()[1] - 1 == 1  # one trade, id 1, not repeated
    status, _, qty, filled, open_qty = ex.engine.book.order_state(target)
    assert (OrderStatus(status), qty, filled, open_qty) == (OrderStatus.RESTING, 100, 30, 70)


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_journal_replay_of_takes_matches_the_live_state(tmp_path, impl):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b:
            for k in range(3):
                await a.place(f"s{k}", "CEA", Side.SELL, 100, 6010 + k)
            asks = await numbers(b)
            for k, (number, _, _) in enumerate(asks):
                b.take(f"t{k}", "CEA", Side.BUY, 10 + k, number)
            b.take("tx", "CEA", Side.BUY, 10, 10**7)
            await until(lambda: len(b.reports) == 7)
            return server.exchange.state_hash()

    live = run_with_server(config(tmp_path, impl=impl), body)
    assert rebuild(tmp_path / "data", impl=impl, use_snapshot=False).state_hash == live
