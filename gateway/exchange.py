"""The exchange's state machine: sequenced commands in, journal records and results out.

One writer owns it (the server's event loop). It has no clock and does no I/O: the server
stamps each turn's commands with one time, hands them to ``Exchange.submit`` and gets back a
``Turn``: the journal records to write (and fsync) before anything is sent, the execution
reports per account, market-data frames per channel, and the engine events and account
operations for the ledger. ``Exchange.apply`` replays a journal record; live submission goes
through the same ``_apply_*`` methods, so a recovered exchange is the same state, byte for byte
(``state_hash``).

Journal records (msgpack, tagged): ``Genesis`` (the configuration, always record 0),
``OrderBatch`` (a raw ``COMMAND_DTYPE`` array and the client order ids it interned, in handle
order) and ``AdminOp`` (accounts, halts, prior closes).

>>> ex = Exchange(Genesis([("CEA", 6000)], operator="OPS"), impl="reference")
>>> _ = ex.submit([(SYSTEM, AdminOp(0, "OPEN_ACCOUNT", account="A001", value=1))], 0)
>>> a = ex.account_handle("A001")
>>> _ = ex.submit([(SYSTEM, AdminOp(0, "DEPOSIT", account="A001", value=10**9))], 0)
>>> t = parse_time("2024-03-04T10:00:00")
>>> turn = ex.submit([(a, P.NewOrder("o1", "CEA", Side.BUY, 500, 6000))], t)
>>> [(acct, ExecKind(r[1]).name, r[2]) for acct, r in turn.reports]
[(1, 'ACCEPTED', 'o1')]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgspec
import numpy as np

from engine import batch as B
from engine.accounts import RiskConfig
from engine.api import Engine, price_check, qty_check
from engine.codes import (
    NO_PRICE, NO_REF, NO_TIME, Action, AccountType, EventKind, HUGE_PRICE, OrderType, Reason,
    Segment, Side, Stp, TimeInForce,
)
from engine.rules import AM_CLOSE_US, AM_OPEN_US, DAY_CLOSE_US, DAY_US, MAX_QTY, PM_OPEN_US
from engine.tradingdays import TradingCalendar, date_of_day, parse_time  # noqa: F401 (doctest)

from . import protocol as P
from .marketdata import DEPTH_LEVELS, MarketData, status_at
from .protocol import ExecKind, GatewayReason

#: The account handle of commands the exchange makes itself (timer ticks, cancel-on-
#: disconnect, genesis): they get no reports.
SYSTEM = -2

_SIDES = {int(v) for v in Side}
_TYPES = {int(v) for v in OrderType}
_TIFS = {int(v) for v in TimeInForce}
_STPS = {int(v) for v in Stp}
_NEW_ORDER = P.NewOrder
_REFUSED_KIND = {P.NewOrder: ExecKind.REJECTED, P.Cancel: ExecKind.CANCEL_REJECTED,
                 P.Amend: ExecKind.AMEND_REJECTED}
_LIMIT, _MARKET, _IOC = int(OrderType.LIMIT), int(OrderType.MARKET), int(TimeInForce.IOC)
_A_NEW = int(Action.NEW)
# event kinds and report kinds as plain ints: enum attribute lookups cost in the hot loop
_EV_ACCEPTED, _EV_REJECTED, _EV_TRADE, _EV_CANCELLED, _EV_EXPIRED, _EV_AMENDED, _EV_DAY = (
    int(k) for k in (EventKind.ACCEPTED, EventKind.REJECTED, EventKind.TRADE,
                     EventKind.CANCELLED, EventKind.EXPIRED, EventKind.AMENDED,
                     EventKind.DAY_CLOSED))
_X_ACCEPTED, _X_PARTIAL, _X_FILL, _X_CANCELLED, _X_EXPIRED, _X_AMENDED = (
    int(k) for k in (ExecKind.ACCEPTED, ExecKind.PARTIAL_FILL, ExecKind.FILL,
                     ExecKind.CANCELLED, ExecKind.EXPIRED, ExecKind.AMENDED))
_MD_TRADE = 41  # MdTrade's tag: trades are framed from tuples, encoded like the Struct
_ER = 32  # ExecutionReport's tag: reports are built as tuples, encoded like the Struct
_REJECT_KIND = {Action.NEW: ExecKind.REJECTED, Action.CANCEL: ExecKind.CANCEL_REJECTED,
                Action.AMEND: ExecKind.AMEND_REJECTED}


# ---------------------------------------------------------------- journal records

class Genesis(msgspec.Struct, tag=1, array_like=True, frozen=True):
    """Record 0 of every journal: what the exchange was started with."""

    instruments: list[tuple[str, int]]  # name, first prior close (fen)
    fee_bps_listed: int = 0
    fee_bps_block: int = 0
    t_plus_one: bool = True
    operator: str = "OPS"


class OrderBatch(msgspec.Struct, tag=2, array_like=True, frozen=True):
    """One engine batch: the command rows, and the (account, cl_ord_id) of each order handle
    it created, in handle order."""

    cmds: bytes
    new_orders: list[tuple[int, str]]


class AdminOp(msgspec.Struct, tag=3, array_like=True, frozen=True):
    """An operation outside matching. ``op``: OPEN_ACCOUNT (value = AccountType), DEPOSIT,
    WITHDRAW (fen), ALLOWANCE_IN, ALLOWANCE_OUT (t), HALT, RESUME, SET_PRIOR_CLOSE (fen)."""

    ts_us: int
    op: str
    account: str = ""
    instrument: str = ""
    value: int = 0


class Refused(msgspec.Struct, frozen=True):
    """A command the gateway refused (rate limit) whose reject is reported in sequence,
    after the reports of what the session sent before it. Not journaled."""

    msg: object
    reason: int


class Tick(msgspec.Struct, frozen=True):
    """Move the clock (the server's timer; END_DAY uses it with 15:00). Not on the wire."""

    ts_us: int


Record = OrderBatch | AdminOp | Genesis
record_encoder = msgspec.msgpack.Encoder()
record_decoder = msgspec.msgpack.Decoder(Record)

_ACCOUNT_OPS = {"OPEN_ACCOUNT", "DEPOSIT", "WITHDRAW", "ALLOWANCE_IN", "ALLOWANCE_OUT"}


def _next_boundary(clock: int) -> int:
    """The first session boundary (09:30, 11:30, 13:00, 15:00, midnight) after ``clock``."""
    if clock == NO_TIME:
        return NO_TIME + 1
    day = clock // DAY_US * DAY_US
    for t in (AM_OPEN_US, AM_CLOSE_US, PM_OPEN_US, DAY_CLOSE_US, DAY_US):
        if clock < day + t:
            return day + t
    return day + DAY_US


def _new_order_check(msg, instrument: int) -> int:
    """The first reason a NewOrder fails on its own (spec §7 order), or 0."""
    if (not msg.cl_ord_id or instrument < 0 or msg.side not in _SIDES
            or msg.type not in _TYPES or msg.tif not in _TIFS or msg.stp not in _STPS
            or (msg.type == _MARKET and msg.tif != _IOC)):
        return Reason.MALFORMED
    check = qty_check(msg.qty)
    if check:
        return check
    if msg.type == _MARKET:
        return Reason.INVALID_PRICE if msg.price is not None else 0
    return price_check(msg.price)


@dataclass
class Turn:
    """What one sequenced turn produced."""

    records: list = field(default_factory=list)  # journal records, in order
    reports: list = field(default_factory=list)  # (account handle, report tuple or Struct)
    market_data: list = field(default_factory=list)  # (channel index, frame bytes)
    events: list = field(default_factory=list)  # engine event arrays, for the ledger
    ledger_ops: list = field(default_factory=list)  # (seq, AdminOp) account operations
    day_ended: bool = False  # a trading day closed in this turn (EndDay or 15:00)


class Exchange:
    """The engine with accounts, the gateway's order ids, halts and market data."""

    def __init__(self, genesis: Genesis, impl: str = "numba",
                 calendar: TradingCalendar | None = None):
        self.genesis = genesis
        names = [name for name, _ in genesis.instruments]
        # past 2026 (the last year of recorded holidays) weekdays trade, for simulations
        self.calendar = calendar or TradingCalendar.xshg(weekdays_beyond=True)
        risk = RiskConfig(fee_bps_listed=genesis.fee_bps_listed,
                          fee_bps_block=genesis.fee_bps_block, t_plus_one=genesis.t_plus_one)
        self.engine = Engine(dict(genesis.instruments), impl=impl, calendar=self.calendar,
                             risk=risk)
        self.instruments = names
        self.instrument_index = {name: i for i, name in enumerate(names)}
        self.operator = self.engine.accounts.handle(genesis.operator)
        self.halted = [False] * len(names)
        # per order handle (engine.orders interns (account, cl_ord_id) tuples)
        self.order_clid: list[str] = []
        self.order_instrument: list[int] = []
        self.order_filled: list[int] = []
        self.order_open: list[int] = []
        self.order_side: list[int] = []
        self.open_orders: dict[int, dict[int, None]] = {}  # account -> its resting orders
        self.md = MarketData(names)
        self._status_until = NO_TIME  # statuses hold until the clock reaches this
        self.seq = 0  # the last journal record applied (Genesis is 0)

    # ------------------------------------------------------------------ names

    def account_handle(self, name: str) -> int:
        """The handle of an account name (NO_REF if the exchange never saw it)."""
        return self.engine.accounts.find(name)

    def account_name(self, handle: int) -> str:
        return self.engine.accounts.name(handle)

    def is_account(self, name: str) -> bool:
        h = self.engine.accounts.find(name)
        return h != NO_REF and self.engine.balances.is_known(h)

    def order_name(self, handle: int) -> str:
        return self.order_clid[handle] if 0 <= handle < len(self.order_clid) else ""

    def _intern(self, account: int, clid: str, instrument: int, new_orders: list) -> int:
        orders = self.engine.orders
        handle = orders.handle((account, clid))
        if handle == len(self.order_clid):
            new_orders.append((account, clid))
            self.order_clid.append(clid)
            self.order_instrument.append(instrument)
            self.order_filled.append(0)
            self.order_open.append(0)
            self.order_side.append(0)
        return handle

    # ------------------------------------------------------------------ live

    def submit(self, entries, ts: int) -> Turn:
        """Sequence one turn's commands, all stamped ``ts`` (µs exchange time), in order.

        ``entries`` are (account handle, message): wire ``NewOrder``, ``Cancel``, ``Amend``,
        ``MassCancel``, the operator's ``Halt``, ``Resume``, ``EndDay``, ``SetPriorClose``,
        and the exchange's own ``Tick`` and ``AdminOp``. Orders go to the engine as one batch;
        an operator or mass command closes the batch before it, so it sees the book as of
        its turn.
        """
        turn = Turn()
        clock = self.engine.book.globals()[0]
        ts = max(ts, clock)  # the engine's clock never goes back (spec §6)
        rows: list[tuple] = []
        clids: list[str] = []
        origins: list[int] = []
        new_orders: list[tuple[int, str]] = []
        halted, index = self.halted, self.instrument_index
        handles = self.engine.orders.handles
        intern = self._intern
        for account, msg in entries:
            kind = type(msg)
            if kind is _NEW_ORDER:
                instrument = index.get(msg.instrument, -1)
                if instrument >= 0 and halted[instrument]:
                    turn.reports.append((account, self._gateway_reject(
                        ExecKind.REJECTED, msg.cl_ord_id, ts, GatewayReason.INSTRUMENT_HALTED)))
                    continue
                clid, qty, price = msg.cl_ord_id, msg.qty, msg.price
                if clid:
                    handle = handles.get((account, clid))
                    if handle is None:
                        handle = intern(account, clid, instrument, new_orders)
                else:
                    handle = NO_REF
                # the common case, valid on its own, in one test; anything else is checked
                # field by field in the spec's order
                if (instrument >= 0 and clid and type(qty) is int and 0 < qty <= MAX_QTY
                        and msg.side in _SIDES and msg.tif in _TIFS and msg.stp in _STPS
                        and ((msg.type == _LIMIT and type(price) is int and 0 < price < HUGE_PRICE)
                             or (msg.type == _MARKET and msg.tif == _IOC and price is None))):
                    rows.append((ts, handle, NO_PRICE if price is None else price, qty, account,
                                 instrument, _A_NEW, 0, msg.side, msg.type, msg.tif, msg.stp))
                else:
                    check = _new_order_check(msg, instrument)
                    if check:
                        rows.append((ts, handle, NO_PRICE, 0, account, 0, _A_NEW, check,
                                     0, 0, 0, 0))
                    else:  # a price beyond int64: in no band
                        rows.append((ts, handle, min(price, HUGE_PRICE), qty, account,
                                     instrument, _A_NEW, 0, msg.side, msg.type, msg.tif,
                                     msg.stp))
            elif kind is P.Cancel:
                handle = self.engine.orders.find((account, msg.cl_ord_id))
                rows.append((ts, handle, NO_PRICE, 0, account, 0, Action.CANCEL,
                             0 if msg.cl_ord_id else Reason.MALFORMED, 0, 0, 0, 0))
            elif kind is P.Amend:
                handle = self.engine.orders.find((account, msg.cl_ord_id))
                if handle != NO_REF and halted[self.order_instrument[handle]]:
                    turn.reports.append((account, self._gateway_reject(
                        ExecKind.AMEND_REJECTED, msg.cl_ord_id, ts,
                        GatewayReason.INSTRUMENT_HALTED)))
                    continue
                check = ((0 if msg.cl_ord_id else Reason.MALFORMED) or qty_check(msg.qty)
                         or price_check(msg.price))
                rows.append((ts, handle, min(msg.price, HUGE_PRICE) if not check else NO_PRICE,
                             msg.qty if not check else 0, account, 0, Action.AMEND, check,
                             0, 0, 0, 0))
            elif kind is Refused:
                if rows:  # its reject follows the reports of what came before it
                    self._live_batch(turn, rows, clids, origins, new_orders)
                    rows, clids, origins, new_orders = [], [], [], []
                inner = msg.msg
                if type(inner) in _REFUSED_KIND:
                    turn.reports.append((account, self._gateway_reject(
                        _REFUSED_KIND[type(inner)], inner.cl_ord_id, ts, msg.reason)))
                else:
                    turn.reports.append((account, P.AdminAck(type(inner).__name__, False,
                                                             msg.reason)))
                continue
            else:
                # everything else sees the book as the orders before it left it
                if rows:
                    self._live_batch(turn, rows, clids, origins, new_orders)
                    rows, clids, origins, new_orders = [], [], [], []
                ts = self._special(turn, account, msg, ts)
                continue
            clids.append(msg.cl_ord_id)
            origins.append(account)
        if rows:
            self._live_batch(turn, rows, clids, origins, new_orders)
        return turn

    @staticmethod
    def _gateway_reject(kind, clid, ts, reason):
        return (_ER, kind, clid, ts, "", 0, 0, None, 0, 0, 0, int(reason), 0)

    def _live_batch(self, turn, rows, clids, origins, new_orders) -> None:
        cmds = np.array(rows, dtype=B.COMMAND_DTYPE)
        record = OrderBatch(cmds.tobytes(), new_orders)
        self.seq += 1
        turn.records.append((self.seq, record))
        self._apply_batch(cmds, turn, clids, origins)

    def _special(self, turn: Turn, account: int, msg, ts: int) -> int:
        """Operator, mass and clock commands; returns the time for what follows."""
        kind = type(msg)
        if kind is P.MassCancel:
            self._mass_cancel(turn, account, msg, ts)
            return ts
        if kind is Tick:
            self._tick(turn, max(ts, msg.ts_us))
            return max(ts, msg.ts_us)
        if kind is AdminOp:  # the exchange's own (genesis, operator tools)
            self._admin(turn, msg, reply_to=account)
            return ts
        name = kind.__name__
        if account != self.operator:
            turn.reports.append((account, P.AdminAck(name, False, GatewayReason.NOT_AUTHORIZED,
                                                     "only the operator account may do this")))
            return ts
        if kind is P.EndDay:
            clock = self.engine.book.globals()[0]
            if clock == NO_TIME or not self.engine.day_in_progress():
                turn.reports.append((account, P.AdminAck(name, False, GatewayReason.BAD_VALUE,
                                                         "no trading day is open")))
                return ts
            end = max(ts, (clock // DAY_US) * DAY_US + DAY_CLOSE_US)
            self._tick(turn, end)
            turn.reports.append((account, P.AdminAck(name, True)))
            return end
        instrument = self.instrument_index.get(msg.instrument, -1)
        if instrument < 0:
            turn.reports.append((account, P.AdminAck(name, False,
                                                     GatewayReason.UNKNOWN_INSTRUMENT,
                                                     f"no instrument {msg.instrument!r}")))
            return ts
        if kind is P.Halt or kind is P.Resume:
            op = AdminOp(ts, "HALT" if kind is P.Halt else "RESUME", instrument=msg.instrument)
        else:  # SetPriorClose
            if self.engine.day_in_progress():
                turn.reports.append((account, P.AdminAck(
                    name, False, GatewayReason.BAD_VALUE,
                    "a prior close can only be set between trading days (end the day first)")))
                return ts
            if not isinstance(msg.price, int) or not 1 <= msg.price <= 1_000_000:
                turn.reports.append((account, P.AdminAck(
                    name, False, GatewayReason.BAD_VALUE,
                    f"prior close {msg.price} fen is outside 1 .. 1000000")))
                return ts
            op = AdminOp(ts, "SET_PRIOR_CLOSE", instrument=msg.instrument, value=msg.price)
        self._admin(turn, op, reply_to=account, ack=name)
        return ts

    def _admin(self, turn: Turn, op: AdminOp, reply_to: int, ack: str | None = None) -> None:
        seq = self.seq + 1
        try:
            self._apply_admin(op, turn, seq)
        except (ValueError, KeyError) as e:  # AccountError, EngineConfigError: nothing done
            if reply_to != SYSTEM:
                turn.reports.append((reply_to, P.AdminAck(ack or op.op, False,
                                                          GatewayReason.BAD_VALUE, str(e))))
                return
            raise
        self.seq = seq
        turn.records.append((seq, op))
        if reply_to != SYSTEM:
            turn.reports.append((reply_to, P.AdminAck(ack or op.op, True)))

    def _tick(self, turn: Turn, ts: int) -> None:
        cmds = B.empty_commands(1)
        cmds[0]["ts"], cmds[0]["action"] = ts, Action.TICK
        self.seq += 1
        turn.records.append((self.seq, OrderBatch(cmds.tobytes(), [])))
        self._apply_batch(cmds, turn, [""], [SYSTEM])

    def _mass_cancel(self, turn: Turn, account: int, msg, ts: int) -> None:
        instrument = self.instrument_index.get(msg.instrument, -1) if msg.instrument else -1
        if msg.instrument and instrument < 0:
            if account != SYSTEM:
                turn.reports.append((account, P.AdminAck("MassCancel", False,
                                                         GatewayReason.UNKNOWN_INSTRUMENT,
                                                         f"no instrument {msg.instrument!r}")))
            return
        rows, clids = [], []
        for handle in self.open_orders.get(account, ()):
            if instrument >= 0 and self.order_instrument[handle] != instrument:
                continue
            if msg.side and self.order_side[handle] != msg.side:
                continue
            rows.append((ts, handle, NO_PRICE, 0, account, 0, Action.CANCEL, 0, 0, 0, 0, 0))
            clids.append(self.order_clid[handle])
        if rows:
            self._live_batch(turn, rows, clids, [account] * len(rows), [])
        if account != SYSTEM:
            turn.reports.append((account, P.AdminAck("MassCancel", True,
                                                     text=f"{len(rows)} orders cancelled")))

    # ------------------------------------------------------------------ replay

    def apply(self, seq: int, record) -> Turn:
        """Apply one journal record (recovery and ``cea journal replay``)."""
        if seq != self.seq + 1:
            raise ValueError(f"journal record {seq} follows {self.seq}: a record is missing")
        turn = Turn()
        self.seq = seq
        if isinstance(record, OrderBatch):
            cmds = np.frombuffer(record.cmds, dtype=B.COMMAND_DTYPE).copy()
            first = len(self.order_clid)
            for account, clid in record.new_orders:
                if self._intern(account, clid, -1, []) != len(self.order_clid) - 1:
                    raise ValueError(f"journal record {seq}: order {clid!r} interned twice")
            # the instrument of each new order is on the NEW row that created it
            new = cmds[(cmds["action"] == Action.NEW) & (cmds["order"] >= first)]
            for handle, instrument in zip(new["order"].tolist(), new["instrument"].tolist()):
                if self.order_instrument[handle] == -1:
                    self.order_instrument[handle] = instrument
            self._apply_batch(cmds, turn, None, None)
        elif isinstance(record, AdminOp):
            self._apply_admin(record, turn, seq)
        else:
            raise ValueError(f"journal record {seq}: unexpected {type(record).__name__}")
        return turn

    # ------------------------------------------------------------------ shared

    def _apply_admin(self, op: AdminOp, turn: Turn, seq: int) -> None:
        eng = self.engine
        if op.op in _ACCOUNT_OPS:
            if op.op == "OPEN_ACCOUNT":
                eng.open_account(op.account, AccountType(op.value))
            elif op.op == "DEPOSIT":
                eng.deposit(op.account, op.value)
            elif op.op == "WITHDRAW":
                eng.withdraw(op.account, op.value)
            elif op.op == "ALLOWANCE_IN":
                eng.allowance_in(op.account, op.value, op.instrument)
            else:
                eng.allowance_out(op.account, op.value, op.instrument)
            turn.ledger_ops.append((seq, op))
            return
        instrument = self.instrument_index[op.instrument]
        if op.op == "HALT" or op.op == "RESUME":
            self.halted[instrument] = op.op == "HALT"
        elif op.op == "SET_PRIOR_CLOSE":
            eng.set_prior_close(op.instrument, op.value)
        else:
            raise ValueError(f"unknown operation {op.op!r}")
        self._publish_status(turn, op.ts_us, force=True)

    def _apply_batch(self, cmds: np.ndarray, turn: Turn, clids, origins) -> None:
        """Run one batch through the engine; update order tracking and market data; with
        ``clids`` (live), also build the execution reports."""
        events = self.engine.book.submit_batch(cmds, copy=True)
        turn.events.append(events)
        reports = turn.reports if clids is not None else None
        names = self.instruments
        filled, open_, clid_of = self.order_filled, self.order_open, self.order_clid
        open_orders = self.open_orders
        sides = self.order_side
        md = self.md
        changed: set[int] = set()
        channels = md.channels
        encode = P.encode
        for row in events.tolist():
            kind = row[0]
            if kind == _EV_TRADE:
                _, _, ts, instrument, segment, bh, ba, aggressor, price, qty, _, trade_id, \
                    sh, sa, b_left, s_left = row
                filled[bh] += qty
                filled[sh] += qty
                open_[bh] = b_left
                open_[sh] = s_left
                if b_left == 0:
                    open_orders[ba].pop(bh, None)
                if s_left == 0:
                    open_orders[sa].pop(sh, None)
                name = names[instrument]
                if reports is not None:
                    reports.append((ba, (_ER, _X_FILL if b_left == 0 else _X_PARTIAL,
                                         clid_of[bh], ts, name, segment, 1, price, qty,
                                         filled[bh], b_left, 0, trade_id)))
                    reports.append((sa, (_ER, _X_FILL if s_left == 0 else _X_PARTIAL,
                                         clid_of[sh], ts, name, segment, 2, price, qty,
                                         filled[sh], s_left, 0, trade_id)))
                c = instrument * 2 + segment
                changed.add(c)
                channel = channels[c]
                channel.last_price = price
                channel.volume += qty
                channel.turnover += price * qty
                channel.seq += 1
                channel.ring.append(encode((_MD_TRADE, name, segment, channel.seq, ts, trade_id,
                                            price, qty, aggressor)))
                continue
            if kind == _EV_REJECTED:
                if reports is not None and row[B.ACCOUNT] >= 0 and origins[row[B.CMD]] != SYSTEM:
                    reports.append((row[B.ACCOUNT], (
                        _ER, _REJECT_KIND.get(row[B.AUX1], ExecKind.REJECTED),
                        clids[row[B.CMD]], row[B.TS], "", 0, 0, None, 0, 0, 0, row[B.REASON],
                        0)))
                continue
            if kind == _EV_DAY:
                self._day_summary(row)
                turn.day_ended = True
                continue
            h, account = row[B.ORDER], row[B.ACCOUNT]
            instrument, segment, side = row[B.INSTRUMENT], row[B.SEGMENT], row[B.SIDE]
            changed.add(instrument * 2 + segment)
            price = None if row[B.PRICE] == NO_PRICE else row[B.PRICE]
            qty, reason = row[B.QTY], 0
            if kind == _EV_ACCEPTED:
                sides[h] = side
                open_[h] = qty
                if account not in open_orders:
                    open_orders[account] = {}
                open_orders[account][h] = None
                exec_kind = _X_ACCEPTED
            elif kind == _EV_AMENDED:
                open_[h] = qty
                exec_kind = _X_AMENDED
            else:  # CANCELLED, EXPIRED: the open quantity is gone
                open_[h] = 0
                open_orders[account].pop(h, None)
                if kind == _EV_CANCELLED:
                    exec_kind, reason = _X_CANCELLED, row[B.REASON]
                else:
                    exec_kind = _X_EXPIRED
            if reports is not None:
                reports.append((account, (_ER, exec_kind, clid_of[h], row[B.TS],
                                          names[instrument], segment, side, price, qty,
                                          filled[h], open_[h], reason, 0)))
        ts = int(cmds["ts"][-1]) if len(cmds) else 0
        for c in sorted(changed):
            self._publish_depth(c, ts)
        self._publish_status(turn, ts)
        turn.market_data.extend(changed)

    def _publish_depth(self, c: int, ts: int) -> None:
        channel = self.md.channels[c]
        instrument, segment = divmod(c, 2)
        book = self.engine.book
        depth = (book.depth(instrument, segment, Side.BUY, DEPTH_LEVELS),
                 book.depth(instrument, segment, Side.SELL, DEPTH_LEVELS))
        if depth != channel.depth:
            channel.depth = depth
            channel.publish(lambda seq: P.MdDepth(channel.instrument, segment, seq, ts,
                                                  depth[0], depth[1]))

    def _publish_status(self, turn: Turn, ts: int, force: bool = False) -> None:
        clock = self.engine.book.globals()[0]
        if not force and clock < self._status_until:
            return  # no session boundary passed since the last look
        self._status_until = _next_boundary(clock)
        trading_day = clock != NO_TIME and self.calendar.is_trading_day(clock // DAY_US)
        for c, channel in enumerate(self.md.channels):
            status = status_at(clock, channel.segment, trading_day, self.halted[c // 2])
            if status != channel.status:
                channel.status = status
                channel.publish(lambda seq: P.MdStatus(channel.instrument, channel.segment,
                                                       seq, max(ts, clock), status))
                turn.market_data.append(c)

    def _day_summary(self, row) -> None:
        instrument = row[B.INSTRUMENT]
        date = date_of_day(row[B.ORDER]).isoformat()
        for segment, volume, turnover in ((Segment.LISTED, row[B.QTY], row[B.ACCOUNT]),
                                          (Segment.BLOCK, row[B.AUX2], row[B.ACCOUNT2])):
            channel = self.md.channel(instrument, segment)
            channel.publish(lambda seq: P.MdDaySummary(
                channel.instrument, segment, seq, row[B.TS], date, row[B.AUX1], row[B.PRICE],
                volume, turnover))
            channel.last_price, channel.volume, channel.turnover = None, 0, 0  # a new day

    # ------------------------------------------------------------------ queries

    def snapshot(self, instrument: int, segment: int) -> P.MdSnapshot:
        """A channel's state now, numbered with its last sequence number."""
        channel = self.md.channel(instrument, segment)
        day = self.engine.book.open_day()
        # the prior close the day in progress (or the next one) has its band around
        prior_close = (day[1][instrument][0] if day is not None
                       else self.genesis.instruments[instrument][1])
        if day is not None and not day[2]:
            prior_close = day[1][instrument][1]  # the day closed: its close comes next
        bids, asks = channel.depth
        return P.MdSnapshot(channel.instrument, segment, channel.seq, channel.status, bids,
                            asks, prior_close, channel.last_price, channel.volume,
                            channel.turnover)

    def balance(self, account: str) -> P.Balance:
        b = self.engine.balance(account)
        return P.Balance(b.account, b.cash, b.cash_reserved, b.cash_available, b.withdrawable,
                         [(h.instrument, h.total, h.reserved, h.pending, h.sellable)
                          for h in b.holdings])

    def state_hash(self) -> str:
        """SHA-256 over the engine (book, orders, balances) and the gateway's own state."""
        h = hashlib.sha256(self.engine.state_hash().encode())
        acc = self.engine.balances
        for array in (acc.cash, acc.holdings, acc.risk):
            h.update(np.ascontiguousarray(array).tobytes())
        h.update(repr((self.seq, self.halted, len(self.order_clid), self.order_filled,
                       self.order_open, [c.seq for c in self.md.channels])).encode())
        return h.hexdigest()

