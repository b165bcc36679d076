"""Fuzzing the wire protocol (``gateway.fuzz``): the decoder and a live server.

- ``FrameReader(CLIENT_MESSAGES)`` fed random, mutated and valid frames in random chunks
  returns client messages or raises ``ProtocolError``, nothing else; valid frames decode to
  exactly what was encoded. ``CEA_FUZZ_FRAMES`` sets the count (default 200_000 to keep CI
  fast; the full run is ``python -m gateway.fuzz --frames 1000000``);
- a server fuzzed over TCP by several connections keeps running and keeps serving a fresh
  client; every outcome matches what the bytes sent call for;
- specific bad frames (length 0, length over MAX_FRAME, a garbage body, an order before
  Logon) are each answered with ``Error`` and the connection closed by the server;
- Regression tests for the bugs the fuzzer found: a deeply nested field escaping the decoder
  as RecursionError, and replies echoing client strings beyond MAX_FRAME.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from gateway import protocol as P
from gateway.client import Client
from gateway.fuzz import CLIENT_TYPES, FuzzFailure, fuzz_decoder, fuzz_server

from .support import config, run_with_server

FRAMES = int(os.environ.get("CEA_FUZZ_FRAMES", "200000"))


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _deep_heartbeat(depth: int = 2000) -> bytes:
    """Heartbeat [1, 0, [[[...]]]]: an extra trailing field nested ``depth`` levels."""
    return _frame(b"\x93\x01\x00" + b"\x91" * depth + b"\xc0")


def with_server(tmp_path, body):
    """Run ``await body(server, host, port)`` against a fresh in-process server."""
    return run_with_server(config(tmp_path), body)


async def talk(host, port, data: bytes, timeout: float = 5.0):
    """Send ``data``; read until the server closes. Returns (messages, how it ended)."""
    reader, writer = await asyncio.open_connection(host, port)
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
            await writer.wait_closed()
        except ConnectionError:
            pass
    return P.FrameReader(P.SERVER_MESSAGES).feed(out), end


# ---------------------------------------------------------------------- decoder

def test_decoder_fuzz():
    t0 = time.perf_counter()
    counts = fuzz_decoder(FRAMES, seed=20240304)
    seconds = time.perf_counter() - t0
    assert counts["failures"] == [] and counts["unexpected"] == 0
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
    assert len(frame) - 4 <= P.MAX_FRAME
    with pytest.raises(P.ProtocolError):
        P.FrameReader(P.CLIENT_MESSAGES).feed(P.encode(P.Heartbeat()) + frame)


# ---------------------------------------------------------------------- server

def test_server_survives_fuzzing(tmp_path):
    async def body(server, host, port):
        counts = await fuzz_server(host, port, "A001", "t1", 3000, seed=11, connections=4,
                                   time_limit=30)
        assert server.failed is None
        async with Client(host, port, "A002", "t2") as c:
            report = await c.place("x1", "CEA", 1, 100, 6000)
        assert type(report) is P.ExecutionReport and report.exec == P.ExecKind.ACCEPTED
        # the operator's commands too (halts, prior closes, end of day)
        ops = await fuzz_server(host, port, "OPS", "ops", 1000, seed=12, connections=2,
                                time_limit=20)
        assert server.failed is None
        async with Client(host, port, "A002", "t2") as c:
            report = await c.place("x2", "CEA", 1, 100, 6000)
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
    "length 0": (b"\0\0\0\0", P.GatewayReason.PROTOCOL_ERROR),
    "length over MAX_FRAME": ((P.MAX_FRAME + 1).to_bytes(4, "big") + b"\x92\x01",
                              P.GatewayReason.PROTOCOL_ERROR),
    "length 2**32-1": (b"\xff\xff\xff\xff", P.GatewayReason.PROTOCOL_ERROR),
    "garbage body": (_frame(b"\xc1\xc1\xc1\xc1"), P.GatewayReason.PROTOCOL_ERROR),
    "unknown tag": (_frame(b"\x91\x63"), P.GatewayReason.PROTOCOL_ERROR),
    "NewOrder before Logon": (P.encode(P.NewOrder("o1", "CEA", 1, 100, 6000)),
                              P.GatewayReason.NOT_LOGGED_ON),
}


def test_bad_frames_get_error_and_close(tmp_path):
    async def body(server, host, port):
        results = {}
        for name, (data, _) in BAD_FRAMES.items():
            results[name] = await talk(host, port, data)
        # the same after a good logon: the session ends too
        logon = P.encode(P.Logon("A002", "t2"))
        results["logged on, then length 0"] = await talk(host, port, logon + b"\0\0\0\0")
        results["logged on, then garbage"] = await talk(
            host, port, logon + _frame(b"\xc1\xc1"))
        assert server.failed is None
        async with Client(host, port, "A002", "t2") as c:
            report = await c.place("after", "CEA", 1, 100, 6000)
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
        frames = P.FrameReader(P.SERVER_MESSAGES)
        writer.write(P.encode(P.Logon("A001", "t1")))
        msgs = []
        while not msgs:
            msgs += frames.feed(await asyncio.wait_for(reader.read(1 << 16), 5))
        writer.write(P.encode(P.NewOrder("d1", "CEA", 1, 1, 6000)) + _deep_heartbeat())
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


def test_replies_fit_in_a_frame(tmp_path):
    name = "X" * (P.MAX_FRAME - 16)  # the Subscribe frame itself fits

    async def body(server, host, port):
        assert len(P.encode(P.Subscribe(name))) - 4 <= P.MAX_FRAME
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(P.encode(P.Logon("A001", "t1")) + P.encode(P.Subscribe(name))
                     + P.encode(P.Logout()))
        out = b""
        while chunk := await asyncio.wait_for(reader.read(1 << 16), 5):
            out += chunk
        writer.close()
        await writer.wait_closed()
        return out

    out = with_server(tmp_path, body)
    msgs = P.FrameReader(P.SERVER_MESSAGES).feed(out)
    # an instrument name over 32 characters is refused at the edge, before any reply echoes it
    assert [type(m) for m in msgs] == [P.LogonAck, P.Error]
