"""``cea``: one command line for everything a user runs.

Each command parses its options, checks what it can before doing any work (input files, the
output directory, ports, ranges), calls the package that does the work, and turns any error a
user can cause into one line ``cea: error: ...`` on stderr and exit code 2, never a
traceback (usage errors too: ``_Group`` formats them). Results are written before anything
is printed, so a closed stdout (``cea ... | head``) loses only what is printed; it ends the
command quietly with exit code 141, as a pipe's reader closing does to other tools. Long
jobs show their progress on stderr when it is a terminal (``cea.progress``; ``--quiet``
silences it).
"""

from __future__ import annotations

import os
import re
import sys
import time
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from cea import progress
from cea.common import (LEDGER_HELP, check_input, check_new_file, check_out, fail, print_table,
                        read_ledger, staged_outputs)

try:  # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as _click_errors


#: Exit status after stdout is closed under us (a pipe's reader gone): 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 141


class _Group(TyperGroup):
    """The ``cea`` group: usage errors as one line ``cea: error: ...``, not a framed panel;
    a closed stdout ends the command quietly."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             windows_expand_args=True, **extra):
        _tidy(self)
        given = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, windows_expand_args=windows_expand_args,
                                **extra)
        except _click_errors.ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # help shown (rich prints it itself)
                if e.message.strip():
                    typer.echo(e.message)
                code = e.exit_code
            else:
                code = _usage_error(e, given)
        except typer.Abort:
            typer.echo("cea: aborted", err=True)
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a closed stdout shows now, not at the interpreter's exit
            return result
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except KeyboardInterrupt:  # Ctrl-C: the outputs were left as they were (cea.outdir)
            typer.echo("cea: interrupted", err=True)
            raise typer.Exit(130) from None


def _tidy(command) -> None:
    """The help of ``command`` and its subcommands: flags without a ``<bool>`` type column."""
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    helper = command.get_help_option(typer.Context(
        command, help_option_names=CONTEXT["help_option_names"]))
    if helper is not None and helper.metavar is None:
        helper.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _tidy(sub)


def reflow(doc: str) -> str:
    """A docstring as command help: each paragraph one line (the help is wrapped to the
    terminal, not at the source's line ends); a paragraph starting with ``\\b`` is kept as
    written (without the ``\\b``)."""
    import inspect

    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(p[1:].strip("\n") if p.startswith("\b") else " ".join(p.split())
                       for p in paragraphs)


def _reflow_help(typer_app: typer.Typer) -> None:
    """Every command of ``typer_app`` (and of its groups) gets its docstring, reflowed
    (``reflow``), as its help."""
    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = reflow(info.callback.__doc__)
    for group in typer_app.registered_groups:
        _reflow_help(group.typer_instance)


class _Echo:
    """``typer.echo`` for results printed while the work goes on: a closed stdout stops the
    printing, not the work (its files are still written); ``done()`` then exits 141."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self, line: str = "") -> None:
        if self.broken:
            return
        try:
            typer.echo(line)
        except BrokenPipeError:
            self.broken = True
            _silence_stdout()

    def done(self) -> None:
        if self.broken:
            raise typer.Exit(EXIT_BROKEN_PIPE)


def _silence_stdout() -> None:
    """stdout's reader is gone: point it at /dev/null, so that flushing it at exit raises
    nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file behind it (tests)
        pass


_NOT_ONE_OF = re.compile(r"^(?:Value error, )?(.*?) is not one of (.*?)\.?$", re.S)
#: The range and type messages of typer's parameter checks, as "must be ..."
_MUST = [(re.compile(r"^Input should be greater than or equal to (\S+)$"), "at least {}"),
         (re.compile(r"^Input should be less than or equal to (\S+)$"), "at most {}"),
         (re.compile(r"^Input should be greater than (\S+)$"), "more than {}"),
         (re.compile(r"^Input should be less than (\S+)$"), "less than {}"),
         (re.compile(r"^Input should be a valid integer"), "a whole number"),
         (re.compile(r"^Input should be a valid number"), "a number")]


def _value_of(args: list, opts) -> Optional[str]:
    """The last value given to one of the options ``opts`` in ``args``, if any."""
    value = None
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                value = str(args[i + 1])
            elif isinstance(arg, str) and arg.startswith(opt + "="):
                value = arg[len(opt) + 1:]
    return value


def _shown(value: str) -> str:
    return value if re.fullmatch(r"-?[0-9][0-9_.,]*", value) else repr(value)


def _usage_error(e, args: list = ()) -> int:
    """Print a click usage error as one line ``cea: error: ...`` (pointing to the command's
    help); return its exit code."""
    message = e.format_message().replace("Value error, ", "")
    param = getattr(e, "param", None)
    if (param is not None and isinstance(e, _click_errors.BadParameter)
            and not isinstance(e, _click_errors.MissingParameter)):
        longs = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
        name = longs[0] if longs else (param.metavar or param.name or "").upper()
        text = (getattr(e, "message", "") or "").replace("Value error, ", "").rstrip(".")
        m = _NOT_ONE_OF.match(text)
        value = _value_of(args, longs)
        hits = ((hit, form) for hit, form in ((r.match(text), f) for r, f in _MUST) if hit)
        must = next((form.format(*hit.groups()) for hit, form in hits), None)
        if must is not None:
            message = f"{name} must be {must}" + (f", not {_shown(value)}" if value else "")
        elif m:
            choices = [c.strip().strip("'\"") for c in m.group(2).split(",")]
            allowed = (" or ".join(choices) if len(choices) == 2
                       else "one of " + ", ".join(choices))
            message = f"{name} must be {allowed}, not {m.group(1)}"
        elif text:
            message = f"{name}: {text[:1].lower()}{text[1:]}"
    ctx = getattr(e, "ctx", None)
    # the command as typed (the program's own name is "cea", whatever runs it)
    see = (f" (see {' '.join(['cea', *ctx.command_path.split()[1:]])} --help)"
           if ctx is not None else "")
    typer.echo(f"cea: error: {message.rstrip('.')}{see}", err=True)
    return e.exit_code


#: Every command's context: defaults shown in the help, ``-h`` as well as ``--help``.
CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"]}

app = typer.Typer(
    cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    context_settings=CONTEXT,
    help="Exchange core for China's national carbon emission allowance market (CEA).\n\n"
         "Every command explains itself: cea COMMAND --help (each with an example).",
)
bench_app = typer.Typer(no_args_is_help=True, context_settings=CONTEXT,
                        help="Benchmarks that print figures.")
app.add_typer(bench_app, name="bench")
ledger_app = typer.Typer(no_args_is_help=True, context_settings=CONTEXT,
                         help="The settlement ledger: balances, statements, reconciliation.")
app.add_typer(ledger_app, name="ledger")
journal_app = typer.Typer(no_args_is_help=True, context_settings=CONTEXT,
                          help="The server's journal: verify it, replay it into the exchange's "
                          "state.")
app.add_typer(journal_app, name="journal")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"cea {version('cea-exchange')}")
        except PackageNotFoundError:
            fail("the cea-exchange package is not installed (pip install -e .)")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


class EngineChoice(str, Enum):
    numba = "numba"
    reference = "reference"


class OnOff(str, Enum):
    on = "on"
    off = "off"


class ClockChoice(str, Enum):
    sim = "sim"
    wall = "wall"


class FormatChoice(str, Enum):
    csv = "csv"
    json = "json"


ENGINE_HELP = "Matching implementation: numba (compiled) or reference (plain Python, slow)."
QUIET_HELP = "No progress display on stderr (the results are printed all the same)."


def _prior_closes(values: List[str], option: str = "--prior-close") -> dict[str, int]:
    """``60.00`` for one instrument named CEA, or ``NAME=60.00`` once per instrument; a bad
    price is a ``cea: error`` naming the option."""
    from engine.errors import EngineConfigError
    from engine.orderfile import parse_prior_close

    closes: dict[str, int] = {}
    for value in values:
        name, _, price = value.rpartition("=")
        name = name.strip() or "CEA"
        if name in closes:
            fail(f"{option} given twice for instrument {name}")
        try:
            closes[name] = parse_prior_close(price)
        except EngineConfigError as e:
            fail(f"{option}: {e}")
    if not closes:
        fail(f"{option}: give a price, e.g. 60.00")
    return closes


@app.command()
def match(
    orders: Path = typer.Argument(..., metavar="ORDERS", show_default=False,
                                  help="Order file (CSV; its format: README, section cea "
                                  "match)."),
    prior_close: List[str] = typer.Option(
        ..., "--prior-close", metavar="PRICE", help="Prior close in CNY, e.g. 60.00; or "
        "NAME=60.00 per instrument when the file has an instrument column (repeat the "
        "option)."),
    out: Path = typer.Option(Path("out"), "--out", metavar="DIR",
                             help="Directory for the result files."),
    engine: EngineChoice = typer.Option(EngineChoice.numba, "--engine", help=ENGINE_HELP),
    check: bool = typer.Option(False, "--check", help="Check the book's invariants at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the day summary, "
                               "nor any progress."),
    accounts: Optional[Path] = typer.Option(
        None, "--accounts", metavar="FILE", help="CSV of opening balances (columns account, "
        "type, cash, one per instrument): reservation and settlement on; writes the "
        "ledger, statements and reconciliation too."),
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL",
                                         help="With --accounts: the ledger, a SQLite path or "
                                         "a postgresql:// URL (default DIR/ledger.sqlite, "
                                         "recreated each run)."),
    fee_bps_listed: int = typer.Option(0, "--fee-bps-listed", min=0, max=1000,
                                       help="With --accounts: fee per side on listed trades, "
                                       "basis points."),
    fee_bps_block: int = typer.Option(0, "--fee-bps-block", min=0, max=1000,
                                      help="With --accounts: fee per side on block trades, "
                                      "basis points."),
    t0: bool = typer.Option(False, "--t0", help="With --accounts: allowances bought today are "
                            "sellable today (default T+1)."),
) -> None:
    """Run the engine over an order file; write trades, orders, rejects and days CSV files.

    Example: cea match docs/examples/session.csv --prior-close 60.00 --out out
    """
    from engine.accounts import AccountError, RiskConfig
    from engine.errors import EngineConfigError
    from engine.orderfile import OrderFileError, read_order_file, run_match, write_results
    from ledger.core import LedgerError
    from ledger.store import StoreError

    started = time.perf_counter()
    settled = None
    closes = _prior_closes(prior_close)
    if accounts is None and ledger is not None:
        fail("--ledger needs --accounts")
    check_out(out)
    try:
        parsed = read_order_file(orders, list(closes))
        if not parsed.has_instrument_column and len(closes) > 1:
            fail("several --prior-close values need an instrument column in the order file")
        if accounts is not None:  # read here too: its errors before any compiling
            from ledger.opening import read_accounts_file

            read_accounts_file(accounts, parsed.instruments)
        progress.warm_up(engine.value, quiet)
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
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL", help=LEDGER_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (fen and tonnes)."),
) -> None:
    """Every account's balances: cash in CNY, allowances in tonnes per instrument.

    Example: cea ledger balances --ledger out/ledger.sqlite
    """
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
    account: str = typer.Argument(..., metavar="ACCOUNT", help="Account name.",
                                  show_default=False),
    date: str = typer.Option(..., "--date", metavar="YYYY-MM-DD", help="Trading date."),
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL", help=LEDGER_HELP),
    fmt: FormatChoice = typer.Option(FormatChoice.csv, "--format",
                                     help="What is printed: csv or json."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Write into this "
                                       "directory (<account>_<date>.csv and .json) instead of "
                                       "printing."),
) -> None:
    """One account's statement for one date: opening, trades with fees, operations, closing.

    Example: cea ledger statement A001 --date 2024-03-04 --ledger out/ledger.sqlite
    """
    import csv
    import json

    from ledger.statements import statement_json, statement_rows, write_statement

    if out is not None:
        check_out(out)
    st = read_ledger(ledger, lambda led: led.statement(account, date))
    if out is not None:
        with staged_outputs(out) as staged:
            paths = write_statement(st, staged.path)
        typer.echo("wrote " + ", ".join(str(staged.final_path(p)) for p in paths))
    elif fmt == FormatChoice.json:
        typer.echo(json.dumps(statement_json(st), indent=1))
    else:
        csv.writer(sys.stdout, lineterminator="\n").writerows(statement_rows(st))


@ledger_app.command("reconcile")
def ledger_reconcile(
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL", help=LEDGER_HELP),
    balances: Optional[Path] = typer.Option(
        None, "--balances", metavar="FILE", help="The engine's balances.json (written by cea "
        "match --accounts) to reconcile against; without it, the ledger's own consistency."),
) -> None:
    """Prove the ledger consistent and equal to the engine's balances; exit 1 on a difference.

    Consistent: postings net to zero, balances equal the postings replayed.

    Example: cea ledger reconcile --ledger out/ledger.sqlite --balances out/balances.json
    """
    import json

    expected = fees = None
    if balances is not None:
        check_input(balances, "--balances")
        try:
            data = json.loads(balances.read_text(encoding="utf-8"))
            expected, fees = data["accounts"], int(data["fees"])
        except OSError as e:
            fail(f"--balances {balances}: cannot read: {e.strerror}")
        except (ValueError, KeyError, TypeError) as e:
            fail(f"{balances}: not a balances.json written by cea match --accounts ({e})")
    rec = read_ledger(ledger, lambda led: led.reconcile(expected, fees))
    for problem in rec.problems:
        typer.echo(f"cea: reconcile: {problem}", err=True)
    if not rec.ok:
        raise typer.Exit(1)
    against = " and the engine's balances" if balances is not None else ""
    typer.echo(f"reconciled: {rec.accounts} accounts, {rec.trades} trades; postings net to "
               f"zero, balances equal the postings replayed{against}")


#: The help of ``cea serve --ledger``.
SERVE_LEDGER_HELP = ("Settlement: sqlite (DATA_DIR/ledger.sqlite), a SQLite file path, a "
                     "postgresql:// URL, or off.")


@app.command()
def serve(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(
        None, "--config", metavar="FILE", help="TOML file of these options, named with "
        "underscores (prior_close = [\"CEA=60.00\"], fee_bps_listed = 3, ...); options given "
        "here override it. --print-config shows every key."),
    print_config: bool = typer.Option(False, "--print-config", help="Print every option as "
                                      "a TOML configuration file with its default, and exit."),
    data_dir: Path = typer.Option(Path("cea-data"), "--data-dir", metavar="DIR",
                                  help="Journal, snapshots, ledger and tokens live here."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(7878, "--port", min=0, max=65535, help="TCP port (0: any free)."),
    fix_port: Optional[int] = typer.Option(
        None, "--fix-port", min=0, max=65535, metavar="PORT", help="Also accept FIX 4.4 "
        "sessions on this port, same host (0: any free; see docs/fix.md). Default: off."),
    web_port: Optional[int] = typer.Option(
        None, "--web-port", min=0, max=65535, metavar="PORT", help="Also serve the live web "
        "view (book, trades, price against the bands, operator panel) on this port (0: any "
        "free; see docs/web.md). Default: off."),
    web_host: str = typer.Option("127.0.0.1", "--web-host", metavar="ADDRESS",
                                 help="Address of the web view (loopback unless you open it)."),
    prior_close: List[str] = typer.Option(
        ["60.00"], "--prior-close", metavar="PRICE", help="First prior close, CNY (NAME=60.00 "
        "per instrument; repeat). Used when the data directory is new."),
    accounts: Optional[Path] = typer.Option(
        None, "--accounts", metavar="FILE", help="Opening balances CSV (columns account, "
        "type, cash, one per instrument) for a new data directory; default: four demo "
        "accounts."),
    tokens: Optional[Path] = typer.Option(
        None, "--tokens", metavar="FILE", help="CSV of account, token for a new data directory "
        "(tokens of at least 16 characters); default: generate them (see --credentials-out)."),
    credentials_out: Optional[Path] = typer.Option(
        None, "--credentials-out", metavar="FILE", help="A new data directory's generated "
        "tokens are written to this file (account,token; mode 0600; refused if it exists; not "
        "in the data directory); default: printed once. Only their hashes are kept."),
    fsync: OnOff = typer.Option(OnOff.on, "--fsync", help="on: fsync the journal before every "
                                "acknowledgement; off: for simulations (a crash may lose the "
                                "last acknowledged commands)."),
    recover: bool = typer.Option(False, "--recover", help="Require an existing journal to "
                                 "recover from (an existing one is always recovered)."),
    clock: ClockChoice = typer.Option(ClockChoice.sim, "--clock", help="sim: exchange time "
                                      "runs from --start; wall: Shanghai time now."),
    start: Optional[str] = typer.Option(None, "--start", metavar="TIME", help="Sim clock "
                                        "start: YYYY-MM-DD (09:30) or an ISO time; default "
                                        "today or the next trading day, 09:30."),
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
    fee_bps_listed: int = typer.Option(0, "--fee-bps-listed", min=0, max=1000,
                                       help="Fee per side on listed trades, basis points "
                                       "(a new data directory)."),
    fee_bps_block: int = typer.Option(0, "--fee-bps-block", min=0, max=1000,
                                      help="Fee per side on block trades, basis points "
                                      "(a new data directory)."),
    ledger: str = typer.Option("sqlite", "--ledger", metavar="sqlite|URL|off",
                               help=SERVE_LEDGER_HELP),
    engine: EngineChoice = typer.Option(EngineChoice.numba, "--engine", help=ENGINE_HELP),
) -> None:
    """Run the exchange: gateway, sequencer, journal, engine, ledger, market data.

    Options may come from a TOML file (--config FILE; cea serve --print-config > serve.toml
    writes one with every default); options on the command line override it.

    Example: cea serve --data-dir cea-data --port 7878 --prior-close 60.00 --web-port 8080
    """
    given = dict(locals())  # the options' values, before any other local
    from cea.serveconfig import KEYS, ServeConfigError, default_toml, read_config

    o = {k: v for k, v in given.items() if k in KEYS}
    if print_config:
        typer.echo(default_toml([(p.name, p.default, p.help or "")
                                 for p in ctx.command.params]), nl=False)
        return
    if config is not None:
        check_input(config, "--config")
        try:
            from_file = read_config(config)
        except ServeConfigError as e:
            fail(str(e))
        for key, value in from_file.items():
            source = ctx.get_parameter_source(key)
            if getattr(source, "name", None) != "COMMANDLINE":
                o[key] = value
                o.setdefault("_from_file", {})[key] = f"{config}: {key}"
    _serve(o)


def _serve(o: dict) -> None:
    """``cea serve`` with its options ``o`` (flags, over the configuration file; ``_from_file``
    names where those from the file come from, for the errors)."""
    from engine.tradingdays import format_time
    from gateway.auth import check_credentials_out, read_token_file
    from gateway.journal import JOURNAL, JournalError
    from gateway.lock import check_listen
    from gateway.server import ServerConfig, parse_start, serve as run
    from ledger.core import LedgerError
    from ledger.store import StoreError, is_postgres

    data_dir = Path(o["data_dir"])
    path = {k: None if o[k] is None else Path(o[k])
            for k in ("accounts", "tokens", "credentials_out")}
    fsync_on = getattr(o["fsync"], "value", o["fsync"]) == "on"
    clock = getattr(o["clock"], "value", o["clock"])
    impl = getattr(o["engine"], "value", o["engine"])
    ledger = o["ledger"]
    from_file = o.get("_from_file", {})

    def name(key: str) -> str:  # the option, or the file's key, that gave a value
        return from_file.get(key, "--" + key.replace("_", "-"))

    instruments = list(_prior_closes(list(o["prior_close"]), name("prior_close")).items())
    if data_dir.exists() and not data_dir.is_dir():
        fail(f"{name('data_dir')} {data_dir} is a file, not a directory")
    if not o["operator"].strip():
        fail(f"{name('operator')} must name an account")
    if ledger not in ("sqlite", "off") and not is_postgres(ledger):
        file = Path(ledger[len("sqlite:///"):] if ledger.startswith("sqlite:///") else ledger)
        if not file.parent.is_dir() or file.is_dir():
            fail(f"{name('ledger')} {ledger!r}: give sqlite, off, a postgresql:// URL or a "
                 "SQLite file in an existing directory")
    if path["tokens"] is not None:  # (the accounts file's reader says it all itself)
        check_input(path["tokens"], name("tokens"))
    config = ServerConfig(
        data_dir=data_dir, host=o["host"], port=o["port"], fix_port=o["fix_port"],
        web_port=o["web_port"], web_host=o["web_host"], fsync=fsync_on,
        instruments=instruments, fee_bps_listed=o["fee_bps_listed"],
        fee_bps_block=o["fee_bps_block"], clock=clock, rate_limit=o["rate_limit"],
        burst=o["burst"], query_rate=o["query_rate"], query_burst=o["query_burst"],
        max_open_orders=o["max_open_orders"], max_connections=o["max_connections"],
        backlog=o["backlog"], operator=o["operator"], snapshot_every=o["snapshot_every"],
        ledger=None if ledger == "off" else ledger, impl=impl, recover=o["recover"],
        credentials_out=path["credentials_out"])
    try:
        # a busy port is found before a new data directory is created (or anything
        # compiled); on an existing one, the directory's lock answers first (serve takes it)
        if not data_dir.exists():
            check_listen(o["host"], o["port"])
            if o["fix_port"]:
                check_listen(o["host"], o["fix_port"])
        if o["web_port"]:  # the web view's port, checked before anything is compiled
            check_listen(o["web_host"], o["web_port"])
        if path["credentials_out"] is not None and not (data_dir / JOURNAL).exists():
            check_credentials_out(path["credentials_out"], data_dir)
        if o["start"] is not None:
            config.start_us = parse_start(o["start"])
        if path["accounts"] is not None:
            from ledger.opening import read_accounts_file

            config.accounts = read_accounts_file(path["accounts"], [n for n, _ in instruments])
        if path["tokens"] is not None:
            config.tokens = read_token_file(path["tokens"])
    except (ValueError, OSError) as e:
        fail(str(e))

    def ready(server, summary, host, port):
        compiled()  # the spinner, if any, goes before the first line
        typer.echo(f"cea serve: {summary}")
        if server.credentials and path["credentials_out"] is not None:
            typer.echo(f"cea serve: logon tokens of {len(server.credentials)} accounts written "
                       f"to {path['credentials_out']} (mode 0600); the data directory keeps "
                       "only their hashes")
        elif server.credentials:
            typer.echo("cea serve: logon tokens generated, shown this once and stored nowhere "
                       "(the data directory keeps only their hashes; --credentials-out FILE "
                       "writes them to a file instead):")
            for account, token in server.credentials.items():
                typer.echo(f"cea serve:   {account} {token}")
        typer.echo(f"cea serve: journal {data_dir / 'journal.log'} (fsync "
                   f"{'on' if fsync_on else 'off'}), clock {clock} at "
                   f"{format_time(server.clock.now())[:19]}")
        if server.fix_address is not None:
            fhost, fport = server.fix_address
            typer.echo(f"cea serve: FIX 4.4 acceptor on {fhost}:{fport} (TargetCompID CEA)")
        if server.web_address is not None:
            whost, wport = server.web_address
            typer.echo(f"cea serve: web view on http://{whost}:{wport}/ (operator panel: the "
                       f"{server.exchange.genesis.operator} account's token)")
        typer.echo(f"cea serve: listening on {host}:{port}  (Ctrl-C stops)", )

    try:
        with progress.compiling(impl, gateway=True, text="compiling the matching and "
                                "gateway kernels, once, about 30-90 s") as compiled:
            code = run(config, ready=ready)
    except (ValueError, OSError, JournalError, LedgerError, StoreError) as e:
        fail(str(e))
    if code == 0:
        typer.echo("cea serve: stopped; state saved (a snapshot and the journal)")
    else:
        typer.echo("cea serve: stopped after a failure (see above); `cea serve --recover` "
                   "rebuilds the acknowledged state from the journal", err=True)
    raise typer.Exit(code)


def _journal_dir(data_dir: Path) -> None:
    from gateway.journal import JOURNAL

    if data_dir.exists() and not data_dir.is_dir():
        fail(f"{data_dir} is a file, not a data directory: no journal here")
    if not data_dir.is_dir():
        fail(f"{data_dir / JOURNAL}: no journal here ({data_dir} does not exist)")
    if not (data_dir / JOURNAL).is_file():
        fail(f"{data_dir / JOURNAL}: no journal here")


@journal_app.command("verify")
def journal_verify(
    data_dir: Path = typer.Argument(Path("cea-data"), metavar="DATA_DIR",
                                    help="The server's data directory."),
    engine: EngineChoice = typer.Option(EngineChoice.numba, "--engine",
                                        help="The engine the journal is replayed through: "
                                        + ENGINE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Check every record (CRC, order), replay from the genesis, check the snapshots' state.

    Exit 1 when the journal fails a check.

    Example: cea journal verify cea-data
    """
    from gateway.journal import JournalError, verify

    _journal_dir(data_dir)
    progress.warm_up(engine.value, quiet)
    try:
        with progress.status(f"verifying {data_dir}", quiet):
            report = verify(data_dir, impl=engine.value)
    except (JournalError, OSError) as e:
        fail(str(e), 1)
    for line in report.lines:
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


@journal_app.command("replay")
def journal_replay(
    data_dir: Path = typer.Argument(Path("cea-data"), metavar="DATA_DIR",
                                    help="The server's data directory."),
    to: Optional[int] = typer.Option(None, "--to", min=0, metavar="SEQ",
                                     help="Stop after this record."),
    trades: Optional[Path] = typer.Option(None, "--trades", metavar="FILE",
                                          help="Write the trades (CSV)."),
    engine: EngineChoice = typer.Option(EngineChoice.numba, "--engine",
                                        help="The engine the journal is replayed through: "
                                        + ENGINE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Rebuild the exchange's state from the journal alone; print the state hash.

    Example: cea journal replay cea-data --trades trades.csv
    """
    from gateway.journal import JournalError, replay

    _journal_dir(data_dir)
    if trades is not None:
        check_new_file(trades, "--trades")
    progress.warm_up(engine.value, quiet)
    try:
        with progress.status(f"replaying {data_dir}", quiet):
            result = replay(data_dir, impl=engine.value, to_seq=to, trades_path=trades)
    except (JournalError, OSError) as e:
        fail(str(e), 1)
    typer.echo(result)


def _iso(option: str, value: Optional[str]) -> Optional[str]:
    import datetime as dt

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        fail(f"{option} {value!r} is not a date YYYY-MM-DD")


@app.command()
def replay(
    data: Optional[Path] = typer.Option(None, "--data", metavar="FILE", help="Daily history "
                                        "CSV (default: the SEEE series shipped with the "
                                        "package)."),
    date_from: Optional[str] = typer.Option(None, "--from", metavar="YYYY-MM-DD",
                                            help="First date (default: the data's first)."),
    date_to: Optional[str] = typer.Option(None, "--to", metavar="YYYY-MM-DD",
                                          help="Last date (default: the data's last)."),
    out: Path = typer.Option(Path("replay"), "--out", metavar="DIR", help="Directory for "
                             "days.csv, summary.json and the plots."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """The historical daily path (2021-07-16 onwards) through the engine, day by day.

    Example: cea replay --from 2023-01-01 --to 2023-12-31 --out replay
    """
    from sim.history import DATA, HistoryError, load_history
    from sim.replay import replay as run, write_outputs

    date_from, date_to = _iso("--from", date_from), _iso("--to", date_to)
    if date_from is not None and date_to is not None and date_from > date_to:
        fail(f"--from {date_from} is after --to {date_to}")
    if data is not None:
        check_input(data, "--data")
    check_out(out)
    try:
        every = load_history(data or DATA)
    except HistoryError as e:
        fail(str(e))
    days = [d for d in every if (date_from is None or d.date >= date_from)
            and (date_to is None or d.date <= date_to)]
    if not days:
        covers = f"{every[0].date} to {every[-1].date}" if every else "no days"
        fail(f"no trading days from {date_from or 'the start'} to {date_to or 'the end'}: the "
             f"data ({data or 'the shipped series'}) covers {covers}")
    progress.warm_up("numba", quiet)
    with staged_outputs(out) as staged:
        with progress.bar("replaying", len(days), quiet) as advance:
            result = run(days, progress=lambda day: advance(1, label=f"replaying {day.date}"))
        summary = write_outputs(result, staged.path)
        from sim.plots import plot_replay

        with progress.status("drawing the plots", quiet):
            plots = [staged.final_path(p) for p in plot_replay(result.rows, staged.path)]
    infeasible = summary.pop("infeasible")
    for date, reason in infeasible.items():
        typer.echo(f"infeasible {date}: {reason}")
    typer.echo(" ".join(f"{k}={v}" for k, v in summary.items()))
    typer.echo(f"wrote {out / 'days.csv'}, {out / 'summary.json'}, "
               f"{', '.join(str(p) for p in plots)}")


WEB_PORT_HELP = ("The server it starts also serves its live web view on this port (0: any "
                 "free), to watch the market move; the address is printed. Default: off.")


def _say_web(url: str) -> None:
    typer.echo(f"web view on {url} (the server stops when the run ends)", err=True)


@app.command()
def simulate(
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="TOML "
                                          "configuration (see --print-config for every field "
                                          "and its default); over --scenario's, key by key."),
    scenario: Optional[str] = typer.Option(
        None, "--scenario", metavar="NAME", help="A named scenario shipped with the package: "
        "first-period (2021-07-16..2021-12-31, covered entities only) or 2024 (see "
        "docs/simulate.md); --print-config with it prints it whole."),
    days: Optional[int] = typer.Option(None, "--days", help="Trading days to simulate "
                                       "(1..5000; default: the configuration's, 250)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random draw: the "
                                       "same seed and configuration give the same run "
                                       "(default: the configuration's, 1)."),
    out: Path = typer.Option(Path("simulation"), "--out", metavar="DIR", help="Directory for "
                             "the order, trade and day files, the ledger, the summary and the "
                             "plots."),
    via_server: bool = typer.Option(False, "--via-server", help="Run the agents as clients "
                                    "of a fresh cea serve on loopback instead of in-process."),
    web_port: Optional[int] = typer.Option(None, "--web-port", min=0, max=65535,
                                           metavar="PORT", help="With --via-server: "
                                           + WEB_PORT_HELP),
    print_config: bool = typer.Option(False, "--print-config", help="Print the default "
                                      "configuration as TOML and exit."),
    agent: List[str] = typer.Option([], "--agent", metavar="MODULE:CLASS", help="Your own "
                                    "agent class (a sim.agent.Agent; MODULE:CLASS or "
                                    "path/to/file.py:CLASS) trading one account beside the "
                                    "built-in agents (repeat; see docs/agents.md)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Agent-based trading sessions, seeded and reproducible.

    The agents: covered entities, market makers, noise traders, institutions, individuals,
    block traders, and your own (--agent).

    Example: cea simulate --days 20 --agent docs/examples/my_agent.py:MeanReverter
    """
    import msgspec

    from sim.agent import AgentError
    from sim.simulate import SimConfigError, UserAgent, check_config, config_toml, \
        default_config_toml, load_config

    if print_config and scenario is None:
        typer.echo(default_config_toml(), nl=False)
        return
    if web_port is not None and not via_server:
        fail("--web-port needs --via-server (an in-process run has no server to watch; "
             "cea view DIR shows its results)")
    if config is not None:
        check_input(config, "--config")
    check_out(out)
    try:
        cfg = load_config(config, scenario=scenario, days=days, seed=seed)
        if print_config:
            typer.echo(config_toml(cfg), nl=False)
            return
        if agent:
            cfg = msgspec.structs.replace(
                cfg, agents=cfg.agents + [UserAgent(agent=spec) for spec in agent])
            check_config(cfg)
    except SimConfigError as e:
        fail(str(e))
    if not via_server:
        progress.warm_up("numba", quiet)
    label = "simulating via cea serve" if via_server else "simulating"
    with staged_outputs(out) as staged, \
            progress.bar("starting cea serve on loopback" if via_server else label, cfg.days,
                         quiet) as advance:
        def day_done(date) -> None:
            advance(1, label=f"{label}, {date}")

        try:
            if via_server:
                from sim.viaserver import run_via_server

                result, paths = run_via_server(cfg, staged.path, progress=day_done,
                                               web_port=web_port, on_web=_say_web)
            else:
                from sim.simout import run

                result, paths = run(cfg, staged.path, progress=day_done)
        except (AgentError, SimConfigError) as e:  # a user agent failed: nothing is written
            fail(str(e), 1)
    paths = [staged.final_path(p) for p in paths]
    s = result.summary
    typer.echo(f"{s['days']} days {s['first_day']}..{s['last_day']}, agents "
               f"{sum(s['agents'].values())}, orders {s['orders']}, trades {s['trades']}, "
               f"listed {s['listed_volume_t']} t, block {s['block_volume_t']} t, "
               f"close {s['first_close']} -> {s['last_close']}, {s['seconds']} s")
    if s["rejects"]:
        typer.echo("rejects: " + ", ".join(f"{k} {v}" for k, v in s["rejects"].items()))
    t = s.get("takes")
    if t and "sent" in t:
        typer.echo(f"takes: {t['sent']} sent, {t['trades']} traded, {t['volume_t']} t "
                   f"({t['listed_volume_share_pct']} % of listed volume)")
    n = s.get("negotiations")
    if n and "quotes" in n:
        typer.echo(f"negotiations: {n['quotes']} quotes, {n['counters']} counters, "
                   f"{n['accepted']} accepted, {n['withdrawn']} withdrawn, {n['expired']} "
                   f"expired; {n['volume_t']} t ({n['block_volume_share_pct']} % of block "
                   f"volume) at {n['vwap_vs_close_pct']} % against the close")
    typer.echo(f"trade checksum {s['trade_checksum']}")
    if "ledger_reconciles" in s:
        typer.echo("ledger reconciles with the engine" if s["ledger_reconciles"] else
                   "LEDGER DOES NOT RECONCILE: see reconcile.json")
    for u in s.get("user_agents", []):
        typer.echo(f"agent {u['name']} ({u['class']}): {u['orders']} orders, {u['trades']} "
                   f"trades, position {u['position_t']:+,} t, P&L {u['pnl_cny']} CNY at the "
                   f"last close {s['last_close']}")
    top = sorted({p.name for p in paths if p.parent == out})
    typer.echo(f"wrote {len(paths)} files into {out}/: {', '.join(top)}")


#: The highest rate ``cea loadtest`` offers (sim.loadtest.MAX_RATE).
MAX_LOAD_RATE = 1_000_000


def _rates(text: str) -> list[int]:
    """``10k,50k,1m`` or plain numbers, orders per second."""
    if not text.strip():
        fail("--rates is empty: give rates like 5k,10k,20k")
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        number = part[:-1] if scale != 1 else part
        if not number.isdigit() or int(number) * scale <= 0:
            fail(f"--rates: {part!r} is not a rate like 10000 or 10k")
        if int(number) * scale > MAX_LOAD_RATE:
            fail(f"--rates: {part!r} is over {MAX_LOAD_RATE:,} orders/s")
        out.append(int(number) * scale)
    return out


@app.command()
def loadtest(
    rate: int = typer.Option(10_000, "--rate", min=1, max=MAX_LOAD_RATE,
                             help="Orders per second offered (open loop)."),
    rates: Optional[str] = typer.Option(None, "--rates", metavar="LIST", help="Sweep instead "
                                        "of --rate: e.g. 5k,10k,20k; finds the highest rate "
                                        "held with p99 under --p99-bound-us."),
    duration: float = typer.Option(5.0, "--duration", min=0.5, max=60.0,
                                   help="Seconds per run."),
    pairs: int = typer.Option(1, "--pairs", min=1, max=64,
                              help="Buyer/seller session pairs (connections = 2 x pairs)."),
    processes: int = typer.Option(1, "--processes", min=1, max=16,
                                  help="Client processes sharing the load."),
    p99_bound_us: int = typer.Option(1_000, "--p99-bound-us", min=1,
                                     help="With --rates: a rate is held when its "
                                     "acknowledgement p99 is at most this many microseconds."),
    fsync: OnOff = typer.Option(OnOff.on, "--fsync", help="The server's journal fsync."),
    out: Path = typer.Option(Path("loadtest"), "--out", metavar="DIR",
                             help="loadtest.json and plots here."),
    web_port: Optional[int] = typer.Option(None, "--web-port", min=0, max=65535,
                                           metavar="PORT", help=WEB_PORT_HELP),
    server_port: Optional[int] = typer.Option(
        None, "--server-port", min=1, max=65535, metavar="PORT", help="Load the cea serve "
        "already listening on 127.0.0.1:PORT instead of starting one (its accounts from "
        "--token-file: buys 1 t at 60.00 DAY, sells 1 t IOC)."),
    token_file: Optional[Path] = typer.Option(
        None, "--token-file", metavar="FILE", help="With --server-port: the accounts to load "
        "it with, account,token lines (as cea serve --credentials-out writes them), paired "
        "buyer/seller in order; the operator's is left out."),
    operator: str = typer.Option("OPS", "--operator", help="With --server-port: the operator "
                                 "account in --token-file, which places no orders."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Open-loop load against cea serve on loopback: latency percentiles, plots.

    A fresh server by default; --server-port loads one already running (to watch it in its
    web view: cea serve --web-port 8080).

    Example: cea loadtest --rates 5k,10k,20k --duration 5 --out loadtest --web-port 8080
    """
    import tempfile
    from contextlib import ExitStack

    import sim.loadtest as lt

    sweep = _rates(rates) if rates is not None else [rate]
    if (server_port is None) != (token_file is None):
        fail("--server-port and --token-file go together (the running server, and the "
             "accounts to load it with)")
    if server_port is not None and web_port is not None:
        fail("--web-port starts the view of a server the load test starts; with "
             "--server-port, start that server with cea serve --web-port")
    if server_port is not None:
        check_input(token_file, "--token-file")
        try:
            sessions = lt.pairs_from_tokens(token_file.read_text(encoding="utf-8"), pairs,
                                            operator)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            fail(f"--token-file {token_file}: {e}")
        pairs = len(sessions)
    else:
        accounts_csv, tokens_csv, sessions = lt.accounts_for(pairs)
    check_out(out)
    runs = []
    echo = _Echo()  # results as each rate ends; the files at the end whatever stdout does
    show = progress.active(quiet)
    starting = ("starting cea serve on loopback (it compiles its kernels: about 30-60 s, once)"
                if show and progress.kernels_cold(gateway=True)
                else "starting cea serve on loopback")
    try:
        with ExitStack() as stack:
            staged = stack.enter_context(staged_outputs(out))
            root = stack.enter_context(tempfile.TemporaryDirectory())
            if server_port is not None:
                port = server_port
            else:
                with progress.status(starting, quiet):
                    port = stack.enter_context(lt.local_server(
                        Path(root), accounts_csv, tokens_csv, fsync == OnOff.on,
                        web_port=web_port, on_web=_say_web))
            for r in sweep:
                what = (f"offering {r:,} orders/s for {duration} s on {2 * pairs} sessions "
                        f"from {processes} process(es)")
                if not show and not quiet:
                    typer.echo(what + "...", err=True)
                with progress.countdown(f"offering {r:,} orders/s", duration, quiet):
                    run = lt.load(port, r, duration, sessions, processes)
                runs.append(run)
                a = run["ack"]
                echo(f"{r:,}/s offered: {run['achieved_per_s']:,}/s acknowledged; ack "
                     f"p50 {a.get('p50_us')} p90 {a.get('p90_us')} p99 {a.get('p99_us')} "
                     f"p99.9 {a.get('p999_us')} max {a.get('max_us')} us; fill p50 "
                     f"{run['fill'].get('p50_us')} p99 {run['fill'].get('p99_us')} us")
                t = run["tester"]
                echo(f"  tester: sent {run['sent_per_s']:,}/s, CPU share "
                     f"{t['cpu_share']}, {t['cpu_us_per_order']} us CPU/order, send lag "
                     f"p99 {t['send_lag'].get('p99_us')} us")
            with progress.status("writing the report and plots", quiet):
                report = lt.write_report(runs, staged.path,
                                         p99_bound_us if len(sweep) > 1 else None,
                                         fsync=None if server_port else fsync == OnOff.on,
                                         pairs=pairs)
    except RuntimeError as e:  # the server did not start, or refused a logon
        fail(str(e), 1)
    except OSError as e:  # no server on --server-port
        fail(f"--server-port {server_port}: {e.strerror or e}", 1)
    if "highest_rate_held" in report:
        echo(f"highest rate held with p99 <= {p99_bound_us} us: {report['highest_rate_held']}")
    echo(f"wrote {out / 'loadtest.json'} and plots in {out}")
    echo.done()


def _bench(name: str, run, quiet: bool, **kw) -> None:
    """``run(echo=..., **kw)`` with a spinner on stderr naming the stage under way: the last
    line the benchmark printed."""
    show = progress.active(quiet)
    first = (f"{name}: warming up; {progress.COMPILING}"
             if show and progress.kernels_cold(gateway="gateway" in name)
             else f"{name}: warming up")
    out = _Echo()  # a closed stdout does not stop the benchmark (nor its --json file)
    with progress.status(first, quiet) as update:
        def echo(line: str = "") -> None:
            out(line)
            if line.strip():
                update(f"{name}: {line.strip()[:90]}")

        run(echo=echo, **kw)
    out.done()


@bench_app.command("core")
def bench_core(
    orders: int = typer.Option(1_000_000, "--orders", min=1, help="Commands in the stream."),
    seed: int = typer.Option(7, "--seed", help="Seed of the generated stream."),
    json_path: Optional[Path] = typer.Option(None, "--json", metavar="FILE",
                                             help="Write the figures here."),
    reference_orders: Optional[int] = typer.Option(
        None, "--reference-orders", min=1,
        help="Run the reference book on only this prefix (default: the whole stream)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Matching core: reference book vs Numba (one batch, per command, batches of 64).

    Example: cea bench core --orders 200000 --json bench-core.json
    """
    from bench.core import run_core_benchmark

    if json_path is not None:
        check_new_file(json_path, "--json")
    _bench("bench core", run_core_benchmark, quiet, orders=orders, seed=seed,
           json_path=json_path, reference_orders=reference_orders)


@bench_app.command("ledger")
def bench_ledger(
    orders: int = typer.Option(1_000_000, "--orders", min=1000, help="Commands in the stream."),
    seed: int = typer.Option(7, "--seed", help="Seed of the generated stream."),
    batch: int = typer.Option(10_000, "--batch", min=1, help="Trades per ledger transaction."),
    json_path: Optional[Path] = typer.Option(None, "--json", metavar="FILE",
                                             help="Write the figures here."),
    postgres: Optional[str] = typer.Option(
        None, "--postgres", metavar="URL",
        help="PostgreSQL conninfo/URL (default: start one on loopback)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Engine with vs without reservation; trades settled per second into SQLite, PostgreSQL.

    Example: cea bench ledger --orders 200000 --json bench-ledger.json
    """
    from bench.ledger import run_ledger_benchmark

    if json_path is not None:
        check_new_file(json_path, "--json")
    _bench("bench ledger", run_ledger_benchmark, quiet, orders=orders, seed=seed, batch=batch,
           json_path=json_path, postgres=postgres)


@bench_app.command("gateway")
def bench_gateway(
    orders: int = typer.Option(200_000, "--orders", min=1000,
                               help="Orders pipelined for the throughput figure."),
    rate: int = typer.Option(10_000, "--rate", min=100, help="Orders/s offered, open loop."),
    seconds: float = typer.Option(5.0, "--seconds", min=0.5, help="Length of each latency run."),
    json_path: Optional[Path] = typer.Option(None, "--json", metavar="FILE",
                                             help="Write the figures here."),
    pin: bool = typer.Option(True, "--pin/--no-pin", help="Latency runs: the client and the "
                             "server on different CPUs (a remote client's view)."),
    web: bool = typer.Option(True, "--web/--no-web", help="Also the pipelined run and the "
                             "round trips with the web view on and one viewer watching, side "
                             "by side with them without it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """cea serve over loopback: orders/s, server CPU per order, latency with fsync on and off.

    Pipelined orders/s against bare servers, server CPU per order, round-trip latency with
    fsync on and off, the disk's fdatasync, in one run.

    Example: cea bench gateway --orders 200000 --rate 10000 --seconds 5
    """
    from bench.gateway import run_gateway_benchmark

    if json_path is not None:
        check_new_file(json_path, "--json")
    _bench("bench gateway", run_gateway_benchmark, quiet, orders=orders, rate=rate,
           seconds=seconds, json_path=json_path, pin=pin, web=web)


@bench_app.command("fix")
def bench_fix(
    orders: int = typer.Option(20_000, "--orders", min=1000,
                               help="Orders pipelined through each port for throughput."),
    rate: int = typer.Option(5_000, "--rate", min=100, help="Orders/s offered, open loop, "
                             "for the round trips."),
    seconds: float = typer.Option(3.0, "--seconds", min=0.5, help="Length of each latency "
                                  "run."),
    json_path: Optional[Path] = typer.Option(None, "--json", metavar="FILE",
                                             help="Write the figures here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """cea serve --fix-port: orders/s and round trips through FIX and the native port.

    One server (fsync on), both ports measured in the same run; the ratios against the
    target of 3 (the FIX path within 3x the native one).

    Example: cea bench fix --orders 20000 --rate 5000 --seconds 3
    """
    from bench.fix import run_fix_benchmark

    if json_path is not None:
        check_new_file(json_path, "--json")
    _bench("bench fix", run_fix_benchmark, quiet, orders=orders, rate=rate, seconds=seconds,
           json_path=json_path)


# commands kept in their own modules, one per part of the market they serve
from cea import agent_cmd, auction_cmd, calibrate_cmd, compliance_cmd, realism_cmd, \
    registry_cmd, view_cmd  # noqa: E402

for _module in (registry_cmd, compliance_cmd, auction_cmd, agent_cmd, view_cmd, realism_cmd,
                calibrate_cmd):
    _module.register(app)
_reflow_help(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("cea: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except Exception as e:  # noqa: BLE001 - the last resort: every known error is caught
        # where it happens and explained there; this one was not foreseen
        typer.echo(f"cea: error: unexpected {type(e).__name__}: {e} (please report it; "
                   "CEA_TRACEBACK=1 shows where)", err=True)
        if os.environ.get("CEA_TRACEBACK"):
            raise
        sys.exit(2)


if __name__ == "__main__":
    main()
