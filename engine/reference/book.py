"""The reference book: the engine specification as plain Python, the oracle for the fast book.

Written for clarity, not speed: each price level is a FIFO ``deque`` in a ``SortedDict``
keyed by price, orders are objects, and every step cites the section of ``docs/rules.md`` it
follows (§2 segments and bands, §3 commands, §4 matching, §5 cancel and amend, §6 days and
the close, §7 rejects). It speaks the same raw batch format as the Numba book
(``engine.batch``), so the two can be fed the same commands and their event arrays compared
byte for byte.

>>> import numpy as np
>>> from engine.batch import empty_commands
>>> from engine.codes import Action, Side, OrderType, TimeInForce, Stp
>>> from engine.tradingdays import TradingCalendar, parse_time
>>> book = ReferenceBook([6000], TradingCalendar.from_dates(["2024-03-04"]))
>>> cmds = empty_commands(2)
>>> cmds["ts"] = parse_time("2024-03-04T10:00:00")
>>> cmds["action"] = Action.NEW
>>> cmds["type"], cmds["tif"], cmds["stp"] = OrderType.LIMIT, TimeInForce.DAY, Stp.CANCEL_NEWEST
>>> cmds["side"] = [Side.SELL, Side.BUY]
>>> cmds["account"], cmds["order"] = [0, 1], [0, 1]
>>> cmds["price"], cmds["qty"] = [6000, 6010], [500, 200]
>>> events = book.submit_batch(cmds)
>>> [int(k) for k in events[:, 0]]  # ACCEPTED, ACCEPTED, TRADE
[1, 1, 3]
>>> book.best_ask(0, 0)
(6000, 300)
"""

from __future__ import annotations

from collections import deque

import numpy as np
from sortedcontainers import SortedDict

from .. import batch as B
from ..codes import (
    NO_PRICE, NO_REF, NO_TIME, Action, EventKind, OrderStatus, OrderType, Reason, Segment,
    Side, Stp, TimeInForce,
)
from ..accounts import Accounts
from ..checks import names_account, names_order
from ..negotiation import Negotiations
from ..errors import BookIntegrityError, EngineConfigError, PriceLimitError
from ..rules import (
    DAY_CLOSE_US, DAY_US, MARKET_DEPTH_LEVELS, MAX_PRIOR_CLOSE, band_limits, check_prior_close,
    closing_price, crosses, in_band, in_session, qty_fits_segment, segment_for_qty,
)
from ..tradingdays import TradingCalendar

_INT64_MAX = 2**63 - 1


class Order:
    """One accepted order. ``qty`` = filled + open + cancelled at all times."""

    __slots__ = (
        "ref", "account", "instrument", "segment", "side", "price", "qty", "open", "filled",
        "cancelled", "status", "reason", "stp", "seq", "reserve_price",
    )

    def __init__(self, ref, account, instrument, segment, side, price, qty, stp, seq):
        self.ref = ref
        self.account = account
        self.instrument = instrument
        self.segment = segment
        self.side = side
        self.price = price  # NO_PRICE for MARKET
        self.qty = qty
        self.open = qty
        self.filled = 0
        self.cancelled = 0
        self.status = OrderStatus.RESTING
        self.reason = Reason.NONE
        self.stp = stp
        self.seq = seq  # arrival order of acceptance: expiry reports in this order
        self.reserve_price = price  # what its open tonnes reserve at (risk stage)


class SegmentBook:
    """One instrument's book in one segment: bids and asks, each price -> FIFO of orders."""

    def __init__(self):
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.band_lower = 0
        self.band_upper = 0

    def side(self, side: int) -> SortedDict:
        return self.bids if side == Side.BUY else self.asks

    def best(self, side: int):
        """(price, FIFO) of the best level of ``side``, or None when it is empty."""
        levels = self.side(side)
        if not levels:
            return None
        return levels.peekitem(-1 if side == Side.BUY else 0)

    def levels_in_priority(self, side: int):
        levels = self.side(side)
        prices = reversed(levels) if side == Side.BUY else iter(levels)
        for price in prices:
            yield price, levels[price]


class InstrumentDay:
    """An instrument's running figures for the trading day in progress (spec §6)."""

    def __init__(self, prior_close: int):
        self.prior_close = prior_close
        self.listed_volume = 0
        self.listed_turnover = 0
        self.block_volume = 0
        self.block_turnover = 0

    @property
    def close(self) -> int:
        return closing_price(self.listed_turnover, self.listed_volume, self.prior_close)


class ReferenceBook:
    """Price-time continuous double auction for several instruments, both segments.

    Commands: ``submit_batch(cmds)`` (a ``COMMAND_DTYPE`` array) returns the events as an int64
    array of ``EVENT_WIDTH`` columns. Queries: ``best_bid``, ``best_ask``, ``depth``,
    ``resting_orders``, ``order_state``, ``open_day``. Checks: ``check_invariants``.
    """

    name = "reference"

    def __init__(self, prior_closes, calendar: TradingCalendar, accounts: Accounts | None = None):
        prior_closes = [check_prior_close(int(p)) for p in prior_closes]
        if not prior_closes:
            raise EngineConfigError("an engine needs at least one instrument")
        self.accounts = accounts if accounts is not None else Accounts.disabled(len(prior_closes))
        if self.accounts.n_instruments != len(prior_closes):
            raise EngineConfigError(f"accounts hold {self.accounts.n_instruments} instruments, "
                                    f"the book {len(prior_closes)}")
        self.calendar = calendar
        self.days = [InstrumentDay(p) for p in prior_closes]
        self.books = [[SegmentBook(), SegmentBook()] for _ in prior_closes]
        self._clock = NO_TIME
        self.last_day = -1  # the last trading day the clock entered
        self.day_open = False
        self.next_trade_id = 1
        self.next_seq = 0
        self.commands_done = 0
        self.used_order_ids: set[int] = set()
        self.orders: dict[int, Order] = {}  # every accepted order
        self.resting: dict[int, Order] = {}  # orders open in a book now
        self._events: list[list[int]] = []
        self._cmd = 0
        self._ts = 0
        self.negotiations = Negotiations()  # live block quotes (§3b)

    # ------------------------------------------------------------------ commands

    def submit_batch(self, cmds: np.ndarray, copy: bool = True) -> np.ndarray:
        """Process commands in order; return their events (``EVENT_WIDTH`` int64 columns).

        The array is always new (``copy`` is accepted for the fast book's interface)."""
        self._events = []
        for i in range(len(cmds)):
            if self._opens_day_past_price_limit(int(cmds[i]["ts"])):
                raise PriceLimitError(
                    f"a trading day would open with a prior close above {MAX_PRIOR_CLOSE} fen",
                    i, np.array(self._events, dtype=np.int64).reshape(-1, B.EVENT_WIDTH))
            self._process(i, cmds[i])
            self.commands_done += 1
        out = np.array(self._events, dtype=np.int64).reshape(-1, B.EVENT_WIDTH)
        self._events = []
        return out

    def _process(self, i: int, c) -> None:
        self._cmd = i
        action, ref, ts = int(c["action"]), int(c["order"]), int(c["ts"])
        self._ts = ts
        # §6: a time that does not parse, or is earlier than the clock, is MALFORMED and does
        # not move the clock; any other time moves it before every other check.
        if ts == NO_TIME or ts < self._clock:
            self._reject(c, Reason.MALFORMED)
        else:
            self._advance_clock(ts)
            if action == Action.NEW:
                self._new(c)
            elif action == Action.CANCEL:
                self._cancel(c)
            elif action == Action.AMEND:
                self._amend(c)
            elif action == Action.TAKE:
                self._take(c)
            elif action in (Action.BLOCK_QUOTE, Action.BLOCK_COUNTER, Action.BLOCK_ACCEPT,
                            Action.BLOCK_WITHDRAW):
                self.negotiations.handle(self, i, c)
            elif action != Action.TICK:
                self._reject(c, Reason.MALFORMED)
        # §3: an order_id is used by any NEW (TAKE, BLOCK_QUOTE) row, whatever its outcome.
        if action in (Action.NEW, Action.TAKE, Action.BLOCK_QUOTE) and ref >= 0:
            self.used_order_ids.add(ref)

    def _new(self, c) -> None:
        # §7 order of checks for NEW: MALFORMED, INVALID_QTY, INVALID_PRICE (found at the
        # edge, in c["check"]), DUPLICATE_ORDER_ID, MARKET_CLOSED, PRICE_OUTSIDE_BAND.
        ref = int(c["order"])
        if not self._fresh_order(c):
            return
        qty = int(c["qty"])
        segment = segment_for_qty(qty)
        if not self._session_open(segment):
            return self._reject(c, Reason.MARKET_CLOSED)
        instrument = int(c["instrument"])
        book = self.books[instrument][segment]
        is_market = int(c["type"]) == OrderType.MARKET
        price = NO_PRICE if is_market else int(c["price"])
        if not is_market and not in_band(price, book.band_lower, book.band_upper):
            return self._reject(c, Reason.PRICE_OUTSIDE_BAND)
        # the risk stage, after every rule: funds or allowances for the whole order, reserved
        # on acceptance; a MARKET buy reserves at the band's upper limit
        account, side = int(c["account"]), int(c["side"])
        reserve_price = book.band_upper if is_market else price
        if self.accounts.enabled:
            reason = self.accounts.check_order(account, instrument, side, segment,
                                               reserve_price, qty)
            if reason != Reason.NONE:
                return self._reject(c, reason)
            self.accounts.reserve(account, instrument, side, segment, reserve_price, qty)

        order = Order(
            ref, account, instrument, segment, side, price, qty, int(c["stp"]), self.next_seq,
        )
        order.reserve_price = reserve_price
        self.next_seq += 1
        self.orders[ref] = order
        row = self._emit(EventKind.ACCEPTED, order, price=price, qty=qty)
        row[B.ACCEPTED_TYPE] = int(c["type"])
        row[B.ACCEPTED_TIF] = int(c["tif"])
        tif = int(c["tif"])
        # §3 FOK: all or nothing; if it cannot fill, the book is left exactly as it was.
        if tif == TimeInForce.FOK and not self._fok_fillable(order):
            return self._cancel_incoming(order, Reason.FOK_NOT_FILLABLE)
        stopped_by_stp = self._match(order, is_market)
        if order.open == 0:
            return
        if stopped_by_stp:
            self._cancel_incoming(order, Reason.SELF_TRADE)
        elif is_market:
            reason = Reason.NO_LIQUIDITY if order.filled == 0 else Reason.IOC_REMAINDER
            self._cancel_incoming(order, reason)
        elif tif == TimeInForce.DAY:
            self._rest(order)
        else:
            self._cancel_incoming(order, Reason.IOC_REMAINDER)

    def _fresh_order(self, c) -> bool:
        """NEW's and TAKE's first checks: the edge's verdict, then MALFORMED (the row names
        no order, account or instrument the book has), DUPLICATE_ORDER_ID. False: rejected."""
        check = int(c["check"])
        if check != Reason.NONE:
            self._reject(c, check)
            return False
        if not names_order(int(c["order"]), int(c["account"]), int(c["instrument"]),
                           len(self.books)):
            self._reject(c, Reason.MALFORMED)
            return False
        if int(c["order"]) in self.used_order_ids:
            self._reject(c, Reason.DUPLICATE_ORDER_ID)
            return False
        return True

    def _take(self, c) -> None:
        # §3a order of checks for TAKE: MALFORMED, INVALID_QTY, INVALID_PRICE (the edge),
        # DUPLICATE_ORDER_ID, MARKET_CLOSED (LISTED hours), UNKNOWN_TARGET, TARGET_SAME_SIDE,
        # TARGET_NOT_LISTED, TARGET_NOT_IN_BEST_FIVE, TARGET_OWN_ORDER, TARGET_QTY_EXCEEDED,
        # then the risk stage.
        ref = int(c["order"])
        if not self._fresh_order(c):
            return
        account, instrument = int(c["account"]), int(c["instrument"])
        if not self._session_open(Segment.LISTED):
            return self._reject(c, Reason.MARKET_CLOSED)
        target = self.resting.get(int(c[B.TAKE_TARGET]))
        if target is None or target.instrument != instrument:
            return self._reject(c, Reason.UNKNOWN_TARGET)
        side = int(c["side"])
        if target.side == side:
            return self._reject(c, Reason.TARGET_SAME_SIDE)
        if target.segment != Segment.LISTED:
            return self._reject(c, Reason.TARGET_NOT_LISTED)
        # the best five price levels of the target's side, as they stand now
        levels = self.books[instrument][Segment.LISTED].side(target.side)
        ahead = len(levels) - levels.bisect_right(target.price) if target.side == Side.BUY \
            else levels.bisect_left(target.price)
        if ahead >= MARKET_DEPTH_LEVELS:
            return self._reject(c, Reason.TARGET_NOT_IN_BEST_FIVE)
        if target.account == account:
            return self._reject(c, Reason.TARGET_OWN_ORDER)
        qty = int(c["qty"])
        if qty > target.open:
            return self._reject(c, Reason.TARGET_QTY_EXCEEDED)
        price = target.price
        if self.accounts.enabled:
            reason = self.accounts.check_order(account, instrument, side, Segment.LISTED,
                                               price, qty)
            if reason != Reason.NONE:
                return self._reject(c, reason)
            self.accounts.reserve(account, instrument, side, Segment.LISTED, price, qty)
        order = Order(ref, account, instrument, Segment.LISTED, side, price, qty,
                      int(c["stp"]), self.next_seq)
        self.next_seq += 1
        self.orders[ref] = order
        row = self._emit(EventKind.ACCEPTED, order, price=price, qty=qty)
        row[B.ACCEPTED_TYPE] = OrderType.TAKE
        row[B.ACCEPTED_TIF] = TimeInForce.IOC
        row[B.ACCEPTED_TARGET] = target.ref
        # one trade at the target's price for exactly qty; the target keeps its place
        self._trade(order, target, price)

    def _cancel(self, c) -> None:
        # §7 order of checks for CANCEL: MALFORMED, MARKET_CLOSED (non-trading day only),
        # UNKNOWN_ORDER. §5: cancels are accepted at any time of a trading day.
        order = self._own_resting_order(c)
        if order is None:
            return
        self._cancel_resting(order, Reason.USER)

    def _amend(self, c) -> None:
        # §7 order of checks for AMEND: MALFORMED, INVALID_QTY, INVALID_PRICE (edge),
        # MARKET_CLOSED (non-trading day), UNKNOWN_ORDER, MARKET_CLOSED (segment hours),
        # INVALID_QTY (segment range), PRICE_OUTSIDE_BAND.
        order = self._own_resting_order(c)
        if order is None:
            return
        if not self._session_open(order.segment):
            return self._reject(c, Reason.MARKET_CLOSED)
        new_qty, new_price = int(c["qty"]), int(c["price"])
        if not qty_fits_segment(new_qty, order.segment):
            return self._reject(c, Reason.INVALID_QTY)
        book = self.books[order.instrument][order.segment]
        if not in_band(new_price, book.band_lower, book.band_upper):
            return self._reject(c, Reason.PRICE_OUTSIDE_BAND)

        old_open = order.open
        if self.accounts.enabled:
            # the risk stage judges the change: only what the amendment adds must fit
            reason = self.accounts.check_order(order.account, order.instrument, order.side,
                                               order.segment, new_price, new_qty, old_open,
                                               order.price)
            if reason != Reason.NONE:
                return self._reject(c, reason)
            self._release(order)
            self.accounts.reserve(order.account, order.instrument, order.side, order.segment,
                                  new_price, new_qty)
            order.reserve_price = new_price
        if new_price == order.price and new_qty <= old_open:
            # §5: same price, same or smaller quantity: reduced in place, priority kept.
            order.qty -= old_open - new_qty
            order.open = new_qty
            row = self._emit(EventKind.AMENDED, order, price=new_price, qty=new_qty)
            row[B.AMENDED_PRIORITY_KEPT] = 1
            row[B.AMENDED_OPEN_BEFORE] = old_open
            return
        # §5: any other change loses time priority: out, and in again as a DAY limit order.
        self._remove(order)
        order.qty += new_qty - old_open
        order.open = new_qty
        order.price = new_price
        order.reserve_price = new_price
        row = self._emit(EventKind.AMENDED, order, price=new_price, qty=new_qty)
        row[B.AMENDED_OPEN_BEFORE] = old_open  # priority not kept: AMENDED_PRIORITY_KEPT 0
        if self._match(order, False):
            self._cancel_incoming(order, Reason.SELF_TRADE)
        elif order.open > 0:
            self._rest(order)

    def _own_resting_order(self, c) -> Order | None:
        """CANCEL's and AMEND's checks up to UNKNOWN_ORDER: the order, or None (rejected)."""
        check = int(c["check"])
        if check != Reason.NONE:
            return self._reject(c, check)
        if not names_account(int(c["account"])):
            return self._reject(c, Reason.MALFORMED)
        if not self.calendar.is_trading_day(self._ts // DAY_US):
            return self._reject(c, Reason.MARKET_CLOSED)
        # §5: an order not resting now, or another account's, is UNKNOWN_ORDER alike.
        order = self.resting.get(int(c["order"]))
        if order is None or order.account != int(c["account"]):
            return self._reject(c, Reason.UNKNOWN_ORDER)
        return order

    # ------------------------------------------------------------------ matching (§4)

    def _crosses(self, order: Order, level_price: int, is_market: bool) -> bool:
        return is_market or crosses(order.side, order.price, level_price)

    def _match(self, order: Order, is_market: bool) -> bool:
        """Trade ``order`` against the opposite side; True if STP stopped it (§4)."""
        book = self.books[order.instrument][order.segment]
        opposite = Side.SELL if order.side == Side.BUY else Side.BUY
        levels_entered = 0
        while order.open > 0:
            best = book.best(opposite)
            if best is None:
                break
            level_price, fifo = best
            if not self._crosses(order, level_price, is_market):
                break
            # §3: a MARKET order reaches at most the five best levels as they stood on arrival;
            # a level emptied by CANCEL_OLDEST still counts as one.
            levels_entered += 1
            if is_market and levels_entered > MARKET_DEPTH_LEVELS:
                break
            while fifo and order.open > 0:
                resting = fifo[0]
                if resting.account == order.account:
                    if order.stp == Stp.CANCEL_OLDEST:
                        self._cancel_resting(resting, Reason.SELF_TRADE)
                        continue
                    if order.stp == Stp.CANCEL_BOTH:
                        self._cancel_resting(resting, Reason.SELF_TRADE)
                    return True
                self._trade(order, resting, level_price)
        return False

    def _fok_fillable(self, order: Order) -> bool:
        """§4: fillable from other accounts' orders alone, walking as matching would."""
        book = self.books[order.instrument][order.segment]
        opposite = Side.SELL if order.side == Side.BUY else Side.BUY
        available = 0
        for level_price, fifo in book.levels_in_priority(opposite):
            if not self._crosses(order, level_price, False):
                return False
            for resting in fifo:
                if resting.account == order.account:
                    if order.stp == Stp.CANCEL_OLDEST:
                        continue
                    return False
                available += resting.open
                if available >= order.qty:
                    return True
        return False

    def _trade(self, incoming: Order, resting: Order, price: int) -> None:
        # §4: the resting order's price, the smaller open quantity.
        qty = min(incoming.open, resting.open)
        for order in (incoming, resting):
            order.open -= qty
            order.filled += qty
            if order.open == 0:
                order.status = OrderStatus.FILLED
        if resting.open == 0:
            self._remove(resting)
        buy, sell = (incoming, resting) if incoming.side == Side.BUY else (resting, incoming)
        if self.accounts.enabled:
            self.accounts.settle(
                incoming.instrument, incoming.segment, buy.account, sell.account, price, qty,
                self.accounts.unit(Side.BUY, buy.reserve_price, buy.segment))
        day = self.days[incoming.instrument]
        if incoming.segment == Segment.LISTED:
            day.listed_volume += qty
            day.listed_turnover += price * qty
        else:
            day.block_volume += qty
            day.block_turnover += price * qty
        assert max(day.listed_turnover, day.block_turnover) <= _INT64_MAX, "turnover overflow"
        row = self._row(EventKind.TRADE)
        row[B.TRADE_ID] = self.next_trade_id
        row[B.INSTRUMENT] = incoming.instrument
        row[B.SEGMENT] = incoming.segment
        row[B.PRICE] = price
        row[B.QTY] = qty
        row[B.TRADE_AGGRESSOR] = incoming.side
        row[B.TRADE_BUY_ORDER], row[B.TRADE_BUY_ACCOUNT] = buy.ref, buy.account
        row[B.TRADE_BUY_LEFT] = buy.open
        row[B.TRADE_SELL_ORDER], row[B.TRADE_SELL_ACCOUNT] = sell.ref, sell.account
        row[B.TRADE_SELL_LEFT] = sell.open
        self.next_trade_id += 1

    # ------------------------------------------------------------------ book upkeep

    def _rest(self, order: Order) -> None:
        levels = self.books[order.instrument][order.segment].side(order.side)
        levels.setdefault(order.price, deque()).append(order)
        self.resting[order.ref] = order

    def _remove(self, order: Order) -> None:
        levels = self.books[order.instrument][order.segment].side(order.side)
        fifo = levels[order.price]
        fifo.remove(order)
        if not fifo:
            del levels[order.price]
        del self.resting[order.ref]

    def _release(self, order: Order) -> None:
        """Give back what ``order``'s open quantity reserves (risk stage on)."""
        if self.accounts.enabled:
            self.accounts.release(order.account, order.instrument, order.side, order.segment,
                                  order.reserve_price, order.open)

    def _cancel_resting(self, order: Order, reason: Reason) -> None:
        """Take a resting ``order`` out of the book and cancel its open quantity."""
        self._remove(order)
        self._cancel_incoming(order, reason)  # out of the book, it is cancelled as one not in it

    def _cancel_incoming(self, order: Order, reason: Reason) -> None:
        """Cancel the open quantity of ``order``, which is not in the book (the command's own
        order, before resting or instead of it)."""
        self._release(order)
        row = self._emit(EventKind.CANCELLED, order, price=order.price, qty=order.open,
                         reason=reason)
        row[B.CANCELLED_FILLED] = order.filled
        order.cancelled += order.open
        order.open = 0
        order.status = OrderStatus.CANCELLED
        order.reason = reason

    # ------------------------------------------------------------------ days (§6)

    def _session_open(self, segment: int) -> bool:
        """NEW/AMEND allowed now: a trading day in progress, inside the segment's hours."""
        return self.day_open and in_session(segment, self._ts % DAY_US)

    def _advance_clock(self, ts: int) -> None:
        day, time_of_day = divmod(ts, DAY_US)
        if self.day_open and (day > self.last_day or time_of_day >= DAY_CLOSE_US):
            self._close_day()
        if day > self.last_day and self.calendar.is_trading_day(day):
            self._open_day(day)
            if time_of_day >= DAY_CLOSE_US:
                self._close_day()
        self._clock = ts

    def _opens_day_past_price_limit(self, ts: int) -> bool:
        day = ts // DAY_US
        return (ts != NO_TIME and ts >= self._clock and day > self.last_day
                and self.calendar.is_trading_day(day)
                and any(figures.close > MAX_PRIOR_CLOSE for figures in self.days))

    def _open_day(self, day: int) -> None:
        self.last_day = day
        self.day_open = True
        if self.accounts.enabled:
            self.accounts.new_day()  # T+1: yesterday's purchases sellable, proceeds withdrawable
        for instrument, figures in enumerate(self.days):
            prior_close = figures.close  # the close of the last day the engine ran (§6)
            self.days[instrument] = InstrumentDay(prior_close)
            for segment in (Segment.LISTED, Segment.BLOCK):
                book = self.books[instrument][segment]
                book.band_lower, book.band_upper = band_limits(prior_close, segment)

    def _close_day(self) -> None:
        # §3b: block quotes still live expire first; §6: at 15:00 every resting order
        # expires, reported in order of arrival.
        end_ts = self.last_day * DAY_US + DAY_CLOSE_US
        self.negotiations.expire_all(self, self._cmd, end_ts)
        for order in sorted(self.resting.values(), key=lambda o: o.seq):
            self._remove(order)
            row = self._emit(EventKind.EXPIRED, order, price=order.price, qty=order.open)
            row[B.EXPIRED_FILLED] = order.filled
            row[B.TS] = end_ts
            self._release(order)
            order.cancelled += order.open
            order.open = 0
            order.status = OrderStatus.EXPIRED
        for instrument, figures in enumerate(self.days):
            row = self._row(EventKind.DAY_CLOSED)
            row[B.TS] = end_ts
            row[B.INSTRUMENT] = instrument
            row[B.DAY_NUMBER] = self.last_day
            row[B.DAY_CLOSE] = figures.close
            row[B.DAY_PRIOR_CLOSE] = figures.prior_close
            row[B.DAY_LISTED_VOLUME] = figures.listed_volume
            row[B.DAY_BLOCK_VOLUME] = figures.block_volume
            row[B.DAY_LISTED_TURNOVER] = figures.listed_turnover
            row[B.DAY_BLOCK_TURNOVER] = figures.block_turnover
            # the closed day's figures stay until the next day opens: its close is the
            # next prior close, and open_day() reports them while no day is in progress
        self.day_open = False

    # ------------------------------------------------------------------ events

    def _row(self, kind: EventKind) -> list[int]:
        row = [0] * B.EVENT_WIDTH
        row[B.KIND] = kind
        row[B.CMD] = self._cmd
        row[B.TS] = self._ts
        self._events.append(row)
        return row

    def _emit(self, kind, order: Order, price=0, qty=0, reason=0) -> list[int]:
        """An event about ``order``; the caller sets the columns its kind adds."""
        row = self._row(kind)
        row[B.ORDER] = order.ref
        row[B.ACCOUNT] = order.account
        row[B.INSTRUMENT] = order.instrument
        row[B.SEGMENT] = order.segment
        row[B.SIDE] = order.side
        row[B.PRICE] = price
        row[B.QTY] = qty
        row[B.REASON] = reason
        return row

    def _reject(self, c, reason: Reason) -> None:
        row = self._row(EventKind.REJECTED)
        row[B.ORDER] = int(c["order"])
        row[B.ACCOUNT] = int(c["account"])
        row[B.INSTRUMENT] = int(c["instrument"])
        row[B.REASON] = reason
        row[B.REJECTED_ACTION] = int(c["action"])

    # ------------------------------------------------------------------ queries

    def best_bid(self, instrument: int, segment: int):
        """(price, open quantity at that level) of the best bid, or None."""
        return self._best(instrument, segment, Side.BUY)

    def best_ask(self, instrument: int, segment: int):
        """(price, open quantity at that level) of the best ask, or None."""
        return self._best(instrument, segment, Side.SELL)

    def _best(self, instrument, segment, side):
        best = self.books[instrument][segment].best(side)
        if best is None:
            return None
        price, fifo = best
        return price, sum(o.open for o in fifo)

    def depth(self, instrument: int, segment: int, side: int, levels: int = 5):
        """[(price, open quantity, order count)] of the best ``levels`` levels of ``side``."""
        out = []
        for price, fifo in self.books[instrument][segment].levels_in_priority(side):
            if len(out) == levels:
                break
            out.append((price, sum(o.open for o in fifo), len(fifo)))
        return out

    # ------------------------------------------------------------------ the venue of §3b

    def n_instruments(self) -> int:
        return len(self.books)

    def block_session_open(self, ts: int) -> bool:
        return self.day_open and in_session(Segment.BLOCK, ts % DAY_US)

    def is_trading_day(self, ts: int) -> bool:
        return self.calendar.is_trading_day(ts // DAY_US)

    def block_band(self, instrument: int) -> tuple[int, int]:
        book = self.books[instrument][Segment.BLOCK]
        return book.band_lower, book.band_upper

    def order_id_used(self, ref: int) -> bool:
        return ref in self.used_order_ids

    def use_order_id(self, ref: int) -> None:
        self.used_order_ids.add(ref)

    def block_trade(self, instrument: int, price: int, qty: int) -> int:
        """A negotiated BLOCK trade's figures; its trade id."""
        day = self.days[instrument]
        day.block_volume += qty
        day.block_turnover += price * qty
        self.next_trade_id += 1
        return self.next_trade_id - 1

    def event(self, kind: int, cmd: int, ts: int) -> list[int]:
        row = [0] * B.EVENT_WIDTH
        row[B.KIND], row[B.CMD], row[B.TS] = kind, cmd, ts
        self._events.append(row)
        return row

    def reservations(self):
        """``resting_orders()`` and what live block quotes reserve, for
        ``engine.accounts.check_reservations``."""
        yield from self.resting_orders()
        yield from self.negotiations.reservations()

    def resting_in_levels(self, instrument: int, segment: int, side: int, levels: int = 5):
        """[(order, price, open, account)] of the orders in the best ``levels`` price levels
        of ``side``, in priority order."""
        out = []
        for k, (price, fifo) in enumerate(
                self.books[instrument][segment].levels_in_priority(side)):
            if k >= levels:
                break
            out.extend((o.ref, price, o.open, o.account) for o in fifo)
        return out

    def resting_orders(self):
        """Every resting order as (instrument, segment, side, price, order, account, open, seq),
        book by book, bids then asks, in priority order."""
        for instrument, books in enumerate(self.books):
            for segment, book in enumerate(books):
                for side in (Side.BUY, Side.SELL):
                    for price, fifo in book.levels_in_priority(side):
                        for o in fifo:
                            yield (instrument, segment, int(side), price, o.ref, o.account,
                                   o.open, o.seq)

    def order_state(self, ref: int):
        """(status, reason, qty, filled, open) of an order handle; status NONE if never
        accepted."""
        o = self.orders.get(ref)
        if o is None:
            return (OrderStatus.NONE, Reason.NONE, 0, 0, 0)
        return (OrderStatus(o.status), Reason(o.reason), o.qty, o.filled, o.open)

    def open_day(self):
        """The day in progress: (day, [(prior_close, close, listed_volume, block_volume,
        listed_turnover, block_turnover)] per instrument, is_open); None before any day."""
        if self.last_day < 0:
            return None
        figures = [
            (d.prior_close, d.close, d.listed_volume, d.block_volume, d.listed_turnover,
             d.block_turnover)
            for d in self.days
        ]
        return self.last_day, figures, self.day_open

    def set_prior_close(self, instrument: int, fen: int) -> None:
        """The prior close the next trading day opens with (only while no day is open)."""
        if self.day_open:
            raise EngineConfigError("a prior close cannot change while a trading day is open")
        self.days[instrument] = InstrumentDay(check_prior_close(int(fen)))

    @property
    def clock(self) -> int:
        """The exchange time of the last command that moved it, µs (``NO_TIME`` before any)."""
        return self._clock

    def globals(self):
        """(clock, next trade id, commands processed)."""
        return self._clock, self.next_trade_id, self.commands_done

    def band(self, instrument: int, segment: int) -> tuple[int, int]:
        book = self.books[instrument][segment]
        return book.band_lower, book.band_upper

    # ------------------------------------------------------------------ invariants

    def check_invariants(self) -> None:
        """Raise ``BookIntegrityError`` if any structural invariant fails."""
        seen = 0
        for instrument, books in enumerate(self.books):
            for segment, book in enumerate(books):
                bid, ask = book.best(Side.BUY), book.best(Side.SELL)
                if bid and ask and bid[0] >= ask[0]:
                    self._fail(f"book {instrument}/{segment} crossed: {bid[0]} >= {ask[0]}")
                for side in (Side.BUY, Side.SELL):
                    for price, fifo in book.levels_in_priority(side):
                        if not fifo:
                            self._fail(f"empty level {price} left in book")
                        if not in_band(price, book.band_lower, book.band_upper):
                            self._fail(f"resting price {price} outside band")
                        for o in fifo:
                            seen += 1
                            if o.open <= 0 or o.price != price or o.side != side:
                                self._fail(f"resting order {o.ref} inconsistent")
                            if self.resting.get(o.ref) is not o:
                                self._fail(f"resting order {o.ref} missing from index")
        if seen != len(self.resting):
            self._fail("resting index holds orders that are not in a book")
        for o in self.orders.values():
            if o.filled + o.open + o.cancelled != o.qty or min(o.filled, o.open, o.cancelled) < 0:
                self._fail(f"order {o.ref}: filled+open+cancelled != qty")
            if (o.status == OrderStatus.RESTING) != (o.ref in self.resting):
                self._fail(f"order {o.ref}: status {o.status} disagrees with the book")

    def _fail(self, message: str):
        raise BookIntegrityError(message, self.commands_done)
