"""The reports stage: execution reports encoded by compiled code from a batch's event rows
into the turn's output, each frame tagged with the account it goes to.

The gateway's own answers (THROTTLED and INSTRUMENT_HALTED rejects from the admission stage,
AdminAcks of mass and operator commands) wait in a side list, each with its place in the
sequence (the command row it came before); ``encode_reports`` merges them in as it passes
that row, so every session reads its answers in the order it sent the commands. At the end
of a turn ``Output.grouped`` sorts the frames by account (a counting sort, order kept within
an account) so that each session gets its share in one write.

Reports are only encoded for accounts with a session (``live``): an account logged off
misses them (``docs/protocol.md``, cancel-on-disconnect).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine import batch as B
from engine.codes import NO_PRICE, Action, EventKind

from .protocol import CLID_BYTES, NO_INSTRUMENT, NULL_PRICE, ExecKind
from .wire import REPORT_SIZE, put_report, rd_u16

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
#: Bytes a batch's reports can take at most per event row (a trade reports to both sides).
PER_EVENT = 2 * REPORT_SIZE

# Output.meta slots
O_FRAMES = 0
O_BYTES = 1


@_inline
def _price(p):
    return NULL_PRICE if p == NO_PRICE else p


@_inline
def _tag(idx, meta, account, p):
    m = meta[O_FRAMES]
    idx[m, 0] = account
    idx[m, 1] = p
    meta[O_FRAMES] = m + 1


@_inline
def _copy_answer(gw_off, gw_buf, g, out, p):
    q = gw_off[g]
    size = 2 + rd_u16(gw_buf, q)
    for k in range(size):
        out[p + k] = gw_buf[q + k]
    return p + size


@_inline
def _fill(events, k, side, account_col, order_col, left_col, filled_after, order_clid, live,
          out, idx, meta, p):
    """The FILL or PARTIAL_FILL report of one side (1 buyer, 2 seller) of trade row ``k``."""
    a = events[k, account_col]
    if not live[a]:
        return p
    left = events[k, left_col]
    _tag(idx, meta, a, p)
    return put_report(out, p, _X_FILL if left == 0 else _X_PARTIAL, 0, side,
                      events[k, B.SEGMENT], events[k, B.INSTRUMENT], order_clid,
                      events[k, order_col] * CLID_BYTES, events[k, B.TS], events[k, B.PRICE],
                      events[k, B.QTY], filled_after[k, side - 1], left, events[k, B.TRADE_ID])


@_kernel
def encode_reports(events, n, filled_after, row0, origin, cmd_clid, order_clid, live,
                   gw_pos, gw_acct, gw_off, gw_buf, g, g_end, out, idx, meta):
    """Append the reports of event rows ``events[:n]`` (a batch whose first command is
    turn row ``row0``; ``cmd_clid`` and ``order_clid`` are flat arrays of 20-byte ids by turn
    row and by order handle) to ``out``, and the gateway answers ``g .. g_end-1`` at their places;
    returns ``g_end``. The caller made room (``Output.reserve``)."""
    p = meta[O_BYTES]
    for k in range(n):
        r = row0 + events[k, B.CMD]
        while g < g_end and gw_pos[g] <= r:
            a = gw_acct[g]
            if live[a]:
                _tag(idx, meta, a, p)
                p = _copy_answer(gw_off, gw_buf, g, out, p)
            g += 1
        kind = events[k, B.KIND]
        if kind == _TRADE:
            p = _fill(events, k, 1, B.ACCOUNT, B.ORDER, B.AUX1, filled_after, order_clid,
                      live, out, idx, meta, p)
            p = _fill(events, k, 2, B.ACCOUNT2, B.ORDER2, B.AUX2, filled_after, order_clid,
                      live, out, idx, meta, p)
        elif kind == _REJECTED:
            a = origin[r]
            if a >= 0 and live[a]:
                action = events[k, B.AUX1]
                x = (_X_CANCEL_REJECTED if action == _A_CANCEL else
                     _X_AMEND_REJECTED if action == _A_AMEND else _X_REJECTED)
                _tag(idx, meta, a, p)
                p = put_report(out, p, x, events[k, B.REASON], 0, 0, NO_INSTRUMENT, cmd_clid,
                               r * CLID_BYTES, events[k, B.TS], NULL_PRICE, 0, 0, 0, 0)
        elif kind == _ACCEPTED or kind == _CANCELLED or kind == _EXPIRED or kind == _AMENDED:
            a = events[k, B.ACCOUNT]
            if live[a]:
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
                _tag(idx, meta, a, p)
                p = put_report(out, p, x, reason, events[k, B.SIDE], events[k, B.SEGMENT],
                               events[k, B.INSTRUMENT], order_clid,
                               events[k, B.ORDER] * CLID_BYTES, events[k, B.TS], _price(events[k, B.PRICE]), qty, filled, left,
                               0)
    while g < g_end:
        a = gw_acct[g]
        if live[a]:
            _tag(idx, meta, a, p)
            p = _copy_answer(gw_off, gw_buf, g, out, p)
        g += 1
    meta[O_BYTES] = p
    return g


@njit(cache=True)  # with reference counting: the slice copies below are memcpy
def _group(buf, idx, n, slot_of, touched, sizes, starts, out):
    nt = 0
    for i in range(n):
        a = idx[i, 0]
        s = slot_of[a]
        if s < 0:
            s = nt
            slot_of[a] = s
            touched[s] = a
            sizes[s] = 0
            nt += 1
        sizes[s] += 2 + rd_u16(buf, idx[i, 1])
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
    for s in range(nt):
        sizes[s] -= starts[s]
        slot_of[touched[s]] = -1
    return nt


class Output:
    """A turn's outgoing frames in sequence order, each tagged with its account."""

    def __init__(self, capacity: int = 1 << 16):
        self.buf = np.zeros(capacity, np.uint8)
        self.idx = np.zeros((capacity // 16, 2), np.int64)
        self.meta = np.zeros(2, np.int64)
        self._grouped = np.zeros(capacity, np.uint8)
        self._slot_of = np.full(64, -1, np.int64)
        self._touched = np.zeros(64, np.int64)
        self._sizes = np.zeros(64, np.int64)
        self._starts = np.zeros(64, np.int64)

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
            idx = np.zeros((max(need, 2 * self.idx.shape[0]), 2), np.int64)
            idx[: self.idx.shape[0]] = self.idx
            self.idx = idx

    def append(self, account: int, frame: bytes) -> None:
        """One frame from Python (an AdminAck of a mass or operator command)."""
        self.reserve(len(frame), 1)
        p = int(self.meta[O_BYTES])
        self.buf[p:p + len(frame)] = np.frombuffer(frame, np.uint8)
        m = int(self.meta[O_FRAMES])
        self.idx[m] = (account, p)
        self.meta[O_FRAMES] = m + 1
        self.meta[O_BYTES] = p + len(frame)

    def grouped(self, n_accounts: int):
        """(accounts, starts, sizes, buffer): the turn's frames sorted by account, in the
        order each account first appears; each account's frames keep their order."""
        n = self.frames
        if self._slot_of.shape[0] < n_accounts:
            size = max(n_accounts, 2 * self._slot_of.shape[0])
            self._slot_of = np.full(size, -1, np.int64)
            self._touched = np.zeros(size, np.int64)
            self._sizes = np.zeros(size, np.int64)
            self._starts = np.zeros(size, np.int64)
        if self._grouped.shape[0] < self.buf.shape[0]:
            self._grouped = np.zeros(self.buf.shape[0], np.uint8)
        nt = _group(self.buf, self.idx, n, self._slot_of, self._touched, self._sizes,
                    self._starts, self._grouped)
        return (self._touched[:nt], self._starts[:nt], self._sizes[:nt],
                self.buf if nt == 1 else self._grouped)
