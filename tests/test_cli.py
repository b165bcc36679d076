"""The ``cea`` command line: ``cea match`` end to end, as a subprocess and through CliRunner.

- the example session gives exactly the files worked out by hand from the spec, with the
  spec §8 headers; ``--engine reference`` and ``--engine numba`` write byte-identical files
  (on the example and on a generated file of a few thousand rows);
- input that cannot be read (missing, a directory, binary, not UTF-8, empty, wrong header) or
  a bad ``--prior-close`` gives a non-zero exit and one line ``cea: error: ...`` on stderr,
  never a traceback; a header-only file succeeds with empty outputs;
- rows with too few or too many fields are MALFORMED rejects; blank lines are not rows;
- the optional ``instrument`` column with one ``--prior-close NAME=PRICE`` per instrument.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cea.cli import app

from . import procs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "session.csv"
HEADER = "time,account,action,order_id,side,type,tif,price,qty,stp"
FILES = ("trades", "orders", "rejects", "days")

#: The headers of spec §8, exactly.
HEADERS = {
    "trades": "trade_id,time,segment,price,qty,buy_order_id,sell_order_id,buy_account,"
              "sell_account,aggressor",
    "orders": "order_id,account,segment,side,status,reason,filled_qty,open_qty",
    "rejects": "line,action,order_id,reason",
    "days": "date,prior_close,close,listed_volume,block_volume,listed_turnover,block_turnover",
}

#: docs/examples/session.csv at 60.00, worked through by hand:
#: o2 (MARKET sell 200) hits o1 at 60.10; o1 is amended to 60.05/300 and later cancelled;
#: o4 (IOC 400) lifts o3 at 60.20; o5 at 66.01 is above the band 54.00..66.00; o7 (FOK 500)
#: sees only 300 at or under 60.00; o8 takes 250 of o6 at 59.90; o9 arrives at lunch; b2 buys
#: b1's 150,000 t at 55.00 and its 50,000 t expire; o3 is re-priced to 60.15/800; o10 (MARKET
#: 900) takes 50 at 59.90 and 800 at 60.15. Close of 03-04: (10,219,000 + 850) // 1,700 fen =
#: 60.11, the prior close of 03-05, where o12 buys 60 of o11 and the second o12 is a duplicate.
EXAMPLE_OUT = {
    "trades": """\
1,2024-03-04T09:30:00.000002,LISTED,60.10,200,o1,o2,A001,A002,SELL
2,2024-03-04T09:31:30.000000,LISTED,60.20,400,o4,o3,A004,A003,BUY
3,2024-03-04T10:15:02.000000,LISTED,59.90,250,o8,o6,A005,A002,BUY
4,2024-03-04T13:06:00.000000,BLOCK,55.00,150000,b2,b1,B002,B001,BUY
5,2024-03-04T14:30:00.000000,LISTED,59.90,50,o10,o6,A007,A002,BUY
6,2024-03-04T14:30:00.000000,LISTED,60.15,800,o10,o3,A007,A003,BUY
7,2024-03-05T09:31:00.000000,LISTED,60.50,60,o12,o11,A002,A001,BUY
""",
    "orders": """\
o1,A001,LISTED,BUY,CANCELLED,USER,200,0
o2,A002,LISTED,SELL,FILLED,,200,0
o3,A003,LISTED,SELL,FILLED,,1200,0
o4,A004,LISTED,BUY,FILLED,,400,0
o6,A002,LISTED,SELL,FILLED,,300,0
o7,A005,LISTED,BUY,CANCELLED,FOK_NOT_FILLABLE,0,0
o8,A005,LISTED,BUY,FILLED,,250,0
b1,B001,BLOCK,SELL,FILLED,,150000,0
b2,B002,BLOCK,BUY,EXPIRED,,150000,0
o10,A007,LISTED,BUY,CANCELLED,IOC_REMAINDER,850,0
o11,A001,LISTED,SELL,RESTING,,60,40
o12,A002,LISTED,BUY,FILLED,,60,0
""",
    "rejects": """\
7,NEW,o5,PRICE_OUTSIDE_BAND
11,NEW,o9,MARKET_CLOSED
18,NEW,o12,DUPLICATE_ORDER_ID
""",
    "days": """\
2024-03-04,60.00,60.11,1700,150000,102190.00,8250000.00
2024-03-05,60.11,60.50,60,0,3630.00,0.00
""",
}


def _limit_memory() -> None:
    """In the child: cap its address space (16 GiB), so that an absurd allocation fails at
    once whatever the machine's overcommit policy, instead of exhausting memory."""
    import resource

    cap = 16 << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def run_cea(*args: str) -> subprocess.CompletedProcess:
    """``python -m cea ARGS`` from the repository root."""
    return procs.run([sys.executable, "-m", "cea", *args], cwd=ROOT, capture_output=True,
                     text=True, timeout=180, preexec_fn=_limit_memory)


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def read_outputs(out: Path) -> dict[str, bytes]:
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{f}.csv" for f in FILES)
    return {f: (out / f"{f}.csv").read_bytes() for f in FILES}


def assert_headers(files: dict[str, bytes], extra: str = "") -> None:
    for name, data in files.items():
        first = data.decode("utf-8").split("\n", 1)[0]
        want = HEADERS[name] + (extra if name != "rejects" else "")
        assert first == want, f"{name}.csv header"
        assert data.endswith(b"\n") and b"\r" not in data


def assert_clean_error(code: int, stdout: str, stderr: str, *words: str) -> None:
    """Non-zero exit, one line ``cea: error: ...`` on stderr, no traceback anywhere."""
    assert code != 0
    assert "Traceback" not in stdout and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("cea: error: "), stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


# ---------------------------------------------------------------------------- the example

def test_match_example_as_a_subprocess(tmp_path):
    out_numba, out_ref = tmp_path / "numba", tmp_path / "reference"
    proc = run_cea("match", "docs/examples/session.csv", "--prior-close", "60.00", "--out",
                   str(out_numba))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("18 commands, 7 trades, 3 rejects (numba engine, ")
    files = read_outputs(out_numba)
    assert_headers(files)
    for name in FILES:
        assert files[name].decode() == HEADERS[name] + "\n" + EXAMPLE_OUT[name], name

    proc = run_cea("match", str(EXAMPLE), "--prior-close", "60.00", "--out", str(out_ref),
                   "--engine", "reference", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "(reference engine, " in proc.stdout
    assert read_outputs(out_ref) == files


def test_match_example_through_clirunner(tmp_path):
    results = {}
    for engine in ("numba", "reference"):
        out = tmp_path / engine
        r = invoke("match", EXAMPLE, "--prior-close", "60.00", "--out", out, "--engine", engine,
                   "--quiet")
        assert r.exit_code == 0, r.output
        assert r.exception is None and r.stdout == ""
        results[engine] = read_outputs(out)
    assert results["numba"] == results["reference"]
    assert results["numba"]["days"].decode() == HEADERS["days"] + "\n" + EXAMPLE_OUT["days"]


def test_example_without_out_writes_to_out_in_the_working_directory(tmp_path):
    proc = procs.run([sys.executable, "-m", "cea", "match", str(EXAMPLE), "--prior-close",
                      "60", "-q"], cwd=tmp_path, capture_output=True, text=True,
                     timeout=180, env=_env_with_root())
    assert proc.returncode == 0, proc.stderr
    assert read_outputs(tmp_path / "out")["trades"].decode().count("\n") == 8


def _env_with_root() -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---------------------------------------------------------------------------- generated file

def generated_order_file(seed: int, n: int, instruments: tuple[str, ...] = ()) -> str:
    """``n`` rows of an order file: mostly valid commands over a few accounts and days
    (2024-03-07 Thu .. 03-13 Wed, a weekend between), with malformed ones mixed in."""
    assert n < 1_000_000
    rnd = random.Random(seed)
    lines = [HEADER + (",instrument" if instruments else "")]
    secs = 9 * 3600 + 29 * 60 + 58  # the clock, in seconds of the day
    ids: list[str] = []
    days = ["2024-03-07", "2024-03-08", "2024-03-09", "2024-03-11", "2024-03-12", "2024-03-13"]
    day, last = 0, -1
    for k in range(n):
        r = rnd.random()
        if (r < (0.05 if days[day] == "2024-03-09" else 0.003) or secs >= 15 * 3600) \
                and day < len(days) - 1:
            day, secs = day + 1, 9 * 3600 + 29 * 60 + 58  # the next day (03-09 is a Saturday)
        elif r < 0.008:
            secs += rnd.choice((600, 1800, 3600))  # lunch, the afternoon, 15:00
        else:
            secs += rnd.choice((0, 1, 1, 2, 3))
        if day == len(days) - 1:
            secs = min(secs, 14 * 3600 + 59 * 60)  # the last day does not end
        s = secs - rnd.randint(1, 60) if rnd.random() < 0.01 else secs  # earlier: MALFORMED
        hh, mm, ss = s // 3600, s // 60 % 60, s % 60
        # fractions rise with k, so only the deliberate steps back are earlier than the clock
        frac = f".{k:06d}" if s == last or rnd.random() < 0.7 else ""
        last = s
        time = f"{days[day]}T{hh:02d}:{mm:02d}:{ss:02d}{frac}"
        if rnd.random() < 0.01:
            time = rnd.choice(("2024-03-07 10:00", "yesterday", "", "2024-02-30T10:00:00"))
        account = f"A{rnd.randint(1, 4)}" if rnd.random() > 0.005 else ""
        action = rnd.choices(("NEW", "CANCEL", "AMEND", "new", "DELETE"),
                             (60, 15, 20, 1, 1))[0]
        price = f"{60 + rnd.randint(-8, 8) / 100:.2f}"
        if rnd.random() < 0.05:
            price = rnd.choice(("", "0", "60.105", "60.100", "6e1", "-60.00", "70.00", "45",
                                "50.00", "99999999999999999999.99"))
        qty = str(rnd.randint(1, 400))
        if rnd.random() < 0.06:
            qty = rnd.choice(("100000", "99999", "150000", "0", "", "1.5", "abc", "100000001"))
        side = rnd.choice(("BUY", "SELL")) if rnd.random() > 0.005 else "HOLD"
        otype, tif = rnd.choices((("LIMIT", "DAY"), ("LIMIT", "IOC"), ("LIMIT", "FOK"),
                                  ("MARKET", "IOC"), ("MARKET", "DAY")), (70, 10, 8, 10, 1))[0]
        stp = rnd.choice(("", "", "CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH")) \
            if rnd.random() > 0.01 else "NONE"
        if action in ("NEW", "new", "DELETE"):
            oid = f"o{k}" if rnd.random() > 0.02 or not ids else rnd.choice(ids)
            ids.append(oid)
            fields = [time, account, action, oid, side, otype, tif,
                      "" if otype == "MARKET" and rnd.random() > 0.05 else price, qty, stp]
        else:
            oid = rnd.choice(ids[-20:]) if ids and rnd.random() > 0.05 else "nope"
            fields = [time, account, action, oid, "", "", "",
                      price if action == "AMEND" else "", qty if action == "AMEND" else "", ""]
        if instruments:
            fields.append(rnd.choice(instruments) if rnd.random() > 0.01 else "CEA99")
        if rnd.random() < 0.005:
            fields = fields[: rnd.randint(1, len(fields) - 1)]  # too few fields
        elif rnd.random() < 0.005:
            fields = fields + ["extra"]  # too many
        lines.append(",".join(fields))
    return "\n".join(lines) + "\n"


def test_engines_byte_identical_on_a_generated_file(tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text(generated_order_file(5, 4000), encoding="utf-8")
    outputs = {}
    for engine in ("reference", "numba"):
        r = invoke("match", orders, "--prior-close", "60.00", "--out", tmp_path / engine,
                   "--engine", engine, "--check")
        assert r.exit_code == 0, r.output
        outputs[engine] = read_outputs(tmp_path / engine)
    assert outputs["reference"] == outputs["numba"]
    files = {k: v.decode().splitlines() for k, v in outputs["numba"].items()}
    assert_headers(outputs["numba"])
    # the file reaches the matching rules, not only the rejects
    assert len(files["trades"]) > 200
    assert {ln.split(",")[2] for ln in files["trades"][1:]} == {"LISTED", "BLOCK"}
    reasons = {ln.split(",")[3] for ln in files["rejects"][1:]}
    assert {"MALFORMED", "INVALID_QTY", "INVALID_PRICE", "DUPLICATE_ORDER_ID", "MARKET_CLOSED",
            "UNKNOWN_ORDER", "PRICE_OUTSIDE_BAND"} <= reasons
    statuses = {ln.split(",")[4] for ln in files["orders"][1:]}
    assert statuses == {"FILLED", "CANCELLED", "EXPIRED", "RESTING"}
    assert [ln.split(",")[0] for ln in files["days"][1:]] == [
        "2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12", "2024-03-13"]


# ---------------------------------------------------------------------------- bad input

def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


BAD_FILES = {
    "missing": None,
    "directory": "dir",
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" * 8,
    "binary with a valid header": (HEADER + "\n").encode() + b"\x00\x01\x02\n",
    "not utf-8": (HEADER + "\n2024-03-04T10:00:00,A\xe9001,NEW,o1,BUY,LIMIT,DAY,60.00,1,\n"
                  ).encode("latin-1"),
    "gbk": (HEADER + "\n2024-03-04T10:00:00,账户,NEW,o1,BUY,LIMIT,DAY,60.00,1,\n").encode("gbk"),
    "empty": b"",
    "wrong header": b"time,account,action,order_id,side,type,tif,price,quantity,stp\n",
    "header in another order": b"account,time,action,order_id,side,type,tif,price,qty,stp\n",
    "no header": b"2024-03-04T10:00:00,A1,NEW,o1,BUY,LIMIT,DAY,60.00,1,\n",
    "header with a column short": b"time,account,action,order_id,side,type,tif,price,qty\n",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_unreadable_order_file_is_a_one_line_error(case, tmp_path):
    data = BAD_FILES[case]
    if data is None:
        path = tmp_path / "no-such-file.csv"
    elif data == "dir":
        path = tmp_path / "a-directory.csv"
        path.mkdir()
    else:
        path = _write(tmp_path, "orders.csv", data)
    out = tmp_path / "out"
    r = invoke("match", path, "--prior-close", "60.00", "--out", out)
    assert_clean_error(r.exit_code, r.stdout, r.stderr, str(path))
    assert r.exit_code == 2
    assert isinstance(r.exception, SystemExit)
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("case", ["missing", "binary"])
def test_unreadable_order_file_as_a_subprocess(case, tmp_path):
    path = tmp_path / "x.csv"
    if case == "binary":
        path.write_bytes(BAD_FILES["binary"])
    proc = run_cea("match", str(path), "--prior-close", "60.00", "--out", str(tmp_path / "o"))
    assert_clean_error(proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == 2


@pytest.mark.parametrize("value", ["abc", "0", "0.00", "60.001", "-5", "", " ", "60.", ".5",
                                   "6e1", "60,00", "NaN", "inf", "CEA=", "=60.00x", "10000.01"])
def test_bad_prior_close_is_a_one_line_error(value, tmp_path):
    r = invoke("match", EXAMPLE, f"--prior-close={value}", "--out", tmp_path / "o")
    assert_clean_error(r.exit_code, r.stdout, r.stderr, "prior close")
    assert r.exit_code == 2
    assert not (tmp_path / "o").exists()


def test_bad_prior_close_as_a_subprocess(tmp_path):
    for value in ("abc", "-5"):
        proc = run_cea("match", "docs/examples/session.csv", "--prior-close", value, "--out",
                       str(tmp_path / "o"))
        assert_clean_error(proc.returncode, proc.stdout, proc.stderr, "prior close", value)


def test_absurd_prior_close_is_an_error_or_works_never_a_traceback(tmp_path):
    """99,999,999.99 CNY/t parses as a price, but its BLOCK band (about 6e9 ticks wide) does
    not fit the fast book's dense price ladder: the user must get one error line (or results),
    not a MemoryError traceback."""
    proc = run_cea("match", "docs/examples/session.csv", "--prior-close", "99999999.99",
                   "--out", str(tmp_path / "o"))
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-1500:]
    if proc.returncode != 0:
        assert_clean_error(proc.returncode, proc.stdout, proc.stderr)


def test_missing_prior_close_and_unknown_engine_are_usage_errors(tmp_path):
    r = invoke("match", EXAMPLE, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Traceback" not in r.output and "--prior-close" in r.output
    r = invoke("match", EXAMPLE, "--prior-close", "60", "--engine", "rust", "--out",
               tmp_path / "o")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_out_is_an_existing_file(tmp_path):
    blocker = _write(tmp_path, "blocker", b"x")
    r = invoke("match", EXAMPLE, "--prior-close", "60", "--out", blocker)
    assert_clean_error(r.exit_code, r.stdout, r.stderr)
    assert blocker.read_bytes() == b"x"


def test_header_only_file_gives_empty_outputs(tmp_path):
    for data in (HEADER + "\n", HEADER, HEADER + "\r\n\r\n\n", "\ufeff" + HEADER + "\n"):
        path = tmp_path / "orders.csv"
        path.write_bytes(data.encode("utf-8"))
        out = tmp_path / "out"
        r = invoke("match", path, "--prior-close", "60.00", "--out", out)
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith("0 commands, 0 trades, 0 rejects"), r.stdout
        files = read_outputs(out)
        assert files == {name: (HEADERS[name] + "\n").encode() for name in FILES}, repr(data)


# ---------------------------------------------------------------------------- odd rows

def test_too_few_too_many_fields_and_blank_lines(tmp_path):
    rows = [
        "2024-03-04T10:00:00,A1,NEW,s1,SELL,LIMIT,DAY,60.00,100,",  # 1: rests
        "",  # blank: not a row
        "2024-03-04T10:00:01,A2,NEW,b1,BUY,LIMIT,DAY,60.00",  # 2: no qty field: MALFORMED
        "2024-03-04T10:00:02,A2,NEW,b2,BUY,LIMIT,DAY,60.00,10,,extra",  # 3: 11 fields
        "   ",  # 4: one field of spaces: MALFORMED
        "",
        "",
        "garbage",  # 5
        "2024-03-04T10:00:03,A2,NEW,b3,BUY,LIMIT,DAY,60.00,10,",  # 6: trades 10 with s1
        "2024-03-04T10:00:04,A2,NEW,b1,BUY,LIMIT,DAY,60.00,10,",  # 7: b1 was used on row 2
        "2024-03-04T10:00:05,A1,AMEND,s1,,,,60.00",  # 8: AMEND without qty: MALFORMED
        "2024-03-04T10:00:06,A1,CANCEL,s1,,,,,,,",  # 9: 11 fields: MALFORMED
    ]
    path = tmp_path / "orders.csv"
    path.write_text("\n".join([HEADER] + rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    r = invoke("match", path, "--prior-close", "60.00", "--out", out, "--check")
    assert r.exit_code == 0, r.output
    files = {k: v.decode() for k, v in read_outputs(out).items()}
    assert files["rejects"] == HEADERS["rejects"] + "\n" + (
        "2,NEW,b1,MALFORMED\n"
        "3,NEW,b2,MALFORMED\n"
        "4,,,MALFORMED\n"
        "5,,,MALFORMED\n"
        "7,NEW,b1,DUPLICATE_ORDER_ID\n"
        "8,AMEND,s1,MALFORMED\n"
        "9,CANCEL,s1,MALFORMED\n")
    assert files["trades"] == HEADERS["trades"] + "\n" + (
        "1,2024-03-04T10:00:03.000000,LISTED,60.00,10,b3,s1,A2,A1,BUY\n")
    assert files["orders"] == HEADERS["orders"] + "\n" + (
        "s1,A1,LISTED,SELL,RESTING,,10,90\n"
        "b3,A2,LISTED,BUY,FILLED,,10,0\n")
    assert files["days"] == HEADERS["days"] + "\n" + (
        "2024-03-04,60.00,60.00,10,0,600.00,0.00\n")


def test_quoted_fields_and_crlf_line_ends(tmp_path):
    text = (HEADER + "\r\n"
            '"2024-03-04T10:00:00","A,1",NEW,"o""1",SELL,LIMIT,DAY,"60.00",5,\r\n'
            '2024-03-04T10:00:01,A2,NEW,o2,BUY,MARKET,IOC,,5,CANCEL_BOTH\r\n')
    path = tmp_path / "orders.csv"
    path.write_bytes(text.encode())
    r = invoke("match", path, "--prior-close", "60.00", "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    trades = (tmp_path / "out" / "trades.csv").read_text()
    assert trades.splitlines()[1] == \
        '1,2024-03-04T10:00:01.000000,LISTED,60.00,5,o2,"o""1",A2,"A,1",BUY'


# ---------------------------------------------------------------------------- instruments

def test_instrument_column_with_two_prior_closes(tmp_path):
    rows = [
        "2024-03-04T10:00:00,A1,NEW,a1,SELL,LIMIT,DAY,60.00,100,,CEA21",
        "2024-03-04T10:00:01,A1,NEW,b1,SELL,LIMIT,DAY,52.00,100,,CEA22",
        "2024-03-04T10:00:02,A2,NEW,a2,BUY,LIMIT,DAY,60.00,30,,CEA21",  # trades with a1
        "2024-03-04T10:00:03,A2,NEW,b2,BUY,MARKET,IOC,,40,,CEA22",  # trades with b1 only
        "2024-03-04T10:00:04,A2,NEW,b3,BUY,LIMIT,DAY,57.21,1,,CEA22",  # 57.20 is CEA22's top
        "2024-03-04T10:00:05,A2,NEW,a3,BUY,LIMIT,DAY,57.21,1,,CEA21",  # fine in CEA21's band
        "2024-03-04T10:00:06,A2,NEW,x1,BUY,LIMIT,DAY,60.00,1,,CEA23",  # unknown instrument
        "2024-03-04T10:00:07,A2,NEW,x2,BUY,LIMIT,DAY,60.00,1,,",  # no instrument
        "2024-03-04T10:00:08,A1,CANCEL,a1,,,,,,,",  # CANCEL needs no instrument
    ]
    path = tmp_path / "orders.csv"
    path.write_text("\n".join([HEADER + ",instrument"] + rows) + "\n", encoding="utf-8")
    outs = {}
    for engine in ("numba", "reference"):
        r = invoke("match", path, "--prior-close", "CEA21=60.00", "--prior-close",
                   "CEA22=52.00", "--out", tmp_path / engine, "--engine", engine, "--check")
        assert r.exit_code == 0, r.output
        outs[engine] = read_outputs(tmp_path / engine)
    assert outs["numba"] == outs["reference"]
    assert_headers(outs["numba"], ",instrument")
    files = {k: v.decode() for k, v in outs["numba"].items()}
    assert files["trades"].splitlines()[1:] == [
        "1,2024-03-04T10:00:02.000000,LISTED,60.00,30,a2,a1,A2,A1,BUY,CEA21",
        "2,2024-03-04T10:00:03.000000,LISTED,52.00,40,b2,b1,A2,A1,BUY,CEA22",
    ]
    assert files["rejects"].splitlines()[1:] == [
        "5,NEW,b3,PRICE_OUTSIDE_BAND", "7,NEW,x1,MALFORMED", "8,NEW,x2,MALFORMED"]
    assert files["orders"].splitlines()[1:] == [
        "a1,A1,LISTED,SELL,CANCELLED,USER,30,0,CEA21",
        "b1,A1,LISTED,SELL,RESTING,,40,60,CEA22",
        "a2,A2,LISTED,BUY,FILLED,,30,0,CEA21",
        "b2,A2,LISTED,BUY,FILLED,,40,0,CEA22",
        "a3,A2,LISTED,BUY,RESTING,,0,1,CEA21",
    ]
    assert files["days"].splitlines()[1:] == [
        "2024-03-04,60.00,60.00,30,0,1800.00,0.00,CEA21",
        "2024-03-04,52.00,52.00,40,0,2080.00,0.00,CEA22",
    ]


def test_several_prior_closes_need_an_instrument_column(tmp_path):
    r = invoke("match", EXAMPLE, "--prior-close", "CEA21=60.00", "--prior-close",
               "CEA22=52.00", "--out", tmp_path / "o")
    assert_clean_error(r.exit_code, r.stdout, r.stderr, "instrument column")
    r = invoke("match", EXAMPLE, "--prior-close", "X=60.00", "--prior-close", "X=61.00",
               "--out", tmp_path / "o")
    assert_clean_error(r.exit_code, r.stdout, r.stderr, "twice")
    assert not (tmp_path / "o").exists()


def test_engines_byte_identical_on_a_generated_file_with_instruments(tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text(generated_order_file(9, 2500, ("CEA21", "CEA22")), encoding="utf-8")
    outputs = {}
    for engine in ("reference", "numba"):
        proc_args = ("match", orders, "--prior-close", "CEA21=60.00", "--prior-close",
                     "CEA22=60.05", "--out", tmp_path / engine, "--engine", engine)
        r = invoke(*proc_args)
        assert r.exit_code == 0, r.output
        outputs[engine] = read_outputs(tmp_path / engine)
    assert outputs["reference"] == outputs["numba"]
    trades = outputs["numba"]["trades"].decode().splitlines()[1:]
    assert {ln.rsplit(",", 1)[1] for ln in trades} == {"CEA21", "CEA22"}
