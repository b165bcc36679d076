"""The checks of an incoming order, one definition each: the edges' and the books' alike.

Spec §7 fixes, per action, the order in which a command is checked; the first failing check
gives the reject reason:

======  ==============================================================================
NEW     MALFORMED, INVALID_QTY, INVALID_PRICE (the edge: what the row says on its own),
        then in the book DUPLICATE_ORDER_ID, MARKET_CLOSED, PRICE_OUTSIDE_BAND
CANCEL  MALFORMED (edge), then MARKET_CLOSED (a non-trading day only), UNKNOWN_ORDER
AMEND   MALFORMED, INVALID_QTY, INVALID_PRICE (edge), then MARKET_CLOSED (non-trading day),
        UNKNOWN_ORDER, MARKET_CLOSED (segment hours), INVALID_QTY (segment range),
        PRICE_OUTSIDE_BAND
TAKE    MALFORMED, INVALID_QTY, INVALID_PRICE (edge: a price given), then
        DUPLICATE_ORDER_ID, MARKET_CLOSED (LISTED hours), UNKNOWN_TARGET, TARGET_SAME_SIDE,
        TARGET_NOT_LISTED, TARGET_NOT_IN_BEST_FIVE, TARGET_OWN_ORDER, TARGET_QTY_EXCEEDED
======  ==============================================================================

and with accounts, the risk stage after all of them (``engine.accounts``).

The edges (``engine.api.Engine``, ``engine.orderfile``) turn their own form of a command
(Structs, CSV text) into numbers and ask ``order_check`` for the edge's verdict, which travels
in the command's ``check`` field. The books repeat the one check of the edge they cannot take
on trust from a raw array, that the row names what it must (``names_order`` /
``names_account``), and make the checks that need state with the rules of ``engine.rules``
(``in_session``, ``qty_fits_segment``, ``in_band``). Every function here is
``register_jitable``: Python calls it as written, the Numba kernels (and the gateway's
compiled admission, which makes the same edge checks on binary frames) inline the same code.

>>> order_check(True, 500, False, True, 6010)
<Reason.NONE: 0>
>>> order_check(True, 0, False, True, 6010).name, order_check(True, 500, True, True, 6010).name
('INVALID_QTY', 'INVALID_PRICE')
>>> order_check(False, 0, False, False, 0).name  # the first failing check is the reason
'MALFORMED'
"""

from numba.extending import register_jitable

from .codes import OrderType, Reason, Side, Stp, TimeInForce
from .rules import MAX_QTY, MIN_QTY

# inlined where the kernels call them, as every helper on their matching path
_check = register_jitable(inline="always")


@_check
def qty_valid(qty: int) -> bool:
    """Whether ``qty`` tonnes is an order quantity at all: 1 .. MAX_QTY (else INVALID_QTY;
    each segment's own range is ``engine.rules.qty_fits_segment``).

    >>> qty_valid(1), qty_valid(100_000_000), qty_valid(0), qty_valid(100_000_001)
    (True, True, False, False)
    """
    return MIN_QTY <= qty <= MAX_QTY


@_check
def new_order_codes_valid(side: int, order_type: int, tif: int, stp: int) -> bool:
    """Whether a NEW's side, type, time in force and STP mode are known codes and a MARKET
    order is IOC (spec §3); else the NEW is MALFORMED.

    >>> new_order_codes_valid(Side.BUY, OrderType.MARKET, TimeInForce.IOC, Stp.CANCEL_NEWEST)
    True
    >>> new_order_codes_valid(Side.BUY, OrderType.MARKET, TimeInForce.DAY, Stp.CANCEL_NEWEST)
    False
    """
    return ((side == Side.BUY or side == Side.SELL)
            and (order_type == OrderType.LIMIT or order_type == OrderType.MARKET)
            and TimeInForce.DAY <= tif <= TimeInForce.FOK
            and Stp.CANCEL_NEWEST <= stp <= Stp.CANCEL_BOTH
            and (order_type != OrderType.MARKET or tif == TimeInForce.IOC))


@_check
def order_check(well_formed: bool, qty: int, is_market: bool, price_given: bool,
                price: int) -> Reason:
    """The edge's verdict on a NEW or an AMEND (an AMEND is never MARKET): the first of
    MALFORMED, INVALID_QTY, INVALID_PRICE it earns on its own (spec §7), or NONE.

    ``well_formed``: every required field is present and known (the caller's to judge, with
    ``new_order_codes_valid`` for a NEW's codes); ``qty``: the tonnes, 0 if they did not
    parse; ``price_given``: a price was written at all; ``price``: it in fen, 0 if it did not
    parse. A MARKET order must carry no price, any other order a positive one.
    """
    if not well_formed:
        return Reason.MALFORMED
    if not qty_valid(qty):
        return Reason.INVALID_QTY
    if is_market:
        if price_given:
            return Reason.INVALID_PRICE
    elif not price_given or price <= 0:
        return Reason.INVALID_PRICE
    return Reason.NONE


@_check
def take_check(well_formed: bool, qty: int, price_given: bool) -> Reason:
    """The edge's verdict on a TAKE: MALFORMED (a field missing or unknown: account, order
    id, side, target), INVALID_QTY, INVALID_PRICE (a price was given: a take trades at its
    target's price), or NONE.

    >>> take_check(True, 500, False).name, take_check(True, 500, True).name
    ('NONE', 'INVALID_PRICE')
    """
    if not well_formed:
        return Reason.MALFORMED
    if not qty_valid(qty):
        return Reason.INVALID_QTY
    if price_given:
        return Reason.INVALID_PRICE
    return Reason.NONE


@_check
def terms_check(well_formed: bool, qty_given: bool, qty: int, price_given: bool,
                price: int) -> Reason:
    """The edge's verdict on a negotiation's terms (spec §3b): MALFORMED, then INVALID_QTY
    for a quantity given that is not 1 .. MAX_QTY, then INVALID_PRICE for a price given
    that is not positive (a BLOCK_QUOTE must give both: the caller's ``well_formed``).

    >>> terms_check(True, False, 0, True, 6000).name, terms_check(True, True, 0, False, 0).name
    ('NONE', 'INVALID_QTY')
    """
    if not well_formed:
        return Reason.MALFORMED
    if qty_given and not qty_valid(qty):
        return Reason.INVALID_QTY
    if price_given and price <= 0:
        return Reason.INVALID_PRICE
    return Reason.NONE


@_check
def names_order(order: int, account: int, instrument: int, n_instruments: int) -> bool:
    """Whether a NEW row names an order id, an account and an instrument the book has (as
    handles: ``NO_REF`` is none); a book rejects one that does not MALFORMED.

    >>> names_order(0, 0, 0, 1), names_order(-1, 0, 0, 1), names_order(0, 0, 1, 1)
    (True, False, False)
    """
    return order >= 0 and account >= 0 and 0 <= instrument < n_instruments


@_check
def names_account(account: int) -> bool:
    """Whether a CANCEL or AMEND row names an account (else MALFORMED)."""
    return account >= 0
