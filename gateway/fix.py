"""FIX 4.4 acceptor (``cea serve --fix-port``): the FIX session layer, and a translation of
FIX application messages into the native protocol's frames, in the same process and
sequencer as the native gateway.

Each FIX connection (``FixSession``) owns one native ``Session`` of the server whose
transport is this adapter: a FIX NewOrderSingle becomes a native NewOrder frame in that
session's input, so FIX orders are admitted, sequenced, journalled, matched and settled by
exactly the stages native orders go through, interleaved with them in one sequence; the
native session's output (LogonAck, ExecutionReports, AdminAcks, errors) comes back here and
is translated into FIX. The account's native report stream (``report_seq``) is what makes a
FIX session lose nothing: the last number translated is kept with the session's sequence
numbers, and the next logon resumes the stream from there, so a fill made while the FIX
session was away arrives on its next logon.

Session layer (FIX 4.4 "Session Protocol"): Logon (SenderCompID = account, TargetCompID =
``CEA``, Password (554) = the account's token, EncryptMethod 0, HeartBtInt, optional
ResetSeqNumFlag), Heartbeat, TestRequest, ResendRequest answered from the session's store
(application messages resent with PossDupFlag and OrigSendingTime, session messages replaced
by SequenceReset-GapFill), SequenceReset (gap fill and reset), Reject (35=3) with
SessionRejectReason for messages that are well formed but wrong, Logout. Garbled messages
(bad BodyLength or CheckSum, see ``gateway.fixcodec``) are ignored, as the specification
says. Sequence numbers and sent messages are kept per account in ``DATA_DIR/fix/``.

Negotiated block agreements (docs/rules.md §3b): Quote (S) becomes a native BlockQuote,
QuoteResponse (AJ) a BlockAccept, BlockCounter or BlockWithdraw, QuoteCancel (Z) a
BlockWithdraw, QuoteStatusRequest (a) a NegotiationsRequest; each QuoteReport of the account's
stream is sent as a QuoteStatusReport (AI), an agreement's FILL as an ExecutionReport, and the
block quote board (MdQuotes) as market data (MarketDataRequest with TradingSessionID BLOCK and
TradingSessionSubID BOARD).

The messages, tags and code mappings: docs/fix.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np

from engine.codes import OrderType, Side, Stp, TimeInForce

from . import protocol as P
from .fixcodec import FixMessage, FixReader, Garbled, encode

log = logging.getLogger("cea.fix")

TARGET = "CEA"  # the exchange's CompID
#: the longest HeartBtInt accepted, s (the native session behind caps its interval there)
MAX_HEARTBEAT_S = 60
#: SessionRejectReason (373)
REQUIRED_TAG_MISSING, UNDEFINED_TAG, TAG_NO_VALUE, VALUE_INCORRECT, DATA_FORMAT = 1, 0, 4, 5, 6
COMPID_PROBLEM, SENDING_TIME_ACCURACY, INVALID_MSGTYPE, OTHER = 9, 10, 11, 99
#: message types of the session layer (never resent: gap-filled instead)
ADMIN = frozenset("0A12345")
APP_TYPES = {"D": "NewOrderSingle", "F": "OrderCancelRequest",
             "G": "OrderCancelReplaceRequest", "q": "OrderMassCancelRequest",
             "V": "MarketDataRequest", "S": "Quote", "AJ": "QuoteResponse",
             "Z": "QuoteCancel", "a": "QuoteStatusRequest"}
#: TradingSessionID (336) names the segment a MarketDataRequest is for
SEGMENTS = {"LISTED": 0, "BLOCK": 1}
_SEGMENT_NAME = {0: "LISTED", 1: "BLOCK"}
_SIDES = {"1": Side.BUY, "2": Side.SELL}
_FIX_SIDE = {Side.BUY: "1", Side.SELL: "2"}
#: ``D`` (previously quoted): a targeted take of the resting order QuoteID (117) names
_ORD_TYPES = {"1": OrderType.MARKET, "2": OrderType.LIMIT, "D": OrderType.TAKE}
_TIFS = {"0": TimeInForce.DAY, "3": TimeInForce.IOC, "4": TimeInForce.FOK}
#: OrdRejReason (103) for our reject reasons; the rest are 99 (Other), named in Text (58)
_ORD_REJ = {"UNKNOWN_INSTRUMENT": 1, "MARKET_CLOSED": 2, "INSTRUMENT_HALTED": 2,
            "DUPLICATE_ORDER_ID": 6, "INSUFFICIENT_FUNDS": 3, "INSUFFICIENT_ALLOWANCES": 3,
            "POSITION_LIMIT": 3, "UNKNOWN_ACCOUNT": 0, "ACCOUNT_FROZEN": 0,
            "ACCOUNT_NOT_ADMITTED": 0, "PRICE_OUTSIDE_BAND": 99, "INVALID_PRICE": 99,
            "INVALID_QTY": 99, "MALFORMED": 99, "THROTTLED": 99, "OPEN_ORDER_LIMIT": 3,
            "UNKNOWN_TARGET": 5, "TARGET_SAME_SIDE": 99, "TARGET_NOT_LISTED": 99,
            "TARGET_NOT_IN_BEST_FIVE": 99, "TARGET_OWN_ORDER": 99, "TARGET_QTY_EXCEEDED": 99}
#: negotiated block agreements (docs/fix.md "Negotiated block agreements"): QuoteStatus (297)
#: of each QuoteReport event, all FIX 4.4 values (16 Active and 17 Canceled are FIX 5.0's)
QS_PENDING, QS_ACCEPTED, QS_REMOVED, QS_EXPIRED, QS_REJECTED, QS_NOT_FOUND = 10, 0, 6, 7, 5, 9
_QUOTE_STATUS = {P.QuoteEvent.QUOTED: QS_PENDING, P.QuoteEvent.ACCEPTED: QS_ACCEPTED,
                 P.QuoteEvent.WITHDRAWN: QS_REMOVED, P.QuoteEvent.EXPIRED: QS_EXPIRED}
#: user-defined tags of the QuoteStatusReport (like 8013 on the Logon)
TAG_MAKER_QUOTE_ID, TAG_QUOTE_MAKER, TAG_TERMS_BY_YOU, TAG_PUBLIC_QUOTE = 8014, 8015, 8016, 8017
#: the native command of each negotiation kind, and the QuoteReport event that answers it
_NEG_COMMAND = {"quote": "BlockQuote", "counter": "BlockCounter", "accept": "BlockAccept",
                "withdraw": "BlockWithdraw"}
_NEG_EVENT = {"quote": P.QuoteEvent.QUOTED, "counter": P.QuoteEvent.QUOTED,
              "accept": P.QuoteEvent.ACCEPTED, "withdraw": P.QuoteEvent.WITHDRAWN}
#: QuoteRespType (694) -> negotiation command: 1 hit/lift, 2 counter, 6 pass (withdraw)
_RESP_TYPES = {"1": "accept", "2": "counter", "6": "withdraw"}
#: TradingSessionSubID (625) of a BLOCK MarketDataRequest asking for the block quote board
BOARD = "BOARD"


def _defined(msg_type: str) -> bool:
    """Whether ``msg_type`` is a FIX 4.4 message type (a letter or digit, or two letters
    AA..BH); a defined type we do not handle gets a BusinessMessageReject, an undefined one
    a session Reject (SessionRejectReason 11).

    >>> _defined("V"), _defined("BE"), _defined("ZZ"), _defined("")
    (True, True, False, False)
    """
    if len(msg_type) == 1:
        return msg_type.isascii() and msg_type.isalnum()
    return len(msg_type) == 2 and (msg_type[0] == "A" and "A" <= msg_type[1] <= "Z"
                                   or msg_type[0] == "B" and "A" <= msg_type[1] <= "H")


def fix_time(ts: float | None = None) -> str:
    """UTCTimestamp with milliseconds: YYYYMMDD-HH:MM:SS.sss."""
    t = dt.datetime.fromtimestamp(time.time() if ts is None else ts, dt.timezone.utc)
    return t.strftime("%Y%m%d-%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def fix_price(fen: int) -> str:
    """Fen as a FIX Price: CNY with two decimals."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def parse_price(text: str) -> int | None:
    """A FIX Price in CNY (at most two decimals) as fen; None if it is not one.

    >>> parse_price("60.1"), parse_price("60.10"), parse_price("60"), parse_price("60.105")
    (6010, 6010, 6000, None)
    """
    whole, dot, frac = text.partition(".")
    if not whole.isdigit() or (dot and not (frac.isdigit() and len(frac) <= 2)) or \
            len(whole) > 12:
        return None
    return int(whole) * 100 + int((frac + "00")[:2] if dot else 0)


def parse_qty(text: str) -> int | None:
    """A quantity in whole tonnes ("500" or "500.0"); None otherwise."""
    whole, dot, frac = text.partition(".")
    if not whole.isdigit() or len(whole) > 12 or (dot and frac.strip("0")):
        return None
    return int(whole)


def avg_px(value: int, qty: int) -> str:
    """The average price of ``qty`` tonnes worth ``value`` fen, CNY to four decimals."""
    if qty <= 0:
        return "0"
    ten_thousandths = (value * 100 + qty // 2) // qty  # fen * 100 -> 0.0001 CNY
    return f"{ten_thousandths // 10000}.{ten_thousandths % 10000:04d}"


_PLAIN = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _private(path: Path, mode: str):
    """``open(path, mode)``, the file created 0600 if new (the data directory's files are
    the exchange's alone)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


class FixStore:
    """One account's FIX session state, in ``DIR/<account>.*``:

    - ``.seq``: the next sequence numbers in and out and the last native report translated,
      one fixed-width line rewritten in place (cheap enough for every batch);
    - ``.orders``: the orders' FIX ids and figures, a JSON line appended per change (read
      back, and compacted, when the session logs on again);
    - ``.msgs``: every message sent, for resends.
    """

    SEQ_WIDTH = 64

    @staticmethod
    def stem(account: str) -> str:
        """The files' name for ``account``: the name itself when it is plain letters, digits,
        ``_`` and ``-``, else a hash of it (an account name is never a path)."""
        if _PLAIN.fullmatch(account):
            return account
        return "h" + hashlib.sha256(account.encode()).hexdigest()[:24]

    @classmethod
    def peek_report_seq(cls, root: Path, account: str) -> int:
        """The last report translated for ``account`` (-1 if none), read without creating
        or changing anything (the peer is not authenticated yet)."""
        try:
            return int((root / f"{cls.stem(account)}.seq").read_text().split()[2])
        except (OSError, ValueError, IndexError):
            return -1

    def __init__(self, root: Path, account: str):
        root.mkdir(mode=0o700, exist_ok=True)
        stem = self.stem(account)
        self.seq_path = root / f"{stem}.seq"
        self.orders_path = root / f"{stem}.orders"
        self.log_path = root / f"{stem}.msgs"
        self.next_in = self.next_out = 1
        self.report_seq = -1  # none yet: the next logon starts the stream from now
        self.orders: dict[str, dict] = {}  # root cl_ord_id -> what FIX reports need
        self.aliases: dict[str, str] = {}  # every FIX ClOrdID of an order -> its root
        if self.seq_path.exists():
            fields = self.seq_path.read_text().split()
            self.next_in, self.next_out, self.report_seq = map(int, fields[:3])
        if self.orders_path.exists():
            for line in self.orders_path.read_text().splitlines():
                try:
                    root_id, order = json.loads(line)
                except ValueError:
                    continue  # a torn last line (a crash mid-write): the rest stands
                if order is None:
                    self.orders.pop(root_id, None)
                    continue
                self.orders[root_id] = order
            for root_id, order in self.orders.items():
                for alias in order.get("ids", [root_id]):
                    self.aliases[alias] = root_id
            tmp = self.orders_path.with_suffix(".tmp")
            with _private(tmp, "w") as f:  # compacted
                f.writelines(json.dumps([k, v]) + "\n" for k, v in self.orders.items())
            os.replace(tmp, self.orders_path)
        self.seq_fd = os.open(self.seq_path, os.O_RDWR | os.O_CREAT, 0o600)
        self.orders_file = _private(self.orders_path, "a")
        self.log = _private(self.log_path, "ab")
        self.changed: set[str] = set()

    def touch(self, root_id: str) -> None:
        """The order ``root_id`` changed: written at the next ``flush``."""
        self.changed.add(root_id)

    def forget(self, root_id: str) -> None:
        """An order that never was (rejected): its entry goes at the next compaction."""
        self.changed.discard(root_id)
        self.orders_file.write(json.dumps([root_id, None]) + "\n")

    def alias(self, clid: str, root_id: str) -> None:
        self.aliases[clid] = root_id
        ids = self.orders[root_id].setdefault("ids", [root_id])
        if clid not in ids:
            ids.append(clid)
        self.touch(root_id)

    def save(self) -> None:
        line = f"{self.next_in} {self.next_out} {self.report_seq}"
        os.pwrite(self.seq_fd, line.ljust(self.SEQ_WIDTH - 1).encode() + b"\n", 0)

    def sent(self, seq: int, raw: bytes) -> None:
        self.log.write(b"%d %d\n" % (seq, len(raw)) + raw + b"\n")

    def flush(self) -> None:
        for root_id in self.changed:
            self.orders_file.write(json.dumps([root_id, self.orders[root_id]]) + "\n")
        self.changed.clear()
        self.orders_file.flush()
        self.log.flush()
        self.save()

    def sent_between(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """The messages sent with sequence numbers ``begin``..``end`` (0: no end), the last
        one sent under each number."""
        self.log.flush()
        found: dict[int, bytes] = {}
        with open(self.log_path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            nl = data.index(b"\n", pos)
            seq, n = map(int, data[pos:nl].split())
            raw = data[nl + 1:nl + 1 + n]
            pos = nl + 2 + n
            if seq >= begin and (end == 0 or seq <= end):
                found[seq] = raw
        return sorted(found.items())

    def reset(self) -> None:
        """New sequence numbers (ResetSeqNumFlag): both sides start from 1, the stored
        messages are forgotten; the report stream and the orders are kept."""
        self.next_in = self.next_out = 1
        self.log.close()
        self.log = _private(self.log_path, "wb")
        self.save()

    def close(self) -> None:
        self.flush()
        self.log.close()
        self.orders_file.close()
        os.close(self.seq_fd)


class _NativeTransport:
    """The transport of a FIX session's native ``Session``: what the server writes to it is
    translated into FIX; closing it ends the FIX connection."""

    def __init__(self, fix: "FixSession"):
        self.fix = fix

    def write(self, data: bytes) -> None:
        self.fix.from_native(data)

    def get_extra_info(self, name, default=None):
        return self.fix.transport.get_extra_info(name, default)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return self.fix.transport.get_write_buffer_size()

    def is_closing(self) -> bool:
        return self.fix.transport.is_closing()

    def close(self) -> None:
        self.fix.native_closed()

    def abort(self) -> None:
        self.fix.transport.abort()

    def pause_reading(self) -> None:
        self.fix.transport.pause_reading()

    def resume_reading(self) -> None:
        self.fix.transport.resume_reading()


class FixSession(asyncio.Protocol):
    """One FIX connection (see the module's documentation)."""

    def __init__(self, server):
        self.server = server
        self.reader = FixReader()
        self.native = None
        self.transport = None
        self.store: FixStore | None = None
        self.account = ""
        self.logged_on = False
        self.logon_msg: FixMessage | None = None
        self.reset_asked = False
        self.heartbeat_s = 30.0
        self.last_rx = self.last_tx = time.monotonic()
        self.test_sent_at: float | None = None
        self.resend_asked_to = 0  # a ResendRequest is out up to this number
        self.closed = False
        self.instruments: list[str] = []
        self.pending: dict[str, tuple] = {}  # ClOrdID -> the NewOrderSingle, until answered
        self.cancels: dict[str, list[str]] = {}  # root -> ClOrdIDs of cancels in flight
        self.replaces: dict[str, list[tuple]] = {}  # root -> (ClOrdID, qty, price) in flight
        self.mass: list[tuple[str, str, str]] = []  # (ClOrdID, 530, symbol) in flight
        #: market data asked for: (symbol, segment) -> the request and the book last sent
        self.md: dict[tuple[str, int], dict] = {}
        #: per (symbol, segment): for each native snapshot asked for, whether it is sent as
        #: a W (False: asked for the block quote board only, the level view is up to date)
        self.snaps: dict[tuple[str, int], list[bool]] = {}
        #: the block quote board asked for: symbol -> {"req", "stream"}
        self.boards: dict[str, dict] = {}
        #: negotiation commands sent, not yet answered, in the order sent (see _neg_match)
        self.neg: list[dict] = []
        self.neg_queries: list[list] = []  # QuoteStatusRequests sent: what each answer echoes
        self.quote_ids: set[str] = set()  # the QuoteIDs (117) of this account's own quotes
        self.order_sent: dict[str, int] = {}  # ClOrdID -> when sent, until its first report
        self._sent_n = 0
        self._held = None  # a BLOCK fill waiting for the next output (an agreement's?)
        self._held_timer = None
        self._native_reader = None
        self._timer = None

    # -------------------------------------------------------------- asyncio

    def connection_made(self, transport) -> None:
        from .client import BatchReader
        from .session import Session

        self.transport = transport
        self._native_reader = BatchReader()
        self.native = Session(self.server)
        self.native.connection_made(_NativeTransport(self))
        self._timer = asyncio.get_running_loop().create_task(self._heartbeats())

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._held_timer is not None:  # a held fill: resent by the next logon's stream
            self._held_timer.cancel()
        if self.native is not None and not self.native.closing:
            self.native.connection_lost(exc)
        if self.store is not None:
            self.store.close()
            self.server.fix_sessions.pop(self.account, None)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_rx = time.monotonic()
        if self.native is not None:
            self.native.last_rx = self.last_rx  # FIX traffic keeps the native session alive
        for item in self.reader.feed(data):
            if self.closed:
                return
            if isinstance(item, Garbled):
                log.info("fix %s: garbled message ignored: %s", self.account or "-", item.why)
                continue
            self._on_message(item)
        if self.store is not None:
            self.store.flush()

    # -------------------------------------------------------------- output

    def send(self, msg_type: str, body: list, header: list = ()) -> None:
        if self.closed or self.store is None:
            return
        seq = self.store.next_out
        raw = encode(msg_type, body, TARGET, self.account, seq, fix_time(), header)
        self.store.next_out += 1
        self.store.sent(seq, raw)
        self.transport.write(raw)
        self.last_tx = time.monotonic()

    def _logout(self, text: str) -> None:
        """Logout with ``text``, then disconnect."""
        self.send("5", [(58, text)])
        self._close()

    def _close(self) -> None:
        if self.store is not None:
            self.store.flush()
        self.closed = True
        self.transport.close()
        if self.native is not None and not self.native.closing:
            self.native.connection_lost(None)

    def _reject(self, msg: FixMessage, reason: int, text: str, tag: int | None = None) -> None:
        body = [(45, msg.get(34, "0")), (372, msg.msg_type), (373, reason), (58, text)]
        if tag is not None:
            body.insert(1, (371, tag))
        self.send("3", body)

    # -------------------------------------------------------------- input

    def _on_message(self, msg: FixMessage) -> None:
        seq_text = msg.get(34)
        if not self.logged_on:
            if msg.msg_type != "A":
                log.info("fix: first message %s is not a Logon: disconnected", msg.msg_type)
                self._close()
                return
            self._logon(msg)
            return
        if seq_text is None or not seq_text.isdigit():
            self._reject(msg, REQUIRED_TAG_MISSING if seq_text is None else DATA_FORMAT,
                         "MsgSeqNum (34) missing or not a number", 34)
            return
        if msg.get(49) != self.account or msg.get(56) != TARGET:
            self._reject(msg, COMPID_PROBLEM, "SenderCompID/TargetCompID do not match the "
                         "session", 49 if msg.get(49) != self.account else 56)
            self._logout("CompID problem")
            return
        seq = int(seq_text)
        store = self.store
        if msg.msg_type == "4" and msg.get(123) != "Y":  # SequenceReset-Reset: seq ignored
            self._sequence_reset(msg)
            return
        if seq > store.next_in:
            if self.resend_asked_to < seq:
                self.send("2", [(7, store.next_in), (16, 0)])
                self.resend_asked_to = seq
            if msg.msg_type == "2":  # answered even so: two sides each waiting on the
                self._resend(msg)    # other's resend would never move
            elif msg.msg_type == "5":
                self._on_logout(msg)
            return
        if seq < store.next_in:
            if msg.get(43) == "Y":
                return  # a possible duplicate we have: ignored
            self._logout(f"MsgSeqNum too low, expecting {store.next_in} but received {seq}")
            return
        store.next_in = seq + 1
        t = msg.msg_type
        if t in ("1", "2"):  # answered in Python: they draw on the session's query bucket
            bucket = self.native.queries
            if bucket.available(time.monotonic()) <= 0:
                self._reject(msg, OTHER, "throttled: too many TestRequests/ResendRequests")
                return
            bucket.spend(1)
        if t == "0":
            if msg.has(112):
                self.test_sent_at = None
        elif t == "1":
            if not msg.has(112):
                self._reject(msg, REQUIRED_TAG_MISSING, "TestReqID (112) missing", 112)
            else:
                self.send("0", [(112, msg.get(112))])
        elif t == "2":
            self._resend(msg)
        elif t == "4":
            self._sequence_reset(msg)
        elif t == "3":
            log.info("fix %s: peer rejected its message %s: %s", self.account, msg.get(45),
                     msg.get(58))
        elif t == "5":
            self._on_logout(msg)
        elif t == "A":
            self._reject(msg, VALUE_INCORRECT, "already logged on")
        elif t in APP_TYPES:
            getattr(self, f"_app_{t}")(msg)
        elif _defined(t):
            self.send("j", [(45, seq), (372, t), (380, 3),
                            (58, f"unsupported message type {t}")])
        else:
            self._reject(msg, INVALID_MSGTYPE, f"MsgType {t!r} is not a FIX 4.4 type", 35)

    def _on_logout(self, msg: FixMessage) -> None:
        self.send("5", [(58, "logout acknowledged")])
        self._close()

    def _refuse(self, text: str) -> None:
        """Logout with ``text`` outside any session's numbering (the peer is not logged on:
        nothing of the account's is read or changed), then disconnect."""
        log.info("fix %s: logon refused: %s", self.account or "-", text)
        self.transport.write(encode("5", [(58, text)], TARGET, self.account or "?", 1,
                                    fix_time()))
        self._close()

    def _logon(self, msg: FixMessage) -> None:
        """A Logon: checked here, then the account and token by the exchange (a native
        Logon through this connection's session); nothing of the account's FIX state is
        touched until the exchange accepts it (``_logon_accepted``)."""
        account, target, password = msg.get(49), msg.get(56), msg.get(554)
        seq_text, hb = msg.get(34, ""), msg.get(108, "")
        self.account = account or ""
        if target != TARGET:
            self._refuse("TargetCompID must be CEA")
            return
        if not account or password is None or not seq_text.isdigit() or not hb.isdigit() \
                or msg.get(98, "0") != "0":
            self._refuse("Logon needs SenderCompID (49), Password (554), MsgSeqNum (34), "
                         "HeartBtInt (108) and EncryptMethod 0 (98)")
            return
        if not 1 <= int(hb) <= MAX_HEARTBEAT_S:
            self._refuse(f"HeartBtInt must be 1..{MAX_HEARTBEAT_S} seconds")
            return
        self.logon_msg = msg
        self.heartbeat_s = int(hb)
        # tag 8013 (CancelOrdersOnDisconnect, as several venues name it): N keeps the
        # account's orders resting when the session ends; Y, the default, cancels them
        keep = msg.get(8013) == "N"
        report_seq = -1 if msg.get(141) == "Y" else \
            FixStore.peek_report_seq(self.server.data_dir / "fix", account)
        try:
            frame = P.encode(P.Logon(account, password, not keep,
                                     int(self.heartbeat_s * 1000), report_seq))
        except (ValueError, OverflowError):
            self._refuse("SenderCompID or Password not acceptable")
            return
        self.native.data_received(frame)  # answered through from_native

    def _logon_accepted(self, ack: P.LogonAck) -> None:
        """The exchange accepted the account and token: the FIX session's own checks."""
        msg = self.logon_msg
        self.logged_on = True
        self.instruments = list(ack.instruments)
        self.server.fix_sessions[self.account] = self
        store = self.store = FixStore(self.server.data_dir / "fix", self.account)
        self.reset_asked = msg.get(141) == "Y"
        if self.reset_asked:
            store.reset()
        seq = int(msg.get(34))
        if seq < store.next_in:
            self._logout(f"MsgSeqNum too low, expecting {store.next_in} but received {seq}")
            return
        if store.report_seq < 0 or self.reset_asked and store.report_seq < ack.report_seq:
            store.report_seq = ack.report_seq  # a first logon: the stream from now
        body = [(98, 0), (108, self.heartbeat_s)]
        if self.reset_asked:
            body.append((141, "Y"))
        self.send("A", body)
        if seq > store.next_in:
            self.send("2", [(7, store.next_in), (16, 0)])
            self.resend_asked_to = seq
        else:
            store.next_in = seq + 1
        store.flush()

    def _resend(self, msg: FixMessage) -> None:
        begin, end = msg.get(7, ""), msg.get(16, "")
        if not begin.isdigit() or not end.isdigit():
            self._reject(msg, REQUIRED_TAG_MISSING if not (msg.has(7) and msg.has(16))
                         else DATA_FORMAT, "BeginSeqNo (7) and EndSeqNo (16) needed",
                         7 if not begin.isdigit() else 16)
            return
        begin, end = int(begin), int(end)
        last = self.store.next_out - 1
        end = last if end == 0 or end > last else end
        gap_from = None
        stored = self.store.sent_between(begin, end)
        for seq, raw in stored:
            old = FixReader().feed(raw)
            if not old or isinstance(old[0], Garbled):
                continue
            old = old[0]
            if old.msg_type in ADMIN:
                gap_from = gap_from or seq
                continue
            if gap_from is not None:
                self._gap_fill(gap_from, seq)
                gap_from = None
            body = [(tag, value) for tag, value in old.fields[7:-1]]  # after 8,9,35,49,56,34,52
            raw2 = encode(old.msg_type, body, TARGET, self.account, seq, fix_time(),
                          [(43, "Y"), (122, old.get(52))])
            self.transport.write(raw2)
        if gap_from is not None:
            self._gap_fill(gap_from, end + 1)
        elif begin <= end and not stored:
            self._gap_fill(begin, end + 1)
        self.last_tx = time.monotonic()

    def _gap_fill(self, seq: int, new_seq: int) -> None:
        raw = encode("4", [(123, "Y"), (36, new_seq)], TARGET, self.account, seq, fix_time(),
                     [(43, "Y")])
        self.transport.write(raw)

    def _sequence_reset(self, msg: FixMessage) -> None:
        new = msg.get(36, "")
        if not new.isdigit():
            self._reject(msg, REQUIRED_TAG_MISSING if not msg.has(36) else DATA_FORMAT,
                         "NewSeqNo (36) needed", 36)
            return
        new = int(new)
        if new < self.store.next_in:
            self._reject(msg, VALUE_INCORRECT, f"NewSeqNo {new} is below the next expected "
                         f"{self.store.next_in}", 36)
            return
        self.store.next_in = new

    # -------------------------------------------------------------- application

    def _required(self, msg: FixMessage, tags) -> bool:
        for tag in tags:
            if not msg.has(tag):
                self._reject(msg, REQUIRED_TAG_MISSING, f"required tag {tag} missing", tag)
                return False
        return True

    def _field(self, msg: FixMessage, tag: int, table: dict):
        value = table.get(msg.get(tag))
        if value is None:
            self._reject(msg, VALUE_INCORRECT, f"tag {tag}: value {msg.get(tag)!r} is not "
                         f"one of {', '.join(table)}", tag)
        return value

    def _clid(self, msg: FixMessage, tag: int = 11) -> str | None:
        clid = msg.get(tag)
        try:
            P.encode_clid(clid)
        except ValueError:
            self._reject(msg, VALUE_INCORRECT, f"tag {tag}: at most 20 printable ASCII "
                         "characters", tag)
            return None
        return clid

    def _to_native(self, frame: bytes) -> None:
        self.native.data_received(frame)

    def _app_D(self, msg: FixMessage) -> None:
        if not self._required(msg, (11, 55, 54, 60, 38, 40)):
            return
        clid = self._clid(msg)
        if clid is None:
            return
        side = self._field(msg, 54, _SIDES)
        if side is None:
            return
        ord_type = self._field(msg, 40, _ORD_TYPES)
        if ord_type is None:
            return
        target = None
        if ord_type == OrderType.TAKE:  # a targeted take: IOC by nature, no price of its own
            if not self._required(msg, (117,)):
                return
            text = msg.get(117)
            if not (text.isdigit() and len(text) <= 19):
                self._reject(msg, DATA_FORMAT, "QuoteID (117) must be the target's order "
                             "number (digits)", 117)
                return
            target = int(text)
            if msg.get(59, "3") != "3":
                self._reject(msg, VALUE_INCORRECT, "a targeted take (40=D) is IOC: "
                             "TimeInForce (59) 3 or absent", 59)
                return
            tif = TimeInForce.IOC
        elif msg.has(59):
            tif = self._field(msg, 59, _TIFS)
            if tif is None:
                return
        else:  # the default: DAY for a limit order, IOC (the only kind allowed) for MARKET
            tif = TimeInForce.DAY if ord_type == OrderType.LIMIT else TimeInForce.IOC
        qty = parse_qty(msg.get(38))
        if qty is None:
            self._reject(msg, DATA_FORMAT, "OrderQty (38) must be whole tonnes", 38)
            return
        price = None
        if ord_type == OrderType.LIMIT:
            if not self._required(msg, (44,)):
                return
            price = parse_price(msg.get(44))
            if price is None:
                self._reject(msg, DATA_FORMAT, "Price (44) must be CNY with at most two "
                             "decimals", 44)
                return
        symbol = msg.get(55)
        if symbol not in self.instruments:  # answered here: the exchange lists no such one
            self.send("8", [(37, "NONE"), (11, clid), (17, f"{self.account}-u{clid}"),
                            (150, "8"), (39, "8"), (55, symbol), (54, _FIX_SIDE[side]),
                            (38, qty), (151, 0), (14, 0), (6, "0"), (103, 1),
                            (58, f"unknown symbol {symbol}")])
            return
        store = self.store
        if clid in store.aliases:
            self.pending[clid] = (symbol, int(side), qty, price)  # a duplicate: rejected
        else:
            store.orders[clid] = {"latest": clid, "symbol": symbol, "side": int(side),
                                  "qty": qty, "price": price, "cum_qty": 0, "cum_value": 0,
                                  "status": "A"}  # A: pending new, until the exchange says
            store.aliases[clid] = clid
            store.touch(clid)
        self._sent_n += 1
        self.order_sent[clid] = self._sent_n
        if target is not None:
            self._to_native(P.encode(P.Take(clid, self.instruments.index(symbol), int(side),
                                            qty, target)))
            return
        self._to_native(P.encode(P.NewOrder(clid, self.instruments.index(symbol), int(side),
                                            qty, price, int(ord_type), int(tif),
                                            int(Stp.CANCEL_NEWEST))))

    def _root(self, clid: str) -> str:
        return self.store.aliases.get(clid, clid)

    def _app_F(self, msg: FixMessage) -> None:
        if not self._required(msg, (11, 41, 55, 54, 60)):
            return
        clid, orig = self._clid(msg), self._clid(msg, 41)
        if clid is None or orig is None:
            return
        root = self._root(orig)
        self.cancels.setdefault(root, []).append(clid)
        self._to_native(P.encode(P.Cancel(root)))

    def _app_G(self, msg: FixMessage) -> None:
        if not self._required(msg, (11, 41, 55, 54, 60, 40, 38, 44)):
            return
        clid, orig = self._clid(msg), self._clid(msg, 41)
        if clid is None or orig is None:
            return
        qty, price = parse_qty(msg.get(38)), parse_price(msg.get(44))
        if qty is None or price is None:
            self._reject(msg, DATA_FORMAT, "OrderQty (38) in whole tonnes and Price (44) in "
                         "CNY with at most two decimals", 38 if qty is None else 44)
            return
        root = self._root(orig)
        order = self.store.orders.get(root, {})
        open_qty = max(qty - order.get("cum_qty", 0), 0)  # FIX: the total; ours: what is open
        self.replaces.setdefault(root, []).append((clid, qty, price))
        self._to_native(P.encode(P.Amend(root, price, open_qty)))

    def _app_q(self, msg: FixMessage) -> None:
        if not self._required(msg, (11, 530, 60)):
            return
        kind = msg.get(530)
        if kind not in ("1", "7"):
            self._reject(msg, VALUE_INCORRECT, "MassCancelRequestType (530): 1 (by symbol) "
                         "or 7 (all orders)", 530)
            return
        if kind == "1" and not self._required(msg, (55,)):
            return
        symbol = msg.get(55, "") if kind == "1" else ""
        self.mass.append((msg.get(11), kind, symbol))
        self._to_native(P.encode(P.MassCancel(symbol, 0)))

    def _app_V(self, msg: FixMessage) -> None:
        """MarketDataRequest: per symbol (146 group) and segment (386 group of 336
        TradingSessionID LISTED or BLOCK; default LISTED), a snapshot (W) of the top
        ``MarketDepth`` levels (at most five) and the last trade, then with 263=1
        incremental refreshes (X) of the levels and the trades; 263=2 ends them. BLOCK with
        TradingSessionSubID (625) BOARD: the block quote board instead (``_board``)."""
        if not self._required(msg, (262, 263, 264, 146)):
            return
        req, kind, depth = msg.get(262), msg.get(263), msg.get(264, "")
        by_order = msg.get(266) == "N"  # AggregatedBook N: the LISTED book order by order
        if kind not in ("0", "1", "2") or not depth.isdigit():
            self._reject(msg, VALUE_INCORRECT, "SubscriptionRequestType (263) 0, 1 or 2 and "
                         "MarketDepth (264) a number", 263 if kind not in ("0", "1", "2") else 264)
            return
        symbols = [v for t, v in msg.fields if t == 55]
        sessions, subs = [], []
        for t, v in msg.fields:
            if t == 336:
                sessions.append(v)
                subs.append(None)
            elif t == 625 and subs:
                subs[-1] = v
        if not sessions:
            sessions, subs = ["LISTED"], [None]
        if not symbols:
            self._reject(msg, REQUIRED_TAG_MISSING, "Symbol (55) in NoRelatedSym", 55)
            return
        bad = next((n for n in sessions if n not in SEGMENTS), None)
        if bad is not None:
            self._reject(msg, VALUE_INCORRECT, f"TradingSessionID {bad}: LISTED or BLOCK", 336)
            return
        if any(sub not in (None, BOARD) or sub == BOARD and name != "BLOCK"
               for name, sub in zip(sessions, subs)):
            self._reject(msg, VALUE_INCORRECT, f"TradingSessionSubID (625): {BOARD} (the block "
                         "quote board) with TradingSessionID BLOCK, or absent", 625)
            return
        unknown = next((sym for sym in symbols if sym not in self.instruments), None)
        if unknown is not None:
            self.send("Y", [(262, req), (281, 0), (58, f"unknown symbol {unknown}")])
            return
        if BOARD in subs:
            self._board_request(req, kind, symbols)
            sessions = [n for n, sub in zip(sessions, subs) if sub != BOARD]
            if not sessions:
                return
        if by_order and kind != "2" and any(n != "LISTED" for n in sessions):
            self.send("Y", [(262, req), (281, 7), (58, "AggregatedBook N (orders) is for "
                                                      "the LISTED segment only")])
            return
        for symbol in symbols:
            for name in sessions:
                key = (symbol, SEGMENTS[name])
                if kind == "2":
                    self.md.pop(key, None)
                    continue
                self.md[key] = {"req": req, "depth": min(int(depth) or 5, 5),
                                "stream": kind == "1", "bids": {}, "asks": {},
                                "orders": by_order, "last": None}
                # (again if subscribed already: the native answer is a fresh snapshot; with
                # orders, an MdOrders after it, and again whenever the book changes)
                self.snaps.setdefault(key, []).append(True)
                self._to_native(P.encode(P.Subscribe(symbol, key[1], by_order)))

    def _md_entries(self, key, bids, asks) -> tuple[list, list]:
        """The levels to send now: (full entries for a snapshot, incremental changes)."""
        sub = self.md[key]
        n = sub["depth"]
        segment = _SEGMENT_NAME.get(key[1], "LISTED")
        new = {"bids": {lv[0]: (lv[1], lv[2]) for lv in list(bids)[:n]},
               "asks": {lv[0]: (lv[1], lv[2]) for lv in list(asks)[:n]}}
        changes = []
        for side, entry_type in (("bids", "0"), ("asks", "1")):
            old = sub[side]
            for price in old:
                if price not in new[side]:
                    changes.append([(279, 2), (269, entry_type), (55, key[0]),
                                    (270, fix_price(price)), (336, segment)])
            for price, (qty, count) in new[side].items():
                if price not in old:
                    action = 0
                elif old[price] != (qty, count):
                    action = 1
                else:
                    continue
                changes.append([(279, action), (269, entry_type), (55, key[0]),
                                (270, fix_price(price)), (271, qty), (336, segment),
                                (346, count)])
            sub[side] = new[side]
        full = [[(269, t), (270, fix_price(p)), (271, q), (336, segment), (346, c)]
                for side, t in (("bids", "0"), ("asks", "1"))
                for p, (q, c) in new[side].items()]
        return full, changes

    def _md_orders(self, item: P.MdOrders) -> None:
        """An order-by-order snapshot (W) of the LISTED book's best levels: one entry per
        order, MDEntryID (278) its public order number (what QuoteID (117) of a take names);
        with 263=1 a new W follows every change of the book."""
        key = (item.instrument, 0)
        sub = self.md.get(key)
        if sub is None or not sub.get("orders"):
            return
        full = []
        for entries, entry_type in ((item.bids, "0"), (item.asks, "1")):
            prices = []
            for number, price, open_qty in entries:
                if price not in prices:
                    prices.append(price)
                if len(prices) > sub["depth"]:
                    break
                full.append([(269, entry_type), (270, fix_price(price)), (271, open_qty),
                             (278, number), (336, "LISTED")])
        if sub["last"] is not None:
            full.append([(269, "2"), (270, fix_price(sub["last"])), (336, "LISTED")])
        body = [(262, sub["req"]), (55, item.instrument), (268, len(full))]
        for entry in full:
            body += entry
        self.send("W", body)
        if not sub["stream"]:
            self.md.pop(key, None)

    def _md(self, item) -> None:
        if isinstance(item, P.MdOrders):
            self._md_orders(item)
            return
        if isinstance(item, P.MdSnapshot):
            key = (item.instrument, item.segment)
            flags = self.snaps.get(key)
            if flags and not flags.pop(0):
                return  # asked for the board only: the level view (if any) is up to date
            sub = self.md.get(key)
            if sub is None:
                return
            if sub.get("orders"):  # the order-level snapshot (MdOrders) follows
                sub["last"] = item.last_price
                return
            sub["bids"], sub["asks"] = {}, {}
            full, _ = self._md_entries(key, item.bids, item.asks)
            if item.last_price is not None:
                full.append([(269, "2"), (270, fix_price(item.last_price)),
                             (336, _SEGMENT_NAME.get(item.segment, "LISTED"))])
            body = [(262, sub["req"]), (55, item.instrument), (268, len(full))]
            for entry in full:
                body += entry
            self.send("W", body)
            if not sub["stream"]:
                self.md.pop(key, None)
            return
        name = self.instruments[item.instrument] if 0 <= item.instrument < \
            len(self.instruments) else ""
        key = (name, item.segment)
        sub = self.md.get(key)
        if sub is None:
            return
        if isinstance(item, P.MdDepth):
            if sub.get("orders"):
                return  # order by order: a new W comes with the MdOrders of the change
            _, changes = self._md_entries(key, item.bids, item.asks)
        elif isinstance(item, P.MdTrade):
            if sub.get("orders"):
                sub["last"] = item.price
            changes = [[(279, 0), (269, "2"), (55, name), (270, fix_price(item.price)),
                        (271, item.qty), (336, _SEGMENT_NAME.get(item.segment, "LISTED"))]]
        else:
            return
        if changes:
            body = [(262, sub["req"]), (268, len(changes))]
            for entry in changes:
                body += entry
            self.send("X", body)

    # -------------------------------------------------------------- from the exchange

    def from_native(self, data: bytes) -> None:
        """The native session's output: translate it into FIX."""
        if self.closed:
            return
        items: list = []
        if self._held is not None:  # a BLOCK fill held back: it comes first
            items.append(self._held)
            self._held = None
            if self._held_timer is not None:
                self._held_timer.cancel()
                self._held_timer = None
        for item in self._native_reader.feed(data):
            if isinstance(item, np.ndarray):
                items.extend(P.report_from_row(row) for row in item)
            else:
                items.append(item)
        for i, item in enumerate(items):
            if isinstance(item, P.ExecutionReport):
                if item.exec == P.ExecKind.FILL and item.segment == 1:
                    nxt = items[i + 1] if i + 1 < len(items) else None
                    if nxt is None and self._maybe_agreement(item):
                        self._hold(item)  # its QuoteReport ACCEPTED is in the next output
                        continue
                    if isinstance(nxt, P.QuoteReport) and \
                            nxt.event == P.QuoteEvent.ACCEPTED and nxt.trade_id == item.trade_id:
                        self._agreement_fill(item, nxt)
                        continue
                if item.exec in (P.ExecKind.ACCEPTED, P.ExecKind.REJECTED):
                    if item.exec == P.ExecKind.REJECTED and self._neg_reject(item):
                        continue
                    self.order_sent.pop(item.cl_ord_id, None)
                self._report(item)
            elif isinstance(item, P.QuoteReport):
                self._quote_report(item)
            elif isinstance(item, P.LogonAck):
                self._logon_accepted(item)
            elif isinstance(item, P.LogonReject):
                self._refuse(f"logon refused: {item.text}")
            elif isinstance(item, P.Error):
                text = f"{P.reason_name(item.reason)}: {item.text}"
                if self.store is None:
                    self._refuse(text)
                else:
                    self._logout(text)
            elif isinstance(item, P.MdQuotes):
                self._board(item)
            elif isinstance(item, P.Negotiations):
                self._negotiations(item)
            elif isinstance(item, (P.MdSnapshot, P.MdDepth, P.MdTrade, P.MdOrders)):
                self._md(item)
            elif isinstance(item, P.AdminAck) and item.command == "MassCancel" and self.mass:
                clid, kind, symbol = self.mass.pop(0)
                body = [(11, clid), (37, "NONE"), (530, kind), (531, kind if item.ok else 0)]
                if symbol:
                    body.append((55, symbol))
                if not item.ok:
                    body += [(532, 99), (58, item.text)]
                self.send("r", body)
            elif isinstance(item, P.AdminAck) and not item.ok and \
                    item.command in _NEG_COMMAND.values():  # throttled
                rec = next((r for r in self.neg if _NEG_COMMAND[r["kind"]] == item.command),
                           None)
                if rec is not None:
                    self.neg.remove(rec)
                    self._quote_rejected(rec, P.reason_name(item.reason), 0)
            elif isinstance(item, P.AdminAck) and not item.ok and \
                    item.command == "NegotiationsRequest" and self.neg_queries:
                echo = self.neg_queries.pop(0)
                self.send("AI", [(117, "NONE")] + echo + [(297, QS_NOT_FOUND),
                                                          (58, P.reason_name(item.reason))])
        if self.store is not None:
            self.store.flush()

    def native_closed(self) -> None:
        """The server closed the native session (after an Error, a heartbeat timeout, ...)."""
        if not self.closed:
            if self.store is None:
                self._refuse("session ended by the exchange")
            else:
                self._logout("session ended by the exchange")

    def _report(self, r: P.ExecutionReport) -> None:
        store = self.store
        if r.report_seq:
            if r.report_seq <= store.report_seq:
                return  # already translated (a resumed stream overlapping)
            store.report_seq = r.report_seq
        root = r.cl_ord_id
        order = store.orders.get(root)
        kind = r.exec
        symbol = self.instruments[r.instrument] if 0 <= r.instrument < len(self.instruments) \
            else ""
        if kind == P.ExecKind.REJECTED:
            if root in self.pending:  # a duplicate ClOrdID: the order it names stands
                sym, side, qty, price = self.pending.pop(root)
            elif order is not None and order.get("status") == "A":
                sym, side, qty, price = (order["symbol"], order["side"], order["qty"],
                                         order["price"])
                del store.orders[root]
                store.aliases.pop(root, None)
                store.forget(root)
            else:  # not known here (sent before this store existed)
                sym, side, qty, price = (symbol or (self.instruments or ["?"])[0],
                                         r.side or Side.BUY, r.qty, r.price)
            reason = P.reason_name(r.reason)
            body = [(37, "NONE"), (11, root), (17, self._exec_id(r)), (150, "8"), (39, "8"),
                    (55, sym), (54, _FIX_SIDE.get(side, "1")), (38, qty), (151, 0), (14, 0),
                    (6, "0"), (103, _ORD_REJ.get(reason, 99)), (58, reason)]
            if price is not None:
                body.insert(8, (44, fix_price(price)))
            self.send("8", body)
            return
        if kind in (P.ExecKind.CANCEL_REJECTED, P.ExecKind.AMEND_REJECTED):
            cancel = kind == P.ExecKind.CANCEL_REJECTED
            waiting = (self.cancels if cancel else self.replaces).get(root)
            ask = waiting.pop(0) if waiting else None
            asked = ask if cancel else (ask[0] if ask else None)
            reason = P.reason_name(r.reason)
            # the order's status as this session last reported it ("8": no such order)
            status = order.get("status", "0") if order is not None else "8"
            status = "0" if status == "A" else status
            self.send("9", [(37, f"{self.account}:{root}" if order else "NONE"),
                            (11, asked or root), (41, order["latest"] if order else root),
                            (39, status), (434, "1" if cancel else "2"),
                            (102, 1 if reason == "UNKNOWN_ORDER" else 99), (58, reason)])
            return
        if order is None:  # first seen: placed before this store existed
            order = store.orders[root] = {"latest": root, "symbol": symbol, "side": r.side,
                                          "qty": r.filled + r.open, "price": r.price,
                                          "cum_qty": 0, "cum_value": 0}
            store.aliases[root] = root
        if kind == P.ExecKind.ACCEPTED:
            order["qty"] = r.filled + r.open
            if order["price"] is None and r.price is not None:
                order["price"] = r.price  # a take's: its target's price
        store.touch(root)
        if kind in (P.ExecKind.PARTIAL_FILL, P.ExecKind.FILL):
            order["cum_qty"] += r.qty
            order["cum_value"] += r.price * r.qty
        clid, orig = order["latest"], None
        if kind == P.ExecKind.ACCEPTED:
            exec_type, status = "0", "0"
        elif kind in (P.ExecKind.PARTIAL_FILL, P.ExecKind.FILL):
            exec_type, status = "F", "2" if kind == P.ExecKind.FILL else "1"
        elif kind == P.ExecKind.CANCELLED:
            exec_type, status = "4", "4"
            waiting = self.cancels.get(root)
            if waiting:
                clid, orig = waiting.pop(0), order["latest"]
                order["latest"] = clid
                store.alias(clid, root)
        elif kind == P.ExecKind.EXPIRED:
            exec_type, status = "C", "C"
        elif kind == P.ExecKind.AMENDED:
            waiting = self.replaces.get(root)
            if waiting:
                new, _, _ = waiting.pop(0)
                clid, orig = new, order["latest"]
                order["latest"] = new
                store.alias(new, root)
            order["qty"] = order["cum_qty"] + r.open
            order["price"] = r.price
            exec_type, status = "5", "1" if order["cum_qty"] else "0"
        else:
            return
        order["status"] = status
        body = [(37, f"{self.account}:{root}"), (11, clid)]
        if orig is not None:
            body.append((41, orig))
        body += [(17, self._exec_id(r)), (150, exec_type), (39, status),
                 (55, order["symbol"] or symbol), (54, _FIX_SIDE.get(order["side"], "1")),
                 (38, order["qty"])]
        if order["price"] is not None:
            body.append((44, fix_price(order["price"])))
        if exec_type == "F":
            body += [(31, fix_price(r.price)), (32, r.qty)]
        body += [(151, r.open), (14, order["cum_qty"]),
                 (6, avg_px(order["cum_value"], order["cum_qty"])),
                 (60, fix_time(r.ts_us / 1e6 - 8 * 3600))]
        if r.reason and kind == P.ExecKind.CANCELLED:
            body.append((58, P.reason_name(r.reason)))
        self.send("8", body)

    def _exec_id(self, r: P.ExecutionReport) -> str:
        return f"{self.account}-{r.report_seq}" if r.report_seq else \
            f"{self.account}-g{self.store.next_out}"

    # -------------------------------------------------------------- negotiations

    def _terms(self, msg: FixMessage, side: int | None):
        """(price in fen or None, qty or 0) of a Quote or QuoteResponse: Price (44), else
        the side's OfferPx (133) / BidPx (132), else the one of them given; OrderQty (38),
        else OfferSize (135) / BidSize (134) likewise. False (a Reject sent) if malformed."""
        px = [44] + ([133, 132] if side != Side.BUY else [132, 133])
        sz = [38] + ([135, 134] if side != Side.BUY else [134, 135])
        price = qty = None
        tag = next((t for t in px if msg.has(t)), None)
        if tag is not None:
            price = parse_price(msg.get(tag))
            if price is None:
                self._reject(msg, DATA_FORMAT, f"tag {tag}: a price in CNY with at most two "
                             "decimals", tag)
                return False
        tag = next((t for t in sz if msg.has(t)), None)
        if tag is not None:
            qty = parse_qty(msg.get(tag))
            if qty is None:
                self._reject(msg, DATA_FORMAT, f"tag {tag}: whole tonnes", tag)
                return False
        return price, qty or 0

    def _quote_no(self, msg: FixMessage) -> int | None:
        """QuoteID (117) as a public quote number (Reject sent if missing or not digits)."""
        if not self._required(msg, (117,)):
            return None
        text = msg.get(117)
        if not (text.isdigit() and len(text) <= 19):
            self._reject(msg, DATA_FORMAT, "QuoteID (117) must be the quote's public number "
                         "(digits)", 117)
            return None
        return int(text)

    def _neg_send(self, rec: dict, frame: bytes) -> None:
        self._sent_n += 1
        rec["n"] = self._sent_n
        self.neg.append(rec)
        self._to_native(frame)

    def _app_S(self, msg: FixMessage) -> None:
        """Quote: a BlockQuote (QuoteID 117 = the quote's new id; Parties 448 with PartyRole
        452=17 = the counterparty, none = public)."""
        if not self._required(msg, (117, 55, 54)):
            return
        clid = self._clid(msg, 117)
        if clid is None:
            return
        side = self._field(msg, 54, _SIDES)
        if side is None:
            return
        if msg.has(336) and msg.get(336) != "BLOCK":
            self._reject(msg, VALUE_INCORRECT, "TradingSessionID (336): BLOCK or absent", 336)
            return
        if msg.get(537, "1") != "1":
            self._reject(msg, VALUE_INCORRECT, "QuoteType (537): 1 (tradeable) or absent", 537)
            return
        terms = self._terms(msg, side)
        if terms is False:
            return
        price, qty = terms
        if price is None or not qty:
            tag = 44 if price is None else 38
            self._reject(msg, REQUIRED_TAG_MISSING, "a Quote needs a price (44, or OfferPx "
                         "133 / BidPx 132) and a quantity (38, or OfferSize 135 / BidSize 134)",
                         tag)
            return
        counterparty, entry_id = "", None
        for tag, value in msg.fields:  # the Parties group: (448, 447, 452) per entry
            if tag == 448:
                entry_id = value
            elif tag == 452 and value == "17" and entry_id is not None and not counterparty:
                counterparty = entry_id
        if len(counterparty) > 32:
            self._reject(msg, VALUE_INCORRECT, "PartyID (448) of the contra firm: an account "
                         "name, at most 32 characters", 448)
            return
        symbol = msg.get(55)
        echo = [(131, msg.get(131))] if msg.has(131) else []
        rec = {"kind": "quote", "ref": clid, "no": None, "echo": echo, "symbol": symbol,
               "side": int(side), "price": price, "qty": qty}
        if symbol not in self.instruments:  # answered here: the exchange lists no such one
            self._quote_rejected(rec, f"unknown symbol {symbol}", 0)
            return
        self.quote_ids.add(clid)
        self._neg_send(rec, P.encode(P.BlockQuote(clid, symbol, int(side), qty, price,
                                                  counterparty)))

    def _app_AJ(self, msg: FixMessage) -> None:
        """QuoteResponse: QuoteRespType (694) 1 accept (BlockAccept), 2 counter
        (BlockCounter), 6 pass (BlockWithdraw) of the quote QuoteID (117) numbers;
        QuoteRespID (693) is the command's ref."""
        if not self._required(msg, (693, 694)):
            return
        ref = self._clid(msg, 693)
        if ref is None:
            return
        kind = self._field(msg, 694, _RESP_TYPES)
        if kind is None:
            return
        no = self._quote_no(msg)
        if no is None:
            return
        side = _SIDES.get(msg.get(54))
        terms = self._terms(msg, side)
        if terms is False:
            return
        price, qty = terms
        echo = [(693, ref)] + ([(131, msg.get(131))] if msg.has(131) else [])
        rec = {"kind": kind, "ref": ref, "no": no, "echo": echo, "symbol": None,
               "side": None, "price": price, "qty": qty}
        if kind == "withdraw":
            frame = P.encode(P.BlockWithdraw(ref, no))
        elif kind == "counter":
            frame = P.encode(P.BlockCounter(ref, no, price, qty))
        else:
            frame = P.encode(P.BlockAccept(ref, no, price, qty))
        self._neg_send(rec, frame)

    def _app_Z(self, msg: FixMessage) -> None:
        """QuoteCancel: a BlockWithdraw of the quote QuoteID (117) numbers; its ref is
        QuoteReqID (131) if given, else the number."""
        no = self._quote_no(msg)
        if no is None:
            return
        ref = msg.get(131) or str(no)
        try:
            P.encode_clid(ref)
        except ValueError:
            self._reject(msg, VALUE_INCORRECT, "QuoteReqID (131): at most 20 printable ASCII "
                         "characters", 131)
            return
        echo = [(131, ref)] if msg.has(131) else []
        rec = {"kind": "withdraw", "ref": ref, "no": no, "echo": echo, "symbol": None,
               "side": None, "price": None, "qty": 0}
        self._neg_send(rec, P.encode(P.BlockWithdraw(ref, no)))

    def _app_a(self, msg: FixMessage) -> None:
        """QuoteStatusRequest: the account's live negotiations (NegotiationsRequest), one
        QuoteStatusReport each (only QuoteID 117's, and only Symbol 55's, if given)."""
        echo = [(649, msg.get(649))] if msg.has(649) else []
        only = msg.get(117)
        if only is not None and not (only.isdigit() and len(only) <= 19):
            self._reject(msg, DATA_FORMAT, "QuoteID (117) must be a public quote number "
                         "(digits)", 117)
            return
        self.neg_queries.append([echo, only, msg.get(55)])
        self._to_native(P.encode(P.NegotiationsRequest()))

    def _negotiations(self, item: P.Negotiations) -> None:
        if not self.neg_queries:
            return
        echo, only, symbol = self.neg_queries.pop(0)
        found = [n for n in item.quotes if (only is None or str(n.quote_no) == only)
                 and (symbol is None or n.instrument == symbol)]
        if not found:
            self.send("AI", [(117, only or "NONE")] + echo +
                      ([(55, symbol)] if symbol else []) + [(297, QS_NOT_FOUND),
                                                            (58, "no live negotiation")])
            return
        for n in found:
            body = [(117, n.quote_no)] + echo
            if n.other:
                body += [(453, 1), (448, n.other), (447, "D"), (452, 17)]
            body += [(55, n.instrument), (54, _FIX_SIDE.get(n.side, "1")), (38, n.qty),
                     (44, fix_price(n.price)), (336, "BLOCK"), (297, QS_PENDING),
                     (58, "QUOTED")]
            if n.cl_ord_id:
                body.append((TAG_MAKER_QUOTE_ID, n.cl_ord_id))
            body += [(TAG_QUOTE_MAKER, "Y" if n.maker else "N"),
                     (TAG_TERMS_BY_YOU, "Y" if n.by_you else "N"),
                     (TAG_PUBLIC_QUOTE, "Y" if n.maker and not n.other else "N")]
            self.send("AI", body)

    def _neg_reject(self, r: P.ExecutionReport) -> bool:
        """A REJECTED answering one of this session's negotiation commands (its ref; an
        order sent earlier with the same id has its answer first): a QuoteStatusReport."""
        rec = next((x for x in self.neg if x["ref"] == r.cl_ord_id), None)
        if rec is None or self.order_sent.get(r.cl_ord_id, rec["n"] + 1) < rec["n"]:
            return False
        self.neg.remove(rec)
        if r.report_seq:
            if r.report_seq <= self.store.report_seq:
                return True
            self.store.report_seq = r.report_seq
        self._quote_rejected(rec, P.reason_name(r.reason), r.ts_us)
        return True

    def _quote_rejected(self, rec: dict, text: str, ts_us: int) -> None:
        """QuoteStatusReport Rejected (297=5), the reason in Text (58)."""
        body = [(117, rec["ref"] if rec["kind"] == "quote" else rec["no"])] + rec["echo"]
        if rec["symbol"]:
            body.append((55, rec["symbol"]))
        if rec["side"]:
            body.append((54, _FIX_SIDE.get(rec["side"], "1")))
        if rec["qty"]:
            body.append((38, rec["qty"]))
        if rec["price"] is not None:
            body.append((44, fix_price(rec["price"])))
        if ts_us:
            body.append((60, fix_time(ts_us / 1e6 - 8 * 3600)))
        body += [(336, "BLOCK"), (297, QS_REJECTED), (58, text)]
        if rec["kind"] == "quote":
            body.append((TAG_MAKER_QUOTE_ID, rec["ref"]))
        self.send("AI", body)

    def _neg_match(self, q: P.QuoteReport) -> dict | None:
        """The command of this session a QuoteReport answers (it made the terms, accepted
        or withdrew: BY_YOU), taken off the list; None for the other party's doings."""
        if not q.by_you:
            return None
        for rec in self.neg:
            if _NEG_EVENT[rec["kind"]] != q.event:
                continue
            if rec["kind"] == "quote" and rec["ref"] == q.cl_ord_id or \
                    rec["kind"] != "quote" and rec["no"] == q.quote_no:
                self.neg.remove(rec)
                return rec
        return None

    def _quote_report(self, q: P.QuoteReport) -> None:
        """A QuoteReport: a QuoteStatusReport (35=AI)."""
        store = self.store
        if q.report_seq:
            if q.report_seq <= store.report_seq:
                return
            store.report_seq = q.report_seq
        if q.cl_ord_id:
            self.quote_ids.add(q.cl_ord_id)
        rec = self._neg_match(q)
        symbol = self.instruments[q.instrument] if 0 <= q.instrument < len(self.instruments) \
            else ""
        body = [(117, q.quote_no)] + (rec["echo"] if rec else [])
        body += [(55, symbol), (54, _FIX_SIDE.get(q.side, "1")), (38, q.qty),
                 (44, fix_price(q.price)), (60, fix_time(q.ts_us / 1e6 - 8 * 3600)),
                 (336, "BLOCK"), (297, _QUOTE_STATUS.get(q.event, QS_PENDING)),
                 (58, q.event.name)]
        if q.cl_ord_id:
            body.append((TAG_MAKER_QUOTE_ID, q.cl_ord_id))
        body += [(TAG_QUOTE_MAKER, "Y" if q.maker else "N"),
                 (TAG_TERMS_BY_YOU, "Y" if q.by_you else "N"),
                 (TAG_PUBLIC_QUOTE, "Y" if q.public else "N")]
        self.send("AI", body)

    def _maybe_agreement(self, r: P.ExecutionReport) -> bool:
        """Whether a BLOCK fill with nothing after it in this output may be an agreement's
        (its QuoteReport ACCEPTED then comes in the next output: a resent stream cut)."""
        clid = r.cl_ord_id
        return not clid or clid in self.quote_ids or clid not in self.store.aliases or \
            any(x["ref"] == clid for x in self.neg)

    def _hold(self, r: P.ExecutionReport) -> None:
        self._held = r
        self._held_timer = asyncio.get_running_loop().call_later(1.0, self._release)

    def _release(self) -> None:
        """A held fill with no QuoteReport after it within a second: an order's after all."""
        r, self._held, self._held_timer = self._held, None, None
        if r is not None and not self.closed and self.store is not None:
            if not r.cl_ord_id or r.cl_ord_id in self.quote_ids:
                self._agreement_fill(r, None)  # an agreement's, its number unknown here
            else:
                self._report(r)
            self.store.flush()

    def _agreement_fill(self, r: P.ExecutionReport, q: P.QuoteReport | None) -> None:
        """The FILL of a negotiated agreement (the QuoteReport ACCEPTED ``q`` follows): an
        ExecutionReport Trade; ClOrdID the quote's id (the maker), the acceptor's
        QuoteRespID, or else the quote's number (never empty); OrderID ``Q<number>``."""
        store = self.store
        if r.report_seq:
            if r.report_seq <= store.report_seq:
                return
            store.report_seq = r.report_seq
        symbol = self.instruments[r.instrument] if 0 <= r.instrument < len(self.instruments) \
            else ""
        price = fix_price(r.price)
        number = str(q.quote_no) if q is not None else "NONE"
        body = [(37, f"Q{number}" if q is not None else "NONE"), (11, r.cl_ord_id or number)]
        if q is not None and q.by_you and not q.maker and r.cl_ord_id:
            body.append((693, r.cl_ord_id))  # the acceptor's QuoteResponse
        body += [(17, self._exec_id(r)), (150, "F"), (39, "2"), (55, symbol),
                 (54, _FIX_SIDE.get(r.side, "1")), (38, r.qty), (44, price), (31, price),
                 (32, r.qty), (151, 0), (14, r.qty), (6, avg_px(r.price * r.qty, r.qty)),
                 (60, fix_time(r.ts_us / 1e6 - 8 * 3600)), (336, "BLOCK")]
        self.send("8", body)

    def _board_request(self, req: str, kind: str, symbols: list[str]) -> None:
        """The block quote board of each symbol: 263=0 a QuoteBoardRequest (one W), 263=1 a
        Subscribe(BLOCK, quotes=True) (a W now and after every change), 263=2 no more."""
        for symbol in symbols:
            if kind == "2":
                self.boards.pop(symbol, None)
                continue
            self.boards[symbol] = {"req": req, "stream": kind == "1"}
            if kind == "0":
                self._to_native(P.encode(P.QuoteBoardRequest(symbol)))
            else:
                self.snaps.setdefault((symbol, 1), []).append(False)
                self._to_native(P.encode(P.Subscribe(symbol, 1, False, True)))

    def _board(self, item: P.MdQuotes) -> None:
        """The block quote board as a W: one entry per live public quote, bids (quotes to
        buy) then offers (quotes to sell), each in the order made; QuoteEntryID (299) the
        quote's number (what QuoteID 117 of a QuoteResponse names); anonymous."""
        sub = self.boards.get(item.instrument)
        if sub is None:
            return
        entries = []
        for want, entry_type in ((Side.BUY, "0"), (Side.SELL, "1")):
            for number, side, price, qty in item.quotes:
                if side == want:
                    entries += [(269, entry_type), (270, fix_price(price)), (271, qty),
                                (336, "BLOCK"), (625, BOARD), (299, number)]
        self.send("W", [(262, sub["req"]), (55, item.instrument),
                        (268, len(item.quotes))] + entries)
        if not sub["stream"]:
            self.boards.pop(item.instrument, None)

    # -------------------------------------------------------------- heartbeats

    async def _heartbeats(self) -> None:
        try:
            while not self.closed:
                await asyncio.sleep(min(1.0, self.heartbeat_s / 4))
                if not self.logged_on or self.closed:
                    continue
                now = time.monotonic()
                if self.test_sent_at is not None and now - self.test_sent_at > self.heartbeat_s:
                    self._logout("no answer to TestRequest")
                    return
                if self.test_sent_at is None and now - self.last_rx > self.heartbeat_s * 1.2:
                    self.test_sent_at = now
                    self.send("1", [(112, f"T{int(now)}")])
                elif now - self.last_tx >= self.heartbeat_s:
                    self.send("0", [])
                if self.store is not None:
                    self.store.flush()
        except asyncio.CancelledError:
            pass


__all__ = ["FixSession", "FixStore", "TARGET", "fix_price", "parse_price", "parse_qty"]
