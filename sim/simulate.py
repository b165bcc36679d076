"""``cea simulate``: agent-based trading sessions through the real engine, settled in the ledger.

A simulation is a pure function of its configuration (``SimConfig``, read from TOML) and its
seed: the agents (``sim.agents``) draw every decision from one seeded generator, the engine
is deterministic, so the same configuration gives the same trades, byte for byte.

Each trading day (the XSHG calendar from ``start``) has decision steps every
``60 / steps_per_hour`` minutes through both sessions (09:30-11:30, 13:00-15:00). At each step
the agents see the market as a participant would (last price, best bid and offer, bands,
their own balances and working orders) and send orders; the step's commands go to the engine
as one batch (one jitted call, reservation on), its trades move the agents' positions. At
15:00 the day closes (DAY orders expire, the close is the listed VWAP), its trades and close
are settled into the ledger, and the next day's bands follow from the close.

>>> cfg = SimConfig(days=2, population=Population(covered_entities=40, market_makers=2,
...                 noise_traders=10, institutions=2, individuals=5, block_traders=2))
>>> result = simulate(cfg)
>>> len(result.days), result.summary["trades"] > 0, result.summary["book_crossed_steps"]
(2, True, 0)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from engine import Engine
from engine import batch as B
from engine.accounts import CA_RESERVED, CA_TOTAL, HD_PENDING, HD_RESERVED, HD_TOTAL, RiskConfig
from engine.codes import Action, EventKind, OrderType, Reason, Segment, Side, Stp, \
    TimeInForce
from engine.orderfile import parse_prior_close
from engine.rules import AM_CLOSE_US, AM_OPEN_US, DAY_CLOSE_US, DAY_US, MARKET_DEPTH_LEVELS, \
    PM_OPEN_US
from engine.tradingdays import TradingCalendar, date_of_day, day_of_date
from engine.units import format_fen
from ledger.opening import OpeningBalance, open_balances

from . import agents as A


#: the day conditions' own random stream (``[seed, DAY_STREAM]``): switched off, nothing is
#: drawn from it and the agents' stream is what it always was
DAY_STREAM = 19

class SimConfigError(ValueError):
    """The configuration cannot be used; the message names the field."""


# ---------------------------------------------------------------------- configuration

class Population(msgspec.Struct, forbid_unknown_fields=True):
    """How many agents of each kind. ``source``: ``generator`` (``sim.population``: power
    units whose allocations follow the benchmark formula and whose totals are calibrated to
    the first period's: 847 of 2,162 entities short by 94 Mt a year, scaled to the size
    asked for) or ``simple`` (lognormal positions with the means below, 39 % short)."""

    covered_entities: int = 2000
    market_makers: int = 10
    noise_traders: int = 200
    institutions: int = 40
    individuals: int = 300
    block_traders: int = 8
    source: str = "generator"
    #: with source = simple: mean tonnes a short entity must buy, and a long one has spare,
    #: per compliance year (188 Mt over two years across 847 short entities ~ 111,000 t)
    mean_shortfall: int = 111_000
    mean_surplus: int = 150_000
    #: share of its surplus a long entity offers (the rest it banks)
    long_sell_share_pct: int = 60
    #: with source = generator: the size of a year's shortfall and surplus, % of the first
    #: period's (94 Mt short a year); a tighter allocation than that period's is above 100
    imbalance_pct: int = 100


class CoveredEntity(msgspec.Struct, forbid_unknown_fields=True):
    act_probability: float = 0.0005  # per decision step, far from the deadline
    urgency_days: int = 90  # urgency ramps up over the last 90 calendar days
    urgency_max: float = 6.0  # x6 more active on the deadline, and more aggressive
    aggression_ticks: int = 3  # price offset per unit of urgency above 1 (ticks)
    patience_ticks: int = 4  # far from the deadline they bid this far below the last price
    price_sigma_ticks: int = 4
    lot_min: int = 1_000
    lot_max: int = 50_000
    block_probability: float = 0.5  # afternoon: chance a large need goes to the block book
    block_lot_max: int = 300_000
    #: the urgency ramp's shape: ramp ** power (above 1 the buying bunches up just before
    #: the deadline, as the real deadlines' volume did; 1: linear)
    urgency_power: float = 1.0
    #: price-sensitive supply and demand: an entity with surplus acts (last / value) **
    #: elasticity times as often (sells more as the price rises, banks when it falls), a
    #: short one (value / last) ** (elasticity x (1 - ramp)) (the deadline overrides it); 0 off
    price_elasticity: float = 0.0
    #: their limit prices start this share of the way from the last price to the value
    value_chase_pct: int = 0
    #: block agreements are negotiated this far under the listed price (both sides), bps
    block_discount_bps: int = 0
    #: share of its listed decisions to trade now (a limit priced through the best opposite
    #: price) sent as a targeted take instead: an order it picks in the best five levels
    #: (listed agreement trading, 挂牌协议交易); 0 off
    take_share: float = 0.0
    #: share of its afternoon block decisions negotiated as a block agreement instead
    #: (大宗协议交易, spec §3b): a BLOCK_QUOTE at the same discounted price to an entity with
    #: the opposite need (or the board), answered, countered and accepted or withdrawn step
    #: by step (``sim.negotiate``); 0 off
    negotiate_share: float = 0.0
    #: a party accepts terms within this of its own price (bps); beyond, it counters halfway
    negotiate_tolerance_bps: int = 50
    #: counters on a negotiation before a party withdraws (and steps a board quote waits
    #: unanswered before its maker withdraws it)
    negotiate_rounds: int = 4


class MarketMaker(msgspec.Struct, forbid_unknown_fields=True):
    quote_qty: int = 5_000
    half_spread_ticks: int = 8
    skew_ticks_per_10k: int = 2  # quotes shift down 2 ticks per 10,000 t of long inventory
    inventory_limit: int = 200_000  # no more bids (offers) this far long (short)
    cash: int = 100_000_000  # CNY
    allowances: int = 1_000_000  # t


class NoiseTrader(msgspec.Struct, forbid_unknown_fields=True):
    act_probability: float = 0.01
    ioc_share: float = 0.3
    price_sigma_ticks: int = 30
    qty_min: int = 100
    qty_max: int = 2_000
    fat_finger: float = 0.0
    cash: int = 5_000_000
    allowances: int = 60_000
    #: share of its listed decisions to trade now (a limit priced through the best opposite
    #: price) sent as a targeted take instead: an order it picks in the best five levels
    #: (listed agreement trading, 挂牌协议交易); 0 off
    take_share: float = 0.0


class Individual(msgspec.Struct, forbid_unknown_fields=True):
    act_probability: float = 0.005
    ioc_share: float = 0.2
    price_sigma_ticks: int = 40
    qty_min: int = 10
    qty_max: int = 2_000
    fat_finger: float = 0.01  # share of orders priced outside the band by mistake
    cash: int = 300_000
    allowances: int = 3_000
    #: share of its listed decisions to trade now (a limit priced through the best opposite
    #: price) sent as a targeted take instead: an order it picks in the best five levels
    #: (listed agreement trading, 挂牌协议交易); 0 off
    take_share: float = 0.0


class Institution(msgspec.Struct, forbid_unknown_fields=True):
    act_probability: float = 0.01
    threshold_bps: int = 100  # trade when the price is 1 % or more from their value
    offset_ticks: int = 2  # at least this far through the last price
    chase_pct: int = 30  # and this share of the way to their value
    qty_min: int = 2_000
    qty_max: int = 20_000
    cash: int = 50_000_000
    allowances: int = 300_000
    #: share of its listed decisions to trade now (a limit priced through the best opposite
    #: price) sent as a targeted take instead: an order it picks in the best five levels
    #: (listed agreement trading, 挂牌协议交易); 0 off
    take_share: float = 0.0


class BlockTrader(msgspec.Struct, forbid_unknown_fields=True):
    act_probability: float = 0.02  # per afternoon step
    spread_bps: int = 200  # lots priced within 2 % of the last listed price
    discount_bps: int = 0  # ... around this discount to it
    qty_max: int = 500_000
    cash: int = 300_000_000
    allowances: int = 3_000_000


class Fundamental(msgspec.Struct, forbid_unknown_fields=True):
    """The value institutions trade towards: a daily random walk from the prior close."""

    daily_vol_bps: int = 150
    drift_bps: int = 0
    #: each night it closes this share of its distance to the first prior close (a value
    #: the market keeps coming back to, as the first period's 40-60 CNY range; 0: a walk)
    mean_reversion_pct: int = 0


class Day(msgspec.Struct, forbid_unknown_fields=True):
    """What makes one trading day unlike the next (drawn from a generator of its own, so a
    configuration with all of it off draws nothing and runs as before)."""

    #: lognormal sigma of each day's activity, a factor on every agent's act probability
    activity_sigma: float = 0.0
    #: chance a day is quiet: its activity times ``quiet_activity`` (the real market had
    #: many days with almost no listed trading)
    quiet_probability: float = 0.0
    quiet_activity: float = 0.05
    #: news days: the value of an allowance jumps by ``jump_pct`` % up or down overnight
    jump_probability: float = 0.0
    jump_pct: float = 0.0
    #: the day's mood: today's prices are made this many % (standard deviation) above or
    #: below the value, drawn afresh each day, so a day's overreaction is undone the next
    mood_pct: float = 0.0
    #: turbulence: a persistent factor on the day's moves (the value's step, the jumps, the
    #: mood): calm and turbulent spells. Lognormal, this sigma, AR(1) with this persistence
    turbulence_sigma: float = 0.0
    turbulence_persistence: float = 0.0


class UserAgent(msgspec.Struct, forbid_unknown_fields=True):
    """Your own agent class (``sim.agent.Agent``) trading in the simulation:
    ``[[agents]]`` tables in the TOML file, or ``cea simulate --agent MODULE:CLASS``."""

    agent: str  # MODULE:CLASS, or path/to/file.py:CLASS
    count: int = 1  # accounts, each with its own instance
    name: str = ""  # account name (with count > 1: NAME1, NAME2, ...); default the class name
    account_type: str = "INSTITUTION"  # must be admitted (see ``admitted``)
    cash: int = 10_000_000  # opening cash, CNY
    allowances: int = 100_000  # opening allowances, t
    params: dict = {}  # keyword arguments of the class


class SimConfig(msgspec.Struct, forbid_unknown_fields=True):
    seed: int = 1
    days: int = 250
    start: str = "2024-01-02"  # first trading day on or after this date
    prior_close: str = "70.00"  # CNY: the band reference of the first day
    deadline: str = "2024-12-31"  # surrender deadline; a new compliance year follows it
    steps_per_hour: int = 12  # decision steps per trading hour (every 5 minutes)
    instrument: str = "CEA"
    #: account types admitted to trade (docs/rules.md §10: only covered entities through 2024;
    #: institutions and individuals are a what-if); agents of other types are not created
    admitted: list[str] = msgspec.field(
        default_factory=lambda: ["COVERED_ENTITY", "INSTITUTION", "INDIVIDUAL"])
    fee_bps_listed: int = 0
    fee_bps_block: int = 0
    ledger: bool = True
    plot_day: str = ""  # YYYY-MM-DD for the intraday and depth plots (default: middle day)
    population: Population = msgspec.field(default_factory=Population)
    covered_entity: CoveredEntity = msgspec.field(default_factory=CoveredEntity)
    market_maker: MarketMaker = msgspec.field(default_factory=MarketMaker)
    noise_trader: NoiseTrader = msgspec.field(default_factory=NoiseTrader)
    individual: Individual = msgspec.field(default_factory=Individual)
    institution: Institution = msgspec.field(default_factory=Institution)
    block_trader: BlockTrader = msgspec.field(default_factory=BlockTrader)
    fundamental: Fundamental = msgspec.field(default_factory=Fundamental)
    day: Day = msgspec.field(default_factory=Day)
    agents: list[UserAgent] = []


#: The named scenarios shipped with the package (``sim/scenarios/NAME.toml``).
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIOS.glob("*.toml"))


def _toml_table(path: Path, what: str) -> dict:
    import tomllib

    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise SimConfigError(f"{path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SimConfigError(f"{what}: not valid TOML: {e}") from None


def _merged(base: dict, over: dict) -> dict:
    """``over`` laid on ``base``, table by table (a key of ``over`` replaces ``base``'s)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and \
            isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None, scenario: str | None = None,
                **overrides) -> SimConfig:
    """The configuration: the defaults, then the named ``scenario``'s file (if any), then
    the TOML file ``path`` (what it gives replaces the scenario's, key by key), then
    ``overrides`` (top-level fields, None ignored); checked at once."""
    table: dict = {}
    if scenario is not None:
        if scenario not in scenario_names():
            raise SimConfigError(f"no scenario {scenario!r} (there are: "
                                 f"{', '.join(scenario_names())})")
        table = _toml_table(SCENARIOS / f"{scenario}.toml", f"scenario {scenario}")
    if path is not None:
        table = _merged(table, _toml_table(Path(path), str(path)))
    try:
        cfg = msgspec.convert(table, type=SimConfig)
    except msgspec.ValidationError as e:
        raise SimConfigError(f"{path or 'scenario ' + str(scenario)}: {e}") from None
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        cfg = msgspec.structs.replace(cfg, **changes)
    check_config(cfg)
    return cfg


def parse_date(name: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise SimConfigError(f"{name} must be a date YYYY-MM-DD, not {text!r}") from None


def check_config(cfg: SimConfig) -> None:
    """Raise ``SimConfigError`` naming the first field out of range."""
    from engine.codes import AccountType

    if not 1 <= cfg.days <= 5000:
        raise SimConfigError(f"days must be 1..5000, not {cfg.days}")
    if not 1 <= cfg.steps_per_hour <= 3600:
        raise SimConfigError(f"steps_per_hour must be 1..3600, not {cfg.steps_per_hour}")
    if not 0 <= cfg.seed < 2**63:
        raise SimConfigError(f"seed must be 0..2**63-1, not {cfg.seed}")
    parse_date("start", cfg.start)
    parse_date("deadline", cfg.deadline)
    if cfg.plot_day:
        parse_date("plot_day", cfg.plot_day)
    try:
        parse_prior_close(cfg.prior_close)
    except ValueError as e:
        raise SimConfigError(str(e)) from None
    for name in cfg.admitted:
        if name not in AccountType.__members__:
            raise SimConfigError(f"admitted: {name!r} is not one of "
                                 f"{', '.join(AccountType.__members__)}")
    for name in ("fee_bps_listed", "fee_bps_block"):
        if not 0 <= getattr(cfg, name) <= 1000:
            raise SimConfigError(f"{name} must be 0..1000, not {getattr(cfg, name)}")
    pop = cfg.population
    for name in ("covered_entities", "market_makers", "noise_traders", "institutions",
                 "individuals", "block_traders"):
        if not 0 <= getattr(pop, name) <= 1_000_000:
            raise SimConfigError(f"population.{name} must be 0..1000000")
    if pop.source not in ("simple", "generator"):
        raise SimConfigError(f"population.source must be simple or generator, not "
                             f"{pop.source!r}")
    if not 0 <= pop.long_sell_share_pct <= 100 or pop.mean_shortfall < 0 or \
            pop.mean_surplus < 0 or not 1 <= pop.imbalance_pct <= 1000:
        raise SimConfigError("population: long_sell_share_pct 0..100, means >= 0, "
                             "imbalance_pct 1..1000")
    for section in ("covered_entity", "market_maker", "noise_trader", "individual",
                    "institution", "block_trader"):
        for key, value in msgspec.structs.asdict(getattr(cfg, section)).items():
            if value < 0 or (("probability" in key or "share" in key or key == "fat_finger")
                             and value > 1):
                raise SimConfigError(f"{section}.{key} = {value} is out of range")
        p = getattr(cfg, section)
        if hasattr(p, "qty_min") and not 1 <= p.qty_min <= p.qty_max:
            raise SimConfigError(f"{section}: need 1 <= qty_min <= qty_max")
    d = cfg.day
    if not (0 <= d.quiet_probability <= 1 and 0 <= d.jump_probability <= 1
            and 0 <= d.quiet_activity <= 1 and d.activity_sigma >= 0
            and 0 <= d.jump_pct <= 50 and 0 <= d.mood_pct <= 30
            and 0 <= d.turbulence_sigma <= 3 and 0 <= d.turbulence_persistence < 1):
        raise SimConfigError("day: probabilities and quiet_activity 0..1, activity_sigma >= 0, "
                             "jump_pct 0..50, mood_pct 0..30, turbulence_sigma 0..3, "
                             "turbulence_persistence 0..<1")
    if cfg.covered_entity.urgency_power <= 0:
        raise SimConfigError("covered_entity.urgency_power must be > 0")
    if not 1 <= cfg.covered_entity.lot_min <= cfg.covered_entity.lot_max:
        raise SimConfigError("covered_entity: need 1 <= lot_min <= lot_max")
    if cfg.covered_entity.urgency_max < 1 or cfg.covered_entity.urgency_days < 1:
        raise SimConfigError("covered_entity: urgency_max >= 1 and urgency_days >= 1")
    if cfg.block_trader.qty_max < 100_000 or cfg.covered_entity.block_lot_max < 100_000:
        raise SimConfigError("block lots need qty_max / block_lot_max >= 100000 t")
    user_agent_names(cfg)


def user_agent_names(cfg: SimConfig) -> list[tuple[str, UserAgent]]:
    """Each user agent's account name with its configuration; checks the ``agents`` tables
    (and that each class loads) and raises ``SimConfigError`` naming what is wrong."""
    from .agent import AgentError, load_agent_class

    out, seen = [], set()
    for i, ua in enumerate(cfg.agents):
        where = f"agents[{i}] ({ua.agent})"
        try:
            cls = load_agent_class(ua.agent)
        except AgentError as e:
            raise SimConfigError(str(e)) from None
        if not 1 <= ua.count <= 1000:
            raise SimConfigError(f"{where}: count must be 1..1000, not {ua.count}")
        if ua.account_type not in cfg.admitted:
            raise SimConfigError(f"{where}: account_type {ua.account_type} is not admitted "
                                 f"(admitted: {', '.join(cfg.admitted)})")
        if ua.cash < 0 or ua.allowances < 0:
            raise SimConfigError(f"{where}: cash and allowances must be >= 0")
        base = ua.name or cls.__name__.upper()
        if not base.isalnum() or not base.isascii() or len(base) > 12:
            raise SimConfigError(f"{where}: name {base!r} must be 1-12 letters or digits")
        for k in range(ua.count):
            name = base if ua.count == 1 else f"{base}{k + 1}"
            if name in seen:
                raise SimConfigError(f"{where}: account {name} is named twice")
            seen.add(name)
            out.append((name, ua))
    return out


def config_toml(cfg: SimConfig) -> str:
    """``cfg`` whole as a TOML file (``cea simulate --scenario NAME --print-config``)."""
    data = msgspec.to_builtins(cfg)
    if not data["agents"]:
        del data["agents"]
        return _toml(data) + _AGENTS_EXAMPLE
    return _toml(data)


def default_config_toml() -> str:
    """The defaults as a TOML file (``cea simulate --print-config``); it reads back as the
    defaults.

    >>> msgspec.toml.decode(default_config_toml(), type=SimConfig) == SimConfig()
    True
    """
    data = msgspec.to_builtins(SimConfig())
    del data["agents"]  # none by default: the commented table below shows one
    return _toml(data) + _AGENTS_EXAMPLE


_AGENTS_EXAMPLE = """
# Your own agents (sim.agent.Agent subclasses; docs/agents.md), one table per class:
# [[agents]]
# agent = "docs/examples/my_agent.py:MeanReverter"  # MODULE:CLASS or path/to/file.py:CLASS
# count = 1                     # accounts, each with its own instance
# name = "MR"                   # account name (NAME1, NAME2, ... when count > 1)
# account_type = "INSTITUTION"  # must be admitted
# cash = 10000000               # CNY
# allowances = 100000           # t
# params = { lot = 500 }        # keyword arguments of the class
"""


def _toml(data: dict) -> str:
    def value(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    top = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
              for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


# ---------------------------------------------------------------------- the population

@dataclass
class Covered:
    """The covered entities' side of a simulation: each one's yearly need (t to buy +, to
    sell -), names and opening allowances when the population gives them, and, when a
    compliance period ends on the configured deadline, its period and obligations."""

    need: np.ndarray
    names: list[str] | None
    holdings: np.ndarray | None
    info: dict
    period: str | None = None
    obligations: list = field(default_factory=list)
    emissions_csv: str = ""


def covered_positions(cfg: SimConfig, rng: np.random.Generator) -> Covered:
    """The covered entities' positions (see ``Covered``)."""
    pop = cfg.population
    n = pop.covered_entities
    share = pop.long_sell_share_pct
    if pop.source == "generator":
        return _generated(cfg, n, share)
    short = rng.random(n) < 847 / 2162
    size = rng.lognormal(0.0, 1.0, n)  # mean e^0.5
    mean = np.where(short, pop.mean_shortfall, pop.mean_surplus) / np.exp(0.5)
    position = np.where(short, -1, 1) * np.maximum((size * mean).astype(np.int64), 1)
    return _covered(position, share, None, None, {"source": "simple"})


def _covered(position, share, names, holdings, info) -> Covered:
    # short: buy the whole gap; long: offer a share of the surplus, bank the rest
    need = np.where(position < 0, -position, -(position * share // 100))
    info |= {"short_entities": int((position < 0).sum()),
             "shortfall_t": int(-position[position < 0].sum()),
             "surplus_t": int(position[position > 0].sum()),
             "offered_t": int(-need[need < 0].sum())}
    return Covered(need.astype(np.int64), names, holdings, info)


def _generated(cfg: SimConfig, n: int, share: int) -> Covered:
    """Positions from ``sim.population``: entities hold their free allocation; where a
    compliance period ends on the deadline, each one's obligation follows its rules (the
    20 % cap for coal, gas owing at most its allocation), and the gap is what it buys."""
    from ledger.compliance import PERIODS, UnitEmissions, obligation

    from dataclasses import replace

    from .population import FIRST_PERIOD, SURPLUS_PERMILLE, emission_rows, emissions_csv, \
        generate

    pct = cfg.population.imbalance_pct
    if pct == 100:
        population = generate(entities=n, seed=cfg.seed)
    else:
        # a year's shortfall, and the surplus that meets it, scaled alike
        target = FIRST_PERIOD.scaled(n)
        target = replace(target, shortfall_t=target.shortfall_t * pct // 100)
        low, high = SURPLUS_PERMILLE
        population = generate(entities=n, seed=cfg.seed, targets=target,
                              surplus_permille=(low * pct // 100, high * pct // 100))
    deadline = parse_date("deadline", cfg.deadline)
    period = next((p for p in PERIODS if p.deadline == deadline), None)
    # the generator gives one year; a period of several emission years (the first: 2019 and
    # 2020) owes, and was allocated, for each of them
    years = len(period.emission_years) if period is not None else 1
    period = period.name if period is not None else None
    names = [e.name for e in population.entities]
    allocation = years * np.array([e.allocation for e in population.entities], dtype=np.int64)
    position = allocation - years * np.array([e.verified_emissions
                                              for e in population.entities], dtype=np.int64)
    obligations = []
    rows = [(name, years * verified, years * allocated, kind)
            for name, verified, allocated, kind in emission_rows(population)]
    if period is not None:
        units: dict[str, list] = {}
        for name, verified, allocated, kind in rows:
            units.setdefault(name, []).append(UnitEmissions(kind, verified, allocated))
        obligations = [obligation(name, period, units[name]) for name in sorted(units)]
    if obligations:
        owed = {ob.entity: ob.obligation for ob in obligations}
        position = allocation - np.array([owed[name] for name in names], dtype=np.int64)
    covered = _covered(position, share, names, allocation,
                       {"source": "generator", "compliance_period": period})
    covered.period, covered.obligations = period, obligations
    covered.emissions_csv = emissions_csv(rows)
    return covered


# ---------------------------------------------------------------------- the run

@dataclass
class DayRow:
    date: str
    prior_close: int
    close: int
    listed_low: int  # band
    listed_high: int
    block_low: int
    block_high: int
    listed_volume: int
    block_volume: int
    listed_turnover: int
    block_turnover: int
    high: int | None
    low: int | None
    mean_spread: int | None  # fen, over the steps with both sides quoted


@dataclass
class SimResult:
    config: SimConfig
    agents: A.Agents
    engine: Engine
    days: list[DayRow]
    commands: np.ndarray  # every command sent, in order (COMMAND_DTYPE)
    trades: np.ndarray  # the TRADE event rows
    rejects: np.ndarray  # (command index, reason)
    accepted: np.ndarray  # ACCEPTED event rows
    samples: np.ndarray  # per step: ts, bid, ask, last (0: none)
    depth: dict  # the snapshot for the depth plot
    compliance: list[dict]
    population: dict
    seconds: float
    summary: dict = field(default_factory=dict)
    reports: list = field(default_factory=list)  # ledger.compliance.Report per deadline
    emissions_csv: str = ""  # the covered entities' verified emissions and allocations
    #: the QUOTE and QUOTE_ENDED event rows (negotiated block agreements)
    quotes: np.ndarray = field(default_factory=lambda: np.zeros((0, B.EVENT_WIDTH), np.int64))


def trading_days(cfg: SimConfig, calendar: TradingCalendar) -> list[int]:
    day = day_of_date(parse_date("start", cfg.start))
    out = []
    while len(out) < cfg.days:
        if calendar.is_trading_day(day):
            out.append(day)
        day += 1
    return out


def step_times(steps_per_hour: int) -> np.ndarray:
    """Times of day (µs) of the decision steps in the two sessions."""
    every = 3_600_000_000 // steps_per_hour
    return np.concatenate([np.arange(AM_OPEN_US, AM_CLOSE_US, every),
                           np.arange(PM_OPEN_US, DAY_CLOSE_US, every)])


class _Buffer:
    """Growing int64 row storage (events kept for the output files)."""

    def __init__(self, width: int):
        self.parts: list[np.ndarray] = []
        self.width = width

    def add(self, rows: np.ndarray) -> None:
        if len(rows):
            self.parts.append(rows)

    def array(self, dtype=np.int64) -> np.ndarray:
        if not self.parts:
            return np.zeros((0, self.width), dtype=dtype) if self.width else np.zeros(0, dtype)
        return np.concatenate(self.parts)


def build_agents(cfg: SimConfig, rng: np.random.Generator) -> tuple[A.Agents, Covered]:
    """The configured agents (of the admitted types only) and the covered entities'
    positions and obligations."""
    admitted = set(cfg.admitted)
    pop = cfg.population
    wanted = {A.AgentKind.COVERED_ENTITY: pop.covered_entities,
              A.AgentKind.MARKET_MAKER: pop.market_makers,
              A.AgentKind.NOISE_TRADER: pop.noise_traders,
              A.AgentKind.INSTITUTION: pop.institutions,
              A.AgentKind.INDIVIDUAL: pop.individuals,
              A.AgentKind.BLOCK_TRADER: pop.block_traders}
    # a type the rules do not admit cannot open a trading account: no agents of it
    counts = {k: n if A.ACCOUNT_TYPE[k].name in admitted else 0 for k, n in wanted.items()}
    covered = covered_positions(cfg, rng)
    if not counts[A.AgentKind.COVERED_ENTITY]:
        covered = Covered(covered.need[:0], None, None, covered.info)
    params = {k: msgspec.structs.asdict(getattr(cfg, k)) for k in (
        "covered_entity", "market_maker", "noise_trader", "individual", "institution",
        "block_trader")}
    agents = A.build(counts, covered.need, covered.names, parse_prior_close(cfg.prior_close),
                     params, rng, covered.holdings)
    users = user_agent_names(cfg)
    if users:
        from engine.codes import AccountType

        taken = set(agents.names)
        clash = next((name for name, _ in users if name in taken), None)
        if clash is not None:
            raise SimConfigError(f"agents: account {clash} is a built-in agent's name")
        agents.add_users([name for name, _ in users],
                         [AccountType[ua.account_type] for _, ua in users],
                         [ua.cash * 100 for _, ua in users], [ua.allowances for _, ua in users])
    return agents, covered


def user_agents(cfg: SimConfig, agents: A.Agents):
    """Instances of the configured user agent classes with their agent numbers."""
    from .agent import AgentError, make_agent

    instances, numbers = [], []
    for (name, ua), number in zip(user_agent_names(cfg), agents.of(A.AgentKind.USER).tolist()):
        assert agents.names[number] == name
        try:
            instances.append(make_agent(ua.agent, dict(ua.params)))
        except AgentError as e:
            raise SimConfigError(str(e)) from None
        numbers.append(number)
    return instances, numbers


def simulate(cfg: SimConfig, progress=None, ledger=None) -> SimResult:
    """Run the simulation; ``ledger`` (a ``ledger.Ledger``, accounts not yet open) settles it.

    ``progress(date)`` is called after each day."""
    check_config(cfg)
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    prior = parse_prior_close(cfg.prior_close)
    calendar = TradingCalendar.xshg(weekdays_beyond=True)
    days = trading_days(cfg, calendar)
    agents, cov = build_agents(cfg, rng)
    risk = RiskConfig(fee_bps_listed=cfg.fee_bps_listed, fee_bps_block=cfg.fee_bps_block)
    engine = Engine({cfg.instrument: prior}, calendar=calendar, risk=risk)
    first_day = days[0]
    opening = []
    for i, name in enumerate(agents.names):
        kind = agents.account_type(i)
        engine.open_account(name, kind)
        if agents.cash[i]:
            engine.deposit(name, int(agents.cash[i]))
        if agents.allowances[i]:
            engine.allowance_in(name, int(agents.allowances[i]))
        allocated = cov.holdings is not None and agents.kind[i] == A.AgentKind.COVERED_ENTITY
        # a covered entity's allowances are its free allocation, issued by the registry
        opening.append(OpeningBalance(name, kind, int(agents.cash[i]), {} if allocated else
                                      {cfg.instrument: int(agents.allowances[i])}))
    if ledger is not None:
        open_balances(ledger, opening, first_day - 1)
        if cov.holdings is not None:
            from ledger.allocation import issue_allocations
            from ledger.compliance import compliance_period

            covered_idx = agents.of(A.AgentKind.COVERED_ENTITY).tolist()
            year = compliance_period(cov.period).emission_years[-1] if cov.period else \
                date_of_day(first_day).year
            issue_allocations(ledger, {agents.names[i]: int(agents.allowances[i])
                                       for i in covered_idx if agents.allowances[i] > 0},
                              year, first_day - 1, cfg.instrument)
    if ledger is not None and cov.obligations:
        ledger.record_obligations(cov.obligations)
    bal = engine.balances
    book = engine.book

    def resting(side: int) -> list:
        """What a taker sees: the listed book's best five levels of ``side``, order by order."""
        return book.resting_in_levels(0, Segment.LISTED, side, MARKET_DEPTH_LEVELS)

    n_agents = len(agents)
    # accounts were opened in agent order: an agent's number is its engine account handle
    assert engine.accounts.find(agents.names[-1]) == n_agents - 1
    reports: list = []

    commands, trades, rejects, accepted = _Buffer(0), _Buffer(B.EVENT_WIDTH), _Buffer(2), \
        _Buffer(B.EVENT_WIDTH)
    quote_events = _Buffer(B.EVENT_WIDTH)
    negotiator = None
    if negotiations_configured(cfg):
        from .negotiate import Negotiator

        negotiator = Negotiator(agents.params["covered_entity"], engine)
    samples: list[tuple[int, int, int, int]] = []
    rows: list[DayRow] = []
    compliance: list[dict] = []
    deadline = parse_date("deadline", cfg.deadline)
    fundamental = prior
    turbulence = 0.0
    day_rng = np.random.default_rng([cfg.seed, DAY_STREAM])
    day_params = msgspec.structs.asdict(cfg.day)
    plot_day = day_of_date(parse_date("plot_day", cfg.plot_day)) if cfg.plot_day else \
        days[len(days) // 2]
    depth: dict = {}
    times = step_times(cfg.steps_per_hour)
    depth_step = len(times) * 3 // 4  # mid-afternoon
    n_commands = 0
    next_order = 0
    crossed = 0
    covered = agents.of(A.AgentKind.COVERED_ENTITY)
    year_bought = np.zeros(n_agents, dtype=np.int64)
    year_sold = np.zeros(n_agents, dtype=np.int64)
    orders_names = engine.orders
    from .inprocess import InProcessAgents

    instances, numbers = user_agents(cfg, agents)
    users = InProcessAgents(instances, numbers, orders_names, cfg.instrument, engine.accounts)
    for agent, number in zip(instances, numbers):
        agent.bind(users, agents.names[number], cfg.instrument, cash=int(agents.cash[number]),
                   allowances=int(agents.allowances[number]), seed=cfg.seed)
    if users:
        users.start(bal, first_day * DAY_US + int(times[0]))

    for day in days:
        date = date_of_day(day)
        if date > deadline:  # a new compliance year: report the last one, positions anew
            compliance.append(_compliance_row(deadline, agents, covered, year_bought,
                                              year_sold))
            if ledger is not None and cov.period is not None:
                # the day's first tick rolls the day: yesterday's purchases become usable
                engine.submit_batch(_tick(day * DAY_US + int(step_times(1)[0])))
                reports.append(_surrender(engine, ledger, cov, deadline, compliance[-1]))
                cov.period = None  # one compliance period per simulation
            deadline = deadline.replace(year=deadline.year + 1)
            agents.need[:] = agents.year_need
            year_bought[:] = 0
            year_sold[:] = 0
        days_left = (deadline - date).days
        conditions = A.day_conditions(day_params, day_rng, fundamental, turbulence)
        activity, fundamental = conditions.activity, conditions.fundamental
        turbulence = conditions.turbulence
        last = None
        day_prices: list[np.ndarray] = []
        spreads: list[int] = []
        day_events = _Buffer(B.EVENT_WIDTH)
        band = block_band = None
        prior_close = prior if not rows else rows[-1].close
        day_volume = 0
        for k, tod in enumerate(times):
            ts = day * DAY_US + int(tod)
            if band is None:
                # bands are set when the day opens: open it with a clock tick first
                ev = engine.submit_batch(_tick(ts))
                day_events.add(ev)
                band = engine.band()
                block_band = engine.band(segment=Segment.BLOCK)
            bb, ba = engine.best_bid(), engine.best_ask()
            avail_cash = bal.cash[:n_agents, CA_TOTAL] - bal.cash[:n_agents, CA_RESERVED]
            h = bal.holdings[:n_agents]  # one instrument: holding row == account handle
            sellable = h[:, HD_TOTAL] - h[:, HD_RESERVED] - h[:, HD_PENDING]
            market = A.Market(tod >= PM_OPEN_US, last or prior_close, bb, ba, band,
                              block_band, days_left, conditions.value, avail_cash, sellable,
                              h[:, HD_TOTAL], activity,
                              None if negotiator is None else negotiator.busy(n_agents))
            decided = A.decide(agents, market, rng,
                               lambda ref: book.order_state(ref)[4])
            first = next_order
            cmds, next_order = step_commands(decided, agents, ts, next_order, rng, resting)
            orders_names.add_many([f"o{h}" for h in range(first, next_order)])
            if negotiator is not None and (decided.negotiations or book.negotiations.live):
                # the negotiations' answers and new quotes, after the step's orders
                talk, next_order, quote_ids = negotiator.step(
                    decided.negotiations, agents, market, ts + len(cmds), next_order, rng)
                orders_names.add_many(quote_ids)
                cmds = np.concatenate([cmds, talk]) if len(talk) else cmds
            refused = ()
            if users:
                users.step(engine, bal, ts, last, prior_close, day_volume)
                mine, next_order, refused = users.commands(ts + len(cmds), next_order)
                cmds = np.concatenate([cmds, mine]) if len(mine) else cmds
            if len(cmds):
                ev = engine.submit_batch(cmds)
                commands.add(cmds)
                _absorb(ev, n_commands, trades, rejects, accepted, day_events, quote_events)
                n_commands += len(cmds)
                if users:
                    users.deliver(ev, cmds, refused)
                tr = ev[ev[:, B.KIND] == EventKind.TRADE]
                if len(tr):
                    bought = np.zeros(n_agents, dtype=np.int64)
                    sold = np.zeros(n_agents, dtype=np.int64)
                    np.add.at(bought, tr[:, B.ACCOUNT], tr[:, B.QTY])
                    np.add.at(sold, tr[:, B.ACCOUNT2], tr[:, B.QTY])
                    agents.need[covered] -= bought[covered] - sold[covered]
                    year_bought += bought
                    year_sold += sold
                    listed = tr[tr[:, B.SEGMENT] == Segment.LISTED]
                    if len(listed):
                        last = int(listed[-1, B.PRICE])
                        day_prices.append(listed[:, B.PRICE])
                        day_volume += int(listed[:, B.QTY].sum())
            elif refused:
                users.deliver(np.zeros((0, B.EVENT_WIDTH), np.int64), cmds, refused)
            bb, ba = engine.best_bid(), engine.best_ask()
            if bb and ba:
                if bb[0] >= ba[0]:
                    crossed += 1
                spreads.append(ba[0] - bb[0])
            samples.append((ts, bb[0] if bb else 0, ba[0] if ba else 0, last or 0))
            if day == plot_day and k == depth_step:
                depth = {"time": ts, "bids": engine.depth(side=Side.BUY, levels=15),
                         "asks": engine.depth(side=Side.SELL, levels=15)}
        ev = engine.submit_batch(_tick(day * DAY_US + DAY_CLOSE_US))
        _absorb(ev, n_commands, trades, rejects, accepted, day_events, quote_events)
        closed = ev[ev[:, B.KIND] == EventKind.DAY_CLOSED]
        c = closed[-1]
        if users:
            users.deliver(ev, None)
            users.day_closed(day, int(c[B.DAY_CLOSE]), int(c[B.DAY_LISTED_VOLUME]),
                             int(c[B.DAY_BLOCK_VOLUME]))
        prices = np.concatenate(day_prices) if day_prices else np.zeros(0, np.int64)
        rows.append(DayRow(
            date.isoformat(), int(c[B.DAY_PRIOR_CLOSE]), int(c[B.DAY_CLOSE]), band[0], band[1],
            block_band[0], block_band[1], int(c[B.DAY_LISTED_VOLUME]),
            int(c[B.DAY_BLOCK_VOLUME]), int(c[B.DAY_LISTED_TURNOVER]),
            int(c[B.DAY_BLOCK_TURNOVER]), int(prices.max()) if len(prices) else None,
            int(prices.min()) if len(prices) else None,
            int(round(sum(spreads) / len(spreads))) if spreads else None))
        if ledger is not None:
            ledger.settle_events(day_events.array(), engine.accounts.name, orders_names.name,
                                 [cfg.instrument])
        # the fundamental drifts overnight (institutions trade towards it)
        fundamental = A.next_value(fundamental, prior, msgspec.structs.asdict(cfg.fundamental),
                                   rng, conditions.scale)
        if progress is not None:
            progress(date)
    if days and date_of_day(days[-1]) >= deadline:
        compliance.append(_compliance_row(deadline, agents, covered, year_bought, year_sold))
        if ledger is not None and cov.period is not None:
            # the run ends on the deadline: the surrender is due now (a run that goes on
            # past it surrenders on its next day, above); the last day's purchases count
            engine.submit_batch(_tick((days[-1] + 1) * DAY_US + int(step_times(1)[0])))
            reports.append(_surrender(engine, ledger, cov, deadline, compliance[-1]))
    if users:
        users.refresh(bal, days[-1] * DAY_US + DAY_CLOSE_US)
    result = SimResult(cfg, agents, engine, rows, commands.array(B.COMMAND_DTYPE),
                       trades.array(), rejects.array(), accepted.array(),
                       np.array(samples, dtype=np.int64).reshape(-1, 4), depth, compliance,
                       cov.info, time.perf_counter() - t0, reports=reports,
                       emissions_csv=cov.emissions_csv, quotes=quote_events.array())
    result.summary = summarize(result, crossed)
    return result


def _tick(ts: int) -> np.ndarray:
    cmd = B.empty_commands(1)
    cmd["ts"] = ts
    cmd["action"] = Action.TICK
    return cmd


#: the sides of the book's levels a taker of each side looks at
_OPPOSITE = {int(Side.BUY): int(Side.SELL), int(Side.SELL): int(Side.BUY)}


@dataclass
class Takes:
    """A step's resolved take intents: the TAKE rows to send (``target``: the order handle
    taken from) and the limit orders sent instead where there was nothing to take."""

    agent: np.ndarray
    side: np.ndarray
    target: np.ndarray
    qty: np.ndarray
    instead: tuple  # (agent, side, tif, price, qty, keep) of the limit orders instead


def resolve_takes(intents: list[tuple], resting, cancelled) -> Takes:
    """Each take intent (``sim.agents.Orders.take``) against the listed book as its taker
    sees it when the take arrives: ``resting(side)`` is the book's best five levels of
    ``side`` (``(order, price, open, account)`` in priority order, as
    ``book.resting_in_levels`` gives them), less the orders of ``cancelled`` (the step's
    cancels, which arrive first). A buyer takes from the lowest ask at or under its limit
    that is not its own (a seller from the highest bid), the order within that level its
    ``pick`` falls on (any order of a level, no time priority), for its quantity or that
    order's open quantity if less. Where no order qualifies it sends its limit order
    instead.

    Two buyers (agents 3 and 2; the asks as the book shows them, by side):

    >>> asks = {int(Side.SELL): [(7, 6000, 300, 2), (8, 6000, 200, 3), (5, 6010, 100, 4)]}
    >>> intents = [(np.array([3, 2]), np.array([1, 1]), np.array([3, 3]),
    ...             np.array([6010, 5990]), np.array([500, 50]), np.array([0.9, 0.2]),
    ...             np.array([True, True]))]
    >>> t = resolve_takes(intents, asks.__getitem__, set())
    >>> t.target.tolist(), t.qty.tolist(), t.instead[0].tolist()
    ([7], [300], [2])

    (agent 3 takes 300 t of order 7, not its own 8; nothing is asked at or under agent 2's
    5990: it sends its limit order instead.)
    """
    cat = lambda k: np.concatenate([part[k] for part in intents])  # noqa: E731
    agent, side, tif, limit, qty, pick, keep = (cat(k) for k in range(7))
    books: dict[int, list] = {}
    taken = np.zeros(len(agent), dtype=bool)
    target = np.zeros(len(agent), dtype=np.int64)
    size = np.zeros(len(agent), dtype=np.int64)
    for i, (a, sd, lim, q, u) in enumerate(zip(agent.tolist(), side.tolist(),
                                               limit.tolist(), qty.tolist(), pick.tolist())):
        other = _OPPOSITE[sd]
        if other not in books:
            levels: dict[int, list] = {}
            for order, price, open_qty, account in resting(other):
                if order not in cancelled:
                    levels.setdefault(price, []).append((order, open_qty, account))
            books[other] = list(levels.items())  # best price first
        for price, orders in books[other]:
            if (price > lim) if sd == Side.BUY else (price < lim):
                break  # beyond its limit: nothing further will do
            mine = [o for o in orders if o[2] != a and o[1] > 0]
            if mine:
                order, open_qty, _ = mine[int(u * len(mine))]
                taken[i], target[i], size[i] = True, order, min(q, open_qty)
                break
    rest = ~taken
    return Takes(agent[taken], side[taken], target[taken], size[taken],
                 (agent[rest], side[rest], tif[rest], limit[rest], qty[rest], keep[rest]))


def step_commands(d: A.Orders, agents: A.Agents, ts: int, next_order: int,
                  rng: np.random.Generator, resting=None) -> tuple[np.ndarray, int]:
    """The step's commands (``COMMAND_DTYPE``, account = agent number, order ids
    ``o<handle>`` with handles from ``next_order``): cancels, then the new orders and takes
    in a random arrival order, each a microsecond after the last. Agents waiting for their
    working order's handle get it. Take intents are resolved against ``resting`` (see
    ``resolve_takes``; needed if there are any). Returns the commands and the next free
    handle."""
    cat = A.Orders.cat
    c_agent, c_order = cat(d.cancel_agent), cat(d.cancel_order)
    agent, side, tif, price, qty = cat(d.agent), cat(d.side), cat(d.tif), cat(d.price), \
        cat(d.qty)
    n_take = 0
    if d.takes:
        if resting is None:
            raise SimConfigError("take_share > 0 needs the book's resting orders (in-process "
                                 "runs only)")
        takes = resolve_takes(d.takes, resting, set(c_order.tolist()))
        n_take = len(takes.agent)
        i_agent, i_side, i_tif, i_price, i_qty, i_keep = takes.instead
        if len(i_agent):
            # the limit orders sent instead; the ones that become working orders wait too
            agents.working[i_agent[i_keep], i_side[i_keep] - 1] = -2
            agent, side, tif, price, qty = (np.concatenate([x, y]) for x, y in (
                (agent, i_agent), (side, i_side), (tif, i_tif), (price, i_price),
                (qty, i_qty)))
        if n_take:
            # the takes arrive among the new orders: NEW-like rows, the target in ``price``
            agent, side, price, qty = (np.concatenate([x, y]) for x, y in (
                (agent, takes.agent), (side, takes.side), (price, takes.target),
                (qty, takes.qty)))
            tif = np.concatenate([tif, np.full(n_take, int(TimeInForce.IOC), np.int64)])
    n_cancel, n_new = len(c_agent), len(agent)
    cmds = B.empty_commands(n_cancel + n_new)
    if not len(cmds):
        return cmds, next_order
    cmds["ts"] = ts + np.arange(len(cmds))
    cmds["account"][:n_cancel] = c_agent
    cmds["order"][:n_cancel] = c_order
    cmds["action"][:n_cancel] = Action.CANCEL
    if n_new:
        is_take = np.arange(n_new) >= n_new - n_take
        perm = rng.permutation(n_new)
        agent, side, tif, price, qty = agent[perm], side[perm], tif[perm], price[perm], qty[perm]
        is_take = is_take[perm]
        handles = np.arange(next_order, next_order + n_new)
        new = slice(n_cancel, None)
        cmds["account"][new] = agent
        cmds["order"][new] = handles
        cmds["action"][new] = np.where(is_take, int(Action.TAKE), int(Action.NEW))
        cmds["side"][new] = side
        cmds["type"][new] = np.where(is_take, int(OrderType.TAKE), int(OrderType.LIMIT))
        cmds["tif"][new] = tif
        cmds["stp"][new] = Stp.CANCEL_NEWEST
        cmds["price"][new] = price  # a take's: its target (B.TAKE_TARGET)
        cmds["qty"][new] = qty
        # the agents waiting for their working order's handle (marked -2) get it
        col = side - 1
        waiting = (agents.working[agent, col] == -2) & ~is_take
        agents.working[agent[waiting], col[waiting]] = handles[waiting]
        next_order += n_new
    return cmds, next_order


def _absorb(ev, offset, trades, rejects, accepted, day_events, quotes=None) -> None:
    kind = ev[:, B.KIND]
    if quotes is not None:
        quotes.add(ev[(kind == EventKind.QUOTE) | (kind == EventKind.QUOTE_ENDED)])
    trades.add(ev[kind == EventKind.TRADE])
    rj = ev[kind == EventKind.REJECTED]
    if len(rj):
        rejects.add(np.stack([rj[:, B.CMD] + offset, rj[:, B.REASON]], axis=1))
    accepted.add(ev[kind == EventKind.ACCEPTED])
    day_events.add(ev[(kind == EventKind.TRADE) | (kind == EventKind.DAY_CLOSED)])


def _surrender(engine: Engine, ledger, cov: Covered, deadline: dt.date, row: dict):
    """Each covered entity surrenders what it holds of its obligation, in the engine and in
    the ledger, dated the deadline (the registry books it overnight after the deadline's
    last trading day), then the period's compliance report. Adds its figures to ``row``."""
    from ledger.compliance import compliance_report

    instrument = engine.instruments[0]
    bal = engine.balances
    day = day_of_date(deadline)
    for ob in cov.obligations:
        handle = engine.accounts.find(ob.entity)
        tonnes = min(ob.obligation, bal.sellable(handle, 0))
        if tonnes > 0:
            engine.allowance_out(ob.entity, tonnes, instrument)
            ledger.surrender(ob.entity, cov.period, cea=tonnes, ref=f"simulate:{ob.entity}",
                             day=day, instrument=instrument)
    report = compliance_report(ledger, cov.period, cov.obligations)
    statuses = [e.status for e in report.entities]
    row.update({
        "period": report.period,
        "compliant": statuses.count("COMPLIANT"), "partial": statuses.count("PARTIAL"),
        "short": statuses.count("SHORT"),
        "shortfall_after_surrender_t": sum(e.shortfall for e in report.entities),
        "penalty_regime": report.regime.name,
        "average_price": format_fen(report.average_price) if report.average_price else None,
        "penalty_min_cny": format_fen(sum(e.penalty_min or 0 for e in report.entities)),
        "penalty_max_cny": format_fen(sum(e.penalty_max or 0 for e in report.entities)),
    })
    return report


def _compliance_row(deadline, agents, covered, bought, sold) -> dict:
    need = agents.year_need[covered]
    short = need > 0
    got = np.minimum(bought[covered] - sold[covered], need)
    return {"deadline": deadline.isoformat(), "short_entities": int(short.sum()),
            "shortfall_t": int(need[short].sum()),
            "bought_by_short_t": int(np.maximum(got[short], 0).sum()),
            "fully_covered": int((short & (agents.need[covered] <= 0)).sum())}


def summarize(r: SimResult, crossed: int = 0) -> dict:
    trades = r.trades
    listed = trades[trades[:, B.SEGMENT] == Segment.LISTED] if len(trades) else trades
    block = trades[trades[:, B.SEGMENT] == Segment.BLOCK] if len(trades) else trades
    closes = [d.close for d in r.days]
    spreads = [d.mean_spread for d in r.days if d.mean_spread is not None]
    reasons = np.bincount(r.rejects[:, 1], minlength=32) if len(r.rejects) else np.zeros(32)
    checksum = hashlib.sha256()
    if len(trades):
        cols = [B.TRADE_ID, B.TS, B.SEGMENT, B.PRICE, B.QTY, B.ORDER, B.ORDER2, B.ACCOUNT,
                B.ACCOUNT2, B.SIDE]
        checksum.update(np.ascontiguousarray(trades[:, cols]).tobytes())
    out = {
        "seed": r.config.seed,
        "days": len(r.days),
        "first_day": r.days[0].date if r.days else None,
        "last_day": r.days[-1].date if r.days else None,
        "agents": r.agents.counts(),
        "population": r.population,
        "commands": int(len(r.commands)),
        "orders": int((r.commands["action"] == Action.NEW).sum()),
        "cancels": int((r.commands["action"] == Action.CANCEL).sum()),
        "trades": int(len(trades)),
        "listed_volume_t": int(listed[:, B.QTY].sum()) if len(listed) else 0,
        "block_volume_t": int(block[:, B.QTY].sum()) if len(block) else 0,
        "turnover_cny": format_fen(int((trades[:, B.PRICE] * trades[:, B.QTY]).sum())
                             if len(trades) else 0),
        "first_close": format_fen(closes[0]) if closes else None,
        "last_close": format_fen(closes[-1]) if closes else None,
        "min_close": format_fen(min(closes)) if closes else None,
        "max_close": format_fen(max(closes)) if closes else None,
        "mean_spread_cny": format_fen(round(sum(spreads) / len(spreads))) if spreads else None,
        "rejects": {Reason(i).name: int(n) for i, n in enumerate(reasons.tolist()) if n},
        "compliance": r.compliance,
        "user_agents": user_agent_summary(r),
        "book_crossed_steps": crossed,
        "trade_checksum": checksum.hexdigest(),
        "seconds": round(r.seconds, 2),
    }
    if takes_configured(r.config):
        out["takes"] = take_summary(r)
    if negotiations_configured(r.config):
        out["negotiations"] = negotiation_summary(r)
    return out


#: the configuration's tables with a ``take_share``
TAKE_SECTIONS = ("covered_entity", "noise_trader", "individual", "institution")


def takes_configured(cfg: SimConfig) -> bool:
    """Whether any agent kind sends targeted takes (a ``take_share`` above 0)."""
    return any(getattr(cfg, section).take_share > 0 for section in TAKE_SECTIONS)


def take_summary(r: SimResult) -> dict:
    """``summary.json``'s ``takes``: TAKE commands sent, their trades and tonnes (each take
    trades once, at its target's price, as the aggressor), their share of the listed volume,
    and their rejects by reason."""
    cmds, trades = r.commands, r.trades
    is_take = cmds["action"] == Action.TAKE
    volume = n_trades = listed = 0
    if len(trades):
        aggressor = np.where(trades[:, B.SIDE] == Side.BUY, trades[:, B.ORDER],
                             trades[:, B.ORDER2])
        mine = np.isin(aggressor, cmds["order"][is_take])
        n_trades, volume = int(mine.sum()), int(trades[mine, B.QTY].sum())
        listed = int(trades[trades[:, B.SEGMENT] == Segment.LISTED, B.QTY].sum())
    rejects: dict[str, int] = {}
    rows = r.rejects[r.rejects[:, 0] >= 0] if len(r.rejects) else r.rejects
    for i, reason in rows.tolist():
        if is_take[i]:
            name = Reason(reason).name
            rejects[name] = rejects.get(name, 0) + 1
    return {"sent": int(is_take.sum()), "trades": n_trades, "volume_t": volume,
            "listed_volume_share_pct": round(100 * volume / listed, 2) if listed else 0.0,
            "rejects": dict(sorted(rejects.items()))}


def negotiations_configured(cfg: SimConfig) -> bool:
    """Whether covered entities negotiate block agreements (a ``negotiate_share`` above 0)."""
    return cfg.covered_entity.negotiate_share > 0


_NEGOTIATION_ACTIONS = (Action.BLOCK_QUOTE, Action.BLOCK_COUNTER, Action.BLOCK_ACCEPT,
                        Action.BLOCK_WITHDRAW)


def negotiated_trades(r: SimResult) -> np.ndarray:
    """The TRADE rows of accepted negotiations (BLOCK, both order columns the quote)."""
    t = r.trades
    if not len(t):
        return t
    return t[(t[:, B.SEGMENT] == Segment.BLOCK) & (t[:, B.ORDER] == t[:, B.ORDER2])]


def negotiation_summary(r: SimResult) -> dict:
    """``summary.json``'s ``negotiations``: BLOCK_* commands sent by action; quotes made
    (addressed and public), counters, how the quotes ended (accepted, withdrawn, expired);
    the negotiated tonnes and their share of the block volume; their VWAP, and its average
    over tonnes against each day's close (%, as ``cea realism``'s block figure); the
    rejects of BLOCK_* commands by reason."""
    from engine.codes import QuoteEnd

    cmds, q = r.commands, r.quotes
    action = cmds["action"]
    sent = {Action(a).name: int((action == a).sum()) for a in _NEGOTIATION_ACTIONS}
    made = q[(q[:, B.KIND] == EventKind.QUOTE) & (q[:, B.QUOTE_ACTION] == Action.BLOCK_QUOTE)]
    counters = int(((q[:, B.KIND] == EventKind.QUOTE)
                    & (q[:, B.QUOTE_ACTION] == Action.BLOCK_COUNTER)).sum())
    ended = q[q[:, B.KIND] == EventKind.QUOTE_ENDED]
    how = {e.name.lower(): int((ended[:, B.QUOTE_END] == e).sum()) for e in QuoteEnd}
    t = negotiated_trades(r)
    volume = int(t[:, B.QTY].sum()) if len(t) else 0
    turnover = int((t[:, B.PRICE] * t[:, B.QTY]).sum()) if len(t) else 0
    block = int(r.trades[r.trades[:, B.SEGMENT] == Segment.BLOCK, B.QTY].sum()) \
        if len(r.trades) else 0
    close = {day_of_date(dt.date.fromisoformat(d.date)): d.close for d in r.days}
    vs_close = None
    if volume:
        ratio = [(p / close[ts // DAY_US] - 1) * qty for p, qty, ts in zip(
            t[:, B.PRICE].tolist(), t[:, B.QTY].tolist(), t[:, B.TS].tolist())]
        vs_close = round(100 * sum(ratio) / volume, 2)
    rejects: dict[str, int] = {}
    rows = r.rejects[r.rejects[:, 0] >= 0] if len(r.rejects) else r.rejects
    for i, reason in rows.tolist():
        if action[i] in _NEGOTIATION_ACTIONS:
            name = Reason(reason).name
            rejects[name] = rejects.get(name, 0) + 1
    return {"sent": sent, "quotes": int(len(made)),
            "addressed": int((made[:, B.QUOTE_COUNTERPARTY] >= 0).sum()),
            "public": int((made[:, B.QUOTE_COUNTERPARTY] < 0).sum()),
            "counters": counters, **how, "trades": int(len(t)), "volume_t": volume,
            "block_volume_share_pct": round(100 * volume / block, 2) if block else 0.0,
            "vwap_cny": format_fen((2 * turnover + volume) // (2 * volume)) if volume else None,
            "vwap_vs_close_pct": vs_close,
            "rejects": dict(sorted(rejects.items()))}


def agent_results(r: SimResult) -> list[dict]:
    """Per agent: orders, trades, tonnes bought and sold, opening and closing cash (fen) and
    allowances (t), fees (fen) and P&L (fen) marked to the last close: the change in cash
    plus the change in allowances at the last close (allowances surrendered count as
    spent)."""
    n = len(r.agents)
    bal = r.engine.balances
    cmds, trades = r.commands, r.trades
    sent = (cmds["action"] == Action.NEW) | (cmds["action"] == Action.TAKE) | \
        (cmds["action"] == Action.BLOCK_QUOTE)
    orders = np.bincount(cmds["account"][sent], minlength=n)[:n]
    if len(trades):
        buyer, seller, qty = trades[:, B.ACCOUNT], trades[:, B.ACCOUNT2], trades[:, B.QTY]
        n_trades = np.bincount(buyer, minlength=n)[:n] + np.bincount(seller, minlength=n)[:n]
        bought = np.bincount(buyer, weights=qty, minlength=n)[:n].astype(np.int64)
        sold = np.bincount(seller, weights=qty, minlength=n)[:n].astype(np.int64)
    else:
        n_trades = bought = sold = np.zeros(n, dtype=np.int64)
    fees = np.zeros(n, dtype=np.int64)
    if len(trades) and (r.config.fee_bps_listed or r.config.fee_bps_block):
        from engine.accounts import fee

        for t in trades.tolist():
            bps = r.config.fee_bps_listed if t[B.SEGMENT] == Segment.LISTED else \
                r.config.fee_bps_block
            f = fee(t[B.PRICE] * t[B.QTY], bps)
            fees[t[B.ACCOUNT]] += f
            fees[t[B.ACCOUNT2]] += f
    mark = r.days[-1].close if r.days else 0
    out = []
    for i, name in enumerate(r.agents.names):
        cash, held = int(bal.cash[i, CA_TOTAL]), int(bal.holdings[i, HD_TOTAL])
        opening_cash, opening_held = int(r.agents.cash[i]), int(r.agents.allowances[i])
        out.append({
            "agent": name, "kind": A.AgentKind(int(r.agents.kind[i])).name,
            "account_type": r.agents.account_type(i).name, "orders": int(orders[i]),
            "trades": int(n_trades[i]), "bought_t": int(bought[i]), "sold_t": int(sold[i]),
            "opening_cash": opening_cash, "cash": cash, "opening_allowances": opening_held,
            "allowances": held, "fees": int(fees[i]), "last_close": mark,
            "pnl": cash - opening_cash + (held - opening_held) * mark})
    return out


def user_agent_summary(r: SimResult) -> list[dict]:
    """``summary.json``'s ``user_agents``: each user agent's class, activity and P&L."""
    users = r.agents.of(A.AgentKind.USER).tolist()
    if not users or r.engine is None:  # via the server: from the sessions (sim.viaserver)
        return []
    classes = [ua.agent for _, ua in user_agent_names(r.config)]
    rows = agent_results(r)
    return [{"name": rows[i]["agent"], "class": cls, "orders": rows[i]["orders"],
             "trades": rows[i]["trades"],
             "position_t": rows[i]["allowances"] - rows[i]["opening_allowances"],
             "pnl_cny": format_fen(rows[i]["pnl"])} for i, cls in zip(users, classes)]


__all__ = ["SimConfig", "SimConfigError", "SimResult", "UserAgent", "agent_results", "load_config",
           "simulate"]
