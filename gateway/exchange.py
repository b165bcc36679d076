"""The exchange's state and its journal records: the engine with accounts, the table of
order ids, halts and the market-data channels.

One writer owns it (the server's event loop). It has no clock and does no I/O. Live turns
(``gateway.sequencer``) and recovery (``Exchange.apply``, one journal record at a time) change
it through the same functions of ``gateway.apply``, so a recovered exchange is the same state,
byte for byte (``state_hash``).

Journal records (msgpack, tagged): ``Genesis`` (the configuration, always record 0),
``OrderBatch`` (raw ``COMMAND_DTYPE`` rows and the order ids they used for the first time)
and ``AdminOp`` (accounts, halts, prior closes).

>>> ex = Exchange(Genesis([("CEA", 6000)], operator="OPS"), impl="reference")
>>> _ = ex.apply(1, AdminOp(0, "OPEN_ACCOUNT", account="A001", value=1))
>>> ex.account_handle("A001"), ex.is_account("A001"), ex.is_account("OPS")
(1, True, False)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgspec
import numpy as np

from engine import batch as B
from engine.accounts import RiskConfig
from engine.api import Engine
from engine.book import state_hash as book_state_hash
from engine.codes import NO_REF, NO_TIME, Action
from engine.tradingdays import TradingCalendar

from . import apply as A
from . import protocol as P
from .marketdata import RING, MarketData
from .orders import OrderTable
from .protocol import CLID_BYTES, encode_clid

#: The account handle of commands the exchange makes itself (timer ticks, cancel-on-
#: disconnect, genesis): they get no reports.
SYSTEM = -2

#: A new order id as an OrderBatch record lists it.
NEW_ORDER_ROW = np.dtype([("account", "<i4"), ("instrument", "<i2"), ("cl_ord_id", "S20")])


# ---------------------------------------------------------------- journal records

class Genesis(msgspec.Struct, tag=1, array_like=True, frozen=True):
    """Record 0 of every journal: what the exchange was started with."""

    instruments: list[tuple[str, int]]  # name, first prior close (fen)
    fee_bps_listed: int = 0
    fee_bps_block: int = 0
    t_plus_one: bool = True
    operator: str = "OPS"


class OrderBatch(msgspec.Struct, tag=4, array_like=True, frozen=True):
    """One engine batch: the command rows, the order ids they used for the first time
    (``NEW_ORDER_ROW`` rows), which get the handles ``first_order``, ``first_order + 1``, ...,
    and the ids of rows naming no order."""

    cmds: bytes
    first_order: int
    new_orders: bytes
    #: the 20-byte ids of the rows that name no known order, in row order (their reject
    #: reports carry them); absent in journals before the report stream
    unknown_ids: bytes = b""


#: Negotiation commands on a live quote: their reports echo the command's own ``ref``, not
#: the quote's id, so their ids travel in ``OrderBatch.unknown_ids`` too.
_OWN_ID_ACTIONS = (Action.BLOCK_COUNTER, Action.BLOCK_ACCEPT, Action.BLOCK_WITHDRAW)


def unknown_rows(cmds: np.ndarray) -> np.ndarray:
    """Which command rows' reports carry an id of their own rather than their order's: the
    rows that name no known order, and the negotiation commands on a quote (BLOCK_COUNTER,
    BLOCK_ACCEPT, BLOCK_WITHDRAW: their ``ref``). Their ids are ``OrderBatch.unknown_ids``,
    in row order; clock ticks name none and are not among them."""
    action = cmds["action"]
    own = (cmds["order"] < 0) & (action != Action.TICK)
    if (action >= Action.BLOCK_COUNTER).any():  # 7, 8, 10 (9 is UNKNOWN: an order's row)
        own |= np.isin(action, _OWN_ID_ACTIONS)
    return own


class OrderBatchV1(msgspec.Struct, tag=2, array_like=True, frozen=True):
    """An OrderBatch as versions before the binary protocol wrote it (ids as text)."""

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


Record = OrderBatch | OrderBatchV1 | AdminOp | Genesis
record_encoder = msgspec.msgpack.Encoder()
record_decoder = msgspec.msgpack.Decoder(Record)


@dataclass
class Applied:
    """What applying one record produced, for the ledger and the operator tools."""

    settled: list = field(default_factory=list)  # TRADE and DAY_CLOSED rows (copies)
    ledger_ops: list = field(default_factory=list)  # (seq, AdminOp) account operations
    day_ended: bool = False
    #: an OrderBatch's command rows, its ids of unknown orders and what the engine made of
    #: them (a view, valid until the next record is applied): recovery rebuilds reports
    cmds: np.ndarray | None = None
    unknown_ids: bytes = b""
    batch: object = None


class Exchange:
    """The engine with accounts, the order-id table, halts and market data."""

    def __init__(self, genesis: Genesis, impl: str = "numba",
                 calendar: TradingCalendar | None = None, md_ring: int = RING):
        self.genesis = genesis
        names = [name for name, _ in genesis.instruments]
        if len(names) > 32_767:  # order rows keep the instrument in an int16
            raise ValueError("at most 32,767 instruments")
        # past 2026 (the last year of recorded holidays) weekdays trade, for simulations
        self.calendar = calendar or TradingCalendar.xshg(weekdays_beyond=True)
        risk = RiskConfig(fee_bps_listed=genesis.fee_bps_listed,
                          fee_bps_block=genesis.fee_bps_block, t_plus_one=genesis.t_plus_one)
        self.engine = Engine(dict(genesis.instruments), impl=impl, calendar=self.calendar,
                             risk=risk)
        self.instruments = names
        self.instrument_index = {name: i for i, name in enumerate(names)}
        self.operator = self.engine.accounts.handle(genesis.operator)
        self.halted = np.zeros(len(names), np.uint8)
        self.orders = OrderTable()
        self.orders.reserve_accounts(len(self.engine.accounts))
        self.md = MarketData(names, md_ring)
        self.status_until = NO_TIME  # channel statuses hold until the clock reaches this
        self.seq = 0  # the last journal record applied (Genesis is 0)

    # ------------------------------------------------------------------ names

    @property
    def clock(self) -> int:
        """The engine's clock (µs exchange time; NO_TIME before any command)."""
        return int(self.engine.book.clock)

    def account_handle(self, name: str) -> int:
        """The handle of an account name (NO_REF if the exchange never saw it)."""
        return self.engine.accounts.find(name)

    def account_name(self, handle: int) -> str:
        return self.engine.accounts.name(handle)

    def is_account(self, name: str) -> bool:
        h = self.engine.accounts.find(name)
        return h != NO_REF and self.engine.balances.is_known(h)

    def order_name(self, handle: int) -> str:
        return self.orders.name(handle)

    def order_handle(self, account: str, cl_ord_id: str) -> int:
        """The handle of an account's order id, or NO_REF."""
        h = self.account_handle(account)
        return NO_REF if h == NO_REF else self.orders.find(h, cl_ord_id)

    # ------------------------------------------------------------------ replay

    def apply(self, seq: int, record) -> Applied:
        """Apply one journal record (recovery and ``cea journal replay``)."""
        if seq != self.seq + 1:
            raise ValueError(f"journal record {seq} follows {self.seq}: a record is missing")
        out = Applied()
        if isinstance(record, OrderBatchV1):
            record = _upgrade(record, len(self.orders))
        if isinstance(record, OrderBatch):
            if record.first_order != len(self.orders):
                raise ValueError(f"journal record {seq}: its new orders start at handle "
                                 f"{record.first_order}, not {len(self.orders)}")
            rows = np.frombuffer(record.new_orders, NEW_ORDER_ROW)
            if len(rows):
                self.orders.reserve_accounts(len(self.engine.accounts))
                ids = np.frombuffer(rows["cl_ord_id"].tobytes(), np.uint8)
                self.orders.intern_many(rows["account"], rows["instrument"],
                                        ids.reshape(-1, CLID_BYTES))
            cmds = np.frombuffer(record.cmds, dtype=B.COMMAND_DTYPE)
            self.seq = seq
            batch = A.apply_orders(self, cmds)
            out.cmds, out.unknown_ids, out.batch = cmds, record.unknown_ids, batch
            if batch.trades or batch.days:
                out.settled.append(batch.settled())
            out.day_ended = batch.days > 0
        elif isinstance(record, AdminOp):
            self.seq = seq
            if A.apply_admin(self, record):
                out.ledger_ops.append((seq, record))
        else:
            raise ValueError(f"journal record {seq}: unexpected {type(record).__name__}")
        return out

    # ------------------------------------------------------------------ queries

    def prior_close(self, instrument: int) -> int:
        """The band's reference for the day in progress, or the one the next day opens with."""
        day = self.engine.book.open_day()
        if day is None:
            return self.genesis.instruments[instrument][1]
        if not day[2]:
            return day[1][instrument][1]  # the day closed: its close comes next
        return day[1][instrument][0]

    def snapshot(self, instrument: int, segment: int) -> P.MdSnapshot:
        """A channel's state now, numbered with its last sequence number."""
        return self.md.snapshot(instrument * 2 + segment, self.prior_close(instrument))

    def balance(self, account: str) -> P.Balance:
        b = self.engine.balance(account)
        return P.Balance(b.account, b.cash, b.cash_reserved, b.cash_available, b.withdrawable,
                         [(h.instrument, h.total, h.reserved, h.pending, h.sellable)
                          for h in b.holdings])

    def board(self, instrument: int) -> P.MdQuotes:
        """The block quote board of an instrument: its live public quotes, in the order
        made, anonymous (quote number, the maker's side, price, quantity)."""
        live = self.engine.book.negotiations.live
        quotes = [(q.ref, q.side, q.price, q.qty)
                  for q in sorted(live.values(), key=lambda q: q.seq)
                  if q.instrument == instrument and q.counterparty == NO_REF]
        return P.MdQuotes(self.instruments[instrument], instrument,
                          self.md.seq(2 * instrument + 1), quotes)

    def negotiations(self, account: int) -> P.Negotiations:
        """The live negotiations ``account`` is a party to (its own quotes, public or not,
        and those addressed to or countered by it), as it sees them."""
        live = self.engine.book.negotiations.live
        out = []
        name = self.account_name
        for q in sorted(live.values(), key=lambda q: q.seq):
            maker = q.maker == account
            if not maker and q.counterparty != account:
                continue
            other = q.counterparty if maker else q.maker
            out.append(P.Negotiation(
                q.ref, self.instruments[q.instrument],
                q.side if maker else 3 - q.side, q.price, q.qty, maker, q.proposer == account,
                name(other) if other >= 0 else "", self.orders.name(q.ref) if maker else ""))
        return P.Negotiations(out)

    def state_hash(self) -> str:
        """SHA-256 over the engine (book, orders, balances) and the gateway's own state."""
        h = hashlib.sha256(book_state_hash(self.engine.book, len(self.orders)).encode())
        acc = self.engine.balances
        for array in (acc.cash, acc.holdings, acc.risk):
            h.update(np.ascontiguousarray(array).tobytes())
        h.update(self.orders.state_bytes())
        h.update(self.md.figures.tobytes())
        h.update(self.halted.tobytes())
        h.update(repr(self.seq).encode())
        return h.hexdigest()


def _upgrade(record: OrderBatchV1, first: int) -> OrderBatch:
    """An old record in the current form; its ids must fit the wire's 20 bytes."""
    cmds = np.frombuffer(record.cmds, dtype=B.COMMAND_DTYPE)
    rows = np.zeros(len(record.new_orders), NEW_ORDER_ROW)
    handles = cmds["order"][(cmds["action"] == Action.NEW) & (cmds["order"] >= first)]
    instrument = {}
    for h, i in zip(handles.tolist(), cmds["instrument"][
            (cmds["action"] == Action.NEW) & (cmds["order"] >= first)].tolist()):
        instrument.setdefault(h, i)
    for k, (account, clid) in enumerate(record.new_orders):
        try:
            raw = encode_clid(clid)
        except ValueError as e:
            raise ValueError(f"an order id of an older journal does not fit this version: {e}")
        rows[k] = (account, instrument.get(first + k, -1), raw)
    return OrderBatch(record.cmds, first, rows.tobytes())

