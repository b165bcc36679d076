"""``cea view DIR``: a finished simulation's or replay's output directory as a web page.

- ``sim.view.load_run`` gives, per day, exactly the figures of ``days.csv`` (in fen and
  tonnes), the band limits of ``engine.rules.band_limits`` (the same the simulator used), the
  real close of the shipped series where a simulation overlaps it, a replay's flags and gaps,
  ``agents.csv`` row for row, and ``summary.json`` with its money in fen; it tells a
  simulation from a replay and refuses anything else in one line;
- ``cea view DIR --port 0`` serves it: the page shows the run's kind, its figures as the files
  write them, both charts and the agents' table, without a script error; ``/api/run`` is the
  same dict; SIGTERM stops it cleanly;
- bad input (a missing directory, one that is no run's output, a port in use) is one line
  ``cea: error: ...`` and exit status 2.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from cea.cli import app
from engine.codes import Segment
from engine.rules import band_limits
from engine.units import parse_fen
from sim.view import REPLAY, SIMULATE, ViewError, load_run, run_kind
from tests import procs
from tests.sim.test_simulate import small
from tests.test_cli import ROOT

#: ``cea`` as a user runs it
CEA = [sys.executable, "-m", "cea"]


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def fen(text: str):
    return parse_fen(text, negative=True) if text else None


def grouped(cny: str) -> str:
    """CNY text as the page writes it: thousands grouped (``-1,234.50``)."""
    sign, whole, cents = "-" if cny.startswith("-") else "", *cny.lstrip("-").split(".")
    return f"{sign}{int(whole):,}.{cents}"


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    """A short simulation's output directory (``cea simulate``'s files) and its result."""
    from sim.simout import run

    out = tmp_path_factory.mktemp("view") / "sim"
    result, _ = run(small(days=5, seed=3), out)
    return out, result


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """A replay from 2021-12-01 to 2023-04-20: a deadline, a gap in the data (2022) and two
    infeasible days (2023-03-01, 2023-04-11)."""
    from sim.history import load_history
    from sim.replay import replay, write_outputs

    out = tmp_path_factory.mktemp("view") / "replay"
    days = [d for d in load_history() if "2021-12-01" <= d.date <= "2023-04-20"]
    result = replay(days)
    write_outputs(result, out)
    return out, result


def plain(value) -> bool:
    """Integers, text, booleans and None only (no float), nested."""
    if isinstance(value, dict):
        return all(plain(v) for v in value.values())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (int, str, bool))


# ---------------------------------------------------------------------- the dict

def test_a_simulation_reads_as_its_files_say(simulation):
    out, result = simulation
    run = load_run(out)
    assert run_kind(out) == SIMULATE and run["kind"] == SIMULATE
    assert run["directory"] == "sim" and run["seed"] == 3
    rows = csv_rows(out / "days.csv")
    assert [d["date"] for d in run["days"]] == [r["date"] for r in rows]
    assert (run["first_day"], run["last_day"]) == (rows[0]["date"], rows[-1]["date"])
    for day, row, sim_day in zip(run["days"], rows, result.days):
        assert day["close"] == fen(row["close"]) and day["prior_close"] == fen(row["prior_close"])
        assert day["listed_volume"] == int(row["listed_volume"])
        assert day["block_volume"] == int(row["block_volume"])
        assert day["turnover"] == fen(row["listed_turnover"]) + fen(row["block_turnover"])
        listed = band_limits(day["prior_close"], Segment.LISTED)
        block = band_limits(day["prior_close"], Segment.BLOCK)
        assert (day["listed_low"], day["listed_high"]) == listed
        assert (day["block_low"], day["block_high"]) == block
        # the same limits the simulator traded within
        assert listed == (sim_day.listed_low, sim_day.listed_high)
        assert block == (sim_day.block_low, sim_day.block_high)
    summary = json.loads((out / "summary.json").read_text())
    assert run["summary"]["last_close"] == fen(summary["last_close"])
    assert run["summary"]["turnover"] == fen(summary["turnover_cny"])
    assert "turnover_cny" not in run["summary"]
    t = run["totals"]
    assert t["listed_volume"] == summary["listed_volume_t"] > 0
    assert t["block_volume"] == summary["block_volume_t"]
    assert t["turnover"] == fen(summary["turnover_cny"])
    assert t["last_close"] == fen(summary["last_close"]) == fen(rows[-1]["close"])
    agents = csv_rows(out / "agents.csv")
    assert len(run["agents"]) == len(agents) == len(result.agents)
    for got, row in zip(run["agents"], agents):
        assert got["agent"] == row["agent"] and got["kind"] == row["kind"]
        assert got["pnl"] == fen(row["pnl"]) and got["cash"] == fen(row["cash"])
        assert got["bought_t"] == int(row["bought_t"])
    assert run["deadlines"] == []  # five days of January: the deadline is 2024-12-31
    assert run["real"] == []  # the shipped series has no January 2024
    assert plain({k: run[k] for k in ("days", "real", "agents", "totals", "deadlines")})
    assert msgspec.json.decode(msgspec.json.encode(run)) == run


def test_a_simulation_overlapping_the_real_series_and_a_deadline(simulation, tmp_path):
    """The real close comes from the shipped series (as the plots'); the deadline the run
    passed (summary.json's compliance rows) is marked, rolled a year on after it."""
    from sim.history import load_history

    out = tmp_path / "copy"
    shutil.copytree(simulation[0], out)
    summary = json.loads((out / "summary.json").read_text())
    history = [h for h in load_history() if "2024-06-03" <= h.date <= "2024-06-07"]
    rows = csv_rows(out / "days.csv")
    for row, h in zip(rows, history):  # the same run, moved to June 2024
        row["date"] = h.date
    with open(out / "days.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    summary["compliance"] = [{"deadline": "2024-06-05"}]
    (out / "summary.json").write_text(json.dumps(summary))
    run = load_run(out)
    assert run["real"] == [{"date": h.date, "close": h.close, "gap_before": h.gap_before}
                           for h in history]
    assert run["deadlines"] == ["2024-06-05"]


def test_a_replay_reads_as_its_files_say(replayed):
    out, result = replayed
    run = load_run(out)
    assert run_kind(out) == REPLAY and run["kind"] == REPLAY and run["seed"] is None
    rows = csv_rows(out / "days.csv")
    assert len(run["days"]) == len(rows) == len(result.rows)
    for day, row, r in zip(run["days"], rows, result.rows):
        assert day["date"] == row["date"] == r.date
        assert day["close"] == fen(row["replayed_close"]) == r.replayed_close
        assert day["hist_close"] == fen(row["hist_close"]) == r.hist_close
        assert day["listed_volume"] == r.replayed_listed_volume
        assert day["block_volume"] == r.replayed_block_volume
        assert day["feasible"] is r.feasible and day["gap_before"] is r.gap_before
        assert day["reason"] == r.reason and day["basis"] == r.basis
        assert (day["listed_low"], day["listed_high"]) == band_limits(r.prior_close,
                                                                      Segment.LISTED)
        assert (day["block_low"], day["block_high"]) == band_limits(r.prior_close,
                                                                    Segment.BLOCK)
        assert day["turnover"] is None  # a replay's days.csv has no turnover
    infeasible = [d["date"] for d in run["days"] if not d["feasible"]]
    assert infeasible == ["2023-03-01", "2023-04-11"]
    assert list(run["summary"]["infeasible"]) == infeasible
    gaps = [d["date"] for d in run["days"] if d["gap_before"]]
    assert gaps == ["2022-05-26"]  # after the 2022 gap in the data
    assert run["deadlines"] == ["2021-12-31"]
    assert [r["close"] for r in run["real"]] == [r.hist_close for r in result.rows]
    assert run["agents"] is None
    assert plain({k: run[k] for k in ("days", "real", "totals", "deadlines")})


def test_directories_that_are_no_run_are_refused_in_one_line(simulation, replayed, tmp_path):
    sim, rep = simulation[0], replayed[0]
    match = tmp_path / "match"  # cea match writes days.csv but no summary.json
    match.mkdir()
    shutil.copy(sim / "days.csv", match / "days.csv")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "days.csv").write_text("date,price\n2024-01-02,60.00\n")
    (odd / "summary.json").write_text("{}")
    broken = tmp_path / "broken"
    shutil.copytree(rep, broken)
    (broken / "summary.json").write_text("{not json")
    bad_cell = tmp_path / "bad_cell"
    shutil.copytree(sim, bad_cell)
    text = (bad_cell / "days.csv").read_text().splitlines()
    fields = text[2].split(",")
    fields[2] = "sixty"
    text[2] = ",".join(fields)
    (bad_cell / "days.csv").write_text("\n".join(text) + "\n")
    cases = [(tmp_path / "none", "no such directory"),
             (sim / "days.csv", "is a file, not an output directory"),
             (tmp_path, "not a cea simulate or cea replay output directory"),
             (match, "(no summary.json)"),
             (odd, "neither cea simulate's nor cea replay's"),
             (broken, "summary.json: not valid JSON"),
             (bad_cell, "days.csv:3: close 'sixty' is not CNY with 2 decimals")]
    for path, words in cases:
        with pytest.raises(ViewError) as e:
            load_run(path)
        assert words in str(e.value) and "\n" not in str(e.value), (path, str(e.value))
        assert isinstance(e.value, ValueError)


# ---------------------------------------------------------------------- cea view

@contextlib.contextmanager
def viewing(*args: str, timeout: float = 60.0):
    """``cea view ARGS`` in its own process group, killed on the way out: (proc, the URL it
    printed within ``timeout`` s)."""
    with procs.group(CEA + ["view", *args], cwd=ROOT, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True) as proc:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        m = re.fullmatch(r"cea view: (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)\n", line)
        if m is None:
            procs.kill_group(proc)
            pytest.fail(f"cea view printed {line!r}; stderr {proc.stderr.read()!r}")
        yield proc, m.group(1)


def test_the_page_shows_a_simulation(simulation, page):
    out = simulation[0]
    summary = json.loads((out / "summary.json").read_text())
    with viewing(str(out), "--port", "0") as (proc, url):
        with urllib.request.urlopen(url + "api/run", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("application/json")
            assert msgspec.json.decode(r.read()) == msgspec.json.decode(
                msgspec.json.encode(load_run(out)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.text_content("#run-kind") == "simulate"
        assert page.text_content("#run-dir") == "sim"
        assert page.text_content("#run-seed") == "3"
        rows = csv_rows(out / "days.csv")
        assert page.text_content("#run-period").startswith(
            f"{rows[0]['date']} → {rows[-1]['date']} · 5 trading days")
        assert page.text_content("#stat-last-close") == summary["last_close"]
        assert page.text_content("#stat-first-close") == summary["first_close"]
        assert page.text_content("#stat-trades") == f"{summary['trades']:,}"
        assert page.locator("#close-chart canvas").count() == 1
        assert page.locator("#volume-chart canvas").count() == 1
        assert "real SEEE close" in page.text_content("#close-chart")
        agents = csv_rows(out / "agents.csv")
        body = page.locator("#agents-table tbody tr")
        assert body.count() == min(100, len(agents))
        best = max(agents, key=lambda a: fen(a["pnl"]))  # sorted by P&L, best first
        assert body.first.locator("td").first.text_content() == best["agent"]
        assert body.first.locator("td").last.text_content() == grouped(best["pnl"])
        kinds = {a["kind"] for a in agents}
        assert page.locator("#agents-by-kind tbody tr").count() == len(kinds)
        assert page.is_hidden("#flags-panel")
        assert page.errors == []


def test_the_page_shows_a_replay_and_sigterm_stops_it(replayed, page):
    out = replayed[0]
    with viewing(str(out), "--port", "0") as (proc, url):
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.text_content("#run-kind") == "replay"
        assert page.is_hidden("#run-seed-wrap") and page.is_hidden("#agents-panel")
        rows = csv_rows(out / "days.csv")
        assert page.text_content("#stat-last-close") == rows[-1]["replayed_close"]
        assert page.text_content("#stat-feasible") == str(len(rows) - 2)
        bad = page.locator("#infeasible-table tbody tr")
        assert bad.count() == 2
        assert bad.first.locator("td").first.text_content() == "2023-03-01"
        gaps = page.locator("#gaps-table tbody tr")
        assert gaps.count() == 1
        assert gaps.first.locator("td").nth(2).text_content() == "2022-05-26"
        assert page.locator("#close-chart canvas").count() == 1
        assert "infeasible day" in page.text_content("#close-chart")
        assert page.errors == []
        procs.signal_group(proc, signal.SIGTERM)
        out_text, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert out_text == "cea view: stopped\n" and err == ""


# ---------------------------------------------------------------------- errors

def test_cli_errors_are_one_line(simulation, tmp_path):
    (tmp_path / "afile").write_text("x")
    runner = CliRunner()
    for args, words in [((str(tmp_path / "none"),), f"{tmp_path / 'none'}: no such directory"),
                        ((str(tmp_path),), "not a cea simulate or cea replay output directory"),
                        ((str(tmp_path / "afile"),), "is a file, not an output directory"),
                        ((str(simulation[0]), "--port", "70000"), "--port")]:
        r = runner.invoke(app, ["view", *args])
        assert r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cea: error: "), r.stderr
        assert words in lines[0] and "Traceback" not in r.output, r.output
        assert r.stdout == ""


def test_help_has_an_example():
    r = CliRunner().invoke(app, ["view", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "Example: cea view " in r.stdout, r.output
    for option in ("--host", "--port", "--open"):
        assert option in r.stdout


def test_a_busy_port_is_one_line(simulation):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        start = time.monotonic()
        r = procs.run(CEA + ["view", str(simulation[0]), "--port", str(port)], timeout=60,
                      cwd=ROOT, capture_output=True, text=True)
    assert time.monotonic() - start < 60
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    # worded as cea serve's
    assert r.stderr == f"cea: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
