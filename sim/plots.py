"""PNG plots (matplotlib, headless) of a replay and of a simulation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

#: Compliance deadlines (cea-rules.md, "Deadlines"): 100 % surrender due.
DEADLINES = ("2021-12-31", "2023-12-31", "2024-12-31")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    return plt


def save(plt, fig, ax, path: Path, title: str, legend_loc: str = "best",
         dates: bool = False) -> Path:
    """Title, legend, layout, write the PNG and free the figure."""
    ax.set_title(title)
    ax.legend(loc=legend_loc, fontsize=8)
    if dates:
        fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _volume_bars(plt, dates, listed, block, deadlines):
    """Listed and block volume per day (million t), stacked, and the deadlines that fall in
    the range marked."""
    fig, ax = plt.subplots(figsize=(12, 4))
    listed = [v / 1e6 for v in listed]
    ax.bar(dates, listed, width=1.0, label="listed")
    ax.bar(dates, [v / 1e6 for v in block], width=1.0, bottom=listed, label="block")
    for deadline in deadlines:
        day = dt.date.fromisoformat(deadline)
        if dates and dates[0] <= day <= dates[-1] + dt.timedelta(days=7):
            ax.axvline(day, color="red", lw=0.8, ls=":")
            ax.text(day, ax.get_ylim()[1] * 0.95, " surrender\n deadline", color="red",
                    fontsize=7, va="top")
    return fig, ax


def plot_replay(rows, out: Path) -> list[Path]:
    """``path.png`` (published close and the replay's close, band limits, flagged days) and
    ``volume.png`` (replayed listed and block volume per day, compliance deadlines)."""
    from engine.codes import Segment
    from engine.rules import band_limits

    plt = pyplot()
    dates = [dt.date.fromisoformat(r.date) for r in rows]
    written = []

    fig, ax = plt.subplots(figsize=(12, 5))
    # the series has gaps (no data): draw each run of consecutive days on its own
    starts = [i for i, r in enumerate(rows) if i == 0 or r.gap_before] + [len(rows)]
    for k, (a, b) in enumerate(zip(starts, starts[1:])):
        d, seg = dates[a:b], rows[a:b]
        ax.plot(d, [r.hist_close / 100 for r in seg], lw=1.2, color="C0",
                label="published close" if k == 0 else None)
        ax.plot(d, [r.replayed_close / 100 for r in seg], lw=0.8, ls="--", color="C1",
                label="replayed close (engine VWAP)" if k == 0 else None)
        bands = [band_limits(r.prior_close, Segment.LISTED) for r in seg]
        ax.fill_between(d, [x[0] / 100 for x in bands], [x[1] / 100 for x in bands],
                        step="mid", alpha=0.12, color="C0",
                        label="±10 % band around the prior close" if k == 0 else None)
    bad = [(d, r.hist_close / 100) for d, r in zip(dates, rows) if not r.feasible]
    if bad:
        ax.scatter(*zip(*bad), color="red", zorder=3, s=18, label="infeasible (flagged)")
    composite = [d for d, r in zip(dates, rows) if r.basis == "composite"]
    if composite:
        ax.axvspan(composite[0], composite[-1], color="grey", alpha=0.08,
                   label="composite close era")
    ax.set_ylabel("CNY / t")
    written.append(save(plt, fig, ax, out / "path.png", "CEA daily close: history and replay",
                        "upper left", dates=True))

    fig, ax = _volume_bars(plt, dates, [r.replayed_listed_volume for r in rows],
                           [r.replayed_block_volume for r in rows], DEADLINES)
    ax.set_ylabel("million t")
    written.append(save(plt, fig, ax, out / "volume.png", "Replayed daily volume",
                        "upper left", dates=True))
    return written


def plot_day_samples(r, date: str) -> tuple[np.ndarray, np.ndarray]:
    """(step samples, listed trades) of one day, for the intraday plot."""
    from engine import batch as B
    from engine.codes import Segment
    from engine.rules import DAY_US
    from engine.tradingdays import day_of_date
    import datetime as dt

    day = day_of_date(dt.date.fromisoformat(date))
    s = r.samples[r.samples[:, 0] // DAY_US == day] if len(r.samples) else r.samples
    t = r.trades
    if len(t):
        t = t[(t[:, B.TS] // DAY_US == day) & (t[:, B.SEGMENT] == Segment.LISTED)]
    return s, t


def plot_simulation(result, out: Path, plot_day: str) -> list[Path]:
    """A simulation's plots: ``close.png`` (daily close, high/low and the listed and block
    bands), ``volume.png`` (listed and block volume per day, the surrender deadline),
    ``intraday.png`` (trades, best bid and offer through ``plot_day``) and ``depth.png``
    (the listed book's depth at the snapshot taken that afternoon)."""
    plt = pyplot()
    rows = result.days
    dates = [dt.date.fromisoformat(r.date) for r in rows]
    written = []

    fig, ax = plt.subplots(figsize=(12, 5))
    ax.fill_between(dates, [r.block_low / 100 for r in rows], [r.block_high / 100 for r in rows],
                    step="mid", alpha=0.06, color="C2", label="block band ±30 %")
    ax.fill_between(dates, [r.listed_low / 100 for r in rows],
                    [r.listed_high / 100 for r in rows], step="mid", alpha=0.15, color="C0",
                    label="listed band ±10 % around the prior close")
    ranged = [(d, r) for d, r in zip(dates, rows) if r.high is not None]
    if ranged:
        ax.vlines([d for d, _ in ranged], [r.low / 100 for _, r in ranged],
                  [r.high / 100 for _, r in ranged], color="grey", lw=0.8,
                  label="listed high-low")
    ax.plot(dates, [r.close / 100 for r in rows], color="C1", lw=1.4,
            label="close (listed VWAP)")
    ax.set_ylabel("CNY / t")
    written.append(save(plt, fig, ax, out / "close.png", "Simulated daily close and bands",
                        "upper left", dates=True))

    deadlines = {c["deadline"] for c in result.compliance} | {result.config.deadline}
    fig, ax = _volume_bars(plt, dates, [r.listed_volume for r in rows],
                           [r.block_volume for r in rows], sorted(deadlines))
    ax.set_ylabel("million t")
    written.append(save(plt, fig, ax, out / "volume.png", "Simulated daily volume",
                        "upper left", dates=True))

    samples, trades = plot_day_samples(result, plot_day)
    fig, ax = plt.subplots(figsize=(12, 5))
    if len(samples):
        hours = (samples[:, 0] % 86_400_000_000) / 3.6e9
        for col, label, color in ((1, "best bid", "C2"), (2, "best offer", "C3")):
            ok = samples[:, col] > 0
            ax.step(hours[ok], samples[ok, col] / 100, where="post", color=color, lw=1,
                    label=label)
    if len(trades):
        from engine import batch as B

        ax.scatter((trades[:, B.TS] % 86_400_000_000) / 3.6e9, trades[:, B.PRICE] / 100,
                   s=6, color="C0", alpha=0.6, label="listed trades")
    ax.set_xlabel("hour (Shanghai)")
    ax.set_ylabel("CNY / t")
    written.append(save(plt, fig, ax, out / "intraday.png",
                        f"Intraday price and spread, {plot_day}"))

    fig, ax = plt.subplots(figsize=(9, 5))
    depth = result.depth
    for key, label, color in (("bids", "bids", "C2"), ("asks", "offers", "C3")):
        levels = depth.get(key) or []
        if levels:
            prices = [lv.price / 100 for lv in levels]
            cum = np.cumsum([lv.qty for lv in levels]) / 1e3
            ax.step(prices, cum, where="post" if key == "asks" else "pre", color=color,
                    label=f"{label} (cumulative)")
            ax.fill_between(prices, cum, step="post" if key == "asks" else "pre",
                            alpha=0.2, color=color)
    ax.set_xlabel("CNY / t")
    ax.set_ylabel("thousand t")
    when = ""
    if depth:
        from engine.tradingdays import format_time

        when = format_time(depth["time"])
    written.append(save(plt, fig, ax, out / "depth.png", f"Listed order book depth {when}"))
    return written
