"""The server under abusive loads, as an attacker would try them: a query flood, a replay
flood, an order flood past the rate limit, too many connections, a peer that never reads,
and one session flooding valid orders. Each load runs at a scale of a few seconds here;
what is asserted is what the *other* sessions see (every answer counted), the abuser's own
answers (throttled, counted), the server's memory (RSS of the server process, not its ledger
child) and its connections, never a latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import re
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.codes import Side, TimeInForce
from gateway import protocol as P
from gateway.client import Client, ClientError
from gateway.protocol import ExecKind, GatewayReason
from gateway.wire import split_frames

from ..procs import kill_group, popen
from .support import config, run_with_server, until

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20
RSS_BOUND = 128 * MB  # the server's memory may grow by at most this under any load
THROTTLED = int(GatewayReason.THROTTLED)


# ---------------------------------------------------------------- counting replies

def _throttled_template(command: str) -> np.ndarray:
    return np.frombuffer(P.encode(P.AdminAck(command, False, THROTTLED)), np.uint8)


ACK_TEMPLATES = {name: _throttled_template(name)
                 for name in ("BalanceRequest", "Subscribe", "MdReplayRequest")}


class Tally:
    """Counts the server's frames by type with NumPy (no Python per message): reports by
    ``exec`` kind and how many were THROTTLED, AdminAcks that are the throttled answer of a
    query, and keeps the rare others (LogonAck, Error, other AdminAcks) decoded."""

    def __init__(self, items: bool = False):
        self.pending = b""
        # with ``items``: the stream as a list of answers, in order: ["run", first, last] for
        # market data frames with consecutive sequence numbers (a replay), ("snapshot", seq),
        # ("throttled", command), or the message itself
        self.items: list | None = [] if items else None
        self._last_md = False
        self._last_seq = -2
        self.types = np.zeros(256, np.int64)
        self.execs = np.zeros(16, np.int64)
        self.throttled_reports = 0
        self.reasons = np.zeros(256, np.int64)  # reports by reason code
        self.throttled_acks = dict.fromkeys(ACK_TEMPLATES, 0)
        self.messages: list = []  # the rare kinds, decoded
        self.bytes = 0
        self._offsets = np.zeros(1 << 16, np.int64)
        self._decoder = P.FrameReader(P.SERVER)

    RARE = (P.MsgType.ERROR, P.MsgType.LOGON_ACK, P.MsgType.LOGON_REJECT)

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        buf = self.pending + data if self.pending else bytes(data)
        raw = np.frombuffer(buf, np.uint8)
        pos, end = 0, len(buf)
        while True:
            n, stop, bad = split_frames(raw, pos, end, P.MAX_SERVER_FRAME, self._offsets)
            if bad >= 0:
                raise P.ProtocolError(f"frame length 0 at offset {bad}")
            if n == 0:
                break
            off = self._offsets[:n]
            kinds = raw[off + 2]
            self.types += np.bincount(kinds, minlength=256)
            reports = off[kinds == P.MsgType.EXECUTION_REPORT]
            if len(reports):
                self.execs += np.bincount(raw[reports + 3], minlength=16)[:16]
                self.throttled_reports += int(np.count_nonzero(raw[reports + 4] == THROTTLED))
                self.reasons += np.bincount(raw[reports + 4], minlength=256)
            acks = off[kinds == P.MsgType.ADMIN_ACK]
            if len(acks):
                lengths = raw[acks].astype(np.int64) | raw[acks + 1].astype(np.int64) << 8
                rest = np.ones(len(acks), bool)
                for name, tpl in ACK_TEMPLATES.items():
                    rows = raw.take(acks[:, None] + np.arange(len(tpl)), mode="clip")
                    match = (lengths == len(tpl) - 2) & (rows == tpl).all(axis=1)
                    self.throttled_acks[name] += int(np.count_nonzero(match))
                    rest &= ~match
                for p in acks[rest].tolist():  # rare: keep them decoded
                    self.messages.append(self._decoder.decode_frame(buf, p))
            for p in off[np.isin(kinds, self.RARE)].tolist():
                self.messages.append(self._decoder.decode_frame(buf, p))
            if self.items is not None:
                self._itemize(raw, buf, off, kinds)
            pos = int(stop)
            if n < len(self._offsets):
                break
        self.pending = buf[pos:]

    def _itemize(self, raw, buf, off, kinds) -> None:
        is_md = (kinds >= P.MsgType.MD_TRADE) & (kinds <= P.MsgType.MD_DAY_SUMMARY)
        at = off + np.where(kinds == P.MsgType.MD_DEPTH, 8, 7)  # the u64 seq of each layout
        seqs = raw.take(at[:, None] + np.arange(8), mode="clip").copy().view("<u8")[:, 0]
        seqs = np.where(is_md, seqs, 0).astype(np.int64)
        prev_md = np.concatenate(([self._last_md], is_md[:-1]))
        prev_seq = np.concatenate(([self._last_seq], seqs[:-1]))
        starts = np.flatnonzero(~is_md | ~prev_md | (seqs != prev_seq + 1))
        n = len(off)
        first = int(starts[0]) if len(starts) else n
        if first > 0:  # the run the last chunk ended in goes on
            self.items[-1][2] = int(seqs[first - 1])
        ends = np.append(starts[1:], n) - 1
        for s, e in zip(starts.tolist(), ends.tolist()):
            if is_md[s]:
                self.items.append(["run", int(seqs[s]), int(seqs[e])])
                continue
            msg = self._decoder.decode_frame(buf, int(off[s]))
            if isinstance(msg, P.MdSnapshot):
                self.items.append(("snapshot", msg.seq))
            elif isinstance(msg, P.AdminAck) and msg.reason == THROTTLED and not msg.ok:
                self.items.append(("throttled", msg.command))
            else:
                self.items.append(msg)
        self._last_md = bool(is_md[-1])
        self._last_seq = int(seqs[-1])

    def count(self, kind: P.MsgType) -> int:
        return int(self.types[kind])

    def executions(self, kind: ExecKind) -> int:
        return int(self.execs[kind])

    @property
    def throttled(self) -> int:
        return sum(self.throttled_acks.values())

    def errors(self) -> list:
        return [m for m in self.messages if isinstance(m, P.Error)]


# ---------------------------------------------------------------- a raw abusive session

class Abuser:
    """A logged-on session on a plain blocking socket: sends what it is given as fast as
    the server takes it and reads (or not) the replies in a thread, counting them in a
    ``Tally``. Every wait is bounded."""

    def __init__(self, host: str, port: int, account: str, token: str, *, rcvbuf: int = 0,
                 heartbeat_ms: int = 60_000, items: bool = False):
        sock = socket.socket()
        if rcvbuf:  # before connecting, so the window is sized by it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock = sock
        self.tally = Tally(items)
        self.sent = 0  # bytes the kernel took
        self.closed_by_server = False
        self._stop_reading = threading.Event()
        self._reader = None
        try:
            sock.settimeout(10)
            sock.connect((host, port))
            sock.sendall(P.encode(P.Logon(account, token, True, heartbeat_ms)))
            deadline = time.monotonic() + 10
            while not self.tally.messages:
                if time.monotonic() > deadline:
                    raise AssertionError("no answer to the abuser's logon")
                data = sock.recv(1 << 16)
                if not data:
                    raise AssertionError("the server closed the abuser's connection at logon")
                self.tally.feed(data)
            assert isinstance(self.tally.messages[0], P.LogonAck), self.tally.messages
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise

    # -------------------------------------------------------------- reading

    def start_reading(self, chunk: int = 1 << 18, pause: float = 0.0) -> None:
        """Read (and count) in a thread until EOF or ``stop_reading``; ``pause`` seconds
        between reads makes a slow reader."""
        def run():
            while not self._stop_reading.is_set():
                try:
                    ready, _, _ = select.select([self.sock], [], [], 0.05)
                    if not ready:
                        continue
                    data = self.sock.recv(chunk)
                except BlockingIOError:
                    continue
                except (OSError, ValueError):  # reset by the server, or closed here
                    self.closed_by_server = not self._stop_reading.is_set()
                    return
                if not data:
                    self.closed_by_server = True
                    return
                self.tally.feed(data)
                if pause:
                    time.sleep(pause)

        self._reader = threading.Thread(target=run, daemon=True)
        self._reader.start()

    def stop_reading(self) -> None:
        self._stop_reading.set()
        if self._reader is not None:
            self._reader.join(5)
            assert not self._reader.is_alive()

    # -------------------------------------------------------------- sending

    def send(self, data, *, until: float, stop: threading.Event | None = None,
             stall: float | None = None, repeat: int = 1) -> int:
        """Send ``data`` (bytes-like) ``repeat`` times as fast as the server takes it; stop
        at the deadline, when ``stop`` is set, or once the server has taken nothing for
        ``stall`` seconds. Returns the bytes sent (also added to ``self.sent``)."""
        view = memoryview(data).cast("B")
        pos = 0
        total = len(view) * repeat
        last = time.monotonic()
        while pos < total:
            now = time.monotonic()
            if now > until or (stop is not None and stop.is_set()) or (
                    stall is not None and now - last > stall):
                break
            try:
                _, writable, _ = select.select([], [self.sock], [], 0.05)
                if not writable:
                    continue
                at = pos % len(view)
                n = self.sock.send(view[at:at + (1 << 20)])
            except BlockingIOError:
                continue
            except (OSError, ValueError):  # reset by the server, or closed here
                self.closed_by_server = self.sock.fileno() >= 0
                break
            pos += n
            self.sent += n
            last = time.monotonic()
        return pos

    def close(self) -> None:
        self._stop_reading.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._reader is not None:
            self._reader.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def frames_in(sent: int, unit: list[int]) -> int:
    """Complete frames in the first ``sent`` bytes of a stream that repeats frames of the
    sizes ``unit``."""
    size = sum(unit)
    whole, rest = divmod(sent, size)
    n = whole * len(unit)
    for s in unit:
        if rest < s:
            break
        rest -= s
        n += 1
    return n


# ---------------------------------------------------------------- a server process

class ServerProcess:
    """``cea serve`` in its own process group on a free loopback port (demo accounts, sim
    clock at 2024-03-04 09:30), its output in files; stopped by SIGINT (which must succeed:
    the server is healthy) or, on any failure, the whole group killed."""

    def __init__(self, tmp_path: Path, *args: str):
        self.dir = tmp_path
        self.data = tmp_path / "data"
        self.args = ["--start", "2024-03-04",
                     "--credentials-out", str(tmp_path / "credentials.csv"), *args]

    def __enter__(self) -> "ServerProcess":
        self.out = open(self.dir / "serve.out", "w+")
        self.err = open(self.dir / "serve.err", "w+")
        self.proc = popen(
            [sys.executable, "-m", "cea", "serve", "--data-dir", str(self.data), "--port", "0",
             *self.args], cwd=ROOT, stdout=self.out, stderr=self.err)
        try:
            deadline = time.monotonic() + 60
            while True:
                m = re.search(r"listening on [\d.]+:(\d+)", (self.dir / "serve.out").read_text())
                if m:
                    self.port = int(m.group(1))
                    break
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the server did not start: "
                                         + (self.dir / "serve.err").read_text()[-2000:])
                time.sleep(0.05)
            self.tokens = dict(csv.reader((self.dir / "credentials.csv").read_text()
                                          .splitlines()))
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None:
            self._kill()
            return
        try:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
        except BaseException:
            self._kill()
            raise
        finally:
            self._kill()  # whatever is left of the group (the ledger child)
        assert self.proc.returncode == 0, self.log()

    def _kill(self) -> None:
        kill_group(self.proc)
        self.out.close()
        self.err.close()

    def log(self) -> str:
        return (self.dir / "serve.err").read_text()[-3000:]

    def status(self, field: str) -> int:
        """A size from /proc/<pid>/status, in bytes (VmRSS, VmHWM)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024

    def rss(self) -> int:
        return self.status("VmRSS")

    def reset_peak(self) -> None:
        """Start VmHWM (peak RSS) over from the RSS now (``clear_refs`` 5)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def connections(self) -> int:
        """Established TCP connections to the server's port (its side): the sessions the
        server still holds, however it regards them."""
        port = f"{self.port:04X}"
        n = 0
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(":" + port) and fields[3] == "01":
                n += 1
        return n


class RssWatch:
    """The server's peak RSS over a load: VmHWM reset at the start, sampled too."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.base = server.rss()
        server.reset_peak()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError, AttributeError):
                self.peak = max(self.peak, self.server.rss())

    def stop(self) -> int:
        """Growth of the peak over the RSS at the start, in bytes."""
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.server.status("VmHWM"), self.server.rss())
        return self.peak - self.base


# ---------------------------------------------------------------- the established session

class Established:
    """A logged-on ``Client`` placing and cancelling small resting buys, one at a time,
    counting every answer it gets (each within the Client's own timeout)."""

    def __init__(self, client: Client, prefix: str = "e"):
        self.client = client
        self.prefix = prefix
        self.sent = self.answered = 0
        self.latencies: list[float] = []  # place -> report, s (measured, never asserted)

    async def run(self, orders: int) -> None:
        c = self.client
        for _ in range(orders):
            i = self.sent // 2
            clid = f"{self.prefix}{i}"
            t0 = time.perf_counter()
            self.sent += 1
            r = await c.place(clid, "CEA", Side.BUY, 1, 5900 - i % 50)
            self.latencies.append(time.perf_counter() - t0)
            assert r.exec == ExecKind.ACCEPTED, r
            self.answered += 1
            self.sent += 1
            r = await c.cancel_wait(clid)
            assert r.exec == ExecKind.CANCELLED, r
            self.answered += 1


async def new_logon(host: str, port: int, account: str, token: str) -> float:
    """A fresh session logs on (and off) while the load runs: the seconds it took (the test
    only requires it to succeed within 10 s)."""
    t0 = time.perf_counter()
    c = Client(host, port, account, token)
    await asyncio.wait_for(c.connect(), 10)
    took = time.perf_counter() - t0
    await asyncio.wait_for(c.close(), 5)
    return took


async def healthy(host: str, port: int, buyer: tuple[str, str], seller: tuple[str, str],
                  tag: str) -> None:
    """Two fresh sessions trade with each other: the server still works."""
    async with Client(host, port, *buyer) as b, Client(host, port, *seller) as s:
        r = await b.place(f"hb{tag}", "CEA", Side.BUY, 10, 6000)
        assert r.exec == ExecKind.ACCEPTED, r
        r = await s.place(f"hs{tag}", "CEA", Side.SELL, 10, 6000, tif=TimeInForce.IOC)
        assert r.exec == ExecKind.ACCEPTED, r
        await until(lambda: any(x.exec == ExecKind.FILL for x in s.reports), timeout=10,
                    what="the fresh sessions' trade")


def on_thread(fn, *args, **kw) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, kwargs=kw, daemon=True)
    thread.start()
    return thread


def bound_answered(answered: int, burst: int, rate: int, elapsed: float, slack: int = 100):
    """A token bucket of ``rate``/s and ``burst`` admits at most this many in ``elapsed``."""
    limit = burst + rate * elapsed + slack
    assert answered <= limit, f"{answered} answered in {elapsed:.2f} s, bucket allows {limit:.0f}"


HOST = "127.0.0.1"
QUERY_UNIT = [P.encode(P.BalanceRequest()), P.encode(P.Subscribe("CEA"))]  # 4 + 9 bytes


# ---------------------------------------------------------------- 1. query flood

@pytest.mark.parametrize("reads", [True, False], ids=["abuser-reads", "abuser-never-reads"])
def test_query_flood(tmp_path, reads):
    """BalanceRequest and Subscribe frames as fast as one socket can send them (the issue:
    2 M in 8 s took another session's p99 to 4.9 s and new logons went unanswered)."""
    with ServerProcess(tmp_path) as srv:
        tok, port = srv.tokens, srv.port
        logged_on = time.monotonic()
        with Abuser(HOST, port, "A003", tok["A003"], rcvbuf=0 if reads else 4096) as ab:
            chunk = b"".join(QUERY_UNIT) * 50_000  # 100,000 frames
            watch = RssWatch(srv)
            if reads:
                ab.start_reading()
            stop = threading.Event()
            # a reader is flooded until the other sessions are done (at most 40 chunks); a
            # peer that never reads until the server stops taking its input
            sender = on_thread(ab.send, chunk, until=time.monotonic() + 30, stop=stop,
                               stall=None if reads else 1.0, repeat=40)

            async def others():
                async with Client(HOST, port, "A001", tok["A001"]) as c:
                    await until(lambda: ab.sent >= len(chunk), timeout=10, what="the flood")
                    e = Established(c)
                    await e.run(150)
                    await new_logon(HOST, port, "A002", tok["A002"])
                    return e

            e = asyncio.run(others())
            stop.set()
            sender.join(30)
            assert not sender.is_alive()
            assert (e.sent, e.answered) == (300, 300)
            sent = frames_in(ab.sent, [len(f) for f in QUERY_UNIT])
            assert sent >= 100_000
            growth = watch.stop()
            assert growth <= RSS_BOUND, f"server RSS grew {growth / MB:.0f} MB"
            if not reads:  # it reads at last: the server goes on with what it left
                ab.start_reading()
            t = ab.tally

            def answered():
                return t.count(P.MsgType.BALANCE) + t.count(P.MsgType.MD_SNAPSHOT)

            deadline = time.monotonic() + 30
            while answered() + t.throttled < sent and time.monotonic() < deadline:
                time.sleep(0.02)
            elapsed = time.monotonic() - logged_on
            # every query answered exactly once: a Balance, a snapshot, or THROTTLED
            assert answered() + t.throttled == sent, (answered(), t.throttled, sent)
            assert t.throttled_acks["BalanceRequest"] > 0 and t.throttled_acks["Subscribe"] > 0
            bound_answered(answered(), 1_000, 1_000, elapsed)  # --query-rate/--query-burst
            assert not t.errors() and not ab.closed_by_server
        asyncio.run(healthy(HOST, port, ("A004", tok["A004"]), ("A002", tok["A002"]), "q"))


# ---------------------------------------------------------------- 2. replay flood

async def _market_data(port: int, tok: dict, trades: int) -> int:
    """``trades`` trades on CEA/LISTED between A001 and A002: the channel's sequence number
    after them (a trade and depth updates each)."""
    async with Client(HOST, port, "A001", tok["A001"]) as a, \
            Client(HOST, port, "A002", tok["A002"]) as b:
        b.keep_reports = False
        got = [0]
        b.on_reports = lambda rows: got.__setitem__(0, got[0] + len(rows))
        assert (await a.place("big", "CEA", Side.BUY, trades, 6000)).exec == ExecKind.ACCEPTED
        f = P.order_frames(trades)
        f["cl_ord_id"] = np.char.add(b"s", np.arange(trades).astype("S8"))
        f["side"], f["qty"], f["price"], f["tif"] = Side.SELL, 1, 6000, TimeInForce.IOC
        b.send_frames(f)
        await until(lambda: got[0] >= 2 * trades, timeout=30, what="the trades' reports")
        book = await b.subscribe("CEA")
        await a.cancel_wait("big")
        return book.seq


def _replay_requests(seq: int, n: int, seed: int = 7) -> list[tuple[int, int]]:
    """``n`` ranges: every other one the whole channel, the rest random; no range starts
    right after the one before ends, so each replay reads back as its own run."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append((1, seq))
        else:
            a, b = sorted(rng.integers(2, seq + 1, 2).tolist())
            out.append((a, b))
    return out


@pytest.mark.parametrize("reader", ["reads", "slow", "never"])
def test_replay_flood(tmp_path, reader):
    """3,000 MdReplayRequests in one write (the issue: the server went from 275 MB to
    800 MB and froze). The abuser reads everything, reads slowly, or never reads (and then
    says nothing either: its heartbeat interval passes three times, so it must be dropped)."""
    with ServerProcess(tmp_path) as srv:
        tok, port = srv.tokens, srv.port
        seq = asyncio.run(_market_data(port, tok, 3_000))
        assert seq >= 3_000
        ranges = _replay_requests(seq, 3_000)
        write = b"".join(P.encode(P.MdReplayRequest("CEA", 0, a, b)) for a, b in ranges)
        assert 40_000 < len(write) < 50_000
        watch = RssWatch(srv)
        logged_on = time.monotonic()
        ab = Abuser(HOST, port, "A003", tok["A003"], rcvbuf=0 if reader == "reads" else 4096,
                    heartbeat_ms=500 if reader == "never" else 60_000, items=True)
        with ab:
            assert ab.send(write, until=time.monotonic() + 10) == len(write)  # one write
            if reader != "never":
                ab.start_reading(**({} if reader == "reads" else dict(chunk=4096, pause=0.01)))

            async def others():
                async with Client(HOST, port, "A004", tok["A004"]) as c:
                    e = Established(c)
                    await e.run(150)
                    await new_logon(HOST, port, "A001", tok["A001"])
                    return e

            e = asyncio.run(others())
            assert (e.sent, e.answered) == (300, 300)
            if reader == "reads":
                deadline = time.monotonic() + 30
                while len(ab.tally.items) < 3_000 and time.monotonic() < deadline:
                    time.sleep(0.02)
                elapsed = time.monotonic() - logged_on
            else:
                time.sleep(1.0)
            growth = watch.stop()
            assert growth <= RSS_BOUND, f"server RSS grew {growth / MB:.0f} MB"
            # what the abuser read, in order: each request's replay, a snapshot, or THROTTLED
            # (a slow reader stops here, maybe in the middle of a replay)
            ab.stop_reading()
            items = ab.tally.items
            assert isinstance(items[0], P.LogonAck)
            replays = snapshots = throttled = 0
            for i, ((a, b), item) in enumerate(zip(ranges, items[1:])):
                if item == ["run", a, b] or (
                        reader == "slow" and i == len(items) - 2 and item[:2] == ["run", a]):
                    replays += 1
                elif item == ("throttled", "MdReplayRequest"):
                    throttled += 1
                else:
                    assert isinstance(item, tuple) and item[0] == "snapshot" and \
                        item[1] >= seq, ((a, b), item)
                    snapshots += 1
            if reader == "reads":
                assert replays + snapshots + throttled == 3_000 == len(items) - 1
                assert throttled > 0
                bound_answered(replays + snapshots, 1_000, 1_000, elapsed)
            elif reader == "slow":
                assert replays + snapshots + throttled > 0  # it gets its answers, slowly
                assert not ab.closed_by_server
            assert not ab.tally.errors()
            if reader == "never":
                # silent for three heartbeat intervals (1.5 s) and not reading: dropped
                deadline = time.monotonic() + 10
                while srv.connections() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert srv.connections() == 0, "the silent peer that never reads still holds " \
                    "its connection"
        asyncio.run(healthy(HOST, port, ("A002", tok["A002"]), ("A001", tok["A001"]), "r"))


# ---------------------------------------------------------------- 3. order flood

def _resting_buys(n: int, tag: bytes) -> bytes:
    """``n`` NewOrders that rest (buys of 1 t under the market), as frames."""
    f = P.order_frames(n)
    f["cl_ord_id"] = np.char.add(tag, np.arange(n).astype("S8"))
    f["side"], f["qty"], f["price"] = Side.BUY, 1, 5400 + np.arange(n) % 500
    return f.tobytes()


def _flood_orders(srv: "ServerProcess", data: bytes, n: int, places: int, pace=None):
    """A003 floods ``data`` (``n`` orders; in steps of ``pace`` = (bytes, seconds) if given)
    while A001 places and cancels ``places`` orders and A002 logs on; returns the abuser's
    tally (every report in), the seconds since it logged on and the server's RSS growth."""
    tok, port = srv.tokens, srv.port
    logged_on = time.monotonic()
    with Abuser(HOST, port, "A003", tok["A003"]) as ab:
        watch = RssWatch(srv)
        ab.start_reading()

        def paced():
            step, pause = pace
            for k in range(0, len(data), step):
                ab.send(data[k:k + step], until=time.monotonic() + 30)
                time.sleep(pause)

        sender = on_thread(paced) if pace else on_thread(ab.send, data,
                                                          until=time.monotonic() + 30)

        async def others():
            async with Client(HOST, port, "A001", tok["A001"]) as c:
                await until(lambda: ab.sent > 0, timeout=10, what="the flood")
                e = Established(c)
                await e.run(places)
                await new_logon(HOST, port, "A002", tok["A002"])
                return e

        e = asyncio.run(others())
        assert (e.sent, e.answered) == (2 * places, 2 * places)  # every answer came
        sender.join(30)
        assert ab.sent == len(data)
        t = ab.tally
        deadline = time.monotonic() + 30
        while t.count(P.MsgType.EXECUTION_REPORT) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert t.count(P.MsgType.EXECUTION_REPORT) == n
        return t, time.monotonic() - logged_on, watch.stop()


def test_order_flood_past_the_rate_limit(tmp_path):
    """200,000 NewOrders pipelined past ``--rate-limit 1000 --burst 1000`` (the issue: the
    THROTTLED rejects were decoded and answered one by one, a logon took 2 s)."""
    rate = burst = 1_000
    n = 200_000
    with ServerProcess(tmp_path, "--rate-limit", str(rate), "--burst", str(burst)) as srv:
        t, elapsed, growth = _flood_orders(srv, _resting_buys(n, b"f"), n, 150)
        accepted = t.executions(ExecKind.ACCEPTED)
        assert accepted + t.throttled_reports == n, (accepted, t.throttled_reports)
        assert t.executions(ExecKind.REJECTED) == t.throttled_reports  # THROTTLED, no other
        assert accepted >= burst
        bound_answered(accepted, burst, rate, elapsed)
        assert growth <= RSS_BOUND, f"server RSS grew {growth / MB:.0f} MB"
        tok = srv.tokens
        asyncio.run(healthy(HOST, srv.port, ("A004", tok["A004"]), ("A002", tok["A002"]), "o"))


def test_order_flood_at_the_default_limits(tmp_path):
    """300,000 resting NewOrders pipelined at the default limits (200,000 messages/s, burst
    50,000): the rate limit alone would let one session rest orders, and grow the server,
    without end; the account's open-order limit (100,000) bounds it."""
    n, limit = 300_000, 100_000
    with ServerProcess(tmp_path) as srv:
        # within the rate limit: 40,000 orders every 0.3 s
        t, _, growth = _flood_orders(srv, _resting_buys(n, b"d"), n, 100,
                                     pace=(40_000 * P.NEW_ORDER.itemsize, 0.3))
        accepted = t.executions(ExecKind.ACCEPTED)
        limited = int(t.reasons[GatewayReason.OPEN_ORDER_LIMIT])
        assert accepted + limited + t.throttled_reports == n
        assert accepted == limit and limited > 0, (accepted, limited, t.throttled_reports)
        assert growth <= RSS_BOUND, f"server RSS grew {growth / MB:.0f} MB"


# ---------------------------------------------------------------- 4. connections

async def _read_to_eof(reader: asyncio.StreamReader, timeout: float) -> list:
    """Everything the server sends until it closes the connection, decoded."""
    data = await asyncio.wait_for(reader.read(), timeout)
    return P.FrameReader(P.SERVER).feed(data)


def test_connection_cap(tmp_path):
    """``max_connections`` sessions; the next connection gets Error(SERVER_FULL) and is
    closed; once one goes, a new one logs on."""
    cap = 3

    async def body(server, host, port):
        held = [Client(host, port, a, t) for a, t in (("A001", "A001-test-token-0001"),
                                                       ("A002", "A002-test-token-0002"))]
        for c in held:
            await asyncio.wait_for(c.connect(), 5)
        reader, writer = await asyncio.open_connection(host, port)  # the third: no logon yet
        await until(lambda: len(server.sessions) == cap)
        try:
            for _ in range(5):  # more connections: refused, each at once
                r, w = await asyncio.open_connection(host, port)
                msgs = await _read_to_eof(r, 5)
                w.close()
                assert [(type(m), m.reason) for m in msgs] == [(P.Error, GatewayReason.SERVER_FULL)]
            with pytest.raises(ClientError):  # a Client that tries to log on as well
                await asyncio.wait_for(
                    Client(host, port, "A003", "A003-test-token-0003").connect(), 5)
            assert len(server.sessions) == cap
            # the held ones still trade
            r = await held[0].place("c1", "CEA", Side.BUY, 1, 5900)
            assert r.exec == ExecKind.ACCEPTED
        finally:
            writer.close()
        await until(lambda: len(server.sessions) == cap - 1, what="a slot freed")
        async with Client(host, port, "A003", "A003-test-token-0003") as c:
            assert (await c.place("c2", "CEA", Side.BUY, 1, 5900)).exec == ExecKind.ACCEPTED
        await held[1].close()
        await until(lambda: len(server.sessions) == 1, what="a slot freed")
        async with Client(host, port, "A004", "A004-test-token-0004") as c:
            assert c.logon.account == "A004"
        await held[0].close()

    run_with_server(config(tmp_path, max_connections=cap), body)


def test_idle_connections_are_closed_by_the_logon_timeout(tmp_path, monkeypatch):
    """Connections that never log on (silent, or a Logon frame cut short) fill the server
    up to its limit; the logon timeout closes them all, and then a session logs on."""
    import gateway.server

    monkeypatch.setattr(gateway.server, "LOGON_TIMEOUT_S", 0.5)
    cap = 40

    async def body(server, host, port):
        idle = []
        for i in range(cap):
            r, w = await asyncio.open_connection(host, port)
            if i % 2:  # a Logon frame's first bytes, the rest never sent
                w.write(P.encode(P.Logon("A001", "A001-test-token-0001"))[:6])
            idle.append((r, w))
        await until(lambda: len(server.sessions) == cap)
        with pytest.raises(ClientError):  # full
            await asyncio.wait_for(Client(host, port, "A001", "A001-test-token-0001").connect(), 5)
        # each idle connection: one Error(LOGON_TIMEOUT), then closed
        answers = await asyncio.gather(*(_read_to_eof(r, 10) for r, _ in idle))
        for r, w in idle:
            w.close()
        assert all([(type(m), m.reason) for m in msgs] == [(P.Error, GatewayReason.LOGON_TIMEOUT)]
                   for msgs in answers), answers
        await until(lambda: not server.sessions, what="the idle connections gone")
        async with Client(host, port, "A001", "A001-test-token-0001") as c:
            assert (await c.place("i1", "CEA", Side.BUY, 1, 5900)).exec == ExecKind.ACCEPTED

    run_with_server(config(tmp_path, max_connections=cap), body)


# ---------------------------------------------------------------- 5. backpressure

def _orders(n: int, prefix: bytes = b"p", price: int = 5500) -> bytes:
    f = P.order_frames(n)
    f["cl_ord_id"] = np.char.add(prefix, np.arange(n).astype("S8"))
    f["side"], f["qty"], f["price"] = Side.BUY, 1, price + np.arange(n) % 100
    return f.tobytes()


class Watcher:
    """Samples a session of the in-process server every turn of the loop: the largest
    input it held, whether its socket was paused, its largest unsent output."""

    def __init__(self, server, account_name: str):
        self.server, self.name = server, account_name
        self.session = None
        self.max_in = self.max_out = 0
        self.paused = self.slow = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self):
        while True:
            s = self.session or next((x for x in self.server.sessions.values()
                                      if x.account_name == self.name), None)
            if s is not None:
                self.session = s
                self.max_in = max(self.max_in, len(s.inbuf))
                if s.transport is not None and not s.transport.is_closing():
                    self.max_out = max(self.max_out, s.transport.get_write_buffer_size())
                self.paused |= s.reading_paused
                self.slow |= s.peer_slow
            await asyncio.sleep(0.001)

    def stop(self):
        self.task.cancel()


def test_peer_that_never_reads_is_no_longer_read(tmp_path):
    """A session pipelines orders and never reads its reports: once its unsent replies pass
    the transport's high-water mark the server leaves its input, holds at most about
    ``max_in_buffer`` of it and stops reading its socket; another session meanwhile gets
    every answer."""
    max_in = 64 << 10

    async def body(server, host, port):
        ab = await asyncio.to_thread(Abuser, host, port, "A003", "A003-test-token-0003",
                                     rcvbuf=4096)
        watch = Watcher(server, "A003")
        data = _orders(500_000)  # 20.5 MB
        sender = on_thread(ab.send, data, until=time.monotonic() + 20, stall=1.0)
        try:
            async with Client(host, port, "A001", "A001-test-token-0001") as c:
                e = Established(c)
                await e.run(100)
                await until(lambda: not sender.is_alive(), timeout=25, what="the abuser stalled")
                assert (e.sent, e.answered) == (200, 200)
                s = watch.session
                assert s is not None and not s.closing
                assert watch.slow and watch.paused  # the server stopped reading it
                assert ab.sent < len(data), ab.sent  # so it could not send everything
                # its input held is bounded (one read of at most 256 KiB past the bound)
                assert watch.max_in <= max_in + (256 << 10), watch.max_in
                taken = server.stats["commands"]
                await e.run(20)  # the server goes on for others, not for it
                assert server.stats["commands"] == taken + 40
                assert s.reading_paused and s.peer_slow and not s.closing
        finally:
            watch.stop()
            ab.close()

    run_with_server(config(tmp_path, max_in_buffer=max_in, socket_buffer=8 << 10), body)


def test_unsent_output_over_its_bound_drops_the_session(tmp_path, caplog):
    """The same peer, with ``max_out_buffer`` under the high-water mark: once its unsent
    replies pass the bound it is dropped; the other session gets every answer."""
    max_out = 256 << 10

    async def body(server, host, port):
        ab = await asyncio.to_thread(Abuser, host, port, "A003", "A003-test-token-0003",
                                     rcvbuf=4096)
        watch = Watcher(server, "A003")
        data = _orders(100_000)
        sender = on_thread(ab.send, data, until=time.monotonic() + 20, stall=1.0)
        try:
            async with Client(host, port, "A001", "A001-test-token-0001") as c:
                e = Established(c)
                await e.run(100)
                await until(lambda: all(s.account_name != "A003"
                                        for s in server.sessions.values()),
                            timeout=10, what="the abuser dropped")
                assert len(server.sessions) == 1
                await e.run(20)
                assert (e.sent, e.answered) == (240, 240)
                sender.join(25)
                assert not sender.is_alive()
                assert watch.max_out <= max_out  # as seen between turns
                assert any("A003" in r.getMessage() and "slow reader" in r.getMessage()
                           for r in caplog.records), caplog.text
        finally:
            watch.stop()
            ab.close()

    run_with_server(config(tmp_path, max_out_buffer=max_out, socket_buffer=8 << 10), body)


def test_session_ended_while_its_peer_does_not_read_is_released(tmp_path):
    """A peer that neither reads nor sends: the heartbeat timeout ends its session, and
    then its connection, its buffers, its account and its slot must be released, not kept
    until the peer reads (which it never does)."""

    async def body(server, host, port):
        ab = await asyncio.to_thread(Abuser, host, port, "A003", "A003-test-token-0003",
                                     rcvbuf=4096,
                                     heartbeat_ms=200)
        watch = Watcher(server, "A003")
        sender = on_thread(ab.send, _orders(100_000), until=time.monotonic() + 20, stall=1.0)
        try:
            await until(lambda: not sender.is_alive(), timeout=25, what="the abuser stalled")
            await until(lambda: watch.session is not None and watch.session.closing,
                        timeout=5, what="the heartbeat timeout")
            await until(lambda: not server.sessions, timeout=5,
                        what="the ended session released (connection_lost)")
            # the account logs on again
            async with Client(host, port, "A003", "A003-test-token-0003") as c:
                assert c.logon.account == "A003"
        finally:
            watch.stop()
            ab.close()

    run_with_server(config(tmp_path, max_in_buffer=64 << 10, socket_buffer=8 << 10), body)


# ---------------------------------------------------------------- 6. fairness

def test_fair_share_of_a_turn(tmp_path):
    """One session floods valid orders with no rate limit; another's orders are all
    answered, and no turn takes more than ``turn_share`` frames from each session with
    input."""
    share = 256
    n = 200_000

    async def body(server, host, port):
        ab = await asyncio.to_thread(Abuser, host, port, "A003", "A003-test-token-0003")
        ab.start_reading()
        sender = on_thread(ab.send, _orders(n, b"x"), until=time.monotonic() + 30)
        try:
            async with Client(host, port, "A001", "A001-test-token-0001") as c:
                await until(lambda: ab.sent > 0, timeout=10, what="the flood")
                e = Established(c)
                await e.run(10)
                flooded = ab.tally.count(P.MsgType.EXECUTION_REPORT)
                await e.run(90)
                assert (e.sent, e.answered) == (200, 200)
                assert flooded < n, "the flood was over before the other session's orders"
            await until(lambda: ab.tally.count(P.MsgType.EXECUTION_REPORT) == n, timeout=30,
                        what="the flood's reports")
            assert ab.tally.executions(ExecKind.ACCEPTED) == n  # no limit: all accepted
            assert share <= server.stats["max_batch"] <= share * 2, server.stats
            assert server.stats["turns"] >= n // share
        finally:
            ab.close()

    run_with_server(config(tmp_path, rate_limit=0, turn_share=share, max_open_orders=0), body)
