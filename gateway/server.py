"""``cea serve``: the exchange on one machine, over TCP, on asyncio with uvloop.

This module only wires the pipeline's stages, one writer (the event loop) throughout, as
exchange-core's ``ExchangeCore`` wires its processors:

1. **session I/O** (``gateway.session``): logon, limits, receive and send buffers,
   backpressure.
2. **admission** (``gateway.admission``): each turn, compiled code turns every session's
   buffered frames into engine command rows (checks, order ids interned); session-level
   messages are handled here once each (queries answered from the state before the turn).
3. **sequencer** (``gateway.sequencer``): the turn as engine batches in arrival order, cut
   at sequenced commands; each batch goes through **apply** (``gateway.apply``: the engine
   call, order tracking, market data) and **reports** (``gateway.reports``).
4. **journal** (``gateway.journal``): the turn's records are written and fsync'd (group
   commit) *before* anything of the turn leaves.
5. **release**: each session's query answers, reports and market data in one write; trades
   and account operations to the ledger publisher process (``gateway.publisher``).

Python runs per read, per turn and per session-level message; per order, compiled code.
Recovery on start: the latest snapshot plus the journal (``gateway.journal.rebuild``); the
ledger is fed every record it had not settled.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as _dt
import gc
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from engine.codes import NO_TIME, AccountType, OrderStatus
from engine.rules import AM_OPEN_US, DAY_US
from engine.tradingdays import day_of_date
from ledger.opening import OpeningBalance

from . import auth
from . import protocol as P
from .admission import Admission
from .durability import SyncThread
from .exchange import SYSTEM, AdminOp, Exchange, Genesis
from .journal import JOURNAL, JournalWriter, fork_snapshot, rebuild, start_journal, write_snapshot
from .journal import frame as journal_frame
from .lock import DataDirLock, check_listen, make_private
from .marketdata import RING
from .publisher import FEED, LedgerPublisher
from .reportlog import REPORTS, SEQ_AT, ReportLog
from .wire import REPORT_SIZE
from .reports import Output, rebuild_reports
from .sequencer import DisconnectCancel, Sequencer, Tick
from .session import Session

log = logging.getLogger("cea.serve")

#: Shanghai keeps UTC+8 all year (no daylight saving): exchange time without a tz database.
_SHANGHAI_US = 8 * 3600 * 1_000_000
LOGON_TIMEOUT_S = 5.0
#: Acknowledgement latencies kept for the operator's percentiles (the last this many turns).
ACK_SAMPLES = 8_192

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
    fix_port: int | None = None  # the FIX 4.4 acceptor's port (gateway.fix); None: off
    web_port: int | None = None  # the web view's port (gateway.web); None: off
    web_host: str = "127.0.0.1"  # the web view's address: loopback unless asked
    fsync: bool = True
    instruments: list[tuple[str, int]] = field(default_factory=lambda: [("CEA", 6000)])
    fee_bps_listed: int = 0
    fee_bps_block: int = 0
    t_plus_one: bool = True
    operator: str = "OPS"
    accounts: list = None  # OpeningBalance list for the first start (None: DEMO_ACCOUNTS)
    tokens: dict[str, str] | None = None  # plain tokens for the first start (None: generate)
    logon_backoff_cap: float = 30.0  # failed logons: the longest wait (s; 0: log only)
    credentials_out: Path | None = None  # generated tokens written here (0600), not kept
    clock: str = "sim"  # "sim": exchange time runs from `start`; "wall": Shanghai time now
    start_us: int | None = None  # sim clock start; None: 09:30 of today's or next trading day
    rate_limit: int = 200_000  # messages per second per session, every kind (0: unlimited)
    burst: int = 50_000
    query_rate: int = 1_000  # of these, heartbeats and queries per second (0: unlimited)
    query_burst: int = 1_000
    max_open_orders: int = 100_000  # orders one account may have open (0: no limit)
    turn_share: int = 4_096  # frames one turn takes from one session at most
    query_share: int = 32  # session-level messages one turn handles per session at most
    max_in_buffer: int = 1 << 20  # unprocessed input over this: stop reading the socket
    max_out_buffer: int = 8 << 20  # a session whose unsent replies exceed this is dropped
    socket_buffer: int = 1 << 20  # kernel send buffer per session (bounds memory with the above)
    max_connections: int = 1_000  # connections beyond this get Error(SERVER_FULL)
    backlog: int = 1_024  # the listen queue
    heartbeat_factor: int = 3  # silence of this many heartbeat intervals ends a session
    snapshot_every: int = 200_000  # journal records between snapshots
    md_ring: int = RING  # market-data frames kept per channel for replays
    max_replay: int = 8_192  # frames one MdReplayRequest may ask for (else a snapshot)
    journal_prealloc: int = 16 << 20  # zeros the journal keeps ahead of its records (0: off)
    sync_thread: bool = False  # fsync on a thread, overlapping the next turn (docs/performance.md)
    ledger: str | None = "sqlite"  # "sqlite": <data_dir>/ledger.sqlite; a URL; None: off
    fork_snapshots: bool = hasattr(os, "fork")  # write snapshots from a forked child
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


#: Catching up on a report stream: reads of at most this many bytes from the log, while the
#: session's unsent output is under the second bound.
_CATCH_UP_CHUNK = 1 << 18
_CATCH_UP_BELOW = 1 << 20


_STREAM_TYPES = (P.MsgType.EXECUTION_REPORT, P.MsgType.QUOTE_REPORT)


def _unsequenced(data: bytes) -> bytes:
    """The frames of ``data`` that are not in a report stream (gateway answers)."""
    out, p, end = [], 0, len(data)
    while p < end:
        size = 2 + (data[p] | data[p + 1] << 8)
        if not (size == REPORT_SIZE and data[p + 2] in _STREAM_TYPES
                and any(data[p + SEQ_AT:p + REPORT_SIZE])):
            out.append(data[p:p + size])
        p += size
    return b"".join(out)


_DECODERS = {t: msgspec.msgpack.Decoder(cls) for t, cls in P.CLIENT.items()
             if issubclass(cls, P.Packed)}
_SEQUENCED = (P.MassCancel, P.Halt, P.Resume, P.EndDay, P.SetPriorClose, P.SetClock)
#: Negotiation commands: command rows among the orders (``Admission.block``)
_NEGOTIATION = (P.BlockQuote, P.BlockCounter, P.BlockAccept, P.BlockWithdraw)


class ExchangeServer:
    """The whole exchange: recovery, sessions, the turn's stages, journal, ledger."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.sessions: dict[int, Session] = {}
        self.fix_sessions: dict = {}  # account -> its FIX session (gateway.fix)
        self.fix_server = None
        self.fix_address: tuple[str, int] | None = None
        self.by_account: dict[int, Session] = {}
        self.subscribers: list[set[Session]] = []
        #: per instrument: the sessions that subscribed to its LISTED orders (MdOrders)
        self.order_subscribers: list[set[Session]] = []
        #: per instrument: the sessions that subscribed to its block quote board (MdQuotes)
        self.board_subscribers: list[set[Session]] = []
        self.captured_seq: list[int] = []  # market data released, per channel
        self.queue: list[Session] = []  # sessions with input for the next turn
        self.system: list = []  # (account, message) the exchange sends itself next turn
        self.answered: list[Session] = []  # sessions with query answers this turn
        self._scheduled = False
        self._next_session = 1
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server = None
        self.recovery = None
        self.records_since_snapshot = 0
        self.snapshot_pid = 0
        self.stats = {"turns": 0, "commands": 0, "max_batch": 0}
        self.failed: BaseException | None = None
        self.credentials = None
        self.sync: SyncThread | None = None  # fsync off the loop, once listening
        self.waiting: collections.deque = collections.deque()  # staged turns not yet durable
        self.durable = -1
        self.reportlog: ReportLog | None = None
        self.reports_rebuilt = 0  # reports recovery rebuilt from the journal
        self.guard = auth.LogonGuard(cap=config.logon_backoff_cap)  # failed-logon backoff
        self.replaying: set[Session] = set()  # sessions catching up on their report stream
        self.web = None  # the web view (gateway.web.app.WebServer), if --web-port
        self.web_address: tuple[str, int] | None = None
        self.started = time.monotonic()
        # acknowledgement latency, per turn: from the first byte of the oldest input the turn
        # took to its output written (after the journal's sync), µs; the last ACK_SAMPLES
        self.ack_us = np.zeros(ACK_SAMPLES, np.int64)
        self.ack_count = 0

    # -------------------------------------------------------------- start and stop

    def open(self) -> str:
        """Recover or create the exchange's state (no sockets yet); return a one-line summary."""
        cfg = self.config
        # one server per data directory (DataDirInUse if another holds it); created 0700
        if getattr(self, "lock", None) is None or not self.lock.held:
            self.lock = DataDirLock(self.data_dir).acquire()
            owned = True
        else:
            owned = False  # taken by the caller (serve), released by it
        try:
            journal = self.data_dir / JOURNAL
            ledger_url = None
            if cfg.ledger == "sqlite":
                ledger_url = str(self.data_dir / "ledger.sqlite")
            elif cfg.ledger:
                ledger_url = cfg.ledger
            tightened = make_private(self.data_dir)
            if tightened:
                log.warning("%s: made %d files owner-only (0600): %s", self.data_dir,
                            len(tightened), ", ".join(sorted(p.name for p in tightened)))
            if (self.data_dir / auth.LEGACY_CREDENTIALS).exists():
                log.warning("%s holds plain logon tokens: move it out of the data directory "
                            "(only tokens.json, the hashes, belongs there)",
                            self.data_dir / auth.LEGACY_CREDENTIALS)
            _warm_up(cfg.impl)
            if journal.exists():
                summary = self._recover(ledger_url)
            else:
                if cfg.recover:
                    raise FileNotFoundError(f"--recover: no journal in {self.data_dir}")
                summary = self._create(ledger_url)
            self.tokens = auth.load_tokens(self.data_dir)
        except BaseException:
            if self.reportlog is not None:
                self.reportlog.close()
            if owned:
                self.lock.release()
            raise
        return summary

    def _stages(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.admission = Admission(exchange)
        self.output = Output()
        self.sequencer = Sequencer(exchange, self.admission, self.output, self.clock)
        n = exchange.md.channels
        self.captured_seq = [exchange.md.seq(c) for c in range(n)]
        self.subscribers = [set() for _ in range(n)]
        self.order_subscribers = [set() for _ in range(n // 2)]
        self.board_subscribers = [set() for _ in range(n // 2)]
        exchange.md.touched[:] = 0

    def _ledger(self, url, exchange) -> LedgerPublisher | None:
        if url is None:
            return None
        pub = LedgerPublisher(url, exchange, (exchange.genesis.fee_bps_listed,
                                              exchange.genesis.fee_bps_block))
        pub.start()
        return pub

    def ledger_state(self) -> dict:
        """Settlement as it stands: ``enabled``, ``alive`` (its process runs), ``failed`` (why
        it died or failed, else None: trading goes on, the ledger catches up at the next
        start), ``behind`` (journal records not settled yet), ``settled`` (its position)."""
        if self.ledger is None:
            return {"enabled": False, "alive": False, "failed": None, "behind": 0,
                    "settled": -1}
        return {"enabled": True, **self.ledger.state()}

    def _create(self, ledger_url) -> str:
        cfg = self.config
        genesis = Genesis([(n, int(p)) for n, p in cfg.instruments], cfg.fee_bps_listed,
                          cfg.fee_bps_block, cfg.t_plus_one, cfg.operator)
        exchange = Exchange(genesis, impl=cfg.impl, md_ring=cfg.md_ring)  # checks the config
        auth.check_tokens(cfg.tokens)  # refused before anything is created
        if cfg.credentials_out is not None:
            auth.check_credentials_out(cfg.credentials_out, self.data_dir)
        (self.data_dir / REPORTS).unlink(missing_ok=True)  # a new exchange: a new stream
        self.reportlog = ReportLog(self.data_dir / REPORTS)
        start_journal(self.data_dir, genesis)
        self.clock = ExchangeClock(cfg.clock, exchange.calendar, cfg.start_us)
        self._stages(exchange)
        # the opening balances are synced whatever --fsync says: the snapshot below follows them
        self.journal = JournalWriter(self.data_dir / JOURNAL, fsync=True,
                                     chunk=cfg.journal_prealloc if cfg.fsync else 0)
        self.ledger = self._ledger(ledger_url, exchange)
        opening = cfg.accounts
        if opening is None:
            opening = [OpeningBalance(n, t, c, {exchange.instruments[0]: a})
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
        self.admission.begin(ts)
        turn = self.sequencer.run([(SYSTEM, op) for op in ops])
        self._journal(turn)
        self._commit(turn, self._stage(turn, []))
        self.journal.fsync = cfg.fsync
        names = [o.account for o in opening] + [cfg.operator]
        # the generated tokens (plain): written to cfg.credentials_out if given, else the
        # caller shows them once; never kept in the data directory
        self.credentials = auth.create_tokens(self.data_dir, names, cfg.tokens,
                                              cfg.credentials_out) or None
        self.reportlog.mark(exchange.seq)  # the snapshot's point: the log is complete to it
        self.reportlog.sync()
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
        # ... and the report log must hold every report before the snapshot
        reportlog = self.reportlog = ReportLog(self.data_dir / REPORTS)
        use_snapshot = snap is not None and (ledger_url is None or snap.seq <= position) \
            and snap.seq <= reportlog.covered
        feed = []
        rseq = reportlog.counters(64)
        out = Output(1 << 12)

        exchange = None  # the one the records are applied to (rebuild's on_start)

        def on_start(ex):
            nonlocal exchange
            exchange = ex

        def on_turn(seq, applied):
            nonlocal rseq
            if seq > position:
                feed.append((seq, applied))
            if seq > reportlog.covered and applied.batch is not None:
                # reports the log lacks (a crash between the journal's write and the log's)
                accounts = len(exchange.engine.accounts)
                if accounts > rseq.shape[0]:
                    rseq = np.concatenate([rseq, np.zeros(2 * accounts, np.int64)])
                grouped = rebuild_reports(exchange, applied, rseq, out, seq)
                reportlog.append(grouped.records, grouped.log, seq, accounts)
                self.reports_rebuilt += int(grouped.counts.sum())

        rec = rebuild(self.data_dir, impl=cfg.impl, use_snapshot=use_snapshot, truncate=True,
                      on_turn=on_turn, md_ring=cfg.md_ring, on_start=on_start)
        if reportlog.covered > rec.exchange.seq:  # the journal lost a tail the log kept
            reportlog.truncate_after(rec.exchange.seq)
        reportlog.mark(rec.exchange.seq)
        self.recovery = rec
        self.clock = ExchangeClock(cfg.clock, rec.exchange.calendar, cfg.start_us)
        self.clock.resume(rec.exchange.clock, rec.exchange.engine.day_in_progress())
        self._stages(rec.exchange)
        self.sequencer.set_counters(reportlog.counters(len(rec.exchange.engine.accounts)))
        self.journal = JournalWriter(self.data_dir / JOURNAL, fsync=cfg.fsync, end=rec.end,
                                     chunk=cfg.journal_prealloc)
        self.ledger = self._ledger(ledger_url, self.exchange)
        if self.ledger is not None:
            for seq, applied in feed:
                self.ledger.publish(seq, applied.settled, applied.ledger_ops)
            if feed:  # how far the ledger now is, even past records that settle nothing
                self.ledger.publish(self.exchange.seq, [], [])
        return (f"recovered {rec.records} journal records (snapshot at {rec.snapshot_seq}, "
                f"{rec.replayed} replayed, {rec.truncated} torn bytes cut, "
                f"{self.reports_rebuilt} reports rebuilt), state hash {rec.state_hash}")

    async def start(self) -> tuple[str, int]:
        self.loop = asyncio.get_running_loop()
        cfg = self.config
        self.server = await self.loop.create_server(lambda: Session(self), cfg.host, cfg.port,
                                                    backlog=cfg.backlog)
        if cfg.fix_port is not None:
            from .fix import FixSession

            self.fix_server = await self.loop.create_server(
                lambda: FixSession(self), cfg.host, cfg.fix_port, backlog=cfg.backlog)
            self.fix_address = self.fix_server.sockets[0].getsockname()[:2]
        self.durable = self.exchange.seq
        if self.journal.fsync and self.config.sync_thread:
            self.sync = SyncThread(self.journal.fd, self._on_durable)
            self.sync.attach(self.loop)
        self._clock_tick()  # publish the status the clock says now
        self._timer = self.loop.create_task(self._tick_loop())
        if cfg.web_port is not None:
            from .web.app import WebServer

            self.web = WebServer(self)
            self.web_address = await self.web.start(cfg.web_host, cfg.web_port)
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def stop(self, snapshot: bool = True) -> None:
        """Stop accepting, settle what is queued, snapshot, close the journal and ledger."""
        if self.web is not None:
            await self.web.stop()
        if self.server is not None:
            self.server.close()
        if self.fix_server is not None:
            self.fix_server.close()
        if getattr(self, "_timer", None):
            self._timer.cancel()
        for session in list(self.sessions.values()):
            session.cancel_on_disconnect = False  # a shutdown is not a participant leaving
        if self.failed is None and (self.queue or self.system):
            self._turn()
        if self.sync is not None:
            if self.failed is None:
                self.sync.sync_now(self.exchange.seq)  # delivers what waited for it
            self.sync.stop()
            self.sync = None
        for session in list(self.sessions.values()):
            session.flush()
            session.close()
        self._reap_snapshot(wait=True)
        if snapshot and self.failed is None:
            self.reportlog.mark(self.exchange.seq)
            self.reportlog.sync()
            write_snapshot(self.data_dir, self.exchange)
        self.journal.close()
        self.reportlog.close()
        if self.ledger is not None:
            self.ledger.stop(timeout=5.0)  # bounded: then killed, settlement resumes at start
        if getattr(self, "lock", None) is not None:
            self.lock.release()  # the data directory is free for the next server

    # -------------------------------------------------------------- sessions

    def session_opened(self, session: Session) -> int:
        sid = self._next_session
        self._next_session += 1
        if len(self.sessions) >= self.config.max_connections:
            session.id = sid
            session.error_now(P.GatewayReason.SERVER_FULL,
                              f"the server takes at most {self.config.max_connections} "
                              "connections")
            return sid
        self.sessions[sid] = session
        return sid

    def session_closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        for c in session.subscriptions:
            self.subscribers[c].discard(session)
            if c % 2 == 0:
                self.order_subscribers[c // 2].discard(session)
            else:
                self.board_subscribers[c // 2].discard(session)
        self.replaying.discard(session)
        if session.account >= 0 and self.by_account.get(session.account) is session:
            del self.by_account[session.account]
            if session.cancel_on_disconnect and session.account != self.exchange.operator:
                if session.inbuf and session.error is None and not session.logout:
                    # what it sent before it went is sequenced first, then the cancel
                    session.cancel_after_input = True
                    self.ready(session)
                else:
                    self.system.append((session.account, DisconnectCancel()))
                    self._schedule()

    def logon(self, session: Session, msg: P.Logon) -> bool:
        """Check a Logon and answer it; True if the session is now logged on."""
        ex = self.exchange
        now = time.monotonic()
        peer = session.transport.get_extra_info("peername")
        wait = self.guard.check(msg.account, peer, now)
        if wait > 0:  # backing off: refused without looking at the token
            return self._refuse(session, f"too many failed logons; retry in {math.ceil(wait)} s")
        stored = self.tokens.get(msg.account)
        if stored is None or not auth.verify_token(msg.token, stored):
            delay = self.guard.failure(msg.account, peer, now)
            if delay <= 0:
                return self._refuse(session, "unknown account or wrong token")
            # a guess costs time: answered after the backoff, nothing read meanwhile
            session.transport.pause_reading()
            self.loop.call_later(min(delay, LOGON_TIMEOUT_S - 1), self._refuse_later, session,
                                 "unknown account or wrong token")
            return False
        self.guard.success(msg.account, peer)
        handle = ex.account_handle(msg.account)
        if msg.account != ex.genesis.operator and not ex.is_account(msg.account):
            return self._refuse(session, "account is not open")
        if handle in self.by_account:
            return self._refuse(session, "this account already has a session")
        hb = max(100, min(msg.heartbeat_ms, 60_000))
        session.account, session.account_name = handle, msg.account
        session.cancel_on_disconnect = msg.cancel_on_disconnect
        session.heartbeat_s = hb / 1000
        self.by_account[handle] = session
        if self.sync is not None and self.waiting:
            self.sync.sync_now(ex.seq)  # every staged turn delivered and in the report log
        last = self.reportlog.last(handle)
        # resume after what the client has; a number beyond the stream (a data directory
        # started afresh) resumes from now, and LogonAck.report_seq tells the client so
        session.rseq_next = msg.report_seq + 1 if 0 <= msg.report_seq < last else last + 1
        session.send(P.LogonAck(msg.account, session.id, self.clock.now(), hb,
                                list(ex.instruments), last))
        session.flush()
        if session.rseq_next <= last:
            self._start_catch_up(session)
            self._catch_up(session)
        return True

    def _refuse_later(self, session: Session, text: str) -> None:
        if not session.closing:
            self._refuse(session, text)

    def _refuse(self, session: Session, text: str) -> bool:
        session.send(P.LogonReject(text))
        session.flush()
        session.close()
        return False

    # -------------------------------------------------------------- a turn

    def ready(self, session: Session) -> None:
        """``session`` has input for the next turn."""
        if not session.queued:
            session.queued = True
            self.queue.append(session)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and self.loop is not None:
            self._scheduled = True
            self.loop.call_soon(self._turn)

    def _turn(self) -> None:
        self._scheduled = False
        if self.failed is not None:
            return
        ex, adm = self.exchange, self.admission
        adm.begin(max(self.clock.now(), ex.clock))
        queue, self.queue = self.queue, []
        again, ending = [], []
        oldest = math.inf
        for session in queue:
            session.queued = False
            if session.account < 0 or (session.closing and not session.cancel_after_input):
                continue
            if session.rx_at < oldest:
                oldest = session.rx_at
            if session.peer_slow and not session.closing:
                continue  # resume_writing puts it back
            if self._take(session):
                again.append(session)
            elif session.cancel_after_input:
                session.cancel_after_input = False
                adm.special(session.account, DisconnectCancel())
            if session.logout or session.error is not None:
                ending.append(session)
        system, self.system = self.system, []
        if not (adm.rows or adm.answers or adm.specials or system):
            self._commit(None, self._stage(None, ending, oldest if self.answered else None))
            self._after(again)
            return
        try:
            turn = self.sequencer.run(system)
            self._journal(turn)
        except BaseException as e:
            log.exception("sequencer failed")
            self._fail(e)
            return
        self._commit(turn, self._stage(turn, ending, oldest))
        self.stats["turns"] += 1
        self.stats["commands"] += adm.rows
        self.stats["max_batch"] = max(self.stats["max_batch"], adm.rows)
        if turn.day_ended:
            self.clock.day_ended(ex.clock)
        if self.records_since_snapshot >= self.config.snapshot_every:
            self._snapshot()
        self._after(again)

    def _after(self, again: list) -> None:
        for session in again:
            if not session.closing or session.cancel_after_input:
                self.ready(session)

    def _take(self, session: Session) -> bool:
        """Admit what ``session`` sent; True if complete frames are left for a later turn."""
        cfg = self.config
        now = time.monotonic()
        adm = self.admission
        answered = adm.answers
        consumed, used, queries, error, more = adm.take(
            session.inbuf, session.account, cfg.turn_share, session.bucket.available(now),
            session.queries.available(now), lambda frame: self._message(session, frame),
            cfg.query_share, cfg.max_open_orders)
        if session.closing and adm.answers > answered:
            adm.gw_acct[answered:adm.answers] = -1  # its session has gone: answered to no one
        session.bucket.spend(used)
        session.queries.spend(queries)
        session.consumed(consumed)
        if error is not None and session.error is None:
            session.error = (P.GatewayReason.PROTOCOL_ERROR, error)
        if session.error is not None or session.logout:
            session.inbuf.clear()
            return False
        return more

    def _message(self, session: Session, frame: bytes) -> bool:
        """One session-level message; True to stop taking the session's input."""
        kind = frame[2]
        try:
            body = memoryview(frame)[P.HEADER:]
            P.check_nesting(body)
            msg = _DECODERS[kind].decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError,
                P.ProtocolError) as e:
            session.error = (P.GatewayReason.PROTOCOL_ERROR,
                             f"undecodable {P.CLIENT[kind].__name__}: {e}")
            return True
        cls = type(msg)
        if cls is P.Heartbeat:
            return False
        if cls is P.Logout:
            session.logout = True
            return True
        if cls is P.Logon:
            session.error = (P.GatewayReason.PROTOCOL_ERROR, "already logged on")
            return True
        if cls in _NEGOTIATION:  # rows in sequence with the session's orders
            self.admission.block(session.account, msg)
        elif cls in _SEQUENCED:
            self.admission.special(session.account, msg, reply=not session.closing)
        elif session.closing:
            return False  # no one to answer
        elif cls is P.Subscribe:
            self._subscribe(session, msg)
        elif cls is P.MdReplayRequest:
            self._md_replay(session, msg)
        elif cls is P.BalanceRequest:
            self._answer(session, self._balance(session))
        elif cls is P.OrderStatusRequest:
            self._answer(session, self._order_status(session, msg.cl_ord_id))
        elif cls is P.OrdersRequest:
            i = self.exchange.instrument_index.get(msg.instrument, -1)
            if i < 0:
                self._answer(session, P.AdminAck("OrdersRequest", False,
                                                 P.GatewayReason.UNKNOWN_INSTRUMENT,
                                                 f"no instrument {msg.instrument!r}"))
            else:
                self._answer(session, self.exchange.md.orders(self.exchange.engine.book, i))
        elif cls is P.QuoteBoardRequest:
            i = self.exchange.instrument_index.get(msg.instrument, -1)
            if i < 0:
                self._answer(session, P.AdminAck("QuoteBoardRequest", False,
                                                 P.GatewayReason.UNKNOWN_INSTRUMENT,
                                                 f"no instrument {msg.instrument!r}"))
            else:
                self._answer(session, self.exchange.board(i))
        elif cls is P.NegotiationsRequest:
            self._answer(session, self.exchange.negotiations(session.account))
        return False

    # -------------------------------------------------------------- queries

    def _answer(self, session: Session, msg) -> None:
        """A query's answer, sent with this turn's output (before its reports)."""
        if not session.answers:
            self.answered.append(session)
        session.answers += msg if isinstance(msg, (bytes, bytearray)) else P.encode(msg)

    def _channel(self, session: Session, msg, command: str) -> int:
        i = self.exchange.instrument_index.get(msg.instrument, -1)
        if i < 0 or msg.segment not in (0, 1):
            self._answer(session, P.AdminAck(command, False, P.GatewayReason.UNKNOWN_INSTRUMENT,
                                             f"no channel {msg.instrument!r}/{msg.segment}"))
            return -1
        return i * 2 + msg.segment

    def _subscribe(self, session: Session, msg: P.Subscribe) -> None:
        c = self._channel(session, msg, "Subscribe")
        if c < 0:
            return
        self._answer(session, self.exchange.snapshot(c // 2, c % 2))
        session.subscriptions.add(c)  # incrementals from the one after the snapshot on
        self.subscribers[c].add(session)
        if msg.orders and c % 2 == 0:  # the orders a take may target, now and on change
            self._answer(session, self.exchange.md.orders(self.exchange.engine.book, c // 2))
            self.order_subscribers[c // 2].add(session)
        if msg.quotes and c % 2 == 1:  # the block quote board, now and on change
            self._answer(session, self.exchange.board(c // 2))
            self.board_subscribers[c // 2].add(session)

    def _md_replay(self, session: Session, msg: P.MdReplayRequest) -> None:
        c = self._channel(session, msg, "MdReplayRequest")
        if c < 0:
            return
        frames = None
        count = msg.to_seq - msg.from_seq + 1
        if 0 < count <= self.config.max_replay:
            room = self.config.max_out_buffer - len(session.answers) - (
                session.transport.get_write_buffer_size() if session.transport else 0)
            frames = self.exchange.md.frames(c, msg.from_seq, msg.to_seq, max_bytes=room)
        # not kept, too many, or more than the session can still take: a fresh snapshot
        self._answer(session, frames if frames is not None else
                     self.exchange.snapshot(c // 2, c % 2))

    def _order_status(self, session: Session, cl_ord_id: str) -> P.OrderStatus:
        """Where one of the session's orders stands, from the state before this turn."""
        ex = self.exchange
        try:
            handle = ex.orders.find(session.account, cl_ord_id)
        except ValueError:  # not a valid id: no order has it
            handle = -1
        last = self.reportlog.last(session.account)
        if handle < 0:
            return P.OrderStatus(cl_ord_id, "UNKNOWN", report_seq=last)
        o = ex.orders
        instrument = int(o.instr[handle])
        instrument = P.NO_INSTRUMENT if instrument < 0 else instrument
        if handle >= self.admission.first_order:  # sent in this turn: its reports follow
            return P.OrderStatus(cl_ord_id, "PENDING", 0, instrument, report_seq=last)
        status, reason, qty, filled, open_qty = ex.engine.book.order_state(handle)
        status = OrderStatus(status)
        if status == OrderStatus.NONE:  # the id was used by an order the engine refused
            return P.OrderStatus(cl_ord_id, "REJECTED", 0, instrument, report_seq=last,
                                 order_no=handle)
        return P.OrderStatus(cl_ord_id, "OPEN" if status == OrderStatus.RESTING else status.name,
                             int(reason), instrument, int(o.side[handle]), int(qty), int(filled),
                             int(open_qty), last, handle)

    def _balance(self, session: Session):
        if not self.exchange.is_account(session.account_name):
            return P.AdminAck("BalanceRequest", False, P.GatewayReason.BAD_VALUE,
                              "the operator has no balances")
        return self.exchange.balance(session.account_name)

    # -------------------------------------------------------------- journal and release

    def _journal(self, turn) -> None:
        """Write the turn's records (the page cache: durable once ``_commit`` syncs them)."""
        if turn.records:
            self.journal.write(b"".join([journal_frame(seq, record)
                                         for seq, record in turn.records]))
            self.records_since_snapshot += len(turn.records)

    def _stage(self, turn, ending: list, oldest: float | None = None) -> tuple:
        """What the turn sends, copied out of the stages' buffers (the next turn reuses them):
        per session its query answers; per account its reports (and the gateway's answers
        among them) and their report-log records; per session the market data it subscribed
        to; then the sessions to close, what the ledger settles, and when the oldest input
        it answers arrived (monotonic s; None: nothing answered)."""
        answers: dict[Session, bytes] = {}
        for session in self.answered:
            if not session.closing:
                answers[session] = bytes(session.answers)
            session.answers.clear()
        self.answered = []
        ex = self.exchange
        groups = log = None
        if turn is not None:
            g = self.output.grouped(len(ex.engine.accounts), ex.seq)
            buf = g.buffer
            groups = [(a, buf[start:start + size].tobytes(), first, count)
                      for a, start, size, first, count in zip(
                          g.accounts.tolist(), g.starts.tolist(), g.sizes.tolist(),
                          g.firsts.tolist(), g.counts.tolist())]
            if g.log.shape[0]:  # copies: the next turn reuses the buffers
                log = (g.records.copy(), g.log.tobytes(), ex.seq, len(ex.engine.accounts))
        md_parts = []
        md, captured = ex.md, self.captured_seq
        for c in range(md.channels):
            seq = md.seq(c)
            if seq > captured[c]:
                subs = self.subscribers[c]
                if subs:
                    data = md.frames(c, captured[c] + 1, seq)
                    if data is not None:  # else the subscribers see a gap and resync
                        md_parts.append((list(subs), data))
                captured[c] = seq
        # the orders a take may target: a complete MdOrders (not a delta, not numbered:
        # the latest wins) to the order subscribers of every LISTED book the turn changed
        touched = md.touched
        for i, subs in enumerate(self.order_subscribers):
            if touched[2 * i]:
                touched[2 * i] = 0
                if subs:
                    md_parts.append((list(subs), P.encode(md.orders(ex.engine.book, i))))
        # the block quote board: a complete MdQuotes to its subscribers after every turn
        # that touched the instrument's BLOCK side (a quote made, countered or ended, ...)
        for i, subs in enumerate(self.board_subscribers):
            if touched[2 * i + 1]:
                touched[2 * i + 1] = 0
                if subs:
                    md_parts.append((list(subs), P.encode(ex.board(i))))
        ledger = (ex.seq, turn.settled, turn.ledger_ops) if turn is not None and \
            turn.records and self.ledger is not None else None
        return answers, groups, log, md_parts, ending, ledger, oldest

    def _commit(self, turn, staged) -> None:
        """Release the staged output once the journal holds the turn durably: after an
        fdatasync on the loop (at once with fsync off), or, with the sync thread, when it says
        so (``_on_durable``), in turn order."""
        last = self.exchange.seq
        if self.sync is None:
            if turn is not None and turn.records:
                try:
                    self.journal.commit()
                except OSError as e:  # not durable: stop before acknowledging anything
                    log.exception("journal sync failed")
                    self._fail(e)
                    return
            self.durable = last
            self._deliver(staged)
            return
        if turn is not None and turn.records:
            self.sync.submit(last)
        self.waiting.append((last, staged))
        if last <= self.durable:
            self._on_durable(self.durable)

    def _on_durable(self, seq: int) -> None:
        if seq < 0:  # the journal could not be synced: stop before acknowledging more
            self._fail(self.sync.error)
            return
        self.durable = max(self.durable, seq)
        waiting = self.waiting
        while waiting and waiting[0][0] <= self.durable and self.failed is None:
            self._deliver(waiting.popleft()[1])

    def _deliver(self, staged) -> None:
        """The turn is durable: its reports go into the report log, then out, each session's
        share in one write. A session still catching up on its stream gets only the
        unsequenced answers now; its reports come from the log in order (``_catch_up``)."""
        answers, groups, log, md_parts, ending, ledger, oldest = staged
        if log is not None:
            self.reportlog.append(*log)
        parts: dict[Session, list] = {s: [data] for s, data in answers.items()}
        if groups:
            by_account = self.by_account
            for a, data, first, count in groups:
                session = by_account.get(a)
                if session is None or session.closing:
                    continue
                if count and (session.replaying or session.rseq_next != first):
                    data = _unsequenced(data)  # the reports come from the log, in order
                    self._start_catch_up(session)
                elif count:
                    session.rseq_next = first + count
                if data:
                    parts.setdefault(session, []).append(data)
        for subs, data in md_parts:
            for session in subs:
                parts.setdefault(session, []).append(data)
        for session, chunks in parts.items():
            if not session.closing:
                session.out += b"".join(chunks) if len(chunks) > 1 else chunks[0]
                if session not in ending:
                    session.flush()
        for session in ending:
            self._finish(session)
        if oldest is not None and oldest != math.inf:
            self.ack_us[self.ack_count % ACK_SAMPLES] = (time.monotonic() - oldest) * 1e6
            self.ack_count += 1
        if self.replaying:
            for session in list(self.replaying):
                self._catch_up(session)
        if ledger is not None:
            self.ledger.publish(*ledger)

    # -------------------------------------------------------------- the report stream

    def _start_catch_up(self, session: Session) -> None:
        session.replaying = True
        self.replaying.add(session)

    def _catch_up(self, session: Session) -> None:
        """Send ``session`` its account's reports from the log, from the next it lacks, while
        its peer reads (under the transport's high-water mark); done when it has them all:
        from then on the turns' reports go to it directly."""
        log = self.reportlog
        last = log.last(session.account)
        transport = session.transport
        while not session.closing and session.rseq_next <= last and \
                transport.get_write_buffer_size() < _CATCH_UP_BELOW:
            data, n = log.read(session.account, session.rseq_next, _CATCH_UP_CHUNK)
            if not n:
                break
            session.out += data
            session.rseq_next += n
            session.flush()
        if session.closing or session.rseq_next > last:
            session.replaying = False
            self.replaying.discard(session)

    def _finish(self, session: Session) -> None:
        """Write the session's output; then close it if it logged out or broke the protocol."""
        if session.error is not None and not session.closing:
            session.send(P.Error(int(session.error[0]), session.error[1]))
            session.flush()
            session.close()
        elif session.logout and not session.closing:
            session.flush()
            session.close()
        else:
            session.flush()

    def _snapshot(self) -> None:
        """A snapshot of the state now; the journal is made durable up to it first (a
        snapshot must never be ahead of the journal)."""
        if self.sync is not None:
            self.sync.sync_now(self.exchange.seq)
        self._reap_snapshot(wait=True)
        self.reportlog.mark(self.exchange.seq)  # the log is complete up to the snapshot
        self.reportlog.flush()  # the child syncs the file: what it holds must be written
        if self.config.fork_snapshots:
            self.snapshot_pid = fork_snapshot(self.data_dir, self.exchange,
                                              sync_fds=(self.reportlog.fd,))
        else:
            self.reportlog.sync()
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

    # -------------------------------------------------------------- time

    async def _tick_loop(self) -> None:
        """Heartbeats, and a clock tick whenever a session boundary or 15:00 passes."""
        try:
            while True:
                await asyncio.sleep(0.05)
                self._reap_snapshot()
                self.reportlog.flush()  # to the page cache, in one write per period
                if self.ledger is not None:
                    self.ledger.poll()  # a dead or failed ledger: logged, trading goes on
                    self.ledger.hand_over()  # (nothing once it is down)
                now = time.monotonic()
                self.guard.flush(now)
                for session in list(self.sessions.values()):
                    if session.closing:
                        continue
                    hb = session.heartbeat_s
                    if session.account < 0 and now - session.opened > LOGON_TIMEOUT_S:
                        session.error_now(P.GatewayReason.LOGON_TIMEOUT, "no Logon in time")
                    elif now - session.last_rx > hb * self.config.heartbeat_factor:
                        session.error_now(P.GatewayReason.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                    elif now - session.last_tx > hb and session.account >= 0:
                        session.send(P.Heartbeat(self.clock.now()))
                        session.flush()
                for session in list(self.replaying):  # streams a peer was slow to read
                    self._catch_up(session)
                self._clock_tick()
        except asyncio.CancelledError:
            pass

    # -------------------------------------------------------------- operator, from the web

    def system_op(self, op: AdminOp) -> None:
        """An operation the exchange itself sequences (journaled like an operator's), in the
        next turn: the web view's halt and resume."""
        self.system.append((SYSTEM, op))
        self._schedule()

    def _clock_tick(self) -> None:
        if self.failed is not None:
            return
        ts = self.clock.now()
        if self.sequencer.tick_due(ts):
            self.system.append((SYSTEM, Tick(ts)))
            self._schedule()


def _warm_up(impl: str) -> None:
    """Compile (or load from Numba's cache) every kernel of the order path before the first
    client, by running a few orders through a throwaway exchange: a cold compile takes tens
    of seconds, which no session should wait out."""
    from engine.tradingdays import parse_time

    ex = Exchange(Genesis([("WARM", 6000)]), impl=impl, md_ring=16)
    adm, out = Admission(ex), Output()
    seq = Sequencer(ex, adm, out)
    ts = parse_time("2024-03-04T10:00:00")
    adm.begin(ts)
    seq.run([(SYSTEM, AdminOp(ts, "OPEN_ACCOUNT", account="W", value=1)),
             (SYSTEM, AdminOp(ts, "DEPOSIT", account="W", value=10**9)),
             (SYSTEM, AdminOp(ts, "ALLOWANCE_IN", account="W", value=100))])
    account = ex.account_handle("W")
    frames = bytearray(b"".join(P.encode(m) for m in (
        P.NewOrder("b", 0, 1, 10, 6000), P.NewOrder("s", 0, 2, 5, 5990, stp=2),
        P.Amend("b", 6001, 8), P.Take("t", 0, 2, 1, 0), P.Cancel("b"), P.Cancel("x"))))
    adm.begin(ts)
    adm.take(frames, account, 64, 1 << 30, 1 << 30, lambda frame: False, 8)
    seq.run([(account, DisconnectCancel())])
    out.grouped(len(ex.engine.accounts))
    ex.md.frames(0, 1, ex.md.seq(0))
    ex.md.orders(ex.engine.book, 0)


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
    # before anything is created: another server on the data directory, or a busy port
    # (checked first when the directory is new, so that nothing is left behind)
    if not Path(config.data_dir).exists():
        check_listen(config.host, config.port)
    server.lock = DataDirLock(config.data_dir).acquire()
    try:
        check_listen(config.host, config.port)
        summary = server.open()
    except BaseException:
        server.lock.release()
        raise

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            host, port = await server.start()
        except BaseException:  # e.g. the port is taken: the ledger process ends too
            if server.ledger is not None:
                server.ledger.stop()
            raise
        # what exists now lives as long as the server: keep the collector from rescanning it
        gc.collect()
        gc.freeze()
        if ready is not None:
            ready(server, summary, host, port)
        waiter = loop.create_task(stop.wait())
        while not stop.is_set() and server.failed is None:
            await asyncio.wait([waiter], timeout=0.2)
        await server.stop(snapshot=server.failed is None)

    try:
        uvloop.run(main())
    finally:
        server.lock.release()  # stop() did, unless it did not get that far
    return 1 if server.failed is not None else 0
