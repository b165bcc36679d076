"""``Engine``: the matching engine for people who embed it (simulators, the gateway, tests).

It owns one book (Numba or reference), names instruments, accounts and order ids, checks
what a command says on its own once (the edge), and turns the book's event rows back into
``engine.messages`` Structs.

>>> from engine import Engine, NewOrder, Side, parse_time
>>> eng = Engine({"CEA": 6000})                       # prior close 60.00 CNY/t, in fen
>>> t = parse_time("2024-03-04T10:00:00")
>>> _ = eng.submit(NewOrder(t, "A001", "s1", Side.SELL, qty=500, price=6000))
>>> events = eng.submit(NewOrder(t, "A002", "b1", Side.BUY, qty=200, price=6010))
>>> [type(e).__name__ for e in events]
['OrderAccepted', 'TradeExecuted']
>>> events[1].price, events[1].qty
(6000, 200)
>>> eng.best_ask()
(6000, 300)
>>> [type(e).__name__ for e in eng.end_day()]
['OrderExpired', 'DayClosed']
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from . import batch as B
from .accounts import (
    CA_FROZEN, CA_RESERVED, CA_TOTAL, CA_TYPE, HD_PENDING, HD_RESERVED, HD_TOTAL, AccountError,
    Accounts, RiskConfig, check_reservations,
)
from .book import Book, make_book, state_hash
from .checks import new_order_codes_valid, order_check, take_check, terms_check
from .codes import (
    AccountType, HUGE_PRICE, NO_PRICE, NO_REF, NO_TIME, Action, EventKind, OrderStatus, OrderType,
    QuoteEnd, Reason,
    Segment, Side, Stp, TimeInForce,
)
from .errors import EngineConfigError
from .messages import (
    AccountBalance, HoldingBalance, AmendOrder, BookLevel, CancelOrder, ClockTick, Command, DayClosed, Event, NewOrder,
    OrderAccepted, OrderAmended, OrderCancelled, OrderExpired, OrderRejected, OrderState,
    BlockAccept, BlockCounter, BlockQuote, BlockWithdraw, QuoteEnded, QuoteState, QuoteUpdated,
    RestingOrder, TakeOrder, TradeExecuted,
)
from .rules import DAY_CLOSE_US, DAY_US
from .tradingdays import TradingCalendar, date_of_day

_ACTION_NAMES = {NewOrder: "NEW", CancelOrder: "CANCEL", AmendOrder: "AMEND", TakeOrder: "TAKE",
                 BlockQuote: "BLOCK_QUOTE", BlockCounter: "BLOCK_COUNTER",
                 BlockAccept: "BLOCK_ACCEPT", BlockWithdraw: "BLOCK_WITHDRAW", ClockTick: "TICK"}
_NEGOTIATION = (BlockQuote, BlockCounter, BlockAccept, BlockWithdraw)


class Names:
    """Dense integer handles for strings, in order of first appearance.

    >>> n = Names()
    >>> n.handle("o1"), n.handle("o2"), n.handle("o1"), n.find("o9"), n.name(1)
    (0, 1, 0, -1, 'o2')
    """

    def __init__(self):
        #: name -> handle; read directly by hot loops that cannot afford a method call
        self.handles: dict[str, int] = {}
        self._names: list[str] = []

    def handle(self, name: str) -> int:
        h = self.handles.get(name)
        if h is None:
            h = self.handles[name] = len(self._names)
            self._names.append(name)
        return h

    def find(self, name: str) -> int:
        return self.handles.get(name, NO_REF)

    def add_many(self, names: list[str]) -> int:
        """Intern new names in bulk; return the first one's handle (the rest follow densely).

        Raises ``ValueError`` (and adds nothing) if any name is known or given twice.

        >>> n = Names(); n.handle("a"); n.add_many(["b", "c"]), n.find("c")
        0
        (1, 2)
        """
        first = len(self._names)
        fresh = dict(zip(names, range(first, first + len(names))))
        if len(fresh) != len(names) or not self.handles.keys().isdisjoint(fresh):
            raise ValueError("add_many: a name is already known or given twice")
        self.handles.update(fresh)
        self._names.extend(names)
        return first

    def name(self, handle: int) -> str:
        return self._names[handle] if 0 <= handle < len(self._names) else ""

    def __len__(self) -> int:
        return len(self._names)


class Engine:
    """A matching engine over one or more instruments, each with LISTED and BLOCK books.

    Commands: ``submit``, ``submit_many``, ``end_day``, ``submit_batch`` (raw arrays).
    Queries: ``best_bid``, ``best_ask``, ``depth``, ``order``, ``band``, ``day``.
    Checks: ``state_hash``, ``check_invariants``.

    ``instruments`` maps each instrument's name to its first prior close in fen.
    ``impl`` is ``"numba"`` (default) or ``"reference"``; ``calendar`` defaults to XSHG.
    """

    def __init__(self, instruments: Mapping[str, int], *, impl: str = "numba",
                 calendar: TradingCalendar | None = None, risk: RiskConfig | None = None,
                 **capacity):
        if not instruments:
            raise EngineConfigError("an engine needs at least one instrument")
        self.instruments = list(instruments)
        self._instrument_index = {name: i for i, name in enumerate(self.instruments)}
        self.calendar = calendar or TradingCalendar.xshg()
        #: balances the risk stage reserves from, when ``risk`` is given (else None)
        self.balances: Accounts | None = (
            Accounts(len(self.instruments), risk) if risk is not None else None)
        self.book: Book = make_book(impl, list(instruments.values()), self.calendar,
                                    accounts=self.balances, **capacity)
        self.orders = Names()
        self.accounts = Names()

    # ------------------------------------------------------------------ accounts

    def _balances(self) -> Accounts:
        if self.balances is None:
            raise EngineConfigError("this engine has no accounts: create it with risk=RiskConfig()")
        return self.balances

    def _account(self, name: str) -> int:
        handle = self.accounts.find(name)
        if handle == NO_REF or not self._balances().is_known(handle):
            raise AccountError(Reason.UNKNOWN_ACCOUNT, f"no account {name!r}")
        return handle

    def open_account(self, name: str, kind: AccountType = AccountType.COVERED_ENTITY) -> None:
        """Open a trading account (the risk stage rejects orders of accounts not opened)."""
        if not isinstance(name, str) or not name:
            raise AccountError(None, f"an account name must be a non-empty string, not {name!r}")
        balances = self._balances()
        handle = self.accounts.handle(name)
        balances.open_account(kind, handle)

    def deposit(self, name: str, fen: int) -> None:
        self._balances().deposit(self._account(name), fen)

    def withdraw(self, name: str, fen: int) -> None:
        self._balances().withdraw(self._account(name), fen)

    def allowance_in(self, name: str, tonnes: int, instrument: str = "") -> None:
        self._balances().allowance_in(self._account(name), self._index(instrument), tonnes)

    def allowance_out(self, name: str, tonnes: int, instrument: str = "") -> None:
        self._balances().allowance_out(self._account(name), self._index(instrument), tonnes)

    def freeze(self, name: str, frozen: bool = True) -> None:
        self._balances().freeze(self._account(name), frozen)

    def balance(self, name: str) -> AccountBalance:
        """Cash (fen) and allowances (t) of an account: total, reserved, available."""
        acc, a = self._balances(), self._account(name)
        c = acc.cash[a]
        holdings = []
        for i, instrument in enumerate(self.instruments):
            h = acc.holdings[acc.row(a, i)]
            holdings.append(HoldingBalance(instrument, int(h[HD_TOTAL]), int(h[HD_RESERVED]),
                                           int(h[HD_PENDING]), acc.sellable(a, i)))
        return AccountBalance(name, AccountType(int(c[CA_TYPE])).name, bool(c[CA_FROZEN]),
                              int(c[CA_TOTAL]), int(c[CA_RESERVED]), acc.available_cash(a),
                              acc.withdrawable(a), holdings)

    # ------------------------------------------------------------------ commands

    def submit(self, command: Command) -> list[Event]:
        """Process one command; return the events it caused, in order."""
        return self.submit_many((command,))

    def submit_many(self, commands: Iterable[Command]) -> list[Event]:
        """Process commands in order as one batch (one jitted call); return their events."""
        commands = list(commands)
        raw = self.book.submit_batch(self.encode(commands), copy=False)  # decoded at once
        actions = [_ACTION_NAMES.get(type(c), "?") for c in commands]
        return self.decode(raw, actions)

    def submit_batch(self, cmds: np.ndarray) -> np.ndarray:
        """Process a raw ``engine.batch.COMMAND_DTYPE`` array; return raw event rows.

        Handles in the array must come from ``self.orders`` / ``self.accounts``.
        """
        return self.book.submit_batch(cmds)

    def end_day(self) -> list[Event]:
        """Move the clock to 15:00 of the day in progress: orders expire, the day closes."""
        clock = self.book.clock
        if clock == NO_TIME:
            return []
        close = (clock // DAY_US) * DAY_US + DAY_CLOSE_US
        return self.submit(ClockTick(max(clock, close)))

    def set_prior_close(self, instrument: str, fen: int) -> None:
        """Set the prior close (fen) the next trading day's bands are built on.

        Only between trading days (before the first, or after 15:00 closed one): the day in
        progress keeps its bands. Raises ``EngineConfigError`` otherwise or if out of range.
        """
        self.book.set_prior_close(self._index(instrument), fen)

    # ------------------------------------------------------------------ the edge

    def encode(self, commands: list[Command]) -> np.ndarray:
        """Commands as a raw array, with what each says on its own checked (spec §7)."""
        cmds = B.empty_commands(len(commands))
        for i, c in enumerate(commands):
            self._encode_one(cmds, i, c)
        return cmds

    def _encode_one(self, cmds: np.ndarray, i: int, c) -> None:
        row = cmds[i]
        ts = getattr(c, "ts_us", None)
        row["ts"] = ts if isinstance(ts, int) and NO_TIME < ts < 2**62 else NO_TIME
        if isinstance(c, ClockTick):
            row["action"] = Action.TICK
            return
        if isinstance(c, _NEGOTIATION):
            return self._encode_negotiation(row, c)
        if not isinstance(c, (NewOrder, CancelOrder, AmendOrder, TakeOrder)):
            row["action"] = Action.UNKNOWN
            row["check"] = Reason.MALFORMED
            return
        well_formed = bool(c.account) and bool(c.order_id)
        if c.account:
            row["account"] = self.accounts.handle(c.account)
        if isinstance(c, TakeOrder):
            row["action"] = Action.TAKE
            if c.order_id:
                row["order"] = self.orders.handle(c.order_id)
            instrument = self._instrument_index.get(c.instrument or self.instruments[0])
            well_formed = well_formed and bool(c.target) and instrument is not None and \
                int(c.side) in (Side.BUY, Side.SELL)
            row["instrument"] = instrument or 0
            row["side"], row["type"], row["tif"] = c.side, OrderType.TAKE, TimeInForce.IOC
            row["stp"] = Stp.CANCEL_NEWEST
            check = take_check(well_formed, _whole(c.qty), False)
            if check == Reason.NONE:
                row["qty"] = c.qty
                row[B.TAKE_TARGET] = self.orders.find(c.target)  # never seen: NO_REF
            row["check"] = check
            return
        if isinstance(c, NewOrder):
            row["action"] = Action.NEW
            if c.order_id:
                row["order"] = self.orders.handle(c.order_id)
            instrument = self._instrument_index.get(c.instrument or self.instruments[0])
            known = instrument is not None and new_order_codes_valid(
                int(c.side), int(c.type), int(c.tif), int(c.stp))
            well_formed = well_formed and known
            row["instrument"] = instrument or 0
            row["side"], row["type"], row["tif"], row["stp"] = c.side, c.type, c.tif, c.stp
            check = order_check(well_formed, _whole(c.qty), c.type == OrderType.MARKET,
                                c.price is not None, _whole(c.price))
        else:
            row["action"] = Action.CANCEL if isinstance(c, CancelOrder) else Action.AMEND
            row["order"] = self.orders.find(c.order_id)
            if isinstance(c, AmendOrder):
                check = order_check(well_formed, _whole(c.qty), False, c.price is not None,
                                    _whole(c.price))
            else:
                check = Reason.NONE if well_formed else Reason.MALFORMED
        if check == Reason.NONE and isinstance(c, (NewOrder, AmendOrder)):
            row["qty"] = c.qty
            if c.price is not None:
                row["price"] = min(c.price, HUGE_PRICE)
        row["check"] = check

    def _encode_negotiation(self, row, c) -> None:
        """A BLOCK_* command's row (spec §3b), with the edge's verdict on its own fields."""
        well_formed = bool(c.account) and bool(c.quote_id)
        if c.account:
            row["account"] = self.accounts.handle(c.account)
        qty_given = getattr(c, "qty", None) is not None
        price_given = getattr(c, "price", None) is not None
        if isinstance(c, BlockQuote):
            row["action"] = Action.BLOCK_QUOTE
            if c.quote_id:
                row["order"] = self.orders.handle(c.quote_id)
            instrument = self._instrument_index.get(c.instrument or self.instruments[0])
            row["instrument"] = instrument or 0
            row["side"] = c.side if int(c.side) in (Side.BUY, Side.SELL) else 0
            well_formed = well_formed and instrument is not None and row["side"] != 0 and \
                qty_given and price_given
            row["peer"] = self.accounts.handle(c.counterparty) if c.counterparty else NO_REF
        else:
            row["action"] = {BlockCounter: Action.BLOCK_COUNTER, BlockAccept: Action.BLOCK_ACCEPT,
                             BlockWithdraw: Action.BLOCK_WITHDRAW}[type(c)]
            row["order"] = self.orders.find(c.quote_id)
            if isinstance(c, BlockCounter):
                well_formed = well_formed and (qty_given or price_given)
        qty, price = _whole(getattr(c, "qty", None)), _whole(getattr(c, "price", None))
        check = terms_check(well_formed, qty_given, qty, price_given, price)
        if check == Reason.NONE:
            row["qty"] = qty if qty_given else 0
            row["price"] = min(price, HUGE_PRICE) if price_given else NO_PRICE
        row["check"] = check

    def decode(self, raw: np.ndarray, actions: list[str] | None = None) -> list[Event]:
        """Event rows as Structs. ``actions`` names each command's action for rejects."""
        out: list[Event] = []
        orders, accounts, instruments = self.orders.name, self.accounts.name, self.instruments
        for row in raw.tolist():
            kind = row[B.KIND]
            ts = row[B.TS]
            if kind == EventKind.TRADE:
                out.append(TradeExecuted(
                    ts, row[B.TRADE_ID], instruments[row[B.INSTRUMENT]], Segment(row[B.SEGMENT]),
                    row[B.PRICE], row[B.QTY], orders(row[B.TRADE_BUY_ORDER]),
                    orders(row[B.TRADE_SELL_ORDER]), accounts(row[B.TRADE_BUY_ACCOUNT]),
                    accounts(row[B.TRADE_SELL_ACCOUNT]), Side(row[B.TRADE_AGGRESSOR]),
                    row[B.TRADE_BUY_LEFT], row[B.TRADE_SELL_LEFT]))
                continue
            if kind == EventKind.REJECTED:
                action = actions[row[B.CMD]] if actions else Action(row[B.REJECTED_ACTION]).name
                out.append(OrderRejected(ts, row[B.CMD], action, orders(row[B.ORDER]),
                                         accounts(row[B.ACCOUNT]), Reason(row[B.REASON])))
                continue
            if kind in (EventKind.QUOTE, EventKind.QUOTE_ENDED):
                peer = row[B.QUOTE_COUNTERPARTY]
                parts = (ts, orders(row[B.ORDER]), instruments[row[B.INSTRUMENT]],
                         accounts(row[B.QUOTE_MAKER]), accounts(peer) if peer >= 0 else "",
                         Side(row[B.SIDE]), row[B.PRICE], row[B.QTY])
                if kind == EventKind.QUOTE:
                    out.append(QuoteUpdated(*parts, Action(row[B.QUOTE_ACTION]).name,
                                            accounts(row[B.QUOTE_PROPOSER])))
                else:
                    by = row[B.QUOTE_ENDED_BY]
                    out.append(QuoteEnded(*parts, QuoteEnd(row[B.QUOTE_END]),
                                          accounts(by) if by >= 0 else ""))
                continue
            if kind == EventKind.DAY_CLOSED:
                out.append(DayClosed(
                    ts, date_of_day(row[B.DAY_NUMBER]).isoformat(), instruments[row[B.INSTRUMENT]],
                    row[B.DAY_PRIOR_CLOSE], row[B.DAY_CLOSE], row[B.DAY_LISTED_VOLUME],
                    row[B.DAY_BLOCK_VOLUME], row[B.DAY_LISTED_TURNOVER],
                    row[B.DAY_BLOCK_TURNOVER]))
                continue
            order_id, account = orders(row[B.ORDER]), accounts(row[B.ACCOUNT])
            instrument, segment, side = (instruments[row[B.INSTRUMENT]], Segment(row[B.SEGMENT]),
                                         Side(row[B.SIDE]))
            price = row[B.PRICE]
            if kind == EventKind.ACCEPTED:
                order_type = OrderType(row[B.ACCEPTED_TYPE])
                out.append(OrderAccepted(
                    ts, order_id, account, instrument, segment, side, order_type,
                    TimeInForce(row[B.ACCEPTED_TIF]), None if price == NO_PRICE else price,
                    row[B.QTY], orders(row[B.ACCEPTED_TARGET])
                    if order_type == OrderType.TAKE else ""))
            elif kind == EventKind.CANCELLED:
                out.append(OrderCancelled(
                    ts, order_id, account, instrument, segment, side,
                    None if price == NO_PRICE else price, row[B.QTY], Reason(row[B.REASON]),
                    row[B.CANCELLED_FILLED]))
            elif kind == EventKind.EXPIRED:
                out.append(OrderExpired(ts, order_id, account, instrument, segment, side, price,
                                        row[B.QTY], row[B.EXPIRED_FILLED]))
            elif kind == EventKind.AMENDED:
                out.append(OrderAmended(ts, order_id, account, instrument, segment, side, price,
                                        row[B.QTY], bool(row[B.AMENDED_PRIORITY_KEPT]),
                                        row[B.AMENDED_OPEN_BEFORE]))
        return out

    # ------------------------------------------------------------------ queries

    def _index(self, instrument: str) -> int:
        name = instrument or self.instruments[0]
        try:
            return self._instrument_index[name]
        except KeyError:
            raise EngineConfigError(f"unknown instrument {name!r}") from None

    def best_bid(self, instrument: str = "", segment: Segment = Segment.LISTED):
        """(price in fen, open tonnes at that price) of the best bid, or None."""
        return self.book.best_bid(self._index(instrument), segment)

    def best_ask(self, instrument: str = "", segment: Segment = Segment.LISTED):
        """(price in fen, open tonnes at that price) of the best ask, or None."""
        return self.book.best_ask(self._index(instrument), segment)

    def depth(self, instrument: str = "", segment: Segment = Segment.LISTED,
              side: Side = Side.BUY, levels: int = 5) -> list[BookLevel]:
        """The best ``levels`` price levels of one side, best first."""
        return [BookLevel(*lv) for lv in self.book.depth(self._index(instrument), segment, side,
                                                          levels)]

    def resting(self, instrument: str = "", segment: Segment = Segment.LISTED,
                side: Side = Side.SELL, levels: int = 5) -> list[RestingOrder]:
        """The orders resting in the best ``levels`` price levels of one side, in priority
        order (best price first, then arrival): what a taker chooses a TAKE's target from.

        >>> from engine import Engine, NewOrder, TakeOrder, Side, parse_time
        >>> eng = Engine({"CEA": 6000}); t = parse_time("2024-03-04T10:00:00")
        >>> _ = eng.submit_many([NewOrder(t, "A", "a1", Side.SELL, qty=300, price=6010),
        ...                      NewOrder(t, "B", "b1", Side.SELL, qty=200, price=6010)])
        >>> [(o.order_id, o.price, o.open) for o in eng.resting(side=Side.SELL)]
        [('a1', 6010, 300), ('b1', 6010, 200)]
        >>> [type(e).__name__ for e in eng.submit(TakeOrder(t, "C", "c1", Side.BUY, 150, "b1"))]
        ['OrderAccepted', 'TradeExecuted']
        >>> [(o.order_id, o.open) for o in eng.resting(side=Side.SELL)]
        [('a1', 300), ('b1', 50)]
        """
        name = self.orders.name
        return [RestingOrder(name(ref), price, open_qty, self.accounts.name(account))
                for ref, price, open_qty, account in self.book.resting_in_levels(
                    self._index(instrument), segment, side, levels)]

    def quotes(self, account: str | None = None) -> list[QuoteState]:
        """Live negotiated block quotes (spec §3b), in the order made: with ``account``,
        the public ones and those it is a party to (what that account may see); without,
        every one."""
        who = NO_REF if account is None else self.accounts.find(account)
        name, acc = self.orders.name, self.accounts.name
        out = []
        for q in sorted(self.book.negotiations.live.values(), key=lambda q: q.seq):
            if account is not None and not (q.counterparty == NO_REF or who in (
                    q.maker, q.counterparty)):
                continue
            out.append(QuoteState(name(q.ref), self.instruments[q.instrument], acc(q.maker),
                                  acc(q.counterparty) if q.counterparty >= 0 else "",
                                  Side(q.side), q.price, q.qty, acc(q.proposer)))
        return out

    def band(self, instrument: str = "", segment: Segment = Segment.LISTED) -> tuple[int, int]:
        """Today's accepted limit prices (lower, upper) in fen, inclusive."""
        return self.book.band(self._index(instrument), segment)

    def order(self, order_id: str) -> OrderState | None:
        """Where an order stands now, or None if no order with that id was ever accepted."""
        status, reason, qty, filled, open_qty = self.book.order_state(self.orders.find(order_id))
        if status == OrderStatus.NONE:
            return None
        return OrderState(order_id, OrderStatus(status).name,
                          Reason(reason).name if reason else "", qty, filled, open_qty)

    def day(self) -> list[DayClosed] | None:
        """The current (or last) trading day's figures so far, one per instrument."""
        day = self.book.open_day()
        if day is None:
            return None
        number, figures, _ = day
        ts = number * DAY_US + DAY_CLOSE_US
        return [DayClosed(ts, date_of_day(number).isoformat(), name, *fig)
                for name, fig in zip(self.instruments, figures)]

    def day_in_progress(self) -> bool:
        day = self.book.open_day()
        return day is not None and day[2]

    def state_hash(self) -> str:
        return state_hash(self.book, len(self.orders))

    def check_invariants(self) -> None:
        """The book's invariants, and with accounts, that reservations match open orders."""
        self.book.check_invariants()
        if self.balances is not None:
            check_reservations(self.balances, self.book.reservations())


def _whole(x) -> int:
    """``x`` if it is an int (not a bool), else 0: a quantity or price that is not a whole
    number fails its check as one that is zero does."""
    return x if isinstance(x, int) and not isinstance(x, bool) else 0
