"""FIX benchmark (``cea bench fix``): one ``cea serve --fix-port`` (fsync on), measured
through its FIX port and its native port in the same run, from this process on loopback.

- ``fix_orders_per_s``: two FIX sessions (buyer A001, seller A002; prices as the native
  benchmark's, about a third of the orders trade) each pipeline ``orders / 2``
  NewOrderSingles, encoded before the run and written as fast as the server takes them;
  figure = orders / (first byte sent -> last acknowledgement, an ExecutionReport with
  ExecType 0 or 8). ``native_orders_per_s``: ``bench.gateway.pipelined_throughput`` with the
  same count, against the same server, just before.
- ``fix_rtt_*``: open loop at ``rate`` orders/s (default 5,000) for ``seconds`` on one FIX
  session (resting buys): scheduled send time -> its ExecutionReport received, µs, in an
  HdrHistogram; the client busy-polls its socket. ``native_rtt_*``: the same with
  ``bench.gateway.open_loop_latency`` on the native port, just before.
- ``ratio_*``: FIX / native (throughput: native / FIX), against the target of 3.

The FIX path translates each message in Python (``gateway.fix``), the native one admits
and reports in compiled code: the ratios say what that costs.
"""

from __future__ import annotations

import re
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from gateway.fix import fix_time
from gateway.fixcodec import FixMessage, FixReader, encode

from .pgserver import free_port
from .gateway import HOST, ACCOUNTS_CSV, SESSIONS, TOKENS_CSV, open_loop_latency, \
    pipelined_throughput

_ACK = re.compile(rb"\x01150=[08]\x01")


def _fix_logon(port: int, account: str, token: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(encode("A", [(98, 0), (108, 30), (554, token), (141, "Y")], account, "CEA",
                        1, fix_time()))
    got = b""
    while b"\x0110=" not in got:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError(f"FIX logon of {account} refused or closed")
        got += data
    if b"\x0135=A\x01" not in got:
        raise RuntimeError(f"FIX logon of {account}: {got!r}")
    sock.setblocking(False)
    return sock


def _orders(account: str, side: int, n: int, first_seq: int, tag: str) -> bytes:
    """``n`` NewOrderSingles (limit, DAY), numbered from ``first_seq``, as one blob."""
    now = fix_time()
    base = 5990 if side == 1 else 5995  # fen: as the native benchmark's prices
    out = []
    for i in range(n):
        price = base + i % 20
        out.append(encode("D", [(11, f"{tag}{i}"), (55, "CEA"), (54, side), (60, now),
                                (38, 100), (40, 2), (44, f"{price // 100}.{price % 100:02d}"),
                                (59, 0)], account, "CEA", first_seq + i, now))
    return b"".join(out)


def fix_pipelined(port: int, orders: int, timeout: float = 120.0) -> dict:
    half = orders // 2
    sessions = []
    for account, token, side in SESSIONS:
        sock = _fix_logon(port, account, token)
        blob = memoryview(_orders(account, side, half, 2, "p"))
        sessions.append([sock, blob, 0, 0, b""])  # sock, blob, sent, acks, tail
    t0 = time.perf_counter()
    end = t0 + timeout
    while any(s[3] < half for s in sessions):
        if time.perf_counter() > end:
            raise RuntimeError("FIX pipelined run timed out")
        for s in sessions:
            sock, blob, sent = s[0], s[1], s[2]
            if sent < len(blob):
                try:
                    s[2] += sock.send(blob[sent:sent + (1 << 17)])
                except BlockingIOError:
                    pass
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("the server closed a FIX session")
            # an acknowledgement's 8 marker bytes may straddle two reads: the last 7 bytes
            # of one go with the next (7 bytes can never hold a whole marker twice)
            chunk = s[4] + data
            s[3] += len(_ACK.findall(chunk))
            s[4] = chunk[-7:]
    seconds = time.perf_counter() - t0
    for s in sessions:
        s[0].close()
    return {"orders": 2 * half, "seconds": round(seconds, 3),
            "orders_per_s": int(2 * half / seconds)}


def fix_open_loop(port: int, rate: int, seconds: float) -> dict:
    """Resting buys at ``rate``/s for ``seconds`` on one FIX session; round trips (µs)."""
    from hdrh.histogram import HdrHistogram

    n = int(rate * seconds)
    sock = _fix_logon(port, "A001", "A001-test-token-0001")
    now = fix_time()
    msgs = [encode("D", [(11, f"r{i}"), (55, "CEA"), (54, 1), (60, now), (38, 10), (40, 2),
                         (44, "55.00"), (59, 0)], "A001", "CEA", 2 + i, now) for i in range(n)]
    reads: list[tuple[bytes, float]] = []
    start = time.perf_counter() + 0.05
    due = start + np.arange(n) / rate
    i = 0
    deadline = start + seconds + 10
    acks = 0
    done_at = None  # every order answered (or so the count says): a little longer
    while time.perf_counter() < deadline:
        if i >= n and acks >= n:
            done_at = done_at or time.perf_counter()
            if time.perf_counter() - done_at > 0.1:
                break
        t = time.perf_counter()
        while i < n and due[i] <= t:
            sock.setblocking(True)
            sock.sendall(msgs[i])
            sock.setblocking(False)
            i += 1
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            continue
        if not data:
            break
        reads.append((data, time.perf_counter()))
        acks += data.count(b"\x01150=0\x01") + data.count(b"\x01150=8\x01")
    sock.close()
    hist = HdrHistogram(1, 60_000_000, 3)
    reader = FixReader()
    got = 0
    for data, t in reads:  # each report's time: the read that completed it
        for msg in reader.feed(data):
            clid = msg.get(11, "") if isinstance(msg, FixMessage) else ""
            if clid[:1] == "r" and msg.msg_type == "8" and msg.get(150) in ("0", "8") \
                    and clid[1:].isdigit() and int(clid[1:]) < n:
                hist.record_value(max(1, int((t - due[int(clid[1:])]) * 1e6)))
                got += 1
    return {"orders": n, "answered": got, "rate": rate, "seconds": seconds,
            "p50_us": hist.get_value_at_percentile(50), "p90_us":
            hist.get_value_at_percentile(90), "p99_us": hist.get_value_at_percentile(99),
            "max_us": hist.get_max_value()}


def run_fix_benchmark(orders: int = 20_000, rate: int = 5_000, seconds: float = 3.0,
                      json_path: Path | None = None, echo=print) -> dict:
    """The figures of the module's docstring, in one run; printed through ``echo`` and
    written to ``json_path``."""
    import json

    from sim.loadtest import local_server

    out: dict = {"fsync": "on", "orders": orders, "rate": rate, "seconds": seconds}
    fix_port = free_port()
    with tempfile.TemporaryDirectory(prefix="cea-bench-fix-") as root:
        with local_server(Path(root), ACCOUNTS_CSV, TOKENS_CSV, fsync=True,
                          extra=("--fix-port", str(fix_port))) as port:
            # the round trips first, on a quiet server (the pipelined runs leave the ledger
            # process settling their trades for a while), native then FIX back to back
            native_rtt = open_loop_latency(port, rate, seconds)
            echo(f"native round trip at {rate:,}/s: p50 {native_rtt['p50_us']} us, p99 "
                 f"{native_rtt['p99_us']} us")
            fix_rtt = fix_open_loop(fix_port, rate, seconds)
            echo(f"FIX round trip at {rate:,}/s: p50 {fix_rtt['p50_us']} us, p99 "
                 f"{fix_rtt['p99_us']} us ({fix_rtt['answered']:,} of {fix_rtt['orders']:,} "
                 "answered)")
            native = pipelined_throughput(port, orders)
            echo(f"native pipelined, fsync on: {native['orders_per_s']:,} orders/s")
            fix = fix_pipelined(fix_port, orders)
            echo(f"FIX pipelined, fsync on: {fix['orders_per_s']:,} orders/s "
                 f"({fix['orders']:,} orders in {fix['seconds']} s)")
    out.update(native_orders_per_s=native["orders_per_s"], fix_orders_per_s=fix["orders_per_s"],
               native_rtt_p50_us=native_rtt["p50_us"], native_rtt_p99_us=native_rtt["p99_us"],
               fix_rtt_p50_us=fix_rtt["p50_us"], fix_rtt_p99_us=fix_rtt["p99_us"],
               fix_rtt=fix_rtt)
    out["ratio_throughput"] = round(native["orders_per_s"] / max(fix["orders_per_s"], 1), 2)
    out["ratio_rtt_p50"] = round(fix_rtt["p50_us"] / max(native_rtt["p50_us"], 1), 2)
    out["ratio_rtt_p99"] = round(fix_rtt["p99_us"] / max(native_rtt["p99_us"], 1), 2)
    for key, what in (("ratio_throughput", "throughput, native/FIX"),
                      ("ratio_rtt_p50", "round trip p50, FIX/native"),
                      ("ratio_rtt_p99", "round trip p99, FIX/native")):
        verdict = "within" if out[key] <= 3 else "NOT within"
        echo(f"{what}: {out[key]} ({verdict} the target of 3)")
    if json_path is not None:
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")
    return out


__all__ = ["fix_open_loop", "fix_pipelined", "run_fix_benchmark"]
