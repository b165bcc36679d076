"""Outputs that appear only when complete.

A command that writes results into ``--out DIR`` writes them into a staging directory first
and moves them into place once every file is written and every database is closed:

- DIR does not exist: the staging directory is ``.DIR.cea-partial-<pid>`` beside it, renamed
  to DIR at the end (one atomic rename);
- DIR exists: the staging directory is ``DIR/.cea-partial-<pid>``; at the end it is renamed
  ``DIR/.cea-ready-<pid>`` (from then on the run counts as complete) and each of its entries
  replaces the entry of that name in DIR: a file by a rename over the old one, a directory
  (``statements/``, ``compliance/``) as a whole. The entries the run did not write (another
  command's results, a ledger kept between runs) stay, as before.

A run that fails or is interrupted (an error, Ctrl-C) removes its staging directory and any
directory it created for it: DIR is as the previous run left it. A run killed outright
(SIGKILL, power loss) leaves its staging directory, named ``partial``; the next run into the
same DIR removes the ``partial`` directories of processes no longer alive, and finishes moving
a ``ready`` one into place. Nothing is fsync'd: the guarantee is against interrupted runs, not
against losing power.

Single files (``cea population --out FILE``) go the same way: ``atomic_files`` writes each to
``.NAME.cea-partial-<pid>`` beside it and renames them all over their targets at the end.

Only the command line uses this: the writers in ``sim`` and ``ledger`` take a directory and
write into it; the command hands them the staging directory.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_MARK = ".cea-"
_INSIDE = re.compile(r"^\.cea-(partial|ready|old)-(\d+)$")
_SIDECARS = ("-wal", "-shm", "-journal")


class OutputError(Exception):
    """The output directory cannot be used or the results cannot be put in place."""


class Staged:
    """Where a command writes (``path``) and where its results end up (``final``)."""

    def __init__(self, final: Path, path: Path) -> None:
        self.final, self.path = final, path

    def final_path(self, p):
        """``p`` (a path or a path string) written under ``path``, as it is after the move
        into ``final``; anything else unchanged, of the same type."""
        try:
            rel = Path(p).relative_to(self.path)
        except ValueError:
            return p
        moved = self.final / rel
        return str(moved) if isinstance(p, str) else moved


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes one run into a directory at a time
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _move_in(src: Path, final: Path, trash: Path) -> None:
    """Each entry of ``src`` replaces the entry of its name in ``final`` (an old directory,
    or anything a directory replaces, goes to ``trash`` first); ``src`` is removed. The
    SQLite files beside an old database (``-wal``, ``-shm``, ``-journal``) go with it: left
    beside the new one, SQLite would apply them to it."""
    for name in sorted(os.listdir(src)):
        old, new = final / name, src / name
        for side in (name + s for s in _SIDECARS):
            if os.path.lexists(final / side) and not os.path.lexists(src / side):
                trash.mkdir(exist_ok=True)
                os.rename(final / side, trash / side)
        if os.path.lexists(old) and ((os.path.isdir(old) and not os.path.islink(old))
                                     or (os.path.isdir(new) and not os.path.islink(new))):
            trash.mkdir(exist_ok=True)
            os.rename(old, trash / name)
        os.replace(new, old)
    os.rmdir(src)


def _stale_siblings(final: Path) -> Iterator[Path]:
    """The staging directories or files beside ``final`` of processes no longer alive."""
    pattern = re.compile(r"^\." + re.escape(final.name) + r"\.cea-partial-(\d+)$")
    try:
        names = os.listdir(final.parent)
    except OSError:
        return
    for name in names:
        m = pattern.match(name)
        if m and not _alive(int(m.group(1))):
            yield final.parent / name


def clean_up(final: Path) -> list[Path]:
    """Put right what runs killed while writing into ``final`` left: finish moving their
    complete (``ready``) results into place, remove their ``partial`` and ``old`` leftovers.
    Leftovers of processes still alive are left alone. Returns what was removed or moved."""
    final = Path(os.path.abspath(final))
    done = list(_stale_siblings(final))
    for path in done:
        _remove(path)
    if not final.is_dir():
        return done
    stale = []
    for name in os.listdir(final):
        m = _INSIDE.match(name)
        if m and not _alive(int(m.group(2))):
            stale.append((m.group(1), final / name))
    trash = final / f"{_MARK}old-{os.getpid()}"
    for kind, path in sorted(stale, key=lambda s: s[0] != "ready"):  # ready ones first
        if kind == "ready":
            _move_in(path, final, trash)
            _remove(trash)
        else:
            _remove(path)
        done.append(path)
    return done


def check_output(final: Path) -> None:
    """Raise ``OutputError`` now (before a command does any work) if ``atomic_outputs(final)``
    would refuse ``final``: it is a file, a path above it is a file, or the nearest directory
    that exists is not writable. Nothing is created.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "f").write_text("x")
    1
    >>> check_output(d / "new" / "dir")  # fine: created later
    >>> try:
    ...     check_output(d / "f")
    ... except OutputError as e:
    ...     print(str(e).replace(str(d), "D"))
    D/f exists and is not a directory
    """
    final = Path(final)
    real = Path(os.path.abspath(final))
    if os.path.lexists(real) and not real.is_dir():
        raise OutputError(f"{final} exists and is not a directory")
    existing = real
    for parent in [real, *real.parents]:
        if parent.is_dir():
            existing = parent
            break
        if os.path.lexists(parent):
            raise OutputError(f"{final}: {parent} is not a directory")
    # a new DIR is staged beside it (in its parent); an existing one inside itself
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{final}: cannot create the output directory: {existing} is not "
                          "writable")


@contextmanager
def atomic_outputs(final: Path) -> Iterator[Staged]:
    """``with atomic_outputs(out) as st:`` write everything into ``st.path``; on a normal exit
    it is moved into ``out``, on an exception (``KeyboardInterrupt`` included) it is removed
    and ``out`` left as it was. ``OutputError``: ``out`` is a file, or cannot be created or
    written. Leftovers of killed runs into ``out`` are dealt with first (``clean_up``)."""
    final = Path(final)
    real = Path(os.path.abspath(final))
    if os.path.lexists(real) and not real.is_dir():
        raise OutputError(f"{final} exists and is not a directory")
    created: list[Path] = []  # directories above DIR that this run creates
    try:
        clean_up(real)
        exists = real.is_dir()
        if exists:
            stage = real / f"{_MARK}partial-{os.getpid()}"
        else:
            for parent in real.parents:
                if parent.is_dir():
                    break
                if os.path.lexists(parent):
                    raise OutputError(f"{final}: {parent} is not a directory")
                created.append(parent)
            real.parent.mkdir(parents=True, exist_ok=True)
            stage = real.parent / f".{real.name}{_MARK}partial-{os.getpid()}"
        _remove(stage)
        stage.mkdir()
    except OSError as e:
        _remove_created(created)
        raise OutputError(f"{final}: cannot create the output directory: "
                          f"{e.strerror or e}") from None
    try:
        yield Staged(final, stage)
    except BaseException:
        _remove(stage)
        _remove_created(created)
        raise
    try:
        _commit(stage, real)
    except OSError as e:
        raise OutputError(f"{final}: cannot move the results into place: "
                          f"{e.strerror or e}") from None


def _remove_created(created: list[Path]) -> None:
    for path in created:  # deepest first
        try:
            path.rmdir()
        except OSError:
            break


def _commit(stage: Path, final: Path) -> None:
    if not final.is_dir():
        try:
            os.rename(stage, final)
            return
        except OSError:
            if not final.is_dir():  # not "DIR appeared meanwhile"
                _remove(stage)
                raise
    ready = final / f"{_MARK}ready-{os.getpid()}"
    os.rename(stage, ready)
    trash = final / f"{_MARK}old-{os.getpid()}"
    _move_in(ready, final, trash)
    _remove(trash)


@contextmanager
def atomic_files(*finals: Path) -> Iterator[list[Path]]:
    """``with atomic_files(a, b) as (ta, tb):`` write ``ta`` and ``tb``; on a normal exit
    they are renamed over ``a`` and ``b``, on an exception removed (``a`` and ``b`` as they
    were). ``OutputError``: a target is a directory."""
    temps = []
    for final in map(Path, finals):
        if final.is_dir():
            raise OutputError(f"{final} is a directory, not a file")
        for path in _stale_siblings(Path(os.path.abspath(final))):
            _remove(path)
        temps.append(final.parent / f".{final.name}{_MARK}partial-{os.getpid()}")
    try:
        yield temps
        for temp, final in zip(temps, finals):
            os.replace(temp, final)
    except BaseException:
        for temp in temps:
            _remove(temp)
        raise
