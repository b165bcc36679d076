"""The report log: every account's stream of execution reports, kept for resending.

Each execution report the exchange makes for an order carries its account's **report
sequence number** (1, 2, 3, ... per account, ``report_seq``), whether the account has a
session or not. The server appends each turn's reports here after the journal holds the
turn and before they are sent, so whatever a client ever received is in the log. A client
that logs on with the last number it saw gets everything after it (``docs/protocol.md``,
the report stream), also across restarts.

The file ``reports.log`` in the data directory is a sequence of records, one per account
per turn::

    head (32 bytes, little-endian): magic u32 "CEAR", account u32, count u32,
                                     records of the same turn after this one u32,
                                     first report_seq u64, journal record u64
    count ExecutionReport or QuoteReport frames (73 bytes each, report_seq last),
    report_seq first, first+1, ...

It is derived data: the journal determines it, so recovery rebuilds whatever its tail lacks
(a crash between the journal's write and the log's) from the journal records it replays
(``ReportLog.covered`` says how far it goes; a record with count 0 only marks that). So it is
written lazily: appends collect in memory and go to the file in one write when 256 KiB
gathered, on the server's 50 ms timer, before a read, a snapshot and at shutdown; it is
fsync'd only before a snapshot and at shutdown (a snapshot is used only if the log covers
it, else recovery replays the journal from its start).

An index in memory (per record: account, first number, count, file offset) finds an
account's reports without reading anyone else's.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> log = ReportLog(d / "reports.log")
>>> log.last(3), log.covered
(0, -1)
>>> log.close()
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numba import njit

from .reports import LOG_HEAD, LOG_MAGIC
from .wire import REPORT_SIZE, rd_i64, rd_u16, rd_u32

REPORTS = "reports.log"
_T_REPORT = 32
_T_QUOTE = 36  # a QuoteReport: the same size, report_seq at the same offset
SEQ_AT = REPORT_SIZE - 8  # report_seq is the frame's last field


@njit(cache=True)
def _scan(data, out_acct, out_first, out_count, out_off, out_jseq):
    """Walk the records of ``data``; fill the ``out_*`` arrays if they have room (pass
    empty ones to count). Returns (records, end) of the last complete turn: a turn written
    in part (a crash mid-write) counts as not written."""
    p = 0
    n = 0
    done_n = 0
    done_p = 0
    end = data.shape[0]
    cap = out_acct.shape[0]
    while p + LOG_HEAD <= end:
        if rd_u32(data, p) != LOG_MAGIC:
            break
        count = rd_u32(data, p + 8)
        first = rd_i64(data, p + 16)
        body = p + LOG_HEAD
        if body + count * REPORT_SIZE > end:
            break
        good = True
        for i in range(count):
            q = body + i * REPORT_SIZE
            if (rd_u16(data, q) != REPORT_SIZE - 2
                    or (data[q + 2] != _T_REPORT and data[q + 2] != _T_QUOTE)
                    or rd_i64(data, q + SEQ_AT) != first + i):
                good = False
                break
        if not good:
            break
        if n < cap:
            out_acct[n] = rd_u32(data, p + 4)
            out_first[n] = first
            out_count[n] = count
            out_off[n] = p
            out_jseq[n] = rd_i64(data, p + 24)
        n += 1
        p = body + count * REPORT_SIZE
        if rd_u32(data, p - count * REPORT_SIZE - LOG_HEAD + 12) == 0:
            done_n = n
            done_p = p
    return done_n, done_p


@njit(cache=True)
def _index(records, base, journal_seq, acct, first, count, off, jseq, n, last_seq):
    """Add a turn's ``records`` (account, first, count, offset from ``base``) to the index
    at row ``n``; the caller made room. Returns the new row count."""
    for k in range(records.shape[0]):
        a = records[k, 0]
        acct[n] = a
        first[n] = records[k, 1]
        count[n] = records[k, 2]
        off[n] = base + records[k, 3]
        jseq[n] = journal_seq
        last_seq[a] = records[k, 1] + records[k, 2] - 1
        n += 1
    return n


#: Appends gathered in memory before one write to the file.
FLUSH_AT = 1 << 18


class ReportLog:
    """The report log of one data directory: append per turn, read per account."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self.n = 0
        self.acct = np.zeros(1024, np.int64)
        self.first = np.zeros(1024, np.int64)
        self.count = np.zeros(1024, np.int64)
        self.off = np.zeros(1024, np.int64)
        self.jseq = np.zeros(1024, np.int64)
        self.last_seq = np.zeros(64, np.int64)  # per account: the last report logged
        self.covered = -1  # the last journal record whose reports are all here
        self.torn = 0  # bytes cut off a torn tail when opened
        self._pending = bytearray()  # appended, not yet written (at offset end - len)
        self._load()

    # -------------------------------------------------------------- open

    def _load(self) -> None:
        size = os.fstat(self.fd).st_size
        if size == 0:
            self.end = 0
            return
        data = np.memmap(self.path, np.uint8, "r", shape=(size,))
        try:
            empty = np.zeros(0, np.int64)
            n, _ = _scan(data, empty, empty, empty, empty, empty)
            self._room(n)
            n, end = _scan(data, self.acct, self.first, self.count, self.off, self.jseq)
        finally:
            del data
        self.n, self.end = int(n), int(end)
        if self.end < size:  # a torn tail (a crash mid-write): cut
            self.torn = size - self.end
            os.ftruncate(self.fd, self.end)
        self._recount()

    def _recount(self) -> None:
        n = self.n
        self.covered = int(self.jseq[:n].max()) if n else -1
        self.last_seq = np.zeros(max(64, int(self.acct[:n].max()) + 1 if n else 0), np.int64)
        has = self.count[:n] > 0
        np.maximum.at(self.last_seq, self.acct[:n][has],
                      self.first[:n][has] + self.count[:n][has] - 1)

    def _room(self, n: int) -> None:
        if n > self.acct.shape[0]:
            size = max(n, 2 * self.acct.shape[0])
            for name in ("acct", "first", "count", "off", "jseq"):
                old = getattr(self, name)
                new = np.zeros(size, np.int64)
                new[: old.shape[0]] = old
                setattr(self, name, new)

    def _accounts(self, n: int) -> None:
        if n > self.last_seq.shape[0]:
            grown = np.zeros(max(n, 2 * self.last_seq.shape[0]), np.int64)
            grown[: self.last_seq.shape[0]] = self.last_seq
            self.last_seq = grown

    def truncate_after(self, journal_seq: int) -> None:
        """Drop the records of journal records after ``journal_seq`` (a journal that lost
        its unsynced tail while the log kept it: with fsync off, after a power loss)."""
        self.flush()
        n = self.n
        keep = int(np.searchsorted(self.jseq[:n] > journal_seq, True))
        if keep == n:
            return
        self.end = int(self.off[keep])
        os.ftruncate(self.fd, self.end)
        self.n = keep
        self._recount()

    # -------------------------------------------------------------- write

    def append(self, records: np.ndarray, data, journal_seq: int, accounts: int) -> None:
        """A turn's records (``reports.Output.grouped``: its ``records`` rows and ``log``
        bytes) of journal record ``journal_seq``; account handles are below ``accounts``."""
        k = records.shape[0]
        if k == 0:
            return
        self._room(self.n + k)
        self._accounts(accounts)
        self.n = _index(records, self.end, journal_seq, self.acct, self.first, self.count,
                        self.off, self.jseq, self.n, self.last_seq)
        self._pending += memoryview(data)
        self.end += len(data)
        self.covered = journal_seq
        if len(self._pending) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write what was appended (the file is then complete to ``end``)."""
        if self._pending:
            os.pwrite(self.fd, self._pending, self.end - len(self._pending))
            self._pending.clear()

    def mark(self, journal_seq: int) -> None:
        """Record that the log is complete up to journal record ``journal_seq``."""
        if journal_seq <= self.covered:
            return
        head = np.zeros(LOG_HEAD, np.uint8)
        head[:4] = np.frombuffer(LOG_MAGIC.to_bytes(4, "little"), np.uint8)
        head[24:32] = np.frombuffer(int(journal_seq).to_bytes(8, "little"), np.uint8)
        self._pending += head.tobytes()
        self._room(self.n + 1)
        self.acct[self.n] = 0
        self.first[self.n] = 0
        self.count[self.n] = 0
        self.off[self.n] = self.end
        self.jseq[self.n] = journal_seq
        self.n += 1
        self.end += LOG_HEAD
        self.covered = journal_seq

    def sync(self) -> None:
        self.flush()
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            self.flush()
            os.close(self.fd)
            self.fd = -1

    # -------------------------------------------------------------- read

    def last(self, account: int) -> int:
        """The last report sequence number of ``account`` (0: none yet)."""
        return int(self.last_seq[account]) if 0 <= account < self.last_seq.shape[0] else 0

    def counters(self, accounts: int) -> np.ndarray:
        """Every account's last number, for the reports stage to continue from."""
        self._accounts(accounts)
        return self.last_seq.copy()

    def read(self, account: int, from_seq: int, max_bytes: int = 1 << 18) -> tuple[bytes, int]:
        """(frames, how many) of ``account``'s reports from ``from_seq`` on, at most
        ``max_bytes`` (at least one report if there is one)."""
        self.flush()
        n = self.n
        mine = np.flatnonzero((self.acct[:n] == account) & (self.count[:n] > 0))
        if mine.size == 0:
            return b"", 0
        ends = self.first[mine] + self.count[mine]
        i = int(np.searchsorted(ends, from_seq, side="right"))
        chunks, got = [], 0
        budget = max(1, max_bytes // REPORT_SIZE)
        while i < mine.size and got < budget:
            r = int(mine[i])
            skip = max(0, from_seq + got - int(self.first[r]))
            take = min(int(self.count[r]) - skip, budget - got)
            chunks.append(os.pread(self.fd, take * REPORT_SIZE,
                                   int(self.off[r]) + LOG_HEAD + skip * REPORT_SIZE))
            got += take
            i += 1
        return b"".join(chunks), got
