"""A minimal FIX 4.4 initiator for the tests: sends what it is told (numbering it unless told
otherwise), reads and checks what comes back, keeps its own sequence numbers."""

from __future__ import annotations

import asyncio

from gateway.fix import fix_time
from gateway.fixcodec import FixMessage, FixReader, Garbled, encode


class FixPeer:
    #: every peer connected (the tests close them all at the end)
    opened: list["FixPeer"] = []

    def __init__(self, host: str, port: int, account: str, target: str = "CEA"):
        self.host, self.port, self.account, self.target = host, port, account, target
        self.next_out = 1
        self.next_in = 1
        self.reader = FixReader()
        self.inbox: list[FixMessage] = []
        self.r = self.w = None

    async def connect(self) -> None:
        self.r, self.w = await asyncio.open_connection(self.host, self.port)
        FixPeer.opened.append(self)

    def raw(self, data: bytes) -> None:
        self.w.write(data)

    def send(self, msg_type: str, body: list, seq: int | None = None, header=()) -> int:
        seq = self.next_out if seq is None else seq
        if seq == self.next_out:
            self.next_out += 1
        self.w.write(encode(msg_type, body, self.account, self.target, seq, fix_time(), header))
        return seq

    async def logon(self, token: str, hb: int = 30, reset: bool = False, extra=()) -> FixMessage:
        body = [(98, 0), (108, hb), (554, token)] + list(extra)
        if reset:
            body.append((141, "Y"))
            self.next_out = self.next_in = 1
        self.send("A", body)
        reply = await self.expect("A", "5")
        assert reply.msg_type == "A", reply
        return reply

    async def read(self, timeout: float = 5.0) -> FixMessage | None:
        """The next message, or None once the connection closed."""
        while not self.inbox:
            data = await asyncio.wait_for(self.r.read(65536), timeout)
            if not data:
                return None
            for item in self.reader.feed(data):
                assert not isinstance(item, Garbled), item
                self.inbox.append(item)
        msg = self.inbox.pop(0)
        seq = int(msg.get(34))
        if msg.get(43) != "Y" and msg.msg_type != "4" and self.next_in is not None:
            assert seq == self.next_in, (seq, self.next_in, msg)
        self.next_in = seq + 1 if msg.msg_type != "4" else int(msg.get(36))
        return msg

    async def expect(self, *types: str, timeout: float = 5.0) -> FixMessage:
        """The next message that is not a Heartbeat; it must be of one of ``types``."""
        while True:
            msg = await self.read(timeout)
            assert msg is not None, f"connection closed waiting for {types}"
            if msg.msg_type == "0" and "0" not in types:
                continue
            assert msg.msg_type in types, (types, msg)
            return msg

    async def quiet(self, seconds: float = 0.3) -> list[FixMessage]:
        """What arrives within ``seconds`` (heartbeats included)."""
        out = []
        try:
            while True:
                msg = await self.read(seconds)
                if msg is None:
                    break
                out.append(msg)
        except asyncio.TimeoutError:
            pass
        return out

    async def closed(self, timeout: float = 5.0) -> bool:
        try:
            while True:
                msg = await self.read(timeout)
                if msg is None:
                    return True
        except asyncio.TimeoutError:
            return False

    def close(self) -> None:
        if self.w is not None and not self.w.is_closing():
            self.w.close()

    @classmethod
    async def close_all(cls) -> None:
        for peer in cls.opened:
            peer.close()
            try:
                await peer.w.wait_closed()
            except (ConnectionError, OSError):
                pass
        cls.opened.clear()
