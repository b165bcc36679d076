"""PNG plots (matplotlib, headless) of a replay, of a simulation and of a load test.

Each plot is built by a ``*_figure`` function that returns the ``matplotlib.figure.Figure``
(one Axes, ``fig.axes[0]``) without writing it, so what a plot shows can be checked without
looking at pixels; ``plot_replay``, ``plot_simulation`` and ``plot_loadtest`` write them.
Money is integer fen in the data and CNY with 2 decimals on the axes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

#: Compliance deadlines (docs/rules.md §12): 100 % surrender due.
DEADLINES = ("2021-12-31", "2023-12-31", "2024-12-31")

DPI = 110
_DAY = dt.timedelta(days=1)
#: a deadline this close after the last day is still marked (the run ends just before it)
_DEADLINE_AFTER = dt.timedelta(days=7)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    return plt


def _figure(width: float, height: float):
    """A figure with one Axes, not registered with pyplot (nothing to close, no GUI)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def _write(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _finish(fig, ax, title: str, legend: str = "best", subtitle: str = "") -> None:
    """Title (a second, smaller line for ``subtitle``), legend and layout. ``legend``:
    a matplotlib location inside the Axes, or ``outside`` (right of the Axes, never over
    the data)."""
    # room above the Axes for the deadline labels
    pad = 14 if any(t.get_text().startswith("deadline") for t in ax.texts) else 6
    ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=11, pad=pad)
    handles, _ = ax.get_legend_handles_labels()
    if handles and legend != "none":
        if legend == "outside":
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                      borderaxespad=0.0)
        else:
            ax.legend(loc=legend, fontsize=8)
    fig.tight_layout()


def _cny_axis(axis) -> None:
    """Prices in CNY with 2 decimals."""
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    axis.set_major_formatter(StrMethodFormatter("{x:,.2f}"))
    # ticks on whole fen (steps of 1, 2 or 5 of a power of ten), never at 0.025 CNY
    axis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 5, 10], min_n_ticks=3))


def _plain_formatter():
    """Plain numbers (no offset, no ×10ⁿ), with as many decimals as the ticks need."""
    from matplotlib.ticker import ScalarFormatter

    f = ScalarFormatter(useOffset=False)
    f.set_scientific(False)
    return f


def _date_axis(ax) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _date_runs(dates: list[dt.date], starts_new) -> list[tuple[int, int]]:
    """(start, end) index ranges of consecutive data: a new run wherever ``starts_new(i)``."""
    cuts = [i for i in range(len(dates)) if i == 0 or starts_new(i)] + [len(dates)]
    return list(zip(cuts, cuts[1:]))


def _no_data(ax, gaps: list[tuple[dt.date, dt.date]]) -> None:
    """Shade the spans the series has no data for (not zero: nothing is known)."""
    for k, (a, b) in enumerate(gaps):
        ax.axvspan(a, b, facecolor="none", edgecolor="0.6", hatch="///", lw=0,
                   label="no data" if k == 0 else None)


def _deadline_lines(ax, deadlines: list[dt.date]) -> None:
    """A vertical line at each surrender deadline, labelled "deadline <date>" just above
    the Axes (never over the data)."""
    for k, day in enumerate(deadlines):
        ax.axvline(day, color="red", lw=0.9, ls=":",
                   label="surrender deadline" if k == 0 else None)
        ax.annotate(f"deadline {day.isoformat()}", xy=(day, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", color="red",
                    fontsize=7, annotation_clip=False)


def deadlines_in_range(deadlines, first: dt.date, last: dt.date) -> list[dt.date]:
    """The ``deadlines`` (dates or ``YYYY-MM-DD``) from ``first`` to a week after ``last``
    (a run that ends just before a deadline still shows it), sorted, without repeats."""
    days = sorted({d if isinstance(d, dt.date) else dt.date.fromisoformat(d)
                   for d in deadlines})
    return [d for d in days if first <= d <= last + _DEADLINE_AFTER]


def _moment(day) -> dt.datetime:
    return day if isinstance(day, dt.datetime) else dt.datetime.combine(day, dt.time())


def _set_date_limits(ax, first, last, marks=()) -> None:
    """x from ``first`` to ``last`` (dates or datetimes) and the ``marks``, padded."""
    left, right = min(map(_moment, [first, *marks])), max(map(_moment, [last, *marks]))
    pad = dt.timedelta(days=max((right - left).days * 0.01, 0.7))
    ax.set_xlim(left - pad, right + pad)


# ---------------------------------------------------------------------- volume bars

def _aggregate(dates, listed, block, period: str):
    """Volumes summed per ``period`` (day, week from Monday, month), over the days that have
    data; (bar start dates, bar widths in days, listed, block)."""
    if period == "day":
        return (list(dates), [0.8] * len(dates), list(listed), list(block))
    keys: dict[dt.date, list[int]] = {}
    for d, a, b in zip(dates, listed, block):
        key = d - dt.timedelta(days=d.weekday()) if period == "week" else d.replace(day=1)
        sums = keys.setdefault(key, [0, 0])
        sums[0] += a
        sums[1] += b
    starts = sorted(keys)
    if period == "week":
        widths = [7 * 0.8] * len(starts)
    else:
        widths = [0.8 * ((s.replace(day=28) + 4 * _DAY).replace(day=1) - s).days
                  for s in starts]
    return starts, widths, [keys[s][0] for s in starts], [keys[s][1] for s in starts]


def volume_period(first: dt.date, last: dt.date) -> str:
    """Bars per day while a day is a few pixels wide, else per week, or per month."""
    span = (last - first).days
    return "day" if span <= 400 else "week" if span <= 2000 else "month"


def _volume_axes(ax, dates, listed, block, gaps=(), deadlines=()) -> str:
    """Listed and block volume (million or thousand t), stacked, per day, or per week or
    month when there are many days; the spans without data hatched ("no data", not zero);
    the deadlines in the range marked. Returns the period of a bar."""
    period = volume_period(dates[0], dates[-1]) if dates else "day"
    starts, widths, lv, bv = _aggregate(dates, listed, block, period)
    top = max([a + b for a, b in zip(lv, bv)], default=0)
    scale, unit = (1e6, "million t") if top >= 1e6 else (1e3, "thousand t")
    lv = np.asarray(lv, dtype=float) / scale
    bv = np.asarray(bv, dtype=float) / scale
    align = "center" if period == "day" else "edge"
    ax.bar(starts, lv, width=widths, align=align, color="C0", label="listed", lw=0)
    ax.bar(starts, bv, width=widths, bottom=lv, align=align, color="C1", label="block", lw=0)
    _no_data(ax, list(gaps))
    if dates:
        marks = deadlines_in_range(deadlines, dates[0], dates[-1])
        _deadline_lines(ax, marks)
        # the bars' extent (a day's bar is centred on it, a week's or month's starts there)
        shift = [-w / 2 if period == "day" else 0.0 for w in widths]
        left = min(_moment(s) + dt.timedelta(days=d) for s, d in zip(starts, shift))
        right = max(_moment(s) + dt.timedelta(days=d + w)
                    for s, d, w in zip(starts, shift, widths))
        _set_date_limits(ax, left, right, marks)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"{unit} per {period}")
    ax.yaxis.set_major_formatter(_plain_formatter())
    _date_axis(ax)
    return period


# ---------------------------------------------------------------------- replay

def _replay_gaps(dates, rows) -> list[tuple[dt.date, dt.date]]:
    """The spans between two days of the series with trading days missing in between."""
    return [(dates[i - 1] + _DAY, dates[i] - _DAY) for i, r in enumerate(rows)
            if i and r.gap_before]


def replay_path_figure(rows):
    """Published close and the replay's close, the listed band, flagged days, the composite
    close era and the spans without data."""
    from engine.codes import Segment
    from engine.rules import band_limits

    dates = [dt.date.fromisoformat(r.date) for r in rows]
    fig, ax = _figure(12, 5)
    # the series has gaps (no data): draw each run of consecutive days on its own
    for k, (a, b) in enumerate(_date_runs(dates, lambda i: rows[i].gap_before)):
        d, seg = dates[a:b], rows[a:b]
        ax.plot(d, [r.hist_close / 100 for r in seg], lw=1.2, color="C0",
                label="published close" if k == 0 else None)
        ax.plot(d, [r.replayed_close / 100 for r in seg], lw=0.8, ls="--", color="C1",
                label="replayed close (engine VWAP)" if k == 0 else None)
        bands = [band_limits(r.prior_close, Segment.LISTED) for r in seg]
        ax.fill_between(d, [x[0] / 100 for x in bands], [x[1] / 100 for x in bands],
                        step="mid", alpha=0.12, color="C0", lw=0,
                        label="±10 % band around the prior close" if k == 0 else None)
    bad = [(d, r.hist_close / 100) for d, r in zip(dates, rows) if not r.feasible]
    if bad:
        ax.scatter(*zip(*bad), color="red", zorder=3, s=18, label="infeasible (flagged)")
    composite = [d for d, r in zip(dates, rows) if r.basis == "composite"]
    if composite:
        ax.axvspan(composite[0], composite[-1], color="grey", alpha=0.08, lw=0,
                   label="composite close era")
    _no_data(ax, _replay_gaps(dates, rows))
    if dates:
        _set_date_limits(ax, dates[0], dates[-1])
    ax.set_ylabel("CNY / t")
    _cny_axis(ax.yaxis)
    _date_axis(ax)
    span = f"{dates[0]} .. {dates[-1]}" if dates else ""
    _finish(fig, ax, "CEA daily close: history and replay", "outside", span)
    return fig


def replay_volume_figure(rows):
    """Replayed listed and block volume (per week over a long series), the compliance
    deadlines, the spans without data and the infeasible (not replayed) days."""
    dates = [dt.date.fromisoformat(r.date) for r in rows]
    fig, ax = _figure(12, 4.5)
    period = _volume_axes(ax, dates, [r.replayed_listed_volume for r in rows],
                          [r.replayed_block_volume for r in rows], _replay_gaps(dates, rows),
                          DEADLINES)
    bad = [d for d, r in zip(dates, rows) if not r.feasible]
    if bad:
        ax.plot(bad, [0] * len(bad), ls="none", marker="^", color="red", ms=6, clip_on=False,
                zorder=4, label="infeasible day (not replayed)")
    span = f"{dates[0]} .. {dates[-1]}" if dates else ""
    _finish(fig, ax, f"Replayed volume per {period}", "outside", span)
    return fig


def plot_replay(rows, out: Path) -> list[Path]:
    """``path.png`` (published close and the replay's close, band limits, flagged days) and
    ``volume.png`` (replayed listed and block volume, compliance deadlines)."""
    return [_write(replay_path_figure(rows), out / "path.png"),
            _write(replay_volume_figure(rows), out / "volume.png")]


# ---------------------------------------------------------------------- simulation

def plot_day_samples(r, date: str) -> tuple[np.ndarray, np.ndarray]:
    """(step samples, listed trades) of one day, for the intraday plot."""
    from engine import batch as B
    from engine.codes import Segment
    from engine.rules import DAY_US
    from engine.tradingdays import day_of_date

    day = day_of_date(dt.date.fromisoformat(date))
    s = r.samples[r.samples[:, 0] // DAY_US == day] if len(r.samples) else r.samples
    t = r.trades
    if len(t):
        t = t[(t[:, B.TS] // DAY_US == day) & (t[:, B.SEGMENT] == Segment.LISTED)]
    return s, t


def run_deadlines(config, first: dt.date, last: dt.date) -> list[dt.date]:
    """The surrender deadlines of a run from ``first`` to ``last``: the configured one and,
    as the simulator rolls it a year forward after each, the later ones the run reaches."""
    return rolled_deadlines(config.deadline, first, last)


def rolled_deadlines(deadline: str, first: dt.date, last: dt.date) -> list[dt.date]:
    """``deadline`` (``YYYY-MM-DD``) and the same date of each following year, as the
    simulator rolls it, from ``first`` to a week after ``last``."""
    day = dt.date.fromisoformat(deadline)
    out = []
    while day <= last + _DEADLINE_AFTER:
        out.append(day)
        day = day.replace(year=day.year + 1)
    return [d for d in out if d >= first]


def real_closes(first: dt.date, last: dt.date, history=None) -> list:
    """The days of the real daily series (``sim/data/cea_daily.csv``; or ``history``, a list
    of ``sim.history.HistoryDay``) from ``first`` to ``last``."""
    if history is None:
        from .history import DATA, HistoryError, load_history

        try:
            history = load_history(DATA)
        except HistoryError:
            return []
    return [h for h in history if first.isoformat() <= h.date <= last.isoformat()]


def close_figure(result, history=None):
    """Daily close with the listed high-low, the listed band and (off scale unless the real
    close reaches it) the block band; the surrender deadlines; the real SEEE close over the
    dates it overlaps the run. The y scale follows the closes and the listed band."""
    rows = result.days
    dates = [dt.date.fromisoformat(r.date) for r in rows]
    fig, ax = _figure(12, 5)
    real = real_closes(dates[0], dates[-1], history) if dates else []
    real_dates = [dt.date.fromisoformat(h.date) for h in real]
    values = [v for r in rows for v in (r.listed_low, r.listed_high, r.close)] + \
        [h.close for h in real]
    if not values:
        _finish(fig, ax, "Simulated daily close and bands (no days)")
        return fig
    lo, hi = min(values) / 100, max(values) / 100
    margin = max((hi - lo) * 0.05, 0.05)
    ylim = (lo - margin, hi + margin)

    # the block band's limits as lines: where they lie beyond the listed band's scale they
    # are off the plot (said in the legend), they never set the scale
    block_lo = [r.block_low / 100 for r in rows]
    block_hi = [r.block_high / 100 for r in rows]
    shown = any(ylim[0] < v < ylim[1] for v in block_lo + block_hi)
    label = "block band ±30 % (limits)" if shown else \
        f"block band ±30 % (off scale: {min(block_lo):.2f} .. {max(block_hi):.2f})"
    for k, edge in enumerate((block_lo, block_hi)):
        ax.plot(dates, edge, drawstyle="steps-mid", color="C2", lw=0.9, ls="--",
                label=label if k == 0 else None)
    ax.fill_between(dates, [r.listed_low / 100 for r in rows],
                    [r.listed_high / 100 for r in rows], step="mid", alpha=0.15, color="C0",
                    lw=0, label="listed band ±10 % around the prior close")
    ranged = [(d, r) for d, r in zip(dates, rows) if r.high is not None]
    if ranged:
        ax.vlines([d for d, _ in ranged], [r.low / 100 for _, r in ranged],
                  [r.high / 100 for _, r in ranged], color="grey", lw=0.8,
                  label="listed high-low")
    ax.plot(dates, [r.close / 100 for r in rows], color="C1", lw=1.4,
            label="simulated close (listed VWAP)")
    for k, (a, b) in enumerate(_date_runs(real_dates, lambda i: real[i].gap_before)):
        ax.plot(real_dates[a:b], [h.close / 100 for h in real[a:b]], color="k", lw=1.1,
                label="real SEEE close" if k == 0 else None)
    marks = run_deadlines(result.config, dates[0], dates[-1]) if dates else []
    _deadline_lines(ax, marks)
    if dates:
        _set_date_limits(ax, dates[0], dates[-1], marks)
    ax.set_ylim(*ylim)
    ax.set_ylabel("CNY / t")
    _cny_axis(ax.yaxis)
    _date_axis(ax)
    span = f"{dates[0]} .. {dates[-1]}, {len(rows)} trading days" if dates else ""
    _finish(fig, ax, "Simulated daily close and bands", "outside", span)
    return fig


def volume_figure(result):
    """Listed and block volume per day (per week over a long run), the surrender deadlines."""
    rows = result.days
    dates = [dt.date.fromisoformat(r.date) for r in rows]
    fig, ax = _figure(12, 4.5)
    marks = run_deadlines(result.config, dates[0], dates[-1]) if dates else []
    period = _volume_axes(ax, dates, [r.listed_volume for r in rows],
                          [r.block_volume for r in rows], (), marks)
    span = f"{dates[0]} .. {dates[-1]}" if dates else ""
    _finish(fig, ax, f"Simulated volume per {period}", "outside", span)
    return fig


def _session_minutes(tod_us):
    """Minutes of trading from 09:30, the lunch break (11:30-13:00) left out: 0..240."""
    from engine.rules import AM_CLOSE_US, AM_OPEN_US, PM_OPEN_US

    tod_us = np.asarray(tod_us, dtype=np.int64)
    lunch = PM_OPEN_US - AM_CLOSE_US
    return (tod_us - AM_OPEN_US - np.where(tod_us >= PM_OPEN_US, lunch, 0)) / 60e6


def _session_label(x: float, _pos=None) -> str:
    """HH:MM of a session minute; the break shows both ends."""
    minutes = int(round(x))
    if minutes == 120:
        return "11:30|13:00"
    minutes += 9 * 60 + 30 + (90 if minutes > 120 else 0)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def quote_steps(samples: np.ndarray, col: int) -> tuple[np.ndarray, np.ndarray]:
    """(x in session minutes, price in CNY) of one quote column of a day's samples, for a
    ``steps-post`` line: each sample holds until the next, the morning's last until 11:30,
    the afternoon's last until 15:00; NaN where no quote, and a NaN point at the lunch break
    so the line stops at 11:30 and starts again at 13:00."""
    from engine.rules import AM_CLOSE_US, DAY_CLOSE_US, DAY_US, PM_OPEN_US

    xs: list[float] = []
    ys: list[float] = []
    tod = samples[:, 0] % DAY_US if len(samples) else np.zeros(0, np.int64)
    for session, end in ((tod < PM_OPEN_US, AM_CLOSE_US), (tod >= PM_OPEN_US, DAY_CLOSE_US)):
        s = samples[session]
        if not len(s):
            continue
        if xs:
            xs.append(float(_session_minutes([PM_OPEN_US])[0]))
            ys.append(np.nan)  # the break
        price = np.where(s[:, col] > 0, s[:, col] / 100, np.nan)
        xs += list(_session_minutes(s[:, 0] % DAY_US)) + [float(_session_minutes([end])[0])]
        ys += list(price) + [price[-1]]
    return np.array(xs, dtype=float), np.array(ys, dtype=float)


def intraday_figure(result, plot_day: str):
    """Best bid and offer (as sampled after each decision step, step lines) and the listed
    trades (points) of ``plot_day`` on a trading-time axis (HH:MM, lunch break left out)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    from engine import batch as B
    from engine.rules import DAY_US

    samples, trades = plot_day_samples(result, plot_day)
    fig, ax = _figure(12, 5)
    every = int(round(60 / result.config.steps_per_hour))
    for col, label, color in ((1, "best bid", "C2"), (2, "best offer", "C3")):
        xs, ys = quote_steps(samples, col)
        if len(xs):
            ax.plot(xs, ys, drawstyle="steps-post", color=color, lw=1.1,
                    label=f"{label} after each step")
    if len(trades):
        ax.scatter(_session_minutes(trades[:, B.TS] % DAY_US), trades[:, B.PRICE] / 100,
                   s=9, color="C0", alpha=0.7, zorder=3, label="listed trades")
    ax.axvline(120, color="0.5", lw=0.8, ls="--")
    ax.set_xlim(-3, 243)
    ax.xaxis.set_major_locator(FixedLocator(np.arange(0, 241, 30)))
    ax.xaxis.set_major_formatter(FuncFormatter(_session_label))
    ax.set_xlabel("time (Shanghai); lunch break 11:30-13:00 left out")
    ax.set_ylabel("CNY / t")
    _cny_axis(ax.yaxis)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0,
                  title=f"quotes: sampled after each\ndecision step (every {every} min);\n"
                        "a step's trades can walk\nthe book past them or hit\n"
                        "orders placed in the step",
                  title_fontsize=7, alignment="left")
    _finish(fig, ax, f"Intraday price and spread, {plot_day}", legend="none")
    return fig


def depth_figure(depth: dict):
    """The listed book's cumulative depth on each side at the snapshot's time."""
    from engine.tradingdays import format_time

    fig, ax = _figure(9, 5)
    for key, label, color in (("bids", "bids", "C2"), ("asks", "offers", "C3")):
        levels = depth.get(key) or []
        if levels:
            # best first: bids descend, offers ascend; the cumulative quantity at a price
            # holds from that level to the next one out, on both sides
            prices = [lv.price / 100 for lv in levels]
            cum = np.cumsum([lv.qty for lv in levels]) / 1e3
            ax.step(prices, cum, where="post", color=color, label=f"{label} (cumulative)")
            ax.fill_between(prices, cum, step="post", alpha=0.2, color=color, lw=0)
    if not (depth.get("bids") or depth.get("asks")):
        ax.text(0.5, 0.5, "empty book", transform=ax.transAxes, ha="center", color="0.4")
    ax.set_xlabel("CNY / t")
    ax.set_ylabel("thousand t")
    ax.set_ylim(bottom=0)
    _cny_axis(ax.xaxis)
    when = ""
    if depth.get("time") is not None:
        when = ", " + format_time(depth["time"])[:19].replace("T", " ")
    best = [f"best {name} {levels[0].price / 100:.2f}"
            for name, levels in (("bid", depth.get("bids")), ("offer", depth.get("asks")))
            if levels]
    _finish(fig, ax, f"Listed order book depth{when}", "upper center", ", ".join(best))
    return fig


def plot_simulation(result, out: Path, plot_day: str, history=None) -> list[Path]:
    """A simulation's plots: ``close.png`` (daily close, high/low and the listed and block
    bands, the surrender deadlines, the real close where the run overlaps it),
    ``volume.png`` (listed and block volume per day, the surrender deadlines),
    ``intraday.png`` (trades, best bid and offer through ``plot_day``) and ``depth.png``
    (the listed book's depth at the snapshot taken that afternoon)."""
    return [_write(close_figure(result, history), out / "close.png"),
            _write(volume_figure(result), out / "volume.png"),
            _write(intraday_figure(result, plot_day), out / "intraday.png"),
            _write(depth_figure(result.depth), out / "depth.png")]


# ---------------------------------------------------------------------- load test

def _plain_log_axis(axis, lo: float, hi: float) -> None:
    """Ticks of a log axis at 1-2-5 (or 1..9 over a narrow range) with plain labels
    ("6,000", not 6×10³)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    lo, hi = max(lo, 1e-9), max(hi, 1e-9)
    for subs in ((1, 2, 5), range(1, 10)):
        ticks = [m * 10 ** e for e in range(int(np.floor(np.log10(lo))) - 1,
                                            int(np.ceil(np.log10(hi))) + 1)
                 for m in subs if lo <= m * 10 ** e <= hi]
        if len(ticks) >= 3:
            break
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def loadtest_subtitle(runs: list[dict], fsync: bool | None = None,
                      pairs: int | None = None) -> str:
    """The run's settings for the titles: fsync, session pairs, processes, seconds."""
    if pairs is None and runs and "sessions" in runs[0]:
        pairs = runs[0]["sessions"] // 2
    parts = []
    if fsync is not None:
        parts.append(f"fsync {'on' if fsync else 'off'}")
    if pairs is not None:
        parts.append(f"{pairs} session pair{'s' if pairs != 1 else ''}")
    if runs and "processes" in runs[0]:
        n = runs[0]["processes"]
        parts.append(f"{n} client process{'es' if n != 1 else ''}")
    if runs and "seconds" in runs[0]:
        parts.append(f"{runs[0]['seconds']:g} s per rate")
    return ", ".join(parts)


_PERCENTILES = (0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100)


def latency_figure(runs: list[dict], fsync: bool | None = None, pairs: int | None = None):
    """Each run's send → acknowledgement latency by percentile (``run['_ack_hist']``)."""
    from matplotlib.ticker import FixedLocator, FixedFormatter, NullLocator

    fig, ax = _figure(8, 4.8)
    values = []
    for run in runs:
        hist = run["_ack_hist"]
        if not hist.get_total_count():
            continue
        pts = [(p, max(hist.get_value_at_percentile(p), 1)) for p in _PERCENTILES]
        xs = [1 / (1 - p / 100) if p < 100 else 1e5 for p, _ in pts]
        ax.plot(xs, [v for _, v in pts], marker="o", ms=3,
                label=f"{run['offered_per_s']:,}/s offered")
        values += [v for _, v in pts]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator([1, 2, 10, 100, 1000, 1e4, 1e5]))
    ax.xaxis.set_major_formatter(FixedFormatter(["0", "50", "90", "99", "99.9", "99.99",
                                                 "max"]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(0.8, 1.25e5)
    if values:
        _plain_log_axis(ax.yaxis, min(values) / 1.3, max(values) * 1.3)
        ax.set_ylim(min(values) / 1.3, max(values) * 1.3)
    ax.grid(True, which="major", color="0.9", lw=0.6)
    ax.set_xlabel("percentile")
    ax.set_ylabel("send → acknowledgement, µs")
    _finish(fig, ax, "cea loadtest: latency by percentile (open loop)", "upper left",
            loadtest_subtitle(runs, fsync, pairs))
    return fig


def sweep_figure(runs: list[dict], p99_bound_us: int | None = None, fsync: bool | None = None,
                 pairs: int | None = None):
    """p50 and p99 acknowledgement latency against the offered rate, and the p99 bound."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig, ax = _figure(8, 4.8)
    rates = [r["offered_per_s"] for r in runs]
    values = [float(p99_bound_us)] if p99_bound_us else []
    for key, label in (("p50_us", "p50"), ("p99_us", "p99")):
        ys = [r["ack"].get(key) for r in runs]
        ax.plot(rates, [np.nan if y is None else max(y, 1) for y in ys], marker="o",
                label=label)
        values += [max(y, 1) for y in ys if y is not None]
    if p99_bound_us:
        ax.axhline(p99_bound_us, color="red", ls=":", label=f"p99 bound {p99_bound_us:,} µs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(rates))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.xaxis.set_minor_locator(NullLocator())
    if rates:
        ax.set_xlim(min(rates) / 1.15, max(rates) * 1.15)
    if values:
        _plain_log_axis(ax.yaxis, min(values) / 1.3, max(values) * 1.3)
        ax.set_ylim(min(values) / 1.3, max(values) * 1.3)
    ax.grid(True, which="major", color="0.9", lw=0.6)
    ax.set_xlabel("offered orders/s")
    ax.set_ylabel("send → acknowledgement, µs")
    _finish(fig, ax, "cea loadtest: latency against offered rate", "outside",
            loadtest_subtitle(runs, fsync, pairs))
    return fig


def plot_loadtest(runs: list[dict], out: Path, p99_bound_us: int | None = None,
                  fsync: bool | None = None, pairs: int | None = None) -> list[Path]:
    """``latency.png`` (each run's latency by percentile) and, with several runs,
    ``sweep.png`` (latency against offered rate); the titles give the server's fsync
    setting and the session pairs (from ``runs`` when ``pairs`` is None)."""
    written = [_write(latency_figure(runs, fsync, pairs), out / "latency.png")]
    if len(runs) > 1:
        written.append(_write(sweep_figure(runs, p99_bound_us, fsync, pairs),
                              out / "sweep.png"))
    return written
