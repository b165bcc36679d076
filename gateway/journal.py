"""The journal (every sequenced command, in order, before anything is acknowledged) and
snapshots of the exchange's state; recovery is the latest good snapshot plus the journal.

Journal file: records back to back, each a 20-byte header and a msgpack body::

    magic u32 | body length u32 | sequence number u64 | crc32 u32 of (seq, body)  (big-endian)

Record 0 is the ``Genesis``. The file is preallocated ahead of the records with zeros (so that
a commit's ``fdatasync`` writes the data alone, without the file size's metadata), so the
records end at the first all-zero header. A crash can leave the last record torn (short,
failing its CRC, or partly written over the zeros): it was never fsync'd, so never
acknowledged, and recovery cuts it off. A bad record with good records after it is
corruption: recovery stops and says where.

Snapshot files ``snapshot-<seq>.pkl``: a SHA-256 of the body, then the pickled ``Exchange``
as of journal record ``seq``, written to a temporary name, fsync'd and renamed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.units import format_fen

from .exchange import Exchange, Genesis, OrderBatch, record_decoder, record_encoder

log = logging.getLogger("cea.serve")

MAGIC = 0xCEA10001
_HEADER = struct.Struct(">IIQI")
_MAGIC_BYTES = MAGIC.to_bytes(4, "big")
_ZERO_HEADER = bytes(_HEADER.size)
JOURNAL = "journal.log"
SNAPSHOT_KEEP = 2


class JournalError(Exception):
    """The journal cannot be read or replayed as it is; the message says where and why."""


def frame(seq: int, record) -> bytes:
    body = record_encoder.encode(record)
    seq_bytes = seq.to_bytes(8, "big")
    crc = zlib.crc32(body, zlib.crc32(seq_bytes))
    return _HEADER.pack(MAGIC, len(body), seq, crc) + body


@dataclass
class Scan:
    records: int  # good records
    end: int  # offset just after the last good record
    size: int  # file size
    last_seq: int  # -1 if none
    problem: str = ""  # why reading stopped before the end of the file, if it did

    zero_tail: bool = False  # the bytes after ``end`` are the preallocated zeros

    @property
    def torn_tail(self) -> bool:
        """The bytes after ``end`` are one incomplete or damaged last record."""
        return bool(self.problem) and self.end < self.size and not self.zero_tail


def read_records(path: Path, scan: Scan | None = None) -> Iterator[tuple[int, object]]:
    """(seq, record) for every good record, read as a stream (memory stays one record);
    fills ``scan`` as it goes. Stops at the first bad record, saying why in ``scan.problem``
    (the caller decides if that is a torn tail)."""
    scan = scan if scan is not None else Scan(0, 0, 0, -1)
    scan.size = os.path.getsize(path)
    pos = 0
    with open(path, "rb", buffering=1 << 20) as f:
        while True:
            header = f.read(_HEADER.size)
            if not header:
                return
            if header == _ZERO_HEADER and _zeros_from(f):
                scan.zero_tail = True  # the preallocated space after the last record
                return
            if len(header) < _HEADER.size:
                scan.problem = f"offset {pos}: {len(header)} bytes, too short for a header"
                return
            magic, length, seq, crc = _HEADER.unpack(header)
            if magic != MAGIC:
                scan.problem = f"offset {pos}: bad magic {magic:#x}"
                return
            body = f.read(length)
            if len(body) < length:
                scan.problem = (f"offset {pos}: record {seq} cut short ({len(body)} of "
                                f"{length} bytes)")
                return
            if zlib.crc32(body, zlib.crc32(seq.to_bytes(8, "big"))) != crc:
                scan.problem = f"offset {pos}: record {seq} fails its CRC"
                return
            if seq != scan.last_seq + 1:
                raise JournalError(f"{path}: offset {pos}: record {seq} follows {scan.last_seq}")
            try:
                record = record_decoder.decode(body)
            except Exception as e:  # noqa: BLE001 - a CRC-clean body that does not decode
                raise JournalError(f"{path}: offset {pos}: record {seq} does not decode: "
                                   f"{e}") from None
            pos += _HEADER.size + length
            scan.records += 1
            scan.end = pos
            scan.last_seq = seq
            yield seq, record


def _zeros_from(f) -> bool:
    """Whether the rest of ``f`` holds only zero bytes (its position is restored)."""
    at = f.tell()
    try:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return True
            if chunk.count(0) != len(chunk):
                return False
    finally:
        f.seek(at)


def open_journal(data_dir: Path) -> tuple[Path, Scan, Iterator[tuple[int, object]], Genesis]:
    """The journal of ``data_dir``: its path, the scan filled as records are read, the
    iterator over the records after the genesis, and the genesis."""
    path = Path(data_dir) / JOURNAL
    if not path.exists():
        raise JournalError(f"{path}: no journal here")
    scan = Scan(0, 0, 0, -1)
    records = read_records(path, scan)
    first = next(records, None)
    if first is None or first[0] != 0 or not isinstance(first[1], Genesis):
        raise JournalError(f"{path}: the first record is not a genesis record"
                           + (f" ({scan.problem})" if scan.problem else ""))
    return path, scan, records, first[1]


def check_tail(path: Path, scan: Scan) -> None:
    """Raise ``JournalError`` unless reading stopped at the end, at the preallocated zeros,
    or at a torn last record."""
    if not scan.problem:
        return
    # a torn tail is the last write, never fsync'd: one record's worth at most. Anything
    # readable as a good record after the damage means the damage is in the middle.
    with open(path, "rb") as f:
        f.seek(scan.end)
        rest = f.read()
    i = rest.find(_MAGIC_BYTES, 1)
    while 0 < i <= len(rest) - _HEADER.size:
        magic, length, seq, crc = _HEADER.unpack_from(rest, i)
        if seq > scan.last_seq:
            body = rest[i + _HEADER.size: i + _HEADER.size + length]
            if (len(body) == length and
                    zlib.crc32(body, zlib.crc32(seq.to_bytes(8, "big"))) == crc):
                raise JournalError(f"{path}: corrupt in the middle: {scan.problem}, "
                                   f"yet record {seq} follows intact")
        i = rest.find(_MAGIC_BYTES, i + 1)


class JournalWriter:
    """Writes records at the journal's end; ``commit`` makes them durable (fdatasync) unless
    fsync is off.

    With fsync on, the file is kept preallocated ahead of the writes: ``chunk`` bytes of zeros
    are written and synced when the writer opens, and a helper thread extends the file again
    (by as much as it holds, up to ``max_chunk``) once half of that room is used, in steps of
    ``STEP`` bytes each synced on its own, so that a commit of the loop never waits behind
    more than one step of zeros. A record then overwrites blocks the file already has, and
    its commit syncs the data alone; appending would make every commit also write the file's
    new size through the filesystem's journal (about 40 % slower here, see
    docs/performance.md). The loop never writes where the helper is writing: a write that
    would reach past the allocated end first waits for the helper.
    """

    STEP = 256 << 10

    def __init__(self, path: Path, fsync: bool = True, end: int | None = None,
                 chunk: int = 1 << 20, max_chunk: int = 64 << 20):
        self.path = Path(path)
        self.fsync = fsync
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(self.fd, 0o600)  # owner only, also a journal an older version made 0644
        size = os.fstat(self.fd).st_size
        self.pos = size if end is None else end
        self.allocated = size
        self.chunk, self.max_chunk = chunk, max_chunk
        self.syncs = 0
        self._extender: threading.Thread | None = None
        if fsync and chunk and self.allocated - self.pos < chunk:
            self._extend(self.pos + chunk - self.allocated)  # before anyone waits on it

    def append(self, records) -> None:
        self.write(b"".join([frame(seq, record) for seq, record in records]))

    def write(self, data: bytes) -> None:
        """Write framed records (``frame``) at the end."""
        end = self.pos + len(data)
        if end > self.allocated and self._extender is not None:
            self._join()
        view = memoryview(data)
        pos = self.pos
        while view:
            n = os.pwrite(self.fd, view, pos)
            view = view[n:]
            pos += n
        self.pos = end
        room = self.allocated - end
        if self.fsync and self.chunk and self._extender is None and \
                room < max(self.chunk, self.allocated - room) // 2:
            size = min(self.max_chunk, max(self.chunk, self.allocated))
            self._extender = threading.Thread(target=self._extend, args=(size,),
                                              name="journal-prealloc", daemon=True)
            self._extender.start()

    def _extend(self, size: int) -> None:
        """Zeros from the allocated end (or the records' end, past it) for ``size`` bytes,
        step by step, each step synced before the room it makes is used."""
        try:
            at = max(self.allocated, self.pos)
            stop = at + size
            zeros = bytes(self.STEP)
            while at < stop:
                n = os.pwrite(self.fd, zeros[: min(self.STEP, stop - at)], at)
                os.fdatasync(self.fd)
                at += n
                self.allocated = at
        except OSError as e:  # writes then append past the end: slower, as durable
            log.warning("journal: preallocating %s failed: %s", self.path, e)

    def _join(self) -> None:
        self._extender.join()
        self._extender = None

    def commit(self) -> None:
        if self.fsync:
            os.fdatasync(self.fd)
            self.syncs += 1

    def close(self) -> None:
        if self.fd >= 0:
            if self._extender is not None:
                self._join()
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1


def start_journal(data_dir: Path, genesis: Genesis) -> None:
    """A new journal holding only its ``Genesis`` record, durable."""
    path = Path(data_dir) / JOURNAL
    if path.exists():
        raise JournalError(f"{path} already exists")
    w = JournalWriter(path, fsync=False)
    w.append([(0, genesis)])
    w.close()
    _fsync_dir(Path(data_dir))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- snapshots

def fork_snapshot(data_dir: Path, exchange: Exchange, sync_fds=()) -> int:
    """Write a snapshot from a forked child (copy-on-write: the loop goes on at once, as
    Redis's BGSAVE does); returns the child's pid for the caller to reap. The child first
    makes the files ``sync_fds`` durable (what the snapshot must not be ahead of)."""
    pid = os.fork()
    if pid == 0:  # the child: pickle, write, leave without running anything of the parent's
        code = 1
        try:
            for fd in sync_fds:
                os.fsync(fd)
            write_snapshot(data_dir, exchange)
            code = 0
        finally:
            os._exit(code)
    return pid


def write_snapshot(data_dir: Path, exchange: Exchange) -> Path:
    body = pickle.dumps(exchange, protocol=pickle.HIGHEST_PROTOCOL)
    path = Path(data_dir) / f"snapshot-{exchange.seq:012d}.pkl"
    tmp = path.with_suffix(".tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # owner only (a leftover .tmp keeps its mode)
            f.write(hashlib.sha256(body).digest())
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed snapshot (a full disk) holds no space
        raise
    _fsync_dir(Path(data_dir))
    for old in sorted(Path(data_dir).glob("snapshot-*.pkl"))[:-SNAPSHOT_KEEP]:
        old.unlink()
    return path


def remove_snapshot_temporaries(data_dir: Path) -> list[Path]:
    """Remove the temporaries (``snapshot-*.tmp``) of snapshot writes that never finished
    (a crash, a kill): only when no writer can be running, i.e. at the server's start."""
    removed = []
    for tmp in Path(data_dir).glob("snapshot-*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def load_snapshot(data_dir: Path, at_most: int | None = None) -> Exchange | None:
    """The newest snapshot whose checksum holds (and ``seq <= at_most``), or None."""
    for path in sorted(Path(data_dir).glob("snapshot-*.pkl"), reverse=True):
        data = path.read_bytes()
        digest, body = data[:32], data[32:]
        if hashlib.sha256(body).digest() != digest:
            continue
        exchange = pickle.loads(body)
        if at_most is None or exchange.seq <= at_most:
            return exchange
    return None


# ---------------------------------------------------------------- recovery

@dataclass
class Recovery:
    exchange: Exchange
    records: int  # journal records read
    replayed: int  # records applied after the snapshot
    snapshot_seq: int  # -1: rebuilt from the genesis
    truncated: int  # bytes of a torn tail cut off
    state_hash: str
    end: int = 0  # offset after the last good record: where the next one goes


def rebuild(data_dir: Path, impl: str = "numba", use_snapshot: bool = True,
            truncate: bool = False, on_turn=None, to_seq: int | None = None,
            md_ring: int | None = None, on_start=None) -> Recovery:
    """The exchange as the journal in ``data_dir`` leaves it.

    Starts from the newest good snapshot (unless ``use_snapshot`` is false) and applies every
    later record; ``on_turn(seq, turn)`` sees each applied record's results (the ledger is fed
    from it). A torn tail is cut off if ``truncate`` (the server does; ``verify`` only reports),
    and then the temporaries of snapshot writes that never finished are removed too.
    """
    path, scan, records, genesis = open_journal(data_dir)
    if truncate:
        remove_snapshot_temporaries(data_dir)
    exchange = load_snapshot(data_dir, to_seq) if use_snapshot else None
    snapshot_seq = exchange.seq if exchange is not None else -1
    if exchange is None:
        exchange = Exchange(genesis, impl=impl)
    if md_ring is not None:
        exchange.md.resize_ring(md_ring)
    if on_start is not None:  # the exchange the records are applied to, before the first
        on_start(exchange)
    replayed = 0
    for seq, record in records:
        if to_seq is not None and seq > to_seq:
            break
        if seq <= exchange.seq:
            continue
        turn = exchange.apply(seq, record)
        replayed += 1
        if on_turn is not None:
            on_turn(seq, turn)
    if to_seq is None:
        check_tail(path, scan)
    if exchange.seq < snapshot_seq or (snapshot_seq >= 0 and scan.last_seq < snapshot_seq):
        raise JournalError(f"{path}: the journal ends at {scan.last_seq}, before the snapshot "
                           f"at {snapshot_seq}")
    truncated = 0
    if scan.torn_tail and truncate and to_seq is None:
        truncated = scan.size - scan.end
        with open(path, "r+b") as f:
            f.truncate(scan.end)
            f.flush()
            os.fsync(f.fileno())
    return Recovery(exchange, scan.records, replayed, snapshot_seq, truncated,
                    exchange.state_hash(), scan.end)


def settled_events(data_dir: Path, impl: str = "numba") -> tuple[np.ndarray, Exchange]:
    """The settled feed of the journal in ``data_dir``: ``(events, exchange)``.

    ``events`` holds every row the ledger settles, the engine's TRADE and DAY_CLOSED event
    rows (``engine.batch`` columns, ``EVENT_WIDTH`` int64 each), in journal order, as one
    array (no rows: shape ``(0, EVENT_WIDTH)``); ``exchange`` is the state the journal
    leaves, whose names of accounts, orders and instruments give the rows' handles meaning.
    Replays the whole journal from its genesis (snapshots are not read) and writes nothing:
    a torn last record is left in place, as ``verify`` leaves it. ``JournalError`` as for
    ``rebuild``: no journal, or one corrupt in the middle.
    """
    from engine import batch as B

    rows: list[np.ndarray] = []
    recovery = rebuild(data_dir, impl=impl, use_snapshot=False,
                       on_turn=lambda seq, applied: rows.extend(applied.settled))
    events = np.concatenate(rows) if rows else np.zeros((0, B.EVENT_WIDTH), np.int64)
    return events, recovery.exchange


# ---------------------------------------------------------------- operator tools

@dataclass
class Verification:
    ok: bool
    lines: list[str]


def verify(data_dir: Path, impl: str = "numba") -> Verification:
    """``cea journal verify``: every record readable and in order, the whole journal
    replayed from its genesis, each snapshot's state equal to the replay's at its record,
    and the engine's invariants holding at the end."""
    from engine import batch as B
    from engine.codes import EventKind

    data_dir = Path(data_dir)
    snapshots = {}
    for path in sorted(data_dir.glob("snapshot-*.pkl")):
        data = path.read_bytes()
        if hashlib.sha256(data[32:]).digest() != data[:32]:
            snapshots[path.name] = None
            continue
        ex = pickle.loads(data[32:])
        snapshots[path.name] = (ex.seq, ex.state_hash())
    at = {v[0]: (name, v[1]) for name, v in snapshots.items() if v is not None}
    lines, ok = [], True
    commands = trades = 0
    path, scan, records, genesis = open_journal(data_dir)
    exchange = Exchange(genesis, impl=impl)
    seq = 0
    while True:
        if seq in at:  # a snapshot taken after this record must equal the replay here
            name, expected = at.pop(seq)
            same = exchange.state_hash() == expected
            ok = ok and same
            lines.append(f"{name}: state at record {seq} "
                         f"{'matches the replay' if same else 'DIFFERS from the replay'}")
        item = next(records, None)
        if item is None:
            break
        seq, record = item
        if isinstance(record, OrderBatch):
            commands += len(record.cmds) // B.COMMAND_DTYPE.itemsize
        for rows in exchange.apply(seq, record).settled:
            trades += int((rows[:, B.KIND] == EventKind.TRADE).sum())
    check_tail(path, scan)
    lines.insert(0, f"{path}: {scan.records} records (0..{scan.last_seq}), "
                    f"{commands} commands, {trades} trades")
    if scan.torn_tail:
        lines.append(f"torn last record: {scan.size - scan.end} bytes after offset {scan.end} "
                     f"({scan.problem}); never acknowledged, cut off when the server recovers")
    for name, v in snapshots.items():
        if v is None:
            ok = False
            lines.append(f"{name}: checksum fails (recovery skips it)")
    for seq, (name, _) in at.items():
        lines.append(f"{name}: record {seq} is not in the journal")
        ok = False
    try:
        exchange.engine.check_invariants()
        lines.append("engine invariants hold")
    except Exception as e:  # noqa: BLE001 - reported
        ok = False
        lines.append(f"engine invariants FAIL: {e}")
    lines.append(f"state hash {exchange.state_hash()}")
    lines.append("ok" if ok else "FAILED")
    return Verification(ok, lines)


def replay(data_dir: Path, impl: str = "numba", to_seq: int | None = None,
           trades_path: Path | None = None) -> str:
    """``cea journal replay``: the state from the journal alone (no snapshot), optionally
    with every trade written to a CSV. Returns a summary line with the state hash."""
    import csv

    from engine import batch as B
    from engine.tradingdays import format_time

    out = None
    if trades_path is not None:
        f = open(trades_path, "w", newline="")
        out = csv.writer(f)
        out.writerow(["trade_id", "time", "instrument", "segment", "price", "qty",
                      "buy_account", "buy_order_id", "sell_account", "sell_order_id",
                      "aggressor"])
    def write_trades(ex, turn):
        for rows in turn.settled:
            for r in rows[rows[:, B.KIND] == 3].tolist():
                out.writerow([r[B.TRADE_ID], format_time(r[B.TS]), ex.instruments[r[B.INSTRUMENT]],
                              "LISTED" if r[B.SEGMENT] == 0 else "BLOCK",
                              format_fen(int(r[B.PRICE])), r[B.QTY],
                              ex.account_name(r[B.ACCOUNT]), ex.order_name(r[B.ORDER]),
                              ex.account_name(r[B.ACCOUNT2]), ex.order_name(r[B.ORDER2]),
                              "BUY" if r[B.SIDE] == 1 else "SELL"])

    _, _, records, genesis = open_journal(data_dir)
    exchange = Exchange(genesis, impl=impl)
    try:
        for seq, record in records:
            if to_seq is not None and seq > to_seq:
                break
            turn = exchange.apply(seq, record)
            if out is not None:
                write_trades(exchange, turn)
    finally:
        if out is not None:
            f.close()
    _, next_trade, done = exchange.engine.book.globals()
    return (f"replayed records 0..{exchange.seq}: {done} commands, {next_trade - 1} trades, "
            f"state hash {exchange.state_hash()}")
