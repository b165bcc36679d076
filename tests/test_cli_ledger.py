"""``cea match --accounts`` and ``cea ledger``: end to end through CliRunner and a subprocess,
with both engines writing the same ledger, and every bad input a one-line error."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .test_cli import ROOT, invoke, run_cea

EXAMPLE = ROOT / "docs" / "examples" / "session.csv"
ACCOUNTS = ROOT / "docs" / "examples" / "accounts.csv"


def match(out: Path, *extra: str, engine: str = "numba"):
    return invoke("match", EXAMPLE, "--prior-close", "60.00", "--out", out, "--accounts",
                  ACCOUNTS, "--engine", engine, "--fee-bps-listed", "3", *extra)


def test_match_with_accounts_writes_ledger_statements_and_reconciles(tmp_path):
    r = match(tmp_path / "out")
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    assert "reconciled with the engine" in r.output
    rejects = (out / "rejects.csv").read_text()
    assert "INSUFFICIENT_FUNDS" in rejects and "INSUFFICIENT_ALLOWANCES" in rejects
    assert json.loads((out / "reconcile.json").read_text())["ok"] is True
    statements = sorted(p.name for p in (out / "statements").iterdir())
    assert "A001_2024-03-04.csv" in statements and "A001_2024-03-05.json" in statements
    st = json.loads((out / "statements" / "A001_2024-03-05.json").read_text())
    first = json.loads((out / "statements" / "A001_2024-03-04.json").read_text())
    assert st["opening"] == first["closing"]
    with sqlite3.connect(out / "ledger.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM trade").fetchone()[0] == len(
            (out / "trades.csv").read_text().splitlines()) - 1

    # the reference engine writes the same files and the same ledger balances
    r2 = match(tmp_path / "ref", engine="reference")
    assert r2.exit_code == 0, r2.output
    for name in ("trades.csv", "orders.csv", "rejects.csv", "days.csv", "balances.json"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name

    led = ["--ledger", out / "ledger.sqlite"]
    r = invoke("ledger", "balances", *led, "--json")
    assert r.exit_code == 0 and json.loads(r.output) == json.loads(
        (out / "balances.json").read_text())["accounts"]
    r = invoke("ledger", "reconcile", *led, "--balances", out / "balances.json")
    assert r.exit_code == 0 and "reconciled" in r.output
    r = invoke("ledger", "statement", "A001", "--date", "2024-03-04", *led)
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("kind,ref,time,asset")
    assert r.output.splitlines()[-1].startswith("CLOSING")
    # a tampered engine balance is found: exit 1
    bad = json.loads((out / "balances.json").read_text())
    bad["accounts"]["A001"]["CNY"] += 1
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    r = invoke("ledger", "reconcile", *led, "--balances", tmp_path / "bad.json")
    assert r.exit_code == 1


@pytest.mark.parametrize("content,words", [
    ("account,kind,cash,CEA\nA001,COVERED_ENTITY,1.00,0\n", ["header"]),
    ("account,type,cash,XYZ\nA001,COVERED_ENTITY,1.00,0\n", ["XYZ"]),
    ("account,type,cash,CEA\nA001,TRADER,1.00,0\n", ["TRADER"]),
    ("account,type,cash,CEA\nA001,COVERED_ENTITY,1.001,0\n", ["cash"]),
    ("account,type,cash,CEA\nA001,COVERED_ENTITY,-5.00,0\n", ["cash"]),
    ("account,type,cash,CEA\nA001,COVERED_ENTITY,1.00,2.5\n", ["tonnes"]),
    ("account,type,cash,CEA\nA001,COVERED_ENTITY,1.00,0\nA001,INDIVIDUAL,1.00,0\n", ["repeated"]),
    ("account,type,cash,CEA\nA001,COVERED_ENTITY,1.00\n", ["fields"]),
])
def test_bad_accounts_files_are_one_line_errors(tmp_path, content, words):
    path = tmp_path / "accounts.csv"
    path.write_text(content)
    r = run_cea("match", str(EXAMPLE), "--prior-close", "60.00", "--out", str(tmp_path / "o"),
                "--accounts", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("cea: error: ") and len(r.stderr.strip().splitlines()) == 1
    for w in words:
        assert w in r.stderr


def test_ledger_commands_without_a_ledger_or_with_bad_options(tmp_path):
    for args in (["ledger", "balances", "--ledger", str(tmp_path / "none.sqlite")],
                 ["ledger", "statement", "A001", "--date", "2024-03-04", "--ledger",
                  str(tmp_path / "none.sqlite")],
                 ["match", str(EXAMPLE), "--prior-close", "60.00", "--ledger", "x.sqlite"]):
        r = run_cea(*args)
        assert r.returncode == 2 and r.stderr.startswith("cea: error: "), r.stderr
    out = tmp_path / "out"
    assert match(out).exit_code == 0
    r = run_cea("ledger", "statement", "A001", "--date", "2024-13-01", "--ledger",
                str(out / "ledger.sqlite"))
    assert r.returncode == 2 and "YYYY-MM-DD" in r.stderr
    r = run_cea("ledger", "statement", "A001", "--date", "2024-03-04", "--format", "xml",
                "--ledger", str(out / "ledger.sqlite"))
    assert r.returncode == 2 and "csv or json" in r.stderr
    # an explicit ledger that already holds trades is not replayed into
    r = match(tmp_path / "out2", "--ledger", str(out / "ledger.sqlite"))
    assert r.exit_code == 2 and "already holds trades" in r.output + str(r.stderr_bytes or "")
