"""``gateway.client``: an asyncio client of ``cea serve``.

Example (a running ``cea serve`` and A001's token; ``tests/gateway`` runs the like)::

    async with Client("127.0.0.1", 7878, "A001", token) as c:
        report = await c.place("o1", "CEA", Side.BUY, 500, 6010)
        print(report.exec.name, report.open)        # ACCEPTED 500
        book = await c.subscribe("CEA")
        print(book.bids[:1], book.seq)              # [(6010, 500, 1)] 3

Order entry is fire-and-forget (``new_order``, ``cancel``, ``amend``, ``take``; replies
arrive at ``on_execution``) or awaited (``place``, ``cancel_wait``, ``amend_wait``,
``take_wait``: the first report about that ``cl_ord_id``). A targeted take names a resting
LISTED order by its public order number: ``listed_orders`` asks for them (``MdOrders``), and
``subscribe(..., orders=True)`` keeps the latest in ``BookView.orders``. The batch path
sends frames built in NumPy (``send_frames`` with
``protocol.order_frames``) and hands the reports of each read to ``on_reports`` as one array
of ``protocol.EXECUTION_REPORT`` rows, split by compiled code (``BatchReader``): no Python
object per order either way. Market data is kept per channel in a ``BookView``, which checks
sequence numbers: on a gap it asks the server to replay the missing range (or re-snapshot)
and holds later messages until the gap is filled, so callbacks see every message once, in
order. With ``reconnect=True`` a lost connection is re-established, logged on again and
re-subscribed (from fresh snapshots).

Execution reports are numbered per account (``report_seq``); the client remembers the last
it saw (``last_report_seq``) and every logon asks for what follows it, so fills made while
it was away, even across a server restart, arrive on the next logon, once each, in order.
A client that starts afresh passes the number it last processed (``report_seq=``), or -1
(the default) to start from now.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Callable

import numpy as np

from engine.codes import OrderType, Stp, TimeInForce

from . import protocol as P
from .wire import gather_reports, split_frames


class ClientError(Exception):
    """Logon refused, the server closed the session, or an awaited reply did not come."""


class BookView:
    """One market-data channel as the client sees it, in sequence.

    ``gaps`` counts gaps seen, ``replays`` the replay requests sent, ``snapshots`` the
    snapshots applied.
    """

    def __init__(self, instrument: str, segment: int):
        self.instrument, self.segment = instrument, segment
        self.seq = -1  # -1: no snapshot yet
        self.status = P.Status.CLOSED
        self.bids: list = []
        self.asks: list = []
        self.last_price: int | None = None
        self.prior_close = 0  # today's band reference (the next day's once a day has closed)
        self.volume = 0
        self.trades: collections.deque = collections.deque(maxlen=1000)
        self.summaries: list[P.MdDaySummary] = []
        #: the latest MdOrders (LISTED, subscribed with orders=True): what a take may target
        self.orders: P.MdOrders | None = None
        self.with_orders = False  # subscribed with orders=True (kept across reconnects)
        #: the latest MdQuotes (BLOCK, subscribed with quotes=True): the block quote board
        self.quotes: P.MdQuotes | None = None
        self.with_quotes = False  # subscribed with quotes=True (kept across reconnects)
        self.held: dict[int, object] = {}
        self.gaps = self.replays = self.snapshots = 0
        self.asked_to = 0  # the highest sequence number a pending replay covers
        self.ready = asyncio.Event()

    def on_snapshot(self, snap: P.MdSnapshot) -> tuple[list, tuple[int, int] | None]:
        """Messages now in order after the snapshot, and a range to ask for if one is missing."""
        self.seq = snap.seq
        self.status, self.bids, self.asks = snap.status, list(snap.bids), list(snap.asks)
        self.last_price, self.volume = snap.last_price, snap.volume
        self.prior_close = snap.prior_close
        self.snapshots += 1
        self.asked_to = 0
        self.ready.set()
        return self._drain(), self._gap()

    def on_incremental(self, msg) -> tuple[list, tuple[int, int] | None]:
        """Messages now in order, and a (from, to) range to ask for if a gap is open."""
        if 0 <= self.seq and msg.seq <= self.seq:
            return [], None  # already seen (a replay overlapping what arrived)
        if 0 <= self.seq and msg.seq == self.seq + 1:
            self._apply(msg)
            ordered = [msg, *self._drain()]
        else:
            self.held[msg.seq] = msg
            ordered = []
        return ordered, self._gap()

    def _gap(self) -> tuple[int, int] | None:
        """The next missing range, unless a request for it is already on its way."""
        if self.seq < 0 or not self.held or self.asked_to > self.seq:
            return None
        first = min(self.held)
        self.gaps += 1
        self.replays += 1
        self.asked_to = first - 1
        return self.seq + 1, first - 1

    def _drain(self) -> list:
        out = []
        for seq in sorted(s for s in self.held if s <= self.seq):
            del self.held[seq]
        while self.seq + 1 in self.held:
            msg = self.held.pop(self.seq + 1)
            self._apply(msg)
            out.append(msg)
        return out

    def _apply(self, msg) -> None:
        self.seq = msg.seq
        kind = type(msg)
        if kind is P.MdDepth:
            self.bids, self.asks = list(msg.bids), list(msg.asks)
        elif kind is P.MdTrade:
            self.last_price = msg.price
            self.volume += msg.qty
            self.trades.append(msg)
        elif kind is P.MdStatus:
            self.status = msg.status
        elif kind is P.MdDaySummary:
            self.summaries.append(msg)
            self.prior_close = msg.close

    @property
    def best_bid(self):
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self):
        return self.asks[0] if self.asks else None


_MD = (P.MdTrade, P.MdDepth, P.MdStatus, P.MdDaySummary)
_ANSWERS = {P.Balance: "BalanceRequest", P.OrderStatus: "OrderStatusRequest",
            P.MdOrders: "OrdersRequest", P.MdQuotes: "QuoteBoardRequest",
            P.Negotiations: "NegotiationsRequest"}


class BatchReader:
    """Splits the server's stream with compiled code: each ``feed`` returns, in order, runs
    of ExecutionReports as ``EXECUTION_REPORT`` arrays and every other message as a Struct.

    >>> r = BatchReader()
    >>> report = P.ExecutionReport(P.ExecKind.ACCEPTED, "o1", 5, 0, 0, 1, 6000, 10, 0, 10)
    >>> data = P.encode(report) * 2 + P.encode(P.Heartbeat(7))
    >>> items = r.feed(data[:80]) + r.feed(data[80:])
    >>> [(type(i).__name__, len(i) if isinstance(i, np.ndarray) else i) for i in items]
    [('ndarray', 1), ('ndarray', 1), ('Heartbeat', Heartbeat(ts_us=7))]
    """

    def __init__(self):
        self._pending = b""
        self._offsets = np.zeros(1 << 12, np.int64)
        self._rows = np.zeros((1 << 12, P.EXECUTION_REPORT.itemsize), np.uint8)
        self._decoder = P.FrameReader(P.SERVER)

    def feed(self, data: bytes) -> list:
        buf = self._pending + data if self._pending else bytes(data)
        raw = np.frombuffer(buf, np.uint8)
        out: list = []
        pos, end = 0, len(buf)
        while True:
            n, stop, bad = split_frames(raw, pos, end, P.MAX_SERVER_FRAME, self._offsets)
            if bad >= 0:
                raise P.ProtocolError(f"frame length 0 at offset {bad}")
            if n == 0:
                break
            offsets = self._offsets[:n]
            kinds = raw[offsets + 2]
            is_report = kinds == P.MsgType.EXECUTION_REPORT
            if is_report.all():
                out.append(self._gather(raw, offsets))
            else:
                start = 0
                for i in np.flatnonzero(~is_report).tolist():
                    if i > start:
                        out.append(self._gather(raw, offsets[start:i]))
                    out.append(self._decoder.decode_frame(buf, int(offsets[i])))
                    start = i + 1
                if start < n:
                    out.append(self._gather(raw, offsets[start:]))
            pos = int(stop)
            if n < self._offsets.shape[0]:
                break
        self._pending = buf[pos:]
        return out

    def _gather(self, raw, offsets) -> np.ndarray:
        if offsets.shape[0] > self._rows.shape[0]:
            self._rows = np.zeros((offsets.shape[0], P.EXECUTION_REPORT.itemsize), np.uint8)
        n = gather_reports(raw, offsets, offsets.shape[0], self._rows)
        if n != offsets.shape[0]:
            raise P.ProtocolError("an ExecutionReport of the wrong size")
        return self._rows[:n].copy().view(P.EXECUTION_REPORT).reshape(-1)


class Client:
    """A session with the exchange. Use ``async with Client(...) as c`` or ``connect``/``close``."""

    def __init__(self, host: str, port: int, account: str, token: str, *,
                 cancel_on_disconnect: bool = True, heartbeat_ms: int = 5000,
                 on_execution: Callable[[P.ExecutionReport], None] | None = None,
                 on_market_data: Callable[[object], None] | None = None,
                 reconnect: bool = False, drop: Callable[[object], bool] | None = None,
                 on_reports: Callable[[np.ndarray], None] | None = None,
                 report_seq: int = -1):
        self.host, self.port, self.account, self.token = host, port, account, token
        self.cancel_on_disconnect = cancel_on_disconnect
        self.heartbeat_ms = heartbeat_ms
        self.on_execution = on_execution
        self.on_market_data = on_market_data
        self.on_reports = on_reports  # the batch path: EXECUTION_REPORT arrays, one per read
        self.reconnect = reconnect
        self.drop = drop  # tests: discard an incoming message on purpose
        self.books: dict[tuple[str, int], BookView] = {}
        self.reports: list[P.ExecutionReport] = []
        self.keep_reports = True
        self.error: P.Error | None = None
        self.logon: P.LogonAck | None = None
        self.instruments: list[str] = []  # names by the numbers the binary messages use
        self._instrument_ids: dict[str, int] = {}
        self.connected = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future]] = collections.defaultdict(list)
        self._replies: list[tuple[str, asyncio.Future]] = []  # (command, future) awaited
        self._writer = None
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self.reconnects = 0
        #: the last report of the account's stream seen (-1: none; the next logon starts
        #: the stream from the server's present)
        self.last_report_seq = report_seq
        self.report_gaps = 0  # reports that skipped numbers (never expected)
        self.report_duplicates = 0  # reports dropped as already seen (never expected)
        #: the account's QuoteReports (negotiations), in stream order (``keep_reports``)
        self.quote_reports: list[P.QuoteReport] = []
        self.on_quote: Callable[[P.QuoteReport], None] | None = None
        #: negotiation commands awaiting their first answer: (predicate, future)
        self._quote_waiters: list[tuple[Callable[[object], bool], asyncio.Future]] = []

    # -------------------------------------------------------------- connection

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> P.LogonAck:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._writer = writer
        writer.write(P.encode(P.Logon(self.account, self.token, self.cancel_on_disconnect,
                                      self.heartbeat_ms, self.last_report_seq)))
        frames = BatchReader()
        reply = None
        try:
            while reply is None:
                data = await reader.read(65536)
                if not data:
                    raise ClientError("the server closed the connection during logon")
                msgs = frames.feed(data)
                reply, rest = msgs[0] if msgs else None, msgs[1:]
        except BaseException:
            writer.close()
            raise
        if isinstance(reply, P.LogonReject):
            writer.close()
            raise ClientError(f"logon refused: {reply.text}")
        if not isinstance(reply, P.LogonAck):
            writer.close()
            raise ClientError(f"logon answered with {reply!r}")
        self.logon = reply
        if self.last_report_seq < 0 or self.last_report_seq > reply.report_seq:
            # a fresh start, or a stream that began again (a new data directory): from now
            self.last_report_seq = reply.report_seq
        self.instruments = list(reply.instruments)
        self._instrument_ids = {name: i for i, name in enumerate(self.instruments)}
        self.connected.set()
        for item in rest:
            self._item(item)
        self._tasks = [asyncio.create_task(self._read(reader, frames)),
                       asyncio.create_task(self._heartbeat())]
        return reply

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None and not self._writer.is_closing():
            try:
                self._writer.write(P.encode(P.Logout()))
                await self._writer.drain()
            except (ConnectionError, RuntimeError):
                pass
            self._writer.close()
        for task in self._tasks:
            task.cancel()
        self._fail_waiters(ClientError("client closed"))

    def abort(self) -> None:
        """Drop the connection without Logout (tests: a participant that vanishes)."""
        self._writer.transport.abort()

    async def _read(self, reader, frames) -> None:
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                for item in frames.feed(data):
                    self._item(item)
        except (ConnectionError, P.ProtocolError):
            pass
        except asyncio.CancelledError:
            return
        self.connected.clear()
        if self._writer is not None:
            self._writer.close()  # the connection is gone: its writer too
        self._fail_waiters(ClientError(
            f"connection closed{': ' + self.error.text if self.error else ''}"))
        if self.reconnect and not self._closing:
            asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                await self.connect()
                self.reconnects += 1
                for book in self.books.values():
                    book.seq = -1
                    book.held.clear()
                    self.send(P.Subscribe(book.instrument, book.segment, book.with_orders,
                                          book.with_quotes))
                return
            except (OSError, ClientError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _heartbeat(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.heartbeat_ms / 1000 / 2)
                if self._writer is not None and not self._writer.is_closing():
                    self._writer.write(P.encode(P.Heartbeat()))
        except asyncio.CancelledError:
            pass

    def _fail_waiters(self, exc: Exception) -> None:
        futures = [f for fs in self._waiters.values() for f in fs]
        for f in futures + [f for _, f in self._replies + self._quote_waiters]:
            if not f.done():
                f.set_exception(exc)
        self._waiters.clear()
        self._replies.clear()
        self._quote_waiters.clear()

    # -------------------------------------------------------------- incoming

    def _item(self, item) -> None:
        if not isinstance(item, np.ndarray):
            self._dispatch(item)
            return
        item = self._in_sequence(item)
        if self.on_reports is not None:
            self.on_reports(item)
            if not (self.keep_reports or self.on_execution or self._waiters
                    or self._quote_waiters or self.drop is not None):
                return
            if not (self.keep_reports or self.on_execution or self.drop is not None
                    or self._quote_waiters):
                # only awaited ids need objects
                keys = np.array([P.encode_clid(k) for k in self._waiters], dtype="S20")
                item = item[np.isin(item["cl_ord_id"], keys)]
        for row in item:
            self._dispatch(P.report_from_row(row))

    def _in_sequence(self, rows: np.ndarray) -> np.ndarray:
        """Track the stream's numbers; drop a report already seen (unnumbered answers pass)."""
        seqs = rows["report_seq"].astype(np.int64)
        numbered = seqs > 0
        if not numbered.any():
            return rows
        last = self.last_report_seq
        fresh = seqs > last
        if not fresh[numbered].all():
            self.report_duplicates += int((numbered & ~fresh).sum())
            rows, seqs = rows[~numbered | fresh], seqs[~numbered | fresh]
            numbered = seqs > 0
            if not numbered.any():
                return rows
        mine = seqs[numbered]
        self.report_gaps += int(mine[0] - last - 1) if last >= 0 else 0
        self.report_gaps += int((np.diff(mine) - 1).sum())
        self.last_report_seq = int(mine[-1])
        return rows

    def _dispatch(self, msg) -> None:
        if self.drop is not None and self.drop(msg):
            return
        kind = type(msg)
        if self._quote_waiters and kind in (P.ExecutionReport, P.QuoteReport, P.AdminAck):
            self._answer_quote_waiters(msg)
        if kind is P.QuoteReport:
            if msg.report_seq:  # in the account's stream, numbered with the ExecutionReports
                last = self.last_report_seq
                if msg.report_seq <= last:
                    self.report_duplicates += 1
                    return
                if last >= 0:
                    self.report_gaps += msg.report_seq - last - 1
                self.last_report_seq = msg.report_seq
            if self.keep_reports:
                self.quote_reports.append(msg)
            if self.on_quote is not None:
                self.on_quote(msg)
            return
        if kind is P.ExecutionReport:
            if self.keep_reports:
                self.reports.append(msg)
            waiters = self._waiters.pop(msg.cl_ord_id, None)
            if waiters:
                for f in waiters:
                    if not f.done():
                        f.set_result(msg)
            if self.on_execution is not None:
                self.on_execution(msg)
        elif kind in _MD:
            name = (self.instruments[msg.instrument] if msg.instrument < len(self.instruments)
                    else str(msg.instrument))
            book = self.books.get((name, msg.segment))
            if book is None:
                return
            ordered, gap = book.on_incremental(msg)
            if gap is not None:
                self.send(P.MdReplayRequest(book.instrument, book.segment, *gap))
            if self.on_market_data is not None:
                for m in ordered:
                    self.on_market_data(m)
        elif kind is P.MdSnapshot:
            book = self.books.get((msg.instrument, msg.segment))
            if book is not None:
                ordered, gap = book.on_snapshot(msg)
                if gap is not None:
                    self.send(P.MdReplayRequest(book.instrument, book.segment, *gap))
                if self.on_market_data is not None:
                    self.on_market_data(msg)
                    for m in ordered:
                        self.on_market_data(m)
        elif kind is P.Error:
            self.error = msg
        elif kind is P.Heartbeat:
            pass
        else:
            if kind is P.MdOrders:
                book = self.books.get((msg.instrument, 0))
                if book is not None:
                    book.orders = msg
                if self.on_market_data is not None:
                    self.on_market_data(msg)
            elif kind is P.MdQuotes:
                book = self.books.get((msg.instrument, 1))
                if book is not None:
                    book.quotes = msg
                if self.on_market_data is not None:
                    self.on_market_data(msg)
            # an AdminAck answers the command it names; a Balance the oldest BalanceRequest,
            # an OrderStatus the oldest OrderStatusRequest
            command = msg.command if kind is P.AdminAck else _ANSWERS.get(kind, "")
            for i, (name, f) in enumerate(self._replies):
                if name == command:
                    del self._replies[i]
                    if not f.done():
                        f.set_result(msg)
                    break

    # -------------------------------------------------------------- outgoing

    def send(self, msg) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ClientError("not connected")
        self._writer.write(P.encode(msg))

    def send_frames(self, frames) -> None:
        """Send encoded frames as they are: a bytes object, or an array of frames
        (``protocol.order_frames``, ``protocol.cancel_frames``) sent as its bytes."""
        if self._writer is None or self._writer.is_closing():
            raise ClientError("not connected")
        self._writer.write(frames.tobytes() if isinstance(frames, np.ndarray) else frames)

    async def drain(self) -> None:
        await self._writer.drain()

    def _expect(self, command: str) -> asyncio.Future:
        f = asyncio.get_running_loop().create_future()
        self._replies.append((command, f))
        return f

    def _report_for(self, cl_ord_id: str) -> asyncio.Future:
        P.encode_clid(cl_ord_id)  # a ValueError now, before anything waits on a bad id
        f = asyncio.get_running_loop().create_future()
        self._waiters[cl_ord_id].append(f)
        return f

    def instrument_id(self, instrument: str | int) -> int:
        """The number the binary messages give an instrument (from ``LogonAck``); a name the
        exchange does not list gets one it does not use (the order is rejected MALFORMED)."""
        if isinstance(instrument, int):
            return instrument
        return self._instrument_ids.get(instrument, P.NO_INSTRUMENT - 1)

    def instrument_name(self, instrument: int) -> str:
        return self.instruments[instrument] if 0 <= instrument < len(self.instruments) else ""

    def new_order(self, cl_ord_id: str, instrument: str | int, side: int, qty: int,
                  price: int | None = None, type: int = OrderType.LIMIT,
                  tif: int = TimeInForce.DAY, stp: int = Stp.CANCEL_NEWEST) -> None:
        self.send(P.NewOrder(cl_ord_id, self.instrument_id(instrument), int(side), qty, price,
                             int(type), int(tif), int(stp)))

    def cancel(self, cl_ord_id: str) -> None:
        self.send(P.Cancel(cl_ord_id))

    def take(self, cl_ord_id: str, instrument: str | int, side: int, qty: int,
             target: int) -> None:
        """A targeted take: ``qty`` tonnes with the resting LISTED order whose public order
        number is ``target`` (``MdOrders``), at its price."""
        self.send(P.Take(cl_ord_id, self.instrument_id(instrument), int(side), qty, target))

    async def take_wait(self, cl_ord_id: str, instrument: str | int, side: int, qty: int,
                        target: int, timeout: float = 10.0) -> P.ExecutionReport:
        """Send a Take and return the first report about it (ACCEPTED, then a FILL follows;
        or REJECTED)."""
        f = self._report_for(cl_ord_id)
        self.take(cl_ord_id, instrument, side, qty, target)
        return await asyncio.wait_for(f, timeout)

    async def listed_orders(self, instrument: str, timeout: float = 10.0
                            ) -> P.MdOrders | P.AdminAck:
        """The orders resting in the best five levels of each side of ``instrument``'s LISTED
        book, with their public order numbers (``MdOrders``): what a take may target."""
        f = self._expect("OrdersRequest")
        self.send(P.OrdersRequest(instrument))
        return await asyncio.wait_for(f, timeout)

    # -------------------------------------------------------------- negotiations

    def _answer_quote_waiters(self, msg) -> None:
        for i, (match, f) in enumerate(self._quote_waiters):
            if match(msg):
                del self._quote_waiters[i]
                if not f.done():
                    f.set_result(msg)
                return

    def _quote_wait(self, match) -> asyncio.Future:
        f = asyncio.get_running_loop().create_future()
        self._quote_waiters.append((match, f))
        return f

    @staticmethod
    def _refused(command: str, ref: str):
        """An answer that refuses a negotiation command: its reject (the engine's, in the
        stream; the gateway's, INSTRUMENT_HALTED) or a throttled AdminAck."""
        return lambda m: (type(m) is P.ExecutionReport and m.exec == P.ExecKind.REJECTED
                          and m.cl_ord_id == ref) or (
            type(m) is P.AdminAck and m.command == command and not m.ok)

    async def block_quote(self, cl_ord_id: str, instrument: str, side: int, qty: int,
                          price: int, counterparty: str = "", timeout: float = 10.0
                          ) -> P.QuoteReport | P.ExecutionReport | P.AdminAck:
        """Propose a negotiated block agreement: to ``counterparty`` (an account name) or,
        empty, on the public board. Returns the QuoteReport QUOTED (its ``quote_no`` is the
        quote's public number) or the reject (an ExecutionReport REJECTED with the reason;
        an AdminAck if throttled)."""
        P.encode_clid(cl_ord_id)  # a ValueError now, before anything waits on a bad id
        refused = self._refused("BlockQuote", cl_ord_id)
        f = self._quote_wait(lambda m: refused(m) or (
            type(m) is P.QuoteReport and m.maker and m.cl_ord_id == cl_ord_id))
        self.send(P.BlockQuote(cl_ord_id, instrument, int(side), qty, price, counterparty))
        return await asyncio.wait_for(f, timeout)

    async def _on_quote(self, command: str, msg, events, timeout: float):
        refused = self._refused(command, msg.ref)
        f = self._quote_wait(lambda m: refused(m) or (
            type(m) is P.QuoteReport and m.quote_no == msg.quote_no and m.by_you
            and m.event in events))
        self.send(msg)
        return await asyncio.wait_for(f, timeout)

    async def block_counter(self, ref: str, quote_no: int, price: int | None = None,
                            qty: int = 0, timeout: float = 10.0):
        """New terms on quote ``quote_no`` (``price`` None / ``qty`` 0: unchanged). Returns
        the QuoteReport QUOTED by you, or the reject (its ``cl_ord_id`` is ``ref``)."""
        return await self._on_quote("BlockCounter", P.BlockCounter(ref, quote_no, price, qty),
                                    (P.QuoteEvent.QUOTED,), timeout)

    async def block_accept(self, ref: str, quote_no: int, price: int | None = None,
                           qty: int = 0, timeout: float = 10.0):
        """Accept the other party's latest terms of ``quote_no`` (optionally stating them:
        TERMS_CHANGED if they moved). Returns the QuoteReport ACCEPTED (with ``trade_id``;
        the FILL came just before it) or the reject."""
        return await self._on_quote("BlockAccept", P.BlockAccept(ref, quote_no, price, qty),
                                    (P.QuoteEvent.ACCEPTED,), timeout)

    async def block_withdraw(self, ref: str, quote_no: int, timeout: float = 10.0):
        """End negotiation ``quote_no``. Returns the QuoteReport WITHDRAWN or the reject."""
        return await self._on_quote("BlockWithdraw", P.BlockWithdraw(ref, quote_no),
                                    (P.QuoteEvent.WITHDRAWN,), timeout)

    async def quote_board(self, instrument: str, timeout: float = 10.0
                          ) -> P.MdQuotes | P.AdminAck:
        """The block quote board of ``instrument``: its public quotes, anonymous."""
        f = self._expect("QuoteBoardRequest")
        self.send(P.QuoteBoardRequest(instrument))
        return await asyncio.wait_for(f, timeout)

    async def negotiations(self, timeout: float = 10.0) -> P.Negotiations:
        """The account's live negotiations, with the other party's account."""
        f = self._expect("NegotiationsRequest")
        self.send(P.NegotiationsRequest())
        return await asyncio.wait_for(f, timeout)

    def amend(self, cl_ord_id: str, price: int, qty: int) -> None:
        self.send(P.Amend(cl_ord_id, price, qty))

    async def place(self, cl_ord_id: str, instrument: str | int, side: int, qty: int,
                    price: int | None = None, timeout: float = 10.0, **kw) -> P.ExecutionReport:
        """Send a NewOrder and return the first report about it (ACCEPTED or REJECTED)."""
        f = self._report_for(cl_ord_id)
        self.new_order(cl_ord_id, instrument, side, qty, price, **kw)
        return await asyncio.wait_for(f, timeout)

    async def cancel_wait(self, cl_ord_id: str, timeout: float = 10.0) -> P.ExecutionReport:
        f = self._report_for(cl_ord_id)
        self.cancel(cl_ord_id)
        return await asyncio.wait_for(f, timeout)

    async def amend_wait(self, cl_ord_id: str, price: int, qty: int,
                         timeout: float = 10.0) -> P.ExecutionReport:
        f = self._report_for(cl_ord_id)
        self.amend(cl_ord_id, price, qty)
        return await asyncio.wait_for(f, timeout)

    async def _admin(self, msg, timeout: float = 10.0) -> P.AdminAck:
        f = self._expect(type(msg).__name__)
        self.send(msg)
        return await asyncio.wait_for(f, timeout)

    async def mass_cancel(self, instrument: str = "", side: int = 0) -> P.AdminAck:
        return await self._admin(P.MassCancel(instrument, int(side)))

    async def halt(self, instrument: str) -> P.AdminAck:
        return await self._admin(P.Halt(instrument))

    async def resume(self, instrument: str) -> P.AdminAck:
        return await self._admin(P.Resume(instrument))

    async def end_day(self) -> P.AdminAck:
        return await self._admin(P.EndDay())

    async def set_prior_close(self, instrument: str, price: int) -> P.AdminAck:
        return await self._admin(P.SetPriorClose(instrument, price))

    async def set_clock(self, ts_us: int) -> P.AdminAck:
        """Operator, ``--clock sim`` servers: move the exchange clock forward to ``ts_us``."""
        return await self._admin(P.SetClock(ts_us))

    async def balance(self, timeout: float = 10.0) -> P.Balance | P.AdminAck:
        """The account's balances (an AdminAck refusal for the operator, who has none)."""
        f = self._expect("BalanceRequest")
        self.send(P.BalanceRequest())
        return await asyncio.wait_for(f, timeout)

    async def order_status(self, cl_ord_id: str, timeout: float = 10.0
                           ) -> P.OrderStatus | P.AdminAck:
        """Where one of the account's orders stands now (``OrderStatus``)."""
        f = self._expect("OrderStatusRequest")
        self.send(P.OrderStatusRequest(cl_ord_id))
        return await asyncio.wait_for(f, timeout)

    async def subscribe(self, instrument: str, segment: int = 0, timeout: float = 10.0,
                        orders: bool = False, quotes: bool = False) -> BookView:
        """Subscribe to a channel; return its ``BookView`` once the snapshot is in. With
        ``orders`` (LISTED), ``BookView.orders`` keeps the latest ``MdOrders``; with
        ``quotes`` (BLOCK), ``BookView.quotes`` the latest block quote board (``MdQuotes``)."""
        book = self.books.get((instrument, segment))
        if book is None:
            book = self.books[(instrument, segment)] = BookView(instrument, segment)
        book.with_orders = book.with_orders or orders
        book.with_quotes = book.with_quotes or quotes
        self.send(P.Subscribe(instrument, segment, orders, quotes))
        await asyncio.wait_for(book.ready.wait(), timeout)
        return book
