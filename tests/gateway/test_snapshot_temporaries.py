"""Snapshot temporaries: a snapshot write that fails (a full disk) removes its ``.tmp``; the
``.tmp`` of a write cut short by a crash is removed when the server starts (not by the
operator's read-only tools, which may run beside a server writing one)."""

from __future__ import annotations

import errno

import pytest

from gateway import journal
from gateway.journal import rebuild, verify, write_snapshot

from .support import config, run_with_server


async def _state(server, host, port):
    return server.exchange.state_hash()


def test_a_failed_snapshot_leaves_no_temporary(tmp_path, monkeypatch):
    run_with_server(config(tmp_path), _state)
    data = tmp_path / "data"
    snapshots = sorted(p.name for p in data.iterdir())
    exchange = rebuild(data).exchange
    written = []

    def full_disk(fd):  # the body is written; making it durable finds the disk full
        written.extend(p.name for p in data.glob("snapshot-*.tmp"))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal.os, "fsync", full_disk)
    with pytest.raises(OSError) as e:
        write_snapshot(data, exchange)
    assert e.value.errno == errno.ENOSPC and written  # there was a temporary, mid-write
    monkeypatch.undo()
    assert sorted(p.name for p in data.iterdir()) == snapshots  # and it is gone


async def _recovered(server, host, port):
    return server.recovery.state_hash


def test_a_leftover_temporary_is_removed_at_the_servers_start(tmp_path):
    run_with_server(config(tmp_path), _state)
    data = tmp_path / "data"
    before = rebuild(data).state_hash
    leftover = data / "snapshot-000000999999.tmp"
    leftover.write_bytes(b"\0" * 4096)  # a snapshot write the crash cut short
    report = verify(data)  # a read-only tool leaves it (a server may be writing it)
    assert report.ok, report.lines
    assert leftover.exists()
    assert run_with_server(config(tmp_path), _recovered) == before
    assert not list(data.glob("*.tmp"))
