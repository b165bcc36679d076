"""``cea compliance``: obligations, CCER offsets in, surrender, borrowing and the report.

The emissions file is a CSV with the columns ``entity,verified_emissions,allocation,kind``
(any order; other columns are ignored), one row per entity and unit kind (``coal`` for every
non-gas unit, or ``gas``), whole tonnes::

    entity,verified_emissions,allocation,kind
    A001,120000,100000,coal
    A002,50000,45000,gas

``cea compliance obligations`` computes each entity's obligation (``ledger.compliance``) and,
with ``--ledger``, records it there; ``surrender`` and ``borrow`` are checked against the
record. Every change to the ledger is one transaction and is idempotent on its ``--ref``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer

from cea.common import LEDGER_HELP, fail, print_table, read_ledger, staged_outputs

compliance_app = typer.Typer(no_args_is_help=True, help="Compliance: obligations from "
                             "verified emissions, surrender, borrowing, the shortfall report.")
PERIOD_HELP = "Compliance period: 2019-20, 2021-22, 2023 or 2024."


def _day(date: Optional[str]) -> int:
    """The ledger day of ``--date`` (default: today)."""
    from engine.tradingdays import day_of_date

    if date is None:
        return day_of_date(dt.date.today())
    try:
        return day_of_date(dt.date.fromisoformat(date))
    except ValueError:
        fail(f"--date {date!r} is not a date YYYY-MM-DD")


@compliance_app.command("periods")
def periods() -> None:
    """The compliance periods: emission years, 95 % milestone, deadline, rules."""
    from ledger.compliance import PERIODS, penalty_regime

    rows = [["period", "years", "milestone_95pct", "deadline", "coal_gap_cap", "ccer_share",
             "borrowing", "penalty"]]
    for p in PERIODS:
        b = p.borrowing
        rows.append([p.name, "+".join(map(str, p.emission_years)),
                     p.milestone.isoformat() if p.milestone else "-", p.deadline.isoformat(),
                     f"{p.coal_gap_cap * 100}%" if p.coal_gap_cap is not None else "-",
                     f"{p.ccer_share * 100}%",
                     f">={b.threshold * 100}% gap: {b.share * 100}% from {b.lender}" if b
                     else "-", penalty_regime(p.deadline).name])
    print_table(rows)


@compliance_app.command("obligations")
def obligations(
    period: str = typer.Option(..., "--period", help=PERIOD_HELP),
    emissions: Path = typer.Option(..., "--emissions", help="CSV: entity,verified_emissions,"
                                   "allocation,kind (coal or gas), whole tonnes."),
    ledger: Optional[str] = typer.Option(None, "--ledger", help="Record the obligations in "
                                         "this ledger (" + LEDGER_HELP + ") ."),
) -> None:
    """Each entity's obligation from its verified emissions; with --ledger, recorded there."""
    from ledger.compliance import ComplianceError, read_emissions

    try:
        obs = read_emissions(emissions, period)
    except ComplianceError as e:
        fail(str(e))
    rows = [["entity", "verified_emissions", "allocation", "obligation", "gap", "ccer_limit",
             "borrow_limit"]]
    for ob in obs:
        rows.append([ob.entity, *(str(x) for x in (ob.verified_emissions, ob.allocation,
                                                   ob.obligation, ob.gap, ob.ccer_limit,
                                                   ob.borrow_limit))])
    print_table(rows)
    if ledger is not None:
        new = read_ledger(ledger, lambda led: led.record_obligations(obs))
        typer.echo(f"ledger {ledger}: {new} obligations recorded, {len(obs) - new} already there")


@compliance_app.command("offset-in")
def offset_in(
    entity: str = typer.Argument(..., help="Account name."),
    tonnes: int = typer.Option(..., "--tonnes", help="CCER offsets, whole tonnes."),
    ref: str = typer.Option(..., "--ref", help="Idempotency key of the registry transfer."),
    date: Optional[str] = typer.Option(None, "--date", help="YYYY-MM-DD (default today)."),
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
) -> None:
    """CCER offsets transferred in from the registry, to be surrendered."""
    day = _day(date)
    new = read_ledger(ledger, lambda led: led.offset_in(entity, tonnes, ref=ref, day=day))
    typer.echo(f"{entity}: {tonnes} t CCER in" if new else f"ref {ref!r} applied before: nothing "
               "written")


@compliance_app.command("surrender")
def surrender(
    entity: str = typer.Argument(..., help="Account name."),
    period: str = typer.Option(..., "--period", help=PERIOD_HELP),
    cea: int = typer.Option(0, "--cea", help="Allowances to surrender, whole tonnes."),
    ccer: int = typer.Option(0, "--ccer", help="CCER offsets to surrender, whole tonnes."),
    instrument: str = typer.Option("CEA", "--instrument", help="The allowance instrument "
                                   "(a vintage, where the ledger has several)."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Idempotency key (default: "
                                      "ENTITY:PERIOD:CEA:CCER:DATE, so a repeated command "
                                      "surrenders once)."),
    date: Optional[str] = typer.Option(None, "--date", help="YYYY-MM-DD (default today)."),
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
) -> None:
    """Surrender allowances (and CCERs) for ENTITY's obligation: one ledger transaction."""
    from engine.tradingdays import date_of_day
    from ledger.compliance import ComplianceError, compliance_period

    try:
        name = compliance_period(period).name
    except ComplianceError as e:
        fail(str(e))
    day = _day(date)
    ref = ref or f"{entity}:{name}:{cea}:{ccer}:{date_of_day(day)}"
    new = read_ledger(ledger, lambda led: led.surrender(entity, name, cea, ccer, ref=ref, day=day,
                                                        instrument=instrument))
    typer.echo(f"{entity}: surrendered {cea} t {instrument} and {ccer} t CCER for {name} "
               f"(ref {ref})" if new else f"ref {ref!r} applied before: nothing written")


@compliance_app.command("borrow")
def borrow(
    entity: str = typer.Argument(..., help="Account name."),
    period: str = typer.Option(..., "--period", help=PERIOD_HELP),
    tonnes: int = typer.Option(..., "--tonnes", help="Allowances to borrow, whole tonnes."),
    instrument: str = typer.Option("CEA", "--instrument", help="The instrument the borrowed "
                                   "allowances are issued in."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Idempotency key (default: "
                                      "ENTITY:PERIOD:TONNES:DATE)."),
    date: Optional[str] = typer.Option(None, "--date", help="YYYY-MM-DD (default today)."),
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
) -> None:
    """Borrow the next period's allowances for ENTITY's obligation, within its limit."""
    from engine.tradingdays import date_of_day
    from ledger.compliance import ComplianceError, compliance_period

    try:
        p = compliance_period(period)
    except ComplianceError as e:
        fail(str(e))
    day = _day(date)
    ref = ref or f"{entity}:{p.name}:{tonnes}:{date_of_day(day)}"
    new = read_ledger(ledger, lambda led: led.borrow(entity, p.name, tonnes, ref=ref, day=day,
                                                     instrument=instrument))
    lender = p.borrowing.lender if p.borrowing else "?"
    typer.echo(f"{entity}: borrowed {tonnes} t {instrument} from the {lender} allocation for "
               f"{p.name} (ref {ref})" if new else f"ref {ref!r} applied before: nothing written")


@compliance_app.command("report")
def report(
    period: str = typer.Option(..., "--period", help=PERIOD_HELP),
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
    emissions: Optional[Path] = typer.Option(
        None, "--emissions", help="CSV entity,verified_emissions,allocation,kind: obligations "
        "to report besides those recorded in the ledger (must agree with them)."),
    average_price: Optional[str] = typer.Option(
        None, "--average-price", help="Average price (CNY/t) in the month before the "
        "deadline, for price-based penalties (default: the ledger's trades)."),
    out: Path = typer.Option(Path("out"), "--out", help="Directory for compliance_PERIOD.csv "
                             "and .json."),
) -> None:
    """Per entity at the deadline: obligation, surrendered, borrowed, shortfall, status and
    penalty range; prints a table, writes CSV and JSON."""
    from engine.orderfile import parse_price
    from ledger.compliance import (ComplianceError, compliance_period, compliance_report,
                                   read_emissions, report_rows, write_report)

    try:
        p = compliance_period(period)
        given = read_emissions(emissions, p) if emissions is not None else None
    except ComplianceError as e:
        fail(str(e))
    price = None
    if average_price is not None:
        price = parse_price(average_price.strip())
        if not price:
            fail(f"--average-price {average_price!r} is not a positive price in CNY with at "
                 "most two decimals (e.g. 60.00)")
    rep = read_ledger(ledger, lambda led: compliance_report(led, p, given, average_price_fen=price))
    from ledger.statements import money

    typer.echo(f"period {rep.period}: deadline {rep.deadline}, milestone "
               f"{rep.milestone or '-'}; penalties: {rep.regime.citation}; average price "
               f"{money(rep.average_price) if rep.average_price is not None else '-'} "
               f"({rep.average_price_basis})")
    rows = report_rows(rep)
    # the table: the columns that change (by_milestone only where the period has a milestone)
    keep = [0, 3, 5, 6, 7, 8, 9] + ([11] if rep.milestone is not None else []) + [12, 13, 14]
    print_table([[r[i] for i in keep] for r in rows])
    if rep.milestone is not None:
        typer.echo(f"by the milestone: {rep.compliant_by_milestone} of {len(rep.entities)} "
                   f"entities ({'met' if rep.milestone_met else 'not met'}: 95 % needed)")
    try:
        with staged_outputs(out) as staged:
            paths = write_report(rep, staged.path)
    except OSError as e:
        fail(f"{out}: cannot write the report: {e.strerror}")
    typer.echo("wrote " + ", ".join(str(staged.final_path(x)) for x in paths))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(compliance_app, name="compliance")
