"""The FIX 4.4 acceptor (gateway.fix): the session layer, orders through FIX interleaved with
native ones in one sequence, the reports FIX gets, malformed input, resends and recovery."""

from __future__ import annotations

import asyncio

from engine.codes import Side
from gateway.client import Client
from gateway.fixcodec import SOH, encode

from .fixpeer import FixPeer
from .support import TOKENS, config, run_with_server, until

NOW = "20240304-02:00:00.000"


def fix_config(tmp_path, **kw):
    return config(tmp_path, fix_port=0, **kw)


def run(tmp_path, body, **kw):
    async def wrapped(server, host, port):
        fhost, fport = server.fix_address
        try:
            return await body(server, fhost, fport, host, port)
        finally:
            await FixPeer.close_all()

    return run_with_server(fix_config(tmp_path, **kw), wrapped)


def order(clid, side="1", qty=500, price="60.00", ord_type="2", tif="0", symbol="CEA"):
    body = [(11, clid), (55, symbol), (54, side), (60, NOW), (38, qty), (40, ord_type)]
    if price is not None:
        body.append((44, price))
    if tif is not None:
        body.append((59, tif))
    return body


def test_logon_order_fill_against_a_native_order(tmp_path):
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        reply = await fix.logon(TOKENS["A001"])
        assert reply.get(98) == "0" and reply.get(108) == "30"
        assert reply.get(49) == "CEA" and reply.get(56) == "A001"
        fix.send("D", order("f1", "1", 500, "60.10"))
        new = await fix.expect("8")
        assert (new.get(150), new.get(39), new.get(11), new.get(38), new.get(44)) == \
            ("0", "0", "f1", "500", "60.10")
        async with Client(host, port, "A002", TOKENS["A002"]) as native:
            ack = await native.place("n1", "CEA", Side.SELL, 200, 6000)
            assert ack.exec == 1
            fill = await fix.expect("8")
            assert (fill.get(150), fill.get(39), fill.get(31), fill.get(32), fill.get(14),
                    fill.get(151), fill.get(6)) == ("F", "1", "60.10", "200", "200", "300",
                                                    "60.1000")
            await native.place("n2", "CEA", Side.SELL, 300, 6010)
            last = await fix.expect("8")
            assert (last.get(150), last.get(39), last.get(151), last.get(14)) == \
                ("F", "2", "0", "500")
        # both sessions' orders went through the one sequence and journal
        assert server.exchange.seq >= 3
        fix.send("5", [])
        assert (await fix.expect("5")).msg_type == "5"
        assert await fix.closed()

    run(tmp_path, body)


def test_rejects_cancel_replace_and_mass_cancel(tmp_path):
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        await fix.logon(TOKENS["A001"])
        fix.send("D", order("bad", "1", 500, "99.00"))  # outside the ±10 % band
        rej = await fix.expect("8")
        assert (rej.get(150), rej.get(39), rej.get(58), rej.get(103)) == \
            ("8", "8", "PRICE_OUTSIDE_BAND", "99")
        fix.send("D", order("o1", "1", 1000, "59.00"))
        assert (await fix.expect("8")).get(150) == "0"
        fix.send("G", [(11, "o1r"), (41, "o1"), (55, "CEA"), (54, "1"), (60, NOW),
                       (40, "2"), (38, 800), (44, "59.50")])
        rep = await fix.expect("8")
        assert (rep.get(150), rep.get(11), rep.get(41), rep.get(38), rep.get(44),
                rep.get(151)) == ("5", "o1r", "o1", "800", "59.50", "800")
        fix.send("F", [(11, "o1c"), (41, "o1r"), (55, "CEA"), (54, "1"), (60, NOW)])
        can = await fix.expect("8")
        assert (can.get(150), can.get(39), can.get(11), can.get(41)) == \
            ("4", "4", "o1c", "o1r")
        fix.send("F", [(11, "x"), (41, "nope"), (55, "CEA"), (54, "1"), (60, NOW)])
        cr = await fix.expect("9")
        assert (cr.get(434), cr.get(102), cr.get(58), cr.get(11)) == \
            ("1", "1", "UNKNOWN_ORDER", "x")
        for k in range(3):
            fix.send("D", order(f"m{k}", "2", 100, "61.00"))
            assert (await fix.expect("8")).get(150) == "0"
        fix.send("q", [(11, "mc1"), (530, 7), (60, NOW)])
        seen = [await fix.expect("8", "r") for _ in range(4)]
        assert sorted(m.msg_type for m in seen) == ["8", "8", "8", "r"]
        report = next(m for m in seen if m.msg_type == "r")
        assert (report.get(11), report.get(530), report.get(531)) == ("mc1", "7", "7")
        assert all(m.get(150) == "4" for m in seen if m.msg_type == "8")
        fix.send("BE", [(923, "u1")])  # UserRequest: not supported here
        bmr = await fix.expect("j")
        assert (bmr.get(372), bmr.get(380)) == ("BE", "3")
        fix.send("ZZ", [(58, "?")])  # no such message type in FIX 4.4
        bad = await fix.expect("3")
        assert (bad.get(373), bad.get(371), bad.get(372)) == ("11", "35", "ZZ")

    run(tmp_path, body)


def test_malformed_messages(tmp_path):
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        await fix.logon(TOKENS["A001"])
        # a bad CheckSum: garbled, ignored (no answer, its number not used)
        good = encode("1", [(112, "t1")], "A001", "CEA", fix.next_out, NOW)
        fix.raw(good[:-4] + b"000" + SOH)
        # a wrong BodyLength, too long and too short: garbled, ignored
        fix.raw(good.replace(b"9=", b"9=1", 1))
        fix.raw(good.replace(b"9=5", b"9=3", 1))
        assert [m.msg_type for m in await fix.quiet(0.3)] == []
        fix.send("1", [(112, "t2")])  # the same number, well formed: answered
        hb = await fix.expect("0")
        assert hb.get(112) == "t2"
        # a required tag missing: Reject with SessionRejectReason 1 and the tag
        fix.send("D", [(11, "o9"), (55, "CEA"), (60, NOW), (38, 100), (40, "2"), (44, "60")])
        rej = await fix.expect("3")
        assert (rej.get(373), rej.get(371), rej.get(372)) == ("1", "54", "D")
        # a bad value: Reject 5; a bad data format: Reject 6
        fix.send("D", order("o8", side="7"))
        assert (await fix.expect("3")).get(373) == "5"
        fix.send("D", order("o7", qty="12.5"))
        assert (await fix.expect("3")).get(373) == "6"
        # sequence too low, not a possible duplicate: Logout, then disconnect
        fix.send("0", [], seq=2)
        out = await fix.expect("5")
        assert "MsgSeqNum too low" in out.get(58)
        assert await fix.closed()

    run(tmp_path, body)


def test_wrong_password_and_first_message_not_logon(tmp_path):
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        fix.send("A", [(98, 0), (108, 30), (554, "wrong-token-000000")])
        out = await fix.expect("5")
        assert "logon refused" in out.get(58)
        assert await fix.closed()
        other = FixPeer(fhost, fport, "A001")
        await other.connect()
        other.send("0", [])
        assert await other.closed()
        bad_target = FixPeer(fhost, fport, "A001", target="XYZ")
        await bad_target.connect()
        bad_target.send("A", [(98, 0), (108, 30), (554, TOKENS["A001"])])
        out = await bad_target.expect("5")
        assert "TargetCompID" in out.get(58)

    run(tmp_path, body)


def test_resend_request_gap_fills_admin_and_resends_orders(tmp_path):
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        await fix.logon(TOKENS["A001"])  # its reply is our 1
        fix.send("D", order("r1", "1", 100, "59.00"))
        first = await fix.expect("8")  # 2
        fix.send("1", [(112, "t")])
        await fix.expect("0")  # 3
        fix.send("2", [(7, 1), (16, 0)])
        gap = await fix.read()
        assert (gap.msg_type, gap.get(34), gap.get(123), gap.get(36)) == ("4", "1", "Y", "2")
        again = await fix.read()
        assert (again.msg_type, again.get(34), again.get(43), again.get(11)) == \
            ("8", "2", "Y", "r1")
        assert again.get(122) == first.get(52)
        gap = await fix.read()
        assert (gap.msg_type, gap.get(34), gap.get(36)) == ("4", "3", "4")
        # ours: a gap we leave makes the acceptor ask for it
        fix.send("0", [], seq=fix.next_out + 2)
        ask = await fix.expect("2")
        assert (ask.get(7), ask.get(16)) == (str(fix.next_out), "0")
        # a ResendRequest of ours beyond the gap is still answered (else both would wait)
        fix.send("2", [(7, 2), (16, 2)], seq=fix.next_out + 3)
        got = [await fix.read() for _ in range(2)]  # its own ResendRequest, and ours answered
        again = next(m for m in got if m.msg_type == "8")
        assert (again.get(34), again.get(43), again.get(11)) == ("2", "Y", "r1")

    run(tmp_path, body)


def test_reconnect_recovers_reports_made_while_away_and_sequence_numbers(tmp_path):
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        await fix.logon(TOKENS["A001"], extra=[(8013, "N")])  # keep orders on disconnect
        fix.send("D", order("w1", "1", 400, "60.00"))
        assert (await fix.expect("8")).get(150) == "0"
        fix.close()  # dropped, no Logout
        await until(lambda: "A001" not in server.fix_sessions, what="the FIX session gone")
        async with Client(host, port, "A002", TOKENS["A002"]) as native:
            await native.place("s1", "CEA", Side.SELL, 400, 6000)
        again = FixPeer(fhost, fport, "A001")
        again.next_out, again.next_in = fix.next_out, fix.next_in
        await again.connect()
        await again.logon(TOKENS["A001"])
        fill = await again.expect("8")
        assert (fill.get(150), fill.get(39), fill.get(11), fill.get(32)) == \
            ("F", "2", "w1", "400")
        # a second logon with numbers too low is refused
        again.send("5", [])
        await again.expect("5")
        stale = FixPeer(fhost, fport, "A001")
        stale.next_in = None  # it does not know the acceptor's numbers
        await stale.connect()
        stale.send("A", [(98, 0), (108, 30), (554, TOKENS["A001"])], seq=1)
        out = await stale.expect("5")
        assert "MsgSeqNum too low" in out.get(58)
        # ResetSeqNumFlag starts both sides from 1
        fresh = FixPeer(fhost, fport, "A001")
        await fresh.connect()
        reply = await fresh.logon(TOKENS["A001"], reset=True)
        assert reply.get(141) == "Y" and reply.get(34) == "1"

    run(tmp_path, body)


def test_sequence_numbers_survive_a_restart(tmp_path):
    state = {}

    async def first(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        await fix.logon(TOKENS["A001"], extra=[(8013, "N")])
        fix.send("D", order("p1", "1", 100, "59.00"))
        fix.send("D", order("p2", "2", 100, "61.00"))
        await fix.expect("8")
        await fix.expect("8")
        fix.send("5", [])
        await fix.expect("5")
        state.update(next_out=fix.next_out, next_in=fix.next_in)

    async def second(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        fix.next_out, fix.next_in = state["next_out"], state["next_in"]
        await fix.connect()
        reply = await fix.logon(TOKENS["A001"])
        assert int(reply.get(34)) == state["next_in"]
        fix.send("F", [(11, "p1c"), (41, "p1"), (55, "CEA"), (54, "1"), (60, NOW)])
        can = await fix.expect("8")
        assert (can.get(150), can.get(11), can.get(41)) == ("4", "p1c", "p1")
        # this session cancels on disconnect (the default): its next logon gets the report
        fix.close()
        await until(lambda: "A001" not in server.fix_sessions, what="the FIX session gone")
        state.update(next_out=fix.next_out, next_in=fix.next_in)

    async def third(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        fix.next_out, fix.next_in = state["next_out"], state["next_in"]
        await fix.connect()
        await fix.logon(TOKENS["A001"])
        gone = await fix.expect("8")
        assert (gone.get(150), gone.get(11), gone.get(58)) == ("4", "p2", "USER")

    run(tmp_path, first)
    run(tmp_path, second)
    run(tmp_path, third)


def test_cea_serve_fix_port(tmp_path):
    import re

    from .support import server_process

    tokens = tmp_path / "tokens.csv"
    tokens.write_text("account,token\n" + "".join(f"{a},{t}\n" for a, t in TOKENS.items()))
    with server_process(tmp_path / "data", "--fix-port", "0", "--tokens", str(tokens),
                        "--fsync", "off") as (proc, port, out):
        m = re.search(r"FIX 4.4 acceptor on ([\d.]+):(\d+) \(TargetCompID CEA\)", out)
        assert m, out

        async def session():
            fix = FixPeer(m.group(1), int(m.group(2)), "A003")
            await fix.connect()
            try:
                await fix.logon(TOKENS["A003"])
                fix.send("D", order("c1", "1", 100, "60.00"))
                assert (await fix.expect("8")).get(150) == "0"
            finally:
                await FixPeer.close_all()

        asyncio.run(session())


def md_request(req, kind=1, depth=5, symbols=("CEA",), sessions=()):
    body = [(262, req), (263, kind), (264, depth), (267, 3), (269, 0), (269, 1), (269, 2),
            (146, len(symbols))] + [(55, s) for s in symbols]
    if sessions:
        body += [(386, len(sessions))] + [(336, s) for s in sessions]
    return body


def entries(msg) -> list[dict]:
    """The NoMDEntries group of a W or X as dicts, in order."""
    out, cur = [], None
    first = 279 if msg.msg_type == "X" else 269
    for tag, value in msg.fields:
        if tag == first:
            cur = {}
            out.append(cur)
        if cur is not None and tag in (279, 269, 270, 271, 346, 336, 55):
            cur[tag] = value
    return out


def test_market_data_snapshot_and_incrementals(tmp_path):
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        await fix.logon(TOKENS["A001"])
        async with Client(host, port, "A002", TOKENS["A002"]) as native:
            await native.place("b1", "CEA", Side.BUY, 300, 5990)
            await native.place("a1", "CEA", Side.SELL, 200, 6010)
            fix.send("V", md_request("md1"))
            snap = await fix.expect("W")
            assert snap.get(262) == "md1" and snap.get(55) == "CEA"
            levels = [(e[269], e[270], e[271], e.get(346)) for e in entries(snap)]
            assert levels == [("0", "59.90", "300", "1"), ("1", "60.10", "200", "1")]
            await native.place("b2", "CEA", Side.BUY, 100, 5995)
            inc = await fix.expect("X")
            assert [(e[279], e[269], e[270], e[271]) for e in entries(inc)] == \
                [("0", "0", "59.95", "100")]
            async with Client(host, port, "A003", TOKENS["A003"]) as seller:
                await seller.place("s2", "CEA", Side.SELL, 100, 5995)  # trades b2 away
            seen = [await fix.expect("X") for _ in range(2)]
            flat = [(e[279], e[269], e[270]) for m in seen for e in entries(m)]
            assert ("0", "2", "59.95") in flat  # the trade
            assert ("2", "0", "59.95") in flat  # its level gone
            # unknown symbol: MarketDataRequestReject; a bad segment: Reject
            fix.send("V", md_request("md2", symbols=("XYZ",)))
            rej = await fix.expect("Y")
            assert (rej.get(262), rej.get(281)) == ("md2", "0")
            fix.send("V", md_request("md3", sessions=("DARK",)))
            assert (await fix.expect("3")).get(371) == "336"
            # unsubscribe: no more incrementals
            fix.send("V", md_request("md1", kind=2))
            await native.place("b3", "CEA", Side.BUY, 100, 5980)
            assert [m.msg_type for m in await fix.quiet(0.3)] == []
            # BLOCK segment, snapshot only
            fix.send("V", md_request("md4", kind=0, sessions=("BLOCK",)))
            block = await fix.expect("W")
            assert block.get(262) == "md4" and entries(block) == []

    run(tmp_path, body)


def test_an_unauthenticated_logon_changes_nothing(tmp_path):
    """Nothing of an account's FIX state is read out, created or reset before the exchange
    accepts its token; a SenderCompID is never a path."""
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        await fix.logon(TOKENS["A001"])
        fix.send("5", [])
        await fix.expect("5")
        store = server.data_dir / "fix"
        before = {p.name: p.read_bytes() for p in store.iterdir()}
        for account, token, hb, reset in (("A001", "wrong-token-00000000", 30, True),
                                          ("../../escaped", "x" * 20, 30, True),
                                          ("A001", TOKENS["A001"], 0, False),
                                          ("A001", TOKENS["A001"], 61, False)):
            peer = FixPeer(fhost, fport, account)
            peer.next_in = None
            await peer.connect()
            body = [(98, 0), (108, hb), (554, token)] + ([(141, "Y")] if reset else [])
            peer.send("A", body, seq=1)  # far too low for A001, were it believed
            out = await peer.expect("5")
            assert "too low" not in out.get(58) and out.get(34) == "1", out
            assert await peer.closed()
        await asyncio.sleep(0.1)
        assert {p.name: p.read_bytes() for p in store.iterdir()} == before
        assert not (tmp_path / "escaped.seq").exists() and not list(tmp_path.glob("*.msgs"))

    run(tmp_path, body)


def test_unknown_symbol_and_duplicate_clordid(tmp_path):
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        await fix.logon(TOKENS["A001"])
        fix.send("D", order("u1", symbol="XYZ"))
        rej = await fix.expect("8")
        assert (rej.get(150), rej.get(103), rej.get(55)) == ("8", "1", "XYZ")
        fix.send("D", order("d1", "1", 100, "59.00"))
        assert (await fix.expect("8")).get(150) == "0"
        fix.send("D", order("d1", "2", 300, "61.00"))  # the same ClOrdID again
        dup = await fix.expect("8")
        assert (dup.get(150), dup.get(58), dup.get(54), dup.get(38)) == \
            ("8", "DUPLICATE_ORDER_ID", "2", "300")
        fix.send("F", [(11, "d1c"), (41, "d1"), (55, "CEA"), (54, "1"), (60, NOW)])
        can = await fix.expect("8")  # the first d1 still stands, and is cancelled
        assert (can.get(150), can.get(41), can.get(38)) == ("4", "d1", "100")
        fix.send("F", [(11, "d1c2"), (41, "d1"), (55, "CEA"), (54, "1"), (60, NOW)])
        cxl = await fix.expect("9")
        assert (cxl.get(39), cxl.get(41)) == ("4", "d1c")  # as last reported: cancelled

    run(tmp_path, body)


def test_test_and_resend_requests_are_throttled(tmp_path):
    async def body(server, fhost, fport, host, port):
        fix = FixPeer(fhost, fport, "A001")
        await fix.connect()
        await fix.logon(TOKENS["A001"])
        for k in range(8):
            fix.send("1", [(112, f"t{k}")])
        got = [await fix.expect("0", "3") for _ in range(8)]
        assert [m.msg_type for m in got].count("0") == 5  # the bucket's burst
        assert all(m.get(373) == "99" for m in got if m.msg_type == "3")

    run(tmp_path, body, query_rate=1, query_burst=5)
