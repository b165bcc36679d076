"""What every ``cea`` command shares: how an error is reported, how results are put in place,
how an existing ledger is opened, how a table is printed.

Any error a user can cause is one line ``cea: error: <message>`` on stderr and a non-zero exit
(``fail``), never a traceback; results go into their directory only once complete
(``staged_outputs``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, NoReturn, Optional, TypeVar

import typer

T = TypeVar("T")

#: The help of every ``--ledger`` option that names an existing ledger.
LEDGER_HELP = "Ledger: a SQLite path (default out/ledger.sqlite) or a postgresql:// URL."
#: The ledger commands use when ``--ledger`` is not given.
DEFAULT_LEDGER = "out/ledger.sqlite"


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``cea: error: <message>`` on stderr and exit with ``code`` (2: a usage error)."""
    typer.echo(f"cea: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def staged_outputs(out: Path):
    """``cea.outdir.atomic_outputs(out)``: the results appear in ``out`` only once complete;
    an unusable ``out`` (a file, not writable) is one ``cea: error`` line, exit 2."""
    from cea.outdir import OutputError, atomic_outputs

    try:
        with atomic_outputs(out) as staging:
            yield staging
    except OutputError as e:
        fail(str(e))


def open_ledger(url: Optional[str]):
    """The existing ledger at ``url`` (default ``out/ledger.sqlite``); a SQLite path that
    does not exist is a ``cea: error`` (it is not created)."""
    from ledger.core import Ledger
    from ledger.store import is_postgres

    url = url or DEFAULT_LEDGER
    if not is_postgres(url):
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
        if not Path(path).is_file():
            fail(f"no ledger at {path} (run cea match --accounts first, or pass --ledger)")
    return Ledger.open(url, instruments=())


def read_ledger(url: Optional[str], read: Callable[..., T]) -> T:
    """``read(ledger)`` on the existing ledger at ``url`` (it may write too), closed after;
    errors as ``cea: error``."""
    from ledger.core import LedgerError
    from ledger.store import StoreError

    try:
        led = open_ledger(url)
        try:
            return read(led)
        finally:
            led.close()
    except (LedgerError, StoreError) as e:
        fail(str(e))


def print_table(rows: list[list[str]]) -> None:
    """Rows of strings as right-aligned columns, the first row the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(v.rjust(w) for v, w in zip(r, widths)))
