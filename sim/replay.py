"""``cea replay``: the historical daily price path through the real engine.

For every day of the history, a plan of trades reproduces the day under the engine's rules,
and two agents carry it out as order flow (a maker rests a sell limit order, a taker lifts it
with a buy IOC); the engine does the matching, the bands, the sessions and the closing price.

Listed segment, per day (prices in fen, prior close P: the previous day's published close, or
after a gap, the day's own open):

- the first trade is at the open, one trade each at the high and the low, then the rest of the
  listed volume at two adjacent prices chosen so that the listed turnover equals the
  published one exactly; the engine's close (VWAP rounded half up) is then the published
  close in the listed era, and the listed VWAP in the composite era (from 2023-08-28, where
  the published close is a composite across vintages and cannot come from listed trades);
- a day is **infeasible** (flagged, not faked) when a published price lies outside the ±10 %
  band around P, when the published figures contradict each other (a close outside
  [low, high]), or when the volume is too small for the required trades.

Block segment: the block volume in trades of at least 100,000 t from 13:00, at the block
VWAP (rounded to the tick, within the ±30 % band); a block volume under 100,000 t cannot be
traded in that segment and makes the day infeasible.

>>> from sim.history import load_history
>>> days = [d for d in load_history() if "2021-07-19" <= d.date <= "2021-07-23"]
>>> result = replay(days)
>>> [(r.date, r.replayed_close, r.target_close, r.replayed_listed_volume) for r in result.rows][:2]
[('2021-07-19', 5230, 5230, 130800), ('2021-07-20', 5328, 5328, 162000)]
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.units import format_fen
from engine import ClockTick, Engine, NewOrder, Side, TimeInForce
from engine.codes import Segment
from engine.messages import DayClosed, TradeExecuted
from engine.rules import (
    AM_OPEN_US, BLOCK_MIN_QTY, DAY_CLOSE_US, DAY_US, LISTED_MAX_QTY, PM_OPEN_US, band_limits,
    in_band, vwap,
)
from engine.tradingdays import day_of_date

from .history import HistoryDay

MAKER, TAKER = "MAKER", "TAKER"
_SECOND = 1_000_000


@dataclass(frozen=True)
class DayPlan:
    prior_close: int
    listed: list[tuple[int, int]]  # (price fen, tonnes), in the order they trade
    block: list[tuple[int, int]]
    feasible: bool
    reason: str = ""


def plan_day(day: HistoryDay, prior_close: int) -> DayPlan:
    """The trades that reproduce ``day`` from ``prior_close``, or why none can."""
    lo, hi = band_limits(prior_close, Segment.LISTED)
    volume, turnover = day.listed_volume, day.listed_turnover
    if volume <= 0:
        return DayPlan(prior_close, [], [], False, "no listed volume")
    target = vwap(turnover, volume)
    o, h, l = day.open, day.high, day.low  # noqa: E741
    if day.composite and not (l is not None and h is not None and l <= target <= h):
        # composite-era prices are not listed prices: reproduce the listed VWAP and volumes
        o = h = l = None  # noqa: E741
    published = [p for p in (h, l) if p is not None]
    # prices the bulletin does not give are free to lie anywhere in the band
    h = h if h is not None else hi
    l = l if l is not None else lo  # noqa: E741
    o = o if o is not None else min(max(target, l), h)
    for name, price in (("open", o), ("high", h), ("low", l), ("close", target)):
        if not in_band(price, lo, hi):
            return DayPlan(prior_close, [], [], False,
                           f"{name} {price / 100:.2f} outside the band "
                           f"{lo / 100:.2f}..{hi / 100:.2f} around {prior_close / 100:.2f}")
    if not (l <= o <= h and l <= target <= h):
        return DayPlan(prior_close, [], [], False,
                       f"published figures contradict: open {o / 100:.2f}, listed VWAP "
                       f"{target / 100:.2f} not within low {l / 100:.2f} .. high {h / 100:.2f}")
    required = list(dict.fromkeys([o] + published))  # the open first, then high and low
    rest = volume - len(required)
    if rest < 0:
        return DayPlan(prior_close, [], [], False,
                       f"{volume} t cannot make trades at {len(required)} prices")
    rest_turnover = turnover - sum(required)
    if rest == 0 and rest_turnover != 0 or rest and not l * rest <= rest_turnover <= h * rest:
        return DayPlan(prior_close, [], [], False,
                       "the listed turnover cannot be reached within low .. high")
    listed = [(p, 1) for p in required]
    if rest:
        base, up = divmod(rest_turnover, rest)  # `up` tonnes one tick above `base`
        for price, qty in ((base + 1, up), (base, rest - up)):
            while qty:  # listed orders stay under the block segment's 100,000 t
                listed.append((price, min(qty, LISTED_MAX_QTY)))
                qty -= listed[-1][1]
    block: list[tuple[int, int]] = []
    if day.block_volume:
        if day.block_volume < BLOCK_MIN_QTY:
            return DayPlan(prior_close, listed, [], False,
                           f"block volume {day.block_volume} t is under the block minimum")
        blo, bhi = band_limits(prior_close, Segment.BLOCK)
        price = min(max(vwap(day.block_turnover, day.block_volume), blo), bhi)
        n = day.block_volume // BLOCK_MIN_QTY
        size, extra = divmod(day.block_volume, n)
        block = [(price, size + (1 if i < extra else 0)) for i in range(n)]
    return DayPlan(prior_close, listed, block, True)


def commands_for(day: HistoryDay, plan: DayPlan) -> list:
    """The agents' orders carrying out ``plan``: a resting sell, then a buy IOC taking it."""
    start = day_of_date(dt.date.fromisoformat(day.date)) * DAY_US
    cmds = []
    for segment_start, trades, tag in ((AM_OPEN_US, plan.listed, "l"),
                                       (PM_OPEN_US, plan.block, "b")):
        for i, (price, qty) in enumerate(trades):
            t = start + segment_start + i * _SECOND
            cmds.append(NewOrder(t, MAKER, f"{day.date}-{tag}{i}-s", Side.SELL, qty, price))
            cmds.append(NewOrder(t, TAKER, f"{day.date}-{tag}{i}-b", Side.BUY, qty, price,
                                 tif=TimeInForce.IOC))
    cmds.append(ClockTick(start + DAY_CLOSE_US))
    return cmds


@dataclass
class ReplayedDay:
    date: str
    basis: str  # listed or composite
    gap_before: bool
    prior_close: int
    feasible: bool
    reason: str
    hist_open: int | None
    replayed_open: int | None
    hist_high: int | None
    replayed_high: int | None
    hist_low: int | None
    replayed_low: int | None
    hist_close: int
    target_close: int  # the published close; the listed VWAP in the composite era
    replayed_close: int
    close_error_ticks: int
    hist_listed_volume: int
    replayed_listed_volume: int
    hist_block_volume: int
    replayed_block_volume: int


@dataclass
class ReplayResult:
    rows: list[ReplayedDay]
    seconds: float

    def summary(self) -> dict:
        feasible = [r for r in self.rows if r.feasible]

        def exact(r):
            return all(h is None or h == x for h, x in ((r.hist_open, r.replayed_open),
                                                        (r.hist_high, r.replayed_high),
                                                        (r.hist_low, r.replayed_low)))
        within = [r for r in feasible if abs(r.close_error_ticks) <= 1 and
                  (r.basis == "composite" or exact(r))]
        sq = [(r.replayed_close - r.target_close) ** 2 for r in feasible]
        return {
            "days": len(self.rows),
            "feasible_days": len(feasible),
            "within_one_tick": len(within),
            "volumes_exact": sum(r.replayed_listed_volume == r.hist_listed_volume and
                                 r.replayed_block_volume == r.hist_block_volume
                                 for r in feasible),
            "rmse_close": round(math.sqrt(sum(sq) / len(sq)) / 100, 4) if sq else None,
            "composite_days": sum(r.basis == "composite" for r in self.rows),
            "days_after_gap": sum(r.gap_before for r in self.rows),
            "infeasible": {r.date: r.reason for r in self.rows if not r.feasible},
            "seconds": round(self.seconds, 3),
        }


def replay(days: list[HistoryDay], progress=None) -> ReplayResult:
    """Run every day of ``days`` through one engine, in order."""
    t0 = time.perf_counter()
    first = days[0]
    engine = Engine({"CEA": first.open or first.close})
    rows: list[ReplayedDay] = []
    previous: HistoryDay | None = None
    for day in days:
        # a day after a gap (or the first) has no known prior close: its own open stands in
        prior = (day.open or day.close) if day.gap_before or previous is None else previous.close
        engine.set_prior_close("CEA", prior)  # between days; the engine's bands follow
        plan = plan_day(day, prior)
        events = engine.submit_many(commands_for(day, plan) if plan.feasible else
                                    commands_for(day, DayPlan(prior, [], [], False)))
        rows.append(_result(day, plan, events))
        previous = day
        if progress is not None:
            progress(day)
    return ReplayResult(rows, time.perf_counter() - t0)


def _result(day: HistoryDay, plan: DayPlan, events) -> ReplayedDay:
    listed = [e for e in events if isinstance(e, TradeExecuted) and e.segment == Segment.LISTED]
    block = [e for e in events if isinstance(e, TradeExecuted) and e.segment == Segment.BLOCK]
    closed = [e for e in events if isinstance(e, DayClosed)][-1]
    prices = [e.price for e in listed]
    target = vwap(day.listed_turnover, day.listed_volume) if day.composite else day.close
    return ReplayedDay(
        day.date, "composite" if day.composite else "listed", day.gap_before, plan.prior_close,
        plan.feasible, plan.reason, day.open, prices[0] if prices else None, day.high,
        max(prices, default=None), day.low, min(prices, default=None), day.close, target,
        closed.close, closed.close - target, day.listed_volume, sum(e.qty for e in listed),
        day.block_volume, sum(e.qty for e in block))


#: ``days.csv``'s columns: ``ReplayedDay``'s fields, in order.
DAY_COLUMNS = tuple(ReplayedDay.__dataclass_fields__)


def write_outputs(result: ReplayResult, out: Path) -> dict:
    """``days.csv`` (history against the replay, per day) and ``summary.json``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "days.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(DAY_COLUMNS)
        for r in result.rows:
            w.writerow([_cell(name, v) for name, v in asdict(r).items()])
    summary = result.summary()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def price_column(name: str) -> bool:
    """Whether ``days.csv``'s column ``name`` is a price (CNY/t in the file, fen inside)."""
    return name.startswith(("hist_", "replayed_", "target_", "prior_")) and "volume" not in name


def _cell(name: str, value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if price_column(name):
        return format_fen(value)
    return value
