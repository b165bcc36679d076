"""The server over real TCP: logon, every message, reservation rejects, operator commands,
cancel-on-disconnect, rate limit, heartbeats, slow readers."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest

from engine.codes import OrderType, Reason, Segment, Side, TimeInForce
from gateway import protocol as P
from gateway.client import Client, ClientError
from gateway.protocol import ExecKind, GatewayReason, Status

from .support import TOKENS, config, run_with_server, until


def reports_for(client: Client, clid: str) -> list[P.ExecutionReport]:
    return [r for r in client.reports if r.cl_ord_id == clid]


def test_logon_accepted_and_refused(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", "A001-test-token-0001") as c:
            assert c.logon.account == "A001" and c.logon.session_id > 0
            with pytest.raises(ClientError, match="already has a session"):
                await Client(host, port, "A001", "A001-test-token-0001").connect()
        with pytest.raises(ClientError, match="wrong token"):
            await Client(host, port, "A001", "nope").connect()
        with pytest.raises(ClientError, match="wrong token"):
            await Client(host, port, "ZZZ", "A001-test-token-0001").connect()
        # tokens are kept only as salted hashes
        stored = (server.data_dir / "tokens.json").read_text()
        assert "sha256$" in stored and '"A001-test-token-0001"' not in stored

    run_with_server(config(tmp_path), body)


def test_orders_trade_and_report(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", "A001-test-token-0001") as a, \
                Client(host, port, "A002", "A002-test-token-0002") as b:
            r = await a.place("o1", "CEA", Side.BUY, 500, 6010)
            assert (r.exec, r.qty, r.open, r.price, r.segment) == (ExecKind.ACCEPTED, 500, 500,
                                                                  6010, Segment.LISTED)
            r = await b.place("s1", "CEA", Side.SELL, 200, 6000)
            assert r.exec == ExecKind.ACCEPTED
            await until(lambda: len(reports_for(a, "o1")) == 2 and len(reports_for(b, "s1")) == 2)
            fill_a, fill_b = reports_for(a, "o1")[1], reports_for(b, "s1")[1]
            assert (fill_a.exec, fill_a.price, fill_a.qty, fill_a.filled, fill_a.open,
                    fill_a.trade_id) == (ExecKind.PARTIAL_FILL, 6010, 200, 200, 300, 1)
            assert (fill_b.exec, fill_b.price, fill_b.qty, fill_b.filled, fill_b.open,
                    fill_b.trade_id) == (ExecKind.FILL, 6010, 200, 200, 0, 1)
            # an IOC remainder and a MARKET order
            r = await b.place("s2", "CEA", Side.SELL, 500, 6010, tif=TimeInForce.IOC)
            await until(lambda: len(reports_for(b, "s2")) == 3)
            assert [x.exec for x in reports_for(b, "s2")] == [
                ExecKind.ACCEPTED, ExecKind.PARTIAL_FILL, ExecKind.CANCELLED]
            assert reports_for(b, "s2")[2].reason == Reason.IOC_REMAINDER
            r = await a.place("m1", "CEA", Side.BUY, 10, type=OrderType.MARKET,
                              tif=TimeInForce.IOC)
            await until(lambda: len(reports_for(a, "m1")) == 2)
            assert reports_for(a, "m1")[1].reason == Reason.NO_LIQUIDITY
            bal = await a.balance()
            assert bal.holdings[0][0] == "CEA" and bal.holdings[0][3] == 500  # bought today

    run_with_server(config(tmp_path), body)


@pytest.mark.parametrize("account,order,reason", [
    ("A001", dict(side=Side.BUY, qty=100, price=6601), Reason.PRICE_OUTSIDE_BAND),
    ("A001", dict(side=Side.BUY, qty=0, price=6000), Reason.INVALID_QTY),
    ("A001", dict(side=Side.BUY, qty=100, price=0), Reason.INVALID_PRICE),
    ("A001", dict(side=Side.BUY, qty=100, price=None), Reason.INVALID_PRICE),
    ("A001", dict(side=7, qty=100, price=6000), Reason.MALFORMED),
    ("A001", dict(side=Side.BUY, qty=100, price=6000, instrument="NOPE"), Reason.MALFORMED),
    ("A001", dict(side=Side.BUY, qty=100, price=None, type=OrderType.MARKET), Reason.MALFORMED),
    ("A001", dict(side=Side.BUY, qty=100, price=6000, type=OrderType.MARKET,
                  tif=TimeInForce.IOC), Reason.INVALID_PRICE),
    ("A001", dict(side=Side.BUY, qty=200_000, price=6000), Reason.MARKET_CLOSED),  # block: pm
    ("A004", dict(side=Side.BUY, qty=100, price=6000), Reason.INSUFFICIENT_FUNDS),
    ("A004", dict(side=Side.SELL, qty=100, price=6000), Reason.INSUFFICIENT_ALLOWANCES),
])
def test_rejects_over_the_wire(tmp_path, account, order, reason):
    async def body(server, host, port):
        async with Client(host, port, account, TOKENS[account]) as c:
            kw = dict(order)
            instrument = kw.pop("instrument", "CEA")
            r = await c.place("x", instrument, kw.pop("side"), kw.pop("qty"), kw.pop("price"), **kw)
            assert (r.exec, r.reason) == (ExecKind.REJECTED, reason)
            bal = await c.balance()
            assert bal.cash_reserved == 0  # a reject reserves nothing

    run_with_server(config(tmp_path), body)


def test_duplicate_ids_are_per_account(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", "A001-test-token-0001") as a, \
                Client(host, port, "A002", "A002-test-token-0002") as b:
            assert (await a.place("same", "CEA", Side.BUY, 10, 5900)).exec == ExecKind.ACCEPTED
            r = await a.place("same", "CEA", Side.BUY, 10, 5900)
            assert (r.exec, r.reason) == (ExecKind.REJECTED, Reason.DUPLICATE_ORDER_ID)
            # another account may use the same id; it cannot touch A001's order
            assert (await b.place("same", "CEA", Side.BUY, 10, 5900)).exec == ExecKind.ACCEPTED
            r = await b.cancel_wait("same")
            assert (r.exec, r.reason) == (ExecKind.CANCELLED, Reason.USER)
            r = await b.cancel_wait("same")
            assert (r.exec, r.reason) == (ExecKind.CANCEL_REJECTED, Reason.UNKNOWN_ORDER)
            assert server.exchange.engine.best_bid() == (5900, 10)  # A001's still rests

    run_with_server(config(tmp_path), body)


def test_cancel_and_amend(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", "A001-test-token-0001") as a:
            await a.place("o1", "CEA", Side.BUY, 300, 5950)
            r = await a.amend_wait("o1", 5960, 200)
            assert (r.exec, r.price, r.qty, r.open) == (ExecKind.AMENDED, 5960, 200, 200)
            r = await a.amend_wait("o1", 9000, 200)
            assert (r.exec, r.reason) == (ExecKind.AMEND_REJECTED, Reason.PRICE_OUTSIDE_BAND)
            r = await a.amend_wait("nope", 5960, 200)
            assert (r.exec, r.reason) == (ExecKind.AMEND_REJECTED, Reason.UNKNOWN_ORDER)
            bal = await a.balance()
            assert bal.cash_reserved == 5960 * 200
            r = await a.cancel_wait("o1")
            assert (r.exec, r.qty, r.reason) == (ExecKind.CANCELLED, 200, Reason.USER)
            assert (await a.balance()).cash_reserved == 0

    run_with_server(config(tmp_path), body)


def test_mass_cancel_by_side_and_instrument(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", "A001-test-token-0001") as a:
            for clid, side, price in (("b1", Side.BUY, 5900), ("b2", Side.BUY, 5910),
                                      ("s1", Side.SELL, 6100)):
                assert (await a.place(clid, "CEA", side, 10, price)).exec == ExecKind.ACCEPTED
            ack = await a.mass_cancel(side=Side.BUY)
            assert ack.ok and ack.text == "2 orders cancelled"
            await until(lambda: len(reports_for(a, "b2")) == 2)
            assert reports_for(a, "b1")[-1].exec == ExecKind.CANCELLED
            assert reports_for(a, "s1")[-1].exec == ExecKind.ACCEPTED
            ack = await a.mass_cancel(instrument="NOPE")
            assert not ack.ok and ack.reason == GatewayReason.UNKNOWN_INSTRUMENT
            ack = await a.mass_cancel()
            assert ack.ok and ack.text == "1 orders cancelled"

    run_with_server(config(tmp_path), body)


def test_operator_commands(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", "A001-test-token-0001") as a, \
                Client(host, port, "OPS", "OPS-test-token-00000") as ops:
            book = await a.subscribe("CEA")
            assert book.status == Status.OPEN
            ack = await a.halt("CEA")
            assert (ack.ok, ack.reason) == (False, GatewayReason.NOT_AUTHORIZED)
            assert (await ops.halt("NOPE")).reason == GatewayReason.UNKNOWN_INSTRUMENT
            await a.place("r1", "CEA", Side.BUY, 10, 5900)
            assert (await ops.halt("CEA")).ok
            r = await a.place("h1", "CEA", Side.BUY, 10, 5900)
            assert (r.exec, r.reason) == (ExecKind.REJECTED, GatewayReason.INSTRUMENT_HALTED)
            r = await a.amend_wait("r1", 5901, 10)
            assert (r.exec, r.reason) == (ExecKind.AMEND_REJECTED, GatewayReason.INSTRUMENT_HALTED)
            await until(lambda: book.status == Status.HALTED, what="HALTED status")
            assert (await ops.resume("CEA")).ok
            await until(lambda: book.status == Status.OPEN, what="OPEN status")
            assert (await a.place("h2", "CEA", Side.BUY, 10, 5900)).exec == ExecKind.ACCEPTED
            ack = await ops.set_prior_close("CEA", 7000)
            assert (ack.ok, ack.reason) == (False, GatewayReason.BAD_VALUE)  # a day is open
            # trade so the day has a close, then end the day
            await a.place("s1", "CEA", Side.SELL, 10, 6000)
            async with Client(host, port, "A002", "A002-test-token-0002") as b:
                await b.place("b1", "CEA", Side.BUY, 10, 6000)
            assert (await ops.end_day()).ok
            await until(lambda: book.summaries, what="day summary")
            assert book.summaries[0].close == 6000 and book.summaries[0].date == 20240304
            assert book.summaries[0].volume == 10
            await until(lambda: reports_for(a, "r1")[-1].exec == ExecKind.EXPIRED)
            assert (await ops.end_day()).reason == GatewayReason.BAD_VALUE  # none open now
            assert (await ops.set_prior_close("CEA", 0)).reason == GatewayReason.BAD_VALUE
            assert (await ops.set_prior_close("CEA", 7000)).ok
            # the sim clock moved to the next trading morning; bands come from 70.00
            r = await a.place("n1", "CEA", Side.BUY, 10, 7700)
            assert r.exec == ExecKind.ACCEPTED, r
            assert server.exchange.engine.band() == (6300, 7700)
            assert (await ops.balance()).reason == GatewayReason.BAD_VALUE

    run_with_server(config(tmp_path), body)


@pytest.mark.parametrize("cancel_on_disconnect", [True, False])
def test_cancel_on_disconnect(tmp_path, cancel_on_disconnect):
    async def body(server, host, port):
        a = Client(host, port, "A001", "A001-test-token-0001",
                   cancel_on_disconnect=cancel_on_disconnect)
        await a.connect()
        await a.place("o1", "CEA", Side.BUY, 100, 5900)
        await a.place("o2", "CEA", Side.SELL, 100, 6100)
        a.abort()
        await until(lambda: not server.by_account)
        # a barrier: an order sent now is acknowledged after its turn, which comes after the
        # turn of the disconnect's cancels (if any); it trades nothing and does not rest
        async with Client(host, port, "A002", "A002-test-token-0002") as b:
            probe = await b.place("probe", "CEA", Side.BUY, 1, 5500, tif=TimeInForce.IOC)
            assert probe.exec == ExecKind.ACCEPTED
        engine = server.exchange.engine
        if cancel_on_disconnect:
            assert engine.best_bid() is None and engine.best_ask() is None
            assert engine.balance("A001").cash_reserved == 0
        else:
            assert engine.best_bid() == (5900, 100) and engine.best_ask() == (6100, 100)

    run_with_server(config(tmp_path), body)


def test_rate_limit_throttles(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", "A001-test-token-0001") as a:
            for i in range(40):
                a.new_order(f"o{i}", "CEA", Side.BUY, 1, 5900)
            await until(lambda: len(a.reports) == 40)
            throttled = [r for r in a.reports if r.reason == GatewayReason.THROTTLED]
            accepted = [r for r in a.reports if r.exec == ExecKind.ACCEPTED]
            assert throttled and accepted and len(throttled) + len(accepted) == 40
            assert all(r.exec == ExecKind.REJECTED for r in throttled)
            session = server.by_account[server.exchange.account_handle("A001")]
            await until(lambda: session.bucket.available(time.monotonic()) >= 1,
                        what="the bucket refilled")
            assert (await a.place("late", "CEA", Side.BUY, 1, 5900)).exec == ExecKind.ACCEPTED

    run_with_server(config(tmp_path, rate_limit=20, burst=10), body)


def test_heartbeat_timeout_disconnects(tmp_path):
    async def body(server, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(P.encode(P.Logon("A001", "A001-test-token-0001", True, 100)))
        frames = P.FrameReader(P.SERVER)
        got = []
        while True:  # stay silent: the server heartbeats, then gives up after 3 intervals
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                break
            got.extend(frames.feed(data))
        writer.close()
        kinds = [type(m) for m in got]
        assert kinds[0] is P.LogonAck and P.Heartbeat in kinds
        assert isinstance(got[-1], P.Error) and "heartbeat" in got[-1].text

    run_with_server(config(tmp_path), body)


def test_slow_reader_is_dropped(tmp_path):
    async def body(server, host, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        # a peer that logs on, subscribes, and then never reads
        sock.send(P.encode(P.Logon("A003", "A003-test-token-0003", True, 60_000))
                  + P.encode(P.Subscribe("CEA", 0)))
        await until(lambda: len(server.by_account) == 1)
        # A001 floods the depth channel
        async with Client(host, port, "A001", "A001-test-token-0001") as a:
            for i in range(1200):  # one new best bid per turn: one depth message each
                a.new_order(f"o{i}", "CEA", Side.BUY, 1, 5400 + i)
                await asyncio.sleep(0)
            await until(lambda: len(a.reports) == 1200, timeout=30)
            await until(lambda: len(server.by_account) == 1, what="slow reader dropped")
        sock.close()

    run_with_server(config(tmp_path, max_out_buffer=16 << 10, socket_buffer=8 << 10), body)


def test_order_before_logon_and_bad_frames(tmp_path):
    async def body(server, host, port):
        for payload in (P.encode(P.NewOrder("o", 0, 1, 1, 6000)),
                        b"\x00\x00",
                        (P.MAX_FRAME + 1).to_bytes(2, "little") + b"x",
                        b"\x03\x00\xc1\xc1\xc1"):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
            msgs = P.FrameReader(P.SERVER).feed(data)
            assert len(msgs) == 1 and isinstance(msgs[0], P.Error), (payload, msgs)
            writer.close()
        assert server.failed is None

    run_with_server(config(tmp_path), body)


def test_logout_answers_what_came_before_it(tmp_path):
    async def body(server, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(P.encode(P.Logon("A001", "A001-test-token-0001", False)) + P.encode(
            P.NewOrder("o1", 0, Side.BUY, 10, 5900)) + P.encode(P.Logout()))
        data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
        writer.close()
        msgs = P.FrameReader(P.SERVER).feed(data)
        assert [type(m) for m in msgs] == [P.LogonAck, P.ExecutionReport]
        assert msgs[1].exec == ExecKind.ACCEPTED
        assert server.exchange.engine.best_bid() == (5900, 10)  # cancel-on-disconnect off

    run_with_server(config(tmp_path), body)


def test_set_clock_steps_a_simulated_day(tmp_path):
    from engine.rules import AM_CLOSE_US, DAY_CLOSE_US, DAY_US, PM_OPEN_US

    from .support import START

    day = START // DAY_US * DAY_US  # 2024-03-04; the server starts at 10:00

    async def body(server, host, port):
        async with Client(host, port, "A001", "A001-test-token-0001") as a, \
                Client(host, port, "OPS", "OPS-test-token-00000") as ops:
            block = await a.subscribe("CEA", Segment.BLOCK)
            ack = await a.set_clock(day + PM_OPEN_US)
            assert (ack.ok, ack.reason) == (False, GatewayReason.NOT_AUTHORIZED)
            for bad in (day + 9 * 3_600_000_000, 2**63 - 1, -1):  # backwards, far, negative
                ack = await ops.set_clock(bad)
                assert (ack.ok, ack.reason) == (False, GatewayReason.BAD_VALUE), bad
            r = await a.place("b1", "CEA", Side.BUY, 100_000, 6000)  # block: 13:00 only
            assert (r.exec, r.reason) == (ExecKind.REJECTED, Reason.MARKET_CLOSED)
            await a.place("r1", "CEA", Side.BUY, 10, 5900)
            assert (await ops.set_clock(day + AM_CLOSE_US + 60_000_000)).ok  # lunch
            r = await a.place("l1", "CEA", Side.BUY, 10, 5900)
            assert (r.exec, r.reason) == (ExecKind.REJECTED, Reason.MARKET_CLOSED)
            assert (await ops.set_clock(day + PM_OPEN_US)).ok
            await until(lambda: block.status == Status.OPEN, what="block segment open")
            r = await a.place("b2", "CEA", Side.BUY, 100_000, 6000)
            assert r.exec == ExecKind.ACCEPTED and r.segment == Segment.BLOCK
            assert r.ts_us >= day + PM_OPEN_US
            # past 15:00: the day closes at once, orders expire, the clock goes to the next
            # trading morning (2024-03-05 09:30)
            assert (await ops.set_clock(day + DAY_CLOSE_US)).ok
            await until(lambda: block.summaries, what="day summary")
            await until(lambda: a.reports and any(
                x.exec == ExecKind.EXPIRED and x.cl_ord_id == "b2" for x in a.reports))
            assert server.clock.now() >= day + DAY_US + 9 * 3_600_000_000 + 30 * 60_000_000

    run_with_server(config(tmp_path), body)


def test_client_batch_path(tmp_path):
    """Orders built in NumPy and sent as frames; reports handed over as arrays, one per read,
    with no Python object per report; an awaited order alongside still gets its report."""
    n = 5_000

    async def body(server, host, port):
        batches = []
        async with Client(host, port, "A001", "A001-test-token-0001",
                          on_reports=batches.append) as a:
            a.keep_reports = False
            f = P.order_frames(n)
            f["cl_ord_id"] = np.char.add(b"k", np.arange(n).astype("S8"))
            f["instrument"] = a.instrument_id("CEA")
            f["side"], f["qty"], f["price"] = Side.BUY, 1, 5800 + np.arange(n) % 100
            f["qty"][7] = 0  # one INVALID_QTY among them
            a.send_frames(f)
            r = await a.place("awaited", "CEA", Side.BUY, 2, 5700)
            assert r.exec == ExecKind.ACCEPTED
            await until(lambda: sum(len(b) for b in batches) == n + 1)
            rows = np.concatenate(batches)
            assert len(batches) < n // 10  # many reports a read
            assert rows["cl_ord_id"][:n].tolist() == f["cl_ord_id"].tolist()
            assert (rows["exec"][:n] == ExecKind.ACCEPTED).sum() == n - 1
            assert (rows["exec"][7], rows["reason"][7]) == (ExecKind.REJECTED, Reason.INVALID_QTY)
            assert a.reports == []  # keep_reports off: no objects kept
            with pytest.raises(ValueError, match="cl_ord_id"):
                await a.place("not an id", "CEA", Side.BUY, 1, 5700)

    run_with_server(config(tmp_path), body)
