"""Compiled codecs of the binary frames (``gateway.protocol``): read and write little-endian
fields in ``uint8`` buffers, and encode the server's binary messages.

Everything here is ``@njit`` over numpy arrays: the admission stage decodes order frames with
these readers, the reports and market-data stages encode with these writers, and clients
split frames with ``split_frames``. The layouts are those of the numpy dtypes in
``gateway.protocol`` (``tests/gateway/test_wire.py`` holds the two to each other).

>>> import numpy as np
>>> from gateway import protocol as P
>>> buf = np.zeros(80, np.uint8)
>>> clid = np.frombuffer(P.encode_clid("o1"), np.uint8)
>>> end = put_report(buf, 0, 1, 0, 1, 0, 0, clid, 0, 7, 6010, 500, 0, 500, 0, 1)
>>> P.FrameReader(P.SERVER).feed(buf[:end].tobytes())[0].cl_ord_id, end
('o1', 73)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .protocol import (
    CLID_BYTES, EXECUTION_REPORT, LEVEL, QUOTE_REPORT, MD_DAY_SUMMARY, MD_DEPTH_HEAD, MD_STATUS, MD_TRADE,
    NULL_PRICE, MsgType,
)

_inline = njit(cache=True, _nrt=False, inline="always")
_kernel = njit(cache=True, _nrt=False)

REPORT_SIZE = EXECUTION_REPORT.itemsize
TRADE_SIZE = MD_TRADE.itemsize
STATUS_SIZE = MD_STATUS.itemsize
SUMMARY_SIZE = MD_DAY_SUMMARY.itemsize
DEPTH_HEAD_SIZE = MD_DEPTH_HEAD.itemsize
LEVEL_SIZE = LEVEL.itemsize
_T_REPORT, _T_TRADE, _T_DEPTH = (int(MsgType.EXECUTION_REPORT), int(MsgType.MD_TRADE),
                                 int(MsgType.MD_DEPTH))
_T_STATUS, _T_SUMMARY = int(MsgType.MD_STATUS), int(MsgType.MD_DAY_SUMMARY)
_T_QUOTE = int(MsgType.QUOTE_REPORT)
assert QUOTE_REPORT.itemsize == REPORT_SIZE  # the report log keeps frames of one size


# ---------------------------------------------------------------- fields

@_inline
def rd_u16(b, p):
    return np.int64(b[p]) | (np.int64(b[p + 1]) << 8)


@_inline
def rd_u32(b, p):
    return (np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16)
            | (np.int64(b[p + 3]) << 24))


@_inline
def rd_u64(b, p):
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(b[p + k]) << np.uint64(8 * k)
    return v


@_inline
def rd_i64(b, p):
    return np.int64(rd_u64(b, p))


@_inline
def wr_u8(b, p, v):
    b[p] = np.uint8(v & 0xFF)


@_inline
def wr_u16(b, p, v):
    b[p] = np.uint8(v & 0xFF)
    b[p + 1] = np.uint8((v >> 8) & 0xFF)


@_inline
def wr_u32(b, p, v):
    for k in range(4):
        b[p + k] = np.uint8((v >> (8 * k)) & 0xFF)


@_inline
def wr_i64(b, p, v):
    u = np.uint64(v)
    for k in range(8):
        b[p + k] = np.uint8((u >> np.uint64(8 * k)) & np.uint64(0xFF))


@_inline
def put_head(b, p, size, kind):
    """The 3-byte header of a frame of ``size`` bytes in all."""
    wr_u16(b, p, size - 2)
    b[p + 2] = np.uint8(kind)


@_inline
def copy_clid(dst, p, src, q):
    for k in range(CLID_BYTES):
        dst[p + k] = src[q + k]


@_inline
def wire_price(price, none):
    """An engine price as the wire writes it: ``none`` (the engine's NO_PRICE) is null."""
    return NULL_PRICE if price == none else price


# ---------------------------------------------------------------- server messages

@_inline
def put_report(b, p, kind, reason, side, segment, instrument, clid, clid_at, ts, price, qty,
               filled, open_, trade_id, report_seq):
    """An ExecutionReport at ``b[p:]``; its cl_ord_id is the 20 bytes at ``clid[clid_at:]``;
    ``report_seq`` 0 for a gateway answer (not in the account's stream). Returns the offset
    after it."""
    put_head(b, p, REPORT_SIZE, _T_REPORT)
    b[p + 3] = np.uint8(kind)
    b[p + 4] = np.uint8(reason)
    b[p + 5] = np.uint8(side)
    b[p + 6] = np.uint8(segment)
    wr_u16(b, p + 7, instrument)
    copy_clid(b, p + 9, clid, clid_at)
    wr_i64(b, p + 29, ts)
    wr_i64(b, p + 37, price)
    wr_u32(b, p + 45, qty)
    wr_u32(b, p + 49, filled)
    wr_u32(b, p + 53, open_)
    wr_i64(b, p + 57, trade_id)
    wr_i64(b, p + 65, report_seq)
    return p + REPORT_SIZE


@_inline
def put_quote_report(b, p, event, side, flags, instrument, quote_no, clid, clid_at, ts, price,
                     qty, trade_id, report_seq):
    """A QuoteReport at ``b[p:]``; its cl_ord_id is the 20 bytes at ``clid[clid_at:]``
    (``clid_at`` negative: 20 NUL bytes). Returns the offset after it."""
    put_head(b, p, REPORT_SIZE, _T_QUOTE)
    b[p + 3] = np.uint8(event)
    b[p + 4] = np.uint8(0)
    b[p + 5] = np.uint8(side)
    b[p + 6] = np.uint8(flags)
    wr_u16(b, p + 7, instrument)
    wr_i64(b, p + 9, quote_no)
    if clid_at >= 0:
        copy_clid(b, p + 17, clid, clid_at)
    else:
        for k in range(CLID_BYTES):
            b[p + 17 + k] = 0
    wr_i64(b, p + 37, ts)
    wr_i64(b, p + 45, price)
    wr_u32(b, p + 53, qty)
    wr_i64(b, p + 57, trade_id)
    wr_i64(b, p + 65, report_seq)
    return p + REPORT_SIZE


@_inline
def put_md_trade(b, p, instrument, segment, aggressor, seq, ts, trade_id, price, qty):
    put_head(b, p, TRADE_SIZE, _T_TRADE)
    wr_u16(b, p + 3, instrument)
    b[p + 5] = np.uint8(segment)
    b[p + 6] = np.uint8(aggressor)
    wr_i64(b, p + 7, seq)
    wr_i64(b, p + 15, ts)
    wr_i64(b, p + 23, trade_id)
    wr_i64(b, p + 31, price)
    wr_u32(b, p + 39, qty)
    return p + TRADE_SIZE


@_inline
def put_md_status(b, p, instrument, segment, status, seq, ts):
    put_head(b, p, STATUS_SIZE, _T_STATUS)
    wr_u16(b, p + 3, instrument)
    b[p + 5] = np.uint8(segment)
    b[p + 6] = np.uint8(status)
    wr_i64(b, p + 7, seq)
    wr_i64(b, p + 15, ts)
    return p + STATUS_SIZE


@_inline
def put_md_summary(b, p, instrument, segment, seq, ts, date, prior_close, close, volume,
                   turnover):
    put_head(b, p, SUMMARY_SIZE, _T_SUMMARY)
    wr_u16(b, p + 3, instrument)
    b[p + 5] = np.uint8(segment)
    b[p + 6] = np.uint8(0)
    wr_i64(b, p + 7, seq)
    wr_i64(b, p + 15, ts)
    wr_u32(b, p + 23, date)
    wr_i64(b, p + 27, prior_close)
    wr_i64(b, p + 35, close)
    wr_i64(b, p + 43, volume)
    wr_i64(b, p + 51, turnover)
    return p + SUMMARY_SIZE


@_inline
def put_md_depth(b, p, instrument, segment, seq, ts, levels, n_bids, n_asks):
    """An MdDepth: ``levels`` (int64 [10, 3]: price, qty, orders) holds the bids in rows
    0 .. n_bids-1 and the asks in rows 5 .. 5+n_asks-1."""
    size = DEPTH_HEAD_SIZE + LEVEL_SIZE * (n_bids + n_asks)
    put_head(b, p, size, _T_DEPTH)
    wr_u16(b, p + 3, instrument)
    b[p + 5] = np.uint8(segment)
    b[p + 6] = np.uint8(n_bids)
    b[p + 7] = np.uint8(n_asks)
    wr_i64(b, p + 8, seq)
    wr_i64(b, p + 16, ts)
    q = p + DEPTH_HEAD_SIZE
    for k in range(n_bids + n_asks):
        row = k if k < n_bids else 5 + k - n_bids
        wr_i64(b, q, levels[row, 0])
        wr_i64(b, q + 8, levels[row, 1])
        wr_u32(b, q + 16, levels[row, 2])
        q += LEVEL_SIZE
    return q


@_inline
def civil_date(day):
    """YYYYMMDD of a day number (days since 1970-01-01), proleptic Gregorian (H. Hinnant's
    days_from_civil inverted)."""
    z = day + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return y * 10000 + m * 100 + d


# ---------------------------------------------------------------- reading a stream

@_kernel
def split_frames(buf, start, end, max_frame, offsets):
    """Walk the frames in ``buf[start:end]``: write the offset of each complete frame into
    ``offsets`` (as many as fit) and return (frames found, offset after the last complete
    frame, offset of a frame whose length is 0 or over ``max_frame``, or -1)."""
    p = start
    n = 0
    while end - p >= 2 and n < offsets.shape[0]:
        length = rd_u16(buf, p)
        if length == 0 or length > max_frame:
            return n, p, p
        if p + 2 + length > end:
            break
        offsets[n] = p
        n += 1
        p += 2 + length
    return n, p, -1


@_kernel
def gather_reports(buf, offsets, n, out):
    """Copy the ExecutionReport frames among ``offsets[:n]`` into ``out`` (a uint8 array of
    rows of ``EXECUTION_REPORT.itemsize``); returns how many."""
    k = 0
    for i in range(n):
        p = offsets[i]
        if buf[p + 2] == _T_REPORT and rd_u16(buf, p) == REPORT_SIZE - 2:
            for j in range(REPORT_SIZE):
                out[k, j] = buf[p + j]
            k += 1
    return k
