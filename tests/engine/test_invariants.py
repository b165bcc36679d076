"""Invariants of both books, checked after every (small) batch of long random streams.

An ``Audit`` replays each book's events into a model of its own (orders' quantities, the day's
LISTED and BLOCK totals, the prior close) and, after every batch, holds the book to it:

- ``check_invariants()`` passes; no book is crossed (best bid < best ask);
- trade ids run 1, 2, 3... over the whole run; no trade is between one account's orders;
- a trade is at the resting order's price, within the aggressor's limit, for at most the
  open quantity of both; buy fills == sell fills == traded quantity;
- no order trades, is cancelled or expires after it was filled, cancelled or expired;
- every accepted order: filled + open + cancelled = qty (filled summed from TRADE events,
  cancelled from CANCELLED/EXPIRED events, open from ``order_state``), and ``order_state``
  agrees with the events; the resting orders are exactly the model's open orders;
- every accepted or amended limit price, and every resting price, lies within ``band()``, which
  is the band of the day's prior close;
- DAY_CLOSED: the close is the half-up VWAP of that day's LISTED trade events (the prior close
  without any), its volumes and turnovers are the sums of the day's trades, its prior close is
  the previous day's close, and nothing rests when it is reported.

And ``check_invariants()`` itself detects corrupted state in either book.
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import pytest

from engine import batch as B
from engine.batch import empty_commands
from engine.book import make_book
from engine.codes import (
    NO_PRICE, Action, EventKind, OrderStatus, OrderType, Reason, Segment, Side, Stp,
    TimeInForce,
)
from engine.errors import BookIntegrityError
from engine.fast import state as S
from engine.rules import DAY_CLOSE_US, DAY_US, band_limits, segment_for_qty
from engine.tradingdays import TradingCalendar, parse_time

from .test_differential import TINY, describe, make_stream

CANCEL_REASONS = {Reason.USER, Reason.IOC_REMAINDER, Reason.NO_LIQUIDITY,
                  Reason.FOK_NOT_FILLABLE, Reason.SELF_TRADE}
REJECT_REASONS = {Reason.MALFORMED, Reason.INVALID_QTY, Reason.INVALID_PRICE,
                  Reason.DUPLICATE_ORDER_ID, Reason.MARKET_CLOSED, Reason.UNKNOWN_ORDER,
                  Reason.PRICE_OUTSIDE_BAND}


class Model:
    """What the events say about one accepted order."""

    __slots__ = ("ref", "account", "instrument", "segment", "side", "price", "qty", "filled",
                 "cancelled", "status", "reason", "tif")

    def __init__(self, ref, account, instrument, segment, side, price, qty, tif):
        self.ref, self.account, self.instrument, self.tif = ref, account, instrument, tif
        self.segment, self.side, self.price, self.qty = segment, side, price, qty
        self.filled = self.cancelled = 0
        self.status, self.reason = OrderStatus.RESTING, Reason.NONE

    @property
    def open(self) -> int:
        return self.qty - self.filled - self.cancelled

    @property
    def done(self) -> bool:
        return self.status != OrderStatus.RESTING


class Audit:
    """Feeds a book batches, replays its events into a model and checks both after each."""

    def __init__(self, book, closes):
        self.book = book
        self.n_instruments = len(closes)
        self.prior = list(closes)
        self.totals = [[0, 0, 0, 0] for _ in closes]  # listed vol, listed fen, block vol, fen
        self.orders: dict[int, Model] = {}
        self.next_trade_id = 1
        self.commands = 0
        self.trades = self.day_closes = 0
        self.filled_by_side = {Side.BUY: 0, Side.SELL: 0}
        self.traded = 0

    def fail(self, msg, row=None):
        where = "" if row is None else f" at event {describe(row)}"
        pytest.fail(f"{self.book.name} book after {self.commands} commands: {msg}{where}",
                    pytrace=False)

    # ------------------------------------------------------------------ events

    def submit(self, cmds: np.ndarray) -> np.ndarray:
        events = self.book.submit_batch(cmds)
        for row in events.tolist():
            if not 0 <= row[B.CMD] < len(cmds):
                self.fail("CMD outside the batch", row)
            self.event(row)
        self.commands += len(cmds)
        self.check_book()
        return events

    def _order(self, ref, row) -> Model:
        o = self.orders.get(ref)
        if o is None:
            self.fail(f"event about order {ref}, never accepted", row)
        return o

    def event(self, row) -> None:
        kind = row[B.KIND]
        if kind == EventKind.ACCEPTED:
            ref = row[B.ORDER]
            if ref in self.orders:
                self.fail(f"order {ref} accepted twice", row)
            qty, seg, i = row[B.QTY], row[B.SEGMENT], row[B.INSTRUMENT]
            if seg != segment_for_qty(qty):
                self.fail("segment does not follow the quantity", row)
            if row[B.AUX1] == OrderType.MARKET:
                if row[B.PRICE] != NO_PRICE or row[B.AUX2] != TimeInForce.IOC:
                    self.fail("MARKET order with a price or not IOC", row)
            else:
                lower, upper = band_limits(self.prior[i], seg)
                if not lower <= row[B.PRICE] <= upper:
                    self.fail(f"accepted outside the band {lower}..{upper}", row)
            self.orders[ref] = Model(ref, row[B.ACCOUNT], i, seg, row[B.SIDE], row[B.PRICE], qty,
                                     row[B.AUX2])
        elif kind == EventKind.TRADE:
            self._trade(row)
        elif kind in (EventKind.CANCELLED, EventKind.EXPIRED):
            o = self._order(row[B.ORDER], row)
            if o.done:
                self.fail(f"order {o.ref} cancelled/expired after it was {o.status.name}", row)
            if row[B.QTY] != o.open or row[B.QTY] <= 0:
                self.fail(f"removed {row[B.QTY]}, order {o.ref} had {o.open} open", row)
            if row[B.AUX1] != o.filled or row[B.PRICE] != o.price or row[B.SIDE] != o.side \
                    or row[B.ACCOUNT] != o.account:
                self.fail(f"event disagrees with order {o.ref}", row)
            o.cancelled += row[B.QTY]
            if kind == EventKind.CANCELLED:
                if row[B.REASON] not in CANCEL_REASONS:
                    self.fail("unknown cancel reason", row)
                o.status, o.reason = OrderStatus.CANCELLED, Reason(row[B.REASON])
            else:
                if row[B.TS] % DAY_US != DAY_CLOSE_US:
                    self.fail("expiry not at 15:00", row)
                o.status = OrderStatus.EXPIRED
        elif kind == EventKind.AMENDED:
            o = self._order(row[B.ORDER], row)
            if o.done or o.price == NO_PRICE:
                self.fail(f"amended order {o.ref} is not resting", row)
            old, new, price = row[B.AUX2], row[B.QTY], row[B.PRICE]
            if old != o.open or new < 1:
                self.fail(f"amend: open before {old}, model {o.open}", row)
            if not (o.segment == Segment.LISTED) == (new <= 99_999):
                self.fail("amend moved the order out of its segment's quantity range", row)
            lower, upper = band_limits(self.prior[o.instrument], o.segment)
            if not lower <= price <= upper:
                self.fail("amended outside the band", row)
            if row[B.AUX1] != int(price == o.price and new <= old):
                self.fail("time priority kept/lost wrongly", row)
            o.qty += new - old
            o.price = price
        elif kind == EventKind.DAY_CLOSED:
            self._day_closed(row)
        elif kind == EventKind.REJECTED:
            if row[B.REASON] not in REJECT_REASONS:
                self.fail("unknown reject reason", row)
        else:
            self.fail("unknown event kind", row)

    def _trade(self, row) -> None:
        if row[B.TRADE_ID] != self.next_trade_id:
            self.fail(f"trade id {row[B.TRADE_ID]}, expected {self.next_trade_id}", row)
        self.next_trade_id += 1
        self.trades += 1
        buy, sell = self._order(row[B.ORDER], row), self._order(row[B.ORDER2], row)
        qty, price = row[B.QTY], row[B.PRICE]
        for o in (buy, sell):
            if o.done:
                self.fail(f"order {o.ref} traded after it was {o.status.name}", row)
            if o.instrument != row[B.INSTRUMENT] or o.segment != row[B.SEGMENT]:
                self.fail(f"order {o.ref} traded in another book", row)
        if buy.side != Side.BUY or sell.side != Side.SELL:
            self.fail("trade sides are wrong", row)
        if buy.account == sell.account or (row[B.ACCOUNT], row[B.ACCOUNT2]) != (
                buy.account, sell.account):
            self.fail("self-trade, or accounts misreported", row)
        if not 0 < qty <= min(buy.open, sell.open):
            self.fail(f"trade qty {qty} exceeds open {buy.open}/{sell.open}", row)
        aggressor, resting = (buy, sell) if row[B.SIDE] == Side.BUY else (sell, buy)
        if price != resting.price:
            self.fail(f"trade at {price}, resting order {resting.ref} at {resting.price}", row)
        if aggressor.price != NO_PRICE and (
                (aggressor.side == Side.BUY and price > aggressor.price)
                or (aggressor.side == Side.SELL and price < aggressor.price)):
            self.fail("trade through the aggressor's limit", row)
        buy.filled += qty
        sell.filled += qty
        self.filled_by_side[Side.BUY] += qty
        self.filled_by_side[Side.SELL] += qty
        self.traded += qty
        if (row[B.AUX1], row[B.AUX2]) != (buy.open, sell.open):
            self.fail(f"open after trade reported {row[B.AUX1]}/{row[B.AUX2]}, model "
                      f"{buy.open}/{sell.open}", row)
        for o in (buy, sell):
            if o.open == 0:
                o.status = OrderStatus.FILLED
        t = self.totals[row[B.INSTRUMENT]]
        k = 0 if row[B.SEGMENT] == Segment.LISTED else 2
        t[k] += qty
        t[k + 1] += qty * price

    def _day_closed(self, row) -> None:
        i = row[B.INSTRUMENT]
        still_open = [o.ref for o in self.orders.values() if not o.done]
        if still_open:
            self.fail(f"day closed with orders still open: {still_open[:5]}", row)
        lv, lt, bv, bt = self.totals[i]
        close = (lt + lv // 2) // lv if lv else self.prior[i]
        if row[B.PRICE] != close or row[B.AUX1] != self.prior[i]:
            self.fail(f"close {row[B.PRICE]} (prior {row[B.AUX1]}), expected {close} from "
                      f"{lv} t / {lt} fen (prior {self.prior[i]})", row)
        if (row[B.QTY], row[B.ACCOUNT], row[B.AUX2], row[B.ACCOUNT2]) != (lv, lt, bv, bt):
            self.fail(f"day totals, expected {lv}, {lt}, {bv}, {bt}", row)
        if row[B.TS] % DAY_US != DAY_CLOSE_US or row[B.TS] // DAY_US != row[B.ORDER]:
            self.fail("day close not at 15:00 of its day", row)
        self.prior[i] = close
        self.totals[i] = [0, 0, 0, 0]
        self.day_closes += 1

    # ------------------------------------------------------------------ state

    def check_book(self) -> None:
        book = self.book
        try:
            book.check_invariants()
        except BookIntegrityError as e:
            self.fail(f"check_invariants: {e}")
        day = book.open_day()
        day_open = day is not None and day[2]
        for i in range(self.n_instruments):
            if day_open:
                prior, close, lv, bv, lt, bt = day[1][i]
                t = self.totals[i]
                if (prior, lv, lt, bv, bt) != (self.prior[i], *t):
                    self.fail(f"open day figures {day[1][i]} != model {self.prior[i]}, {t}")
                if close != ((lt + lv // 2) // lv if lv else prior):
                    self.fail(f"running close {close} is not the VWAP")
            for seg in Segment:
                bid, ask = book.best_bid(i, seg), book.best_ask(i, seg)
                if bid is not None and ask is not None and not bid[0] < ask[0]:
                    self.fail(f"book {i}/{seg.name} crossed: bid {bid} ask {ask}")
                if day_open and book.band(i, seg) != band_limits(self.prior[i], seg):
                    self.fail(f"band {book.band(i, seg)} is not that of {self.prior[i]}")
        resting = {}
        for instrument, seg, side, price, ref, account, open_qty, _seq in book.resting_orders():
            lower, upper = book.band(instrument, seg)
            if not lower <= price <= upper:
                self.fail(f"order {ref} rests at {price}, outside {lower}..{upper}")
            o = self.orders.get(ref)
            if o is None or (o.instrument, o.segment, o.side, o.price, o.account, o.open) != (
                    instrument, seg, side, price, account, open_qty):
                self.fail(f"resting order {ref} disagrees with its events")
            resting[ref] = open_qty
        expected = {o.ref: o.open for o in self.orders.values() if not o.done}
        if resting != expected:
            self.fail(f"resting orders {sorted(resting)[:8]}... != open by events "
                      f"{sorted(expected)[:8]}...")
        for o in self.orders.values():
            status, reason, qty, filled, open_qty = book.order_state(o.ref)
            if (status, reason, qty, filled, open_qty) != (o.status, o.reason, o.qty, o.filled,
                                                           0 if o.done else o.open):
                self.fail(f"order_state({o.ref}) = {(status, reason, qty, filled, open_qty)}, "
                          f"events say {(o.status, o.reason, o.qty, o.filled, o.open)}")
            if filled + open_qty + o.cancelled != qty:
                self.fail(f"order {o.ref}: filled + open + cancelled != qty")
            if o.tif != TimeInForce.DAY and not o.done:
                self.fail(f"IOC/FOK/MARKET order {o.ref} rests")
            if o.tif == TimeInForce.FOK and not (
                    o.status == OrderStatus.FILLED or (o.reason == Reason.FOK_NOT_FILLABLE
                                                       and o.filled == 0)):
                self.fail(f"FOK order {o.ref} neither filled nor left untouched")
            if o.reason == Reason.FOK_NOT_FILLABLE and (o.tif != TimeInForce.FOK or o.filled):
                self.fail(f"order {o.ref}: FOK_NOT_FILLABLE")
            if o.reason == Reason.NO_LIQUIDITY and (o.price != NO_PRICE or o.filled):
                self.fail(f"order {o.ref}: NO_LIQUIDITY")
            if o.reason == Reason.IOC_REMAINDER and o.tif != TimeInForce.IOC:
                self.fail(f"order {o.ref}: IOC_REMAINDER")
        if not self.filled_by_side[Side.BUY] == self.filled_by_side[Side.SELL] == self.traded:
            self.fail("buy fills, sell fills and traded quantity differ")
        clock, next_trade_id, done = book.globals()
        if (next_trade_id, done) != (self.next_trade_id, self.commands):
            self.fail(f"globals {book.globals()}")


@pytest.fixture(scope="module")
def calendar():
    return TradingCalendar.xshg()


def make(impl, closes, calendar):
    return make_book(impl, closes, calendar, **(TINY if impl == "numba" else {}))


STREAMS = [
    # (seed, commands, prior closes, accounts, largest batch)
    (41, 3000, (6000,), 4, 30),
    (42, 3000, (6000, 5800), 3, 30),
    (43, 2000, (4666,), 2, 8),
    (44, 2000, (6000, 5800), 5, 60),
]


@pytest.mark.parametrize("impl", ["reference", "numba"])
@pytest.mark.parametrize("seed,n,closes,accounts,largest", STREAMS)
def test_invariants_after_every_batch(impl, seed, n, closes, accounts, largest, calendar):
    cmds = make_stream(seed, n, closes, accounts)
    audit = Audit(make(impl, closes, calendar), closes)
    rnd = random.Random(seed)
    start = 0
    while start < n:
        end = min(n, start + rnd.randint(1, largest))
        audit.submit(cmds[start:end])
        start = end
    # the run exercised what the invariants are about
    assert audit.trades > 100 and audit.day_closes >= 5 * len(closes)
    assert any(o.status == OrderStatus.EXPIRED for o in audit.orders.values())
    assert any(o.reason == Reason.SELF_TRADE for o in audit.orders.values())
    assert any(o.segment == Segment.BLOCK and o.filled for o in audit.orders.values())


def _limit_day_orders(t, rows, first_order, extra=0):
    """LIMIT DAY NEW commands from (account, side, price, qty) rows, 1 µs apart from ``t``,
    order handles from ``first_order``; ``extra`` empty rows appended."""
    cmds = empty_commands(len(rows) + extra)
    for k, (account, side, price, qty) in enumerate(rows):
        cmds[k]["ts"], cmds[k]["action"], cmds[k]["account"], cmds[k]["order"] = (
            t + k, Action.NEW, account, first_order + k)
        cmds[k]["side"], cmds[k]["price"], cmds[k]["qty"] = side, price, qty
        cmds[k]["type"], cmds[k]["tif"], cmds[k]["stp"] = (
            OrderType.LIMIT, TimeInForce.DAY, Stp.CANCEL_NEWEST)
    return cmds


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_close_is_half_up_vwap(impl, calendar):
    """LISTED trades 1 t at 60.00 and 1 t at 60.01: VWAP 60.005, half up to 60.01; a BLOCK
    trade at 50.00 does not count; 2 t at 60.00 + 1 t at 60.01 is 60.0033, down to 60.00."""
    t = parse_time("2024-03-04T13:00:00")
    rows = [  # (account, side, price, qty)
        (0, Side.SELL, 6000, 1), (0, Side.SELL, 6001, 1), (1, Side.BUY, 6001, 2),
        (0, Side.SELL, 5000, 100_000), (1, Side.BUY, 5000, 100_000),
    ]
    cmds = _limit_day_orders(t, rows, 0, extra=1)
    cmds[-1]["ts"], cmds[-1]["action"] = parse_time("2024-03-04T15:00:00"), Action.TICK
    audit = Audit(make(impl, [6000], calendar), [6000])
    ev = audit.submit(cmds)
    day = ev[ev[:, B.KIND] == EventKind.DAY_CLOSED]
    assert day[:, [B.PRICE, B.AUX1, B.QTY, B.ACCOUNT, B.AUX2, B.ACCOUNT2]].tolist() == [
        [6001, 6000, 2, 12001, 100_000, 500_000_000]]
    # next day: prior close 60.01; 2 t at 60.00 and 1 t at 60.01 close at 60.00
    t2 = parse_time("2024-03-05T10:00:00")
    rows = [(0, Side.SELL, 6000, 2), (0, Side.SELL, 6001, 1), (1, Side.BUY, 6001, 3),
            (2, Side.SELL, 6601, 1), (2, Side.BUY, 5400, 1)]  # the band of 60.01: 54.01..66.01
    cmds = _limit_day_orders(t2, rows, 10, extra=1)
    cmds[-1]["ts"], cmds[-1]["action"] = parse_time("2024-03-06T09:00:00"), Action.TICK
    ev = audit.submit(cmds)
    assert ev[ev[:, B.KIND] == EventKind.REJECTED][:, [B.ORDER, B.REASON]].tolist() == [
        [14, Reason.PRICE_OUTSIDE_BAND]]
    assert ev[ev[:, B.KIND] == EventKind.EXPIRED][:, B.ORDER].tolist() == [13]
    day = ev[ev[:, B.KIND] == EventKind.DAY_CLOSED]
    assert day[:, [B.PRICE, B.AUX1, B.QTY, B.ACCOUNT]].tolist() == [[6000, 6001, 3, 18001]]
    assert audit.book.band(0, Segment.LISTED) == (5400, 6600)  # 03-06: the 03-05 close's band


# ---------------------------------------------------------------------------- corruption

def _resting_book(impl, calendar):
    """A book with orders resting on both sides of both segments (none crossed)."""
    t = parse_time("2024-03-04T13:30:00")
    rows = [  # (account, side, price, qty)
        (0, Side.BUY, 5990, 10), (1, Side.BUY, 5990, 20), (2, Side.BUY, 5980, 30),
        (0, Side.SELL, 6010, 40), (1, Side.SELL, 6020, 50), (2, Side.SELL, 6020, 60),
        (0, Side.BUY, 5900, 100_000), (1, Side.SELL, 6100, 200_000),
    ]
    cmds = _limit_day_orders(t, rows, 0)
    book = make(impl, [6000], calendar)
    ev = book.submit_batch(cmds)
    assert ev[:, B.KIND].tolist() == [EventKind.ACCEPTED] * len(rows)
    book.check_invariants()
    return book


def _fast_level(book, price, side, segment=Segment.LISTED):
    b = segment  # instrument 0
    return b * 2 + side - 1, price - int(book.books[b, S.BK_BASE])


def _set_level(book, price, side, field, value):
    bs, li = _fast_level(book, price, side)
    assert book.levels[bs, field, li] != value
    book.levels[bs, field, li] = value


def _fast_slot(book, ref):
    s = int(book.refs[ref, S.RF_SLOT])
    assert s != S.NIL
    return s


FAST_CORRUPTIONS = {
    "level qty": lambda bk: _set_level(bk, 6010, Side.SELL, S.LV_QTY, 41),
    "level count": lambda bk: _set_level(bk, 5990, Side.BUY, S.LV_COUNT, 3),
    "level tail": lambda bk: _set_level(bk, 6020, Side.SELL, S.LV_TAIL, _fast_slot(bk, 4)),
    "slot open qty": lambda bk: bk.slots.__setitem__((_fast_slot(bk, 4), S.SL_OPEN), 49),
    "slot price": lambda bk: bk.slots.__setitem__((_fast_slot(bk, 2), S.SL_PRICE), 5981),
    "broken back link": lambda bk: bk.slots.__setitem__((_fast_slot(bk, 1), S.SL_PREV), S.NIL),
    "best bid pointer": lambda bk: bk.books.__setitem__(
        (0, S.BK_BEST_BID), _fast_level(bk, 5980, Side.BUY)[1]),
    "best ask pointer": lambda bk: bk.books.__setitem__((0, S.BK_BEST_ASK), S.NIL),
    "resting count": lambda bk: bk.books.__setitem__((1, S.BK_RESTING), 3),
    "free list count": lambda bk: bk.glob.__setitem__(S.GL_FREE_COUNT,
                                                      int(bk.glob[S.GL_FREE_COUNT]) + 1),
    "order filled qty": lambda bk: bk.refs.__setitem__((3, S.RF_FILLED), 1),
    "order status": lambda bk: bk.refs.__setitem__((0, S.RF_STATUS), int(OrderStatus.FILLED)),
    "order points at another slot": lambda bk: bk.refs.__setitem__(
        (5, S.RF_SLOT), _fast_slot(bk, 4)),
}


@pytest.mark.parametrize("what", sorted(FAST_CORRUPTIONS))
def test_fast_check_invariants_detects_corruption(what, calendar):
    book = _resting_book("numba", calendar)
    FAST_CORRUPTIONS[what](book)
    with pytest.raises(BookIntegrityError):
        book.check_invariants()


def _ref_order(book, ref):
    return book.orders[ref]


def _ref_empty_level(book):
    book.books[0][Segment.LISTED].asks[6030] = deque()


def _ref_cross(book):
    o = book.resting[0]  # bid 5990: move it above the best ask, consistently
    book._remove(o)
    o.price = 6015
    book._rest(o)


def _ref_outside_band(book):
    o = book.resting[5]
    book._remove(o)
    o.price = 6601
    book._rest(o)


REF_CORRUPTIONS = {
    "order open qty": lambda bk: setattr(_ref_order(bk, 4), "open", 49),
    "order filled qty": lambda bk: setattr(_ref_order(bk, 3), "filled", 1),
    "order status": lambda bk: setattr(_ref_order(bk, 0), "status", OrderStatus.FILLED),
    "order price": lambda bk: setattr(_ref_order(bk, 2), "price", 5981),
    "dropped from the index": lambda bk: bk.resting.pop(1),
    "empty level": _ref_empty_level,
    "crossed book": _ref_cross,
    "price outside band": _ref_outside_band,
}


@pytest.mark.parametrize("what", sorted(REF_CORRUPTIONS))
def test_reference_check_invariants_detects_corruption(what, calendar):
    book = _resting_book("reference", calendar)
    REF_CORRUPTIONS[what](book)
    with pytest.raises(BookIntegrityError):
        book.check_invariants()


def test_book_integrity_error_carries_the_command_count(calendar):
    book = _resting_book("numba", calendar)
    book.slots[_fast_slot(book, 0), S.SL_OPEN] += 1
    with pytest.raises(BookIntegrityError) as info:
        book.check_invariants()
    assert info.value.seq == 8 and "(after command 8)" in str(info.value)
