"""Durability off the event loop: a sync thread that never takes the GIL.

The loop writes each turn's journal records (page cache, a few µs), tells the thread how far
the journal now goes (``submit``: the last record's sequence number and an eventfd), and
goes on with the next turn. The thread waits on that eventfd, ``fdatasync``s the journal,
records how far it is now durable and signals a second eventfd, which the loop watches
(``loop.add_reader``) to release, in order, the turns now durable (group commit: what was
written while a sync ran goes with the next one). Matching the next turn so overlaps the
sync of the last.

The thread's loop is one Numba function compiled ``nogil`` that calls ``read``, ``write``
and ``fdatasync`` from libc directly: a Python thread would need the GIL after every sync,
and would wait for it while the loop is busy (up to the interpreter's 5 ms switch
interval), which is the latency this is here to remove.

>>> import os, tempfile
>>> fd = os.open(os.path.join(tempfile.mkdtemp(), "j"), os.O_RDWR | os.O_CREAT)
>>> seen = []
>>> s = SyncThread(fd, seen.append)
>>> os.pwrite(fd, b"record", 0) and s.submit(1)
>>> s.wait_done(); seen, s.durable
([1], 1)
>>> s.stop()
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np
from numba import njit

_libc = ctypes.CDLL(None, use_errno=True)
_read = _libc.read
_read.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_size_t]  # a pointer as an int64
_read.restype = ctypes.c_ssize_t
_write = _libc.write
_write.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_size_t]
_write.restype = ctypes.c_ssize_t
_fdatasync = _libc.fdatasync
_fdatasync.argtypes = [ctypes.c_int]
_fdatasync.restype = ctypes.c_int

# shared[] slots (int64), read and written by both sides
WRITTEN = 0  # the last record the loop has written
DURABLE = 1  # the last record synced
STOP = 2
ERROR = 3  # the errno of a failed fdatasync
SYNCS = 4
_SHARED = 8
_ONE = (1).to_bytes(8, "little")


@njit(nogil=True)
def _sync_loop(fd, work, done, shared, scratch):
    """Until STOP: wait for work, sync the journal up to what was written, say so."""
    into = scratch.ctypes.data
    one = scratch.ctypes.data + 8
    while True:
        n = _read(work, into, 8)
        if shared[STOP] != 0:
            return 0
        if n != 8:  # interrupted by a signal: wait again
            continue
        target = shared[WRITTEN]
        if target > shared[DURABLE]:
            if _fdatasync(fd) != 0:
                shared[ERROR] = 1
                _write(done, one, 8)
                return 1
            shared[DURABLE] = target
            shared[SYNCS] += 1
        _write(done, one, 8)


class SyncThread:
    """The sync thread of a journal file descriptor; ``on_durable(seq)`` runs on the loop
    (``attach``) or from ``wait_done`` each time records up to ``seq`` are durable."""

    def __init__(self, fd: int, on_durable):
        self.fd = fd
        self.on_durable = on_durable
        self.shared = np.zeros(_SHARED, np.int64)
        self.shared[WRITTEN] = self.shared[DURABLE] = -1
        self._scratch = np.zeros(2, np.int64)
        self._scratch[1] = 1
        self._work = os.eventfd(0)
        self._done = os.eventfd(0, os.EFD_NONBLOCK)
        self._loop = None
        self.error: OSError | None = None
        self._thread = threading.Thread(target=_sync_loop, name="journal-sync", daemon=True,
                                        args=(fd, self._work, self._done, self.shared,
                                              self._scratch))
        self._thread.start()

    @property
    def durable(self) -> int:
        return int(self.shared[DURABLE])

    @property
    def syncs(self) -> int:
        return int(self.shared[SYNCS])

    def attach(self, loop) -> None:
        """Run ``on_durable`` from ``loop`` when the thread signals."""
        self._loop = loop
        loop.add_reader(self._done, self._signalled)

    def submit(self, seq: int) -> None:
        """Records up to ``seq`` are written: sync them."""
        self.shared[WRITTEN] = seq
        os.write(self._work, _ONE)

    def _signalled(self) -> None:
        try:
            os.read(self._done, 8)
        except BlockingIOError:
            return
        if self.shared[ERROR]:
            self.error = OSError("fdatasync of the journal failed")
        self.on_durable(-1 if self.error is not None else self.durable)

    def wait_done(self) -> None:
        """Block until the thread signals once (tests, and before the loop runs)."""
        os.set_blocking(self._done, True)
        try:
            os.read(self._done, 8)
        finally:
            os.set_blocking(self._done, False)
        if self.shared[ERROR]:
            self.error = OSError("fdatasync of the journal failed")
        self.on_durable(-1 if self.error is not None else self.durable)

    def sync_now(self, seq: int) -> None:
        """Make records up to ``seq`` durable from the calling thread, at once (a snapshot
        or a stop must not wait for the thread's turn)."""
        os.fdatasync(self.fd)
        if seq > self.shared[DURABLE]:
            self.shared[DURABLE] = seq
        self.on_durable(self.durable)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._done)
            self._loop = None
        self.shared[STOP] = 1
        os.write(self._work, _ONE)
        self._thread.join(10)
        os.close(self._work)
        os.close(self._done)
