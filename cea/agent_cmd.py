"""``cea agent``: run your own agent class against a live ``cea serve`` (registered on the main
app by cea.cli). The same class runs in ``cea simulate --agent``; see docs/agents.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from cea.common import fail


def _params(values: List[str]) -> dict:
    """``KEY=VALUE`` pairs; a VALUE that reads as JSON (numbers, true, "text") is that."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            fail(f"--param {item!r}: expected KEY=VALUE, e.g. lot=2000")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _token(account: str, token: Optional[str], token_file: Optional[Path]) -> str:
    if (token is None) == (token_file is None):
        fail("give the account's logon token with --token or --token-file (not both)")
    if token is not None:
        return token
    try:
        lines = token_file.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        fail(f"--token-file {token_file}: {e.strerror}")
    for line in lines:
        name, _, value = line.strip().partition(",")
        if name == account and value:
            return value
    fail(f"--token-file {token_file}: no token for account {account} (expected lines "
         "account,token as cea serve --credentials-out writes them)")


def agent(
    spec: str = typer.Argument(
        ..., metavar="MODULE:CLASS", help="Your agent class: MODULE:CLASS or "
        "path/to/file.py:CLASS (a subclass of sim.agent.Agent)."),
    account: str = typer.Option(..., "--account", metavar="ACCOUNT",
                                help="The account the agent trades."),
    token: Optional[str] = typer.Option(None, "--token", metavar="TOKEN",
                                        help="The account's logon token."),
    token_file: Optional[Path] = typer.Option(
        None, "--token-file", metavar="FILE", help="Read the token from an account,token "
        "CSV (as cea serve --credentials-out writes it)."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS",
                             help="The exchange's address."),
    port: int = typer.Option(7878, "--port", min=1, max=65535, metavar="PORT",
                             help="The exchange's port."),
    instrument: str = typer.Option("CEA", "--instrument", metavar="NAME",
                                   help="The instrument it trades."),
    step: float = typer.Option(1.0, "--step", min=0.01, max=3600.0, metavar="SECONDS",
                               help="Seconds between on_step calls (the agent's clock)."),
    duration: Optional[float] = typer.Option(
        None, "--duration", min=0.1, metavar="SECONDS", help="Stop after this many seconds "
        "(default: run until Ctrl-C)."),
    param: List[str] = typer.Option([], "--param", metavar="KEY=VALUE",
                                    help="Given to the class's constructor (repeat)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE",
                                       help="Also write the figures to this JSON file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display on stderr "
                               "(the figures are printed all the same)."),
) -> None:
    """Run your agent against a running cea serve; print its trades' totals and P&L.

    Example: cea agent docs/examples/my_agent.py:MeanReverter --account A001
    --token-file creds.csv --duration 60
    """
    from sim.agent import AgentError, make_agent
    from sim.live import run_live

    the_token = _token(account, token, token_file)
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        fail(f"--out {out}: not a file in an existing directory")
    try:
        instance = make_agent(spec, _params(param))
    except AgentError as e:
        fail(str(e))
    from cea import progress
    from engine.units import format_fen
    from gateway.client import ClientError

    try:
        with progress.status(f"{account}: logging on to {host}:{port}", quiet) as show:
            def stepped(a, left) -> None:
                until = "Ctrl-C stops" if left is None else f"{left:.0f} s left"
                show(f"{a.account}: {a.orders_sent} orders, {a.trades} trades, position "
                     f"{a.allowances - a.opening_allowances:+,} t, P&L "
                     f"{format_fen(a.pnl())} CNY ({until})")

            figures = run_live(instance, host, port, account, the_token, instrument=instrument,
                               step=step, duration=duration, progress=stepped)
    except AgentError as e:
        fail(str(e), 1)
    except ClientError as e:
        fail(f"{host}:{port}: {e}", 1)
    except OSError as e:
        fail(f"cannot reach the exchange at {host}:{port}: {e.strerror or e}", 1)
    if out is not None:
        out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    f = figures
    typer.echo(f"{f['account']} ({f['class']}): {f['orders']} orders, {f['trades']} trades, "
               f"bought {f['bought_t']:,} t, sold {f['sold_t']:,} t; cash "
               f"{format_fen(f['opening_cash'])} -> {format_fen(f['cash'])} CNY, allowances "
               f"{f['opening_allowances']:,} -> {f['allowances']:,} t; P&L "
               f"{format_fen(f['pnl'])} CNY at {format_fen(f['mark'])}")
    if f["open_orders_cancelled"]:
        typer.echo(f"{f['open_orders_cancelled']} open orders are cancelled by the exchange "
                   "as the session ends (cancel-on-disconnect)")


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
