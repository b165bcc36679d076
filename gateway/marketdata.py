"""Market data: sequenced channels, one per instrument and segment.

Every message a channel publishes carries the channel's next sequence number (1, 2, ...):
trades, the top five levels of each side after a change (``MdDepth``; its first level is the
best bid/offer), status changes and the day summary. Messages are produced only from the
engine's events and state while a journal record is applied, so a recovered exchange
reproduces the same numbers. Each channel keeps its last ``ring`` frames for replays; a
subscriber whose gap is older than that gets a fresh snapshot instead.

>>> md = MarketData(["CEA"], ring=4)
>>> ch = md.channel(0, 0)
>>> ch.publish(lambda seq: MdStatus("CEA", 0, seq, 0, Status.OPEN)), ch.seq
(1, 1)
>>> [f[-2:] for f in ch.replay(1, 1)], ch.replay(0, 1), ch.replay(2, 2)
([b'\\x00\\x01'], None, None)
"""

from __future__ import annotations

from collections import deque

from engine.codes import NO_TIME, Segment
from engine.rules import AM_OPEN_US, DAY_CLOSE_US, DAY_US, in_session

from .protocol import MdStatus, Status, encode  # noqa: F401 (MdStatus: the doctest)

#: Frames a channel keeps for replay requests.
RING = 65_536
DEPTH_LEVELS = 5


class Channel:
    """One instrument's segment: its sequence number, status, last depth and recent frames."""

    __slots__ = ("instrument", "segment", "seq", "status", "depth", "ring", "last_price",
                 "volume", "turnover")

    def __init__(self, instrument: str, segment: int, ring: int):
        self.instrument = instrument
        self.segment = segment
        self.seq = 0
        self.status = Status.CLOSED
        self.depth = ([], [])  # (bids, asks) as last published
        self.ring: deque[bytes] = deque(maxlen=ring)
        self.last_price = None  # the day's last trade on this channel (None before one)
        self.volume = self.turnover = 0  # the day's trades on this channel so far

    def publish(self, make) -> int:
        """Number and frame the message ``make(seq)``; return its sequence number."""
        self.seq += 1
        self.ring.append(encode(make(self.seq)))
        return self.seq

    def replay(self, from_seq: int, to_seq: int) -> list[bytes] | None:
        """Frames ``from_seq`` .. ``to_seq``, or None if any of them is no longer kept."""
        first = self.seq - len(self.ring) + 1
        if not first <= from_seq <= to_seq <= self.seq:
            return None
        start = from_seq - first
        return [self.ring[i] for i in range(start, start + to_seq - from_seq + 1)]


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
    """The channels of every instrument, indexed ``instrument * 2 + segment``."""

    def __init__(self, instruments: list[str], ring: int = RING):
        self.channels = [Channel(name, seg, ring) for name in instruments
                         for seg in (Segment.LISTED, Segment.BLOCK)]

    def channel(self, instrument: int, segment: int) -> Channel:
        return self.channels[instrument * 2 + segment]

    def __getstate__(self):
        # snapshots keep numbers and depth; the frames are rebuilt by replaying the journal
        return [(c.instrument, c.segment, c.seq, c.status, c.depth, c.ring.maxlen,
                 c.last_price, c.volume, c.turnover) for c in self.channels]

    def __setstate__(self, state):
        self.channels = []
        for instrument, segment, seq, status, depth, ring, last, volume, turnover in state:
            c = Channel(instrument, segment, ring)
            c.seq, c.status, c.depth = seq, status, depth
            c.last_price, c.volume, c.turnover = last, volume, turnover
            self.channels.append(c)
