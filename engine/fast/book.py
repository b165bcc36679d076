"""The fast book: owns the preallocated arrays and makes one jitted call per batch.

Same interface as ``engine.reference.book.ReferenceBook`` (``submit_batch``, ``best_bid``,
``best_ask``, ``depth``, ``resting_orders``, ``order_state``, ``open_day``, ``clock``,
``globals``, ``band``, ``check_invariants``). Capacities grow on demand: the kernel stops before a command
it has no room for, this wrapper grows the array and calls again, so a batch of any size and
any book depth is handled; small initial capacities (tests use them) exercise that path.

>>> from engine.tradingdays import TradingCalendar
>>> book = FastBook([6000], TradingCalendar.from_dates(["2024-03-04"]), slot_capacity=4)
>>> book.best_bid(0, 0) is None
True
"""

from __future__ import annotations

import numpy as np

from .. import batch as B
from ..accounts import Accounts
from ..codes import NO_TIME, OrderStatus, Reason, Segment, Side
from ..errors import BookIntegrityError, EngineConfigError, PriceLimitError
from ..negotiation import Negotiations
from ..rules import (
    DAY_CLOSE_US, DAY_US, MAX_PRIOR_CLOSE, check_prior_close, closing_price, in_band,
    in_session,
)
from ..tradingdays import TradingCalendar
from . import kernels as K
from . import state as S


class FastBook:
    """Price-time continuous double auction in Numba over preallocated arrays."""

    name = "numba"

    def __init__(self, prior_closes, calendar: TradingCalendar, slot_capacity: int = 1 << 16,
                 order_capacity: int = 1 << 16, event_capacity: int = 1 << 16,
                 accounts: Accounts | None = None):
        prior_closes = [check_prior_close(int(p)) for p in prior_closes]
        if not prior_closes:
            raise EngineConfigError("an engine needs at least one instrument")
        n = len(prior_closes)
        self.calendar = calendar
        self._cal = calendar.table(calendar.last_day)
        self.glob = np.zeros(S.GL_FIELDS, dtype=np.int64)
        self.glob[S.GL_CLOCK] = NO_TIME
        self.glob[S.GL_LAST_DAY] = -1
        self.glob[S.GL_NEXT_TRADE_ID] = 1
        self.glob[S.GL_FREE_HEAD] = 0
        self.glob[S.GL_FREE_COUNT] = max(1, slot_capacity)
        self.glob[S.GL_CAL_FIRST_DAY] = calendar.first_day
        self.glob[S.GL_CAL_WEEKDAYS] = int(calendar.weekdays_beyond)
        self.slots = S.new_slots(max(1, slot_capacity))
        self.refs = S.new_refs(max(1, order_capacity))
        self.levels = S.new_levels(2 * n, max(S.ladder_width(p) for p in prior_closes))
        self.books = S.new_books(2 * n)
        self.days = np.zeros((n, S.DY_FIELDS), dtype=np.int64)
        self.days[:, S.DY_PRIOR_CLOSE] = prior_closes
        self.events = S.new_events(max(64, event_capacity))
        self.negotiations = Negotiations()  # live block quotes (§3b), Python's
        self.accounts = accounts if accounts is not None else Accounts.disabled(n)
        if self.accounts.n_instruments != n:
            raise EngineConfigError(f"accounts hold {self.accounts.n_instruments} instruments, "
                                    f"the book {n}")

    # ------------------------------------------------------------------ commands

    def submit_batch(self, cmds: np.ndarray, copy: bool = True) -> np.ndarray:
        """Process a ``COMMAND_DTYPE`` array in one jitted call; return its events.

        With ``copy=False`` the events are a view of the book's own buffer, valid until the
        next call: for callers that consume them at once (it saves copying each row).
        """
        if cmds.dtype is not B.COMMAND_DTYPE and cmds.dtype != B.COMMAND_DTYPE:
            raise EngineConfigError(f"commands must be {B.COMMAND_DTYPE}, not {cmds.dtype}")
        glob = self.glob
        glob[S.GL_EVENTS] = 0
        start = 0
        while True:
            acc = self.accounts
            status = K.run_batch(cmds, start, self._cal, glob, self.slots, self.refs,
                                  self.levels, self.books, self.days, self.events,
                                  acc.cash, acc.holdings, acc.risk)
            if status == S.DONE:
                break
            start = int(glob[S.GL_NEXT_CMD])
            need = int(glob[S.GL_NEED])
            if status == S.NEED_EVENTS:
                self._grow_events()
            elif status == S.NEED_SLOTS:
                self.slots = S.grow_slots(self.slots, glob, self.slots.shape[0] * 2)
            elif status == S.NEED_ORDERS:
                self.refs = S.grow_refs(self.refs, max(need + 1, self.refs.shape[0] * 2))
            elif status == S.NEED_CALENDAR:
                self._cal = self.calendar.table(need + 366)
            elif status == S.PRICE_LIMIT:
                raise PriceLimitError(
                    f"a trading day would open with a prior close above {MAX_PRIOR_CLOSE} fen",
                    start, self.events[: glob[S.GL_EVENTS]].copy())
            elif status == S.NEGOTIATE:
                # a BLOCK_* command, its clock moved: the negotiation's, then on
                self.negotiations.handle(self, start, cmds[start])
                glob[S.GL_QUOTES] = len(self.negotiations)
                glob[S.GL_DONE] += 1
                start += 1
            elif status == S.EXPIRE_QUOTES:
                # the command at start ends the day: its quotes expire at 15:00, then the
                # kernel closes the day as always
                end = int(glob[S.GL_LAST_DAY]) * DAY_US + DAY_CLOSE_US
                self.negotiations.expire_all(self, start, end)
                glob[S.GL_QUOTES] = 0
            elif status == S.NEED_LEVELS:
                # the day being closed still needs its orders where they are: copy them over
                levels = S.new_levels(self.books.shape[0], need + need // 4)
                levels[:, :, : self.levels.shape[2]] = self.levels
                self.levels = levels
        events = self.events[: glob[S.GL_EVENTS]]
        return events.copy() if copy else events

    # ------------------------------------------------------------------ the venue of §3b

    def n_instruments(self) -> int:
        return self.days.shape[0]

    def block_session_open(self, ts: int) -> bool:
        return self.glob[S.GL_DAY_OPEN] == 1 and in_session(Segment.BLOCK, ts % DAY_US)

    def is_trading_day(self, ts: int) -> bool:
        return self.calendar.is_trading_day(ts // DAY_US)

    def block_band(self, instrument: int) -> tuple[int, int]:
        b = instrument * 2 + Segment.BLOCK
        return int(self.books[b, S.BK_LOWER]), int(self.books[b, S.BK_UPPER])

    def order_id_used(self, ref: int) -> bool:
        return ref < self.refs.shape[0] and self.refs[ref, S.RF_USED] != 0

    def use_order_id(self, ref: int) -> None:
        if ref >= self.refs.shape[0]:
            self.refs = S.grow_refs(self.refs, max(ref + 1, self.refs.shape[0] * 2))
        self.refs[ref, S.RF_USED] = 1

    def block_trade(self, instrument: int, price: int, qty: int) -> int:
        """A negotiated BLOCK trade's figures; its trade id."""
        self.days[instrument, S.DY_BLOCK_VOLUME] += qty
        self.days[instrument, S.DY_BLOCK_TURNOVER] += price * qty
        self.glob[S.GL_NEXT_TRADE_ID] += 1
        return int(self.glob[S.GL_NEXT_TRADE_ID]) - 1

    def event(self, kind: int, cmd: int, ts: int) -> np.ndarray:
        """A new event row (a view into the buffer) with its kind, command and time."""
        glob = self.glob
        if self.events.shape[0] - int(glob[S.GL_EVENTS]) < 4:
            self._grow_events()
        r = int(glob[S.GL_EVENTS])
        glob[S.GL_EVENTS] = r + 1
        row = self.events[r]
        row[:] = 0
        row[B.KIND], row[B.CMD], row[B.TS] = kind, cmd, ts
        return row

    def reservations(self):
        """``resting_orders()`` and what live block quotes reserve, for
        ``engine.accounts.check_reservations``."""
        yield from self.resting_orders()
        yield from self.negotiations.reservations()

    def _grow_events(self) -> None:
        need = int(self.glob[S.GL_RESTING]) + 2 * self.days.shape[0] + 8  # as the kernel
        size = self.events.shape[0]
        while size - int(self.glob[S.GL_EVENTS]) < need:
            size *= 2
        # the room is for the worst case of one command (every resting order traded at
        # once): mapped lazily, it costs memory only if a batch ever writes that far
        used = int(self.glob[S.GL_EVENTS])
        out = np.zeros((size, B.EVENT_WIDTH), dtype=np.int64)
        out[:used] = self.events[:used]
        self.events = out

    # ------------------------------------------------------------------ queries

    def _book(self, instrument: int, segment: int) -> int:
        return instrument * 2 + segment

    def best_bid(self, instrument: int, segment: int):
        """(price, open quantity at that level) of the best bid, or None."""
        return self._best(instrument, segment, Side.BUY)

    def best_ask(self, instrument: int, segment: int):
        """(price, open quantity at that level) of the best ask, or None."""
        return self._best(instrument, segment, Side.SELL)

    def _best(self, instrument, segment, side):
        b = self._book(instrument, segment)
        li = int(self.books[b, S.BK_BEST_BID if side == Side.BUY else S.BK_BEST_ASK])
        if li == S.NIL:
            return None
        bs = b * 2 + side - 1
        return int(self.books[b, S.BK_BASE]) + li, int(self.levels[bs, S.LV_QTY, li])

    def _levels_in_priority(self, b: int, side: int):
        bs = b * 2 + side - 1
        width = int(self.books[b, S.BK_WIDTH])
        count = self.levels[bs, S.LV_COUNT, :width]
        occupied = np.flatnonzero(count)
        if side == Side.BUY:
            occupied = occupied[::-1]
        base = int(self.books[b, S.BK_BASE])
        for li in occupied:
            yield base + int(li), bs, int(li)

    def depth(self, instrument: int, segment: int, side: int, levels: int = 5):
        """[(price, open quantity, order count)] of the best ``levels`` levels of ``side``."""
        out = np.empty((max(0, levels), 3), dtype=np.int64)
        n = K.top_levels(self.levels, self.books, self._book(instrument, segment), int(side),
                         levels, out)
        return [tuple(row) for row in out[:n].tolist()]

    def resting_in_levels(self, instrument: int, segment: int, side: int, levels: int = 5):
        """[(order, price, open, account)] of the orders in the best ``levels`` price levels
        of ``side``, in priority order."""
        out = []
        slots = self.slots
        for k, (price, bs, li) in enumerate(self._levels_in_priority(
                self._book(instrument, segment), side)):
            if k >= levels:
                break
            s = int(self.levels[bs, S.LV_HEAD, li])
            while s != S.NIL:
                out.append((int(slots[s, S.SL_REF]), price, int(slots[s, S.SL_OPEN]),
                            int(slots[s, S.SL_ACCOUNT])))
                s = int(slots[s, S.SL_NEXT])
        return out

    def resting_orders(self):
        """Every resting order as (instrument, segment, side, price, order, account, open, seq),
        book by book, bids then asks, in priority order."""
        slots = self.slots
        for b in range(self.books.shape[0]):
            for side in (Side.BUY, Side.SELL):
                for price, bs, li in self._levels_in_priority(b, side):
                    s = int(self.levels[bs, S.LV_HEAD, li])
                    while s != S.NIL:
                        yield (b // 2, b % 2, int(side), price, int(slots[s, S.SL_REF]),
                               int(slots[s, S.SL_ACCOUNT]), int(slots[s, S.SL_OPEN]),
                               int(slots[s, S.SL_SEQ]))
                        s = int(slots[s, S.SL_NEXT])

    def order_state(self, ref: int):
        """(status, reason, qty, filled, open) of an order handle; status NONE if never
        accepted."""
        if not 0 <= ref < self.refs.shape[0]:
            return (OrderStatus.NONE, Reason.NONE, 0, 0, 0)
        r = self.refs[ref]
        s = int(r[S.RF_SLOT])
        open_qty = int(self.slots[s, S.SL_OPEN]) if s != S.NIL else 0
        return (OrderStatus(int(r[S.RF_STATUS])), Reason(int(r[S.RF_REASON])),
                int(r[S.RF_QTY]), int(r[S.RF_FILLED]), open_qty)

    def open_day(self):
        """The day in progress: (day, [(prior_close, close, listed_volume, block_volume,
        listed_turnover, block_turnover)] per instrument, is_open); None before any day."""
        last_day = int(self.glob[S.GL_LAST_DAY])
        if last_day < 0:
            return None
        figures = []
        for i in range(self.days.shape[0]):
            d = [int(x) for x in self.days[i]]
            close = closing_price(d[S.DY_LISTED_TURNOVER], d[S.DY_LISTED_VOLUME],
                                  d[S.DY_PRIOR_CLOSE])
            figures.append((d[S.DY_PRIOR_CLOSE], close, d[S.DY_LISTED_VOLUME],
                            d[S.DY_BLOCK_VOLUME], d[S.DY_LISTED_TURNOVER],
                            d[S.DY_BLOCK_TURNOVER]))
        return last_day, figures, bool(self.glob[S.GL_DAY_OPEN])

    def set_prior_close(self, instrument: int, fen: int) -> None:
        """The prior close the next trading day opens with (only while no day is open)."""
        if self.glob[S.GL_DAY_OPEN]:
            raise EngineConfigError("a prior close cannot change while a trading day is open")
        self.days[instrument] = 0  # the closed day's figures are no longer its close
        self.days[instrument, S.DY_PRIOR_CLOSE] = check_prior_close(int(fen))

    @property
    def clock(self) -> int:
        """The exchange time of the last command that moved it, µs (``NO_TIME`` before any)."""
        return int(self.glob[S.GL_CLOCK])

    def globals(self):
        """(clock, next trade id, commands processed)."""
        g = self.glob
        return int(g[S.GL_CLOCK]), int(g[S.GL_NEXT_TRADE_ID]), int(g[S.GL_DONE])

    def band(self, instrument: int, segment: int) -> tuple[int, int]:
        b = self._book(instrument, segment)
        return int(self.books[b, S.BK_LOWER]), int(self.books[b, S.BK_UPPER])

    # ------------------------------------------------------------------ invariants

    def check_invariants(self) -> None:
        """Raise ``BookIntegrityError`` if any structural invariant fails: levels, FIFO links,
        best pointers, the free list, counts, and every order's quantities."""
        slots, refs, levels, books, glob = self.slots, self.refs, self.levels, self.books, self.glob
        seq = int(glob[S.GL_DONE])

        def fail(msg):
            raise BookIntegrityError(msg, seq)

        in_book = np.zeros(slots.shape[0], dtype=bool)
        total = 0
        for b in range(books.shape[0]):
            base, width = int(books[b, S.BK_BASE]), int(books[b, S.BK_WIDTH])
            lower, upper = int(books[b, S.BK_LOWER]), int(books[b, S.BK_UPPER])
            book_count = 0
            best = {}
            for side in (Side.BUY, Side.SELL):
                bs = b * 2 + side - 1
                occupied = np.flatnonzero(levels[bs, S.LV_COUNT, :width])
                expected = S.NIL if len(occupied) == 0 else int(
                    occupied[-1] if side == Side.BUY else occupied[0])
                got = int(books[b, S.BK_BEST_BID if side == Side.BUY else S.BK_BEST_ASK])
                if got != expected:
                    fail(f"book {b} side {side}: best level {got}, expected {expected}")
                best[side] = expected
                for li in range(width):
                    s, prev, qty, count = int(levels[bs, S.LV_HEAD, li]), S.NIL, 0, 0
                    while s != S.NIL:
                        if in_book[s]:
                            fail(f"slot {s} linked twice")
                        in_book[s] = True
                        if int(slots[s, S.SL_PREV]) != prev:
                            fail(f"slot {s}: broken back link")
                        price = int(slots[s, S.SL_PRICE])
                        if price != base + li or not in_band(price, lower, upper):
                            fail(f"slot {s}: price {price} at level {base + li}, band "
                                 f"{lower}..{upper}")
                        if int(slots[s, S.SL_OPEN]) <= 0 or int(slots[s, S.SL_SIDE]) != side:
                            fail(f"slot {s}: bad open quantity or side")
                        ref = int(slots[s, S.SL_REF])
                        if int(refs[ref, S.RF_SLOT]) != s:
                            fail(f"order {ref} does not point at its slot {s}")
                        qty += int(slots[s, S.SL_OPEN])
                        count += 1
                        prev, s = s, int(slots[s, S.SL_NEXT])
                    if int(levels[bs, S.LV_TAIL, li]) != prev:
                        fail(f"book {b} level {li}: tail is not the last order")
                    if qty != int(levels[bs, S.LV_QTY, li]) or count != int(
                            levels[bs, S.LV_COUNT, li]):
                        fail(f"book {b} level {li}: totals disagree with its orders")
                    book_count += count
            if best[Side.BUY] != S.NIL and best[Side.SELL] != S.NIL and \
                    best[Side.BUY] >= best[Side.SELL]:
                fail(f"book {b} crossed")
            if book_count != int(books[b, S.BK_RESTING]):
                fail(f"book {b}: resting count disagrees")
            total += book_count
        if total != int(glob[S.GL_RESTING]):
            fail("total resting count disagrees")
        free, s = 0, int(glob[S.GL_FREE_HEAD])
        while s != S.NIL:
            if in_book[s]:
                fail(f"slot {s} is both free and in a book")
            free += 1
            s = int(slots[s, S.SL_NEXT])
            if free > slots.shape[0]:
                fail("free list loops")
        if free != int(glob[S.GL_FREE_COUNT]) or free + total != slots.shape[0]:
            fail("slots leaked: free + resting != capacity")
        status = refs[:, S.RF_STATUS]
        accepted = status != OrderStatus.NONE
        open_qty = np.zeros(refs.shape[0], dtype=np.int64)
        resting = refs[:, S.RF_SLOT] != S.NIL
        open_qty[resting] = slots[refs[resting, S.RF_SLOT], S.SL_OPEN]
        if np.any((status == OrderStatus.RESTING) != resting):
            fail("an order's status disagrees with the book")
        balance = refs[:, S.RF_FILLED] + open_qty + refs[:, S.RF_CANCELLED] - refs[:, S.RF_QTY]
        if np.any(balance[accepted] != 0):
            fail("an order's filled + open + cancelled != its quantity")
