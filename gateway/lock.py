"""One ``cea serve`` per data directory: an exclusive lock held for the server's lifetime.

Two servers on one data directory would both append to its journal and both acknowledge
orders; the journal is then corrupt. ``DataDirLock`` takes ``flock(LOCK_EX | LOCK_NB)`` on
``DATA_DIR/lock`` (mode 0600, the holder's pid written in it for the message); the kernel
drops the lock when the holder's last descriptor closes, so a killed server leaves no stale
lock behind, only the file. The directory must be on a local filesystem (``flock`` over NFS
is not to be relied on).

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> with DataDirLock(d) as held:
...     try:
...         DataDirLock(d).acquire()
...     except DataDirInUse as e:
...         print(str(e).replace(d, "DIR").split(" (pid")[0])
data directory DIR is in use by another cea serve
>>> DataDirLock(d).acquire().release()  # free again
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import time
from pathlib import Path

LOCK = "lock"


class DataDirInUse(OSError):
    """Another live process holds the data directory's lock."""


class DataDirLock:
    """``acquire()`` or raise ``DataDirInUse``; ``release()`` (idempotent); a context manager.

    Forked children (the snapshot writer) share the lock while they run; processes started
    with exec (the ledger publisher) do not inherit it (the descriptor is close-on-exec).
    """

    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK
        self.fd = -1

    @property
    def held(self) -> bool:
        return self.fd >= 0

    def acquire(self, grace: float = 5.0) -> "DataDirLock":
        """Lock, creating the directory (mode 0700) if it does not exist. If the pid in the
        file is dead but the lock is still held, a child of that server (a snapshot being
        written) is finishing: wait for it up to ``grace`` seconds."""
        if self.fd >= 0:
            return self
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + grace
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                pid = _read_pid(fd)
                if _alive(pid) or time.monotonic() >= deadline:
                    raise DataDirInUse(
                        f"data directory {self.data_dir} is in use by another cea serve "
                        f"({'pid ' + str(pid) if pid else 'pid unknown'})")
                time.sleep(0.05)
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        try:
            os.ftruncate(fd, 0)  # no stale pid for the next reader (the file itself stays:
        finally:                 # unlinking a lock file races with the next locker)
            os.close(fd)  # releases the flock

    def __enter__(self) -> "DataDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    """False for a dead pid (its children may still hold the lock: wait for them) and for
    none (0): the holder is between taking the lock and writing its pid, or releasing it."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process, alive
        return True
    return True


def make_private(data_dir) -> list[Path]:
    """The files directly in ``data_dir`` that are this user's and readable or writable by
    others (made by an older version, or copied in), made owner-only (0600); returns them.
    What the server creates is 0600 from the start."""
    changed = []
    uid = os.getuid()
    with os.scandir(data_dir) as entries:
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_uid == uid and st.st_mode & 0o077:
                    os.chmod(entry.path, 0o600)
                    changed.append(Path(entry.path))
            except OSError:
                continue
    return changed


def check_listen(host: str, port: int) -> None:
    """Raise ``OSError`` (one line) now if ``host:port`` cannot be bound, so that a busy port
    is found before a new data directory is created; the server binds it for real later
    (as asyncio does: SO_REUSEADDR, IPv6 sockets v6-only). Port 0 always binds."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    for family, kind, proto, _, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(address)
            except OSError as e:
                raise OSError(f"cannot listen on {host}:{port}: "
                              f"{e.strerror or e}") from None
