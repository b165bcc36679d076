"""``gateway.web.view.MarketView``: what the live screen reads from the market-data stage,
checked against the engine's own trade events (``Turn.settled``), turn by turn, in process.

- the day's open, high, low, last, volume, turnover and close so far are exact, on both
  segments, however the polls fall between the turns;
- ``poll`` hands each trade once, newest last, and at most ``TAPE`` of them; the tape keeps
  the last ``TAPE``; the chart's per-second points (last, high, low, volume, turnover) equal
  the trades folded by second, and the points a poll returns, applied as the page applies
  them, rebuild the same chart (a second that spans two polls included);
- a new trading day: its day summary is carried (``summary``), the day's figures start over,
  and the first trade of the new day starts a new tape and chart (also when one poll spans
  the close and the next day's trades);
- a reader that falls more than a ring behind counts the frames it lost (``missed``),
  shows the trades still in the ring, and its figures stay exact; replaced rings
  (``resize_ring``) are followed.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine import batch as B
from engine.codes import EventKind, Segment
from engine.rules import BLOCK_MIN_QTY, DAY_US, closing_price, vwap
from engine.tradingdays import parse_time
from gateway import protocol as P
from gateway.admission import Admission
from gateway.exchange import SYSTEM, AdminOp, Exchange, Genesis
from gateway.marketdata import RING
from gateway.reports import Output
from gateway.sequencer import Sequencer, Tick
from gateway.web.view import BUCKET_US, TAPE, MarketView

T0 = parse_time("2024-03-04T13:30:00")  # a Monday afternoon: listed and block both open
CLOSE = parse_time("2024-03-04T15:00:00")
NEXT = parse_time("2024-03-05T13:30:00")  # the next trading day, both open
PRIOR = 6000
BUY, SELL = 1, 2


class Desk:
    """An exchange with its admission and sequencer stages, fed orders turn by turn as the
    server feeds them, keeping every trade the engine reported (its own events)."""

    def __init__(self, ring: int = RING):
        self.ex = Exchange(Genesis([("CEA", PRIOR)], operator="OPS"), impl="numba",
                           md_ring=ring)
        self.adm, self.out = Admission(self.ex), Output()
        self.seq = Sequencer(self.ex, self.adm, self.out)
        self.trades: list[dict] = []  # every trade, in order: dict(c=channel, ts, id, ...)
        self.days: list[np.ndarray] = []  # DAY_CLOSED rows
        self.n = 0
        ops = []
        for name in ("S", "B"):
            ops += [AdminOp(T0, "OPEN_ACCOUNT", account=name, value=1),
                    AdminOp(T0, "DEPOSIT", account=name, value=10**14),
                    AdminOp(T0, "ALLOWANCE_IN", account=name, instrument="CEA",
                            value=10**9)]
        self.turn(T0, system=[(SYSTEM, op) for op in ops])
        self.turn(T0, system=[(SYSTEM, Tick(T0))])  # the channels' statuses: OPEN
        assert [self.ex.md.status(c).name for c in (0, 1)] == ["OPEN", "OPEN"]

    def turn(self, ts: int, sends=(), system=()) -> None:
        """One turn at exchange time ``ts``: ``sends`` = [(account, [messages])]."""
        self.adm.begin(ts)
        for account, msgs in sends:
            frames = bytearray(b"".join(P.encode(m) for m in msgs))
            consumed, *_ = self.adm.take(frames, self.ex.account_handle(account), 1 << 20,
                                         1 << 40, 1 << 40, lambda frame: False, 8)
            assert consumed == len(frames)
        turn = self.seq.run(list(system))
        self.out.grouped(len(self.ex.engine.accounts), self.ex.seq)
        for rows in turn.settled:
            for r in rows.tolist():
                if r[B.KIND] == EventKind.TRADE:
                    self.trades.append({"c": 2 * r[B.INSTRUMENT] + r[B.SEGMENT],
                                        "ts": r[B.TS], "id": r[B.TRADE_ID],
                                        "price": r[B.PRICE], "qty": r[B.QTY],
                                        "aggressor": r[B.SIDE]})
                elif r[B.KIND] == EventKind.DAY_CLOSED:
                    self.days.append(r)

    def order(self, account: str, side: int, qty: int, price: int) -> P.NewOrder:
        self.n += 1
        return P.NewOrder(f"o{self.n}", 0, side, qty, price)

    def sweep(self, ts: int, rng: random.Random, block: bool = False) -> None:
        """A turn that trades: one side rests a few orders at random prices, the other side
        takes them all with one order (a trade per resting order, at its price)."""
        lot = BLOCK_MIN_QTY if block else 1
        passive = rng.choice((BUY, SELL))
        maker, taker = ("B", "S") if passive == BUY else ("S", "B")
        spread = 1500 if block else 40  # block prices move more, within the ±30 % band
        prices = [PRIOR + rng.randint(-spread, spread) for _ in range(rng.randint(1, 4))]
        qtys = [lot + rng.randint(1, 500) for _ in prices]
        rest = [self.order(maker, passive, q, p) for q, p in zip(qtys, prices)]
        take = self.order(taker, SELL if passive == BUY else BUY, sum(qtys),
                          min(prices) if passive == BUY else max(prices))
        self.turn(ts, [(maker, rest)])
        self.turn(ts, [(taker, [take])])

    def of(self, c: int, day: int | None = None) -> list[dict]:
        """The trades of channel ``c`` (of one exchange day), as ``poll`` gives them."""
        return [{k: t[k] for k in ("ts", "id", "price", "qty", "aggressor")}
                for t in self.trades
                if t["c"] == c and (day is None or t["ts"] // DAY_US == day)]


def figures(trades: list[dict]) -> dict:
    """The day's figures of one channel, from its trades."""
    if not trades:
        return {"last": None, "open": None, "high": None, "low": None, "volume": 0,
                "turnover": 0}
    prices = [t["price"] for t in trades]
    return {"last": prices[-1], "open": prices[0], "high": max(prices), "low": min(prices),
            "volume": sum(t["qty"] for t in trades),
            "turnover": sum(t["price"] * t["qty"] for t in trades)}


def chart(trades: list[dict]) -> list[list[int]]:
    """The trades folded per second: [start µs, last, high, low, volume, turnover]."""
    points: list[list[int]] = []
    for t in trades:
        b = t["ts"] // BUCKET_US * BUCKET_US
        if points and points[-1][0] == b:
            p = points[-1]
            p[1:] = [t["price"], max(p[2], t["price"]), min(p[3], t["price"]),
                     p[4] + t["qty"], p[5] + t["price"] * t["qty"]]
        else:
            points.append([b, t["price"], t["price"], t["price"], t["qty"],
                           t["price"] * t["qty"]])
    return points


def apply_points(points: list, new: list) -> None:
    """The page's handling of an update's points (``market.js``): the last second's point
    replaced, a later one appended."""
    for p in new:
        if points and points[-1][0] == p[0]:
            points[-1] = p
        else:
            points.append(p)


def assert_figures(view: MarketView, desk: Desk, c: int, day: int) -> None:
    state = view.state(c)
    want = figures(desk.of(c, day))
    assert {k: state[k] for k in want} == want
    assert state["vwap"] == (vwap(want["turnover"], want["volume"]) if want["volume"]
                             else None)
    if c % 2 == Segment.LISTED:
        assert state["close_so_far"] == closing_price(want["turnover"], want["volume"], PRIOR)
    else:
        assert "close_so_far" not in state


def test_figures_tape_and_chart_match_the_trades():
    rng = random.Random(7)
    desk = Desk()
    view = MarketView(desk.ex)
    assert view.poll() == []
    handed = {0: 0, 1: 0}  # per channel: the trades the polls so far covered
    points = {0: [], 1: []}  # the chart as a page that applied every update keeps it
    ts = T0
    day = T0 // DAY_US
    for k in range(160):
        ts += rng.randint(50_000, 700_000)  # several turns a second, some seconds without
        desk.sweep(ts, rng, block=k % 9 == 4)
        if rng.random() < 0.4 or k == 159:
            updates = {u["c"]: u for u in view.poll()}
            for c in (0, 1):
                new = desk.of(c)[handed[c]:]
                handed[c] += len(new)
                if c not in updates:
                    assert new == []
                    continue
                u = updates[c]
                # the trades since the last poll, newest last, at most a tape's worth
                assert u["trades"] == new[-TAPE:]
                apply_points(points[c], u["points"])
                assert {k: v for k, v in u.items() if k not in ("trades", "points")} == \
                    view.state(c)
                assert_figures(view, desk, c, day)
    assert view.poll() == []  # nothing new: no channel changed
    for c in (0, 1):
        trades = desk.of(c)
        assert len(trades) > (TAPE if c == 0 else 10)
        full = view.full(c)
        assert full["trades"] == trades[-TAPE:]
        assert full["points"] == chart(trades) == points[c]
        assert full["missed"] == 0 and full["summary"] is None
        assert full["status"] == "OPEN" and full["instrument"] == "CEA"
        assert full["segment"] == Segment(c).name
        assert full["bands"] == {"listed": [5400, 6600], "block": [4200, 7800]}
    assert desk.ex.md.seq(0) == view.channels[0].read


def test_every_trade_once_when_polled_often():
    """Polled after every turn (as the server's 0.2 s loop does under light load): the
    polls hand every trade exactly once, in order."""
    rng = random.Random(3)
    desk = Desk()
    view = MarketView(desk.ex)
    got = {0: [], 1: []}
    ts = T0
    for k in range(40):
        ts += rng.randint(1_000, 1_500_000)
        desk.sweep(ts, rng, block=k % 4 == 0)
        for u in view.poll():
            got[u["c"]] += u["trades"]
    assert got == {0: desk.of(0), 1: desk.of(1)}
    assert all(view.full(c)["points"] == chart(desk.of(c)) for c in (0, 1))


def test_one_poll_hands_at_most_a_tape():
    desk = Desk()
    view = MarketView(desk.ex)
    rng = random.Random(11)
    for k in range(40):  # over TAPE trades, one poll
        desk.sweep(T0 + k * 10_000, rng)
    (u,) = view.poll()
    trades = desk.of(0)
    assert len(trades) > TAPE
    assert u["trades"] == trades[-TAPE:]
    assert u["points"] == chart(trades)  # the chart folds all of them
    assert u["volume"] == sum(t["qty"] for t in trades)


def test_a_new_day_starts_a_new_tape_and_chart():
    rng = random.Random(5)
    desk = Desk()
    view = MarketView(desk.ex)
    day1, day2 = T0 // DAY_US, NEXT // DAY_US
    for k in range(12):
        desk.sweep(T0 + k * 400_000, rng, block=k in (3, 8))
    view.poll()
    before = view.state(0)
    assert before["volume"] > 0 and view.state(1)["volume"] > 0
    desk.turn(CLOSE, system=[(SYSTEM, Tick(CLOSE))])  # 15:00: the day closes
    (row,) = desk.days
    updates = {u["c"]: u for u in view.poll()}
    assert sorted(updates) == [0, 1]
    for c in (0, 1):
        u = updates[c]
        day_trades = desk.of(c, day1)
        assert u["summary"] == {
            "date": "2024-03-04", "prior_close": PRIOR, "close": before["close_so_far"],
            "volume": sum(t["qty"] for t in day_trades),
            "turnover": sum(t["price"] * t["qty"] for t in day_trades)}
        assert u["trades"] == [] and u["status"] == "CLOSED"
        assert {k: u[k] for k in ("last", "open", "high", "low", "volume", "turnover")} == \
            figures([])
    assert row[B.DAY_CLOSE] == before["close_so_far"]

    # the next day: its first trades start a new tape and chart; the summary stays
    desk.turn(NEXT, system=[(SYSTEM, Tick(NEXT))])
    for k in range(6):
        desk.sweep(NEXT + k * 300_000, rng, block=k == 2)
    updates = {u["c"]: u for u in view.poll()}
    for c in (0, 1):
        today = desk.of(c, day2)
        full = view.full(c)
        assert today and full["trades"] == today and updates[c]["trades"] == today
        assert full["points"] == chart(today)
        assert all(p[0] // DAY_US == day2 for p in full["points"])
        assert full["summary"]["date"] == "2024-03-04"
        assert full["prior_close"] == row[B.DAY_CLOSE]  # the band's new reference
        assert_figures(view, desk, c, day2)


def test_one_poll_across_the_close_shows_the_new_day_only():
    rng = random.Random(9)
    desk = Desk()
    view = MarketView(desk.ex)
    for k in range(5):
        desk.sweep(T0 + k * 200_000, rng)
    desk.turn(CLOSE, system=[(SYSTEM, Tick(CLOSE))])
    desk.turn(NEXT, system=[(SYSTEM, Tick(NEXT))])
    for k in range(3):
        desk.sweep(NEXT + k * 200_000, rng)
    (u, block) = view.poll()
    today = desk.of(0, NEXT // DAY_US)
    assert u["trades"] == today == view.full(0)["trades"]
    assert u["points"] == chart(today) == view.full(0)["points"]
    assert u["summary"]["date"] == "2024-03-04" and block["summary"]["volume"] == 0
    assert_figures(view, desk, 0, NEXT // DAY_US)


def test_a_reader_behind_the_ring_counts_what_it_missed():
    ring = 16
    rng = random.Random(13)
    desk = Desk(ring=ring)
    view = MarketView(desk.ex)
    md = desk.ex.md
    day = T0 // DAY_US
    desk.sweep(T0, rng)
    view.poll()
    assert view.state(0)["missed"] == 0
    read = view.channels[0].read
    ts = T0
    for k in range(30):  # far more than a ring's frames of channel 0 in one poll
        ts += 30_000
        desk.sweep(ts, rng)
    seq = md.seq(0)
    assert seq - read > ring
    (u,) = view.poll()
    assert u["missed"] == seq - ring - read == view.channels[0].missed
    trades = desk.of(0)
    # what it still found: the last trades, in order, no more than the ring held
    assert 0 < len(u["trades"]) < ring and u["trades"] == trades[-len(u["trades"]):]
    assert_figures(view, desk, 0, day)  # the figures are the stage's own: exact
    assert view.full(0)["trades"][-len(u["trades"]):] == u["trades"]
    # caught up again: nothing more is missed
    desk.sweep(ts + 10_000, rng)
    (u,) = view.poll()
    assert u["missed"] == seq - ring - read
    assert u["trades"] == desk.of(0)[len(trades):]
    assert_figures(view, desk, 0, day)


def test_replaced_rings_are_followed():
    """``resize_ring`` drops the frames kept so far: a reader goes on in the new rings from
    where it was, counting those it had not read as missed."""
    rng = random.Random(17)
    desk = Desk(ring=16)
    view = MarketView(desk.ex)
    read = view.channels[0].read
    desk.sweep(T0, rng)
    dropped, before = desk.ex.md.seq(0) - read, len(desk.of(0))
    desk.ex.md.resize_ring(64)
    desk.sweep(T0 + 1_000_000, rng)
    (u,) = view.poll()
    assert u["missed"] == dropped > 0
    assert u["trades"] == desk.of(0)[before:] != []
    assert_figures(view, desk, 0, T0 // DAY_US)


@pytest.mark.parametrize("c", [0, 1])
def test_levels_are_the_books(c):
    desk = Desk()
    view = MarketView(desk.ex)
    lot = BLOCK_MIN_QTY if c else 1
    desk.turn(T0, [("B", [desk.order("B", BUY, lot + 5, 5990), desk.order("B", BUY, lot, 5990),
                          desk.order("B", BUY, lot + 7, 5980)]),
                   ("S", [desk.order("S", SELL, lot + 3, 6020)])])
    (u,) = view.poll()
    assert u["c"] == c and u["trades"] == [] and u["last"] is None
    assert u["bids"] == [[5990, 2 * lot + 5, 2], [5980, lot + 7, 1]]
    assert u["asks"] == [[6020, lot + 3, 1]]
