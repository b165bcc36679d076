"""Subprocesses for the tests: each started in its own session (so its own process group),
with a deadline, and the whole group SIGKILLed on the way out. Nothing a test starts (a
server, the server's ledger process, a writer) outlives it, or keeps a pipe the test reads
open, whatever the test did: ``communicate`` on a pipe a stray grandchild still holds waits
for that grandchild."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator


def popen(cmd, **kw) -> subprocess.Popen:
    """``subprocess.Popen`` in a new session: ``kill_group`` reaches all it starts."""
    return subprocess.Popen(cmd, start_new_session=True, **kw)


def signal_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """``sig`` to ``proc``'s whole process group (nothing if none of it is left)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def kill_group(proc: subprocess.Popen, wait: float = 10.0) -> None:
    """SIGKILL ``proc``'s whole process group (what is left of it), reap ``proc`` and close
    its pipes. Harmless when everything has already ended."""
    signal_group(proc)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(wait)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


@contextlib.contextmanager
def group(cmd, **kw) -> Iterator[subprocess.Popen]:
    """``with group(cmd) as proc``: ``popen``, and ``kill_group`` on the way out."""
    proc = popen(cmd, **kw)
    try:
        yield proc
    finally:
        kill_group(proc)


def run(cmd, timeout: float, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, timeout=...)`` in a new session: on the timeout the whole group
    is killed (not only ``cmd``) and ``TimeoutExpired`` raised; after ``cmd`` ends, what it
    left running in its group is killed too."""
    if kw.pop("capture_output", False):
        kw["stdout"] = kw["stderr"] = subprocess.PIPE
    with group(cmd, **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc)
            out, err = proc.communicate(timeout=10)
            raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err) from None
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
