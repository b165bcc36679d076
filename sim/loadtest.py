"""``cea loadtest``: open-loop load against ``cea serve`` on loopback, latency in HdrHistograms.

Open loop: every order has a scheduled send time (``rate`` per second, spread over the
sessions) and is sent then, whatever the replies; its latency is measured from that
scheduled time, so a server that falls behind shows it in full (no coordinated omission).

Sessions come in pairs: a buyer resting DAY buys at 60.00 and a seller sending IOC sells at
60.00, so about every sell trades on arrival. Measured per order: scheduled send to its first
report (ACCEPTED or REJECTED, ``ack``), and for the IOC sells, scheduled send to their fill
report (``fill``). Several processes (``processes``) share the load when one cannot offer it.
Everything is bounded: loopback only, at most ``MAX_SECONDS`` per run and ``MAX_RATE``
orders/s.

The tester is built not to be the bottleneck it measures (one process offers 1 M orders/s):

- **sending**: each session's orders are binary NewOrder frames (``P.order_frames``) built in
  NumPy ``CHUNK`` at a time (cl_ord_id = the run's tag + the order's index in fixed-width
  decimal), so memory stays bounded whatever the rate and duration; each step sends every
  order now due on a session as one slice of those bytes (one ``send``), non-blocking. Order
  ``i`` is due at ``start + i / rate`` and goes on session ``i mod sessions``; what the kernel
  does not take (the server pushing back) goes in the next step, still timed from its schedule.
- **receiving**: whatever one ``recv`` brought goes through one compiled call
  (``_take_reports``, Numba, with ``gateway.wire``'s field readers' layout): it walks the
  frames, reads each report's order index from its cl_ord_id digits, computes the latency
  from the order's scheduled time and counts it straight into the HdrHistogram's bucket array
  (``LatencyRecorder``, fed to ``hdrh`` once per non-empty bucket at the end), with one
  acknowledgement per order (a byte per order says which were answered). No Python per
  order or per report; other frames are skipped, an ``Error`` stops the run.
- **waiting**: the sockets are busy-polled (``poll`` with a zero timeout, ``sched_yield``
  between polls so a server sharing the core still runs) while the next send is due within
  ``SPIN_S``, so the tester's own wakeups do not inflate the latency; further away it blocks
  in ``poll`` until a reply or ``SPIN_S`` before the next send. While the server pushes back
  (the kernel takes no more), it waits in ``poll`` for the socket to be writable.

What the tester itself costs is in each run's ``tester``: CPU share, time spent sending and
taking reports, CPU µs per order, sends the kernel refused, and the send lag (how late each
order left against its schedule; large only when the server pushes back or the tester could
not keep up). ``sink_server`` is a trivial loopback server in a child process that answers
every order at once with reports built in compiled code (no matching, no journal): against
it, the figures are the tester's own (one process offers and takes 1 M orders/s).
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import re
import secrets
import select
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numba import njit

from engine.codes import Side, TimeInForce
from gateway import protocol as P
from gateway.wire import put_report, rd_i64, rd_u16, rd_u32

MAX_SECONDS = 60.0
MAX_RATE = 1_000_000
HOST = "127.0.0.1"  # loopback only, by design
PRICE = 6000
INSTRUMENT = "CEA"
#: Digits of the order index in a cl_ord_id (MAX_RATE * MAX_SECONDS < 10**ID_DIGITS).
ID_DIGITS = 8
#: Orders per session encoded at a time (bounded memory; ~140 µs of NumPy per chunk).
CHUNK = 4096
#: Busy-poll while the next send is due within this many seconds; block in poll beyond.
SPIN_S = 0.001
#: While spinning, give the core to any other runnable process (the server on a small
#: machine) between polls.
YIELD = hasattr(os, "sched_yield")
#: After the last send, how long to wait for the outstanding acknowledgements.
ACK_GRACE_S = 10.0
#: Bytes of one session's receive buffer (one recv reads at most this much).
RECV_BYTES = 1 << 21
#: Latencies kept in histograms: 1 µs .. 60 s, 3 significant digits.
LOWEST_US, HIGHEST_US = 1, 60_000_000

_F = P.NEW_ORDER.itemsize  # bytes of one NewOrder frame
_R = P.EXECUTION_REPORT.itemsize  # bytes of one ExecutionReport frame
_CLID_AT = P.EXECUTION_REPORT.fields["cl_ord_id"][1]
_NO_CLID_AT = P.NEW_ORDER.fields["cl_ord_id"][1]
_NO_INSTRUMENT_AT = P.NEW_ORDER.fields["instrument"][1]
_NO_SIDE_AT = P.NEW_ORDER.fields["side"][1]
_NO_QTY_AT = P.NEW_ORDER.fields["qty"][1]
_NO_PRICE_AT = P.NEW_ORDER.fields["price"][1]
_T_NEW = int(P.MsgType.NEW_ORDER)
_MAX_FRAME = P.MAX_FRAME
_EXEC_AT = P.EXECUTION_REPORT.fields["exec"][1]
_REASON_AT = P.EXECUTION_REPORT.fields["reason"][1]
_SIDE_AT = P.EXECUTION_REPORT.fields["side"][1]
_T_REPORT = int(P.MsgType.EXECUTION_REPORT)
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
_T_ERROR = int(P.MsgType.ERROR)
_THROTTLED = int(P.GatewayReason.THROTTLED)
#: The four ASCII digits of 0 .. 9999 (an order index is two rows of this).
_DIGITS4 = ((np.arange(10_000)[:, None] // np.array([1000, 100, 10, 1])) % 10
            + ord("0")).astype(np.uint8)
assert MAX_RATE * MAX_SECONDS < 10**ID_DIGITS and ID_DIGITS == 8


def _u16(buf: np.ndarray, p: int) -> int:
    return int(buf[p]) | int(buf[p + 1]) << 8


def _histogram():
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(LOWEST_US, HIGHEST_US, 3)


class LatencyRecorder:
    """µs values recorded into the buckets of an HdrHistogram (``_histogram()``) without a
    Python call per value: each value's counts index is the histogram's own formula,
    vectorised (``add``: ``np.bincount``) or compiled (``_record``, from ``_take_reports``);
    ``histogram()`` feeds the HdrHistogram once per non-empty bucket (exact min and max
    kept), so it equals recording every value one by one.

    >>> r = LatencyRecorder(); r.add(np.array([5, 1000, 1001, 70_000_000]))  # clipped to 60 s
    >>> h = r.histogram(); h.get_total_count(), h.get_min_value(), h.get_value_at_percentile(50)
    (4, 5, 1000)
    """

    STAGE = 1 << 16

    def __init__(self):
        h = _histogram()
        self._mask = h.sub_bucket_mask
        self._unit = h.unit_magnitude
        self._half_mag = h.sub_bucket_half_count_magnitude
        self._half = h.sub_bucket_half_count
        #: the index formula's constants, for compiled code (``_record``)
        self.params = np.array([self._mask, self._unit, self._half_mag, self._half], np.int64)
        self.counts = np.zeros(h.counts_len, np.int64)
        self.mm = np.array([HIGHEST_US + 1, 0], np.int64)  # min and max recorded
        self._values = np.empty(self.STAGE, np.int64)
        self._weights = np.empty(self.STAGE, np.int64)
        self._n = 0

    def index(self, values: np.ndarray) -> np.ndarray:
        """The HdrHistogram counts index of each value (``get_counts_array_index``)."""
        v = values.astype(np.int64, copy=False)
        bits = np.frexp((v | self._mask).astype(np.float64))[1].astype(np.int64)  # bit length
        bucket = bits - self._unit - (self._half_mag + 1)
        sub = v >> (bucket + self._unit)
        return ((bucket + 1) << self._half_mag) + sub - self._half

    def add(self, us: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Record ``us`` (any integers; clipped to the histogram's range), each ``weights``
        times (default once)."""
        if not len(us):
            return
        v = np.clip(us, LOWEST_US, HIGHEST_US)
        self.mm[0] = min(self.mm[0], v.min())
        self.mm[1] = max(self.mm[1], v.max())
        self.counts += np.bincount(self.index(v), weights, minlength=len(self.counts)).astype(
            np.int64, copy=False)

    def add_one(self, us: float, weight: int) -> None:
        """One value ``weight`` times, staged (cheap per call; counted in batches)."""
        if self._n == self.STAGE:
            self.flush()
        self._values[self._n] = us
        self._weights[self._n] = weight
        self._n += 1

    def flush(self) -> None:
        if self._n:
            n, self._n = self._n, 0
            self.add(self._values[:n], self._weights[:n])

    def histogram(self):
        self.flush()
        h = _histogram()
        nz = np.flatnonzero(self.counts)
        if not len(nz):
            return h
        lo, hi = int(nz[0]), int(nz[-1])
        vmin, vmax = int(self.mm[0]), int(self.mm[1])
        for i, c in zip(nz.tolist(), self.counts[nz].tolist()):
            if i == lo and i == hi:
                if c > 1:
                    h.record_value(vmin, c - 1)
                h.record_value(vmax, 1)
            elif i == lo:
                h.record_value(vmin, c)
            elif i == hi:
                h.record_value(vmax, c)
            else:
                h.record_value(h.get_value_from_index(i), c)
        return h

    def percentiles(self) -> dict:
        return percentiles(self.histogram())


# ---------------------------------------------------------------- receiving, compiled

#: ``stats`` slots of ``_take_reports``.
ACKED, DUPLICATES, REJECTED, THROTTLED, FILLED, FOREIGN = range(6)


@njit(cache=True, _nrt=False, inline="always")
def _record(counts, mm, hp, v):
    """One value into ``LatencyRecorder`` arrays (``hp``: its ``params``)."""
    if v < LOWEST_US:
        v = LOWEST_US
    if v > HIGHEST_US:
        v = HIGHEST_US
    bits = math.frexp(float(v | hp[0]))[1]  # bit length
    bucket = bits - hp[1] - (hp[2] + 1)
    counts[((bucket + 1) << hp[2]) + (v >> (bucket + hp[1])) - hp[3]] += 1
    if v < mm[0]:
        mm[0] = v
    if v > mm[1]:
        mm[1] = v


@njit(cache=True, _nrt=False)
def _take_reports(buf, end, t_rel, interval, tag, seen, ack_counts, ack_mm, fill_counts,
                  fill_mm, hp, stats):
    """Walk the server's frames in ``buf[:end]``: for each ExecutionReport of this run (its
    cl_ord_id is ``tag`` + ``ID_DIGITS`` digits: the order's index ``i``), the latency from
    the order's scheduled send (``i * interval``) to ``t_rel`` (both from the run's start),
    recorded as acknowledgement (the first ACCEPTED/REJECTED of the order) or fill (a sell's
    FILL/PARTIAL_FILL); counts in ``stats``. Other frames are skipped. Returns (offset after
    the last complete frame, offset of a frame Python must read (Error, length 0) or -1)."""
    T = tag.shape[0]
    n = seen.shape[0]
    p = 0
    while end - p >= 2:
        length = np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
        if length == 0:
            return p, p
        if p + 2 + length > end:
            break
        kind = buf[p + 2]
        if kind == _T_REPORT and length == _R - 2:
            q = p + _CLID_AT
            ok = True
            for k in range(T):
                if buf[q + k] != tag[k]:
                    ok = False
                    break
            i = 0
            if ok:
                for k in range(ID_DIGITS):
                    c = np.int64(buf[q + T + k]) - 48
                    if c < 0 or c > 9:
                        ok = False
                        break
                    i = i * 10 + c
            if not ok or i >= n:
                stats[FOREIGN] += 1
            else:
                us = np.int64((t_rel - i * interval) * 1e6)
                ex = buf[p + _EXEC_AT]
                if ex == 1 or ex == 2:  # ACCEPTED, REJECTED: the acknowledgement
                    if seen[i]:
                        stats[DUPLICATES] += 1
                    else:
                        seen[i] = 1
                        stats[ACKED] += 1
                        _record(ack_counts, ack_mm, hp, us)
                        if ex == 2:
                            stats[REJECTED] += 1
                            if buf[p + _REASON_AT] == _THROTTLED:
                                stats[THROTTLED] += 1
                elif (ex == 3 or ex == 4) and buf[p + _SIDE_AT] == 2:  # the IOC sell traded
                    stats[FILLED] += 1
                    _record(fill_counts, fill_mm, hp, us)
        elif kind == _T_ERROR:
            return p, p
        p += 2 + length
    return p, -1


# ---------------------------------------------------------------- one session

class _Session:
    """One logged-on connection of a worker: the order stream it sends (session ``s`` of
    ``S`` carries orders ``i = j * S + s``), built ``CHUNK`` at a time, and its receive
    buffer."""

    def __init__(self, sock: socket.socket, s: int, S: int, side: int, n: int, tag: bytes,
                 instrument: int, pending: bytes):
        self.sock, self.s, self.S, self.side = sock, s, S, side
        self.n = (n - s + S - 1) // S if n > s else 0  # orders of this session
        self.total_b = self.n * _F
        frames = P.order_frames(CHUNK)
        frames["instrument"] = instrument
        frames["side"] = side
        frames["tif"] = TimeInForce.DAY if side == Side.BUY else TimeInForce.IOC
        frames["qty"] = 1
        frames["price"] = PRICE
        self.raw = frames.view(np.uint8).reshape(CHUNK, _F)
        self.raw[:, _NO_CLID_AT:_NO_CLID_AT + len(tag)] = np.frombuffer(tag, np.uint8)
        self._digits = _NO_CLID_AT + len(tag)
        self.flat = memoryview(self.raw.reshape(-1))
        self.chunk = -1  # which chunk ``raw`` holds
        self.chunk_lo = self.chunk_hi = 0  # its bytes in the session's stream
        self.pos = 0  # bytes of the stream sent
        self.blocked = 0  # sends the kernel did not take in full
        self.rbuf = np.zeros(RECV_BYTES, np.uint8)
        self.rview = memoryview(self.rbuf)
        self.have = len(pending)
        self.rbuf[:self.have] = np.frombuffer(pending, np.uint8)
        self._build(0)

    def _build(self, c: int) -> None:
        """Chunk ``c``: orders ``j`` in ``[c*CHUNK, (c+1)*CHUNK)``, their digits only (the
        rest of the frames never changes)."""
        j0 = c * CHUNK
        m = min(CHUNK, self.n - j0)
        if m > 0:
            i = np.arange(j0, j0 + m, dtype=np.int64) * self.S + self.s
            d = self._digits
            self.raw[:m, d:d + 4] = _DIGITS4[i // 10_000]
            self.raw[:m, d + 4:d + 8] = _DIGITS4[i % 10_000]
        self.chunk = c
        self.chunk_lo = j0 * _F
        self.chunk_hi = (j0 + max(m, 0)) * _F

    def due_bytes(self, due: int) -> int:
        """Bytes of the stream due when orders ``0 .. due-1`` (all sessions) are due."""
        return min(self.n, (due - self.s + self.S - 1) // self.S) * _F if due > self.s else 0

    def send(self, upto: int) -> int:
        """Send the stream up to byte ``upto`` (one chunk at most): bytes sent, -1 if the
        kernel took nothing."""
        if self.pos >= self.chunk_hi:
            self._build(self.chunk + 1)
        stop = min(upto, self.chunk_hi)
        try:
            k = self.sock.send(self.flat[self.pos - self.chunk_lo:stop - self.chunk_lo])
        except (BlockingIOError, InterruptedError):
            self.blocked += 1
            return -1
        if k < stop - self.pos:
            self.blocked += 1
        self.pos += k
        return k


def _connect(port: int, account: str, token: str) -> tuple[socket.socket, P.LogonAck, bytes]:
    """A session logged on (blocking, 30 s at most), then non-blocking; also returns what
    came after the LogonAck."""
    sock = socket.create_connection((HOST, port), timeout=30)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, 1 << 21)
        sock.sendall(P.encode(P.Logon(account, token, True, 60_000)))
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + (buf[0] | buf[1] << 8):
            data = sock.recv(65536)
            if not data:
                raise RuntimeError(f"{account}: the server closed the connection during logon")
            buf += data
        msg = P.FrameReader(P.SERVER).decode_frame(buf, 0)
        if isinstance(msg, P.LogonReject):
            raise RuntimeError(f"{account}: logon refused: {msg.text}")
        if not isinstance(msg, P.LogonAck):
            raise RuntimeError(f"{account}: logon answered with {msg!r}")
        sock.setblocking(False)
        return sock, msg, buf[2 + (buf[0] | buf[1] << 8):]
    except BaseException:
        sock.close()
        raise


# ---------------------------------------------------------------- one process

def run_worker(port: int, rate: float, seconds: float, pairs: list[tuple[tuple[str, str],
               tuple[str, str]]], tag: str) -> dict:
    """One process: ``pairs`` of ((buyer, token), (seller, token)) sessions sharing ``rate``.
    ``tag`` prefixes every cl_ord_id (then ``ID_DIGITS`` digits of the order's index): it
    must make the ids of this run unique on the server."""
    tag_b = tag.encode("ascii")
    if len(tag_b) + ID_DIGITS > P.CLID_BYTES:
        raise ValueError(f"tag {tag!r}: at most {P.CLID_BYTES - ID_DIGITS} characters")
    P.encode_clid(tag + "0" * ID_DIGITS)  # printable, no spaces
    _warm()
    n = int(rate * seconds)
    S = 2 * len(pairs)
    sessions: list[_Session] = []
    try:
        for (buyer, btok), (seller, stok) in pairs:
            for account, token, side in ((buyer, btok, Side.BUY), (seller, stok, Side.SELL)):
                sock, ack, rest = _connect(port, account, token)
                instrument = ack.instruments.index(INSTRUMENT) if INSTRUMENT in ack.instruments \
                    else 0
                sessions.append(_Session(sock, len(sessions), S, int(side), n, tag_b,
                                         instrument, rest))
        return _run(sessions, n, rate, seconds, tag_b)
    finally:
        for sess in sessions:
            sess.sock.close()


def _warm() -> None:
    """Compile or load the receive kernel now (Numba does it on the first call), not in the
    run."""
    r = LatencyRecorder()
    _take_reports(np.zeros(2, np.uint8), 0, 0.0, 1.0, np.zeros(1, np.uint8),
                  np.zeros(1, np.uint8), r.counts, r.mm, r.counts, r.mm, r.params,
                  np.zeros(8, np.int64))


def _run(sessions: list[_Session], n: int, rate: float, seconds: float, tag_b: bytes) -> dict:
    """The send/receive loop of ``run_worker``."""
    interval = 1.0 / rate
    ack, fill, lag = LatencyRecorder(), LatencyRecorder(), LatencyRecorder()
    seen = np.zeros(max(n, 1), np.uint8)  # per order: acknowledged yet
    stats = np.zeros(8, np.int64)
    tag_row = np.frombuffer(tag_b, np.uint8).copy()
    hp = ack.params
    decoder = P.FrameReader(P.SERVER)
    batches = 0
    poller = select.poll()
    by_fd = {}
    for sess in sessions:
        poller.register(sess.sock.fileno(), select.POLLIN)
        by_fd[sess.sock.fileno()] = sess
    clock = time.perf_counter
    start = clock() + 0.05
    deadline = start + seconds + ACK_GRACE_S
    last_send = start
    steps = sends = 0
    work_s = 0.0  # time spent sending and taking reports (not polling for nothing)
    cpu0 = time.process_time()
    done_sending = n == 0
    pending = False
    due = 0
    now = clock()
    while True:
        active = False
        # ---- send: every session's orders due now, one slice each
        if not done_sending and now >= start:
            due = min(n, int((now - start) * rate) + 1)
            pending = False
            for sess in sessions:
                upto = sess.due_bytes(due)
                if sess.pos < upto:
                    first = sess.pos // _F  # the oldest order not yet (fully) sent
                    sends += 1
                    if sess.send(upto) > 0:
                        active = True
                        whole = (sess.pos // _F) - first
                        if whole:
                            lag.add_one((now - start - (first * sess.S + sess.s) * interval)
                                        * 1e6, whole)
                    if sess.pos < upto:
                        pending = True
            if not pending:
                last_send = now
                if due >= n:
                    done_sending = True
            if active:
                work_s += clock() - now
        # ---- receive: whatever arrived, through the compiled kernel
        for fd, ev in poller.poll(0):
            if not ev & _READABLE:
                continue  # writable again: the send above retries next step
            sess = by_fd[fd]
            t0 = clock()
            try:
                k = sess.sock.recv_into(sess.rview[sess.have:])
            except (BlockingIOError, InterruptedError):
                continue
            if k == 0:
                raise RuntimeError("the server closed a session")
            t = clock()
            active = True
            batches += 1
            end = sess.have + k
            buf = sess.rbuf
            stop, at = _take_reports(buf, end, t - start, interval, tag_row, seen, ack.counts,
                                     ack.mm, fill.counts, fill.mm, hp, stats)
            if at >= 0:
                size = _u16(buf, at)
                if size == 0:
                    raise P.ProtocolError("frame length 0 from the server")
                msg = decoder.decode_frame(bytes(buf[at:at + 2 + size]), 0)
                raise RuntimeError(f"the server sent {msg!r}")
            rest = end - stop
            if rest:
                buf[:rest] = buf[stop:end]
            sess.have = rest
            work_s += clock() - t0
        # ---- done, or wait
        after = clock()
        steps += 1
        if done_sending and stats[ACKED] >= n:
            break
        if after >= deadline:
            break
        if not active:
            if pending:  # the server pushes back: wait until a session can take more
                blocked = [sess for sess in sessions if sess.pos < sess.due_bytes(due)]
                for sess in blocked:
                    poller.modify(sess.sock, select.POLLIN | select.POLLOUT)
                poller.poll(SPIN_S * 1000)
                for sess in blocked:
                    poller.modify(sess.sock, select.POLLIN)
            else:
                nxt = deadline if done_sending else max(start, start + due * interval)
                wait = nxt - after - SPIN_S
                if wait > 0:
                    poller.poll(min(wait, 0.05) * 1000)
                elif YIELD:
                    os.sched_yield()  # spinning: let the server have this core if it wants
        now = clock()
    elapsed = clock() - start
    cpu = time.process_time() - cpu0
    sent = sum(sess.pos // _F for sess in sessions)
    send_s = max(last_send - start + interval, interval)
    acked = int(stats[ACKED])
    counts = {"sent": sent, "acked": acked, "filled": int(stats[FILLED]),
              "rejected": int(stats[REJECTED]), "throttled": int(stats[THROTTLED]),
              "duplicates": int(stats[DUPLICATES]), "unanswered": sent - acked}
    tester = {"cpu_s": round(cpu, 3), "elapsed_s": round(elapsed, 3),
              "send_s": round(send_s, 3), "busy_s": round(work_s, 3),
              "steps": steps, "sends": sends, "recv_batches": batches,
              "blocked_sends": sum(sess.blocked for sess in sessions),
              "foreign_reports": int(stats[FOREIGN]), "send_lag": lag.percentiles()}
    return {"counts": counts, "elapsed": elapsed, "tester": tester,
            "ack": ack.histogram().encode().decode(), "fill": fill.histogram().encode().decode()}


def _worker_entry(args):
    return run_worker(*args)


def percentiles(hist) -> dict:
    if hist.get_total_count() == 0:
        return {}
    return {"p50_us": hist.get_value_at_percentile(50),
            "p90_us": hist.get_value_at_percentile(90),
            "p99_us": hist.get_value_at_percentile(99),
            "p999_us": hist.get_value_at_percentile(99.9),
            "max_us": hist.get_max_value(), "count": hist.get_total_count()}


def _base36(v: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        v, r = divmod(v, 36)
        out = digits[r] + out
        if not v:
            return out


def run_tag(k: int = 0, now_ms: int | None = None) -> str:
    """The cl_ord_id prefix of process ``k`` of a run: ``L``, the run's start in ms (base 36,
    last 7 characters: unique for 2.5 years), ``k`` in base 36: 9 characters, so
    ``tag + ID_DIGITS`` digits fit the 20 of a cl_ord_id."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return f"L{_base36(ms)[-7:].rjust(7, '0')}{_base36(k)}"


def load(port: int, rate: int, seconds: float, pairs: list, processes: int = 1) -> dict:
    """One open-loop run; ``pairs`` of sessions are split over ``processes``."""
    from hdrh.histogram import HdrHistogram

    if not 0 < rate <= MAX_RATE or not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"rate must be 1..{MAX_RATE}/s and duration 0..{MAX_SECONDS} s")
    processes = max(1, min(processes, len(pairs), 36))
    shares = [pairs[i::processes] for i in range(processes)]
    ms = time.time_ns() // 1_000_000
    jobs = [(port, rate * len(share) / len(pairs), seconds, share, run_tag(k, ms))
            for k, share in enumerate(shares)]
    if processes == 1:
        results = [run_worker(*jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.map(_worker_entry, jobs)
    ack, fill = _histogram(), _histogram()
    counts: dict[str, int] = {}
    for r in results:
        ack.add(HdrHistogram.decode(r["ack"].encode()))
        fill.add(HdrHistogram.decode(r["fill"].encode()))
        for k, v in r["counts"].items():
            counts[k] = counts.get(k, 0) + v
    elapsed = max(r["elapsed"] for r in results)
    send_s = max(r["tester"]["send_s"] for r in results)
    cpu = [r["tester"]["cpu_s"] for r in results]
    busy = [r["tester"]["busy_s"] for r in results]
    tester = {"cpu_s": round(sum(cpu), 3),
              # CPU time of the busiest tester process over its run (1.0: a whole core).
              # It busy-polls (yielding the core between polls), so this counts spinning
              # too: on an idle machine it is near 1 at any rate with sends < SPIN_S apart
              "cpu_share": round(max(c / r["elapsed"] for c, r in zip(cpu, results)), 3),
              # share of the run the busiest process spent sending and taking reports (not
              # polling for nothing): how close the tester itself is to being the limit
              "busy_share": round(max(b / r["elapsed"] for b, r in zip(busy, results)), 3),
              # tester CPU per order sent (its send, its reports taken, the polling between)
              "cpu_us_per_order": round(sum(cpu) * 1e6 / max(counts["sent"], 1), 3),
              "blocked_sends": sum(r["tester"]["blocked_sends"] for r in results),
              "send_lag": max((r["tester"]["send_lag"] for r in results),
                              key=lambda p: p.get("p99_us", 0)),
              "per_process": [r["tester"] for r in results]}
    return {"offered_per_s": rate, "seconds": seconds, "sessions": 2 * len(pairs),
            "processes": processes, **counts,
            "sent_per_s": round(counts["sent"] / send_s),
            "achieved_per_s": round(counts["acked"] / elapsed),
            "ack": percentiles(ack), "fill": percentiles(fill), "tester": tester,
            "_ack_hist": ack}


# ---------------------------------------------------------------- a sink for the tester

def _sink_main(lifetime: float, instruments: list[str]) -> None:
    """The sink's process: accept loopback sessions, answer Logon with LogonAck, and every
    NewOrder with pre-built reports (``_sink_answer``, compiled, one call per read).
    Prints ``listening on HOST:PORT``; ends when its stdin closes or after ``lifetime`` s."""
    import sys

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, 0))
    lsock.listen(64)
    lsock.setblocking(False)
    scratch = np.zeros((RECV_BYTES // _F + 1) * 2 * _R, np.uint8)
    _sink_answer(np.zeros(2, np.uint8), 0, 0, scratch, 0)  # compile/load before the first
    print(f"listening on {HOST}:{lsock.getsockname()[1]}", flush=True)
    stdin = sys.stdin.fileno()
    poller = select.poll()
    poller.register(lsock.fileno(), select.POLLIN)
    poller.register(stdin, select.POLLIN)
    conns: dict[int, dict] = {}
    sid = 0
    end_at = time.monotonic() + lifetime
    full = 32 << 20  # replies the tester has not read: stop reading its orders past this

    def close(fd):
        c = conns.pop(fd)
        poller.unregister(fd)
        c["sock"].close()

    while time.monotonic() < end_at:
        for fd, ev in poller.poll(50):
            if fd == stdin:
                return  # the parent closed our stdin, or went away
            if fd == lsock.fileno():
                try:
                    s, _ = lsock.accept()
                except BlockingIOError:
                    continue
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                    s.setsockopt(socket.SOL_SOCKET, opt, 1 << 21)
                buf = np.zeros(RECV_BYTES, np.uint8)
                conns[s.fileno()] = {"sock": s, "buf": buf, "view": memoryview(buf), "have": 0,
                                     "logged": False, "out": bytearray()}
                poller.register(s.fileno(), select.POLLIN)
                continue
            c = conns.get(fd)
            if c is None:
                continue
            out = c["out"]
            if ev & (select.POLLIN | select.POLLHUP | select.POLLERR) and len(out) < full:
                try:
                    k = c["sock"].recv_into(c["view"][c["have"]:])
                except BlockingIOError:
                    k = -1
                except OSError:
                    k = 0
                if k == 0:
                    close(fd)
                    continue
                if k > 0:
                    end = c["have"] + k
                    buf = c["buf"]
                    pos = 0
                    if not c["logged"]:
                        if end < 2 or end < 2 + _u16(buf, 0):
                            c["have"] = end
                            continue
                        pos = 2 + _u16(buf, 0)
                        msg = P.FrameReader(P.CLIENT).decode_frame(bytes(buf[:pos]), 0)
                        sid += 1
                        out += P.encode(P.LogonAck(msg.account, sid, 0, 60_000, instruments))
                        c["logged"] = True
                    stop, q, bad = _sink_answer(buf, pos, end, scratch, time.time_ns() // 1000)
                    if bad:
                        close(fd)
                        continue
                    out += memoryview(scratch)[:q]
                    rest = end - stop
                    if rest:
                        buf[:rest] = buf[stop:end]
                    c["have"] = rest
            if out:
                try:
                    k = c["sock"].send(out)
                    del out[:k]
                except BlockingIOError:
                    pass
            poller.modify(fd, (select.POLLIN if len(out) < full else 0) |
                          (select.POLLOUT if out else 0))


@njit(cache=True, _nrt=False)
def _sink_answer(buf, start, end, out, ts):
    """The sink's answers to the client frames in ``buf[start:end]``: per NewOrder an
    ACCEPTED report, and for a sell a FILL after it, written to ``out``; other frames are
    skipped. Returns (offset after the last complete frame, bytes written, bad length)."""
    p = start
    q = 0
    while end - p >= 2:
        length = rd_u16(buf, p)
        if length == 0 or length > _MAX_FRAME:
            return p, q, True
        if p + 2 + length > end:
            break
        if buf[p + 2] == _T_NEW and length == _F - 2:
            side = buf[p + _NO_SIDE_AT]
            instrument = rd_u16(buf, p + _NO_INSTRUMENT_AT)
            qty = rd_u32(buf, p + _NO_QTY_AT)
            price = rd_i64(buf, p + _NO_PRICE_AT)
            q = put_report(out, q, 1, 0, side, 0, instrument, buf, p + _NO_CLID_AT, ts, price,
                           qty, 0, qty, 0, 0)
            if side == 2:
                q = put_report(out, q, 4, 0, side, 0, instrument, buf, p + _NO_CLID_AT, ts,
                               price, qty, qty, 0, 0, 0)
        p += 2 + length
    return p, q, False


@contextmanager
def sink_server(lifetime: float = 300.0, instruments=(INSTRUMENT,)):
    """A trivial loopback server in a child process that accepts any Logon and answers each
    NewOrder with pre-built reports (no matching, no journal): what the tester can offer and
    take when the server is not the limit. Yields the port; the child is stopped on exit
    (and ends by itself after ``lifetime`` seconds)."""
    import subprocess
    import sys

    code = (f"from sim.loadtest import _sink_main; "
            f"_sink_main({float(lifetime)!r}, {list(instruments)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on [\d.]+:(\d+)", line)
        if m is None:
            raise RuntimeError(f"the sink server did not start: {line!r}")
        yield int(m.group(1))
    finally:
        proc.stdin.close()  # the sink returns on EOF
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def write_report(runs: list[dict], out: Path, p99_bound_us: int | None = None, *,
                 fsync: bool | None = None, pairs: int | None = None) -> dict:
    """``loadtest.json`` and plots: the percentile curve of each run's acknowledgement
    latency, and with several rates, latency against offered rate (``sim.plots``; their
    titles give ``fsync`` and ``pairs`` when known)."""
    out.mkdir(parents=True, exist_ok=True)
    from .plots import plot_loadtest

    plot_loadtest(runs, out, p99_bound_us, fsync=fsync, pairs=pairs)
    report = {"runs": [{k: v for k, v in run.items() if not k.startswith("_")} for run in runs]}
    if p99_bound_us:
        held = [r["offered_per_s"] for r in runs
                if r["ack"] and r["ack"]["p99_us"] <= p99_bound_us
                and r["acked"] >= 0.99 * r["offered_per_s"] * r["seconds"]]
        report["p99_bound_us"] = p99_bound_us
        report["highest_rate_held"] = max(held, default=None)
    (out / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def pairs_from_tokens(text: str, pairs: int, operator: str = "OPS") -> list:
    """Buyer/seller pairs for a load against a running server, from an ``account,token``
    file (as ``cea serve --credentials-out`` writes it): its accounts in order, the operator
    left out, taken two by two, ``pairs`` of them at most. ``ValueError`` if there are not
    two accounts.

    >>> pairs_from_tokens("account,token\\nA001,t1\\nA002,t2\\nOPS,t3\\nA003,t4\\n", 4)
    [(('A001', 't1'), ('A002', 't2'))]
    """
    accounts = []
    for line in text.splitlines():
        name, _, token = line.strip().partition(",")
        if name and token and name != operator and (name, token) != ("account", "token"):
            accounts.append((name, token))
    if len(accounts) < 2:
        raise ValueError("the token file names fewer than two trading accounts (lines "
                         "account,token; the operator's is left out)")
    return [(accounts[2 * i], accounts[2 * i + 1])
            for i in range(min(pairs, len(accounts) // 2))]


def accounts_for(pairs: int) -> tuple[str, str, list]:
    """Accounts and tokens CSV texts for ``pairs`` buyer/seller pairs, and the pairs."""
    accounts = ["account,type,cash,CEA"]
    tokens = ["account,token"]
    out = []
    key = secrets.token_urlsafe(12)  # fresh per run: any local user can reach the server
    for i in range(pairs):
        buyer, seller = f"LB{i:03d}", f"LS{i:03d}"
        accounts += [f"{buyer},INSTITUTION,100000000000.00,0",
                     f"{seller},INSTITUTION,0.00,1000000000"]
        btok, stok = f"{buyer}-{key}", f"{seller}-{key}"
        tokens += [f"{buyer},{btok}", f"{seller},{stok}"]
        out.append(((buyer, btok), (seller, stok)))
    return "\n".join(accounts) + "\n", "\n".join(tokens) + f"\nOPS,OPS-{key}\n", out


@contextmanager
def local_server(data_root: Path, accounts_csv: str, tokens_csv: str, fsync: bool = True,
                 start: str = "2024-03-04T09:30:00", extra: tuple[str, ...] = (),
                 workdir: Path | None = None, start_timeout: float = 300.0,
                 web_port: int | None = None, on_web=None):
    """``cea serve`` in a subprocess on a free loopback port, for the given accounts and
    tokens, rate and open-order limits off; yields the port; stopped (SIGTERM) on exit. Its files go in
    ``workdir`` (data in ``workdir/data``), or a fresh directory under ``data_root``;
    ``extra`` are more ``cea serve`` options. ``web_port``: also serve the web view there
    (0: any free port); ``on_web(url)`` is told its address once the server listens."""
    import signal
    import subprocess
    import sys
    import tempfile
    import threading

    from gateway.publisher import ask_death_signal

    d = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(dir=data_root))
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokens.csv").write_text(tokens_csv)
    (d / "accounts.csv").write_text(accounts_csv)
    # its own process group (a signal to ours does not reach it half-way; we stop it), and it
    # dies with us (a tester killed outright leaves no server behind)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cea", "serve", "--data-dir", str(d / "data"), "--port", "0",
         "--tokens", str(d / "tokens.csv"), "--accounts", str(d / "accounts.csv"),
         "--start", start, "--rate-limit", "0", "--max-open-orders", "0",
         "--fsync", "on" if fsync else "off", *extra,
         *(("--web-port", str(web_port)) if web_port is not None else ())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=functools.partial(ask_death_signal, signal.SIGTERM))

    def kill_group():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.communicate()

    # a server that never says it listens (a cold start compiles for a minute at most)
    watchdog = threading.Timer(start_timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.daemon = True
    watchdog.start()
    port = web = None
    try:
        for line in proc.stdout:
            m = re.search(r"web view on (http://\S+)", line)
            if m:
                web = m.group(1)
            m = re.search(r"listening on [\d.]+:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
    except BaseException:
        kill_group()
        raise
    finally:
        watchdog.cancel()
    if port is None:
        _, err = proc.communicate()
        raise RuntimeError(f"cea serve did not start: {err.strip()}")
    if web is not None and on_web is not None:
        on_web(web)
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)  # its stop is bounded (a few seconds)
        except subprocess.TimeoutExpired:
            kill_group()
