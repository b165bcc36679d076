"""``cea replay``: history through the engine; closes, extremes and volumes as published,
impossible days flagged, days after a gap started from their own open."""

from __future__ import annotations

import json

import pytest

from sim.history import HistoryError, load_history
from sim.replay import plan_day, replay

from ..test_cli import invoke

HEADER = ("date,open,high,low,close,volume_t,turnover_cny,listed_vol_t,listed_turnover_cny,"
          "block_vol_t,block_turnover_cny,cum_vol_t,cum_turnover_cny,source,price_basis,flags\n")


def test_short_range_reproduces_history():
    days = [d for d in load_history() if "2021-07-19" <= d.date <= "2021-09-30"]
    result = replay(days)
    s = result.summary()
    assert s["days"] == len(days) == s["feasible_days"] == s["within_one_tick"]
    assert s["volumes_exact"] == len(days) and s["rmse_close"] == 0
    for r in result.rows:  # the engine's own close (listed VWAP) is the published close
        assert (r.replayed_open, r.replayed_high, r.replayed_low, r.replayed_close) == (
            r.hist_open, r.hist_high, r.hist_low, r.hist_close)
        assert r.replayed_listed_volume == r.hist_listed_volume
        assert r.replayed_block_volume == r.hist_block_volume


def test_whole_series_flags_only_impossible_days():
    s = replay(load_history()).summary()
    assert s["days"] == 656 and s["within_one_tick"] == s["feasible_days"] >= 650
    assert "2023-04-11" in s["infeasible"]  # a published close of 10.00: a data error
    assert s["composite_days"] == 234 and s["days_after_gap"] == 3


def test_move_beyond_the_band_is_flagged_and_gap_day_starts_from_its_open(tmp_path):
    csv_path = tmp_path / "h.csv"
    csv_path.write_text(HEADER +
                        "2024-03-04,60.00,60.50,59.90,60.20,1000,60200.00,1000,60200.00,0,0.00,,,x,listed,\n"
                        "2024-03-05,67.00,67.00,66.50,66.80,500,33400.00,500,33400.00,0,0.00,,,x,listed,\n"
                        "2024-03-08,70.00,71.00,69.00,70.00,300,21000.00,300,21000.00,0,0.00,,,x,listed,\n")
    days = load_history(csv_path)
    assert [d.gap_before for d in days] == [True, False, True]
    rows = replay(days).rows
    assert rows[1].feasible is False and "outside the band" in rows[1].reason  # 67.00 > 66.22
    assert rows[1].replayed_listed_volume == 0  # flagged, not faked
    assert rows[2].prior_close == 7000 and rows[2].feasible  # after the gap: its own open
    assert rows[2].replayed_close == 7000


def test_plan_reaches_the_turnover_exactly_and_keeps_orders_listed():
    day = load_history()[1]  # 2021-07-19
    plan = plan_day(day, 5123)
    assert plan.feasible and plan.listed[0] == (5280, 1)
    assert sum(q for _, q in plan.listed) == day.listed_volume
    assert sum(p * q for p, q in plan.listed) == day.listed_turnover
    assert all(q < 100_000 for _, q in plan.listed)


def test_bad_history_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("date,close\n2024-03-04,60\n")
    with pytest.raises(HistoryError, match="header"):
        load_history(bad)
    bad.write_text(HEADER + "2024-03-04,60.00,60.50,59.90,sixty,1,1,1,1,0,0,,,x,listed,\n")
    with pytest.raises(HistoryError, match="line 2: close"):
        load_history(bad)


def test_cli_replay(tmp_path):
    out = tmp_path / "out"
    result = invoke("replay", "--from", "2021-07-19", "--to", "2021-07-30", "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["days"] == 10 == summary["within_one_tick"]
    assert set(summary) >= {"days", "feasible_days", "within_one_tick", "rmse_close", "seconds"}
    assert (out / "days.csv").read_text().startswith("date,basis,gap_before")
    for plot in ("path.png", "volume.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for args in (["replay", "--from", "July"], ["replay", "--data", tmp_path / "none.csv"],
                 ["replay", "--from", "2030-01-01", "--out", out]):
        result = invoke(*args)
        assert result.exit_code == 2 and "cea: error:" in result.output, result.output
