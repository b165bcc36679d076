"""The rules of ``engine.rules``, the money rules of ``engine.accounts`` and the checks of
``engine.checks``: one definition each, the same numbers as plain Python and compiled by Numba.

Every formula is a ``register_jitable`` function that the reference book, the edges, the
auction and the simulators call as Python, and that the kernels inline. The tests pin each
one to the spec's figures and run it both ways (the ``_jit_*`` wrappers compile the very
same functions), so the two books cannot drift apart on a formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from engine import Engine, NewOrder, Side, parse_time
from engine import batch as B
from engine.accounts import RiskConfig, fee, order_unit, reserve_unit, segment_fee_bps
from engine.auction import auction_band_limits
from engine.book import make_book
from engine.checks import (
    names_account, names_order, new_order_codes_valid, order_check, qty_valid,
)
from engine.codes import (
    NO_TIME, Action, EventKind, OrderType, Reason, Segment, Stp, TimeInForce,
)
from engine.fast import kernels
from engine.fast.state import ladder_width
from engine.rules import (
    BLOCK_MIN_QTY, DAY_CLOSE_US, DAY_US, LISTED_MAX_QTY, MAX_QTY, band_limits, band_limits_pct, closing_price,
    crosses, in_band, in_session, qty_fits_segment, segment_for_qty, vwap,
)
from engine.tradingdays import TradingCalendar


@njit(cache=False)
def _jit_rules(prior_close, segment, pct, turnover, volume, qty, tod):
    lower, upper = band_limits(prior_close, segment)
    lo2, up2 = band_limits_pct(prior_close, pct)
    return (lower, upper, lo2, up2, closing_price(turnover, volume, prior_close),
            segment_for_qty(qty), qty_fits_segment(qty, segment), in_session(segment, tod),
            ladder_width(prior_close))


@njit(cache=False)
def _jit_vwap(turnover, volume):
    return vwap(turnover, volume)


@njit(cache=False)
def _jit_crosses(side, limit_price, level_price, lower, upper):
    return crosses(side, limit_price, level_price), in_band(limit_price, lower, upper)


@njit(cache=False)
def _jit_money(notional, price, bps, risk, side, segment):
    return (fee(notional, bps), reserve_unit(price, bps), segment_fee_bps(risk, segment),
            order_unit(risk, side, price, segment))


@njit(cache=False)
def _jit_checks(well_formed, qty, is_market, price_given, price, side, order_type, tif, stp):
    return (order_check(well_formed, qty, is_market, price_given, price), qty_valid(qty),
            new_order_codes_valid(side, order_type, tif, stp))


@njit(cache=False)
def _jit_names(order, account, instrument, n_instruments):
    return names_order(order, account, instrument, n_instruments), names_account(account)


# ---------------------------------------------------------------------------- bands, close

@pytest.mark.parametrize("prior, listed, block", [
    (6000, (5400, 6600), (4200, 7800)),
    (4666, (4199, 5133), (3266, 6066)),  # 46.66 x 1.1 = 51.326 and x 0.9 = 41.994: half up
    (5, (5, 6), (4, 7)),  # 4.5 -> 5 and 5.5 -> 6 (0.05 x 0.9, 1.1)
    (1, (1, 1), (1, 1)),
    (1_000_000, (900_000, 1_100_000), (700_000, 1_300_000)),
])
def test_band_limits_follow_the_spec_both_ways(prior, listed, block):
    assert band_limits(prior, Segment.LISTED) == listed
    assert band_limits(prior, Segment.BLOCK) == block
    assert auction_band_limits(prior, 10) == listed and auction_band_limits(prior, 30) == block
    for segment, want in ((Segment.LISTED, listed), (Segment.BLOCK, block)):
        got = _jit_rules(prior, int(segment), 30, 0, 0, 1, 0)
        assert got[:2] == want and got[2:4] == block and got[4] == prior
    assert ladder_width(prior) == block[1] - block[0] + 1 == _jit_rules(prior, 0, 10, 0, 0, 1,
                                                                         0)[8]


def test_band_is_inclusive_and_crossing_is_the_limit_side():
    for price, inside in ((5399, False), (5400, True), (6600, True), (6601, False)):
        assert in_band(price, 5400, 6600) is inside
        assert _jit_crosses(1, price, 6000, 5400, 6600)[1] is inside
    for side, level, crossed in ((Side.BUY, 6000, True), (Side.BUY, 6001, False),
                                 (Side.SELL, 6000, True), (Side.SELL, 5999, False)):
        assert crosses(side, 6000, level) is crossed
        assert _jit_crosses(int(side), 6000, level, 0, 0)[0] is crossed


@pytest.mark.parametrize("turnover, volume, want", [
    (6000 * 3 + 6001, 4, 6000),  # 6000.25
    (6000 + 6001, 2, 6001),  # 6000.5: half up
    (6000 * 2 + 6001, 3, 6000),  # 6000.33
    (6000 + 6001 * 2, 3, 6001),  # 6000.67
    (99_999 * 1_300_000, 99_999, 1_300_000),
])
def test_vwap_is_rounded_half_up_both_ways(turnover, volume, want):
    assert vwap(turnover, volume) == want == _jit_vwap(turnover, volume)
    assert closing_price(turnover, volume, 1) == want
    assert _jit_rules(1, 0, 10, turnover, volume, 1, 0)[4] == want


def test_closing_price_without_listed_trades_is_the_prior_close():
    assert closing_price(0, 0, 5900) == 5900 == _jit_rules(5900, 0, 10, 0, 0, 1, 0)[4]


def test_segments_and_sessions_both_ways():
    tod_10, tod_12, tod_14 = 36_000_000_000, 43_200_000_000, 50_400_000_000
    for qty, segment in ((1, Segment.LISTED), (LISTED_MAX_QTY, Segment.LISTED),
                         (BLOCK_MIN_QTY, Segment.BLOCK), (MAX_QTY, Segment.BLOCK)):
        assert segment_for_qty(qty) == segment == _jit_rules(6000, 0, 10, 0, 0, qty, 0)[5]
        assert qty_fits_segment(qty, segment)
        assert _jit_rules(6000, int(segment), 10, 0, 0, qty, 0)[6]
        assert not qty_fits_segment(qty, 1 - segment)
    for tod, listed, block in ((tod_10, True, False), (tod_12, False, False),
                               (tod_14, True, True)):
        assert in_session(Segment.LISTED, tod) is listed is _jit_rules(1, 0, 10, 0, 0, 1, tod)[7]
        assert in_session(Segment.BLOCK, tod) is block is _jit_rules(1, 1, 10, 0, 0, 1, tod)[7]


# ---------------------------------------------------------------------------- money

def test_fee_and_reservation_unit_both_ways():
    risk = RiskConfig(fee_bps_listed=5, fee_bps_block=2).vector()
    for notional, price, bps in ((1_200_000, 6000, 5), (1, 1, 5000), (18_003, 6001, 5),
                                 (600_000_000, 6000, 2), (0, 1, 0)):
        for side in (Side.BUY, Side.SELL):
            for segment in (Segment.LISTED, Segment.BLOCK):
                seg_bps = 5 if segment == Segment.LISTED else 2
                unit = reserve_unit(price, seg_bps) if side == Side.BUY else 1
                want = (fee(notional, bps), reserve_unit(price, bps), seg_bps, unit)
                assert _jit_money(notional, price, bps, risk, int(side), int(segment)) == want
                assert (segment_fee_bps(risk, segment), order_unit(risk, side, price, segment)
                        ) == want[2:]
    assert (fee(1, 5000), fee(1, 4999), reserve_unit(6000, 5), reserve_unit(6001, 5)) == (
        1, 0, 6003, 6005)


def test_the_fee_takes_numpy_arrays_as_the_ledger_passes_them():
    notional = np.array([1_200_000, 18_003, 1], dtype=np.int64)
    assert fee(notional, np.array([5, 5, 5000])).tolist() == [600, 9, 1]


def test_a_reservation_covers_any_fill_at_or_under_its_price():
    for price in (1, 59, 6000, 6001, 1_300_000):
        for bps in (0, 1, 3, 5, 999, 1000):
            unit = reserve_unit(price, bps)
            for fill in (1, price // 2 or 1, price):
                for qty in (1, 7, 99_999):
                    assert qty * fill + fee(qty * fill, bps) <= qty * unit


# ---------------------------------------------------------------------------- checks

def test_order_check_gives_the_first_failing_check_in_the_spec_order():
    R = Reason
    cases = [  # well_formed, qty, is_market, price_given, price -> reason
        ((False, 0, False, False, 0), R.MALFORMED),
        ((True, 0, False, False, 0), R.INVALID_QTY),
        ((True, MAX_QTY + 1, True, True, 6000), R.INVALID_QTY),
        ((True, 1, False, False, 0), R.INVALID_PRICE),  # LIMIT without a price
        ((True, 1, False, True, 0), R.INVALID_PRICE),
        ((True, 1, False, True, -1), R.INVALID_PRICE),
        ((True, 1, True, True, 6000), R.INVALID_PRICE),  # MARKET with a price
        ((True, 1, True, False, 0), R.NONE),
        ((True, MAX_QTY, False, True, 1), R.NONE),
    ]
    for args, want in cases:
        assert order_check(*args) is want
        assert _jit_checks(*args, 1, 1, 1, 1)[0] == want


def test_codes_and_names_both_ways():
    # a NEW is LIMIT or MARKET (TAKE is its own action, spec §3a)
    known = {(side, t, tif, stp) for side in Side for t in (OrderType.LIMIT, OrderType.MARKET)
             for tif in TimeInForce
             for stp in Stp if t != OrderType.MARKET or tif == TimeInForce.IOC}
    for side in range(0, 4):
        for t in range(0, 4):
            for tif in range(0, 5):
                for stp in range(0, 5):
                    want = (side, t, tif, stp) in known
                    assert new_order_codes_valid(side, t, tif, stp) is want
                    assert _jit_checks(True, 1, False, True, 1, side, t, tif, stp)[2] is want
    for qty, want in ((0, False), (1, True), (MAX_QTY, True), (MAX_QTY + 1, False)):
        assert qty_valid(qty) is want is _jit_checks(True, qty, False, True, 1, 1, 1, 1, 1)[1]
    for args, want in (((0, 0, 0, 1), (True, True)), ((-1, 0, 0, 1), (False, True)),
                       ((0, -1, 0, 1), (False, False)), ((0, 0, 1, 1), (False, True)),
                       ((0, 0, -1, 2), (False, True))):
        assert (names_order(*args), names_account(args[1])) == want == _jit_names(*args)


def test_the_kernels_read_codes_as_intenum_members_not_integer_aliases():
    aliases = [name for name, value in vars(kernels).items()
               if name.startswith("_") and isinstance(value, int) and name.isupper()]
    assert aliases == []


# ---------------------------------------------------------------------------- events, clock

def test_event_column_names_per_kind():
    assert (B.DAY_NUMBER, B.DAY_CLOSE, B.DAY_PRIOR_CLOSE, B.DAY_LISTED_VOLUME,
            B.DAY_BLOCK_VOLUME, B.DAY_LISTED_TURNOVER, B.DAY_BLOCK_TURNOVER) == (
        B.ORDER, B.PRICE, B.AUX1, B.QTY, B.AUX2, B.ACCOUNT, B.ACCOUNT2)
    assert (B.TRADE_BUY_ORDER, B.TRADE_BUY_ACCOUNT, B.TRADE_SELL_ORDER, B.TRADE_SELL_ACCOUNT,
            B.TRADE_AGGRESSOR, B.TRADE_BUY_LEFT, B.TRADE_SELL_LEFT) == (
        B.ORDER, B.ACCOUNT, B.ORDER2, B.ACCOUNT2, B.SIDE, B.AUX1, B.AUX2)
    assert (B.ACCEPTED_TYPE, B.ACCEPTED_TIF, B.REJECTED_ACTION, B.CANCELLED_FILLED,
            B.EXPIRED_FILLED, B.AMENDED_PRIORITY_KEPT, B.AMENDED_OPEN_BEFORE) == (
        B.AUX1, B.AUX2, B.AUX1, B.AUX1, B.AUX1, B.AUX1, B.AUX2)


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_day_closed_rows_read_by_their_names(impl):
    eng = Engine({"CEA": 6000}, impl=impl)
    t = parse_time("2024-03-04T10:00:00")
    eng.submit_many([NewOrder(t, "A", "s", Side.SELL, qty=3, price=6000),
                     NewOrder(t, "B", "b", Side.BUY, qty=3, price=6001),
                     NewOrder(t, "A", "s2", Side.SELL, qty=1, price=6001),
                     NewOrder(t, "B", "b2", Side.BUY, qty=1, price=6001)])
    cmds = B.empty_commands(1)
    cmds["ts"], cmds["action"] = t - t % DAY_US + DAY_CLOSE_US, Action.TICK
    row = eng.submit_batch(cmds)[-1]
    assert row[B.KIND] == EventKind.DAY_CLOSED
    assert (row[B.DAY_CLOSE], row[B.DAY_PRIOR_CLOSE], row[B.DAY_LISTED_VOLUME],
            row[B.DAY_LISTED_TURNOVER], row[B.DAY_BLOCK_VOLUME]) == (6000, 6000, 4, 24_001, 0)
    assert row[B.DAY_NUMBER] == t // DAY_US


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_both_books_tell_their_clock(impl):
    book = make_book(impl, [6000], TradingCalendar.from_dates(["2024-03-04"]))
    assert book.clock == NO_TIME
    t = parse_time("2024-03-04T10:00:00")
    cmds = B.empty_commands(1)
    cmds["ts"], cmds["action"] = t, Action.TICK
    book.submit_batch(cmds)
    assert book.clock == t == book.globals()[0] and type(book.clock) is int
    with pytest.raises(AttributeError):
        book.clock = 0
