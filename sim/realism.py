"""``cea realism``: how much a simulated market looks like the real CEA market (issue 19).

A handful of stylized facts (the size and memory of daily returns, the year-end volume rush,
the block segment's share and discount, how uneven volume is, quiet days, the day's range,
the totals) computed the same way, by ``facts_from_days``, from two lists of ``MarketDay``:

- the real market's, from the published daily series (``sim.history.load_history``) over a
  named period (``REAL_PERIODS``): ``real_days``, ``real_facts``;
- a simulation's, from a ``cea simulate`` output directory (``days.csv`` for the closes and
  volumes, ``trades.csv`` for each day's listed high and low): ``simulated_days``.

``report`` compares the two over the dates both cover and writes ``realism.json`` and plots;
``distance`` turns the comparison into one number for a calibration to minimise.

Every statistic is defined once, here, and the definitions are the docstrings below.
Money is integer fen and quantities integer tonnes; the statistics themselves (a standard
deviation, a share in %) are floats: they are statistics, not money.

The real close. Through 2023-08-25 the published close is the VWAP of the day's listed
trades, as the engine's (and so a simulation's) close is. From 2023-08-28 the exchange
publishes a composite across vintages with no formula; there the close used is the day's
listed VWAP (listed turnover / listed volume, rounded half up; the prior close without a
listed trade: ``engine.rules.closing_price``), so that real and simulated closes are the
same quantity, and the composite high and low are not used (no listed high or low is
published then): ``range_pct`` of the real market covers the listed-price era only.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.rules import closing_price

#: The real market's periods with data, each without gaps (``sim/data/README.md``).
REAL_PERIODS: dict[str, tuple[str, str]] = {
    "first-period": ("2021-07-16", "2021-12-31"),
    "2022-2023": ("2022-05-26", "2023-12-29"),
    "2024": ("2024-05-24", "2024-12-31"),
    "all": ("2021-07-16", "2024-12-31"),
}
#: The periods ``report`` chooses from by the run's dates (``all`` only when asked).
MATCHED_PERIODS = ("first-period", "2022-2023", "2024")
#: A listed volume below this makes a quiet day (t).
QUIET_LISTED_T = 1_000
#: Autocorrelations are given for lags 1..MAX_LAG.
MAX_LAG = 10
#: The files ``report`` writes.
JSON_NAME = "realism.json"
PLOT_NAMES = ("realism_returns.png", "realism_acf.png", "realism_volume_share.png",
              "realism_block.png")
TRADE_COLUMNS = ("trade_id", "time", "segment", "price", "qty", "buy_order_id",
                 "sell_order_id", "buy_account", "sell_account", "aggressor")


class RealismError(ValueError):
    """The comparison cannot be made (no such directory or period, nothing in common): one
    line saying why."""


@dataclass(frozen=True)
class MarketDay:
    """One trading day as the statistics see it. ``gap_before``: the day before it in the
    list is not the trading day before it (the real series' gaps), so no return spans it."""

    date: str  # YYYY-MM-DD
    close: int | None  # fen; None: no close known
    high: int | None  # fen, the listed high; None where not known
    low: int | None
    listed_volume: int  # t
    block_volume: int  # t
    listed_turnover: int  # fen
    block_turnover: int  # fen
    gap_before: bool = False


@dataclass(frozen=True)
class MarketFacts:
    """The stylized facts of one list of days (``facts_from_days`` defines each). A
    statistic is None where the days do not define it (too few returns, no block trade)."""

    first_day: str
    last_day: str
    days: int
    volume_t: int
    turnover_fen: int
    average_price_fen: int | None
    average_daily_volume_t: int
    last_close_fen: int | None
    returns: int
    return_std_pct: float | None
    return_autocorr_lag1: float | None
    abs_return_autocorr_lag1: float | None
    return_acf: list = field(default_factory=list)  # lags 1..MAX_LAG (None where undefined)
    abs_return_acf: list = field(default_factory=list)
    nov_dec_volume_share_pct: float | None = None
    nov_dec_volume_share_by_year: dict = field(default_factory=dict)  # "2024" -> %
    block_share_pct: float | None = None
    block_vwap_vs_close_pct: float | None = None
    log10_volume_std: float | None = None
    quiet_listed_days: int = 0
    quiet_listed_days_pct: float | None = None
    range_pct: float | None = None
    range_days: int = 0

    def as_dict(self) -> dict:
        """JSON-able, floats rounded to 6 decimals."""
        return rounded(asdict(self), 6)


# ---------------------------------------------------------------------- the statistics

def return_runs(days: list[MarketDay]) -> list[list[float]]:
    """The daily log returns ln(close / previous close), in runs of consecutive trading
    days: a return needs both days' closes and no gap between them, so a gap or a day
    without a close ends a run (nothing is bridged)."""
    runs: list[list[float]] = [[]]
    previous = None
    for d in days:
        if d.gap_before or d.close is None or previous is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(math.log(d.close / previous))
        previous = d.close
    return [r for r in runs if r]


def _sample_std(values: list[float]) -> float | None:
    """The sample standard deviation (n − 1 in the denominator); None under two values."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def autocorrelation(runs: list[list[float]], lag: int) -> float | None:
    """The sample autocorrelation at ``lag`` of a series in runs (the usual estimator,
    pairs taken only within a run): with m the mean of all values,
    Σ (x_t − m)(x_{t+lag} − m) over pairs in one run / Σ (x_t − m)² over all values.
    None without a pair at that lag or when every value is the same (to rounding: a
    variation under 1e-12 of Σ x², as ln(1.1) and −ln(1/1.1) differ in the last bit).

    >>> autocorrelation([[1.0, -1.0, 1.0, -1.0]], 1)
    -0.75
    """
    values = [v for r in runs for v in r]
    if not values:
        return None
    mean = sum(values) / len(values)
    denominator = sum((v - mean) ** 2 for v in values)
    pairs = [(r[t], r[t + lag]) for r in runs for t in range(len(r) - lag)]
    if not pairs or denominator <= 1e-12 * sum(v * v for v in values):
        return None
    return sum((a - mean) * (b - mean) for a, b in pairs) / denominator


def nov_dec_shares(days: list[MarketDay]) -> tuple[float | None, dict[str, float]]:
    """(the period's figure, {year: figure}) of the year-end rush: for a calendar year, the
    total volume (listed + block) of its days in November and December over the total
    volume of all its days in the list, in %; the period's figure is the same over every
    day of the list (Σ Nov–Dec volume / Σ volume). A year with no volume has no figure.
    Over a part of a year (a period starting in July, a run ending in June) the share is of
    what the list holds, which is why ``report`` compares runs over the same dates."""
    totals: dict[str, list[int]] = {}
    for d in days:
        t = totals.setdefault(d.date[:4], [0, 0])
        volume = d.listed_volume + d.block_volume
        t[0] += volume
        t[1] += volume if d.date[5:7] in ("11", "12") else 0
    by_year = {y: 100 * t[1] / t[0] for y, t in sorted(totals.items()) if t[0]}
    whole = sum(t[0] for t in totals.values())
    return (100 * sum(t[1] for t in totals.values()) / whole if whole else None), by_year


def block_vwap_vs_close_pct(days: list[MarketDay]) -> float | None:
    """The block segment's price against the day's close, in %: the average over block
    tonnes of (block price / that day's close − 1). From the daily figures, each day's
    block trades count at their VWAP (block turnover / block volume), so this is
    Σ_d block_volume_d × (block_vwap_d / close_d − 1) / Σ_d block_volume_d over the days
    with block volume and a close. None without such a day."""
    tonnes = sum(d.block_volume for d in days if d.block_volume and d.close)
    if not tonnes:
        return None
    return 100 * (sum(d.block_turnover / d.close for d in days
                      if d.block_volume and d.close) / tonnes - 1)


def daily_block_premiums(days: list[MarketDay]) -> list[tuple[str, float, int]]:
    """(date, block VWAP / close − 1 in %, block volume) of each day with block trades."""
    return [(d.date, 100 * (d.block_turnover / d.block_volume / d.close - 1), d.block_volume)
            for d in days if d.block_volume and d.close]


def _ratio_half_up(numerator: int, denominator: int) -> int | None:
    return (2 * numerator + denominator) // (2 * denominator) if denominator else None


def facts_from_days(days: list[MarketDay]) -> MarketFacts:
    """The stylized facts of ``days`` (in date order), the same for real and simulated days:

    - ``return_std_pct``: the sample standard deviation (n − 1) of the daily log returns of
      the close, in % (``return_runs``: consecutive trading days only, never across a gap
      or a day without a close); ``returns``: how many;
    - ``return_autocorr_lag1``, ``abs_return_autocorr_lag1``: the lag-1 autocorrelation
      (``autocorrelation``) of those returns and of their absolute values (volatility
      clustering); ``return_acf``, ``abs_return_acf``: lags 1..10;
    - ``nov_dec_volume_share_pct`` and ``..._by_year``: ``nov_dec_shares``;
    - ``block_share_pct``: block volume / total volume, in %;
    - ``block_vwap_vs_close_pct``: ``block_vwap_vs_close_pct``;
    - ``log10_volume_std``: the sample standard deviation of log10 of the daily total
      volume (listed + block) over the days with volume;
    - ``quiet_listed_days``: days with a listed volume under 1,000 t; ``..._pct`` of days;
    - ``range_pct``: the mean over the days with a listed high and low of
      (high − low) / close, in %; ``range_days``: how many;
    - totals: ``volume_t`` and ``turnover_fen`` (listed + block), ``average_price_fen``
      (turnover / volume, half up), ``average_daily_volume_t`` (half up),
      ``last_close_fen`` (the last known close), ``days``.
    """
    if not days:
        raise RealismError("no trading days to compute the facts of")
    runs = return_runs(days)
    returns = [r for run in runs for r in run]
    absolute = [[abs(r) for r in run] for run in runs]
    acf = [autocorrelation(runs, k) for k in range(1, MAX_LAG + 1)]
    abs_acf = [autocorrelation(absolute, k) for k in range(1, MAX_LAG + 1)]
    volume = sum(d.listed_volume + d.block_volume for d in days)
    block = sum(d.block_volume for d in days)
    turnover = sum(d.listed_turnover + d.block_turnover for d in days)
    std = _sample_std(returns)
    log_volumes = [math.log10(d.listed_volume + d.block_volume) for d in days
                   if d.listed_volume + d.block_volume > 0]
    ranged = [(d.high - d.low) / d.close for d in days
              if d.high is not None and d.low is not None and d.close]
    quiet = sum(1 for d in days if d.listed_volume < QUIET_LISTED_T)
    closes = [d.close for d in days if d.close is not None]
    share, by_year = nov_dec_shares(days)
    return MarketFacts(
        first_day=days[0].date, last_day=days[-1].date, days=len(days), volume_t=volume,
        turnover_fen=turnover, average_price_fen=_ratio_half_up(turnover, volume),
        average_daily_volume_t=_ratio_half_up(volume, len(days)),
        last_close_fen=closes[-1] if closes else None, returns=len(returns),
        return_std_pct=None if std is None else 100 * std,
        return_autocorr_lag1=acf[0], abs_return_autocorr_lag1=abs_acf[0],
        return_acf=acf, abs_return_acf=abs_acf,
        nov_dec_volume_share_pct=share, nov_dec_volume_share_by_year=by_year,
        block_share_pct=100 * block / volume if volume else None,
        block_vwap_vs_close_pct=block_vwap_vs_close_pct(days),
        log10_volume_std=_sample_std(log_volumes), quiet_listed_days=quiet,
        quiet_listed_days_pct=100 * quiet / len(days),
        range_pct=100 * sum(ranged) / len(ranged) if ranged else None,
        range_days=len(ranged))


# ---------------------------------------------------------------------- the real market

def period_dates(period: str) -> tuple[str, str]:
    """The first and last date of a named real period; ``RealismError`` naming the known
    ones otherwise."""
    if period not in REAL_PERIODS:
        raise RealismError(f"no real period {period!r} (known: {', '.join(REAL_PERIODS)})")
    return REAL_PERIODS[period]


def real_days(first: str, last: str, history=None) -> list[MarketDay]:
    """The published days from ``first`` to ``last`` (``YYYY-MM-DD``) of ``history`` (a list
    of ``sim.history.HistoryDay``; default the shipped series) as ``MarketDay``: the
    published close and listed high/low through 2023-08-25; from 2023-08-28 (composite
    prices) the listed VWAP as the close and no high/low (the module's docstring says
    why). The first day of the list, and a day after a gap, have ``gap_before``."""
    if history is None:
        from .history import HistoryError, load_history

        try:
            history = load_history()
        except HistoryError as e:
            raise RealismError(str(e)) from None
    out: list[MarketDay] = []
    previous = None
    for h in history:
        if not first <= h.date <= last:
            continue
        gap = h.gap_before or not out
        close, high, low = h.close, h.high, h.low
        if h.composite:
            prior = h.open if gap or previous is None else previous
            close = closing_price(h.listed_turnover, h.listed_volume, prior)
            high = low = None
        out.append(MarketDay(h.date, close, high, low, h.listed_volume, h.block_volume,
                             h.listed_turnover, h.block_turnover, gap))
        previous = close
    return out


def real_facts(first: str, last: str, history=None) -> MarketFacts:
    """The real market's facts from ``first`` to ``last`` (``real_days``)."""
    days = real_days(first, last, history)
    if not days:
        raise RealismError(f"the real series has no days from {first} to {last}")
    return facts_from_days(days)


# ---------------------------------------------------------------------- a simulation

def simulated_days(sim_dir: str | Path) -> list[MarketDay]:
    """The days of a ``cea simulate`` output directory: closes, volumes and turnover from
    ``days.csv``, each day's listed high and low from the LISTED trades of ``trades.csv``
    (None on a day without one). ``RealismError`` if it is not such a directory."""
    from . import simout
    from .view import SIMULATE, ViewError, read_table, run_kind

    sim_dir = Path(sim_dir)
    try:
        if run_kind(sim_dir) != SIMULATE:
            raise RealismError(f"{sim_dir}: a cea replay directory, not a cea simulate one")
        if not (sim_dir / "trades.csv").is_file():
            raise RealismError(f"{sim_dir}: no trades.csv (not a complete cea simulate "
                               "output directory)")
        rows = read_table(sim_dir / "days.csv", simout.DAY_COLUMNS, simout.DAY_MONEY,
                          ("date",))
        trades = read_table(sim_dir / "trades.csv", TRADE_COLUMNS, ("price",),
                            tuple(c for c in TRADE_COLUMNS if c not in
                                  ("trade_id", "price", "qty")))
    except ViewError as e:
        raise RealismError(str(e)) from None
    ranges: dict[str, list[int]] = {}
    for t in trades:
        if t["segment"] == "LISTED":
            r = ranges.setdefault(t["time"][:10], [t["price"], t["price"]])
            r[0], r[1] = max(r[0], t["price"]), min(r[1], t["price"])
    if not rows:
        raise RealismError(f"{sim_dir / 'days.csv'}: no days")
    return [MarketDay(r["date"], r["close"], *ranges.get(r["date"], (None, None)),
                      r["listed_volume"], r["block_volume"], r["listed_turnover"],
                      r["block_turnover"]) for r in rows]


# ---------------------------------------------------------------------- the comparison

@dataclass(frozen=True)
class Statistic:
    """A statistic of the comparison table. ``compare``: ``ratio`` (simulated / real, for
    magnitudes) or ``difference`` (simulated − real, for shares and correlations, which
    may be 0 or negative). ``scale``: the distance's unit of miss (None: relative to the
    real value); ``weight``: its default weight in ``distance``."""

    name: str
    compare: str
    scale: float | None
    weight: float
    unit: str  # "%", "" (a number), "t", "fen", "fen/t", "days"


#: The table, in its order: what ``report`` compares and ``distance`` scores.
STATISTICS = (
    Statistic("return_std_pct", "ratio", None, 1.0, "%"),
    Statistic("return_autocorr_lag1", "difference", 0.2, 1.0, ""),
    Statistic("abs_return_autocorr_lag1", "difference", 0.2, 1.0, ""),
    Statistic("nov_dec_volume_share_pct", "difference", 10.0, 1.0, "%"),
    Statistic("block_share_pct", "difference", 10.0, 1.0, "%"),
    Statistic("block_vwap_vs_close_pct", "difference", 2.0, 1.0, "%"),
    Statistic("log10_volume_std", "ratio", None, 1.0, ""),
    Statistic("quiet_listed_days", "ratio", None, 0.0, "days"),
    Statistic("quiet_listed_days_pct", "difference", 10.0, 1.0, "%"),
    Statistic("range_pct", "ratio", None, 1.0, "%"),
    Statistic("average_daily_volume_t", "ratio", None, 1.0, "t"),
    Statistic("average_price_fen", "ratio", None, 1.0, "fen/t"),
    Statistic("volume_t", "ratio", None, 0.0, "t"),
    Statistic("turnover_fen", "ratio", None, 0.0, "fen"),
    Statistic("last_close_fen", "ratio", None, 0.0, "fen/t"),
    Statistic("days", "ratio", None, 0.0, "days"),
)
DEFAULT_WEIGHTS = {s.name: s.weight for s in STATISTICS}


def compare(sim: MarketFacts, real: MarketFacts) -> dict[str, dict]:
    """Each statistic of ``STATISTICS``: ``{"simulated": x, "real": y, "ratio": x / y}`` or
    ``{..., "difference": x − y}`` (None where either side is None, or a ratio to 0)."""
    table = {}
    for s in STATISTICS:
        x, y = getattr(sim, s.name), getattr(real, s.name)
        if x is None or y is None or (s.compare == "ratio" and not y):
            value = None
        else:
            value = x / y if s.compare == "ratio" else x - y
        table[s.name] = {"simulated": x, "real": y, s.compare: value}
    return table


def distance_terms(sim: MarketFacts, real: MarketFacts,
                   weights: dict[str, float] | None = None) -> dict[str, float]:
    """Each statistic's share of ``distance``: weight × ((simulated − real) / scale)², the
    scale being the statistic's fixed one (``Statistic.scale``: 0.2 for an autocorrelation,
    10 points for a share in %, 2 points for the block discount) or, for magnitudes, |real|
    (a relative miss: 0.5 for half or one and a half times the real value gives 0.25).
    Where the real value is None (not defined for that period, e.g. ``range_pct`` in the
    composite era) the term is 0; where only the simulated one is None (no block trade,
    too few returns) it is the weight (a miss of one scale). ``weights``: by statistic
    name, replacing ``DEFAULT_WEIGHTS`` key by key; an unknown name is a ``RealismError``."""
    unknown = set(weights or ()) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise RealismError(f"no statistic {', '.join(sorted(unknown))} (known: "
                           f"{', '.join(DEFAULT_WEIGHTS)})")
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    terms = {}
    for s in STATISTICS:
        x, y = getattr(sim, s.name), getattr(real, s.name)
        if not w[s.name] or y is None:
            terms[s.name] = 0.0
        elif x is None:
            terms[s.name] = float(w[s.name])
        else:
            scale = s.scale if s.scale is not None else abs(y) or 1.0
            terms[s.name] = w[s.name] * ((x - y) / scale) ** 2
    return terms


def distance(sim: MarketFacts, real: MarketFacts,
             weights: dict[str, float] | None = None) -> float:
    """How far the simulated facts are from the real ones, for a calibration to minimise:
    the sum of ``distance_terms`` (0 when every weighted statistic matches)."""
    return sum(distance_terms(sim, real, weights).values())


def match_period(first: str, last: str) -> str | None:
    """The period of ``MATCHED_PERIODS`` sharing the most calendar days with ``first`` ..
    ``last``; None if none overlaps."""
    def overlap(name: str) -> int:
        a, b = max(first, REAL_PERIODS[name][0]), min(last, REAL_PERIODS[name][1])
        return (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days + 1 if a <= b else 0

    best = max(MATCHED_PERIODS, key=overlap)
    return best if overlap(best) else None


def _window(days: list[MarketDay], first: str, last: str) -> list[MarketDay]:
    return [d for d in days if first <= d.date <= last]


def report(sim_dir: str | Path, period: str | None = None, out: str | Path | None = None,
           plots: bool = True, weights: dict[str, float] | None = None) -> dict:
    """Compare the simulation in ``sim_dir`` with the real market and write ``realism.json``
    and (with ``plots``) the PNGs of ``PLOT_NAMES`` into ``out`` (default ``sim_dir``).

    ``period``: a name of ``REAL_PERIODS``, or None (or ``auto``) for the one of
    ``MATCHED_PERIODS`` overlapping the run most. Where run and period overlap, both sides
    are cut to the dates they share (totals and the Nov–Dec share depend on which part of
    the year is covered); otherwise (a period named that the run does not reach) the whole
    run is compared with the whole period. Returns the JSON document: ``period``,
    ``window``, ``statistics`` (``compare``), ``simulated`` and ``real`` (all the facts),
    ``distance`` and ``distance_terms``, ``notes``, ``files``."""
    sim_all = simulated_days(sim_dir)
    first, last = sim_all[0].date, sim_all[-1].date
    if period in (None, "auto"):
        period = match_period(first, last)
        if period is None:
            raise RealismError(
                f"the run ({first} .. {last}) does not overlap the real data (periods: "
                + ", ".join(f"{n} {a} .. {b}" for n, (a, b) in REAL_PERIODS.items()
                            if n in MATCHED_PERIODS) + "); name one with --period")
    p_first, p_last = period_dates(period)
    a, b = max(first, p_first), min(last, p_last)
    if a <= b:
        real = real_days(a, b)
        if real:  # the dates the real series has (a run reaching into a gap of "all")
            a, b = real[0].date, real[-1].date
        sim = _window(sim_all, a, b)
        basis = "overlap: both cut to the dates they share"
    else:
        sim, real, a, b = sim_all, real_days(p_first, p_last), None, None
        basis = "no overlap: the whole run against the whole period"
    if not sim or not real:
        raise RealismError(f"no {'simulated' if not sim else 'real'} trading day from {a} "
                           f"to {b}")
    sim_facts, real_facts_ = facts_from_days(sim), facts_from_days(real)
    terms = distance_terms(sim_facts, real_facts_, weights)
    doc = {
        "directory": str(Path(sim_dir)),
        "period": period, "period_first": p_first, "period_last": p_last,
        "run_first": first, "run_last": last,
        "window": {"first": a, "last": b, "basis": basis, "simulated_days": len(sim),
                   "real_days": len(real)},
        "statistics": compare(sim_facts, real_facts_),
        "simulated": sim_facts.as_dict(), "real": real_facts_.as_dict(),
        "distance": sum(terms.values()), "distance_terms": terms,
        "notes": NOTES, "files": [JSON_NAME],
    }
    doc = rounded(doc, 6)
    target = Path(out) if out is not None else Path(sim_dir)
    if plots:
        paths = plot_realism(sim, real, sim_facts, real_facts_, "real", target)
        doc["files"] += [p.name for p in paths]
    (target / JSON_NAME).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return doc


NOTES = [
    "real close: the published close through 2023-08-25 (the listed VWAP); from 2023-08-28, "
    "when the published prices are a composite across vintages, the day's listed VWAP "
    "(listed turnover / listed volume), the close a simulation has",
    "real high/low: the published listed high and low through 2023-08-25 only; range_pct of "
    "the real market is null for dates after that",
    "returns: ln(close / previous close) of consecutive trading days, never across a gap in "
    "the real data (2022-01-04..2022-05-25, 2024-01-02..2024-05-23)",
    "block_vwap_vs_close_pct: from each day's block turnover / block volume against that "
    "day's close, weighted by block volume",
    "ratio = simulated / real; difference = simulated - real",
]


def rounded(value, digits: int = 6):
    """``value`` with every float (nested ones too) rounded to ``digits`` decimals."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


# ---------------------------------------------------------------------- plots

#: colours as in ``sim.plots``: the simulation C1 (orange), the real market black
SIM_COLOR, REAL_COLOR = "C1", "k"


def _axes(width: float, height: float, panels: int = 1):
    """A figure (not registered with pyplot) and its Axes, side by side."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]


def _titled(fig, ax, title: str, subtitle: str) -> None:
    """The title and its smaller second line, the legend, the layout (``sim.plots``'s)."""
    ax.set_title(f"{title}\n{subtitle}", fontsize=11)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()


def _span(days: list[MarketDay]) -> str:
    return f"{days[0].date} .. {days[-1].date}, {len(days)} days"


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f} %"


def _bin_edges(values: list[float], step_choices=(0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0),
               bins: int = 40):
    """Edges symmetric around 0 covering ``values``, at a round step giving about ``bins``."""
    import numpy as np

    top = max([abs(v) for v in values], default=1.0) or 1.0
    step = next((s for s in step_choices if 2 * top / s <= bins), step_choices[-1])
    top = math.ceil(top / step) * step
    return np.arange(-top, top + step / 2, step)


def returns_figure(sim_days: list[MarketDay], real_days_: list[MarketDay], real_label: str):
    """The distribution of daily log returns of the close, simulated and real, on the same
    bins, each bar the share of that series' returns (so different counts compare)."""
    fig, (ax,) = _axes(10, 5)
    series = [(sim_days, "simulated", SIM_COLOR), (real_days_, real_label, REAL_COLOR)]
    returns = [[100 * r for run in return_runs(days) for r in run] for days, _, _ in series]
    edges = _bin_edges(returns[0] + returns[1])
    for values, (_, label, color) in zip(returns, series):
        if values:
            std = _sample_std(values)
            ax.hist(values, bins=edges, weights=[100 / len(values)] * len(values),
                    histtype="step", lw=1.6, color=color,
                    label=f"{label}: {len(values)} returns, std {_pct(std)}")
    ax.axvline(0, color="0.6", lw=0.7)
    ax.set_xlabel("daily log return of the close, %")
    ax.set_ylabel("% of the series' returns per bin")
    _titled(fig, ax, "Daily returns: simulated and real",
            f"simulated {_span(sim_days)}; {real_label} {_span(real_days_)}; "
            f"bins of {edges[1] - edges[0]:g} %")
    return fig


def acf_figure(sim: MarketFacts, real: MarketFacts, real_label: str):
    """The autocorrelation of returns (left) and of absolute returns (right) at lags
    1..10, simulated and real, with each series' ±1.96/√n band (no autocorrelation)."""
    import numpy as np

    fig, axes = _axes(12, 4.6, 2)
    lags = np.arange(1, MAX_LAG + 1)
    series = ((sim, "simulated", SIM_COLOR), (real, real_label, REAL_COLOR))
    one_band = sim.returns == real.returns
    for ax, key, what in ((axes[0], "return_acf", "returns"),
                          (axes[1], "abs_return_acf", "absolute returns")):
        for k, (facts, label, color) in enumerate(series):
            values = [np.nan if v is None else v for v in getattr(facts, key)]
            ax.bar(lags + (k - 0.5) * 0.38, values, width=0.38, color=color,
                   alpha=0.85 if k == 0 else 0.6, label=f"{label} ({facts.returns} returns)")
            if facts.returns and not (one_band and k):
                band = 1.96 / math.sqrt(facts.returns)
                name = "" if one_band else f" ({label})"
                ax.axhline(band, color="0.3" if one_band else color, lw=0.9, ls="--",
                           label=f"±1.96/√n: no autocorrelation{name}")
                ax.axhline(-band, color="0.3" if one_band else color, lw=0.9, ls="--")
        ax.axhline(0, color="0.4", lw=0.7)
        ax.set_xticks(lags)
        ax.set_xlabel("lag, trading days")
        ax.set_ylabel("autocorrelation")
        ax.set_title(f"of daily {what}", fontsize=10)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"Autocorrelation by lag: simulated and real\nsimulated {sim.first_day} .. "
                 f"{sim.last_day}; {real_label} {real.first_day} .. {real.last_day}",
                 fontsize=11)
    fig.tight_layout()
    return fig


def _cumulative_by_year(days: list[MarketDay]):
    """Per calendar year: (days of year, cumulative % of that year's volume in ``days``)."""
    out = {}
    for year in sorted({d.date[:4] for d in days}):
        ds = [d for d in days if d.date[:4] == year]
        total = sum(d.listed_volume + d.block_volume for d in ds)
        if not total:
            continue
        running, xs, ys = 0, [], []
        for d in ds:
            running += d.listed_volume + d.block_volume
            xs.append(dt.date.fromisoformat(d.date).timetuple().tm_yday)
            ys.append(100 * running / total)
        out[year] = (xs, ys)
    return out


def volume_share_figure(sim_days: list[MarketDay], real_days_: list[MarketDay],
                        sim: MarketFacts, real: MarketFacts, real_label: str):
    """The cumulative share of each calendar year's volume (listed + block) by day of year,
    simulated and real, November-December shaded: the year-end rush as a steep end."""
    from matplotlib.ticker import FixedLocator, FixedFormatter

    fig, (ax,) = _axes(10, 5)
    ax.axvspan(dt.date(2001, 11, 1).timetuple().tm_yday, 366, color="0.5", alpha=0.12, lw=0,
               label="November-December")
    styles = ("-", "--", ":", "-.")
    for days, facts, label, color in ((sim_days, sim, "simulated", SIM_COLOR),
                                      (real_days_, real, real_label, REAL_COLOR)):
        for k, (year, (xs, ys)) in enumerate(_cumulative_by_year(days).items()):
            share = facts.nov_dec_volume_share_by_year.get(year)
            ax.plot(xs, ys, color=color, lw=1.5, ls=styles[k % len(styles)],
                    label=f"{label}, {year} ({len(xs)} days): Nov-Dec {_pct(share, 1)} of "
                          "the year's volume")
    starts = [dt.date(2001, m, 1).timetuple().tm_yday for m in range(1, 13)]
    ax.xaxis.set_major_locator(FixedLocator(starts))
    ax.xaxis.set_major_formatter(FixedFormatter(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]))
    first_month = min(int(d.date[5:7]) for d in sim_days + real_days_)
    ax.set_xlim(starts[first_month - 1], 366)
    ax.set_ylim(0, 100)
    ax.set_xlabel("day of the year")
    ax.set_ylabel("cumulative % of the year's volume in the data")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Volume through the year: simulated and real\n"
                 f"simulated {_span(sim_days)}; {real_label} {_span(real_days_)}",
                 fontsize=11)
    fig.tight_layout()
    return fig


def block_figure(sim_days: list[MarketDay], real_days_: list[MarketDay],
                 sim: MarketFacts, real: MarketFacts, real_label: str):
    """The distribution of the block segment's price against the close: each day's block
    VWAP / close − 1, weighted by its block tonnes, simulated and real on the same bins;
    the block-volume-weighted averages (``block_vwap_vs_close_pct``) as vertical lines."""
    import numpy as np

    fig, (ax,) = _axes(10, 5)
    series = [(daily_block_premiums(sim_days), sim, "simulated", SIM_COLOR),
              (daily_block_premiums(real_days_), real, real_label, REAL_COLOR)]
    values = [p for s in series for _, p, _ in s[0]]
    lo = math.floor(min(values, default=-1.0))
    hi = math.ceil(max(values, default=1.0))
    edges = np.arange(lo, max(hi, lo + 1) + 0.5, 1.0)
    for premiums, facts, label, color in series:
        if not premiums:
            ax.plot([], [], color=color, label=f"{label}: no block trades")
            continue
        tonnes = sum(v for _, _, v in premiums)
        ax.hist([p for _, p, _ in premiums], bins=edges, histtype="step", lw=1.6, color=color,
                weights=[100 * v / tonnes for _, _, v in premiums],
                label=f"{label}: {len(premiums)} days, {tonnes / 1e6:,.1f} Mt")
        ax.axvline(facts.block_vwap_vs_close_pct, color=color, lw=1.1, ls="--",
                   label=f"{label} average {_pct(facts.block_vwap_vs_close_pct)}")
    ax.axvline(0, color="0.6", lw=0.7)
    ax.set_xlabel("day's block VWAP / day's close − 1, %")
    ax.set_ylabel("% of the series' block tonnes per 1 % bin")
    _titled(fig, ax, "Block trades' price against the close: simulated and real",
            f"simulated {_span(sim_days)}; {real_label} {_span(real_days_)}")
    return fig


def plot_realism(sim_days: list[MarketDay], real_days_: list[MarketDay], sim: MarketFacts,
                 real: MarketFacts, real_label: str, out: Path) -> list[Path]:
    """The four PNGs of ``PLOT_NAMES`` into ``out``: returns, autocorrelations, volume
    through the year, block price against the close."""
    from .plots import DPI

    figures = (returns_figure(sim_days, real_days_, real_label),
               acf_figure(sim, real, real_label),
               volume_share_figure(sim_days, real_days_, sim, real, real_label),
               block_figure(sim_days, real_days_, sim, real, real_label))
    paths = []
    for fig, name in zip(figures, PLOT_NAMES):
        fig.savefig(out / name, dpi=DPI)
        paths.append(out / name)
    return paths


__all__ = ["DEFAULT_WEIGHTS", "JSON_NAME", "MATCHED_PERIODS", "MarketDay", "MarketFacts",
           "PLOT_NAMES", "REAL_PERIODS", "RealismError", "STATISTICS", "Statistic",
           "autocorrelation", "block_vwap_vs_close_pct", "compare", "daily_block_premiums",
           "distance", "distance_terms", "facts_from_days", "match_period", "nov_dec_shares",
           "period_dates", "plot_realism", "real_days", "real_facts", "report", "return_runs",
           "simulated_days"]
