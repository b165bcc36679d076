"""``cea``: one command line for everything a user runs.

Each command parses its options, calls the package that does the work, and turns any error
a user can cause into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Exchange core for China's national carbon emission allowance market (CEA).",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures.")
app.add_typer(bench_app, name="bench")


class EngineChoice(str, Enum):
    numba = "numba"
    reference = "reference"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"cea: error: {message}", err=True)
    raise typer.Exit(code)


def _prior_closes(values: List[str]) -> dict[str, int]:
    """``60.00`` for one instrument named CEA, or ``NAME=60.00`` once per instrument."""
    from engine.orderfile import parse_prior_close

    closes: dict[str, int] = {}
    for value in values:
        name, _, price = value.rpartition("=")
        name = name.strip() or "CEA"
        if name in closes:
            _fail(f"--prior-close given twice for instrument {name}")
        closes[name] = parse_prior_close(price)
    return closes


@app.command()
def match(
    orders: Path = typer.Argument(..., help="Order file (CSV, spec section 8)."),
    prior_close: List[str] = typer.Option(
        ..., "--prior-close", help="Prior close in CNY, e.g. 60.00; or NAME=60.00 per "
        "instrument when the file has an instrument column (repeat the option)."),
    out: Path = typer.Option(Path("out"), "--out", help="Directory for the result files."),
    engine: EngineChoice = typer.Option(EngineChoice.numba, "--engine",
                                        help="Matching implementation."),
    check: bool = typer.Option(False, "--check", help="Check the book's invariants at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the day summary."),
) -> None:
    """Run the engine over an order file; write trades, orders, rejects and days CSV files."""
    from engine.errors import EngineConfigError
    from engine.orderfile import OrderFileError, read_order_file, run_match, write_results

    started = time.perf_counter()
    try:
        closes = _prior_closes(prior_close)
        parsed = read_order_file(orders, list(closes))
        if not parsed.has_instrument_column and len(closes) > 1:
            _fail("several --prior-close values need an instrument column in the order file")
        result = run_match(parsed, list(closes.values()), engine.value, check_invariants=check)
        paths = write_results(result, out)
    except (OrderFileError, EngineConfigError) as e:
        _fail(str(e))
    elapsed = time.perf_counter() - started
    if quiet:
        return
    typer.echo(f"{len(parsed.commands)} commands, {len(result.trades) - 1} trades, "
               f"{len(result.rejects) - 1} rejects ({engine.value} engine, {elapsed:.2f} s)")
    _print_table(result.days)
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(v.rjust(w) for v, w in zip(r, widths)))


@bench_app.command("core")
def bench_core(
    orders: int = typer.Option(1_000_000, "--orders", min=1, help="Commands in the stream."),
    seed: int = typer.Option(7, "--seed", help="Seed of the generated stream."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the figures here."),
    reference_orders: Optional[int] = typer.Option(
        None, "--reference-orders", min=1,
        help="Run the reference book on only this prefix (default: the whole stream)."),
) -> None:
    """Matching core: reference book vs Numba (one batch, per command, batches of 64)."""
    from bench.core import run_core_benchmark

    run_core_benchmark(orders=orders, seed=seed, json_path=json_path,
                       reference_orders=reference_orders, echo=typer.echo)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("cea: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
