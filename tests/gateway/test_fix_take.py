"""The targeted take through the FIX acceptor: NewOrderSingle with OrdType D (previously
quoted) and QuoteID (117) = the target's public order number; the order-by-order book as a
MarketDataRequest with AggregatedBook N (MDEntryID 278 = order number); rejects with reason
text. (A minimal initiator of our own, tests/gateway/fixpeer.py.)"""

from __future__ import annotations

from engine.codes import Side
from gateway.client import Client

from .fixpeer import FixPeer
from .support import TOKENS, until
from .test_fix import NOW, run


def take(clid, target, qty=40, side="1", extra=()):
    body = [(11, clid), (55, "CEA"), (54, side), (60, NOW), (38, qty), (40, "D")]
    if target is not None:
        body.append((117, target))
    return body + list(extra)


def test_fix_take_with_order_level_market_data(tmp_path):
    async def body(server, fhost, fport, host, port):
        async with Client(host, port, "A002", TOKENS["A002"]) as native:
            for clid, price in (("s0", 6010), ("s1", 6010), ("s2", 6020)):
                await native.place(clid, "CEA", Side.SELL, 100, price)
            numbers = [(await native.order_status(k)).order_no for k in ("s0", "s1", "s2")]
            fix = FixPeer(fhost, fport, "A001")
            await fix.connect()
            await fix.logon(TOKENS["A001"])
            # the book order by order: AggregatedBook N, snapshot + updates
            fix.send("V", [(262, "ob"), (263, "1"), (264, 5), (266, "N"), (146, 1), (55, "CEA")])
            w = await fix.expect("W")
            assert w.get(262) == "ob" and w.get(268) == "3"
            entries = [v for t, v in w.fields if t == 278]
            assert entries == [str(n) for n in numbers]
            assert [v for t, v in w.fields if t == 270] == ["60.10", "60.10", "60.20"]
            assert not any(v in ("A002", "s0", "s1", "s2") for _, v in w.fields[7:])
            # take 40 t of the second order of the level
            fix.send("D", take("ft1", numbers[1]))
            new = await fix.expect("8")
            assert (new.get(150), new.get(39), new.get(11), new.get(44), new.get(151)) == (
                "0", "0", "ft1", "60.10", "40")
            fill = await fix.expect("8")
            assert (fill.get(150), fill.get(39), fill.get(31), fill.get(32), fill.get(14),
                    fill.get(151)) == ("F", "2", "60.10", "40", "40", "0")
            await until(lambda: len([r for r in native.reports if r.cl_ord_id == "s1"]) == 2)
            # a trade (X) and a fresh order-level snapshot (W) with the target's 60 t left
            got = {}
            while "W" not in got:
                m = await fix.expect("X", "W")
                got[m.msg_type] = m
            assert got["X"].get(269) == "2" and got["X"].get(270) == "60.10"
            sizes = [v for t, v in got["W"].fields if t == 271]
            assert sizes == ["100", "60", "100"]
            # rejects carry the reason's name; an unknown target is 103=5 (unknown order)
            for clid, target, qty, side, reason, code in (
                    ("r1", 10**9, 1, "1", "UNKNOWN_TARGET", "5"),
                    ("r2", numbers[0], 1, "2", "TARGET_SAME_SIDE", "99"),
                    ("r3", numbers[0], 101, "1", "TARGET_QTY_EXCEEDED", "99")):
                fix.send("D", take(clid, target, qty, side))
                rej = await fix.expect("8")
                assert (rej.get(150), rej.get(39), rej.get(11), rej.get(58), rej.get(103)) == (
                    "8", "8", clid, reason, code), rej
            # a take without QuoteID, with a bad one, or not IOC: session Rejects
            fix.send("D", take("r4", None))
            assert (await fix.expect("3")).get(371) == "117"
            fix.send("D", take("r5", "x1"))
            assert (await fix.expect("3")).get(373) == "6"
            fix.send("D", take("r6", numbers[0], extra=[(59, "0")]))
            assert (await fix.expect("3")).get(371) == "59"
            # order by order is LISTED only
            fix.send("V", [(262, "blk"), (263, "0"), (264, 5), (266, "N"), (146, 1),
                           (55, "CEA"), (386, 1), (336, "BLOCK")])
            y = await fix.expect("Y")
            assert (y.get(262), y.get(281)) == ("blk", "7")

    run(tmp_path, body)
