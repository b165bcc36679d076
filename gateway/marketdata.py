"""Market data: sequenced channels, one per instrument and segment, encoded in compiled code.

Every message a channel publishes carries the channel's next sequence number (1, 2, ...):
trades, the top five levels of each side after a change (``MdDepth``; its first level is the
best bid/offer), status changes and the day summary. Messages are produced only from the
engine's events and state while a journal record is applied, so a recovered exchange
reproduces the same numbers. Each channel keeps its last ``ring`` frames (a fixed 256-byte
slot each) for replays; a subscriber whose gap is older than that gets a fresh snapshot.

The stage's compiled pass (``publish_events``) walks a batch's event rows once: trades and
day summaries are framed into the rings, and the channels whose book changed are flagged
for the depth check that follows (``publish_depth``).

>>> md = MarketData(["CEA"], ring=4)
>>> md.publish_status(0, 1, 0)  # channel 0 (CEA, LISTED) is OPEN at time 0
1
>>> from gateway import protocol as P
>>> P.FrameReader(P.SERVER).feed(md.frames(0, 1, 1))
[MdStatus(instrument=0, segment=0, seq=1, ts_us=0, status=<Status.OPEN: 1>)]
>>> md.frames(0, 0, 1) is None, md.frames(0, 2, 2) is None
(True, True)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine import batch as B
from engine.codes import NO_TIME, EventKind, Segment
from engine.rules import AM_OPEN_US, DAY_CLOSE_US, DAY_US, in_session

from . import protocol as P
from .protocol import DEPTH_LEVELS, NULL_PRICE, Status
from engine.fast import state as S
from engine.fast.kernels import top_levels

from .wire import civil_date, put_md_depth, put_md_status, put_md_summary, put_md_trade

_kernel = njit(cache=True, _nrt=False)

#: Frames a channel keeps for replay requests.
RING = 65_536
#: Bytes of a ring slot: the largest frame (an MdDepth of ten levels) is 224.
SLOT = 256

# per-channel figures (columns of MarketData.figures)
F_SEQ = 0
F_STATUS = 1
F_LAST = 2  # the day's last trade price on this channel, NULL_PRICE before one
F_VOLUME = 3
F_TURNOVER = 4
F_DEPTH_BIDS = 5  # levels of the last published depth
F_DEPTH_ASKS = 6
F_OPEN = 7  # the day's first, highest and lowest trade price on this channel (NULL_PRICE
F_HIGH = 8  # before one): what a screen shows beside the last price, exact however fast
F_LOW = 9  # the frames pass (a reader of the rings may fall behind them)
FIGURES = 10

_TRADE, _DAY = int(EventKind.TRADE), int(EventKind.DAY_CLOSED)


@_kernel
def publish_events(events, n, figures, rings, changed):
    """Frame the trades and day summaries of an event batch into the channels' rings and
    flag (``changed[c] = 1``) every channel whose book the batch touched. Returns the number
    of TRADE and of DAY_CLOSED rows."""
    slots = rings.shape[1]
    days = 0
    trades = 0
    for k in range(n):
        kind = events[k, B.KIND]
        if kind == _TRADE:
            c = events[k, B.INSTRUMENT] * 2 + events[k, B.SEGMENT]
            price, qty = events[k, B.PRICE], events[k, B.QTY]
            if figures[c, F_OPEN] == NULL_PRICE:
                figures[c, F_OPEN] = price
                figures[c, F_HIGH] = price
                figures[c, F_LOW] = price
            elif price > figures[c, F_HIGH]:
                figures[c, F_HIGH] = price
            elif price < figures[c, F_LOW]:
                figures[c, F_LOW] = price
            figures[c, F_LAST] = price
            figures[c, F_VOLUME] += qty
            figures[c, F_TURNOVER] += price * qty
            seq = figures[c, F_SEQ] + 1
            figures[c, F_SEQ] = seq
            put_md_trade(rings[c, seq % slots], 0, events[k, B.INSTRUMENT],
                         events[k, B.SEGMENT], events[k, B.SIDE], seq, events[k, B.TS],
                         events[k, B.TRADE_ID], price, qty)
            changed[c] = 1
            trades += 1
        elif kind == _DAY:
            instrument = events[k, B.INSTRUMENT]
            date = civil_date(events[k, B.DAY_NUMBER])
            for segment in range(2):
                c = instrument * 2 + segment
                volume = events[k, B.DAY_LISTED_VOLUME if segment == 0 else B.DAY_BLOCK_VOLUME]
                turnover = events[k, B.DAY_LISTED_TURNOVER if segment == 0
                                  else B.DAY_BLOCK_TURNOVER]
                seq = figures[c, F_SEQ] + 1
                figures[c, F_SEQ] = seq
                put_md_summary(rings[c, seq % slots], 0, instrument, segment, seq,
                               events[k, B.TS], date, events[k, B.DAY_PRIOR_CLOSE],
                               events[k, B.DAY_CLOSE],
                               volume, turnover)
                figures[c, F_LAST] = NULL_PRICE  # a new day
                figures[c, F_OPEN] = NULL_PRICE
                figures[c, F_HIGH] = NULL_PRICE
                figures[c, F_LOW] = NULL_PRICE
                figures[c, F_VOLUME] = 0
                figures[c, F_TURNOVER] = 0
            days += 1
        elif kind != 2:  # ACCEPTED, CANCELLED, EXPIRED, AMENDED: the book changed
            changed[events[k, B.INSTRUMENT] * 2 + events[k, B.SEGMENT]] = 1
    return trades, days


@_kernel
def publish_fast_depths(levels, books, changed, ts, figures, depths, rings, scratch):
    """``publish_depth`` for every flagged channel, its top levels read straight from the
    fast book's arrays (``engine.fast``); clears the flags. Returns messages framed."""
    framed = 0
    for c in range(changed.shape[0]):
        if changed[c] == 0:
            continue
        changed[c] = 0
        nb = top_levels(levels, books, c, 1, DEPTH_LEVELS, scratch[:DEPTH_LEVELS])
        na = top_levels(levels, books, c, 2, DEPTH_LEVELS, scratch[DEPTH_LEVELS:])
        framed += publish_depth(c, ts, scratch, nb, na, figures, depths, rings)
    return framed


@_kernel
def publish_depth(c, ts, levels, n_bids, n_asks, figures, depths, rings):
    """Publish channel ``c``'s top levels (int64 [10, 3]: bids in rows 0..4, asks in 5..9)
    if they differ from the last published; returns 1 if a message was framed."""
    same = n_bids == figures[c, F_DEPTH_BIDS] and n_asks == figures[c, F_DEPTH_ASKS]
    if same:
        for row in range(2 * DEPTH_LEVELS):
            side_n = n_bids if row < DEPTH_LEVELS else n_asks
            if row % DEPTH_LEVELS < side_n:
                for f in range(3):
                    if depths[c, row, f] != levels[row, f]:
                        same = False
    if same:
        return 0
    for row in range(2 * DEPTH_LEVELS):
        for f in range(3):
            depths[c, row, f] = levels[row, f]
    figures[c, F_DEPTH_BIDS] = n_bids
    figures[c, F_DEPTH_ASKS] = n_asks
    seq = figures[c, F_SEQ] + 1
    figures[c, F_SEQ] = seq
    put_md_depth(rings[c, seq % rings.shape[1]], 0, c // 2, c % 2, seq, ts, levels, n_bids,
                 n_asks)
    return 1


@_kernel
def top_orders(levels, books, slots, b, side, n_levels, out):
    """The orders of the best ``n_levels`` price levels of one side of fast book ``b``, in
    priority order, into ``out`` rows (order handle, price, open quantity) as far as they fit;
    returns how many there are (more than ``out`` holds if it was cut). What ``MdOrders``
    lists: no account, no id."""
    bs = b * 2 + side - 1
    li = books[b, S.BK_BEST_BID] if side == 1 else books[b, S.BK_BEST_ASK]
    if li == S.NIL:
        return 0
    width = books[b, S.BK_WIDTH]
    step = -1 if side == 1 else 1
    found = 0
    n = 0
    while 0 <= li < width and found < n_levels:
        if levels[bs, S.LV_COUNT, li] > 0:
            found += 1
            price = books[b, S.BK_BASE] + li
            s = levels[bs, S.LV_HEAD, li]
            while s != S.NIL:
                if n < out.shape[0]:
                    out[n, 0] = slots[s, S.SL_REF]
                    out[n, 1] = price
                    out[n, 2] = slots[s, S.SL_OPEN]
                n += 1
                s = slots[s, S.SL_NEXT]
        li += step
    return n



@_kernel
def _put_status(c, status, seq, ts, rings):
    put_md_status(rings[c, seq % rings.shape[1]], 0, c // 2, c % 2, status, seq, ts)


@_kernel
def _frames_size(rings, c, first, last):
    size = 0
    slots = rings.shape[1]
    for s in range(first, last + 1):
        r = rings[c, s % slots]
        size += 2 + (np.int64(r[0]) | (np.int64(r[1]) << 8))
    return size


@_kernel
def _copy_frames(rings, c, first, last, out):
    p = 0
    slots = rings.shape[1]
    for s in range(first, last + 1):
        r = rings[c, s % slots]
        size = 2 + (np.int64(r[0]) | (np.int64(r[1]) << 8))
        for k in range(size):
            out[p + k] = r[k]
        p += size
    return p


def status_at(clock: int, segment: int, trading_day: bool, halted: bool) -> Status:
    """A segment's trading status at exchange time ``clock`` (µs).

    >>> t = 10 * 3_600_000_000  # 10:00 on 1970-01-01
    >>> status_at(t, 0, True, False).name, status_at(t, 1, True, False).name
    ('OPEN', 'BREAK')
    >>> status_at(t, 0, False, False).name, status_at(t, 0, True, True).name
    ('CLOSED', 'HALTED')
    """
    if halted:
        return Status.HALTED
    if clock == NO_TIME or not trading_day:
        return Status.CLOSED
    tod = clock % DAY_US
    if in_session(Segment(segment), tod):
        return Status.OPEN
    if AM_OPEN_US <= tod < DAY_CLOSE_US:
        return Status.BREAK
    return Status.CLOSED


class MarketData:
    """The channels of every instrument, indexed ``instrument * 2 + segment``: their figures
    (sequence number, status, the day's last price, volume and turnover, the last depth) and
    the rings of their recent frames."""

    def __init__(self, instruments: list[str], ring: int = RING):
        self.instruments = list(instruments)
        n = 2 * len(self.instruments)
        self.figures = np.zeros((n, FIGURES), np.int64)
        self.figures[:, F_STATUS] = int(Status.CLOSED)
        self.figures[:, F_LAST] = NULL_PRICE
        self.figures[:, F_OPEN:F_LOW + 1] = NULL_PRICE
        self.depths = np.zeros((n, 2 * DEPTH_LEVELS, 3), np.int64)
        self.ring = ring
        self.rings = np.zeros((n, ring, SLOT), np.uint8)  # pages are touched as frames come
        self.changed = np.zeros(n, np.uint8)
        #: channels whose book changed since the last ``MdOrders`` push (not state)
        self.touched = np.zeros(n, np.uint8)
        # the first sequence number each ring holds (frames before a restart are not kept)
        self.kept_from = self.figures[:, F_SEQ] + 1
        self.levels = np.zeros((2 * DEPTH_LEVELS, 3), np.int64)  # scratch for depth

    @property
    def channels(self) -> int:
        return self.figures.shape[0]

    def seq(self, c: int) -> int:
        return int(self.figures[c, F_SEQ])

    def status(self, c: int) -> Status:
        return Status(int(self.figures[c, F_STATUS]))

    # -------------------------------------------------------------- publishing

    def publish_status(self, c: int, status: int, ts: int) -> int:
        """Frame an MdStatus; return its sequence number."""
        seq = int(self.figures[c, F_SEQ]) + 1
        self.figures[c, F_SEQ] = seq
        self.figures[c, F_STATUS] = int(status)
        _put_status(c, int(status), seq, ts, self.rings)
        return seq

    def publish_depths(self, book, ts: int) -> None:
        """Publish the depth of every channel flagged changed (see ``publish_depth``)."""
        if getattr(book, "name", "") == "numba":  # the fast book: one compiled pass
            publish_fast_depths(book.levels, book.books, self.changed, ts, self.figures,
                                self.depths, self.rings, self.levels)
            return
        for c in np.flatnonzero(self.changed).tolist():
            self.publish_book_depth(book, c, ts)
        self.changed[:] = 0

    def publish_book_depth(self, book, c: int, ts: int) -> None:
        """Compare channel ``c``'s top five levels in ``book`` with the last published and
        frame an MdDepth if they changed."""
        instrument, segment = divmod(c, 2)
        levels = self.levels
        counts = []
        for side, base in ((1, 0), (2, DEPTH_LEVELS)):
            top = book.depth(instrument, segment, side, DEPTH_LEVELS)
            for k, level in enumerate(top):
                levels[base + k] = level
            counts.append(len(top))
        publish_depth(c, ts, levels, counts[0], counts[1], self.figures, self.depths,
                      self.rings)

    # -------------------------------------------------------------- reading

    def frames(self, c: int, from_seq: int, to_seq: int, max_bytes: int | None = None):
        """Frames ``from_seq`` .. ``to_seq`` of channel ``c`` as one bytes object; None if
        any of them is no longer kept (or never was), or if they would exceed ``max_bytes``
        (checked before anything is copied)."""
        seq = int(self.figures[c, F_SEQ])
        first = max(int(self.kept_from[c]), seq - self.ring + 1)
        if not first <= from_seq <= to_seq <= seq:
            return None
        size = _frames_size(self.rings, c, from_seq, to_seq)
        if max_bytes is not None and size > max_bytes:
            return None
        out = np.empty(size, np.uint8)
        _copy_frames(self.rings, c, from_seq, to_seq, out)
        return out.tobytes()

    def depth_lists(self, c: int) -> tuple[list, list]:
        nb, na = int(self.figures[c, F_DEPTH_BIDS]), int(self.figures[c, F_DEPTH_ASKS])
        d = self.depths[c].tolist()
        return [tuple(r) for r in d[:nb]], [tuple(r) for r in d[DEPTH_LEVELS:DEPTH_LEVELS + na]]

    def orders(self, book, instrument: int, limit: int = P.MAX_LISTED_ORDERS) -> P.MdOrders:
        """The LISTED book's orders in the best five levels of each side, as ``MdOrders``
        (public order numbers, prices, open quantities; as of the LISTED channel's last
        sequence number). The fast book is read by compiled code."""
        c = instrument * 2
        sides, complete = [], True
        for side in (1, 2):
            if getattr(book, "name", "") == "numba":
                out = np.empty((limit, 3), np.int64)
                n = int(top_orders(book.levels, book.books, book.slots, c, side,
                                    DEPTH_LEVELS, out))
                rows = [tuple(r) for r in out[:min(n, limit)].tolist()]
            else:  # the reference book (tests)
                found = book.resting_in_levels(instrument, Segment.LISTED, side, DEPTH_LEVELS)
                n = len(found)
                rows = [(ref, price, open_) for ref, price, open_, _ in found[:limit]]
            complete = complete and n <= limit
            sides.append(rows)
        return P.MdOrders(self.instruments[instrument], instrument, int(self.figures[c, F_SEQ]),
                          sides[0], sides[1], complete)

    def snapshot(self, c: int, prior_close: int) -> P.MdSnapshot:
        f = self.figures[c].tolist()
        bids, asks = self.depth_lists(c)
        return P.MdSnapshot(self.instruments[c // 2], c % 2, f[F_SEQ], Status(f[F_STATUS]),
                            bids, asks, prior_close, None if f[F_LAST] == NULL_PRICE
                            else f[F_LAST], f[F_VOLUME], f[F_TURNOVER], c // 2)

    # -------------------------------------------------------------- snapshots of state

    def __getstate__(self):
        # numbers and depth; the frames are not state (a replay older than a restart gets a
        # fresh snapshot)
        return {"instruments": self.instruments, "ring": self.ring, "figures": self.figures,
                "depths": self.depths}

    def __setstate__(self, state):
        self.__init__(state["instruments"], state["ring"])
        figures = state["figures"]  # an older snapshot may lack the later columns
        self.figures[:, :figures.shape[1]] = figures
        self.depths[:] = state["depths"]
        self.kept_from = self.figures[:, F_SEQ] + 1

    def resize_ring(self, ring: int) -> None:
        """Keep ``ring`` frames per channel from now on (frames kept so far are dropped:
        a server sets this before it serves anyone)."""
        if ring != self.ring:
            state = self.__getstate__()
            state["ring"] = ring
            self.__setstate__(state)

