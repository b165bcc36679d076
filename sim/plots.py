"""PNG plots of a replay (matplotlib, headless): the price path and the volumes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

#: Compliance deadlines (cea-rules.md, "Deadlines"): 100 % surrender due.
DEADLINES = ("2021-12-31", "2023-12-31", "2024-12-31")


def _pyplot():
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


def plot_replay(rows, out: Path) -> list[Path]:
    """``path.png`` (published close and the replay's close, band limits, flagged days) and
    ``volume.png`` (replayed listed and block volume per day, compliance deadlines)."""
    from engine.codes import Segment
    from engine.rules import band_limits

    plt = _pyplot()
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

    fig, ax = plt.subplots(figsize=(12, 4))
    listed = [r.replayed_listed_volume / 1e6 for r in rows]
    block = [r.replayed_block_volume / 1e6 for r in rows]
    ax.bar(dates, listed, width=1.0, label="listed")
    ax.bar(dates, block, width=1.0, bottom=listed, label="block")
    for deadline in DEADLINES:
        day = dt.date.fromisoformat(deadline)
        if dates[0] <= day <= dates[-1] + dt.timedelta(days=7):
            ax.axvline(day, color="red", lw=0.8, ls=":")
            ax.text(day, ax.get_ylim()[1] * 0.95, " compliance\n deadline", color="red",
                    fontsize=7, va="top")
    ax.set_ylabel("million t")
    written.append(save(plt, fig, ax, out / "volume.png", "Replayed daily volume",
                        "upper left", dates=True))
    return written
