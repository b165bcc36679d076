"""Free allocation of allowances: power units by benchmark, industrial sectors by intensity,
and the registry's issuance of the result into the ledger.

Everything here is exact: quantities are integer MWh, GJ and tonnes, benchmarks integer
grams of CO2 per MWh or GJ (1 g = 1e-6 t, so 0.877 tCO2/MWh is 877_000), factors
``fractions.Fraction``. There are exactly two rounding steps, both stated where they happen:
the load factor is rounded half up to 1e-6 (it can be irrational), and a unit's allocation is
rounded half up to whole tonnes, once per unit [our modelling choice]. An entity's allocation
is the sum of its units' rounded allocations.

Power (docs/rules.md §12, [secondary source] for the shape of the formula)::

    allocation = power supplied x power benchmark x cooling factor
                 x heat-supply-ratio factor x load factor
               + heat supplied x heat benchmark

>>> unit = Unit("U1", UnitType.COAL_CONVENTIONAL_ABOVE_300MW, capacity_mw=600,
...             power_supplied_mwh=3_000_000, heat_supplied_gj=0, cooling="water",
...             load_rate="0.9")
>>> allocate_unit(unit, 2019)  # 3,000,000 MWh x 0.877 t/MWh x 1 x 1 x 1
2631000
>>> allocate_unit(unit, 2021)  # 3,000,000 x 0.8218
2465400
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from functools import lru_cache
from types import MappingProxyType
from typing import Iterable, Mapping

from engine.accounts import MAX_BALANCE

#: 1 MWh of electricity is 3.6 GJ (exact, by definition of the units)
GJ_PER_MWH = Fraction(18, 5)
#: hours in a leap year: no unit supplies more than capacity x this in a year
MAX_HOURS = 8784
PPM = 1_000_000


def _round_half_up(x: Fraction) -> int:
    """floor(x + 1/2): ties go up (四舍五入 for the non-negative amounts here)."""
    return (2 * x.numerator + x.denominator) // (2 * x.denominator)


class AllocationError(ValueError):
    """Bad input to an allocation or issuance; nothing was written."""


class UnitType(str, Enum):
    """The four benchmark classes of the power-sector allocation plans [secondary source].

    The plans speak of the "300 MW class": a unit is classed by the registry, not here by a
    capacity threshold, so the type is an input [our modelling choice]."""

    COAL_CONVENTIONAL_ABOVE_300MW = "COAL_CONVENTIONAL_ABOVE_300MW"
    COAL_CONVENTIONAL_300MW_AND_BELOW = "COAL_CONVENTIONAL_300MW_AND_BELOW"
    #: coal gangue, slime, coal-water slurry and circulating fluidised bed units
    COAL_UNCONVENTIONAL = "COAL_UNCONVENTIONAL"
    GAS = "GAS"

    @property
    def is_coal(self) -> bool:
        return self is not UnitType.GAS

    @classmethod
    def parse(cls, value: "UnitType | str") -> "UnitType":
        if isinstance(value, UnitType):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            raise AllocationError(f"unit type {value!r} is not one of "
                                  f"{', '.join(t.value for t in cls)}") from None


COOLING = ("water", "air")


def exact_fraction(value, what: str) -> Fraction:
    """``value`` as an exact Fraction: a Fraction, an int or a decimal string ("0.8235").

    Floats are refused (they are not exact).

    >>> exact_fraction("0.8235", "load rate"), exact_fraction(1, "x")
    (Fraction(1647, 2000), Fraction(1, 1))
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise AllocationError(f"{what} {value!r}: give an exact value (a Fraction, an int or "
                              "a decimal string such as '0.85'), not a float or bool")
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if hasattr(value, "__index__"):  # numpy integers
        return Fraction(int(value))
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            pass
    raise AllocationError(f"{what} {value!r} is not an exact number")


def _int(value, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise AllocationError(f"{what} {value!r} is not an integer")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        top = "" if hi is None else f"..{hi}"
        raise AllocationError(f"{what} {value} is outside {lo}{top}")
    return value


@dataclass(frozen=True)
class Unit:
    """One generating unit of a covered entity, with its year's supply.

    ``load_rate`` is the unit's average load rate (负荷率) as an exact fraction of 1, given
    to 0.01 % (a multiple of 1/10000) so the load factor's exponent is computable exactly
    [our modelling choice]. ``heat_supply_ratio`` may be given (the registry's figure); when
    it is None it is computed from the supplies in energy terms (see ``heat_supply_ratio``).
    """

    name: str
    type: UnitType
    capacity_mw: int
    power_supplied_mwh: int
    heat_supplied_gj: int
    cooling: str
    load_rate: Fraction
    heat_supply_ratio: Fraction | None = field(default=None)

    def __post_init__(self):
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name.strip() or "," in self.name:
            raise AllocationError(f"unit name {self.name!r}: non-empty, no comma")
        set_(self, "type", UnitType.parse(self.type))
        set_(self, "capacity_mw", _int(self.capacity_mw, f"unit {self.name}: capacity_mw",
                                       1, 5000))
        most = self.capacity_mw * MAX_HOURS
        set_(self, "power_supplied_mwh", _int(
            self.power_supplied_mwh, f"unit {self.name}: power_supplied_mwh", 0, most))
        set_(self, "heat_supplied_gj", _int(self.heat_supplied_gj,
                                            f"unit {self.name}: heat_supplied_gj", 0, MAX_BALANCE))
        if self.cooling not in COOLING:
            raise AllocationError(f"unit {self.name}: cooling {self.cooling!r} is not "
                                  "'water' or 'air'")
        load = exact_fraction(self.load_rate, f"unit {self.name}: load rate")
        if not 0 <= load <= 1:
            raise AllocationError(f"unit {self.name}: load rate {self.load_rate!r} is outside 0..1")
        if (load * 10_000).denominator != 1:
            raise AllocationError(f"unit {self.name}: load rate {self.load_rate!r} is not a "
                                  "whole number of 0.01 % (e.g. 0.8235)")
        set_(self, "load_rate", load)
        if self.heat_supply_ratio is not None:
            ratio = exact_fraction(self.heat_supply_ratio, f"unit {self.name}: heat-supply ratio")
            if not 0 <= ratio <= 1:
                raise AllocationError(f"unit {self.name}: heat-supply ratio "
                                      f"{self.heat_supply_ratio!r} is outside 0..1")
            set_(self, "heat_supply_ratio", ratio)


# ---------------------------------------------------------------------------- benchmarks


@dataclass(frozen=True)
class Benchmarks:
    """One year's benchmarks: power in g CO2/MWh supplied, heat in g CO2/GJ supplied."""

    coal_above_300mw: int
    coal_300mw_and_below: int
    coal_unconventional: int
    gas: int
    heat_coal: int
    heat_gas: int
    mark: str = "[our modelling choice]"

    def __post_init__(self):
        for name in ("coal_above_300mw", "coal_300mw_and_below", "coal_unconventional", "gas",
                     "heat_coal", "heat_gas"):
            _int(getattr(self, name), f"benchmark {name}", 1, 10 * PPM)

    def power(self, unit_type: UnitType) -> int:
        return {UnitType.COAL_CONVENTIONAL_ABOVE_300MW: self.coal_above_300mw,
                UnitType.COAL_CONVENTIONAL_300MW_AND_BELOW: self.coal_300mw_and_below,
                UnitType.COAL_UNCONVENTIONAL: self.coal_unconventional,
                UnitType.GAS: self.gas}[unit_type]

    def heat(self, unit_type: UnitType) -> int:
        return self.heat_gas if unit_type is UnitType.GAS else self.heat_coal


def derive_benchmarks(base: Benchmarks, tightening_ppm: int, mark: str) -> Benchmarks:
    """``base`` with every benchmark reduced by ``tightening_ppm`` parts per million, each
    rounded half up to 0.0001 t (100 g), the precision the plans publish.

    >>> derive_benchmarks(BENCHMARKS[2022], 5000, "x").coal_above_300mw  # 0.8177 x 0.995
    813600
    """
    t = _int(tightening_ppm, "tightening_ppm", 0, PPM - 1)

    def tighten(g: int) -> int:
        return _round_half_up(Fraction(g * (PPM - t), PPM * 100)) * 100

    return Benchmarks(*(tighten(getattr(base, n)) for n in (
        "coal_above_300mw", "coal_300mw_and_below", "coal_unconventional", "gas", "heat_coal",
        "heat_gas")), mark=mark)


#: 2019-2020: ICAP's account of the November 2020 draft plan, assumed final
#: (docs/rules.md §12) [secondary source].
_P1 = Benchmarks(877_000, 979_000, 1_146_000, 392_000, 126_000, 59_000, "[secondary source]")
#: 2021 and 2022: our recollection of the MEE 2021-2022 plan [unverified]. Consistent with
#: ICAP's "coal benchmarks tightened 6.29-18.41 % vs period 1" (0.877 -> 0.8218 is -6.29 %,
#: 1.146 -> 0.9350 is -18.41 %).
_Y2021 = Benchmarks(821_800, 877_300, 935_000, 392_000, 111_100, 56_000, "[unverified]")
_Y2022 = Benchmarks(817_700, 872_900, 930_300, 390_100, 110_500, 55_700, "[unverified]")
#: 2023 and 2024 were not retrieved: ASSUMPTION, each year tightens the previous by 0.5 %
#: (the 2021 -> 2022 step, rounded) [our modelling choice]. Pass a table to override.
ASSUMED_ANNUAL_TIGHTENING_PPM = 5_000
_Y2023 = derive_benchmarks(_Y2022, ASSUMED_ANNUAL_TIGHTENING_PPM, "[our modelling choice]")
_Y2024 = derive_benchmarks(_Y2023, ASSUMED_ANNUAL_TIGHTENING_PPM, "[our modelling choice]")

#: The default benchmark table by year. Override by passing ``table=`` to the functions.
BENCHMARKS: Mapping[int, Benchmarks] = MappingProxyType(
    {2019: _P1, 2020: _P1, 2021: _Y2021, 2022: _Y2022, 2023: _Y2023, 2024: _Y2024})


def benchmarks_for(year: int, table: Mapping[int, Benchmarks] | None = None) -> Benchmarks:
    """The benchmarks of ``year`` from ``table`` (default ``BENCHMARKS``)."""
    table = BENCHMARKS if table is None else table
    if isinstance(year, bool) or not hasattr(year, "__index__") or int(year) not in table:
        raise AllocationError(f"no power benchmarks for year {year!r} (have "
                              f"{', '.join(str(y) for y in sorted(table))})")
    return table[int(year)]


# ---------------------------------------------------------------------------- factors

#: Correction factors: our recollection of the MEE 2019-2020 plan [unverified].
AIR_COOLING_FACTOR = Fraction(105, 100)  # coal, air-cooled; water-cooled and gas: 1
HEAT_RATIO_COEFFICIENT = {True: Fraction(22, 100), False: Fraction(6, 10)}  # coal, gas


def cooling_factor(unit: Unit) -> Fraction:
    """1.05 for an air-cooled coal unit, else 1 [unverified].

    >>> cooling_factor(Unit("a", "GAS", 400, 0, 0, "air", "0.5"))
    Fraction(1, 1)
    """
    if unit.type.is_coal and unit.cooling == "air":
        return AIR_COOLING_FACTOR
    return Fraction(1)


def heat_supply_ratio(unit: Unit) -> Fraction:
    """The unit's heat-supply ratio (供热比): the given figure, or else heat supplied over
    total output in energy terms, H / (H + 3.6 GJ/MWh x P); 0 for a unit that supplied
    nothing.

    The plans define the ratio on the turbine's heat consumption; we approximate it with
    the supplied energies when it is not given [our modelling choice].

    >>> heat_supply_ratio(Unit("c", "GAS", 400, 1_000, 3_600, "water", "0.5"))
    Fraction(1, 2)
    """
    if unit.heat_supply_ratio is not None:
        return unit.heat_supply_ratio
    total = unit.heat_supplied_gj + unit.power_supplied_mwh * GJ_PER_MWH
    return Fraction(unit.heat_supplied_gj) / total if total else Fraction(0)


def heat_supply_factor(unit_type: UnitType, ratio: Fraction) -> Fraction:
    """Coal: 1 - 0.22 x ratio; gas: 1 - 0.6 x ratio [unverified]. Exact.

    >>> heat_supply_factor(UnitType.GAS, Fraction(1, 5))  # 1 - 0.6 x 0.2 = 0.88
    Fraction(22, 25)
    """
    return 1 - HEAT_RATIO_COEFFICIENT[UnitType.parse(unit_type).is_coal] * ratio


def load_factor_ppm(unit_type: UnitType, load_rate: Fraction) -> int:
    """The load (output) correction factor in parts per million [unverified], coal only
    (gas: 1,000,000). With L the load rate:

    - L >= 85 %:        1
    - 80 % <= L < 85 %: 1 + 0.0014 x (85 - 100 L)       (exact in ppm)
    - 75 % <= L < 80 %: 1.007 x 1.0016 ^ (80 - 100 L)
    - L < 75 %:         1.015 ^ (16 - 20 L)

    The exponents are fractional for most L, so the factor is rounded half up to 1e-6,
    computed exactly with integer roots (``power_ppm``) [our modelling choice]. The branches
    meet at 80 % and 85 % but not quite at 75 % (1.015030 just below, 1.015082 at 75 %): that
    is the recollected formula as it stands.

    >>> [load_factor_ppm(UnitType.COAL_UNCONVENTIONAL, Fraction(bp, 10000))
    ...  for bp in (9000, 8200, 7800, 7000)]
    [1000000, 1004200, 1010225, 1030225]
    """
    unit_type = UnitType.parse(unit_type)
    load = exact_fraction(load_rate, "load rate")
    if not 0 <= load <= 1:
        raise AllocationError(f"load rate {load_rate!r} is outside 0..1")
    if (load * 10_000).denominator != 1:
        raise AllocationError(f"load rate {load_rate!r} is not a whole number of 0.01 %")
    if not unit_type.is_coal or load >= Fraction(85, 100):
        return PPM
    return _coal_load_factor_ppm(load)


@lru_cache(maxsize=16384)
def _coal_load_factor_ppm(load: Fraction) -> int:
    if load >= Fraction(80, 100):
        exact = 1 + Fraction(14, 10_000) * (85 - 100 * load)
        return power_ppm(exact, Fraction(1), Fraction(0))
    if load >= Fraction(75, 100):
        return power_ppm(Fraction(1007, 1000), Fraction(10016, 10000), 80 - 100 * load)
    return power_ppm(Fraction(1), Fraction(1015, 1000), 16 - 20 * load)


def power_ppm(coef: Fraction, base: Fraction, exponent: Fraction) -> int:
    """round_half_up(1e6 x coef x base ^ exponent) for positive coef, base and exponent
    >= 0, exactly: with exponent p/q, m = floor(2e6 x coef x base^(p/q)) is the largest
    integer with m^q <= (2e6 x coef)^q x base^p, found by bisection on integers; the
    result is (m + 1) // 2.

    >>> power_ppm(Fraction(1), Fraction(4), Fraction(1, 2))  # sqrt(4)
    2000000
    >>> power_ppm(Fraction(1), Fraction(2), Fraction(1, 2))  # 1.41421356...
    1414214
    >>> power_ppm(Fraction(1, 2000000), Fraction(1), Fraction(0))  # 0.5 ppm: half up
    1
    """
    if coef <= 0 or base <= 0 or exponent < 0:
        raise AllocationError(f"power_ppm needs coef > 0, base > 0, exponent >= 0, not "
                              f"{coef}, {base}, {exponent}")
    p, q = exponent.numerator, exponent.denominator
    target = (2 * PPM * coef) ** q * base ** p
    num, den = target.numerator, target.denominator
    lo, hi = 0, 1
    while hi ** q * den <= num:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: lo^q <= target < hi^q
        mid = (lo + hi) // 2
        if mid ** q * den <= num:
            lo = mid
        else:
            hi = mid
    return (lo + 1) // 2


# ---------------------------------------------------------------------------- allocation


@dataclass(frozen=True)
class UnitAllocation:
    """A unit's allocation with every term of the formula (tonnes, exact until ``tonnes``)."""

    unit: str
    year: int
    power_benchmark_g: int  # g CO2 per MWh
    heat_benchmark_g: int  # g CO2 per GJ
    cooling_factor: Fraction
    heat_supply_ratio: Fraction
    heat_supply_factor: Fraction
    load_factor: Fraction  # the ppm-rounded factor, as an exact fraction
    power_part: Fraction
    heat_part: Fraction
    exact: Fraction
    tonnes: int  # exact rounded half up to whole tonnes, once per unit


def unit_allocation(unit: Unit, year: int,
                    table: Mapping[int, Benchmarks] | None = None) -> UnitAllocation:
    """The unit's allocation for ``year`` with its terms (see the module docstring)."""
    if not isinstance(unit, Unit):
        raise AllocationError(f"{unit!r} is not a Unit")
    bench = benchmarks_for(year, table)
    power_g, heat_g = bench.power(unit.type), bench.heat(unit.type)
    cool = cooling_factor(unit)
    ratio = heat_supply_ratio(unit)
    heat_factor = heat_supply_factor(unit.type, ratio)
    load = Fraction(load_factor_ppm(unit.type, unit.load_rate), PPM)
    power_part = unit.power_supplied_mwh * Fraction(power_g, PPM) * cool * heat_factor * load
    heat_part = unit.heat_supplied_gj * Fraction(heat_g, PPM)
    exact = power_part + heat_part
    return UnitAllocation(unit.name, int(year), power_g, heat_g, cool, ratio, heat_factor, load,
                          power_part, heat_part, exact, _round_half_up(exact))


def allocate_unit(unit: Unit, year: int, table: Mapping[int, Benchmarks] | None = None) -> int:
    """The unit's allocation for ``year`` in whole tonnes (rounded half up once)."""
    return unit_allocation(unit, year, table).tonnes


def allocate_entity(units: Iterable[Unit], year: int,
                    table: Mapping[int, Benchmarks] | None = None) -> int:
    """A covered entity's allocation: the sum of its units' rounded allocations."""
    units = list(units)
    names = [u.name for u in units if isinstance(u, Unit)]
    if len(set(names)) != len(names):
        raise AllocationError(f"an entity lists unit {_first_repeat(names)!r} twice")
    return sum(allocate_unit(u, year, table) for u in units)


def _first_repeat(names: list[str]) -> str:
    seen = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return ""


# ---------------------------------------------------------------------------- industry


class Sector(str, Enum):
    """Sectors added by the 2025 work plan; first compliance for 2024 emissions
    (docs/rules.md §12) [secondary source]."""

    STEEL = "STEEL"
    CEMENT = "CEMENT"
    ALUMINIUM = "ALUMINIUM"

    @classmethod
    def parse(cls, value: "Sector | str") -> "Sector":
        if isinstance(value, Sector):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            raise AllocationError(f"sector {value!r} is not one of "
                                  f"{', '.join(s.value for s in cls)}") from None


@dataclass(frozen=True)
class SectorRule:
    """Intensity-based allocation of one sector: output (t of product) x intensity benchmark
    (g CO2 per t of product) x (1 - annual decline) ^ (year - base year), rounded half up
    once to whole tonnes. Years before ``base_year`` (from ``first_year``) are allocated
    equal to verified emissions when ``verified_mode_before_base`` is set.

    Every default below is an ASSUMPTION [our modelling choice]: no benchmark values were
    retrieved. Our recollection that 2024 allocations equalled verified emissions, tightening
    from 2025, is [unverified].
    """

    sector: Sector
    product: str
    benchmark_g_per_t: int
    first_year: int = 2024
    base_year: int = 2025
    annual_decline_ppm: int = 10_000
    verified_mode_before_base: bool = True

    def __post_init__(self):
        object.__setattr__(self, "sector", Sector.parse(self.sector))
        _int(self.benchmark_g_per_t, f"{self.sector.value} benchmark", 1, 100 * PPM)
        _int(self.annual_decline_ppm, f"{self.sector.value} annual decline (ppm)", 0, PPM - 1)
        _int(self.first_year, "first_year", 2000, 2100)
        _int(self.base_year, "base_year", self.first_year, 2100)


#: Default sector rules: ASSUMPTIONS [our modelling choice]: direct emissions per tonne of
#: crude steel 1.80, of clinker 0.86, of primary aluminium 1.70 (anode and process only);
#: 1 % tighter each year from 2025; 2024 allocated equal to verified emissions.
SECTOR_RULES: Mapping[Sector, SectorRule] = MappingProxyType({
    Sector.STEEL: SectorRule(Sector.STEEL, "crude steel", 1_800_000),
    Sector.CEMENT: SectorRule(Sector.CEMENT, "clinker", 860_000),
    Sector.ALUMINIUM: SectorRule(Sector.ALUMINIUM, "primary aluminium", 1_700_000),
})


def allocate_sector(sector: Sector | str, output_t: int, year: int, *,
                    verified_emissions: int | None = None, rule: SectorRule | None = None) -> int:
    """An industrial entity's allocation for ``year`` in whole tonnes (see ``SectorRule``).

    >>> allocate_sector("CEMENT", 1_000_000, 2026)  # 1e6 t x 0.86 x 0.99 = 851,400
    851400
    >>> allocate_sector("STEEL", 2_000_000, 2024, verified_emissions=3_500_123)
    3500123
    """
    sector = Sector.parse(sector)
    rule = rule or SECTOR_RULES[sector]
    if rule.sector is not sector:
        raise AllocationError(f"rule for {rule.sector.value} given for sector {sector.value}")
    output = _int(output_t, f"{sector.value} output (t of {rule.product})", 0, MAX_BALANCE)
    year = _int(year, f"{sector.value} year", 1900, 2100)
    if year < rule.first_year:
        raise AllocationError(f"{sector.value} is not covered in {year} (first year "
                              f"{rule.first_year})")
    if year < rule.base_year and rule.verified_mode_before_base:
        if verified_emissions is None:
            raise AllocationError(f"{sector.value} {year}: allocated equal to verified "
                                  "emissions; give verified_emissions")
        return _int(verified_emissions, f"{sector.value} verified emissions", 0, MAX_BALANCE)
    decline = Fraction(PPM - rule.annual_decline_ppm, PPM) ** max(0, year - rule.base_year)
    return _round_half_up(output * Fraction(rule.benchmark_g_per_t, PPM) * decline)


# ---------------------------------------------------------------------------- issuance


def allocation_ref(year: int, entity: str) -> str:
    """The idempotency key of an entity's free allocation for a year."""
    return f"ALLOC-{year}-{entity}"


def open_covered_entities(ledger, names: Iterable[str]) -> int:
    """Open each named account as COVERED_ENTITY where missing; return how many were opened.

    All names are checked first (well formed, and not already open as another type), so a
    refusal opens none."""
    names = sorted(set(names))
    kinds = dict(ledger.store.query("SELECT name, kind FROM account"))
    for name in names:
        if not isinstance(name, str) or not name or name.startswith("@") or "," in name:
            raise AllocationError(f"entity name {name!r}: non-empty, no comma, not starting "
                                  "with @")
        if kinds.get(name, "COVERED_ENTITY") != "COVERED_ENTITY":
            raise AllocationError(f"account {name!r} is open as {kinds[name]}, not "
                                  "COVERED_ENTITY")
    new = [n for n in names if n not in kinds]
    for name in new:
        ledger.open_account(name, "COVERED_ENTITY")
    return len(new)


def issue_allocations(ledger, allocations: Mapping[str, int], year: int, day: int,
                      instrument: str = "CEA") -> int:
    """Issue free allocations from the registry: one ALLOWANCE_IN operation per entity with
    ref ``ALLOC-{year}-{entity}``, dated ``day``; return how many were new.

    Everything is checked before anything is issued: each entity is an open COVERED_ENTITY
    account, each amount an integer 1..MAX_BALANCE, the instrument exists, and an entity
    already issued for ``year`` was issued exactly this amount of this instrument (an
    adjustment needs its own ref). Issuing twice issues once.

    Each operation is its own ledger transaction (the ledger's transactions do not nest), so
    a process that dies midway leaves a prefix (in entity-name order) issued; the refs make
    a rerun with the same allocations issue exactly the rest [our modelling choice].
    """
    from .accounts import CASH, LedgerError

    year = _int(year, "allocation year", 1900, 9999)
    day = _int(day, "day", -(10**6), 10**7)
    if instrument == CASH or instrument not in ledger.assets:
        raise AllocationError(f"no instrument {instrument!r} in the ledger")
    if not isinstance(allocations, Mapping):
        raise AllocationError("allocations must be a mapping entity -> tonnes")
    kinds = dict(ledger.store.query("SELECT name, kind FROM account WHERE external = 0"))
    wanted: dict[str, int] = {}
    for entity in sorted(allocations, key=str):
        if not isinstance(entity, str) or entity not in kinds:
            raise AllocationError(f"UNKNOWN_ACCOUNT: no account {entity!r} to allocate to")
        if kinds[entity] != "COVERED_ENTITY":
            raise AllocationError(f"account {entity!r} is {kinds[entity]}: free allocation "
                                  "goes to covered entities only")
        wanted[entity] = _int(allocations[entity], f"allocation of {entity!r}", 1, MAX_BALANCE)
    refs = {allocation_ref(year, e): e for e in wanted}
    done = _existing_operations(ledger, list(refs))
    for ref, (kind, account, asset, amount) in sorted(done.items()):
        entity = refs[ref]
        if (kind, ledger.account_names.get(account), ledger.asset_names.get(asset), amount) != \
                ("ALLOWANCE_IN", entity, instrument, wanted[entity]):
            raise AllocationError(
                f"{ref} was issued as {kind} {amount} t {ledger.asset_names.get(asset)} to "
                f"{ledger.account_names.get(account)!r}; now asked {wanted[entity]} t "
                f"{instrument}: an adjustment needs its own ref")
    new = 0
    for entity, tonnes in wanted.items():
        try:
            new += ledger.allowance_in(entity, instrument, tonnes,
                                       ref=allocation_ref(year, entity), day=day)
        except LedgerError as e:  # e.g. the system total would overflow
            raise AllocationError(f"issuing {allocation_ref(year, entity)}: {e}") from None
    return new


def _existing_operations(ledger, refs: list[str]) -> dict[str, tuple]:
    out = {}
    for k in range(0, len(refs), 500):
        chunk = refs[k:k + 500]
        marks = ", ".join("?" * len(chunk))
        for ref, kind, account, asset, amount in ledger.store.query(
                f"SELECT ref, kind, account, asset, amount FROM operation WHERE ref IN ({marks})",
                tuple(chunk)):
            out[ref] = (kind, account, asset, int(amount))
    return out


__all__ = [
    "AIR_COOLING_FACTOR", "ASSUMED_ANNUAL_TIGHTENING_PPM", "AllocationError", "BENCHMARKS",
    "Benchmarks", "SECTOR_RULES", "Sector", "SectorRule", "Unit", "UnitAllocation", "UnitType",
    "allocate_entity", "allocate_sector", "allocate_unit", "allocation_ref", "benchmarks_for",
    "cooling_factor", "derive_benchmarks", "exact_fraction", "heat_supply_factor",
    "heat_supply_ratio", "issue_allocations", "load_factor_ppm", "open_covered_entities",
    "power_ppm", "unit_allocation",
]
