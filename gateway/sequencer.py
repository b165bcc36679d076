"""The sequencer: one turn of the event loop is one batch, in arrival order, journaled and
made durable before any of its results leave.

A turn is what the admission stage took from every session (command rows, gateway answers,
and the sequenced session-level commands in their places), preceded by what the exchange
does by itself (clock ticks, cancel-on-disconnect). ``Sequencer.run`` cuts the rows at each
sequenced command (MassCancel and operator commands see the book as the rows before them
left it), runs each run of rows through the apply stage as one engine batch and one journal
record, has the reports stage frame the reports, and returns the ``Turn``: its journal
records, what the ledger settles, and the output grouped by account. ``Sequencer.commit``
appends the records and syncs them (group commit): only then does the server release the
output (``docs/protocol.md``, durability).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import msgspec
import numpy as np

from engine import batch as B
from engine.codes import NO_PRICE, NO_TIME, Action
from engine.rules import DAY_CLOSE_US, DAY_US, MAX_PRIOR_CLOSE
from engine.tradingdays import day_of_date, format_time

from . import apply as A
from . import protocol as P
from .admission import M_UNKNOWN, Admission
from .exchange import NEW_ORDER_ROW, SYSTEM, AdminOp, OrderBatch, unknown_rows
from .orders import open_orders
from .protocol import CLID_BYTES, GatewayReason
from .reports import PER_EVENT, Output, encode_reports

#: SetClock refuses times from here on (2100-01-01): far beyond any calendar, inside int64.
CLOCK_END = day_of_date(_dt.date(2100, 1, 1)) * DAY_US


class Tick(msgspec.Struct, frozen=True):
    """Move the clock (the server's timer; END_DAY uses it with 15:00). Not on the wire."""

    ts_us: int


class DisconnectCancel(msgspec.Struct, frozen=True):
    """Cancel-on-disconnect: a MassCancel of everything the account has resting, answered
    to no one. Not on the wire."""


@dataclass
class Turn:
    """What one sequenced turn produced."""

    records: list = field(default_factory=list)  # (seq, record), journal order
    settled: list = field(default_factory=list)  # TRADE/DAY_CLOSED rows of its batches
    ledger_ops: list = field(default_factory=list)  # (seq, AdminOp) account operations
    day_ended: bool = False  # a trading day closed in this turn (EndDay or 15:00)


class Sequencer:
    """Turns what the admission stage took into engine batches, records and reports."""

    def __init__(self, exchange, admission: Admission, output: Output, clock=None):
        self.exchange = exchange
        self.admission = admission
        self.output = output
        self.clock = clock  # the server's ExchangeClock (SetClock), None in tests
        #: per account handle: the last report sequence number given out
        self.rseq = np.zeros(64, np.int64)
        self._empty_clid = np.zeros(CLID_BYTES, np.uint8)
        self._reply = True  # whether the special being sequenced is answered

    # -------------------------------------------------------------- report numbers

    def set_counters(self, last: np.ndarray) -> None:
        """Continue every account's report numbers from ``last`` (the report log's)."""
        self.rseq = np.array(last, np.int64)
        self._rseq_room(len(self.exchange.engine.accounts))

    def _rseq_room(self, accounts: int) -> None:
        """``rseq`` covers account handles 0 .. accounts-1."""
        if accounts > self.rseq.shape[0]:
            rseq = np.zeros(max(accounts, 2 * self.rseq.shape[0]), np.int64)
            rseq[: self.rseq.shape[0]] = self.rseq
            self.rseq = rseq

    # -------------------------------------------------------------- a turn

    def run(self, system: list = ()) -> Turn:
        """Sequence the turn the admission stage holds; ``system`` lists (account, message)
        the exchange itself sends first (Tick, DisconnectCancel, AdminOp)."""
        adm, out = self.admission, self.output
        out.reset()
        self.turn = turn = Turn()
        self.ts = ts = max(adm.ts, self.exchange.clock)
        rows = adm.rows
        if rows and ts != adm.ts:  # admission stamped an earlier time: the clock never goes back
            adm.cmds["ts"][:rows] = ts
        self._next_order = adm.first_order
        self._answered = 0  # gateway answers merged so far
        for account, msg in system:
            self._special(account, msg, 0)
        done = 0
        for row, answers, account, msg, reply in adm.specials:
            if row > done:
                self._rows(done, row, answers)
                done = row
            else:
                self._answers(answers)
            self._reply = reply
            self._special(account, msg, row)
            self._reply = True
        if rows > done:
            self._rows(done, rows, adm.answers)
        else:
            self._answers(adm.answers)
        return turn

    def _rows(self, first: int, last: int, answers: int) -> None:
        """Rows ``first .. last-1`` of the admission stage as one batch."""
        adm = self.admission
        cmds = adm.cmds[first:last]
        if first == 0 and last == adm.rows:  # the whole turn: its new ids are all the new ones
            k = len(self.exchange.orders) - adm.first_order
        else:
            k = int(adm.new[first:last].sum())
        start = self._next_order
        self._next_order += k
        self._batch(cmds, start, k, first, adm.origin, adm.clid.reshape(-1), answers,
                    adm.meta[M_UNKNOWN] > 0)

    def _answers(self, answers: int) -> None:
        """Gateway answers due before the next special, with no rows in between."""
        if answers > self._answered:
            self._batch(None, 0, 0, 0, None, None, answers)

    def _batch(self, cmds, first_order: int, new: int, row0: int, origin, clid,
               answers: int, unknown: bool = False) -> None:
        """One engine batch and its reports; ``unknown``: rows of the batch may name no
        known order (the admission stage counted some this turn)."""
        ex, out, adm = self.exchange, self.output, self.admission
        if cmds is not None:
            ex.seq += 1
            self.turn.records.append((ex.seq, OrderBatch(
                cmds.tobytes(), first_order, _new_orders(ex.orders, first_order, new),
                _unknown_ids(cmds, clid, row0) if unknown else b"")))
            batch = A.apply_orders(ex, cmds)
            events, fa = batch.events, batch.filled_after
            if batch.days:
                self.turn.day_ended = True
            if batch.trades or batch.days:
                self.turn.settled.append(batch.settled())
        else:
            events, fa = _NO_EVENTS, _NO_EVENTS[:, :2]
            origin, clid = _NO_ORIGIN, self._empty_clid
        n = events.shape[0]
        g = self._answered
        answer_bytes = (int(adm.gw_off[answers - 1]) + P.BINARY_SIZES[P.MsgType.EXECUTION_REPORT]
                        - int(adm.gw_off[g])) if answers > g else 0
        out.reserve(PER_EVENT * n + answer_bytes, 2 * n + answers - g)
        self._rseq_room(len(ex.engine.accounts))
        self._answered = encode_reports(
            events, n, fa, row0, origin, clid, ex.orders.clid.reshape(-1), self.rseq,
            adm.gw_pos, adm.gw_acct, adm.gw_off, adm.gw_buf, g, answers, out.buf, out.idx,
            out.meta)

    def _restamp(self, row: int) -> None:
        """Rows from ``row`` on take the (later) time the clock moved to."""
        adm = self.admission
        if adm.rows > row:
            adm.cmds["ts"][row:adm.rows] = self.ts

    def _system_rows(self, rows, origin: int, clids: np.ndarray | None) -> None:
        """A batch the exchange makes itself (no gateway answers to merge): command rows
        (a ``COMMAND_DTYPE`` array)."""
        cmds = np.asarray(rows, dtype=B.COMMAND_DTYPE)
        origins = np.full(len(rows), origin, np.int32)
        clid = clids if clids is not None else np.zeros((len(rows), CLID_BYTES), np.uint8)
        self._batch(cmds, self._next_order, 0, 0, origins, clid.reshape(-1), self._answered)

    # -------------------------------------------------------------- sequenced commands

    def _ack(self, account: int, command: str, ok: bool, reason: int = 0, text: str = ""):
        if account != SYSTEM and self._reply:
            self.output.append(account, P.encode(P.AdminAck(command, ok, int(reason), text)))

    def _special(self, account: int, msg, row: int) -> None:
        kind = type(msg)
        ex = self.exchange
        if kind is Tick:
            self._tick(max(self.ts, msg.ts_us))
        elif kind is P.MassCancel or kind is DisconnectCancel:
            self._mass_cancel(account, msg, reply=kind is P.MassCancel)
        elif kind is AdminOp:
            self._admin(msg, SYSTEM)
        elif account != ex.operator:
            self._ack(account, kind.__name__, False, GatewayReason.NOT_AUTHORIZED,
                      "only the operator account may do this")
        elif kind is P.EndDay:
            clock = ex.clock
            if clock == NO_TIME or not ex.engine.day_in_progress():
                self._ack(account, "EndDay", False, GatewayReason.BAD_VALUE,
                          "no trading day is open")
            else:
                self._tick(max(self.ts, (clock // DAY_US) * DAY_US + DAY_CLOSE_US))
                self._ack(account, "EndDay", True)
        elif kind is P.SetClock:
            self._set_clock(account, msg)
        else:
            self._operator(account, msg)
        self._restamp(row)

    def _tick(self, ts: int) -> None:
        self.ts = ts
        row = B.empty_commands(1)  # by field name: the row layout may grow fields
        row["ts"], row["price"], row["action"] = ts, NO_PRICE, Action.TICK
        self._system_rows(row, SYSTEM, None)

    def _mass_cancel(self, account: int, msg, reply: bool) -> None:
        ex = self.exchange
        name = getattr(msg, "instrument", "")
        instrument = ex.instrument_index.get(name, -1) if name else -1
        if name and instrument < 0:
            if reply:
                self._ack(account, "MassCancel", False, GatewayReason.UNKNOWN_INSTRUMENT,
                          f"no instrument {name!r}")
            return
        o = ex.orders
        side = getattr(msg, "side", 0)
        if not 0 <= side <= 2:
            side = -1  # matches no order
        handles = np.empty(max(1, len(o)), np.int64)
        n = open_orders(o.head, o.nxt, o.instr, o.side, account, instrument, side,
                        handles) if account < o.head.shape[0] else 0
        if n:
            handles = handles[:n]
            cmds = B.empty_commands(n)
            cmds["ts"] = self.ts
            cmds["order"] = handles
            cmds["account"] = account
            cmds["action"] = Action.CANCEL
            origin = account if reply else SYSTEM
            self._batch(cmds, self._next_order, 0, 0, np.full(n, origin, np.int32),
                        o.clid[handles].reshape(-1), self._answered)
        if reply:
            self._ack(account, "MassCancel", True, text=f"{n} orders cancelled")

    def _admin(self, op: AdminOp, reply_to: int, ack: str | None = None) -> None:
        ex = self.exchange
        seq = ex.seq + 1
        try:
            account_op = A.apply_admin(ex, op)
        except (ValueError, KeyError) as e:  # AccountError, EngineConfigError: nothing done
            if reply_to != SYSTEM:
                self._ack(reply_to, ack or op.op, False, GatewayReason.BAD_VALUE, str(e))
                return
            raise
        ex.seq = seq
        self.turn.records.append((seq, op))
        if account_op:
            self.turn.ledger_ops.append((seq, op))
        if reply_to != SYSTEM:
            self._ack(reply_to, ack or op.op, True)

    def _operator(self, account: int, msg) -> None:
        ex = self.exchange
        name = type(msg).__name__
        instrument = ex.instrument_index.get(msg.instrument, -1)
        if instrument < 0:
            self._ack(account, name, False, GatewayReason.UNKNOWN_INSTRUMENT,
                      f"no instrument {msg.instrument!r}")
            return
        if type(msg) is P.Halt or type(msg) is P.Resume:
            op = AdminOp(self.ts, "HALT" if type(msg) is P.Halt else "RESUME",
                         instrument=msg.instrument)
        else:  # SetPriorClose
            if ex.engine.day_in_progress():
                self._ack(account, name, False, GatewayReason.BAD_VALUE,
                          "a prior close can only be set between trading days (end the day "
                          "first)")
                return
            if not 1 <= msg.price <= MAX_PRIOR_CLOSE:
                self._ack(account, name, False, GatewayReason.BAD_VALUE,
                          f"prior close {msg.price} fen is outside 1 .. {MAX_PRIOR_CLOSE}")
                return
            op = AdminOp(self.ts, "SET_PRIOR_CLOSE", instrument=msg.instrument, value=msg.price)
        self._admin(op, reply_to=account, ack=name)

    def _set_clock(self, account: int, msg) -> None:
        clock = self.clock
        if clock is None or clock.mode != "sim":
            self._ack(account, "SetClock", False, GatewayReason.BAD_VALUE,
                      "the wall clock cannot be set (only a server started with --clock sim)")
            return
        now = max(clock.now(), self.ts)
        if not now <= msg.ts_us < CLOCK_END:
            self._ack(account, "SetClock", False, GatewayReason.BAD_VALUE,
                      f"the clock only moves forward, and not past 2100: it is "
                      f"{format_time(now)}, not {msg.ts_us} µs")
            return
        clock.set(msg.ts_us)
        self.ts = msg.ts_us
        if self.tick_due(msg.ts_us):  # a session boundary or 15:00 the jump passed
            self._tick(msg.ts_us)
            if self.turn.day_ended:  # the clock moves on to the next trading morning
                clock.day_ended(self.exchange.clock)
                self.ts = max(self.ts, clock.now())
        self._ack(account, "SetClock", True)

    # -------------------------------------------------------------- the clock

    def tick_due(self, ts: int) -> bool:
        """Whether time ``ts`` changes a channel's status or ends the day in progress."""
        ex = self.exchange
        clock = ex.clock
        if ex.engine.day_in_progress() and clock != NO_TIME and \
                ts >= (clock // DAY_US) * DAY_US + DAY_CLOSE_US:
            return True  # the day's 15:00 has passed: expire and close
        trading = ex.calendar.is_trading_day(ts // DAY_US)
        md = ex.md
        return any(A.status_at(ts, c % 2, trading, bool(ex.halted[c // 2])) != md.status(c)
                   for c in range(md.channels))


_NO_EVENTS = np.zeros((0, B.EVENT_WIDTH), np.int64)
_NO_ORIGIN = np.zeros(0, np.int32)


def _unknown_ids(cmds: np.ndarray, clid: np.ndarray, row0: int) -> bytes:
    """The 20-byte ids of the rows naming no known order (a Cancel or Amend of an id never
    used, an id that is not valid), in row order: their reject reports carry them, and
    recovery rebuilds those reports from the journal."""
    unknown = unknown_rows(cmds)
    if not unknown.any():
        return b""
    rows = np.flatnonzero(unknown) + row0
    return clid.reshape(-1, CLID_BYTES)[rows].tobytes()


def _new_orders(orders, first: int, n: int) -> bytes:
    """The NEW_ORDER_ROW rows of handles ``first .. first+n-1``."""
    if n == 0:
        return b""
    rows = np.empty(n, NEW_ORDER_ROW)
    acct, instr, clid = orders.rows(first, first + n)
    rows["account"] = acct
    rows["instrument"] = instr
    rows["cl_ord_id"] = clid.view("S20").reshape(-1)
    return rows.tobytes()
