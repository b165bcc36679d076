"""The binary frames: the compiled encoders (``gateway.wire``) against the Python ones
(``gateway.protocol.encode``) and the NumPy layouts; frame splitting in chunks; ids."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import protocol as P
from gateway import wire as W
from gateway.client import BatchReader

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
u63 = st.integers(0, 2**63 - 1)
clids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


def _clid_array(clid: str) -> np.ndarray:
    return np.frombuffer(P.encode_clid(clid), np.uint8)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(P.ExecKind)), reason=u8, side=u8, segment=u8,
       instrument=u16, clid=clids, ts=i64, price=st.one_of(st.none(), i64.filter(
           lambda p: p != P.NULL_PRICE)), qty=u32, filled=u32, open_=u32, trade_id=u63,
       report_seq=u63)
def test_compiled_report_is_the_python_encoding(kind, reason, side, segment, instrument, clid,
                                                ts, price, qty, filled, open_, trade_id,
                                                report_seq):
    msg = P.ExecutionReport(kind, clid, ts, instrument, segment, side, price, qty, filled,
                            open_, reason, trade_id, report_seq)
    buf = np.zeros(W.REPORT_SIZE + 8, np.uint8)
    end = W.put_report(buf, 4, int(kind), reason, side, segment, instrument,
                       _clid_array(clid), 0, ts, P.NULL_PRICE if price is None else price, qty,
                       filled, open_, trade_id, report_seq)
    assert end == 4 + W.REPORT_SIZE
    assert buf[4:end].tobytes() == P.encode(msg)
    assert P.FrameReader(P.SERVER).feed(buf[4:end].tobytes()) == [msg]
    row = np.frombuffer(buf[4:end].tobytes(), P.EXECUTION_REPORT)[0]
    assert P.report_from_row(row) == msg


@settings(max_examples=200, deadline=None)
@given(instrument=u16, segment=st.integers(0, 1), aggressor=st.integers(1, 2), seq=u63, ts=i64,
       trade_id=u63, price=i64, qty=u32, status=st.sampled_from(list(P.Status)),
       day=st.integers(-100_000, 2_000_000), prior=i64, close=i64, volume=i64, turnover=i64)
def test_compiled_market_data_is_the_python_encoding(instrument, segment, aggressor, seq, ts,
                                                     trade_id, price, qty, status, day, prior,
                                                     close, volume, turnover):
    buf = np.zeros(256, np.uint8)
    end = W.put_md_trade(buf, 0, instrument, segment, aggressor, seq, ts, trade_id, price, qty)
    trade = P.MdTrade(instrument, segment, seq, ts, trade_id, price, qty, aggressor)
    assert buf[:end].tobytes() == P.encode(trade)
    end = W.put_md_status(buf, 0, instrument, segment, int(status), seq, ts)
    assert buf[:end].tobytes() == P.encode(P.MdStatus(instrument, segment, seq, ts, status))
    date = W.civil_date(day)
    d = dt.date(1970, 1, 1) + dt.timedelta(days=day)
    assert date == d.year * 10000 + d.month * 100 + d.day
    end = W.put_md_summary(buf, 0, instrument, segment, seq, ts, date, prior, close, volume,
                           turnover)
    summary = P.MdDaySummary(instrument, segment, seq, ts, date, prior, close, volume, turnover)
    assert buf[:end].tobytes() == P.encode(summary)
    assert P.FrameReader(P.SERVER).feed(buf[:end].tobytes()) == [summary]


@settings(max_examples=200, deadline=None)
@given(bids=st.lists(st.tuples(i64, i64, u32), max_size=5),
       asks=st.lists(st.tuples(i64, i64, u32), max_size=5), seq=u63, ts=i64)
def test_compiled_depth_is_the_python_encoding(bids, asks, seq, ts):
    levels = np.zeros((10, 3), np.int64)
    for k, level in enumerate(bids):
        levels[k] = level
    for k, level in enumerate(asks):
        levels[5 + k] = level
    buf = np.zeros(256, np.uint8)
    end = W.put_md_depth(buf, 0, 3, 1, seq, ts, levels, len(bids), len(asks))
    msg = P.MdDepth(3, 1, seq, ts, bids, asks)
    assert buf[:end].tobytes() == P.encode(msg)
    assert P.FrameReader(P.SERVER).feed(buf[:end].tobytes()) == [msg]


def test_layouts_and_struct_formats_agree():
    f = P.order_frames(1)
    f["cl_ord_id"], f["instrument"], f["side"], f["qty"], f["price"] = b"x1", 2, 2, 70, 6123
    f["ord_type"], f["tif"], f["stp"] = 1, 2, 3
    assert f.tobytes() == P.encode(P.NewOrder("x1", 2, 2, 70, 6123, 1, 2, 3))
    c = P.cancel_frames(1)
    c["cl_ord_id"] = b"x1"
    assert c.tobytes() == P.encode(P.Cancel("x1"))
    t = P.take_frames(1)
    t["cl_ord_id"], t["instrument"], t["side"], t["qty"], t["target"] = b"x1", 2, 2, 70, 2**63
    assert t.tobytes() == P.encode(P.Take("x1", 2, 2, 70, 2**63))
    assert {t: size - 2 for t, size in P.BINARY_SIZES.items() if t in P.CLIENT} == {
        P.MsgType.NEW_ORDER: 39, P.MsgType.CANCEL: 21, P.MsgType.AMEND: 33, P.MsgType.TAKE: 36}
    for msg_type, size in P.BINARY_SIZES.items():
        assert size - 2 < P.MAX_FRAME and msg_type in (P.CLIENT | P.SERVER)


def test_cl_ord_id_rules():
    assert P.encode_clid("A") == b"A" + bytes(19) and len(P.encode_clid("x" * 20)) == 20
    for bad in ("", "x" * 21, "a b", "é", "\x00", "tab\t"):
        with pytest.raises(ValueError, match="cl_ord_id"):
            P.encode_clid(bad)
    assert P.decode_clid(b"ab" + bytes(18)) == "ab" and P.decode_clid(b"\xff" * 20) == "\xff" * 20


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["report", "trade", "heartbeat", "depth", "ack"]), max_size=40),
       st.lists(st.integers(1, 97), min_size=1, max_size=20))
def test_batch_reader_splits_any_chunking_like_the_frame_reader(kinds, cuts):
    msgs = []
    for i, kind in enumerate(kinds):
        if kind == "report":
            msgs.append(P.ExecutionReport(P.ExecKind.FILL, f"o{i}", i, 0, 0, 1, 6000, i, i, 0))
        elif kind == "trade":
            msgs.append(P.MdTrade(0, 0, i, i, i, 6000, 5, 1))
        elif kind == "heartbeat":
            msgs.append(P.Heartbeat(i))
        elif kind == "depth":
            msgs.append(P.MdDepth(0, 1, i, i, [(6000, 5, 1)] * (i % 6), []))
        else:
            msgs.append(P.AdminAck("MassCancel", True, 0, f"{i} orders cancelled"))
    data = b"".join(P.encode(m) for m in msgs)
    reader, got, at, k = BatchReader(), [], 0, 0
    while at < len(data):
        step = cuts[k % len(cuts)]
        k += 1
        for item in reader.feed(data[at:at + step]):
            if isinstance(item, np.ndarray):
                got.extend(P.report_from_row(row) for row in item)
            else:
                got.append(item)
        at += step
    assert got == msgs


def test_split_frames_stops_at_a_zero_length():
    first = P.encode(P.Heartbeat(1))
    raw = np.frombuffer(first + b"\x00\x00" + P.encode(P.Heartbeat(2)), np.uint8)
    offsets = np.zeros(8, np.int64)
    n, stop, bad = W.split_frames(raw, 0, len(raw), P.MAX_SERVER_FRAME, offsets)
    assert (n, stop, bad) == (1, len(first), len(first))
    with pytest.raises(P.ProtocolError):
        BatchReader().feed(raw.tobytes())


def _depth(v) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((max(_depth(k), _depth(x)) for k, x in v.items()), default=0)
    return 0


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=40) | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(msgpack_values)
def test_msgpack_depth_of_valid_values(value):
    import msgspec

    raw = np.frombuffer(msgspec.msgpack.encode(value), np.uint8)
    assert P.msgpack_depth(raw, 0, len(raw), np.zeros(P.MAX_NESTING + 2, np.int64)) == \
        _depth(value)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_msgpack_depth_of_any_bytes_is_a_verdict(data):
    raw = np.frombuffer(data, np.uint8)
    got = P.msgpack_depth(raw, 0, len(raw), np.zeros(P.MAX_NESTING + 2, np.int64))
    assert -2 <= got <= P.MAX_NESTING


def test_nesting_is_refused_whatever_the_callers_stack():
    body = b"\x92\x00" + b"\x91" * 900 + b"\xc0"
    frame = (len(body) + 1).to_bytes(2, "little") + b"\x01" + body

    def at(depth, f):
        return f() if depth == 0 else at(depth - 1, f)

    for depth in (0, 300):
        with pytest.raises(P.ProtocolError, match="nested deeper than 32"):
            at(depth, lambda: P.FrameReader(P.CLIENT).feed(frame))
    shallow = b"\x92\x00" + b"\x91" * 20 + b"\xc0"
    ok = (len(shallow) + 1).to_bytes(2, "little") + b"\x01" + shallow
    assert P.FrameReader(P.CLIENT).feed(ok) == [P.Heartbeat(0)]
