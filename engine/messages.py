"""Commands and events at the engine's edge, as msgspec Structs: the schema is the types.

Commands are imperative (``NewOrder``, ``CancelOrder``, ``AmendOrder``, ``TakeOrder``,
``ClockTick``);
events are past-tense facts (``OrderAccepted``, ``OrderRejected``, ``TradeExecuted``,
``OrderCancelled``, ``OrderExpired``, ``OrderAmended``, ``DayClosed``). Every Struct is tagged
by its class name (field ``kind``), so a list of mixed messages encodes and decodes as one union. Units:
prices in fen, quantities in tonnes, times in microseconds of exchange local time
(``engine.tradingdays.parse_time`` turns ISO text into one).

>>> import msgspec
>>> cmd = NewOrder(ts_us=1709544600000000, account="A001", order_id="o1", side=Side.BUY,
...                qty=500, price=6010)
>>> msgspec.json.decode(msgspec.json.encode(cmd), type=Command) == cmd
True
"""

from __future__ import annotations

from typing import Union

import msgspec

from .codes import OrderType, QuoteEnd, Reason, Segment, Side, Stp, TimeInForce


class NewOrder(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """Enter an order. ``price`` in fen for LIMIT, None for MARKET (spec §3)."""

    ts_us: int
    account: str
    order_id: str
    side: Side
    qty: int
    price: int | None = None
    type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.DAY
    stp: Stp = Stp.CANCEL_NEWEST
    instrument: str = ""  # empty: the engine's first instrument


class CancelOrder(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """Remove a resting order's open quantity."""

    ts_us: int
    account: str
    order_id: str


class AmendOrder(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """Give a resting order a new limit price and open quantity (spec §5)."""

    ts_us: int
    account: str
    order_id: str
    price: int
    qty: int


class TakeOrder(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """A targeted take (spec §3a): trade exactly ``qty`` with the resting LISTED order
    ``target`` (its order id), on the opposite side, at its price. ``order_id`` is the take's
    own new id."""

    ts_us: int
    account: str
    order_id: str
    side: Side
    qty: int
    target: str
    instrument: str = ""  # empty: the engine's first instrument


class BlockQuote(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """Propose a negotiated block agreement (spec §3b): ``side``, ``qty`` (100,000 ..
    100,000,000 t) at ``price`` (fen, within the BLOCK band), to ``counterparty`` (an
    account) or, empty, to every participant (the public board). ``quote_id`` is new, from
    the order ids' space."""

    ts_us: int
    account: str
    quote_id: str
    side: Side
    qty: int
    price: int
    counterparty: str = ""
    instrument: str = ""


class BlockCounter(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """New terms on a live quote, from either party: a new ``price`` and/or ``qty`` (None:
    as now)."""

    ts_us: int
    account: str
    quote_id: str
    price: int | None = None
    qty: int | None = None


class BlockAccept(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """Accept the latest terms of a quote (made by the other party): one BLOCK trade.
    ``price`` and ``qty``, when given, must be those terms (else TERMS_CHANGED)."""

    ts_us: int
    account: str
    quote_id: str
    price: int | None = None
    qty: int | None = None


class BlockWithdraw(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """End a negotiation (either party; a public quote: its maker)."""

    ts_us: int
    account: str
    quote_id: str


class ClockTick(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """Move the clock only (ends the day when it reaches 15:00)."""

    ts_us: int


Command = Union[NewOrder, CancelOrder, AmendOrder, TakeOrder, BlockQuote, BlockCounter,
                BlockAccept, BlockWithdraw, ClockTick]


class OrderAccepted(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    ts_us: int
    order_id: str
    account: str
    instrument: str
    segment: Segment
    side: Side
    type: OrderType
    tif: TimeInForce
    price: int | None
    qty: int
    target: str = ""  # a TAKE's target order id


class OrderRejected(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """A command failed a check and changed nothing. ``index``: its position in the batch."""

    ts_us: int
    index: int
    action: str
    order_id: str
    account: str
    reason: Reason


class TradeExecuted(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """Two orders traded at the resting order's price. ``*_open``: open quantity after."""

    ts_us: int
    trade_id: int
    instrument: str
    segment: Segment
    price: int
    qty: int
    buy_order_id: str
    sell_order_id: str
    buy_account: str
    sell_account: str
    aggressor: Side
    buy_open: int
    sell_open: int


class _OrderFact(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """Fields every event about one order carries (not sent by itself)."""

    ts_us: int
    order_id: str
    account: str
    instrument: str
    segment: Segment
    side: Side
    price: int | None  # None: a MARKET order
    qty: int


class OrderCancelled(_OrderFact):
    """An order's open quantity ``qty`` was removed; ``filled``: what it had traded."""

    reason: Reason
    filled: int


class OrderExpired(_OrderFact):
    """An order still resting at 15:00 expired with ``qty`` open."""

    filled: int


class OrderAmended(_OrderFact):
    """An amend took effect: new ``price`` and open ``qty``; ``priority_kept`` per spec §5."""

    priority_kept: bool
    previous_open: int


class DayClosed(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """A trading day ended: its closing price (LISTED VWAP, half up) and totals.

    Turnover in fen; ``date`` ISO; ``ts_us`` is 15:00 of that day.
    """

    ts_us: int
    date: str
    instrument: str
    prior_close: int
    close: int
    listed_volume: int
    block_volume: int
    listed_turnover: int
    block_turnover: int


class QuoteUpdated(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """A block quote was made (``action`` BLOCK_QUOTE) or countered (BLOCK_COUNTER): its
    terms now, made by ``by``. ``counterparty`` is empty while the quote is public;
    ``side`` is the maker's."""

    ts_us: int
    quote_id: str
    instrument: str
    maker: str
    counterparty: str
    side: Side
    price: int
    qty: int
    action: str
    by: str


class QuoteEnded(msgspec.Struct, frozen=True, tag=True, tag_field="kind"):
    """A block quote ended: ``how`` ACCEPTED (its TRADE just before), WITHDRAWN or EXPIRED
    (at 15:00), ``by`` whom (empty on expiry); the terms last on the table."""

    ts_us: int
    quote_id: str
    instrument: str
    maker: str
    counterparty: str
    side: Side
    price: int
    qty: int
    how: QuoteEnd
    by: str


Event = Union[
    OrderAccepted, OrderRejected, TradeExecuted, OrderCancelled, OrderExpired, OrderAmended,
    DayClosed, QuoteUpdated, QuoteEnded,
]


class OrderState(msgspec.Struct, frozen=True):
    """Where an order stands now (``engine.api.Engine.order``)."""

    order_id: str
    status: str
    reason: str
    qty: int
    filled: int
    open: int


class RestingOrder(msgspec.Struct, frozen=True, array_like=True):
    """One order resting in the book (``engine.api.Engine.resting``): its id, price in fen,
    open tonnes and account."""

    order_id: str
    price: int
    open: int
    account: str


class QuoteState(msgspec.Struct, frozen=True):
    """A live negotiated block quote (``engine.api.Engine.quotes``): the maker's side, the
    terms now and who made them; ``counterparty`` empty while public."""

    quote_id: str
    instrument: str
    maker: str
    counterparty: str
    side: Side
    price: int
    qty: int
    by: str


class BookLevel(msgspec.Struct, frozen=True, array_like=True):
    """One price level of depth: price in fen, open tonnes, number of orders."""

    price: int
    qty: int
    orders: int


class HoldingBalance(msgspec.Struct, frozen=True):
    """An account's allowances of one instrument (tonnes): held, reserved for open sells,
    bought today (sellable T+1), and sellable now."""

    instrument: str
    total: int
    reserved: int
    pending: int
    sellable: int


class AccountBalance(msgspec.Struct, frozen=True):
    """An account's cash in fen (total, reserved for open buys, available for new orders,
    withdrawable today) and its holdings (``engine.api.Engine.balance``)."""

    account: str
    type: str
    frozen: bool
    cash: int
    cash_reserved: int
    cash_available: int
    withdrawable: int
    holdings: list[HoldingBalance]
