"""A bare order server: the floor ``cea bench gateway`` compares ``cea serve`` against.

It speaks ``cea serve``'s wire protocol for order entry only (``gateway.protocol``): a Logon
frame is answered with a LogonAck, each binary NewOrder with one ExecutionReport (ACCEPTED or
REJECTED), and nothing else: no journal, no ledger, no accounts, no fills, no market data.
Per read, the complete NewOrder frames are viewed as one ``P.NEW_ORDER`` array
(``np.frombuffer``; a partial frame waits for the next read), turned into
``engine.batch.COMMAND_DTYPE`` rows with NumPy (order ids interned as a running counter),
matched by one ``FastBook.submit_batch`` call, and answered by one ``P.EXECUTION_REPORT``
array written as its bytes. The matching is the real engine's; only Python per read, never
per order.

``--echo`` makes it a plain uvloop echo server instead (the loopback floor of a round trip).

``--msgpack`` makes it the server the issue measured ``cea serve`` against: the wire before
the binary protocol (a 4-byte big-endian length, then a msgpack array whose first element is
the message's tag), each frame decoded by msgspec into a Struct, one ``FastBook`` call per
read, each acknowledgement encoded by msgspec: a minimal msgspec + uvloop + Numba server.

    python -m bench.bare --port 0          # prints "listening on 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

import msgspec
import numpy as np

from engine import batch as B
from engine.codes import NO_PRICE, Action, EventKind, Reason
from engine.fast.book import FastBook
from engine.rules import MAX_QTY, MIN_QTY
from engine.tradingdays import TradingCalendar, parse_time
from gateway import protocol as P

START = "2024-03-04T09:30:00"
PRIOR_CLOSE = 6000
INSTRUMENTS = ["CEA"]
NEW_SIZE = P.NEW_ORDER.itemsize
_NEW_LEN, _NEW_TYPE = NEW_SIZE - 2, int(P.MsgType.NEW_ORDER)
_ACCEPTED, _REJECTED = int(EventKind.ACCEPTED), int(EventKind.REJECTED)


class Market:
    """The one book all sessions share, and the order-handle counter."""

    def __init__(self, start: str = START):
        # the book's default capacities, as cea serve's: both grow their arrays alike
        self.book = FastBook([PRIOR_CLOSE], TradingCalendar.from_dates([start[:10]]))
        self.ts0, self.t0 = parse_time(start), time.monotonic_ns()
        self.next_order = 0
        self.accounts: dict[str, int] = {}

    def now_us(self) -> int:
        return self.ts0 + (time.monotonic_ns() - self.t0) // 1000

    def orders(self, f: np.ndarray, account: int) -> bytes:
        """The reports (bytes) of a batch of NEW_ORDER frames ``f`` from ``account``."""
        n = f.shape[0]
        ts = self.now_us()
        side, typ, tif, stp = f["side"], f["ord_type"], f["tif"], f["stp"]
        instrument, qty, price = f["instrument"], f["qty"], f["price"]
        market = typ == 2
        cmds = np.empty(n, B.COMMAND_DTYPE)
        cmds["ts"] = ts
        cmds["order"] = np.arange(self.next_order, self.next_order + n)
        self.next_order += n
        cmds["price"] = np.where(market, NO_PRICE, np.minimum(price, 2**62))
        cmds["qty"] = qty
        cmds["account"] = account
        cmds["instrument"] = instrument
        cmds["action"] = Action.NEW
        cmds["side"], cmds["type"], cmds["tif"], cmds["stp"] = side, typ, tif, stp
        # what a row says on its own, as the gateway's admission checks it
        malformed = ((instrument >= len(INSTRUMENTS)) | (side - 1 > 1) | (typ - 1 > 1)
                     | (tif - 1 > 2) | (stp - 1 > 2) | (market & (tif != 2)))
        bad_qty = (qty < MIN_QTY) | (qty > MAX_QTY)
        bad_price = np.where(market, price != P.NULL_PRICE, price <= 0)
        check = np.where(malformed, Reason.MALFORMED, np.where(
            bad_qty, Reason.INVALID_QTY, np.where(bad_price, Reason.INVALID_PRICE, 0)))
        cmds["check"] = check
        bad = check != 0
        if bad.any():  # a rejected row names nothing the kernel would index
            cmds["instrument"][bad] = 0
            cmds["price"][bad] = NO_PRICE
            cmds["qty"][bad] = 0
            for name in ("side", "type", "tif", "stp"):
                cmds[name][bad] = 0
        ev = self.book.submit_batch(cmds, copy=False)
        kind = ev[:, B.KIND]
        first = ev[(kind == _ACCEPTED) | (kind == _REJECTED)]  # one per NEW, in order
        at = first[:, B.CMD]
        rep = np.zeros(n, P.EXECUTION_REPORT)
        rep["length"] = P.EXECUTION_REPORT.itemsize - 2
        rep["type"] = P.MsgType.EXECUTION_REPORT
        accepted = first[:, B.KIND] == _ACCEPTED
        rep["exec"][at] = np.where(accepted, P.ExecKind.ACCEPTED, P.ExecKind.REJECTED)
        rep["reason"][at] = first[:, B.REASON]
        rep["segment"][at] = np.where(accepted, first[:, B.SEGMENT], 0)
        rep["instrument"][at] = np.where(accepted, first[:, B.INSTRUMENT], P.NO_INSTRUMENT)
        rep["side"] = side
        rep["cl_ord_id"] = f["cl_ord_id"]
        rep["ts_us"] = ts
        rep["price"] = np.where(market, P.NULL_PRICE, price)
        rep["qty"] = qty
        rep["open"][at] = np.where(accepted, first[:, B.QTY], 0)
        return rep.tobytes()


class OrderSession(asyncio.Protocol):
    def __init__(self, market: Market):
        self.market = market
        self.pending = b""
        self.account = -1
        self.decoder = P.FrameReader(P.CLIENT)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.pending + data if self.pending else data
        pos, end = 0, len(buf)
        out = []
        while end - pos >= 3:
            length = buf[pos] | buf[pos + 1] << 8
            if length == _NEW_LEN and buf[pos + 2] == _NEW_TYPE and self.account >= 0:
                k = (end - pos) // NEW_SIZE  # complete frames; a run of NewOrders, checked
                if k == 0:
                    break
                f = np.frombuffer(buf, P.NEW_ORDER, count=k, offset=pos)
                ok = (f["length"] == _NEW_LEN) & (f["type"] == _NEW_TYPE)
                if not ok[-1] or not ok.all():
                    k = int(np.argmin(ok))
                    f = f[:k]
                out.append(self.market.orders(f, self.account))
                pos += k * NEW_SIZE
                continue
            if length == 0 or length > P.MAX_FRAME:
                return self._close(out)
            if pos + 2 + length > end:
                break
            try:
                msg = self.decoder.decode_frame(buf, pos)
            except P.ProtocolError:
                return self._close(out)
            pos += 2 + length
            kind = type(msg)
            if kind is P.Logon and self.account < 0:
                accounts = self.market.accounts
                self.account = accounts.setdefault(msg.account, len(accounts))
                out.append(P.encode(P.LogonAck(msg.account, self.account + 1,
                                               self.market.now_us(), msg.heartbeat_ms,
                                               INSTRUMENTS)))
            elif kind is P.Logout:
                return self._close(out)
            elif kind is not P.Heartbeat:
                return self._close(out)  # nothing else is spoken here
        self.pending = buf[pos:]
        if out:
            self.transport.write(b"".join(out))

    def _close(self, out) -> None:
        if out:
            self.transport.write(b"".join(out))
        self.transport.close()


# ---------------------------------------------------------------- the msgpack comparator

class MpLogon(msgspec.Struct, array_like=True, tag=10, tag_field="t"):
    account: str
    token: str
    cancel_on_disconnect: bool = True
    heartbeat_ms: int = 5000


class MpNewOrder(msgspec.Struct, array_like=True, tag=12, tag_field="t"):
    cl_ord_id: str
    instrument: int
    side: int
    qty: int
    price: int | None = None
    type: int = 1
    tif: int = 1
    stp: int = 1


class MpLogonAck(msgspec.Struct, array_like=True, tag=30, tag_field="t"):
    account: str
    session_id: int


class MpAck(msgspec.Struct, array_like=True, tag=32, tag_field="t"):
    exec: int
    cl_ord_id: str
    ts_us: int
    instrument: int
    segment: int
    side: int
    price: int | None
    qty: int
    reason: int


def mp_frame(msg) -> bytes:
    body = msgspec.msgpack.encode(msg)
    return len(body).to_bytes(4, "big") + body


class MsgpackSession(asyncio.Protocol):
    """The msgspec comparator: per frame a msgspec decode, per read one engine call, per
    acknowledgement a msgspec encode."""

    def __init__(self, market: Market):
        self.market = market
        self.pending = b""
        self.account = -1
        self.decoder = msgspec.msgpack.Decoder(MpLogon | MpNewOrder)
        self.encoder = msgspec.msgpack.Encoder()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.pending + data if self.pending else data
        view = memoryview(buf)
        pos, end = 0, len(buf)
        orders = []
        out = bytearray()
        decode = self.decoder.decode
        while end - pos >= 4:
            n = int.from_bytes(buf[pos:pos + 4], "big")
            if pos + 4 + n > end:
                break
            msg = decode(view[pos + 4:pos + 4 + n])
            pos += 4 + n
            if type(msg) is MpNewOrder:
                orders.append(msg)
            elif self.account < 0:
                accounts = self.market.accounts
                self.account = accounts.setdefault(msg.account, len(accounts))
                out += mp_frame(MpLogonAck(msg.account, self.account + 1))
        view.release()
        self.pending = buf[pos:]
        if orders:
            market = self.market
            n = len(orders)
            ts = market.now_us()
            cmds = np.empty(n, B.COMMAND_DTYPE)
            cmds["ts"] = ts
            cmds["order"] = np.arange(market.next_order, market.next_order + n)
            market.next_order += n
            cmds["price"] = [NO_PRICE if o.price is None else o.price for o in orders]
            cmds["qty"] = [o.qty for o in orders]
            cmds["account"] = self.account
            cmds["instrument"] = [o.instrument for o in orders]
            cmds["action"] = Action.NEW
            cmds["check"] = 0
            cmds["side"] = [o.side for o in orders]
            cmds["type"] = [o.type for o in orders]
            cmds["tif"] = [o.tif for o in orders]
            cmds["stp"] = [o.stp for o in orders]
            ev = market.book.submit_batch(cmds, copy=False)
            kind = ev[:, B.KIND]
            first = ev[(kind == _ACCEPTED) | (kind == _REJECTED)].tolist()
            encode_into = self.encoder.encode_into
            for o, row in zip(orders, first):
                at = len(out)
                out += b"\0\0\0\0"
                accepted = row[B.KIND] == _ACCEPTED
                encode_into(MpAck(1 if accepted else 2, o.cl_ord_id, ts, o.instrument,
                                  row[B.SEGMENT], o.side, o.price, o.qty, row[B.REASON]),
                            out, at + 4)
                out[at:at + 4] = (len(out) - at - 4).to_bytes(4, "big")
        if out:
            self.transport.write(bytes(out))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def _warm_up() -> None:
    """Load the book's kernels (from Numba's cache) before listening."""
    m = Market()
    f = P.order_frames(4)
    f["cl_ord_id"] = [b"w1", b"w2", b"w3", b"w4"]
    f["side"] = [1, 2, 1, 2]
    f["qty"] = 10
    f["price"] = 6000
    m.orders(f, 0)


async def serve(port: int, echo: bool, msgpack: bool = False) -> None:
    loop = asyncio.get_running_loop()
    if echo:
        factory = Echo
    else:
        _warm_up()
        market = Market()
        session = MsgpackSession if msgpack else OrderSession
        factory = lambda: session(market)  # noqa: E731
    server = await loop.create_server(factory, "127.0.0.1", port)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--echo", action="store_true", help="a plain echo server")
    ap.add_argument("--msgpack", action="store_true",
                    help="the msgspec comparator (the wire before the binary protocol)")
    args = ap.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.port, args.echo, args.msgpack))


if __name__ == "__main__":
    main()
