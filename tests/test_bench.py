"""The benchmarks, small, in the suite: ``cea bench core`` and ``cea bench ledger`` over a few
thousand commands with their verdicts that the implementations agree (and a disagreement made
on purpose failing the run), the benchmark streams' doctests, and ``bench.gateway``'s checks
of the replies (every order accepted, once) against a real ``cea serve``.

No figure of speed is asserted anywhere here: speed goals live in the benchmarks' own output
(their ``targets``), not in the tests.
"""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

from gateway import protocol as P

from .pgserver import in_ci
from .test_cli import invoke


# ---------------------------------------------------------------------------- streams

def test_bench_stream_doctests():
    """bench/ is not among pytest's testpaths: its stream module's examples run here."""
    import bench.streams

    failed, tried = doctest.testmod(bench.streams, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failed == 0


def test_sessions_stream_crosses_sessions_days_segments_and_band_edges():
    from bench.streams import (
        BAND_LOWER, BAND_UPPER, BLOCK_BAND_LOWER, BLOCK_BAND_UPPER, SESSION_DATES,
        generate_session_stream, generate_stream, session_stats,
    )
    from engine.codes import Action, OrderType

    n = 30_000
    cmds = generate_session_stream(n, seed=3)
    s = session_stats(cmds)
    assert list(s["per_day"]) == list(SESSION_DATES)
    assert all(v > 0 for v in s["phases"].values()), s["phases"]
    assert sum(s["phases"].values()) == n
    assert (np.diff(cmds["ts"]) > 0).all()
    new = cmds["action"] == Action.NEW
    limit = new & (cmds["type"] == OrderType.LIMIT)
    qty, price = cmds["qty"], cmds["price"]
    assert (new & (qty >= 100_000)).sum() > 0 and (new & (qty == 99_999)).sum() > 0
    for edge in (BAND_LOWER, BAND_LOWER - 1, BAND_UPPER, BAND_UPPER + 1):
        assert (limit & (qty < 100_000) & (price == edge)).sum() > 0, edge
    for edge in (BLOCK_BAND_LOWER, BLOCK_BAND_LOWER - 1, BLOCK_BAND_UPPER, BLOCK_BAND_UPPER + 1):
        assert (limit & (qty >= 100_000) & (price == edge)).sum() > 0, edge
    # the same commands as the morning stream, re-timed and re-shaped: actions, accounts and
    # targets unchanged
    base = generate_stream(n, seed=3)
    for field in ("action", "order", "account", "side", "type", "tif", "stp"):
        assert np.array_equal(cmds[field], base[field]), field


# ---------------------------------------------------------------------------- cea bench core

def _json(path) -> dict:
    return json.loads(path.read_text())


def test_bench_core_small_run_agrees_on_both_streams(tmp_path):
    from bench.streams import SESSION_DATES

    out = tmp_path / "core.json"
    result = invoke("bench", "core", "--orders", "3000", "--json", out)
    assert result.exit_code == 0, result.output
    r = _json(out)
    assert r["all_identical"] and all(r["identical"].values()), r["identical"]
    assert r["mismatch"] is None and r["trades"] > 0
    assert "identical results: yes" in result.output
    s = r["sessions"]
    assert s["all_identical"] and all(s["identical"].values()), s["identical"]
    assert "identical results (sessions stream): yes" in result.output
    # what the sessions stream reaches: three days closed, each opening at the last close;
    # both segments trade; orders expire at 15:00; closed markets and bands reject
    days = s["days_closed"]
    assert [d["date"] for d in days] == list(SESSION_DATES)
    assert all(b["prior_close"] == a["close"] for a, b in zip(days, days[1:]))
    assert s["trades_by_segment"]["LISTED"] > 0 and s["trades_by_segment"]["BLOCK"] > 0
    assert s["outcome"]["events_by_kind"]["EXPIRED"] > 0
    assert {"MARKET_CLOSED", "PRICE_OUTSIDE_BAND"} <= set(s["outcome"]["rejects_by_reason"])


def test_bench_core_fails_when_the_books_disagree(tmp_path, monkeypatch):
    """A reference book that loses the last event row of every call: both streams' verdicts
    say NO, the JSON says so, and the command exits 1."""
    from engine.reference.book import ReferenceBook

    submit = ReferenceBook.submit_batch

    def loses_a_row(self, cmds, copy=True):
        return submit(self, cmds, copy)[:-1]

    monkeypatch.setattr(ReferenceBook, "submit_batch", loses_a_row)
    out = tmp_path / "core.json"
    result = invoke("bench", "core", "--orders", "2000", "--json", out)
    assert result.exit_code == 1, result.output
    assert "identical results: NO" in result.output
    assert "identical results (sessions stream): NO" in result.output
    r = _json(out)
    assert not r["all_identical"] and not r["identical"]["reference_events"]
    assert r["mismatch"]["rows"]["reference"] + 1 == r["mismatch"]["rows"]["numba_batch"]
    assert not r["sessions"]["all_identical"]
    assert not r["sessions"]["identical"]["reference_events"]


# ---------------------------------------------------------------------------- cea bench ledger

def test_bench_ledger_small_run(tmp_path):
    """With every account funded the risk stage changes no event (the benchmark raises if it
    does) and both ledgers reconcile after settling every trade (it raises if not)."""
    out = tmp_path / "ledger.json"
    result = invoke("bench", "ledger", "--orders", "3000", "--batch", "500", "--json", out)
    assert result.exit_code == 0, result.output
    r = _json(out)
    assert r["trades"] > 0 and r["sqlite_trades_per_s"] > 0
    if in_ci():
        assert r["postgres_trades_per_s"] is not None, r["postgres_note"]
    else:
        assert r["postgres_trades_per_s"] is not None or r["postgres_note"]


def test_bench_ledger_fails_when_reservation_changes_the_events(tmp_path, monkeypatch):
    """Accounts too poor to trade: the risk stage rejects, the runs with and without it no
    longer match, and the benchmark stops instead of reporting figures."""
    import bench.ledger
    from engine.accounts import Accounts, RiskConfig
    from engine.codes import AccountType

    def poor() -> Accounts:
        acc = Accounts(1, RiskConfig(), capacity=bench.ledger.ACCOUNTS)
        for a in range(bench.ledger.ACCOUNTS):
            acc.open_account(AccountType.COVERED_ENTITY, a)
            acc.deposit(a, 100)
        return acc

    monkeypatch.setattr(bench.ledger, "_accounts", poor)
    result = invoke("bench", "ledger", "--orders", "2000", "--json", tmp_path / "l.json")
    assert result.exit_code != 0
    assert isinstance(result.exception, RuntimeError)
    assert "reservation changed the events" in str(result.exception)
    assert not (tmp_path / "l.json").exists()


# ---------------------------------------------------------------------------- bench.gateway

def _report(index: int, kind: P.ExecKind, reason: int = 0) -> bytes:
    return P.encode(P.ExecutionReport(kind, str(index), 5, 0, 0, 1, 5900, 1, 0, 1, reason))


def test_reply_check_counts_what_each_order_got():
    """Orders 0..5: 0, 1, 2 and 4 accepted (1 twice, 2 then filled: unexpected for a resting
    buy), 5 rejected, 3 never answered; split over chunks mid-frame."""
    from bench.gateway import _first_reports

    data = b"".join([_report(0, P.ExecKind.ACCEPTED), _report(1, P.ExecKind.ACCEPTED),
                     _report(2, P.ExecKind.ACCEPTED), _report(1, P.ExecKind.ACCEPTED),
                     _report(5, P.ExecKind.REJECTED, 7), P.encode(P.Heartbeat(9)),
                     _report(2, P.ExecKind.FILL), _report(4, P.ExecKind.ACCEPTED)])
    chunks = [(data[:50], 1.0), (data[50:200], 2.0), (data[200:], 3.0)]
    index, when, r = _first_reports(chunks, False, 6)
    assert index.tolist() == [0, 1, 2, 4, 5]
    assert r == {"orders": 6, "accepted": 4, "rejected": 1,
                 "rejected_by_reason": {"PRICE_OUTSIDE_BAND": 1}, "unanswered": 1,
                 "duplicates": 1, "unexpected": 1, "unexpected_by_kind": {"FILL": 1},
                 "ok": False}
    good = b"".join(_report(i, P.ExecKind.ACCEPTED) for i in range(6))
    assert _first_reports([(good, 1.0)], False, 6)[2]["ok"]
    assert _first_reports([], False, 6)[2]["unanswered"] == 6


def test_gateway_benchmark_fails_a_run_with_bad_replies(monkeypatch):
    """``run_gateway_benchmark``'s verdict over its runs, the servers and clients replaced by
    stand-ins: one open-loop run with a rejected order stops it with exit status 1."""
    import contextlib

    import bench.gateway as G

    lat = {"p50_us": 1, "p90_us": 1, "p99_us": 1, "p999_us": 1, "max_us": 1, "received": 2,
           "orders": 2, "send_lag_p99_us": 0.0}
    ok = {"orders": 2, "accepted": 2, "rejected": 0, "rejected_by_reason": {},
          "unanswered": 0, "duplicates": 0, "unexpected": 0, "unexpected_by_kind": {},
          "ok": True}
    bad = {**ok, "accepted": 1, "rejected": 1, "rejected_by_reason": {"THROTTLED": 1},
           "ok": False}
    answers = iter([ok, ok, bad])  # echo server, cea serve fsync on, fsync off

    @contextlib.contextmanager
    def server(*args, **kw):
        yield 1, None

    def pipelined(port, orders, server_pid=None, msgpack=False):
        return {"orders": orders, "seconds": 1.0, "orders_per_s": orders, "answered": orders,
                "accepted": orders, "rejected_orders": 0, "unanswered": 0,
                "extra_replies": 0, "replies_ok": True, "rejected": {},
                "client_cpu_us_per_order": 1.0, "client_cpu_share": 0.1,
                "client_ceiling_orders_per_s": 1}

    disk = {"samples": 1, "p50_us": 1, "p90_us": 1, "p99_us": 1, "max_us": 1}
    monkeypatch.setattr(G, "disk_sync_latency", lambda root: {"append": disk, "journal": disk})
    monkeypatch.setattr(G, "running_server", server)
    monkeypatch.setattr(G, "bare_server", server)
    monkeypatch.setattr(G, "pipelined_throughput", pipelined)
    monkeypatch.setattr(G, "open_loop_latency",
                        lambda *a, **kw: {**lat, "replies": next(answers)})
    monkeypatch.setattr(G, "cpus_busy", lambda: 0.0)
    lines: list[str] = []
    with pytest.raises(SystemExit, match="rtt_fsync_off: 1 of 2 orders accepted, 1 rejected"):
        G.run_gateway_benchmark(orders=4, rate=2, seconds=1.0, echo=lines.append, pin=False)
    assert any("replies: NOT as they should be in rtt_fsync_off" in line for line in lines)


@pytest.fixture(scope="module")
def gateway_port(tmp_path_factory):
    from bench.gateway import running_server

    with running_server(True, tmp_path_factory.mktemp("gw")) as (port, _pid):
        yield port


def test_gateway_pipelined_run_checks_every_reply(gateway_port):
    from bench.gateway import pipelined_throughput

    run = pipelined_throughput(gateway_port, 2000)
    assert (run["answered"], run["accepted"], run["rejected_orders"], run["unanswered"],
            run["extra_replies"], run["replies_ok"]) == (2000, 2000, 0, 0, 0, True), run
    assert run["rejected"] == {}


def test_gateway_open_loop_run_checks_every_reply(gateway_port):
    from bench.gateway import open_loop_latency

    run = open_loop_latency(gateway_port, 400, 1.0)
    assert run["replies"]["ok"], run["replies"]
    assert run["replies"]["accepted"] == run["orders"] == run["received"] == 400


def test_gateway_runs_flag_rejected_orders(tmp_path, monkeypatch):
    """A buyer without cash: the pipelined run counts its buys rejected apart from the
    accepted sells, the open-loop run every order rejected; both flag the run."""
    import bench.gateway as G

    monkeypatch.setattr(G, "ACCOUNTS_CSV", "account,type,cash,CEA\n"
                        "A001,COVERED_ENTITY,10.00,0\nA002,COVERED_ENTITY,0.00,1000000000\n")
    with G.running_server(True, tmp_path) as (port, _pid):
        run = G.pipelined_throughput(port, 1000)
        lat = G.open_loop_latency(port, 200, 1.0)
    assert not run["replies_ok"] and run["answered"] == 1000
    assert run["rejected_orders"] == run["rejected"]["INSUFFICIENT_FUNDS"] == 500
    assert run["accepted"] == 500  # the sells
    replies = lat["replies"]
    assert not replies["ok"]
    assert (replies["accepted"], replies["rejected"], replies["unanswered"]) == (0, 200, 0)
    assert replies["rejected_by_reason"] == {"INSUFFICIENT_FUNDS": 200}


def test_bench_fix_small_run(tmp_path):
    """``cea bench fix``: both ports measured in one run, every FIX order answered."""
    out = tmp_path / "fix.json"
    result = invoke("bench", "fix", "--orders", "2000", "--rate", "1000", "--seconds", "0.5",
                    "--json", out)
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["fix_rtt"]["answered"] == figures["fix_rtt"]["orders"] == 500
    for key in ("native_orders_per_s", "fix_orders_per_s", "native_rtt_p50_us",
                "fix_rtt_p99_us", "ratio_throughput", "ratio_rtt_p50", "ratio_rtt_p99"):
        assert figures[key] > 0, key
    assert "FIX pipelined, fsync on" in result.output
