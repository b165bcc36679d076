"""sim/population.py and the registry commands: a seeded population calibrated to the first
compliance period, its files, and ``cea population`` / ``cea registry allocate``.

Targets (one year; see the module docstring for the assumptions): 2,162 entities exactly;
4.5 Gt of verified emissions within 1 %; exactly 847 short entities; a total shortfall of
188 Mt / 2 years = 94 Mt within 1 %. Another size N scales each by N / 2,162.
"""

from __future__ import annotations

from collections import Counter

import pytest
from typer.testing import CliRunner

from cea.cli import app
from ledger.allocation import UnitType, allocate_entity
from ledger.core import Ledger
from ledger.opening import read_accounts_file
from sim.population import (FIRST_PERIOD, PopulationError, Targets, apportion, generate,
                            read_csv, to_csv, write_accounts_file, write_csv,
                            write_emissions_file)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(r, *words):
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cea: error: "), r.stderr
    assert "Traceback" not in r.output
    for w in words:
        assert w in lines[0]


@pytest.fixture(scope="module")
def default_population():
    return generate()


def within(value: int, target: int, tolerance=0.01) -> bool:
    return abs(value - target) <= tolerance * target


def test_default_population_matches_the_first_period(default_population):
    t = default_population.totals()
    assert t.entities == 2162  # exact
    assert t.short_entities == 847  # exact
    assert within(t.verified_emissions, 4_500_000_000)  # 4.5 Gt +- 1 %
    assert within(t.shortfall, 188_000_000 // 2)  # 188 Mt over two years -> 94 Mt a year
    # two years of this population (the same shortfall each year) give the period's 188 Mt
    assert within(2 * t.shortfall, 188_000_000)


def test_entities_are_consistent(default_population):
    pop = default_population
    for e in pop.entities:
        assert e.allocation == allocate_entity(e.units, pop.year)  # ledger.allocation decides
        assert e.position == e.allocation - e.verified_emissions
        assert e.shortfall == max(0, -e.position)
        assert e.verified_emissions >= 26_000  # coverage threshold, docs/rules.md §12
        if all(u.type is UnitType.GAS for u in e.units):
            assert not e.is_short  # gas owes at most its allocation: never short here
        if e.is_short:  # at most half the allocation short (modelling cap)
            assert e.shortfall <= e.allocation // 2
    t = pop.totals()
    assert t.allocation - t.verified_emissions == t.surplus - t.shortfall  # net position
    assert len({e.name for e in pop.entities}) == 2162


def test_fleet_mix_is_plausible(default_population):
    mw = Counter()
    for e in default_population.entities:
        for u in e.units:
            mw[u.type] += u.capacity_mw
    total = sum(mw.values())
    # mostly large coal, some small coal, few unconventional, some gas; about 1,000-1,300 GW
    large, small = (mw[UnitType.COAL_CONVENTIONAL_ABOVE_300MW],
                    mw[UnitType.COAL_CONVENTIONAL_300MW_AND_BELOW])
    assert large > small > mw[UnitType.GAS]
    assert mw[UnitType.GAS] > mw[UnitType.COAL_UNCONVENTIONAL] > 0
    assert 1_000_000 <= total <= 1_300_000
    # coal units run 3,500-5,500 full-load hours of supply on average
    coal = [u for e in default_population.entities for u in e.units if u.type.is_coal]
    hours = sum(u.power_supplied_mwh for u in coal) // sum(u.capacity_mw for u in coal)
    assert 3_500 <= hours <= 5_500


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = write_csv(generate(60, seed=7), tmp_path / "a.csv").read_bytes()
    b = write_csv(generate(60, seed=7), tmp_path / "b.csv").read_bytes()
    c = write_csv(generate(60, seed=8), tmp_path / "c.csv").read_bytes()
    assert a == b and a != c
    assert b"\r" not in a and a.endswith(b"\n")


def test_other_sizes_scale(tmp_path):
    # 1,081 = 2,162 / 2: 847 / 2 = 423.5 -> 424 short; 2.25 Gt; 47 Mt
    assert FIRST_PERIOD.scaled(1081) == Targets(1081, 2_250_000_000, 424, 47_000_000)
    t = generate(1081, seed=3).totals()
    assert (t.entities, t.short_entities) == (1081, 424)
    assert within(t.verified_emissions, 2_250_000_000) and within(t.shortfall, 47_000_000)
    # a single entity: 847 / 2,162 = 0.39 -> 0 short, no shortfall
    one = generate(1, seed=0).totals()
    assert (one.entities, one.short_entities, one.shortfall) == (1, 0, 0)


def test_csv_round_trip_and_per_unit_rows(tmp_path):
    pop = generate(40, seed=2, year=2021)
    path = write_csv(pop, tmp_path / "p.csv")
    back = read_csv(path)
    assert back.year == 2021 and back.entities == pop.entities
    rows = path.read_text().splitlines()
    assert len(rows) == 1 + sum(len(e.units) for e in pop.entities)  # one row per unit


def test_apportion_is_exact():
    # 10 over weights 1:1:1 -> 3.33 each, the remainder 1 to the first: 4, 3, 3
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    # 7 over 2:5 -> 2, 5
    assert apportion(7, [2, 5]) == [2, 5]


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("year,entity", "yr,entity", 1), "header"),
    (lambda t: t.replace(",water,", ",oil,", 1), ":2: unit"),
    (lambda t: t.replace("COAL_", "NUCLEAR_", 1), "NUCLEAR_"),
    (lambda t: t.replace("\n2019,", "\n2020,", 2).replace("\n2020,", "\n2019,", 1), "year 2020"),
])
def test_bad_population_file(tmp_path, edit, words):
    path = tmp_path / "p.csv"
    path.write_text(edit(to_csv(generate(5, seed=1))))
    with pytest.raises(PopulationError) as e:
        read_csv(path)
    assert words in str(e.value)


def test_edited_allocation_and_split_entity_are_refused(tmp_path):
    text = to_csv(generate(5, seed=1))
    lines = text.splitlines()
    fields = lines[1].split(",")
    fields[-2] = str(int(fields[-2]) + 1)  # the unit's allocation, one tonne more
    path = tmp_path / "p.csv"
    path.write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n")
    with pytest.raises(PopulationError, match="p.csv:2: .*not the formula's"):
        read_csv(path)
    # the first entity's rows moved after another entity's: refused
    first = [ln for ln in lines[1:] if ln.split(",")[1] == "E0001"]
    rest = [ln for ln in lines[1:] if ln.split(",")[1] != "E0001"]
    assert rest
    path.write_text("\n".join([lines[0], first[0], *rest, *first]) + "\n")
    with pytest.raises(PopulationError, match="not consecutive|repeated"):
        read_csv(path)


@pytest.mark.parametrize("kwargs, words", [
    ({"entities": 0}, "entities"), ({"seed": -1}, "seed"), ({"year": 2018}, "2018"),
    ({"entities": 2.5}, "2.5"),
])
def test_bad_generate_arguments(kwargs, words):
    with pytest.raises(PopulationError, match=words):
        generate(**kwargs)


def test_accounts_file_opens_the_population(tmp_path):
    pop = generate(12, seed=4)
    path = write_accounts_file(pop, tmp_path / "acc.csv")
    opening = read_accounts_file(path, ["CEA"])  # the cea match --accounts reader
    assert [o.account for o in opening] == [e.name for e in pop.entities]
    for o, e in zip(opening, pop.entities):
        assert o.type.name == "COVERED_ENTITY" and o.allowances == {"CEA": e.allocation}
        assert o.cash == e.shortfall * 10_000  # 100.00 CNY per short tonne, in fen


def test_emissions_file_for_compliance(tmp_path):
    pop = generate(25, seed=6)
    lines = write_emissions_file(pop, tmp_path / "em.csv").read_text().splitlines()
    assert lines[0] == "entity,verified_emissions,allocation,kind"
    rows = [ln.split(",") for ln in lines[1:]]
    by_entity = {e.name: e for e in pop.entities}
    for name, verified, alloc, kind in rows:
        e = by_entity[name]  # every generated entity is all coal or all gas: one row each
        assert (int(verified), int(alloc)) == (e.verified_emissions, e.allocation)
        assert kind == ("gas" if e.units[0].type is UnitType.GAS else "coal")
    assert len(rows) == len(pop.entities)


# ---------------------------------------------------------------------------- the commands


def test_cli_population_writes_and_prints_totals(tmp_path):
    out = tmp_path / "pop.csv"
    r = invoke("population", "--entities", 30, "--seed", 5, "--year", 2020, "--out", out,
               "--accounts", tmp_path / "acc.csv", "--emissions", tmp_path / "em.csv")
    assert r.exit_code == 0, r.output
    pop = generate(30, seed=5, year=2020)
    t = pop.totals()
    assert out.read_bytes() == to_csv(pop).encode()
    assert f"{t.entities:,} entities" in r.stdout
    assert f"{t.verified_emissions:,} t" in r.stdout and f"{t.shortfall:,} t" in r.stdout
    short = [ln.split() for ln in r.stdout.splitlines() if "short entities" in ln]
    assert short == [["short", "entities", f"{t.short_entities:,}"]]
    assert (tmp_path / "acc.csv").is_file() and (tmp_path / "em.csv").is_file()


@pytest.mark.parametrize("args, words", [
    (("--entities", 0), "--entities"),
    (("--year", 2030), "2030"),
    (("--seed", -2), "--seed"),
    (("--out", "/nonexistent/dir/p.csv"), "/nonexistent/dir"),
])
def test_cli_population_bad_options(tmp_path, args, words):
    r = invoke("population", "--out", tmp_path / "p.csv", *args)
    assert_one_line_error(r, words)


def test_cli_registry_allocate_issues_once_and_conserves(tmp_path):
    pop_csv, ledger = tmp_path / "pop.csv", tmp_path / "ledger.sqlite"
    pop = generate(15, seed=9, year=2019)
    write_csv(pop, pop_csv)
    r = invoke("registry", "allocate", pop_csv, "--year", 2019, "--ledger", ledger,
               "--date", "2021-09-30")
    assert r.exit_code == 0, r.output
    assert "issued 15 new, 0 already issued; opened 15 accounts" in r.stdout
    r = invoke("registry", "allocate", pop_csv, "--year", 2019, "--ledger", ledger)
    assert r.exit_code == 0 and "issued 0 new, 15 already issued; opened 0" in r.stdout
    led = Ledger.open(str(ledger))
    try:
        bal = led.balances(include_external=True)
        assert {e.name: bal[e.name]["CEA"] for e in pop.entities} == pop.allocations()
        assert sum(b["CEA"] for b in bal.values()) == 0  # @REGISTRY holds minus the total
        assert bal["@REGISTRY"]["CEA"] == -sum(pop.allocations().values())
        assert led.reconcile().ok
        ops = led.statement(pop.entities[0].name, "2021-09-30").operations
        assert [op.ref for op in ops] == [f"ALLOC-2019-{pop.entities[0].name}"]
    finally:
        led.close()
    # the 2020 allocation of the same units (same 2019-20 benchmarks): new refs, same amounts
    r = invoke("registry", "allocate", pop_csv, "--year", 2020, "--ledger", ledger)
    assert r.exit_code == 0 and "issued 15 new" in r.stdout


@pytest.mark.parametrize("args, words", [
    (("--year", 2019, "--date", "2021-13-01"), "2021-13-01"),
    (("--year", 2031), "2031"),
])
def test_cli_registry_allocate_bad_options(tmp_path, args, words):
    pop_csv = write_csv(generate(3, seed=1), tmp_path / "pop.csv")
    r = invoke("registry", "allocate", pop_csv, "--ledger", tmp_path / "l.sqlite", *args)
    assert_one_line_error(r, words)


def test_cli_registry_allocate_bad_file_writes_nothing(tmp_path):
    ledger = tmp_path / "l.sqlite"
    r = invoke("registry", "allocate", tmp_path / "missing.csv", "--year", 2019, "--ledger",
               ledger)
    assert_one_line_error(r, "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text(to_csv(generate(3, seed=1)).replace(",water,", ",oil,"))
    r = invoke("registry", "allocate", bad, "--year", 2019, "--ledger", ledger)
    assert_one_line_error(r, "bad.csv:", "'oil'")
    assert not ledger.exists()  # the file is read before the ledger is opened
