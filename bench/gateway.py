"""Gateway benchmark: ``cea serve`` over loopback, from a separate (this) process.

- ``orders_per_s``: two sessions (a buyer and a seller, prices crossing now and then) pipeline
  ``orders`` NewOrders as fast as the server takes them; the figure is orders divided by the
  time from the first byte sent to the last first-report (ACCEPTED or REJECTED) received.
  Journal fsync on: every report left the server after its batch was fsync'd.
- ``rtt_*``: open loop at ``rate`` orders/s offered for ``seconds`` on one session (sends at
  their scheduled times whatever the replies, so queueing shows up as latency: no coordinated
  omission). Round trip = first report received minus the order's scheduled send time, in an
  HdrHistogram (µs). Measured with fsync on and again on a fresh server with ``--fsync off``.

The client is one thread with ``select`` timeouts in µs (asyncio's timers are whole ms).
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from gateway import protocol as P
from sim.loadtest import local_server

_TOKENS = "account,token\nA001,t1\nA002,t2\nOPS,ops\n"
_ACCOUNTS = ("account,type,cash,CEA\nA001,COVERED_ENTITY,100000000000.00,0\n"
             "A002,COVERED_ENTITY,0.00,1000000000\n")


@contextmanager
def running_server(fsync: bool, data_root: Path):
    """``cea serve`` in a subprocess on a free port; yields (port, None)."""
    with local_server(data_root, _ACCOUNTS, _TOKENS, fsync=fsync) as port:
        yield port, None


# ---------------------------------------------------------------- pipelined throughput

class _Counter(asyncio.Protocol):
    def __init__(self, expected: int, done: asyncio.Future):
        self.reader = P.FrameReader(P.SERVER_MESSAGES, max_frame=1 << 20)
        self.acks = 0
        self.expected = expected
        self.done = done
        self.logged_on = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        for m in self.reader.feed(data):
            kind = type(m)
            if kind is P.ExecutionReport:
                if m.exec <= 2:  # ACCEPTED, REJECTED: the order's acknowledgement
                    self.acks += 1
            elif kind is P.LogonAck:
                self.logged_on.set()
        if self.acks >= self.expected and not self.done.done():
            self.done.set_result(time.perf_counter())


async def _pipelined(port: int, orders: int) -> dict:
    loop = asyncio.get_running_loop()
    sessions = []
    half = orders // 2
    for account, token, side in (("A001", "t1", 1), ("A002", "t2", 2)):
        done = loop.create_future()
        transport, proto = await loop.create_connection(lambda: _Counter(half, done),
                                                        "127.0.0.1", port)
        transport.write(P.encode(P.Logon(account, token, False, 60_000)))
        await proto.logged_on.wait()
        # buys 59.90..60.09 and sells 59.95..60.14: about a third of orders trade
        frames = [P.encode(P.NewOrder(f"{account}-{i}", "CEA", side, 1 + i % 50,
                                      5990 + (i * 7) % 20 + (5 if side == 2 else 0)))
                  for i in range(half)]
        sessions.append((transport, proto, done, frames))
    chunk = 2000
    start = time.perf_counter()
    for k in range(0, half, chunk):
        for transport, _, _, frames in sessions:
            transport.write(b"".join(frames[k:k + chunk]))
        await asyncio.sleep(0)
    ends = [await asyncio.wait_for(done, 600) for _, _, done, _ in sessions]
    elapsed = max(ends) - start
    for transport, *_ in sessions:
        transport.close()
    return {"orders": 2 * half, "seconds": round(elapsed, 3),
            "orders_per_s": round(2 * half / elapsed)}


def pipelined_throughput(port: int, orders: int) -> dict:
    import uvloop

    return uvloop.run(_pipelined(port, orders))


# ---------------------------------------------------------------- open-loop latency

def open_loop_latency(port: int, rate: int, seconds: float, account: str = "A001",
                      token: str = "t1") -> dict:
    """Send ``rate`` orders/s at scheduled times for ``seconds``; histogram of round trips."""
    from hdrh.histogram import HdrHistogram

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = P.FrameReader(P.SERVER_MESSAGES, max_frame=1 << 20)
    sock.sendall(P.encode(P.Logon(account, token, False, 60_000)))
    while not any(isinstance(m, P.LogonAck) for m in reader.feed(sock.recv(65536))):
        pass
    sock.setblocking(False)
    n = int(rate * seconds)
    # resting buys far from the sells: one report per order, the book deepening
    frames = [P.encode(P.NewOrder(str(i), "CEA", 1, 1, 5900 + i % 50)) for i in range(n)]
    hist = HdrHistogram(1, 60_000_000, 3)
    interval = 1.0 / rate
    start = time.perf_counter() + 0.01
    sent = received = 0
    deadline = start + seconds + 10
    while received < n and time.perf_counter() < deadline:
        now = time.perf_counter()
        due = min(n, int((now - start) / interval) + 1) if now >= start else 0
        if due > sent:
            sock.sendall(b"".join(frames[sent:due]))
            sent = due
        wait = max(0.0, start + sent * interval - time.perf_counter()) if sent < n else 0.05
        readable, _, _ = select.select([sock], [], [], wait)
        if readable:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            t = time.perf_counter()
            for m in reader.feed(data):
                if type(m) is P.ExecutionReport and m.exec <= 2:
                    scheduled = start + int(m.cl_ord_id) * interval
                    hist.record_value(max(1, int((t - scheduled) * 1e6)))
                    received += 1
    sock.close()
    elapsed = time.perf_counter() - start
    return {
        "offered_per_s": rate, "orders": n, "received": received,
        "achieved_per_s": round(received / elapsed),
        "p50_us": hist.get_value_at_percentile(50), "p90_us": hist.get_value_at_percentile(90),
        "p99_us": hist.get_value_at_percentile(99),
        "p999_us": hist.get_value_at_percentile(99.9), "max_us": hist.get_max_value(),
    }


def run_gateway_benchmark(orders: int = 200_000, rate: int = 10_000, seconds: float = 5.0,
                          json_path: Path | None = None, echo=print) -> dict:
    out: dict = {"fsync": "on"}
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        with running_server(True, root) as (port, _):
            tp = pipelined_throughput(port, orders)
        out["orders_per_s"] = tp["orders_per_s"]
        out["pipelined"] = tp
        echo(f"pipelined, fsync on: {tp['orders']:,} orders in {tp['seconds']} s = "
             f"{tp['orders_per_s']:,} orders/s acknowledged")
        for fsync in (True, False):
            with running_server(fsync, root) as (port, _):
                lat = open_loop_latency(port, rate, seconds)
            key = "rtt" if fsync else "rtt_fsync_off"
            out[key] = lat
            echo(f"open loop {rate:,}/s for {seconds} s, fsync {'on' if fsync else 'off'}: "
                 f"p50 {lat['p50_us']} us, p90 {lat['p90_us']}, p99 {lat['p99_us']}, "
                 f"p99.9 {lat['p999_us']}, max {lat['max_us']} "
                 f"({lat['received']:,}/{lat['orders']:,} answered)")
    out["rtt_p50_us"] = out["rtt"]["p50_us"]
    out["rtt_p99_us"] = out["rtt"]["p99_us"]
    out["rtt_offered_per_s"] = rate
    out["rtt_fsync_off_p50_us"] = out["rtt_fsync_off"]["p50_us"]
    out["rtt_fsync_off_p99_us"] = out["rtt_fsync_off"]["p99_us"]
    if json_path is not None:
        Path(json_path).write_text(json.dumps(out, indent=2) + "\n")
        echo(f"wrote {json_path}")
    return out
