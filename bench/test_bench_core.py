"""pytest-benchmark scenarios of the matching core, run on request only:

    .venv/bin/python -m pytest bench/test_bench_core.py --benchmark-only

The default test run does not collect this file (pytest's testpaths are tests/, engine/ and
README.md). Every scenario uses ``bench.streams.generate_stream(200_000, seed=7)`` (one
morning, 58 % NEW LIMIT DAY / 29 % CANCEL / 10 % IOC, FOK, MARKET / 3 % AMEND) and a fresh
book per round, built in ``setup`` outside the timing:

- ``test_reference_20k``: the reference book over the first 20,000 commands, one call;
- ``test_numba_batch_200k``: the Numba book, all 200,000 commands in one ``submit_batch``;
- ``test_numba_batch64_50k``: the Numba book, the first 50,000 commands in calls of 64.

The kernels are loaded (or compiled) by a module fixture before any timing. Only the
``submit_batch`` calls are timed (the micro-batch events are views, not copied out). Each
scenario checks its result against an untimed Numba run (events, or the state hash) and
records ns per command in ``extra_info``. Timing is never asserted. ``bench/core.py``
(``cea bench core``) is the full benchmark, with per-call latencies and the JSON figures.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import batch as B
from engine.tradingdays import TradingCalendar

from .streams import PRIOR_CLOSE, TRADING_DATE, generate_stream

STREAM = 200_000
REFERENCE_COMMANDS = 20_000
BATCH64_COMMANDS = 50_000
MICRO_BATCH = 64


@pytest.fixture(scope="module")
def calendar():
    return TradingCalendar.from_dates([TRADING_DATE])


@pytest.fixture(scope="module")
def stream():
    return generate_stream(STREAM, seed=7)


@pytest.fixture(scope="module")
def expected(stream, calendar):
    """Events of the whole stream from an untimed Numba run (this also warms the kernels)."""
    from engine.fast.book import FastBook

    FastBook([PRIOR_CLOSE], calendar).submit_batch(generate_stream(512, seed=1))
    return _fast_book(stream, calendar).submit_batch(stream)


def _fast_book(cmds, calendar):
    from engine.fast.book import FastBook

    n_new = int(np.count_nonzero(cmds["action"] == 1))
    return FastBook([PRIOR_CLOSE], calendar, slot_capacity=n_new + 1,
                    order_capacity=max(1, n_new), event_capacity=3 * len(cmds) + n_new + 1024)


def _record(benchmark, n: int) -> None:
    stats = benchmark.stats.stats
    benchmark.extra_info["commands"] = n
    benchmark.extra_info["ns_per_command_min"] = round(stats.min * 1e9 / n, 1)
    benchmark.extra_info["ns_per_command_mean"] = round(stats.mean * 1e9 / n, 1)


def test_reference_20k(benchmark, stream, calendar, expected):
    from engine.reference.book import ReferenceBook

    cmds = stream[:REFERENCE_COMMANDS]

    def setup():
        return (ReferenceBook([PRIOR_CLOSE], calendar), cmds), {}

    events = benchmark.pedantic(lambda book, c: book.submit_batch(c), setup=setup, rounds=5,
                                warmup_rounds=1)
    _record(benchmark, len(cmds))
    assert np.array_equal(events, expected[expected[:, B.CMD] < len(cmds)])


def test_numba_batch_200k(benchmark, stream, calendar, expected):
    def setup():
        return (_fast_book(stream, calendar), stream), {}

    events = benchmark.pedantic(lambda book, c: book.submit_batch(c, copy=False), setup=setup,
                                rounds=20, warmup_rounds=1)
    _record(benchmark, len(stream))
    assert np.array_equal(events, expected)


def test_numba_batch64_50k(benchmark, stream, calendar, expected):
    from engine.book import state_hash

    cmds = stream[:BATCH64_COMMANDS]
    chunks = [cmds[s:s + MICRO_BATCH] for s in range(0, len(cmds), MICRO_BATCH)]

    def setup():
        return (_fast_book(cmds, calendar),), {}

    def run(book):  # the events are views, dropped at once: nothing is copied out
        submit = book.submit_batch
        for chunk in chunks:
            submit(chunk, copy=False)
        return book

    book = benchmark.pedantic(run, setup=setup, rounds=20, warmup_rounds=1)
    _record(benchmark, len(cmds))
    # untimed: the same calls with the events kept give the whole batch's events and state
    check, parts = _fast_book(cmds, calendar), []
    for k, chunk in enumerate(chunks):
        part = check.submit_batch(chunk)
        part[:, B.CMD] += k * MICRO_BATCH
        parts.append(part)
    assert np.array_equal(np.concatenate(parts), expected[expected[:, B.CMD] < len(cmds)])
    whole = _fast_book(cmds, calendar)
    whole.submit_batch(cmds)
    n_new = int(np.count_nonzero(cmds["action"] == 1))
    assert state_hash(book, n_new) == state_hash(whole, n_new)
