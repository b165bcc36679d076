"""Bad command lines, for every ``cea`` command, and what the command line promises besides.

- a bad argument (a missing or unreadable file, a directory where a file goes, a file where a
  directory goes, a bad number, date, price or choice, a value out of range, a bad TOML
  file) is exit code 2 and one line ``cea: error: ...`` naming the option or the file, never
  a traceback, and no work done: the work itself is replaced by a tripwire here, and nothing
  is created;
- ``cea serve`` on a busy port or on a data directory another server holds: one line, and
  no data directory created;
- a closed stdout (``cea ... | head``) ends a command quietly (141), its files written;
- the help: an example per command, the choices and defaults shown, help for every option;
  ``cea --version``;
- ``cea serve --config`` / ``--print-config``: the printed defaults read back, the command
  line overrides the file, a bad key is an error naming it;
- progress (``cea.progress``) prints nothing when stderr is not a terminal.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import typer
from typer.testing import CliRunner

from cea import progress
from cea.cli import app
from cea.serveconfig import KEYS, ServeFile

from . import procs
from .test_cli import EXAMPLE, ROOT, invoke

ACCOUNTS = ROOT / "docs" / "examples" / "accounts.csv"
BIDS = ROOT / "docs" / "examples" / "auction-bids.csv"
AUCTION = [str(BIDS), "--seller", "B002", "--qty", "100000", "--reserve", "58.00",
           "--prior-close", "60.00", "--window", "13:00-15:00"]
L = ["--ledger", "{d}/out/ledger.sqlite"]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A directory of inputs, good and bad; ``out/ledger.sqlite`` a ledger of the example."""
    d = tmp_path_factory.mktemp("bad")
    (d / "afile").write_text("x")
    (d / "garbage.sqlite").write_text("garbage")
    (d / "bad.toml").write_text("days = = 1\n")
    (d / "unknown.toml").write_text("prot = 7000\n")
    (d / "wrongtype.toml").write_text('port = "seven"\n')
    (d / "range.toml").write_text("fee_bps_listed = 5000\n")
    (d / "choice.toml").write_text('clock = "moon"\n')
    (d / "badclose.toml").write_text('prior_close = ["60,00"]\n')
    (d / "notoml.toml").write_text("port = \n")
    r = invoke("match", EXAMPLE, "--prior-close", "60.00", "--out", d / "out", "--accounts",
               ACCOUNTS, "--engine", "reference", "--quiet")
    assert r.exit_code == 0, r.output
    return d


@pytest.fixture
def tripwires(monkeypatch):
    """Every piece of real work raises: a bad command line must fail before any."""
    import bench.core
    import bench.fix
    import bench.gateway
    import bench.ledger
    import cea.match
    import engine.orderfile
    import gateway.journal
    import gateway.server
    import sim.live
    import sim.loadtest
    import sim.replay
    import sim.simout
    import sim.viaserver

    def tripwire(*args, **kw):
        raise AssertionError("work started before the command line was checked")

    for module, name in ((gateway.server, "serve"), (sim.loadtest, "local_server"),
                         (sim.loadtest, "load"), (sim.simout, "run"),
                         (sim.viaserver, "run_via_server"), (sim.replay, "replay"),
                         (bench.core, "run_core_benchmark"),
                         (bench.ledger, "run_ledger_benchmark"),
                         (bench.gateway, "run_gateway_benchmark"),
                         (bench.fix, "run_fix_benchmark"),
                         (engine.orderfile, "run_match"), (cea.match, "run_match"),
                         (gateway.journal, "verify"), (gateway.journal, "replay"),
                         (progress, "warm_up"), (sim.live, "run_live")):
        monkeypatch.setattr(module, name, tripwire)


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


#: (command line, words of the error line): "{d}" is the directory of inputs
CASES = [
    # match
    (["match", str(EXAMPLE), "--prior-close", "60,00", "--out", "{d}/m"],
     ["--prior-close", "60,00"]),
    (["match", "{d}/nope.csv", "--prior-close", "60", "--out", "{d}/m"], ["nope.csv"]),
    (["match", str(EXAMPLE), "--prior-close", "60", "--out", "{d}/afile"],
     ["{d}/afile exists and is not a directory"]),
    (["match", str(EXAMPLE), "--prior-close", "60", "--out", "{d}/afile/sub"],
     ["afile is not a directory"]),
    (["match", str(EXAMPLE), "--prior-close", "60", "--engine", "rust"],
     ["--engine must be numba or reference, not 'rust'"]),
    (["match", str(EXAMPLE), "--prior-close", "60", "--accounts", "{d}/nope.csv", "--out",
      "{d}/m"], ["nope.csv", "cannot read accounts file"]),
    (["match", str(EXAMPLE), "--prior-close", "60", "--fee-bps-listed", "-1"],
     ["--fee-bps-listed", "not -1"]),
    (["match", str(EXAMPLE), "--prior-close", "60", "--ledger", "x.sqlite"],
     ["--ledger needs --accounts"]),
    (["match"], ["ORDERS"]),
    # serve
    (["serve", "--prior-close", "60,00", "--data-dir", "{d}/s"], ["--prior-close", "60,00"]),
    (["serve", "--fsync", "maybe", "--data-dir", "{d}/s"], ["--fsync must be on or off"]),
    (["serve", "--clock", "moon", "--data-dir", "{d}/s"], ["--clock must be sim or wall"]),
    (["serve", "--data-dir", "{d}/afile", "--port", "0"], ["--data-dir", "not a directory"]),
    (["serve", "--port", "70000", "--data-dir", "{d}/s"], ["--port", "65535", "70000"]),
    (["serve", "--ledger", "mysql://x", "--data-dir", "{d}/s", "--port", "0"], ["--ledger"]),
    (["serve", "--start", "yesterday", "--data-dir", "{d}/s", "--port", "0"], ["--start"]),
    (["serve", "--tokens", "{d}/nope.csv", "--data-dir", "{d}/s", "--port", "0"],
     ["--tokens", "nope.csv"]),
    (["serve", "--operator", " ", "--data-dir", "{d}/s", "--port", "0"], ["--operator"]),
    (["serve", "--config", "{d}/unknown.toml", "--data-dir", "{d}/s"],
     ["unknown.toml", "unknown key 'prot'"]),
    (["serve", "--config", "{d}/wrongtype.toml", "--data-dir", "{d}/s"],
     ["wrongtype.toml", "port", "expected `int`"]),
    (["serve", "--config", "{d}/range.toml", "--data-dir", "{d}/s"],
     ["fee_bps_listed", "<= 1000"]),
    (["serve", "--config", "{d}/choice.toml", "--data-dir", "{d}/s"],
     ["clock must be", "'moon'"]),
    (["serve", "--config", "{d}/notoml.toml", "--data-dir", "{d}/s"], ["not valid TOML"]),
    (["serve", "--config", "{d}/nope.toml", "--data-dir", "{d}/s"], ["--config", "nope.toml"]),
    (["serve", "--config", "{d}/badclose.toml", "--data-dir", "{d}/s", "--port", "0"],
     ["badclose.toml: prior_close", "60,00"]),
    # replay
    (["replay", "--from", "2023-05-01", "--to", "2023-01-01", "--out", "{d}/r"],
     ["--from 2023-05-01 is after --to 2023-01-01"]),
    (["replay", "--from", "2030-01-01", "--out", "{d}/r"],
     ["2030-01-01", "covers 2021-07-16 to"]),
    (["replay", "--from", "July", "--out", "{d}/r"], ["--from", "July", "YYYY-MM-DD"]),
    (["replay", "--data", "{d}/nope.csv", "--out", "{d}/r"], ["--data", "nope.csv"]),
    (["replay", "--data", "{d}/afile", "--out", "{d}/r"], ["afile", "header"]),
    (["replay", "--out", "{d}/afile"], ["{d}/afile exists and is not a directory"]),
    # simulate
    (["simulate", "--out", "{d}/afile"], ["{d}/afile exists and is not a directory"]),
    (["simulate", "--config", "{d}/nope.toml", "--out", "{d}/sim"], ["--config", "nope.toml"]),
    (["simulate", "--config", "{d}/bad.toml", "--out", "{d}/sim"], ["not valid TOML"]),
    (["simulate", "--days", "0", "--out", "{d}/sim"], ["days must be 1..5000"]),
    (["simulate", "--seed", "-1", "--out", "{d}/sim"], ["seed must be"]),
    # loadtest
    (["loadtest", "--rates", "", "--out", "{d}/lt"], ["--rates is empty"]),
    (["loadtest", "--rates", "ten", "--out", "{d}/lt"], ["--rates", "'ten'"]),
    (["loadtest", "--rates", "5k,2m", "--out", "{d}/lt"], ["--rates", "'2m'"]),
    (["loadtest", "--out", "{d}/afile"], ["{d}/afile exists and is not a directory"]),
    (["loadtest", "--duration", "0.1", "--out", "{d}/lt"], ["--duration", "at least 0.5"]),
    (["loadtest", "--fsync", "maybe", "--out", "{d}/lt"], ["--fsync must be on or off"]),
    (["loadtest", "--rate", "0", "--out", "{d}/lt"], ["--rate must be at least 1, not 0"]),
    # population, registry
    (["population", "--entities", "0", "--out", "{d}/p.csv"], ["--entities", "not 0"]),
    (["population", "--out", "{d}/nodir/p.csv"], ["nodir", "does not exist"]),
    (["registry", "allocate", "{d}/nope.csv", "--year", "2019", "--ledger", "{d}/r.sqlite"],
     ["nope.csv"]),
    (["registry", "allocate", "{d}/afile", "--year", "1999", "--ledger", "{d}/r.sqlite"],
     ["--year 1999"]),
    (["registry", "allocate", "{d}/afile", "--year", "2019", "--date", "2019-13-01"],
     ["--date", "2019-13-01"]),
    (["registry", "allocate", "{d}/afile", "--year", "2019", "--ledger", "{d}/nodir/l.sqlite"],
     ["--ledger", "nodir"]),
    # auction
    (["auction", *AUCTION, "--reserve", "abc", "--out", "{d}/a"], ["--reserve", "'abc'"]),
    (["auction", *AUCTION, "--qty", "-1", "--out", "{d}/a"], ["--qty", "not -1"]),
    (["auction", *AUCTION, "--band-pct", "0", "--out", "{d}/a"], ["--band-pct", "not 0"]),
    (["auction", *AUCTION, "--rule", "dutch", "--out", "{d}/a"],
     ["--rule must be pay-as-bid or uniform, not 'dutch'"]),
    (["auction", *AUCTION, "--window", "15:00-13:00", "--out", "{d}/a"], ["--window"]),
    (["auction", *AUCTION, "--date", "2025-13-01", "--out", "{d}/a"], ["--date", "not a date"]),
    (["auction", *AUCTION, "--out", "{d}/afile"], ["{d}/afile exists and is not a directory"]),
    (["auction", "{d}/nope.csv", *AUCTION[1:], "--out", "{d}/a"], ["nope.csv"]),
    # bench
    (["bench", "core", "--orders", "0"], ["--orders must be at least 1, not 0"]),
    (["bench", "core", "--json", "{d}/nodir/x.json"], ["--json", "nodir", "does not exist"]),
    (["bench", "ledger", "--orders", "10"], ["--orders must be at least 1000, not 10"]),
    (["bench", "ledger", "--json", "{d}"], ["--json", "is a directory"]),
    (["bench", "gateway", "--seconds", "0"], ["--seconds must be at least 0.5"]),
    (["bench", "gateway", "--json", "{d}/nodir/g.json"], ["--json", "nodir"]),
    (["bench", "fix", "--orders", "10"], ["--orders must be at least 1000"]),
    (["bench", "fix", "--rate", "5"], ["--rate"]),
    (["bench", "fix", "--json", "{d}/nodir/f.json"], ["--json", "nodir"]),
    # ledger
    (["ledger", "balances", "--ledger", "{d}/none.sqlite"], ["no ledger at", "none.sqlite"]),
    (["ledger", "balances", "--ledger", "{d}/garbage.sqlite"], ["garbage.sqlite"]),
    (["ledger", "statement", "A001", "--date", "2024-13-01", *L], ["2024-13-01"]),
    (["ledger", "statement", "A001", "--date", "2024-03-04", "--format", "xml", *L],
     ["--format must be csv or json, not 'xml'"]),
    (["ledger", "statement", "A001", "--date", "2024-03-04", "--out", "{d}/afile", *L],
     ["{d}/afile exists and is not a directory"]),
    (["ledger", "reconcile", *L, "--balances", "{d}/nope.json"], ["--balances", "nope.json"]),
    (["ledger", "reconcile", *L, "--balances", "{d}/afile"], ["not a balances.json"]),
    # journal
    (["journal", "verify", "{d}/nodir"], ["nodir", "no journal here", "does not exist"]),
    (["journal", "verify", "{d}/afile"], ["afile"]),
    (["journal", "replay", "{d}/out"], ["no journal here"]),
    (["journal", "replay", "{d}/out", "--to", "-1"], ["--to must be at least 0, not -1"]),
    (["journal", "replay", "{d}/out", "--trades", "{d}/nodir/t.csv"], ["no journal here"]),
    (["journal", "verify", "{d}/out", "--engine", "rust"], ["--engine must be numba or"]),
    # compliance
    (["compliance", "obligations", "--period", "2099", "--emissions", "{d}/afile"],
     ["compliance period '2099'"]),
    (["compliance", "obligations", "--period", "2023", "--emissions", "{d}/nope.csv"],
     ["nope.csv", "cannot read"]),
    (["compliance", "offset-in", "A001", "--tonnes", "-5", "--ref", "r", *L],
     ["--tonnes must be at least 1, not -5"]),
    (["compliance", "offset-in", "A001", "--tonnes", "5", "--ref", "r", "--date", "x", *L],
     ["--date 'x'"]),
    (["compliance", "surrender", "A001", "--period", "2023", "--cea", "-1", *L],
     ["--cea must be at least 0, not -1"]),
    (["compliance", "surrender", "A001", "--period", "2023", *L], ["--cea or --ccer"]),
    (["compliance", "borrow", "A001", "--period", "2023", "--tonnes", "x", *L],
     ["--tonnes must be a whole number, not 'x'"]),
    (["compliance", "report", "--period", "2023", "--average-price", "abc", "--out", "{d}/rep",
      *L], ["--average-price 'abc'"]),
    (["compliance", "report", "--period", "2023", "--out", "{d}/afile", *L],
     ["{d}/afile exists and is not a directory"]),
    (["compliance", "periods", "--bogus"], ["--bogus"]),
    # realism (a run's stylized facts against the real market's)
    (["realism"], ["give a cea simulate output directory"]),
    (["realism", "{d}/none"], ["no such directory"]),
    (["realism", "--real", "nope"], ["no real period 'nope'"]),
    (["realism", "{d}/out", "--period", "nope"], ["no real period 'nope'"]),
    # calibrate (Ray; every refusal comes before Ray starts)
    (["calibrate", "--budget", "0", "--out", "{d}/cal"], ["--budget must be at least 1"]),
    (["calibrate", "--scenario", "nope", "--out", "{d}/cal"], ["no scenario 'nope'"]),
    (["calibrate", "--space", "{d}/nope.toml", "--out", "{d}/cal"], ["--space", "no such file"]),
    (["calibrate", "--period", "nope", "--out", "{d}/cal"], ["no real period 'nope'"]),
    # simulate --scenario
    (["simulate", "--scenario", "nope", "--out", "{d}/sim"], ["no scenario 'nope'"]),
    # view (a finished run's output directory in the browser)
    (["view", "{d}/none"], ["no such directory"]),
    (["view", "{d}"], ["not a cea simulate or cea replay output directory"]),
    (["view", "{d}/afile"], ["is a file, not an output directory"]),
    (["view", "{d}", "--port", "70000"], ["--port"]),
    # serve --web-port
    (["serve", "--web-port", "70000", "--data-dir", "{d}/s"], ["--web-port", "70000"]),
    (["simulate", "--web-port", "0", "--out", "{d}/sim"], ["--web-port needs --via-server"]),
    (["loadtest", "--web-port", "-1", "--out", "{d}/lt"], ["--web-port"]),
    (["loadtest", "--server-port", "7878", "--out", "{d}/lt"],
     ["--server-port and --token-file go together"]),
    (["loadtest", "--server-port", "7878", "--token-file", "{d}/nope.csv", "--out", "{d}/lt"],
     ["--token-file", "nope.csv"]),
    (["loadtest", "--server-port", "7878", "--token-file", "{d}/afile", "--out", "{d}/lt"],
     ["fewer than two trading accounts"]),
    (["loadtest", "--server-port", "7878", "--token-file", "{d}/afile", "--web-port", "0"],
     ["--web-port starts the view"]),
    # agent (a user's agent class against a running server)
    (["agent", "no_such_module_xyz:A", "--account", "A001", "--token", "t" * 16],
     ["no_such_module_xyz", "cannot import"]),
    (["agent", "sim.agent:Nope", "--account", "A001", "--token", "t" * 16],
     ["has no Nope"]),
    (["agent", "sim.agent", "--account", "A001", "--token", "t" * 16], ["MODULE:CLASS"]),
    (["agent", "{d}/afile:A", "--account", "A001", "--token", "t" * 16], ["not a .py file"]),
    (["agent", "{d}/none.py:A", "--account", "A001", "--token", "t" * 16], ["no file"]),
    (["agent", "sim.agent:Agent", "--account", "A001"], ["--token or --token-file"]),
    (["agent", "sim.agent:Agent", "--account", "A001", "--token-file", "{d}/nope.csv"],
     ["--token-file", "nope.csv"]),
    (["agent", "sim.agent:Agent", "--account", "A009", "--token-file", "{d}/afile"],
     ["--token-file", "no token for account A009"]),
    (["agent", "sim.agent:Agent", "--account", "A001", "--token", "t" * 16, "--param", "x"],
     ["--param"]),
    (["agent", "sim.agent:Agent", "--account", "A001", "--token", "t" * 16, "--port", "0"],
     ["--port"]),
    (["agent", "sim.agent:Agent", "--account", "A001", "--token", "t" * 16, "--step", "0"],
     ["--step"]),
    (["agent", "sim.agent:Agent", "--account", "A001", "--token", "t" * 16, "--out", "{d}"],
     ["--out"]),
    (["simulate", "--agent", "no_such_module_xyz:A", "--out", "{d}/sim"], ["cannot import"]),
    (["simulate", "--agent", "sim.agent", "--out", "{d}/sim"], ["MODULE:CLASS"]),
    (["serve", "--fix-port", "70000", "--data-dir", "{d}/srv"], ["--fix-port"]),
    # the group
    (["matc"], ["No such command 'matc'"]),
]


@pytest.mark.parametrize("args, words", CASES, ids=[" ".join(
    a.replace("{d}/", "").replace(str(ROOT) + "/", "") for a in c[0])[:60] for c in CASES])
def test_bad_command_line_is_one_error_line_and_no_work(d, tripwires, args, words):
    args = [a.format(d=d) for a in args]
    before = listing(d)
    r = CliRunner().invoke(app, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cea: error: "), r.stderr
    for word in words:
        assert word.format(d=d) in lines[0], lines[0]
    assert r.stdout == ""
    assert listing(d) == before  # nothing created
    assert (d / "afile").read_text() == "x"


def test_every_command_is_covered():
    """Each command and subcommand of ``cea --help`` has a case above."""
    group = typer.main.get_command(app)
    covered = {" ".join(a for a in args[:2] if not a.startswith(("-", "{", "/")))
               for args, _ in CASES}
    for name, cmd in group.commands.items():
        for sub in (getattr(cmd, "commands", None) or {None: None}):
            full = f"{name} {sub}" if sub else name
            assert full in covered, full


# ------------------------------------------------------------- serve, in a subprocess

def run_serve(*args, timeout=120):
    return procs.run([sys.executable, "-m", "cea", "serve", *map(str, args)], cwd=ROOT,
                     capture_output=True, text=True, timeout=timeout)


def test_serve_on_a_busy_port_creates_nothing(tmp_path):
    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_serve("--data-dir", data, "--port", port)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr == f"cea: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert r.stdout == "" and not data.exists()


def test_serve_on_a_data_directory_in_use(tmp_path):
    from gateway.lock import DataDirLock

    data = tmp_path / "data"
    with DataDirLock(data):  # as another cea serve holds it
        r = run_serve("--data-dir", data, "--port", 0)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"cea: error: data directory {data} is in use by another cea serve (pid "), r.stderr
    assert sorted(p.name for p in data.iterdir()) == ["lock"]


# ------------------------------------------------------------------ a closed stdout

def run_closed_stdout(*args) -> subprocess.CompletedProcess:
    """``cea ARGS`` whose stdout's reader is gone before it writes (``cea ... | head``)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return procs.run([sys.executable, "-m", "cea", *map(str, args)], cwd=ROOT,
                         stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)


def test_closed_stdout_is_quiet(tmp_path):
    r = run_closed_stdout("serve", "--print-config")
    assert r.returncode == 141 and r.stderr == "", r.stderr


def test_bench_goes_on_when_stdout_closes(tmp_path):
    out = tmp_path / "core.json"
    r = run_closed_stdout("bench", "core", "--orders", "2000", "--json", out)
    assert r.returncode == 141 and r.stderr == "", r.stderr
    assert out.read_text().startswith("{")  # the figures written all the same


def test_compliance_report_writes_its_files_before_printing(tmp_path):
    from engine.tradingdays import day_of_date
    from ledger.core import Ledger

    import datetime as dt

    path = tmp_path / "ledger.sqlite"
    led = Ledger.open(str(path), ["CEA"])
    for k in range(30):
        led.open_account(f"E{k:03d}", "COVERED_ENTITY")
        led.allowance_in(f"E{k:03d}", "CEA", 1000, ref=f"a{k}",
                         day=day_of_date(dt.date(2024, 7, 1)))
    led.close()
    em = tmp_path / "em.csv"
    em.write_text("entity,verified_emissions,allocation,kind\n"
                  + "".join(f"E{k:03d},{1000 + k},1000,coal\n" for k in range(30)))
    out = tmp_path / "rep"
    r = run_closed_stdout("compliance", "report", "--period", "2023", "--ledger", path,
                          "--emissions", em, "--average-price", "60.00", "--out", out,
                          "--full")
    assert r.returncode == 141 and r.stderr == "", r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["compliance_2023.csv",
                                                     "compliance_2023.json"]
    # by default: a summary of a few lines, not a line per entity
    r = invoke("compliance", "report", "--period", "2023", "--ledger", path, "--emissions", em,
               "--average-price", "60.00", "--out", out)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) < 10 and "30 entities: 30 SHORT" in r.stdout, r.stdout
    assert "shortfall 30,435 t" in r.stdout  # 30 x 1,000 + 0 + 1 + ... + 29
    assert "penalties: " in r.stdout and "--full prints the table" in lines[-1]
    full = invoke("compliance", "report", "--period", "2023", "--ledger", path, "--emissions",
                  em, "--average-price", "60.00", "--out", out, "--full")
    assert full.exit_code == 0 and len(full.stdout.splitlines()) > 30


# ------------------------------------------------------------------------- the help

def help_of(*path: str) -> str:
    """``cea PATH --help`` on a wide terminal (nothing wrapped)."""
    r = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.stdout


def commands():
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub_name, sub in subs.items():
                yield [name, sub_name], sub
        else:
            yield [name], cmd


@pytest.mark.parametrize("path, cmd", list(commands()), ids=lambda x: " ".join(x)
                         if isinstance(x, list) else "")
def test_help_has_an_example_and_help_for_every_option(path, cmd):
    for param in cmd.params:
        assert (getattr(param, "help", None) or "").strip(), (path, param.name)
    text = help_of(*path)
    assert "Example: cea " + " ".join(path) in text, text
    assert "spec section" not in text and "(Ledger:" not in text


def test_help_shows_choices_and_defaults():
    serve = help_of("serve")
    for shown in ("on|off", "sim|wall", "numba|reference", "sqlite|URL|off",
                  "[default: 7878]", "[default: cea-data]", "--config", "--print-config"):
        assert shown in serve, shown
    assert "csv|json" in help_of("ledger", "statement")
    assert "on|off" in help_of("loadtest")
    assert "2019-20|2021-22|2023|2024" in help_of("compliance", "report")
    assert "pay-as-bid|uniform" in help_of("auction")
    match = help_of("match")
    assert "README, section cea match" in match and "<bool>" not in match


def test_version():
    from importlib.metadata import version

    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout == f"cea {version('cea-exchange')}\n"


# -------------------------------------------------------------- serve --config

def test_print_config_reads_back_as_the_defaults():
    r = invoke("serve", "--print-config")
    assert r.exit_code == 0, r.output
    cfg = msgspec.toml.decode(r.stdout.encode(), type=ServeFile)
    group = typer.main.get_command(app)
    defaults = {p.name: p.default for p in group.commands["serve"].params}
    for key in KEYS:
        value = getattr(cfg, key)
        default = getattr(defaults[key], "value", defaults[key])
        if default is None:
            assert value is msgspec.UNSET, key  # commented out
            assert f"# {key} = " in r.stdout
        else:
            assert value == (list(default) if isinstance(default, (list, tuple))
                             else str(default) if isinstance(default, Path) else default), key


def test_config_file_and_flags_over_it(tmp_path, monkeypatch):
    import gateway.server

    seen = []

    def fake_serve(config, ready=None):
        seen.append(config)
        return 0

    monkeypatch.setattr(gateway.server, "serve", fake_serve)
    toml = tmp_path / "serve.toml"
    toml.write_text('port = 0\nprior_close = ["CEB=55.00", "CEA=61.00"]\nfee_bps_listed = 3\n'
                    'fee_bps_block = 4\nfsync = false\nledger = "off"\nclock = "wall"\n'
                    f'data_dir = "{tmp_path / "from-file"}"\n')
    r = invoke("serve", "--config", toml, "--fee-bps-listed", "5", "--data-dir",
               tmp_path / "flag")
    assert r.exit_code == 0, r.output
    (cfg,) = seen
    assert cfg.fee_bps_listed == 5 and cfg.fee_bps_block == 4  # the flag wins, the file else
    assert cfg.instruments == [("CEB", 5500), ("CEA", 6100)] and cfg.port == 0
    assert cfg.fsync is False and cfg.ledger is None and cfg.clock == "wall"
    assert cfg.data_dir == tmp_path / "flag" and cfg.rate_limit == 200_000  # a default


# ------------------------------------------------------------------------- progress

def test_progress_is_silent_without_a_terminal(tmp_path, capfd):
    assert not progress.active() and not progress.active(quiet=True)
    with progress.bar("x", 3) as advance:
        advance()
    with progress.status("x") as update:
        update("y")
    with progress.countdown("x", 0.5):
        pass
    with progress.compiling() as done:
        done()
    progress.warm_up()
    assert capfd.readouterr() == ("", "")


def test_progress_on_a_terminal_runs(monkeypatch):
    """With a terminal (here pretended), each display starts and stops cleanly."""
    monkeypatch.setattr(progress, "active", lambda quiet=False: not quiet)
    with progress.bar("days", 2) as advance:
        advance()
        advance(1, label="days, 2024-01-03")
    with progress.status("working") as update:
        update("still working")
    with progress.countdown("offering", 0.2):
        pass
    with progress.compiling(gateway=True) as done:  # whatever the cache's state
        done()


def test_cold_kernel_cache_is_seen(tmp_path):
    probe = "from cea.progress import kernels_cold; print(kernels_cold())"
    r = procs.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                  timeout=120, env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)})
    assert r.stdout.strip() == "True", r.stderr
    progress.warm_engine()  # compiled or loaded in this process now
    assert progress.kernels_cold() is False
