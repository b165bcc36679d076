"""One-way bidding (engine/auction.py): clearing on crafted bid books worked by hand, the
checks and their order, the offer's validation, and properties over generated books."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.auction import (
    AuctionError, AuctionReason, Bid, BidStatus, ClearingRule, Offer, allocate, arrival_order,
    auction_band_limits, clear, screen,
)
from engine.codes import Reason, Segment
from engine.rules import band_limits

SELLER = "S"


def offer(**kw) -> Offer:
    """1,000 t at reserve 60.00, prior close 60.00 (band 54.00..66.00), window [100, 200)."""
    base = dict(auction_id=1, seller=SELLER, quantity=1_000, reserve_price=6000,
                prior_close=6000, window_start=100, window_end=200)
    base.update(kw)
    return Offer(**base)


#: (id, bidder, price fen, qty t, ts, seq)
BOOK = [
    ("a", "A", 6150, 300, 110, 1),
    ("b", "B", 6100, 200, 120, 2),
    ("c", "C", 6100, 400, 115, 3),  # b's price, earlier: ranks before b (ties by time)
    ("d", "D", 6050, 300, 130, 4),
    ("e", "E", 6050, 100, 130, 5),  # d's price and time, later seq: after d
    ("f", "F", 5990, 100, 140, 6),  # below the reserve 60.00
    ("g", "G", 6601, 50, 150, 7),  # above the band's 66.00
    ("h", SELLER, 6200, 10, 160, 8),  # the seller bidding on its own offer
    ("i", "I", 6200, 10, 200, 9),  # at the window's end (excluded)
    ("a", "J", 6300, 10, 170, 10),  # a's id again
    ("k", "K", 6600, 50, 99, 11),  # before the window opens
]


def bids(rows=BOOK) -> list[Bid]:
    return [Bid(*row) for row in rows]


def test_pay_as_bid_on_the_crafted_book():
    r = clear(offer(), bids())
    # price, then time, then seq: a 6150 x 300 (left 700); c 6100 x 400 (ts 115, left 300);
    # b 6100 x 200 (ts 120, left 100); d 6050 takes the last 100 of its 300 (partial, seq 4
    # before e's 5); e gets nothing.
    assert [(f.no, f.bid_id, f.price, f.qty, f.partial) for f in r.fills] == [
        (1, "a", 6150, 300, False), (2, "c", 6100, 400, False), (3, "b", 6100, 200, False),
        (4, "d", 6050, 100, True)]
    # 6150*300 + 6100*400 + 6100*200 + 6050*100 = 1,845,000 + 2,440,000 + 1,220,000 + 605,000
    assert r.turnover == 6_110_000
    assert (r.sold, r.unsold, r.outcome) == (1_000, 0, "SOLD")
    assert r.clearing_price == 6050 and r.price_range == (6050, 6150)
    assert r.average_price == 6110  # 6,110,000 / 1,000
    # rejects in arrival order: k (ts 99) first
    assert [(x.bid.bid_id, x.bid.bidder, x.reason) for x in r.rejects] == [
        ("k", "K", AuctionReason.OUTSIDE_WINDOW),
        ("f", "F", AuctionReason.BELOW_RESERVE),
        ("g", "G", Reason.PRICE_OUTSIDE_BAND),
        ("h", SELLER, AuctionReason.SELF_BID),
        ("a", "J", AuctionReason.DUPLICATE_BID),
        ("i", "I", AuctionReason.OUTSIDE_WINDOW)]
    counts = [r.count(s) for s in BidStatus]
    assert counts == [3, 1, 1, 6]  # filled a c b, partially d, not filled e, 6 rejected
    assert [(o.bid.bid_id, o.status.name, o.filled) for o in r.outcomes][:6] == [
        ("k", "REJECTED", 0), ("a", "FILLED", 300), ("c", "FILLED", 400),
        ("b", "FILLED", 200), ("d", "PARTIALLY_FILLED", 100), ("e", "NOT_FILLED", 0)]


def test_uniform_price_on_the_crafted_book():
    r = clear(offer(rule=ClearingRule.UNIFORM), bids())
    # same allocation; everyone pays the marginal (lowest filled) price 60.50
    assert [(f.bid_id, f.price, f.qty) for f in r.fills] == [
        ("a", 6050, 300), ("c", 6050, 400), ("b", 6050, 200), ("d", 6050, 100)]
    assert r.turnover == 6050 * 1_000 == 6_050_000
    assert r.clearing_price == 6050 and r.price_range == (6050, 6050)


def test_undersubscribed_offer_leaves_the_remainder_with_the_seller():
    r = clear(offer(), bids([("x", "A", 6000, 300, 100, 1), ("y", "B", 6200, 200, 150, 2)]))
    # y 6200 x 200 then x 6000 x 300: 500 of 1,000 t sold, 500 stay unsold
    assert [(f.bid_id, f.qty) for f in r.fills] == [("y", 200), ("x", 300)]
    assert (r.sold, r.unsold, r.outcome, r.turnover) == (500, 500, "PARTLY_SOLD",
                                                         6200 * 200 + 6000 * 300)
    assert r.clearing_price == 6000  # the reserve itself is a valid bid


def test_no_bids_is_no_sale():
    r = clear(offer(), [])
    assert (r.outcome, r.sold, r.unsold, r.turnover) == ("NO_SALE", 0, 1_000, 0)
    assert r.fills == () and r.rejects == () and r.outcomes == ()
    assert r.clearing_price is None and r.price_range is None and r.average_price is None


def test_all_bids_below_reserve_is_no_sale():
    book = [("x", "A", 5999, 500, 100, 1), ("y", "B", 5400, 500, 101, 2)]
    r = clear(offer(), bids(book))
    assert r.outcome == "NO_SALE" and r.unsold == 1_000
    assert [x.reason for x in r.rejects] == [AuctionReason.BELOW_RESERVE] * 2


def test_secret_reserve_accepts_bids_below_it_and_never_fills_them():
    book = [("x", "A", 5999, 500, 100, 1), ("y", "B", 6000, 200, 101, 2)]
    r = clear(offer(reject_below_reserve=False), bids(book))
    assert r.rejects == ()
    assert [(f.bid_id, f.qty) for f in r.fills] == [("y", 200)]
    x = r.outcomes[0]
    assert (x.bid.bid_id, x.status, x.filled, x.reason) == (
        "x", BidStatus.NOT_FILLED, 0, AuctionReason.BELOW_RESERVE)
    all_below = clear(offer(reject_below_reserve=False), bids(book[:1]))
    assert all_below.outcome == "NO_SALE" and all_below.count(BidStatus.NOT_FILLED) == 1


def test_ties_at_one_price_go_by_time_then_seq_whatever_the_input_order():
    book = [("late", "A", 6100, 600, 150, 1), ("early", "B", 6100, 600, 120, 2),
            ("same_ts_second", "C", 6100, 600, 120, 3)]
    for shuffled in (book, book[::-1]):
        r = clear(offer(), bids(shuffled))
        # early (ts 120, seq 2) 600; same_ts_second (ts 120, seq 3) the last 400; late none
        assert [(f.bid_id, f.qty) for f in r.fills] == [("early", 600), ("same_ts_second", 400)]


def test_marginal_fill_may_be_below_the_minimum_bid_quantity():
    r = clear(offer(min_bid_qty=100), bids([("x", "A", 6100, 990, 100, 1),
                                              ("y", "B", 6000, 100, 101, 2),
                                              ("z", "C", 6000, 99, 102, 3)]))
    # z asks 99 < 100 t: INVALID_QTY; y's marginal fill is the last 10 t
    assert [(f.bid_id, f.qty) for f in r.fills] == [("x", 990), ("y", 10)]
    assert [(x.bid.bid_id, x.reason) for x in r.rejects] == [("z", Reason.INVALID_QTY)]


def test_band_uses_the_engine_rounding():
    # prior close 46.66: 46.66 x 1.1 = 51.326 -> 51.33, x 0.9 = 41.994 -> 41.99 (half up)
    assert auction_band_limits(4666, 10) == band_limits(4666, Segment.LISTED) == (4199, 5133)
    assert auction_band_limits(4666, 30) == band_limits(4666, Segment.BLOCK)
    o = offer(prior_close=4666, reserve_price=4199)
    r = clear(o, bids([("lo", "A", 4199, 1, 100, 1), ("hi", "B", 5133, 1, 100, 2),
                       ("under", "C", 4198, 1, 100, 3), ("over", "D", 5134, 1, 100, 4)]))
    assert [f.bid_id for f in r.fills] == ["hi", "lo"]
    assert [(x.bid.bid_id, x.reason) for x in r.rejects] == [
        ("under", Reason.PRICE_OUTSIDE_BAND), ("over", Reason.PRICE_OUTSIDE_BAND)]
    # a 30 % band admits 66.50 at prior close 60.00 (band 42.00..78.00)
    wide = clear(offer(band_pct=30), bids([("w", "A", 6650, 10, 100, 1)]))
    assert [f.bid_id for f in wide.fills] == ["w"]


@pytest.mark.parametrize("price, qty, bid_id, bidder, reason", [
    (6000, 0, "x", "A", Reason.INVALID_QTY),
    (6000, 1_001, "x", "A", Reason.INVALID_QTY),  # more than the offer
    (6000, -5, "x", "A", Reason.INVALID_QTY),
    (6000, 10.0, "x", "A", Reason.INVALID_QTY),
    (6000, True, "x", "A", Reason.INVALID_QTY),
    (0, 10, "x", "A", Reason.INVALID_PRICE),
    (-6000, 10, "x", "A", Reason.INVALID_PRICE),
    (60.0, 10, "x", "A", Reason.INVALID_PRICE),
    (6000, 10, "", "A", Reason.MALFORMED),
    (6000, 10, "x", "", Reason.MALFORMED),
    (6000, 10, None, "A", Reason.MALFORMED),
])
def test_bad_bids_are_rejected_with_a_reason(price, qty, bid_id, bidder, reason):
    r = clear(offer(), [Bid(bid_id, bidder, price, qty, 100, 1)])
    assert [x.reason for x in r.rejects] == [reason] and r.fills == ()


def test_checks_run_in_the_documented_order():
    book = [
        ("x", "A", 6000, 10, 100, 1),
        ("x", "A", 6000, 0, 300, 2),  # duplicate and outside the window too: INVALID_QTY first
        ("x", "A", 0, 10, 300, 3),  # INVALID_PRICE before DUPLICATE_BID
        ("x", "A", 9999, 10, 300, 4),  # DUPLICATE_BID before OUTSIDE_WINDOW and the band
        ("y", SELLER, 9999, 10, 300, 5),  # OUTSIDE_WINDOW before SELF_BID
        ("z", SELLER, 9999, 10, 150, 6),  # SELF_BID before PRICE_OUTSIDE_BAND
        ("w", "B", 5000, 10, 150, 7),  # PRICE_OUTSIDE_BAND before BELOW_RESERVE
    ]
    r = clear(offer(), bids(book))
    assert {x.bid.seq: x.reason for x in r.rejects} == {
        2: Reason.INVALID_QTY, 3: Reason.INVALID_PRICE, 4: AuctionReason.DUPLICATE_BID,
        5: AuctionReason.OUTSIDE_WINDOW, 6: AuctionReason.SELF_BID, 7: Reason.PRICE_OUTSIDE_BAND}
    # a rejected bid still takes its id: the first arrival keeps it
    first_rejected = clear(offer(), bids([("x", "A", 0, 10, 100, 1), ("x", "A", 6000, 10, 101, 2)]))
    assert [x.reason for x in first_rejected.rejects] == [
        Reason.INVALID_PRICE, AuctionReason.DUPLICATE_BID]


@pytest.mark.parametrize("field, value, message", [
    ("auction_id", 0, "auction id"), ("auction_id", 10**12, "auction id"),
    ("seller", "", "seller"), ("instrument", "", "instrument"),
    ("quantity", 0, "offered quantity"), ("quantity", 10**9, "offered quantity"),
    ("quantity", 1.5, "offered quantity"), ("prior_close", 0, "prior close"),
    ("reserve_price", 0, "reserve price"), ("reserve_price", 6601, "reserve price"),
    ("reserve_price", 60.0, "reserve price"), ("band_pct", 0, "band"), ("band_pct", 100, "band"),
    ("min_bid_qty", 0, "minimum bid"), ("min_bid_qty", 1_001, "minimum bid"),
    ("window_end", 100, "window"), ("rule", 3, "clearing rule"),
    ("reject_below_reserve", 1, "reject_below_reserve"),
])
def test_bad_offers_raise(field, value, message):
    with pytest.raises(AuctionError, match=message):
        offer(**{field: value})


def test_bad_bid_records_raise():
    with pytest.raises(AuctionError, match="seq 1 is not unique"):
        clear(offer(), [Bid("x", "A", 6000, 1, 100, 1), Bid("y", "B", 6000, 1, 101, 1)])
    with pytest.raises(AuctionError, match="ts and seq must be integers"):
        clear(offer(), [Bid("x", "A", 6000, 1, 100.0, 1)])
    with pytest.raises(AuctionError, match="not a Bid"):
        clear(offer(), [("x", "A", 6000, 1, 100, 1)])


def test_allocate_carries_rejects_from_another_stage():
    accepted, rejects = screen(offer(), bids(BOOK[:2]))
    from engine.auction import Reject

    extra = Reject(accepted.pop(0), Reason.INSUFFICIENT_FUNDS)  # a, as a funds stage would
    r = allocate(offer(), accepted, rejects + [extra])
    assert [f.bid_id for f in r.fills] == ["b"]
    assert [(x.bid.bid_id, x.reason) for x in r.rejects] == [("a", Reason.INSUFFICIENT_FUNDS)]


# ---------------------------------------------------------------- properties

BIDDERS = ["A", "B", "C", "D", SELLER]


@st.composite
def books(draw):
    quantity = draw(st.integers(1, 2_000))
    close = draw(st.integers(100, 20_000))
    pct = draw(st.sampled_from([10, 30]))
    lower, upper = auction_band_limits(close, pct)
    reserve = draw(st.integers(1, upper))
    o = offer(quantity=quantity, prior_close=close, band_pct=pct, reserve_price=reserve,
              rule=draw(st.sampled_from(list(ClearingRule))),
              reject_below_reserve=draw(st.booleans()),
              min_bid_qty=draw(st.integers(1, min(quantity, 5))))
    rows = []
    for seq in draw(st.lists(st.integers(0, 10**6), max_size=30, unique=True)):
        price = draw(st.one_of(st.integers(max(1, lower - 3), upper + 3),
                               st.integers(max(1, reserve - 3), min(upper, reserve + 3)),
                               st.integers(-1, 0)))
        rows.append(Bid(f"b{draw(st.integers(0, 40))}", draw(st.sampled_from(BIDDERS)), price,
                        draw(st.integers(0, quantity + 2)), draw(st.integers(95, 205)), seq))
    return o, rows


def _rank(b: Bid):
    return (-b.price, b.ts, b.seq)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(book=books())
def test_clearing_properties(book):
    o, rows = book
    r = clear(o, rows)
    filled = {f.bid.seq: f for f in r.fills}
    # every bid is accounted for once: rejected, or accepted with some status
    assert sorted(x.bid.seq for x in r.outcomes) == sorted(b.seq for b in rows)
    assert len(r.rejects) == r.count(BidStatus.REJECTED)
    # allocated quantity <= the offer; fills are whole tonnes >= 1, never above the bid
    assert 0 <= r.sold <= o.quantity and r.sold + r.unsold == o.quantity
    assert all(1 <= f.qty <= f.bid.qty for f in r.fills)
    assert len(filled) == len(r.fills) and [f.no for f in r.fills] == list(
        range(1, len(r.fills) + 1))
    # filled bids passed every check: in band, in window, not the seller, >= reserve
    lower, upper = o.band
    for f in r.fills:
        b = f.bid
        assert b.price >= o.reserve_price and lower <= b.price <= upper
        assert o.window_start <= b.ts < o.window_end and b.bidder != o.seller
    # price priority, ties by time: a bid ranked after another fills only if that one filled
    # whole; so at most one partial fill, the last one
    accepted = [x.bid for x in r.outcomes if x.status != BidStatus.REJECTED]
    eligible = sorted((b for b in accepted if b.price >= o.reserve_price), key=_rank)
    for before, after in zip(eligible, eligible[1:]):
        if after.seq in filled:
            assert filled.get(before.seq) is not None and not filled[before.seq].partial
    assert [f.bid.seq for f in r.fills] == [b.seq for b in eligible[:len(r.fills)]]
    assert sum(f.partial for f in r.fills) <= 1 and not any(f.partial for f in r.fills[:-1])
    # sold = min(offer, demand at or above the reserve)
    assert r.sold == min(o.quantity, sum(b.qty for b in eligible))
    unfilled = [b for b in eligible if b.seq not in filled]
    if unfilled and r.fills:
        assert min(f.bid.price for f in r.fills) >= max(b.price for b in unfilled)
    # payments
    for f in r.fills:
        expected = f.bid.price if o.rule == ClearingRule.PAY_AS_BID else r.clearing_price
        assert f.price == expected and f.amount == expected * f.qty
    assert r.turnover == sum(f.price * f.qty for f in r.fills)
    if r.fills:
        assert r.clearing_price == min(f.bid.price for f in r.fills)
    else:
        assert r.outcome == "NO_SALE" and r.unsold == o.quantity
    # determinism: any input order gives the same result
    shuffled = list(rows)
    random.Random(len(rows)).shuffle(shuffled)
    assert clear(o, shuffled) == r
    assert arrival_order(rows) == arrival_order(shuffled)
