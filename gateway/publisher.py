"""The ledger publisher: a separate process that settles the journal's trades, day closes and
account operations into the ledger, so the event loop never shares the GIL with SQLite work.

The server keeps, per journaled turn, only what settlement needs (the TRADE and DAY_CLOSED
rows, the names of their accounts and orders, the account operations) and hands it over on
its timer (every 50 ms) through a ``multiprocessing`` queue. The child commits each hand-over
as a group, with the journal position it reached, so a crash repeats at most work the
ledger's idempotence absorbs (trade ids, operation refs).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time

import numpy as np

from engine import batch as B
from engine.codes import AccountType, EventKind
from engine.rules import DAY_US

from .protocol import decode_clid

FEED = "journal"  # the ledger's name for the server's journal


class LedgerPublisher:
    """Parent side: ``start``, ``publish(seq, turn)``, ``stop``; ``position`` is how far the
    ledger had settled the journal when it started."""

    def __init__(self, url: str, exchange, fees: tuple[int, int]):
        self.exchange = exchange
        ctx = multiprocessing.get_context("spawn")  # a clean child: no threads, no loop
        self.queue = ctx.Queue()
        self.replies = ctx.Queue()
        self.process = ctx.Process(target=_run, name="cea-ledger", daemon=True,
                                   args=(url, list(exchange.instruments), fees, self.queue,
                                         self.replies, os.getpid()))
        self.position = -1
        self.error: str | None = None
        self.buffer: list = []
        self.published = -1  # the last record published, settling something or not
        self.sent = -1  # the last record handed over
        self._position_at = 0.0

    def start(self, timeout: float = 120.0) -> None:
        self.process.start()
        kind, value = self.replies.get(timeout=timeout)
        if kind == "error":
            self.process.join(5)
            raise RuntimeError(f"ledger: {value}")
        self.position = value

    def publish(self, seq: int, settled: list, ops: list) -> None:
        """Keep what a journaled turn (up to record ``seq``) settles: its TRADE and
        DAY_CLOSED rows and account operations, for the next hand-over (O(1) on the loop)."""
        if seq > self.position:
            if settled or ops:
                self.buffer.append((seq, settled, ops))
            self.published = max(self.published, seq)

    def hand_over(self, force: bool = False) -> None:
        """Send what was published since the last call as one message (the server calls this
        on its timer): the filtering and naming is done once per period, vectorised, and the
        queue's feeder thread wakes once, not per turn."""
        if not self.buffer:
            # the position alone moves on: once a second is enough (a position behind only
            # means records replayed, idempotently, after a crash) and spares the ledger a
            # commit, with its fsync on the journal's disk, every hand-over
            now = time.monotonic()
            if self.published > self.sent and (force or now - self._position_at >= 1.0):
                self.queue.put([self._item(self.published, [], ())])
                self.sent = self.published
                self._position_at = now
            return
        items, group, group_seq = [], [], -1
        for seq, events, ops in self.buffer:
            if ops:  # account operations settle in their place in the sequence
                if group_seq >= 0:
                    items.append(self._item(group_seq, group, ()))
                    group, group_seq = [], -1
                items.append(self._item(seq, events, ops))
            else:  # rows or not, the record moves the ledger's position
                group.extend(events)
                group_seq = seq
        if self.published > max(group_seq, items[-1][0] if items else -1):
            group_seq = self.published  # records after the last that settles something
        if group_seq >= 0:
            items.append(self._item(group_seq, group, ()))
        self.buffer = []
        self.sent = max(self.sent, self.published)
        self.queue.put(items)

    def _item(self, seq: int, events: list, ops) -> tuple:
        """(seq, rows, account names, order handles, their 20-byte ids, ops): the order ids
        travel as one bytes array, decoded in the child, not on the loop."""
        ex = self.exchange
        rows = np.concatenate(events) if events else np.zeros((0, B.EVENT_WIDTH), np.int64)
        trades = rows[rows[:, B.KIND] == EventKind.TRADE]
        # accounts are few: which occur, in O(n) (no sort)
        seen = np.bincount(np.concatenate([trades[:, B.ACCOUNT], trades[:, B.ACCOUNT2]]))
        names = {h: ex.account_name(h) for h in np.flatnonzero(seen).tolist()}
        handles = np.concatenate([trades[:, B.ORDER], trades[:, B.ORDER2]])
        return seq, rows, names, handles, ex.orders.names(handles), list(ops)

    def stop(self, timeout: float = 120.0) -> None:
        """Settle everything published, then end the child."""
        self.hand_over(force=True)
        self.queue.put(None)
        try:
            while True:
                kind, value = self.replies.get(timeout=timeout)
                if kind == "error":
                    self.error = value
                if kind in ("stopped", "error"):
                    break
        except queue.Empty:
            self.error = "the ledger did not stop in time"
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
        self.queue.close()
        self.replies.close()


def _next(inbox, parent: int):
    """The next item; None also when the server died (SIGKILL): what it had not handed over
    is in its journal, and its next start feeds it again."""
    while True:
        try:
            return inbox.get(timeout=0.5)
        except queue.Empty:
            if os.getppid() != parent:
                return None


def _run(url, instruments, fees, inbox, replies, parent) -> None:
    """Child: open the ledger, then settle groups of turns until told to stop."""
    from ledger.core import Ledger

    # settlement follows the journal at its own pace: the order path goes first. SCHED_IDLE
    # runs it only on a CPU nothing else wants (and never preempts the server or its
    # clients); it still gets a small share under full load, and catches up when load drops
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except OSError:
            pass

    try:
        ledger = Ledger.open(url, instruments, *fees)
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        replies.put(("error", str(e)))
        return
    position = ledger.feed_position(FEED)
    replies.put(("ready", position))
    try:
        stop = False
        while not stop:
            batches = [_next(inbox, parent)]
            while len(batches) < 100:
                try:
                    batches.append(inbox.get_nowait())
                except queue.Empty:
                    break
            stop = any(batch is None for batch in batches)
            items = [item for batch in batches if batch is not None for item in batch]
            position = _settle(ledger, instruments, items, position)
        replies.put(("stopped", position))
    except BaseException as e:  # noqa: BLE001
        replies.put(("error", f"{type(e).__name__}: {e}"))
    finally:
        ledger.close()


def _settle(ledger, instruments, items, position) -> int:
    """One transaction per run of turns between account operations; returns the position."""
    group, names, orders, last = [], {}, {}, -1
    for seq, rows, item_names, handles, ids, ops in items:
        if seq <= position:
            continue
        if ops:
            _events(ledger, instruments, group, names, orders, last)
            group, names, orders = [], {}, {}
            for op_seq, op in ops:
                _operation(ledger, instruments, op_seq, op)
        group.append(rows)
        names.update(item_names)
        orders.update(zip(handles.tolist(), (decode_clid(i) for i in ids.tolist())))
        last = seq
    if last >= 0:
        _events(ledger, instruments, group, names, orders, last)
        position = last
    return position


def _events(ledger, instruments, group, names, orders, seq) -> None:
    if seq < 0:
        return
    rows = np.concatenate(group) if group else np.zeros((0, B.EVENT_WIDTH), np.int64)
    ledger.settle_events(rows, names.__getitem__, orders.__getitem__, instruments,
                         feed=(FEED, seq))


def _operation(ledger, instruments, seq: int, op) -> None:
    day, ref = op.ts_us // DAY_US, f"{FEED}:{seq}"
    instrument = op.instrument or instruments[0]
    if op.op == "OPEN_ACCOUNT":
        ledger.open_account(op.account, AccountType(op.value))
    elif op.op == "DEPOSIT":
        ledger.deposit(op.account, op.value, ref=ref, day=day)
    elif op.op == "WITHDRAW":
        ledger.withdraw(op.account, op.value, ref=ref, day=day)
    elif op.op == "ALLOWANCE_IN":
        ledger.allowance_in(op.account, instrument, op.value, ref=ref, day=day)
    elif op.op == "ALLOWANCE_OUT":
        ledger.allowance_out(op.account, instrument, op.value, ref=ref, day=day)
