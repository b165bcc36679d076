"""The ledger publisher: a separate process that settles the journal's trades, day closes and
account operations into the ledger, so the event loop never shares the GIL with SQLite work.

The server keeps, per journaled turn, only what settlement needs (the TRADE and DAY_CLOSED
rows, the names of their accounts and orders, the account operations) and hands it over on
its timer (every 50 ms) through a ``multiprocessing`` queue. The child commits each hand-over
as a group, with the journal position it reached, so a crash repeats at most work the
ledger's idempotence absorbs (trade ids, operation refs).

Supervision (docs/operations.md): the child dies with the server, SIGKILL included
(``PR_SET_PDEATHSIG``, with ``getppid`` polling as the fallback), and ignores SIGINT and
SIGTERM: the server decides when it stops (a signal to the whole process group must not end
it mid-transaction). The server polls it (``poll``, every timer tick): once the child has
died or failed, the publisher logs it, keeps nothing more (the journal holds every record;
the ledger catches up from its feed position at the next start) and never blocks on the
queue; trading goes on with settlement behind. ``stop`` is bounded: past its timeout the
child is killed.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import threading
import time

import numpy as np

from engine import batch as B
from engine.codes import AccountType, EventKind
from engine.rules import DAY_US

from .protocol import decode_clid

FEED = "journal"  # the ledger's name for the server's journal
WARN_EVERY_S = 10.0  # while the ledger is down: how often to say how far settlement is behind
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

log = logging.getLogger("cea.serve")


class LedgerPublisher:
    """Parent side: ``start``, ``publish(seq, turn)``, ``hand_over``, ``poll``, ``stop``;
    ``position`` is how far the ledger had settled the journal when it started, ``settled``
    how far it has now (as it last said), ``failed`` why it stopped before being told to (or
    None), ``behind`` the journal records published and not settled."""

    def __init__(self, url: str, exchange, fees: tuple[int, int]):
        self.exchange = exchange
        ctx = multiprocessing.get_context("spawn")  # a clean child: no threads, no loop
        self.queue = ctx.Queue()
        self.replies = ctx.Queue()
        # the parent-death signal fires when the *thread* that started the child ends: ask
        # for it only when that thread is the main thread (else getppid polling alone)
        on_main = threading.current_thread() is threading.main_thread()
        self.process = ctx.Process(target=_run, name="cea-ledger", daemon=True,
                                   args=(url, list(exchange.instruments), fees, self.queue,
                                         self.replies, os.getpid(), on_main))
        self.position = -1
        self.settled = -1  # the ledger's position as it last reported it
        self.failed: str | None = None
        self.error: str | None = None  # what the child replied as its error, if it did
        self.buffer: list = []
        self.published = -1  # the last record published, settling something or not
        self.sent = -1  # the last record handed over
        self._position_at = 0.0
        self._warned_at = 0.0
        self._stopped = False

    @property
    def behind(self) -> int:
        """Journal records published to the ledger and not (yet) settled by it."""
        return max(0, self.published - max(self.settled, self.position))

    @property
    def alive(self) -> bool:
        return self.process.is_alive() if self.process.pid is not None else False

    def state(self) -> dict:
        return {"alive": self.alive, "failed": self.failed, "behind": self.behind,
                "settled": max(self.settled, self.position), "published": self.published,
                "pid": self.process.pid}

    def start(self, timeout: float = 120.0) -> None:
        self.process.start()
        atexit.register(self._kill)  # the child ignores SIGTERM: multiprocessing's own exit
        # hook (terminate, then join) would wait for it forever
        while True:
            try:
                kind, value = self.replies.get(timeout=0.2)
                break
            except queue.Empty:
                timeout -= 0.2
                if not self.process.is_alive() or timeout <= 0:
                    self._kill()
                    self._close_queues()
                    raise RuntimeError("ledger: the ledger process "
                                       + ("did not start in time" if timeout <= 0 else
                                          f"died at start (exit code {self.process.exitcode})"))
        if kind == "error":
            self.process.join(5)
            self._kill()
            self._close_queues()
            raise RuntimeError(f"ledger: {value}")
        self.position = self.settled = value

    def publish(self, seq: int, settled: list, ops: list) -> None:
        """Keep what a journaled turn (up to record ``seq``) settles: its TRADE and
        DAY_CLOSED rows and account operations, for the next hand-over (O(1) on the loop).
        Once the ledger is down only the position is counted (the journal has the rest)."""
        if seq > self.position:
            if (settled or ops) and self.failed is None:
                self.buffer.append((seq, settled, ops))
            self.published = max(self.published, seq)

    def hand_over(self, force: bool = False) -> None:
        """Send what was published since the last call as one message (the server calls this
        on its timer): the filtering and naming is done once per period, vectorised, and the
        queue's feeder thread wakes once, not per turn. Nothing once the ledger is down."""
        if self.failed is not None or self._stopped:
            self.buffer = []
            return
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

    # -------------------------------------------------------------- supervision

    def poll(self) -> str | None:
        """Take the child's replies and check that it lives (never blocks; the server calls
        this on its timer). The first time the child is found dead or failed, log it (once,
        as an error) and stop keeping anything for it; after that a warning at most every
        ``WARN_EVERY_S`` with how far settlement is behind. Returns ``failed``."""
        if self.failed is None and not self._stopped:
            self._replies()
            if self.failed is None and not self.alive:
                self._replies()  # an error it sent before it ended says more than its death
                if self.failed is None:
                    self._fail(f"the ledger process died (exit code {self.process.exitcode})")
        elif self.failed is not None and not self._stopped:
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning("ledger down (%s): settlement is %d journal records behind; "
                            "trading continues, the ledger catches up at the next start",
                            self.failed, self.behind)
        return self.failed

    def _replies(self) -> str | None:
        """Everything the child has said so far; the last kind read."""
        kind = None
        while True:
            try:
                kind, value = self.replies.get_nowait()
            except queue.Empty:
                return kind
            except (OSError, EOFError, ValueError) as e:  # a pipe broken or closed
                self._fail(f"the ledger's reply pipe broke: {type(e).__name__}: {e}")
                return "error"
            if kind in ("settled", "stopped"):
                self.settled = max(self.settled, value)
            elif kind == "error":
                self.error = value
                self._fail(f"the ledger failed: {value}")
            if kind in ("stopped", "error"):
                return kind

    def _fail(self, reason: str) -> None:
        if self.failed is not None:
            return
        self.failed = reason
        self.buffer = []
        self._warned_at = time.monotonic()
        # nothing put on the queue can be read now: never wait for its feeder thread
        self.queue.cancel_join_thread()
        log.error("%s; trading continues with settlement behind (%d journal records so "
                  "far): the journal holds every trade, and the ledger catches up from its "
                  "feed position at the next start", reason, self.behind)

    def stop(self, timeout: float = 5.0) -> None:
        """Settle everything published, then end the child; in at most ``timeout`` s (then
        the child is killed: settlement is idempotent and resumes from the ledger's feed
        position at the next start)."""
        if self._stopped:
            return
        deadline = time.monotonic() + timeout
        self.poll()
        if self.failed is None:
            self.hand_over(force=True)
            self.queue.put(None)
            while True:
                if self._replies() in ("stopped", "error"):
                    break
                if not self.alive:
                    if self._replies() not in ("stopped", "error"):
                        self._fail("the ledger process died (exit code "
                                   f"{self.process.exitcode}) while stopping")
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("the ledger did not settle within %.1f s: it is stopped with "
                                "%d journal records not settled; settlement resumes from its "
                                "feed position at the next start", timeout, self.behind)
                    break
                # a reply or the child's end, whichever comes first
                multiprocessing.connection.wait([self.replies._reader, self.process.sentinel],
                                                timeout=min(0.5, left))
        self._stopped = True
        self.process.join(max(0.0, min(1.0, deadline - time.monotonic())))
        self._kill()
        if self.failed is not None:
            log.warning("the ledger stopped %d journal records behind (%s): settlement "
                        "resumes from its feed position at the next start", self.behind,
                        self.failed)
        self._close_queues()

    def _kill(self) -> None:
        """SIGKILL the child if it still runs, and reap it (at most a few seconds)."""
        if self.process.pid is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        atexit.unregister(self._kill)

    def _close_queues(self) -> None:
        for q in (self.queue, self.replies):
            q.cancel_join_thread()  # no feeder thread may hold up the exit
            q.close()


def _next(inbox, parent: int):
    """The next item; None also when the server died (SIGKILL): what it had not handed over
    is in its journal, and its next start feeds it again. (Where there is a parent-death
    signal it ends this process first: this is the fallback.)"""
    while True:
        try:
            return inbox.get(timeout=0.5)
        except queue.Empty:
            if os.getppid() != parent:
                return None


def ask_death_signal(sig: int) -> None:
    """Have the kernel send this process ``sig`` when its parent dies (Linux
    ``PR_SET_PDEATHSIG``; a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        pass


def _die_with_parent(parent: int, pdeathsig: bool) -> None:
    """The server decides when settlement stops: ignore SIGINT and SIGTERM (a signal to the
    whole process group, from a terminal, ``timeout`` or systemd, must not end a transaction
    half way; the server then stops this process in bounded time). Die with the server, even
    when it is SIGKILLed (Linux ``PR_SET_PDEATHSIG``): an orphan would keep the ledger and
    the server's stdout open."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if pdeathsig:  # (elsewhere than Linux: the getppid polling of _next)
        ask_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the server died before the signal was asked for
        os._exit(0)


def _run(url, instruments, fees, inbox, replies, parent, pdeathsig=True) -> None:
    """Child: open the ledger, then settle groups of turns until told to stop; say how far
    it got after each group (``("settled", position)``)."""
    _die_with_parent(parent, pdeathsig)
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
            settled = _settle(ledger, instruments, items, position)
            if settled != position and not stop:
                replies.put(("settled", settled))
            position = settled
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
