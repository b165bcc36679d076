"""CEA matching engine: price-time continuous double auction with the national carbon market's
rules (tick 0.01 CNY, whole tonnes, LISTED and BLOCK segments with their bands and sessions,
closing price as the day's LISTED VWAP).

Two books behind one interface: a Numba book over preallocated arrays (``engine.fast``) and a
pure-Python reference book (``engine.reference``) that serves as its oracle. ``Engine`` is the
embedding API; ``engine.messages`` holds its command and event Structs.
"""

from .accounts import AccountError, Accounts, RiskConfig
from .api import Engine, Names
from .codes import (
    AccountType, Action, EventKind, OrderStatus, OrderType, QuoteEnd, Reason, Segment, Side, Stp,
    TimeInForce,
)
from .errors import BookIntegrityError, EngineConfigError
from .messages import (
    AccountBalance, HoldingBalance, AmendOrder, BookLevel, CancelOrder, ClockTick, Command, DayClosed, Event, NewOrder, TakeOrder,
    BlockQuote, BlockCounter, BlockAccept, BlockWithdraw, QuoteUpdated, QuoteEnded,
    OrderAccepted, OrderAmended, OrderCancelled, OrderExpired, OrderRejected, OrderState,
    TradeExecuted,
)
from .tradingdays import TradingCalendar, format_time, parse_time

__all__ = [
    "AccountBalance", "AccountError", "AccountType", "Accounts", "HoldingBalance", "RiskConfig",
    "Action", "AmendOrder", "BookIntegrityError", "BookLevel", "CancelOrder", "ClockTick", "TakeOrder", "BlockQuote", "BlockCounter", "BlockAccept",
    "BlockWithdraw", "QuoteUpdated", "QuoteEnded",
    "Command", "DayClosed", "Engine", "EngineConfigError", "Event", "EventKind", "Names",
    "NewOrder", "OrderAccepted", "OrderAmended", "OrderCancelled", "OrderExpired",
    "OrderRejected", "OrderState", "OrderStatus", "OrderType", "QuoteEnd", "Reason", "Segment", "Side",
    "Stp", "TimeInForce", "TradeExecuted", "TradingCalendar", "format_time", "parse_time",
]
