"""The wire protocol: length-prefixed msgpack frames whose bodies are msgspec Structs.

A frame is a 4-byte big-endian unsigned length ``n`` (1 .. ``MAX_FRAME``) followed by ``n``
bytes: one message, encoded by msgspec as a msgpack array whose first element is the
message's integer tag (``array_like`` Structs: compact, and decoded in one pass into the
right type). ``docs/protocol.md`` documents every message, field and code.

>>> frame = encode(NewOrder("o1", "CEA", Side.BUY, 500, 6010))
>>> frame[:4], len(frame) - 4 == int.from_bytes(frame[:4], "big")
(b'\\x00\\x00\\x00\\x13', True)
>>> reader = FrameReader(CLIENT_MESSAGES)
>>> reader.feed(frame + encode(Heartbeat()))
[NewOrder(cl_ord_id='o1', instrument='CEA', side=1, qty=500, price=6010, type=1, tif=1, stp=1), Heartbeat(ts_us=0)]

Bad input never escapes as anything but ``ProtocolError`` (a frame too long, empty, or not a
known message); the server answers it with ``Error`` and closes the connection.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Union

import msgspec

from engine.codes import OrderType, Reason, Segment, Side, Stp, TimeInForce

#: Largest frame body accepted, in bytes. Every message fits in far less; a larger length
#: prefix is a broken or hostile peer and closes the connection before anything is buffered.
MAX_FRAME = 4096

_HEADER = 4


# Strings a client sends are bounded, so no reply that echoes them can outgrow a frame.
ClOrdId = Annotated[str, msgspec.Meta(max_length=64)]
Name = Annotated[str, msgspec.Meta(max_length=32)]  # an instrument or account
Token = Annotated[str, msgspec.Meta(max_length=256)]


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


class Status(IntEnum):
    """Trading status of one instrument's segment, published as market data."""

    CLOSED = 0  # not a trading day, before the session, or after 15:00
    OPEN = 1  # continuous trading
    BREAK = 2  # the midday break (11:30-13:00; the block segment trades 13:00-15:00 only)
    HALTED = 3  # an operator halted the instrument


class _Msg(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True, tag_field="t"):
    pass


# ---------------------------------------------------------------- both directions

class Heartbeat(_Msg, tag=1):
    """Sent by either side when it has sent nothing for a heartbeat interval."""

    ts_us: int = 0


class Error(_Msg, tag=2):
    """The server's answer to a frame it cannot accept; it closes the connection after."""

    reason: int
    text: str


# ---------------------------------------------------------------- client to server

class Logon(_Msg, tag=10):
    """First message of a session. ``token`` is the account's secret (stored hashed)."""

    account: Name
    token: Token
    cancel_on_disconnect: bool = True
    heartbeat_ms: int = 5000


class Logout(_Msg, tag=11):
    pass


class NewOrder(_Msg, tag=12):
    """Enter an order. ``cl_ord_id`` is the client's id, unique per account, for ever."""

    cl_ord_id: ClOrdId
    instrument: Name
    side: int  # engine.codes.Side; codes are checked by the engine (MALFORMED), not here
    qty: int
    price: int | None = None  # fen; None for MARKET
    type: int = OrderType.LIMIT
    tif: int = TimeInForce.DAY
    stp: int = Stp.CANCEL_NEWEST


class Cancel(_Msg, tag=13):
    cl_ord_id: ClOrdId


class Amend(_Msg, tag=14):
    """New limit price (fen) and new open quantity (t) of a resting order."""

    cl_ord_id: ClOrdId
    price: int
    qty: int


class MassCancel(_Msg, tag=15):
    """Cancel every resting order of the session's account, optionally of one instrument
    (empty: all) and side (0: both)."""

    instrument: Name = ""
    side: int = 0


class Subscribe(_Msg, tag=16):
    """Market data of one instrument's segment: a ``MdSnapshot``, then incrementals."""

    instrument: Name
    segment: int = Segment.LISTED  # 0 LISTED, 1 BLOCK; another value is refused (AdminAck)


class MdReplayRequest(_Msg, tag=17):
    """Resend market data ``from_seq`` .. ``to_seq`` (inclusive) of one channel."""

    instrument: Name
    segment: int
    from_seq: int
    to_seq: int


class Halt(_Msg, tag=20):
    """Operator: stop NEW and AMEND on an instrument (cancels still go through)."""

    instrument: Name


class Resume(_Msg, tag=21):
    instrument: Name


class EndDay(_Msg, tag=22):
    """Operator: end the trading day now (orders expire, the day closes and settles)."""


class SetPriorClose(_Msg, tag=23):
    """Operator: the prior close (fen) for the next trading day; not while a day is open."""

    instrument: Name
    price: int


class BalanceRequest(_Msg, tag=24):
    """The session's own cash and holdings (answered by ``Balance``)."""


class SetClock(_Msg, tag=25):
    """Operator, simulated clock (``--clock sim``) only: move the exchange clock forward to
    ``ts_us`` (exchange local time, µs), e.g. a simulation stepping through a day. What was
    sent before it is sequenced at the old time first; a session boundary or 15:00 that the
    jump passes takes effect at once. Answered by ``AdminAck``."""

    ts_us: int


# ---------------------------------------------------------------- server to client

class LogonAck(_Msg, tag=30):
    account: str
    session_id: int
    server_time_us: int
    heartbeat_ms: int


class LogonReject(_Msg, tag=31):
    text: str


class ExecutionReport(_Msg, tag=32):
    """One thing that happened to one of the session's orders.

    ``qty``: for ACCEPTED and AMENDED the order's open quantity, for fills the traded
    quantity (``price`` the trade price), for CANCELLED/EXPIRED the quantity removed.
    ``filled`` and ``open`` are the order's totals after this event.
    """

    exec: ExecKind
    cl_ord_id: str
    ts_us: int
    instrument: str = ""
    segment: int = 0
    side: int = 0
    price: int | None = None
    qty: int = 0
    filled: int = 0
    open: int = 0
    reason: int = 0
    trade_id: int = 0


class AdminAck(_Msg, tag=33):
    """Answer to an operator command: ``ok`` false with ``reason`` and text if refused."""

    command: str
    ok: bool
    reason: int = 0
    text: str = ""


class Balance(_Msg, tag=34):
    """Cash in fen and allowances in tonnes per instrument: [instrument, total, reserved,
    pending (bought today, sellable tomorrow), sellable]."""

    account: str
    cash: int
    cash_reserved: int
    cash_available: int
    withdrawable: int  # available less today's sale proceeds (T+1 for withdrawal)
    holdings: list[tuple[str, int, int, int, int]]


Level = tuple[int, int, int]  # price (fen), open quantity (t), number of orders


class MdSnapshot(_Msg, tag=40):
    """A channel's full state at sequence number ``seq``: incrementals follow from seq+1."""

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


class MdTrade(_Msg, tag=41):
    instrument: str
    segment: int
    seq: int
    ts_us: int
    trade_id: int
    price: int
    qty: int
    aggressor: Side


class MdDepth(_Msg, tag=42):
    """The best five levels of each side after a change (best bid/offer = first level)."""

    instrument: str
    segment: int
    seq: int
    ts_us: int
    bids: list[Level]
    asks: list[Level]


class MdStatus(_Msg, tag=43):
    instrument: str
    segment: int
    seq: int
    ts_us: int
    status: Status


class MdDaySummary(_Msg, tag=44):
    """End of a trading day: the closing price (listed VWAP) and the day's totals."""

    instrument: str
    segment: int
    seq: int
    ts_us: int
    date: str
    prior_close: int
    close: int
    volume: int
    turnover: int


MarketData = Union[MdTrade, MdDepth, MdStatus, MdDaySummary]

ClientMessage = Union[Heartbeat, Logon, Logout, NewOrder, Cancel, Amend, MassCancel, Subscribe,
                      MdReplayRequest, Halt, Resume, EndDay, SetPriorClose, BalanceRequest, SetClock]
ServerMessage = Union[Heartbeat, Error, LogonAck, LogonReject, ExecutionReport, AdminAck,
                      Balance, MdSnapshot, MdTrade, MdDepth, MdStatus, MdDaySummary]
CLIENT_MESSAGES = ClientMessage
SERVER_MESSAGES = ServerMessage


class ProtocolError(ValueError):
    """A frame that is not a valid message: the connection is closed after it."""


_encoder = msgspec.msgpack.Encoder()


def encode(msg) -> bytes:
    """One message as a frame (length prefix and body)."""
    body = _encoder.encode(msg)
    return len(body).to_bytes(_HEADER, "big") + body


def encode_into(msg, buf: bytearray) -> None:
    """Append one message's frame to ``buf`` (one buffer per batch of replies)."""
    start = len(buf)
    buf += b"\0\0\0\0"
    _encoder.encode_into(msg, buf, start + _HEADER)
    buf[start:start + _HEADER] = (len(buf) - start - _HEADER).to_bytes(_HEADER, "big")


class FrameReader:
    """Splits a byte stream into frames and decodes each into a message of ``types``.

    ``feed`` returns the messages completed by the new bytes and keeps a partial frame for
    the next call. It raises ``ProtocolError`` on the first bad frame; the messages decoded
    before it in the same call are in ``err.messages`` so none is lost.
    """

    __slots__ = ("_buf", "_decoder", "max_frame")

    def __init__(self, types=CLIENT_MESSAGES, max_frame: int = MAX_FRAME):
        self._buf = b""
        self._decoder = msgspec.msgpack.Decoder(types)
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list:
        buf = self._buf + data if self._buf else data
        out = []
        pos, end = 0, len(buf)
        decode = self._decoder.decode
        view = memoryview(buf)
        try:
            while end - pos >= _HEADER:
                n = int.from_bytes(buf[pos:pos + _HEADER], "big")
                if n == 0 or n > self.max_frame:
                    raise ProtocolError(f"frame length {n} outside 1..{self.max_frame}")
                stop = pos + _HEADER + n
                if stop > end:
                    break
                try:
                    out.append(decode(view[pos + _HEADER:stop]))
                except (msgspec.DecodeError, msgspec.ValidationError) as e:
                    raise ProtocolError(f"undecodable frame: {e}") from None
                except RecursionError:  # msgspec skipping an absurdly nested extra field
                    raise ProtocolError("undecodable frame: nested too deeply") from None
                pos = stop
        except ProtocolError as e:
            self._buf = b""
            e.messages = out
            raise
        finally:
            view.release()
        self._buf = buf[pos:] if pos < end else b""
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)
