"""The raw batch formats both books speak: a numpy command array in, an int64 event array out.

Strings (accounts, order ids, instruments) never reach a book: the edge (``engine.api``)
interns them as dense integer handles, and checks what a row says on its own (missing or
unknown fields, quantity and price syntax) once, writing the verdict into ``check``. A book
then makes every check that needs state, in the spec's order.

Command fields (``COMMAND_DTYPE``):

============  =======================================================================
ts            exchange local time, microseconds since 1970-01-01 (``NO_TIME`` if unparsable)
action        ``Action`` code
check         ``Reason`` found at the edge (0, MALFORMED, INVALID_QTY or INVALID_PRICE)
side          ``Side`` code (NEW)
type          ``OrderType`` code (NEW)
tif           ``TimeInForce`` code (NEW)
stp           ``Stp`` code (NEW)
instrument    instrument index (NEW)
account       account handle (``NO_REF`` if missing)
order         order handle (``NO_REF`` if missing)
price         limit price in fen (``NO_PRICE`` for MARKET); for TAKE the target
              order's handle (``TAKE_TARGET``; ``NO_REF``: a target never seen)
qty           tonnes
============  =======================================================================

peer          BLOCK_QUOTE: the counterparty's account handle (``NO_REF``: a public quote);
              other actions ignore it (it sits in what was the row's padding, so the row
              is 48 bytes as before and older journals read back with 0 here)

Negotiated block agreements (spec §3b): BLOCK_QUOTE rows carry the new quote's handle in
``order`` (from the order ids' space) and side, price, qty, instrument, peer; BLOCK_COUNTER
the quote's handle and the new terms (``NO_PRICE`` / 0 for "unchanged"); BLOCK_ACCEPT the
quote's handle and, optionally, the terms accepted (``NO_PRICE`` / 0: whatever they are
now); BLOCK_WITHDRAW the quote's handle.

A TAKE row is a NEW's with ``type`` TAKE, ``tif`` IOC and the target in ``price``: a take
has no limit price of its own (it trades at its target's), so the field carries the target.

Each event is one row of ``EVENT_WIDTH`` int64 columns; the column constants below name
them (with a second name per kind where a column means something else, such as
``DAY_LISTED_TURNOVER`` for ACCOUNT), and ``engine.api.Engine.decode`` turns rows into typed
Structs. Per kind:

- ACCEPTED: ORDER, ACCOUNT, INSTRUMENT, SEGMENT, SIDE, PRICE (NO_PRICE for MARKET; a
  TAKE's: its target's price), QTY, AUX1 = order type, AUX2 = tif, ORDER2 = a TAKE's
  target (0 otherwise).
- REJECTED: ORDER, ACCOUNT, INSTRUMENT, REASON, AUX1 = action.
- TRADE: TRADE_ID, INSTRUMENT, SEGMENT, PRICE, QTY, ORDER/ACCOUNT = buyer,
  ORDER2/ACCOUNT2 = seller, SIDE = aggressor side, AUX1/AUX2 = buyer's/seller's open
  quantity after the trade.
- CANCELLED: ORDER, ACCOUNT, INSTRUMENT, SEGMENT, SIDE, PRICE, QTY = quantity removed,
  REASON, AUX1 = the order's filled quantity.
- EXPIRED: as CANCELLED, without a reason; TS is 15:00 of the day that ended.
- AMENDED: ORDER, ACCOUNT, INSTRUMENT, SEGMENT, SIDE, PRICE = new price, QTY = new open
  quantity, AUX1 = 1 if time priority was kept, AUX2 = open quantity before.
- QUOTE: ORDER = the quote, ACCOUNT = its maker, ACCOUNT2 = the counterparty (``NO_REF``
  while public), INSTRUMENT, SEGMENT (BLOCK), SIDE = the maker's side, PRICE, QTY = the
  terms now, AUX1 = the action (BLOCK_QUOTE or BLOCK_COUNTER), AUX2 = who made these terms.
- QUOTE_ENDED: as QUOTE with the last terms; AUX1 = ``QuoteEnd``, AUX2 = the account that
  ended it (``NO_REF`` on expiry; TS is then 15:00 of the day). An accepted quote's TRADE
  (SEGMENT BLOCK, both order columns the quote, the acceptor the aggressor, both open
  quantities 0) comes just before it.
- DAY_CLOSED: INSTRUMENT, ORDER = day number, PRICE = closing price, AUX1 = prior close,
  QTY = LISTED volume, AUX2 = BLOCK volume, ACCOUNT = LISTED turnover (fen),
  ACCOUNT2 = BLOCK turnover (fen); TS is 15:00 of that day.

CMD is the index of the command, within the batch, that produced the event (for expiry and
DAY_CLOSED, the command whose time ended the day). Unused columns are 0.
"""

import numpy as np

COMMAND_DTYPE = np.dtype(
    [
        ("ts", np.int64),
        ("order", np.int64),
        ("price", np.int64),
        ("qty", np.int64),
        ("account", np.int32),
        ("instrument", np.int16),
        ("action", np.int8),
        ("check", np.int8),
        ("side", np.int8),
        ("type", np.int8),
        ("tif", np.int8),
        ("stp", np.int8),
        ("peer", np.int32),
    ],
    align=True,
)

#: TAKE: the command field holding the target order's handle
TAKE_TARGET = "price"

# event columns
KIND = 0
CMD = 1
TS = 2
INSTRUMENT = 3
SEGMENT = 4
ORDER = 5
ACCOUNT = 6
SIDE = 7
PRICE = 8
QTY = 9
REASON = 10
TRADE_ID = 11
ORDER2 = 12
ACCOUNT2 = 13
AUX1 = 14
AUX2 = 15
EVENT_WIDTH = 16

EVENT_COLUMNS = (
    "kind", "cmd", "ts", "instrument", "segment", "order", "account", "side",
    "price", "qty", "reason", "trade_id", "order2", "account2", "aux1", "aux2",
)

# The columns under the name each kind of event gives them (the docstring's table above, as
# code): a reader of DAY_CLOSED rows says DAY_LISTED_TURNOVER, not ACCOUNT. Each is only
# another name of the column above; the generic names stay valid.

# ACCEPTED
ACCEPTED_TYPE = AUX1  # OrderType
ACCEPTED_TIF = AUX2  # TimeInForce
ACCEPTED_TARGET = ORDER2  # a TAKE's target order

# REJECTED
REJECTED_ACTION = AUX1  # Action of the rejected command

# TRADE: the buy order and the sell order, whichever was resting
TRADE_BUY_ORDER = ORDER
TRADE_BUY_ACCOUNT = ACCOUNT
TRADE_SELL_ORDER = ORDER2
TRADE_SELL_ACCOUNT = ACCOUNT2
TRADE_AGGRESSOR = SIDE  # Side of the incoming order
TRADE_BUY_LEFT = AUX1  # the buy order's open quantity after the trade
TRADE_SELL_LEFT = AUX2  # the sell order's open quantity after the trade

# CANCELLED (QTY: the quantity removed) and EXPIRED (the same, without a reason)
CANCELLED_FILLED = AUX1  # the order's filled quantity
EXPIRED_FILLED = AUX1

# AMENDED (PRICE, QTY: the new price and open quantity)
AMENDED_PRIORITY_KEPT = AUX1  # 1 if the order kept its time priority
AMENDED_OPEN_BEFORE = AUX2  # open quantity before the amendment

# DAY_CLOSED, one row per instrument (TS: 15:00 of the day)
DAY_NUMBER = ORDER  # days since 1970-01-01 (engine.tradingdays.date_of_day)
DAY_CLOSE = PRICE  # closing price, fen
DAY_PRIOR_CLOSE = AUX1
DAY_LISTED_VOLUME = QTY
DAY_BLOCK_VOLUME = AUX2
DAY_LISTED_TURNOVER = ACCOUNT  # fen
DAY_BLOCK_TURNOVER = ACCOUNT2  # fen


# QUOTE and QUOTE_ENDED
QUOTE_MAKER = ACCOUNT
QUOTE_COUNTERPARTY = ACCOUNT2
QUOTE_ACTION = AUX1  # QUOTE: the Action that set these terms
QUOTE_PROPOSER = AUX2  # QUOTE: who made these terms
QUOTE_END = AUX1  # QUOTE_ENDED: QuoteEnd
QUOTE_ENDED_BY = AUX2  # QUOTE_ENDED: the account that ended it (NO_REF: expired)


def empty_commands(n: int) -> np.ndarray:
    """A zeroed command array of ``n`` rows (``NO_REF`` order/account/peer, ``NO_PRICE``)."""
    cmds = np.zeros(n, dtype=COMMAND_DTYPE)
    cmds["order"] = -1
    cmds["account"] = -1
    cmds["price"] = -1
    cmds["peer"] = -1
    return cmds
