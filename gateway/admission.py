"""The admission stage: a logged-on session's input bytes, straight from its receive buffer,
turned into engine command rows by compiled code.

``admit`` walks the frames in the buffer. For every frame it charges the session's rate
limit; for NewOrder, Cancel, Amend and Take it makes the gateway's checks in the order
``docs/protocol.md`` gives (THROTTLED, INSTRUMENT_HALTED, OPEN_ORDER_LIMIT (NewOrder only: a
take never rests), then what a row says on its own: MALFORMED, INVALID_QTY, INVALID_PRICE),
interns the order id in the order table and writes
one ``COMMAND_DTYPE`` row stamped with the turn's time; the gateway's own rejects are framed
at once into a side list with their place in the sequence (``gateway.reports`` merges them).
It stops at a session-level (msgpack) frame, which Python decodes and handles once
(``Admission.take``'s ``handler``), at a bad frame, when the session's share of the turn is
taken, or when an array needs room. Python runs per read and per session-level message,
never per order.

Limits, each per session: ``share`` frames per turn (fair to every session: a turn takes a
bounded share from each), a token bucket over all messages (``budget``), and a second,
smaller one over the messages Python answers (``query_budget``: heartbeats, subscriptions,
replays, balances). A throttled order gets a THROTTLED reject, a throttled query an
``AdminAck(false, THROTTLED)`` (its body is not read: that is what throttling saves), a
throttled heartbeat nothing; Logout is always honoured, and a Logon always read (on a
logged-on session it is a protocol error).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine import batch as B
from engine.codes import HUGE_PRICE, NO_PRICE, NO_REF, Action, OrderType, Reason, Stp
from engine.checks import terms_check
from engine.codes import TimeInForce
from engine.rules import MAX_QTY, MIN_QTY

from . import protocol as P
from .orders import M_COUNT, M_MASK, find, intern
from .protocol import CLID_BYTES, MAX_FRAME, NO_INSTRUMENT, NULL_PRICE, ExecKind, MsgType
from .wire import REPORT_SIZE, put_report, rd_i64, rd_u16, rd_u32

_kernel = njit(cache=True, _nrt=False)
_inline = njit(cache=True, _nrt=False, inline="always")

# what admit returns
DONE = 0  # no complete frame left (a partial one may remain)
SHARE = 1  # the session's share of this turn is taken
PACKED = 2  # a session-level frame at pos: Python handles it
BAD = 3  # a frame that breaks the protocol at pos (meta[M_BAD_CODE], meta[M_BAD_VALUE])
ROOM = 4  # an array is full: grow it and call again from pos

# meta[] slots
M_ROWS = 0  # command rows written this turn
M_ANSWERS = 1  # gateway answers this turn
M_ANSWER_BYTES = 2
M_USED = 3  # frames charged to the session's bucket in this take
M_QUERIES = 4  # frames charged to its query bucket
M_TAKEN = 5  # frames taken from the session in this take
M_BAD_CODE = 6  # 1: length out of range, 2: unknown type, 3: wrong size for its type
M_BAD_VALUE = 7
M_NEW = 8  # NEW rows written in this take (they may rest: counted against the open limit)
M_UNKNOWN = 9  # rows this turn that name no known order (their ids go into the journal)
META = 10

# frame classes by type byte
C_BAD, C_NEW, C_CANCEL, C_AMEND, C_TAKE, C_PACKED, C_QUERY, C_HEARTBEAT, C_LOGOUT = range(9)
#: The answer a throttled session-level message gets, at most this many bytes.
TEMPLATE = 64


def _classes() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per type byte: its class, the frame size of a binary type, and the throttled answer
    of a session-level type (bytes and length)."""
    cls = np.zeros(256, np.int64)
    size = np.zeros(256, np.int64)
    tpl = np.zeros((256, TEMPLATE), np.uint8)
    tpl_len = np.zeros(256, np.int64)
    for t, msg in P.CLIENT.items():
        if t == MsgType.NEW_ORDER:
            cls[t] = C_NEW
        elif t == MsgType.CANCEL:
            cls[t] = C_CANCEL
        elif t == MsgType.AMEND:
            cls[t] = C_AMEND
        elif t == MsgType.TAKE:
            cls[t] = C_TAKE
        elif t == MsgType.HEARTBEAT:
            cls[t] = C_HEARTBEAT
        elif t in (MsgType.LOGOUT, MsgType.LOGON):  # always read: a Logon here is an error
            cls[t] = C_LOGOUT
        elif t in (MsgType.SUBSCRIBE, MsgType.MD_REPLAY_REQUEST, MsgType.BALANCE_REQUEST,
                   MsgType.ORDER_STATUS_REQUEST, MsgType.ORDERS_REQUEST,
                   MsgType.NEGOTIATIONS_REQUEST, MsgType.QUOTE_BOARD_REQUEST):
            cls[t] = C_QUERY
        else:
            cls[t] = C_PACKED
        if t in P.BINARY_SIZES:
            size[t] = P.BINARY_SIZES[t]
        else:
            frame = P.encode(P.AdminAck(msg.__name__, False, P.GatewayReason.THROTTLED))
            tpl[t, :len(frame)] = np.frombuffer(frame, np.uint8)
            tpl_len[t] = len(frame)
    return cls, size, tpl, tpl_len


CLASSES, SIZES, TEMPLATES, TEMPLATE_LEN = _classes()

_NEW, _CANCEL, _AMEND = int(Action.NEW), int(Action.CANCEL), int(Action.AMEND)
_TAKE = int(Action.TAKE)
_T_TAKE, _T_IOC, _T_STP = int(OrderType.TAKE), int(TimeInForce.IOC), int(Stp.CANCEL_NEWEST)
_MALFORMED, _INVALID_QTY, _INVALID_PRICE = (int(Reason.MALFORMED), int(Reason.INVALID_QTY),
                                            int(Reason.INVALID_PRICE))
_THROTTLED = int(P.GatewayReason.THROTTLED)
_HALTED = int(P.GatewayReason.INSTRUMENT_HALTED)
_OPEN_LIMIT = int(P.GatewayReason.OPEN_ORDER_LIMIT)
_X_REJECTED, _X_CANCEL_REJECTED, _X_AMEND_REJECTED = (
    int(ExecKind.REJECTED), int(ExecKind.CANCEL_REJECTED), int(ExecKind.AMEND_REJECTED))


@_inline
def _valid_clid(buf, p):
    """1 .. 20 printable ASCII characters (no spaces), NUL-padded."""
    n = 0
    while n < CLID_BYTES and buf[p + n] != 0:
        c = buf[p + n]
        if c < 0x21 or c > 0x7E:
            return False
        n += 1
    if n == 0:
        return False
    for k in range(n, CLID_BYTES):
        if buf[p + k] != 0:
            return False
    return True


@_inline
def _answer(gw_pos, gw_acct, gw_off, gw_buf, meta, account, kind, reason, buf, clid_at, ts):
    """A gateway reject (an ExecutionReport) in the side list, placed before the next row."""
    g = meta[M_ANSWERS]
    q = meta[M_ANSWER_BYTES]
    gw_pos[g] = meta[M_ROWS]
    gw_acct[g] = account
    gw_off[g] = q
    meta[M_ANSWER_BYTES] = put_report(gw_buf, q, kind, reason, 0, 0, NO_INSTRUMENT, buf,
                                      clid_at, ts, NULL_PRICE, 0, 0, 0, 0, 0)
    meta[M_ANSWERS] = g + 1


@_inline
def _row(cmds, clid, origin, new, meta, ts, order, price, qty, account, instrument, action,
         check, side, type_, tif, stp, buf, p, is_new):
    r = meta[M_ROWS]
    c = cmds[r]
    c["ts"] = ts
    c["order"] = order
    c["price"] = price
    c["qty"] = qty
    c["account"] = account
    c["instrument"] = instrument
    c["action"] = action
    c["check"] = check
    c["side"] = side
    c["type"] = type_
    c["tif"] = tif
    c["stp"] = stp
    for k in range(CLID_BYTES):
        clid[r, k] = buf[p + k]
    origin[r] = account
    new[r] = is_new
    if order < 0:
        meta[M_UNKNOWN] += 1
    meta[M_ROWS] = r + 1


@_kernel
def admit(buf, pos, end, account, ts, share, budget, query_budget, cmds, clid, origin, new,
          gw_pos, gw_acct, gw_off, gw_buf, meta, table, ometa, oclid, oacct, oinstr, n_open,
          max_open, halted, classes, sizes, templates, template_len):
    """Take frames from ``buf[pos:end]`` for the session of ``account``; returns
    (status, pos): see the module's docstring and the status codes above."""
    n_instruments = halted.shape[0]
    while True:
        if end - pos < 2:
            return DONE, pos
        length = rd_u16(buf, pos)
        if length == 0 or length > MAX_FRAME:
            meta[M_BAD_CODE] = 1
            meta[M_BAD_VALUE] = length
            return BAD, pos
        if pos + 2 + length > end:
            return DONE, pos
        t = np.int64(buf[pos + 2])
        cls = classes[t]
        if cls == C_BAD:
            meta[M_BAD_CODE] = 2
            meta[M_BAD_VALUE] = t
            return BAD, pos
        if sizes[t] != 0 and sizes[t] != length + 2:
            meta[M_BAD_CODE] = 3
            meta[M_BAD_VALUE] = length
            return BAD, pos
        if meta[M_TAKEN] >= share:
            return SHARE, pos
        # room for one row, one answer, one new order id
        if (meta[M_ROWS] >= cmds.shape[0] or meta[M_ANSWERS] >= gw_pos.shape[0]
                or meta[M_ANSWER_BYTES] + REPORT_SIZE > gw_buf.shape[0]
                or ometa[M_COUNT] >= oacct.shape[0] or 2 * (ometa[M_COUNT] + 1) > table.shape[0]):
            return ROOM, pos
        throttled = meta[M_USED] >= budget
        if not throttled:
            meta[M_USED] += 1
        if cls >= C_PACKED:
            if (cls == C_QUERY or cls == C_HEARTBEAT) and not throttled:
                if meta[M_QUERIES] >= query_budget:
                    throttled = True
                else:
                    meta[M_QUERIES] += 1
            if throttled and cls != C_LOGOUT:
                if cls != C_HEARTBEAT:
                    g = meta[M_ANSWERS]
                    q = meta[M_ANSWER_BYTES]
                    gw_pos[g] = meta[M_ROWS]
                    gw_acct[g] = account
                    gw_off[g] = q
                    for k in range(template_len[t]):
                        gw_buf[q + k] = templates[t, k]
                    meta[M_ANSWER_BYTES] = q + template_len[t]
                    meta[M_ANSWERS] = g + 1
                meta[M_TAKEN] += 1
                pos += 2 + length
                continue
            meta[M_TAKEN] += 1
            return PACKED, pos
        p = pos + 3  # the body: cl_ord_id first in all four
        meta[M_TAKEN] += 1
        pos += 2 + length
        if cls == C_TAKE:
            if throttled:
                _answer(gw_pos, gw_acct, gw_off, gw_buf, meta, account, _X_REJECTED, _THROTTLED,
                        buf, p, ts)
                continue
            instrument = rd_u16(buf, p + 20)
            known = instrument < n_instruments
            if known and halted[instrument] != 0:
                _answer(gw_pos, gw_acct, gw_off, gw_buf, meta, account, _X_REJECTED, _HALTED,
                        buf, p, ts)
                continue
            # no OPEN_ORDER_LIMIT: a take never rests
            side = buf[p + 22]
            qty = rd_u32(buf, p + 23)
            target = rd_i64(buf, p + 27)  # a number beyond int64 names no order
            order = NO_REF
            is_new = 0
            good_id = _valid_clid(buf, p)
            if good_id:  # the id is used up like a NewOrder's, whatever the outcome
                order, is_new = intern(table, ometa, oclid, oacct, oinstr, account,
                                       instrument if known else -1, buf, p)
            if not good_id or not known or not 1 <= side <= 2:
                check = _MALFORMED
            elif not MIN_QTY <= qty <= MAX_QTY:
                check = _INVALID_QTY
            else:
                check = 0
            if check != 0:
                _row(cmds, clid, origin, new, meta, ts, order, NO_PRICE, 0, account, 0, _TAKE,
                     check, 0, 0, 0, 0, buf, p, is_new)
            else:
                _row(cmds, clid, origin, new, meta, ts, order, target if target >= 0 else NO_REF,
                     qty, account, instrument, _TAKE, 0, side, _T_TAKE, _T_IOC, _T_STP, buf, p,
                     is_new)
        elif cls == C_NEW:
            if throttled:
                _answer(gw_pos, gw_acct, gw_off, gw_buf, meta, account, _X_REJECTED, _THROTTLED,
                        buf, p, ts)
                continue
            instrument = rd_u16(buf, p + 20)
            known = instrument < n_instruments
            if known and halted[instrument] != 0:
                _answer(gw_pos, gw_acct, gw_off, gw_buf, meta, account, _X_REJECTED, _HALTED,
                        buf, p, ts)
                continue
            if max_open > 0 and n_open[account] + meta[M_NEW] >= max_open:
                _answer(gw_pos, gw_acct, gw_off, gw_buf, meta, account, _X_REJECTED,
                        _OPEN_LIMIT, buf, p, ts)
                continue
            meta[M_NEW] += 1
            side, type_, tif, stp = buf[p + 22], buf[p + 23], buf[p + 24], buf[p + 25]
            qty = rd_u32(buf, p + 26)
            price = rd_i64(buf, p + 30)
            order = NO_REF
            is_new = 0
            good_id = _valid_clid(buf, p)
            if good_id:
                order, is_new = intern(table, ometa, oclid, oacct, oinstr, account,
                                       instrument if known else -1, buf, p)
            if (not good_id or not known or not 1 <= side <= 2 or not 1 <= type_ <= 2
                    or not 1 <= tif <= 3 or not 1 <= stp <= 3 or (type_ == 2 and tif != 2)):
                check = _MALFORMED
            elif not MIN_QTY <= qty <= MAX_QTY:
                check = _INVALID_QTY
            elif type_ == 2:
                check = _INVALID_PRICE if price != NULL_PRICE else 0
            elif price == NULL_PRICE or price <= 0:
                check = _INVALID_PRICE
            else:
                check = 0
            if check != 0:
                _row(cmds, clid, origin, new, meta, ts, order, NO_PRICE, 0, account, 0, _NEW,
                     check, 0, 0, 0, 0, buf, p, is_new)
            else:
                _row(cmds, clid, origin, new, meta, ts, order,
                     NO_PRICE if type_ == 2 else min(price, HUGE_PRICE), qty, account,
                     instrument, _NEW, 0, side, type_, tif, stp, buf, p, is_new)
        else:
            kind = _X_CANCEL_REJECTED if cls == C_CANCEL else _X_AMEND_REJECTED
            if throttled:
                _answer(gw_pos, gw_acct, gw_off, gw_buf, meta, account, kind, _THROTTLED, buf,
                        p, ts)
                continue
            good_id = _valid_clid(buf, p)
            order = find(table, ometa, oclid, oacct, account, buf, p) if good_id else NO_REF
            if cls == C_CANCEL:
                _row(cmds, clid, origin, new, meta, ts, order, NO_PRICE, 0, account, 0, _CANCEL,
                     0 if good_id else _MALFORMED, 0, 0, 0, 0, buf, p, 0)
                continue
            if order != NO_REF and oinstr[order] >= 0 and halted[oinstr[order]] != 0:
                _answer(gw_pos, gw_acct, gw_off, gw_buf, meta, account, kind, _HALTED, buf, p,
                        ts)
                continue
            qty = rd_u32(buf, p + 20)
            price = rd_i64(buf, p + 24)
            if not good_id:
                check = _MALFORMED
            elif not MIN_QTY <= qty <= MAX_QTY:
                check = _INVALID_QTY
            elif price == NULL_PRICE or price <= 0:
                check = _INVALID_PRICE
            else:
                check = 0
            if check != 0:
                _row(cmds, clid, origin, new, meta, ts, order, NO_PRICE, 0, account, 0, _AMEND,
                     check, 0, 0, 0, 0, buf, p, 0)
            else:
                _row(cmds, clid, origin, new, meta, ts, order, min(price, HUGE_PRICE), qty,
                     account, 0, _AMEND, 0, 0, 0, 0, 0, buf, p, 0)


_BAD_TEXT = {1: "frame length {} outside 1..%d" % MAX_FRAME, 2: "unknown message type {}",
             3: "a frame of its type cannot be {} bytes long"}


class Admission:
    """One turn's command rows and gateway answers, filled session by session."""

    def __init__(self, exchange, capacity: int = 1 << 12):
        self.exchange = exchange
        self.cmds = B.empty_commands(capacity)
        self.clid = np.zeros((capacity, CLID_BYTES), np.uint8)
        self.origin = np.zeros(capacity, np.int32)
        self.new = np.zeros(capacity, np.uint8)
        self.gw_pos = np.zeros(capacity, np.int64)
        self.gw_acct = np.zeros(capacity, np.int64)
        self.gw_off = np.zeros(capacity, np.int64)
        self.gw_buf = np.zeros(capacity * REPORT_SIZE, np.uint8)
        self.meta = np.zeros(META, np.int64)
        self.specials: list = []  # (row, answers before it, account, message, reply)
        self.ts = 0
        self.first_order = 0  # the order table's size when the turn began

    def begin(self, ts: int) -> None:
        self.meta[:] = 0
        self.specials = []
        self.ts = ts
        self.first_order = len(self.exchange.orders)

    @property
    def rows(self) -> int:
        return int(self.meta[M_ROWS])

    @property
    def answers(self) -> int:
        return int(self.meta[M_ANSWERS])

    def special(self, account: int, msg, reply: bool = True) -> None:
        """A sequenced session-level command, in its place after the rows taken so far;
        ``reply`` false: its session has gone, the answer goes to no one."""
        self.specials.append((self.rows, self.answers, account, msg, reply))

    def block(self, account: int, msg) -> None:
        """A negotiation command (``BlockQuote``, ``BlockCounter``, ``BlockAccept``,
        ``BlockWithdraw``, decoded by the server) as one command row in its place among the
        session's orders: the same batch, journal record and replay as theirs. The edge's
        checks (MALFORMED, INVALID_QTY, INVALID_PRICE) go into the row's ``check``, as the
        compiled admission does for order frames; a halted instrument is the gateway's
        INSTRUMENT_HALTED (not sequenced). Its reject echoes ``cl_ord_id`` (a quote) or
        ``ref`` (the others)."""
        self._room(1)
        ex = self.exchange
        orders = ex.orders
        meta = self.meta
        r = int(meta[M_ROWS])
        kind = type(msg)
        quote = kind is P.BlockQuote
        text = msg.cl_ord_id if quote else msg.ref
        try:
            raw = P.encode_clid(text)
            good_id = True
        except ValueError:
            raw = text.encode("utf-8", "replace")[:CLID_BYTES].ljust(CLID_BYTES, b"\0")
            good_id = False
        raw_arr = np.frombuffer(raw, np.uint8)
        row = self.cmds[r]
        row["ts"] = self.ts
        row["account"] = account
        row["type"] = row["tif"] = row["stp"] = row["side"] = 0
        row["peer"] = NO_REF
        is_new = 0
        if quote:
            instrument = ex.instrument_index.get(msg.instrument, -1)
            if instrument >= 0 and ex.halted[instrument]:
                return self._halted(account, raw_arr)
            order = NO_REF
            if good_id:
                order, is_new = _intern1(orders.table, orders.meta, orders.clid, orders.acct,
                                         orders.instr, account, instrument, raw_arr)
            price_given = msg.price is not None
            well = good_id and instrument >= 0 and msg.side in (1, 2) and price_given
            check = int(terms_check(well, True, msg.qty, price_given,
                                    msg.price if price_given else 0))
            if msg.counterparty:
                peer = ex.account_handle(msg.counterparty)
                peer = peer if peer >= 0 else _NOBODY
            else:
                peer = NO_REF
            action = Action.BLOCK_QUOTE
            row["side"] = msg.side if msg.side in (1, 2) else 0
            row["peer"] = peer
        else:
            number = msg.quote_no
            order = number if 0 <= number < len(orders) else NO_REF
            instrument = int(orders.instr[order]) if order >= 0 else -1
            if kind is P.BlockWithdraw:
                action = Action.BLOCK_WITHDRAW
                check = 0 if good_id else int(Reason.MALFORMED)
                price_given, qty = False, 0
            else:
                if instrument >= 0 and ex.halted[instrument]:
                    return self._halted(account, raw_arr)
                counter = kind is P.BlockCounter
                action = Action.BLOCK_COUNTER if counter else Action.BLOCK_ACCEPT
                price_given, qty = msg.price is not None, msg.qty
                well = good_id and (price_given or qty != 0 or not counter)
                check = int(terms_check(well, qty != 0, qty, price_given,
                                        msg.price if price_given else 0))
        row["order"] = order
        row["action"] = action
        row["check"] = check
        row["instrument"] = max(instrument, 0)
        price = msg.price if not kind is P.BlockWithdraw and msg.price is not None else None
        row["price"] = NO_PRICE if price is None or check else min(max(price, 0), HUGE_PRICE)
        q = 0 if kind is P.BlockWithdraw or check else msg.qty
        row["qty"] = q if 0 <= q <= MAX_QTY else 0
        self.clid[r] = raw_arr
        self.origin[r] = account
        self.new[r] = is_new
        if order < 0 or not quote:
            meta[M_UNKNOWN] += 1  # its report's id is the command's own: journalled with it
        meta[M_ROWS] = r + 1

    def _halted(self, account: int, raw: np.ndarray) -> None:
        """INSTRUMENT_HALTED for a negotiation command: the gateway's own REJECTED, before
        the next row, not sequenced."""
        meta = self.meta
        g, q = int(meta[M_ANSWERS]), int(meta[M_ANSWER_BYTES])
        self.gw_pos[g] = meta[M_ROWS]
        self.gw_acct[g] = account
        self.gw_off[g] = q
        meta[M_ANSWER_BYTES] = put_report(self.gw_buf, q, _X_REJECTED, _HALTED, 0, 0,
                                          NO_INSTRUMENT, raw, 0, self.ts, NULL_PRICE, 0, 0, 0,
                                          0, 0)
        meta[M_ANSWERS] = g + 1

    def _room(self, frames: int) -> None:
        rows, answers = self.rows + frames, self.answers + frames
        if rows > self.cmds.shape[0]:
            size = max(rows, 2 * self.cmds.shape[0])
            self.cmds = _grow(self.cmds, size)
            self.clid = _grow(self.clid, size)
            self.origin = _grow(self.origin, size)
            self.new = _grow(self.new, size)
        if answers > self.gw_pos.shape[0]:
            size = max(answers, 2 * self.gw_pos.shape[0])
            self.gw_pos = _grow(self.gw_pos, size)
            self.gw_acct = _grow(self.gw_acct, size)
            self.gw_off = _grow(self.gw_off, size)
        need = int(self.meta[M_ANSWER_BYTES]) + frames * REPORT_SIZE
        if need > self.gw_buf.shape[0]:
            self.gw_buf = _grow(self.gw_buf, max(need, 2 * self.gw_buf.shape[0]))
        self.exchange.orders.reserve(frames)

    def take(self, inbuf: bytearray, account: int, share: int, budget: int,
             query_budget: int, handler, max_packed: int, max_open: int = 0):
        """Admit frames from ``inbuf`` for ``account``; return (bytes consumed, frames
        charged to the bucket, to the query bucket, protocol error text or None, whether
        complete frames were left for a later turn).

        ``handler(frame_bytes)`` handles each session-level frame and returns True to stop
        taking (Logout, an error); at most ``max_packed`` of them are handled per call.
        """
        meta = self.meta
        meta[M_USED] = meta[M_QUERIES] = meta[M_TAKEN] = meta[M_NEW] = 0
        ex = self.exchange
        orders = ex.orders
        buf = np.frombuffer(inbuf, np.uint8)
        pos, end = 0, len(buf)
        packed = 0
        error = None
        more = False
        try:
            while True:
                frames = min(share - int(meta[M_TAKEN]), (end - pos) // 3 + 1)
                self._room(max(1, frames))
                status, pos = admit(
                    buf, pos, end, account, self.ts, share, budget, query_budget, self.cmds,
                    self.clid, self.origin, self.new, self.gw_pos, self.gw_acct, self.gw_off,
                    self.gw_buf, meta, orders.table, orders.meta, orders.clid,
                    orders.acct, orders.instr, orders.n_open, max_open, ex.halted, CLASSES,
                    SIZES, TEMPLATES, TEMPLATE_LEN)
                pos = int(pos)
                if status == ROOM:
                    continue
                if status == PACKED:
                    size = 2 + (int(buf[pos]) | int(buf[pos + 1]) << 8)
                    frame = buf[pos:pos + size].tobytes()
                    pos += size
                    packed += 1
                    if handler(frame):
                        break
                    if packed >= max_packed:
                        more = pos < end
                        break
                    continue
                if status == BAD:
                    error = _BAD_TEXT[int(meta[M_BAD_CODE])].format(int(meta[M_BAD_VALUE]))
                more = status == SHARE
                break
        finally:
            del buf
        return pos, int(meta[M_USED]), int(meta[M_QUERIES]), error, more


#: A counterparty name the exchange does not know: below NO_REF, so UNKNOWN_COUNTERPARTY.
_NOBODY = -2


@njit(cache=True, _nrt=False)
def _intern1(table, meta, clid, acct, instr, account, instrument, raw):
    return intern(table, meta, clid, acct, instr, account, instrument, raw, 0)


def _grow(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, *a.shape[1:]), a.dtype)
    out[: a.shape[0]] = a
    return out
