"""What the live screen shows, read from the market-data stage between turns.

``MarketView`` never runs inside a turn and never touches the matching path: every
``POLL_S`` the web server's task reads what the market-data stage already holds (each
channel's figures and top five levels, ``gateway.marketdata.MarketData``) and the frames the
stage put into its rings since the last read (trades for the tape and the chart, day
summaries). The event loop is the one writer, so a read between turns sees one consistent
state. A reader that falls more than a ring behind (over 65,536 frames of one channel in one
poll) misses trades on its tape and chart, and says so (``missed``); the day's figures (last,
open, high, low, volume, turnover) are the stage's own and exact whatever the pace.

Prices and money are integer fen, quantities integer tonnes, times exchange µs.
"""

from __future__ import annotations

import collections

import numpy as np

from engine.codes import Segment
from engine.rules import DAY_US, band_limits, closing_price, vwap

from .. import protocol as P
from ..marketdata import (F_HIGH, F_LAST, F_LOW, F_OPEN, F_SEQ, F_STATUS, F_TURNOVER, F_VOLUME,
                          SLOT)

#: Seconds between two reads of the market-data stage (and pushes to the browsers).
POLL_S = 0.2
#: Trades the tape keeps per channel.
TAPE = 50
#: The chart's bucket: one point per second of exchange time with trades.
BUCKET_US = 1_000_000
#: Points the chart keeps per channel (a trading day has 14,400 seconds of sessions).
CHART_POINTS = 20_000


def _slot_dtype(frame: np.dtype) -> np.dtype:
    """``frame``'s fields laid over a whole ring slot: a ring reads as an array of them."""
    names = list(frame.names)
    return np.dtype({"names": names, "formats": [frame.fields[n][0] for n in names],
                     "offsets": [frame.fields[n][1] for n in names], "itemsize": SLOT})


_TRADE_SLOT = _slot_dtype(P.MD_TRADE)
_SUMMARY_SLOT = _slot_dtype(P.MD_DAY_SUMMARY)
_T_TRADE, _T_SUMMARY = int(P.MsgType.MD_TRADE), int(P.MsgType.MD_DAY_SUMMARY)


class Channel:
    """One instrument's segment as the screen keeps it: tape, chart points, last summary."""

    __slots__ = ("c", "instrument", "segment", "read", "tape", "chart", "summary", "missed",
                 "day")

    def __init__(self, c: int, instrument: str, read: int):
        self.c = c
        self.instrument = instrument
        self.segment = Segment(c % 2).name
        self.read = read  # the last frame read
        self.tape: collections.deque = collections.deque(maxlen=TAPE)
        # [bucket start µs, last, high, low, volume, turnover]: a point per second with trades
        self.chart: collections.deque = collections.deque(maxlen=CHART_POINTS)
        self.summary = None  # the last day summary seen: dict
        self.missed = 0  # frames the reader fell behind (no longer in the ring)
        self.day = -1  # the exchange day the tape and chart show


class MarketView:
    """The screen's state of every channel, brought up to date by ``poll``.

    >>> from gateway.exchange import Exchange, Genesis
    >>> ex = Exchange(Genesis([("CEA", 6000)], 0, 0, True, "OPS"), impl="reference")
    >>> view = MarketView(ex)
    >>> state = view.state(0)
    >>> state["instrument"], state["segment"], state["status"], state["band"]
    ('CEA', 'LISTED', 'CLOSED', [5400, 6600])
    >>> view.poll()  # nothing new
    []
    """

    def __init__(self, exchange):
        self.exchange = exchange
        md = exchange.md
        # frames published before the server started are not in the rings: start from now
        self.channels = [Channel(c, md.instruments[c // 2], md.seq(c))
                         for c in range(md.channels)]
        self._views(md)

    def _views(self, md) -> None:
        """The rings read as arrays of trade and of day-summary slots."""
        self._rings = md.rings
        self._trades = [md.rings[c].view(_TRADE_SLOT)[:, 0] for c in range(md.channels)]
        self._summaries = [md.rings[c].view(_SUMMARY_SLOT)[:, 0] for c in range(md.channels)]

    # -------------------------------------------------------------- reading the stage

    def poll(self) -> list[dict]:
        """Read what the stage published since the last poll; return the update of every
        channel that changed: its state, with the new trades and chart points."""
        md = self.exchange.md
        if md.rings is not self._rings:
            # the rings were replaced (resize_ring): read the new ones from where this
            # reader was; the frames they no longer hold count as missed (``_read``)
            self._views(md)
        updates = []
        for ch in self.channels:
            seq = md.seq(ch.c)
            if seq <= ch.read:
                continue
            trades, points = self._read(ch, seq)
            update = self.state(ch.c)
            update["trades"] = trades
            update["points"] = points
            updates.append(update)
        return updates

    def _read(self, ch: Channel, seq: int) -> tuple[list, list]:
        """Frames ``ch.read + 1 .. seq`` of the channel: new trades (newest last, at most a
        tape's worth) and the chart points they changed."""
        md = self.exchange.md
        first = max(ch.read + 1, seq - md.ring + 1, int(md.kept_from[ch.c]))
        ch.missed += first - (ch.read + 1)
        ch.read = seq
        if first > seq:
            return [], []
        idx = np.arange(first, seq + 1) % md.ring
        view = self._trades[ch.c]
        kinds = view["type"][idx]  # one byte per frame, not whole slots
        for s in self._summaries[ch.c][idx[kinds == _T_SUMMARY]].tolist():
            # (length, type, instrument, segment, reserved, seq, ts, date, prior, close, ...)
            ch.summary = {"date": _iso(s[7]), "prior_close": s[8], "close": s[9],
                          "volume": s[10], "turnover": s[11]}
        at = idx[kinds == _T_TRADE]
        if not at.shape[0]:
            return [], []
        ts = view["ts_us"][at]
        day = int(ts[-1]) // DAY_US
        if day != ch.day:  # a new trading day: a new tape and a new chart
            ch.tape.clear()
            ch.chart.clear()
            ch.day = day
            today = ts // DAY_US == day
            at, ts = at[today], ts[today]
        price, qty = view["price"][at], view["qty"][at].astype(np.int64)
        tail = at[-TAPE:]
        new = [{"ts": t, "id": i, "price": p, "qty": q, "aggressor": a}
               for t, i, p, q, a in zip(ts[-TAPE:].tolist(), view["trade_id"][tail].tolist(),
                                        price[-TAPE:].tolist(), qty[-TAPE:].tolist(),
                                        view["aggressor"][tail].tolist())]
        ch.tape.extend(new)
        return new, self._chart(ch, ts, price, qty)

    def _chart(self, ch: Channel, ts: np.ndarray, price: np.ndarray, qty: np.ndarray) -> list:
        """Fold trades (times, prices, quantities) into the per-second points; the points
        touched, oldest first."""
        bucket = ts // BUCKET_US * BUCKET_US
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        ends = np.r_[starts[1:], bucket.shape[0]]
        highs = np.maximum.reduceat(price, starts)
        lows = np.minimum.reduceat(price, starts)
        volumes = np.add.reduceat(qty, starts)
        turnovers = np.add.reduceat(price * qty, starts)
        touched = []
        chart = ch.chart
        for b, last, hi, lo, vol, value in zip(
                bucket[starts].tolist(), price[ends - 1].tolist(), highs.tolist(),
                lows.tolist(), volumes.tolist(), turnovers.tolist()):
            if chart and chart[-1][0] == b:  # the second the last poll ended in
                p = chart[-1]
                p[1:] = [last, max(p[2], hi), min(p[3], lo), p[4] + vol, p[5] + value]
            else:
                chart.append([b, last, hi, lo, vol, value])
            touched.append(list(chart[-1]))
        return touched

    # -------------------------------------------------------------- what the screen shows

    def state(self, c: int) -> dict:
        """Channel ``c`` now: status, top five levels each side ([price, qty, orders]), the
        day's figures, the band limits around the prior close and, for the listed segment,
        the close in the making (the VWAP of the day's listed trades so far)."""
        ex = self.exchange
        md = ex.md
        f = md.figures[c].tolist()
        instrument = c // 2
        prior = ex.prior_close(instrument)
        null = P.NULL_PRICE
        bids, asks = md.depth_lists(c)
        out = {
            "c": c, "instrument": md.instruments[instrument], "segment": Segment(c % 2).name,
            "seq": f[F_SEQ], "status": P.Status(f[F_STATUS]).name,
            "bids": [list(b) for b in bids], "asks": [list(a) for a in asks],
            "last": None if f[F_LAST] == null else f[F_LAST],
            "open": None if f[F_OPEN] == null else f[F_OPEN],
            "high": None if f[F_HIGH] == null else f[F_HIGH],
            "low": None if f[F_LOW] == null else f[F_LOW],
            "volume": f[F_VOLUME], "turnover": f[F_TURNOVER],
            "vwap": vwap(f[F_TURNOVER], f[F_VOLUME]) if f[F_VOLUME] else None,
            "prior_close": prior,
            "band": list(band_limits(prior, Segment(c % 2))),
            "bands": {"listed": list(band_limits(prior, Segment.LISTED)),
                      "block": list(band_limits(prior, Segment.BLOCK))},
            "summary": self.channels[c].summary,
            "missed": self.channels[c].missed,
        }
        if c % 2 == Segment.LISTED:
            out["close_so_far"] = closing_price(f[F_TURNOVER], f[F_VOLUME], prior)
        return out

    def full(self, c: int) -> dict:
        """Channel ``c``'s state with its whole tape and chart (a browser that just came)."""
        ch = self.channels[c]
        out = self.state(c)
        out["trades"] = list(ch.tape)
        out["points"] = [list(p) for p in ch.chart]
        return out


def _iso(date: int) -> str:
    """YYYYMMDD -> 'YYYY-MM-DD'."""
    return f"{date // 10000:04d}-{date // 100 % 100:02d}-{date % 100:02d}"
