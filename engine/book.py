"""The one interface both books follow, a factory choosing between them, and a state hash.

``Book`` is what ``engine.api.Engine``, the tests and the benchmarks rely on. The reference
book (``engine.reference``) is the readable oracle; the fast book (``engine.fast``) is the
Numba one. ``state_hash`` reduces either to one digest over its resting orders, order states
and counters, so two unlike data structures compare as one string.

>>> from engine.tradingdays import TradingCalendar
>>> cal = TradingCalendar.from_dates(["2024-03-04"])
>>> a, b = make_book("reference", [6000], cal), make_book("numba", [6000], cal)
>>> state_hash(a, 0) == state_hash(b, 0)
True
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Protocol

import numpy as np

from .errors import EngineConfigError
from .tradingdays import TradingCalendar

IMPLEMENTATIONS = ("numba", "reference")


class Book(Protocol):
    """Commands: ``submit_batch``. Queries: ``best_bid``, ``best_ask``, ``depth``,
    ``resting_orders``, ``order_state``, ``open_day``, ``clock``, ``globals``, ``band``.
    Checks: ``check_invariants``."""

    name: str

    @property
    def clock(self) -> int:
        """The exchange time of the last command that moved it, µs (``NO_TIME`` before any)."""
        ...

    def submit_batch(self, cmds: np.ndarray, copy: bool = True) -> np.ndarray: ...
    def best_bid(self, instrument: int, segment: int) -> tuple[int, int] | None: ...
    def best_ask(self, instrument: int, segment: int) -> tuple[int, int] | None: ...
    def depth(self, instrument: int, segment: int, side: int, levels: int = 5) -> list: ...
    def resting_orders(self) -> Iterator[tuple]: ...
    def resting_in_levels(self, instrument: int, segment: int, side: int,
                          levels: int = 5) -> list[tuple[int, int, int, int]]: ...
    def order_state(self, ref: int) -> tuple: ...
    def open_day(self): ...
    def globals(self) -> tuple[int, int, int]: ...
    def set_prior_close(self, instrument: int, fen: int) -> None: ...
    def band(self, instrument: int, segment: int) -> tuple[int, int]: ...
    def check_invariants(self) -> None: ...


def make_book(impl: str, prior_closes, calendar: TradingCalendar, accounts=None,
              **capacity) -> Book:
    """A book of the named implementation (``numba`` or ``reference``).

    ``accounts`` (an ``engine.accounts.Accounts``) turns the risk stage on: reservation and
    settlement of every order against those balances. ``capacity`` (slot_capacity,
    order_capacity, event_capacity) sizes the fast book's initial arrays; the reference book
    ignores it.
    """
    if impl == "numba":
        from .fast.book import FastBook

        return FastBook(prior_closes, calendar, accounts=accounts, **capacity)
    if impl == "reference":
        from .reference.book import ReferenceBook

        return ReferenceBook(prior_closes, calendar, accounts=accounts)
    raise EngineConfigError(f"unknown engine {impl!r}: choose one of {', '.join(IMPLEMENTATIONS)}")


def state_hash(book: Book, n_orders: int) -> str:
    """SHA-256 over the book's resting orders in priority order, its counters, the day in
    progress, and the state of order handles ``0 .. n_orders - 1``."""
    h = hashlib.sha256()
    for row in book.resting_orders():
        h.update(np.asarray(row, dtype=np.int64).tobytes())
    h.update(np.asarray(book.globals(), dtype=np.int64).tobytes())
    day = book.open_day()
    if day is not None:
        h.update(repr(day).encode())
    for ref in range(n_orders):
        h.update(np.asarray([int(x) for x in book.order_state(ref)], dtype=np.int64).tobytes())
    return h.hexdigest()
