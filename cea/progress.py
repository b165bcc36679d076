"""Progress of the long ``cea`` commands, on stderr, with rich.

- ``bar(label, total)``: a bar with the count, the elapsed time and an ETA; yields
  ``advance(n=1, label=None)``;
- ``status(text)``: a spinner with the elapsed seconds for work of unknown length; yields
  ``update(text)``;
- ``countdown(text, seconds)``: a bar that fills with the clock (a run of a fixed length,
  ``cea loadtest``), then says it is finishing;
- ``compiling(impl)``: the first run of the Numba kernels compiles them (30-60 s, once: Numba
  caches them on disk); when the cache is cold, a spinner says so while a tiny order stream
  warms them up.

Each prints nothing at all (and costs nothing) when stderr is not a terminal, or with
``quiet`` (``--quiet``): the results on stdout and the files are the same either way. While
a display is up, what the command prints goes above it: stdout is routed through the display
only when it is the terminal too (a redirected stdout keeps its results).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

#: What the spinner says while the kernels compile.
COMPILING = "compiling the matching kernels, once, about 30-60 s"


def active(quiet: bool = False) -> bool:
    """Whether progress is shown: not ``quiet``, and stderr is a terminal."""
    if quiet:
        return False
    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _live(renderable, transient: bool):
    from rich.console import Console
    from rich.live import Live

    return Live(renderable, console=Console(stderr=True), transient=transient,
                refresh_per_second=8, redirect_stdout=_stdout_is_terminal(),
                redirect_stderr=True)


def _nothing(*args, **kw) -> None:
    return None


@contextmanager
def bar(label: str, total: int, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """``with bar("simulating", days) as advance: ... advance()`` once per unit done;
    ``advance(0, label="...")`` changes the label."""
    if not active(quiet) or total <= 0:
        yield _nothing
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=False, refresh_per_second=8,
                        redirect_stdout=_stdout_is_terminal(), redirect_stderr=True)
    with progress:
        task = progress.add_task(label, total=total)

        def advance(n: int = 1, label: str | None = None) -> None:
            if label is None:
                progress.update(task, advance=n)
            else:
                progress.update(task, advance=n, description=label)

        yield advance


class _Spin:
    """A spinner, a text and the seconds since it started, re-rendered at every refresh."""

    def __init__(self, text: str):
        from rich.spinner import Spinner

        self.spinner, self.text, self.t0 = Spinner("dots"), text, time.monotonic()

    def __rich_console__(self, console, options):
        self.spinner.text = f"{self.text}  ({time.monotonic() - self.t0:.0f} s)"
        line = self.spinner.render(console.get_time())
        line.no_wrap, line.overflow = True, "ellipsis"  # one line, cut to the terminal
        yield line


@contextmanager
def status(text: str, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """``with status("starting the server") as update: ... update("next stage")``: a
    spinner with the seconds elapsed, gone when the block ends."""
    if not active(quiet):
        yield _nothing
        return
    spin = _Spin(text)
    with _live(spin, transient=True):
        def update(new: str) -> None:
            spin.text = new

        yield update


class _Countdown:
    def __init__(self, text: str, seconds: float):
        from rich.progress_bar import ProgressBar
        from rich.spinner import Spinner

        self.text, self.seconds, self.t0 = text, seconds, time.monotonic()
        self.bar, self.spinner = ProgressBar(total=seconds, width=30), Spinner("dots")

    def __rich_console__(self, console, options):
        from rich.table import Table

        elapsed = time.monotonic() - self.t0
        grid = Table.grid(padding=(0, 1))
        if elapsed < self.seconds:
            self.bar.update(elapsed)
            grid.add_row(self.text, self.bar, f"{self.seconds - elapsed:.0f} s left")
        else:
            self.spinner.text = f"{self.text}: over, collecting the last reports"
            line = self.spinner.render(console.get_time())
            line.no_wrap, line.overflow = True, "ellipsis"
            grid.add_row(line)
        yield grid


@contextmanager
def countdown(text: str, seconds: float, quiet: bool = False) -> Iterator[None]:
    """A bar that fills over ``seconds`` of wall time (the run's length), then a spinner
    until the block ends."""
    if not active(quiet):
        yield
        return
    with _live(_Countdown(text, seconds), transient=True):
        yield


# ------------------------------------------------------------------ the Numba kernels

def kernels_cold(gateway: bool = False) -> bool:
    """Whether Numba's on-disk cache lacks the matching kernels (and, with ``gateway``, the
    server's admission kernel) compiled from the current source: the next engine run then
    compiles them. Read from the cache index Numba keeps beside each kernel
    (``engine/fast/__pycache__/*.nbi``, or under ``NUMBA_CACHE_DIR``); when that cannot be
    read (another Numba version), the answer is "cold" (the spinner then only flashes)."""
    try:
        from engine.fast import kernels

        dispatchers = [kernels.run_batch]
        if gateway:
            from gateway import admission

            dispatchers.append(admission.admit)
        for d in dispatchers:
            if d.signatures:  # compiled or loaded in this process already
                continue
            # Numba internals (numba.core.caching): the index of the kernel's cached
            # overloads for this source file's stamp; empty when none is usable
            if not d._cache._cache_file._load_index():
                return True
        return False
    except Exception:  # noqa: BLE001 - a guess only: never fail a command over it
        return True


def warm_engine() -> None:
    """Compile (or load) the matching kernels by running two crossing orders through a
    throwaway book, as ``cea match`` would."""
    from engine.orderfile import parse_rows, run_match

    rows = [["2024-03-04T09:30:00.000001", "W1", "NEW", "w1", "BUY", "LIMIT", "DAY", "60.00",
             "100", ""],
            ["2024-03-04T09:30:00.000002", "W2", "NEW", "w2", "SELL", "LIMIT", "DAY", "60.00",
             "100", ""]]
    run_match(parse_rows(rows, ["CEA"], False), [6000], "numba")


def warm_up(impl: str = "numba", quiet: bool = False) -> None:
    """Before an engine run: when progress is shown, ``impl`` is ``numba`` and the kernels'
    cache is cold, compile them now (``warm_engine``) under a spinner that says so. Otherwise
    nothing (the run compiles them itself, silently)."""
    if impl == "numba" and active(quiet) and kernels_cold():
        with status(COMPILING):
            warm_engine()


@contextmanager
def compiling(impl: str = "numba", quiet: bool = False, gateway: bool = False,
              text: str = COMPILING) -> Iterator[Callable[[], None]]:
    """``with compiling(...) as done:`` for a block that compiles the kernels on its way (a
    server starting): when progress is shown and the cache is cold, a spinner saying so until
    ``done()`` is called or the block ends. Otherwise nothing."""
    if impl != "numba" or not active(quiet) or not kernels_cold(gateway):
        yield _nothing
        return
    from rich.console import Console
    from rich.live import Live

    live = Live(_Spin(text), console=Console(stderr=True), transient=True,
                refresh_per_second=8, redirect_stdout=False, redirect_stderr=False)
    live.start()
    try:
        yield live.stop
    finally:
        live.stop()
