"""Negotiated block agreements through the FIX acceptor (docs/fix.md, "Negotiated block
agreements"): Quote (S) -> BlockQuote, QuoteResponse (AJ) -> BlockCounter / BlockAccept /
BlockWithdraw, QuoteCancel (Z) -> BlockWithdraw, every QuoteReport a QuoteStatusReport (AI),
the agreement's fills as ExecutionReports, rejects with the reason in Text (58), expiry at
15:00, QuoteStatusRequest (a) for the live negotiations, and the block quote board as a
MarketDataRequest (336=BLOCK, 625=BOARD). Over a real server, with FIX sessions
(tests/gateway/fixpeer.py) and native clients on the other side."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from engine.codes import Side
from gateway import protocol as P
from gateway.client import BatchReader, Client
from gateway.fix import FixSession, FixStore
from gateway.fixcodec import FixReader

from .fixpeer import FixPeer
from .support import START, TOKENS, until
from .test_fix import NOW, run

HOUR = 3_600_000_000
PM = START + 3 * HOUR + HOUR // 2  # 13:30: the BLOCK segment's session
BIG = 150_000


async def logon(fhost, fport, account) -> FixPeer:
    fix = FixPeer(fhost, fport, account)
    await fix.connect()
    await fix.logon(TOKENS[account])
    return fix


def conforms(server, *accounts) -> int:
    """Every message the acceptor sent the accounts validates against QuickFIX's FIX 4.4
    data dictionary (user-defined tags 8014-8017 allowed); how many. Skipped without
    QuickFIX (``bash tests/setup_quickfix.sh``); in CI (``CI=true``) that fails instead, as
    tests/gateway/test_fix_quickfix.py does."""
    path = Path(sys.prefix) / "share" / "quickfix" / "FIX44.xml"
    try:
        import quickfix as qf
    except ImportError:
        qf = None
    if qf is None or not path.exists():
        why = "QuickFIX or its FIX 4.4 dictionary is not installed (bash tests/setup_quickfix.sh)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    dd = qf.DataDictionary(str(path))
    dd.checkUserDefinedFields(False)
    n = 0
    for account in accounts:
        data = (server.data_dir / "fix" / f"{FixStore.stem(account)}.msgs").read_bytes()
        pos = 0
        while pos < len(data):
            nl = data.index(b"\n", pos)
            _, size = map(int, data[pos:nl].split())
            raw = data[nl + 1:nl + 1 + size]
            pos = nl + 2 + size
            try:
                dd.validate(qf.Message(raw.decode("latin-1"), dd, False))
            except Exception as exc:  # noqa: BLE001 (QuickFIX's own exception types)
                raise AssertionError(f"{exc}: {raw!r}") from None
            n += 1
    return n


def quote(qid, side="2", qty=BIG, price="59.00", to=None, extra=()):
    body = [(117, qid), (55, "CEA"), (54, side), (38, qty), (44, price), (60, NOW)]
    if to is not None:
        body += [(453, 1), (448, to), (447, "D"), (452, 17)]
    return body + list(extra)


def response(ref, number, kind, extra=()):
    return [(693, ref), (117, number), (694, kind), (60, NOW)] + list(extra)


def board_request(req, kind=1):
    return [(262, req), (263, kind), (264, 0), (146, 1), (55, "CEA"), (386, 1),
            (336, "BLOCK"), (625, "BOARD")]


def board(msg) -> list[tuple]:
    """The entries of a board W: (type, price, qty, quote number)."""
    out, cur = [], None
    for tag, value in msg.fields:
        if tag == 269:
            cur = {}
            out.append(cur)
        if cur is not None:
            cur[tag] = value
    return [(e[269], e[270], e[271], e[299]) for e in out]


def test_addressed_quote_counter_accept_between_two_fix_sessions(tmp_path):
    async def body(server, fhost, fport, host, port):
        async with Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            assert (await ops.set_clock(PM)).ok
        a = await logon(fhost, fport, "A001")
        b = await logon(fhost, fport, "A002")
        # A001 offers 150,000 t at 59.00 to A002 (Parties: PartyRole 17 contra firm)
        a.send("S", quote("deal1", to="A002", extra=[(131, "rfq7"), (336, "BLOCK")]))
        mine = await a.expect("AI")
        no = mine.get(117)
        assert no.isdigit() and int(no) == server.exchange.order_handle("A001", "deal1")
        assert (mine.get(297), mine.get(58), mine.get(131), mine.get(8014), mine.get(54),
                mine.get(38), mine.get(44), mine.get(336), mine.get(8015), mine.get(8016),
                mine.get(8017)) == ("10", "QUOTED", "rfq7", "deal1", "2", str(BIG), "59.00",
                                    "BLOCK", "Y", "Y", "N")
        assert mine.get(60).startswith("20240304-05:30:0")  # 13:30 Beijing time, in UTC
        theirs = await b.expect("AI")
        assert (theirs.get(117), theirs.get(297), theirs.get(54), theirs.get(44),
                theirs.get(8014), theirs.get(8015), theirs.get(8016)) == (
            no, "10", "1", "59.00", None, "N", "N")  # its own side; not its terms
        # A002 counters at 58.00 (QuoteRespType 2)
        b.send("AJ", response("c1", no, "2", [(44, "58.00")]))
        r = await b.expect("AI")
        assert (r.get(117), r.get(693), r.get(297), r.get(44), r.get(38), r.get(8016)) == (
            no, "c1", "10", "58.00", str(BIG), "Y")
        r = await a.expect("AI")
        assert (r.get(44), r.get(693), r.get(8015), r.get(8016)) == ("58.00", None, "Y", "N")
        # its own terms: not its turn; stale terms: TERMS_CHANGED; nothing changes
        b.send("AJ", response("x1", no, "1"))
        r = await b.expect("AI")
        assert (r.get(297), r.get(58), r.get(693), r.get(117)) == (
            "5", "NOT_YOUR_TURN", "x1", no)
        a.send("AJ", response("x2", no, "1", [(44, "59.00"), (38, BIG)]))
        r = await a.expect("AI")
        assert (r.get(297), r.get(58), r.get(693)) == ("5", "TERMS_CHANGED", "x2")
        # A001 accepts the counter (hit: QuoteRespType 1, stating the terms it saw)
        a.send("AJ", response("ok1", no, "1", [(44, "58.00"), (38, BIG)]))
        fill = await a.expect("8")
        assert (fill.get(37), fill.get(11), fill.get(150), fill.get(39), fill.get(54),
                fill.get(31), fill.get(32), fill.get(14), fill.get(151), fill.get(6),
                fill.get(336)) == (f"Q{no}", "deal1", "F", "2", "2", "58.00", str(BIG),
                                   str(BIG), "0", "58.0000", "BLOCK")
        done = await a.expect("AI")
        assert (done.get(297), done.get(58), done.get(693), done.get(8016)) == (
            "0", "ACCEPTED", "ok1", "Y")
        fill = await b.expect("8")
        # the counterparty that did not accept has no id of its own: the quote's number
        assert (fill.get(37), fill.get(11), fill.get(54), fill.get(31), fill.get(693)) == (
            f"Q{no}", no, "1", "58.00", None)
        done = await b.expect("AI")
        assert (done.get(297), done.get(8016), done.get(8015)) == ("0", "N", "N")
        assert not [m for m in await a.quiet(0.2) + await b.quiet(0.1) if m.msg_type != "0"]
        day = server.exchange.engine.day()[0]
        assert (day.block_volume, day.block_turnover) == (BIG, 5800 * BIG)
        # no live negotiation is left
        a.send("a", [(649, "qs1"), (55, "CEA")])
        r = await a.expect("AI")
        assert (r.get(649), r.get(297), r.get(117)) == ("qs1", "9", "NONE")
        assert conforms(server, "A001", "A002") >= 6

    run(tmp_path, body)


def test_public_quote_on_the_board_accepted_by_another_fix_session(tmp_path):
    async def body(server, fhost, fport, host, port):
        async with Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            assert (await ops.set_clock(PM)).ok
        a = await logon(fhost, fport, "A001")
        c = await logon(fhost, fport, "A003")
        c.send("V", board_request("bd"))
        w = await c.expect("W")
        assert (w.get(262), w.get(55), w.get(268)) == ("bd", "CEA", "0")
        # a public quote to buy, with BidPx / BidSize
        a.send("S", [(117, "SecretBuy"), (55, "CEA"), (54, "1"), (132, "57.00"),
                     (134, 200_000), (60, NOW)])
        r = await a.expect("AI")
        n1 = r.get(117)
        assert (r.get(297), r.get(8017), r.get(44), r.get(38)) == ("10", "Y", "57.00", "200000")
        w = await c.expect("W")
        assert board(w) == [("0", "57.00", "200000", n1)]
        assert all(v not in ("A001", "SecretBuy") for _, v in w.fields)
        a.send("S", [(117, "SecretSell"), (55, "CEA"), (54, "2"), (133, "61.00"),
                     (135, 300_000), (60, NOW)])
        n2 = (await a.expect("AI")).get(117)
        w = await c.expect("W")
        assert board(w) == [("0", "57.00", "200000", n1), ("1", "61.00", "300000", n2)]
        # a snapshot of the board (263=0) by another session, a native one's view agrees
        b = await logon(fhost, fport, "A002")
        b.send("V", board_request("once", kind=0))
        w = await b.expect("W")
        assert (w.get(262), board(w)) == ("once", [("0", "57.00", "200000", n1),
                                                   ("1", "61.00", "300000", n2)])
        # the board and the BLOCK levels in one request: a W each
        b.send("V", board_request("both", kind=0)[:-3] + [(386, 2), (336, "BLOCK"),
                                                          (625, "BOARD"), (336, "BLOCK")])
        got = [await b.expect("W") for _ in range(2)]
        assert sorted(len(board(m)) if m.has(299) else -1 for m in got) == [-1, 2]
        # A003 lifts the buy quote straight from the board: its fill carries its ref
        c.send("AJ", response("take1", n1, "1"))
        fill = await c.expect("8")
        assert (fill.get(11), fill.get(693), fill.get(54), fill.get(32), fill.get(31)) == (
            "take1", "take1", "2", "200000", "57.00")
        r = await c.expect("AI")
        assert (r.get(117), r.get(297), r.get(693), r.get(8016), r.get(8015)) == (
            n1, "0", "take1", "Y", "N")
        w = await c.expect("W")
        assert board(w) == [("1", "61.00", "300000", n2)]
        fill = await a.expect("8")
        assert (fill.get(11), fill.get(54), fill.get(32)) == ("SecretBuy", "1", "200000")
        r = await a.expect("AI")
        assert (r.get(297), r.get(8014), r.get(8016)) == ("0", "SecretBuy", "N")
        # the maker withdraws the other (QuoteCancel, QuoteReqID its ref)
        a.send("Z", [(131, "wd1"), (117, n2), (298, 1)])
        r = await a.expect("AI")
        assert (r.get(117), r.get(131), r.get(297), r.get(58), r.get(8016)) == (
            n2, "wd1", "6", "WITHDRAWN", "Y")
        w = await c.expect("W")
        assert board(w) == [] and w.get(268) == "0"
        # no more board updates after 263=2
        c.send("V", board_request("bd", kind=2))
        a.send("S", [(117, "later"), (55, "CEA"), (54, "2"), (44, "60.00"), (38, BIG),
                     (60, NOW)])
        await a.expect("AI")
        assert [m.msg_type for m in await c.quiet(0.3) if m.msg_type != "0"] == []
        assert conforms(server, "A001", "A002", "A003") >= 6

    run(tmp_path, body)


def test_rejects_reach_the_fix_session_with_their_reason(tmp_path):
    async def body(server, fhost, fport, host, port):
        a = await logon(fhost, fport, "A001")

        async def refused(msg_type, fields, reason):
            a.send(msg_type, fields)
            r = await a.expect("AI")
            assert (r.get(297), r.get(58)) == ("5", reason), r
            return r

        # the morning: the BLOCK segment is not in session
        r = await refused("S", quote("am", to="A002"), "MARKET_CLOSED")
        assert (r.get(117), r.get(8014), r.get(54), r.get(44)) == ("am", "am", "2", "59.00")
        async with Client(host, port, "OPS", TOKENS["OPS"]) as ops:
            assert (await ops.set_clock(PM)).ok
            await refused("S", quote("am"), "DUPLICATE_ORDER_ID")  # used up by its reject
            await refused("S", quote("u1", to="NOBODY"), "UNKNOWN_COUNTERPARTY")
            await refused("S", quote("u2", to="A001"), "UNKNOWN_COUNTERPARTY")
            await refused("S", quote("b1", price="78.01"), "PRICE_OUTSIDE_BAND")
            await refused("S", quote("b2", qty=99_999), "INVALID_QTY")
            await refused("S", [(117, "s1"), (55, "XYZ"), (54, "2"), (38, BIG),
                                (44, "59.00")], "unknown symbol XYZ")
            r = await refused("AJ", response("r1", 10**9, "2", [(44, "58.00")]),
                              "UNKNOWN_QUOTE")
            assert (r.get(117), r.get(693)) == (str(10**9), "r1")
            r = await refused("Z", [(131, "z1"), (117, 10**9), (298, 1)], "UNKNOWN_QUOTE")
            assert r.get(131) == "z1"
            # an order id and a QuoteRespID may be the same text: each gets its own answer
            a.send("D", [(11, "same"), (55, "CEA"), (54, "1"), (60, NOW), (38, 10),
                         (40, "2"), (44, "60.00")])
            a.send("AJ", response("same", 10**9, "1"))
            assert (await a.expect("8")).get(150) == "0"
            r = await a.expect("AI")
            assert (r.get(693), r.get(58)) == ("same", "UNKNOWN_QUOTE")
            # halted: the gateway's reject (not sequenced)
            a.send("S", quote("live", to="A002"))
            no = (await a.expect("AI")).get(117)
            assert (await ops.halt("CEA")).ok
            await refused("AJ", response("h1", no, "2", [(44, "58.00")]), "INSTRUMENT_HALTED")
            assert (await ops.resume("CEA")).ok
        # session-level Rejects: malformed Quote / QuoteResponse / board requests
        for msg_type, fields, tag, reason in (
                ("S", [(117, "m1"), (55, "CEA"), (38, BIG), (44, "59.00")], "54", "1"),
                ("S", [(117, "m2"), (55, "CEA"), (54, "2"), (38, BIG)], "44", "1"),
                ("S", quote("m3", price="59.001"), "44", "6"),
                ("S", quote("m4", extra=[(336, "LISTED")]), "336", "5"),
                ("S", quote("a b"), "117", "5"),
                ("AJ", response("m5", no, "3"), "694", "5"),
                ("AJ", response("m6", "x7", "1"), "117", "6"),
                ("AJ", [(693, "m7"), (694, "1")], "117", "1"),
                ("V", [(262, "v"), (263, 1), (264, 0), (146, 1), (55, "CEA"), (386, 1),
                       (336, "LISTED"), (625, "BOARD")], "625", "5")):
            a.send(msg_type, fields)
            rej = await a.expect("3")
            assert (rej.get(372), rej.get(371), rej.get(373)) == (msg_type, tag, reason), rej
        # the live quote was untouched by all of it
        a.send("a", [(649, "q"), (117, no)])
        r = await a.expect("AI")
        assert (r.get(117), r.get(297), r.get(44), r.get(448), r.get(452), r.get(8014)) == (
            no, "10", "59.00", "A002", "17", "live")
        assert conforms(server, "A001") >= 6

    run(tmp_path, body)


def test_fix_maker_native_counterparty_expiry_and_resume(tmp_path):
    async def body(server, fhost, fport, host, port):
        async with Client(host, port, "OPS", TOKENS["OPS"]) as ops, \
                Client(host, port, "A002", TOKENS["A002"]) as b:
            assert (await ops.set_clock(PM)).ok
            a = await logon(fhost, fport, "A001")
            # accepted by the native counterparty
            a.send("S", quote("n1", side="1", to="A002"))
            no = int((await a.expect("AI")).get(117))
            await until(lambda: any(q.quote_no == no for q in b.quote_reports))
            done = await b.block_accept("nat", no)
            assert done.trade_id > 0
            fill = await a.expect("8")
            assert (fill.get(11), fill.get(54), fill.get(31), fill.get(37)) == (
                "n1", "1", "59.00", f"Q{no}")
            r = await a.expect("AI")
            assert (r.get(297), r.get(8016), r.get(8015)) == ("0", "N", "Y")
            # a negotiation countered natively, then A001's FIX session goes away
            a.send("S", quote("e1", to="A002"))
            e1 = int((await a.expect("AI")).get(117))
            await until(lambda: any(q.quote_no == e1 for q in b.quote_reports))
            await b.block_counter("bc", e1, price=5850)
            r = await a.expect("AI")
            assert (r.get(44), r.get(8016)) == ("58.50", "N")
            a.send("a", [(649, "st")])
            r = await a.expect("AI")
            assert (r.get(649), r.get(117), r.get(448), r.get(8016), r.get(8015)) == (
                "st", str(e1), "A002", "N", "Y")
            a.send("S", quote("e2", qty=200_000))  # public: expires too
            e2 = (await a.expect("AI")).get(117)
            a.send("5", [])
            await a.expect("5")
            await a.closed()
            # 15:00 passes while A001 is away: every live quote expires
            assert (await ops.set_clock(START + 5 * HOUR + 1)).ok
            await until(lambda: b.quote_reports[-1].event == 4)
            # the next logon delivers the expiries from the account's report stream
            again = FixPeer(fhost, fport, "A001")
            again.next_out, again.next_in = a.next_out, a.next_in  # sequence numbers go on
            a = again
            await a.connect()
            await a.logon(TOKENS["A001"])
            got = [await a.expect("AI") for _ in range(2)]
            assert [(m.get(117), m.get(297), m.get(58), m.get(8017)) for m in got] == [
                (str(e1), "7", "EXPIRED", "N"), (e2, "7", "EXPIRED", "Y")]
            assert all(m.get(60) == "20240304-07:00:00.000" for m in got)  # 15:00 Beijing
            a.send("a", [(649, "st2")])
            assert (await a.expect("AI")).get(297) == "9"
        assert conforms(server, "A001") >= 6

    run(tmp_path, body)


def test_throttled_negotiation_commands_get_a_rejected_status(tmp_path):
    async def body(server, fhost, fport, host, port):
        a = await logon(fhost, fport, "A001")
        for i in range(30):
            a.send("S", quote(f"q{i}"))
        got = [await a.expect("AI") for _ in range(30)]
        reasons = [m.get(58) for m in got]
        assert set(reasons) == {"MARKET_CLOSED", "THROTTLED"}, reasons  # the morning
        assert [m.get(117) for m in got] == [f"q{i}" for i in range(30)]  # in order
        assert all(m.get(297) == "5" for m in got)
        throttled = [m.get(117) for m in got if m.get(58) == "THROTTLED"]
        assert all(server.exchange.order_handle("A001", q) < 0 for q in throttled)

    run(tmp_path, body, rate_limit=20, burst=10)


def test_an_agreement_fill_cut_from_its_quote_report_waits_for_it(tmp_path):
    """A resent report stream may be cut between an agreement's FILL and its QuoteReport
    ACCEPTED: the fill is held for the next output, then translated with the quote's number
    (an order's BLOCK fill held so is released as an order's after a second)."""
    class Out:
        def __init__(self):
            self.data = b""

        def write(self, raw):
            self.data += raw

    async def main():
        fix = FixSession(None)
        fix.transport, fix._native_reader = Out(), BatchReader()
        fix.account, fix.instruments = "A002", ["CEA"]
        fix.store = FixStore(tmp_path / "fix", "A002")
        fix.logged_on = True
        fill = P.ExecutionReport(P.ExecKind.FILL, "", 5, 0, 1, Side.BUY, 5800, BIG, BIG, 0,
                                 0, 9, 4)
        done = P.QuoteReport(P.QuoteEvent.ACCEPTED, 77, "", 5, 0, Side.BUY, 0, 5800, BIG, 9,
                             5)
        fix.from_native(P.encode(fill))
        assert fix.transport.data == b"" and fix._held is not None
        fix.from_native(P.encode(done))
        msgs = FixReader().feed(fix.transport.data)
        assert [(m.msg_type, m.get(11), m.get(37), m.get(17)) for m in msgs] == [
            ("8", "77", "Q77", "A002-4"), ("AI", None, None, None)]
        assert (msgs[1].get(117), msgs[1].get(297)) == ("77", "0")
        # a BLOCK fill of an order this session never saw, last in its output: held, then
        # released as the order's fill
        fix.transport.data = b""
        other = P.ExecutionReport(P.ExecKind.FILL, "nat1", 5, 0, 1, Side.SELL, 5800, BIG,
                                  BIG, 0, 0, 10, 6)
        fix.from_native(P.encode(other))
        assert fix.transport.data == b""
        await asyncio.sleep(1.3)
        (m,) = FixReader().feed(fix.transport.data)
        assert (m.msg_type, m.get(11), m.get(37), m.get(150), m.get(39)) == (
            "8", "nat1", "A002:nat1", "F", "2")
        fix.store.close()

    asyncio.run(main())
