"""Gateway benchmark: ``cea serve`` over loopback, measured from a separate (this) process,
against the floors it is compared with, all in one run.

- ``orders_per_s`` (pipelined, fsync on, server defaults: SQLite ledger on, rate limit off):
  two sessions (buyer A001: buys 59.90..60.09, seller A002: sells 59.95..60.14; about a
  third of orders trade) each send ``orders / 2`` NewOrders, built with
  ``protocol.order_frames`` as one bytes blob per session and written in chunks as fast as
  the server takes them (non-blocking sockets, epoll). Acknowledgements (ExecutionReport
  exec ACCEPTED or REJECTED) are counted per read with compiled code (``wire.split_frames``)
  and NumPy, no Python per report. Figure = orders / (first byte sent -> last
  acknowledgement received). The client's own CPU time (``time.process_time``) over the run
  gives its ceiling (orders per client CPU second): it must be far above the figure. The
  replies are checked: ``accepted``, ``rejected`` (by reason) and ``unanswered`` orders are
  reported apart, and the run is flagged (``replies_ok`` false) unless every order was
  accepted exactly once.
- ``server_cpu_us_per_order``, ``ledger_cpu_us_per_order``: utime + stime (/proc/<pid>/stat)
  of the ``cea serve`` process, and of its ledger child process, over the pipelined run, per
  order (the ledger's also with its catch-up after the last acknowledgement).
- ``bare_msgspec_orders_per_s``: the same pipelined client against ``bench.bare --msgpack``,
  the comparator the issue measured: a minimal msgspec + uvloop + Numba server on the wire
  before the binary protocol (each frame decoded by msgspec, one ``FastBook`` call per read,
  each acknowledgement encoded by msgspec; no journal, ledger, accounts).
  ``bare_binary_orders_per_s``: against ``bench.bare`` on this binary protocol (NumPy
  decoding, one ``FastBook`` call per read, acknowledgements only): the floor a Python server
  with compiled per-order work reaches here.
- ``rtt_*``: open loop at ``rate`` orders/s for ``seconds`` on one session (resting buys, one
  report each); each order is sent at its scheduled time whatever the replies (no coordinated
  omission); round trip = first report received - the order's scheduled send time, in an
  HdrHistogram (µs). The client busy-polls its non-blocking socket (no select/epoll sleep,
  whose wakeup would add ~50-70 µs here), only appending (bytes, receive time) per read; the
  frames are split and matched to their orders after the run. The client runs on one CPU,
  the server on the other(s) (``pinned``). Once with fsync on, once on a fresh server with
  ``--fsync off``. ``loopback_rtt_*``: the same client against a uvloop
  echo server (``python -m bench.bare --echo``): the floor of any round trip here. After each
  run every order's replies are checked (``replies``): exactly one ExecutionReport ACCEPTED and
  nothing else (the echo server: the order itself, once); rejected, unanswered, duplicated and
  unexpected replies are counted and flag the run.
- ``fdatasync_*``: on the disk of the servers' data directories (the same temporary root),
  2,000 x (4 KiB append + ``os.fdatasync``); ``journal_sync_*``: 2,000 x (4 KiB ``os.pwrite``
  into a preallocated, zero-filled and synced region + ``os.fdatasync``), what
  ``gateway.journal.JournalWriter`` does per commit.

Every server runs in its own subprocess on 127.0.0.1 and is stopped (its process tree
killed if need be) on the way out; every wait is bounded. A run in which any order was not
answered as it should be prints which and how many, writes its JSON (``replies_ok`` false)
and exits with status 1.
"""

from __future__ import annotations

import gc
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numba import njit

from gateway import protocol as P
from gateway.wire import split_frames
from sim.loadtest import local_server

HOST = "127.0.0.1"  # loopback only, by design
_ROOT = Path(__file__).resolve().parent.parent
TOKENS_CSV = ("account,token\nA001,A001-test-token-0001\nA002,A002-test-token-0002\n"
           "OPS,OPS-test-token-00000\n")
ACCOUNTS_CSV = ("account,type,cash,CEA\nA001,COVERED_ENTITY,100000000000.00,0\n"
             "A002,COVERED_ENTITY,0.00,1000000000\n")
SESSIONS = (("A001", "A001-test-token-0001", 1),  # (account, token, side)
             ("A002", "A002-test-token-0002", 2))
NEW_SIZE = P.NEW_ORDER.itemsize
REPORT_SIZE = P.EXECUTION_REPORT.itemsize
_T_REPORT, _T_NEW, _T_ERROR = (int(P.MsgType.EXECUTION_REPORT), int(P.MsgType.NEW_ORDER),
                               int(P.MsgType.ERROR))
SEND_CHUNK = 1 << 17  # bytes per send call, pipelined
FDATASYNC_SAMPLES = 2000
_TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- processes

def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 is index 0), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _cpu_s(pid: int) -> tuple[float, float] | None:
    """(utime + stime, cutime + cstime) of a process, in seconds."""
    f = _stat(pid)
    if f is None:
        return None
    return (int(f[11]) + int(f[12])) / _TICK, (int(f[13]) + int(f[14])) / _TICK


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat(int(entry))
            if f is not None and int(f[1]) == pid:
                out.append(int(entry))
    return out


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace")
    except OSError:
        return ""


def _label(pid: int, root: int) -> str:
    if pid == root:
        return "server"
    cmd = _cmdline(pid)
    if "resource_tracker" in cmd:
        return "resource_tracker"
    if "spawn_main" in cmd:
        return "ledger"  # the server's only spawned child: gateway.publisher's ledger process
    return "other"  # a forked snapshot writer, say


def _tree_cpu(pid: int) -> dict:
    """CPU seconds by label over a process and its descendants alive now; ``reaped`` is the
    children the server already waited for (forked snapshot writers)."""
    out = {"server": 0.0, "ledger": 0.0, "resource_tracker": 0.0, "other": 0.0, "reaped": 0.0}
    for p in [pid, *_descendants(pid)]:
        cpu = _cpu_s(p)
        if cpu is not None:
            out[_label(p, pid)] += cpu[0]
            if p == pid:
                out["reaped"] += cpu[1]
    return out


def _find_server_pid() -> int | None:
    """The ``cea serve`` child of this process (``local_server`` does not say its pid)."""
    for pid in _children(os.getpid()):
        cmd = _cmdline(pid)
        if " -m cea serve " in f" {cmd} ":
            return pid
    return None


def _kill_tree(pids: list[int], starts: dict[int, str]) -> None:
    """SIGKILL those of ``pids`` still alive and still the same process (start time)."""
    for pid in pids:
        f = _stat(pid)
        if f is not None and f[19] == starts.get(pid) and f[0] != "Z":
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _tasks(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


@contextmanager
def pinned(server_pid: int | None):
    """For the busy-polling client: this thread on one CPU, the server process's threads
    on the others (its later threads inherit that); its child processes (the ledger) are
    left to the scheduler. Without it the scheduler sometimes queues the woken server
    behind the spinning client on the client's CPU (ms of delay), sometimes runs it there
    at once (no cross-CPU wakeup, a round trip no remote client sees): either way not the
    server's latency. Yields the placement, or None where there is no second CPU; this
    thread's affinity is restored on the way out."""
    old = os.sched_getaffinity(0)
    cpus = sorted(old)
    if server_pid is None or len(cpus) < 2:
        yield None
        return
    client, rest = cpus[0], set(cpus[1:])
    try:
        os.sched_setaffinity(0, {client})
        for tid in _tasks(server_pid):
            os.sched_setaffinity(tid, rest)
        yield {"client_cpus": [client], "server_cpus": sorted(rest),
               "server_children_cpus": cpus}
    finally:
        os.sched_setaffinity(0, old)


@contextmanager
def running_server(fsync: bool, data_root: Path, viewer: dict | None = None):
    """``cea serve`` in a subprocess on a free port; yields (port, pid). Its process tree
    (the ledger process) is killed on the way out if stopping it left any of it running.
    ``viewer``: the server also serves its web view (``--web-port``), watched for the whole
    run by one browser's stand-in (``bench.webviewer``), whose counts go into this dict."""
    tree: list[int] = []
    starts: dict[int, str] = {}
    urls: list[str] = []
    try:
        with local_server(data_root, ACCOUNTS_CSV, TOKENS_CSV, fsync=fsync,
                          web_port=0 if viewer is not None else None,
                          on_web=urls.append) as port:
            pid = _find_server_pid()
            if pid is not None:
                tree = [pid, *_descendants(pid)]
                starts = {p: (_stat(p) or [""] * 20)[19] for p in tree}
            if viewer is None:
                yield port, pid
            else:
                with web_viewer(urls[0], viewer):
                    yield port, pid
    finally:
        if tree:
            time.sleep(0.2)
            _kill_tree(tree, starts)


@contextmanager
def web_viewer(url: str, counts: dict, timeout: float = 30.0):
    """``python -m bench.webviewer URL`` for the body's length, connected before it starts;
    its counts (messages, bytes, updates) put into ``counts``."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.webviewer", url], cwd=_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        time.sleep(1.0)  # the page loaded and the WebSocket open before the load starts
        yield
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0 or not out.strip():
            raise RuntimeError(f"the web viewer failed: {err.strip()[-500:]}")
        counts.update(json.loads(out.strip().splitlines()[-1]))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@contextmanager
def bare_server(echo: bool = False, timeout: float = 120.0, msgpack: bool = False):
    """``python -m bench.bare`` (``--echo``: a plain echo server; ``--msgpack``: the msgspec
    comparator) in its own process group on a free port; yields (port, pid); the group is
    killed on the way out."""
    cmd = [sys.executable, "-m", "bench.bare", "--port", "0", *(["--echo"] if echo else []),
           *(["--msgpack"] if msgpack else [])]
    proc = subprocess.Popen(cmd, cwd=_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        port, line = None, b""
        deadline = time.monotonic() + timeout
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                m = re.search(rb"listening on [\d.]+:(\d+)", line)
                if m:
                    port = int(m.group(1))
        if port is None:
            proc.kill()
            raise RuntimeError(f"bench.bare did not start: {proc.stderr.read().decode()[-2000:]}")
        yield port, proc.pid
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except OSError:
                pass
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        for f in (proc.stdout, proc.stderr):
            f.close()


# ---------------------------------------------------------------- the client's pieces

def _logon(port: int, account: str | None, token: str = "", timeout: float = 10.0):
    """A connected socket, logged on as ``account`` (None: no logon, for the echo server)."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if account is not None:
        reader = P.FrameReader(P.SERVER)
        sock.sendall(P.encode(P.Logon(account, token, False, 60_000)))
        while True:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError(f"{account}: the server closed the connection at logon")
            msgs = reader.feed(data)
            if msgs:
                break
        if not isinstance(msgs[0], P.LogonAck):
            raise RuntimeError(f"{account}: logon answered with {msgs[0]!r}")
        if msgs[0].instruments[:1] != ["CEA"]:
            raise RuntimeError(f"instrument 0 is not CEA: {msgs[0].instruments}")
    sock.setblocking(False)
    return sock


def _pipelined_blob(side: int, n: int) -> bytes:
    """``n`` NewOrder frames: buys 59.90..60.09 or sells 59.95..60.14, 1..50 t."""
    i = np.arange(n)
    f = P.order_frames(n)
    f["cl_ord_id"] = np.char.add(b"p", i.astype("S19"))
    f["instrument"] = 0
    f["side"] = side
    f["qty"] = 1 + i % 50
    f["price"] = 5990 + (i * 7) % 20 + (5 if side == 2 else 0)
    return f.tobytes()


def _mp_logon(port: int, account: str, timeout: float = 10.0):
    """A socket logged on to ``bench.bare --msgpack`` (the wire before the binary protocol)."""
    from bench.bare import MpLogon, mp_frame

    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mp_frame(MpLogon(account, "x", False, 60_000)))
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"{account}: the msgpack server closed the connection at logon")
        data += chunk
    sock.setblocking(False)
    return sock


def _mp_blob(side: int, n: int) -> bytes:
    """The pipelined orders of ``_pipelined_blob`` as msgpack frames (encoded before the run)."""
    from bench.bare import MpNewOrder, mp_frame

    return b"".join(mp_frame(MpNewOrder(f"p{i}", 0, side, 1 + i % 50,
                                        5990 + (i * 7) % 20 + (5 if side == 2 else 0)))
                    for i in range(n))


@njit(cache=True, _nrt=False)
def _count_be_frames(buf, end):
    """(frames, offset after the last complete one) of 4-byte big-endian framed data."""
    p = 0
    n = 0
    while end - p >= 4:
        size = ((np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16)
                | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3]))
        if p + 4 + size > end:
            break
        p += 4 + size
        n += 1
    return n, p


class _Acks:
    """One session's receive buffer; counts the ExecutionReports with exec ACCEPTED or
    REJECTED (``acks``), the REJECTED ones apart (``rejected``, and by reason), per read
    (``split_frames`` and NumPy)."""

    def __init__(self, sock, size: int = 4 << 20):
        self.sock = sock
        self.buf = np.zeros(size, np.uint8)
        self.mem = memoryview(self.buf)
        self.fill = 0
        self.offsets = np.zeros(1 << 16, np.int64)
        self.acks = self.frames = self.received = self.rejected = 0
        self.t = 0.0  # when the last read returned
        self.rejects = np.zeros(256, np.int64)  # by reason

    def read(self) -> int:
        try:
            n = self.sock.recv_into(self.mem[self.fill:])
        except BlockingIOError:
            return -1
        self.t = time.perf_counter()
        if n == 0:
            raise RuntimeError("the server closed a session")
        self.received += n
        self.fill += n
        pos = self._count()
        rest = self.fill - pos
        if rest:
            self.buf[:rest] = self.buf[pos:self.fill].copy()
        self.fill = rest
        return n

    def _count(self) -> int:
        """Count the complete frames in ``buf[:fill]``; return the offset after them."""
        buf, pos = self.buf, 0
        while True:
            k, stop, bad = split_frames(buf, pos, self.fill, P.MAX_SERVER_FRAME, self.offsets)
            if bad >= 0:
                raise P.ProtocolError(f"bad frame length at offset {bad}")
            off = self.offsets[:k]
            kinds = buf[off + 2]
            ex = buf[off + 3]
            reports = kinds == _T_REPORT
            self.acks += int(np.count_nonzero(reports & (ex >= 1) & (ex <= 2)))
            rejected = reports & (ex == 2)
            if rejected.any():
                self.rejected += int(np.count_nonzero(rejected))
                self.rejects += np.bincount(buf[off[rejected] + 4], minlength=256)
            self.frames += k
            if (kinds == _T_ERROR).any():
                i = int(off[np.argmax(kinds == _T_ERROR)])
                msg = P.FrameReader(P.SERVER).decode_frame(bytes(buf[i:stop]), 0)
                raise RuntimeError(f"the server sent {msg}")
            pos = int(stop)
            if k < self.offsets.shape[0]:
                break
        return pos


class _MpAcks(_Acks):
    """``_Acks`` for the msgspec comparator: every frame it sends is an acknowledgement."""

    def _count(self) -> int:
        k, pos = _count_be_frames(self.buf, self.fill)
        self.acks += k
        self.frames += k
        return pos


# ---------------------------------------------------------------- pipelined throughput

def pipelined_throughput(port: int, orders: int, server_pid: int | None = None,
                         timeout: float | None = None, msgpack: bool = False) -> dict:
    """Two sessions pipeline ``orders`` NewOrders; orders/s from the first byte sent to the
    last acknowledgement; the client's CPU time and, given ``server_pid``, the server's and
    its children's (per order, µs). ``msgpack``: against ``bench.bare --msgpack``."""
    half = orders // 2
    timeout = timeout if timeout is not None else 60 + orders / 5000
    sessions = []
    try:
        for account, token, side in SESSIONS:
            if msgpack:
                sock = _mp_logon(port, account)
                sessions.append((sock, memoryview(_mp_blob(side, half)), _MpAcks(sock)))
            else:
                sock = _logon(port, account, token)
                sessions.append((sock, memoryview(_pipelined_blob(side, half)), _Acks(sock)))
        ep = select.epoll()
        state = {}
        for sock, blob, acks in sessions:
            ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
            state[sock.fileno()] = [sock, blob, acks, 0, None]  # ..., bytes sent, end time
        split_frames(np.zeros(8, np.uint8), 0, 0, 1, np.zeros(1, np.int64))  # load it now
        busy = _tree_cpu(server_pid) if server_pid else None
        cpu0 = time.process_time()
        start = time.perf_counter()
        deadline = start + timeout
        left = len(sessions)
        while left:
            for fd, ev in ep.poll(0.5):
                s = state[fd]
                if ev & select.EPOLLOUT and s[3] < len(s[1]):
                    try:
                        s[3] += s[0].send(s[1][s[3]:s[3] + SEND_CHUNK])
                    except BlockingIOError:
                        pass
                    if s[3] == len(s[1]):
                        ep.modify(fd, select.EPOLLIN)
                if ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    if s[2].read() > 0 and s[4] is None and s[2].acks >= half:
                        s[4] = s[2].t  # when the read with the last acknowledgement returned
                        left -= 1
            if time.perf_counter() > deadline:
                got = sum(s[2].acks for s in state.values())
                rejected = sum(s[2].rejected for s in state.values())
                raise TimeoutError(f"pipelined: {got:,} of {2 * half:,} answered in "
                                   f"{timeout:.0f} s ({got - rejected:,} accepted, "
                                   f"{rejected:,} rejected, {2 * half - got:,} unanswered)")
        end = max(s[4] for s in state.values())
        rejects = sum(s[2].rejects for s in state.values())
        cpu = time.process_time() - cpu0
        after = _tree_cpu(server_pid) if server_pid else None
        ep.close()
        elapsed = end - start
        n = 2 * half
        answered = sum(s[2].acks for s in state.values())
        n_rejected = sum(s[2].rejected for s in state.values())
        out = {"orders": n, "seconds": round(elapsed, 3), "orders_per_s": round(n / elapsed),
               "answered": answered, "accepted": answered - n_rejected,
               "rejected_orders": n_rejected, "unanswered": max(0, n - answered),
               "extra_replies": max(0, answered - n),
               "replies_ok": answered == n and n_rejected == 0,
               "frames_received": sum(s[2].frames for s in state.values()),
               "rejected": {P.reason_name(r): int(c) for r, c in enumerate(rejects) if c},
               "bytes_received": sum(s[2].received for s in state.values()),
               "client_cpu_s": round(cpu, 3),
               "client_cpu_us_per_order": round(1e6 * cpu / n, 3),
               "client_cpu_share": round(cpu / elapsed, 3),
               "client_ceiling_orders_per_s": round(n / cpu) if cpu > 0 else None}
        if busy is not None:
            used = {k: after[k] - busy[k] for k in busy}
            out["server_cpu_s"] = {k: round(v, 3) for k, v in used.items()}
            out["server_cpu_us_per_order"] = round(1e6 * (used["server"] + used["reaped"]) / n, 2)
            out["ledger_cpu_us_per_order"] = round(1e6 * used["ledger"] / n, 2)
            out["server_cpu_share"] = round(used["server"] / elapsed, 3)
            # the ledger settles behind the acknowledgements: its CPU until it is idle
            t, last = time.perf_counter(), after["ledger"]
            while time.perf_counter() - t < 30:
                time.sleep(0.3)
                now = _tree_cpu(server_pid)["ledger"]
                if now - last < 2 / _TICK:
                    break
                last = now
            out["ledger_catch_up_s"] = round(time.perf_counter() - t, 1)
            out["ledger_cpu_us_per_order_with_catch_up"] = round(
                1e6 * (last - busy["ledger"]) / n, 2)
        return out
    finally:
        for sock, *_ in sessions:
            sock.close()


# ---------------------------------------------------------------- open-loop latency

def _percentiles(hist) -> dict:
    return {"p50_us": hist.get_value_at_percentile(50),
            "p90_us": hist.get_value_at_percentile(90),
            "p99_us": hist.get_value_at_percentile(99),
            "p999_us": hist.get_value_at_percentile(99.9), "max_us": hist.get_max_value()}


def _first_reports(chunks: list[tuple[bytes, float]], echo: bool,
                   n: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """(order index, receive time) of the first acknowledgement of each order in a stream
    received as (bytes, time) chunks: an ExecutionReport ACCEPTED/REJECTED whose cl_ord_id is
    the decimal index (``echo``: the NewOrder frame itself). A frame's time is its last
    byte's chunk's. Third, the check of the ``n`` orders' replies (``_reply_check``)."""
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0), _reply_check(n, echo)
    data = b"".join(c for c, _ in chunks)
    ends = np.cumsum([len(c) for c, _ in chunks])
    times = np.array([t for _, t in chunks])
    raw = np.frombuffer(data, np.uint8)
    offsets = np.zeros(1 << 16, np.int64)
    parts, pos = [], 0
    while True:
        k, stop, bad = split_frames(raw, pos, len(raw), P.MAX_SERVER_FRAME, offsets)
        if bad >= 0:
            raise P.ProtocolError(f"bad frame length at offset {bad}")
        parts.append(offsets[:k].copy())
        pos = int(stop)
        if k < offsets.shape[0]:
            break
    off = np.concatenate(parts)
    kinds = raw[off + 2]
    if echo:
        off = off[kinds == _T_NEW]
        clid_at, size = 3, NEW_SIZE
        ex = np.ones(len(off), np.uint8)  # an echoed order counts as accepted
        reason = np.zeros(len(off), np.uint8)
    else:
        off = off[kinds == _T_REPORT]
        ex, reason = raw[off + 3], raw[off + 4]
        clid_at, size = 9, REPORT_SIZE
    clids = raw[(off + clid_at)[:, None] + np.arange(P.CLID_BYTES)]
    every = np.ascontiguousarray(clids).view(f"S{P.CLID_BYTES}").ravel().astype(np.int64)
    check = _reply_check(n, echo, every, ex, reason)
    acks = (ex >= 1) & (ex <= 2)
    at = np.searchsorted(ends, off[acks] + size - 1, side="right")
    index, first = np.unique(every[acks], return_index=True)
    return index, times[at[first]], check


def _reply_check(n: int, echo: bool, index=None, ex=None, reason=None) -> dict:
    """What orders 0 .. n-1 of an open-loop run got, from every ExecutionReport received
    (order ``index``, ``exec``, ``reason``; ``echo``: every echoed frame, as ACCEPTED): each
    should have exactly one ACCEPTED and nothing else (resting buys far below any sell; the
    echo server: the order itself, once). Counts of orders ``accepted``, ``rejected`` (and by
    reason), ``unanswered``; ``duplicates`` (second acknowledgements), ``unexpected`` (reports
    of any other kind, by kind; for the echo server none can be told apart); ``ok``."""
    if index is None:
        index = ex = reason = np.zeros(0, np.int64)
    ours = (index >= 0) & (index < n)
    acks = ours & ((ex == 1) | (ex == 2))
    answered = np.unique(index[acks])
    accepted = np.unique(index[acks & (ex == 1)])
    rejected = acks & (ex == 2)
    by_reason = {P.reason_name(int(r)): int(c)
                 for r, c in zip(*np.unique(reason[rejected], return_counts=True))}
    other = ~acks
    kinds = {int(k): k.name for k in P.ExecKind}
    by_kind = {kinds.get(int(k), str(int(k))): int(c)
               for k, c in zip(*np.unique(ex[other], return_counts=True))}
    out = {"orders": n, "accepted": int(len(accepted)),
           "rejected": int(len(np.unique(index[rejected]))), "rejected_by_reason": by_reason,
           "unanswered": int(n - len(answered)),
           "duplicates": int(np.count_nonzero(acks) - len(answered)),
           "unexpected": int(np.count_nonzero(other)), "unexpected_by_kind": by_kind}
    out["ok"] = (out["accepted"] == n and out["rejected"] == 0 and out["duplicates"] == 0
                 and out["unexpected"] == 0)
    return out


def open_loop_latency(port: int, rate: int, seconds: float, account: str | None = "A001",
                      token: str = "A001-test-token-0001", raw: bool = False) -> dict:
    """Send ``rate`` orders/s at their scheduled times for ``seconds`` on one session,
    busy-polling the socket; histogram of scheduled send -> first report (µs), and the check
    of every order's replies (``replies``, ``_reply_check``).
    ``account=None``: no logon, an echo server's round trip. ``raw``: also each answered
    order's index and round trip (µs) as arrays, under ``_index`` and ``_us``."""
    from hdrh.histogram import HdrHistogram

    echo = account is None
    n = int(rate * seconds)
    i = np.arange(n)
    f = P.order_frames(n)
    f["cl_ord_id"] = i.astype("S20")
    f["side"] = 1  # resting buys far below any sell: one report per order, the book deepening
    f["qty"] = 1
    f["price"] = 5900 + i % 50
    blob = memoryview(f.tobytes())
    expected = n * (NEW_SIZE if echo else REPORT_SIZE)
    sock = _logon(port, account, token)
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()  # a full collection in the loop would stall the client for ms
    rbuf = bytearray(1 << 20)
    chunks: list[tuple[bytes, float]] = []
    lags: list[float] = []  # how late each send call went out after its oldest order's time
    perf = time.perf_counter
    interval = 1.0 / rate
    start = perf() + 0.01
    deadline = start + seconds + 10
    due = sent_bytes = received = 0
    try:
        while True:
            now = perf()
            if due < n and now >= start + due * interval:
                lags.append(now - (start + due * interval))
                due = min(n, int((now - start) * rate) + 1)
            if sent_bytes < due * NEW_SIZE:
                try:
                    sent_bytes += sock.send(blob[sent_bytes:due * NEW_SIZE])
                except BlockingIOError:
                    pass
            try:
                k = sock.recv_into(rbuf)
            except BlockingIOError:
                if now > deadline:
                    break
                continue
            t = perf()
            if k == 0:
                break
            chunks.append((bytes(rbuf[:k]), t))
            received += k
            if received >= expected or now > deadline:
                break
    finally:
        sock.close()
        if gc_was:
            gc.enable()
    elapsed = perf() - start
    index, when, replies = _first_reports(chunks, echo, n)
    us = np.maximum(1, ((when - (start + index * interval)) * 1e6).astype(np.int64))
    hist = HdrHistogram(1, 60_000_000, 3)
    for v, c in zip(*np.unique(us, return_counts=True)):
        hist.record_value(int(v), int(c))
    lag_us = np.array(lags) * 1e6 if lags else np.zeros(1)
    extra = {"_index": index, "_us": us} if raw else {}
    return {**extra, "offered_per_s": rate, "orders": n, "received": int(index.shape[0]),
            "replies": replies,
            "achieved_per_s": round(index.shape[0] / elapsed), **_percentiles(hist),
            "send_lag_p50_us": round(float(np.percentile(lag_us, 50)), 1),
            "send_lag_p99_us": round(float(np.percentile(lag_us, 99)), 1),
            "send_lag_max_us": round(float(lag_us.max()), 1)}


# ---------------------------------------------------------------- the disk

def disk_sync_latency(directory: Path, samples: int = FDATASYNC_SAMPLES,
                      block: int = 4096) -> dict:
    """µs per (4 KiB append + fdatasync), and per (4 KiB pwrite into a preallocated,
    zero-filled and synced region + fdatasync), ``samples`` of each, in ``directory``."""
    from hdrh.histogram import HdrHistogram

    data = (b"cea-journal-probe" * (block // 16 + 1))[:block]
    out = {}
    for kind in ("append", "journal"):
        path = Path(directory) / f"fdatasync-{kind}.probe"
        hist = HdrHistogram(1, 60_000_000, 3)
        if kind == "append":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            zeros = bytes(1 << 20)
            left = samples * block
            while left > 0:
                left -= os.write(fd, zeros[:min(left, len(zeros))])
            os.fsync(fd)
        try:
            for k in range(samples):
                t0 = time.perf_counter_ns()
                if kind == "append":
                    os.write(fd, data)
                else:
                    os.pwrite(fd, data, k * block)
                os.fdatasync(fd)
                hist.record_value(max(1, (time.perf_counter_ns() - t0) // 1000))
        finally:
            os.close(fd)
            path.unlink()
        out[kind] = {"samples": samples, **_percentiles(hist)}
    return out


# ---------------------------------------------------------------- the run

def cpus_busy():
    from bench.core import cpus_busy

    return cpus_busy()


def _machine_ticks() -> tuple[int, int]:
    """(all, idle + iowait) CPU ticks of the machine so far, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(ticks), ticks[3] + ticks[4]


def _ours() -> float:
    """CPU seconds of this process and its live descendants (the servers it started)."""
    me = os.getpid()
    return sum((_cpu_s(p) or (0.0, 0.0))[0] for p in [me, *_descendants(me)])


def _with_others(fn):
    """``fn()``, and the CPUs other processes (not this one or its children) kept busy
    meanwhile: the noise of a shared machine, per measurement."""
    (t0, i0), o0, w0 = _machine_ticks(), _ours(), time.perf_counter()
    result = fn()
    (t1, i1), o1, w1 = _machine_ticks(), _ours(), time.perf_counter()
    busy = (os.cpu_count() or 1) * (1 - (i1 - i0) / (t1 - t0)) if t1 > t0 else 0.0
    result["others_cpus_busy"] = round(max(0.0, busy - (o1 - o0) / (w1 - w0)), 2)
    return result


def _targets(out: dict) -> list[dict]:
    """(figure, target) of each goal, as ratios to the same run's figures."""
    fd50, fd99 = out["fdatasync_p50_us"], out["fdatasync_p99_us"]
    rows = [
        ("orders_per_s", out["orders_per_s"], ">=", 500_000, "500,000"),
        ("orders_per_s", out["orders_per_s"], ">=", out["bare_msgspec_orders_per_s"],
         "bare_msgspec_orders_per_s"),
        ("rtt_p50_us", out["rtt_p50_us"], "<=", fd50 + 150, "fdatasync_p50 + 150"),
        ("rtt_p99_us", out["rtt_p99_us"], "<=", max(1000, fd99 + 500),
         "max(1000, fdatasync_p99 + 500)"),
        ("rtt_fsync_off_p50_us", out["rtt_fsync_off_p50_us"], "<=", 120, "120"),
    ]
    return [{"figure": name, "value": value, "op": op, "target": target, "rule": rule,
             "ratio": round(value / target, 3) if target else None,
             "met": value >= target if op == ">=" else value <= target}
            for name, value, op, target, rule in rows]


def run_gateway_benchmark(orders: int = 200_000, rate: int = 10_000, seconds: float = 5.0,
                          json_path: Path | None = None, echo=print, pin: bool = True,
                          web: bool = False) -> dict:
    """All the figures of the module's docstring, in one run; printed through ``echo`` and
    written to ``json_path``. ``pin``: the open-loop runs with the client and the server on
    different CPUs (``pinned``). ``web``: the pipelined run and the fsync-on round trips once
    more on a server with its web view on and watched (``web``: side by side)."""
    out: dict = {"fsync": "on", "cpu_tick_ms": 1000 / _TICK}
    replies: dict[str, dict] = {}  # per run: what the orders got (every one accepted, once)
    busy = cpus_busy()
    out["cpus_busy_before"] = busy
    echo(f"machine: {os.cpu_count()} CPUs; other processes kept {busy} CPUs busy over 0.5 s "
         "before the run" + (" (the figures may be inflated)" if busy and busy > 0.3 else ""))
    with tempfile.TemporaryDirectory(prefix="cea-bench-gw-") as root:
        root = Path(root)
        disk = disk_sync_latency(root)
        out["disk"] = disk
        out["fdatasync_p50_us"] = disk["append"]["p50_us"]
        out["fdatasync_p99_us"] = disk["append"]["p99_us"]
        out["journal_sync_p50_us"] = disk["journal"]["p50_us"]
        out["journal_sync_p99_us"] = disk["journal"]["p99_us"]
        for kind, what in (("append", "4 KiB append + fdatasync"),
                           ("journal", "4 KiB pwrite in preallocated + fdatasync")):
            d = disk[kind]
            echo(f"disk ({root.parent}), {what}: p50 {d['p50_us']} us, p90 {d['p90_us']}, "
                 f"p99 {d['p99_us']}, max {d['max_us']} ({d['samples']:,} samples)")

        with running_server(True, root) as (port, pid):
            tp = _with_others(lambda: pipelined_throughput(port, orders, server_pid=pid))
        out["orders_per_s"] = tp["orders_per_s"]
        out["pipelined"] = tp
        out["server_cpu_us_per_order"] = tp.get("server_cpu_us_per_order")
        out["ledger_cpu_us_per_order"] = tp.get("ledger_cpu_us_per_order")
        echo(f"pipelined, fsync on: {tp['orders']:,} orders in {tp['seconds']} s = "
             f"{tp['orders_per_s']:,} orders/s acknowledged (other processes: "
             f"{tp['others_cpus_busy']} CPUs)")
        if "server_cpu_s" in tp:
            echo(f"  server CPU {tp['server_cpu_us_per_order']} us/order "
                 f"({100 * tp['server_cpu_share']:.0f} % of a core), ledger process "
                 f"{tp['ledger_cpu_us_per_order']} us/order during the run, "
                 f"{tp['ledger_cpu_us_per_order_with_catch_up']} with its catch-up "
                 f"({tp['ledger_catch_up_s']} s)")
        echo(f"  client CPU {tp['client_cpu_us_per_order']} us/order "
             f"({100 * tp['client_cpu_share']:.0f} % of a core): its ceiling "
             f"{tp['client_ceiling_orders_per_s']:,} orders/s")
        replies["pipelined"] = _pipelined_replies(tp)
        echo("  replies: " + _show_replies(replies["pipelined"]))

        for msgpack, key, what in (
                (True, "bare_msgspec", "bare msgspec server (the issue's comparator: msgpack "
                 "frames decoded by msgspec, one FastBook call per read, acks by msgspec)"),
                (False, "bare_binary", "bare binary server (this protocol, NumPy decoding, "
                 "one FastBook call per read, acks only: the floor)")):
            with bare_server(msgpack=msgpack) as (port, pid):
                before = _cpu_s(pid)
                bare = _with_others(lambda: pipelined_throughput(port, orders, msgpack=msgpack))
                after = _cpu_s(pid)
            if before and after:
                bare["server_cpu_us_per_order"] = round(
                    1e6 * (after[0] - before[0]) / bare["orders"], 2)
            out[f"{key}_orders_per_s"] = bare["orders_per_s"]
            out[key] = bare
            echo(f"pipelined, {what}: {bare['orders_per_s']:,} orders/s; its CPU "
                 f"{bare.get('server_cpu_us_per_order')} us/order; client CPU "
                 f"{bare['client_cpu_us_per_order']} us/order "
                 f"({100 * bare['client_cpu_share']:.0f} % of a core; other processes: "
                 f"{bare['others_cpus_busy']} CPUs)")
            replies[key] = _pipelined_replies(bare)
            echo("  replies: " + _show_replies(replies[key]))

        def show(what, lat):
            echo(f"open loop {rate:,}/s for {seconds} s, {what}: p50 {lat['p50_us']} us, "
                 f"p90 {lat['p90_us']}, p99 {lat['p99_us']}, p99.9 {lat['p999_us']}, max "
                 f"{lat['max_us']} ({lat['received']:,}/{lat['orders']:,} answered; send lag "
                 f"p99 {lat['send_lag_p99_us']} us; other processes: "
                 f"{lat['others_cpus_busy']} CPUs)")
            echo("  replies: " + _show_replies(lat["replies"]))

        with bare_server(echo=True) as (port, pid), pinned(pid if pin else None) as where:
            lb = _with_others(lambda: open_loop_latency(port, rate, seconds, account=None))
        out["open_loop_placement"] = where or "free"
        echo("open loop: " + (f"client on CPU {where['client_cpus']}, server on CPUs "
                              f"{where['server_cpus']}, its child processes on CPUs "
                              f"{where['server_children_cpus']}" if where else
                              "client and server wherever the scheduler puts them"))
        out["loopback_rtt"] = lb
        replies["loopback_rtt"] = lb["replies"]
        out["loopback_rtt_p50_us"] = lb["p50_us"]
        out["loopback_rtt_p99_us"] = lb["p99_us"]
        show("uvloop echo server (loopback floor)", lb)
        for fsync in (True, False):
            with running_server(fsync, root) as (port, pid), pinned(pid if pin else None):
                lat = _with_others(lambda: open_loop_latency(port, rate, seconds))
            out["rtt" if fsync else "rtt_fsync_off"] = lat
            replies["rtt" if fsync else "rtt_fsync_off"] = lat["replies"]
            show(f"cea serve, fsync {'on' if fsync else 'off'}", lat)
        if web:
            out["web"] = _web_runs(root, orders, rate, seconds, pin, out, replies, echo)
    out["rtt_p50_us"] = out["rtt"]["p50_us"]
    out["rtt_p99_us"] = out["rtt"]["p99_us"]
    out["rtt_offered_per_s"] = rate
    out["rtt_fsync_off_p50_us"] = out["rtt_fsync_off"]["p50_us"]
    out["rtt_fsync_off_p99_us"] = out["rtt_fsync_off"]["p99_us"]
    out["targets"] = _targets(out)
    echo("targets (against this run's own figures):")
    for t in out["targets"]:
        echo(f"  {t['figure']} {t['value']:,} {t['op']} {t['rule']} = {t['target']:,}: "
             f"{'met' if t['met'] else 'NOT met'} (ratio {t['ratio']})")
    out["replies"] = replies
    out["replies_ok"] = all(r["ok"] for r in replies.values())
    bad = [name for name, r in replies.items() if not r["ok"]]
    echo("replies: every order accepted, once, in every run" if not bad else
         f"replies: NOT as they should be in {', '.join(bad)}: the figures of those runs "
         "count orders that were not accepted")
    if json_path is not None:
        Path(json_path).write_text(json.dumps(out, indent=2) + "\n")
        echo(f"wrote {json_path}")
    if bad:
        raise SystemExit("cea: error: orders rejected, unanswered or answered twice in "
                         + "; ".join(f"{name}: {_show_replies(replies[name])}" for name in bad))
    return out


def _web_runs(root: Path, orders: int, rate: int, seconds: float, pin: bool, out: dict,
              replies: dict, echo) -> dict:
    """The pipelined run and the round trips (fsync on and off) again, the server serving its
    web view to one watching viewer; side by side with the same runs without it (``out``)."""
    viewer: dict = {}
    with running_server(True, root, viewer=viewer) as (port, pid):
        tp = _with_others(lambda: pipelined_throughput(port, orders, server_pid=pid))
    replies["pipelined_web"] = _pipelined_replies(tp)
    viewer_rtt: dict = {}
    with running_server(True, root, viewer=viewer_rtt) as (port, pid), \
            pinned(pid if pin else None):
        lat = _with_others(lambda: open_loop_latency(port, rate, seconds))
    replies["rtt_web"] = lat["replies"]
    viewer_off: dict = {}
    with running_server(False, root, viewer=viewer_off) as (port, pid), \
            pinned(pid if pin else None):
        off = _with_others(lambda: open_loop_latency(port, rate, seconds))
    replies["rtt_fsync_off_web"] = off["replies"]
    base, rtt, rtt_off = out["pipelined"], out["rtt"], out["rtt_fsync_off"]
    w = {"pipelined": tp, "rtt": lat, "viewer_pipelined": viewer, "viewer_rtt": viewer_rtt,
         "orders_per_s": tp["orders_per_s"], "orders_per_s_without": base["orders_per_s"],
         "orders_per_s_ratio": round(tp["orders_per_s"] / base["orders_per_s"], 3),
         "server_cpu_us_per_order": tp.get("server_cpu_us_per_order"),
         "server_cpu_us_per_order_without": base.get("server_cpu_us_per_order"),
         "rtt_p50_us": lat["p50_us"], "rtt_p50_us_without": rtt["p50_us"],
         "rtt_p99_us": lat["p99_us"], "rtt_p99_us_without": rtt["p99_us"],
         "rtt_fsync_off": off, "viewer_rtt_fsync_off": viewer_off,
         "rtt_fsync_off_p50_us": off["p50_us"], "rtt_fsync_off_p50_us_without": rtt_off["p50_us"],
         "rtt_fsync_off_p99_us": off["p99_us"],
         "rtt_fsync_off_p99_us_without": rtt_off["p99_us"]}
    echo(f"web view on, one viewer watching: pipelined {w['orders_per_s']:,} orders/s "
         f"(without: {w['orders_per_s_without']:,}; ratio {w['orders_per_s_ratio']}), server "
         f"CPU {w['server_cpu_us_per_order']} us/order (without: "
         f"{w['server_cpu_us_per_order_without']}); the viewer got {viewer.get('updates')} "
         f"updates, {viewer.get('bytes', 0):,} bytes")
    echo(f"  open loop {rate:,}/s, fsync on: p50 {lat['p50_us']} us, p99 {lat['p99_us']}, "
         f"p99.9 {lat['p999_us']}, max {lat['max_us']} (without: p50 {rtt['p50_us']}, p99 "
         f"{rtt['p99_us']}, p99.9 {rtt['p999_us']}, max {rtt['max_us']}); the viewer got "
         f"{viewer_rtt.get('updates')} updates, {viewer_rtt.get('bytes', 0):,} bytes")
    echo(f"  open loop {rate:,}/s, fsync off: p50 {off['p50_us']} us, p99 {off['p99_us']}, "
         f"p99.9 {off['p999_us']}, max {off['max_us']} (without: p50 {rtt_off['p50_us']}, p99 "
         f"{rtt_off['p99_us']}, p99.9 {rtt_off['p999_us']}, max {rtt_off['max_us']}); the "
         f"viewer got {viewer_off.get('updates')} updates, {viewer_off.get('bytes', 0):,} bytes")
    for name in ("pipelined_web", "rtt_web", "rtt_fsync_off_web"):
        echo(f"  replies, {name}: " + _show_replies(replies[name]))
    return w


def _pipelined_replies(run: dict) -> dict:
    """The reply check of a pipelined run, in ``_reply_check``'s terms."""
    out = {"orders": run["orders"], "accepted": run["accepted"],
           "rejected": run["rejected_orders"], "rejected_by_reason": run["rejected"],
           "unanswered": run["unanswered"], "duplicates": run["extra_replies"],
           "unexpected": 0, "unexpected_by_kind": {}}
    out["ok"] = bool(run["replies_ok"])
    return out


def _show_replies(r: dict) -> str:
    text = (f"{r['accepted']:,} of {r['orders']:,} orders accepted, {r['rejected']:,} rejected"
            + (f" {r['rejected_by_reason']}" if r["rejected_by_reason"] else "")
            + f", {r['unanswered']:,} unanswered, {r['duplicates']:,} answered twice, "
            f"{r['unexpected']:,} unexpected reports"
            + (f" {r['unexpected_by_kind']}" if r["unexpected_by_kind"] else ""))
    return text + ("" if r["ok"] else " (NOT OK)")
