"""``cea calibrate``: a scenario's parameters fitted to the real market's stylized facts by
the method of simulated moments, the simulations in parallel on Ray (registered on the main
app by cea.cli; the method, the space and the search are in sim.calibrate).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from cea.common import check_input, check_out, fail, print_table
from cea.realism_cmd import PERIOD_HELP, show


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _whole(value, unit: str):
    """A median of whole quantities (t, fen, days) to the nearest one, as the table shows it
    (the median of an even number of seeds may end in .5)."""
    if isinstance(value, float) and unit in ("t", "fen", "fen/t", "days"):
        return int(round(value))
    return value


def _print_result(doc: dict, space) -> None:
    from sim.realism import STATISTICS

    rows = [["parameter", "scenario", "best", "bounds"]]
    for p in space.parameters:
        rows.append([p.name, _number(doc["baseline"]["parameters"][p.name]),
                     _number(doc["best"]["parameters"][p.name]),
                     f"{_number(p.low)} .. {_number(p.high)}{' log' if p.log else ''}"])
    print_table(rows)
    rows = [["statistic", "simulated", "real", "ratio", "difference", "term"]]
    table = doc["best"]["statistics"]
    for s in STATISTICS:
        row = table[s.name]
        ratio = row.get("ratio")
        rows.append([s.name, show(_whole(row["simulated"], s.unit), s.unit),
                     show(row["real"], s.unit), "" if ratio is None else f"{ratio:.3f}",
                     show(row.get("difference"), s.unit, difference=True),
                     f"{row['term']:.3f}"])
    print_table(rows)


def calibrate(
    scenario: Optional[str] = typer.Option(
        None, "--scenario", metavar="NAME", help="The scenario to calibrate (as cea simulate "
        "--scenario: first-period, 2024); default: cea simulate's defaults."),
    period: str = typer.Option("auto", "--period", metavar="PERIOD", help=PERIOD_HELP),
    budget: int = typer.Option(40, "--budget", min=1, max=100_000, metavar="N",
                               help="Parameter points evaluated per round."),
    seeds: int = typer.Option(5, "--seeds", min=1, max=1000, metavar="N",
                              help="Simulations per point, seeds S, S+1, ... from the "
                              "scenario's seed (the same for every point); the point's "
                              "statistics are their medians."),
    rounds: int = typer.Option(3, "--rounds", min=1, max=100, metavar="N",
                               help="Rounds: a Latin hypercube over the whole space, then "
                               "each round one in a box around the best, half as wide."),
    space_file: Optional[Path] = typer.Option(
        None, "--space", metavar="FILE", help="The parameters and their bounds (TOML; "
        "--print-space prints the default); default: the scenario's."),
    address: Optional[str] = typer.Option(
        None, "--address", metavar="ADDR", help="A Ray cluster (ray://host:10001, or auto for "
        "the one running on this machine), the code shipped to it; default: a local Ray "
        "instance on every CPU."),
    seed: int = typer.Option(1, "--seed", min=0, max=2**63 - 1, metavar="N",
                             help="Seed of the search's own draws: the same command gives "
                             "the same points and result."),
    days: Optional[int] = typer.Option(None, "--days", min=1, max=5000, metavar="N",
                                       help="Trading days of each simulation (default: the "
                                       "scenario's); a shorter run compares fewer dates."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                       help="Directory for calibration.json and best.toml."),
    print_space: bool = typer.Option(False, "--print-space", help="Print the scenario's "
                                     "default space as a --space file and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-round lines and no "
                               "progress bar (the result is printed all the same)."),
) -> None:
    """Fit a scenario's parameters to the real market (simulated moments, on Ray).

    Each point of the parameter space is simulated with --seeds seeds; the median of each
    statistic of cea realism across them is scored against the real period's
    (sim.realism.distance). The search evaluates --budget points a round, all simulations
    of a round in parallel on Ray; the best point's values go to best.toml, every point
    and how far each statistic still is to calibration.json.

    Example: cea calibrate --scenario first-period --budget 16 --seeds 3 --rounds 2
    --out calibration; then cea simulate --scenario first-period --config
    calibration/best.toml
    """
    from cea import progress
    from cea.common import staged_outputs
    from sim.calibrate import (CalibrationError, calibrate as run_calibration,
                               default_space, load_space, space_toml, target,
                               write_outputs)
    from sim.simulate import SimConfigError, load_config

    if space_file is not None:
        check_input(space_file, "--space")
    try:
        cfg = load_config(scenario=scenario, days=days)
        space = default_space(scenario, cfg) if space_file is None else \
            load_space(space_file, cfg)
        if not print_space:
            target(cfg, period)  # a bad or unmatched period fails before Ray starts
    except (SimConfigError, CalibrationError) as e:
        fail(str(e))
    if print_space:
        typer.echo(space_toml(space), nl=False)
        return
    if out is None:
        fail("give the output directory: --out DIR")
    check_out(out)
    if address in ("", "local"):
        address = None
    total = budget * seeds * rounds
    t0 = time.perf_counter()

    def round_done(r: int, new, best) -> None:
        if not quiet:
            typer.echo(f"round {r}/{rounds}: {len(new)} points x {seeds} seeds "
                       f"({time.perf_counter() - t0:.1f} s so far); best distance "
                       f"{best.distance:.4f} (point {best.index}, round {best.round})")

    progress.warm_up("numba", quiet)
    with progress.bar("calibrating: simulations", total, quiet) as advance:
        try:
            doc = run_calibration(cfg, space, scenario=scenario, period=period,
                                  budget=budget, seeds=seeds, rounds=rounds, seed=seed,
                                  address=address, progress=round_done, done=advance)
        except CalibrationError as e:
            fail(str(e), 1)
    with staged_outputs(out) as staged:
        paths = write_outputs(doc, staged.path)
    w = doc["window"]
    where = f"{w['first']} .. {w['last']}" if w["first"] else "the whole run and period"
    typer.echo(f"{len(doc['points'])} points x {seeds} seeds against the real period "
               f"{doc['period']} over {where} ({w['real_days']} real trading days), "
               f"{time.perf_counter() - t0:.1f} s")
    _print_result(doc, space)
    typer.echo(f"distance {doc['best']['distance']:.4f} (the scenario's own values: "
               f"{doc['baseline']['distance']:.4f}); best point {doc['best']['index']}, "
               f"round {doc['best']['round']}")
    typer.echo(f"wrote {len(paths)} files into {out}/: {', '.join(p.name for p in paths)}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
