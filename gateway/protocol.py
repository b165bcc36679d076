"""The wire protocol of ``cea serve``: one frame header, fixed binary layouts for order entry,
its reports and incremental market data, msgpack bodies for the session-level messages.

Every message, in both directions, is one frame::

    | length: u16 little-endian | type: u8 | body: length - 1 bytes |

``length`` counts the type byte and the body (as SoupBinTCP does), so a frame is
``2 + length`` bytes. A client's ``length`` must be 1 .. ``MAX_FRAME``.

**Binary messages** (the order path; little-endian, packed, fixed size per type, as in
NASDAQ OUCH or CME's SBE): ``NewOrder``, ``Cancel``, ``Amend``, ``Take`` from the client;
``ExecutionReport``, ``MdTrade``, ``MdDepth`` (a count of levels, then the levels),
``MdStatus``, ``MdDaySummary`` from the server. The server turns order frames into engine
command rows and encodes reports and market data in compiled code (``gateway.wire``),
with no Python object per order. Their layouts are the numpy dtypes below (``NEW_ORDER``,
``EXECUTION_REPORT``, ...): a batch of orders is one ``np.ndarray`` of ``NEW_ORDER`` rows,
and ``.tobytes()`` is their frames back to back.

**Session-level messages** (logon, heartbeats, subscriptions, queries, operator commands and
their answers) carry a msgpack array of their fields as the body: they are rare, carry
names and text, and are handled in Python once each, decoded by msgspec into the Structs
below.

Instruments are named on the binary path by their index in ``LogonAck.instruments``; order
ids (``cl_ord_id``) are 1 .. 20 printable ASCII characters (``!`` .. ``~``), NUL-padded to 20
bytes. ``docs/protocol.md`` documents every byte.

>>> frame = encode(NewOrder("o1", 0, Side.BUY, 500, 6010))
>>> len(frame), frame[:3].hex()  # length 39 = 0x0027 (type + 38-byte body), type 12
(41, '27000c')
>>> reader = FrameReader(CLIENT)
>>> reader.feed(frame + encode(Heartbeat()))
[NewOrder(cl_ord_id='o1', instrument=0, side=1, qty=500, price=6010, type=1, tif=1, stp=1), Heartbeat(ts_us=0)]

Bad input never escapes as anything but ``ProtocolError`` (a length outside 1 ..
``MAX_FRAME``, an unknown type, a binary frame of the wrong size, a body that does not
decode); the server answers it with ``Error`` and closes the connection.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Annotated

import msgspec
import numpy as np
from numba import njit

from engine.codes import OrderType, Reason, Segment, Side, Stp, TimeInForce

#: Bytes before the body: the u16 length and the type byte.
HEADER = 3
#: Largest ``length`` (type byte + body) a client may send. Every client message fits in
#: far less; a larger length is a broken or hostile peer and closes the connection before
#: anything is buffered.
MAX_FRAME = 4096
#: Largest ``length`` the server sends (a depth update with ten levels is 222).
MAX_SERVER_FRAME = 0xFFFF

#: ``price`` of a binary message that has none (a MARKET order; a report without a price):
#: the int64 null value of SBE.
NULL_PRICE = -(2**63)
#: ``instrument`` of an ExecutionReport that names none (a rejected command).
NO_INSTRUMENT = 0xFFFF
#: Bytes of a ``cl_ord_id`` on the wire.
CLID_BYTES = 20


class MsgType(IntEnum):
    """The type byte of a frame."""

    HEARTBEAT = 1
    ERROR = 2
    LOGON = 10
    LOGOUT = 11
    NEW_ORDER = 12  # binary
    CANCEL = 13  # binary
    AMEND = 14  # binary
    MASS_CANCEL = 15
    SUBSCRIBE = 16
    MD_REPLAY_REQUEST = 17
    TAKE = 18  # binary: a targeted take of one resting LISTED order
    HALT = 20
    RESUME = 21
    END_DAY = 22
    SET_PRIOR_CLOSE = 23
    BALANCE_REQUEST = 24
    SET_CLOCK = 25
    ORDER_STATUS_REQUEST = 26
    ORDERS_REQUEST = 27  # the orders a take may target (answered by MdOrders)
    LOGON_ACK = 30
    LOGON_REJECT = 31
    EXECUTION_REPORT = 32  # binary
    ADMIN_ACK = 33
    BALANCE = 34
    ORDER_STATUS = 35
    MD_SNAPSHOT = 40
    MD_TRADE = 41  # binary
    MD_DEPTH = 42  # binary
    MD_STATUS = 43  # binary
    MD_DAY_SUMMARY = 44  # binary
    MD_ORDERS = 45  # the orders resting in the best five LISTED levels, with their numbers
    QUOTE_REPORT = 36  # binary: an event of one of the account's negotiations (in its stream)
    MD_QUOTES = 46  # the block quote board: an instrument's public quotes, anonymous
    NEGOTIATIONS = 47  # the account's live negotiations (answers NegotiationsRequest)
    # negotiated block agreements (docs/rules.md §3b), session-level, sequenced with orders
    BLOCK_QUOTE = 50
    BLOCK_COUNTER = 51
    BLOCK_ACCEPT = 52
    BLOCK_WITHDRAW = 53
    NEGOTIATIONS_REQUEST = 54  # the account's live negotiations (answered by Negotiations)
    QUOTE_BOARD_REQUEST = 55  # an instrument's block quote board (answered by MdQuotes)


class GatewayReason(IntEnum):
    """Reject reasons the gateway adds to the engine's ``Reason`` codes (disjoint values).

    The wire's ``reason`` field carries either kind: 0..39 are ``engine.codes.Reason``.
    """

    THROTTLED = 40  # the session sent faster than its rate limit
    NOT_LOGGED_ON = 41  # (Error) a message other than Logon before a successful Logon
    INSTRUMENT_HALTED = 42  # NEW/AMEND while an operator has halted the instrument
    NOT_AUTHORIZED = 43  # an admin command from an account that is not the operator
    UNKNOWN_INSTRUMENT = 44  # a subscription or admin command naming no instrument
    BAD_VALUE = 45  # an admin command's value is out of range or not allowed now
    PROTOCOL_ERROR = 46  # (Error) a frame that does not decode, or a second Logon
    HEARTBEAT_TIMEOUT = 47  # (Error) nothing received for three heartbeat intervals
    LOGON_TIMEOUT = 48  # (Error) no Logon within 5 s of connecting
    SERVER_FULL = 49  # (Error) the server's connection limit is reached
    OPEN_ORDER_LIMIT = 50  # a NewOrder while the account has its maximum of orders open


def reason_name(code: int) -> str:
    """The name of a wire reason code, engine or gateway.

    >>> reason_name(7), reason_name(40), reason_name(0), reason_name(99)
    ('PRICE_OUTSIDE_BAND', 'THROTTLED', '', '99')
    """
    if code == 0:
        return ""
    for enum in (Reason, GatewayReason):
        try:
            return enum(code).name
        except ValueError:
            pass
    return str(code)


class ExecKind(IntEnum):
    """What an ExecutionReport says happened to an order."""

    ACCEPTED = 1
    REJECTED = 2  # a NewOrder was refused; ``reason`` says why
    PARTIAL_FILL = 3
    FILL = 4  # the order is completely filled
    CANCELLED = 5  # open quantity removed; ``reason`` USER, IOC_REMAINDER, ... SELF_TRADE
    EXPIRED = 6  # still resting at 15:00
    AMENDED = 7
    CANCEL_REJECTED = 8  # a Cancel was refused; the order (if any) is unchanged
    AMEND_REJECTED = 9  # an Amend was refused; the order (if any) is unchanged


class QuoteEvent(IntEnum):
    """What a QuoteReport says happened to a negotiation."""

    QUOTED = 1  # terms proposed: the quote made, or countered (``by_you`` says by whom)
    ACCEPTED = 2  # the terms were accepted: one BLOCK trade (``trade_id``), the quote ended
    WITHDRAWN = 3  # a party withdrew it
    EXPIRED = 4  # still live at 15:00


class QuoteFlag(IntEnum):
    """Bits of ``QuoteReport.flags``."""

    MAKER = 1  # the receiving account made the quote
    BY_YOU = 2  # the receiving account made these terms (QUOTED) or ended it (ACCEPTED, WITHDRAWN)
    PUBLIC = 4  # no counterparty yet: the quote is on the board


class Status(IntEnum):
    """Trading status of one instrument's segment, published as market data."""

    CLOSED = 0  # not a trading day, before the session, or after 15:00
    OPEN = 1  # continuous trading
    BREAK = 2  # the midday break (11:30-13:00; the block segment trades 13:00-15:00 only)
    HALTED = 3  # an operator halted the instrument


# ---------------------------------------------------------------- binary layouts

def _frame_dtype(*fields) -> np.dtype:
    return np.dtype([("length", "<u2"), ("type", "u1"), *fields])


#: Client to server.
NEW_ORDER = _frame_dtype(("cl_ord_id", "S20"), ("instrument", "<u2"), ("side", "u1"),
                         ("ord_type", "u1"), ("tif", "u1"), ("stp", "u1"), ("qty", "<u4"),
                         ("price", "<i8"))
CANCEL = _frame_dtype(("cl_ord_id", "S20"))
AMEND = _frame_dtype(("cl_ord_id", "S20"), ("qty", "<u4"), ("price", "<i8"))
#: A targeted take: ``target`` is the public order number (``MdOrders``) of the resting
#: LISTED order on the other side that it trades with, at that order's price.
TAKE = _frame_dtype(("cl_ord_id", "S20"), ("instrument", "<u2"), ("side", "u1"),
                    ("qty", "<u4"), ("target", "<u8"))
#: Server to client.
EXECUTION_REPORT = _frame_dtype(
    ("exec", "u1"), ("reason", "u1"), ("side", "u1"), ("segment", "u1"), ("instrument", "<u2"),
    ("cl_ord_id", "S20"), ("ts_us", "<i8"), ("price", "<i8"), ("qty", "<u4"), ("filled", "<u4"),
    ("open", "<u4"), ("trade_id", "<u8"), ("report_seq", "<u8"))
#: An event of a negotiated block agreement (docs/rules.md §3b), sequenced in the account's
#: report stream like an ExecutionReport and of the same size (73 bytes).
QUOTE_REPORT = _frame_dtype(
    ("event", "u1"), ("reserved", "u1"), ("side", "u1"), ("flags", "u1"), ("instrument", "<u2"),
    ("quote_no", "<u8"), ("cl_ord_id", "S20"), ("ts_us", "<i8"), ("price", "<i8"),
    ("qty", "<u4"), ("trade_id", "<u8"), ("report_seq", "<u8"))
MD_TRADE = _frame_dtype(("instrument", "<u2"), ("segment", "u1"), ("aggressor", "u1"),
                        ("seq", "<u8"), ("ts_us", "<i8"), ("trade_id", "<u8"), ("price", "<i8"),
                        ("qty", "<u4"))
MD_STATUS = _frame_dtype(("instrument", "<u2"), ("segment", "u1"), ("status", "u1"),
                         ("seq", "<u8"), ("ts_us", "<i8"))
MD_DAY_SUMMARY = _frame_dtype(
    ("instrument", "<u2"), ("segment", "u1"), ("reserved", "u1"), ("seq", "<u8"),
    ("ts_us", "<i8"), ("date", "<u4"), ("prior_close", "<i8"), ("close", "<i8"),
    ("volume", "<i8"), ("turnover", "<i8"))
#: MdDepth: this head, then ``bids + asks`` levels (bids best first, then asks best first).
MD_DEPTH_HEAD = _frame_dtype(("instrument", "<u2"), ("segment", "u1"), ("bids", "u1"),
                             ("asks", "u1"), ("seq", "<u8"), ("ts_us", "<i8"))
LEVEL = np.dtype([("price", "<i8"), ("qty", "<i8"), ("orders", "<u4")])
DEPTH_LEVELS = 5  # levels per side an MdDepth carries at most

#: Frame size (2 + length) of each fixed-size binary type.
BINARY_SIZES = {MsgType.NEW_ORDER: NEW_ORDER.itemsize, MsgType.CANCEL: CANCEL.itemsize,
                MsgType.AMEND: AMEND.itemsize, MsgType.TAKE: TAKE.itemsize,
                MsgType.EXECUTION_REPORT: EXECUTION_REPORT.itemsize,
                MsgType.QUOTE_REPORT: QUOTE_REPORT.itemsize,
                MsgType.MD_TRADE: MD_TRADE.itemsize, MsgType.MD_STATUS: MD_STATUS.itemsize,
                MsgType.MD_DAY_SUMMARY: MD_DAY_SUMMARY.itemsize}


def encode_clid(cl_ord_id: str) -> bytes:
    """A ``cl_ord_id`` as its 20 wire bytes; ``ValueError`` unless 1 .. 20 printable ASCII
    characters without spaces.

    >>> encode_clid("o1")
    b'o1\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'
    """
    try:
        raw = cl_ord_id.encode("ascii") if isinstance(cl_ord_id, str) else bytes(cl_ord_id)
    except UnicodeEncodeError:
        raw = b""
    if not 1 <= len(raw) <= CLID_BYTES or not all(0x21 <= c <= 0x7E for c in raw):
        raise ValueError(f"cl_ord_id {cl_ord_id!r}: 1 to {CLID_BYTES} printable ASCII characters "
                         "(no spaces)")
    return raw.ljust(CLID_BYTES, b"\0")


def decode_clid(raw: bytes) -> str:
    """The text of 20 wire bytes (up to the first NUL; bytes as Latin-1, so any echo of a
    malformed id still reads)."""
    end = raw.find(b"\0")
    return (raw if end < 0 else raw[:end]).decode("latin-1")


# ---------------------------------------------------------------- messages as Structs

class _Msg(msgspec.Struct, frozen=True):
    """A message as a Python value; ``TYPE`` is its type byte."""

    TYPE = 0


class Packed(_Msg, frozen=True, array_like=True):
    """A session-level message: the body is the msgpack array of its fields (all written;
    a reader accepts trailing fields with a default left off)."""


# ---------------------------------------------------------------- both directions

class Heartbeat(Packed, frozen=True):
    """Sent by either side when it has sent nothing for a heartbeat interval."""

    TYPE = MsgType.HEARTBEAT
    ts_us: int = 0


class Error(Packed, frozen=True):
    """The server's answer to a frame it cannot accept; it closes the connection after."""

    TYPE = MsgType.ERROR
    reason: int
    text: str


# Strings a client sends are bounded, so no reply that echoes them can outgrow a frame.
Name = Annotated[str, msgspec.Meta(max_length=32)]  # an instrument or account
Token = Annotated[str, msgspec.Meta(max_length=256)]


# ---------------------------------------------------------------- client to server

class Logon(Packed, frozen=True):
    """First message of a session. ``token`` is the account's secret (stored hashed)."""

    TYPE = MsgType.LOGON
    account: Name
    token: Token
    cancel_on_disconnect: bool = True
    heartbeat_ms: int = 5000
    #: The last ``report_seq`` the client has of this account's report stream: the server
    #: sends every report after it before anything else. -1: none wanted (start from now).
    report_seq: int = -1


class Logout(Packed, frozen=True):
    TYPE = MsgType.LOGOUT


class NewOrder(_Msg, frozen=True):
    """Enter an order (binary). ``cl_ord_id`` is the client's id, unique per account, for
    ever; ``instrument`` the index in ``LogonAck.instruments``; ``price`` in fen, None for
    MARKET. Codes are checked by the exchange (MALFORMED), not by the framing."""

    TYPE = MsgType.NEW_ORDER
    cl_ord_id: str
    instrument: int
    side: int
    qty: int
    price: int | None = None
    type: int = OrderType.LIMIT
    tif: int = TimeInForce.DAY
    stp: int = Stp.CANCEL_NEWEST


class Cancel(_Msg, frozen=True):
    """Remove a resting order's open quantity (binary)."""

    TYPE = MsgType.CANCEL
    cl_ord_id: str


class Amend(_Msg, frozen=True):
    """New limit price (fen) and new open quantity (t) of a resting order (binary)."""

    TYPE = MsgType.AMEND
    cl_ord_id: str
    price: int | None
    qty: int


class Take(_Msg, frozen=True):
    """A targeted take (binary): trade exactly ``qty`` tonnes with the resting LISTED order
    whose public order number is ``target`` (from ``MdOrders``), on the other side, at its
    price; within the best five levels of its side, never with an order of the same
    account. ``cl_ord_id`` is the take's own new id (used up like a NewOrder's). A take never
    rests: it fills completely or is rejected."""

    TYPE = MsgType.TAKE
    cl_ord_id: str
    instrument: int
    side: int
    qty: int
    target: int


class MassCancel(Packed, frozen=True):
    """Cancel every resting order of the session's account, optionally of one instrument
    (empty: all) and side (0: both)."""

    TYPE = MsgType.MASS_CANCEL
    instrument: Name = ""
    side: int = 0


class Subscribe(Packed, frozen=True):
    """Market data of one instrument's segment: a ``MdSnapshot``, then incrementals."""

    TYPE = MsgType.SUBSCRIBE
    instrument: Name
    segment: int = Segment.LISTED  # 0 LISTED, 1 BLOCK; another value is refused (AdminAck)
    #: LISTED only: also an ``MdOrders`` after the snapshot and after every turn that
    #: changed the book (the orders a take may target); ignored for BLOCK
    orders: bool = False
    #: BLOCK only: also an ``MdQuotes`` (the block quote board) after the snapshot and after
    #: every turn that may have changed it; ignored for LISTED
    quotes: bool = False


class MdReplayRequest(Packed, frozen=True):
    """Resend market data ``from_seq`` .. ``to_seq`` (inclusive) of one channel."""

    TYPE = MsgType.MD_REPLAY_REQUEST
    instrument: Name
    segment: int
    from_seq: int
    to_seq: int


class Halt(Packed, frozen=True):
    """Operator: stop NEW and AMEND on an instrument (cancels still go through)."""

    TYPE = MsgType.HALT
    instrument: Name


class Resume(Packed, frozen=True):
    TYPE = MsgType.RESUME
    instrument: Name


class EndDay(Packed, frozen=True):
    """Operator: end the trading day now (orders expire, the day closes and settles)."""

    TYPE = MsgType.END_DAY


class SetPriorClose(Packed, frozen=True):
    """Operator: the prior close (fen) for the next trading day; not while a day is open."""

    TYPE = MsgType.SET_PRIOR_CLOSE
    instrument: Name
    price: int


class BalanceRequest(Packed, frozen=True):
    """The session's own cash and holdings (answered by ``Balance``)."""

    TYPE = MsgType.BALANCE_REQUEST


class OrderStatusRequest(Packed, frozen=True):
    """Where one of the account's orders stands now (answered by ``OrderStatus``)."""

    TYPE = MsgType.ORDER_STATUS_REQUEST
    cl_ord_id: Annotated[str, msgspec.Meta(max_length=CLID_BYTES)]


class OrdersRequest(Packed, frozen=True):
    """The orders resting in the best five levels of each side of an instrument's LISTED
    book, with their public order numbers (answered by ``MdOrders``): what a ``Take`` may
    target."""

    TYPE = MsgType.ORDERS_REQUEST
    instrument: Name


Ref = Annotated[str, msgspec.Meta(max_length=CLID_BYTES)]


class BlockQuote(Packed, frozen=True):
    """Propose a negotiated block agreement (docs/rules.md §3b): ``side``, ``qty`` t at
    ``price`` fen of ``instrument``, to the account named ``counterparty`` or, empty, to
    every participant (the public block quote board). ``cl_ord_id`` is the quote's own new
    id, from the account's order ids (used up like a NewOrder's, whatever the outcome); the
    exchange gives the quote its public **quote number** (its QuoteReport's ``quote_no``)."""

    TYPE = MsgType.BLOCK_QUOTE
    cl_ord_id: Ref
    instrument: Name
    side: int
    qty: int
    price: int | None
    counterparty: Name = ""


class BlockCounter(Packed, frozen=True):
    """New terms on the live quote ``quote_no``, from either party: a new ``price`` (nil:
    unchanged) and/or ``qty`` (0: unchanged). ``ref`` is the client's reference of this
    command (1 .. 20 printable characters, not an order id: it is not used up), echoed in
    its reject."""

    TYPE = MsgType.BLOCK_COUNTER
    ref: Ref
    quote_no: int
    price: int | None = None
    qty: int = 0


class BlockAccept(Packed, frozen=True):
    """Accept the other party's latest terms of quote ``quote_no``: one BLOCK trade. With
    ``price``/``qty`` (nil/0: not stated) the terms the acceptor saw: if they are not the
    latest, TERMS_CHANGED. ``ref`` as for BlockCounter; the acceptor's FILL carries it."""

    TYPE = MsgType.BLOCK_ACCEPT
    ref: Ref
    quote_no: int
    price: int | None = None
    qty: int = 0


class BlockWithdraw(Packed, frozen=True):
    """End the negotiation ``quote_no`` (either party; a public quote only its maker)."""

    TYPE = MsgType.BLOCK_WITHDRAW
    ref: Ref
    quote_no: int


class NegotiationsRequest(Packed, frozen=True):
    """The account's live negotiations (answered by ``Negotiations``): the quotes it made
    and those it is the counterparty of, with the other party's account."""

    TYPE = MsgType.NEGOTIATIONS_REQUEST


class QuoteBoardRequest(Packed, frozen=True):
    """An instrument's block quote board (answered by ``MdQuotes``; an unknown instrument
    by ``AdminAck("QuoteBoardRequest", false, 44)``)."""

    TYPE = MsgType.QUOTE_BOARD_REQUEST
    instrument: Name


class SetClock(Packed, frozen=True):
    """Operator, simulated clock (``--clock sim``) only: move the exchange clock forward to
    ``ts_us`` (exchange local time, µs), e.g. a simulation stepping through a day. What was
    sent before it is sequenced at the old time first; a session boundary or 15:00 that the
    jump passes takes effect at once. Answered by ``AdminAck``."""

    TYPE = MsgType.SET_CLOCK
    ts_us: int


# ---------------------------------------------------------------- server to client

class LogonAck(Packed, frozen=True):
    """Logon accepted. ``instruments``: the names the binary messages number 0, 1, ..."""

    TYPE = MsgType.LOGON_ACK
    account: str
    session_id: int
    server_time_us: int
    heartbeat_ms: int
    instruments: list[str] = []
    #: The last report sequence number of the account's stream at logon (0: none yet);
    #: reports after the Logon's ``report_seq`` up to this one are being resent.
    report_seq: int = 0


class LogonReject(Packed, frozen=True):
    TYPE = MsgType.LOGON_REJECT
    text: str


class ExecutionReport(_Msg, frozen=True):
    """One thing that happened to one of the session's orders (binary).

    ``qty``: for ACCEPTED and AMENDED the order's open quantity, for fills the traded
    quantity (``price`` the trade price), for CANCELLED/EXPIRED the quantity removed.
    ``filled`` and ``open`` are the order's totals after this event. ``instrument`` is
    ``NO_INSTRUMENT`` on the reject kinds.
    """

    TYPE = MsgType.EXECUTION_REPORT
    exec: ExecKind
    cl_ord_id: str
    ts_us: int
    instrument: int = NO_INSTRUMENT
    segment: int = 0
    side: int = 0
    price: int | None = None
    qty: int = 0
    filled: int = 0
    open: int = 0
    reason: int = 0
    trade_id: int = 0
    report_seq: int = 0


class AdminAck(Packed, frozen=True):
    """Answer to an operator or mass command, or a refused query: ``ok`` false with
    ``reason`` and text if refused."""

    TYPE = MsgType.ADMIN_ACK
    command: str
    ok: bool
    reason: int = 0
    text: str = ""


class Balance(Packed, frozen=True):
    """Cash in fen and allowances in tonnes per instrument: [instrument, total, reserved,
    pending (bought today, sellable tomorrow), sellable]."""

    TYPE = MsgType.BALANCE
    account: str
    cash: int
    cash_reserved: int
    cash_available: int
    withdrawable: int  # available less today's sale proceeds (T+1 for withdrawal)
    holdings: list[tuple[str, int, int, int, int]]


class OrderStatus(Packed, frozen=True):
    """Answer to ``OrderStatusRequest``. ``status``: UNKNOWN (the account never used that
    ``cl_ord_id``, or its only report was a gateway reject, which is never sequenced), OPEN,
    FILLED, CANCELLED, EXPIRED or REJECTED; ``reason`` (a wire reason code) says why an order
    was cancelled or rejected. ``qty`` is the order's quantity, ``filled`` and ``open`` its
    totals now; ``report_seq`` the account stream's last sequence number when answered (every
    report of the order is at or before it)."""

    TYPE = MsgType.ORDER_STATUS
    cl_ord_id: str
    status: str
    reason: int = 0
    instrument: int = NO_INSTRUMENT
    side: int = 0
    qty: int = 0
    filled: int = 0
    open: int = 0
    report_seq: int = 0
    #: the order's public order number (what ``MdOrders`` lists and a ``Take`` targets);
    #: -1 for an UNKNOWN or PENDING id
    order_no: int = -1


Level = tuple[int, int, int]  # price (fen), open quantity (t), number of orders


class MdSnapshot(Packed, frozen=True):
    """A channel's full state at sequence number ``seq``: incrementals follow from seq+1."""

    TYPE = MsgType.MD_SNAPSHOT
    instrument: str
    segment: int
    seq: int
    status: Status
    bids: list[Level]
    asks: list[Level]
    prior_close: int  # the band's reference: today's prior close (the next day's, between days)
    last_price: int | None  # the day's last trade on this channel, None before one
    volume: int  # the day's traded tonnes on this channel
    turnover: int  # the day's traded value on this channel, fen
    instrument_id: int = 0  # the instrument's number in the binary messages


#: One order in ``MdOrders``: public order number, price (fen), open quantity (t).
OrderEntry = tuple[int, int, int]
#: ``MdOrders`` lists at most this many orders per side (the best five levels' first ones).
MAX_LISTED_ORDERS = 1000


class MdOrders(Packed, frozen=True):
    """The orders resting in the best five levels of each side of an instrument's LISTED
    book, anonymous: public order number, price, open quantity; bids best first, asks best
    first, each level's orders in time priority. As of the LISTED channel's sequence number
    ``seq``. ``complete`` is false if a side held more than ``MAX_LISTED_ORDERS`` orders
    (the first ones are listed)."""

    TYPE = MsgType.MD_ORDERS
    instrument: str
    instrument_id: int
    seq: int
    bids: list[OrderEntry]
    asks: list[OrderEntry]
    complete: bool = True


class QuoteReport(_Msg, frozen=True):
    """One event of a negotiation the session's account is a party to (binary, in the
    account's report stream). ``side`` is the receiving account's own side; ``flags``
    ``QuoteFlag`` bits; ``cl_ord_id`` the quote's id to its maker (empty to the
    counterparty); ``price``/``qty`` the terms now (the last ones, once ended);
    ``trade_id`` the agreement's trade on ACCEPTED, else 0."""

    TYPE = MsgType.QUOTE_REPORT
    event: QuoteEvent
    quote_no: int
    cl_ord_id: str
    ts_us: int
    instrument: int
    side: int
    flags: int
    price: int
    qty: int
    trade_id: int = 0
    report_seq: int = 0

    @property
    def maker(self) -> bool:
        return bool(self.flags & QuoteFlag.MAKER)

    @property
    def by_you(self) -> bool:
        return bool(self.flags & QuoteFlag.BY_YOU)

    @property
    def public(self) -> bool:
        return bool(self.flags & QuoteFlag.PUBLIC)


#: One quote on the board: quote number, the maker's side, price (fen), quantity (t).
BoardEntry = tuple[int, int, int, int]


class MdQuotes(Packed, frozen=True):
    """An instrument's block quote board: its live public quotes, in the order made,
    anonymous (no account, no ``cl_ord_id``), as of the BLOCK channel's sequence number
    ``seq``. Addressed negotiations never appear here."""

    TYPE = MsgType.MD_QUOTES
    instrument: str
    instrument_id: int
    seq: int
    quotes: list[BoardEntry]


class Negotiation(msgspec.Struct, frozen=True, array_like=True):
    """One live negotiation in ``Negotiations``, as its party sees it."""

    quote_no: int
    instrument: str
    side: int  # the receiving account's own side
    price: int
    qty: int
    maker: bool  # the receiving account made the quote
    by_you: bool  # the receiving account made the terms now on the table
    other: str  # the other party's account ("" while a quote is public)
    cl_ord_id: str = ""  # the quote's id, to its maker only


class Negotiations(Packed, frozen=True):
    """Answer to NegotiationsRequest: the account's live negotiations, in the order made."""

    TYPE = MsgType.NEGOTIATIONS
    quotes: list[Negotiation]


class MdTrade(_Msg, frozen=True):
    TYPE = MsgType.MD_TRADE
    instrument: int
    segment: int
    seq: int
    ts_us: int
    trade_id: int
    price: int
    qty: int
    aggressor: int


class MdDepth(_Msg, frozen=True):
    """The best five levels of each side after a change (best bid/offer = first level)."""

    TYPE = MsgType.MD_DEPTH
    instrument: int
    segment: int
    seq: int
    ts_us: int
    bids: list[Level]
    asks: list[Level]


class MdStatus(_Msg, frozen=True):
    TYPE = MsgType.MD_STATUS
    instrument: int
    segment: int
    seq: int
    ts_us: int
    status: Status


class MdDaySummary(_Msg, frozen=True):
    """End of a trading day: the closing price (listed VWAP) and the day's totals.
    ``date`` is YYYYMMDD as an integer."""

    TYPE = MsgType.MD_DAY_SUMMARY
    instrument: int
    segment: int
    seq: int
    ts_us: int
    date: int
    prior_close: int
    close: int
    volume: int
    turnover: int


MARKET_DATA = (MdTrade, MdDepth, MdStatus, MdDaySummary)

#: The messages of each direction, by type byte.
CLIENT = {cls.TYPE: cls for cls in (
    Heartbeat, Logon, Logout, NewOrder, Cancel, Amend, Take, MassCancel, Subscribe,
    MdReplayRequest, Halt, Resume, EndDay, SetPriorClose, BalanceRequest, SetClock,
    OrderStatusRequest, OrdersRequest, BlockQuote, BlockCounter, BlockAccept, BlockWithdraw,
    NegotiationsRequest, QuoteBoardRequest)}
SERVER = {cls.TYPE: cls for cls in (
    Heartbeat, Error, LogonAck, LogonReject, ExecutionReport, AdminAck, Balance, OrderStatus,
    MdSnapshot, MdOrders, QuoteReport, MdQuotes, Negotiations,
    MdTrade, MdDepth, MdStatus, MdDaySummary)}


class ProtocolError(ValueError):
    """A frame that is not a valid message: the connection is closed after it."""


#: Deepest nesting of arrays and maps a session-level body may have. Client messages are flat
#: arrays; a deeper (extra) field is refused the same way wherever it is decoded, whatever the
#: caller's own stack depth (msgspec would recurse as deep as Python lets it).
MAX_NESTING = 32


@njit(cache=True, _nrt=False)
def msgpack_depth(b, p, end, remaining):
    """The nesting depth of the msgpack value at ``b[p:end]`` (uint8), walked without
    recursion (``remaining``: int64 scratch, its length less 2 is the limit): -2 if deeper
    than the limit, -1 if it runs past ``end`` (the decoder then says why). Strings, binaries
    and extensions are skipped by their lengths."""
    limit = remaining.shape[0] - 2
    remaining[0] = 1
    depth = 0
    deepest = 0
    while depth >= 0:
        if remaining[depth] == 0:
            depth -= 1
            continue
        remaining[depth] -= 1
        if p >= end:
            return -1
        c = np.int64(b[p])
        items = -1  # a container's item count, else -1
        if c <= 0x7F or c >= 0xE0 or 0xC0 <= c <= 0xC3:
            p += 1
        elif c <= 0x8F:
            items, p = 2 * (c - 0x80), p + 1
        elif c <= 0x9F:
            items, p = c - 0x90, p + 1
        elif c <= 0xBF:
            p += 1 + c - 0xA0
        elif c == 0xDC or c == 0xDE or c == 0xDD or c == 0xDF:
            width = 2 if c == 0xDC or c == 0xDE else 4
            if p + 1 + width > end:
                return -1
            n = 0
            for k in range(width):
                n = (n << 8) | np.int64(b[p + 1 + k])
            items = 2 * n if c >= 0xDE else n
            p += 1 + width
        elif c == 0xC4 or c == 0xC5 or c == 0xC6 or c == 0xD9 or c == 0xDA or c == 0xDB \
                or c == 0xC7 or c == 0xC8 or c == 0xC9:
            width = 1 if c == 0xC4 or c == 0xD9 or c == 0xC7 else (
                2 if c == 0xC5 or c == 0xDA or c == 0xC8 else 4)
            if p + 1 + width > end:
                return -1
            n = 0
            for k in range(width):
                n = (n << 8) | np.int64(b[p + 1 + k])
            p += 1 + width + n + (1 if 0xC7 <= c <= 0xC9 else 0)
        elif c == 0xCA:
            p += 5
        elif c == 0xCB:
            p += 9
        elif 0xCC <= c <= 0xD3:
            p += 1 + (1 << ((c - 0xCC) % 4))
        else:  # 0xD4 .. 0xD8: fixext 1, 2, 4, 8, 16
            p += 2 + (1 << (c - 0xD4))
        if items >= 0:
            if depth + 1 > limit:
                return -2
            depth += 1
            remaining[depth] = items
            if depth > deepest:
                deepest = depth
    return deepest if p <= end else -1


def check_nesting(body) -> None:
    """``ProtocolError`` if a session-level body nests deeper than ``MAX_NESTING``."""
    raw = np.frombuffer(body, np.uint8)
    if msgpack_depth(raw, 0, raw.shape[0], np.zeros(MAX_NESTING + 2, np.int64)) == -2:
        raise ProtocolError(f"nested deeper than {MAX_NESTING} levels")


# ---------------------------------------------------------------- encoding

_HEAD = struct.Struct("<HB")
_S_NEW = struct.Struct("<HB20sHBBBBIq")
_S_CANCEL = struct.Struct("<HB20s")
_S_AMEND = struct.Struct("<HB20sIq")
_S_TAKE = struct.Struct("<HB20sHBIQ")
_S_REPORT = struct.Struct("<HBBBBBH20sqqIIIQQ")
_S_QUOTE = struct.Struct("<HBBBBBHQ20sqqIQQ")
_S_TRADE = struct.Struct("<HBHBBQqQqI")
_S_STATUS = struct.Struct("<HBHBBQq")
_S_SUMMARY = struct.Struct("<HBHBBQqIqqqq")
_S_DEPTH = struct.Struct("<HBHBBBQq")
_S_LEVEL = struct.Struct("<qqI")
assert _S_QUOTE.size == QUOTE_REPORT.itemsize == EXECUTION_REPORT.itemsize
assert _S_TAKE.size == TAKE.itemsize and _S_AMEND.size == AMEND.itemsize
assert _S_NEW.size == NEW_ORDER.itemsize and _S_REPORT.size == EXECUTION_REPORT.itemsize
assert _S_TRADE.size == MD_TRADE.itemsize and _S_SUMMARY.size == MD_DAY_SUMMARY.itemsize
assert _S_DEPTH.size == MD_DEPTH_HEAD.itemsize and _S_LEVEL.size == LEVEL.itemsize

_msgpack = msgspec.msgpack.Encoder()


def _price(p) -> int:
    return NULL_PRICE if p is None else p


def _nullable(p: int):
    return None if p == NULL_PRICE else p


def _clip(value: int, bits: int) -> int:
    """An int as the unsigned field of ``bits`` holds it (two's complement, wrapped): the
    binary path has no room for a Python int's range; the exchange checks the value."""
    return value & ((1 << bits) - 1)


def encode(msg) -> bytes:
    """One message as a frame (header and body).

    Binary fields out of their range wrap as two's complement (a negative quantity reaches
    the exchange as a huge one, and is rejected INVALID_QTY); a ``cl_ord_id`` that is not
    1 .. 20 printable ASCII characters raises ``ValueError`` (``encode_raw_clid`` sends any
    20 bytes, for tests).
    """
    kind = type(msg)
    if kind is NewOrder:
        return _S_NEW.pack(_S_NEW.size - 2, 12, encode_clid(msg.cl_ord_id),
                           _clip(msg.instrument, 16), _clip(msg.side, 8), _clip(msg.type, 8),
                           _clip(msg.tif, 8), _clip(msg.stp, 8), _clip(msg.qty, 32),
                           _signed64(_price(msg.price)))
    if kind is Cancel:
        return _S_CANCEL.pack(_S_CANCEL.size - 2, 13, encode_clid(msg.cl_ord_id))
    if kind is Amend:
        return _S_AMEND.pack(_S_AMEND.size - 2, 14, encode_clid(msg.cl_ord_id),
                             _clip(msg.qty, 32), _signed64(_price(msg.price)))
    if kind is Take:
        return _S_TAKE.pack(_S_TAKE.size - 2, 18, encode_clid(msg.cl_ord_id),
                            _clip(msg.instrument, 16), _clip(msg.side, 8), _clip(msg.qty, 32),
                            _clip(msg.target, 64))
    if kind is QuoteReport:
        return _S_QUOTE.pack(_S_QUOTE.size - 2, MsgType.QUOTE_REPORT, msg.event, 0, msg.side,
                             msg.flags, msg.instrument, msg.quote_no,
                             msg.cl_ord_id.encode("latin-1"), msg.ts_us, msg.price, msg.qty,
                             msg.trade_id, msg.report_seq)
    if kind is ExecutionReport:
        return _S_REPORT.pack(_S_REPORT.size - 2, 32, msg.exec, msg.reason, msg.side,
                              msg.segment, msg.instrument, msg.cl_ord_id.encode("latin-1"),
                              msg.ts_us, _price(msg.price), msg.qty, msg.filled, msg.open,
                              msg.trade_id, msg.report_seq)
    if kind is MdTrade:
        return _S_TRADE.pack(_S_TRADE.size - 2, 41, msg.instrument, msg.segment, msg.aggressor,
                             msg.seq, msg.ts_us, msg.trade_id, msg.price, msg.qty)
    if kind is MdStatus:
        return _S_STATUS.pack(_S_STATUS.size - 2, 43, msg.instrument, msg.segment, msg.status,
                              msg.seq, msg.ts_us)
    if kind is MdDaySummary:
        return _S_SUMMARY.pack(_S_SUMMARY.size - 2, 44, msg.instrument, msg.segment, 0, msg.seq,
                               msg.ts_us, msg.date, msg.prior_close, msg.close, msg.volume,
                               msg.turnover)
    if kind is MdDepth:
        levels = [*msg.bids, *msg.asks]
        size = _S_DEPTH.size + _S_LEVEL.size * len(levels)
        return _S_DEPTH.pack(size - 2, 42, msg.instrument, msg.segment, len(msg.bids),
                             len(msg.asks), msg.seq, msg.ts_us) + b"".join(
            _S_LEVEL.pack(*level) for level in levels)
    body = _msgpack.encode(msg)
    if len(body) >= MAX_SERVER_FRAME:
        raise ValueError(f"{kind.__name__} of {len(body)} bytes does not fit in a frame")
    return _HEAD.pack(len(body) + 1, msg.TYPE) + body


def _signed64(value: int) -> int:
    return ((value + 2**63) & (2**64 - 1)) - 2**63


def encode_raw_clid(msg_type: int, clid: bytes, *fields) -> bytes:
    """A NewOrder, Cancel, Amend or Take frame with any 20 bytes as its ``cl_ord_id`` (tests
    of the exchange's own checks); ``fields`` follow as in the Struct's wire order."""
    raw = bytes(clid).ljust(CLID_BYTES, b"\0")[:CLID_BYTES]
    if msg_type == MsgType.TAKE:
        instrument, side, qty, target = fields
        return _S_TAKE.pack(_S_TAKE.size - 2, 18, raw, instrument, side, qty, target)
    if msg_type == MsgType.NEW_ORDER:
        instrument, side, type_, tif, stp, qty, price = fields
        return _S_NEW.pack(_S_NEW.size - 2, 12, raw, instrument, side, type_, tif, stp, qty,
                           _signed64(_price(price)))
    if msg_type == MsgType.CANCEL:
        return _S_CANCEL.pack(_S_CANCEL.size - 2, 13, raw)
    qty, price = fields
    return _S_AMEND.pack(_S_AMEND.size - 2, 14, raw, qty, _signed64(_price(price)))


def order_frames(n: int) -> np.ndarray:
    """``n`` NewOrder frames to fill in (the batch path: no Python object per order):
    headers set, LIMIT DAY CANCEL_NEWEST, price null. ``.tobytes()`` is the wire bytes.

    >>> f = order_frames(2)
    >>> f["cl_ord_id"] = [b"a1", b"a2"]; f["side"] = 1; f["qty"] = 10; f["price"] = 6000
    >>> [m.cl_ord_id for m in FrameReader(CLIENT).feed(f.tobytes())]
    ['a1', 'a2']
    """
    f = np.zeros(n, NEW_ORDER)
    f["length"] = NEW_ORDER.itemsize - 2
    f["type"] = MsgType.NEW_ORDER
    f["ord_type"] = OrderType.LIMIT
    f["tif"] = TimeInForce.DAY
    f["stp"] = Stp.CANCEL_NEWEST
    f["price"] = NULL_PRICE
    return f


def take_frames(n: int) -> np.ndarray:
    """``n`` Take frames to fill in (``cl_ord_id``, ``instrument``, ``side``, ``qty``,
    ``target``)."""
    f = np.zeros(n, TAKE)
    f["length"] = TAKE.itemsize - 2
    f["type"] = MsgType.TAKE
    return f


def cancel_frames(n: int) -> np.ndarray:
    """``n`` Cancel frames to fill in (``cl_ord_id`` only)."""
    f = np.zeros(n, CANCEL)
    f["length"] = CANCEL.itemsize - 2
    f["type"] = MsgType.CANCEL
    return f


def report_from_row(row) -> "ExecutionReport":
    """One ``EXECUTION_REPORT`` row as an ExecutionReport."""
    price = int(row["price"])
    return ExecutionReport(ExecKind(int(row["exec"])), decode_clid(bytes(row["cl_ord_id"])),
                           int(row["ts_us"]), int(row["instrument"]), int(row["segment"]),
                           int(row["side"]), None if price == NULL_PRICE else price,
                           int(row["qty"]), int(row["filled"]), int(row["open"]),
                           int(row["reason"]), int(row["trade_id"]), int(row["report_seq"]))


# ---------------------------------------------------------------- decoding

def _dec_new(view, pos):
    _, _, clid, instrument, side, type_, tif, stp, qty, price = _S_NEW.unpack_from(view, pos)
    return NewOrder(decode_clid(clid), instrument, side, qty, _nullable(price), type_, tif, stp)


def _dec_cancel(view, pos):
    return Cancel(decode_clid(_S_CANCEL.unpack_from(view, pos)[2]))


def _dec_amend(view, pos):
    _, _, clid, qty, price = _S_AMEND.unpack_from(view, pos)
    return Amend(decode_clid(clid), _nullable(price), qty)


def _dec_take(view, pos):
    _, _, clid, instrument, side, qty, target = _S_TAKE.unpack_from(view, pos)
    return Take(decode_clid(clid), instrument, side, qty, target)


def _dec_report(view, pos):
    (_, _, kind, reason, side, segment, instrument, clid, ts, price, qty, filled, open_,
     trade_id, report_seq) = _S_REPORT.unpack_from(view, pos)
    try:
        kind = ExecKind(kind)
    except ValueError:
        raise ProtocolError(f"ExecutionReport with exec {kind}") from None
    return ExecutionReport(kind, decode_clid(clid), ts, instrument, segment, side,
                           _nullable(price), qty, filled, open_, reason, trade_id, report_seq)


def _dec_quote(view, pos):
    (_, _, event, _, side, flags, instrument, quote_no, clid, ts, price, qty, trade_id,
     report_seq) = _S_QUOTE.unpack_from(view, pos)
    try:
        event = QuoteEvent(event)
    except ValueError:
        raise ProtocolError(f"QuoteReport with event {event}") from None
    return QuoteReport(event, quote_no, decode_clid(clid), ts, instrument, side, flags, price,
                       qty, trade_id, report_seq)


def _dec_trade(view, pos):
    _, _, *fields = _S_TRADE.unpack_from(view, pos)
    instrument, segment, aggressor, seq, ts, trade_id, price, qty = fields
    return MdTrade(instrument, segment, seq, ts, trade_id, price, qty, aggressor)


def _dec_status(view, pos):
    _, _, instrument, segment, status, seq, ts = _S_STATUS.unpack_from(view, pos)
    try:
        status = Status(status)
    except ValueError:
        raise ProtocolError(f"MdStatus with status {status}") from None
    return MdStatus(instrument, segment, seq, ts, status)


def _dec_summary(view, pos):
    _, _, instrument, segment, _, seq, ts, date, prior, close, volume, turnover = \
        _S_SUMMARY.unpack_from(view, pos)
    return MdDaySummary(instrument, segment, seq, ts, date, prior, close, volume, turnover)


def _dec_depth(view, pos, length):
    _, _, instrument, segment, bids, asks, seq, ts = _S_DEPTH.unpack_from(view, pos)
    if bids > DEPTH_LEVELS or asks > DEPTH_LEVELS or \
            length + 2 != _S_DEPTH.size + _S_LEVEL.size * (bids + asks):
        raise ProtocolError(f"MdDepth of {length} bytes with {bids} + {asks} levels")
    at = pos + _S_DEPTH.size
    levels = [_S_LEVEL.unpack_from(view, at + k * _S_LEVEL.size) for k in range(bids + asks)]
    return MdDepth(instrument, segment, seq, ts, levels[:bids], levels[bids:])


_BINARY_DECODERS = {MsgType.NEW_ORDER: _dec_new, MsgType.CANCEL: _dec_cancel,
                    MsgType.AMEND: _dec_amend, MsgType.TAKE: _dec_take,
                    MsgType.EXECUTION_REPORT: _dec_report, MsgType.QUOTE_REPORT: _dec_quote,
                    MsgType.MD_TRADE: _dec_trade, MsgType.MD_STATUS: _dec_status,
                    MsgType.MD_DAY_SUMMARY: _dec_summary}


class FrameReader:
    """Splits a byte stream into frames and decodes each into a message of ``types``
    (``CLIENT`` or ``SERVER``: a dict of type byte to Struct).

    ``feed`` returns the messages completed by the new bytes and keeps a partial frame for
    the next call. It raises ``ProtocolError`` on the first bad frame; the messages decoded
    before it in the same call are in ``err.messages`` so none is lost.
    """

    __slots__ = ("_buf", "_types", "_packed", "max_frame")

    def __init__(self, types=CLIENT, max_frame: int | None = None):
        if not isinstance(types, dict):  # an older caller's set of Structs
            types = CLIENT if NewOrder in getattr(types, "values", lambda: ())() else types
        self._buf = b""
        self._types = types
        self._packed = {t: msgspec.msgpack.Decoder(cls) for t, cls in types.items()
                        if issubclass(cls, Packed)}
        server = types is SERVER or ExecutionReport in types.values()
        self.max_frame = max_frame if max_frame is not None else (
            MAX_SERVER_FRAME if server else MAX_FRAME)

    def feed(self, data: bytes) -> list:
        buf = self._buf + data if self._buf else bytes(data)
        out = []
        pos, end = 0, len(buf)
        try:
            while end - pos >= 2:
                n = buf[pos] | buf[pos + 1] << 8
                if n == 0 or n > self.max_frame:
                    raise ProtocolError(f"frame length {n} outside 1..{self.max_frame}")
                stop = pos + 2 + n
                if stop > end:
                    break
                out.append(self._decode(buf, pos, n))
                pos = stop
        except ProtocolError as e:
            self._buf = b""
            e.messages = out
            raise
        self._buf = buf[pos:] if pos < end else b""
        return out

    def decode_frame(self, buf: bytes, pos: int):
        """The message of the complete frame at ``buf[pos:]``."""
        return self._decode(buf, pos, buf[pos] | buf[pos + 1] << 8)

    def _decode(self, buf: bytes, pos: int, n: int):
        kind = buf[pos + 2]
        cls = self._types.get(kind)
        if cls is None:
            raise ProtocolError(f"unknown message type {kind}")
        packed = self._packed.get(kind)
        if packed is not None:
            body = memoryview(buf)[pos + HEADER:pos + 2 + n]
            try:
                check_nesting(body)
            except ProtocolError as e:
                raise ProtocolError(f"undecodable {cls.__name__}: {e}") from None
            try:
                return packed.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise ProtocolError(f"undecodable {cls.__name__}: {e}") from None
            except RecursionError:  # msgspec skipping an absurdly nested extra field
                raise ProtocolError(f"undecodable {cls.__name__}: nested too deeply") from None
        if kind == MsgType.MD_DEPTH:
            if n + 2 < _S_DEPTH.size:
                raise ProtocolError(f"MdDepth of {n} bytes")
            return _dec_depth(buf, pos, n)
        if n + 2 != BINARY_SIZES[kind]:
            raise ProtocolError(f"{cls.__name__} must be {BINARY_SIZES[kind] - 2} bytes long, "
                                f"not {n}")
        return _BINARY_DECODERS[kind](buf, pos)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)
