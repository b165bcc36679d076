"""Numba JIT-compiled matching kernels: the spec's rules over the arrays of ``state``.

Only ``_``-named ``@njit`` functions live here, over int64 arrays: no objects, no allocation
in the matching path (the day close sorts expiring orders, once a day). ``_run_batch`` is the
single entry point; ``engine.fast.book`` owns the arrays and calls it once per batch. The
logic mirrors ``engine.reference.book`` step for step, under the same helper names, so each
function can be read beside its plain twin.
"""

import numpy as np
from numba import njit

from .. import batch as B
from ..accounts import (
    CA_FROZEN, CA_KNOWN, CA_PROCEEDS, CA_RESERVED, CA_TOTAL, CA_TYPE, HD_BUY_OPEN, HD_PENDING,
    HD_RESERVED, HD_TOTAL, NO_LIMIT, RK_ADMITTED, RK_FEE_BPS_BLOCK, RK_FEE_BPS_LISTED, RK_FEES,
    RK_LIMIT, RK_ON, RK_T1,
)
from ..codes import (
    NO_PRICE, NO_TIME, Action, EventKind, OrderStatus, OrderType, Reason, Segment, Side, Stp,
    TimeInForce,
)
from ..rules import (
    AM_CLOSE_US, AM_OPEN_US, BLOCK_BAND_PCT, BLOCK_MIN_QTY, DAY_CLOSE_US, DAY_US,
    LISTED_BAND_PCT, LISTED_MAX_QTY, MARKET_DEPTH_LEVELS, MAX_PRIOR_CLOSE, MAX_QTY, MIN_QTY, PM_OPEN_US,
)
from .state import (
    BK_BASE, BK_BEST_ASK, BK_BEST_BID, BK_LOWER, BK_RESTING, BK_UPPER, BK_WIDTH, DONE,
    DY_BLOCK_TURNOVER, DY_BLOCK_VOLUME, DY_LISTED_TURNOVER, DY_LISTED_VOLUME, DY_PRIOR_CLOSE,
    GL_CAL_FIRST_DAY, GL_CLOCK, GL_DAY_OPEN, GL_DONE, GL_EVENTS, GL_FREE_COUNT, GL_FREE_HEAD,
    GL_CAL_WEEKDAYS, GL_LAST_DAY, GL_NEED, GL_NEXT_CMD, GL_NEXT_SEQ, GL_NEXT_TRADE_ID, GL_RESTING, LV_COUNT,
    LV_HEAD, LV_QTY, LV_TAIL, NEED_CALENDAR, NEED_EVENTS, NEED_LEVELS, NEED_ORDERS, NEED_SLOTS, PRICE_LIMIT, NIL, RF_CANCELLED,
    RF_FILLED, RF_QTY, RF_REASON, RF_SLOT, RF_STATUS, RF_USED, SL_ACCOUNT, SL_BOOK, SL_NEXT,
    SL_AUX, SL_OPEN, SL_PREV, SL_PRICE, SL_REF, SL_SEQ, SL_SIDE, SL_STP,
)

# IntEnum members read as int constants inside jitted code (frozen at compile time)
_NEW, _CANCEL, _AMEND, _TICK = int(Action.NEW), int(Action.CANCEL), int(Action.AMEND), int(
    Action.TICK)
_BUY, _SELL = int(Side.BUY), int(Side.SELL)
_MARKET = int(OrderType.MARKET)
_DAY, _FOK = int(TimeInForce.DAY), int(TimeInForce.FOK)
_OLDEST, _BOTH = int(Stp.CANCEL_OLDEST), int(Stp.CANCEL_BOTH)
_LISTED, _BLOCK = int(Segment.LISTED), int(Segment.BLOCK)
_K_ACCEPTED, _K_REJECTED, _K_TRADE = (
    int(EventKind.ACCEPTED), int(EventKind.REJECTED), int(EventKind.TRADE))
_K_CANCELLED, _K_EXPIRED, _K_AMENDED, _K_DAY = (
    int(EventKind.CANCELLED), int(EventKind.EXPIRED), int(EventKind.AMENDED),
    int(EventKind.DAY_CLOSED))
_R_MALFORMED, _R_INVALID_QTY, _R_DUPLICATE = (
    int(Reason.MALFORMED), int(Reason.INVALID_QTY), int(Reason.DUPLICATE_ORDER_ID))
_R_CLOSED, _R_UNKNOWN, _R_BAND = (
    int(Reason.MARKET_CLOSED), int(Reason.UNKNOWN_ORDER), int(Reason.PRICE_OUTSIDE_BAND))
_R_FUNDS, _R_ALLOWANCES, _R_POSITION, _R_NO_ACCOUNT, _R_FROZEN, _R_NOT_ADMITTED = (
    int(Reason.INSUFFICIENT_FUNDS), int(Reason.INSUFFICIENT_ALLOWANCES),
    int(Reason.POSITION_LIMIT), int(Reason.UNKNOWN_ACCOUNT), int(Reason.ACCOUNT_FROZEN),
    int(Reason.ACCOUNT_NOT_ADMITTED))
_R_USER, _R_IOC, _R_NO_LIQ, _R_FOK, _R_SELF = (
    int(Reason.USER), int(Reason.IOC_REMAINDER), int(Reason.NO_LIQUIDITY),
    int(Reason.FOK_NOT_FILLABLE), int(Reason.SELF_TRADE))
#: Kernels allocate nothing, so Numba's reference counting is switched off (``_nrt=False``):
#: with it, every call passing the state arrays paid atomic increments and decrements. Every
#: helper on the matching path is inlined at Numba's level too (a call passes each array as
#: seven machine words and hides aliasing from LLVM): only the day's opening and close, run
#: once a day, stay real calls. The history of these figures is in docs/performance.md.
_kernel = njit(cache=True, _nrt=False)
_inline = njit(cache=True, _nrt=False, inline="always")

_S_RESTING, _S_FILLED, _S_CANCELLED, _S_EXPIRED = (
    int(OrderStatus.RESTING), int(OrderStatus.FILLED), int(OrderStatus.CANCELLED),
    int(OrderStatus.EXPIRED))


# ---------------------------------------------------------------------------- rules

@_inline
def _band_limits(prior_close, segment):
    pct = LISTED_BAND_PCT if segment == _LISTED else BLOCK_BAND_PCT
    return ((100 - pct) * prior_close + 50) // 100, ((100 + pct) * prior_close + 50) // 100


@_inline
def _in_session(segment, time_of_day):
    if PM_OPEN_US <= time_of_day < DAY_CLOSE_US:
        return True
    return segment == _LISTED and AM_OPEN_US <= time_of_day < AM_CLOSE_US


@_inline
def _qty_fits_segment(qty, segment):
    if segment == _LISTED:
        return MIN_QTY <= qty <= LISTED_MAX_QTY
    return BLOCK_MIN_QTY <= qty <= MAX_QTY


@_inline
def _closing_price(days, instrument):
    volume = days[instrument, DY_LISTED_VOLUME]
    if volume == 0:
        return days[instrument, DY_PRIOR_CLOSE]
    return (days[instrument, DY_LISTED_TURNOVER] + volume // 2) // volume


@_inline
def _is_trading_day(cal, glob, day):
    i = day - glob[GL_CAL_FIRST_DAY]
    return 0 <= i < cal.shape[0] and cal[i] != 0


@_inline
def _session_open(glob, segment, ts):
    # NEW/AMEND allowed: a trading day in progress (the clock is in it), in segment hours
    return glob[GL_DAY_OPEN] == 1 and _in_session(segment, ts % DAY_US)


# ---------------------------------------------------------------------------- risk stage
# The twin of engine.accounts.Accounts.{check_order, reserve, settle, new_day}: balances in
# ``cash`` / ``holdings``, parameters in ``risk``; all of it skipped when risk[RK_ON] == 0.

@_inline
def _unit(risk, side, price, segment):
    # cash one open tonne reserves: price plus the fee rounded up (engine.accounts.reserve_unit)
    if side != _BUY:
        return 1
    bps = risk[RK_FEE_BPS_LISTED] if segment == _LISTED else risk[RK_FEE_BPS_BLOCK]
    return price + (price * bps + 9999) // 10000


@_inline
def _risk_check(cash, holdings, risk, account, instrument, side, segment, price, qty,
                old_qty, old_price):
    if account >= cash.shape[0] or cash[account, CA_KNOWN] == 0:
        return _R_NO_ACCOUNT
    if cash[account, CA_FROZEN] != 0:
        return _R_FROZEN
    kind = cash[account, CA_TYPE]
    if (risk[RK_ADMITTED] >> kind) & 1 == 0:
        return _R_NOT_ADMITTED
    h = account * (holdings.shape[0] // cash.shape[0]) + instrument
    if side == _BUY:
        limit = risk[RK_LIMIT + kind]
        if limit != NO_LIMIT and qty > old_qty and \
                holdings[h, HD_TOTAL] + holdings[h, HD_BUY_OPEN] - old_qty + qty > limit:
            return _R_POSITION
        need = qty * _unit(risk, side, price, segment) - old_qty * _unit(
            risk, side, old_price, segment)
        if need > cash[account, CA_TOTAL] - cash[account, CA_RESERVED]:
            return _R_FUNDS
    elif qty - old_qty > holdings[h, HD_TOTAL] - holdings[h, HD_RESERVED] - holdings[
            h, HD_PENDING]:
        return _R_ALLOWANCES
    return 0


@_inline
def _reserve(cash, holdings, risk, account, instrument, side, segment, price, qty):
    # reserve for qty open tonnes at price; a negative qty releases
    h = account * (holdings.shape[0] // cash.shape[0]) + instrument
    if side == _BUY:
        cash[account, CA_RESERVED] += qty * _unit(risk, side, price, segment)
        holdings[h, HD_BUY_OPEN] += qty
    else:
        holdings[h, HD_RESERVED] += qty


@_inline
def _settle(cash, holdings, risk, instrument, segment, buyer, seller, price, qty, buyer_unit):
    notional = price * qty
    bps = risk[RK_FEE_BPS_LISTED] if segment == _LISTED else risk[RK_FEE_BPS_BLOCK]
    fee = (notional * bps + 5000) // 10000
    cash[buyer, CA_TOTAL] -= notional + fee
    cash[buyer, CA_RESERVED] -= qty * buyer_unit
    cash[seller, CA_TOTAL] += notional - fee
    cash[seller, CA_PROCEEDS] += notional - fee
    n_instruments = holdings.shape[0] // cash.shape[0]
    hb = buyer * n_instruments + instrument
    hs = seller * n_instruments + instrument
    holdings[hb, HD_TOTAL] += qty
    holdings[hb, HD_BUY_OPEN] -= qty
    if risk[RK_T1] != 0:
        holdings[hb, HD_PENDING] += qty
    holdings[hs, HD_TOTAL] -= qty
    holdings[hs, HD_RESERVED] -= qty
    risk[RK_FEES] += 2 * fee


@_inline
def _release_slot(cash, holdings, risk, slots, s, qty):
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
def _emit_slot(events, glob, kind, cmd, ts, slots, s, qty, reason, filled):
    # an event about a resting order, read from its slot
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
    events[r, B.AUX1] = filled
    return r


@_inline
def _reject(events, glob, i, cmds, reason):
    c = cmds[i]
    r = _row(events, glob, _K_REJECTED, i, c["ts"])
    events[r, B.ORDER] = c["order"]
    events[r, B.ACCOUNT] = c["account"]
    events[r, B.INSTRUMENT] = c["instrument"]
    events[r, B.REASON] = reason
    events[r, B.AUX1] = c["action"]


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
    if side == _BUY:
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
        if side == _BUY:
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
    ref = slots[s, SL_REF]
    open_qty = slots[s, SL_OPEN]
    _release_slot(cash, holdings, risk, slots, s, open_qty)
    _emit_slot(events, glob, _K_CANCELLED, i, ts, slots, s, open_qty, reason, refs[ref, RF_FILLED])
    refs[ref, RF_CANCELLED] += open_qty
    refs[ref, RF_STATUS] = _S_CANCELLED
    refs[ref, RF_REASON] = reason
    _remove(slots, refs, levels, books, glob, s)


# ---------------------------------------------------------------------------- matching

@_inline
def _fok_fillable(slots, levels, books, b, side, price, account, stp, qty):
    """Spec §4: fillable from other accounts' orders alone, walking as matching would."""
    if side == _BUY:
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
        level_price = base + li
        if (side == _BUY and level_price > price) or (side == _SELL and level_price < price):
            return False
        s = levels[obs, LV_HEAD, li]
        while s != NIL:
            if slots[s, SL_ACCOUNT] == account:
                if stp != _OLDEST:
                    return False
            else:
                available += slots[s, SL_OPEN]
                if available >= qty:
                    return True
            s = slots[s, SL_NEXT]
        li = li + 1 if side == _BUY else li - 1
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
    opposite_bs = b * 2 + (1 if side == _BUY else 0)
    instrument = b // 2
    listed = b % 2 == _LISTED
    base = books[b, BK_BASE]
    levels_entered = 0
    while open_qty > 0:
        li = books[b, BK_BEST_ASK] if side == _BUY else books[b, BK_BEST_BID]
        if li == NIL:
            break
        level_price = base + li
        if not is_market:
            if side == _BUY and level_price > price:
                break
            if side == _SELL and level_price < price:
                break
        # MARKET: at most the five best levels as they stood on arrival (spec §3)
        levels_entered += 1
        if is_market and levels_entered > MARKET_DEPTH_LEVELS:
            break
        s = levels[opposite_bs, LV_HEAD, li]
        while s != NIL and open_qty > 0:
            nxt = slots[s, SL_NEXT]
            if slots[s, SL_ACCOUNT] == account:
                if stp == _OLDEST:
                    _cancel_resting(events, glob, i, ts, slots, refs, levels, books, s, _R_SELF,
                                    cash, holdings, risk)
                    s = nxt
                    continue
                if stp == _BOTH:
                    _cancel_resting(events, glob, i, ts, slots, refs, levels, books, s, _R_SELF,
                                    cash, holdings, risk)
                return open_qty, 1
            resting_ref = slots[s, SL_REF]
            resting_open = slots[s, SL_OPEN]
            qty = open_qty if open_qty < resting_open else resting_open
            open_qty -= qty
            refs[ref, RF_FILLED] += qty
            refs[resting_ref, RF_FILLED] += qty
            slots[s, SL_OPEN] = resting_open - qty
            levels[opposite_bs, LV_QTY, li] -= qty
            if listed:
                days[instrument, DY_LISTED_VOLUME] += qty
                days[instrument, DY_LISTED_TURNOVER] += level_price * qty
            else:
                days[instrument, DY_BLOCK_VOLUME] += qty
                days[instrument, DY_BLOCK_TURNOVER] += level_price * qty
            r = _row(events, glob, _K_TRADE, i, ts)
            events[r, B.TRADE_ID] = glob[GL_NEXT_TRADE_ID]
            glob[GL_NEXT_TRADE_ID] += 1
            events[r, B.INSTRUMENT] = instrument
            events[r, B.SEGMENT] = b % 2
            events[r, B.PRICE] = level_price
            events[r, B.QTY] = qty
            events[r, B.SIDE] = side
            if side == _BUY:
                events[r, B.ORDER] = ref
                events[r, B.ACCOUNT] = account
                events[r, B.AUX1] = open_qty
                events[r, B.ORDER2] = resting_ref
                events[r, B.ACCOUNT2] = slots[s, SL_ACCOUNT]
                events[r, B.AUX2] = resting_open - qty
            else:
                events[r, B.ORDER] = resting_ref
                events[r, B.ACCOUNT] = slots[s, SL_ACCOUNT]
                events[r, B.AUX1] = resting_open - qty
                events[r, B.ORDER2] = ref
                events[r, B.ACCOUNT2] = account
                events[r, B.AUX2] = open_qty
            if risk[RK_ON] != 0:
                if side == _BUY:
                    _settle(cash, holdings, risk, instrument, b % 2, account,
                            slots[s, SL_ACCOUNT], level_price, qty, unit_in)
                else:
                    _settle(cash, holdings, risk, instrument, b % 2, slots[s, SL_ACCOUNT],
                            account, level_price, qty, _unit(risk, _BUY, level_price, b % 2))
            if resting_open == qty:
                refs[resting_ref, RF_STATUS] = _S_FILLED
                _remove(slots, refs, levels, books, glob, s)
            s = nxt
    return open_qty, 0


@_inline
def _cancel_incoming(events, glob, i, ts, refs, ref, account, b, side, price, open_qty, reason,
                     cash, holdings, risk, reserve_price):
    if risk[RK_ON] != 0:
        _reserve(cash, holdings, risk, account, b // 2, side, b % 2, reserve_price, -open_qty)
    r = _row(events, glob, _K_CANCELLED, i, ts)
    events[r, B.ORDER] = ref
    events[r, B.ACCOUNT] = account
    events[r, B.INSTRUMENT] = b // 2
    events[r, B.SEGMENT] = b % 2
    events[r, B.SIDE] = side
    events[r, B.PRICE] = price
    events[r, B.QTY] = open_qty
    events[r, B.REASON] = reason
    events[r, B.AUX1] = refs[ref, RF_FILLED]
    refs[ref, RF_CANCELLED] += open_qty
    refs[ref, RF_STATUS] = _S_CANCELLED
    refs[ref, RF_REASON] = reason


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
def _new(cmds, i, events, glob, slots, refs, levels, books, days, cash, holdings, risk):
    c = cmds[i]
    ts = c["ts"]
    ref = c["order"]
    account = c["account"]
    instrument = c["instrument"]
    check = c["check"]
    if check == 0 and (ref < 0 or ref >= refs.shape[0] or account < 0
                       or instrument < 0 or instrument >= days.shape[0]):
        check = _R_MALFORMED
    if check != 0:
        _reject(events, glob, i, cmds, check)
        return
    if refs[ref, RF_USED] != 0:
        _reject(events, glob, i, cmds, _R_DUPLICATE)
        return
    qty = c["qty"]
    segment = _LISTED if qty <= LISTED_MAX_QTY else _BLOCK
    if not _session_open(glob, segment, ts):
        _reject(events, glob, i, cmds, _R_CLOSED)
        return
    b = instrument * 2 + segment
    is_market = c["type"] == _MARKET
    price = NO_PRICE if is_market else c["price"]
    if not is_market and not (books[b, BK_LOWER] <= price <= books[b, BK_UPPER]):
        _reject(events, glob, i, cmds, _R_BAND)
        return

    side = np.int64(c["side"])
    stp = np.int64(c["stp"])
    tif = np.int64(c["tif"])
    # the risk stage: a MARKET buy reserves at the band's upper limit
    reserve_price = books[b, BK_UPPER] if is_market else price
    unit_in = 0
    if risk[RK_ON] != 0:
        reason = _risk_check(cash, holdings, risk, account, instrument, side, segment,
                             reserve_price, qty, 0, 0)
        if reason != 0:
            _reject(events, glob, i, cmds, reason)
            return
        _reserve(cash, holdings, risk, account, instrument, side, segment, reserve_price, qty)
        unit_in = _unit(risk, side, reserve_price, segment)
    seq = glob[GL_NEXT_SEQ]
    glob[GL_NEXT_SEQ] = seq + 1
    refs[ref, RF_STATUS] = _S_RESTING
    refs[ref, RF_QTY] = qty
    r = _row(events, glob, _K_ACCEPTED, i, ts)
    events[r, B.ORDER] = ref
    events[r, B.ACCOUNT] = account
    events[r, B.INSTRUMENT] = instrument
    events[r, B.SEGMENT] = segment
    events[r, B.SIDE] = side
    events[r, B.PRICE] = price
    events[r, B.QTY] = qty
    events[r, B.AUX1] = c["type"]
    events[r, B.AUX2] = tif
    if tif == _FOK and not _fok_fillable(slots, levels, books, b, side, price, account, stp, qty):
        _cancel_incoming(events, glob, i, ts, refs, ref, account, b, side, price, qty, _R_FOK,
                         cash, holdings, risk, reserve_price)
        return
    open_qty, stopped = _match(events, glob, i, ts, slots, refs, levels, books, days,
                               ref, b, side, price, is_market, account, stp, qty,
                               cash, holdings, risk, unit_in)
    if open_qty == 0:
        refs[ref, RF_STATUS] = _S_FILLED
        return
    if stopped == 1:
        reason = _R_SELF
    elif is_market:
        reason = _R_NO_LIQ if open_qty == qty else _R_IOC
    elif tif == _DAY:
        s = _place(glob, slots, refs, ref, b, side, price, account, stp, open_qty, seq)
        _rest(slots, levels, books, glob, s)
        return
    else:
        reason = _R_IOC
    _cancel_incoming(events, glob, i, ts, refs, ref, account, b, side, price, open_qty, reason,
                     cash, holdings, risk, reserve_price)


@_inline
def _own_resting_slot(cmds, i, events, glob, cal, slots, refs):
    """CANCEL's and AMEND's checks up to UNKNOWN_ORDER: the order's slot, or NIL (rejected)."""
    c = cmds[i]
    check = c["check"]
    if check == 0 and c["account"] < 0:
        check = _R_MALFORMED
    if check != 0:
        _reject(events, glob, i, cmds, check)
        return NIL
    if not _is_trading_day(cal, glob, c["ts"] // DAY_US):
        _reject(events, glob, i, cmds, _R_CLOSED)
        return NIL
    # spec §5: not resting now, or another account's: UNKNOWN_ORDER alike
    ref = c["order"]
    s = refs[ref, RF_SLOT] if 0 <= ref < refs.shape[0] else NIL
    if s == NIL or slots[s, SL_ACCOUNT] != c["account"]:
        _reject(events, glob, i, cmds, _R_UNKNOWN)
        return NIL
    return s


@_inline
def _cancel(cmds, i, events, glob, cal, slots, refs, levels, books, cash, holdings, risk):
    s = _own_resting_slot(cmds, i, events, glob, cal, slots, refs)
    if s != NIL:
        _cancel_resting(events, glob, i, cmds[i]["ts"], slots, refs, levels, books, s, _R_USER,
                        cash, holdings, risk)


@_inline
def _amend(cmds, i, events, glob, cal, slots, refs, levels, books, days, cash, holdings, risk):
    s = _own_resting_slot(cmds, i, events, glob, cal, slots, refs)
    if s == NIL:
        return
    c = cmds[i]
    ts = c["ts"]
    b = slots[s, SL_BOOK]
    segment = b % 2
    if not _session_open(glob, segment, ts):
        _reject(events, glob, i, cmds, _R_CLOSED)
        return
    new_qty = c["qty"]
    new_price = c["price"]
    if not _qty_fits_segment(new_qty, segment):
        _reject(events, glob, i, cmds, _R_INVALID_QTY)
        return
    if not (books[b, BK_LOWER] <= new_price <= books[b, BK_UPPER]):
        _reject(events, glob, i, cmds, _R_BAND)
        return

    ref = slots[s, SL_REF]
    old_open = slots[s, SL_OPEN]
    if risk[RK_ON] != 0:
        # the risk stage judges the change: only what the amendment adds must fit
        reason = _risk_check(cash, holdings, risk, slots[s, SL_ACCOUNT], b // 2,
                             slots[s, SL_SIDE], segment, new_price, new_qty, old_open,
                             slots[s, SL_PRICE])
        if reason != 0:
            _reject(events, glob, i, cmds, reason)
            return
        _release_slot(cash, holdings, risk, slots, s, old_open)
        _reserve(cash, holdings, risk, slots[s, SL_ACCOUNT], b // 2, slots[s, SL_SIDE], segment,
                 new_price, new_qty)
    if new_price == slots[s, SL_PRICE] and new_qty <= old_open:
        # same price, same or smaller quantity: reduced in place, priority kept (spec §5)
        bs = b * 2 + slots[s, SL_SIDE] - 1
        levels[bs, LV_QTY, new_price - books[b, BK_BASE]] -= old_open - new_qty
        slots[s, SL_OPEN] = new_qty
        refs[ref, RF_QTY] -= old_open - new_qty
        r = _emit_slot(events, glob, _K_AMENDED, i, ts, slots, s, new_qty, 0, 1)
        events[r, B.AUX2] = old_open
        return
    # any other change loses priority: out, and in again as a DAY limit order
    side = slots[s, SL_SIDE]
    account = slots[s, SL_ACCOUNT]
    stp = slots[s, SL_STP]
    _unlink(slots, levels, books, glob, s)
    slots[s, SL_PRICE] = new_price
    slots[s, SL_OPEN] = new_qty
    refs[ref, RF_QTY] += new_qty - old_open
    r = _emit_slot(events, glob, _K_AMENDED, i, ts, slots, s, new_qty, 0, 0)
    events[r, B.AUX2] = old_open
    # the slot stays claimed for the order while it matches: release it only if it won't rest
    open_qty, stopped = _match(events, glob, i, ts, slots, refs, levels, books, days,
                               ref, b, side, new_price, False, account, stp, new_qty,
                               cash, holdings, risk, _unit(risk, side, new_price, segment))
    if open_qty == 0:
        refs[ref, RF_STATUS] = _S_FILLED
        _free(slots, refs, glob, s)
    elif stopped == 1:
        _free(slots, refs, glob, s)
        _cancel_incoming(events, glob, i, ts, refs, ref, account, b, side, new_price, open_qty,
                         _R_SELF, cash, holdings, risk, new_price)
    else:
        slots[s, SL_OPEN] = open_qty
        _rest(slots, levels, books, glob, s)


# ---------------------------------------------------------------------------- days

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
        prior_close = _closing_price(days, instrument)  # the last day the engine ran
        days[instrument, DY_PRIOR_CLOSE] = prior_close
        days[instrument, DY_LISTED_VOLUME] = 0
        days[instrument, DY_LISTED_TURNOVER] = 0
        days[instrument, DY_BLOCK_VOLUME] = 0
        days[instrument, DY_BLOCK_TURNOVER] = 0
        for segment in range(2):
            b = instrument * 2 + segment
            lower, upper = _band_limits(prior_close, segment)
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
    # spec §6: at 15:00 every resting order expires, reported in order of arrival
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
            _emit_slot(events, glob, _K_EXPIRED, i, end_ts, slots, s, open_qty, 0,
                       refs[ref, RF_FILLED])
            _release_slot(cash, holdings, risk, slots, s, open_qty)
            refs[ref, RF_CANCELLED] += open_qty
            refs[ref, RF_STATUS] = _S_EXPIRED
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
        r = _row(events, glob, _K_DAY, i, end_ts)
        events[r, B.INSTRUMENT] = instrument
        events[r, B.ORDER] = glob[GL_LAST_DAY]
        events[r, B.PRICE] = _closing_price(days, instrument)
        events[r, B.AUX1] = days[instrument, DY_PRIOR_CLOSE]
        events[r, B.QTY] = days[instrument, DY_LISTED_VOLUME]
        events[r, B.AUX2] = days[instrument, DY_BLOCK_VOLUME]
        events[r, B.ACCOUNT] = days[instrument, DY_LISTED_TURNOVER]
        events[r, B.ACCOUNT2] = days[instrument, DY_BLOCK_TURNOVER]
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
        prior_close = _closing_price(days, instrument)
        if prior_close > MAX_PRIOR_CLOSE:
            return -1
        lower, upper = _band_limits(prior_close, _BLOCK)
        if upper - lower + 1 > width:
            width = upper - lower + 1
    return width


# ---------------------------------------------------------------------------- entry point

@_kernel
def _run_batch(cmds, start, cal, glob, slots, refs, levels, books, days, events, cash,
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
        if action == _NEW and glob[GL_FREE_COUNT] == 0:
            glob[GL_NEXT_CMD] = i
            return NEED_SLOTS
        ref = cmds[i]["order"]
        if action == _NEW and ref >= refs.shape[0]:  # CANCEL/AMEND of it: UNKNOWN_ORDER
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
        if ts == NO_TIME or ts < glob[GL_CLOCK]:
            _reject(events, glob, i, cmds, _R_MALFORMED)
        else:
            _advance_clock(glob, i, ts, cal, events, slots, refs, levels, books, days, cash,
                           holdings, risk)
            if action == _NEW:
                _new(cmds, i, events, glob, slots, refs, levels, books, days, cash, holdings,
                     risk)
            elif action == _CANCEL:
                _cancel(cmds, i, events, glob, cal, slots, refs, levels, books, cash, holdings,
                        risk)
            elif action == _AMEND:
                _amend(cmds, i, events, glob, cal, slots, refs, levels, books, days, cash,
                       holdings, risk)
            elif action != _TICK:
                _reject(events, glob, i, cmds, _R_MALFORMED)
        # spec §3: an order_id is used by any NEW row, whatever that row's outcome
        if action == _NEW and 0 <= ref < refs.shape[0]:
            refs[ref, RF_USED] = 1
        glob[GL_DONE] += 1
    glob[GL_NEXT_CMD] = cmds.shape[0]
    return DONE


@_kernel
def _top_levels(levels, books, b, side, n, out):
    """The best ``n`` levels of one side of book ``b`` into ``out`` rows (price, open qty,
    orders), walking out from the best-level pointer; returns how many were found."""
    bs = b * 2 + side - 1
    li = books[b, BK_BEST_BID] if side == 1 else books[b, BK_BEST_ASK]
    if li == NIL:
        return 0
    width = books[b, BK_WIDTH]
    step = -1 if side == 1 else 1
    found = 0
    while 0 <= li < width and found < n:
        if levels[bs, LV_COUNT, li] > 0:
            out[found, 0] = books[b, BK_BASE] + li
            out[found, 1] = levels[bs, LV_QTY, li]
            out[found, 2] = levels[bs, LV_COUNT, li]
            found += 1
        li += step
    return found

