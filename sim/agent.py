"""Bring your own trading agent: one class, run in ``cea simulate`` or against ``cea serve``.

An agent trades one account. Subclass ``Agent`` and override the callbacks you need:

=====================  ====================================================================
``on_start()``         once, before the first step; the account's balances are known
``on_step(book)``      the clock: every decision step (``cea simulate``: every 5 simulated
                       minutes of the trading sessions; ``cea agent``: every ``--step``
                       seconds) with the instrument's LISTED book as it stands then
``on_book(book)``      the book changed (``cea agent``: every market-data update;
                       ``cea simulate``: once per step, just before ``on_step``)
``on_execution(fill)``  one of the agent's orders traded (a ``Fill``)
``on_order(update)``   one of its orders was accepted, rejected, cancelled, expired or
                       amended, or a cancel/amend was refused (an ``OrderUpdate``)
``on_day_close(day)``  a trading day ended: its closing price and volumes (a ``DayClose``)
``on_quote(update)``   a negotiated block quote it is a party to was made, countered or
                       ended (a ``QuoteUpdate``)
=====================  ====================================================================

From any callback it sends the wire's commands through its own methods: ``buy``/``sell``
(a NewOrder: LIMIT with a price, MARKET without; ``tif`` DAY, IOC or FOK; 100,000 t and more
go to the BLOCK segment, as for every order), ``cancel``, ``amend`` and ``cancel_all``
(MassCancel). A MARKET order is IOC (the exchange rejects any other MALFORMED). Prices
are integer fen (1 fen = 0.01 CNY = one tick), quantities integer tonnes. What it knows of
itself is kept up to date by the runner: ``now`` (exchange time, µs), ``cash`` and
``cash_available`` (fen), ``allowances`` and ``sellable`` (t), ``open_orders``, and
``pnl(mark)``.

The market's own trading modes (docs/rules.md §3a-§3b): ``take`` (a targeted take of one
order among the best five levels the book shows, ``book.bid_orders``/``book.ask_orders``)
and the negotiated block agreements, ``block_quote``, ``block_counter``, ``block_accept``
and ``block_withdraw`` (the live quotes it may see: ``book.quotes``). They run in process
(``cea simulate``); a runner that cannot send them (``--via-server``, ``cea agent``)
refuses them with an ``AgentError`` saying so.

The simulator is deterministic, so an agent that draws its randomness from ``self.rng``
(seeded from the simulation's seed and the agent's name) is reproducible too.

>>> class Quoter(Agent):
...     def on_step(self, book):
...         if book.mid is not None and not self.open_orders:
...             self.buy(1_000, book.mid - 10)
...             self.sell(1_000, book.mid + 10)
>>> q = Quoter(); q.bind(RecordingSender(), "US01", "CEA", cash=10_000_000, allowances=5_000)
>>> q.on_step(Book("CEA", 0, [(6000, 100, 1)], [(6010, 100, 1)], None, 6000))
>>> [(c.side.name, c.qty, c.price) for c in q.sender.sent]
[('BUY', 1000, 5995), ('SELL', 1000, 6015)]
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.codes import Segment, Side, TimeInForce
from engine.rules import band_limits


# ---------------------------------------------------------------------- what agents see

@dataclass
class Book:
    """One instrument's LISTED book as an agent sees it (prices in fen).

    ``bids``/``asks``: up to five levels, best first, each ``(price, qty, orders)``.
    """

    instrument: str
    now: int  # exchange time, µs since 1970-01-01 (Shanghai local)
    bids: list
    asks: list
    last: int | None  # the day's last LISTED trade price, None before one
    prior_close: int  # today's band reference
    status: str = "OPEN"  # OPEN, BREAK, CLOSED or HALTED
    volume: int = 0  # the day's LISTED tonnes so far
    #: the resting orders of the best five levels, best first, each a ``ShownOrder`` (what
    #: a take picks from; in process only, empty elsewhere)
    bid_orders: list = field(default_factory=list)
    ask_orders: list = field(default_factory=list)
    #: the live negotiated block quotes the agent may see (its own negotiations and the
    #: public board), each a ``QuoteView``, in the order made (in process only)
    quotes: list = field(default_factory=list)

    @property
    def best_bid(self) -> int | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> int | None:
        return self.asks[0][0] if self.asks else None

    @property
    def mid(self) -> int | None:
        """Midpoint of the best bid and offer, rounded down to the tick; None if a side is
        empty."""
        if not self.bids or not self.asks:
            return None
        return (self.bids[0][0] + self.asks[0][0]) // 2

    @property
    def band(self) -> tuple[int, int]:
        """Today's accepted LISTED limit prices (low, high), inclusive (±10 %)."""
        return band_limits(self.prior_close, Segment.LISTED)

    @property
    def block_band(self) -> tuple[int, int]:
        """Today's accepted BLOCK limit prices (±30 %)."""
        return band_limits(self.prior_close, Segment.BLOCK)


@dataclass(frozen=True)
class ShownOrder:
    """One resting LISTED order as the book shows it (for a take): its id, price (fen),
    open quantity (t), and whether it is the agent's own (which it may not take)."""

    order_id: str
    price: int
    qty: int
    own: bool


@dataclass(frozen=True)
class QuoteView:
    """A live negotiated block quote as the agent sees it (spec §3b).

    ``side`` is the maker's side; ``mine``: the agent made it; ``public``: on the board (no
    counterparty yet); ``other``: the other party's account ("" on the board: a public
    quote does not name its maker, and has no counterparty yet); ``my_turn``: the agent
    did not make the terms now on the table, so it may accept them."""

    quote_id: str
    side: Side
    price: int  # fen
    qty: int  # t
    mine: bool
    public: bool
    other: str
    my_turn: bool

    @property
    def my_side(self) -> Side:
        """The side the agent takes in it: the maker's, or the other one."""
        return self.side if self.mine else (Side.SELL if self.side == Side.BUY else Side.BUY)


@dataclass(frozen=True)
class QuoteUpdate:
    """A negotiated block quote the agent is a party to changed (``on_quote``).

    ``status``: QUOTED (made), COUNTERED, ACCEPTED (its trade comes as a ``Fill`` with the
    quote's id), WITHDRAWN or EXPIRED (at 15:00); ``by``: the account that made these terms
    or ended it ("" on expiry); the terms are the latest (the maker's ``side``)."""

    quote_id: str
    status: str
    side: Side
    price: int
    qty: int
    mine: bool
    counterparty: str
    by: str
    ts: int


@dataclass(frozen=True)
class Fill:
    """One trade of one of the agent's orders."""

    order_id: str
    side: Side
    price: int  # fen
    qty: int  # t
    trade_id: int
    ts: int  # µs
    segment: Segment
    open_qty: int  # the order's open quantity after the trade


@dataclass(frozen=True)
class OrderUpdate:
    """Something happened to one of the agent's orders (other than a fill).

    ``status``: ACCEPTED, REJECTED, CANCELLED, EXPIRED, AMENDED, CANCEL_REJECTED or
    AMEND_REJECTED; ``reason`` the reject or cancel reason's name ("" when none).
    """

    order_id: str
    status: str
    reason: str
    open_qty: int
    ts: int
    #: the command refused or answered: NEW, TAKE, BLOCK_QUOTE, BLOCK_COUNTER, BLOCK_ACCEPT
    #: or BLOCK_WITHDRAW ("" where the status says it: CANCEL_REJECTED, AMEND_REJECTED)
    action: str = ""


@dataclass(frozen=True)
class DayClose:
    date: str  # YYYY-MM-DD
    close: int  # fen: the day's LISTED VWAP (the prior close when nothing traded)
    listed_volume: int
    block_volume: int


@dataclass
class OpenOrder:
    side: Side
    price: int | None
    open_qty: int


@dataclass(frozen=True)
class Command:
    """A command as an agent sent it (``RecordingSender`` keeps these)."""

    action: str  # NEW, CANCEL, AMEND, CANCEL_ALL, TAKE or BLOCK_QUOTE .. BLOCK_WITHDRAW
    order_id: str = ""  # the order's or the quote's id
    side: Side | None = None
    qty: int = 0
    price: int | None = None
    tif: TimeInForce = TimeInForce.DAY
    target: str = ""  # TAKE: the order taken from
    counterparty: str = ""  # BLOCK_QUOTE: the account addressed ("" public)


#: what a runner without the market's own trading modes says (``Sender``'s defaults)
MODES_UNSUPPORTED = ("takes and negotiated block agreements are not available with this "
                     "runner yet (the gateway's clients cannot send them here); run the "
                     "agent in process (cea simulate without --via-server)")


class Sender:
    """Where an agent's commands go; each runner provides one. ``new`` returns the order id.

    ``take_order`` and the ``block_*`` methods (the market's own trading modes) refuse by
    default: a runner that supports them overrides them."""

    def new(self, agent: "Agent", side: Side, qty: int, price: int | None,
            tif: TimeInForce) -> str:
        raise NotImplementedError

    def cancel(self, agent: "Agent", order_id: str) -> None:
        raise NotImplementedError

    def amend(self, agent: "Agent", order_id: str, price: int, qty: int) -> None:
        raise NotImplementedError

    def cancel_all(self, agent: "Agent", side: Side | None) -> None:
        for order_id, o in list(agent.open_orders.items()):
            if side is None or o.side == side:
                self.cancel(agent, order_id)

    def take_order(self, agent: "Agent", side: Side, qty: int, target: str) -> str:
        raise AgentError(MODES_UNSUPPORTED)

    def block_quote(self, agent: "Agent", side: Side, qty: int, price: int,
                    counterparty: str | None) -> str:
        raise AgentError(MODES_UNSUPPORTED)

    def block_counter(self, agent: "Agent", quote_id: str, price: int | None,
                      qty: int | None) -> None:
        raise AgentError(MODES_UNSUPPORTED)

    def block_accept(self, agent: "Agent", quote_id: str, price: int | None,
                     qty: int | None) -> None:
        raise AgentError(MODES_UNSUPPORTED)

    def block_withdraw(self, agent: "Agent", quote_id: str) -> None:
        raise AgentError(MODES_UNSUPPORTED)


class RecordingSender(Sender):
    """Keeps what it is sent (``sent``); for tests and dry runs."""

    def __init__(self):
        self.sent: list[Command] = []

    def new(self, agent, side, qty, price, tif) -> str:
        order_id = f"{agent.account}.{len(self.sent) + 1}"
        self.sent.append(Command("NEW", order_id, side, qty, price, tif))
        return order_id

    def cancel(self, agent, order_id) -> None:
        self.sent.append(Command("CANCEL", order_id))

    def amend(self, agent, order_id, price, qty) -> None:
        self.sent.append(Command("AMEND", order_id, qty=qty, price=price))

    def take_order(self, agent, side, qty, target) -> str:
        order_id = f"{agent.account}.{len(self.sent) + 1}"
        self.sent.append(Command("TAKE", order_id, side, qty, target=target))
        return order_id

    def block_quote(self, agent, side, qty, price, counterparty) -> str:
        quote_id = f"{agent.account}.{len(self.sent) + 1}"
        self.sent.append(Command("BLOCK_QUOTE", quote_id, side, qty, price,
                                 counterparty=counterparty or ""))
        return quote_id

    def block_counter(self, agent, quote_id, price, qty) -> None:
        self.sent.append(Command("BLOCK_COUNTER", quote_id, qty=qty or 0, price=price))

    def block_accept(self, agent, quote_id, price, qty) -> None:
        self.sent.append(Command("BLOCK_ACCEPT", quote_id, qty=qty or 0, price=price))

    def block_withdraw(self, agent, quote_id) -> None:
        self.sent.append(Command("BLOCK_WITHDRAW", quote_id))


# ---------------------------------------------------------------------- the base class

class AgentError(ValueError):
    """An agent asked for something impossible (a bad quantity, price or time in force), or
    its class cannot be loaded."""


_TIF = {"DAY": TimeInForce.DAY, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
_SIDE = {"BUY": Side.BUY, "SELL": Side.SELL}


def _whole(name: str, value, optional: bool = False) -> int | None:
    """``value`` as a positive whole number (fen or tonnes), or AgentError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        unit = "fen" if name == "price" else "tonnes"
        raise AgentError(f"{name} must be a positive whole number of {unit}, not {value!r}")
    return int(value)


def _side(side) -> Side:
    side = _SIDE.get(side, side) if isinstance(side, str) else side
    if isinstance(side, bool) or side not in (Side.BUY, Side.SELL):
        raise AgentError(f"side must be BUY or SELL, not {side!r}")
    return Side(side)


class Agent:
    """A trading agent for one account (see the module's documentation).

    Keyword arguments given to the constructor (``params`` in the simulation's
    configuration, ``--param KEY=VALUE`` for ``cea agent``) become attributes.
    """

    def __init__(self, **params):
        for key, value in params.items():
            setattr(self, key, value)
        self.account = ""
        self.instrument = ""
        self.now = 0
        self.cash = self.cash_available = 0
        self.allowances = self.sellable = 0
        self.opening_cash = self.opening_allowances = 0
        self.last_price: int | None = None
        self.open_orders: dict[str, OpenOrder] = {}
        self.orders_sent = 0
        self.trades = 0
        self.bought = self.sold = 0  # tonnes
        self.rng = np.random.default_rng(0)
        self.sender: Sender | None = None

    # ---- the runner's side

    def bind(self, sender: Sender, account: str, instrument: str, *, cash: int,
             allowances: int, seed: int = 0) -> None:
        """Attach the agent to its account (called by the runner, before ``on_start``)."""
        self.sender, self.account, self.instrument = sender, account, instrument
        self.cash = self.cash_available = self.opening_cash = int(cash)
        self.allowances = self.sellable = self.opening_allowances = int(allowances)
        self.rng = np.random.default_rng([seed, *account.encode()])

    def _filled(self, fill: Fill) -> None:
        self.trades += 1
        o = self.open_orders.get(fill.order_id)
        if o is not None:
            o.open_qty = fill.open_qty
            if fill.open_qty <= 0:
                del self.open_orders[fill.order_id]
        if fill.side == Side.BUY:
            self.bought += fill.qty
        else:
            self.sold += fill.qty
        if fill.segment == Segment.LISTED:
            self.last_price = fill.price

    def _updated(self, update: OrderUpdate) -> None:
        if update.status in ("REJECTED", "CANCELLED", "EXPIRED"):
            self.open_orders.pop(update.order_id, None)
        elif update.status in ("ACCEPTED", "AMENDED"):
            o = self.open_orders.get(update.order_id)
            if o is not None:
                o.open_qty = update.open_qty
                if update.open_qty <= 0:
                    del self.open_orders[update.order_id]

    # ---- commands (the wire's: NewOrder, Cancel, Amend, MassCancel)

    def buy(self, qty: int, price: int | None = None, tif: str | TimeInForce = "DAY") -> str:
        """Send a buy order: LIMIT at ``price`` fen, MARKET when ``price`` is None.
        Returns its order id."""
        return self._new(Side.BUY, qty, price, tif)

    def sell(self, qty: int, price: int | None = None, tif: str | TimeInForce = "DAY") -> str:
        """Send a sell order (see ``buy``)."""
        return self._new(Side.SELL, qty, price, tif)

    def _new(self, side: Side, qty, price, tif) -> str:
        if self.sender is None:
            raise AgentError("the agent is not bound to an account yet (the runner binds it)")
        if isinstance(qty, bool) or not isinstance(qty, (int, np.integer)) or qty <= 0:
            raise AgentError(f"qty must be a positive whole number of tonnes, not {qty!r}")
        if price is not None and (isinstance(price, bool) or
                                  not isinstance(price, (int, np.integer)) or price <= 0):
            raise AgentError(f"price must be a positive whole number of fen, not {price!r}")
        tif = _TIF.get(tif, tif) if isinstance(tif, str) else tif
        if tif not in (TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK):
            raise AgentError(f"tif must be DAY, IOC or FOK, not {tif!r}")
        if price is None and tif == TimeInForce.DAY:
            tif = TimeInForce.IOC  # a MARKET order never rests: IOC is the only kind allowed
        order_id = self.sender.new(self, side, int(qty), None if price is None else int(price),
                                   TimeInForce(tif))
        self.orders_sent += 1
        if tif == TimeInForce.DAY:
            self.open_orders[order_id] = OpenOrder(side, price, int(qty))
        return order_id

    def cancel(self, order_id: str) -> None:
        """Cancel one of the agent's orders (its open quantity)."""
        self.sender.cancel(self, order_id)

    def amend(self, order_id: str, price: int, qty: int) -> None:
        """Change an open order's price and open quantity (a larger quantity or a new price
        loses its time priority, as the engine's rules say)."""
        self.sender.amend(self, order_id, int(price), int(qty))

    def cancel_all(self, side: Side | None = None) -> None:
        """Cancel every open order of the agent (of one side if given)."""
        self.sender.cancel_all(self, side)

    # ---- the market's own trading modes (docs/rules.md §3a-§3b)

    def _modes(self, name: str):
        if self.sender is None:
            raise AgentError("the agent is not bound to an account yet (the runner binds it)")
        fn = getattr(self.sender, name, None)
        if fn is None:
            raise AgentError(MODES_UNSUPPORTED)
        return fn

    def take(self, side: str | Side, qty: int, target: str) -> str:
        """A targeted take (listed agreement trading, spec §3a): trade ``qty`` t now with
        the resting LISTED order ``target`` (an ``order_id`` of ``book.ask_orders`` to buy,
        ``book.bid_orders`` to sell: the best five levels, not its own), at that order's
        price. Returns the take's order id; the trade comes as a ``Fill``, a refusal (the
        target gone, filled or out of the best five by then) through ``on_order``."""
        side, qty = _side(side), _whole("qty", qty)
        if not isinstance(target, str) or not target:
            raise AgentError(f"target must be an order id, not {target!r}")
        order_id = self._modes("take_order")(self, side, qty, target)
        self.orders_sent += 1
        return order_id

    def block_quote(self, side: str | Side, qty: int, price: int,
                    counterparty: str | None = None) -> str:
        """Propose a negotiated block agreement (spec §3b): ``side``, ``qty`` t (100,000
        or more) at ``price`` fen (within the BLOCK band), to the account ``counterparty``
        or, without one, on the public board. 13:00-15:00; the terms reserve cash or
        allowances as a block order would. Returns the quote's id (from the order ids'
        space); what follows comes through ``on_quote``."""
        side, qty, price = _side(side), _whole("qty", qty), _whole("price", price)
        if counterparty is not None and (not isinstance(counterparty, str) or not counterparty):
            raise AgentError(f"counterparty must be an account name, not {counterparty!r}")
        quote_id = self._modes("block_quote")(self, side, qty, price, counterparty)
        self.orders_sent += 1
        return quote_id

    def block_counter(self, quote_id: str, price: int | None = None,
                      qty: int | None = None) -> None:
        """New terms on a live quote it is a party to (or finds on the board): a price
        and/or a quantity (what is not given stays)."""
        price, qty = _whole("price", price, True), _whole("qty", qty, True)
        if price is None and qty is None:
            raise AgentError("block_counter needs a price or a qty")
        self._modes("block_counter")(self, quote_id, price, qty)

    def block_accept(self, quote_id: str, price: int | None = None,
                     qty: int | None = None) -> None:
        """Accept the other party's latest terms: one BLOCK trade. Stating ``price`` and
        ``qty`` makes sure they are the terms accepted (TERMS_CHANGED otherwise)."""
        price, qty = _whole("price", price, True), _whole("qty", qty, True)
        self._modes("block_accept")(self, quote_id, price, qty)

    def block_withdraw(self, quote_id: str) -> None:
        """End a negotiation it is a party to (a public quote: only its maker)."""
        self._modes("block_withdraw")(self, quote_id)

    # ---- what it holds

    @property
    def position(self) -> int:
        """Allowances held (t)."""
        return self.allowances

    def pnl(self, mark: int | None = None) -> int:
        """Profit and loss in fen since the start: the change in cash (fees included) plus
        the change in allowances valued at ``mark`` fen/t (default: the last price seen)."""
        mark = self.last_price if mark is None else mark
        return (self.cash - self.opening_cash) + \
            (self.allowances - self.opening_allowances) * (mark or 0)

    # ---- callbacks (override what you need)

    def on_start(self) -> None:
        """Once, before the first step."""

    def on_step(self, book: Book) -> None:
        """The clock: a decision step, with the book as it stands."""

    def on_book(self, book: Book) -> None:
        """The book changed."""

    def on_execution(self, fill: Fill) -> None:
        """One of the agent's orders traded."""

    def on_order(self, update: OrderUpdate) -> None:
        """One of the agent's orders changed state (other than a fill)."""

    def on_day_close(self, day: DayClose) -> None:
        """A trading day ended."""

    def on_quote(self, update: QuoteUpdate) -> None:
        """A negotiated block quote it is a party to was made, countered or ended."""


# ---------------------------------------------------------------------- runners' helpers

def call(agent: Agent, callback: str, *args) -> None:
    """Run one of ``agent``'s callbacks; an exception in it becomes an ``AgentError``
    naming the agent, the callback and the line that raised."""
    try:
        getattr(agent, callback)(*args)
    except Exception as e:  # noqa: BLE001 - the user's code: say where it failed
        frames = traceback.extract_tb(e.__traceback__)
        where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        raise AgentError(f"agent {agent.account}: {type(agent).__name__}.{callback} raised "
                         f"{type(e).__name__}: {e}{where}") from e


def notify_fill(agent: Agent, fill: Fill) -> None:
    """Book a fill in the agent's state, then tell the agent."""
    agent._filled(fill)
    call(agent, "on_execution", fill)


def notify_order(agent: Agent, update: OrderUpdate) -> None:
    agent._updated(update)
    call(agent, "on_order", update)


def notify_quote(agent: Agent, update: QuoteUpdate) -> None:
    call(agent, "on_quote", update)


# ---------------------------------------------------------------------- loading

_by_path: dict[Path, object] = {}  # the user modules loaded from a file, by their path


def load_agent_class(spec: str) -> type[Agent]:
    """The class named by ``module:Class`` (an importable module, or a path to a ``.py``
    file); the working directory is importable. Raises ``AgentError`` saying what is wrong.

    >>> load_agent_class("sim.agent:Agent").__name__
    'Agent'
    """
    module_name, sep, class_name = spec.rpartition(":")
    if not sep or not module_name or not class_name.isidentifier():
        raise AgentError(f"agent {spec!r}: expected MODULE:CLASS, e.g. my_agent:MyAgent or "
                         "path/to/my_agent.py:MyAgent")
    try:
        if module_name.endswith(".py") or "/" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise AgentError(f"agent {spec!r}: no file {path}")
            if path.suffix != ".py":
                raise AgentError(f"agent {spec!r}: {path} is not a .py file")
            module = _by_path.get(path.resolve())
            if module is None:  # executed once: the configuration's checks and the run
                name = f"cea_user_agent_{path.stem}"  # get the same class
                loader = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(loader)
                sys.modules[name] = module
                loader.loader.exec_module(module)
                _by_path[path.resolve()] = module
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except AgentError:
        raise
    except ImportError as e:
        raise AgentError(f"agent {spec!r}: cannot import {module_name}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a user's module failed at import: say so
        raise AgentError(f"agent {spec!r}: importing {module_name} failed: "
                         f"{type(e).__name__}: {e}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise AgentError(f"agent {spec!r}: {module_name} has no {class_name}")
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise AgentError(f"agent {spec!r}: {class_name} is not a subclass of sim.agent.Agent")
    return cls


def make_agent(spec: str, params: dict | None = None) -> Agent:
    """An instance of ``spec``'s class with ``params`` as keyword arguments."""
    cls = load_agent_class(spec)
    try:
        return cls(**(params or {}))
    except Exception as e:  # noqa: BLE001 - the user's constructor: say which and why
        raise AgentError(f"agent {spec!r}: {cls.__name__}({params or ''}) failed: "
                         f"{type(e).__name__}: {e}") from None


__all__ = ["Agent", "AgentError", "Book", "DayClose", "Fill", "OrderUpdate", "OpenOrder",
           "QuoteUpdate", "QuoteView", "RecordingSender", "Sender", "ShownOrder",
           "load_agent_class", "make_agent"]
