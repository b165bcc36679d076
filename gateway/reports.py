"""The reports stage: execution reports encoded by compiled code from a batch's event rows
into the turn's output, each frame tagged with the account it goes to.

The gateway's own answers (THROTTLED and INSTRUMENT_HALTED rejects from the admission stage,
AdminAcks of mass and operator commands) wait in a side list, each with its place in the
sequence (the command row it came before); ``encode_reports`` merges them in as it passes
that row, so every session reads its answers in the order it sent the commands. At the end
of a turn ``Output.grouped`` sorts the frames by account (a counting sort, order kept within
an account) so that each session gets its share in one write.

Every report an order event makes is **sequenced**: it carries its account's next report
sequence number (``rseq``, per account, from 1), whether the account has a session or not,
and is kept in the report log (``gateway.reportlog``) for resending on logon. The gateway's
own answers are not sequenced (``report_seq`` 0): they go to the session that sent the
command, never into the stream (``docs/protocol.md``, the report stream).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine import batch as B
from engine.codes import NO_PRICE, Action, EventKind, Segment

from .exchange import unknown_rows
from .protocol import CLID_BYTES, NO_INSTRUMENT, NULL_PRICE, ExecKind, QuoteEvent, QuoteFlag
from .wire import REPORT_SIZE, put_quote_report, put_report, rd_u16, wr_i64, wr_u32

_kernel = njit(cache=True, _nrt=False)
_inline = njit(cache=True, _nrt=False, inline="always")

_ACCEPTED, _REJECTED, _TRADE, _CANCELLED, _EXPIRED, _AMENDED = (
    int(EventKind.ACCEPTED), int(EventKind.REJECTED), int(EventKind.TRADE),
    int(EventKind.CANCELLED), int(EventKind.EXPIRED), int(EventKind.AMENDED))
_X_ACCEPTED, _X_REJECTED, _X_PARTIAL, _X_FILL = (
    int(ExecKind.ACCEPTED), int(ExecKind.REJECTED), int(ExecKind.PARTIAL_FILL),
    int(ExecKind.FILL))
_X_CANCELLED, _X_EXPIRED, _X_AMENDED = (int(ExecKind.CANCELLED), int(ExecKind.EXPIRED),
                                        int(ExecKind.AMENDED))
_X_CANCEL_REJECTED, _X_AMEND_REJECTED = (int(ExecKind.CANCEL_REJECTED),
                                         int(ExecKind.AMEND_REJECTED))
_A_CANCEL, _A_AMEND = int(Action.CANCEL), int(Action.AMEND)
_QUOTE, _QUOTE_ENDED = int(EventKind.QUOTE), int(EventKind.QUOTE_ENDED)
_Q_QUOTED = int(QuoteEvent.QUOTED)
_F_MAKER, _F_BY_YOU, _F_PUBLIC = int(QuoteFlag.MAKER), int(QuoteFlag.BY_YOU), int(QuoteFlag.PUBLIC)
_BLOCK = int(Segment.BLOCK)
_NO_CLID = np.zeros(CLID_BYTES, np.uint8)  # the id of a report that has none
#: Bytes a batch's reports can take at most per event row (a trade reports to both sides).
PER_EVENT = 2 * REPORT_SIZE

# Output.meta slots
O_FRAMES = 0
O_BYTES = 1


@_inline
def _price(p):
    return NULL_PRICE if p == NO_PRICE else p


@_inline
def _tag(idx, meta, account, p, seq):
    m = meta[O_FRAMES]
    idx[m, 0] = account
    idx[m, 1] = p
    idx[m, 2] = seq
    meta[O_FRAMES] = m + 1


@_inline
def _next_seq(rseq, a):
    s = rseq[a] + 1
    rseq[a] = s
    return s


@_inline
def _copy_answer(gw_off, gw_buf, g, out, p):
    q = gw_off[g]
    size = 2 + rd_u16(gw_buf, q)
    for k in range(size):
        out[p + k] = gw_buf[q + k]
    return p + size


@_inline
def _fill(events, k, side, account_col, order_col, left_col, filled_after, order_clid, rseq,
          out, idx, meta, p):
    """The FILL or PARTIAL_FILL report of one side (1 buyer, 2 seller) of trade row ``k``."""
    a = events[k, account_col]
    left = events[k, left_col]
    s = _next_seq(rseq, a)
    _tag(idx, meta, a, p, s)
    return put_report(out, p, _X_FILL if left == 0 else _X_PARTIAL, 0, side,
                      events[k, B.SEGMENT], events[k, B.INSTRUMENT], order_clid,
                      events[k, order_col] * CLID_BYTES, events[k, B.TS], events[k, B.PRICE],
                      events[k, B.QTY], filled_after[k, side - 1], left, events[k, B.TRADE_ID],
                      s)


@_inline
def _agreement(events, n, k, r, cmd_clid, order_clid, rseq, out, idx, meta, p):
    """The two FILL reports of a negotiated agreement's trade (row ``k``: both order columns
    the quote, the acceptor the aggressor; its QUOTE_ENDED, naming the maker, follows). The
    maker's carries the quote's id, the counterparty's the ref of its BlockAccept if it
    accepted (else 20 NUL bytes)."""
    quote = events[k, B.ORDER]
    maker = events[k + 1, B.QUOTE_MAKER] if k + 1 < n and \
        events[k + 1, B.KIND] == _QUOTE_ENDED else -1
    aggressor = events[k, B.TRADE_AGGRESSOR]
    for side in range(1, 3):
        a = events[k, B.TRADE_BUY_ACCOUNT if side == 1 else B.TRADE_SELL_ACCOUNT]
        if a < 0:
            continue
        if a == maker:
            src, at = order_clid, quote * CLID_BYTES
        elif side == aggressor:
            src, at = cmd_clid, r * CLID_BYTES
        else:
            src, at = cmd_clid, -1
        s = _next_seq(rseq, a)
        _tag(idx, meta, a, p, s)
        if at < 0:
            p = put_report(out, p, _X_FILL, 0, side, _BLOCK, events[k, B.INSTRUMENT],
                           _NO_CLID, 0, events[k, B.TS], events[k, B.PRICE], events[k, B.QTY],
                           events[k, B.QTY], 0, events[k, B.TRADE_ID], s)
        else:
            p = put_report(out, p, _X_FILL, 0, side, _BLOCK, events[k, B.INSTRUMENT], src, at,
                           events[k, B.TS], events[k, B.PRICE], events[k, B.QTY],
                           events[k, B.QTY], 0, events[k, B.TRADE_ID], s)
    return p


@_inline
def _quote_reports(events, k, order_clid, rseq, out, idx, meta, p):
    """The QuoteReports of a QUOTE or QUOTE_ENDED row: one to the maker, one to the
    counterparty (if any), each from its own point of view."""
    quote = events[k, B.ORDER]
    maker, other = events[k, B.QUOTE_MAKER], events[k, B.QUOTE_COUNTERPARTY]
    by = events[k, B.AUX2]
    trade_id = 0
    if events[k, B.KIND] == _QUOTE:
        event = _Q_QUOTED
    else:
        event = _Q_QUOTED + events[k, B.QUOTE_END]  # ACCEPTED 2, WITHDRAWN 3, EXPIRED 4
        if k > 0 and events[k - 1, B.KIND] == _TRADE and events[k - 1, B.ORDER] == quote:
            trade_id = events[k - 1, B.TRADE_ID]
    public = _F_PUBLIC if other < 0 else 0
    for i in range(2):
        a = maker if i == 0 else other
        if a < 0 or (i == 1 and a == maker):
            continue
        flags = public | (_F_MAKER if i == 0 else 0) | (_F_BY_YOU if by == a else 0)
        side = events[k, B.SIDE] if i == 0 else 3 - events[k, B.SIDE]
        s = _next_seq(rseq, a)
        _tag(idx, meta, a, p, s)
        p = put_quote_report(out, p, event, side, flags, events[k, B.INSTRUMENT], quote,
                             order_clid, quote * CLID_BYTES if i == 0 else -1, events[k, B.TS],
                             events[k, B.PRICE], events[k, B.QTY], trade_id, s)
    return p


@_kernel
def encode_reports(events, n, filled_after, row0, origin, cmd_clid, order_clid, rseq,
                   gw_pos, gw_acct, gw_off, gw_buf, g, g_end, out, idx, meta):
    """Append the reports of event rows ``events[:n]`` (a batch whose first command is
    turn row ``row0``; ``cmd_clid`` and ``order_clid`` are flat arrays of 20-byte ids by turn
    row and by order handle) to ``out``, numbered by the per-account counters ``rseq``, and
    the gateway answers ``g .. g_end-1`` at their places (an answer whose account is negative
    belongs to a session that has gone: dropped); returns ``g_end``. The caller made room
    (``Output.reserve``)."""
    p = meta[O_BYTES]
    for k in range(n):
        r = row0 + events[k, B.CMD]
        while g < g_end and gw_pos[g] <= r:
            a = gw_acct[g]
            if a >= 0:
                _tag(idx, meta, a, p, 0)
                p = _copy_answer(gw_off, gw_buf, g, out, p)
            g += 1
        kind = events[k, B.KIND]
        if kind == _TRADE and events[k, B.TRADE_BUY_ORDER] == events[k, B.TRADE_SELL_ORDER]:
            p = _agreement(events, n, k, r, cmd_clid, order_clid, rseq, out, idx, meta, p)
        elif kind == _QUOTE or kind == _QUOTE_ENDED:
            p = _quote_reports(events, k, order_clid, rseq, out, idx, meta, p)
        elif kind == _TRADE:
            p = _fill(events, k, 1, B.TRADE_BUY_ACCOUNT, B.TRADE_BUY_ORDER, B.TRADE_BUY_LEFT,
                      filled_after, order_clid, rseq, out, idx, meta, p)
            p = _fill(events, k, 2, B.TRADE_SELL_ACCOUNT, B.TRADE_SELL_ORDER, B.TRADE_SELL_LEFT,
                      filled_after, order_clid, rseq, out, idx, meta, p)
        elif kind == _REJECTED:
            a = origin[r]
            if a >= 0:
                action = events[k, B.REJECTED_ACTION]
                x = (_X_CANCEL_REJECTED if action == _A_CANCEL else
                     _X_AMEND_REJECTED if action == _A_AMEND else _X_REJECTED)
                s = _next_seq(rseq, a)
                _tag(idx, meta, a, p, s)
                p = put_report(out, p, x, events[k, B.REASON], 0, 0, NO_INSTRUMENT, cmd_clid,
                               r * CLID_BYTES, events[k, B.TS], NULL_PRICE, 0, 0, 0, 0, s)
        elif kind == _ACCEPTED or kind == _CANCELLED or kind == _EXPIRED or kind == _AMENDED:
            a = events[k, B.ACCOUNT]
            if a >= 0:
                qty = events[k, B.QTY]
                if kind == _ACCEPTED:
                    x, reason, filled, left = _X_ACCEPTED, 0, 0, qty
                elif kind == _AMENDED:
                    x, reason, filled, left = _X_AMENDED, 0, filled_after[k, 0], qty
                elif kind == _CANCELLED:
                    x, reason, filled, left = (_X_CANCELLED, events[k, B.REASON],
                                               filled_after[k, 0], 0)
                else:
                    x, reason, filled, left = _X_EXPIRED, 0, filled_after[k, 0], 0
                s = _next_seq(rseq, a)
                _tag(idx, meta, a, p, s)
                p = put_report(out, p, x, reason, events[k, B.SIDE], events[k, B.SEGMENT],
                               events[k, B.INSTRUMENT], order_clid,
                               events[k, B.ORDER] * CLID_BYTES, events[k, B.TS],
                               _price(events[k, B.PRICE]), qty, filled, left, 0, s)
    while g < g_end:
        a = gw_acct[g]
        if a >= 0:
            _tag(idx, meta, a, p, 0)
            p = _copy_answer(gw_off, gw_buf, g, out, p)
        g += 1
    meta[O_BYTES] = p
    return g


#: A report-log record's head (``gateway.reportlog``): written here, read there.
LOG_MAGIC = 0x52414543  # "CEAR"
LOG_HEAD = 32


@njit(cache=True)  # with reference counting: the slice copies below are memcpy
def _group(buf, idx, n, slot_of, touched, sizes, starts, out, firsts, counts, cursor, records,
           log, journal_seq):
    """Sort the turn's ``n`` frames by account (``out``; order kept within an account) and
    write the report-log records of the sequenced ones to ``log``: per account one head
    (``LOG_HEAD`` bytes) and its reports, and to ``records`` one row (account, first number,
    count, offset in ``log``) each. Returns (accounts, log records, log bytes)."""
    nt = 0
    for i in range(n):
        a = idx[i, 0]
        s = slot_of[a]
        if s < 0:
            s = nt
            slot_of[a] = s
            touched[s] = a
            sizes[s] = 0
            counts[s] = 0
            firsts[s] = 0
            nt += 1
        sizes[s] += 2 + rd_u16(buf, idx[i, 1])
        if idx[i, 2] > 0:
            if counts[s] == 0:
                firsts[s] = idx[i, 2]
            counts[s] += 1
    pos = 0
    for s in range(nt):
        starts[s] = pos
        pos += sizes[s]
        sizes[s] = starts[s]  # now the cursor of slot s
    if nt == 1:  # one account: the frames are already in order, back to back in buf
        sizes[0] = pos
    else:
        for i in range(n):
            s = slot_of[idx[i, 0]]
            q = idx[i, 1]
            size = 2 + rd_u16(buf, q)
            c = sizes[s]
            out[c:c + size] = buf[q:q + size]
            sizes[s] = c + size
    q = 0
    k = 0
    left = 0  # records of this turn after the current one: a torn turn is seen as torn
    for s in range(nt):
        if counts[s] > 0:
            left += 1
    for s in range(nt):
        sizes[s] -= starts[s]
        if counts[s] > 0:
            left -= 1
            wr_u32(log, q, LOG_MAGIC)
            wr_u32(log, q + 4, touched[s])
            wr_u32(log, q + 8, counts[s])
            wr_u32(log, q + 12, left)
            wr_i64(log, q + 16, firsts[s])
            wr_i64(log, q + 24, journal_seq)
            records[k, 0] = touched[s]
            records[k, 1] = firsts[s]
            records[k, 2] = counts[s]
            records[k, 3] = q
            k += 1
            cursor[s] = q + LOG_HEAD
            q += LOG_HEAD + counts[s] * REPORT_SIZE
    for i in range(n):
        if idx[i, 2] > 0:
            s = slot_of[idx[i, 0]]
            p = idx[i, 1]
            c = cursor[s]
            log[c:c + REPORT_SIZE] = buf[p:p + REPORT_SIZE]
            cursor[s] = c + REPORT_SIZE
    for s in range(nt):
        slot_of[touched[s]] = -1
    return nt, k, q


class Output:
    """A turn's outgoing frames in sequence order, each tagged with its account and its
    report sequence number (0: a gateway answer, not in the account's stream)."""

    def __init__(self, capacity: int = 1 << 16):
        self.buf = np.zeros(capacity, np.uint8)
        self.idx = np.zeros((capacity // 16, 3), np.int64)
        self.meta = np.zeros(2, np.int64)
        self._grouped = np.zeros(capacity, np.uint8)
        self._log = np.zeros(capacity, np.uint8)
        self._slot_of = np.full(64, -1, np.int64)
        self._touched = np.zeros(64, np.int64)
        self._sizes = np.zeros(64, np.int64)
        self._starts = np.zeros(64, np.int64)
        self._firsts = np.zeros(64, np.int64)
        self._counts = np.zeros(64, np.int64)
        self._cursor = np.zeros(64, np.int64)
        self._records = np.zeros((64, 4), np.int64)

    def reset(self) -> None:
        self.meta[:] = 0

    @property
    def frames(self) -> int:
        return int(self.meta[O_FRAMES])

    def reserve(self, nbytes: int, frames: int) -> None:
        """Room for ``nbytes`` more bytes in ``frames`` more frames."""
        need = int(self.meta[O_BYTES]) + nbytes
        if need > self.buf.shape[0]:
            buf = np.zeros(max(need, 2 * self.buf.shape[0]), np.uint8)
            buf[: self.buf.shape[0]] = self.buf
            self.buf = buf
        need = int(self.meta[O_FRAMES]) + frames
        if need > self.idx.shape[0]:
            idx = np.zeros((max(need, 2 * self.idx.shape[0]), 3), np.int64)
            idx[: self.idx.shape[0]] = self.idx
            self.idx = idx

    def append(self, account: int, frame: bytes) -> None:
        """One frame from Python (an AdminAck of a mass or operator command)."""
        self.reserve(len(frame), 1)
        p = int(self.meta[O_BYTES])
        self.buf[p:p + len(frame)] = np.frombuffer(frame, np.uint8)
        m = int(self.meta[O_FRAMES])
        self.idx[m] = (account, p, 0)
        self.meta[O_FRAMES] = m + 1
        self.meta[O_BYTES] = p + len(frame)

    def grouped(self, n_accounts: int, journal_seq: int = 0) -> "Grouped":
        """The turn's frames sorted by account, in the order each account first appears
        (each account's frames keep their order), and the report-log records of the
        sequenced ones (their head carries ``journal_seq``, the turn's last record)."""
        n = self.frames
        if self._slot_of.shape[0] < n_accounts:
            size = max(n_accounts, 2 * self._slot_of.shape[0])
            self._slot_of = np.full(size, -1, np.int64)
            for name in ("_touched", "_sizes", "_starts", "_firsts", "_counts", "_cursor"):
                setattr(self, name, np.zeros(size, np.int64))
            self._records = np.zeros((size, 4), np.int64)
        if self._grouped.shape[0] < self.buf.shape[0]:
            self._grouped = np.zeros(self.buf.shape[0], np.uint8)
        need = int(self.meta[O_BYTES]) + LOG_HEAD * min(n, n_accounts)
        if self._log.shape[0] < need:
            self._log = np.zeros(max(need, 2 * self._log.shape[0]), np.uint8)
        nt, k, log_bytes = _group(self.buf, self.idx, n, self._slot_of, self._touched,
                                  self._sizes, self._starts, self._grouped, self._firsts,
                                  self._counts, self._cursor, self._records, self._log,
                                  journal_seq)
        return Grouped(self._touched[:nt], self._starts[:nt], self._sizes[:nt],
                       self.buf if nt == 1 else self._grouped, self._firsts[:nt],
                       self._counts[:nt], self._records[:k], self._log[:log_bytes])


class Grouped(NamedTuple):
    """``Output.grouped``: per account (in ``accounts``) its frames at
    ``buffer[starts:starts+sizes]``, the first report sequence number and number of its
    sequenced reports; the report-log records (``log``) and a row per record in ``records``
    (account, first number, count, offset in ``log``)."""

    accounts: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    buffer: np.ndarray
    firsts: np.ndarray
    counts: np.ndarray
    records: np.ndarray
    log: np.ndarray


_NO_GW_I = np.zeros(0, np.int64)
_NO_GW_B = np.zeros(0, np.uint8)


def rebuild_reports(exchange, applied, rseq: np.ndarray, output: Output, journal_seq: int):
    """The reports of one replayed OrderBatch (``Exchange.apply``'s ``applied``), numbered
    on from ``rseq`` as the live turn numbered them: recovery rebuilds the report log's
    tail from the journal. None for a record that is not an OrderBatch."""
    if applied.batch is None:
        return None
    cmds = applied.cmds
    rows = len(cmds)
    orders = cmds["order"]
    clid = np.zeros((rows, CLID_BYTES), np.uint8)
    known = orders >= 0
    clid[known] = exchange.orders.clid[orders[known]]
    unknown = unknown_rows(cmds)
    if applied.unknown_ids:
        ids = np.frombuffer(applied.unknown_ids, np.uint8).reshape(-1, CLID_BYTES)
        if len(ids) == int(unknown.sum()):
            clid[unknown] = ids
    origin = cmds["account"].astype(np.int32)
    events, fa = applied.batch.events, applied.batch.filled_after
    n = events.shape[0]
    output.reset()
    output.reserve(PER_EVENT * n, 2 * n)
    encode_reports(events, n, fa, 0, origin, clid.reshape(-1), exchange.orders.clid.reshape(-1),
                   rseq, _NO_GW_I, _NO_GW_I, _NO_GW_I, _NO_GW_B, 0, 0, output.buf, output.idx,
                   output.meta)
    return output.grouped(len(exchange.engine.accounts), journal_seq)
