"""Numba JIT-compiled matching kernels: the spec's rules over the arrays of ``state``.

Only ``_``-named ``@njit`` functions live here, over int64 arrays: no objects, no allocation
in the matching path (the day close sorts expiring orders, once a day). ``run_batch`` is the
single entry point; ``engine.fast.book`` owns the arrays and calls it once per batch. The
logic mirrors ``engine.reference.book`` step for step, under the same helper names (``_new``,
``_own_resting_order``, ``_match``, ``_trade``, ``_emit``, ``_release``, ``_cancel_resting``,
``_cancel_incoming``, ...), so each function can be read beside its plain twin. The rules
themselves are not here: the formulas (``engine.rules``, ``engine.accounts``) and the checks
of an incoming order (``engine.checks``) are ``register_jitable`` functions both books call.

Codes are the ``IntEnum`` members of ``engine.codes``, read directly: Numba compiles a member
as its integer constant. Where a member and a plain integer meet in one variable or return
value, Numba cannot unify the two types, so those places keep them apart (``_reject`` of the
edge's ``check`` is one call, of a book's reason another).

Numba keys each kernel's on-disk cache on this file alone: after editing a rule these
kernels inline (``engine.rules``, ``engine.accounts``, ``engine.checks``, ``state``) or a
constant they read, run them from a fresh cache (delete ``engine/fast/__pycache__`` or set
``NUMBA_CACHE_DIR``), or they keep the compiled old code.
"""

import numpy as np
from numba import njit

from .. import batch as B
from ..accounts import (
    CA_FROZEN, CA_KNOWN, CA_PROCEEDS, CA_RESERVED, CA_TOTAL, CA_TYPE, HD_BUY_OPEN, HD_PENDING,
    HD_RESERVED, HD_TOTAL, NO_LIMIT, RK_ADMITTED, RK_FEES, RK_LIMIT, RK_ON, RK_T1, fee,
    order_unit, segment_fee_bps,
)
from ..checks import names_account, names_order
from ..codes import (
    NO_PRICE, NO_TIME, Action, EventKind, OrderStatus, OrderType, Reason, Segment, Side, Stp,
    TimeInForce,
)
from ..rules import (
    DAY_CLOSE_US, DAY_US, MARKET_DEPTH_LEVELS, MAX_PRIOR_CLOSE, band_limits, closing_price,
    crosses, in_band, in_session, qty_fits_segment, segment_for_qty,
)
from .state import (
    BK_BASE, BK_BEST_ASK, BK_BEST_BID, BK_LOWER, BK_RESTING, BK_UPPER, BK_WIDTH, DONE,
    DY_BLOCK_TURNOVER, DY_BLOCK_VOLUME, DY_LISTED_TURNOVER, DY_LISTED_VOLUME, DY_PRIOR_CLOSE,
    GL_CAL_FIRST_DAY, GL_CAL_WEEKDAYS, GL_CLOCK, GL_DAY_OPEN, GL_DONE, GL_EVENTS,
    GL_FREE_COUNT, GL_FREE_HEAD, GL_LAST_DAY, GL_NEED, GL_NEXT_CMD, GL_NEXT_SEQ, GL_QUOTES,
    EXPIRE_QUOTES, NEGOTIATE,
    GL_NEXT_TRADE_ID, GL_RESTING, LV_COUNT, LV_HEAD, LV_QTY, LV_TAIL, NEED_CALENDAR,
    NEED_EVENTS, NEED_LEVELS, NEED_ORDERS, NEED_SLOTS, NIL, PRICE_LIMIT, RF_CANCELLED,
    RF_FILLED, RF_QTY, RF_REASON, RF_SLOT, RF_STATUS, RF_USED, SL_ACCOUNT, SL_AUX, SL_BOOK,
    SL_NEXT, SL_OPEN, SL_PREV, SL_PRICE, SL_REF, SL_SEQ, SL_SIDE, SL_STP, ladder_width,
)

#: Kernels allocate nothing, so Numba's reference counting is switched off (``_nrt=False``):
#: with it, every call passing the state arrays paid atomic increments and decrements. Every
#: helper on the matching path is inlined at Numba's level too (a call passes each array as
#: seven machine words and hides aliasing from LLVM): only the day's opening and close, run
#: once a day, stay real calls. The history of these figures is in docs/performance.md.
_kernel = njit(cache=True, _nrt=False)
_inline = njit(cache=True, _nrt=False, inline="always")


# ---------------------------------------------------------------------------- rules
# The rules are engine.rules' (band_limits, in_session, ...); these read them off the arrays.

@_inline
def day_closing_price(days, instrument):
    return closing_price(days[instrument, DY_LISTED_TURNOVER],
                         days[instrument, DY_LISTED_VOLUME], days[instrument, DY_PRIOR_CLOSE])


@_inline
def _is_trading_day(cal, glob, day):
    i = day - glob[GL_CAL_FIRST_DAY]
    return 0 <= i < cal.shape[0] and cal[i] != 0


@_inline
def _session_open(glob, segment, ts):
    """NEW/AMEND allowed now: a trading day in progress, inside the segment's hours."""
    return glob[GL_DAY_OPEN] == 1 and in_session(segment, ts % DAY_US)


# ---------------------------------------------------------------------------- risk stage
# The twin of engine.accounts.Accounts.{check_order, reserve, settle, new_day}: balances in
# ``cash`` / ``holdings``, parameters in ``risk``; all of it skipped when risk[RK_ON] == 0.
# What one open tonne reserves (order_unit) and the fee (fee) are engine.accounts' own.

@_inline
def _risk_check(cash, holdings, risk, account, instrument, side, segment, price, qty,
                old_qty, old_price):
    if account >= cash.shape[0] or cash[account, CA_KNOWN] == 0:
        return Reason.UNKNOWN_ACCOUNT
    if cash[account, CA_FROZEN] != 0:
        return Reason.ACCOUNT_FROZEN
    kind = cash[account, CA_TYPE]
    if (risk[RK_ADMITTED] >> kind) & 1 == 0:
        return Reason.ACCOUNT_NOT_ADMITTED
    h = account * (holdings.shape[0] // cash.shape[0]) + instrument
    if side == Side.BUY:
        limit = risk[RK_LIMIT + kind]
        if limit != NO_LIMIT and qty > old_qty and \
                holdings[h, HD_TOTAL] + holdings[h, HD_BUY_OPEN] - old_qty + qty > limit:
            return Reason.POSITION_LIMIT
        need = qty * order_unit(risk, side, price, segment) - old_qty * order_unit(
            risk, side, old_price, segment)
        if need > cash[account, CA_TOTAL] - cash[account, CA_RESERVED]:
            return Reason.INSUFFICIENT_FUNDS
    elif qty - old_qty > holdings[h, HD_TOTAL] - holdings[h, HD_RESERVED] - holdings[
            h, HD_PENDING]:
        return Reason.INSUFFICIENT_ALLOWANCES
    return 0


@_inline
def _reserve(cash, holdings, risk, account, instrument, side, segment, price, qty):
    # reserve for qty open tonnes at price; a negative qty releases
    h = account * (holdings.shape[0] // cash.shape[0]) + instrument
    if side == Side.BUY:
        cash[account, CA_RESERVED] += qty * order_unit(risk, side, price, segment)
        holdings[h, HD_BUY_OPEN] += qty
    else:
        holdings[h, HD_RESERVED] += qty


@_inline
def _settle(cash, holdings, risk, instrument, segment, buyer, seller, price, qty, buyer_unit):
    notional = price * qty
    fee_each = fee(notional, segment_fee_bps(risk, segment))
    cash[buyer, CA_TOTAL] -= notional + fee_each
    cash[buyer, CA_RESERVED] -= qty * buyer_unit
    cash[seller, CA_TOTAL] += notional - fee_each
    cash[seller, CA_PROCEEDS] += notional - fee_each
    n_instruments = holdings.shape[0] // cash.shape[0]
    hb = buyer * n_instruments + instrument
    hs = seller * n_instruments + instrument
    holdings[hb, HD_TOTAL] += qty
    holdings[hb, HD_BUY_OPEN] -= qty
    if risk[RK_T1] != 0:
        holdings[hb, HD_PENDING] += qty
    holdings[hs, HD_TOTAL] -= qty
    holdings[hs, HD_RESERVED] -= qty
    risk[RK_FEES] += 2 * fee_each


@_inline
def _release(cash, holdings, risk, slots, s, qty):
    """Give back what ``qty`` open tonnes of the order in slot ``s`` reserve (risk stage on)."""
    if risk[RK_ON] != 0:
        b = slots[s, SL_BOOK]
        _reserve(cash, holdings, risk, slots[s, SL_ACCOUNT], b // 2, slots[s, SL_SIDE], b % 2,
                 slots[s, SL_PRICE], -qty)


# ---------------------------------------------------------------------------- events

@_inline
def _row(events, glob, kind, cmd, ts):
    r = glob[GL_EVENTS]
    glob[GL_EVENTS] = r + 1
    for k in range(B.EVENT_WIDTH):
        events[r, k] = 0
    events[r, B.KIND] = kind
    events[r, B.CMD] = cmd
    events[r, B.TS] = ts
    return r


@_inline
def _emit(events, glob, kind, cmd, ts, slots, s, qty, reason, aux1):
    """An event about the order in slot ``s`` (its price read from the slot); ``aux1`` is
    what its kind keeps there (CANCELLED_FILLED, EXPIRED_FILLED, AMENDED_PRIORITY_KEPT)."""
    r = _row(events, glob, kind, cmd, ts)
    book = slots[s, SL_BOOK]
    events[r, B.ORDER] = slots[s, SL_REF]
    events[r, B.ACCOUNT] = slots[s, SL_ACCOUNT]
    events[r, B.INSTRUMENT] = book // 2
    events[r, B.SEGMENT] = book % 2
    events[r, B.SIDE] = slots[s, SL_SIDE]
    events[r, B.PRICE] = slots[s, SL_PRICE]
    events[r, B.QTY] = qty
    events[r, B.REASON] = reason
    events[r, B.AUX1] = aux1
    return r


@_inline
def _reject(events, glob, i, cmds, reason):
    c = cmds[i]
    r = _row(events, glob, EventKind.REJECTED, i, c["ts"])
    events[r, B.ORDER] = c["order"]
    events[r, B.ACCOUNT] = c["account"]
    events[r, B.INSTRUMENT] = c["instrument"]
    events[r, B.REASON] = reason
    events[r, B.REJECTED_ACTION] = c["action"]


# ---------------------------------------------------------------------------- book upkeep

@_inline
def _rest(slots, levels, books, glob, s):
    """Append slot ``s`` (price, side, book set) at the back of its level."""
    b = slots[s, SL_BOOK]
    side = slots[s, SL_SIDE]
    bs = b * 2 + side - 1
    li = slots[s, SL_PRICE] - books[b, BK_BASE]
    tail = levels[bs, LV_TAIL, li]
    slots[s, SL_PREV] = tail
    slots[s, SL_NEXT] = NIL
    if tail == NIL:
        levels[bs, LV_HEAD, li] = s
    else:
        slots[tail, SL_NEXT] = s
    levels[bs, LV_TAIL, li] = s
    levels[bs, LV_QTY, li] += slots[s, SL_OPEN]
    levels[bs, LV_COUNT, li] += 1
    if side == Side.BUY:
        if books[b, BK_BEST_BID] == NIL or li > books[b, BK_BEST_BID]:
            books[b, BK_BEST_BID] = li
    else:
        if books[b, BK_BEST_ASK] == NIL or li < books[b, BK_BEST_ASK]:
            books[b, BK_BEST_ASK] = li
    books[b, BK_RESTING] += 1
    glob[GL_RESTING] += 1


@_inline
def _unlink(slots, levels, books, glob, s):
    """Take slot ``s`` out of its level, moving the best level on if that one empties."""
    b = slots[s, SL_BOOK]
    side = slots[s, SL_SIDE]
    bs = b * 2 + side - 1
    li = slots[s, SL_PRICE] - books[b, BK_BASE]
    prev = slots[s, SL_PREV]
    nxt = slots[s, SL_NEXT]
    if prev == NIL:
        levels[bs, LV_HEAD, li] = nxt
    else:
        slots[prev, SL_NEXT] = nxt
    if nxt == NIL:
        levels[bs, LV_TAIL, li] = prev
    else:
        slots[nxt, SL_PREV] = prev
    levels[bs, LV_QTY, li] -= slots[s, SL_OPEN]
    levels[bs, LV_COUNT, li] -= 1
    if levels[bs, LV_COUNT, li] == 0:
        if side == Side.BUY:
            if books[b, BK_BEST_BID] == li:
                j = li - 1
                while j >= 0 and levels[bs, LV_COUNT, j] == 0:
                    j -= 1
                books[b, BK_BEST_BID] = j  # -1 == NIL when the side is empty
        else:
            if books[b, BK_BEST_ASK] == li:
                j = li + 1
                width = books[b, BK_WIDTH]
                while j < width and levels[bs, LV_COUNT, j] == 0:
                    j += 1
                books[b, BK_BEST_ASK] = j if j < width else NIL
    books[b, BK_RESTING] -= 1
    glob[GL_RESTING] -= 1


@_inline
def _free(slots, refs, glob, s):
    refs[slots[s, SL_REF], RF_SLOT] = NIL
    slots[s, SL_NEXT] = glob[GL_FREE_HEAD]
    glob[GL_FREE_HEAD] = s
    glob[GL_FREE_COUNT] += 1


@_inline
def _remove(slots, refs, levels, books, glob, s):
    _unlink(slots, levels, books, glob, s)
    _free(slots, refs, glob, s)


@_inline
def _cancel_resting(events, glob, i, ts, slots, refs, levels, books, s, reason,
                    cash, holdings, risk):
    """Take the order in slot ``s`` out of the book and cancel its open quantity."""
    ref = slots[s, SL_REF]
    open_qty = slots[s, SL_OPEN]
    _release(cash, holdings, risk, slots, s, open_qty)
    _emit(events, glob, EventKind.CANCELLED, i, ts, slots, s, open_qty, reason,
          refs[ref, RF_FILLED])  # CANCELLED_FILLED
    refs[ref, RF_CANCELLED] += open_qty
    refs[ref, RF_STATUS] = OrderStatus.CANCELLED
    refs[ref, RF_REASON] = reason
    _remove(slots, refs, levels, books, glob, s)


@_inline
def _cancel_incoming(events, glob, i, ts, refs, ref, account, b, side, price, open_qty, reason,
                     cash, holdings, risk, reserve_price):
    """Cancel the open quantity of order ``ref``, which is not in the book (the command's own
    order, before resting or instead of it)."""
    if risk[RK_ON] != 0:
        _reserve(cash, holdings, risk, account, b // 2, side, b % 2, reserve_price, -open_qty)
    r = _row(events, glob, EventKind.CANCELLED, i, ts)
    events[r, B.ORDER] = ref
    events[r, B.ACCOUNT] = account
    events[r, B.INSTRUMENT] = b // 2
    events[r, B.SEGMENT] = b % 2
    events[r, B.SIDE] = side
    events[r, B.PRICE] = price
    events[r, B.QTY] = open_qty
    events[r, B.REASON] = reason
    events[r, B.CANCELLED_FILLED] = refs[ref, RF_FILLED]
    refs[ref, RF_CANCELLED] += open_qty
    refs[ref, RF_STATUS] = OrderStatus.CANCELLED
    refs[ref, RF_REASON] = reason


# ---------------------------------------------------------------------------- matching (§4)

@_inline
def _fok_fillable(slots, levels, books, b, side, price, account, stp, qty):
    """§4: fillable from other accounts' orders alone, walking as matching would."""
    if side == Side.BUY:
        obs = b * 2 + 1
        li = books[b, BK_BEST_ASK]
    else:
        obs = b * 2
        li = books[b, BK_BEST_BID]
    if li == NIL:
        return False
    base = books[b, BK_BASE]
    width = books[b, BK_WIDTH]
    available = 0
    while 0 <= li < width:
        if not crosses(side, price, base + li):
            return False
        s = levels[obs, LV_HEAD, li]
        while s != NIL:
            if slots[s, SL_ACCOUNT] == account:
                if stp != Stp.CANCEL_OLDEST:
                    return False
            else:
                available += slots[s, SL_OPEN]
                if available >= qty:
                    return True
            s = slots[s, SL_NEXT]
        li = li + 1 if side == Side.BUY else li - 1
    return False


@_inline
def _match(events, glob, i, ts, slots, refs, levels, books, days,
           ref, b, side, price, is_market, account, stp, open_qty, cash, holdings, risk,
           unit_in):
    """Trade an incoming order against the opposite side of book ``b`` (spec §4).

    Returns (open quantity left, 1 if self-trade prevention stopped it else 0). With the
    risk stage on, each trade settles from the reservations; ``unit_in`` is what one open
    tonne of the incoming order reserves.
    """
    opposite_bs = b * 2 + (1 if side == Side.BUY else 0)
    base = books[b, BK_BASE]
    levels_entered = 0
    while open_qty > 0:
        li = books[b, BK_BEST_ASK] if side == Side.BUY else books[b, BK_BEST_BID]
        if li == NIL:
            break
        level_price = base + li
        if not is_market and not crosses(side, price, level_price):
            break
        # §3: a MARKET order reaches at most the five best levels as they stood on arrival;
        # a level emptied by CANCEL_OLDEST still counts as one.
        levels_entered += 1
        if is_market and levels_entered > MARKET_DEPTH_LEVELS:
            break
        s = levels[opposite_bs, LV_HEAD, li]
        while s != NIL and open_qty > 0:
            nxt = slots[s, SL_NEXT]
            if slots[s, SL_ACCOUNT] == account:
                if stp == Stp.CANCEL_OLDEST:
                    _cancel_resting(events, glob, i, ts, slots, refs, levels, books, s,
                                    Reason.SELF_TRADE, cash, holdings, risk)
                    s = nxt
                    continue
                if stp == Stp.CANCEL_BOTH:
                    _cancel_resting(events, glob, i, ts, slots, refs, levels, books, s,
                                    Reason.SELF_TRADE, cash, holdings, risk)
                return open_qty, 1
            open_qty = _trade(events, glob, i, ts, slots, refs, levels, books, days, ref, b,
                              side, account, open_qty, s, opposite_bs, li, level_price,
                              cash, holdings, risk, unit_in)
            s = nxt
    return open_qty, 0


@_inline
def _trade(events, glob, i, ts, slots, refs, levels, books, days, ref, b, side, account,
           open_qty, s, opposite_bs, li, level_price, cash, holdings, risk, unit_in):
    """The incoming order ``ref`` (``open_qty`` open) trades with the order in slot ``s``, at
    level ``li`` of side ``opposite_bs``; returns the incoming order's open quantity after."""
    # §4: the resting order's price, the smaller open quantity.
    resting_ref = slots[s, SL_REF]
    resting_open = slots[s, SL_OPEN]
    resting_account = slots[s, SL_ACCOUNT]
    qty = open_qty if open_qty < resting_open else resting_open
    open_qty -= qty
    refs[ref, RF_FILLED] += qty
    refs[resting_ref, RF_FILLED] += qty
    slots[s, SL_OPEN] = resting_open - qty
    levels[opposite_bs, LV_QTY, li] -= qty
    instrument = b // 2
    segment = b % 2
    if segment == Segment.LISTED:
        days[instrument, DY_LISTED_VOLUME] += qty
        days[instrument, DY_LISTED_TURNOVER] += level_price * qty
    else:
        days[instrument, DY_BLOCK_VOLUME] += qty
        days[instrument, DY_BLOCK_TURNOVER] += level_price * qty
    r = _row(events, glob, EventKind.TRADE, i, ts)
    events[r, B.TRADE_ID] = glob[GL_NEXT_TRADE_ID]
    glob[GL_NEXT_TRADE_ID] += 1
    events[r, B.INSTRUMENT] = instrument
    events[r, B.SEGMENT] = segment
    events[r, B.PRICE] = level_price
    events[r, B.QTY] = qty
    events[r, B.TRADE_AGGRESSOR] = side
    if side == Side.BUY:
        events[r, B.TRADE_BUY_ORDER] = ref
        events[r, B.TRADE_BUY_ACCOUNT] = account
        events[r, B.TRADE_BUY_LEFT] = open_qty
        events[r, B.TRADE_SELL_ORDER] = resting_ref
        events[r, B.TRADE_SELL_ACCOUNT] = resting_account
        events[r, B.TRADE_SELL_LEFT] = resting_open - qty
    else:
        events[r, B.TRADE_BUY_ORDER] = resting_ref
        events[r, B.TRADE_BUY_ACCOUNT] = resting_account
        events[r, B.TRADE_BUY_LEFT] = resting_open - qty
        events[r, B.TRADE_SELL_ORDER] = ref
        events[r, B.TRADE_SELL_ACCOUNT] = account
        events[r, B.TRADE_SELL_LEFT] = open_qty
    if risk[RK_ON] != 0:
        if side == Side.BUY:
            _settle(cash, holdings, risk, instrument, segment, account, resting_account,
                    level_price, qty, unit_in)
        else:
            _settle(cash, holdings, risk, instrument, segment, resting_account, account,
                    level_price, qty, order_unit(risk, Side.BUY, level_price, segment))
    if resting_open == qty:
        refs[resting_ref, RF_STATUS] = OrderStatus.FILLED
        _remove(slots, refs, levels, books, glob, s)
    return open_qty


@_inline
def _place(glob, slots, refs, ref, b, side, price, account, stp, open_qty, seq):
    """Fill a free slot for an order about to rest (not yet linked into its level)."""
    s = glob[GL_FREE_HEAD]
    glob[GL_FREE_HEAD] = slots[s, SL_NEXT]
    glob[GL_FREE_COUNT] -= 1
    slots[s, SL_REF] = ref
    slots[s, SL_PRICE] = price
    slots[s, SL_OPEN] = open_qty
    slots[s, SL_ACCOUNT] = account
    slots[s, SL_BOOK] = b
    slots[s, SL_SIDE] = side
    slots[s, SL_STP] = stp
    slots[s, SL_SEQ] = seq
    refs[ref, RF_SLOT] = s
    return s


# ---------------------------------------------------------------------------- commands

@_inline
def _fresh_order(cmds, i, events, glob, refs, days):
    """NEW's and TAKE's first checks: the edge's verdict, then MALFORMED (the row names no
    order, account or instrument the book has), DUPLICATE_ORDER_ID. False: rejected."""
    c = cmds[i]
    check = c["check"]
    if check != 0:
        _reject(events, glob, i, cmds, check)
        return False
    ref = c["order"]
    # a handle past refs cannot reach here (the wrapper grows refs first): bounds kept anyway
    if not names_order(ref, c["account"], c["instrument"], days.shape[0]) or \
            ref >= refs.shape[0]:
        _reject(events, glob, i, cmds, Reason.MALFORMED)
        return False
    if refs[ref, RF_USED] != 0:
        _reject(events, glob, i, cmds, Reason.DUPLICATE_ORDER_ID)
        return False
    return True


@_inline
def _new(cmds, i, events, glob, slots, refs, levels, books, days, cash, holdings, risk):
    # §7 order of checks for NEW: MALFORMED, INVALID_QTY, INVALID_PRICE (found at the
    # edge, in c["check"]), DUPLICATE_ORDER_ID, MARKET_CLOSED, PRICE_OUTSIDE_BAND.
    c = cmds[i]
    ts = c["ts"]
    ref = c["order"]
    account = c["account"]
    instrument = c["instrument"]
    if not _fresh_order(cmds, i, events, glob, refs, days):
        return
    qty = c["qty"]
    segment = segment_for_qty(qty)
    if not _session_open(glob, segment, ts):
        _reject(events, glob, i, cmds, Reason.MARKET_CLOSED)
        return
    b = instrument * 2 + segment
    is_market = c["type"] == OrderType.MARKET
    price = NO_PRICE if is_market else c["price"]
    if not is_market and not in_band(price, books[b, BK_LOWER], books[b, BK_UPPER]):
        _reject(events, glob, i, cmds, Reason.PRICE_OUTSIDE_BAND)
        return

    side = np.int64(c["side"])
    stp = np.int64(c["stp"])
    tif = np.int64(c["tif"])
    # the risk stage, after every rule: funds or allowances for the whole order, reserved
    # on acceptance; a MARKET buy reserves at the band's upper limit
    reserve_price = books[b, BK_UPPER] if is_market else price
    unit_in = 0
    if risk[RK_ON] != 0:
        refusal = _risk_check(cash, holdings, risk, account, instrument, side, segment,
                              reserve_price, qty, 0, 0)
        if refusal != 0:
            _reject(events, glob, i, cmds, refusal)
            return
        _reserve(cash, holdings, risk, account, instrument, side, segment, reserve_price, qty)
        unit_in = order_unit(risk, side, reserve_price, segment)
    seq = glob[GL_NEXT_SEQ]
    glob[GL_NEXT_SEQ] = seq + 1
    refs[ref, RF_STATUS] = OrderStatus.RESTING
    refs[ref, RF_QTY] = qty
    r = _row(events, glob, EventKind.ACCEPTED, i, ts)
    events[r, B.ORDER] = ref
    events[r, B.ACCOUNT] = account
    events[r, B.INSTRUMENT] = instrument
    events[r, B.SEGMENT] = segment
    events[r, B.SIDE] = side
    events[r, B.PRICE] = price
    events[r, B.QTY] = qty
    events[r, B.ACCEPTED_TYPE] = c["type"]
    events[r, B.ACCEPTED_TIF] = tif
    # §3 FOK: all or nothing; if it cannot fill, the book is left exactly as it was.
    if tif == TimeInForce.FOK and not _fok_fillable(slots, levels, books, b, side, price,
                                                    account, stp, qty):
        _cancel_incoming(events, glob, i, ts, refs, ref, account, b, side, price, qty,
                         Reason.FOK_NOT_FILLABLE, cash, holdings, risk, reserve_price)
        return
    open_qty, stopped = _match(events, glob, i, ts, slots, refs, levels, books, days,
                               ref, b, side, price, is_market, account, stp, qty,
                               cash, holdings, risk, unit_in)
    if open_qty == 0:
        refs[ref, RF_STATUS] = OrderStatus.FILLED
        return
    if stopped == 1:
        reason = Reason.SELF_TRADE
    elif is_market:
        reason = Reason.NO_LIQUIDITY if open_qty == qty else Reason.IOC_REMAINDER
    elif tif == TimeInForce.DAY:
        s = _place(glob, slots, refs, ref, b, side, price, account, stp, open_qty, seq)
        _rest(slots, levels, books, glob, s)
        return
    else:
        reason = Reason.IOC_REMAINDER
    _cancel_incoming(events, glob, i, ts, refs, ref, account, b, side, price, open_qty, reason,
                     cash, holdings, risk, reserve_price)


@_inline
def _levels_ahead(levels, books, b, side, li):
    """How many non-empty price levels of ``side`` in book ``b`` are better than level
    ``li`` (stops counting at MARKET_DEPTH_LEVELS)."""
    bs = b * 2 + side - 1
    n = 0
    if side == Side.BUY:
        j = books[b, BK_BEST_BID]
        while j > li and n < MARKET_DEPTH_LEVELS:
            if levels[bs, LV_COUNT, j] != 0:
                n += 1
            j -= 1
    else:
        j = books[b, BK_BEST_ASK]
        while j < li and n < MARKET_DEPTH_LEVELS:
            if levels[bs, LV_COUNT, j] != 0:
                n += 1
            j += 1
    return n


@_inline
def _take(cmds, i, events, glob, slots, refs, levels, books, days, cash, holdings, risk):
    # §3a order of checks for TAKE: MALFORMED, INVALID_QTY, INVALID_PRICE (edge),
    # DUPLICATE_ORDER_ID, MARKET_CLOSED (LISTED hours), UNKNOWN_TARGET, TARGET_SAME_SIDE,
    # TARGET_NOT_LISTED, TARGET_NOT_IN_BEST_FIVE, TARGET_OWN_ORDER, TARGET_QTY_EXCEEDED,
    # then the risk stage.
    c = cmds[i]
    ts = c["ts"]
    ref = c["order"]
    account = c["account"]
    instrument = c["instrument"]
    if not _fresh_order(cmds, i, events, glob, refs, days):
        return
    if not _session_open(glob, Segment.LISTED, ts):
        _reject(events, glob, i, cmds, Reason.MARKET_CLOSED)
        return
    target = c["price"]
    s = refs[target, RF_SLOT] if 0 <= target < refs.shape[0] else NIL
    if s == NIL or slots[s, SL_BOOK] // 2 != instrument:
        _reject(events, glob, i, cmds, Reason.UNKNOWN_TARGET)
        return
    side = np.int64(c["side"])
    if slots[s, SL_SIDE] == side:
        _reject(events, glob, i, cmds, Reason.TARGET_SAME_SIDE)
        return
    b = slots[s, SL_BOOK]
    if b % 2 != Segment.LISTED:
        _reject(events, glob, i, cmds, Reason.TARGET_NOT_LISTED)
        return
    price = slots[s, SL_PRICE]
    li = price - books[b, BK_BASE]
    if _levels_ahead(levels, books, b, slots[s, SL_SIDE], li) >= MARKET_DEPTH_LEVELS:
        _reject(events, glob, i, cmds, Reason.TARGET_NOT_IN_BEST_FIVE)
        return
    if slots[s, SL_ACCOUNT] == account:
        _reject(events, glob, i, cmds, Reason.TARGET_OWN_ORDER)
        return
    qty = c["qty"]
    if qty > slots[s, SL_OPEN]:
        _reject(events, glob, i, cmds, Reason.TARGET_QTY_EXCEEDED)
        return
    unit_in = 0
    if risk[RK_ON] != 0:
        refusal = _risk_check(cash, holdings, risk, account, instrument, side, Segment.LISTED,
                              price, qty, 0, 0)
        if refusal != 0:
            _reject(events, glob, i, cmds, refusal)
            return
        _reserve(cash, holdings, risk, account, instrument, side, Segment.LISTED, price, qty)
        unit_in = order_unit(risk, side, price, Segment.LISTED)
    glob[GL_NEXT_SEQ] += 1
    refs[ref, RF_STATUS] = OrderStatus.RESTING
    refs[ref, RF_QTY] = qty
    r = _row(events, glob, EventKind.ACCEPTED, i, ts)
    events[r, B.ORDER] = ref
    events[r, B.ACCOUNT] = account
    events[r, B.INSTRUMENT] = instrument
    events[r, B.SEGMENT] = Segment.LISTED
    events[r, B.SIDE] = side
    events[r, B.PRICE] = price
    events[r, B.QTY] = qty
    events[r, B.ACCEPTED_TYPE] = OrderType.TAKE
    events[r, B.ACCEPTED_TIF] = TimeInForce.IOC
    events[r, B.ACCEPTED_TARGET] = target
    # one trade at the target's price; the target keeps its place with less open
    _trade(events, glob, i, ts, slots, refs, levels, books, days, ref, b, side, account,
           qty, s, b * 2 + slots[s, SL_SIDE] - 1, li, price, cash, holdings, risk, unit_in)
    refs[ref, RF_STATUS] = OrderStatus.FILLED


@_inline
def _own_resting_order(cmds, i, events, glob, cal, slots, refs):
    """CANCEL's and AMEND's checks up to UNKNOWN_ORDER: the order's slot, or NIL (rejected)."""
    c = cmds[i]
    check = c["check"]
    if check != 0:
        _reject(events, glob, i, cmds, check)
        return NIL
    if not names_account(c["account"]):
        _reject(events, glob, i, cmds, Reason.MALFORMED)
        return NIL
    if not _is_trading_day(cal, glob, c["ts"] // DAY_US):
        _reject(events, glob, i, cmds, Reason.MARKET_CLOSED)
        return NIL
    # §5: an order not resting now, or another account's, is UNKNOWN_ORDER alike.
    ref = c["order"]
    s = refs[ref, RF_SLOT] if 0 <= ref < refs.shape[0] else NIL
    if s == NIL or slots[s, SL_ACCOUNT] != c["account"]:
        _reject(events, glob, i, cmds, Reason.UNKNOWN_ORDER)
        return NIL
    return s


@_inline
def _cancel(cmds, i, events, glob, cal, slots, refs, levels, books, cash, holdings, risk):
    # §7 order of checks for CANCEL: MALFORMED, MARKET_CLOSED (non-trading day only),
    # UNKNOWN_ORDER. §5: cancels are accepted at any time of a trading day.
    s = _own_resting_order(cmds, i, events, glob, cal, slots, refs)
    if s != NIL:
        _cancel_resting(events, glob, i, cmds[i]["ts"], slots, refs, levels, books, s,
                        Reason.USER, cash, holdings, risk)


@_inline
def _amend(cmds, i, events, glob, cal, slots, refs, levels, books, days, cash, holdings, risk):
    # §7 order of checks for AMEND: MALFORMED, INVALID_QTY, INVALID_PRICE (edge),
    # MARKET_CLOSED (non-trading day), UNKNOWN_ORDER, MARKET_CLOSED (segment hours),
    # INVALID_QTY (segment range), PRICE_OUTSIDE_BAND.
    s = _own_resting_order(cmds, i, events, glob, cal, slots, refs)
    if s == NIL:
        return
    c = cmds[i]
    ts = c["ts"]
    b = slots[s, SL_BOOK]
    segment = b % 2
    if not _session_open(glob, segment, ts):
        _reject(events, glob, i, cmds, Reason.MARKET_CLOSED)
        return
    new_qty = c["qty"]
    new_price = c["price"]
    if not qty_fits_segment(new_qty, segment):
        _reject(events, glob, i, cmds, Reason.INVALID_QTY)
        return
    if not in_band(new_price, books[b, BK_LOWER], books[b, BK_UPPER]):
        _reject(events, glob, i, cmds, Reason.PRICE_OUTSIDE_BAND)
        return

    ref = slots[s, SL_REF]
    old_open = slots[s, SL_OPEN]
    if risk[RK_ON] != 0:
        # the risk stage judges the change: only what the amendment adds must fit
        refusal = _risk_check(cash, holdings, risk, slots[s, SL_ACCOUNT], b // 2,
                              slots[s, SL_SIDE], segment, new_price, new_qty, old_open,
                              slots[s, SL_PRICE])
        if refusal != 0:
            _reject(events, glob, i, cmds, refusal)
            return
        _release(cash, holdings, risk, slots, s, old_open)
        _reserve(cash, holdings, risk, slots[s, SL_ACCOUNT], b // 2, slots[s, SL_SIDE], segment,
                 new_price, new_qty)
    if new_price == slots[s, SL_PRICE] and new_qty <= old_open:
        # §5: same price, same or smaller quantity: reduced in place, priority kept.
        bs = b * 2 + slots[s, SL_SIDE] - 1
        levels[bs, LV_QTY, new_price - books[b, BK_BASE]] -= old_open - new_qty
        slots[s, SL_OPEN] = new_qty
        refs[ref, RF_QTY] -= old_open - new_qty
        r = _emit(events, glob, EventKind.AMENDED, i, ts, slots, s, new_qty, 0,
                  1)  # AMENDED_PRIORITY_KEPT
        events[r, B.AMENDED_OPEN_BEFORE] = old_open
        return
    # §5: any other change loses time priority: out, and in again as a DAY limit order.
    side = slots[s, SL_SIDE]
    account = slots[s, SL_ACCOUNT]
    stp = slots[s, SL_STP]
    _unlink(slots, levels, books, glob, s)
    slots[s, SL_PRICE] = new_price
    slots[s, SL_OPEN] = new_qty
    refs[ref, RF_QTY] += new_qty - old_open
    r = _emit(events, glob, EventKind.AMENDED, i, ts, slots, s, new_qty, 0,
              0)  # AMENDED_PRIORITY_KEPT
    events[r, B.AMENDED_OPEN_BEFORE] = old_open
    # the slot stays claimed for the order while it matches: release it only if it won't rest
    open_qty, stopped = _match(events, glob, i, ts, slots, refs, levels, books, days,
                               ref, b, side, new_price, False, account, stp, new_qty,
                               cash, holdings, risk, order_unit(risk, side, new_price, segment))
    if open_qty == 0:
        refs[ref, RF_STATUS] = OrderStatus.FILLED
        _free(slots, refs, glob, s)
    elif stopped == 1:
        _free(slots, refs, glob, s)
        _cancel_incoming(events, glob, i, ts, refs, ref, account, b, side, new_price, open_qty,
                         Reason.SELF_TRADE, cash, holdings, risk, new_price)
    else:
        slots[s, SL_OPEN] = open_qty
        _rest(slots, levels, books, glob, s)


# ---------------------------------------------------------------------------- days (§6)

@_kernel
def _open_day(glob, books, levels, days, day, cash, holdings, risk):
    glob[GL_LAST_DAY] = day
    glob[GL_DAY_OPEN] = 1
    if risk[RK_ON] != 0:
        # T+1: yesterday's purchases become sellable, yesterday's proceeds withdrawable
        for h in range(holdings.shape[0]):
            holdings[h, HD_PENDING] = 0
        for a in range(cash.shape[0]):
            cash[a, CA_PROCEEDS] = 0
    for instrument in range(days.shape[0]):
        # the close of the last day the engine ran (§6)
        prior_close = day_closing_price(days, instrument)
        days[instrument, DY_PRIOR_CLOSE] = prior_close
        days[instrument, DY_LISTED_VOLUME] = 0
        days[instrument, DY_LISTED_TURNOVER] = 0
        days[instrument, DY_BLOCK_VOLUME] = 0
        days[instrument, DY_BLOCK_TURNOVER] = 0
        for segment in range(2):
            b = instrument * 2 + segment
            lower, upper = band_limits(prior_close, segment)
            books[b, BK_LOWER] = lower
            books[b, BK_UPPER] = upper
            books[b, BK_BASE] = lower
            books[b, BK_WIDTH] = upper - lower + 1
            books[b, BK_BEST_BID] = NIL
            books[b, BK_BEST_ASK] = NIL
            for bs in range(b * 2, b * 2 + 2):
                for li in range(upper - lower + 1):
                    levels[bs, LV_HEAD, li] = NIL
                    levels[bs, LV_TAIL, li] = NIL
                    levels[bs, LV_QTY, li] = 0
                    levels[bs, LV_COUNT, li] = 0


@_kernel
def _sift_down(slots, root, end):
    # max-heap on SL_SEQ over the slot numbers listed in slots[0:end, SL_AUX]
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and slots[slots[child + 1, SL_AUX], SL_SEQ] > slots[
                slots[child, SL_AUX], SL_SEQ]:
            child += 1
        if slots[slots[root, SL_AUX], SL_SEQ] >= slots[slots[child, SL_AUX], SL_SEQ]:
            return
        tmp = slots[root, SL_AUX]
        slots[root, SL_AUX] = slots[child, SL_AUX]
        slots[child, SL_AUX] = tmp
        root = child


@_kernel
def _sort_by_arrival(slots, n):
    """Heap sort of the slot numbers in slots[0:n, SL_AUX] by arrival (no allocation)."""
    for start in range(n // 2 - 1, -1, -1):
        _sift_down(slots, start, n)
    for end in range(n - 1, 0, -1):
        tmp = slots[0, SL_AUX]
        slots[0, SL_AUX] = slots[end, SL_AUX]
        slots[end, SL_AUX] = tmp
        _sift_down(slots, 0, end)


@_kernel
def _close_day(glob, i, events, slots, refs, levels, books, days, cash, holdings, risk):
    # §6: at 15:00 every resting order expires, reported in order of arrival.
    end_ts = glob[GL_LAST_DAY] * DAY_US + DAY_CLOSE_US
    n = glob[GL_RESTING]
    if n > 0:
        k = 0
        for b in range(books.shape[0]):
            if books[b, BK_RESTING] == 0:
                continue
            for bs in range(b * 2, b * 2 + 2):
                for li in range(books[b, BK_WIDTH]):
                    s = levels[bs, LV_HEAD, li]
                    while s != NIL:
                        slots[k, SL_AUX] = s
                        k += 1
                        s = slots[s, SL_NEXT]
        _sort_by_arrival(slots, n)
        for j in range(n):
            s = slots[j, SL_AUX]
            ref = slots[s, SL_REF]
            open_qty = slots[s, SL_OPEN]
            _emit(events, glob, EventKind.EXPIRED, i, end_ts, slots, s, open_qty, 0,
                  refs[ref, RF_FILLED])  # EXPIRED_FILLED
            _release(cash, holdings, risk, slots, s, open_qty)
            refs[ref, RF_CANCELLED] += open_qty
            refs[ref, RF_STATUS] = OrderStatus.EXPIRED
            _free(slots, refs, glob, s)
        # every book is empty now: clear the ladders at once rather than level by level
        for b in range(books.shape[0]):
            if books[b, BK_RESTING] == 0:
                continue
            for bs in range(b * 2, b * 2 + 2):
                for li in range(books[b, BK_WIDTH]):
                    levels[bs, LV_HEAD, li] = NIL
                    levels[bs, LV_TAIL, li] = NIL
                    levels[bs, LV_QTY, li] = 0
                    levels[bs, LV_COUNT, li] = 0
            books[b, BK_BEST_BID] = NIL
            books[b, BK_BEST_ASK] = NIL
            books[b, BK_RESTING] = 0
        glob[GL_RESTING] = 0
    for instrument in range(days.shape[0]):
        r = _row(events, glob, EventKind.DAY_CLOSED, i, end_ts)
        events[r, B.INSTRUMENT] = instrument
        events[r, B.DAY_NUMBER] = glob[GL_LAST_DAY]
        events[r, B.DAY_CLOSE] = day_closing_price(days, instrument)
        events[r, B.DAY_PRIOR_CLOSE] = days[instrument, DY_PRIOR_CLOSE]
        events[r, B.DAY_LISTED_VOLUME] = days[instrument, DY_LISTED_VOLUME]
        events[r, B.DAY_BLOCK_VOLUME] = days[instrument, DY_BLOCK_VOLUME]
        events[r, B.DAY_LISTED_TURNOVER] = days[instrument, DY_LISTED_TURNOVER]
        events[r, B.DAY_BLOCK_TURNOVER] = days[instrument, DY_BLOCK_TURNOVER]
    glob[GL_DAY_OPEN] = 0


@_inline
def _advance_clock(glob, i, ts, cal, events, slots, refs, levels, books, days, cash, holdings,
                   risk):
    day = ts // DAY_US
    time_of_day = ts % DAY_US
    if glob[GL_DAY_OPEN] == 1 and (day > glob[GL_LAST_DAY] or time_of_day >= DAY_CLOSE_US):
        _close_day(glob, i, events, slots, refs, levels, books, days, cash, holdings, risk)
    if day > glob[GL_LAST_DAY] and _is_trading_day(cal, glob, day):
        _open_day(glob, books, levels, days, day, cash, holdings, risk)
        if time_of_day >= DAY_CLOSE_US:
            _close_day(glob, i, events, slots, refs, levels, books, days, cash, holdings, risk)
    glob[GL_CLOCK] = ts


@_kernel
def _ladder_width_needed(glob, cal, days, ts):
    """Ladder width the day that ``ts`` would open needs, 0 if it opens none, -1 if a prior
    close would pass MAX_PRIOR_CLOSE."""
    if ts == NO_TIME or ts < glob[GL_CLOCK]:
        return 0
    day = ts // DAY_US
    if day <= glob[GL_LAST_DAY] or not _is_trading_day(cal, glob, day):
        return 0
    width = 0
    for instrument in range(days.shape[0]):
        prior_close = day_closing_price(days, instrument)
        if prior_close > MAX_PRIOR_CLOSE:
            return -1
        width = max(width, ladder_width(prior_close))
    return width


# ---------------------------------------------------------------------------- entry point

@_kernel
def run_batch(cmds, start, cal, glob, slots, refs, levels, books, days, events, cash,
               holdings, risk):
    """Process ``cmds[start:]``; return DONE, or a NEED_* code with GL_NEXT_CMD set to the
    command not yet processed (nothing of it has happened), for the wrapper to grow an array
    and call again. Events are appended from row ``glob[GL_EVENTS]``.
    """
    n_instruments = days.shape[0]
    for i in range(start, cmds.shape[0]):
        # room for the worst case of one command: one row per resting order (each traded,
        # cancelled by STP or expired at most once), the DAY_CLOSED rows of two days (the
        # day it ends and a day it enters at 15:00 or later) and a few of its own
        if events.shape[0] - glob[GL_EVENTS] < glob[GL_RESTING] + 2 * n_instruments + 8:
            glob[GL_NEXT_CMD] = i
            return NEED_EVENTS
        action = cmds[i]["action"]
        if action == Action.NEW and glob[GL_FREE_COUNT] == 0:
            glob[GL_NEXT_CMD] = i
            return NEED_SLOTS
        ref = cmds[i]["order"]
        takes_id = action == Action.NEW or action == Action.TAKE or \
            action == Action.BLOCK_QUOTE
        if takes_id and ref >= refs.shape[0]:  # CANCEL/AMEND of it: UNKNOWN_ORDER
            glob[GL_NEXT_CMD] = i
            glob[GL_NEED] = ref
            return NEED_ORDERS
        ts = cmds[i]["ts"]
        if ts >= glob[GL_CLOCK] and ts // DAY_US > glob[GL_LAST_DAY]:
            # a day after the last trading day seen: rare, so its checks live here
            day = ts // DAY_US
            if glob[GL_CAL_WEEKDAYS] == 1 and day - glob[GL_CAL_FIRST_DAY] >= cal.shape[0]:
                glob[GL_NEXT_CMD] = i
                glob[GL_NEED] = day
                return NEED_CALENDAR
            width = _ladder_width_needed(glob, cal, days, ts)
            if width < 0:
                glob[GL_NEXT_CMD] = i
                return PRICE_LIMIT
            if width > levels.shape[2]:
                glob[GL_NEXT_CMD] = i
                glob[GL_NEED] = width
                return NEED_LEVELS
        # §6: a time that does not parse, or is earlier than the clock, is MALFORMED and does
        # not move the clock; any other time moves it before every other check.
        if ts == NO_TIME or ts < glob[GL_CLOCK]:
            _reject(events, glob, i, cmds, Reason.MALFORMED)
        else:
            if glob[GL_QUOTES] > 0 and glob[GL_DAY_OPEN] == 1 and (
                    ts // DAY_US > glob[GL_LAST_DAY] or ts % DAY_US >= DAY_CLOSE_US):
                # the day ends with block quotes live: Python expires them first (§3b)
                glob[GL_NEXT_CMD] = i
                return EXPIRE_QUOTES
            _advance_clock(glob, i, ts, cal, events, slots, refs, levels, books, days, cash,
                           holdings, risk)
            if action == Action.NEW:
                _new(cmds, i, events, glob, slots, refs, levels, books, days, cash, holdings,
                     risk)
            elif action == Action.CANCEL:
                _cancel(cmds, i, events, glob, cal, slots, refs, levels, books, cash, holdings,
                        risk)
            elif action == Action.AMEND:
                _amend(cmds, i, events, glob, cal, slots, refs, levels, books, days, cash,
                       holdings, risk)
            elif action == Action.TAKE:
                _take(cmds, i, events, glob, slots, refs, levels, books, days, cash, holdings,
                      risk)
            elif action == Action.BLOCK_QUOTE or action == Action.BLOCK_COUNTER or \
                    action == Action.BLOCK_ACCEPT or action == Action.BLOCK_WITHDRAW:
                # a negotiation (§3b) is Python's: it marks the quote id used and counts the
                # command done, then resumes at i + 1
                glob[GL_NEXT_CMD] = i
                return NEGOTIATE
            elif action != Action.TICK:
                _reject(events, glob, i, cmds, Reason.MALFORMED)
        # §3: an order_id is used by any NEW (or TAKE) row, whatever that row's outcome.
        if takes_id and 0 <= ref < refs.shape[0]:
            refs[ref, RF_USED] = 1
        glob[GL_DONE] += 1
    glob[GL_NEXT_CMD] = cmds.shape[0]
    return DONE


@_kernel
def top_levels(levels, books, b, side, n, out):
    """The best ``n`` levels of one side of book ``b`` into ``out`` rows (price, open qty,
    orders), walking out from the best-level pointer; returns how many were found."""
    bs = b * 2 + side - 1
    li = books[b, BK_BEST_BID] if side == Side.BUY else books[b, BK_BEST_ASK]
    if li == NIL:
        return 0
    width = books[b, BK_WIDTH]
    step = -1 if side == Side.BUY else 1
    found = 0
    while 0 <= li < width and found < n:
        if levels[bs, LV_COUNT, li] > 0:
            out[found, 0] = books[b, BK_BASE] + li
            out[found, 1] = levels[bs, LV_QTY, li]
            out[found, 2] = levels[bs, LV_COUNT, li]
            found += 1
        li += step
    return found

