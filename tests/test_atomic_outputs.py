"""Outputs appear only when complete (``cea.outdir``).

Every command that writes a directory of results (``cea match [--accounts]``, ``simulate``,
``replay``, ``loadtest``, ``auction``, ``compliance report``, ``ledger statement --out``) and
``cea population``'s files: interrupted mid-run (an exception or Ctrl-C in-process, SIGKILL
in a subprocess), the previous run's output is there untouched, or nothing when there was
none: never a mix; the next run leaves no temporary; a complete run writes the same files as
before. ``--out`` naming a file is one ``cea: error:`` line, exit 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cea.outdir import OutputError, atomic_files, atomic_outputs, clean_up
from tests.test_cli import EXAMPLE, FILES, ROOT, invoke

ACCOUNTS = ROOT / "docs" / "examples" / "accounts.csv"
BIDS = ROOT / "docs" / "examples" / "auction-bids.csv"
SIM_TOML = ("steps_per_hour = 6\n[population]\ncovered_entities = 40\nmarket_makers = 2\n"
            "noise_traders = 10\ninstitutions = 2\nindividuals = 10\nblock_traders = 2\n"
            "[covered_entity]\nact_probability = 0.03\n")
SETTLED = {f"{f}.csv" for f in FILES} | {"ledger.sqlite", "statements", "balances.json",
                                          "reconcile.json"}


def tree(path: Path) -> dict[str, bytes | None]:
    """Every entry under ``path`` (hidden ones too): files' bytes, None for directories."""
    out = {}
    for p in sorted(path.rglob("*")):
        out[str(p.relative_to(path))] = None if p.is_dir() else p.read_bytes()
    return out


def comparable(t: dict) -> dict:
    """A ``tree`` without what differs between two runs of the same inputs: the SQLite
    file's bytes (its pages), the run's ``seconds`` in summary.json."""
    out = {}
    for k, v in t.items():
        if k.endswith(".sqlite"):
            v = None
        elif k == "summary.json":
            v = {x: y for x, y in json.loads(v).items() if x != "seconds"}
        out[k] = v
    return out


def leftovers(*dirs: Path) -> list[str]:
    return [p.name for d in dirs if d.is_dir() for p in d.iterdir() if ".cea-" in p.name]


def interrupted(*args) -> None:
    """Run ``cea ARGS`` in-process, expecting it to be interrupted (KeyboardInterrupt)."""
    try:
        res = invoke(*args)
    except KeyboardInterrupt:
        return
    assert res.exit_code != 0, res.output


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------ the helper

def test_new_directory_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "a" / "b" / "out"
    with pytest.raises(KeyboardInterrupt):
        with atomic_outputs(final) as st:
            assert not final.exists() and st.path.parent == final.parent
            (st.path / "x.csv").write_text("half")
            raise KeyboardInterrupt
    assert not (tmp_path / "a").exists()  # and the directories made for it are gone too
    with atomic_outputs(final) as st:
        (st.path / "x.csv").write_text("x")
        (st.path / "sub").mkdir()
        (st.path / "sub" / "y.json").write_text("{}")
        assert st.final_path(st.path / "sub" / "y.json") == final / "sub" / "y.json"
        assert st.final_path(str(st.path / "x.csv")) == str(final / "x.csv")
        assert st.final_path(tmp_path) == tmp_path
    assert tree(final) == {"sub": None, "sub/y.json": b"{}", "x.csv": b"x"}
    assert leftovers(final, final.parent) == []


def test_existing_directory_keeps_other_entries_and_replaces_the_runs(tmp_path):
    final = tmp_path / "out"
    (final / "statements").mkdir(parents=True)
    (final / "statements" / "old_account.csv").write_text("stale")
    (final / "trades.csv").write_text("old trades")
    (final / "population.csv").write_text("another command's")
    (final / "auction").mkdir()
    (final / "auction" / "ledger.sqlite").write_text("kept")
    (final / "ledger.sqlite").write_text("old ledger")
    (final / "ledger.sqlite-wal").write_text("the old ledger's")  # left by a crash
    before = tree(final)
    with pytest.raises(RuntimeError):
        with atomic_outputs(final) as st:
            (st.path / "trades.csv").write_text("new trades")
            raise RuntimeError("disk full")
    assert tree(final) == before and leftovers(final, tmp_path) == []
    with atomic_outputs(final) as st:
        (st.path / "trades.csv").write_text("new trades")
        (st.path / "statements").mkdir()
        (st.path / "statements" / "A001.csv").write_text("new")
        (st.path / "ledger.sqlite").write_text("new ledger")
    assert tree(final) == {  # the old ledger's WAL is gone with it: not applied to the new
        "auction": None, "auction/ledger.sqlite": b"kept", "ledger.sqlite": b"new ledger",
        "population.csv": b"another command's", "statements": None,
        "statements/A001.csv": b"new", "trades.csv": b"new trades"}


def test_leftovers_of_killed_runs_are_removed_or_finished(tmp_path):
    final, pid, alive = tmp_path / "out", dead_pid(), os.getppid()
    (final / f".cea-partial-{pid}").mkdir(parents=True)
    (final / f".cea-partial-{pid}" / "trades.csv").write_text("half")
    (final / f".cea-partial-{alive}").mkdir()  # a run still going: left alone
    (final / f".cea-old-{pid}").mkdir()
    (final / "trades.csv").write_text("old")
    (final / "days.csv").write_text("old")
    # killed after its results were complete (``ready``), before all were moved into place
    (final / f".cea-ready-{pid}" / "statements").mkdir(parents=True)
    (final / f".cea-ready-{pid}" / "trades.csv").write_text("new")
    (tmp_path / f".out.cea-partial-{pid}").mkdir()
    (tmp_path / f".other.cea-partial-{pid}").mkdir()  # another directory's: not ours to judge
    removed = clean_up(final)
    assert len(removed) == 4
    assert tree(final) == {f".cea-partial-{alive}": None, "days.csv": b"old",
                           "statements": None, "trades.csv": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.cea-partial-{pid}", "out"]


def test_out_must_be_a_directory(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for bad in (afile, afile / "sub"):
        with pytest.raises(OutputError, match="not a directory"):
            with atomic_outputs(bad):
                pass
    assert afile.read_text() == "mine" and leftovers(tmp_path) == []
    with pytest.raises(OutputError, match="is a directory"):
        with atomic_files(tmp_path):
            pass


def test_atomic_files_all_or_none(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("old a")
    with pytest.raises(KeyboardInterrupt):
        with atomic_files(a, b) as (ta, tb):
            ta.write_text("new a")
            raise KeyboardInterrupt
    assert a.read_text() == "old a" and not b.exists() and leftovers(tmp_path) == []
    (tmp_path / f".a.csv.cea-partial-{dead_pid()}").write_text("left by a killed run")
    with atomic_files(a, b) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b") and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- the commands

def match_accounts(out: Path, *extra):
    return ("match", EXAMPLE, "--prior-close", "60.00", "--accounts", ACCOUNTS, "--out", out,
            "-q", *extra)


def test_match_accounts_interrupted_leaves_the_previous_run(tmp_path, monkeypatch):
    import cea.match

    out = tmp_path / "out"
    first = invoke(*match_accounts(out, "--fee-bps-listed", "3"))
    assert first.exit_code == 0, first.output
    assert {p.name for p in out.iterdir()} == SETTLED
    before = tree(out)
    real = cea.match.write_statement
    calls = []

    def statement_then_interrupt(st, directory):
        calls.append(directory)
        paths = real(st, directory)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return paths

    monkeypatch.setattr(cea.match, "write_statement", statement_then_interrupt)
    interrupted(*match_accounts(out))  # the ledger written, settled, statements half done
    assert len(calls) == 3 and tree(out) == before and leftovers(out, tmp_path) == []
    monkeypatch.undo()
    again = invoke(*match_accounts(out, "--fee-bps-listed", "3"))
    assert again.exit_code == 0, again.output
    assert comparable(tree(out)) == comparable(before) and leftovers(out, tmp_path) == []


def test_match_interrupted_into_a_new_directory_leaves_nothing(tmp_path, monkeypatch):
    import engine.orderfile

    real = engine.orderfile.write_results

    def write_then_interrupt(result, out_dir):
        real(result, out_dir)
        raise KeyboardInterrupt  # every file written, not yet in place

    monkeypatch.setattr(engine.orderfile, "write_results", write_then_interrupt)
    out = tmp_path / "new" / "out"
    interrupted("match", EXAMPLE, "--prior-close", "60.00", "--out", out)
    assert not (tmp_path / "new").exists() and leftovers(tmp_path) == []
    monkeypatch.undo()
    res = invoke("match", EXAMPLE, "--prior-close", "60.00", "--out", out)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{f}.csv" for f in FILES)
    assert f"wrote {out / 'trades.csv'}" in res.output  # the final paths, not the staging's


def test_simulate_interrupted_then_rerun(tmp_path, monkeypatch):
    import sim.simout

    cfg = tmp_path / "sim.toml"
    cfg.write_text("days = 2\n" + SIM_TOML)
    out = tmp_path / "sim"
    args = ("simulate", "--config", cfg, "--out", out, "--seed", "5")
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    before = tree(out)
    real = sim.simout.write_tables

    def tables_then_interrupt(r, o):
        real(r, o)
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.simout, "write_tables", tables_then_interrupt)
    interrupted(*args[:-1], "6")  # another seed: other trades, none of them shown
    assert tree(out) == before and leftovers(out, tmp_path) == []
    fresh = tmp_path / "fresh"
    interrupted("simulate", "--config", cfg, "--out", fresh)
    assert not fresh.exists() and leftovers(tmp_path) == []


def test_replay_interrupted_leaves_nothing(tmp_path, monkeypatch):
    import sim.plots

    def no_plots(rows, out):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.plots, "plot_replay", no_plots)  # days.csv, summary.json written
    out = tmp_path / "replay"
    interrupted("replay", "--from", "2021-07-19", "--to", "2021-07-23", "--out", out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_loadtest_interrupted_or_out_a_file(tmp_path, monkeypatch):
    import contextlib

    import sim.loadtest

    started = []

    @contextlib.contextmanager
    def no_server(*args, **kw):
        started.append(args)
        yield 1

    def interrupt(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.loadtest, "local_server", no_server)
    monkeypatch.setattr(sim.loadtest, "load", interrupt)
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    res = invoke("loadtest", "--out", afile)
    assert res.exit_code == 2 and res.output.startswith("cea: error:") and not started
    assert afile.read_text() == "not a directory"
    out = tmp_path / "lt"
    interrupted("loadtest", "--duration", "0.5", "--out", out)
    assert started and not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["replay", "simulate", "loadtest"])
def test_out_a_file_is_one_error_line(tmp_path, command):
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = subprocess.run([sys.executable, "-m", "cea", command, "--out", str(afile)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"cea: error: {afile} exists and is not a directory\n"
    assert afile.read_text() == "x"


def test_auction_interrupted_keeps_the_previous_results(tmp_path, monkeypatch):
    import cea.auction_cmd as auction_cmd

    out = tmp_path / "auction"
    args = ("auction", BIDS, "--seller", "B002", "--qty", "100000", "--reserve", "58.00",
            "--prior-close", "60.00", "--window", "13:00-15:00", "--accounts", ACCOUNTS,
            "--out", out)
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    files = {k: v for k, v in tree(out).items() if k != "ledger.sqlite"}
    real = auction_cmd._write_outputs

    def outputs_then_interrupt(run, o, date, url):
        real(run, o, date, url)
        raise KeyboardInterrupt

    monkeypatch.setattr(auction_cmd, "_write_outputs", outputs_then_interrupt)
    interrupted(*args, "--auction-id", "2", "--qty", "1000")
    # the ledger (kept between runs, one transaction per auction) has the second auction;
    # the result files are still the first auction's, whole
    assert {k: v for k, v in tree(out).items() if k != "ledger.sqlite"} == files
    assert leftovers(out, tmp_path) == []


def test_compliance_report_interrupted(tmp_path, monkeypatch):
    import ledger.compliance
    from ledger.core import Ledger

    led_path = tmp_path / "ledger.sqlite"
    led = Ledger.open(str(led_path), ["CEA"])
    led.open_account("E001", "COVERED_ENTITY")
    led.close()
    em = tmp_path / "em.csv"
    em.write_text("entity,verified_emissions,allocation,kind\nE001,1000,900,coal\n")
    out = tmp_path / "rep"
    args = ("compliance", "report", "--period", "2023", "--ledger", led_path, "--emissions",
            em, "--average-price", "60.00", "--out", out)
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["compliance_2023.csv",
                                                     "compliance_2023.json"]
    before = tree(out)
    real = ledger.compliance.write_report

    def report_then_interrupt(rep, directory):
        real(rep, directory)
        raise KeyboardInterrupt

    monkeypatch.setattr(ledger.compliance, "write_report", report_then_interrupt)
    interrupted(*args[:-3], "99.00", "--out", out)
    assert tree(out) == before and leftovers(out, tmp_path) == []


def test_population_files_appear_together(tmp_path, monkeypatch):
    import sim.population

    pop, acc, em = tmp_path / "pop.csv", tmp_path / "acc.csv", tmp_path / "em.csv"
    pop.write_text("the previous population")

    def interrupt(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.population, "write_emissions_file", interrupt)
    interrupted("population", "--entities", "20", "--out", pop, "--accounts", acc,
                "--emissions", em)
    assert pop.read_text() == "the previous population" and not acc.exists()
    assert not em.exists() and leftovers(tmp_path) == []
    monkeypatch.undo()
    res = invoke("population", "--entities", "20", "--out", pop, "--accounts", acc,
                 "--emissions", em)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acc.csv", "em.csv", "pop.csv"]
    assert pop.read_text().startswith("year,entity,")


def test_ledger_statement_out(tmp_path):
    out = tmp_path / "out"
    assert invoke(*match_accounts(out)).exit_code == 0
    st = tmp_path / "st"
    res = invoke("ledger", "statement", "A001", "--date", "2024-03-04", "--ledger",
                 out / "ledger.sqlite", "--out", st)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in st.iterdir()) == ["A001_2024-03-04.csv",
                                                    "A001_2024-03-04.json"]
    assert f"wrote {st / 'A001_2024-03-04.csv'}" in res.output and leftovers(tmp_path) == []


# ------------------------------------------------------------------------ killed outright

def test_simulate_killed_with_sigkill_leaves_the_previous_run(tmp_path):
    cfg = tmp_path / "sim.toml"
    cfg.write_text("days = 2\n" + SIM_TOML)
    out = tmp_path / "sim"
    args = ("simulate", "--config", cfg, "--out", out, "--seed", "5")
    assert invoke(*args).exit_code == 0
    before = tree(out)
    long_cfg = tmp_path / "long.toml"
    long_cfg.write_text("days = 2000\n" + SIM_TOML)
    proc = subprocess.Popen([sys.executable, "-m", "cea", "simulate", "--config",
                             str(long_cfg), "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        stage = out / f".cea-partial-{proc.pid}"
        deadline = time.monotonic() + 60
        while not (stage / "ledger.sqlite").exists():  # simulating, the ledger filling
            assert proc.poll() is None and time.monotonic() < deadline, "no staging directory"
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # the previous run, whole, and the killed run's staging directory, marked partial
    after = tree(out)
    assert {k: v for k, v in after.items() if not k.startswith(stage.name)} == before
    assert leftovers(out, tmp_path) == [stage.name]
    res = invoke(*args)  # the next run removes it
    assert res.exit_code == 0, res.output
    assert comparable(tree(out)) == comparable(before) and leftovers(out, tmp_path) == []
