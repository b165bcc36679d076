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
LEDGER_HELP = ("The ledger: a SQLite file (default out/ledger.sqlite, as written by cea match "
               "--accounts) or a postgresql:// URL.")
#: The ledger commands use when ``--ledger`` is not given.
DEFAULT_LEDGER = "out/ledger.sqlite"


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``cea: error: <message>`` on stderr and exit with ``code`` (2: a usage error)."""
    typer.echo(f"cea: error: {message}", err=True)
    raise typer.Exit(code)


def check_out(out: Path, option: str = "--out") -> None:
    """Fail now, before any work, if ``out`` cannot be an output directory (it is a file, a
    path above it is a file, or it cannot be created): ``cea.outdir.check_output``."""
    from cea.outdir import OutputError, check_output

    try:
        check_output(out)
    except OutputError as e:
        fail(str(e))


def check_input(path: Path, option: str) -> None:
    """Fail now if the file ``path`` given to ``option`` does not exist or is a directory
    (whether it reads well is for its reader to say)."""
    if not path.exists():
        fail(f"{option} {path}: no such file")
    if path.is_dir():
        fail(f"{option} {path} is a directory, not a file")


def check_new_file(path: Path, option: str) -> None:
    """Fail now, before any work, if the file ``path`` given to ``option`` cannot be written
    later: its directory does not exist, or it is a directory."""
    if path.is_dir():
        fail(f"{option} {path} is a directory, not a file")
    parent = path.parent
    if not parent.is_dir():
        fail(f"{option} {path}: directory {parent} does not exist")


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
