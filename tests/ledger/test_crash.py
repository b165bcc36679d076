"""Kill the ledger writer (SIGKILL) in the middle of its batches, many times, restart it, and
prove nothing committed was lost and nothing was settled twice: the final ledger equals one
written without interruption, posting for posting."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Ledger

from ..procs import kill_group, popen
from .crash_writer import trades

ROOT = Path(__file__).resolve().parents[2]
N, BATCH = 30_000, 1_500


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_writer_left():
    """Every writer a test started is killed (its process group) when the test ends."""
    yield
    while _started:
        kill_group(_started.pop())


def start_writer(url: str) -> subprocess.Popen:
    proc = popen([sys.executable, "-m", "tests.ledger.crash_writer", url, str(N), str(BATCH)],
                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
    _started.append(proc)
    return proc


def read_until(proc: subprocess.Popen, commits: int) -> int:
    """Read the writer's output until ``commits`` more commits; return the last id seen."""
    last = 0
    seen = 0
    for line in proc.stdout:
        if line.startswith("committed"):
            last = int(line.split()[1])
            seen += 1
            if seen >= commits:
                break
        elif line.startswith("done"):
            break
    return last


def snapshot(url: str):
    led = Ledger.open(url, ["CEA"], 3, 1)
    q = led.store.query
    out = (q("SELECT count(*), count(DISTINCT trade_id), coalesce(max(trade_id), 0) FROM trade")[0],
           q("SELECT source, txn, account, asset, amount FROM posting ORDER BY source, txn, "
             "account, asset, amount"),
           led.balances(include_external=True), led.reconcile().ok)
    led.close()
    return out


def test_killing_the_writer_loses_nothing_committed_and_duplicates_nothing(ledger_url,
                                                                            tmp_path):
    rnd = random.Random(2024)
    committed = 0
    kills = 0
    while kills < 6:
        proc = start_writer(ledger_url)
        assert proc.stdout.readline().strip() == "ready"
        # the writer restarts from trade 1: already-settled batches commit again at once
        # (settling nothing), so count commits past what survived the last kill
        last = read_until(proc, committed // BATCH + rnd.randint(1, 3))
        os.kill(proc.pid, signal.SIGKILL)  # most likely inside the next batch's transaction
        proc.wait()
        proc.stdout.close()
        kills += 1
        (count, distinct, top), _, _, ok = snapshot(ledger_url)
        # everything acknowledged as committed is there, exactly once
        assert count == distinct and top >= last and count == top
        assert count % BATCH == 0  # whole batches only: a killed transaction left nothing
        assert ok
        committed = top
    proc = start_writer(ledger_url)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.rstrip().endswith("done")
    interrupted = snapshot(ledger_url)
    assert interrupted[0] == (N, N, N)

    clean_url = str(tmp_path / "clean.sqlite")
    proc = start_writer(clean_url)
    proc.communicate(timeout=300)
    clean = snapshot(clean_url)
    assert interrupted[1] == clean[1]  # the same postings, one for one
    assert interrupted[2] == clean[2]
    assert interrupted[3] and clean[3]
    # four legs and the fee leg per trade
    assert sum(1 for p in clean[1] if p[0] == 1) == 5 * N
    assert sum(1 for t in trades(N)) == N
