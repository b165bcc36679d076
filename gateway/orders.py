"""The exchange's table of order ids: every (account, cl_ord_id) ever used, as a dense handle,
with what the gateway tracks of each order (instrument, side, filled, open) and, per
account, the list of its resting orders (for MassCancel and cancel-on-disconnect).

Interning is a compiled open-addressing hash table (linear probing, at most half full) over
the 20 wire bytes of the id and the account handle; the handle is what the engine's command
rows carry. The id's text is needed only on cold paths (``name``, the ledger, CSV files).

>>> t = OrderTable()
>>> ids = np.frombuffer(b"o1".ljust(20, b"\\0") * 2, np.uint8).reshape(2, 20)
>>> t.intern_many(np.array([3, 4], np.int32), np.array([0, 0], np.int16), ids)
0
>>> t.find(4, "o1"), t.find(5, "o1"), t.name(0), len(t)
(1, -1, 'o1', 2)
>>> t.intern_many(np.array([4], np.int32), np.array([0], np.int16), ids[:1])
Traceback (most recent call last):
...
ValueError: journal: order id interned twice
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine import batch as B
from engine.codes import EventKind

from .protocol import CLID_BYTES, decode_clid, encode_clid

_inline = njit(cache=True, _nrt=False, inline="always")
_kernel = njit(cache=True, _nrt=False)

NIL = -1
# meta[] slots
M_COUNT = 0  # handles in use
M_MASK = 1  # hash table size - 1

_ACCEPTED, _TRADE, _CANCELLED, _EXPIRED, _AMENDED = (
    int(EventKind.ACCEPTED), int(EventKind.TRADE), int(EventKind.CANCELLED),
    int(EventKind.EXPIRED), int(EventKind.AMENDED))
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)


@_inline
def clid_hash(account, buf, p):
    """A 64-bit hash of an account handle and the 20 id bytes at ``buf[p:]``."""
    h = np.uint64(account + 1) * _K1
    for w in range(3):
        v = np.uint64(0)
        for k in range(8 if w < 2 else 4):
            v |= np.uint64(buf[p + 8 * w + k]) << np.uint64(8 * k)
        h = (h ^ v) * _K2
        h ^= h >> np.uint64(31)
    return h


@_inline
def _same(clid, h, buf, p):
    for k in range(CLID_BYTES):
        if clid[h, k] != buf[p + k]:
            return False
    return True


@_inline
def find(table, meta, clid, acct, account, buf, p):
    """The handle of (account, the 20 bytes at ``buf[p:]``), or NIL."""
    mask = meta[M_MASK]
    slot = np.int64(clid_hash(account, buf, p) & np.uint64(mask))
    while True:
        e = table[slot]
        if e == 0:
            return NIL
        h = e - 1
        if acct[h] == account and _same(clid, h, buf, p):
            return h
        slot = (slot + 1) & mask


@_inline
def intern(table, meta, clid, acct, instr, account, instrument, buf, p):
    """(handle, 1 if it is new) of (account, id bytes at ``buf[p:]``); a new handle records
    the instrument. The caller made room (``OrderTable.reserve``)."""
    mask = meta[M_MASK]
    slot = np.int64(clid_hash(account, buf, p) & np.uint64(mask))
    while True:
        e = table[slot]
        if e == 0:
            break
        h = e - 1
        if acct[h] == account and _same(clid, h, buf, p):
            return h, 0
        slot = (slot + 1) & mask
    h = meta[M_COUNT]
    meta[M_COUNT] = h + 1
    table[slot] = h + 1
    for k in range(CLID_BYTES):
        clid[h, k] = buf[p + k]
    acct[h] = account
    instr[h] = instrument
    return h, 1


@_kernel
def _intern_rows(table, meta, clid, acct, instr, accounts, instruments, ids):
    """Intern rows of (account, instrument, id) that must all be new (a journal's new
    orders); returns the number that were not (0 when all is well)."""
    flat = ids.reshape(-1)
    dup = 0
    for i in range(accounts.shape[0]):
        _, new = intern(table, meta, clid, acct, instr, accounts[i], instruments[i], flat,
                        i * CLID_BYTES)
        dup += 1 - new
    return dup


@_kernel
def _rehash(table, meta, clid, acct):
    mask = meta[M_MASK]
    for h in range(meta[M_COUNT]):
        slot = np.int64(clid_hash(acct[h], clid[h], 0) & np.uint64(mask))
        while table[slot] != 0:
            slot = (slot + 1) & mask
        table[slot] = h + 1


# ---------------------------------------------------------------- tracking

@_inline
def _link(nxt, prv, head, tail, n_open, account, h):
    n_open[account] += 1
    t = tail[account]
    prv[h] = t
    nxt[h] = NIL
    if t == NIL:
        head[account] = h
    else:
        nxt[t] = h
    tail[account] = h


@_inline
def _unlink(nxt, prv, head, tail, n_open, account, h):
    n_open[account] -= 1
    p, n = prv[h], nxt[h]
    if p == NIL:
        head[account] = n
    else:
        nxt[p] = n
    if n == NIL:
        tail[account] = p
    else:
        prv[n] = p
    prv[h] = NIL
    nxt[h] = NIL


@_kernel
def track(events, n, side, filled, open_, nxt, prv, head, tail, n_open, filled_after):
    """Apply an engine batch's events to the order table: sides, filled and open
    quantities, and each account's list (and count) of resting orders. ``filled_after[k]`` gets the
    filled quantity, after event ``k``, of the order(s) it is about (buyer, seller)."""
    for k in range(n):
        kind = events[k, B.KIND]
        if kind == _TRADE:
            bh, sh, qty = events[k, B.ORDER], events[k, B.ORDER2], events[k, B.QTY]
            if bh == sh:  # a negotiated agreement: the quote is no order, never rested
                filled_after[k, 0] = filled_after[k, 1] = qty
                continue
            filled[bh] += qty
            filled[sh] += qty
            open_[bh] = events[k, B.AUX1]
            open_[sh] = events[k, B.AUX2]
            if open_[bh] == 0:
                _unlink(nxt, prv, head, tail, n_open, events[k, B.ACCOUNT], bh)
            if open_[sh] == 0:
                _unlink(nxt, prv, head, tail, n_open, events[k, B.ACCOUNT2], sh)
            filled_after[k, 0] = filled[bh]
            filled_after[k, 1] = filled[sh]
        elif kind == _ACCEPTED:
            h = events[k, B.ORDER]
            side[h] = events[k, B.SIDE]
            open_[h] = events[k, B.QTY]
            _link(nxt, prv, head, tail, n_open, events[k, B.ACCOUNT], h)
        elif kind == _AMENDED:
            h = events[k, B.ORDER]
            open_[h] = events[k, B.QTY]
            filled_after[k, 0] = filled[h]
        elif kind == _CANCELLED or kind == _EXPIRED:
            h = events[k, B.ORDER]
            if open_[h] > 0:
                _unlink(nxt, prv, head, tail, n_open, events[k, B.ACCOUNT], h)
            open_[h] = 0
            filled_after[k, 0] = filled[h]


@_kernel
def open_orders(head, nxt, instr, side, account, instrument, which_side, out):
    """The account's resting orders (of one instrument unless -1, one side unless 0) in
    order of acceptance, into ``out``; returns how many."""
    n = 0
    h = head[account]
    while h != NIL:
        if (instrument < 0 or instr[h] == instrument) and (which_side == 0 or
                                                          side[h] == which_side):
            out[n] = h
            n += 1
        h = nxt[h]
    return n


class OrderTable:
    """Every order id the exchange has seen, by handle (see the module's docstring)."""

    def __init__(self, capacity: int = 1 << 12, accounts: int = 64):
        self.meta = np.zeros(2, np.int64)
        self.table = np.zeros(1 << (2 * capacity - 1).bit_length(), np.int64)  # a power of 2
        self.meta[M_MASK] = self.table.shape[0] - 1
        self.clid = np.zeros((capacity, CLID_BYTES), np.uint8)
        self.acct = np.full(capacity, NIL, np.int32)
        self.instr = np.full(capacity, NIL, np.int16)
        self.side = np.zeros(capacity, np.int8)
        self.filled = np.zeros(capacity, np.int64)
        self.open = np.zeros(capacity, np.int64)
        self.nxt = np.full(capacity, NIL, np.int64)
        self.prv = np.full(capacity, NIL, np.int64)
        self.head = np.full(accounts, NIL, np.int64)
        self.tail = np.full(accounts, NIL, np.int64)
        self.n_open = np.zeros(accounts, np.int64)  # resting orders per account

    def __len__(self) -> int:
        return int(self.meta[M_COUNT])

    # -------------------------------------------------------------- room

    def reserve(self, more: int) -> None:
        """Room for ``more`` new handles (and the hash table at most half full)."""
        need = int(self.meta[M_COUNT]) + more
        cap = self.clid.shape[0]
        if need > cap:
            cap = max(need, 2 * cap)
            self.clid = _grown(self.clid, cap, 0)
            self.acct = _grown(self.acct, cap, NIL)
            self.instr = _grown(self.instr, cap, NIL)
            self.side = _grown(self.side, cap, 0)
            self.filled = _grown(self.filled, cap, 0)
            self.open = _grown(self.open, cap, 0)
            self.nxt = _grown(self.nxt, cap, NIL)
            self.prv = _grown(self.prv, cap, NIL)
        if 2 * need > self.table.shape[0]:
            size = self.table.shape[0]
            while 2 * need > size:
                size *= 2
            self.table = np.zeros(size, np.int64)
            self.meta[M_MASK] = size - 1
            _rehash(self.table, self.meta, self.clid, self.acct)

    def reserve_accounts(self, n: int) -> None:
        """Room for account handles 0 .. n-1."""
        if n > self.head.shape[0]:
            size = max(n, 2 * self.head.shape[0])
            self.head = _grown(self.head, size, NIL)
            self.tail = _grown(self.tail, size, NIL)
            self.n_open = _grown(self.n_open, size, 0)

    # -------------------------------------------------------------- names

    def intern_many(self, accounts: np.ndarray, instruments: np.ndarray, ids: np.ndarray) -> int:
        """Intern new orders in bulk (a journal record's); return the first handle.
        ``ValueError`` if any was already known (the journal would be inconsistent)."""
        first = len(self)
        self.reserve(len(accounts))
        dup = _intern_rows(self.table, self.meta, self.clid, self.acct, self.instr,
                           np.ascontiguousarray(accounts, np.int32),
                           np.ascontiguousarray(instruments, np.int16),
                           np.ascontiguousarray(ids, np.uint8).reshape(-1, CLID_BYTES))
        if dup:
            raise ValueError("journal: order id interned twice")
        return first

    def find(self, account: int, cl_ord_id: str) -> int:
        raw = np.frombuffer(encode_clid(cl_ord_id), np.uint8)
        return int(_find1(self.table, self.meta, self.clid, self.acct, account, raw))

    def name(self, handle: int) -> str:
        if not 0 <= handle < len(self):
            return ""
        return decode_clid(self.clid[handle].tobytes())

    def names(self, handles: np.ndarray) -> np.ndarray:
        """The 20 id bytes of each handle, as an ``S20`` array (``bytes`` per element)."""
        return self.clid[np.asarray(handles, np.int64)].view("S20").reshape(-1)

    def rows(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(accounts, instruments, id bytes) of handles ``first .. last-1``."""
        return self.acct[first:last], self.instr[first:last], self.clid[first:last]

    def __getstate__(self):
        n = len(self)  # only what is in use; the hash table is rebuilt
        return {"n": n, "clid": self.clid[:n].copy(), "acct": self.acct[:n].copy(),
                "instr": self.instr[:n].copy(), "side": self.side[:n].copy(),
                "filled": self.filled[:n].copy(), "open": self.open[:n].copy(),
                "nxt": self.nxt[:n].copy(), "prv": self.prv[:n].copy(),
                "head": self.head.copy(), "tail": self.tail.copy(),
                "n_open": self.n_open.copy()}

    def __setstate__(self, state):
        n = state["n"]
        self.__init__(max(1 << 12, n), state["head"].shape[0])
        for key in ("clid", "acct", "instr", "side", "filled", "open", "nxt", "prv"):
            getattr(self, key)[:n] = state[key]
        self.head[:] = state["head"]
        self.tail[:] = state["tail"]
        self.n_open[:] = state["n_open"]
        self.meta[M_COUNT] = n
        _rehash(self.table, self.meta, self.clid, self.acct)

    def state_bytes(self) -> bytes:
        """What the state hash covers (the hash table is derived, not state)."""
        n = len(self)
        return b"".join(a[:n].tobytes() for a in (self.clid, self.acct, self.instr, self.side,
                                                   self.filled, self.open))


@_kernel
def _find1(table, meta, clid, acct, account, raw):
    return find(table, meta, clid, acct, account, raw, 0)


def _grown(a: np.ndarray, size: int, fill) -> np.ndarray:
    out = np.full((size, *a.shape[1:]), fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out
