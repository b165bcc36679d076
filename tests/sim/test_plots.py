"""What the plots show, checked on the figures' Axes (not on pixels): the close plot's scale
follows the listed band (not the block band), the surrender deadlines are marked, the real
close is drawn only over the dates the run overlaps; intraday quotes are step lines broken
at the lunch break on an HH:MM axis; days without data are not drawn as zero volume; the
load test's axes carry plain numbers and its titles the run's settings; the depth title
gives the time to the second. Small synthetic inputs and one 2-day simulation."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import matplotlib.dates as mdates
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle

from engine import batch as B
from engine.codes import Segment
from engine.rules import AM_CLOSE_US, AM_OPEN_US, DAY_CLOSE_US, DAY_US, PM_OPEN_US
from engine.tradingdays import TradingCalendar, date_of_day, day_of_date
from sim import plots as P
from sim.replay import ReplayedDay
from sim.simulate import DayRow, Population, SimConfig, simulate

SMALL = Population(covered_entities=40, market_makers=2, noise_traders=10, institutions=2,
                   individuals=5, block_traders=2)


def trading_dates(start: str, n: int) -> list[str]:
    cal = TradingCalendar.xshg(weekdays_beyond=True)
    day, out = day_of_date(dt.date.fromisoformat(start)), []
    while len(out) < n:
        if cal.is_trading_day(day):
            out.append(date_of_day(day).isoformat())
        day += 1
    return out


def day_row(date: str, prior: int, close: int) -> DayRow:
    """A day with the engine's bands around ``prior`` (±10 % listed, ±30 % block)."""
    return DayRow(date=date, prior_close=prior, close=close, listed_low=prior * 90 // 100,
                  listed_high=prior * 110 // 100, block_low=prior * 70 // 100,
                  block_high=prior * 130 // 100, listed_volume=1_000, block_volume=100_000,
                  listed_turnover=close * 1_000, block_turnover=close * 100_000,
                  high=close + 5, low=close - 5, mean_spread=2)


def fake_result(start: str, n: int, deadline: str = "2030-12-31", prior: int = 7000):
    dates = trading_dates(start, n)
    rows, close = [], prior
    for i, d in enumerate(dates):
        new = close + (15 if i % 3 else -10)
        rows.append(day_row(d, close, new))
        close = new
    return SimpleNamespace(days=rows, config=SimConfig(start=start, days=n, deadline=deadline),
                           compliance=[], samples=np.zeros((0, 4), np.int64),
                           trades=np.zeros((0, B.EVENT_WIDTH), np.int64), depth={})


def labelled(ax, label: str) -> list:
    return [line for line in ax.get_lines() if line.get_label() == label]


def tick_texts(fig) -> list[str]:
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    return [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]


# ---------------------------------------------------------------------- close.png

def test_close_scale_follows_the_listed_band_not_the_block_band():
    r = fake_result("2025-03-03", 30)  # after the real series: nothing real to draw
    ax = P.close_figure(r).axes[0]
    lo, hi = ax.get_ylim()
    band_lo = min(d.listed_low for d in r.days) / 100
    band_hi = max(d.listed_high for d in r.days) / 100
    margin = 0.1 * (band_hi - band_lo)
    assert band_lo - margin <= lo <= band_lo and band_hi <= hi <= band_hi + margin
    assert lo > max(d.block_low for d in r.days) / 100  # the block band is off this scale
    assert hi < min(d.block_high for d in r.days) / 100
    assert any("block band" in t and "off scale" in t for t in ax.get_legend_handles_labels()[1])
    assert not labelled(ax, "real SEEE close")
    assert not labelled(ax, "surrender deadline")  # 2030: not in the run


def test_close_marks_the_deadlines_in_the_run_and_the_rolled_ones():
    r = fake_result("2024-12-02", 30, deadline="2024-12-31")  # through mid-January 2025
    ax = P.close_figure(r, history=[]).axes[0]
    lines = labelled(ax, "surrender deadline")
    assert len(lines) == 1 and lines[0].get_xdata()[0] == dt.date(2024, 12, 31)
    assert [t.get_text() for t in ax.texts] == ["deadline 2024-12-31"]
    # the simulator rolls the deadline a year forward after each one it passes
    cfg = SimConfig(deadline="2024-12-31")
    assert P.run_deadlines(cfg, dt.date(2024, 6, 3), dt.date(2026, 1, 6)) == [
        dt.date(2024, 12, 31), dt.date(2025, 12, 31)]
    # a deadline just after the last day (the run stops before it) is still marked
    assert P.run_deadlines(cfg, dt.date(2024, 12, 2), dt.date(2024, 12, 27)) == [
        dt.date(2024, 12, 31)]
    assert P.run_deadlines(cfg, dt.date(2024, 3, 1), dt.date(2024, 6, 28)) == []


def test_close_draws_the_real_series_only_over_the_overlapping_dates():
    r = fake_result("2021-12-27", 8, prior=5000)  # 2021-12-27 .. 2022-01-06; data to 12-31
    ax = P.close_figure(r).axes[0]
    real = labelled(ax, "real SEEE close")
    assert len(real) == 1
    days = list(real[0].get_xdata())
    assert days[0] == dt.date(2021, 12, 27) and days[-1] == dt.date(2021, 12, 31)
    assert all(dt.date(2021, 12, 27) <= d <= dt.date(2021, 12, 31) for d in days)
    # the real close (42-57 CNY those days) is inside the scale
    lo, hi = ax.get_ylim()
    assert all(lo <= y <= hi for y in real[0].get_ydata())
    assert labelled(P.close_figure(r, history=[]).axes[0], "real SEEE close") == []


# ---------------------------------------------------------------------- intraday.png

def day_samples(date: str, price: int = 7000) -> np.ndarray:
    day = day_of_date(dt.date.fromisoformat(date))
    times = np.concatenate([np.arange(AM_OPEN_US, AM_CLOSE_US, 600_000_000),
                            np.arange(PM_OPEN_US, DAY_CLOSE_US, 600_000_000)])
    bids = price - (np.arange(len(times)) % 3)
    return np.stack([day * DAY_US + times, bids, bids + 4, bids + 2], axis=1).astype(np.int64)


def test_intraday_quotes_are_steps_broken_at_lunch_on_an_hhmm_axis():
    date = "2024-03-04"
    samples = day_samples(date)
    samples[2, 1] = 0  # no bid at that step: a hole, not a price of 0
    trades = np.zeros((2, B.EVENT_WIDTH), np.int64)
    trades[:, B.TS] = samples[[1, -1], 0]
    trades[:, B.PRICE] = [7001, 6999]
    trades[:, B.SEGMENT] = Segment.LISTED
    r = SimpleNamespace(samples=samples, trades=trades, config=SimConfig(steps_per_hour=6))

    xs, ys = P.quote_steps(samples, 1)
    gap = np.flatnonzero(np.isnan(ys) & (xs == 120))
    assert len(gap) == 1  # the break: the line stops at 11:30 and starts again at 13:00
    g = gap[0]
    assert xs[g - 1] == 120 and ys[g - 1] == ys[g - 2]  # the morning's quote holds to 11:30
    assert xs[g + 1] == 120 and not np.isnan(ys[g + 1])  # 13:00, the lunch break left out
    assert xs[-1] == 240 and ys[-1] == ys[-2]  # held until 15:00
    assert list(xs[:3]) == [0, 10, 20] and np.isnan(ys[2])  # the missing bid: a hole

    fig = P.intraday_figure(r, date)
    ax = fig.axes[0]
    quotes = [line for line in ax.get_lines() if line.get_label().startswith("best ")]
    assert len(quotes) == 2
    for line in quotes:
        assert line.get_drawstyle() == "steps-post"
        assert np.isnan(np.asarray(line.get_ydata(), float)).any()
    offsets = ax.collections[0].get_offsets()  # the trades, as points
    assert list(offsets[:, 1]) == [70.01, 69.99]
    assert "decision" in ax.get_legend().get_title().get_text()
    labels = [t for t in tick_texts(fig) if ":" in t]
    assert labels[:3] == ["09:30", "10:00", "10:30"] and "11:30|13:00" in labels
    assert labels[-1] == "15:00"


def test_depth_title_gives_the_time_to_the_second():
    lv = SimpleNamespace
    depth = {"time": day_of_date(dt.date(2024, 3, 4)) * DAY_US + 14 * 3_600_000_000,
             "bids": [lv(price=7000, qty=5_000), lv(price=6990, qty=2_000)],
             "asks": [lv(price=7010, qty=1_000)]}
    ax = P.depth_figure(depth).axes[0]
    title = ax.get_title()
    assert "2024-03-04 14:00:00" in title and ".000000" not in title
    assert "best bid 70.00" in title and "best offer 70.10" in title
    bids = labelled(ax, "bids (cumulative)")[0]
    # from the best bid down to the next level the depth is the best level's quantity
    assert bids.get_drawstyle() == "steps-post" and list(bids.get_ydata()) == [5.0, 7.0]


# ---------------------------------------------------------------------- volume.png

def replayed(date: str, listed: int, block: int = 0, gap: bool = False,
             feasible: bool = True) -> ReplayedDay:
    none = dict.fromkeys(("hist_open", "replayed_open", "hist_high", "replayed_high",
                          "hist_low", "replayed_low"))
    return ReplayedDay(date=date, basis="listed", gap_before=gap, prior_close=5000,
                       feasible=feasible, reason="", **none, hist_close=5000,
                       target_close=5000, replayed_close=5000, close_error_ticks=0,
                       hist_listed_volume=listed,
                       replayed_listed_volume=listed if feasible else 0,
                       hist_block_volume=block, replayed_block_volume=block if feasible else 0)


def bar_rects(ax) -> list:
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_label() != "no data"]


def test_replay_volume_leaves_days_without_data_out():
    a = trading_dates("2022-03-01", 10)
    b = trading_dates("2022-06-01", 10)
    rows = [replayed(d, 10_000, gap=(i == 0)) for i, d in enumerate(a)] + \
        [replayed(d, 20_000 if d != b[3] else 0, gap=(i == 0)) for i, d in enumerate(b)]
    fig = P.replay_volume_figure(rows)
    ax = fig.axes[0]
    assert P.volume_period(dt.date(2022, 3, 1), dt.date(2022, 6, 14)) == "day"
    rects = bar_rects(ax)
    starts = sorted({round(p.get_x() + p.get_width() / 2, 3) for p in rects})
    days = [mdates.num2date(x).date() for x in starts]
    assert days == sorted(dt.date.fromisoformat(r.date) for r in rows)  # no bar between
    assert all(p.get_width() >= 0.5 for p in rects)  # a bar wide enough to see
    # a day with volume 0 is a bar of height 0 (data), the gap is hatched as "no data"
    hatched = [p for p in ax.patches if p.get_label() == "no data"]
    assert len(hatched) == 1
    x0 = mdates.num2date(hatched[0].get_x()).date()
    assert dt.date.fromisoformat(a[-1]) < x0 <= dt.date.fromisoformat(b[0])


def test_long_series_volume_is_weekly_and_skips_the_gap():
    a = trading_dates("2021-07-16", 110)
    b = trading_dates("2022-05-26", 250)
    rows = [replayed(d, 10_000, gap=(i == 0)) for i, d in enumerate(a)] + \
        [replayed(d, 10_000, 100_000, gap=(i == 0), feasible=(i != 5))
         for i, d in enumerate(b)]
    ax = P.replay_volume_figure(rows).axes[0]
    assert ax.get_ylabel() == "thousand t per week" and "per week" in ax.get_title()
    rects = bar_rects(ax)
    assert all(p.get_width() >= 5 for p in rects)  # days (the date axis' unit)
    last_a, first_b = dt.date.fromisoformat(a[-1]), dt.date.fromisoformat(b[0])
    for p in rects:
        start = mdates.num2date(p.get_x()).date()
        assert not (last_a < start and start + dt.timedelta(days=6) < first_b)
    # the week of 2021-07-12 holds only 07-16: 10,000 t
    first = min(rects, key=lambda p: p.get_x())
    assert mdates.num2date(first.get_x()).date() == dt.date(2021, 7, 12)
    assert first.get_height() == pytest.approx(10.0)
    assert labelled(ax, "infeasible day (not replayed)")


# ---------------------------------------------------------------------- load test

def run(rate: int, values) -> dict:
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(1, 60_000_000, 3)
    for v in values:
        h.record_value(int(v))
    ack = {"p50_us": h.get_value_at_percentile(50), "p99_us": h.get_value_at_percentile(99),
           "max_us": h.get_max_value(), "count": h.get_total_count()}
    return {"offered_per_s": rate, "seconds": 2.0, "sessions": 4, "processes": 1,
            "acked": len(values), "ack": ack, "_ack_hist": h}


def test_loadtest_plots_plain_numbers_and_the_settings_in_the_titles(tmp_path):
    rng = np.random.default_rng(1)
    runs = [run(2_000, rng.lognormal(6, 1.2, 4_000) + 100),
            run(5_000, rng.lognormal(7, 1.5, 10_000) + 150)]
    for fig in (P.latency_figure(runs, fsync=True, pairs=2),
                P.sweep_figure(runs, 1_000, fsync=True, pairs=2)):
        texts = tick_texts(fig)
        assert texts and not any("10^" in t or "×10" in t or "$" in t for t in texts), texts
        assert any("," in t for t in texts)  # e.g. "1,000"
        title = fig.axes[0].get_title()
        assert "fsync on" in title and "2 session pairs" in title
    # without the caller's figures, pairs come from the runs and fsync is left out
    assert P.loadtest_subtitle(runs).startswith("2 session pairs")

    from sim.loadtest import write_report

    out = tmp_path / "lt"
    report = write_report(runs, out, 1_000, fsync=False, pairs=2)
    assert [r["offered_per_s"] for r in json.loads((out / "loadtest.json").read_text())[
        "runs"]] == [2_000, 5_000] and report["p99_bound_us"] == 1_000
    for name in ("latency.png", "sweep.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------- a real run

def test_a_small_simulation_writes_every_plot(tmp_path):
    cfg = SimConfig(days=2, start="2024-12-30", deadline="2024-12-31", ledger=False,
                    population=SMALL)
    r = simulate(cfg)
    paths = P.plot_simulation(r, tmp_path, r.days[1].date)
    assert [p.name for p in paths] == ["close.png", "volume.png", "intraday.png", "depth.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    ax = P.close_figure(r).axes[0]
    assert labelled(ax, "surrender deadline") and labelled(ax, "real SEEE close")
    lines = [line for line in P.intraday_figure(r, r.days[1].date).axes[0].get_lines()
             if line.get_label().startswith("best ")]
    assert lines and all(np.isnan(np.asarray(line.get_ydata(), float)).any()
                         for line in lines)
