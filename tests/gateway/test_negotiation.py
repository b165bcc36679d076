"""Negotiated block agreements (issue 20, docs/rules.md §3b) through ``cea serve``'s native
protocol: BlockQuote / BlockCounter / BlockAccept / BlockWithdraw sequenced with the orders,
the parties' QuoteReports in their report streams, the acceptance's FILLs and MdTrade, the
anonymous block quote board (QuoteBoardRequest / MdQuotes, Subscribe(quotes=True)), every
reject reason, reservations, expiry at 15:00, bad messages, and a negotiation across a
SIGKILL and restart.
"""

from __future__ import annotations

import asyncio
import os
import signal

import msgspec
import pytest

from engine.codes import Reason, Segment, Side
from gateway import protocol as P
from gateway.client import Client
from gateway.journal import rebuild
from gateway.protocol import ExecKind, GatewayReason, QuoteEvent, QuoteFlag

from ..procs import kill_group
from .support import RICH, START, TOKENS, config, run_with_server, start_server_process, until

X = ExecKind
Q = QuoteEvent
HOUR = 3_600_000_000
PM = START + 3 * HOUR + HOUR // 2  # 13:30: the BLOCK segment's session
BIG = 150_000  # t: a block quantity


def quotes_of(client: Client, number: int) -> list[P.QuoteReport]:
    return [r for r in client.quote_reports if r.quote_no == number]


async def afternoon(ops: Client) -> None:
    assert (await ops.set_clock(PM)).ok


async def holding(client: Client) -> tuple[int, int]:
    """(cash reserved, allowances reserved) of the client's account."""
    b = await client.balance()
    return b.cash_reserved, b.holdings[0][2]


def test_messages_layout_and_hex():
    report = P.QuoteReport(Q.QUOTED, 7, "q1", 1, 0, Side.SELL, QuoteFlag.MAKER | QuoteFlag.BY_YOU,
                           5900, BIG, 0, 3)
    frame = P.encode(report)
    assert len(frame) == P.QUOTE_REPORT.itemsize == P.EXECUTION_REPORT.itemsize == 73
    assert frame[:9].hex(" ") == "47 00 24 01 00 02 03 00 00"
    assert frame[9:17] == (7).to_bytes(8, "little") and frame[17:19] == b"q1"
    assert frame[-8:] == (3).to_bytes(8, "little")  # report_seq last, as in ExecutionReport
    assert P.FrameReader(P.SERVER).feed(frame) == [report]
    assert report.maker and report.by_you and not report.public
    row = P.QUOTE_REPORT
    assert [row.fields[k][1] for k in ("quote_no", "cl_ord_id", "ts_us", "price", "qty",
                                       "trade_id", "report_seq")] == [9, 17, 37, 45, 53, 57, 65]
    assert (P.MsgType.BLOCK_QUOTE, P.MsgType.BLOCK_COUNTER, P.MsgType.BLOCK_ACCEPT,
            P.MsgType.BLOCK_WITHDRAW, P.MsgType.NEGOTIATIONS_REQUEST,
            P.MsgType.QUOTE_BOARD_REQUEST) == (50, 51, 52, 53, 54, 55)
    assert (P.MsgType.QUOTE_REPORT, P.MsgType.MD_QUOTES, P.MsgType.NEGOTIATIONS) == (36, 46, 47)
    assert P.encode(P.BlockQuote("q1", "CEA", 2, BIG, 5900, "A002")).hex(" ") == (
        "17 00 32 96 a2 71 31 a3 43 45 41 02 ce 00 02 49 f0 cd 17 0c a4 41 30 30 32")
    assert P.encode(P.BlockAccept("a1", 7)).hex(" ") == "08 00 34 94 a2 61 31 07 c0 00"
    for msg in (P.BlockQuote("q1", "CEA", 2, BIG, 5900), P.BlockCounter("c", 7, None, BIG),
                P.BlockAccept("a", 7, 5900, BIG), P.BlockWithdraw("w", 7),
                P.NegotiationsRequest(), P.QuoteBoardRequest("CEA")):
        assert P.FrameReader(P.CLIENT).feed(P.encode(msg)) == [msg]


def test_addressed_negotiation_quote_counter_accept(tmp_path):
    async def body(server, host, port):
        md: list = []
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b, \
                Client(host, port, "A003", TOKENS["A003"], on_market_data=md.append) as c, \
                Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            # a listed trade first: trade id 1
            await a.place("s0", "CEA", Side.SELL, 10, 6000)
            await b.place("b0", "CEA", Side.BUY, 10, 6000)
            await until(lambda: len(a.reports) == 2)
            assert a.reports[1].trade_id == 1
            await afternoon(ops)
            block = await c.subscribe("CEA", 1, quotes=True)
            # A001 offers 150,000 t at 59.00 to A002
            r = await a.block_quote("deal1", "CEA", Side.SELL, BIG, 5900, "A002")
            assert (r.event, r.cl_ord_id, r.side, r.price, r.qty, r.flags, r.trade_id) == (
                Q.QUOTED, "deal1", Side.SELL, 5900, BIG, QuoteFlag.MAKER | QuoteFlag.BY_YOU, 0)
            no = r.quote_no
            assert no == server.exchange.order_handle("A001", "deal1")  # the quote's handle
            await until(lambda: len(quotes_of(b, no)) == 1)
            seen = quotes_of(b, no)[0]
            assert (seen.event, seen.cl_ord_id, seen.side, seen.price, seen.qty, seen.flags) == (
                Q.QUOTED, "", Side.BUY, 5900, BIG, 0)  # not the maker, not by it, addressed
            # each party's view of the negotiation: the other party named
            (mine,) = (await a.negotiations()).quotes
            (theirs,) = (await b.negotiations()).quotes
            assert (mine.quote_no, mine.side, mine.maker, mine.by_you, mine.other,
                    mine.cl_ord_id) == (no, Side.SELL, True, True, "A002", "deal1")
            assert (theirs.quote_no, theirs.side, theirs.maker, theirs.by_you, theirs.other,
                    theirs.cl_ord_id) == (no, Side.BUY, False, False, "A001", "")
            # A002 counters at 58.00, then A001 accepts
            r = await b.block_counter("c1", no, price=5800)
            assert (r.event, r.price, r.qty, r.flags) == (Q.QUOTED, 5800, BIG, QuoteFlag.BY_YOU)
            await until(lambda: len(quotes_of(a, no)) == 2)
            assert quotes_of(a, no)[1].flags == QuoteFlag.MAKER  # by the other party
            done = await a.block_accept("ok1", no, 5800, BIG)
            assert (done.event, done.price, done.qty, done.trade_id, done.cl_ord_id) == (
                Q.ACCEPTED, 5800, BIG, 2, "deal1")  # consecutive with the listed trade
            await until(lambda: len(quotes_of(b, no)) == 3)
            fa = [x for x in a.reports if x.segment == Segment.BLOCK]
            fb = [x for x in b.reports if x.segment == Segment.BLOCK]
            assert [(x.exec, x.cl_ord_id, x.side, x.price, x.qty, x.filled, x.open, x.trade_id)
                    for x in fa] == [(X.FILL, "deal1", Side.SELL, 5800, BIG, BIG, 0, 2)]
            assert [(x.exec, x.cl_ord_id, x.side, x.price, x.qty, x.filled, x.open, x.trade_id)
                    for x in fb] == [(X.FILL, "", Side.BUY, 5800, BIG, BIG, 0, 2)]
            assert fa[0].report_seq + 1 == done.report_seq  # the FILL, then the QuoteReport
            end = quotes_of(b, no)[2]
            assert (end.event, end.trade_id, end.flags) == (Q.ACCEPTED, 2, 0)
            # the report streams numbered 1, 2, ... across both kinds, no gap
            for client in (a, b):
                seqs = sorted([x.report_seq for x in client.reports + client.quote_reports])
                assert seqs == list(range(1, len(seqs) + 1)) and client.report_gaps == 0
            # the trade on the BLOCK channel, anonymous; never on the board
            await until(lambda: block.trades)
            t = block.trades[-1]
            assert (t.segment, t.price, t.qty, t.trade_id, t.aggressor) == (
                Segment.BLOCK, 5800, BIG, 2, Side.SELL)  # the acceptor (A001, seller)
            assert all(not m.quotes for m in md if isinstance(m, P.MdQuotes))
            # the third party saw no report of it, and has no negotiation
            assert c.quote_reports == [] and (await c.negotiations()).quotes == []
            assert (await a.negotiations()).quotes == []
            # settled: A002 paid 150,000 x 58.00, got the allowances (sellable tomorrow)
            bal = await b.balance()
            assert bal.cash == RICH - 6000 * 10 - 5800 * BIG and bal.cash_reserved == 0
            assert bal.holdings[0][3] == BIG + 10
            day = server.exchange.engine.day()[0]
            assert (day.block_volume, day.block_turnover) == (BIG, 5800 * BIG)

    run_with_server(config(tmp_path), body)


def test_public_quote_board_is_anonymous_and_follows_the_quotes(tmp_path):
    async def body(server, host, port):
        seen: list = []
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b, \
                Client(host, port, "A003", TOKENS["A003"], on_market_data=seen.append) as c, \
                Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            await afternoon(ops)
            book = await c.subscribe("CEA", 1, quotes=True)
            assert book.quotes is not None and book.quotes.quotes == []
            q1 = (await a.block_quote("SecretQuoteA", "CEA", Side.SELL, BIG, 5900)).quote_no
            q2 = (await a.block_quote("SecretQuoteB", "CEA", Side.BUY, 200_000, 5700)).quote_no
            q3 = (await a.block_quote("SecretQuoteC", "CEA", Side.SELL, 300_000, 6100)).quote_no
            want = [(q1, Side.SELL, 5900, BIG), (q2, Side.BUY, 5700, 200_000),
                    (q3, Side.SELL, 6100, 300_000)]
            await until(lambda: book.quotes.quotes == want)
            board = await b.quote_board("CEA")
            assert (board.instrument, board.instrument_id, board.quotes) == ("CEA", 0, want)
            assert board.seq == book.seq  # as of the BLOCK channel's number
            r = await a.block_quote("flag", "CEA", Side.SELL, BIG, 5900)
            assert r.flags == QuoteFlag.MAKER | QuoteFlag.BY_YOU | QuoteFlag.PUBLIC
            assert (await a.block_withdraw("w0", r.quote_no)).event == Q.WITHDRAWN
            # a public quote is not a negotiation of the others
            assert (await b.negotiations()).quotes == []
            # countered by A002: it leaves the board; A002 is now the counterparty
            r = await b.block_counter("c1", q1, qty=120_000)
            assert (r.event, r.qty, r.flags) == (Q.QUOTED, 120_000, QuoteFlag.BY_YOU)
            await until(lambda: [x[0] for x in book.quotes.quotes] == [q2, q3])
            (neg,) = (await b.negotiations()).quotes
            assert (neg.quote_no, neg.other, neg.side) == (q1, "A001", Side.BUY)
            # now a third account cannot act on it
            assert (await c.block_accept("x1", q1)).reason == Reason.UNKNOWN_QUOTE
            # accepted straight from the board by A003: a trade, off the board
            done = await c.block_accept("take2", q2, 5700, 200_000)
            assert (done.event, done.flags, done.side) == (Q.ACCEPTED, QuoteFlag.BY_YOU,
                                                          Side.SELL)
            fills = [x for x in c.reports if x.exec == X.FILL]
            assert [(x.cl_ord_id, x.side, x.qty) for x in fills] == [("take2", Side.SELL,
                                                                      200_000)]
            await until(lambda: [x[0] for x in book.quotes.quotes] == [q3])
            # withdrawn by its maker: the board is empty
            assert (await a.block_withdraw("w1", q3)).event == Q.WITHDRAWN
            await until(lambda: book.quotes.quotes == [])
            # nothing of the board ever named an account or a quote id
            frames = [P.encode(m) for m in seen if isinstance(m, P.MdQuotes)] + [P.encode(board)]
            assert len(frames) >= 5
            for frame in frames:
                for secret in (b"A001", b"A002", b"Secret"):
                    assert secret not in frame
            refused = await b.quote_board("NOPE")
            assert (refused.command, refused.ok, refused.reason) == (
                "QuoteBoardRequest", False, GatewayReason.UNKNOWN_INSTRUMENT)

    run_with_server(config(tmp_path), body)


def test_a_third_party_cannot_see_or_act_on_an_addressed_negotiation(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b, \
                Client(host, port, "A003", TOKENS["A003"]) as c, \
                Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            await afternoon(ops)
            book = await c.subscribe("CEA", 1, quotes=True)
            no = (await a.block_quote("p1", "CEA", Side.BUY, BIG, 5900, "A002")).quote_no
            before = await holding(a)
            for reject in (await c.block_counter("x1", no, price=5950),
                           await c.block_accept("x2", no),
                           await c.block_withdraw("x3", no)):
                assert (reject.exec, reject.reason, reject.cl_ord_id[:1]) == (
                    X.REJECTED, Reason.UNKNOWN_QUOTE, "x")
                assert reject.report_seq > 0  # the engine's reject, in c's own stream
            # exactly as for a number no quote has
            assert (await c.block_accept("x4", 10**9)).reason == Reason.UNKNOWN_QUOTE
            assert (await c.block_accept("x5", -1)).reason == Reason.UNKNOWN_QUOTE
            assert c.quote_reports == [] and (await c.negotiations()).quotes == []
            assert book.quotes.quotes == [] and (await c.quote_board("CEA")).quotes == []
            # the negotiation is untouched: same terms, same reservation
            (neg,) = (await a.negotiations()).quotes
            assert (neg.price, neg.qty, neg.by_you) == (5900, BIG, True)
            assert await holding(a) == before == (5900 * BIG, 0)
            assert len(quotes_of(a, no)) == 1 and len(quotes_of(b, no)) == 1

    run_with_server(config(tmp_path), body)


def test_every_reject_reason_reaches_the_client_and_changes_nothing(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b, \
                Client(host, port, "A004", TOKENS["A004"]) as poor, \
                Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            # the morning: the BLOCK segment is not in session
            r = await a.block_quote("am", "CEA", Side.SELL, BIG, 5900, "A002")
            assert (r.exec, r.reason, r.cl_ord_id) == (X.REJECTED, Reason.MARKET_CLOSED, "am")
            await afternoon(ops)
            no = (await a.block_quote("q1", "CEA", Side.SELL, BIG, 5900, "A002")).quote_no
            no2 = (await a.block_quote("q2", "CEA", Side.SELL, BIG, 5900, "A004")).quote_no
            state = (await a.negotiations(), await b.negotiations(), await holding(a),
                     await holding(b), await a.balance(), await b.balance())

            async def quote(clid, side=Side.SELL, qty=BIG, price=5900, to="A002",
                            instrument="CEA", client=a):
                r = await client.block_quote(clid, instrument, side, qty, price, to)
                assert r.exec == X.REJECTED and r.cl_ord_id == clid, r
                return r.reason

            assert await quote("q1") == Reason.DUPLICATE_ORDER_ID
            assert await quote("am") == Reason.DUPLICATE_ORDER_ID  # used up by its reject
            assert await quote("r1", side=3) == Reason.MALFORMED
            assert await quote("r2", instrument="NOPE") == Reason.MALFORMED
            assert await quote("r3", price=None) == Reason.MALFORMED
            assert await quote("r4", qty=0) == Reason.INVALID_QTY
            assert await quote("r5", qty=10**8 + 1) == Reason.INVALID_QTY
            assert await quote("r6", qty=99_999) == Reason.INVALID_QTY  # under the block size
            assert await quote("r7", price=0) == Reason.INVALID_PRICE
            assert await quote("r8", price=-5) == Reason.INVALID_PRICE
            assert await quote("r9", price=7801) == Reason.PRICE_OUTSIDE_BAND  # 60.00 + 30 %
            assert await quote("r10", price=2**64 - 1) == Reason.PRICE_OUTSIDE_BAND
            assert await quote("r11", to="A001") == Reason.UNKNOWN_COUNTERPARTY  # itself
            assert await quote("r12", to="NOBODY") == Reason.UNKNOWN_COUNTERPARTY
            assert await quote("r13", to="OPS") == Reason.UNKNOWN_COUNTERPARTY  # no balances
            assert await quote("p1", side=Side.BUY, client=poor) == Reason.INSUFFICIENT_FUNDS
            assert await quote("p2", client=poor) == Reason.INSUFFICIENT_ALLOWANCES
            assert await quote("o1", client=ops, to="") == Reason.UNKNOWN_ACCOUNT
            with pytest.raises(ValueError):  # the client refuses it before sending
                await a.block_quote("bad id", "CEA", Side.SELL, BIG, 5900)
            a.send(P.BlockQuote("bad id", "CEA", Side.SELL, BIG, 5900))  # sent anyway
            await until(lambda: any(r.cl_ord_id == "bad id" for r in a.reports))
            bad = [r for r in a.reports if r.cl_ord_id == "bad id"][0]
            assert (bad.exec, bad.reason) == (X.REJECTED, Reason.MALFORMED)
            assert server.exchange.order_handle("A001", "r1") >= 0  # ids used up

            async def on(call, *args, **kw):
                r = await call(*args, **kw)
                assert r.exec == X.REJECTED, r
                return r.reason

            assert await on(a.block_accept, "n1", no) == Reason.NOT_YOUR_TURN
            assert await on(b.block_accept, "t1", no, 5800) == Reason.TERMS_CHANGED
            assert await on(b.block_accept, "t2", no, 5900, BIG + 1) == Reason.TERMS_CHANGED
            assert await on(b.block_counter, "m1", no) == Reason.MALFORMED  # no new terms
            assert await on(b.block_counter, "bad ref", no, 5800) == Reason.MALFORMED
            assert await on(b.block_counter, "i1", no, qty=50_000) == Reason.INVALID_QTY
            assert await on(b.block_counter, "i2", no, qty=-1) == Reason.INVALID_QTY
            assert await on(b.block_counter, "i3", no, price=0) == Reason.INVALID_PRICE
            assert await on(b.block_counter, "i4", no, price=4199) == Reason.PRICE_OUTSIDE_BAND
            assert await on(b.block_withdraw, "w1", no + 1000) == Reason.UNKNOWN_QUOTE
            # a counterparty that cannot pay: its counter and its acceptance are refused
            assert await on(poor.block_counter, "f1", no2, price=5800) == \
                Reason.INSUFFICIENT_FUNDS
            assert await on(poor.block_accept, "f2", no2) == Reason.INSUFFICIENT_FUNDS
            assert await holding(poor) == (0, 0)
            # halted: the gateway's reject, not in the stream
            assert (await ops.halt("CEA")).ok
            r = await b.block_accept("h1", no)
            assert (r.exec, r.reason, r.report_seq, r.cl_ord_id) == (
                X.REJECTED, GatewayReason.INSTRUMENT_HALTED, 0, "h1")
            r = await a.block_quote("h2", "CEA", Side.SELL, BIG, 5900)
            assert r.reason == GatewayReason.INSTRUMENT_HALTED
            assert server.exchange.order_handle("A001", "h2") < 0  # its id not used up
            assert (await ops.resume("CEA")).ok
            # nothing changed: the same negotiation, reservations and balances
            assert (await a.negotiations(), await b.negotiations(), await holding(a),
                    await holding(b), await a.balance(), await b.balance()) == state
            assert len(quotes_of(a, no)) == 1 and len(quotes_of(b, no)) == 1
            assert len(quotes_of(a, no2)) == 1 and len(quotes_of(poor, no2)) == 1
            # past the day: the quotes expired, and the simulated clock moved on to the next
            # trading morning (09:30, before the BLOCK session): MARKET_CLOSED first, then
            # a withdrawal (allowed all day) finds no quote
            assert (await ops.set_clock(PM + 5 * 24 * HOUR)).ok
            assert await on(b.block_accept, "c1", no) == Reason.MARKET_CLOSED
            assert await on(a.block_withdraw, "c2", no) == Reason.UNKNOWN_QUOTE

    run_with_server(config(tmp_path), body)


def test_reservations_follow_the_terms_and_come_back(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b, \
                Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            await afternoon(ops)
            no = (await a.block_quote("buy1", "CEA", Side.BUY, BIG, 5900, "A002")).quote_no
            assert await holding(a) == (5900 * BIG, 0) and await holding(b) == (0, 0)
            await b.block_counter("c1", no, price=6000, qty=200_000)  # B reserves its sale
            assert await holding(b) == (0, 200_000) and await holding(a) == (5900 * BIG, 0)
            await a.block_counter("c2", no, price=5950)  # A's reservation moves
            assert await holding(a) == (5950 * 200_000, 0)
            assert (await b.block_withdraw("w1", no)).event == Q.WITHDRAWN
            await until(lambda: quotes_of(a, no)[-1].event == Q.WITHDRAWN)
            assert quotes_of(a, no)[-1].flags == QuoteFlag.MAKER  # ended by the other party
            assert await holding(a) == (0, 0) and await holding(b) == (0, 0)
            # accepted: both reservations settle, nothing stays reserved
            no = (await a.block_quote("buy2", "CEA", Side.BUY, BIG, 5900, "A002")).quote_no
            await b.block_accept("ok", no)
            assert await holding(a) == (0, 0) and await holding(b) == (0, 0)
            ba, bb = await a.balance(), await b.balance()
            assert ba.cash == RICH - 5900 * BIG and ba.holdings[0][1:4] == (10**7 + BIG, 0, BIG)
            assert bb.cash == RICH + 5900 * BIG and bb.holdings[0][1] == 10**7 - BIG

    run_with_server(config(tmp_path), body)


def test_quotes_expire_at_15_00(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b, \
                Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            await afternoon(ops)
            book = await b.subscribe("CEA", 1, quotes=True)
            n1 = (await a.block_quote("e1", "CEA", Side.SELL, BIG, 5900, "A002")).quote_no
            n2 = (await a.block_quote("e2", "CEA", Side.BUY, BIG, 5800)).quote_no
            await b.block_counter("c", n1, price=5850)
            await until(lambda: len(book.quotes.quotes) == 1)
            assert await holding(a) == (5800 * BIG, BIG) and await holding(b) == (5850 * BIG, 0)
            assert (await ops.set_clock(START + 5 * HOUR + 1)).ok  # 15:00 passed
            await until(lambda: len(quotes_of(b, n1)) == 3 and len(quotes_of(a, n2)) == 2)
            for r in (quotes_of(a, n1)[-1], quotes_of(b, n1)[-1], quotes_of(a, n2)[-1]):
                assert r.event == Q.EXPIRED and not r.by_you
                assert r.ts_us == START + 5 * HOUR  # 15:00 of the day
            assert quotes_of(a, n2)[-1].public and not quotes_of(a, n1)[-1].public
            await until(lambda: book.quotes.quotes == [])
            assert (await a.negotiations()).quotes == [] == (await b.negotiations()).quotes
            assert await holding(a) == (0, 0) and await holding(b) == (0, 0)

    run_with_server(config(tmp_path), body)


def _framed(kind: int, body: bytes) -> bytes:
    return (len(body) + 1).to_bytes(2, "little") + bytes([kind]) + body


def test_bad_negotiation_messages_get_clear_answers(tmp_path):
    """A body that does not decode as its message, or a server-to-client type: the frames
    before it are answered, then Error(PROTOCOL_ERROR) naming the problem, and the close."""
    pack = msgspec.msgpack.encode
    cases = [
        (_framed(P.MsgType.BLOCK_QUOTE, pack(["q9"])), "undecodable BlockQuote: "),
        (_framed(P.MsgType.BLOCK_COUNTER, pack(["c", "x"])),
         "undecodable BlockCounter: Expected `int`, got `str`"),
        (_framed(P.MsgType.BLOCK_ACCEPT, pack(["a" * 21, 1])), "undecodable BlockAccept: "),
        (_framed(P.MsgType.BLOCK_WITHDRAW, pack([1, 1])), "undecodable BlockWithdraw: "),
        (P.encode(P.QuoteReport(Q.QUOTED, 1, "", 0, 0, 1, 0, 1, 1)), "unknown message type 36"),
    ]

    async def body(server, host, port):
        async with Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            await afternoon(ops)
        for frame, text in cases:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                good = P.encode(P.BlockQuote("g" + str(len(text)), "CEA", 1, BIG, 5900))
                writer.write(P.encode(P.Logon("A003", TOKENS["A003"])) + good + frame
                             + P.encode(P.BlockQuote("never", "CEA", 1, BIG, 5900)))
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
            assert [type(m) for m in msgs[1:-1]] == [P.QuoteReport]  # the good one, answered
            err = msgs[-1]
            assert isinstance(err, P.Error) and err.reason == GatewayReason.PROTOCOL_ERROR
            assert err.text.startswith(text), err.text
            assert server.exchange.order_handle("A003", "never") < 0

    run_with_server(config(tmp_path), body)


def test_throttled_negotiation_commands_get_an_admin_ack(tmp_path):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a:
            for i in range(30):
                a.send(P.BlockQuote(f"q{i}", "CEA", Side.SELL, BIG, 5900))
            r = await a.block_quote("last", "CEA", Side.SELL, BIG, 5900)
            assert (r.command, r.ok, r.reason) == ("BlockQuote", False, GatewayReason.THROTTLED)
            assert server.exchange.order_handle("A001", "last") < 0

    run_with_server(config(tmp_path, rate_limit=20, burst=10), body)


@pytest.mark.parametrize("impl", ["numba", "reference"])
def test_journal_replay_of_negotiations_matches_the_live_state(tmp_path, impl):
    async def body(server, host, port):
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b, \
                Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            await afternoon(ops)
            n1 = (await a.block_quote("q1", "CEA", Side.SELL, BIG, 5900, "A002")).quote_no
            n2 = (await a.block_quote("q2", "CEA", Side.BUY, BIG, 5800)).quote_no
            await b.block_counter("c1", n1, price=5850)
            await b.block_accept("x", n1)  # NOT_YOUR_TURN
            await a.block_accept("a1", n1)
            await b.block_counter("c2", n2, qty=200_000)
            await b.place("o1", "CEA", Side.BUY, 10, 6000)
            return server.exchange.state_hash(), a.last_report_seq, b.last_report_seq

    live, _, _ = run_with_server(config(tmp_path, impl=impl), body)
    replay = rebuild(tmp_path / "data", impl=impl, use_snapshot=False)
    assert replay.state_hash == live
    (q,) = replay.exchange.engine.book.negotiations.live.values()
    assert (q.price, q.qty, q.counterparty) == (5800, 200_000,
                                                replay.exchange.account_handle("A002"))


def _files(tmp_path) -> list[str]:
    (tmp_path / "tokens.csv").write_text(
        "account,token\n" + "".join(f"{a},{TOKENS[a]}\n" for a in ("A001", "A002", "OPS")))
    (tmp_path / "accounts.csv").write_text(
        "account,type,cash,CEA\nA001,COVERED_ENTITY,100000000000.00,0\n"
        "A002,COVERED_ENTITY,0.00,2000000\n")
    return ["--tokens", str(tmp_path / "tokens.csv"), "--accounts",
            str(tmp_path / "accounts.csv"), "--start", "2024-03-04T13:30:00"]


def test_negotiation_survives_sigkill_and_restart(tmp_path):
    """A negotiation in progress (quoted, countered), the server killed with SIGKILL: the
    restarted exchange has the quote live with the same terms, whose turn it is and the
    same reservations; the stream resumes with nothing missed; the acceptance then trades."""
    data, args = tmp_path / "data", _files(tmp_path)
    proc, port, _ = start_server_process(data, *args)
    try:
        async def before():
            async with Client("127.0.0.1", port, "A001", TOKENS["A001"]) as a, \
                    Client("127.0.0.1", port, "A002", TOKENS["A002"]) as b:
                no = (await a.block_quote("q1", "CEA", Side.BUY, BIG, 5900, "A002")).quote_no
                await b.block_counter("c1", no, price=5950, qty=200_000)
                await until(lambda: len(quotes_of(a, no)) == 2)
                return (no, (await a.negotiations()).quotes, await holding(a),
                        await holding(b), a.last_report_seq, b.last_report_seq)

        no, negs, held_a, held_b, last_a, last_b = asyncio.run(before())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    assert held_a == (5900 * BIG, 0) and held_b == (0, 200_000)
    replay = rebuild(data, use_snapshot=False)
    proc, port, out = start_server_process(data, *args)
    try:
        assert f"state hash {replay.state_hash}" in out, out

        async def after():
            async with Client("127.0.0.1", port, "A001", TOKENS["A001"],
                              report_seq=last_a) as a, \
                    Client("127.0.0.1", port, "A002", TOKENS["A002"], report_seq=last_b) as b:
                await asyncio.sleep(0.2)
                assert a.quote_reports == [] and b.quote_reports == []  # nothing twice
                assert (await a.negotiations()).quotes == negs
                assert await holding(a) == held_a and await holding(b) == held_b
                assert (await b.block_accept("x", no)).reason == Reason.NOT_YOUR_TURN
                done = await a.block_accept("ok", no, 5950, 200_000)
                assert (done.event, done.trade_id) == (Q.ACCEPTED, 1)
                await until(lambda: any(r.exec == X.FILL for r in b.reports))
                return await a.balance(), await b.balance()

        ba, bb = asyncio.run(after())
    finally:
        kill_group(proc)
    assert ba.cash == 10**13 - 5950 * 200_000 and ba.cash_reserved == 0
    assert bb.cash == 5950 * 200_000 and bb.holdings[0][1:3] == (2_000_000 - 200_000, 0)
