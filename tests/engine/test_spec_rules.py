"""One test per rule of the engine specification, each run on both books through the order file.

Rows are written as in spec §8; each test states the outcome the spec requires: trades,
reject reasons, order statuses, quantities, closing prices. 2024-03-04 is a Monday and a
trading day; 2024-10-01..07 is the National Day holiday.
"""

from __future__ import annotations

import pytest

from engine.orderfile import parse_prior_close, parse_rows, run_match
from engine.tradingdays import TradingCalendar

D = "2024-03-04"
D2 = "2024-03-05"


@pytest.fixture(params=["reference", "numba"])
def impl(request):
    return request.param


def match(impl, text: str, prior: str = "60.00"):
    rows = [line.split(",") for line in text.strip().splitlines()]
    rows = [r + [""] * (10 - len(r)) for r in rows]
    return run_match(parse_rows(rows, ["CEA"]), [parse_prior_close(prior)], impl,
                     TradingCalendar.xshg(), check_invariants=True)


def new(t, acct, oid, side, price, qty, typ="LIMIT", tif="DAY", stp="", day=D):
    return f"{day}T{t},{acct},NEW,{oid},{side},{typ},{tif},{price},{qty},{stp}"


def cancel(t, acct, oid, day=D):
    return f"{day}T{t},{acct},CANCEL,{oid},,,,,,"


def amend(t, acct, oid, price, qty, day=D):
    return f"{day}T{t},{acct},AMEND,{oid},,,,{price},{qty},"


def rejects(result):
    return [(int(r[0]), r[3]) for r in result.rejects[1:]]


def trades(result):
    """(buy id, sell id, price, qty, aggressor) per trade."""
    return [(r[5], r[6], r[3], int(r[4]), r[9]) for r in result.trades[1:]]


def orders(result):
    """order_id -> (status, reason, filled, open)."""
    return {r[0]: (r[4], r[5], int(r[6]), int(r[7])) for r in result.orders[1:]}


def lines(*rows):
    return "\n".join(rows)


# ---------------------------------------------------------------- rejects and their order

@pytest.mark.parametrize("row,reason", [
    (new("10:00:00", "", "o1", "BUY", "60.00", "1"), "MALFORMED"),  # no account
    (new("10:00:00", "A", "", "BUY", "60.00", "1"), "MALFORMED"),  # no order_id
    (new("10:00:00", "A", "o1", "", "60.00", "1"), "MALFORMED"),  # no side
    (new("10:00:00", "A", "o1", "HOLD", "60.00", "1"), "MALFORMED"),  # unknown side
    (new("10:00:00", "A", "o1", "BUY", "60.00", "1", typ="STOP"), "MALFORMED"),
    (new("10:00:00", "A", "o1", "BUY", "60.00", "1", tif="GTC"), "MALFORMED"),
    (new("10:00:00", "A", "o1", "BUY", "60.00", "1", stp="NONE"), "MALFORMED"),
    (new("10:00:00", "A", "o1", "BUY", "", "1", typ="MARKET", tif="DAY"), "MALFORMED"),
    (new("10:00:00", "A", "o1", "BUY", "60.00", ""), "MALFORMED"),  # no qty
    ("2024-03-04T25:00:00,A,NEW,o1,BUY,LIMIT,DAY,60.00,1,", "MALFORMED"),  # bad time
    (f"{D}T10:00:00,A,BID,o1,BUY,LIMIT,DAY,60.00,1,", "MALFORMED"),  # unknown action
    (new("10:00:00", "A", "o1", "BUY", "60.00", "1.5"), "INVALID_QTY"),
    (new("10:00:00", "A", "o1", "BUY", "60.00", "0"), "INVALID_QTY"),
    (new("10:00:00", "A", "o1", "BUY", "60.00", "100000001"), "INVALID_QTY"),
    (new("10:00:00", "A", "o1", "BUY", "60.105", "1"), "INVALID_PRICE"),  # finer than a fen
    (new("10:00:00", "A", "o1", "BUY", "0.00", "1"), "INVALID_PRICE"),
    (new("10:00:00", "A", "o1", "BUY", "", "1"), "INVALID_PRICE"),  # LIMIT without price
    (new("10:00:00", "A", "o1", "BUY", "60.00", "1", typ="MARKET", tif="IOC"), "INVALID_PRICE"),
    (new("10:00:00", "A", "o1", "BUY", "66.01", "1"), "PRICE_OUTSIDE_BAND"),
    (new("10:00:00", "A", "o1", "BUY", "53.99", "1"), "PRICE_OUTSIDE_BAND"),
    (new("12:00:00", "A", "o1", "BUY", "60.00", "1"), "MARKET_CLOSED"),  # lunch
    (new("10:00:00", "A", "o1", "BUY", "60.00", "1", day="2024-10-01"), "MARKET_CLOSED"),
])
def test_new_reject_reasons(impl, row, reason):
    assert rejects(match(impl, row)) == [(1, reason)]


def test_60_100_is_a_whole_number_of_fen(impl):
    r = match(impl, new("10:00:00", "A", "o1", "BUY", "60.100", "1"))
    assert rejects(r) == [] and orders(r)["o1"] == ("RESTING", "", 0, 1)


@pytest.mark.parametrize("row,reason", [
    # MALFORMED before INVALID_QTY before INVALID_PRICE before DUPLICATE before MARKET_CLOSED
    # before PRICE_OUTSIDE_BAND (spec §7)
    (new("10:00:00", "A", "o1", "", "60.105", "0"), "MALFORMED"),
    (new("10:00:00", "A", "o1", "BUY", "60.105", "0"), "INVALID_QTY"),
    (new("12:00:00", "A", "o1", "BUY", "60.105", "5"), "INVALID_PRICE"),
    (new("12:00:00", "A", "o0", "BUY", "99.00", "5"), "DUPLICATE_ORDER_ID"),
    (new("12:00:00", "A", "o1", "BUY", "99.00", "5"), "MARKET_CLOSED"),
])
def test_new_order_of_checks(impl, row, reason):
    r = match(impl, lines(new("10:00:00", "B", "o0", "SELL", "61.00", "5"), row))
    assert rejects(r) == [(2, reason)]


def test_duplicate_id_after_a_rejected_row_and_across_accounts_and_days(impl):
    r = match(impl, lines(
        new("10:00:00", "A", "o1", "BUY", "99.00", "5"),  # rejected: outside the band
        new("10:00:01", "B", "o1", "BUY", "60.00", "5"),  # o1 was used by a NEW row
        new("10:00:02", "B", "o2", "BUY", "60.00", "5"),
        new("10:00:03", "C", "o2", "SELL", "61.00", "5", day=D2),  # another account and day
    ))
    assert rejects(r) == [(1, "PRICE_OUTSIDE_BAND"), (2, "DUPLICATE_ORDER_ID"),
                          (4, "DUPLICATE_ORDER_ID")]


def test_time_earlier_than_the_clock_is_malformed_and_does_not_move_it(impl):
    r = match(impl, lines(
        new("10:00:00", "A", "o1", "BUY", "60.00", "5"),
        new("09:59:59", "A", "o2", "BUY", "60.00", "5"),  # earlier: MALFORMED
        new("12:00:00", "A", "o3", "BUY", "bad", "5"),  # rejected, yet moves the clock
        new("11:00:00", "A", "o4", "BUY", "60.00", "5"),  # now earlier than 12:00
    ))
    assert rejects(r) == [(2, "MALFORMED"), (3, "INVALID_PRICE"), (4, "MALFORMED")]


def test_cancel_checks_and_fields_it_does_not_use(impl):
    r = match(impl, lines(
        new("10:00:00", "A", "o1", "BUY", "60.00", "5"),
        f"{D}T10:00:01,,CANCEL,o1,,,,,,",  # no account
        f"{D}T10:00:02,B,CANCEL,o1,,,,,,",  # another account's order
        f"{D}T10:00:03,A,CANCEL,o9,,,,,,",  # never entered
        f"{D}T10:00:04,A,CANCEL,o1,JUNK,JUNK,JUNK,x,y,z",  # unused fields are ignored
        f"{D}T10:00:05,A,CANCEL,o1,,,,,,",  # no longer resting
        "2024-10-02T10:00:00,A,CANCEL,o1,,,,,,",  # holiday before UNKNOWN_ORDER
    ))
    assert rejects(r) == [(2, "MALFORMED"), (3, "UNKNOWN_ORDER"), (4, "UNKNOWN_ORDER"),
                          (6, "UNKNOWN_ORDER"), (7, "MARKET_CLOSED")]
    assert orders(r)["o1"] == ("CANCELLED", "USER", 0, 0)


def test_amend_order_of_checks(impl):
    base = [new("13:10:00", "A", "b1", "BUY", "50.00", "200000"),  # a BLOCK order
            new("13:10:01", "A", "l1", "BUY", "60.00", "10")]
    r = match(impl, lines(
        *base,
        amend("13:11:00", "A", "l1", "60.00", ""),  # no qty: MALFORMED
        amend("13:11:01", "A", "l1", "60.00", "0"),  # INVALID_QTY (pattern and range)
        amend("13:11:02", "A", "l1", "60.001", "5"),  # INVALID_PRICE
        amend("10:00:00", "A", "l1", "60.00", "5", day="2024-10-08"),  # ok: holiday is 1..7
    ))
    assert rejects(r) == [(3, "MALFORMED"), (4, "INVALID_QTY"), (5, "INVALID_PRICE"),
                          (6, "UNKNOWN_ORDER")]  # 10-08 trades, but l1 expired on 03-04

    r = match(impl, lines(
        *base,
        amend("13:11:00", "A", "zz", "60.00", "5", day="2024-03-09"),  # Saturday first
        amend("13:11:01", "B", "l1", "60.00", "5", day="2024-03-09"),
    ))
    assert rejects(r) == [(3, "MARKET_CLOSED"), (4, "MARKET_CLOSED")]

    r = match(impl, lines(
        *base,
        amend("13:12:00", "B", "l1", "60.00", "5"),  # another account's: UNKNOWN_ORDER
        amend("13:12:01", "A", "b1", "50.00", "99999"),  # below the BLOCK range
        amend("13:12:02", "A", "b1", "90.00", "100000"),  # outside the BLOCK band 42..78
        amend("13:12:03", "A", "l1", "66.01", "5"),  # outside the LISTED band
    ))
    assert rejects(r) == [(3, "UNKNOWN_ORDER"), (4, "INVALID_QTY"),
                          (5, "PRICE_OUTSIDE_BAND"), (6, "PRICE_OUTSIDE_BAND")]


def test_amend_outside_its_segment_hours(impl):
    r = match(impl, lines(
        new("10:00:00", "A", "l1", "BUY", "60.00", "10"),
        amend("12:00:00", "B", "l1", "60.00", "5"),  # lunch, another account: UNKNOWN first
        amend("12:00:01", "A", "l1", "60.00", "5"),  # lunch: MARKET_CLOSED
        cancel("12:00:02", "A", "l1"),  # cancels are taken during the break
    ))
    assert rejects(r) == [(2, "UNKNOWN_ORDER"), (3, "MARKET_CLOSED")]
    assert orders(r)["l1"] == ("CANCELLED", "USER", 0, 0)


# ---------------------------------------------------------------- matching

def test_price_time_priority_and_trade_at_the_resting_price(impl):
    r = match(impl, lines(
        new("10:00:00", "S1", "a1", "SELL", "60.10", "100"),
        new("10:00:01", "S2", "a2", "SELL", "60.00", "100"),
        new("10:00:02", "S3", "a3", "SELL", "60.00", "100"),
        new("10:00:03", "B", "b1", "BUY", "60.20", "250"),
    ))
    assert trades(r) == [("b1", "a2", "60.00", 100, "BUY"), ("b1", "a3", "60.00", 100, "BUY"),
                         ("b1", "a1", "60.10", 50, "BUY")]
    assert [t[0] for t in r.trades[1:]] == ["1", "2", "3"]
    assert orders(r)["a1"] == ("RESTING", "", 50, 50)


def test_ioc_remainder_is_cancelled(impl):
    r = match(impl, lines(
        new("10:00:00", "S", "a1", "SELL", "60.00", "100"),
        new("10:00:01", "B", "b1", "BUY", "60.00", "150", tif="IOC"),
        new("10:00:02", "B", "b2", "BUY", "60.00", "10", tif="IOC"),
    ))
    assert orders(r)["b1"] == ("CANCELLED", "IOC_REMAINDER", 100, 0)
    assert orders(r)["b2"] == ("CANCELLED", "IOC_REMAINDER", 0, 0)


@pytest.mark.parametrize("stp,expect", [
    ("", {"b1": ("CANCELLED", "SELF_TRADE", 50, 0), "own": ("RESTING", "", 0, 100),
          "other2": ("RESTING", "", 0, 100)}),
    ("CANCEL_NEWEST", {"b1": ("CANCELLED", "SELF_TRADE", 50, 0),
                       "own": ("RESTING", "", 0, 100), "other2": ("RESTING", "", 0, 100)}),
    ("CANCEL_OLDEST", {"b1": ("FILLED", "", 150, 0), "own": ("CANCELLED", "SELF_TRADE", 0, 0),
                       "other2": ("FILLED", "", 100, 0)}),
    ("CANCEL_BOTH", {"b1": ("CANCELLED", "SELF_TRADE", 50, 0),
                     "own": ("CANCELLED", "SELF_TRADE", 0, 0),
                     "other2": ("RESTING", "", 0, 100)}),
])
def test_self_trade_prevention(impl, stp, expect):
    r = match(impl, lines(
        new("10:00:00", "X", "other1", "SELL", "60.00", "50"),
        new("10:00:01", "A", "own", "SELL", "60.00", "100"),
        new("10:00:02", "Y", "other2", "SELL", "60.00", "100"),
        new("10:00:03", "A", "b1", "BUY", "60.00", "150", stp=stp),
    ))
    got = orders(r)
    assert {k: got[k] for k in expect} == expect
    assert got["other1"] == ("FILLED", "", 50, 0)  # trades before the own order stand


def test_amend_priority_rules(impl):
    r = match(impl, lines(
        new("10:00:00", "S1", "a1", "SELL", "60.00", "100"),
        new("10:00:01", "S2", "a2", "SELL", "60.00", "100"),
        new("10:00:02", "S3", "a3", "SELL", "60.00", "100"),
        amend("10:00:03", "S1", "a1", "60.00", "60"),  # smaller: keeps its place
        amend("10:00:04", "S2", "a2", "60.00", "100"),  # unchanged: accepted, keeps it
        amend("10:00:05", "S3", "a3", "60.00", "120"),  # larger: goes to the back
        new("10:00:06", "B", "b1", "BUY", "60.00", "160"),
    ))
    assert rejects(r) == []
    assert trades(r) == [("b1", "a1", "60.00", 60, "BUY"), ("b1", "a2", "60.00", 100, "BUY")]
    assert orders(r)["a3"] == ("RESTING", "", 0, 120)


def test_amend_to_a_crossing_price_trades_at_once_with_its_stp(impl):
    r = match(impl, lines(
        new("10:00:00", "S", "a1", "SELL", "60.00", "50"),
        new("10:00:01", "B", "own", "SELL", "60.05", "10"),
        new("10:00:02", "B", "b1", "BUY", "59.00", "100", stp="CANCEL_OLDEST"),
        amend("10:00:03", "B", "b1", "60.05", "100"),
    ))
    assert trades(r) == [("b1", "a1", "60.00", 50, "BUY")]
    assert orders(r)["own"] == ("CANCELLED", "SELF_TRADE", 0, 0)
    assert orders(r)["b1"] == ("RESTING", "", 50, 50)


def test_amend_quantity_must_fit_the_segment_even_after_fills(impl):
    r = match(impl, lines(
        new("13:00:00", "S", "s1", "SELL", "60.00", "100000"),
        new("13:00:01", "B", "b1", "BUY", "60.00", "150000"),  # 50,000 t left open
        amend("13:00:02", "B", "b1", "60.00", "50000"),
        amend("13:00:03", "B", "b1", "60.00", "100000"),
    ))
    assert rejects(r) == [(3, "INVALID_QTY")]
    assert orders(r)["b1"] == ("RESTING", "", 100000, 100000)


@pytest.mark.parametrize("stp,fillable", [
    ("CANCEL_NEWEST", False), ("CANCEL_BOTH", False), ("CANCEL_OLDEST", True)])
def test_fok_is_all_or_nothing(impl, stp, fillable):
    r = match(impl, lines(
        new("10:00:00", "X", "a1", "SELL", "60.00", "50"),
        new("10:00:01", "F", "own", "SELL", "60.00", "30"),
        new("10:00:02", "Y", "a2", "SELL", "60.01", "60"),
        new("10:00:03", "F", "f1", "BUY", "60.01", "110", tif="FOK", stp=stp),
        new("10:00:04", "F", "f2", "BUY", "60.01", "200", tif="FOK", stp="CANCEL_OLDEST"),
    ))
    o = orders(r)
    # f2 can never fill (110 t of others' orders at most): nothing at all happens
    assert o["f2"] == ("CANCELLED", "FOK_NOT_FILLABLE", 0, 0)
    if fillable:
        assert o["f1"] == ("FILLED", "", 110, 0)
        assert o["own"] == ("CANCELLED", "SELF_TRADE", 0, 0)
        assert len(trades(r)) == 2
    else:
        assert o["f1"] == ("CANCELLED", "FOK_NOT_FILLABLE", 0, 0)
        assert o["own"] == ("RESTING", "", 0, 30)  # no STP cancel either
        assert trades(r) == []
        assert o["a1"] == ("RESTING", "", 0, 50) and o["a2"] == ("RESTING", "", 0, 60)


def test_market_order_reaches_the_best_five_levels_only(impl):
    asks = [new(f"10:00:0{k}", f"S{k}", f"a{k}", "SELL", f"60.0{k}", "10") for k in range(6)]
    r = match(impl, lines(
        *asks,
        new("10:01:00", "B", "m1", "BUY", "", "100", typ="MARKET", tif="IOC"),
        new("10:01:01", "B", "m2", "BUY", "", "5", typ="MARKET", tif="IOC"),
        new("10:01:02", "C", "m3", "SELL", "", "5", typ="MARKET", tif="IOC"),
    ))
    assert [t[2] for t in trades(r)][:5] == ["60.00", "60.01", "60.02", "60.03", "60.04"]
    o = orders(r)
    assert o["m1"] == ("CANCELLED", "IOC_REMAINDER", 50, 0)
    assert o["a5"] == ("RESTING", "", 5, 5)  # m2 reaches the sixth level once it is first
    assert o["m3"] == ("CANCELLED", "NO_LIQUIDITY", 0, 0)  # no bids at all


def test_a_level_skipped_by_cancel_oldest_counts_as_one_of_five(impl):
    asks = [new(f"10:00:0{k}", "A" if k == 0 else f"S{k}", f"a{k}", "SELL", f"60.0{k}", "10")
            for k in range(6)]
    r = match(impl, lines(
        *asks,
        new("10:01:00", "A", "m1", "BUY", "", "100", typ="MARKET", tif="IOC",
            stp="CANCEL_OLDEST"),
    ))
    o = orders(r)
    assert o["a0"] == ("CANCELLED", "SELF_TRADE", 0, 0)
    assert o["m1"] == ("CANCELLED", "IOC_REMAINDER", 40, 0)  # levels 60.01..60.04 only
    assert o["a5"] == ("RESTING", "", 0, 10)


# ---------------------------------------------------------------- segments, bands, sessions

@pytest.mark.parametrize("qty,segment", [("99999", "LISTED"), ("100000", "BLOCK"),
                                         ("100000000", "BLOCK")])
def test_tier_boundaries(impl, qty, segment):
    r = match(impl, new("13:00:00", "A", "o1", "BUY", "60.00", qty))
    assert r.orders[1][2] == segment


def test_segments_never_trade_with_each_other(impl):
    r = match(impl, lines(
        new("13:00:00", "S", "s1", "SELL", "60.00", "100000"),
        new("13:00:01", "B", "b1", "BUY", "60.00", "99999"),
    ))
    assert trades(r) == []


@pytest.mark.parametrize("prior,listed,block", [
    ("60.00", ("54.00", "66.00"), ("42.00", "78.00")),
    ("46.66", ("41.99", "51.33"), ("32.66", "60.66")),  # 51.326 rounds half up
    ("52.96", ("47.66", "58.26"), ("37.07", "68.85")),  # 58.256 -> 58.26; 37.072 -> 37.07
    ("0.05", ("0.05", "0.06"), ("0.04", "0.07")),  # 4.5 -> 5 and 5.5 -> 6 fen; 3.5 -> 4
])
def test_band_limits_are_inclusive_and_rounded_half_up(impl, prior, listed, block):
    def fen(text):
        whole, frac = text.split(".")
        return int(whole) * 100 + int(frac)

    def px(f):
        return f"{f // 100}.{f % 100:02d}"

    rows = []
    for k, (lo, hi, qty, t) in enumerate([(*listed, "10", "13:00:00"),
                                          (*block, "100000", "13:00:01")]):
        rows += [new(t, "A", f"in{k}lo", "BUY", lo, qty), new(t, "A", f"in{k}hi", "SELL", hi, qty),
                 new(t, "A", f"out{k}lo", "BUY", px(fen(lo) - 1), qty),
                 new(t, "A", f"out{k}hi", "SELL", px(fen(hi) + 1), qty)]
    r = match(impl, lines(*rows), prior)
    assert [x[1] for x in rejects(r)] == ["PRICE_OUTSIDE_BAND"] * 4
    assert {row[0] for row in r.orders[1:]} == {"in0lo", "in0hi", "in1lo", "in1hi"}


@pytest.mark.parametrize("t,listed_open,block_open", [
    ("09:29:59.999999", False, False), ("09:30:00", True, False),
    ("11:29:59.999999", True, False), ("11:30:00", False, False),
    ("12:59:59.999999", False, False), ("13:00:00", True, True),
    ("14:59:59.999999", True, True), ("15:00:00", False, False),
])
def test_session_windows(impl, t, listed_open, block_open):
    r = match(impl, lines(new(t, "A", "l", "BUY", "60.00", "1"),
                          new(t, "A", "b", "BUY", "60.00", "100000")))
    closed = {row[2] for row in r.rejects[1:]}
    assert ("l" not in closed) == listed_open and ("b" not in closed) == block_open


# ---------------------------------------------------------------- days

def test_expiry_at_15_00_and_cancel_at_15_00(impl):
    r = match(impl, lines(
        new("14:00:00", "A", "o1", "BUY", "60.00", "10"),
        new("14:00:01", "B", "o2", "SELL", "60.00", "4"),
        cancel("15:00:00", "A", "o1"),
    ))
    assert rejects(r) == [(3, "UNKNOWN_ORDER")]
    assert orders(r)["o1"] == ("EXPIRED", "", 4, 0)


def test_a_later_date_expires_the_day_and_end_of_input_leaves_orders_resting(impl):
    r = match(impl, lines(
        new("10:00:00", "A", "o1", "BUY", "60.00", "10"),
        new("10:00:00", "A", "o2", "BUY", "60.00", "10", day=D2),
    ))
    assert orders(r) == {"o1": ("EXPIRED", "", 0, 0), "o2": ("RESTING", "", 0, 10)}
    assert [row[0] for row in r.days[1:]] == [D, D2]


def test_close_is_half_up_vwap_of_listed_trades_and_carries(impl):
    r = match(impl, lines(
        new("10:00:00", "S", "s1", "SELL", "60.00", "1"),
        new("10:00:01", "B", "b1", "BUY", "60.00", "1"),
        new("10:00:02", "S", "s2", "SELL", "60.01", "1"),
        new("10:00:03", "B", "b2", "BUY", "60.01", "1"),  # VWAP 60.005 -> 60.01
        new("13:00:00", "S", "s3", "SELL", "50.00", "100000"),
        new("13:00:01", "B", "b3", "BUY", "50.00", "100000"),  # BLOCK: not in the close
        new("10:00:00", "S", "s4", "SELL", "66.01", "3", day=D2),  # legal only as 60.01 + 10 %
        new("10:00:01", "B", "b4", "BUY", "66.01", "3", day=D2),
        new("10:00:00", "S", "s5", "SELL", "66.00", "1", day="2024-03-07"),  # 03-06 skipped
    ))
    assert rejects(r) == []
    assert r.days[1:] == [
        [D, "60.00", "60.01", "2", "100000", "120.01", "5000000.00"],
        [D2, "60.01", "66.01", "3", "0", "198.03", "0.00"],
        ["2024-03-07", "66.01", "66.01", "0", "0", "0.00", "0.00"],  # no trade: prior close
    ]


def test_holidays_and_weekends_are_never_seen(impl):
    r = match(impl, lines(
        new("10:00:00", "A", "o1", "BUY", "60.00", "1", day="2024-09-30"),
        new("10:00:00", "A", "o2", "BUY", "60.00", "1", day="2024-10-01"),
        new("10:00:00", "A", "o3", "BUY", "60.00", "1", day="2024-10-05"),
        new("10:00:00", "A", "o4", "BUY", "60.00", "1", day="2024-10-08"),
    ))
    assert rejects(r) == [(2, "MARKET_CLOSED"), (3, "MARKET_CLOSED")]
    assert [row[0] for row in r.days[1:]] == ["2024-09-30", "2024-10-08"]


def test_a_day_entered_only_by_a_rejected_row_is_seen(impl):
    r = match(impl, new("08:00:00", "A", "o1", "BUY", "60.00", "1"))
    assert rejects(r) == [(1, "MARKET_CLOSED")]
    assert r.days[1:] == [[D, "60.00", "60.00", "0", "0", "0.00", "0.00"]]
