"""The apply stage: a batch of command rows through the engine, and what follows from its
events for the exchange's own state (order tracking, market data, channel statuses).

Live turns (``gateway.sequencer``) and recovery (``Exchange.apply``) both go through
``apply_orders`` and ``apply_admin``, so a journal replayed gives the same state as the live
run that wrote it. Each step is one compiled pass over the batch's event rows: the engine's
``submit_batch``, ``orders.track`` and ``marketdata.publish_events``; Python runs per batch
(and per channel whose top five levels may have changed), never per order.
"""

from __future__ import annotations

import numpy as np

from engine import batch as B
from engine.codes import NO_TIME, AccountType, EventKind
from engine.rules import AM_CLOSE_US, AM_OPEN_US, DAY_CLOSE_US, DAY_US, PM_OPEN_US

from .marketdata import publish_events, status_at
from .orders import track

_TRADE, _DAY = int(EventKind.TRADE), int(EventKind.DAY_CLOSED)
_ACCOUNT_OPS = {"OPEN_ACCOUNT", "DEPOSIT", "WITHDRAW", "ALLOWANCE_IN", "ALLOWANCE_OUT"}


class Batch:
    """One applied batch: its event rows (a view of the engine's buffer, valid until the
    next engine call), and per event the filled quantity after it of the order(s) it is
    about (``filled_after``: buyer, seller)."""

    __slots__ = ("events", "filled_after", "trades", "days")

    def __init__(self, events, filled_after, trades, days):
        self.events, self.filled_after = events, filled_after
        self.trades, self.days = trades, days

    def settled(self) -> np.ndarray:
        """A copy of the TRADE and DAY_CLOSED rows: what the ledger settles."""
        ev = self.events
        if not (self.trades or self.days):
            return ev[:0].copy()
        kind = ev[:, B.KIND]
        return ev[(kind == _TRADE) | (kind == _DAY)]


_scratch = np.zeros((1 << 12, 2), np.int64)


def apply_orders(ex, cmds: np.ndarray) -> Batch:
    """Run ``cmds`` (all stamped, their new order ids interned) through the engine; update
    the order table, the channels and their statuses."""
    global _scratch
    events = ex.engine.book.submit_batch(cmds, copy=False)
    n = events.shape[0]
    if n > _scratch.shape[0]:
        _scratch = np.zeros((max(n, 2 * _scratch.shape[0]), 2), np.int64)
    fa = _scratch[:n]
    o, md = ex.orders, ex.md
    track(events, n, o.side, o.filled, o.open, o.nxt, o.prv, o.head, o.tail, o.n_open, fa)
    trades, days = publish_events(events, n, md.figures, md.rings, md.changed)
    np.bitwise_or(md.touched, md.changed, out=md.touched)  # for the MdOrders pushes
    ts = int(cmds["ts"][-1]) if len(cmds) else ex.clock
    md.publish_depths(ex.engine.book, ts)
    publish_status(ex, ts)
    return Batch(events, fa, trades, days)


def apply_admin(ex, op) -> bool:
    """Apply an AdminOp; True if it is an account operation (the ledger settles those)."""
    eng = ex.engine
    if op.op in _ACCOUNT_OPS:
        if op.op == "OPEN_ACCOUNT":
            eng.open_account(op.account, AccountType(op.value))
            ex.orders.reserve_accounts(len(eng.accounts))
        elif op.op == "DEPOSIT":
            eng.deposit(op.account, op.value)
        elif op.op == "WITHDRAW":
            eng.withdraw(op.account, op.value)
        elif op.op == "ALLOWANCE_IN":
            eng.allowance_in(op.account, op.value, op.instrument)
        else:
            eng.allowance_out(op.account, op.value, op.instrument)
        return True
    instrument = ex.instrument_index[op.instrument]
    if op.op == "HALT" or op.op == "RESUME":
        ex.halted[instrument] = op.op == "HALT"
    elif op.op == "SET_PRIOR_CLOSE":
        eng.set_prior_close(op.instrument, op.value)
    else:
        raise ValueError(f"unknown operation {op.op!r}")
    publish_status(ex, op.ts_us, force=True)
    return False


def next_boundary(clock: int) -> int:
    """The first session boundary (09:30, 11:30, 13:00, 15:00, midnight) after ``clock``."""
    if clock == NO_TIME:
        return NO_TIME + 1
    day = clock // DAY_US * DAY_US
    for t in (AM_OPEN_US, AM_CLOSE_US, PM_OPEN_US, DAY_CLOSE_US, DAY_US):
        if clock < day + t:
            return day + t
    return day + DAY_US


def publish_status(ex, ts: int, force: bool = False) -> None:
    """Publish every channel whose status (by the engine's clock and the halts) changed;
    only once the clock passed a session boundary, unless ``force``."""
    clock = ex.clock
    if not force and clock < ex.status_until:
        return
    ex.status_until = next_boundary(clock)
    trading_day = clock != NO_TIME and ex.calendar.is_trading_day(clock // DAY_US)
    md = ex.md
    for c in range(md.channels):
        status = status_at(clock, c % 2, trading_day, bool(ex.halted[c // 2]))
        if status != md.status(c):
            md.publish_status(c, status, max(ts, clock))
