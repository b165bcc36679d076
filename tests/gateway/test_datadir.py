"""The data directory: one server at a time (an exclusive lock), private files (0600 in a
0700 directory), and ``cea serve`` refusing, in one line and before creating anything, a
directory in use, a busy port, weak tokens or an existing ``--credentials-out``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.codes import Side
from gateway.client import Client
from gateway.lock import LOCK, DataDirInUse, DataDirLock, check_listen
from gateway.protocol import ExecKind
from gateway.server import ExchangeServer

from ..procs import kill_group, run
from ..test_cli import invoke
from .support import config, run_with_server, start_server_process

ROOT = Path(__file__).resolve().parents[2]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def listing(d: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir()}


# ---------------------------------------------------------------- the lock

def test_lock_is_exclusive_and_released(tmp_path):
    d = tmp_path / "new" / "data"
    with DataDirLock(d) as held:
        assert mode(d) == 0o700 and mode(d / LOCK) == 0o600
        assert (d / LOCK).read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataDirInUse, match=rf"data directory {re.escape(str(d))} is in use "
                           rf"by another cea serve \(pid {os.getpid()}\)"):
            DataDirLock(d).acquire(grace=0)
        assert held.held
    assert not held.held and (d / LOCK).read_text() == ""
    DataDirLock(d).acquire().release()


def test_a_lock_left_by_a_dead_servers_child_is_waited_for(tmp_path):
    """A killed server's snapshot writer (a forked child) still holds the lock while it
    finishes: the next server waits for it (up to ``grace``) instead of failing."""
    d = tmp_path / "data"
    lock = DataDirLock(d).acquire()
    gone = subprocess.Popen(["true"])
    gone.wait(10)
    dead = gone.pid
    os.pwrite(lock.fd, f"{dead}\n".encode(), 0)  # as if the dead pid had taken it
    with pytest.raises(DataDirInUse, match=f"pid {dead}"):
        DataDirLock(d).acquire(grace=0.2)
    loop = asyncio.new_event_loop()
    try:
        loop.call_later(0.3, lock.release)
        second = loop.run_until_complete(asyncio.to_thread(DataDirLock(d).acquire, 5.0))
    finally:
        loop.close()
    assert second.held
    second.release()


def test_second_server_on_one_data_directory_is_refused(tmp_path):
    cfg = config(tmp_path)
    first = ExchangeServer(cfg)
    first.open()
    before = listing(first.data_dir)
    second = ExchangeServer(cfg)
    with pytest.raises(DataDirInUse, match=rf"is in use by another cea serve \(pid "
                       rf"{os.getpid()}\)"):
        second.open()
    assert listing(first.data_dir) == before  # the refused one changed nothing
    asyncio.run(first.stop())
    summary = second.open()  # free once the first has stopped
    assert summary.startswith("recovered")
    asyncio.run(second.stop())
    assert not second.lock.held


def test_weak_tokens_refused_before_anything_is_created(tmp_path):
    cfg = config(tmp_path)
    cfg.tokens = {**cfg.tokens, "OPS": "ops"}
    server = ExchangeServer(cfg)
    with pytest.raises(ValueError, match="token of account 'OPS' is too weak"):
        server.open()
    assert sorted(p.name for p in cfg.data_dir.iterdir()) == [LOCK]
    assert not server.lock.held  # released on the way out


# ---------------------------------------------------------------- private files

def test_every_file_of_the_data_directory_is_private(tmp_path):
    old = os.umask(0o022)  # a usual umask (files 0644): the modes must be the server's own
    try:
        async def trade(server, host, port):
            async with Client(host, port, "A001", "A001-test-token-0001") as a, \
                    Client(host, port, "A002", "A002-test-token-0002") as b:
                assert (await a.place("b", "CEA", Side.BUY, 10, 6000)).exec == ExecKind.ACCEPTED
                assert (await b.place("s", "CEA", Side.SELL, 10, 6000)).exec == ExecKind.ACCEPTED
                for i in range(30):  # past snapshot_every: a forked snapshot too
                    await a.place(f"o{i}", "CEA", Side.BUY, 1, 5900)

        cfg = config(tmp_path, ledger="sqlite", snapshot_every=20)
        run_with_server(cfg, trade)
    finally:
        os.umask(old)
    d = cfg.data_dir
    names = {p.name for p in d.iterdir()}
    assert {"journal.log", "tokens.json", "ledger.sqlite", LOCK} <= names, names
    assert len([n for n in names if n.startswith("snapshot-")]) >= 2, names
    assert "credentials.csv" not in names
    assert mode(d) == 0o700
    assert {n: oct(mode(d / n)) for n in names} == {n: oct(0o600) for n in names}

    # files an older version left readable are made private at the next start
    for n in ("journal.log", "tokens.json", "ledger.sqlite"):
        os.chmod(d / n, 0o644)
    run_with_server(config(tmp_path, ledger="sqlite"), lambda *a: asyncio.sleep(0))
    assert {n: oct(mode(d / n)) for n in names if (d / n).exists()} == \
        {n: oct(0o600) for n in names if (d / n).exists()}


def test_generated_tokens_with_credentials_out(tmp_path):
    out = tmp_path / "handout.csv"
    cfg = config(tmp_path, credentials_out=out)
    cfg.tokens = None  # generate them

    async def logon(server, host, port):
        assert set(server.credentials) == {"A001", "A002", "A003", "A004", "OPS"}
        token = dict(line.split(",") for line in out.read_text().splitlines())["A001"]
        async with Client(host, port, "A001", token) as c:
            assert c.logon.account == "A001"

    run_with_server(cfg, logon)
    assert mode(out) == 0o600
    assert not (cfg.data_dir / "credentials.csv").exists()


# ---------------------------------------------------------------- cea serve

def test_cea_serve_twice_on_one_data_directory(tmp_path):
    data = tmp_path / "data"
    out = tmp_path / "handout.csv"
    proc, port, printed = start_server_process(data, "--start", "2024-03-04",
                                               "--credentials-out", str(out))
    try:
        assert f"written to {out} (mode 0600)" in printed and mode(out) == 0o600
        assert not re.search(r"^cea serve:   \S+ \S+$", printed, re.M)  # not printed
        before = listing(data)  # the first server still writes to the journal and ledger
        kept = ("tokens.json", LOCK, *(n for n in before if n.startswith("snapshot-")))
        # the same directory (and the same port): the directory's lock answers first
        second = run([sys.executable, "-m", "cea", "serve", "--data-dir", str(data),
                      "--port", str(port), "--start", "2024-03-04"], timeout=120,
                     cwd=ROOT, capture_output=True, text=True)
        assert second.returncode == 2, second
        assert second.stderr.splitlines() == [
            f"cea: error: data directory {data} is in use by another cea serve "
            f"(pid {proc.pid})"], second.stderr
        assert second.stdout == ""
        after = listing(data)
        assert set(after) == set(before) and all(after[n] == before[n] for n in kept)
        assert (data / LOCK).read_text() == f"{proc.pid}\n"

        async def logon():
            token = dict(line.split(",") for line in out.read_text().splitlines())["A003"]
            async with Client("127.0.0.1", port, "A003", token) as c:
                assert c.logon.account == "A003"

        asyncio.run(logon())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        kill_group(proc)


def test_cea_serve_refusals_create_nothing(tmp_path):
    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_listen("127.0.0.1", port)
        result = invoke("serve", "--data-dir", data, "--port", port)
        assert result.exit_code == 2, result.output
        assert result.output.splitlines() == [
            f"cea: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert not data.exists()

    weak = tmp_path / "tokens.csv"
    weak.write_text("account,token\nA001,A001-test-token-0001\nOPS,123456789012\n")
    result = invoke("serve", "--data-dir", data, "--port", 0, "--tokens", weak)
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"cea: error: {weak}: line 3: the token of account 'OPS' is too weak: at least 16 "
        "characters, not one repeated"]
    assert not data.exists()

    taken = tmp_path / "handout.csv"
    taken.write_text("someone's\n")
    result = invoke("serve", "--data-dir", data, "--port", 0, "--credentials-out", taken)
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"cea: error: --credentials-out {taken} already exists (it is never overwritten)"]
    assert not data.exists() and taken.read_text() == "someone's\n"

    result = invoke("serve", "--data-dir", data, "--port", 0,
                    "--credentials-out", data / "c.csv")
    assert result.exit_code == 2 and "inside the data directory" in result.output
    assert not data.exists()
