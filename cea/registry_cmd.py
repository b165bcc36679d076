"""``cea`` commands for the registry (registered on the main app by cea.cli):

- ``cea population``: generate a seeded synthetic population of covered entities, write its
  CSV (one row per unit, see sim/population.py) and print its totals;
- ``cea registry allocate``: compute each entity's free allocation for a year from a
  population file's units and issue it into the ledger (idempotent: a rerun issues nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cea.common import check_input, fail

registry_app = typer.Typer(no_args_is_help=True,
                           help="The national registry: free allocation into the ledger.",
                           context_settings={"show_default": True,
                                             "help_option_names": ["-h", "--help"]})


def _t(x: int) -> str:
    return f"{x:,} t"


def population(
    entities: int = typer.Option(2162, "--entities", help="How many covered entities "
                                 "(1..1000000)."),
    seed: int = typer.Option(0, "--seed", help="Random seed, 0 or more (same seed, same "
                             "file)."),
    year: int = typer.Option(2019, "--year", help="Benchmark year of the allocations "
                             "(2019-2024)."),
    out: Path = typer.Option(Path("out/population.csv"), "--out", metavar="FILE",
                             help="The population CSV to write (one row per unit)."),
    accounts: Optional[Path] = typer.Option(
        None, "--accounts", metavar="FILE", help="Also write opening balances for cea match "
        "--accounts: each entity holding its allocation, short ones cash at 100.00 CNY per "
        "short tonne."),
    emissions: Optional[Path] = typer.Option(
        None, "--emissions", metavar="FILE", help="Also write the cea compliance emissions "
        "file (entity, verified_emissions, allocation, kind)."),
) -> None:
    """Generate a synthetic population calibrated to the first compliance period.

    Example: cea population --entities 2162 --seed 0 --year 2019 --out pop.csv
    --emissions em.csv
    """
    from ledger.allocation import BENCHMARKS
    from sim.population import (PopulationError, generate, write_accounts_file, write_csv,
                                write_emissions_file)

    if entities < 1 or entities > 1_000_000:
        fail(f"--entities must be 1..1000000, not {entities}")
    if seed < 0:
        fail(f"--seed must be >= 0, not {seed}")
    if year not in BENCHMARKS:
        fail(f"--year {year}: no power benchmarks (have "
             f"{', '.join(str(y) for y in sorted(BENCHMARKS))})")
    for path in (out, accounts, emissions):
        if path is not None and not path.parent.is_dir():
            fail(f"{path}: directory {path.parent} does not exist")
    from cea.outdir import OutputError, atomic_files

    targets = [p for p in (out, accounts, emissions) if p is not None]
    if len({p.resolve() for p in targets}) < len(targets):
        fail("--out, --accounts and --emissions must be different files")
    try:
        pop = generate(entities, seed, year)
        with atomic_files(*targets) as temps:  # all three appear together, once written
            write_csv(pop, temps[0])
            if accounts is not None:
                write_accounts_file(pop, temps[targets.index(accounts)])
            if emissions is not None:
                write_emissions_file(pop, temps[targets.index(emissions)])
    except (PopulationError, OutputError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot write the population files: {e.strerror}")
    t = pop.totals()
    typer.echo(f"population {year}, seed {seed}: {t.entities:,} entities, {t.units:,} units, "
               f"{t.capacity_mw:,} MW")
    rows = [("verified emissions", _t(t.verified_emissions)), ("allocation", _t(t.allocation)),
            ("short entities", f"{t.short_entities:,}"), ("total shortfall", _t(t.shortfall)),
            ("total surplus", _t(t.surplus))]
    for label, value in rows:
        typer.echo(f"  {label:<20}{value:>18}")
    typer.echo("wrote " + ", ".join(str(p) for p in (out, accounts, emissions) if p is not None))


def allocate(
    population_csv: Path = typer.Argument(..., metavar="POPULATION",
                                          help="Population CSV (cea population).",
                                          show_default=False),
    year: int = typer.Option(..., "--year", help="Allocation year: the benchmarks used and "
                             "the ref ALLOC-<year>-<entity> of each issuance."),
    ledger: str = typer.Option("out/ledger.sqlite", "--ledger", metavar="URL",
                               help="Ledger: a SQLite path (created if missing) or a "
                               "postgresql:// URL."),
    date: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD", help="Date of "
                                       "the issuance (default: 1 January of the next year)."),
    instrument: str = typer.Option("CEA", "--instrument", help="Instrument issued."),
) -> None:
    """Issue each entity's free allocation for YEAR into the ledger (once per entity).

    Example: cea registry allocate pop.csv --year 2019 --ledger ledger.sqlite
    """
    import datetime as dt

    from engine.tradingdays import day_of_date
    from ledger.allocation import (BENCHMARKS, AllocationError, allocate_entity,
                                   issue_allocations, open_covered_entities)
    from ledger.core import Ledger, LedgerError
    from ledger.store import StoreError
    from sim.population import PopulationError, read_csv

    if year not in BENCHMARKS:
        fail(f"--year {year}: no power benchmarks (have "
             f"{', '.join(str(y) for y in sorted(BENCHMARKS))})")
    try:
        when = dt.date.fromisoformat(date) if date is not None else dt.date(year + 1, 1, 1)
    except ValueError:
        fail(f"--date {date!r} is not a date YYYY-MM-DD")
    check_input(population_csv, "POPULATION")
    from ledger.store import is_postgres

    if not is_postgres(ledger):
        where = Path(ledger[len("sqlite:///"):] if ledger.startswith("sqlite:///") else ledger)
        if where.is_dir() or not where.parent.is_dir():
            fail(f"--ledger {ledger}: not a SQLite file in an existing directory, nor a "
                 "postgresql:// URL")
    try:
        pop = read_csv(population_csv)
        allocations = {e.name: allocate_entity(e.units, year) for e in pop.entities}
        led = Ledger.open(ledger, instruments=(instrument,))
        try:
            opened = open_covered_entities(led, allocations)
            new = issue_allocations(led, allocations, year, day_of_date(when), instrument)
        finally:
            led.close()
    except (PopulationError, AllocationError, LedgerError, StoreError) as e:
        fail(str(e))
    total = sum(allocations.values())
    typer.echo(f"allocation {year}: {len(allocations):,} entities, {total:,} t {instrument} "
               f"(benchmarks {year}, population file of {pop.year})")
    typer.echo(f"issued {new:,} new, {len(allocations) - new:,} already issued; opened "
               f"{opened:,} accounts; ledger {ledger}, dated {when.isoformat()}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("population")(population)
    registry_app.command("allocate")(allocate)
    app.add_typer(registry_app, name="registry")
