"""Array layout of the fast book: every piece of state is a preallocated int64 array.

The kernels in ``engine.fast.kernels`` receive these arrays and nothing else. Field indexes
are module constants (Numba freezes them as compile-time constants). Slots and refs are
record-major (one row per order), so an order's fields share a cache line or two; against
field-major rows this took 61 to 44 ns a command (docs/performance.md).

========  ===============================  ==================================================
array     shape                            what
========  ===============================  ==================================================
slots     (slot capacity, SL_FIELDS)       resting orders; free slots chained through SL_NEXT
refs      (order capacity, RF_FIELDS)      per order handle: status, quantities, its slot
levels    (books*2, LV_FIELDS, ladder)     dense price ladder per book side, FIFO per level
books     (books, BK_FIELDS)               band, ladder base, best levels per book
days      (instruments, DY_FIELDS)         the trading day's prior close and totals
glob      (GL_FIELDS,)                     clock, day, trade ids, free list, counters
events    (event capacity, EVENT_WIDTH)    the batch's output, row per event
========  ===============================  ==================================================

A book is ``instrument * 2 + segment``; its side is ``book * 2 + (side - 1)`` (bids, asks).
Level ``i`` of a book holds price ``books[b, BK_BASE] + i``; the ladder is re-based on the
band each trading day, when the book is empty.
"""

import numpy as np
from numba.extending import register_jitable

from .. import batch as B
from ..codes import Segment
from ..rules import band_limits

NIL = -1  # end of a FIFO or of the free list; "no level" for a best index

# slots
SL_REF = 0
SL_PRICE = 1
SL_OPEN = 2
SL_ACCOUNT = 3
SL_NEXT = 4
SL_PREV = 5
SL_BOOK = 6
SL_SIDE = 7
SL_STP = 8
SL_SEQ = 9
SL_AUX = 10  # scratch: the day close lists and sorts expiring slots here
SL_FIELDS = 11

# refs (per order handle)
RF_SLOT = 0  # slot while resting, else NIL
RF_STATUS = 1
RF_REASON = 2
RF_QTY = 3  # filled + open + cancelled
RF_FILLED = 4
RF_CANCELLED = 5
RF_USED = 6  # 1 once a NEW row carried this order_id (spec §3)
RF_FIELDS = 7

# levels
LV_HEAD = 0
LV_TAIL = 1
LV_QTY = 2
LV_COUNT = 3
LV_FIELDS = 4

# books
BK_BASE = 0
BK_WIDTH = 1
BK_LOWER = 2
BK_UPPER = 3
BK_BEST_BID = 4
BK_BEST_ASK = 5
BK_RESTING = 6
BK_FIELDS = 7

# days (per instrument)
DY_PRIOR_CLOSE = 0
DY_LISTED_VOLUME = 1
DY_LISTED_TURNOVER = 2
DY_BLOCK_VOLUME = 3
DY_BLOCK_TURNOVER = 4
DY_FIELDS = 5

# glob
GL_CLOCK = 0
GL_LAST_DAY = 1
GL_DAY_OPEN = 2
GL_NEXT_TRADE_ID = 3
GL_NEXT_SEQ = 4
GL_FREE_HEAD = 5
GL_FREE_COUNT = 6
GL_RESTING = 7
GL_DONE = 8  # commands processed over the book's life
GL_EVENTS = 9  # event rows written in the current call
GL_NEXT_CMD = 10  # where the kernel stopped in the batch
GL_NEED = 11  # what the kernel needs when it stops early (see NEED_*)
GL_CAL_FIRST_DAY = 12
GL_CAL_WEEKDAYS = 13  # 1: days past the calendar table trade Monday to Friday
GL_QUOTES = 14  # live negotiated block quotes (Python's ``engine.negotiation`` keeps them)
GL_FIELDS = 15

# kernel return codes: done, or stopped before command GL_NEXT_CMD for want of room
DONE = 0
NEED_EVENTS = 1
NEED_SLOTS = 2
NEED_LEVELS = 3  # GL_NEED holds the ladder width required
NEED_ORDERS = 4  # GL_NEED holds the order handle that does not fit
NEED_CALENDAR = 5  # GL_NEED holds the day the calendar table must reach
PRICE_LIMIT = 6  # the command would open a day with a prior close above MAX_PRIOR_CLOSE
# not for want of room: work that is Python's (``engine.negotiation``), at GL_NEXT_CMD
NEGOTIATE = 7  # a BLOCK_* command: its time checked and the clock moved, the rest is Python's
EXPIRE_QUOTES = 8  # the command's time ends a day with quotes live: expire them, then resume


@register_jitable(inline="always")
def ladder_width(prior_close: int) -> int:
    """Price levels the ladders need for a day opening at ``prior_close``: its BLOCK band, the
    wider of the two (the kernel checks it before opening a day, the wrapper sizes by it).

    >>> ladder_width(6000)  # 42.00 .. 78.00
    3601
    """
    lower, upper = band_limits(prior_close, Segment.BLOCK)
    return upper - lower + 1


def _zeros(shape) -> np.ndarray:
    """Zeroed int64 memory, written once now: ``np.zeros`` maps pages lazily, and a first
    touch inside the matching loop costs about 150 ns per page fault on this kind of VM."""
    out = np.empty(shape, dtype=np.int64)
    out.fill(0)
    return out


def new_slots(capacity: int) -> np.ndarray:
    """Slot arrays with every slot on the free list (slot i links to i + 1)."""
    slots = _zeros((capacity, SL_FIELDS))
    slots[:, SL_NEXT] = np.arange(1, capacity + 1)
    slots[capacity - 1, SL_NEXT] = NIL
    return slots


def grow_slots(slots: np.ndarray, glob: np.ndarray, capacity: int) -> np.ndarray:
    """A copy of ``slots`` with room for ``capacity``, the new slots pushed on the free list
    (each row written once: the old ones copied, the new ones zeroed)."""
    old = slots.shape[0]
    out = np.empty((capacity, SL_FIELDS), dtype=np.int64)
    out[:old] = slots
    out[old:] = 0
    out[old:, SL_NEXT] = np.arange(old + 1, capacity + 1)
    out[capacity - 1, SL_NEXT] = glob[GL_FREE_HEAD]
    glob[GL_FREE_HEAD] = old
    glob[GL_FREE_COUNT] += capacity - old
    return out


def new_refs(capacity: int) -> np.ndarray:
    refs = _zeros((capacity, RF_FIELDS))
    refs[:, RF_SLOT] = NIL
    return refs


def grow_refs(refs: np.ndarray, capacity: int) -> np.ndarray:
    """A copy of ``refs`` with room for ``capacity`` (each row written once)."""
    old = refs.shape[0]
    out = np.empty((capacity, RF_FIELDS), dtype=np.int64)
    out[:old] = refs
    out[old:] = 0
    out[old:, RF_SLOT] = NIL
    return out


def new_levels(n_books: int, width: int) -> np.ndarray:
    levels = _zeros((n_books * 2, LV_FIELDS, width))
    levels[:, LV_HEAD] = NIL
    levels[:, LV_TAIL] = NIL
    return levels


def new_books(n_books: int) -> np.ndarray:
    books = _zeros((n_books, BK_FIELDS))
    books[:, BK_BEST_BID] = NIL
    books[:, BK_BEST_ASK] = NIL
    return books


def new_events(capacity: int) -> np.ndarray:
    return _zeros((capacity, B.EVENT_WIDTH))
