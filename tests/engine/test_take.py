"""The targeted take (spec §3a, the market's listed agreement trading): a TAKE names one
resting LISTED order of the opposite side within the best five price levels and trades
exactly its quantity with it, at its price.

- every reject reason, in the spec's order of checks, on both books;
- the trade: the target's price, the declared quantity, the taker the aggressor, the target
  keeping its place in its queue, the close and the day's figures counting it;
- the risk stage: the taker's reservation at the target's price, settlement, the target's
  reservation consumed, refusals;
- the order file: the optional ``target`` column through ``cea match``;
- differential: seeded streams mixing TAKE with every other command, through the reference
  and the Numba book, one batch and chunked, with and without accounts.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine import (
    CancelOrder, ClockTick, Engine, NewOrder, Reason, RiskConfig, Side, TakeOrder, parse_time,
)
from engine import batch as B
from engine.book import make_book
from engine.batch import empty_commands
from engine.codes import NO_REF, Action, EventKind, OrderType, Segment, TimeInForce
from engine.orderfile import OrderFileError, read_order_file, run_match
from engine.tradingdays import TradingCalendar

from .test_differential import (
    TINY, assert_same_events, assert_same_state, make_stream, n_handles, random_sizes,
    run_chunked,
)
from .test_risk import run_both

IMPLS = ("numba", "reference")
T = parse_time("2024-03-04T10:00:00")


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


def asks(eng, n=7, owner=lambda k: f"S{k}"):
    """Sell orders s0..s{n-1} of 100 t at 60.00 + k fen, each its own price level."""
    eng.submit_many([NewOrder(T, owner(k), f"s{k}", Side.SELL, qty=100, price=6000 + k)
                     for k in range(n)])


def outcome(events):
    return [(type(e).__name__, getattr(e, "reason", None)) for e in events]


def rejected(eng, cmd) -> str:
    """The reason ``cmd`` is rejected with (the clock it moves may end the day first: those
    events come before)."""
    events = eng.submit(cmd)
    assert type(events[-1]).__name__ == "OrderRejected", events
    assert all(type(e).__name__ in ("OrderExpired", "DayClosed") for e in events[:-1])
    return events[-1].reason.name


# ---------------------------------------------------------------------------- the trade

def test_take_trades_at_the_target_price_and_keeps_its_place(impl):
    eng = Engine({"CEA": 6000}, impl=impl)
    eng.submit_many([NewOrder(T, "A", "a1", Side.SELL, qty=300, price=6010),
                     NewOrder(T, "B", "b1", Side.SELL, qty=200, price=6010),
                     NewOrder(T, "C", "c1", Side.SELL, qty=100, price=6005)])
    # the second order at 60.10, behind a1 in time and behind a better level: any order of
    # the best five levels may be taken, at its own price, for the quantity declared
    acc, trade = eng.submit(TakeOrder(T + 1, "D", "d1", Side.BUY, 150, "b1"))
    assert (acc.type, acc.price, acc.qty, acc.target) == (OrderType.TAKE, 6010, 150, "b1")
    assert (trade.price, trade.qty, trade.buy_order_id, trade.sell_order_id) == (
        6010, 150, "d1", "b1")
    assert (trade.aggressor, trade.segment, trade.buy_open, trade.sell_open) == (
        Side.BUY, Segment.LISTED, 0, 50)
    assert eng.order("d1").status == "FILLED" and eng.order("b1").open == 50
    # b1 kept its place: still behind a1 at 60.10
    assert [(o.order_id, o.open) for o in eng.resting(side=Side.SELL)] == [
        ("c1", 100), ("a1", 300), ("b1", 50)]
    # a market buy now walks c1, then a1, then b1
    events = eng.submit(NewOrder(T + 2, "E", "e1", Side.BUY, qty=420, price=6010))
    fills = [(e.sell_order_id, e.qty) for e in events if type(e).__name__ == "TradeExecuted"]
    assert fills == [("c1", 100), ("a1", 300), ("b1", 20)]
    # the take counts as a listed trade: the close is the VWAP of all three
    day = eng.day()[0]
    assert day.listed_volume == 570
    assert day.listed_turnover == 150 * 6010 + 100 * 6005 + 300 * 6010 + 20 * 6010
    eng.check_invariants()


def test_take_a_bid_and_fill_the_target_whole(impl):
    eng = Engine({"CEA": 6000}, impl=impl)
    eng.submit(NewOrder(T, "A", "a1", Side.BUY, qty=80, price=5990))
    acc, trade = eng.submit(TakeOrder(T, "B", "b1", Side.SELL, 80, "a1"))
    assert (trade.price, trade.qty, trade.aggressor) == (5990, 80, Side.SELL)
    assert eng.order("a1").status == "FILLED" and eng.best_bid() is None
    # the target is gone: taking it again is UNKNOWN_TARGET, as a cancelled one is
    assert rejected(eng, TakeOrder(T, "B", "b2", Side.SELL, 1, "a1")) == "UNKNOWN_TARGET"


def test_best_five_levels_of_the_target_side(impl):
    eng = Engine({"CEA": 6000}, impl=impl)
    asks(eng, 7)  # levels 60.00 .. 60.06
    assert rejected(eng, TakeOrder(T, "X", "x1", Side.BUY, 1, "s5")) == \
        "TARGET_NOT_IN_BEST_FIVE"
    assert outcome(eng.submit(TakeOrder(T, "X", "x2", Side.BUY, 1, "s4")))[0][0] == \
        "OrderAccepted"
    # the best level empties: s5 is now the fifth
    eng.submit(CancelOrder(T, "S0", "s0"))
    assert outcome(eng.submit(TakeOrder(T, "X", "x3", Side.BUY, 100, "s5")))[1][0] == \
        "TradeExecuted"
    # several orders on one level count as one level
    eng.submit_many([NewOrder(T, f"Q{k}", f"q{k}", Side.SELL, qty=5, price=6001)
                     for k in range(6)])
    assert outcome(eng.submit(TakeOrder(T, "X", "x4", Side.BUY, 5, "q5")))[1][0] == \
        "TradeExecuted"
    # 60.01 (s1 and the q's), 60.02, 60.03, 60.04, 60.06: s6 is on the fifth level
    assert outcome(eng.submit(TakeOrder(T, "X", "x5", Side.BUY, 1, "s6")))[1][0] == \
        "TradeExecuted"
    # a better level arrives: s6 is sixth
    eng.submit(NewOrder(T, "Y", "y1", Side.SELL, qty=5, price=6000))
    assert rejected(eng, TakeOrder(T, "X", "x6", Side.BUY, 1, "s6")) == \
        "TARGET_NOT_IN_BEST_FIVE"
    # and the bid side mirrors it: the best five are the highest five
    eng.submit_many([NewOrder(T, f"B{k}", f"b{k}", Side.BUY, qty=10, price=5990 - k)
                     for k in range(6)])
    assert rejected(eng, TakeOrder(T, "X", "x7", Side.SELL, 1, "b5")) == \
        "TARGET_NOT_IN_BEST_FIVE"
    assert outcome(eng.submit(TakeOrder(T, "X", "x8", Side.SELL, 1, "b4")))[1][0] == \
        "TradeExecuted"


def test_every_reject_reason_in_the_order_of_checks(impl):
    eng = Engine({"CEA": 6000, "CEA24": 7000}, impl=impl)
    asks(eng, 7)
    eng.submit_many([NewOrder(T, "A", "bid", Side.BUY, qty=100, price=5990),
                     NewOrder(parse_time("2024-03-04T13:30:00"), "A", "blk", Side.SELL,
                              qty=100_000, price=6000),
                     NewOrder(parse_time("2024-03-04T13:30:00"), "A", "other", Side.SELL,
                              qty=10, price=7000, instrument="CEA24")])
    pm = parse_time("2024-03-04T13:31:00")
    cases = [
        (TakeOrder(pm, "", "t1", Side.BUY, 1, "s0"), "MALFORMED"),  # no account
        (TakeOrder(pm, "X", "t2", Side.BUY, 1, ""), "MALFORMED"),  # no target
        (TakeOrder(pm, "X", "t3", Side.BUY, 1, "s0", instrument="NOPE"), "MALFORMED"),
        (TakeOrder(pm, "X", "t4", Side.BUY, 0, "s0"), "INVALID_QTY"),
        (TakeOrder(pm, "X", "t5", Side.BUY, 100_000_001, "s0"), "INVALID_QTY"),
        (TakeOrder(pm, "X", "s1", Side.BUY, 1, "s0"), "DUPLICATE_ORDER_ID"),
        (TakeOrder(pm, "X", "t6", Side.BUY, 1, "nobody"), "UNKNOWN_TARGET"),
        (TakeOrder(pm, "X", "t7", Side.BUY, 1, "other"), "UNKNOWN_TARGET"),  # CEA24's
        (TakeOrder(pm, "X", "t8", Side.SELL, 1, "s0"), "TARGET_SAME_SIDE"),
        (TakeOrder(pm, "X", "t9", Side.BUY, 1, "blk"), "TARGET_NOT_LISTED"),
        (TakeOrder(pm, "X", "t10", Side.BUY, 1, "s6"), "TARGET_NOT_IN_BEST_FIVE"),
        (TakeOrder(pm, "S0", "t11", Side.BUY, 1, "s0"), "TARGET_OWN_ORDER"),
        (TakeOrder(pm, "X", "t12", Side.BUY, 101, "s0"), "TARGET_QTY_EXCEEDED"),
        (TakeOrder(pm, "X", "t13", Side.SELL, 101, "bid"), "TARGET_QTY_EXCEEDED"),
    ]
    for cmd, reason in cases:
        assert rejected(eng, cmd) == reason, cmd
    # the first failing check wins: a duplicate id and a bad target is DUPLICATE_ORDER_ID;
    # a bad target and too large a quantity is the target's reason
    assert rejected(eng, TakeOrder(pm, "X", "s2", Side.SELL, 999, "nobody")) == \
        "DUPLICATE_ORDER_ID"
    assert rejected(eng, TakeOrder(pm, "S6", "t14", Side.BUY, 999, "s6")) == \
        "TARGET_NOT_IN_BEST_FIVE"
    # a rejected take changed nothing, and used its id (spec §3: any NEW row uses it)
    assert [(o.order_id, o.open) for o in eng.resting(side=Side.SELL)][:2] == [
        ("s0", 100), ("s1", 100)]
    assert rejected(eng, NewOrder(pm, "X", "t12", Side.BUY, qty=1, price=6000)) == \
        "DUPLICATE_ORDER_ID"


def test_take_follows_the_listed_sessions(impl):
    eng = Engine({"CEA": 6000}, impl=impl,
                 calendar=TradingCalendar.from_dates(["2024-03-04", "2024-03-05"]))
    asks(eng, 1)
    for when in ("2024-03-04T11:30:00", "2024-03-04T12:59:59.999999"):
        assert rejected(eng, TakeOrder(parse_time(when), "X", "x" + when, Side.BUY, 1,
                                       "s0")) == "MARKET_CLOSED"
    assert outcome(eng.submit(TakeOrder(parse_time("2024-03-04T13:00:00"), "X", "y", Side.BUY,
                                        1, "s0")))[1][0] == "TradeExecuted"
    # after 15:00 the target has expired and the session is closed: MARKET_CLOSED first
    assert rejected(eng, TakeOrder(parse_time("2024-03-04T15:00:00"), "X", "z", Side.BUY, 1,
                                   "s0")) == "MARKET_CLOSED"
    # the next day the order is gone
    assert rejected(eng, TakeOrder(parse_time("2024-03-05T09:30:00"), "X", "w", Side.BUY, 1,
                                   "s0")) == "UNKNOWN_TARGET"


def test_take_with_a_price_is_invalid_price_in_the_order_file(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "time,account,action,order_id,side,type,tif,price,qty,stp,target\n"
        "2024-03-04T10:00:00,A,NEW,a1,SELL,LIMIT,DAY,60.10,300,,\n"
        "2024-03-04T10:00:01,B,TAKE,b1,BUY,,,,120,,a1\n"
        "2024-03-04T10:00:02,B,TAKE,b2,BUY,,,60.10,1,,a1\n"
        "2024-03-04T10:00:03,B,TAKE,b3,BUY,,,,1,,\n"
        "2024-03-04T10:00:04,B,TAKE,b4,,,,,1,,a1\n"
        "2024-03-04T10:00:05,B,TAKE,b5,BUY,,,,x,,a1\n"
        "2024-03-04T10:00:06,B,TAKE,b6,BUY,,,,1,,later\n"
        "2024-03-04T10:00:07,C,NEW,later,SELL,LIMIT,DAY,60.00,5,,\n"
        "2024-03-04T10:00:08,B,TAKE,b7,BUY,,,,5,,later\n")
    for impl in IMPLS:
        result = run_match(read_order_file(path, ["CEA"]), [6000], impl)
        assert result.trades[1][3:7] == ["60.10", "120", "b1", "a1"]
        assert result.trades[2][3:7] == ["60.00", "5", "b7", "later"]
        assert [r[1:] for r in result.rejects[1:]] == [
            ["TAKE", "b2", "INVALID_PRICE"], ["TAKE", "b3", "MALFORMED"],
            ["TAKE", "b4", "MALFORMED"], ["TAKE", "b5", "INVALID_QTY"],
            ["TAKE", "b6", "UNKNOWN_TARGET"]]
        assert ["b1", "B", "LISTED", "BUY", "FILLED", "", "120", "0"] in result.orders
    # a TAKE needs the target column: without it, the row is MALFORMED
    path.write_text("time,account,action,order_id,side,type,tif,price,qty,stp\n"
                    "2024-03-04T10:00:01,B,TAKE,b1,BUY,,,,120,\n")
    assert run_match(read_order_file(path, ["CEA"]), [6000]).rejects[1][3] == "MALFORMED"
    # both optional columns, in either order; anything else is a header error
    for extra in ("instrument,target", "target,instrument"):
        path.write_text(f"time,account,action,order_id,side,type,tif,price,qty,stp,{extra}\n")
        assert read_order_file(path, ["CEA"]).columns == extra.split(",")
    for extra in ("target,target", "tagret", "instrument,target,x"):
        path.write_text(f"time,account,action,order_id,side,type,tif,price,qty,stp,{extra}\n")
        with pytest.raises(OrderFileError, match="optionally followed by ,instrument"):
            read_order_file(path, ["CEA"])


# ---------------------------------------------------------------------------- risk stage

def funded(impl, **accounts):
    eng = Engine({"CEA": 6000}, impl=impl, risk=RiskConfig(fee_bps_listed=10),
                 calendar=TradingCalendar.from_dates(["2024-03-04", "2024-03-05"]))
    for name, (cash, tonnes) in accounts.items():
        eng.open_account(name)
        if cash:
            eng.deposit(name, cash)
        if tonnes:
            eng.allowance_in(name, tonnes)
    return eng


def test_take_reserves_and_settles_at_the_target_price(impl):
    eng = funded(impl, S=(0, 500), B=(1_000_000, 0), P=(50_000, 0), N=(0, 0))
    eng.submit(NewOrder(T, "S", "s1", Side.SELL, qty=200, price=6010))
    # a buyer without the money for 100 t at 60.10 (plus the fee) is refused
    assert rejected(eng, TakeOrder(T, "P", "p1", Side.BUY, 100, "s1")) == \
        "INSUFFICIENT_FUNDS"
    assert rejected(eng, TakeOrder(T, "Z", "z1", Side.BUY, 1, "s1")) == "UNKNOWN_ACCOUNT"
    eng.submit(TakeOrder(T, "B", "b1", Side.BUY, 100, "s1"))
    b, s = eng.balance("B"), eng.balance("S")
    notional, fee = 100 * 6010, 100 * 6010 * 10 // 10_000
    assert (b.cash, b.cash_reserved, b.holdings[0].total) == (1_000_000 - notional - fee, 0,
                                                               100)
    assert (s.cash, s.holdings[0].total, s.holdings[0].reserved) == (notional - fee, 400, 100)
    eng.check_invariants()
    # a seller takes a bid: allowances must be sellable (bought today are not: T+1)
    eng.submit(NewOrder(T, "P", "p2", Side.BUY, qty=5, price=6000))
    assert rejected(eng, TakeOrder(T, "B", "b2", Side.SELL, 5, "p2")) == \
        "INSUFFICIENT_ALLOWANCES"
    assert rejected(eng, TakeOrder(T, "N", "n1", Side.SELL, 5, "p2")) == \
        "INSUFFICIENT_ALLOWANCES"
    trade = eng.submit(TakeOrder(T, "S", "s2", Side.SELL, 5, "p2"))[1]
    assert (trade.price, trade.qty, trade.aggressor) == (6000, 5, Side.SELL)
    assert eng.balance("P").cash_reserved == 0
    eng.check_invariants()


# ---------------------------------------------------------------------------- differential

def make_take_stream(seed: int, n: int, closes, accounts: int) -> np.ndarray:
    """A seeded stream (``make_stream``, spread over 8 ticks, some random takes) with takes
    aimed at the book as it stands: after every few rows a reference book that has run the
    stream so far shows the orders of the best seven levels of each LISTED book, and takes
    are aimed at them (mostly the opposite side and another account, a quantity up to the
    open and now and then past it). The stream is then run from scratch by both books."""
    rnd = random.Random(seed * 104_729)
    base = make_stream(seed, n, closes, accounts, spread=8, takes=0.05)
    cal = TradingCalendar.xshg()
    oracle = make_book("reference", closes, cal)
    out, next_id, k = [], int(base["order"].max()) + 1_000, 0
    while k < len(base):
        step = rnd.randint(1, 12)
        chunk = base[k:k + step]
        oracle.submit_batch(chunk)
        out.append(chunk)
        k += step
        ts = int(chunk["ts"].max())
        if ts <= 0 or rnd.random() < 0.3:
            continue
        takes = empty_commands(rnd.randint(1, 3))
        for j in range(len(takes)):
            row = takes[j]
            instrument = rnd.randrange(len(closes))
            side = rnd.choice((Side.BUY, Side.SELL))
            resting = oracle.resting_in_levels(instrument, Segment.LISTED, side, 7)
            if not resting:
                resting = [(NO_REF, 0, 10, 0)]
            ref, _, open_qty, owner = rnd.choice(resting)
            row["ts"], row["action"], row["instrument"] = ts, Action.TAKE, instrument
            row["type"], row["tif"], row["stp"] = OrderType.TAKE, TimeInForce.IOC, 1
            row["order"] = next_id
            next_id += 1
            row["side"] = (Side.SELL if side == Side.BUY else Side.BUY) \
                if rnd.random() < 0.93 else side
            row["account"] = owner if rnd.random() < 0.05 else rnd.randrange(accounts)
            row["qty"] = rnd.randint(1, open_qty) if rnd.random() < 0.9 else open_qty + 1
            row[B.TAKE_TARGET] = ref
            oracle.submit_batch(takes[j:j + 1])
        out.append(takes)
    return np.concatenate(out)


TAKE_SEEDS = [(seed, ((6000,), (6000, 5800))[seed % 2], 2 + seed % 4) for seed in range(40, 52)]


@pytest.mark.parametrize("seed,closes,accounts", TAKE_SEEDS)
def test_streams_with_takes_both_books(seed, closes, accounts):
    cal = TradingCalendar.xshg()
    cmds = make_take_stream(seed, 2500, closes, accounts)
    ref = make_book("reference", closes, cal)
    fast = make_book("numba", closes, cal, **TINY)
    ev_ref = ref.submit_batch(cmds)
    assert_same_events(ev_ref, fast.submit_batch(cmds), seed, "(takes, one batch)")
    assert_same_state(ref, fast, n_handles(cmds), len(closes), seed)
    ref.check_invariants()
    fast.check_invariants()
    # chunked, the same events
    fast2 = make_book("numba", closes, cal, **TINY)
    sizes = random_sizes(random.Random(seed), len(cmds), 70)
    assert_same_events(ev_ref, run_chunked(fast2, cmds, sizes), seed, "(takes, chunked)")

    # every take that traded: one trade, at the target's price, for its quantity, the target
    # on the other side, within the best five levels (the reference book is the oracle of
    # that; here: the trade follows the ACCEPTED row of the take directly)
    takes = cmds["action"] == Action.TAKE
    accepted = ev_ref[(ev_ref[:, B.KIND] == EventKind.ACCEPTED)
                      & (ev_ref[:, B.ACCEPTED_TYPE] == OrderType.TAKE)]
    assert len(accepted) > 20, f"seed {seed}: {len(accepted)} takes traded"
    rows = {int(r[B.CMD]): k for k, r in enumerate(ev_ref.tolist())
            if r[B.KIND] == EventKind.ACCEPTED and r[B.ACCEPTED_TYPE] == OrderType.TAKE}
    for c, k in rows.items():
        acc, trade = ev_ref[k], ev_ref[k + 1]
        assert trade[B.KIND] == EventKind.TRADE and trade[B.CMD] == c
        assert (trade[B.PRICE], trade[B.QTY], trade[B.SEGMENT]) == (
            acc[B.PRICE], cmds[c]["qty"], Segment.LISTED)
        taker, target = (B.TRADE_BUY_ORDER, B.TRADE_SELL_ORDER) if acc[B.SIDE] == Side.BUY \
            else (B.TRADE_SELL_ORDER, B.TRADE_BUY_ORDER)
        assert trade[taker] == acc[B.ORDER] and trade[target] == cmds[c][B.TAKE_TARGET]
        assert trade[B.ACCOUNT] != trade[B.ACCOUNT2]
    reasons = set(ev_ref[ev_ref[:, B.KIND] == EventKind.REJECTED, B.REASON].tolist())
    for reason in (Reason.UNKNOWN_TARGET, Reason.TARGET_SAME_SIDE,
                   Reason.TARGET_QTY_EXCEEDED, Reason.TARGET_OWN_ORDER):
        assert reason in reasons, f"seed {seed}: no {reason.name}"
    assert int(takes.sum()) > 300


def test_streams_with_takes_reach_every_target_reason():
    seen: set[int] = set()
    cal = TradingCalendar.xshg()
    for seed in range(40, 52):
        closes = ((6000,), (6000, 5800))[seed % 2]
        cmds = make_take_stream(seed, 2500, closes, 2 + seed % 4)
        ev = make_book("reference", closes, cal).submit_batch(cmds)
        seen |= set(ev[ev[:, B.KIND] == EventKind.REJECTED, B.REASON].tolist())
    assert {Reason.UNKNOWN_TARGET, Reason.TARGET_SAME_SIDE, Reason.TARGET_NOT_LISTED,
            Reason.TARGET_NOT_IN_BEST_FIVE, Reason.TARGET_OWN_ORDER,
            Reason.TARGET_QTY_EXCEEDED} <= seen


@pytest.mark.parametrize("seed", range(60, 66))
def test_streams_with_takes_and_accounts_both_books(seed):
    """With the risk stage on: balances equal after every chunk, totals conserved,
    reservations matching the open orders (``test_risk.run_both``)."""
    from .test_risk import CONFIGS

    closes = (6000,) if seed % 2 else (6000, 4210)
    n_accounts = 3 + seed % 3
    cmds = make_take_stream(seed, 2000, closes, n_accounts)
    run_both(cmds, closes, n_accounts, seed, CONFIGS[seed % len(CONFIGS)],
             random_sizes(random.Random(seed), len(cmds), 300))


def test_clock_tick_does_not_disturb_a_take(impl):
    eng = Engine({"CEA": 6000}, impl=impl)
    asks(eng, 2)
    eng.submit(ClockTick(T + 5))
    assert outcome(eng.submit(TakeOrder(T + 6, "X", "x", Side.BUY, 100, "s1")))[1][0] == \
        "TradeExecuted"
    assert [(o.order_id, o.open) for o in eng.resting(side=Side.SELL)] == [("s0", 100)]
