"""The codes are explicit ints, never reordered or reused, and Numba reads them as constants.

They are written into command and event arrays (and, later, journals and wire frames), so a
renumbering would silently change the meaning of recorded data: every member of every IntEnum
in ``engine.codes`` is pinned here, and so is the set of members.
"""

from __future__ import annotations

import enum

import numba
import pytest

from engine import codes
from engine.codes import (
    AccountType, Action, EventKind, OrderStatus, OrderType, QuoteEnd, Reason, Segment, Side, Stp,
    TimeInForce,
)

PINNED = {
    Side: {"BUY": 1, "SELL": 2},
    OrderType: {"LIMIT": 1, "MARKET": 2, "TAKE": 3},
    TimeInForce: {"DAY": 1, "IOC": 2, "FOK": 3},
    Stp: {"CANCEL_NEWEST": 1, "CANCEL_OLDEST": 2, "CANCEL_BOTH": 3},
    Segment: {"LISTED": 0, "BLOCK": 1},
    Action: {"NEW": 1, "CANCEL": 2, "AMEND": 3, "TICK": 4, "TAKE": 5, "BLOCK_QUOTE": 6,
             "BLOCK_COUNTER": 7, "BLOCK_ACCEPT": 8, "BLOCK_WITHDRAW": 10, "UNKNOWN": 9},
    Reason: {
        "NONE": 0, "MALFORMED": 1, "INVALID_QTY": 2, "INVALID_PRICE": 3,
        "DUPLICATE_ORDER_ID": 4, "MARKET_CLOSED": 5, "UNKNOWN_ORDER": 6,
        "PRICE_OUTSIDE_BAND": 7, "INSUFFICIENT_FUNDS": 8, "INSUFFICIENT_ALLOWANCES": 9,
        "POSITION_LIMIT": 10, "UNKNOWN_ACCOUNT": 11, "ACCOUNT_FROZEN": 12,
        "ACCOUNT_NOT_ADMITTED": 13, "UNKNOWN_TARGET": 14, "TARGET_SAME_SIDE": 15,
        "TARGET_NOT_LISTED": 16, "TARGET_NOT_IN_BEST_FIVE": 17, "TARGET_OWN_ORDER": 18,
        "TARGET_QTY_EXCEEDED": 19, "USER": 20, "IOC_REMAINDER": 21, "NO_LIQUIDITY": 22,
        "FOK_NOT_FILLABLE": 23, "SELF_TRADE": 24,
        "UNKNOWN_QUOTE": 30, "UNKNOWN_COUNTERPARTY": 31, "NOT_YOUR_TURN": 32,
        "TERMS_CHANGED": 33,
    },
    AccountType: {"COVERED_ENTITY": 1, "INSTITUTION": 2, "INDIVIDUAL": 3},
    OrderStatus: {"NONE": 0, "RESTING": 1, "FILLED": 2, "CANCELLED": 3, "EXPIRED": 4},
    EventKind: {"ACCEPTED": 1, "REJECTED": 2, "TRADE": 3, "CANCELLED": 4, "EXPIRED": 5,
                "AMENDED": 6, "DAY_CLOSED": 7, "QUOTE": 8, "QUOTE_ENDED": 9},
    QuoteEnd: {"ACCEPTED": 1, "WITHDRAWN": 2, "EXPIRED": 3},
}


def test_every_intenum_of_engine_codes_is_pinned():
    found = {obj for obj in vars(codes).values()
             if isinstance(obj, type) and issubclass(obj, enum.IntEnum)
             and obj is not enum.IntEnum and obj.__module__ == codes.__name__}
    assert found == set(PINNED)


@pytest.mark.parametrize("enum_cls", list(PINNED), ids=lambda e: e.__name__)
def test_codes_are_pinned(enum_cls):
    # in declaration order, with these exact values, and no aliases
    assert [(m.name, m.value) for m in enum_cls] == list(PINNED[enum_cls].items())
    assert list(enum_cls.__members__) == list(PINNED[enum_cls])
    for name, value in PINNED[enum_cls].items():
        member = enum_cls[name]
        assert member == value and int(member) == value and type(member.value) is int
        assert enum_cls(value) is member


def test_sentinels_are_pinned():
    assert codes.NO_PRICE == -1
    assert codes.NO_TIME == -(2**62)
    assert codes.HUGE_PRICE == 2**62
    assert codes.NO_REF == -1
    # the sentinels never collide with a valid value
    assert codes.NO_TIME < 0 < codes.HUGE_PRICE < 2**63 - 1


def test_reject_and_cancel_reasons_do_not_overlap_and_follow_the_spec_order():
    rejects = [Reason.MALFORMED, Reason.INVALID_QTY, Reason.INVALID_PRICE,
               Reason.DUPLICATE_ORDER_ID, Reason.MARKET_CLOSED, Reason.UNKNOWN_ORDER,
               Reason.PRICE_OUTSIDE_BAND,
               # the risk stage's, checked after every rule of the spec
               Reason.UNKNOWN_ACCOUNT, Reason.ACCOUNT_FROZEN, Reason.ACCOUNT_NOT_ADMITTED,
               Reason.POSITION_LIMIT, Reason.INSUFFICIENT_FUNDS,
               Reason.INSUFFICIENT_ALLOWANCES,
               # a TAKE's target checks, in the spec's order (§3a)
               Reason.UNKNOWN_TARGET, Reason.TARGET_SAME_SIDE, Reason.TARGET_NOT_LISTED,
               Reason.TARGET_NOT_IN_BEST_FIVE, Reason.TARGET_OWN_ORDER,
               Reason.TARGET_QTY_EXCEEDED]
    assert sorted(rejects[-6:]) == rejects[-6:]
    cancels = [Reason.USER, Reason.IOC_REMAINDER, Reason.NO_LIQUIDITY, Reason.FOK_NOT_FILLABLE,
               Reason.SELF_TRADE]
    assert sorted(rejects[:7]) == rejects[:7] and max(rejects) < min(cancels)
    # a negotiation's rejects (spec §3b), numbered after the cancellations
    negotiation = [Reason.UNKNOWN_QUOTE, Reason.UNKNOWN_COUNTERPARTY, Reason.NOT_YOUR_TURN,
                   Reason.TERMS_CHANGED]
    assert min(negotiation) > max(cancels)
    rejects += negotiation
    assert set(Reason) == {Reason.NONE, *rejects, *cancels}


@numba.njit(cache=False)
def _classify(side, stp, tif):
    """Reads IntEnum members inside jitted code: they must be plain int constants."""
    score = 0
    if side == Side.BUY:
        score += 100
    elif side == Side.SELL:
        score += 200
    if stp == Stp.CANCEL_BOTH:
        score += Reason.SELF_TRADE  # arithmetic with a member: an int
    if tif == TimeInForce.FOK:
        score += EventKind.DAY_CLOSED * 1000
    return score + Segment.BLOCK


def test_numba_reads_intenum_members_as_int_constants():
    assert _classify(1, 1, 1) == 101
    assert _classify(int(Side.SELL), int(Stp.CANCEL_BOTH), int(TimeInForce.DAY)) == 225
    assert _classify(2, 3, 3) == 7225
    assert _classify(9, 2, 2) == 1
    result = _classify(1, 3, 3)
    assert result == 100 + 24 + 7000 + 1 and type(result) is int
    # the compiled signature saw plain integers, not enum objects
    for sig in _classify.signatures:
        assert all(isinstance(t, numba.types.Integer) for t in sig)


@numba.njit(cache=False)
def _buy():
    return Side.BUY


def test_numba_returns_intenum_member_by_value():
    result = _buy()
    assert result == 1 and int(result) == Side.BUY
