"""Differential tests: the Numba book against the reference book, event row for event row.

Random command streams go through ``make_book("reference", ...)`` and ``make_book("numba",
...)`` (the latter with tiny capacities, so its grow-and-resume paths run all the time) and
must give identical int64 event arrays, fed as one batch or in random-size chunks, and leave
identical states (``state_hash``, every ``order_state``, best prices, depth, bands, day
figures, counters).

Two generators build the raw ``engine.batch.COMMAND_DTYPE`` arrays directly:

- ``make_stream``: seeded (``random.Random(seed)``), a few thousand commands per seed;
- ``command_streams``: a Hypothesis strategy for shorter streams built the same way, whose
  shrunk falsifying example is a readable list of ``Cmd`` rows.

Both reach every rule: a handful of accounts (self-trade prevention fires often), prices
clustered within a few ticks of the prior close plus band edges and out-of-band prices,
LISTED and BLOCK quantities (segment edges 99,999 / 100,000 included), NEW LIMIT DAY / IOC /
FOK and MARKET IOC, CANCEL and AMEND of live, dead and never-entered ids from the owner and
from other accounts, TICK, unknown actions, edge-level checks (MALFORMED, INVALID_QTY,
INVALID_PRICE), duplicate and missing ids, and a clock that crosses lunch, 15:00 exactly,
weekends and holidays of the 2024 XSHG calendar, and now and then goes backwards or does
not parse.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import batch as B
from engine.batch import COMMAND_DTYPE, EVENT_COLUMNS, empty_commands
from engine.book import make_book, state_hash
from engine.codes import (
    NO_PRICE, NO_REF, NO_TIME, Action, EventKind, OrderType, Reason, Segment, Side, Stp,
    TimeInForce,
)
from engine.rules import DAY_US, band_limits
from engine.tradingdays import TradingCalendar, format_time, parse_time

#: Fast book capacities small enough that slots, order handles and events all grow often.
TINY = dict(slot_capacity=4, order_capacity=8, event_capacity=64)

# Start times: each sits a few trading days before a holiday of the 2024 XSHG calendar.
STARTS = (
    "2024-09-26T09:25:00",  # Thu; weekend 28-29, National Day 10-01..10-07
    "2024-02-07T09:29:59.999999",  # Wed; Spring Festival 02-09..02-16
    "2024-04-29T11:29:00",  # Mon; Labour Day 05-01..05-03
    "2024-06-06T14:58:00",  # Thu; Dragon Boat 06-10
)

_H, _M = 3_600_000_000, 60_000_000
#: Times of day the clock jumps to: session edges (09:30, 11:30, 13:00, 15:00 exactly and a
#: microsecond before), lunch, before the open, after the close, midnight.
MOMENTS = (
    0, 9 * _H, 9 * _H + 29 * _M, 9 * _H + 30 * _M, 9 * _H + 30 * _M + 1, 10 * _H,
    11 * _H + 30 * _M - 1, 11 * _H + 30 * _M, 12 * _H, 13 * _H - 1, 13 * _H, 13 * _H + 1,
    14 * _H, 15 * _H - 1, 15 * _H, 15 * _H + 1, 16 * _H,
)


# ---------------------------------------------------------------------------- seeded streams

def _in_session(ts: int) -> bool:
    """Inside LISTED hours of a trading day (where the generator lingers)."""
    if not TradingCalendar.xshg().is_trading_day(ts // DAY_US):
        return False
    tod = ts % DAY_US
    return 9 * _H + 30 * _M <= tod < 11 * _H + 30 * _M or 13 * _H <= tod < 15 * _H


def _price(rnd: random.Random, prior: int, spread: int = 4) -> int:
    r = rnd.random()
    if r < 0.80:
        return prior + rnd.randint(-spread, spread)
    if r < 0.86:  # exactly on, or one tick outside, a band edge of the first day
        seg = rnd.choice((Segment.LISTED, Segment.BLOCK))
        edge = band_limits(prior, seg)[rnd.randint(0, 1)]
        return edge + rnd.randint(-1, 1)
    if r < 0.92:  # usually outside every band
        return max(1, int(prior * rnd.uniform(0.5, 1.5)))
    if r < 0.96:  # inside the BLOCK band, often outside the LISTED one
        return prior + rnd.randint(-prior // 4, prior // 4)
    return prior + rnd.randint(-15, 15)


def _qty(rnd: random.Random) -> int:
    r = rnd.random()
    if r < 0.80:
        return rnd.randint(1, 300)
    if r < 0.87:
        return rnd.randint(100_000, 250_000)  # BLOCK
    if r < 0.90:
        return rnd.choice((99_999, 100_000, 100_001))  # the segment edge
    if r < 0.905:
        return 100_000_000  # the largest order
    return rnd.randint(300, 5_000)


def make_stream(seed: int, n: int, prior_closes=(6000,), accounts: int = 4,
                start: str | None = None, spread: int = 4, takes: float = 0.0) -> np.ndarray:
    """``n`` raw commands, deterministic in ``seed``; most limit prices within ``spread``
    ticks of the first prior close. ``takes``: the share of rows that are TAKEs (spec §3a;
    0 draws nothing for them, so the streams without are what they always were)."""
    rnd = random.Random(seed)
    n_instruments = len(prior_closes)
    cmds = empty_commands(n)
    clock = parse_time(start or STARTS[seed % len(STARTS)])
    next_id = 0
    news: list[tuple] = []  # (order handle, account, price, qty, LIMIT DAY?) per NEW
    for i in range(n):
        row = cmds[i]
        # ---- time: small steps, jumps to session edges and later days, backwards, unparsable
        r = rnd.random()
        if _in_session(clock):
            if r < 0.0025:  # anywhere: lunch, 15:00 exactly, the evening, a later day
                day = clock // DAY_US + (rnd.randint(1, 4) if rnd.random() < 0.25 else 0)
                clock = max(clock, day * DAY_US + rnd.choice(MOMENTS))
            elif r < 0.1:
                pass  # the same microsecond as the previous row
            else:
                clock += rnd.randint(1, 300_000)
        elif r < 0.3:  # out of session: on to the next session start (or an edge near it)
            day, tod = divmod(clock, DAY_US)
            if tod >= 15 * _H or not TradingCalendar.xshg().is_trading_day(day):
                day += 1 if rnd.random() < 0.8 else rnd.randint(2, 4)
                tod = -1
            nxt = [m for m in (9 * _H + 30 * _M, 13 * _H) if m > tod]
            moment = nxt[0] if nxt else 9 * _H + 30 * _M
            if not nxt:
                day += 1
            jitter = rnd.choice((0, 0, 1, -1, rnd.randint(1, _M)))  # on, after, just before
            clock = max(clock, day * DAY_US + moment + jitter)
        else:
            clock += rnd.randint(1, 20 * _M)
        ts = clock
        r = rnd.random()
        if r < 0.012:
            ts = clock - rnd.randint(1, 30 * _M)  # earlier than the clock: MALFORMED
        elif r < 0.016:
            ts = NO_TIME
        row["ts"] = ts
        # ---- who and where
        row["account"] = rnd.randrange(accounts)
        instrument = rnd.randrange(n_instruments)
        row["instrument"] = instrument
        prior = prior_closes[instrument]
        a = rnd.random()
        if takes and news and rnd.random() < takes:
            _take_row(rnd, row, news, next_id, accounts, n_instruments)
            if row["order"] == next_id:
                next_id += 1
        elif a < 0.58 or not news:
            row["action"] = Action.NEW
            r = rnd.random()
            if news and r < 0.03:
                row["order"] = rnd.choice(news)[0]  # an id some earlier NEW used
            elif r < 0.035:
                row["order"] = next_id + rnd.randint(0, 2)  # may collide with a later NEW
            else:
                row["order"] = next_id
                next_id += 1
            row["side"] = rnd.choice((Side.BUY, Side.SELL))
            t = rnd.random()
            if t < 0.10:
                row["type"], row["tif"] = OrderType.MARKET, TimeInForce.IOC
            else:
                row["type"] = OrderType.LIMIT
                row["tif"] = (TimeInForce.DAY if t < 0.72 else
                              TimeInForce.IOC if t < 0.86 else TimeInForce.FOK)
            row["stp"] = rnd.choice((Stp.CANCEL_NEWEST, Stp.CANCEL_OLDEST, Stp.CANCEL_BOTH))
            row["qty"] = _qty(rnd)
            row["price"] = NO_PRICE if row["type"] == OrderType.MARKET else _price(rnd, prior,
                                                                                   spread)
            news.append((int(row["order"]), int(row["account"]), int(row["price"]),
                         int(row["qty"]), row["tif"] == TimeInForce.DAY
                         and row["type"] == OrderType.LIMIT, int(row["side"])))
            r = rnd.random()
            if r < 0.01:  # MARKET with a tif other than IOC: the edge says MALFORMED
                row["type"], row["price"] = OrderType.MARKET, NO_PRICE
                row["tif"] = rnd.choice((TimeInForce.DAY, TimeInForce.FOK))
                row["check"] = Reason.MALFORMED
            elif r < 0.015:  # missing order id
                row["order"] = NO_REF
                row["check"] = Reason.MALFORMED if rnd.random() < 0.5 else Reason.NONE
            elif r < 0.02:  # missing account
                row["account"] = NO_REF
                row["check"] = Reason.MALFORMED if rnd.random() < 0.5 else Reason.NONE
            elif r < 0.023:  # an instrument the book does not have (the book's own check)
                row["instrument"] = n_instruments
        elif a < 0.76:
            row["action"] = Action.CANCEL
            _target(rnd, row, news, next_id, accounts)
        elif a < 0.95:
            row["action"] = Action.AMEND
            ref, owner, price, qty, *_ = _target(rnd, row, news, next_id, accounts)
            r = rnd.random()
            if r < 0.45 and price != NO_PRICE:
                row["price"] = price  # same price: in place if not larger
                row["qty"] = rnd.choice((qty, max(1, qty - rnd.randint(1, 50)), qty + 1,
                                         rnd.randint(1, 60)))
            else:
                row["price"] = _price(rnd, prior, spread)
                row["qty"] = _qty(rnd) if rnd.random() < 0.5 else rnd.randint(1, 60)
        elif a < 0.985:
            row["action"] = Action.TICK
            if rnd.random() < 0.4:  # a timer tick: on to a session edge, or a later day
                days = 0 if rnd.random() < 0.85 else rnd.randint(1, 2)
                clock = max(clock, (clock // DAY_US + days) * DAY_US + rnd.choice(MOMENTS))
                row["ts"] = clock
        else:
            row["action"] = Action.UNKNOWN
            row["check"] = Reason.MALFORMED if rnd.random() < 0.7 else Reason.NONE
        # ---- edge-level verdicts on a row's own text
        if row["action"] in (Action.NEW, Action.AMEND) and row["check"] == 0 \
                and rnd.random() < 0.03:
            check = rnd.choice((Reason.MALFORMED, Reason.INVALID_QTY, Reason.INVALID_PRICE))
            row["check"] = check
            if check == Reason.INVALID_QTY:
                row["qty"], row["price"] = 0, NO_PRICE
            elif check == Reason.INVALID_PRICE:
                row["price"] = NO_PRICE
        elif row["action"] == Action.CANCEL and rnd.random() < 0.01:
            row["check"] = Reason.MALFORMED
    return cmds


def _take_row(rnd: random.Random, row, news, next_id: int, accounts: int,
              n_instruments: int) -> None:
    """A TAKE (spec §3a) at a recent order (often live, often within the best five), an old
    one or one never entered; from another account mostly, now and then its owner; a
    quantity up to and past the target's open; edge verdicts and wrong instruments now and
    then."""
    row["action"] = Action.TAKE
    row["type"], row["tif"], row["stp"] = OrderType.TAKE, TimeInForce.IOC, Stp.CANCEL_NEWEST
    r = rnd.random()
    row["order"] = rnd.choice(news)[0] if r < 0.03 else next_id  # a used id: DUPLICATE
    r = rnd.random()
    recent = [t for t in news[-12:] if t[4]]
    if r < 0.85 and recent:
        target = rnd.choice(recent)
    elif r < 0.95:
        target = rnd.choice(news)
    else:
        target = (next_id + rnd.randint(0, 40) if rnd.random() < 0.5 else NO_REF, 0,
                  NO_PRICE, 10, False, Side.BUY)
    row[B.TAKE_TARGET] = target[0]
    row["account"] = target[1] if rnd.random() < 0.08 else rnd.randrange(accounts)
    r = rnd.random()
    # mostly the opposite side of the target
    row["side"] = (Side.SELL if target[5] == Side.BUY else Side.BUY) if rnd.random() < 0.85 \
        else target[5]
    row["qty"] = (rnd.randint(1, max(1, target[3])) if r < 0.8 else
                  target[3] + rnd.randint(0, 3) if r < 0.95 else rnd.randint(1, 300))
    if rnd.random() < 0.05:
        row["instrument"] = rnd.randrange(n_instruments + 1)  # another, or none the book has
    r = rnd.random()
    if r < 0.02:
        row["check"] = Reason.MALFORMED
    elif r < 0.035:
        row["check"], row["qty"] = Reason.INVALID_QTY, 0
    elif r < 0.045:
        row["check"] = Reason.INVALID_PRICE
    elif r < 0.055:
        row["account"] = NO_REF  # unchecked at the edge: the book says MALFORMED


def _target(rnd: random.Random, row, news, next_id: int, accounts: int):
    """Point a CANCEL/AMEND at a recent (likely live) order, an old one, or an unknown id,
    mostly from its owner."""
    r = rnd.random()
    recent_day = [t for t in news[-16:] if t[4]]
    if r < 0.6 and recent_day:
        target = rnd.choice(recent_day)  # a recent LIMIT DAY order: often still resting
    elif r < 0.93:
        target = rnd.choice(news)
    else:
        target = (next_id + rnd.randint(0, 40), 0, NO_PRICE, 10, False, 0)  # never entered
    row["order"] = target[0] if rnd.random() > 0.01 else NO_REF  # no id, unchecked
    if rnd.random() < 0.8:
        row["account"] = target[1]
    elif rnd.random() < 0.05:
        row["account"] = NO_REF
    if rnd.random() < 0.5:
        row["instrument"] = 0  # CANCEL/AMEND do not use it; rejects echo it
    return target


# ---------------------------------------------------------------------------- comparison

def describe(row) -> str:
    """An event row with its column names (and the names of its codes)."""
    parts = []
    for name, value in zip(EVENT_COLUMNS, row):
        v = int(value)
        if name == "kind" and v in EventKind._value2member_map_:
            parts.append(f"kind={EventKind(v).name}")
        elif name == "reason" and v and v in Reason._value2member_map_:
            parts.append(f"reason={Reason(v).name}")
        elif name == "ts" and v > 0:
            parts.append(f"ts={format_time(v)}")
        else:
            parts.append(f"{name}={v}")
    return ", ".join(parts)


def assert_same_events(expected: np.ndarray, got: np.ndarray, seed, what: str = "") -> None:
    """Identical event arrays, or a failure naming the seed, the first differing row and both
    rows decoded."""
    assert expected.dtype == np.int64 and got.dtype == np.int64
    assert expected.ndim == 2 and expected.shape[1] == B.EVENT_WIDTH
    assert got.ndim == 2 and got.shape[1] == B.EVENT_WIDTH
    if expected.shape == got.shape and np.array_equal(expected, got):
        return
    n = min(len(expected), len(got))
    diff = np.flatnonzero(np.any(expected[:n] != got[:n], axis=1))
    first = int(diff[0]) if len(diff) else n
    lines = [
        f"seed {seed!r}{' ' + what if what else ''}: event arrays differ; first differing "
        f"row {first} (reference {len(expected)} rows, numba {len(got)} rows)",
        f"  reference[{first}]: "
        + (describe(expected[first]) if first < len(expected) else "<no row>"),
        f"  numba[{first}]:     " + (describe(got[first]) if first < len(got) else "<no row>"),
    ]
    if first > 0:
        lines.append(f"  previous row (equal): {describe(expected[first - 1])}")
    pytest.fail("\n".join(lines), pytrace=False)


def assert_same_state(ref, fast, n_orders: int, n_instruments: int, seed) -> None:
    """Both books end in the same state, by every query of the Book interface."""
    for h in range(n_orders):
        assert ref.order_state(h) == fast.order_state(h), f"seed {seed}: order handle {h}"
    for i in range(n_instruments):
        for seg in Segment:
            where = f"seed {seed}: instrument {i} {seg.name}"
            assert ref.band(i, seg) == fast.band(i, seg), where
            assert ref.best_bid(i, seg) == fast.best_bid(i, seg), where
            assert ref.best_ask(i, seg) == fast.best_ask(i, seg), where
            for side in Side:
                assert ref.depth(i, seg, side) == fast.depth(i, seg, side), f"{where} {side}"
                assert ref.depth(i, seg, side, 50) == fast.depth(i, seg, side, 50), where
    assert list(ref.resting_orders()) == list(fast.resting_orders()), f"seed {seed}"
    assert ref.open_day() == fast.open_day(), f"seed {seed}"
    assert ref.globals() == fast.globals(), f"seed {seed}"
    assert state_hash(ref, n_orders) == state_hash(fast, n_orders), f"seed {seed}"


def n_handles(cmds: np.ndarray) -> int:
    """Order handles to compare: every handle the stream names, and a few beyond."""
    return max(int(cmds["order"].max(initial=-1)) + 1, 0) + 3


def run_chunked(book, cmds: np.ndarray, sizes) -> np.ndarray:
    """Feed ``cmds`` in chunks of the given sizes; return the events with CMD renumbered to
    the index in the whole stream."""
    parts, start = [], 0
    for size in sizes:
        if start >= len(cmds):
            break
        chunk = cmds[start:start + size]
        ev = book.submit_batch(chunk)
        if len(ev):
            assert ev[:, B.CMD].min() >= 0 and ev[:, B.CMD].max() < len(chunk)
        ev = ev.copy()
        ev[:, B.CMD] += start
        parts.append(ev)
        start += size
    assert start >= len(cmds)
    return np.concatenate(parts) if parts else np.zeros((0, B.EVENT_WIDTH), np.int64)


def random_sizes(rnd: random.Random, n: int, largest: int) -> list[int]:
    sizes, total = [], 0
    while total < n:
        sizes.append(rnd.randint(1, largest))
        total += sizes[-1]
    return sizes


@pytest.fixture(scope="module")
def calendar():
    return TradingCalendar.xshg()


# ---------------------------------------------------------------------------- seeded tests

SEEDED = [
    # (seed, commands, prior closes, accounts)
    (1, 4000, (6000,), 4),
    (2, 4000, (6000, 5800), 4),
    (3, 3000, (6000,), 2),
    (4, 3000, (6000, 5800), 3),
    (5, 3000, (4666,), 5),
    (6, 3000, (6000, 5800), 2),
    (7, 2500, (101,), 3),  # a tiny price: the band is a handful of ticks
    (8, 2500, (6000, 5800, 7311), 4),
] + [(seed, 2500, ((6000,), (6000, 5800))[seed % 2], 2 + seed % 4) for seed in range(20, 30)]


@pytest.mark.parametrize("seed,n,closes,accounts", SEEDED)
def test_seeded_stream_one_batch_and_chunked(seed, n, closes, accounts, calendar):
    cmds = make_stream(seed, n, closes, accounts)
    ref = make_book("reference", closes, calendar)
    fast = make_book("numba", closes, calendar, **TINY)
    ev_ref = ref.submit_batch(cmds)
    ev_fast = fast.submit_batch(cmds)
    assert_same_events(ev_ref, ev_fast, seed, "(one batch)")
    assert_same_state(ref, fast, n_handles(cmds), len(closes), seed)
    ref.check_invariants()
    fast.check_invariants()

    # the stream reaches what it is meant to reach
    kinds = set(ev_ref[:, B.KIND].tolist())
    # (negotiated block quotes are tests/engine/test_negotiation.py's streams)
    assert set(EventKind) - {EventKind.QUOTE, EventKind.QUOTE_ENDED} <= kinds, \
        f"seed {seed}: kinds seen {sorted(kinds)}"
    reasons = set(ev_ref[:, B.REASON].tolist())
    for reason in (Reason.MALFORMED, Reason.INVALID_QTY, Reason.INVALID_PRICE,
                   Reason.DUPLICATE_ORDER_ID, Reason.MARKET_CLOSED, Reason.UNKNOWN_ORDER,
                   Reason.PRICE_OUTSIDE_BAND, Reason.USER, Reason.IOC_REMAINDER,
                   Reason.SELF_TRADE, Reason.FOK_NOT_FILLABLE):
        assert reason in reasons, f"seed {seed}: no {reason.name}"
    trades = ev_ref[ev_ref[:, B.KIND] == EventKind.TRADE]
    assert {int(s) for s in trades[:, B.SEGMENT]} == {Segment.LISTED, Segment.BLOCK}
    assert len(set(ev_ref[ev_ref[:, B.KIND] == EventKind.DAY_CLOSED, B.ORDER].tolist())) >= 3

    # chunks of random sizes, both books: the same events as one batch, CMD renumbered
    rnd = random.Random(seed * 7919)
    sizes = random_sizes(rnd, n, 90)
    ref2 = make_book("reference", closes, calendar)
    fast2 = make_book("numba", closes, calendar, **TINY)
    chunked_ref = run_chunked(ref2, cmds, sizes)
    chunked_fast = run_chunked(fast2, cmds, sizes)
    assert_same_events(ev_ref, chunked_ref, seed, "(reference: one batch vs chunked)")
    assert_same_events(chunked_ref, chunked_fast, seed, "(chunked)")
    assert_same_state(ref2, fast2, n_handles(cmds), len(closes), seed)
    assert state_hash(ref2, n_handles(cmds)) == state_hash(ref, n_handles(cmds))


@pytest.mark.parametrize("seed", [11, 12])
def test_seeded_stream_one_command_per_batch(seed, calendar):
    """Batches of one command: every call starts and resumes at a command boundary."""
    closes = (6000, 5800)
    cmds = make_stream(seed, 1200, closes, 3)
    ref = make_book("reference", closes, calendar)
    fast = make_book("numba", closes, calendar, **TINY)
    whole = make_book("reference", closes, calendar).submit_batch(cmds)
    sizes = [1] * len(cmds)
    assert_same_events(whole, run_chunked(fast, cmds, sizes), seed, "(numba, batches of 1)")
    assert_same_events(whole, run_chunked(ref, cmds, sizes), seed, "(reference, batches of 1)")
    assert_same_state(ref, fast, n_handles(cmds), len(closes), seed)


@pytest.mark.parametrize("seed", [31, 32])
def test_deep_books(seed, calendar):
    """Limit prices spread over 15 ticks each way, so orders pile up on many levels: MARKET
    orders reach their five-level limit and the slot arrays grow many times."""
    closes = (6000, 5800)
    cmds = make_stream(seed, 3000, closes, 5, spread=15)
    ref = make_book("reference", closes, calendar)
    fast = make_book("numba", closes, calendar, **TINY)
    ev_ref = ref.submit_batch(cmds)
    assert_same_events(ev_ref, fast.submit_batch(cmds), seed, "(deep books)")
    assert_same_state(ref, fast, n_handles(cmds), len(closes), seed)
    fast.check_invariants()
    assert fast.slots.shape[0] >= 32  # grown from 4: at least 17 orders rested at once
    # sampled along the way (in chunks, which must not change anything): many levels deep
    ref2, deepest, parts = make_book("reference", closes, calendar), 0, []
    for start in range(0, len(cmds), 50):
        ev = ref2.submit_batch(cmds[start:start + 50])
        ev[:, B.CMD] += start
        parts.append(ev)
        deepest = max([deepest] + [len(ref2.depth(i, seg, side, 100)) for i in range(2)
                                   for seg in Segment for side in Side])
    assert deepest >= 8
    assert_same_events(ev_ref, np.concatenate(parts), seed, "(reference, chunks of 50)")


def test_calendar_grows_past_its_table():
    """A calendar of two listed days that trades Monday to Friday beyond them: the fast book
    extends its day table from inside a batch (NEED_CALENDAR) and resumes."""
    calendar = TradingCalendar.from_dates(["2024-03-04", "2024-03-05"], weekdays_beyond=True)
    cmds = make_stream(33, 2500, (6000,), 3, start="2024-03-04T09:30:00")
    days = cmds["ts"][cmds["ts"] > 0] // DAY_US
    assert days.max() > calendar.last_day + 7  # the stream runs well past the table
    ref = make_book("reference", [6000], calendar)
    fast = make_book("numba", [6000], calendar, **TINY)
    ev_ref = ref.submit_batch(cmds)
    assert_same_events(ev_ref, fast.submit_batch(cmds), 33, "(calendar beyond its table)")
    assert_same_state(ref, fast, n_handles(cmds), 1, 33)
    closed = ev_ref[ev_ref[:, B.KIND] == EventKind.DAY_CLOSED, B.ORDER]
    assert closed.max() > calendar.last_day
    assert all(calendar.is_trading_day(int(d)) for d in closed)
    # chunked too: the table grows between and inside calls
    fast2 = make_book("numba", [6000], calendar, **TINY)
    sizes = random_sizes(random.Random(33), len(cmds), 50)
    assert_same_events(ev_ref, run_chunked(fast2, cmds, sizes), 33, "(chunked)")


def _rising_market(days: int, prior: int, first_day: str = "2024-03-04"):
    """Each trading day two accounts trade 1 t at the top of the LISTED band and rest orders
    at both ends of the BLOCK band: the close climbs about 10 % a day, so every new day's band
    is wider than the last (the fast book must widen its price ladder)."""
    cal = TradingCalendar.xshg()
    rows, close = [], prior
    day = parse_time(first_day + "T00:00:00") // DAY_US
    ref = 0
    while days:
        if cal.is_trading_day(day):
            lo, hi = band_limits(close, Segment.LISTED)
            blo, bhi = band_limits(close, Segment.BLOCK)
            t = day * DAY_US + 13 * _H
            rows += [
                (t, 0, ref, Side.SELL, hi, 1), (t + 1, 1, ref + 1, Side.BUY, hi, 1),
                (t + 2, 0, ref + 2, Side.BUY, lo, 5), (t + 3, 1, ref + 3, Side.SELL, hi, 5),
                (t + 4, 2, ref + 4, Side.BUY, blo, 100_000),
                (t + 5, 3, ref + 5, Side.SELL, bhi, 100_000),
                (t + 6, 2, ref + 6, Side.BUY, bhi + 1, 100_000),  # outside: rejected
            ]
            ref += 7
            close = hi
            days -= 1
        day += 1
    cmds = empty_commands(len(rows))
    for k, (t, account, order, side, price, qty) in enumerate(rows):
        c = cmds[k]
        c["ts"], c["action"], c["account"], c["order"] = t, Action.NEW, account, order
        c["side"], c["price"], c["qty"] = side, price, qty
        c["type"], c["tif"], c["stp"] = OrderType.LIMIT, TimeInForce.DAY, Stp.CANCEL_NEWEST
    return cmds


@pytest.mark.parametrize("prior", [6000, 101])
def test_rising_market_widens_the_ladder(prior, calendar):
    cmds = _rising_market(8, prior)
    ref = make_book("reference", [prior], calendar)
    fast = make_book("numba", [prior], calendar, **TINY)
    width0 = fast.levels.shape[2]
    ev_ref = ref.submit_batch(cmds)
    assert_same_events(ev_ref, fast.submit_batch(cmds), prior, "(rising market)")
    assert_same_state(ref, fast, n_handles(cmds), 1, prior)
    assert fast.levels.shape[2] > width0
    closes = ev_ref[ev_ref[:, B.KIND] == EventKind.DAY_CLOSED, B.PRICE].tolist()
    assert len(closes) == 7 and closes == sorted(closes) and closes[-1] > prior * 19 // 10
    rejected = ev_ref[ev_ref[:, B.KIND] == EventKind.REJECTED]
    assert rejected[:, B.REASON].tolist() == [Reason.PRICE_OUTSIDE_BAND] * 8
    # and fed one command at a time
    fast2 = make_book("numba", [prior], calendar, **TINY)
    assert_same_events(ev_ref, run_chunked(fast2, cmds, [1] * len(cmds)), prior, "(1 by 1)")


def _outcome(book, cmds):
    """The events of a batch, or the exception it raised (type and message)."""
    try:
        return book.submit_batch(cmds)
    except Exception as e:  # the outcome is what is compared
        return e


def test_close_rising_past_the_largest_prior_close(calendar):
    """From the largest prior close a book accepts (MAX_PRIOR_CLOSE, 10,000.00 CNY/t), ten
    trading days of 1 t traded at the top of the LISTED band lift the close 10 % a day to
    25,937.43; the TICK that opens the eleventh day must give the same outcome in both books
    (identical events, or the same error from both). 21 commands."""
    from engine.rules import MAX_PRIOR_CLOSE

    prior = MAX_PRIOR_CLOSE
    trading = [d for d in range(parse_time("2024-03-04T00:00:00") // DAY_US, 19_900)
               if calendar.is_trading_day(d)]
    cmds = empty_commands(21)
    close = prior
    for k in range(10):
        top = band_limits(close, Segment.LISTED)[1]
        t = trading[k] * DAY_US + 10 * _H
        for j, (side, account) in enumerate(((Side.SELL, 0), (Side.BUY, 1))):
            c = cmds[2 * k + j]
            c["ts"], c["action"], c["account"], c["order"] = t + j, Action.NEW, account, 2 * k + j
            c["side"], c["price"], c["qty"] = side, top, 1
            c["type"], c["tif"], c["stp"] = OrderType.LIMIT, TimeInForce.DAY, Stp.CANCEL_NEWEST
        close = top
    cmds[20]["ts"], cmds[20]["action"] = trading[10] * DAY_US + 10 * _H, Action.TICK
    ref = _outcome(make_book("reference", [prior], calendar), cmds)
    fast = _outcome(make_book("numba", [prior], calendar), cmds)
    if isinstance(ref, np.ndarray) and isinstance(fast, np.ndarray):
        assert_same_events(ref, fast, "rising past MAX_PRIOR_CLOSE")
        return
    describe_outcome = (lambda o: f"{type(o).__name__}: {o}" if isinstance(o, Exception)
                        else f"{len(o)} event rows, closes "
                        f"{o[o[:, B.KIND] == EventKind.DAY_CLOSED, B.PRICE].tolist()}")
    if type(ref) is not type(fast) or str(ref) != str(fast):
        pytest.fail(f"the books disagree:\n  reference: {describe_outcome(ref)}\n  numba:     "
                    f"{describe_outcome(fast)}", pytrace=False)
    # day one closes at 11,000.00, past the limit: both stop before the first command of day
    # two, handing back what day one's two orders did
    from engine.errors import PriceLimitError
    assert isinstance(ref, PriceLimitError) and ref.processed == fast.processed == 2
    assert_same_events(ref.events, fast.events, "events before the price limit")
    assert (ref.events[:, B.KIND] == EventKind.TRADE).sum() == 1


def test_many_instruments(calendar):
    """Ten instruments: a command that closes one day and opens and closes the next writes
    two DAY_CLOSED rows per instrument on top of its expiries."""
    closes = tuple(1000 + 517 * k for k in range(10))
    cmds = make_stream(21, 2500, closes, 4)
    ref = make_book("reference", closes, calendar)
    fast = make_book("numba", closes, calendar, **TINY)
    assert_same_events(ref.submit_batch(cmds), fast.submit_batch(cmds), 21, "(10 instruments)")
    assert_same_state(ref, fast, n_handles(cmds), len(closes), 21)
    fast.check_invariants()


def _day_jump_case(n_instruments: int, last: str, capacity: int = 64):
    """Commands that fill a fast book's event buffer until exactly the room it keeps for one
    command's worst case (resting orders + instruments + 8 rows) is left, then one command
    that closes the open day and opens and closes the next (at 15:00 of the next trading day):
    2 x instruments DAY_CLOSED rows, plus a reject if it is a CANCEL."""
    pad = capacity - (n_instruments + 8)
    cmds = empty_commands(pad + 1)
    cmds["ts"][:pad] = parse_time("2024-03-04T10:00:00")  # opens 2024-03-04
    cmds["action"][:pad] = Action.UNKNOWN  # one REJECTED row each
    cmds["ts"][pad] = parse_time("2024-03-05T15:00:00")
    cmds["action"][pad] = Action[last]
    cmds["account"][pad] = 0
    return [6000] * n_instruments, cmds


@pytest.mark.parametrize("n_instruments,last", [(1, "TICK"), (2, "CANCEL"), (7, "CANCEL"),
                                                (8, "TICK")])
def test_day_jump_rows_fit_the_event_buffer(n_instruments, last, calendar):
    closes, cmds = _day_jump_case(n_instruments, last)
    ev_ref = make_book("reference", closes, calendar).submit_batch(cmds)
    fast = make_book("numba", closes, calendar, event_capacity=64)
    assert_same_events(ev_ref, fast.submit_batch(cmds), f"{n_instruments} x {last}")
    tail = ev_ref[len(cmds) - 1:, B.KIND].tolist()
    assert tail == [EventKind.DAY_CLOSED] * (2 * n_instruments) + (
        [EventKind.REJECTED] if last == "CANCEL" else [])
    fast.check_invariants()


_DAY_JUMP_CHILD = """
import json, sys
from engine.book import make_book
from engine.tradingdays import TradingCalendar
from tests.engine.test_differential import _day_jump_case
closes, cmds = _day_jump_case(int(sys.argv[1]), sys.argv[2])
cal = TradingCalendar.xshg()
print(json.dumps(make_book("reference", closes, cal).submit_batch(cmds).tolist()), flush=True)
print(json.dumps(make_book("numba", closes, cal, event_capacity=64).submit_batch(cmds).tolist()),
      flush=True)
"""


@pytest.mark.parametrize("n_instruments,last", [(8, "CANCEL"), (9, "TICK")])
def test_day_jump_rows_fit_the_event_buffer_many_instruments(n_instruments, last):
    """As above with 8+ instruments, where 2 x instruments + 1 rows exceed the room the fast
    book keeps (instruments + 8). Run in a child process: an overrun of the event buffer
    corrupts the heap and can abort the interpreter."""
    import json
    import sys
    from pathlib import Path

    from .. import procs

    root = Path(__file__).resolve().parents[2]
    proc = procs.run([sys.executable, "-c", _DAY_JUMP_CHILD, str(n_instruments), last],
                     cwd=root, capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert lines, f"child printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    ev_ref = np.array(json.loads(lines[0]), dtype=np.int64).reshape(-1, B.EVENT_WIDTH)
    if len(lines) < 2:
        pytest.fail(f"{n_instruments} instruments, {last} at 15:00 of the next day: the numba "
                    f"book crashed the process (exit {proc.returncode}, stderr "
                    f"{proc.stderr.strip()[-300:]!r}); the reference book wrote "
                    f"{len(ev_ref)} rows", pytrace=False)
    ev_fast = np.array(json.loads(lines[1]), dtype=np.int64).reshape(-1, B.EVENT_WIDTH)
    assert_same_events(ev_ref, ev_fast, f"{n_instruments} x {last}")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_empty_batch(calendar):
    for impl in ("reference", "numba"):
        book = make_book(impl, [6000], calendar, **({} if impl == "reference" else TINY))
        ev = book.submit_batch(empty_commands(0))
        assert ev.shape == (0, B.EVENT_WIDTH) and ev.dtype == np.int64
        assert book.globals() == (NO_TIME, 1, 0)
        assert book.open_day() is None


# ---------------------------------------------------------------------------- hypothesis

class Cmd(NamedTuple):
    """One raw command, readable in a falsifying example."""

    time: str  # ISO local time, or "NO_TIME"
    action: str
    account: int
    order: int
    side: str = "BUY"
    type: str = "LIMIT"
    tif: str = "DAY"
    stp: str = "CANCEL_NEWEST"
    price: int = NO_PRICE
    qty: int = 0
    instrument: int = 0
    check: str = "NONE"


def to_array(rows: list[Cmd]) -> np.ndarray:
    cmds = np.zeros(len(rows), dtype=COMMAND_DTYPE)
    for i, c in enumerate(rows):
        r = cmds[i]
        r["ts"] = NO_TIME if c.time == "NO_TIME" else parse_time(c.time)
        r["action"] = Action[c.action]
        r["account"], r["order"] = c.account, c.order
        r["side"], r["type"] = Side[c.side], OrderType[c.type]
        r["tif"], r["stp"] = TimeInForce[c.tif], Stp[c.stp]
        r["price"], r["qty"], r["instrument"] = c.price, c.qty, c.instrument
        r["check"] = Reason[c.check]
    return cmds


def _pick(draw, weighted):
    """Draw one of ``weighted`` [(weight, value)]; shrinks towards the first."""
    x = draw(st.integers(0, sum(w for w, _ in weighted) - 1))
    for w, value in weighted:
        if x < w:
            return value
        x -= w
    raise AssertionError("unreachable")


@st.composite
def command_streams(draw):
    """(prior closes, [Cmd], chunk sizes): short streams made like ``make_stream``'s,
    shrinkable to a minimal list of commands."""
    closes = _pick(draw, [(2, (6000,)), (1, (6000, 5800))])
    clock = parse_time(_pick(draw, [(3, "2024-03-04T10:00:00"), (2, "2024-03-04T13:30:00"),
                                    (1, "2024-09-27T14:59:00"), (1, "2024-02-08T11:29:59")]))
    n = draw(st.integers(1, 45))
    rows: list[Cmd] = []
    news: list[tuple[int, int, int, int]] = []  # (handle, account, price, qty)
    next_id = 0
    for _ in range(n):
        step = _pick(draw, [(60, "small"), (15, "same"), (4, "moment"), (1, "next_day"),
                            (4, "back"), (2, "no_time")])
        if step == "small":
            clock += draw(st.integers(1, 3_000_000))
        elif step in ("moment", "next_day"):
            day = clock // DAY_US + (draw(st.integers(1, 3)) if step == "next_day" else 0)
            clock = max(clock, day * DAY_US + draw(st.sampled_from(MOMENTS)))
        time = format_time(clock)
        if step == "back":
            time = format_time(clock - draw(st.integers(1, 3_600_000_000)))
        elif step == "no_time":
            time = "NO_TIME"
        account = draw(st.integers(0, 2))
        instrument = draw(st.integers(0, len(closes) - 1))
        prior = closes[instrument]
        action = _pick(draw, [(60, "NEW"), (12, "CANCEL"), (16, "AMEND"), (8, "TICK"),
                              (4, "UNKNOWN")])
        if action in ("CANCEL", "AMEND") and not news:
            action = "NEW"
        qty = _pick(draw, [(80, None), (12, "edge"), (1, 100_000_000)])
        if qty is None:
            qty = draw(st.integers(1, 60))
        elif qty == "edge":
            qty = draw(st.integers(99_998, 100_010))
        how = _pick(draw, [(75, "near"), (10, "edge"), (10, "wide"), (5, "any")])
        if how == "near":
            price = prior + draw(st.integers(-2, 2))
        elif how == "edge":
            price = draw(st.sampled_from(band_limits(prior, Segment.LISTED)
                                         + band_limits(prior, Segment.BLOCK))) \
                + draw(st.integers(-1, 1))
        elif how == "wide":
            price = prior + draw(st.integers(-30, 30))
        else:
            price = draw(st.integers(1, 2 * prior))
        check = _pick(draw, [(94, "NONE"), (2, "MALFORMED"), (2, "INVALID_QTY"),
                             (2, "INVALID_PRICE")])
        if action == "NEW":
            if news and _pick(draw, [(19, False), (1, True)]):
                order = draw(st.sampled_from(news))[0]  # duplicate id
            else:
                order, next_id = next_id, next_id + 1
            otype, tif = _pick(draw, [(5, ("LIMIT", "DAY")), (1, ("LIMIT", "IOC")),
                                      (1, ("LIMIT", "FOK")), (1, ("MARKET", "IOC"))])
            if otype == "MARKET":
                price = NO_PRICE
            stp = draw(st.sampled_from(["CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH"]))
            side = draw(st.sampled_from(["BUY", "SELL"]))
            news.append((order, account, price, qty))
            rows.append(Cmd(time, "NEW", account, order, side, otype, tif, stp, price, qty,
                            instrument, check))
        elif action in ("CANCEL", "AMEND"):
            if _pick(draw, [(9, False), (1, True)]):
                target = (next_id + 1, account, NO_PRICE, 1)  # never entered (yet)
            else:
                target = draw(st.sampled_from(news))
            owner = target[1] if _pick(draw, [(4, True), (1, False)]) else account
            if action == "CANCEL":
                rows.append(Cmd(time, "CANCEL", owner, target[0],
                                check="MALFORMED" if check == "MALFORMED" else "NONE"))
            else:
                if target[2] != NO_PRICE and draw(st.booleans()):
                    price = target[2]
                    qty = draw(st.sampled_from([target[3], max(1, target[3] - 1), target[3] + 1,
                                                qty]))
                rows.append(Cmd(time, "AMEND", owner, target[0], price=price, qty=qty,
                                check=check))
        else:
            rows.append(Cmd(time, action, account, NO_REF,
                            check="MALFORMED" if action == "UNKNOWN" else "NONE"))
    chunks = draw(st.lists(st.integers(1, 8), min_size=1, max_size=n))
    return closes, rows, chunks


@settings(max_examples=200,  # derandomized, or not (HYPOTHESIS_PROFILE): tests/conftest.py
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(command_streams())
def test_hypothesis_streams(calendar, example):
    closes, rows, chunks = example
    cmds = to_array(rows)
    ref = make_book("reference", closes, calendar)
    fast = make_book("numba", closes, calendar, **TINY)
    ev_ref = ref.submit_batch(cmds)
    assert_same_events(ev_ref, fast.submit_batch(cmds), "hypothesis", "(one batch)")
    assert_same_state(ref, fast, n_handles(cmds), len(closes), "hypothesis")
    fast.check_invariants()
    ref.check_invariants()
    sizes = chunks + [len(cmds)]  # the drawn sizes, then the rest in one
    fast2 = make_book("numba", closes, calendar, **TINY)
    assert_same_events(ev_ref, run_chunked(fast2, cmds, sizes), "hypothesis", "(chunked)")
    assert state_hash(fast2, n_handles(cmds)) == state_hash(ref, n_handles(cmds))
