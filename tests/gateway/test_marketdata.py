"""Market data over the wire: snapshots, sequenced incrementals, and recovery from gaps made
on purpose by dropping messages at the subscriber."""

from __future__ import annotations

import asyncio

from engine.codes import Side
from gateway import protocol as P
from gateway.client import Client

from .support import config, run_with_server, until

_INCREMENTALS = (P.MdTrade, P.MdDepth, P.MdStatus, P.MdDaySummary)


async def _trade_a_while(host, port, rounds: int) -> None:
    """Two accounts trading at moving prices, one command per loop turn (many messages)."""
    async with Client(host, port, "A001", "A001-test-token-0001") as a, \
            Client(host, port, "A002", "A002-test-token-0002") as b:
        for i in range(rounds):
            price = 5900 + (i * 7) % 200
            a.new_order(f"b{i}", "CEA", Side.BUY, 10 + i % 5, price)
            await asyncio.sleep(0)
            b.new_order(f"s{i}", "CEA", Side.SELL, 7 + i % 3, price - (i % 2))
            await asyncio.sleep(0)
        await until(lambda: len(a.reports) >= 2 * rounds // 2 and not b._writer.is_closing())
        await asyncio.sleep(0.2)


def _assert_same_view(lossy, clean, md):
    assert lossy.seq == clean.seq == md.seq(0)
    assert (lossy.bids, lossy.asks, lossy.last_price, lossy.volume, lossy.status) == (
        clean.bids, clean.asks, clean.last_price, clean.volume, clean.status)


def test_gap_is_filled_by_replay(tmp_path):
    async def body(server, host, port):
        dropped: set[int] = set()

        def drop(msg):  # every third incremental is lost the first time it is sent
            if isinstance(msg, _INCREMENTALS) and msg.seq % 3 == 0 and msg.seq not in dropped:
                dropped.add(msg.seq)
                return True
            return False

        delivered = []
        async with Client(host, port, "A003", "A003-test-token-0003", drop=drop,
                          on_market_data=delivered.append) as lossy, \
                Client(host, port, "A004", "A004-test-token-0004") as clean:
            lossy_book = await lossy.subscribe("CEA")
            clean_book = await clean.subscribe("CEA")
            await _trade_a_while(host, port, 150)
            md = server.exchange.md
            await until(lambda: lossy_book.seq == md.seq(0) == clean_book.seq,
                        what="the lossy subscriber to catch up")
            _assert_same_view(lossy_book, clean_book, md)
            assert dropped and lossy_book.gaps > 0 and lossy_book.replays > 0
            assert lossy_book.snapshots == 1  # replays were enough
            seqs = [m.seq for m in delivered if isinstance(m, _INCREMENTALS)]
            first = delivered[0].seq  # the snapshot's number
            assert seqs == list(range(first + 1, md.seq(0) + 1))  # each once, in order
            assert len(lossy_book.trades) == len(clean_book.trades) > 0

    run_with_server(config(tmp_path), body)


def test_gap_older_than_the_ring_gets_a_snapshot(tmp_path):
    async def body(server, host, port):
        state = {"dropping": False, "dropped": 0}

        def drop(msg):  # lose a long run of messages once
            if isinstance(msg, _INCREMENTALS) and state["dropping"]:
                state["dropped"] += 1
                if state["dropped"] >= 20:
                    state["dropping"] = False
                return True
            return False

        async with Client(host, port, "A003", "A003-test-token-0003", drop=drop) as lossy, \
                Client(host, port, "A004", "A004-test-token-0004") as clean:
            lossy_book = await lossy.subscribe("CEA")
            clean_book = await clean.subscribe("CEA")
            state["dropping"] = True
            await _trade_a_while(host, port, 60)
            md = server.exchange.md
            await until(lambda: lossy_book.seq == md.seq(0) == clean_book.seq,
                        what="the lossy subscriber to catch up")
            _assert_same_view(lossy_book, clean_book, md)
            assert state["dropped"] == 20 and lossy_book.gaps >= 1
            assert lossy_book.snapshots >= 2  # the first, then fresh ones: the ring keeps 4

    run_with_server(config(tmp_path, md_ring=4), body)


def test_snapshot_and_replay_request_directly(tmp_path):
    async def body(server, host, port):
        await _trade_a_while(host, port, 20)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(P.encode(P.Logon("A003", "A003-test-token-0003"))
                     + P.encode(P.Subscribe("CEA", 0))
                     + P.encode(P.MdReplayRequest("CEA", 0, 1, 3))
                     + P.encode(P.Subscribe("NOPE", 0)))
        frames = P.FrameReader(P.SERVER)
        got = []
        while len(got) < 6:
            got.extend(frames.feed(await asyncio.wait_for(reader.read(65536), 5)))
        writer.close()
        ack, snap, r1, r2, r3, refused = got[:6]
        assert isinstance(ack, P.LogonAck) and isinstance(snap, P.MdSnapshot)
        md = server.exchange.md
        assert snap.seq == md.seq(0) and (snap.bids, snap.asks) == md.depth_lists(0)
        assert [m.seq for m in (r1, r2, r3)] == [1, 2, 3]
        assert isinstance(r1, P.MdStatus) and r1.status == P.Status.OPEN
        assert isinstance(refused, P.AdminAck) and not refused.ok

    run_with_server(config(tmp_path), body)
