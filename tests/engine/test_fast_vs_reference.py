"""Differential test: the Numba book against the reference book on seeded random streams.

Both must produce identical event rows, whole batch or chunk by chunk, with tiny capacities so
the fast book's grow-and-resume paths run all the time; and end in identical states.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import batch as B
from engine.book import make_book, state_hash
from engine.codes import EventKind, Segment, Side
from engine.tradingdays import TradingCalendar

from .streams import random_stream

TINY = dict(slot_capacity=2, order_capacity=4, event_capacity=64)


def _describe(row) -> str:
    return ", ".join(f"{name}={int(v)}" for name, v in zip(B.EVENT_COLUMNS, row))


def assert_same_events(ref: np.ndarray, fast: np.ndarray, seed) -> None:
    if ref.shape == fast.shape and np.array_equal(ref, fast):
        return
    n = min(len(ref), len(fast))
    diff = np.flatnonzero(np.any(ref[:n] != fast[:n], axis=1))
    first = int(diff[0]) if len(diff) else n
    pytest.fail(
        f"seed {seed}: books disagree at event {first} (reference {len(ref)} events, "
        f"numba {len(fast)})\n reference: "
        f"{_describe(ref[first]) if first < len(ref) else '-'}\n numba:     "
        f"{_describe(fast[first]) if first < len(fast) else '-'}")


def assert_same_state(a, b, n_orders: int, instruments: int) -> None:
    assert state_hash(a, n_orders) == state_hash(b, n_orders)
    for ref in range(n_orders):
        assert a.order_state(ref) == b.order_state(ref), f"order {ref}"
    for i in range(instruments):
        for seg in Segment:
            assert a.best_bid(i, seg) == b.best_bid(i, seg)
            assert a.best_ask(i, seg) == b.best_ask(i, seg)
            assert a.band(i, seg) == b.band(i, seg)
            for side in Side:
                assert a.depth(i, seg, side, 10) == b.depth(i, seg, side, 10)
    assert a.open_day() == b.open_day()
    assert a.globals() == b.globals()


@pytest.fixture(scope="module")
def calendar():
    return TradingCalendar.xshg()


@pytest.mark.parametrize("seed", range(12))
def test_one_batch_gives_identical_events(seed, calendar):
    instruments = 1 + seed % 2
    closes = [6000, 5800][:instruments]
    cmds = random_stream(seed, 3000, instruments, closes)
    ref = make_book("reference", closes, calendar)
    fast = make_book("numba", closes, calendar, **TINY)
    ev_ref, ev_fast = ref.submit_batch(cmds), fast.submit_batch(cmds)
    assert_same_events(ev_ref, ev_fast, seed)
    # the stream really reaches the rules it is meant to
    kinds = set(ev_ref[:, B.KIND].tolist())
    assert {EventKind.TRADE, EventKind.REJECTED, EventKind.CANCELLED, EventKind.AMENDED,
            EventKind.EXPIRED, EventKind.DAY_CLOSED} <= kinds
    n_orders = int(cmds["order"].max()) + 1
    assert_same_state(ref, fast, n_orders, instruments)
    ref.check_invariants()
    fast.check_invariants()


@pytest.mark.parametrize("seed", range(100, 106))
def test_chunked_batches_equal_one_batch(seed, calendar):
    cmds = random_stream(seed, 2000)
    whole = make_book("numba", [6000], calendar).submit_batch(cmds)
    rng = np.random.default_rng(seed)
    ref = make_book("reference", [6000], calendar)
    fast = make_book("numba", [6000], calendar, **TINY)
    parts_ref, parts_fast = [], []
    start = 0
    while start < len(cmds):
        end = min(len(cmds), start + int(rng.integers(1, 97)))
        for book, parts in ((ref, parts_ref), (fast, parts_fast)):
            ev = book.submit_batch(cmds[start:end])
            ev[:, B.CMD] += start  # CMD counts within the batch
            parts.append(ev)
        ref.check_invariants()
        fast.check_invariants()
        start = end
    assert_same_events(np.concatenate(parts_ref), np.concatenate(parts_fast), seed)
    assert_same_events(whole, np.concatenate(parts_fast), seed)
    assert_same_state(ref, fast, int(cmds["order"].max()) + 1, 1)
