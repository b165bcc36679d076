"""``cea serve`` and ``cea journal`` from the command line: start, stop, recover, verify,
replay, and bad options answered with one clear line."""

from __future__ import annotations

import asyncio
import csv
import re
import signal

from engine.codes import Side
from gateway.client import Client
from gateway.protocol import ExecKind

from ..test_cli import invoke
from ..procs import kill_group
from .support import start_server_process


def _serve(data_dir, *args):
    return start_server_process(data_dir, "--start", "2024-03-04", *args)


def _stop(proc) -> str:
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)  # what is left of its process group, if anything
    assert proc.returncode == 0, err
    return out


def test_serve_trade_stop_recover_verify_replay(tmp_path):
    data = tmp_path / "data"
    proc, port, out = _serve(data)
    # no --credentials-out: the generated tokens are printed once and stored nowhere
    assert "new exchange: 4 accounts" in out and "shown this once and stored nowhere" in out
    tokens = dict(re.findall(r"^cea serve:   (\S+) (\S+)$", out, re.M))
    assert set(tokens) == {"A001", "A002", "A003", "A004", "OPS"}
    assert not (data / "credentials.csv").exists()
    for path in data.iterdir():
        if path.is_file():
            assert not any(t.encode() in path.read_bytes() for t in tokens.values()), path

    async def trade():
        async with Client("127.0.0.1", port, "A001", tokens["A001"]) as a, \
                Client("127.0.0.1", port, "A002", tokens["A002"]) as b:
            assert (await a.place("b1", "CEA", Side.BUY, 500, 6010)).exec == ExecKind.ACCEPTED
            assert (await b.place("s1", "CEA", Side.SELL, 200, 6000)).exec == ExecKind.ACCEPTED

    try:
        asyncio.run(trade())
    finally:
        _stop(proc)
    proc, port, out = _serve(data, "--recover")
    assert re.search(r"recovered \d+ journal records .* state hash [0-9a-f]{64}", out), out
    assert "logon tokens" not in out  # tokens are made once
    _stop(proc)

    result = invoke("journal", "verify", data)
    assert result.exit_code == 0, result.output
    assert "1 trades" in result.output and result.output.rstrip().endswith("ok")
    trades = tmp_path / "trades.csv"
    result = invoke("journal", "replay", data, "--trades", trades)
    assert result.exit_code == 0 and "1 trades, state hash" in result.output, result.output
    rows = list(csv.reader(trades.read_text().splitlines()))
    assert rows[0][:3] == ["trade_id", "time", "instrument"]
    assert rows[1][4:10] == ["60.10", "200", "A001", "b1", "A002", "s1"]


def test_bad_options_and_missing_journal(tmp_path):
    for args, message in (
            (["serve", "--fsync", "maybe"], "--fsync must be on or off"),
            (["serve", "--clock", "moon"], "--clock must be sim or wall"),
            (["serve", "--start", "yesterday", "--data-dir", tmp_path / "x"], "--start"),
            (["serve", "--recover", "--data-dir", tmp_path / "empty", "--port", "0"],
             "no journal"),
            (["serve", "--accounts", tmp_path / "nope.csv", "--data-dir", tmp_path / "y"],
             "cannot read accounts file"),
            (["journal", "verify", tmp_path / "nothing"], "no journal here"),
            (["journal", "replay", tmp_path / "nothing"], "no journal here")):
        result = invoke(*args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert message in result.output.lower() or message in result.output, (args, result.output)
        assert "Traceback" not in result.output
