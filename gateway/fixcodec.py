"""FIX 4.4 tag=value framing: one message is ``8=FIX.4.4|9=len|35=type|...|10=sum|`` with
SOH (0x01) as the separator.

``FixReader.feed`` frames the byte stream and checks what the specification makes a
message *garbled* (its begin string, BodyLength, CheckSum, the order of the first three
fields, a field that is not ``tag=value``); a garbled message is reported as such, and the
session layer ignores it as the specification says (no reject, its sequence number not
consumed). ``encode`` builds a message with the standard header, BodyLength and CheckSum.

>>> raw = encode("0", [], "CEA", "A001", 7, "20240304-09:30:00.000")
>>> raw.replace(SOH, b"|")
b'8=FIX.4.4|9=50|35=0|49=CEA|56=A001|34=7|52=20240304-09:30:00.000|10=093|'
>>> [m.get(34) for m in FixReader().feed(raw)]
['7']
"""

from __future__ import annotations

SOH = b"\x01"
BEGIN = b"8=FIX.4.4\x01"
#: the longest message accepted (a bound on what a peer can make the server hold)
MAX_MESSAGE = 64 * 1024


class FixMessage:
    """A parsed message: ``fields`` in order as (tag, value) pairs, values decoded ASCII;
    ``get(tag)`` the first value of a tag (None if absent); ``msg_type`` the 35 field."""

    __slots__ = ("fields", "raw", "_first")

    def __init__(self, fields: list[tuple[int, str]], raw: bytes):
        self.fields, self.raw = fields, raw
        self._first: dict[int, str] = {}
        for tag, value in fields:
            self._first.setdefault(tag, value)

    @property
    def msg_type(self) -> str:
        return self._first.get(35, "")

    def get(self, tag: int, default=None):
        return self._first.get(tag, default)

    def has(self, tag: int) -> bool:
        return tag in self._first

    def __repr__(self) -> str:
        return f"FixMessage({self.raw.replace(SOH, b'|')!r})"


class Garbled:
    """Bytes that are not a well-formed message (``why``); the session ignores them."""

    __slots__ = ("why", "raw")

    def __init__(self, why: str, raw: bytes):
        self.why, self.raw = why, raw

    def __repr__(self) -> str:
        return f"Garbled({self.why!r})"


def checksum(data: bytes) -> int:
    return sum(data) % 256


class FixReader:
    """Splits a byte stream into ``FixMessage`` and ``Garbled`` items. It reads from a cursor
    and drops what it consumed once per ``feed`` (not per message: a pipelined burst is one
    pass, not a memmove per message)."""

    def __init__(self):
        self.buf = bytearray()
        self.pos = 0

    def feed(self, data: bytes) -> list:
        self.buf += data
        out = []
        while True:
            item = self._next()
            if item is None:
                break
            out.append(item)
        del self.buf[:self.pos]
        self.pos = 0
        return out

    def _take(self, n: int) -> bytes:
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw

    def _next(self):
        buf, o = self.buf, self.pos
        size = len(buf) - o
        if size <= 0:
            return None
        start = buf.find(b"8=FIX", o)
        if start < 0:
            # keep a possible begin string's start, drop the rest as noise
            if size > 4:
                return Garbled("bytes before a begin string", self._take(size - 4))
            return None
        if start > o:
            return Garbled("bytes before a begin string", self._take(start - o))
        if size < len(BEGIN) + 4:
            return None
        if not buf.startswith(BEGIN, o):
            end = buf.find(SOH, o)
            if end < 0 and size < 32:
                return None
            return self._drop(max(end + 1 - o, 1), "BeginString is not FIX.4.4")
        p = o + len(BEGIN)
        if not buf.startswith(b"9=", p):
            return self._drop(p - o, "BodyLength (9) is not the second field")
        end9 = buf.find(SOH, p, p + 12)
        if end9 < 0:
            return None if len(buf) - p < 12 else self._drop(p - o, "BodyLength is not a number")
        length_text = bytes(buf[p + 2:end9])
        if not length_text.isdigit() or len(length_text) > 6:
            return self._drop(p - o, "BodyLength is not a number")
        body_start = end9 + 1
        body_end = body_start + int(length_text)
        if body_end - o > MAX_MESSAGE:
            return self._drop(p - o, f"message longer than {MAX_MESSAGE} bytes")
        if len(buf) < body_end + 7:
            # a begin string inside the declared body: the length was wrong (too long), and
            # the next message has started; garbled up to it
            nxt = buf.find(SOH + BEGIN, body_start)
            if nxt >= 0:
                return self._drop(nxt + 1 - o, "BodyLength does not match")
            return None
        trailer = bytes(buf[body_end:body_end + 7])
        if not (trailer.startswith(b"10=") and trailer[6:7] == SOH and trailer[3:6].isdigit()):
            # the length did not lead to a checksum: garbled; resynchronise on the next
            # begin string
            nxt = buf.find(b"8=FIX", o + 1)
            return self._drop((nxt if nxt > 0 else len(buf)) - o, "BodyLength does not match")
        raw = self._take(body_end + 7 - o)
        if int(trailer[3:6]) != checksum(raw[:body_end - o]):
            return Garbled("CheckSum does not match", raw)
        fields = []
        for part in raw[:-1].split(SOH):
            tag, eq, value = part.partition(b"=")
            if not eq or not tag.isdigit() or not value or tag.startswith(b"0"):
                return Garbled(f"field {part[:20]!r} is not tag=value", raw)
            fields.append((int(tag), value.decode("latin-1")))
        if len(fields) < 4 or fields[2][0] != 35:
            return Garbled("MsgType (35) is not the third field", raw)
        return FixMessage(fields, raw)

    def _drop(self, n: int, why: str) -> Garbled:
        return Garbled(why, self._take(n))


def encode(msg_type: str, body: list[tuple[int, object]], sender: str, target: str, seq: int,
           sending_time: str, header: list[tuple[int, object]] = ()) -> bytes:
    """One message: the standard header (35, 49, 56, 34, 52, then ``header``), ``body``
    fields in order, BodyLength and CheckSum."""
    parts = [f"35={msg_type}", f"49={sender}", f"56={target}", f"34={seq}", f"52={sending_time}"]
    parts += [f"{tag}={value}" for tag, value in header]
    parts += [f"{tag}={value}" for tag, value in body]
    payload = ("\x01".join(parts) + "\x01").encode("latin-1")
    head = BEGIN + f"9={len(payload)}".encode() + SOH
    msg = head + payload
    return msg + f"10={checksum(msg):03d}".encode() + SOH


__all__ = ["BEGIN", "FixMessage", "FixReader", "Garbled", "SOH", "checksum", "encode"]
