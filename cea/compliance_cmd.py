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

from cea.common import LEDGER_HELP, check_out, fail, print_table, read_ledger, staged_outputs

compliance_app = typer.Typer(no_args_is_help=True, help="Compliance: obligations from "
                             "verified emissions, surrender, borrowing, the shortfall report.",
                             context_settings={"show_default": True,
                                               "help_option_names": ["-h", "--help"]})
PERIOD_HELP = "Compliance period (cea compliance periods lists them)."
#: The compliance periods (ledger.compliance.PERIODS' names), for the help
PERIODS = "2019-20|2021-22|2023|2024"


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
    """The compliance periods: emission years, 95 % milestone, deadline, rules.

    Example: cea compliance periods
    """
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
    period: str = typer.Option(..., "--period", metavar=PERIODS, help=PERIOD_HELP),
    emissions: Path = typer.Option(..., "--emissions", metavar="FILE",
                                   help="CSV: entity, verified_emissions, allocation, kind (coal "
                                   "or gas), whole tonnes."),
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL", help="Also record "
                                         "the obligations in this ledger: a SQLite file or a "
                                         "postgresql:// URL (default: printed only)."),
) -> None:
    """Each entity's obligation from its verified emissions; with --ledger, recorded there.

    Example: cea compliance obligations --period 2023 --emissions em.csv
    --ledger out/ledger.sqlite
    """
    from ledger.compliance import ComplianceError, read_emissions

    try:
        obs = read_emissions(emissions, period)
    except ComplianceError as e:
        fail(str(e))
    # recorded first: printing may stop half-way (cea ... | head)
    new = (read_ledger(ledger, lambda led: led.record_obligations(obs)) if ledger is not None
           else None)
    rows = [["entity", "verified_emissions", "allocation", "obligation", "gap", "ccer_limit",
             "borrow_limit"]]
    for ob in obs:
        rows.append([ob.entity, *(str(x) for x in (ob.verified_emissions, ob.allocation,
                                                   ob.obligation, ob.gap, ob.ccer_limit,
                                                   ob.borrow_limit))])
    print_table(rows)
    if new is not None:
        typer.echo(f"ledger {ledger}: {new} obligations recorded, {len(obs) - new} already there")


@compliance_app.command("offset-in")
def offset_in(
    entity: str = typer.Argument(..., metavar="ENTITY", help="Account name.",
                                 show_default=False),
    tonnes: int = typer.Option(..., "--tonnes", min=1, help="CCER offsets, whole tonnes."),
    ref: str = typer.Option(..., "--ref", help="Idempotency key of the registry transfer."),
    date: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD",
                                       help="Date of the operation (default today)."),
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL", help=LEDGER_HELP),
) -> None:
    """CCER offsets transferred in from the registry, to be surrendered.

    Example: cea compliance offset-in A001 --tonnes 5000 --ref CCER-1
    --ledger out/ledger.sqlite
    """
    day = _day(date)
    new = read_ledger(ledger, lambda led: led.offset_in(entity, tonnes, ref=ref, day=day))
    typer.echo(f"{entity}: {tonnes} t CCER in" if new else f"ref {ref!r} applied before: nothing "
               "written")


@compliance_app.command("surrender")
def surrender(
    entity: str = typer.Argument(..., metavar="ENTITY", help="Account name.",
                                 show_default=False),
    period: str = typer.Option(..., "--period", metavar=PERIODS, help=PERIOD_HELP),
    cea: int = typer.Option(0, "--cea", min=0, help="Allowances to surrender, whole tonnes."),
    ccer: int = typer.Option(0, "--ccer", min=0, help="CCER offsets to surrender, whole "
                             "tonnes."),
    instrument: str = typer.Option("CEA", "--instrument", help="The allowance instrument "
                                   "(a vintage, where the ledger has several)."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Idempotency key (default: "
                                      "ENTITY:PERIOD:CEA:CCER:DATE, so a repeated command "
                                      "surrenders once)."),
    date: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD",
                                       help="Date of the operation (default today)."),
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL", help=LEDGER_HELP),
) -> None:
    """Surrender allowances (and CCERs) for ENTITY's obligation: one ledger transaction.

    Example: cea compliance surrender A001 --period 2023 --cea 90000
    --ledger out/ledger.sqlite
    """
    from engine.tradingdays import date_of_day
    from ledger.compliance import ComplianceError, compliance_period

    try:
        name = compliance_period(period).name
    except ComplianceError as e:
        fail(str(e))
    day = _day(date)
    if cea == 0 and ccer == 0:
        fail("give --cea or --ccer: the tonnes to surrender")
    ref = ref or f"{entity}:{name}:{cea}:{ccer}:{date_of_day(day)}"
    new = read_ledger(ledger, lambda led: led.surrender(entity, name, cea, ccer, ref=ref, day=day,
                                                        instrument=instrument))
    typer.echo(f"{entity}: surrendered {cea} t {instrument} and {ccer} t CCER for {name} "
               f"(ref {ref})" if new else f"ref {ref!r} applied before: nothing written")


@compliance_app.command("borrow")
def borrow(
    entity: str = typer.Argument(..., metavar="ENTITY", help="Account name.",
                                 show_default=False),
    period: str = typer.Option(..., "--period", metavar=PERIODS, help=PERIOD_HELP),
    tonnes: int = typer.Option(..., "--tonnes", min=1, help="Allowances to borrow, whole "
                               "tonnes."),
    instrument: str = typer.Option("CEA", "--instrument", help="The instrument the borrowed "
                                   "allowances are issued in."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Idempotency key (default: "
                                      "ENTITY:PERIOD:TONNES:DATE)."),
    date: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD",
                                       help="Date of the operation (default today)."),
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL", help=LEDGER_HELP),
) -> None:
    """Borrow the next period's allowances for ENTITY's obligation, within its limit.

    Example: cea compliance borrow A001 --period 2021-22 --tonnes 10000
    --ledger out/ledger.sqlite
    """
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
    period: str = typer.Option(..., "--period", metavar=PERIODS, help=PERIOD_HELP),
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL", help=LEDGER_HELP),
    emissions: Optional[Path] = typer.Option(
        None, "--emissions", metavar="FILE", help="CSV (entity, verified_emissions, allocation, "
        "kind): obligations to report besides those recorded in the ledger (must agree with "
        "them)."),
    average_price: Optional[str] = typer.Option(
        None, "--average-price", metavar="PRICE", help="Average price (CNY/t) in the month "
        "before the deadline, for price-based penalties (default: the ledger's trades)."),
    out: Path = typer.Option(Path("out"), "--out", metavar="DIR", help="Directory for "
                             "compliance_PERIOD.csv and .json."),
    full: bool = typer.Option(False, "--full", "--table", help="Also print the whole table, "
                              "one line per entity (the CSV file has it in any case)."),
) -> None:
    """Per entity at the deadline: obligation, surrendered, borrowed, shortfall, status, penalty.

    Writes compliance_PERIOD.csv and .json (one row per entity), then prints a summary:
    entities by status, the tonnes, the penalty range; --full prints the table too.

    Example: cea compliance report --period 2023 --ledger out/ledger.sqlite --out out
    """
    from engine.orderfile import parse_price
    from ledger.compliance import (ComplianceError, compliance_period, compliance_report,
                                   read_emissions, report_rows, write_report)

    price = None
    if average_price is not None:
        price = parse_price(average_price.strip())
        if not price:
            fail(f"--average-price {average_price!r} is not a positive price in CNY with at "
                 "most two decimals (e.g. 60.00)")
    check_out(out)
    try:
        p = compliance_period(period)
        given = read_emissions(emissions, p) if emissions is not None else None
    except ComplianceError as e:
        fail(str(e))
    rep = read_ledger(ledger, lambda led: compliance_report(led, p, given, average_price_fen=price))
    try:  # the files first: printing may stop half-way (cea ... | head)
        with staged_outputs(out) as staged:
            paths = [staged.final_path(x) for x in write_report(rep, staged.path)]
    except OSError as e:
        fail(f"{out}: cannot write the report: {e.strerror}")
    from ledger.statements import money

    typer.echo(f"period {rep.period}: deadline {rep.deadline}, milestone "
               f"{rep.milestone or '-'}; penalties: {rep.regime.citation}; average price "
               f"{money(rep.average_price) if rep.average_price is not None else '-'} "
               f"({rep.average_price_basis})")
    if full:
        rows = report_rows(rep)
        # the columns that change (by_milestone only where the period has a milestone)
        keep = [0, 3, 5, 6, 7, 8, 9] + ([11] if rep.milestone is not None else []) + [12, 13, 14]
        print_table([[r[i] for i in keep] for r in rows])
    for line in summary_lines(rep):
        typer.echo(line)
    if rep.milestone is not None:
        typer.echo(f"by the milestone: {rep.compliant_by_milestone} of {len(rep.entities)} "
                   f"entities ({'met' if rep.milestone_met else 'not met'}: 95 % needed)")
    typer.echo("wrote " + ", ".join(str(x) for x in paths)
               + ("" if full else " (--full prints the table)"))


def summary_lines(rep) -> list[str]:
    """A few lines for the report: entities by status with their shortfall, the tonnes in
    all, the penalty range (tonnes and fen are integers; CNY printed from fen)."""

    def t(x: int) -> str:
        return f"{x:,} t"

    def cny(fen: int) -> str:
        return f"{fen // 100:,}.{fen % 100:02d}"

    def entities(n: int) -> str:
        return f"{n:,} {'entity' if n == 1 else 'entities'}"

    by_status: dict[str, list] = {}
    for e in rep.entities:
        by_status.setdefault(e.status, []).append(e)
    lines = [f"{entities(len(rep.entities))}: " + (", ".join(
        f"{len(es):,} {status}" for status, es in sorted(by_status.items())) or "none")]
    total = {k: sum(getattr(e, k) for e in rep.entities)
             for k in ("obligation", "surrendered_cea", "surrendered_ccer", "borrowed", "late",
                       "shortfall", "uncorrected")}
    lines.append(f"  obligation {t(total['obligation'])}; surrendered "
                 f"{t(total['surrendered_cea'])} CEA + {t(total['surrendered_ccer'])} CCER; "
                 f"borrowed {t(total['borrowed'])}; late {t(total['late'])}")
    for status, es in sorted(by_status.items()):
        short = sum(e.shortfall for e in es)
        if short:
            lines.append(f"  {status}: {entities(len(es))} short {t(short)} in all")
    lines.append(f"  shortfall {t(total['shortfall'])}, of which uncorrected "
                 f"{t(total['uncorrected'])}")
    lows = [e.penalty_min for e in rep.entities if e.penalty_min is not None]
    highs = [e.penalty_max for e in rep.entities if e.penalty_max is not None]
    if lows or highs:
        liable = sum(1 for e in rep.entities if e.penalty_max)
        lines.append(f"  penalties: {cny(sum(lows))} to {cny(sum(highs))} CNY in all, "
                     f"{entities(liable)} liable")
    else:
        lines.append("  penalties: not computed (no average price: give --average-price)")
    return lines


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(compliance_app, name="compliance")
