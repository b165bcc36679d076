"""Fuzzing the wire protocol (``gateway.fuzz``): the decoder, the compiled admission stage
and a live server.

- ``FrameReader(CLIENT)`` fed random, mutated and valid frames in random chunks returns
  client messages or raises ``ProtocolError``, nothing else; valid frames decode to exactly
  what was encoded;
- ``Admission.take`` (the compiled decoder) fed the same kind of streams never raises,
  reports a bad frame exactly where ``FrameReader`` finds a framing error, and writes exactly
  the command rows and gateway answers that ``AdmissionModel`` (plain Python over the decoded
  Structs, the documented checks) computes, budgets included;
- ``CEA_FUZZ_FRAMES`` sets the count of both (default 200_000 each, a few seconds; the full
  run is ``python -m gateway.fuzz --frames 1000000``);
- a server fuzzed over TCP by several connections keeps running and keeps serving a fresh
  client; every outcome matches what the bytes sent call for;
- specific bad frames (length 0, length over MAX_FRAME, a garbage type, a garbage body, an
  order before Logon) are each answered with ``Error`` and the connection closed;
- regression tests for the bugs the fuzzers found: a deeply nested field escaping the
  decoder as RecursionError, replies echoing client strings beyond a frame, a nested field
  that decodes or not depending on the caller's stack depth, and a MassCancel whose ``side``
  does not fit int64 stopping the server (OverflowError in the sequencer).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from engine.codes import HUGE_PRICE, Action, Reason
from gateway import admission as A
from gateway import protocol as P
from gateway.admission import Admission
from gateway.client import Client
from gateway.exchange import Exchange, Genesis
from gateway.fuzz import (
    CLIENT_TYPES, DEPTH_PROBE, ROW_FIELDS, AdmissionModel, FuzzFailure, at_stack_depth, frame_of,
    fuzz_admission, fuzz_decoder, fuzz_server, handle_packed,
)

from .support import config, run_with_server

FRAMES = int(os.environ.get("CEA_FUZZ_FRAMES", "200000"))


def _deep_heartbeat(depth: int = 3000) -> bytes:
    """Heartbeat [0, [[[...]]]]: an extra trailing field nested ``depth`` levels."""
    return frame_of(P.MsgType.HEARTBEAT, b"\x92\x00" + b"\x91" * depth + b"\xc0")


def with_server(tmp_path, body, **kw):
    """Run ``await body(server, host, port)`` against a fresh in-process server (failed
    logons only logged: the fuzzer's bad logons would otherwise lock its address out)."""
    kw.setdefault("logon_backoff_cap", 0)
    return run_with_server(config(tmp_path, **kw), body)


async def talk(host, port, data: bytes, timeout: float = 5.0):
    """Send ``data``; read until the server closes. Returns (messages, how it ended)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    out, end = b"", "eof"
    try:
        writer.write(data)
        while True:
            chunk = await asyncio.wait_for(reader.read(1 << 16), timeout)
            if not chunk:
                break
            out += chunk
    except asyncio.TimeoutError:
        end = "still open"
    except ConnectionError:
        end = "reset"
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout)
        except (ConnectionError, asyncio.TimeoutError):
            pass
    return P.FrameReader(P.SERVER).feed(out), end


# ---------------------------------------------------------------------- decoder

def test_decoder_fuzz():
    t0 = time.perf_counter()
    counts = fuzz_decoder(FRAMES, seed=20240304, depth_probe=0)  # see the stack-depth test
    seconds = time.perf_counter() - t0
    assert counts["failures"] == [] and counts["unexpected"] == 0
    assert counts["failures_by_kind"] == {}
    assert counts["frames"] == FRAMES
    assert counts["valid"] + counts["mutated"] + counts["garbage"] == FRAMES
    assert counts["streams"] == (counts["streams_clean"] + counts["streams_errored"]
                                 + counts["streams_incomplete"])
    assert counts["protocol_errors"] == counts["streams_errored"]  # one reader per error
    assert counts["decoded"] == sum(counts["by_type"].values())
    assert counts["decoded"] > 0 and counts["protocol_errors"] > 0
    assert counts["roundtrips"] > 0 and counts["streams_clean"] > 0
    assert counts["feeds"] >= counts["streams"]
    if FRAMES >= 20_000:
        assert set(counts["by_type"]) == {cls.__name__ for cls in CLIENT_TYPES}
        assert counts["streams_incomplete"] > 0
    print(f"{FRAMES} frames in {seconds:.1f}s ({FRAMES / seconds:,.0f}/s): {counts}")


def test_decoder_fuzz_is_deterministic():
    a = fuzz_decoder(3000, seed=5)
    b = fuzz_decoder(3000, seed=5)
    c = fuzz_decoder(3000, seed=6)
    assert a == b
    assert a != c


def test_fuzzer_reports_contract_violations(monkeypatch):
    """An exception other than ProtocolError is caught: collected with an input that
    reproduces it (non-strict), or raised as FuzzFailure (strict)."""

    class Broken(P.FrameReader):
        __slots__ = ()

        def feed(self, data):
            if b"\xc1" in data:
                raise IndexError("boom")
            return super().feed(data)

    monkeypatch.setattr(P, "FrameReader", Broken)
    counts = fuzz_decoder(5000, seed=1, deep_nesting=False, strict=False, max_failures=3)
    assert counts["unexpected"] > 0 and counts["unexpected_by_type"] == {
        "IndexError": counts["unexpected"]}
    assert len(counts["failures"]) == 3
    f = counts["failures"][0]
    assert f["kind"] == "exception" and f["reproduces"] is True and b"\xc1" in f["input"]
    with pytest.raises(FuzzFailure, match="IndexError: boom"):
        fuzz_decoder(5000, seed=1)


def test_deeply_nested_field_is_a_protocol_error():
    frame = _deep_heartbeat()
    assert len(frame) - 2 <= P.MAX_FRAME
    with pytest.raises(P.ProtocolError) as e:
        P.FrameReader(P.CLIENT).feed(P.encode(P.Heartbeat()) + frame)
    assert e.value.messages == [P.Heartbeat()]


def _decoded(frame: bytes):
    try:
        return P.FrameReader(P.CLIENT).feed(frame)
    except P.ProtocolError as e:
        return str(e)


def test_decoding_does_not_depend_on_the_stack_depth():
    """A field nested ~900 levels deep decodes, or is a ProtocolError, depending on how deep
    in the Python stack FrameReader is called (msgspec's limit is the interpreter's remaining
    recursion budget): the server, its admission handler, ``Session._logon`` and a client
    may then disagree about the same bytes. Found by ``fuzz_decoder``'s depth probe (and
    once by ``fuzz_admission``: its model and the streaming reader disagreed)."""
    for depth in range(700, 1001, 20):
        frame = _deep_heartbeat(depth)
        here = _decoded(frame)
        deeper = at_stack_depth(DEPTH_PROBE, lambda: _decoded(frame))  # noqa: B023
        assert here == deeper, f"nested {depth} deep: {here!r} here, {deeper!r} deeper"
    counts = fuzz_decoder(20_000, seed=20240304, strict=False)
    assert counts["depth_checks"] > 0
    assert [f["error"] for f in counts["failures"]] == []


# ---------------------------------------------------------------------- admission

def test_admission_fuzz():
    t0 = time.perf_counter()
    counts = fuzz_admission(FRAMES, seed=20240304)
    seconds = time.perf_counter() - t0
    assert counts["failures"] == [] and counts["unexpected_by_type"] == {}
    assert counts["failures_by_kind"] == {}
    assert counts["frames"] == FRAMES
    assert counts["valid"] + counts["mutated"] + counts["garbage"] == FRAMES
    assert counts["stream_checks"] == counts["sessions"] == sum(counts["session_ends"].values())
    assert counts["rows"] == sum(counts["rows_by_check"].values()) > 0
    assert counts["answers"] == sum(counts["answers_by_kind"].values()) > 0
    if FRAMES >= 20_000:  # every path taken
        assert set(counts["rows_by_action"]) == {"NEW", "CANCEL", "AMEND", "TAKE"}
        assert set(counts["rows_by_check"]) == {"OK", "MALFORMED", "INVALID_QTY",
                                                "INVALID_PRICE"}
        assert set(counts["answers_by_kind"]) == {
            "REJECTED THROTTLED", "CANCEL_REJECTED THROTTLED", "AMEND_REJECTED THROTTLED",
            "REJECTED INSTRUMENT_HALTED", "AMEND_REJECTED INSTRUMENT_HALTED",
            "AdminAck THROTTLED"}
        assert set(counts["bad_frames"]) == {"length", "type", "size"}
        assert set(counts["handled"]) == {cls.__name__ for cls in CLIENT_TYPES} - {
            "NewOrder", "Cancel", "Amend", "Take"}
        assert {"bad", "drained", "logout", "logon", "undecodable"} <= set(
            counts["session_ends"])
        for key in ("ids_interned", "ids_reused", "ids_invalid", "orders_found",
                    "huge_price_clamps", "heartbeats_dropped", "more_share", "more_packed"):
            assert counts[key] > 0, key
    print(f"{FRAMES} frames in {seconds:.1f}s ({FRAMES / seconds:,.0f}/s): {counts}")


def test_admission_fuzz_is_deterministic():
    a = fuzz_admission(3000, seed=5)
    b = fuzz_admission(3000, seed=5)
    c = fuzz_admission(3000, seed=6)
    assert a == b
    assert a != c


def test_admission_fuzzer_reports_contract_violations(monkeypatch):
    """A kernel that writes a wrong row, misses a bad frame or raises is caught: collected
    (non-strict) with the session's bytes, or raised as FuzzFailure (strict)."""
    real = A.admit
    broken = {"mode": "row"}

    def admit(*args):
        status, pos = real(*args)
        cmds, meta = args[8], args[16]
        rows = meta[A.M_ROWS]
        if broken["mode"] == "row" and rows and cmds[rows - 1]["action"] == Action.AMEND:
            cmds[rows - 1]["qty"] += 1
        if broken["mode"] == "size" and status == A.BAD and meta[A.M_BAD_CODE] == 3:
            return A.DONE, pos  # a binary frame of the wrong size: waits for more instead
        if broken["mode"] == "raise" and status == A.BAD:
            raise IndexError("boom")
        return status, pos

    monkeypatch.setattr(A, "admit", admit)
    counts = fuzz_admission(5000, seed=3, strict=False, max_failures=2)
    assert counts["failures_by_kind"]["row"] > 2 and len(counts["failures"]) == 2
    f = counts["failures"][0]
    assert f["kind"] == "row" and "expected" in f["error"] and f["input"]
    with pytest.raises(FuzzFailure, match="row"):
        fuzz_admission(5000, seed=3)
    broken["mode"] = "size"
    counts = fuzz_admission(5000, seed=3, strict=False)
    assert counts["failures_by_kind"]["status"] > 0 and counts["failures"][0]["kind"] == "status"
    broken["mode"] = "raise"
    counts = fuzz_admission(5000, seed=3, strict=False)
    assert counts["unexpected_by_type"]["IndexError"] > 0
    assert counts["failures"][0]["kind"] == "exception"


def _take(frames: bytes, budget: int = 1 << 40, query_budget: int = 1 << 40, halted=(0,),
          account: int = 1):
    """One take over a fresh one-instrument exchange, checked against the model."""
    ex = Exchange(Genesis([("CEA", 6000)]), impl="numba", md_ring=16)
    ex.halted[:] = halted
    adm, model = Admission(ex), AdmissionModel(1)
    adm.begin(123)
    handled = []

    def handler(frame):
        handled.append(frame)
        return handle_packed(model.reader, frame)[1]

    want = model.take(frames, account, 4096, budget, query_budget, 32, ex.halted.copy(), 123)
    consumed, used, queries, error, more = adm.take(bytearray(frames), account, 4096, budget,
                                                    query_budget, handler, 32)
    assert (consumed, used, queries, error is not None, more) == (
        want["consumed"], want["used"], want["queries"], want["bad"] is not None, want["more"])
    assert handled == want["handled"]
    rows = adm.cmds[:adm.rows][list(ROW_FIELDS)].tolist()
    assert rows == [r[0] for r in want["rows"]]
    answers = [adm.gw_buf[adm.gw_off[g]:adm.gw_off[g] + 2 + int(adm.gw_buf[adm.gw_off[g]])
                          + (int(adm.gw_buf[adm.gw_off[g] + 1]) << 8)].tobytes()
               for g in range(adm.answers)]
    assert answers == [a[2] for a in want["answers"]]
    answers = [P.FrameReader(P.SERVER).feed(a)[0] for a in answers]
    return consumed, error, rows, answers, handled


def test_admission_budgets_answer_throttled_frames_without_rows():
    orders = b"".join(P.encode(m) for m in (
        P.NewOrder("a", 0, 1, 10, 6000), P.NewOrder("b", 0, 1, 10, 6000), P.Cancel("a"),
        P.Amend("a", 6001, 5), P.Subscribe("CEA"), P.Heartbeat(), P.Logout()))
    consumed, error, rows, answers, handled = _take(orders, budget=1)
    assert error is None and consumed == len(orders)
    assert [(r[6], r[7]) for r in rows] == [(Action.NEW, 0)]  # only the first
    assert [(type(a).__name__, getattr(a, "exec", None), a.reason) for a in answers] == [
        ("ExecutionReport", P.ExecKind.REJECTED, P.GatewayReason.THROTTLED),
        ("ExecutionReport", P.ExecKind.CANCEL_REJECTED, P.GatewayReason.THROTTLED),
        ("ExecutionReport", P.ExecKind.AMEND_REJECTED, P.GatewayReason.THROTTLED),
        ("AdminAck", None, P.GatewayReason.THROTTLED)]  # the heartbeat gets nothing
    assert answers[-1].command == "Subscribe" and answers[0].cl_ord_id == "b"
    assert handled == [P.encode(P.Logout())]  # Logout is always honoured
    # over the query budget only: heartbeats vanish, queries get AdminAck, orders go on
    beats = P.encode(P.Heartbeat()) * 3 + P.encode(P.BalanceRequest()) + \
        P.encode(P.NewOrder("c", 0, 2, 10, 6000))
    _, error, rows, answers, handled = _take(beats, query_budget=1)
    assert handled == [P.encode(P.Heartbeat())] and len(rows) == 1
    assert [(type(a).__name__, a.command) for a in answers] == [("AdminAck", "BalanceRequest")]
    # a Logon is always read, throttled or not (on a logged-on session: a protocol error)
    logon = P.encode(P.Logon("A001", "A001-test-token-0001"))
    _, error, rows, answers, handled = _take(P.encode(P.Cancel("a")) + logon, budget=0)
    assert handled == [logon] and rows == [] and len(answers) == 1


def test_admission_checks_order_frames_as_documented():
    raw = P.encode_raw_clid
    frames = b"".join((
        raw(12, b"ok", 0, 1, 1, 1, 1, 10, 2**63 - 1),  # clamped to HUGE_PRICE
        raw(12, b"a b", 0, 1, 1, 1, 1, 10, 6000),  # a space: MALFORMED
        raw(12, b"ab\0c", 0, 1, 1, 1, 1, 10, 6000),  # a byte after the padding: MALFORMED
        raw(12, b"u1", 7, 1, 1, 1, 1, 10, 6000),  # unknown instrument: MALFORMED, id used up
        raw(12, b"m1", 0, 1, 2, 1, 1, 10, None),  # MARKET DAY: MALFORMED
        raw(12, b"q1", 0, 1, 1, 1, 1, 0, 6000),  # INVALID_QTY
        raw(12, b"p1", 0, 1, 1, 1, 1, 10, None),  # LIMIT without a price: INVALID_PRICE
        raw(12, b"ok", 0, 2, 1, 1, 1, 10, 6000),  # the same id: the same handle
        raw(13, b"ok"), raw(13, b"nope"), raw(13, b""),
        raw(14, b"ok", 5, -1)))  # Amend price -1: INVALID_PRICE
    _, error, rows, answers, _ = _take(frames)
    assert error is None and answers == []
    got = [(r[1], r[6], r[7]) for r in rows]
    assert got == [(0, Action.NEW, 0), (-1, Action.NEW, Reason.MALFORMED),
                   (-1, Action.NEW, Reason.MALFORMED), (1, Action.NEW, Reason.MALFORMED),
                   (2, Action.NEW, Reason.MALFORMED), (3, Action.NEW, Reason.INVALID_QTY),
                   (4, Action.NEW, Reason.INVALID_PRICE), (0, Action.NEW, 0),
                   (0, Action.CANCEL, 0), (-1, Action.CANCEL, 0),
                   (-1, Action.CANCEL, Reason.MALFORMED), (0, Action.AMEND, Reason.INVALID_PRICE)]
    assert rows[0][2] == HUGE_PRICE
    # a halted instrument: NewOrder and an Amend of its order are answered, Cancel goes on
    frames = raw(12, b"h1", 0, 1, 1, 1, 1, 10, 6000)
    _, _, rows, answers, _ = _take(frames, halted=(1,))
    assert rows == [] and answers[0].reason == P.GatewayReason.INSTRUMENT_HALTED


BAD_STREAMS = {  # (bytes after a NewOrder, bad-frame code of admit)
    "length 0": (b"\0\0\x01", 1),
    "length over MAX_FRAME": ((P.MAX_FRAME + 1).to_bytes(2, "little") + b"\x01", 1),
    "unknown type": (frame_of(0x63, b"\x90"), 2),
    "server-only type": (P.encode(P.ExecutionReport(P.ExecKind.FILL, "x", 0)), 2),
    "NewOrder of the wrong size": (frame_of(12, bytes(37)), 3),
    "Cancel of the wrong size": (frame_of(13, bytes(21)), 3),
}


@pytest.mark.parametrize("name", BAD_STREAMS)
def test_admission_reports_bad_frames_where_the_frame_reader_does(name):
    data, code = BAD_STREAMS[name]
    first = P.encode(P.NewOrder("o1", 0, 1, 10, 6000))
    with pytest.raises(P.ProtocolError) as e:
        P.FrameReader(P.CLIENT).feed(first + data)
    assert len(e.value.messages) == 1
    consumed, error, rows, _, _ = _take(first + data)
    assert consumed == len(first) and len(rows) == 1 and error is not None
    # an undecodable msgpack body is not admit's to find: the handler gets it
    body = frame_of(P.MsgType.HEARTBEAT, b"\xc1")
    consumed, error, rows, _, handled = _take(first + body)
    assert error is None and handled == [body] and consumed == len(first + body)


# ---------------------------------------------------------------------- server

def test_server_survives_fuzzing(tmp_path):
    async def body(server, host, port):
        counts = await fuzz_server(host, port, "A001", "A001-test-token-0001", 3000, seed=11,
                                   connections=4,
                                   time_limit=30)
        assert server.failed is None, server.failed
        async with Client(host, port, "A002", "A002-test-token-0002") as c:
            report = await c.place("x1", 0, 1, 100, 6000, timeout=5)
        assert type(report) is P.ExecutionReport and report.exec == P.ExecKind.ACCEPTED
        # the operator's commands too (halts, prior closes, end of day, the clock)
        ops = await fuzz_server(host, port, "OPS", "OPS-test-token-00000", 1000, seed=12,
                                connections=2,
                                time_limit=20)
        assert server.failed is None, server.failed
        async with Client(host, port, "A002", "A002-test-token-0002") as c:
            report = await c.place("x2", 0, 1, 100, 6000, timeout=5)
        assert type(report) is P.ExecutionReport and report.cl_ord_id == "x2"
        assert report.exec == P.ExecKind.ACCEPTED or (
            report.exec == P.ExecKind.REJECTED and report.reason != 0)
        return counts, ops

    counts, ops = with_server(tmp_path, body)
    for c in (counts, ops):
        assert not c["timed_out"]
        assert c["logons"] > 0 and c["errors_received"] > 0 and c["pre_logon"] > 0
        assert c.get("decoder_bugs", 0) == 0
        assert not c["anomalies"], c["anomaly_examples"]
    assert counts["frames"] == 3000 and ops["frames"] == 1000
    assert counts["received_by_type"].get("ExecutionReport", 0) > 0


BAD_FRAMES = {
    "length 0": (b"\x00\x00", P.GatewayReason.PROTOCOL_ERROR),
    "length over MAX_FRAME": ((P.MAX_FRAME + 1).to_bytes(2, "little") + b"\x0a\x92",
                              P.GatewayReason.PROTOCOL_ERROR),
    "length 0xFFFF": (b"\xff\xff", P.GatewayReason.PROTOCOL_ERROR),
    "garbage type": (frame_of(0x63, b"\xc1\xc1"), P.GatewayReason.NOT_LOGGED_ON),
    "garbage Logon body": (frame_of(P.MsgType.LOGON, b"\xc1\xc1\xc1\xc1"),
                           P.GatewayReason.PROTOCOL_ERROR),
    "NewOrder before Logon": (P.encode(P.NewOrder("o1", 0, 1, 100, 6000)),
                              P.GatewayReason.NOT_LOGGED_ON),
    "Heartbeat before Logon": (P.encode(P.Heartbeat()), P.GatewayReason.NOT_LOGGED_ON),
}
AFTER_LOGON = {
    "length 0": b"\x00\x00",
    "length over MAX_FRAME": (P.MAX_FRAME + 1).to_bytes(2, "little"),
    "garbage type": frame_of(0x63, b"\xc1\xc1"),
    "server-only type": P.encode(P.ExecutionReport(P.ExecKind.FILL, "x", 0)),
    "NewOrder of the wrong size": frame_of(P.MsgType.NEW_ORDER, bytes(40)),
    "garbage Heartbeat body": frame_of(P.MsgType.HEARTBEAT, b"\xc1\xc1"),
    "second Logon": P.encode(P.Logon("A002", "A002-test-token-0002")),
}


def test_bad_frames_get_error_and_close(tmp_path):
    async def body(server, host, port):
        results = {}
        for name, (data, _) in BAD_FRAMES.items():
            results[name] = await talk(host, port, data)
        # the same after a good logon: the session ends too
        logon = P.encode(P.Logon("A002", "A002-test-token-0002"))
        for name, data in AFTER_LOGON.items():
            results["logged on, then " + name] = await talk(host, port, logon + data)
        assert server.failed is None
        async with Client(host, port, "A002", "A002-test-token-0002") as c:
            report = await c.place("after", 0, 1, 100, 6000, timeout=5)
        assert report.exec == P.ExecKind.ACCEPTED
        return results

    results = with_server(tmp_path, body)
    for name, (msgs, end) in results.items():
        reason = BAD_FRAMES[name][1] if name in BAD_FRAMES else P.GatewayReason.PROTOCOL_ERROR
        assert end == "eof", f"{name}: the server did not close the connection ({end})"
        assert msgs and type(msgs[-1]) is P.Error, f"{name}: {msgs}"
        assert msgs[-1].reason == reason, f"{name}: {msgs[-1]}"
        if name.startswith("logged on"):
            assert [type(m) for m in msgs] == [P.LogonAck, P.Error], f"{name}: {msgs}"
        else:
            assert len(msgs) == 1, f"{name}: {msgs}"


def test_server_answers_deeply_nested_frame_with_error(tmp_path):
    async def body(server, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        frames = P.FrameReader(P.SERVER)
        writer.write(P.encode(P.Logon("A001", "A001-test-token-0001")))
        msgs = []
        while not msgs:
            msgs += frames.feed(await asyncio.wait_for(reader.read(1 << 16), 5))
        writer.write(P.encode(P.NewOrder("d1", 0, 1, 1, 6000)) + _deep_heartbeat())
        try:
            while chunk := await asyncio.wait_for(reader.read(1 << 16), 5):
                msgs += frames.feed(chunk)
        finally:
            writer.close()
            await writer.wait_closed()
        assert server.failed is None
        return msgs

    msgs = with_server(tmp_path, body)
    assert [type(m) for m in msgs] == [P.LogonAck, P.ExecutionReport, P.Error], msgs
    assert msgs[1].cl_ord_id == "d1" and msgs[2].reason == P.GatewayReason.PROTOCOL_ERROR


def test_replies_fit_in_a_frame(tmp_path):
    name = "X" * (P.MAX_FRAME - 16)  # the Subscribe frame itself fits
    bound = "Y" * 32  # an instrument name at its bound: refused, and echoed

    async def body(server, host, port):
        assert len(P.encode(P.Subscribe(name))) - 2 <= P.MAX_FRAME
        replies = []
        for sub in (bound, name):
            replies.append(await talk(host, port, P.encode(P.Logon("A001", "A001-test-token-0001"))
                                      + P.encode(P.Subscribe(sub)) + P.encode(P.Logout())))
        return replies

    (ok, end1), (bad, end2) = with_server(tmp_path, body)
    assert end1 == end2 == "eof"
    # a name at its bound gets an AdminAck that echoes it, well within a frame
    assert [type(m) for m in ok] == [P.LogonAck, P.AdminAck] and bound in ok[1].text
    assert len(P.encode(ok[1])) - 2 <= P.MAX_FRAME
    # a name over 32 characters is refused at the edge, before any reply echoes it
    assert [type(m) for m in bad] == [P.LogonAck, P.Error]
    assert len(bad[1].text) < 200


def test_mass_cancel_with_any_side_keeps_the_server_up(tmp_path):
    """``MassCancel.side`` is any msgpack int; one over int64 (2**63 .. 2**64-1) once
    stopped the whole server (OverflowError calling the compiled ``open_orders``). It
    matches no order and is answered like any other side."""

    async def body(server, host, port):
        replies = {}
        for side in (2**63, 2**64 - 1, -2**63, 7):
            msgs, end = await talk(host, port, P.encode(P.Logon("A001", "A001-test-token-0001"))
                                   + P.encode(P.MassCancel("", side)) + P.encode(P.Logout()))
            replies[side] = (msgs, end)
            if server.failed is not None:
                break
        return replies, server.failed

    replies, failed = with_server(tmp_path, body)
    assert failed is None, f"the server stopped: {failed!r}"
    for side, (msgs, end) in replies.items():
        assert end == "eof", side
        assert [type(m) for m in msgs] == [P.LogonAck, P.AdminAck], (side, msgs)
        assert msgs[1].ok and msgs[1].text == "0 orders cancelled", (side, msgs)
