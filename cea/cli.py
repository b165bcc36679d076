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

from cea.common import LEDGER_HELP, fail, print_table, read_ledger, staged_outputs

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Exchange core for China's national carbon emission allowance market (CEA).",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures.")
app.add_typer(bench_app, name="bench")
ledger_app = typer.Typer(no_args_is_help=True, help="The settlement ledger: balances, "
                         "statements, reconciliation.")
app.add_typer(ledger_app, name="ledger")
journal_app = typer.Typer(no_args_is_help=True, help="The server's journal: verify it, replay "
                          "it into the exchange's state.")
app.add_typer(journal_app, name="journal")


class EngineChoice(str, Enum):
    numba = "numba"
    reference = "reference"


def _on_off(option: str, value: str) -> bool:
    if value not in ("on", "off"):
        fail(f"{option} must be on or off, not {value!r}")
    return value == "on"


def _prior_closes(values: List[str]) -> dict[str, int]:
    """``60.00`` for one instrument named CEA, or ``NAME=60.00`` once per instrument."""
    from engine.orderfile import parse_prior_close

    closes: dict[str, int] = {}
    for value in values:
        name, _, price = value.rpartition("=")
        name = name.strip() or "CEA"
        if name in closes:
            fail(f"--prior-close given twice for instrument {name}")
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
    accounts: Optional[Path] = typer.Option(
        None, "--accounts", help="CSV of opening balances (account,type,cash,<instrument>...): "
        "reservation and settlement on; writes the ledger, statements and reconciliation too."),
    ledger: Optional[str] = typer.Option(None, "--ledger", help="With --accounts: the ledger "
                                         "(default DIR/ledger.sqlite, recreated each run)."),
    fee_bps_listed: int = typer.Option(0, "--fee-bps-listed", min=0, max=1000,
                                       help="With --accounts: fee per side, listed trades."),
    fee_bps_block: int = typer.Option(0, "--fee-bps-block", min=0, max=1000,
                                      help="With --accounts: fee per side, block trades."),
    t0: bool = typer.Option(False, "--t0", help="With --accounts: allowances bought today are "
                            "sellable today (default T+1)."),
) -> None:
    """Run the engine over an order file; write trades, orders, rejects and days CSV files."""
    from engine.accounts import AccountError, RiskConfig
    from engine.errors import EngineConfigError
    from engine.orderfile import OrderFileError, read_order_file, run_match, write_results
    from ledger.core import LedgerError
    from ledger.store import StoreError

    started = time.perf_counter()
    settled = None
    try:
        closes = _prior_closes(prior_close)
        parsed = read_order_file(orders, list(closes))
        if not parsed.has_instrument_column and len(closes) > 1:
            fail("several --prior-close values need an instrument column in the order file")
        if accounts is None and ledger is not None:
            fail("--ledger needs --accounts")
        with staged_outputs(out) as staged:
            if accounts is None:
                result = run_match(parsed, list(closes.values()), engine.value,
                                   check_invariants=check)
            else:
                from cea.match import run_settled_match

                risk = RiskConfig(fee_bps_listed=fee_bps_listed, fee_bps_block=fee_bps_block,
                                  t_plus_one=not t0)
                settled = run_settled_match(parsed, list(closes.values()), accounts,
                                            staged.path, engine.value, risk, ledger,
                                            check_invariants=check)
                result = settled.result
            paths = write_results(result, staged.path)
        paths = [staged.final_path(p) for p in paths]
        if settled is not None:
            settled.ledger_url = staged.final_path(settled.ledger_url)
            settled.statements = [staged.final_path(p) for p in settled.statements]
    except (OrderFileError, EngineConfigError, LedgerError, AccountError, StoreError) as e:
        fail(str(e))
    elapsed = time.perf_counter() - started
    if settled is not None and not settled.reconciliation.ok:
        for problem in settled.reconciliation.problems:
            typer.echo(f"cea: reconcile: {problem}", err=True)
        fail("the ledger and the engine's balances disagree (see reconcile.json)", 1)
    if quiet:
        return
    typer.echo(f"{len(parsed.commands)} commands, {len(result.trades) - 1} trades, "
               f"{len(result.rejects) - 1} rejects ({engine.value} engine, {elapsed:.2f} s)")
    print_table(result.days)
    typer.echo("wrote " + ", ".join(str(p) for p in paths))
    if settled is not None:
        typer.echo(f"ledger {settled.ledger_url}: {settled.settled} trades settled, "
                   f"{len(settled.statements) // 2} statements, reconciled with the engine")


@ledger_app.command("balances")
def ledger_balances(
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (fen and tonnes)."),
) -> None:
    """Every account's balances: cash in CNY, allowances in tonnes per instrument."""
    import json

    from ledger.statements import money

    balances = read_ledger(ledger, lambda led: led.balances())
    if json_out:
        typer.echo(json.dumps(balances, indent=1, sort_keys=True))
        return
    assets = list(next(iter(balances.values()), {"CNY": 0}))
    rows = [["account"] + assets]
    for name, row in balances.items():
        rows.append([name] + [money(row[a]) if a == "CNY" else str(row[a]) for a in assets])
    print_table(rows)


@ledger_app.command("statement")
def ledger_statement(
    account: str = typer.Argument(..., help="Account name."),
    date: str = typer.Option(..., "--date", help="Trading date, YYYY-MM-DD."),
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
    fmt: str = typer.Option("csv", "--format", help="csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write into this directory "
                                       "(<account>_<date>.csv and .json) instead of printing."),
) -> None:
    """One account's statement for one date: opening, trades with fees, operations, closing."""
    import csv
    import json

    from ledger.statements import statement_json, statement_rows, write_statement

    if fmt not in ("csv", "json"):
        fail(f"--format must be csv or json, not {fmt!r}")
    st = read_ledger(ledger, lambda led: led.statement(account, date))
    if out is not None:
        with staged_outputs(out) as staged:
            paths = write_statement(st, staged.path)
        typer.echo("wrote " + ", ".join(str(staged.final_path(p)) for p in paths))
    elif fmt == "json":
        typer.echo(json.dumps(statement_json(st), indent=1))
    else:
        csv.writer(sys.stdout, lineterminator="\n").writerows(statement_rows(st))


@ledger_app.command("reconcile")
def ledger_reconcile(
    ledger: Optional[str] = typer.Option(None, "--ledger", help=LEDGER_HELP),
    balances: Optional[Path] = typer.Option(
        None, "--balances", help="The engine's balances.json (written by cea match "
        "--accounts) to reconcile against; without it, the ledger's own consistency."),
) -> None:
    """Prove the ledger consistent (postings net to zero, balances = postings replayed) and
    equal to the engine's in-memory balances. Exit 1 on any difference."""
    import json

    expected = fees = None
    if balances is not None:
        try:
            data = json.loads(balances.read_text(encoding="utf-8"))
            expected, fees = data["accounts"], int(data["fees"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(f"{balances}: not a balances.json written by cea match --accounts ({e})")
    rec = read_ledger(ledger, lambda led: led.reconcile(expected, fees))
    for problem in rec.problems:
        typer.echo(f"cea: reconcile: {problem}", err=True)
    if not rec.ok:
        raise typer.Exit(1)
    against = " and the engine's balances" if balances is not None else ""
    typer.echo(f"reconciled: {rec.accounts} accounts, {rec.trades} trades; postings net to "
               f"zero, balances equal the postings replayed{against}")


@app.command()
def serve(
    data_dir: Path = typer.Option(Path("cea-data"), "--data-dir",
                                  help="Journal, snapshots, ledger and tokens live here."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(7878, "--port", min=0, max=65535, help="TCP port (0: any free)."),
    prior_close: List[str] = typer.Option(
        ["60.00"], "--prior-close", help="First prior close, CNY (NAME=60.00 per instrument; "
        "repeat). Used when the data directory is new."),
    accounts: Optional[Path] = typer.Option(
        None, "--accounts", help="Opening balances CSV (account,type,cash,<instrument>...) for a "
        "new data directory; default: four demo accounts."),
    tokens: Optional[Path] = typer.Option(
        None, "--tokens", help="account,token CSV for a new data directory (tokens of at least "
        "16 characters); default: generate them (see --credentials-out)."),
    credentials_out: Optional[Path] = typer.Option(
        None, "--credentials-out", help="A new data directory's generated tokens are written "
        "to this file (account,token; mode 0600; refused if it exists; not in the data "
        "directory); default: printed once. Only their hashes are kept."),
    fsync: str = typer.Option("on", "--fsync", help="on: fsync the journal before every "
                              "acknowledgement; off: for simulations (a crash may lose the "
                              "last acknowledged commands)."),
    recover: bool = typer.Option(False, "--recover", help="Require an existing journal to "
                                 "recover from (an existing one is always recovered)."),
    clock: str = typer.Option("sim", "--clock", help="sim: exchange time runs from --start; "
                              "wall: Shanghai time now."),
    start: Optional[str] = typer.Option(None, "--start", help="Sim clock start: YYYY-MM-DD "
                                        "(09:30) or an ISO time; default today or next "
                                        "trading day, 09:30."),
    rate_limit: int = typer.Option(200_000, "--rate-limit", min=0,
                                   help="Messages per second per session, every kind (0: none)."),
    burst: int = typer.Option(50_000, "--burst", min=1,
                              help="Messages a session may send at once above its rate."),
    query_rate: int = typer.Option(1_000, "--query-rate", min=0,
                                   help="Of those, heartbeats and queries (Subscribe, "
                                   "MdReplayRequest, BalanceRequest) per second (0: none)."),
    query_burst: int = typer.Option(1_000, "--query-burst", min=1,
                                    help="Queries a session may send at once above its rate."),
    max_open_orders: int = typer.Option(100_000, "--max-open-orders", min=0,
                                        help="Orders one account may have open at once; "
                                        "a NewOrder past it is rejected OPEN_ORDER_LIMIT "
                                        "(0: no limit)."),
    max_connections: int = typer.Option(1_000, "--max-connections", min=1,
                                        help="Connections beyond this are refused "
                                        "(Error SERVER_FULL)."),
    backlog: int = typer.Option(1_024, "--backlog", min=1,
                                help="Connections the kernel queues before they are accepted."),
    operator: str = typer.Option("OPS", "--operator", help="The operator account (halts, "
                                 "end of day, prior close) for a new data directory."),
    snapshot_every: int = typer.Option(200_000, "--snapshot-every", min=1,
                                       help="Journal records between state snapshots."),
    fee_bps_listed: int = typer.Option(0, "--fee-bps-listed", min=0, max=1000),
    fee_bps_block: int = typer.Option(0, "--fee-bps-block", min=0, max=1000),
    ledger: str = typer.Option("sqlite", "--ledger", help="sqlite (DATA_DIR/ledger.sqlite), a "
                               "postgresql:// URL, or off."),
    engine: EngineChoice = typer.Option(EngineChoice.numba, "--engine"),
) -> None:
    """Run the exchange: gateway, sequencer, journal, engine, ledger, market data."""
    from gateway.auth import check_credentials_out, read_token_file
    from gateway.journal import JOURNAL
    from gateway.server import ServerConfig, parse_start, serve as run

    fsync_on = _on_off("--fsync", fsync)
    if clock not in ("sim", "wall"):
        fail(f"--clock must be sim or wall, not {clock!r}")
    instruments = list(_prior_closes(prior_close).items())
    config = ServerConfig(
        data_dir=data_dir, host=host, port=port, fsync=fsync_on, instruments=instruments,
        fee_bps_listed=fee_bps_listed, fee_bps_block=fee_bps_block, clock=clock,
        rate_limit=rate_limit, burst=burst, query_rate=query_rate, query_burst=query_burst,
        max_open_orders=max_open_orders, max_connections=max_connections, backlog=backlog,
        operator=operator,
        snapshot_every=snapshot_every,
        ledger=None if ledger == "off" else ledger,
        impl=engine.value, recover=recover, credentials_out=credentials_out)
    try:
        if credentials_out is not None and not (data_dir / JOURNAL).exists():
            check_credentials_out(credentials_out, data_dir)
        if start is not None:
            config.start_us = parse_start(start)
        if accounts is not None:
            from ledger.opening import read_accounts_file

            config.accounts = read_accounts_file(accounts, [n for n, _ in instruments])
        if tokens is not None:
            config.tokens = read_token_file(tokens)
    except (ValueError, OSError) as e:
        fail(str(e))

    def ready(server, summary, host, port):
        typer.echo(f"cea serve: {summary}")
        if server.credentials and credentials_out is not None:
            typer.echo(f"cea serve: logon tokens of {len(server.credentials)} accounts written "
                       f"to {credentials_out} (mode 0600); the data directory keeps only "
                       "their hashes")
        elif server.credentials:
            typer.echo("cea serve: logon tokens generated, shown this once and stored nowhere "
                       "(the data directory keeps only their hashes; --credentials-out FILE "
                       "writes them to a file instead):")
            for account, token in server.credentials.items():
                typer.echo(f"cea serve:   {account} {token}")
        typer.echo(f"cea serve: journal {data_dir / 'journal.log'} (fsync {fsync}), clock "
                   f"{clock} at {_time(server.clock.now())}")
        typer.echo(f"cea serve: listening on {host}:{port}  (Ctrl-C stops)", )

    try:
        code = run(config, ready=ready)
    except (ValueError, OSError) as e:
        fail(str(e))
    if code == 0:
        typer.echo("cea serve: stopped; state saved (a snapshot and the journal)")
    else:
        typer.echo("cea serve: stopped after a failure (see above); `cea serve --recover` "
                   "rebuilds the acknowledged state from the journal", err=True)
    raise typer.Exit(code)


def _time(ts: int) -> str:
    from engine.tradingdays import format_time

    return format_time(ts)[:19]


@journal_app.command("verify")
def journal_verify(
    data_dir: Path = typer.Argument(Path("cea-data"), help="The server's data directory."),
    engine: EngineChoice = typer.Option(EngineChoice.numba, "--engine"),
) -> None:
    """Check every record (CRC, order), replay from the genesis, check the snapshots' state."""
    from gateway.journal import JournalError, verify

    try:
        report = verify(data_dir, impl=engine.value)
    except (JournalError, OSError) as e:
        fail(str(e), 1)
    for line in report.lines:
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


@journal_app.command("replay")
def journal_replay(
    data_dir: Path = typer.Argument(Path("cea-data"), help="The server's data directory."),
    to: Optional[int] = typer.Option(None, "--to", min=0, help="Stop after this record."),
    trades: Optional[Path] = typer.Option(None, "--trades", help="Write the trades (CSV)."),
    engine: EngineChoice = typer.Option(EngineChoice.numba, "--engine"),
) -> None:
    """Rebuild the exchange's state from the journal alone; print the state hash."""
    from gateway.journal import JournalError, replay

    try:
        result = replay(data_dir, impl=engine.value, to_seq=to, trades_path=trades)
    except (JournalError, OSError) as e:
        fail(str(e), 1)
    typer.echo(result)


@app.command()
def replay(
    data: Optional[Path] = typer.Option(None, "--data", help="Daily history CSV (default: the "
                                        "SEEE series shipped with the package)."),
    date_from: Optional[str] = typer.Option(None, "--from", help="First date, YYYY-MM-DD."),
    date_to: Optional[str] = typer.Option(None, "--to", help="Last date, YYYY-MM-DD."),
    out: Path = typer.Option(Path("replay"), "--out", help="Directory for days.csv, "
                             "summary.json and the plots."),
) -> None:
    """The historical daily path (2021-07-16 onwards) through the engine, day by day."""
    import datetime as dt

    from sim.history import DATA, HistoryError, load_history
    from sim.replay import replay as run, write_outputs

    for name, value in (("--from", date_from), ("--to", date_to)):
        if value is not None:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                fail(f"{name} {value!r} is not a date YYYY-MM-DD")
    try:
        days = load_history(data or DATA)
    except HistoryError as e:
        fail(str(e))
    days = [d for d in days if (date_from is None or d.date >= date_from)
            and (date_to is None or d.date <= date_to)]
    if not days:
        fail("no days in that range")
    with staged_outputs(out) as staged:
        with typer.progressbar(length=len(days), label="replaying", file=sys.stderr) as bar:
            result = run(days, progress=lambda day: bar.update(1))
        summary = write_outputs(result, staged.path)
        from sim.plots import plot_replay

        plots = [staged.final_path(p) for p in plot_replay(result.rows, staged.path)]
    infeasible = summary.pop("infeasible")
    for date, reason in infeasible.items():
        typer.echo(f"infeasible {date}: {reason}")
    typer.echo(" ".join(f"{k}={v}" for k, v in summary.items()))
    typer.echo(f"wrote {out / 'days.csv'}, {out / 'summary.json'}, "
               f"{', '.join(str(p) for p in plots)}")


@app.command()
def simulate(
    config: Optional[Path] = typer.Option(None, "--config", help="TOML configuration (see "
                                          "--print-config for every field and its default)."),
    days: Optional[int] = typer.Option(None, "--days", help="Trading days to simulate."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random draw."),
    out: Path = typer.Option(Path("simulation"), "--out", help="Directory for the order, "
                             "trade and day files, the ledger, the summary and the plots."),
    via_server: bool = typer.Option(False, "--via-server", help="Run the agents as clients "
                                    "of a fresh cea serve on loopback instead of in-process."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the default "
                                      "configuration as TOML and exit."),
) -> None:
    """Agent-based trading sessions (covered entities, market makers, noise traders,
    institutions, individuals, block traders), seeded and reproducible."""
    from sim.simulate import SimConfigError, default_config_toml, load_config

    if print_config:
        typer.echo(default_config_toml(), nl=False)
        return
    try:
        cfg = load_config(config, days=days, seed=seed)
    except SimConfigError as e:
        fail(str(e))
    label = "simulating via cea serve" if via_server else "simulating"
    with staged_outputs(out) as staged, \
            typer.progressbar(length=cfg.days, label=label, file=sys.stderr) as bar:
        if via_server:
            from sim.viaserver import run_via_server

            result, paths = run_via_server(cfg, staged.path,
                                           progress=lambda date: bar.update(1))
        else:
            from sim.simout import run

            result, paths = run(cfg, staged.path, progress=lambda date: bar.update(1))
    paths = [staged.final_path(p) for p in paths]
    s = result.summary
    typer.echo(f"{s['days']} days {s['first_day']}..{s['last_day']}, agents "
               f"{sum(s['agents'].values())}, orders {s['orders']}, trades {s['trades']}, "
               f"listed {s['listed_volume_t']} t, block {s['block_volume_t']} t, "
               f"close {s['first_close']} -> {s['last_close']}, {s['seconds']} s")
    if s["rejects"]:
        typer.echo("rejects: " + ", ".join(f"{k} {v}" for k, v in s["rejects"].items()))
    typer.echo(f"trade checksum {s['trade_checksum']}")
    if "ledger_reconciles" in s:
        typer.echo("ledger reconciles with the engine" if s["ledger_reconciles"] else
                   "LEDGER DOES NOT RECONCILE: see reconcile.json")
    top = sorted({p.name for p in paths if p.parent == out})
    typer.echo(f"wrote {len(paths)} files into {out}/: {', '.join(top)}")


def _rates(text: str) -> list[int]:
    """``10k,50k,1m`` or plain numbers, orders per second."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        number = part[:-1] if scale != 1 else part
        if not number.isdigit() or int(number) * scale <= 0:
            fail(f"--rates: {part!r} is not a rate like 10000 or 10k")
        out.append(int(number) * scale)
    return out


@app.command()
def loadtest(
    rate: int = typer.Option(10_000, "--rate", min=1, max=1_000_000,
                             help="Orders per second offered (open loop)."),
    rates: Optional[str] = typer.Option(None, "--rates", help="Sweep: e.g. 5k,10k,20k; finds "
                                        "the highest rate held with p99 under --p99-bound-us."),
    duration: float = typer.Option(5.0, "--duration", min=0.5, max=60.0,
                                   help="Seconds per run."),
    pairs: int = typer.Option(1, "--pairs", min=1, max=64,
                              help="Buyer/seller session pairs (connections = 2 x pairs)."),
    processes: int = typer.Option(1, "--processes", min=1, max=16,
                                  help="Client processes sharing the load."),
    p99_bound_us: int = typer.Option(1_000, "--p99-bound-us", min=1),
    fsync: str = typer.Option("on", "--fsync", help="The server's journal fsync: on or off."),
    out: Path = typer.Option(Path("loadtest"), "--out", help="loadtest.json and plots here."),
) -> None:
    """Open-loop load against a fresh cea serve on loopback: latency percentiles, plots."""
    import tempfile

    from sim.loadtest import accounts_for, load, local_server, write_report

    fsync_on = _on_off("--fsync", fsync)
    sweep = _rates(rates) if rates else [rate]
    if max(sweep) > 1_000_000:
        fail("--rates: at most 1,000,000 orders/s")
    accounts_csv, tokens_csv, sessions = accounts_for(pairs)
    runs = []
    with staged_outputs(out) as staged, tempfile.TemporaryDirectory() as root:
        with local_server(Path(root), accounts_csv, tokens_csv, fsync_on) as port:
            for r in sweep:
                typer.echo(f"offering {r:,} orders/s for {duration} s on {2 * pairs} sessions "
                           f"from {processes} process(es)...", err=True)
                run = load(port, r, duration, sessions, processes)
                runs.append(run)
                a = run["ack"]
                typer.echo(f"{r:,}/s offered: {run['achieved_per_s']:,}/s acknowledged; ack "
                           f"p50 {a.get('p50_us')} p90 {a.get('p90_us')} p99 {a.get('p99_us')} "
                           f"p99.9 {a.get('p999_us')} max {a.get('max_us')} us; fill p50 "
                           f"{run['fill'].get('p50_us')} p99 {run['fill'].get('p99_us')} us")
                t = run["tester"]
                typer.echo(f"  tester: sent {run['sent_per_s']:,}/s, CPU share "
                           f"{t['cpu_share']}, {t['cpu_us_per_order']} us CPU/order, send lag "
                           f"p99 {t['send_lag'].get('p99_us')} us")
        report = write_report(runs, staged.path, p99_bound_us if len(sweep) > 1 else None)
    if "highest_rate_held" in report:
        typer.echo(f"highest rate held with p99 <= {p99_bound_us} us: "
                   f"{report['highest_rate_held']}")
    typer.echo(f"wrote {out / 'loadtest.json'} and plots in {out}")


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


@bench_app.command("ledger")
def bench_ledger(
    orders: int = typer.Option(1_000_000, "--orders", min=1000, help="Commands in the stream."),
    seed: int = typer.Option(7, "--seed", help="Seed of the generated stream."),
    batch: int = typer.Option(10_000, "--batch", min=1, help="Trades per ledger transaction."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the figures here."),
    postgres: Optional[str] = typer.Option(
        None, "--postgres", help="PostgreSQL conninfo/URL (default: start one on loopback)."),
) -> None:
    """Engine with vs without reservation; trades settled per second into SQLite, PostgreSQL."""
    from bench.ledger import run_ledger_benchmark

    run_ledger_benchmark(orders=orders, seed=seed, batch=batch, json_path=json_path,
                         postgres=postgres, echo=typer.echo)


@bench_app.command("gateway")
def bench_gateway(
    orders: int = typer.Option(200_000, "--orders", min=1000,
                               help="Orders pipelined for the throughput figure."),
    rate: int = typer.Option(10_000, "--rate", min=100, help="Orders/s offered, open loop."),
    seconds: float = typer.Option(5.0, "--seconds", min=0.5, help="Length of each latency run."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the figures here."),
    pin: bool = typer.Option(True, "--pin/--no-pin", help="Latency runs: the client and the "
                             "server on different CPUs (a remote client's view)."),
) -> None:
    """cea serve over loopback: pipelined orders/s against bare servers, server CPU per order,
    round-trip latency with fsync on and off, the disk's fdatasync, in one run."""
    from bench.gateway import run_gateway_benchmark

    run_gateway_benchmark(orders=orders, rate=rate, seconds=seconds, json_path=json_path,
                          echo=typer.echo, pin=pin)


# commands kept in their own modules, one per part of the market they serve
from cea import auction_cmd, compliance_cmd, registry_cmd  # noqa: E402

for _module in (registry_cmd, compliance_cmd, auction_cmd):
    _module.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("cea: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
