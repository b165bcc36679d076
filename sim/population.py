"""A seeded synthetic population of covered entities, calibrated to the first period.

``generate(entities, seed, year)`` draws power plants (units with types, capacities, power
and heat supplied, cooling, load rate), computes each entity's free allocation with
``ledger.allocation`` and gives it verified emissions, so that for the default size the
totals match the published first-period figures:

- 2,162 covered entities (docs/rules.md §10) [verified in source]/[secondary source];
- about 4.5 Gt of covered emissions per year (issue 8; ICAP) [secondary source];
- 847 entities short of allowances by 188 Mt in total (issue 8, the MEE first-period
  report as quoted there; not in the other sources) [secondary source, not re-checked].

ASSUMPTIONS [our modelling choice]: the 188 Mt is the shortfall over the two-year first
period, split evenly, so one year's population is short by 94 Mt; the same 847 entities are
short each year; gas entities are never short (their obligation is capped at their
allocation, docs/rules.md §12); for another size N the entity-count, emissions and shortfall
targets scale by N / 2,162 (rounded half up; no short entity, no shortfall). ``year``
chooses the benchmarks only: the targets are the first-period figures for every year.

How the totals are hit (our modelling choice, not a model of plant physics): the
fleet is drawn from the archetypes below, the short entities are picked (small and
unconventional coal first, at random), each long entity draws a surplus of 0-8 % of its
allocation and each short one a weight for its share of the shortfall; then every unit's
power and heat supplied is scaled by one common factor so that the allocations make total
emissions come out at the target (to rounding: a few hundred tonnes), and the shortfall is
apportioned to the short entities exactly (largest remainder; each at least 1 t and at
most half its allocation). Verified
emissions = allocation + shortfall (short) or allocation - surplus (long).

Randomness: one ``numpy.random.Generator(PCG64(seed))``, integer draws only, in a fixed
order, so a seed gives the same population (and the same CSV bytes) everywhere.

>>> pop = generate(entities=20, seed=1)
>>> t = pop.totals()
>>> t.entities, t.short_entities, t.shortfall == sum(e.shortfall for e in pop.entities)
(20, 8, True)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.units import format_fen

from ledger.allocation import (MAX_HOURS, AllocationError, Unit, UnitType,
                               allocate_entity, allocate_unit, benchmarks_for, exact_fraction)


class PopulationError(ValueError):
    """Bad arguments or a bad population file."""


# ---------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Targets:
    """What a population of ``entities`` entities should add up to (one year)."""

    entities: int = 2162
    emissions_t: int = 4_500_000_000
    short_entities: int = 847
    shortfall_t: int = 94_000_000  # 188 Mt over the two-year first period, halved

    def scaled(self, entities: int) -> "Targets":
        """The targets for ``entities`` entities: each scaled by entities / self.entities,
        rounded half up; no shortfall without a short entity.

        >>> FIRST_PERIOD.scaled(1081)
        Targets(entities=1081, emissions_t=2250000000, short_entities=424, shortfall_t=47000000)
        """
        def scale(x: int) -> int:
            return (2 * x * entities + self.entities) // (2 * self.entities)

        short = scale(self.short_entities)
        return Targets(entities, scale(self.emissions_t), short,
                       scale(self.shortfall_t) if short else 0)


FIRST_PERIOD = Targets()


# ---------------------------------------------------------------------------- archetypes


@dataclass(frozen=True)
class Archetype:
    """A kind of covered entity, and the ranges its units are drawn from (uniform, integer,
    inclusive). All values are [our modelling choice], chosen so the fleet resembles
    China's 2019 power sector (about 1,000 GW of coal, ~4,400 full-load hours) before the
    calibration scales the supplies."""

    name: str
    share_permille: int  # of the entities
    unit_type: UnitType
    unit_count_weights: tuple[int, ...]  # weight of 1, 2, ... units
    capacities_mw: tuple[int, ...]  # drawn uniformly
    hours: tuple[int, int]  # full-load hours of supply
    own_use_permille: tuple[int, int]  # generated but not supplied
    air_cooled_permille: int
    chp_permille: int  # chance a unit supplies heat
    heat_ratio_permille: tuple[int, int]  # heat-supply ratio of a CHP unit
    load_permille: tuple[int, int]  # load rate, in steps of 0.1 %
    short_bonus: int  # priority to be short; -1: never short


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype("large coal", 190, UnitType.COAL_CONVENTIONAL_ABOVE_300MW, (30, 45, 20, 5),
              (600, 630, 660, 1000), (3800, 5200), (40, 60), 250, 300, (20, 150), (600, 920), 0),
    Archetype("small coal", 610, UnitType.COAL_CONVENTIONAL_300MW_AND_BELOW, (35, 45, 20),
              (25, 50, 60, 100, 135, 150, 200, 300, 330, 350), (3500, 5500), (50, 80), 200, 700,
              (50, 450), (550, 900), 300_000),
    Archetype("unconventional coal", 100, UnitType.COAL_UNCONVENTIONAL, (60, 40),
              (50, 135, 150, 300), (4000, 6000), (70, 100), 200, 500, (50, 300), (600, 900),
              300_000),
    Archetype("gas", 100, UnitType.GAS, (45, 35, 20), (180, 250, 390), (2000, 3500), (20, 40),
              300, 400, (50, 300), (500, 900), -1),
)

#: a long entity's surplus as a share of its allocation, permille, uniform
SURPLUS_PERMILLE = (0, 80)
#: a short entity's weight for its share of the shortfall, permille; 5 % draw the tail
SHORT_WEIGHT_PERMILLE, SHORT_TAIL_PERMILLE, SHORT_TAIL_CHANCE = (200, 1800), (3000, 6000), 50
#: no entity is short by more than this share of its allocation
MAX_SHORT_SHARE = Fraction(1, 2)


# ---------------------------------------------------------------------------- the population


@dataclass(frozen=True)
class Entity:
    """A covered entity with its units, allocation and verified emissions (tonnes)."""

    name: str
    sector: str
    units: tuple[Unit, ...]
    allocation: int
    verified_emissions: int

    @property
    def position(self) -> int:
        """Compliance position: allocation - verified emissions (negative: short)."""
        return self.allocation - self.verified_emissions

    @property
    def shortfall(self) -> int:
        return max(0, -self.position)

    @property
    def is_short(self) -> bool:
        return self.position < 0


@dataclass(frozen=True)
class Totals:
    entities: int
    units: int
    capacity_mw: int
    verified_emissions: int
    allocation: int
    short_entities: int
    shortfall: int  # sum of the short entities' shortfalls
    surplus: int  # sum of the long entities' surpluses


@dataclass
class Population:
    year: int
    entities: list[Entity]
    seed: int | None = None
    targets: Targets | None = field(default=None)

    def totals(self) -> Totals:
        es = self.entities
        return Totals(len(es), sum(len(e.units) for e in es),
                      sum(u.capacity_mw for e in es for u in e.units),
                      sum(e.verified_emissions for e in es), sum(e.allocation for e in es),
                      sum(e.is_short for e in es), sum(e.shortfall for e in es),
                      sum(max(0, e.position) for e in es))

    def allocations(self) -> dict[str, int]:
        """{entity: allocation} in entity order."""
        return {e.name: e.allocation for e in self.entities}


def generate(entities: int = 2162, seed: int = 0, year: int = 2019,
             targets: Targets | None = None,
             surplus_permille: tuple[int, int] = SURPLUS_PERMILLE) -> Population:
    """A population of ``entities`` power-sector entities for ``year`` (see the module
    docstring). ``targets`` defaults to ``FIRST_PERIOD`` scaled to ``entities``;
    ``surplus_permille`` is the range a long entity's surplus is drawn from, per mille of
    its allocation."""
    n = _int_arg(entities, "entities", 1, 1_000_000)
    seed = _int_arg(seed, "seed", 0, 2**63 - 1)
    try:
        benchmarks_for(year)
    except AllocationError as e:
        raise PopulationError(str(e)) from None
    target = targets if targets is not None else FIRST_PERIOD.scaled(n)
    if target.entities != n:
        raise PopulationError(f"targets are for {target.entities} entities, not {n}")
    rng = np.random.Generator(np.random.PCG64(seed))

    counts = apportion(n, [a.share_permille for a in ARCHETYPES])
    kinds = [k for k, c in enumerate(counts) for _ in range(c)]
    kinds = [kinds[i] for i in rng.permutation(n).tolist()]
    width = max(4, len(str(n)))
    names = [f"E{i + 1:0{width}d}" for i in range(n)]
    fleets = [_draw_units(rng, names[i], ARCHETYPES[k]) for i, k in enumerate(kinds)]

    # who is short: the highest priorities among the eligible (ties: the earlier entity)
    priority = [_draw(rng, 0, 999_999) + ARCHETYPES[k].short_bonus
                if ARCHETYPES[k].short_bonus >= 0 else -1 for k in kinds]
    eligible = sorted((i for i in range(n) if priority[i] >= 0), key=lambda i: (-priority[i], i))
    if target.short_entities > len(eligible):
        raise PopulationError(f"{target.short_entities} short entities asked, only "
                              f"{len(eligible)} entities may be short")
    short = set(eligible[:target.short_entities])
    surplus_pm = [0 if i in short else _draw(rng, *surplus_permille) for i in range(n)]
    weight_pm = [(_draw(rng, *SHORT_TAIL_PERMILLE) if _draw(rng, 0, 999) < SHORT_TAIL_CHANCE
                  else _draw(rng, *SHORT_WEIGHT_PERMILLE)) if i in short else 0
                 for i in range(n)]

    # one common scale of the supplies, so that emissions come out at the target
    raw = [allocate_entity(units, year) for units in fleets]
    base = sum(Fraction(a * (1000 - surplus_pm[i]), 1000) for i, a in enumerate(raw))
    if base <= 0 or target.emissions_t <= target.shortfall_t:
        raise PopulationError("the emissions target must exceed the shortfall target")
    scale = Fraction(target.emissions_t - target.shortfall_t) / base
    fleets = [tuple(_scaled(u, scale) for u in units) for units in fleets]
    allocation = [allocate_entity(units, year) for units in fleets]

    shortfall = _apportion_capped(target.shortfall_t, sorted(short), allocation, weight_pm)
    out = []
    for i in range(n):
        a = allocation[i]
        verified = a + shortfall[i] if i in short else a - a * surplus_pm[i] // 1000
        out.append(Entity(names[i], "power", fleets[i], a, verified))
    return Population(int(year), out, seed, target)


def _int_arg(value, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or not lo <= int(value) <= hi:
        raise PopulationError(f"{what} must be an integer {lo}..{hi}, not {value!r}")
    return int(value)


def _draw(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A uniform integer in lo..hi inclusive."""
    return int(rng.integers(lo, hi + 1))


def _pick(rng: np.random.Generator, weights: Sequence[int]) -> int:
    r, acc = _draw(rng, 0, sum(weights) - 1), 0
    for k, w in enumerate(weights):
        acc += w
        if r < acc:
            return k
    raise AssertionError("unreachable")


def _draw_units(rng: np.random.Generator, entity: str, a: Archetype) -> tuple[Unit, ...]:
    units = []
    for j in range(_pick(rng, a.unit_count_weights) + 1):
        capacity = a.capacities_mw[_draw(rng, 0, len(a.capacities_mw) - 1)]
        hours = _draw(rng, *a.hours)
        power = capacity * hours * (1000 - _draw(rng, *a.own_use_permille)) // 1000
        cooling = "air" if _draw(rng, 0, 999) < a.air_cooled_permille else "water"
        heat = 0
        if _draw(rng, 0, 999) < a.chp_permille:
            r = _draw(rng, *a.heat_ratio_permille)  # heat / (heat + 3.6 x power) = r
            heat = power * 36 * r // (10 * (1000 - r))
        load = Fraction(_draw(rng, *a.load_permille), 1000)
        units.append(Unit(f"{entity}-U{j + 1}", a.unit_type, capacity, power, heat, cooling,
                          load))
    return tuple(units)


def _scaled(u: Unit, scale: Fraction) -> Unit:
    """``u`` with power and heat supplied times ``scale``, rounded half up (power at most
    capacity x 8,784 h)."""
    def rnd(x: Fraction) -> int:
        return (2 * x.numerator + x.denominator) // (2 * x.denominator)

    power = min(rnd(u.power_supplied_mwh * scale), u.capacity_mw * MAX_HOURS)
    return Unit(u.name, u.type, u.capacity_mw, power, rnd(u.heat_supplied_gj * scale), u.cooling,
                u.load_rate, u.heat_supply_ratio)


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to integer ``weights`` by largest remainder (ties: the
    earlier index); the parts sum to ``total``.

    >>> apportion(10, [1, 1, 1]), apportion(5, [0, 3, 0])
    ([4, 3, 3], [0, 5, 0])
    """
    wsum = sum(weights)
    if total < 0 or wsum <= 0 or any(w < 0 for w in weights):
        raise PopulationError(f"cannot apportion {total} by weights summing to {wsum}")
    parts = [total * w // wsum for w in weights]
    rest = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda k: (-(total * weights[k] % wsum), k))
    for k in order[:rest]:
        parts[k] += 1
    return parts


def _apportion_capped(total: int, short: list[int], allocation: list[int],
                      weight_pm: list[int]) -> dict[int, int]:
    """The shortfall of each short entity: at least 1 t, at most MAX_SHORT_SHARE of its
    allocation, in proportion to allocation x weight otherwise; sums to ``total`` unless the
    caps make that impossible (then every short entity is at its cap)."""
    out = {i: 0 for i in range(len(allocation))}
    if not short:
        return out
    cap = {i: max(1, int(allocation[i] * MAX_SHORT_SHARE)) for i in short}
    for i in short:
        out[i] = 1
    left, open_ = total - len(short), [i for i in short if cap[i] > 1]
    while left > 0 and open_:
        parts = apportion(left, [allocation[i] * weight_pm[i] or 1 for i in open_])
        left, still = 0, []
        for i, p in zip(open_, parts):
            take = min(p, cap[i] - out[i])
            out[i] += take
            left += p - take
            if out[i] < cap[i]:
                still.append(i)
        open_ = still
    return out


# ---------------------------------------------------------------------------- files

#: One row per unit. ``allocation`` is the unit's; ``verified_emissions`` is the entity's
#: verified emissions split over its units in proportion to their allocations (largest
#: remainder), so an entity's figures are the sums of its rows.
CSV_HEADER = ("year", "entity", "sector", "unit", "type", "capacity_mw", "power_supplied_mwh",
              "heat_supplied_gj", "cooling", "load_rate", "heat_supply_ratio", "allocation",
              "verified_emissions")


def _decimal(x: Fraction, places: int) -> str:
    scaled = x * 10 ** places
    if scaled.denominator != 1:
        return str(x)
    whole, frac = divmod(scaled.numerator, 10 ** places)
    return f"{whole}.{frac:0{places}d}"


def unit_rows(entity: Entity, year: int) -> list[tuple[Unit, int, int]]:
    """(unit, its allocation, its share of the verified emissions) per unit: the entity's
    verified emissions split in proportion to the units' allocations (largest remainder;
    equally if they are all 0)."""
    unit_alloc = [allocate_unit(u, year) for u in entity.units]
    if sum(unit_alloc) != entity.allocation:
        raise PopulationError(f"entity {entity.name}: allocation {entity.allocation} is not "
                              f"the sum of its units' ({sum(unit_alloc)}) for {year}")
    split = apportion(entity.verified_emissions,
                      unit_alloc if sum(unit_alloc) else [1] * len(entity.units))
    return list(zip(entity.units, unit_alloc, split))


def to_csv(population: Population) -> str:
    """The population file's text (see ``CSV_HEADER``); ``\\n`` line ends."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for e in population.entities:
        for u, a, v in unit_rows(e, population.year):
            ratio = "" if u.heat_supply_ratio is None else _decimal(u.heat_supply_ratio, 6)
            w.writerow([population.year, e.name, e.sector, u.name, u.type.value, u.capacity_mw,
                        u.power_supplied_mwh, u.heat_supplied_gj, u.cooling,
                        _decimal(u.load_rate, 4), ratio, a, v])
    return buf.getvalue()


def _write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    try:
        path.write_text(text, encoding="utf-8", newline="")
    except OSError as e:
        raise PopulationError(f"{path}: cannot write: {e.strerror}") from None
    return path


def write_csv(population: Population, path: str | Path) -> Path:
    """Write the population file (one row per unit, ``CSV_HEADER``)."""
    return _write_text(path, to_csv(population))


def read_csv(path: str | Path, check_allocation: bool = True) -> Population:
    """Read a population file. Each row's unit is validated as a ``Unit``; the rows of one
    entity must be consecutive; with ``check_allocation`` each row's allocation must equal
    the formula's for the file's year (default benchmarks). Errors name the line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise PopulationError(f"{path}: cannot read the population file: "
                              f"{getattr(e, 'strerror', None) or e}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or tuple(h.strip() for h in rows[0]) != CSV_HEADER:
        raise PopulationError(f"{path}: the header must be {','.join(CSV_HEADER)}")
    year, groups, order = None, {}, []
    for line, row in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in row):
            continue
        where = f"{path}:{line}"
        if len(row) != len(CSV_HEADER):
            raise PopulationError(f"{where}: {len(row)} fields, the header has {len(CSV_HEADER)}")
        f = dict(zip(CSV_HEADER, (x.strip() for x in row)))
        try:
            row_year = _parse_int(f["year"], "year")
            if year is None:
                year = row_year
                if check_allocation:
                    benchmarks_for(year)
            elif row_year != year:
                raise PopulationError(f"year {row_year} differs from the file's {year}")
            ratio = f["heat_supply_ratio"] or None
            unit = Unit(f["unit"], f["type"], _parse_int(f["capacity_mw"], "capacity_mw"),
                        _parse_int(f["power_supplied_mwh"], "power_supplied_mwh"),
                        _parse_int(f["heat_supplied_gj"], "heat_supplied_gj"), f["cooling"],
                        exact_fraction(f["load_rate"], "load rate"),
                        None if ratio is None else exact_fraction(ratio, "heat-supply ratio"))
            alloc = _parse_int(f["allocation"], "allocation")
            verified = _parse_int(f["verified_emissions"], "verified_emissions")
            if check_allocation and allocate_unit(unit, year) != alloc:
                raise PopulationError(f"unit {unit.name}: allocation {alloc} is not the "
                                      f"formula's {allocate_unit(unit, year)} for {year}")
            name = f["entity"]
            if not name or "," in name or name.startswith("@"):
                raise PopulationError(f"entity {name!r}: non-empty, no comma, not @...")
            if name in groups:
                if order[-1] != name:
                    raise PopulationError(f"the rows of entity {name} are not consecutive")
                if groups[name][0] != f["sector"]:
                    raise PopulationError(f"entity {name}: sector {f['sector']!r} differs")
                if unit.name in {u.name for u, _, _ in groups[name][1]}:
                    raise PopulationError(f"entity {name}: unit {unit.name} repeated")
            else:
                groups[name] = (f["sector"], [])
                order.append(name)
            groups[name][1].append((unit, alloc, verified))
        except (AllocationError, PopulationError) as e:
            raise PopulationError(f"{where}: {e}") from None
    if year is None:
        raise PopulationError(f"{path}: no entities")
    entities = [Entity(name, groups[name][0], tuple(u for u, _, _ in groups[name][1]),
                       sum(a for _, a, _ in groups[name][1]),
                       sum(v for _, _, v in groups[name][1])) for name in order]
    return Population(year, entities)


def _parse_int(text: str, what: str) -> int:
    if not text.isdigit():
        raise PopulationError(f"{what} {text!r} is not a whole number >= 0")
    return int(text)


def write_accounts_file(population: Population, path: str | Path, instrument: str = "CEA",
                        cash_fen_per_short_tonne: int = 10_000,
                        with_allocation: bool = True) -> Path:
    """Opening balances for ``cea match --accounts`` (ledger/session.py): one
    COVERED_ENTITY per entity holding its allocation (if ``with_allocation``) and cash
    enough to buy its shortfall at ``cash_fen_per_short_tonne`` (default 100.00 CNY/t, an
    ASSUMPTION [our modelling choice]); long entities get no cash."""
    if isinstance(cash_fen_per_short_tonne, bool) or not isinstance(cash_fen_per_short_tonne,
                                                                   int) \
            or cash_fen_per_short_tonne < 0:
        raise PopulationError(f"cash per short tonne {cash_fen_per_short_tonne!r} must be "
                              "whole fen >= 0")
    lines = [f"account,type,cash,{instrument}"]
    for e in population.entities:
        fen = e.shortfall * cash_fen_per_short_tonne
        lines.append(f"{e.name},COVERED_ENTITY,{format_fen(fen)},"
                     f"{e.allocation if with_allocation else 0}")
    return _write_text(path, "\n".join(lines) + "\n")


def emission_rows(population: Population) -> list[tuple[str, int, int, str]]:
    """(entity, verified emissions, allocation, kind) per entity and kind (``gas`` for gas
    units, ``coal`` for every other unit), summing ``unit_rows``; entities in order, kinds
    sorted."""
    out = []
    for e in population.entities:
        sums: dict[str, list[int]] = {}
        for u, a, v in unit_rows(e, population.year):
            row = sums.setdefault("coal" if u.type.is_coal else "gas", [0, 0])
            row[0] += v
            row[1] += a
        out += [(e.name, sums[kind][0], sums[kind][1], kind) for kind in sorted(sums)]
    return out


def emissions_csv(rows: list[tuple[str, int, int, str]]) -> str:
    """The ``cea compliance`` emissions file's text: ``entity,verified_emissions,allocation,
    kind``, one line per ``emission_rows`` row."""
    lines = ["entity,verified_emissions,allocation,kind"]
    lines += [f"{name},{v},{a},{kind}" for name, v, a, kind in rows]
    return "\n".join(lines) + "\n"


def write_emissions_file(population: Population, path: str | Path) -> Path:
    """Write ``emissions_csv``."""
    return _write_text(path, emissions_csv(emission_rows(population)))


__all__ = ["ARCHETYPES", "Archetype", "CSV_HEADER", "Entity", "FIRST_PERIOD", "Population",
           "PopulationError", "Targets", "Totals", "apportion", "emission_rows",
           "emissions_csv", "generate", "read_csv", "to_csv", "unit_rows", "write_accounts_file", "write_csv",
           "write_emissions_file"]
