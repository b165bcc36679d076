"""The engine's vocabulary as integer codes, shared by both books, the wire and the journal.

Every value is explicit and is never reordered or reused: the codes are written into command
and event arrays, journals and wire frames. Numba reads ``IntEnum`` members as integer
constants, so the jitted kernels import these same names (see ``tests/engine/test_codes.py``).

>>> Side.BUY, int(Side.SELL)
(<Side.BUY: 1>, 2)
>>> Reason.PRICE_OUTSIDE_BAND.name
'PRICE_OUTSIDE_BAND'
"""

from enum import IntEnum


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2
    TAKE = 3  # a targeted take (Action.TAKE): trades at its target's price, never rests


class TimeInForce(IntEnum):
    DAY = 1
    IOC = 2
    FOK = 3


class Stp(IntEnum):
    """Self-trade prevention mode (spec §4); CANCEL_NEWEST is the default."""

    CANCEL_NEWEST = 1
    CANCEL_OLDEST = 2
    CANCEL_BOTH = 3


class Segment(IntEnum):
    """Trading mode an order belongs to, fixed at entry by its quantity (spec §2)."""

    LISTED = 0
    BLOCK = 1


class Action(IntEnum):
    """Command action. TICK only moves the clock (used to end a day or by a timer)."""

    NEW = 1
    CANCEL = 2
    AMEND = 3
    TICK = 4
    TAKE = 5  # a targeted take: trade with one named resting LISTED order (spec §3a)
    # negotiated block agreements (spec §3b), beside the BLOCK book
    BLOCK_QUOTE = 6  # propose terms: side, price, qty, to one counterparty or to all
    BLOCK_COUNTER = 7  # new terms on a live quote, from either party
    BLOCK_ACCEPT = 8  # the party that did not make the latest terms accepts them: a trade
    BLOCK_WITHDRAW = 10  # either party ends the negotiation
    UNKNOWN = 9  # the row named an action we do not know: rejected MALFORMED


class Reason(IntEnum):
    """Why a command was rejected or an order cancelled (spec §7). 0 means none."""

    NONE = 0
    # rejects, in the spec's order of checks for NEW
    MALFORMED = 1
    INVALID_QTY = 2
    INVALID_PRICE = 3
    DUPLICATE_ORDER_ID = 4
    MARKET_CLOSED = 5
    UNKNOWN_ORDER = 6
    PRICE_OUTSIDE_BAND = 7
    # rejects of the risk stage (accounts on), checked after every rule above
    INSUFFICIENT_FUNDS = 8
    INSUFFICIENT_ALLOWANCES = 9
    POSITION_LIMIT = 10
    UNKNOWN_ACCOUNT = 11
    ACCOUNT_FROZEN = 12
    ACCOUNT_NOT_ADMITTED = 13
    # rejects of a TAKE's target, after MARKET_CLOSED and before the risk stage (spec §3a)
    UNKNOWN_TARGET = 14  # not a live order of this instrument
    TARGET_SAME_SIDE = 15  # on the taker's own side
    TARGET_NOT_LISTED = 16  # rests in the BLOCK book
    TARGET_NOT_IN_BEST_FIVE = 17  # priced beyond the best five levels of its side
    TARGET_OWN_ORDER = 18  # the taker's own account's order (self-trade)
    TARGET_QTY_EXCEEDED = 19  # more than the target's open quantity
    # cancellations of accepted orders
    USER = 20
    IOC_REMAINDER = 21
    NO_LIQUIDITY = 22
    FOK_NOT_FILLABLE = 23
    SELF_TRADE = 24
    # rejects of a negotiated block agreement's commands (spec §3b)
    UNKNOWN_QUOTE = 30  # not a live quote, or the account is not a party to it
    UNKNOWN_COUNTERPARTY = 31  # a quote addressed to its maker, or (accounts on) to nobody
    NOT_YOUR_TURN = 32  # accepting the terms one made oneself
    TERMS_CHANGED = 33  # an accept whose stated terms are not the latest


class AccountType(IntEnum):
    """Participant types of the market (docs/rules.md §10)."""

    COVERED_ENTITY = 1  # 重点排放单位: the only traders admitted through 2024
    INSTITUTION = 2
    INDIVIDUAL = 3


class OrderStatus(IntEnum):
    """Where an accepted order stands. RESTING is open in the book."""

    NONE = 0  # never accepted
    RESTING = 1
    FILLED = 2
    CANCELLED = 3
    EXPIRED = 4


class EventKind(IntEnum):
    """What an event row reports. Field meanings per kind: ``engine.batch``."""

    ACCEPTED = 1  # a NEW passed every check and entered matching
    REJECTED = 2  # a command failed a check and changed nothing
    TRADE = 3  # two orders traded
    CANCELLED = 4  # an order's open quantity was removed (reason says why)
    EXPIRED = 5  # an order still resting at 15:00 expired
    AMENDED = 6  # an AMEND was applied to a resting order
    DAY_CLOSED = 7  # a trading day ended: its closing price and totals
    QUOTE = 8  # a block quote was made or countered: its terms now
    QUOTE_ENDED = 9  # a block quote ended: accepted (after its TRADE), withdrawn or expired


class QuoteEnd(IntEnum):
    """How a negotiated block quote ended (QUOTE_ENDED events)."""

    ACCEPTED = 1
    WITHDRAWN = 2
    EXPIRED = 3  # open at 15:00


#: Sentinel for "no price" (MARKET orders, empty sides). Never a valid price.
NO_PRICE = -1
#: Sentinel for "no time": the row's time did not parse.
NO_TIME = -(2**62)
#: A price too large to be in any band, used for prices that do not fit in int64.
HUGE_PRICE = 2**62
#: A handle that names nothing (an empty order_id or account).
NO_REF = -1
