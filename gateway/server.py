"""``cea serve``: the exchange on one machine, over TCP, on asyncio with uvloop.

The pipeline, one writer (the event loop):

1. **connections** (``Session``): frames are decoded once, at the edge; logon, heartbeats,
   rate limit, subscriptions and queries are answered here. Orders and operator commands go
   to the sequencer's queue, stamped with nothing yet.
2. **sequencer** (``ExchangeServer._flush``): everything queued in one event-loop turn is one
   batch: stamped with one exchange time, run through the engine (one jitted call), and turned
   into journal records, execution reports and market data.
3. **journal**: the turn's records are appended and fsync'd (group commit) *before* any
   report or market data leaves, so whatever a client saw acknowledged survives a crash.
4. **results**: reports to their accounts' sessions, market data to subscribers, trades and
   account operations to the ledger publisher process (``gateway.publisher``; SQLite by
   default), which settles them idempotently and records how far the journal is settled.

Recovery on start: the latest snapshot plus the journal (``gateway.journal.rebuild``); the
ledger is fed every record it had not settled.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as _dt
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path


from engine.codes import NO_TIME, AccountType
from engine.rules import AM_OPEN_US, DAY_CLOSE_US, DAY_US
from engine.tradingdays import day_of_date, format_time

from . import auth
from . import protocol as P
from .exchange import SYSTEM, AdminOp, Exchange, Genesis, Refused, Tick
from .journal import (
    JOURNAL, JournalThread, JournalWriter, fork_snapshot, frame, rebuild, start_journal,
    write_snapshot,
)
from .publisher import FEED, LedgerPublisher
from .marketdata import status_at

log = logging.getLogger("cea.serve")

#: Shanghai keeps UTC+8 all year (no daylight saving): exchange time without a tz database.
_SHANGHAI_US = 8 * 3600 * 1_000_000
LOGON_TIMEOUT_S = 5.0

DEMO_ACCOUNTS = [  # (name, type, cash fen, allowances t) for a first start with no --accounts
    ("A001", AccountType.COVERED_ENTITY, 100_000_000_00, 500_000),
    ("A002", AccountType.COVERED_ENTITY, 100_000_000_00, 500_000),
    ("A003", AccountType.INSTITUTION, 50_000_000_00, 200_000),
    ("A004", AccountType.INSTITUTION, 50_000_000_00, 200_000),
]


@dataclass
class ServerConfig:
    data_dir: Path = Path("cea-data")
    host: str = "127.0.0.1"
    port: int = 7878  # 0: any free port (the server reports the one it got)
    fsync: bool = True
    instruments: list[tuple[str, int]] = field(default_factory=lambda: [("CEA", 6000)])
    fee_bps_listed: int = 0
    fee_bps_block: int = 0
    t_plus_one: bool = True
    operator: str = "OPS"
    accounts: list = None  # OpeningBalance list for the first start (None: DEMO_ACCOUNTS)
    tokens: dict[str, str] | None = None  # plain tokens for the first start (None: generate)
    clock: str = "sim"  # "sim": exchange time runs from `start`; "wall": Shanghai time now
    start_us: int | None = None  # sim clock start; None: 09:30 of today's or next trading day
    rate_limit: int = 200_000  # messages per second per session (0: unlimited)
    burst: int = 50_000
    max_out_buffer: int = 8 << 20  # a session whose unsent replies exceed this is dropped
    socket_buffer: int = 1 << 20  # kernel send buffer per session (bounds memory with the above)
    heartbeat_factor: int = 3  # silence of this many heartbeat intervals ends a session
    snapshot_every: int = 200_000  # journal records between snapshots
    md_ring: int = 65_536  # market-data frames kept per channel for replays
    ledger: str | None = "sqlite"  # "sqlite": <data_dir>/ledger.sqlite; a URL; None: off
    fork_snapshots: bool = hasattr(os, "fork")  # write snapshots from a forked child
    journal_thread: bool = False  # fsync on a thread, overlapping the next turn (see docs)
    impl: str = "numba"
    recover: bool = False  # require an existing journal


class ExchangeClock:
    """Exchange local time in µs: the wall clock in Shanghai, or a simulated clock that runs
    at wall speed from a start time and jumps to the next trading morning when a day ends."""

    def __init__(self, mode: str, calendar, start_us: int | None = None):
        if mode not in ("sim", "wall"):
            raise ValueError(f"clock must be sim or wall, not {mode!r}")
        self.mode, self.calendar = mode, calendar
        self._base = start_us if start_us is not None else self._morning(self.wall_now(), 0)
        self._t0 = time.monotonic_ns()

    @staticmethod
    def wall_now() -> int:
        return time.time_ns() // 1000 + _SHANGHAI_US

    def _morning(self, ts: int, skip: int) -> int:
        """09:30 of the first trading day at or after ``ts``'s day (+``skip`` days)."""
        day = ts // DAY_US + skip
        while not self.calendar.is_trading_day(day):
            day += 1
        return day * DAY_US + AM_OPEN_US

    def now(self) -> int:
        if self.mode == "wall":
            return self.wall_now()
        return self._base + (time.monotonic_ns() - self._t0) // 1000

    def resume(self, engine_clock: int, day_open: bool) -> None:
        """After recovery: carry on from where the journal left the engine's clock."""
        if self.mode == "sim" and engine_clock != NO_TIME:
            self._base = engine_clock if day_open else self._morning(engine_clock, 1)
            self._t0 = time.monotonic_ns()

    def set(self, ts: int) -> None:
        """Jump the simulated clock to ``ts``; it runs on at wall speed from there."""
        self._base = ts
        self._t0 = time.monotonic_ns()

    def day_ended(self, engine_clock: int) -> None:
        if self.mode == "sim":
            self._base = self._morning(engine_clock, 1)
            self._t0 = time.monotonic_ns()


class Session(asyncio.Protocol):
    """One TCP connection: logon, rate limit, heartbeats and replies."""

    def __init__(self, server: "ExchangeServer"):
        self.server = server
        self.reader = P.FrameReader(P.CLIENT_MESSAGES)
        self.transport = None
        self.account = -1  # handle once logged on
        self.account_name = ""
        self.cancel_on_disconnect = True
        self.heartbeat_s = 5.0
        self.out = bytearray()
        self.tokens = float(server.config.burst)
        self.refill_at = time.monotonic()
        self.opened = self.last_rx = self.last_tx = time.monotonic()
        self.subscriptions: set[int] = set()
        self.closing = False
        self.id = 0

    # -------------------------------------------------------------- asyncio

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.server.config.socket_buffer)
        transport.set_write_buffer_limits(high=min(1 << 20, self.server.config.max_out_buffer))
        self.id = self.server.session_opened(self)

    def connection_lost(self, exc):
        self.closing = True
        self.server.session_closed(self)

    def data_received(self, data: bytes):
        if self.closing:
            return
        self.last_rx = time.monotonic()
        try:
            messages, bad = self.reader.feed(data), None
        except P.ProtocolError as e:  # what came before the bad frame still counts
            messages, bad = e.messages, e
        if self.account < 0 and messages and type(messages[0]) is not P.Logon:
            self.error(P.GatewayReason.NOT_LOGGED_ON, "the first message must be Logon")
            return
        limit = self.server.config.rate_limit
        if limit:
            now = self.last_rx
            self.tokens = min(float(self.server.config.burst),
                              self.tokens + (now - self.refill_at) * limit)
            self.refill_at = now
        pending = self.server.pending
        account = self.account
        for msg in messages:
            if type(msg) in _SEQUENCED:
                if account < 0:
                    self.error(P.GatewayReason.NOT_LOGGED_ON, "log on first")
                    return
                if limit:
                    if self.tokens < 1:  # refused in sequence, after what came before
                        pending.append((account, Refused(msg, P.GatewayReason.THROTTLED)))
                        continue
                    self.tokens -= 1
                pending.append((account, msg))
            else:
                self._handle(msg)
                account = self.account
                if self.closing:
                    break
        if bad is not None and not self.closing:
            self.server.flush_now()  # answer what came before the bad frame, then close
            self.error(P.GatewayReason.PROTOCOL_ERROR, str(bad))
            return
        self.server.schedule_flush()
        self.flush()

    # -------------------------------------------------------------- messages

    def _handle(self, msg) -> None:
        kind = type(msg)
        server = self.server
        if kind is P.Heartbeat:
            return
        if kind is P.Logon:
            server.logon(self, msg)
        elif self.account < 0:
            self.error(P.GatewayReason.NOT_LOGGED_ON, "log on first")
        elif kind is P.Logout:  # answer what came before it, then close
            server.flush_now()
            self.flush()
            self.transport.close()
            self.closing = True
        elif kind is P.Subscribe:
            server.subscribe(self, msg)
        elif kind is P.MdReplayRequest:
            server.md_replay(self, msg)
        elif kind is P.BalanceRequest:
            server.answer(self, server.balance(self))
        elif kind is P.SetClock:
            server.set_clock(self, msg)

    def send(self, msg) -> None:
        P.encode_into(msg, self.out)

    def flush(self) -> None:
        if self.out and not self.closing:
            self.transport.write(bytes(self.out))
            self.last_tx = time.monotonic()
            # the peer reads slower than we write: past a bound, drop it rather than grow memory
            if self.transport.get_write_buffer_size() > self.server.config.max_out_buffer:
                self.abort("slow reader: send buffer over its bound")
        self.out.clear()

    def error(self, reason: int, text: str) -> None:
        """Answer a bad frame or a protocol violation, then disconnect."""
        self.send(P.Error(int(reason), text))
        self.flush()
        self.closing = True
        self.transport.close()

    def abort(self, why: str) -> None:
        log.warning("session %s (%s): %s", self.id, self.account_name or "-", why)
        self.closing = True
        self.transport.abort()


#: SetClock refuses times from here on (2100-01-01): far beyond any calendar, inside int64
_CLOCK_END = day_of_date(_dt.date(2100, 1, 1)) * DAY_US

_SEQUENCED = {P.NewOrder, P.Cancel, P.Amend, P.MassCancel, P.Halt, P.Resume, P.EndDay,
              P.SetPriorClose}


class ExchangeServer:
    """The whole exchange: recovery, sessions, sequencer, journal, ledger, market data."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.pending: list = []
        self._flush_scheduled = False
        self.sessions: dict[int, Session] = {}
        self.by_account: dict[int, Session] = {}
        self.subscribers: dict[int, set[Session]] = {}
        self.captured_seq: list[int] = []  # market data handed to turns, per channel
        self._next_session = 1
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server = None
        self.recovery = None
        self.records_since_snapshot = 0
        self.journal_thread = None  # group commit off the loop (fsync on, once listening)
        self.waiting: collections.deque = collections.deque()  # turns awaiting durability
        self.durable = -1
        self.snapshot_pid = 0
        self.stats = {"turns": 0, "commands": 0, "max_batch": 0}
        self.failed: BaseException | None = None

    # -------------------------------------------------------------- start and stop

    def open(self) -> str:
        """Recover or create the exchange's state (no sockets yet); return a one-line summary."""
        cfg = self.config
        self.data_dir.mkdir(parents=True, exist_ok=True)
        journal = self.data_dir / JOURNAL
        ledger_url = None
        if cfg.ledger == "sqlite":
            ledger_url = str(self.data_dir / "ledger.sqlite")
        elif cfg.ledger:
            ledger_url = cfg.ledger
        if journal.exists():
            summary = self._recover(ledger_url)
        else:
            if cfg.recover:
                raise FileNotFoundError(f"--recover: no journal in {self.data_dir}")
            summary = self._create(ledger_url)
        self.tokens = auth.load_tokens(self.data_dir)
        _warm_up(cfg.impl)
        for channel in self.exchange.md.channels:
            channel.ring = collections.deque(channel.ring, maxlen=cfg.md_ring)
        self.subscribers = {c: set() for c in range(len(self.captured_seq))}
        return summary

    def _ledger(self, url, exchange) -> LedgerPublisher | None:
        if url is None:
            return None
        pub = LedgerPublisher(url, exchange, (exchange.genesis.fee_bps_listed,
                                              exchange.genesis.fee_bps_block))
        pub.start()
        return pub

    def _create(self, ledger_url) -> str:
        cfg = self.config
        genesis = Genesis([(n, int(p)) for n, p in cfg.instruments], cfg.fee_bps_listed,
                          cfg.fee_bps_block, cfg.t_plus_one, cfg.operator)
        exchange = Exchange(genesis, impl=cfg.impl)  # checks the configuration first
        start_journal(self.data_dir, genesis)
        self.exchange = exchange
        self.captured_seq = [c.seq for c in exchange.md.channels]
        self.clock = ExchangeClock(cfg.clock, exchange.calendar, cfg.start_us)
        self.journal = JournalWriter(self.data_dir / JOURNAL, fsync=True)
        self.ledger = self._ledger(ledger_url, exchange)
        opening = cfg.accounts
        if opening is None:
            opening = [_Opening(n, t, c, {exchange.instruments[0]: a})
                       for n, t, c, a in DEMO_ACCOUNTS]
        ts = self.clock.now() - DAY_US  # opening balances: dated the day before trading
        ops = []
        for o in opening:
            ops.append(AdminOp(ts, "OPEN_ACCOUNT", account=o.account, value=int(o.type)))
            if o.cash:
                ops.append(AdminOp(ts, "DEPOSIT", account=o.account, value=o.cash))
            for instrument, tonnes in o.allowances.items():
                if tonnes:
                    ops.append(AdminOp(ts, "ALLOWANCE_IN", account=o.account,
                                       instrument=instrument, value=tonnes))
        self._commit(exchange.submit([(SYSTEM, op) for op in ops], ts))
        self.journal.fsync = cfg.fsync
        names = [o.account for o in opening] + [cfg.operator]
        self.credentials = auth.create_tokens(self.data_dir, names, cfg.tokens)
        write_snapshot(self.data_dir, exchange)
        return (f"new exchange: {len(opening)} accounts, instruments "
                f"{', '.join(n for n, _ in cfg.instruments)}")

    def _recover(self, ledger_url) -> str:
        cfg = self.config
        position = -1
        if ledger_url is not None:
            from ledger.core import Ledger

            ledger = Ledger.open(ledger_url, [n for n, _ in cfg.instruments])
            position = ledger.feed_position(FEED)
            ledger.close()
        # the ledger must see every record after its position: start from a snapshot only
        # if the snapshot is not past it
        from .journal import load_snapshot

        snap = load_snapshot(self.data_dir)
        use_snapshot = snap is not None and (ledger_url is None or snap.seq <= position)
        turns = []
        rec = rebuild(self.data_dir, impl=cfg.impl, use_snapshot=use_snapshot, truncate=True,
                      on_turn=lambda seq, turn: turns.append((seq, turn))
                      if seq > position else None)
        self.recovery = rec
        self.exchange = rec.exchange
        self.captured_seq = [c.seq for c in self.exchange.md.channels]
        self.clock = ExchangeClock(cfg.clock, self.exchange.calendar, cfg.start_us)
        clock = self.exchange.engine.book.globals()[0]
        self.clock.resume(clock, self.exchange.engine.day_in_progress())
        self.journal = JournalWriter(self.data_dir / JOURNAL, fsync=cfg.fsync)
        self.ledger = self._ledger(ledger_url, self.exchange)
        if self.ledger is not None:
            for seq, turn in turns:
                self.ledger.publish(seq, turn)
        self.credentials = None
        return (f"recovered {rec.records} journal records (snapshot at {rec.snapshot_seq}, "
                f"{rec.replayed} replayed, {rec.truncated} torn bytes cut), "
                f"state hash {rec.state_hash}")

    async def start(self) -> tuple[str, int]:
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(lambda: Session(self), self.config.host,
                                                    self.config.port)
        self.durable = self.exchange.seq
        if self.config.journal_thread and self.journal.fsync:
            self.journal_thread = JournalThread(self.journal, self.loop, self._on_durable)
            self.journal_thread.start()
        self._clock_tick()  # publish the status the clock says now
        self._timer = self.loop.create_task(self._tick_loop())
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def stop(self, snapshot: bool = True) -> None:
        """Stop accepting, settle what is queued, snapshot, close the journal and ledger."""
        if self.server is not None:
            self.server.close()
        if getattr(self, "_timer", None):
            self._timer.cancel()
        for session in list(self.sessions.values()):
            session.cancel_on_disconnect = False  # a shutdown is not a participant leaving
            session.flush()
            session.transport.close()
        if self.pending and self.failed is None:
            self._flush()
        if self.journal_thread is not None:
            if self.failed is None:
                self.journal_thread.sync()
                self._on_durable(self.exchange.seq)
            self.journal_thread.stop()
        self._reap_snapshot(wait=True)
        if snapshot and self.failed is None:
            write_snapshot(self.data_dir, self.exchange)
        self.journal.close()
        if self.ledger is not None:
            self.ledger.stop()

    # -------------------------------------------------------------- sessions

    def session_opened(self, session: Session) -> int:
        sid = self._next_session
        self._next_session += 1
        self.sessions[sid] = session
        return sid

    def session_closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        for c in session.subscriptions:
            self.subscribers[c].discard(session)
        if session.account >= 0 and self.by_account.get(session.account) is session:
            del self.by_account[session.account]
            if session.cancel_on_disconnect and session.account != self.exchange.operator:
                self.pending.append((session.account, P.MassCancel()))
                self.schedule_flush()

    def logon(self, session: Session, msg: P.Logon) -> None:
        ex = self.exchange
        stored = self.tokens.get(msg.account)
        if session.account >= 0:
            session.error(P.GatewayReason.PROTOCOL_ERROR, "already logged on")
            return
        if stored is None or not auth.verify_token(msg.token, stored):
            session.send(P.LogonReject("unknown account or wrong token"))
            session.flush()
            session.closing = True
            session.transport.close()
            return
        handle = ex.account_handle(msg.account)
        if msg.account != ex.genesis.operator and not ex.is_account(msg.account):
            session.send(P.LogonReject("account is not open"))
            session.flush()
            session.transport.close()
            session.closing = True
            return
        if handle in self.by_account:
            session.send(P.LogonReject("this account already has a session"))
            session.flush()
            session.transport.close()
            session.closing = True
            return
        hb = max(100, min(msg.heartbeat_ms, 60_000))
        session.account, session.account_name = handle, msg.account
        session.cancel_on_disconnect = msg.cancel_on_disconnect
        session.heartbeat_s = hb / 1000
        self.by_account[handle] = session
        session.send(P.LogonAck(msg.account, session.id, self.clock.now(), hb))

    def subscribe(self, session: Session, msg: P.Subscribe) -> None:
        i = self.exchange.instrument_index.get(msg.instrument, -1)
        if i < 0 or msg.segment not in (0, 1):
            self.answer(session, P.AdminAck("Subscribe", False, P.GatewayReason.UNKNOWN_INSTRUMENT,
                                            f"no channel {msg.instrument!r}/{msg.segment}"))
            return
        c = i * 2 + msg.segment

        def subscribed():  # incrementals from the one after the snapshot on
            session.subscriptions.add(c)
            self.subscribers[c].add(session)

        self.answer(session, self.exchange.snapshot(i, msg.segment), then=subscribed)

    def md_replay(self, session: Session, msg: P.MdReplayRequest) -> None:
        i = self.exchange.instrument_index.get(msg.instrument, -1)
        if i < 0 or msg.segment not in (0, 1):
            self.answer(session, P.AdminAck("MdReplayRequest", False,
                                            P.GatewayReason.UNKNOWN_INSTRUMENT, "no such channel"))
            return
        frames = self.exchange.md.channel(i, msg.segment).replay(msg.from_seq, msg.to_seq)
        if frames is None:  # no longer kept (or never sent): start again from a snapshot
            self.answer(session, self.exchange.snapshot(i, msg.segment))
        else:
            self.answer(session, *frames)

    def balance(self, session: Session):
        if not self.exchange.is_account(session.account_name):
            return P.AdminAck("BalanceRequest", False, P.GatewayReason.BAD_VALUE,
                              "the operator has no balances")
        return self.exchange.balance(session.account_name)

    # -------------------------------------------------------------- the sequencer

    def schedule_flush(self) -> None:
        if not self._flush_scheduled and self.pending:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def flush_now(self) -> None:
        """Sequence what is queued and send its results before returning (rare paths: a
        session about to be closed must get the answers to what it sent before)."""
        self._flush()
        if self.journal_thread is not None and self.failed is None:
            self.journal_thread.sync()
            self._on_durable(self.exchange.seq)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.pending or self.failed is not None:
            return
        entries, self.pending = self.pending, []
        try:
            turn = self.exchange.submit(entries, self.clock.now())
            self._commit(turn)
        except BaseException as e:
            log.exception("sequencer failed")
            self._fail(e)
            return
        self.stats["turns"] += 1
        self.stats["commands"] += len(entries)
        self.stats["max_batch"] = max(self.stats["max_batch"], len(entries))
        if turn.day_ended:
            self.clock.day_ended(self.exchange.engine.book.globals()[0])
        if self.records_since_snapshot >= self.config.snapshot_every:
            self._snapshot()

    def _commit(self, turn) -> None:
        """Journal the turn; its reports, market data and ledger entries go out once the
        journal holds it durably (at once with fsync off), in turn order."""
        channels, captured = self.exchange.md.channels, self.captured_seq
        md = []  # (channel, frames) published by this turn, taken while the ring has them
        for c in sorted(set(turn.market_data)):
            seq = channels[c].seq
            if seq > captured[c]:
                md.append((c, b"".join(channels[c].replay(captured[c] + 1, seq) or ())))
                captured[c] = seq
        last = self.exchange.seq
        if turn.records:
            self.records_since_snapshot += len(turn.records)
            if self.journal_thread is None:  # fsync off, or before the loop runs
                self.journal.append(turn.records)
                self.journal.commit()
                self.durable = last
            else:
                self.journal_thread.submit(last, b"".join(
                    [frame(seq, record) for seq, record in turn.records]))
        if last <= self.durable and not self.waiting:
            self._release(turn, md)
        else:
            self.waiting.append((last, turn, md))

    def _on_durable(self, seq: int) -> None:
        if seq < 0:  # the journal could not be written: stop before acknowledging more
            self._fail(self.journal_thread.error)
            return
        self.durable = max(self.durable, seq)
        waiting = self.waiting
        while waiting and waiting[0][0] <= self.durable:
            _, turn, md = waiting.popleft()
            self._release(turn, md)

    def _release(self, turn, md) -> None:
        if turn is None:  # an answer held back until the state it shows is durable
            session, payload, then = md
            if not session.closing:
                session.out += payload
                session.flush()
                if then is not None:
                    then()
            return
        if turn.records and self.ledger is not None:
            self.ledger.publish(turn.records[-1][0], turn)
        self._send(turn, md)

    def answer(self, session: Session, *messages, then=None) -> None:
        """Reply with what the state shows now, once that state is durable: a client never
        sees what a crash could still undo. ``then()`` runs right after it is sent."""
        payload = bytearray()
        for msg in messages:
            if isinstance(msg, (bytes, bytearray)):
                payload += msg
            else:
                P.encode_into(msg, payload)
        if self.exchange.seq <= self.durable and not self.waiting:
            session.out += payload
            if then is not None:
                then()
        else:
            self.waiting.append((self.exchange.seq, None, (session, bytes(payload), then)))

    def _snapshot(self) -> None:
        """A snapshot of the state now; the journal is made durable up to it first."""
        if self.journal_thread is not None:
            self.journal_thread.sync()
        self._reap_snapshot(wait=True)
        if self.config.fork_snapshots:
            self.snapshot_pid = fork_snapshot(self.data_dir, self.exchange)
        else:
            write_snapshot(self.data_dir, self.exchange)
        self.records_since_snapshot = 0

    def _reap_snapshot(self, wait: bool = False) -> None:
        if self.snapshot_pid:
            pid, status = os.waitpid(self.snapshot_pid, 0 if wait else os.WNOHANG)
            if pid:
                if status != 0:
                    log.error("snapshot writer exited with status %s", status)
                self.snapshot_pid = 0

    def _fail(self, e: BaseException) -> None:
        """The journal and the state may now differ: stop; recovery rebuilds from the journal."""
        self.failed = e
        log.error("the server stops: %s", e)
        for session in list(self.sessions.values()):
            session.transport.abort()
        if self.server is not None:
            self.server.close()

    def _send(self, turn, md) -> None:
        by_account = self.by_account
        encode_into = P.encode_into
        touched = set()
        for account, report in turn.reports:
            session = by_account.get(account)
            if session is not None:
                encode_into(report, session.out)
                touched.add(session)
        for c, data in md:
            for session in self.subscribers[c]:
                session.out += data
                touched.add(session)
        for session in touched:
            session.flush()

    # -------------------------------------------------------------- time

    async def _tick_loop(self) -> None:
        """Heartbeats, and a clock tick whenever a session boundary or 15:00 passes."""
        try:
            while True:
                await asyncio.sleep(0.05)
                self._reap_snapshot()
                if self.ledger is not None:
                    self.ledger.hand_over()
                now = time.monotonic()
                for session in list(self.sessions.values()):
                    if session.closing:
                        continue
                    hb = session.heartbeat_s
                    if session.account < 0 and now - session.opened > LOGON_TIMEOUT_S:
                        session.error(P.GatewayReason.LOGON_TIMEOUT, "no Logon in time")
                    elif now - session.last_rx > hb * self.config.heartbeat_factor:
                        session.error(P.GatewayReason.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                    elif now - session.last_tx > hb and session.account >= 0:
                        session.send(P.Heartbeat(self.clock.now()))
                        session.flush()
                self._clock_tick()
        except asyncio.CancelledError:
            pass

    def set_clock(self, session: Session, msg) -> None:
        """The operator's ``SetClock``: forward only, simulated clock only."""
        def refuse(reason, text):
            self.answer(session, P.AdminAck("SetClock", False, int(reason), text))

        if session.account != self.exchange.operator:
            return refuse(P.GatewayReason.NOT_AUTHORIZED, "only the operator account may do this")
        if self.clock.mode != "sim":
            return refuse(P.GatewayReason.BAD_VALUE, "the wall clock cannot be set "
                          "(only a server started with --clock sim)")
        self._flush()  # what came before keeps its time
        now = self.clock.now()
        if not now <= msg.ts_us < _CLOCK_END:
            return refuse(P.GatewayReason.BAD_VALUE, f"the clock only moves forward, and not "
                          f"past 2100: it is {format_time(now)}, not {msg.ts_us} µs")
        self.clock.set(msg.ts_us)
        self._clock_tick()  # a session boundary or 15:00 the jump passed
        self._flush()
        self.answer(session, P.AdminAck("SetClock", True))

    def _clock_tick(self) -> None:
        ex = self.exchange
        if self.failed is not None:
            return
        ts = self.clock.now()
        clock = ex.engine.book.globals()[0]
        trading = ex.calendar.is_trading_day(ts // DAY_US)
        due = any(status_at(ts, c.segment, trading, ex.halted[i // 2]) != c.status
                  for i, c in enumerate(ex.md.channels))
        if ex.engine.day_in_progress() and clock != NO_TIME and \
                ts >= (clock // DAY_US) * DAY_US + DAY_CLOSE_US:
            due = True  # the day's 15:00 has passed: expire and close
        if due:
            self.pending.append((SYSTEM, Tick(ts)))
            self.schedule_flush()


def _warm_up(impl: str) -> None:
    """Compile (or load from Numba's cache) the matching kernel before the first client: a
    cold compile takes tens of seconds, which no session should wait out."""
    from engine import ClockTick, Engine, RiskConfig
    from engine.tradingdays import parse_time

    Engine({"WARM": 6000}, impl=impl, risk=RiskConfig()).submit(
        ClockTick(parse_time("2024-03-04T10:00:00")))


class _Opening:
    """An opening balance (the shape of ``ledger.session.OpeningBalance``)."""

    def __init__(self, account, type_, cash, allowances):
        self.account, self.type, self.cash, self.allowances = account, type_, cash, allowances


def parse_start(text: str) -> int:
    """``YYYY-MM-DD`` (09:30 that day) or an ISO time, as exchange µs."""
    from engine.tradingdays import parse_time

    if len(text) == 10:
        return day_of_date(_dt.date.fromisoformat(text)) * DAY_US + AM_OPEN_US
    ts = parse_time(text)
    if ts is None:
        raise ValueError(f"--start {text!r}: give YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS")
    return ts


def serve(config: ServerConfig, ready=None) -> int:
    """Run the server until SIGINT/SIGTERM; ``ready(summary, host, port)`` once listening."""
    import uvloop

    server = ExchangeServer(config)
    summary = server.open()

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        host, port = await server.start()
        if ready is not None:
            ready(server, summary, host, port)
        waiter = loop.create_task(stop.wait())
        while not stop.is_set() and server.failed is None:
            await asyncio.wait([waiter], timeout=0.2)
        await server.stop(snapshot=server.failed is None)

    uvloop.run(main())
    return 1 if server.failed is not None else 0
