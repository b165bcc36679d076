"""``cea calibrate``: a scenario's parameters fitted to the real CEA market by the method of
simulated moments, the simulations run in parallel on Ray.

The moments are ``sim.realism``'s stylized facts (the size and memory of daily returns, the
year-end rush, the block segment's share and discount, quiet days, the day's range, the
totals). The objective of one parameter vector θ:

1. run the scenario with θ once for each of the seeds ``cfg.seed``, ``cfg.seed + 1``, ... —
   the same seeds for every θ (common random numbers: two points differ by their parameters,
   not by their luck) — in process, without a ledger (``simulate(cfg)`` with ``ledger=None``;
   ``cfg.ledger`` is only what ``sim.simout.run`` reads to open one);
2. compute each run's facts over the window it is compared in (``Target``: the dates run and
   real period share, as ``cea realism`` compares);
3. take each statistic's median across the seeds (``median_statistics``) and score it against
   the real period's with ``sim.realism.distance`` (the distance of the medians, not the
   median of the distances: one seed's outlier moves neither).

The search (``search``) is derivative-free and deterministic given its own seed: round 1
evaluates the scenario's own values and ``budget − 1`` points of a Latin hypercube over the
whole space; each later round ``budget`` points of a Latin hypercube in a box around the best
point so far, ±25 % of each range in round 2, half as wide each round after. Every simulation
of a round (points × seeds) is one Ray task, all submitted at once.

The space (``Space``): named parameters, each a dotted path into the configuration
(``covered_entity.price_elasticity``) with its bounds; integer or float as the field is,
optionally sampled on a log scale. From a TOML file (``load_space``) or the scenario's default
(``default_space``)::

    [parameters]
    "covered_entity.price_elasticity" = [0.0, 6.0]
    "covered_entity.block_discount_bps" = [0, 1500]
    "covered_entity.act_probability" = [1e-5, 5e-4, "log"]

    [weights]  # optional: sim.realism.distance's weights, by statistic (default 1 or 0)
    range_pct = 0.5

Ray (``ray_session``): a local instance by default (every CPU of the machine, no dashboard,
quiet), or the cluster at ``address`` (``ray://host:10001``, ``auto``); with an address the
project's code is shipped to the cluster as the job's working directory (``runtime_env``
``working_dir``: this checkout, less what ``.gitignore`` and ``SHIPPED_EXCLUDES`` leave out),
and the nodes need the project's dependencies installed for the same Python version. The
shipped copy carries no Numba cache (``.gitignore``): each node's first simulations of a
version of the code compile the engine's kernels (30-60 s) into it. Every float parameter is
kept to ``DIGITS`` significant digits when drawn and never rounded after, so ``best.toml``
and ``calibration.json`` give exactly the runs the distances are of.
"""

from __future__ import annotations

import json
import math
import statistics
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import msgspec
import numpy as np

from . import realism as R
from .simulate import SimConfig, SimConfigError, SimResult, check_config, simulate

#: The files ``write_outputs`` writes.
JSON_NAME, TOML_NAME = "calibration.json", "best.toml"
#: The checkout shipped to a Ray cluster (``runtime_env`` ``working_dir``).
ROOT = Path(__file__).resolve().parents[1]
#: Left out of what is shipped, beside what ``.gitignore`` leaves out.
SHIPPED_EXCLUDES = [".git", "tests", "docs", "**/*.sqlite", "**/*.png"]
#: Round 2 searches ±this share of each range around the best point; each later round half.
FIRST_HALF_WIDTH = 0.25
#: Float parameters are kept to this many significant digits (readable, reproducible).
DIGITS = 6

_GENERIC_SPACE = {
    "covered_entity.act_probability": [1e-5, 5e-4, "log"],
    "covered_entity.price_elasticity": [0.0, 6.0],
    "covered_entity.urgency_power": [0.5, 4.0],
    "covered_entity.block_probability": [0.2, 1.0],
    "covered_entity.block_discount_bps": [0, 1500],
    "day.activity_sigma": [0.0, 2.0],
    "day.quiet_probability": [0.0, 0.4],
    "day.jump_probability": [0.0, 0.1],
    "fundamental.daily_vol_bps": [50, 400],
    "fundamental.mean_reversion_pct": [0, 20],
}
#: Each scenario's default space (``[parameters]`` as in a space file); others: the generic.
DEFAULT_SPACES: dict[str, dict[str, list]] = {
    "first-period": _GENERIC_SPACE,
    "2024": {**_GENERIC_SPACE, "covered_entity.act_probability": [1e-5, 2e-3, "log"],
             "fundamental.daily_vol_bps": [0, 200],
             "fundamental.drift_bps": [-20, 30],  # 2024 rose from 79 to over 100 CNY
             "population.imbalance_pct": [100, 400],  # 172 Mt in May-Dec with one year due
             "day.mood_pct": [0.0, 4.0], "day.turbulence_sigma": [0.0, 1.2]},
}


class CalibrationError(ValueError):
    """The calibration cannot run as asked (a bad space file, period, address, a failed
    simulation): one line saying why."""


# ---------------------------------------------------------------------- the space

@dataclass(frozen=True)
class Parameter:
    """One dimension of the search: the field ``section.field`` of ``SimConfig`` between
    ``low`` and ``high`` (both included), ``kind`` ``int`` or ``float`` as the field is;
    ``log``: sampled uniformly in log(value) (needs low > 0)."""

    name: str
    kind: str
    low: float
    high: float
    log: bool = False

    @property
    def section(self) -> str:
        return self.name.split(".")[0]

    @property
    def field(self) -> str:
        return self.name.split(".")[1]

    def value(self, u: float) -> int | float:
        """The value at ``u`` in [0, 1] of the range (rounded: an integer, or DIGITS
        significant digits), clipped to the bounds."""
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            x = self.low * (self.high / self.low) ** u
        else:
            x = self.low + u * (self.high - self.low)
        x = min(max(x, self.low), self.high)
        if self.kind == "int":
            return int(round(x))
        return float(f"{x:.{DIGITS}g}")

    def unit(self, x: float) -> float:
        """Where ``x`` lies in the range, in [0, 1] (clipped)."""
        x = min(max(float(x), self.low), self.high)
        if self.log:
            u = math.log(x / self.low) / math.log(self.high / self.low)
        else:
            u = (x - self.low) / (self.high - self.low)
        return min(max(u, 0.0), 1.0)

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.kind, "low": self.low, "high": self.high,
                "scale": "log" if self.log else "linear"}


@dataclass(frozen=True)
class Space:
    """The parameters searched, in order, and the distance's weights (``sim.realism``'s
    ``DEFAULT_WEIGHTS`` replaced key by key; empty: the defaults)."""

    parameters: tuple[Parameter, ...]
    weights: dict = field(default_factory=dict)
    source: str = "default"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]


def _field_kind(section: str, name: str, where: str) -> str:
    """``int`` or ``float``: the type of ``SimConfig``'s ``section.name``; CalibrationError
    if there is no such numeric field."""
    sections = {f.name: f.type for f in msgspec.structs.fields(SimConfig)
                if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct)}
    if section not in sections:
        raise CalibrationError(f"{where}: no section {section!r} in the configuration "
                               f"(sections: {', '.join(sections)})")
    fields = {f.name: f.type for f in msgspec.structs.fields(sections[section])}
    if name not in fields:
        raise CalibrationError(f"{where}: no field {name!r} in [{section}] (fields: "
                               f"{', '.join(fields)})")
    kind = fields[name]
    if kind not in (int, float):
        raise CalibrationError(f"{where}: {section}.{name} is not a number, it cannot be "
                               "calibrated")
    return kind.__name__


def _parameter(name: str, bounds, where: str) -> Parameter:
    here = f"{where}: {name!r}"
    if not isinstance(name, str) or name.count(".") != 1:
        raise CalibrationError(f"{here}: a parameter is named section.field, e.g. "
                               "\"covered_entity.price_elasticity\"")
    section, field_name = name.split(".")
    kind = _field_kind(section, field_name, here)
    scale = "linear"
    if isinstance(bounds, list) and len(bounds) == 3 and isinstance(bounds[2], str):
        bounds, scale = bounds[:2], bounds[2]
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b)
            for b in bounds)):
        raise CalibrationError(f"{here}: bounds must be [low, high] numbers, optionally "
                               "with \"log\": [low, high, \"log\"]")
    low, high = float(bounds[0]), float(bounds[1])
    if kind == "int" and (low != int(low) or high != int(high)):
        raise CalibrationError(f"{here}: an integer field needs integer bounds")
    if not low < high:
        raise CalibrationError(f"{here}: low must be below high, not [{bounds[0]}, "
                               f"{bounds[1]}]")
    if scale not in ("linear", "log"):
        raise CalibrationError(f"{here}: the scale is \"log\" or \"linear\", not {scale!r}")
    if scale == "log" and low <= 0:
        raise CalibrationError(f"{here}: a log scale needs low > 0")
    return Parameter(name, kind, low, high, scale == "log")


def parse_space(table: dict, where: str = "space", base: SimConfig | None = None) -> Space:
    """The space of a space file's table (``[parameters]``, optional ``[weights]``);
    each parameter's bounds are checked against ``base`` (default: the defaults) by
    ``check_config`` at both ends. ``CalibrationError`` naming what is wrong."""
    unknown = set(table) - {"parameters", "weights"}
    if unknown:
        raise CalibrationError(f"{where}: unknown table {', '.join(sorted(unknown))} "
                               "(a space file has [parameters] and optionally [weights])")
    params = table.get("parameters")
    if not isinstance(params, dict) or not params:
        raise CalibrationError(f"{where}: no [parameters] table (e.g. "
                               "\"covered_entity.price_elasticity\" = [0.0, 6.0])")
    space = tuple(_parameter(name, bounds, where) for name, bounds in params.items())
    weights = table.get("weights", {})
    if not isinstance(weights, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for v in weights.values()):
        raise CalibrationError(f"{where}: [weights] maps statistics to numbers >= 0")
    unknown = set(weights) - set(R.DEFAULT_WEIGHTS)
    if unknown:
        raise CalibrationError(f"{where}: [weights]: no statistic {', '.join(sorted(unknown))} "
                               f"(known: {', '.join(R.DEFAULT_WEIGHTS)})")
    result = Space(space, dict(weights), where)
    base = base if base is not None else SimConfig()
    for p in space:
        for end in (p.low, p.high):
            value = int(end) if p.kind == "int" else end
            try:
                check_config(configured(base, {p.name: value}))
            except SimConfigError as e:
                raise CalibrationError(f"{where}: {p.name!r} = {value:g} is not a valid "
                                       f"configuration: {e}") from None
    return result


def load_space(path: str | Path, base: SimConfig | None = None) -> Space:
    """The space in the TOML file ``path`` (``parse_space``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise CalibrationError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CalibrationError(f"{path}: not UTF-8 text") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CalibrationError(f"{path}: not valid TOML: {e}") from None
    return parse_space(table, str(path), base)


def default_space(scenario: str | None, base: SimConfig | None = None) -> Space:
    """The scenario's default space (``DEFAULT_SPACES``; the generic one for any other)."""
    table = DEFAULT_SPACES.get(scenario or "", _GENERIC_SPACE)
    return parse_space({"parameters": table}, f"the default space of {scenario or 'the defaults'}",
                       base)


def space_toml(space: Space) -> str:
    """``space`` as a space file (``cea calibrate --print-space``); it reads back as it."""
    lines = ["# cea calibrate --space FILE: each parameter a dotted path into the "
             "configuration,", "# its bounds [low, high] (integer or float as the field is), "
             "\"log\" for a log scale", "[parameters]"]
    for p in space.parameters:
        ends = [int(p.low), int(p.high)] if p.kind == "int" else [p.low, p.high]
        scale = ', "log"' if p.log else ""
        lines.append(f'"{p.name}" = [{ends[0]!r}, {ends[1]!r}{scale}]')
    lines += ["", "# the distance's weights by statistic (sim.realism.STATISTICS), over the "
              "defaults", "[weights]"]
    weights = {**R.DEFAULT_WEIGHTS, **space.weights}
    lines += [f"{name} = {float(w)!r}" for name, w in weights.items()]
    return "\n".join(lines) + "\n"


def configured(cfg: SimConfig, values: dict[str, int | float]) -> SimConfig:
    """``cfg`` with each ``section.field`` of ``values`` replaced (``msgspec.structs.replace``
    on the nested section; nothing else changes)."""
    by_section: dict[str, dict] = {}
    for name, value in values.items():
        section, field_name = name.split(".")
        by_section.setdefault(section, {})[field_name] = value
    return msgspec.structs.replace(cfg, **{
        section: msgspec.structs.replace(getattr(cfg, section), **fields)
        for section, fields in by_section.items()})


def current_values(cfg: SimConfig, space: Space) -> dict[str, int | float]:
    """The configuration's own value of each parameter, clipped to its bounds."""
    out = {}
    for p in space.parameters:
        x = getattr(getattr(cfg, p.section), p.field)
        out[p.name] = p.value(p.unit(x)) if not p.low <= x <= p.high else x
    return out


# ---------------------------------------------------------------------- the moments

def days_of_result(result: SimResult) -> list[R.MarketDay]:
    """A simulation's days as ``sim.realism`` sees them, from the result in memory: the same
    list ``sim.realism.simulated_days`` reads from its output directory (the close, the
    volumes and turnover, each day's listed high and low from its listed trades)."""
    return [R.MarketDay(d.date, d.close, d.high, d.low, d.listed_volume, d.block_volume,
                        d.listed_turnover, d.block_turnover) for d in result.days]


@dataclass(frozen=True)
class Target:
    """What the simulations are compared with: the real ``period``'s days from ``first`` to
    ``last`` (the dates the run and the period share; None, None: no overlap, the whole run
    against the whole period) and their facts."""

    period: str
    period_first: str
    period_last: str
    first: str | None
    last: str | None
    basis: str
    real_days: int
    real: R.MarketFacts

    def window(self, days: list[R.MarketDay]) -> list[R.MarketDay]:
        """The simulated days compared: those from ``first`` to ``last`` (all without)."""
        if self.first is None:
            return days
        return [d for d in days if self.first <= d.date <= self.last]


def run_dates(cfg: SimConfig) -> tuple[str, str]:
    """The first and last trading day the configuration simulates (its calendar)."""
    from engine.tradingdays import TradingCalendar, date_of_day

    from .simulate import trading_days

    days = trading_days(cfg, TradingCalendar.xshg(weekdays_beyond=True))
    return date_of_day(days[0]).isoformat(), date_of_day(days[-1]).isoformat()


def target(cfg: SimConfig, period: str | None = None) -> Target:
    """The comparison ``cea realism`` makes for a run of ``cfg``: ``period`` (None or
    ``auto``: the one the run's dates overlap most), both cut to the dates they share."""
    first, last = run_dates(cfg)
    try:
        if period in (None, "auto"):
            period = R.match_period(first, last)
            if period is None:
                raise CalibrationError(
                    f"the run ({first} .. {last}) does not overlap the real data (periods: "
                    + ", ".join(f"{n} {a} .. {b}" for n, (a, b) in R.REAL_PERIODS.items()
                                if n in R.MATCHED_PERIODS) + "); name one with --period")
        p_first, p_last = R.period_dates(period)
        lo, hi = max(first, p_first), min(last, p_last)
        days = R.real_days(lo, hi) if lo <= hi else []
        if days:
            window = (days[0].date, days[-1].date, "overlap: both cut to the dates they share")
        else:
            days = R.real_days(p_first, p_last)
            window = (None, None, "no overlap: the whole run against the whole period")
        if not days:
            raise CalibrationError(f"the real series has no days in {period}")
        return Target(period, p_first, p_last, *window, len(days), R.facts_from_days(days))
    except R.RealismError as e:
        raise CalibrationError(str(e)) from None


def simulate_point(cfg: SimConfig, values: dict, seed: int,
                   window: Target) -> R.MarketFacts:
    """The facts of one simulation: ``cfg`` with ``values`` and ``seed``, in process and
    without a ledger, over ``window``'s dates (the body of one Ray task)."""
    run = msgspec.structs.replace(configured(cfg, values), seed=seed, ledger=False)
    days = window.window(days_of_result(simulate(run)))
    if not days:
        raise CalibrationError(f"seed {seed}: no simulated day from {window.first} to "
                               f"{window.last}")
    return R.facts_from_days(days)


def median_statistics(facts: list[R.MarketFacts]) -> dict[str, float | int | None]:
    """Each statistic of ``sim.realism.STATISTICS``, its median across ``facts`` (the
    seeds): over the seeds where it is defined, None where more than half do not define it
    (no block trade, too few returns)."""
    out = {}
    for s in R.STATISTICS:
        values = [getattr(f, s.name) for f in facts]
        defined = [v for v in values if v is not None]
        out[s.name] = statistics.median(defined) if 2 * len(defined) >= len(values) and \
            defined else None
    return out


class _Medians:
    """Median statistics as the ``sim.realism`` comparison reads them (by attribute)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)


def statistic_table(medians: dict, window: Target, weights: dict) -> dict[str, dict]:
    """Each statistic: ``simulated`` (the median), ``real``, its ``ratio`` or ``difference``
    (``sim.realism.compare``) and its ``term`` of the distance: how far it still is."""
    sim = _Medians(medians)
    table = R.compare(sim, window.real)
    terms = R.distance_terms(sim, window.real, weights)
    return {name: {**row, "term": terms[name]} for name, row in table.items()}


# ---------------------------------------------------------------------- the search

def latin_hypercube(rng: np.random.Generator, n: int, low: np.ndarray,
                    high: np.ndarray) -> np.ndarray:
    """``n`` points in the box ``low``..``high`` (unit coordinates), one in each of the
    ``n`` strata of every dimension."""
    d = len(low)
    strata = np.stack([rng.permutation(n) for _ in range(d)], axis=1)
    u = (strata + rng.random((n, d))) / n
    return low + u * (high - low)


@dataclass
class Point:
    """One evaluated parameter vector: its values, the round that evaluated it, the
    distance (of the median statistics), each seed's own distance, the medians."""

    index: int
    round: int
    values: dict
    distance: float
    seed_distances: list
    statistics: dict

    def as_dict(self) -> dict:
        return {"index": self.index, "round": self.round, "parameters": self.values,
                "distance": self.distance, "seed_distances": self.seed_distances,
                "statistics": self.statistics}


def search(space: Space, evaluate: Callable[[list[dict]], list[tuple]], budget: int,
           rounds: int, seed: int, start: dict | None = None,
           progress: Callable[[int, list[Point], Point], None] | None = None) -> list[Point]:
    """Minimise over ``space``: ``evaluate(values_list)`` scores a whole round at once,
    returning (distance, seed distances, median statistics) per point, in order. Round 1:
    ``start`` (if given) and Latin-hypercube points over the whole space, ``budget`` in all;
    each later round ``budget`` Latin-hypercube points in a box around the best point so far,
    ±``FIRST_HALF_WIDTH`` of each range, halved each round. A point already evaluated (the
    rounding of integer parameters) is not evaluated again. ``progress(round, points of the
    round, best so far)`` after each round. Returns every point, in the order evaluated;
    the same arguments give the same points (``seed`` drives the search's own generator)."""
    rng = np.random.default_rng(seed)
    params = space.parameters
    d = len(params)
    points: list[Point] = []
    seen: set[tuple] = set()
    best: Point | None = None
    for r in range(1, rounds + 1):
        wanted: list[dict] = []
        if r == 1:
            if start is not None:
                wanted.append(dict(start))
            cube = latin_hypercube(rng, budget - len(wanted), np.zeros(d), np.ones(d))
        else:
            centre = np.array([p.unit(best.values[p.name]) for p in params])
            half = FIRST_HALF_WIDTH * 0.5 ** (r - 2)
            cube = latin_hypercube(rng, budget, np.clip(centre - half, 0, 1),
                                   np.clip(centre + half, 0, 1))
        wanted += [{p.name: p.value(u) for p, u in zip(params, row)} for row in cube]
        batch = []
        for values in wanted:
            key = tuple(values[name] for name in space.names)
            if key not in seen:
                seen.add(key)
                batch.append(values)
        scored = evaluate(batch) if batch else []
        new = [Point(len(points) + i, r, values, dist, seeds, stats)
               for i, (values, (dist, seeds, stats)) in enumerate(zip(batch, scored))]
        points += new
        best = min(points, key=lambda p: (p.distance, p.index))
        if progress is not None:
            progress(r, new, best)
    return points


# ---------------------------------------------------------------------- Ray

@contextmanager
def ray_session(address: str | None = None):
    """Ray, initialised for the block and shut down after it, whatever happens: a local
    instance (``address`` None: every CPU of the machine, no dashboard, logging quiet), or
    the cluster at ``address`` (``ray://host:10001``, ``auto``) with this checkout shipped
    as the job's working directory. ``CalibrationError`` if it cannot start or connect."""
    import logging
    import warnings

    import ray

    quiet = {"logging_level": logging.ERROR, "log_to_driver": False,
             "ignore_reinit_error": True}
    try:
        with warnings.catch_warnings():  # the reason is in the error (a client's time-out)
            warnings.simplefilter("ignore")
            _start_ray(ray, address, quiet)
    except Exception as e:  # noqa: BLE001 - Ray's errors on start are of many kinds
        ray.shutdown()
        where = "a local Ray instance" if address is None else f"Ray at {address}"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CalibrationError(f"cannot start {where}: {first}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _start_ray(ray, address: str | None, quiet: dict) -> None:
    if address is None:
        ray.init(address="local", include_dashboard=False, **quiet)
    else:
        ray.init(address=address, runtime_env={
            "working_dir": str(ROOT), "excludes": SHIPPED_EXCLUDES}, **quiet)


def ray_evaluator(ray, cfg: SimConfig, seeds: list[int], window: Target,
                  weights: dict, done: Callable[[], None] | None = None):
    """``search``'s ``evaluate``: each (point, seed) one Ray task of ``simulate_point``, a
    round's all submitted at once; ``done()`` as each one finishes."""
    task = ray.remote(num_cpus=1)(simulate_point)
    cfg_ref, window_ref = ray.put(cfg), ray.put(window)

    def evaluate(batch: list[dict]) -> list[tuple]:
        refs = [task.remote(cfg_ref, values, s, window_ref) for values in batch for s in seeds]
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                ray.get(ready)  # a failure shows at once
                if done is not None:
                    done()
            facts = ray.get(refs)
        except ray.exceptions.RayTaskError as e:
            for ref in pending:
                ray.cancel(ref, force=True)
            cause = getattr(e, "cause", None)
            if isinstance(cause, (CalibrationError, SimConfigError, R.RealismError)):
                raise CalibrationError(str(cause)) from None
            raise CalibrationError("a simulation failed on Ray: "
                                   + str(cause or e).strip().splitlines()[-1]) from None
        out = []
        for i in range(len(batch)):
            mine = facts[i * len(seeds):(i + 1) * len(seeds)]
            medians = median_statistics(mine)
            out.append((round(R.distance(_Medians(medians), window.real, weights), 6),
                        [round(R.distance(f, window.real, weights), 6) for f in mine],
                        R.rounded(medians)))
        return out

    return evaluate


# ---------------------------------------------------------------------- the calibration

def calibrate(cfg: SimConfig, space: Space, scenario: str | None = None,
              period: str | None = None, budget: int = 40, seeds: int = 5, rounds: int = 3,
              seed: int = 1, address: str | None = None,
              progress: Callable[[int, list[Point], Point], None] | None = None,
              done: Callable[[], None] | None = None) -> dict:
    """Fit ``space``'s parameters of ``cfg`` (the ``scenario``'s configuration) to the real
    ``period`` (``target``) on Ray (``ray_session(address)``): ``search`` with ``budget``
    points a round over ``rounds`` rounds, each point run with ``seeds`` seeds from
    ``cfg.seed``, the search's own generator seeded with ``seed``. Returns the document of
    ``calibration.json`` (``write_outputs``); ``progress`` after each round, ``done`` after
    each simulation."""
    if budget < 1 or seeds < 1 or rounds < 1:
        raise CalibrationError("budget, seeds and rounds must each be at least 1")
    window = target(cfg, period)
    seed_list = [cfg.seed + k for k in range(seeds)]
    start = current_values(cfg, space)
    with ray_session(address) as ray:
        evaluate = ray_evaluator(ray, cfg, seed_list, window, space.weights, done)

        def checked(batch: list[dict]) -> list[tuple]:
            for values in batch:  # a combination out of range fails before it is run
                try:
                    check_config(configured(cfg, values))
                except SimConfigError as e:
                    raise CalibrationError(f"the point {values}: {e}") from None
            return evaluate(batch)

        points = search(space, checked, budget, rounds, seed, start, progress)
    best = min(points, key=lambda p: (p.distance, p.index))
    baseline = points[0]
    # the parameters as simulated (floats to DIGITS significant digits): never rounded
    # again, so that best.toml gives the very runs the distances are of
    return {
        "scenario": scenario,
        "period": window.period, "period_first": window.period_first,
        "period_last": window.period_last,
        "window": {"first": window.first, "last": window.last, "basis": window.basis,
                   "real_days": window.real_days},
        "days": cfg.days, "start": cfg.start, "seeds": seed_list,
        "search": {"method": "Latin hypercube, then Latin hypercubes in a box around the "
                             "best, halved each round", "seed": seed, "budget": budget,
                   "rounds": rounds, "first_half_width": FIRST_HALF_WIDTH},
        "objective": "sim.realism.distance of the median across seeds of each statistic",
        "space": [p.as_dict() for p in space.parameters],
        "space_source": space.source,
        "weights": {**R.DEFAULT_WEIGHTS, **space.weights},
        "baseline": {"parameters": baseline.values, "distance": baseline.distance},
        "best": {"index": best.index, "round": best.round, "parameters": best.values,
                 "distance": best.distance, "seed_distances": best.seed_distances,
                 "statistics": R.rounded(statistic_table(best.statistics, window,
                                                        space.weights))},
        "rounds": [{"round": r, "points": sum(1 for p in points if p.round == r),
                    "best_distance": min(p.distance for p in points if p.round <= r)}
                   for r in range(1, rounds + 1)],
        "points": [p.as_dict() for p in points],
        "files": [JSON_NAME, TOML_NAME],
    }


def best_toml(doc: dict) -> str:
    """``best.toml``: the best values, section by section, over the scenario they were
    calibrated on (``cea simulate --scenario NAME --config best.toml``)."""
    scenario = doc["scenario"]
    use = f"cea simulate{f' --scenario {scenario}' if scenario else ''} --config best.toml"
    window = doc["window"]
    lines = [f"# cea calibrate: the best of {len(doc['points'])} points, distance "
             f"{doc['best']['distance']:.4f} (the scenario's own values: "
             f"{doc['baseline']['distance']:.4f})",
             f"# against the real period {doc['period']} "
             + (f"over {window['first']} .. {window['last']}" if window["first"] else
                "(the whole run)") + f", {doc['days']} simulated days, the median of seeds "
             + ", ".join(str(s) for s in doc["seeds"]),
             f"# over {'the scenario ' + scenario if scenario else 'the defaults'}: {use}"]
    sections: dict[str, list[str]] = {}
    for name, value in doc["best"]["parameters"].items():
        section, field_name = name.split(".")
        sections.setdefault(section, []).append(f"{field_name} = {value!r}")
    for section, assignments in sections.items():
        lines += ["", f"[{section}]"] + assignments
    return "\n".join(lines) + "\n"


def write_outputs(doc: dict, out: str | Path) -> list[Path]:
    """``calibration.json`` and ``best.toml`` into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / JSON_NAME, out / TOML_NAME]
    paths[0].write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    paths[1].write_text(best_toml(doc), encoding="utf-8")
    return paths


__all__ = ["CalibrationError", "DEFAULT_SPACES", "JSON_NAME", "Parameter", "Point", "Space",
           "TOML_NAME", "Target", "best_toml", "calibrate", "configured", "current_values",
           "days_of_result", "default_space", "latin_hypercube", "load_space",
           "median_statistics", "parse_space", "ray_evaluator", "ray_session", "run_dates",
           "search", "simulate_point", "space_toml", "statistic_table", "target",
           "write_outputs"]
