"""``cea view``: a finished ``cea simulate`` or ``cea replay`` output directory as a web
dashboard in the browser (registered on the main app by cea.cli; the work is in sim.view).
"""

from __future__ import annotations

from pathlib import Path

import typer

from cea.common import fail


def view(
    directory: Path = typer.Argument(..., metavar="DIR", help="An output directory of cea "
                                     "simulate or cea replay."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS",
                             help="The address to listen on (loopback: only this machine)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, metavar="PORT",
                             help="The port to listen on (0: any free port)."),
    open_browser: bool = typer.Option(False, "--open/--no-open",
                                      help="Open the page in the default browser."),
) -> None:
    """Show a simulation's or a replay's results in the browser until Ctrl-C.

    The daily closes with the ±10 % listed and ±30 % block bands, the surrender deadlines and
    the real SEEE close, the listed and block volume, a replay's gaps and infeasible days,
    each agent's P&L and the run's summary, read from DIR's files.

    Example: cea view simulation --port 8080 --open
    """
    from sim.view import ViewError, load_run, make_app, serve_app

    try:
        app = make_app(load_run(directory))
    except ViewError as e:
        fail(str(e))

    def ready(url: str) -> None:
        typer.echo(f"cea view: {url} (Ctrl-C stops)")
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    try:
        serve_app(app, host, port, ready)
    except ViewError as e:
        fail(str(e))
    typer.echo("cea view: stopped")


def register(app: typer.Typer) -> None:
    app.command("view")(view)
