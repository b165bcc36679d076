"""``cea realism``: a simulation's stylized facts against the real market's (registered on the
main app by cea.cli; the statistics, their definitions and the plots are in sim.realism).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cea.common import fail, print_table

#: what ``--period`` accepts: a real period's name, or ``auto``
PERIOD_HELP = ("The real period to compare with: first-period (2021-07-16..2021-12-31), "
               "2022-2023 (2022-05-26..2023-12-29), 2024 (2024-05-24..2024-12-31), all, or "
               "auto: the one the run's dates overlap most.")


def _cny(fen: int) -> str:
    """Fen as CNY with thousands separators and two decimals: 16,707,071,792.05."""
    from engine.units import format_fen

    whole, cents = format_fen(fen).split(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}.{cents}"


def show(value, unit: str, difference: bool = False) -> str:
    """A statistic's value as the table prints it, by its unit (``sim.realism.Statistic``);
    a ``difference`` signed, in percentage points for a share in %."""
    if value is None:
        return "" if difference else "n/a"
    sign = "+" if difference else ""
    if unit == "%":
        return f"{value:{sign}.2f} {'pp' if difference else '%'}"
    if unit == "t":
        return f"{value:,} t"
    if unit in ("fen", "fen/t"):
        return f"{_cny(value)} CNY{'/t' if unit == 'fen/t' else ''}"
    if unit == "days":
        return f"{value:,}"
    return f"{value:{sign}.3f}"


def _print_real(period: str) -> None:
    from sim.realism import STATISTICS, RealismError, period_dates, real_facts

    try:
        first, last = period_dates(period)
        facts = real_facts(first, last)
    except RealismError as e:
        fail(str(e))
    typer.echo(f"real CEA market, period {period}: {facts.first_day} .. {facts.last_day}, "
               f"{facts.days} trading days, {facts.returns} daily returns")
    print_table([["statistic", "real"]] +
                [[s.name, show(getattr(facts, s.name), s.unit)] for s in STATISTICS])
    years = ", ".join(f"{y} {v:.1f} %" for y, v in facts.nov_dec_volume_share_by_year.items())
    typer.echo(f"Nov-Dec share of each year's volume: {years}")
    typer.echo("autocorrelation of returns, lags 1..10: " + _series(facts.return_acf))
    typer.echo("of absolute returns, lags 1..10: " + _series(facts.abs_return_acf))


def _series(values) -> str:
    return " ".join("n/a" if v is None else f"{v:+.2f}" for v in values)


def realism(
    directory: Optional[Path] = typer.Argument(
        None, metavar="DIR", help="An output directory of cea simulate."),
    period: str = typer.Option("auto", "--period", metavar="PERIOD", help=PERIOD_HELP),
    real: Optional[str] = typer.Option(
        None, "--real", metavar="PERIOD", help="Print the real market's facts over PERIOD "
        "(a name as for --period) and exit; no DIR."),
    json_only: bool = typer.Option(False, "--json-only", help="Write realism.json only, "
                                   "no plots (faster: for calibration loops)."),
) -> None:
    """A simulation's stylized facts against the real CEA market's.

    Daily return volatility and autocorrelation, the year-end volume rush, the block
    segment's share and price against the close, how uneven volume is, quiet days, the
    day's range and the totals, computed the same way for DIR's days and the published
    series over the dates both cover; prints the table and writes realism.json and the
    realism_*.png plots into DIR (docs/simulate.md says what each figure is).

    Example: cea realism simulation; cea realism --real 2024
    """
    if real is not None:
        if directory is not None:
            fail("give DIR or --real PERIOD, not both")
        _print_real(real)
        return
    if directory is None:
        fail("give a cea simulate output directory (DIR), or --real PERIOD")
    from cea.common import staged_outputs
    from sim.realism import (STATISTICS, RealismError, period_dates, report,
                             simulated_days)

    try:
        if period != "auto":
            period_dates(period)
        simulated_days(directory)  # a bad directory fails before anything is staged
    except RealismError as e:
        fail(str(e))
    with staged_outputs(directory) as staged:
        try:
            doc = report(directory, period, out=staged.path, plots=not json_only)
        except RealismError as e:
            fail(str(e))
    w = doc["window"]
    typer.echo(f"{directory} ({doc['run_first']} .. {doc['run_last']}) against the real "
               f"period {doc['period']} ({doc['period_first']} .. {doc['period_last']})")
    where = (f"{w['first']} .. {w['last']}" if w["first"] else "the whole run and period")
    typer.echo(f"compared over {where}: {w['simulated_days']} simulated, {w['real_days']} "
               "real trading days")
    rows = [["statistic", "simulated", "real", "ratio", "difference"]]
    for s in STATISTICS:
        row = doc["statistics"][s.name]
        ratio = row.get("ratio")
        rows.append([s.name, show(row["simulated"], s.unit), show(row["real"], s.unit),
                     "" if ratio is None else f"{ratio:.3f}",
                     show(row.get("difference"), s.unit, difference=True)])
    print_table(rows)
    top = [f"{k} {v:.3f}" for k, v in sorted(doc["distance_terms"].items(),
                                               key=lambda kv: -kv[1])[:3] if v]
    typer.echo(f"distance {doc['distance']:.3f}"
               + (f" (largest terms: {', '.join(top)})" if top else ""))
    n = len(doc["files"])
    typer.echo(f"wrote {n} file{'s' if n != 1 else ''} into {directory}/: "
               + ", ".join(doc["files"]))


def register(app: typer.Typer) -> None:
    app.command("realism")(realism)
