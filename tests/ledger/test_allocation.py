"""ledger/allocation.py: the power-unit formula, its correction factors, the industrial
sectors and the registry's issuance into the ledger.

Every expected number is worked by hand from the rules as ledger/allocation.py states them
(docs/rules.md §12 and the recollected factors), with the arithmetic in the comments.
"""

from __future__ import annotations

from decimal import Decimal, getcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from ledger.allocation import (
    BENCHMARKS, AllocationError, Benchmarks, Sector, SectorRule, Unit, UnitType, allocate_entity,
    allocate_sector, allocate_unit, allocation_ref, benchmarks_for, heat_supply_ratio,
    issue_allocations, load_factor_ppm, open_covered_entities, power_ppm, unit_allocation)
from ledger.core import Ledger, LedgerError

ABOVE = UnitType.COAL_CONVENTIONAL_ABOVE_300MW
BELOW = UnitType.COAL_CONVENTIONAL_300MW_AND_BELOW
UNCONV = UnitType.COAL_UNCONVENTIONAL
GAS = UnitType.GAS
DAY = 18262  # 2020-01-01


def unit(type_=ABOVE, power=1_000_000, heat=0, cooling="water", load="0.90", capacity=600,
         name="U1", ratio=None) -> Unit:
    return Unit(name, type_, capacity, power, heat, cooling, load, ratio)


# ---------------------------------------------------------------------------- one unit per type


def test_conventional_coal_above_300mw_2019():
    # 3,000,000 MWh x 0.877 t/MWh x cooling 1 (water) x heat 1 (no heat) x load 1 (90 % >= 85 %)
    # = 2,631,000 t
    assert allocate_unit(unit(ABOVE, 3_000_000), 2019) == 2_631_000


def test_conventional_coal_300mw_and_below_air_cooled_chp_2019():
    u = unit(BELOW, 1_500_000, heat=2_700_000, cooling="air", load="0.82", capacity=300)
    d = unit_allocation(u, 2019)
    # heat-supply ratio = 2,700,000 GJ / (2,700,000 + 1,500,000 MWh x 3.6 GJ/MWh = 5,400,000)
    #                   = 2.7 / 8.1 = 1/3
    assert d.heat_supply_ratio == Fraction(1, 3)
    # heat factor (coal) = 1 - 0.22 x 1/3 = 1 - 11/150 = 139/150
    assert d.heat_supply_factor == Fraction(139, 150)
    # cooling (air, coal) = 1.05; load factor 82 %: 1 + 0.0014 x (85 - 82) = 1.0042
    assert d.cooling_factor == Fraction(105, 100) and d.load_factor == Fraction(10042, 10000)
    # power part = 1,500,000 x 0.979 = 1,468,500; x 1.05 = 1,541,925; x 139/150 = 1,428,850.5;
    #              x 1.0042 = 1,428,850.5 + 6,001.1721 = 1,434,851.6721
    assert d.power_part == Fraction("1434851.6721")
    # heat part = 2,700,000 GJ x 0.126 t/GJ = 340,200
    assert d.heat_part == 340_200
    # total 1,775,051.6721 -> rounded half up to 1,775,052 t
    assert d.exact == Fraction("1775051.6721") and d.tonnes == 1_775_052


def test_unconventional_coal_load_75_to_80_2019():
    # load 78 %: 1.007 x 1.0016^(80 - 78) = 1.007 x 1.00320256 = 1.01022497792 -> 1.010225 (1e-6)
    # 1,000,000 MWh x 1.146 x 1.010225 = 1,157,717.85 -> 1,157,718 t
    assert allocate_unit(unit(UNCONV, 1_000_000, load="0.78", capacity=300), 2019) == 1_157_718


def test_conventional_coal_load_below_75_2021_benchmark():
    # load 70 %: 1.015^(16 - 20 x 0.70) = 1.015^2 = 1.030225 (exact)
    # 2,000,000 MWh x 0.8218 (2021) = 1,643,600; x 1.030225 = 1,643,600 + 49,677.81
    # = 1,693,277.81 -> 1,693,278 t
    assert allocate_unit(unit(ABOVE, 2_000_000, load="0.70"), 2021) == 1_693_278


def test_gas_chp_2019():
    u = unit(GAS, 1_200_000, heat=1_080_000, cooling="air", load="0.60", capacity=400)
    # ratio = 1,080,000 / (1,080,000 + 4,320,000) = 0.2; gas heat factor 1 - 0.6 x 0.2 = 0.88
    # cooling 1 (gas, even air-cooled), load factor 1 (gas: no load correction at 60 %)
    # power 1,200,000 x 0.392 x 0.88 = 470,400 x 0.88 = 413,952; heat 1,080,000 x 0.059 = 63,720
    # total 477,672 t
    assert allocate_unit(u, 2019) == 477_672


def test_entity_is_the_sum_of_rounded_units():
    a = unit(ABOVE, 500, name="A")  # 500 x 0.877 = 438.5 -> 439
    b = unit(ABOVE, 500, name="B")  # 439 again; the entity gets 878, not round(877.0) = 877
    assert allocate_entity([a, b], 2019) == 878


# ---------------------------------------------------------------------------- each factor branch


def test_cooling_factor_branches():
    # coal air 1.05: 1,000,000 x 0.877 x 1.05 = 920,850; coal water: 877,000; gas air: 392,000
    assert allocate_unit(unit(ABOVE, cooling="air"), 2019) == 920_850
    assert allocate_unit(unit(ABOVE, cooling="water"), 2019) == 877_000
    assert allocate_unit(unit(GAS, cooling="air", capacity=400), 2019) == 392_000


def test_heat_supply_ratio_given_by_the_registry():
    # ratio given as 0.5 (no heat in the data): coal factor 1 - 0.22 x 0.5 = 0.89
    # 1,000,000 x 0.979 x 0.89 = 871,310 t
    u = unit(BELOW, ratio="0.5", capacity=300)
    assert heat_supply_ratio(u) == Fraction(1, 2)
    assert allocate_unit(u, 2019) == 871_310
    # gas with ratio 0.5: 1 - 0.6 x 0.5 = 0.7; 1,000,000 x 0.392 x 0.7 = 274,400
    assert allocate_unit(unit(GAS, ratio="0.5", capacity=400), 2019) == 274_400
    # a unit that supplied nothing has ratio 0 and allocation 0
    assert heat_supply_ratio(unit(power=0)) == 0 and allocate_unit(unit(power=0), 2019) == 0


def test_heat_only_gas_unit():
    # no power: 1,000 GJ x 0.059 = 59 t
    assert allocate_unit(unit(GAS, 0, heat=1_000, capacity=400), 2019) == 59


@pytest.mark.parametrize("load, ppm", [
    ("1", 1_000_000), ("0.85", 1_000_000),  # >= 85 %: 1
    ("0.8499", 1_000_014),  # 1 + 0.0014 x (85 - 84.99) = 1.000014
    ("0.82", 1_004_200),  # 1 + 0.0014 x 3
    ("0.80", 1_007_000),  # 1 + 0.0014 x 5 = 1.007 (meets the next branch at 80 %)
    ("0.7999", 1_007_016),  # 1.007 x 1.0016^0.01 = 1.0070160992... -> 1.007016
    ("0.7775", 1_010_629),  # 1.007 x 1.0016^(80 - 77.75 = 2.25) = 1.0106288256... -> 1.010629
    ("0.775", 1_011_033),  # 1.007 x 1.0016^2.5 = 1.0110328348... -> 1.011033
    ("0.75", 1_015_082),  # 1.007 x 1.0016^5 = 1.0150818204... -> 1.015082
    ("0.7499", 1_015_030),  # 1.015^(16 - 14.998) = 1.015^1.002 -> 1.015030 (a small step
    # down at 75 %: the recollected branches do not meet exactly)
    ("0.72", 1_024_108),  # 1.015^(16 - 14.4) = 1.015^1.6 = 1.0241077851... -> 1.024108
    ("0.70", 1_030_225),  # 1.015^2 = 1.030225
    ("0", 1_268_986),  # 1.015^16 = 1.2689855476... -> 1.268986
])
def test_load_factor_branches(load, ppm):
    assert load_factor_ppm(ABOVE, Fraction(load)) == ppm
    assert load_factor_ppm(GAS, Fraction(load)) == 1_000_000  # gas: no load correction


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_load_factor_matches_a_50_digit_decimal_evaluation(bp):
    """The exact integer-root computation agrees with an independent high-precision one
    (the factors are irrational off the integer exponents, so no tie can hide)."""
    getcontext().prec = 50
    x = Decimal(bp) / 10_000
    if x >= Decimal("0.85"):
        f = Decimal(1)
    elif x >= Decimal("0.80"):
        f = 1 + Decimal("0.0014") * (85 - 100 * x)
    elif x >= Decimal("0.75"):
        f = Decimal("1.007") * Decimal("1.0016") ** (80 - 100 * x)
    else:
        f = Decimal("1.015") ** (16 - 20 * x)
    want = int((f * 10**6 + Decimal("0.5")).to_integral_value(rounding="ROUND_FLOOR"))
    assert load_factor_ppm(UNCONV, Fraction(bp, 10_000)) == want


def test_power_ppm_rounds_half_up_exactly():
    # 0.5 ppm and 1.5 ppm are ties: half up gives 1 and 2; 0.4999995 ppm gives 0
    assert power_ppm(Fraction(1, 2_000_000), Fraction(1), Fraction(0)) == 1
    assert power_ppm(Fraction(3, 2_000_000), Fraction(1), Fraction(0)) == 2
    assert power_ppm(Fraction(4999995, 10**13), Fraction(1), Fraction(0)) == 0
    # (9/4)^(1/2) = 1.5 exactly: 1,500,000
    assert power_ppm(Fraction(1), Fraction(9, 4), Fraction(1, 2)) == 1_500_000


# ---------------------------------------------------------------------------- benchmarks, rounding


def test_benchmark_table():
    # 2019-20 from docs/rules.md §12; 2021-22 recollected; 2023-24 derived at -0.5 %/yr
    assert BENCHMARKS[2019] == BENCHMARKS[2020]
    assert (BENCHMARKS[2019].coal_above_300mw, BENCHMARKS[2019].heat_gas) == (877_000, 59_000)
    assert (BENCHMARKS[2022].coal_unconventional, BENCHMARKS[2022].heat_coal) == (930_300, 110_500)
    # 2023: 0.8177 x 0.995 = 0.8136115 -> 0.8136; 2024: 0.8136 x 0.995 = 0.809532 -> 0.8095
    assert BENCHMARKS[2023].coal_above_300mw == 813_600
    assert BENCHMARKS[2024].coal_above_300mw == 809_500
    # heat, gas: 0.0557 x 0.995 = 0.0554215 -> 0.0554; x 0.995 = 0.055123 -> 0.0551
    assert (BENCHMARKS[2023].heat_gas, BENCHMARKS[2024].heat_gas) == (55_400, 55_100)
    # ICAP: coal benchmarks tightened 6.29-18.41 % from period 1 to 2021
    assert Fraction(877_000 - 821_800, 877_000) * 100 == pytest.approx(6.29, abs=0.005)
    assert Fraction(1_146_000 - 935_000, 1_146_000) * 100 == pytest.approx(18.41, abs=0.005)


def test_custom_table_overrides():
    table = {2030: Benchmarks(700_000, 800_000, 900_000, 300_000, 100_000, 50_000)}
    # 1,000,000 x 0.700 = 700,000
    assert allocate_unit(unit(), 2030, table) == 700_000
    with pytest.raises(AllocationError, match="2019"):
        benchmarks_for(2019, table)


def test_rounding_half_up_once_per_unit():
    # 500 MWh x 0.877 = 438.5 exactly -> 439 (half up); 499 x 0.877 = 437.623 -> 438
    assert allocate_unit(unit(power=500), 2019) == 439
    assert allocate_unit(unit(power=499), 2019) == 438
    # heat only: 500 GJ x 0.059 = 29.5 -> 30; 499 GJ x 0.059 = 29.441 -> 29
    assert allocate_unit(unit(GAS, 0, heat=500, capacity=400), 2019) == 30
    assert allocate_unit(unit(GAS, 0, heat=499, capacity=400), 2019) == 29


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, words", [
    ({"type_": "COAL_SUPERCRITICAL"}, "COAL_SUPERCRITICAL"),
    ({"power": -1}, "power_supplied_mwh -1"),
    ({"heat": -5}, "heat_supplied_gj -5"),
    ({"load": "1.2"}, "outside 0..1"),
    ({"load": "-0.1"}, "outside 0..1"),
    ({"load": 0.8}, "float"),
    ({"load": "0.82355"}, "0.01 %"),
    ({"load": "eighty"}, "'eighty'"),
    ({"cooling": "oil"}, "'oil'"),
    ({"power": 600 * 8784 + 1}, "5270401"),  # more than 600 MW x 8,784 h
    ({"capacity": 0}, "capacity_mw 0"),
    ({"power": 1.5}, "1.5"),
    ({"name": "a,b"}, "'a,b'"),
    ({"ratio": "1.5"}, "heat-supply ratio"),
])
def test_bad_unit_refused_with_the_value_named(kwargs, words):
    with pytest.raises(AllocationError) as e:
        unit(**kwargs)
    assert words in str(e.value)
    assert isinstance(e.value, ValueError)


def test_bad_year_and_duplicate_units():
    with pytest.raises(AllocationError, match="2018"):
        allocate_unit(unit(), 2018)
    with pytest.raises(AllocationError, match="'U1' twice"):
        allocate_entity([unit(), unit()], 2019)


# ---------------------------------------------------------------------------- sectors


def test_sector_intensity_allocation():
    # cement 2025 (base year): 1,000,000 t clinker x 0.86 t/t = 860,000
    assert allocate_sector(Sector.CEMENT, 1_000_000, 2025) == 860_000
    # 2027: x 0.99^2 = 0.9801 -> 860,000 x 0.9801 = 842,886
    assert allocate_sector("cement", 1_000_000, 2027) == 842_886
    # aluminium 2025: 5 t x 1.70 = 8.5 -> 9 (half up)
    assert allocate_sector("ALUMINIUM", 5, 2025) == 9
    # 2024: allocated equal to verified emissions (default mode)
    assert allocate_sector("STEEL", 1_000_000, 2024, verified_emissions=1_765_432) == 1_765_432
    # a configured rule: steel at 2.0 t/t from 2024, 2 %/yr: 2026 = 100 x 2.0 x 0.98^2 = 192.08
    rule = SectorRule("STEEL", "crude steel", 2_000_000, first_year=2024, base_year=2024,
                      annual_decline_ppm=20_000, verified_mode_before_base=False)
    assert allocate_sector("STEEL", 100, 2026, rule=rule) == 192


@pytest.mark.parametrize("args, kwargs, words", [
    (("GLASS", 1, 2025), {}, "'GLASS'"),
    (("STEEL", -1, 2025), {}, "-1"),
    (("STEEL", 1, 2023), {}, "2023"),
    (("STEEL", 1, 2024), {}, "verified_emissions"),
    (("STEEL", 1, 2024), {"verified_emissions": -3}, "-3"),
])
def test_sector_bad_input(args, kwargs, words):
    with pytest.raises(AllocationError) as e:
        allocate_sector(*args, **kwargs)
    assert words in str(e.value)


# ---------------------------------------------------------------------------- issuance


def cea_total(led: Ledger) -> int:
    return sum(b["CEA"] for b in led.balances(include_external=True).values())


def open_ledger(url: str, names=("E1", "E2", "E3")) -> Ledger:
    led = Ledger.open(url)
    for n in names:
        led.open_account(n, "COVERED_ENTITY")
    return led


def test_issue_is_idempotent_and_conserves(ledger_url):
    led = open_ledger(ledger_url)
    try:
        alloc = {"E2": 2_000, "E1": 1_000, "E3": 3_000}
        assert issue_allocations(led, alloc, 2019, DAY) == 3
        assert issue_allocations(led, alloc, 2019, DAY) == 0  # twice: once
        bal = led.balances(include_external=True)
        assert {n: bal[n]["CEA"] for n in alloc} == alloc
        assert bal["@REGISTRY"]["CEA"] == -6_000  # 1,000 + 2,000 + 3,000 left the registry
        assert cea_total(led) == 0
        # another year is another issuance
        assert issue_allocations(led, {"E1": 10}, 2020, DAY + 366) == 1
        assert led.balances()["E1"]["CEA"] == 1_010 and cea_total(led) == 0
        assert led.reconcile().ok
        refs = [op.ref for op in led.statement("E1", "2020-01-01").operations]
        assert refs == [allocation_ref(2019, "E1")] == ["ALLOC-2019-E1"]
    finally:
        led.close()


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.sampled_from(["E1", "E2", "E3"]), st.integers(1, 10**12), min_size=1),
       st.integers(2019, 2030))
def test_issuance_conserves_and_holdings_equal_allocations(alloc, year):
    led = open_ledger(":memory:")
    try:
        assert issue_allocations(led, alloc, year, DAY) == len(alloc)
        assert issue_allocations(led, dict(alloc), year, DAY) == 0
        bal = led.balances(include_external=True)
        assert {n: bal[n]["CEA"] for n in alloc} == alloc
        assert cea_total(led) == 0 and bal["@REGISTRY"]["CEA"] == -sum(alloc.values())
    finally:
        led.close()


def test_issue_completes_after_a_crash_midway(tmp_path, monkeypatch):
    led = open_ledger(str(tmp_path / "l.sqlite"))
    alloc = {"E1": 1_000, "E2": 2_000, "E3": 3_000}
    real, calls = led.allowance_in, []

    def dying(*args, **kwargs):  # the process "dies" after issuing two (E1, E2 in name order)
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(led, "allowance_in", dying)
    with pytest.raises(KeyboardInterrupt):
        issue_allocations(led, alloc, 2019, DAY)
    monkeypatch.setattr(led, "allowance_in", real)
    assert {n: led.balances()[n]["CEA"] for n in alloc} == {"E1": 1_000, "E2": 2_000, "E3": 0}
    assert issue_allocations(led, alloc, 2019, DAY) == 1  # the rerun issues only E3
    assert {n: led.balances()[n]["CEA"] for n in alloc} == alloc and cea_total(led) == 0
    led.close()


@pytest.mark.parametrize("alloc, words", [
    ({"E1": 10, "NOPE": 5}, "'NOPE'"),
    ({"E1": 10, "E2": 0}, "'E2'"),
    ({"E1": 10, "E2": -4}, "-4"),
    ({"E1": 10, "E2": 2.5}, "2.5"),
    ({"E1": 10, "INST": 5}, "INSTITUTION"),
])
def test_bad_issuance_writes_nothing(tmp_path, alloc, words):
    led = open_ledger(str(tmp_path / "l.sqlite"))
    led.open_account("INST", "INSTITUTION")
    with pytest.raises(AllocationError) as e:
        issue_allocations(led, alloc, 2019, DAY)
    assert words in str(e.value)
    assert led.store.query("SELECT count(*) FROM operation") == [(0,)]
    assert cea_total(led) == 0 and led.balances()["E1"]["CEA"] == 0
    led.close()


def test_changed_amount_for_an_issued_year_is_refused(tmp_path):
    led = open_ledger(str(tmp_path / "l.sqlite"))
    issue_allocations(led, {"E1": 100}, 2019, DAY)
    with pytest.raises(AllocationError, match="ALLOC-2019-E1 was issued as ALLOWANCE_IN 100"):
        issue_allocations(led, {"E2": 5, "E1": 120}, 2019, DAY)
    assert led.balances()["E2"]["CEA"] == 0  # nothing of the refused batch was written
    with pytest.raises(AllocationError, match="'XYZ'"):
        issue_allocations(led, {"E1": 100}, 2019, DAY, instrument="XYZ")
    led.close()


def test_open_covered_entities(tmp_path):
    led = open_ledger(str(tmp_path / "l.sqlite"), names=("E1",))
    led.open_account("BANKCO", "INSTITUTION")
    assert open_covered_entities(led, ["E2", "E1", "E3"]) == 2
    assert open_covered_entities(led, ["E2", "E1", "E3"]) == 0
    with pytest.raises(AllocationError, match="'BANKCO' is open as INSTITUTION"):
        open_covered_entities(led, ["E4", "BANKCO"])
    assert "E4" not in led.accounts  # checked before opening any
    with pytest.raises((AllocationError, LedgerError)):
        open_covered_entities(led, ["@REGISTRY"])
    led.close()
