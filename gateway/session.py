"""Session I/O: one TCP connection of one account, its buffers, its limits and its logon.

A session keeps what it received in ``inbuf`` until the next turn takes it (the admission
stage reads the frames straight from there) and what the turn produces for it in ``out``
until it is written, once per turn. It reads under backpressure: while the peer
does not read what was written (the transport's high-water mark), the turns leave its input
unprocessed; when more than ``max_in_buffer`` bytes wait unprocessed, the session stops
reading from its socket, and TCP pushes back on the peer instead of the server growing
memory. A peer that lets more than ``max_out_buffer`` bytes of replies pile up is dropped.

Two token buckets bound what a session may cost: one over every message (``rate_limit``,
``burst``) and one over the messages answered in Python (``query_rate``, ``query_burst``:
heartbeats, subscriptions, replays, balances).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import msgspec

from . import protocol as P

log = logging.getLogger("cea.serve")

_LOGON = msgspec.msgpack.Decoder(P.Logon)
#: Seconds a closed session's peer has to read what was still unsent before it is cut off.
CLOSE_GRACE_S = 1.0


class Bucket:
    """A token bucket: ``rate`` tokens a second up to ``burst``; rate 0 is no limit.

    >>> b = Bucket(10, 5, now=0.0)
    >>> b.available(0.0), b.available(0.2)
    (5, 5)
    >>> b.spend(5); b.available(0.35)
    1
    """

    __slots__ = ("rate", "burst", "tokens", "at")
    UNLIMITED = 1 << 40

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = now

    def available(self, now: float) -> int:
        if not self.rate:
            return self.UNLIMITED
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        return int(self.tokens)

    def spend(self, n: int) -> None:
        if self.rate:
            self.tokens -= n


class Session(asyncio.Protocol):
    """One connection: logon, limits, buffers; the server's turns do the rest."""

    def __init__(self, server):
        self.server = server
        cfg = server.config
        now = time.monotonic()
        self.inbuf = bytearray()
        self.out = bytearray()  # this turn's output, written once
        self.answers = bytearray()  # this turn's query answers (the state before the turn)
        self.transport = None
        self.account = -1  # handle once logged on
        self.account_name = ""
        self.cancel_on_disconnect = True
        self.heartbeat_s = 5.0
        self.bucket = Bucket(cfg.rate_limit, cfg.burst, now)
        self.queries = Bucket(cfg.query_rate, cfg.query_burst, now)
        self.opened = self.last_rx = self.last_tx = now
        self.rx_at = now  # when the oldest unprocessed input arrived (an upper bound of its age)
        self.subscriptions: set[int] = set()
        self.closing = False
        self.queued = False  # in the server's list for the next turn
        self.reading_paused = False  # input over its bound: the socket is not read
        self.peer_slow = False  # output over the transport's high-water mark
        self.logout = False  # close once this turn's answers are out
        self.cancel_after_input = False  # gone: sequence its last input, then its MassCancel
        self.error: tuple[int, str] | None = None  # sent after this turn's answers, then close
        self.rseq_next = 1  # the next report of the account's stream this session gets
        self.replaying = False  # catching up on the stream from the report log
        self.id = 0

    # -------------------------------------------------------------- asyncio

    def connection_made(self, transport):
        self.transport = transport
        cfg = self.server.config
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.socket_buffer)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=min(1 << 20, cfg.max_out_buffer))
        self.id = self.server.session_opened(self)

    def connection_lost(self, exc):
        self.closing = True
        self.server.session_closed(self)

    def pause_writing(self):
        self.peer_slow = True  # the turns leave its input until the peer reads again

    def resume_writing(self):
        self.peer_slow = False
        if self.replaying and not self.closing:
            self.server._catch_up(self)
        if self.inbuf and not self.closing:
            self.server.ready(self)

    def data_received(self, data: bytes):
        if self.closing:
            return
        self.last_rx = time.monotonic()
        if self.account < 0:
            data = self._logon(data)
            if not data:
                return
        if not self.inbuf:
            self.rx_at = self.last_rx
        self.inbuf += data
        if len(self.inbuf) > self.server.config.max_in_buffer and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self.server.ready(self)

    def consumed(self, n: int) -> None:
        """The turn took ``n`` bytes of input."""
        if n:
            del self.inbuf[:n]
        if self.reading_paused and len(self.inbuf) <= self.server.config.max_in_buffer // 2 \
                and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    # -------------------------------------------------------------- logon

    def _logon(self, data: bytes) -> bytes:
        """Before logon: gather the first frame, which must be a Logon; return what follows
        it once the session is logged on (b"" otherwise)."""
        self.inbuf += data
        buf = self.inbuf
        if len(buf) < 2:
            return b""
        n = buf[0] | buf[1] << 8
        if n == 0 or n > P.MAX_FRAME:
            self.error_now(P.GatewayReason.PROTOCOL_ERROR,
                           f"frame length {n} outside 1..{P.MAX_FRAME}")
            return b""
        if len(buf) >= 3 and buf[2] != P.MsgType.LOGON:
            self.error_now(P.GatewayReason.NOT_LOGGED_ON, "the first message must be Logon")
            return b""
        if len(buf) < 2 + n:
            return b""
        try:
            body = memoryview(buf)[P.HEADER:2 + n]
            P.check_nesting(body)
            msg = _LOGON.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError,
                P.ProtocolError) as e:
            self.error_now(P.GatewayReason.PROTOCOL_ERROR, f"undecodable Logon: {e}")
            return b""
        rest = bytes(buf[2 + n:])
        self.inbuf = bytearray()
        if not self.server.logon(self, msg):
            return b""
        return rest

    # -------------------------------------------------------------- output

    def send(self, msg) -> None:
        self.out += P.encode(msg)

    def flush(self) -> None:
        if self.out and not self.closing:
            self.transport.write(bytes(self.out))
            self.last_tx = time.monotonic()
            # the peer reads slower than we write: past a bound, drop it rather than grow memory
            if self.transport.get_write_buffer_size() > self.server.config.max_out_buffer:
                self.abort("slow reader: send buffer over its bound")
        self.out.clear()

    def error_now(self, reason: int, text: str) -> None:
        """Answer a protocol violation, then disconnect."""
        self.send(P.Error(int(reason), text))
        self.flush()
        self.close()

    def close(self) -> None:
        """Close after what is written so far; a peer that does not read it within
        ``CLOSE_GRACE_S`` is cut off (else its session would hold its slot and memory)."""
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
            if self.transport.get_write_buffer_size():
                asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._cut)

    def _cut(self) -> None:
        if self.transport is not None and self.transport.get_write_buffer_size():
            self.transport.abort()

    def abort(self, why: str) -> None:
        log.warning("session %s (%s): %s", self.id, self.account_name or "-", why)
        self.closing = True
        self.transport.abort()
