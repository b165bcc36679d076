"""``sim.realism`` and ``cea realism``: the stylized facts on hand-made series, the real
periods against figures computed here from the CSV, a short simulation through ``report``,
the distance, the command's output and errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from sim import realism as R
from sim.history import DATA
from sim.realism import MarketDay, RealismError, facts_from_days

from cea import realism_cmd
from cea.cli import app
from tests.test_cli import invoke

if not any(c.name == "realism" for c in app.registered_commands):
    realism_cmd.register(app)  # until cea.cli registers it


def day(date, close, listed=5_000, block=0, listed_turnover=None, block_turnover=0,
        high=None, low=None, gap=False) -> MarketDay:
    if listed_turnover is None:
        listed_turnover = listed * (close or 0)
    return MarketDay(date, close, high, low, listed, block, listed_turnover, block_turnover,
                     gap)


DATES = ["2024-06-03", "2024-06-04", "2024-06-05", "2024-06-06", "2024-06-07", "2024-06-11"]


# ---------------------------------------------------------------------- hand-made series

def test_alternating_closes_give_the_known_std_and_autocorrelation():
    # ln returns +a, -a, +a, -a with a = ln 1.1: mean 0, sample std a·sqrt(4/3),
    # lag-1 autocorrelation (3 pairs of −a²) / (4 a²) = −0.75, lag 2 (2 pairs of +a²) 0.5
    days = [day(d, c) for d, c in zip(DATES, [10000, 11000, 10000, 11000, 10000])]
    f = facts_from_days(days)
    a = math.log(1.1)
    assert f.returns == 4
    assert f.return_std_pct == pytest.approx(100 * a * math.sqrt(4 / 3), rel=1e-12)
    assert f.return_autocorr_lag1 == pytest.approx(-0.75, abs=1e-12)
    assert f.return_acf[1] == pytest.approx(0.5, abs=1e-12)
    assert f.return_acf[4:] == [None] * 6  # no pair 5 or more days apart
    # every absolute return is a: no variation, no autocorrelation defined
    assert f.abs_return_autocorr_lag1 is None and f.abs_return_acf == [None] * 10
    assert f.last_close_fen == 10000 and f.days == 5


def test_a_gap_or_a_day_without_a_close_is_not_bridged():
    days = [day(DATES[0], 10000), day(DATES[1], 11000),
            day(DATES[2], 20000, gap=True), day(DATES[3], 22000)]
    assert R.return_runs(days) == [[math.log(1.1)], [math.log(1.1)]]
    f = facts_from_days(days)
    assert f.returns == 2 and f.return_std_pct == 0.0  # the jump 110 -> 200 is not a return
    assert f.return_autocorr_lag1 is None  # no pair within a run
    days = [day(DATES[0], 10000), day(DATES[1], None), day(DATES[2], 11000),
            day(DATES[3], 12100)]
    assert R.return_runs(days) == [[math.log(1.1)]]
    assert facts_from_days(days).last_close_fen == 12100


def test_autocorrelation_pairs_only_within_runs():
    # mean 0, Σx² = 4; lag-1 pairs (1,-1) and (1,-1): -2 / 4
    assert R.autocorrelation([[1.0, -1.0], [1.0, -1.0]], 1) == -0.5
    assert R.autocorrelation([[1.0], [2.0]], 1) is None
    assert R.autocorrelation([], 1) is None


def test_nov_dec_share_per_year_and_over_the_period():
    days = [day("2023-10-09", 6000, listed=100, block=200),  # 300 t
            day("2023-11-01", 6000, listed=100),
            day("2023-12-01", 6000, listed=0, block=100),
            day("2024-06-03", 6000, listed=150),
            day("2024-11-05", 6000, listed=50)]
    f = facts_from_days(days)
    assert f.nov_dec_volume_share_by_year == {"2023": 40.0, "2024": 25.0}
    assert f.nov_dec_volume_share_pct == pytest.approx(100 * 250 / 700)
    assert R.nov_dec_shares([day("2024-11-05", 6000, listed=0)]) == (None, {})


def test_block_share_discount_volume_spread_quiet_days_range_and_totals():
    days = [
        # block 100,000 t at 90.00 against a close of 100.00: −10 %
        day("2024-06-03", 10000, listed=999, block=100_000, block_turnover=100_000 * 9000,
            high=10100, low=9900),
        # block 300,000 t at the close: 0 %
        day("2024-06-04", 10000, listed=99_000, block=300_000,
            block_turnover=300_000 * 10000, high=10300, low=10000),
        day("2024-06-05", 10000, listed=0, high=None, low=None),
    ]
    f = facts_from_days(days)
    assert f.block_share_pct == pytest.approx(100 * 400_000 / 499_999)
    assert f.block_vwap_vs_close_pct == pytest.approx(-2.5)  # (−10 × 1 + 0 × 3) / 4
    assert [(d, round(p, 9), v) for d, p, v in R.daily_block_premiums(days)] == \
        [("2024-06-03", -10.0, 100_000), ("2024-06-04", 0.0, 300_000)]
    # log10 of 100,999 and 399,000 t; the day without volume is left out
    logs = [math.log10(100_999), math.log10(399_000)]
    assert f.log10_volume_std == pytest.approx(abs(logs[0] - logs[1]) / math.sqrt(2))
    assert f.quiet_listed_days == 2 and f.quiet_listed_days_pct == pytest.approx(200 / 3)
    assert f.range_pct == pytest.approx((2.0 + 3.0) / 2) and f.range_days == 2
    assert f.volume_t == 499_999
    turnover = 999 * 10000 + 100_000 * 9000 + 99_000 * 10000 + 300_000 * 10000
    assert f.turnover_fen == turnover
    assert f.average_price_fen == (2 * turnover + 499_999) // (2 * 499_999)
    assert f.average_daily_volume_t == 166_666  # 499,999 / 3 = 166,666.33
    no_block = facts_from_days([day("2024-06-03", 10000)])
    assert no_block.block_vwap_vs_close_pct is None and no_block.block_share_pct == 0.0
    assert no_block.return_std_pct is None and no_block.returns == 0
    with pytest.raises(RealismError):
        facts_from_days([])


# ---------------------------------------------------------------------- the real periods

def read_csv_rows(first: str, last: str) -> list[dict]:
    with open(DATA, encoding="utf-8-sig") as fh:
        return [r for r in csv.DictReader(fh) if first <= r["date"] <= last]


def fen(text: str) -> int:
    whole, _, cents = text.partition(".")
    return int(whole) * 100 + int(cents.ljust(2, "0"))


def independent_closes(rows: list[dict]) -> list[int]:
    """The published close while listed, else listed turnover / listed volume half up."""
    out = []
    for r in rows:
        if r["price_basis"] == "listed":
            out.append(fen(r["close"]))
        else:
            t, v = fen(r["listed_turnover_cny"]), int(r["listed_vol_t"])
            out.append((2 * t + v) // (2 * v))
    return out


def sample_std(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_the_named_periods_are_the_files_runs_without_gaps():
    with open(DATA, encoding="utf-8-sig") as fh:
        dates = [r["date"] for r in csv.DictReader(fh)]
    for name in R.MATCHED_PERIODS:
        first, last = R.REAL_PERIODS[name]
        assert first in dates and last in dates, name
        days = R.real_days(first, last)
        assert [d.gap_before for d in days].count(True) == 1  # the first day only
    assert R.REAL_PERIODS["all"] == (dates[0], dates[-1])
    # over the whole series the two gaps (and the first day) have no return into them
    assert R.real_facts(*R.REAL_PERIODS["all"]).returns == len(dates) - 3


def test_first_period_figures_match_the_csv():
    f = R.real_facts("2021-07-16", "2021-12-31")
    rows = read_csv_rows("2021-07-16", "2021-12-31")
    assert f.days == len(rows) == 114
    assert f.volume_t == sum(int(r["volume_t"]) for r in rows) == 178_789_350  # 179 Mt
    assert f.turnover_fen == sum(fen(r["turnover_cny"]) for r in rows) == 766_123_002_299
    assert f.average_price_fen == 4285  # 42.85 CNY/t
    assert f.last_close_fen == 5422
    closes = [fen(r["close"]) for r in rows]
    std = 100 * sample_std([math.log(b / a) for a, b in zip(closes, closes[1:])])
    assert f.return_std_pct == pytest.approx(std, rel=1e-12)
    assert round(f.return_std_pct, 2) == 2.60
    block = sum(int(r["block_vol_t"]) for r in rows)
    assert f.block_share_pct == pytest.approx(100 * block / 178_789_350)
    assert round(f.block_share_pct, 1) == 82.8
    ranged = [(fen(r["high"]) - fen(r["low"])) / fen(r["close"]) for r in rows if r["high"]]
    assert f.range_pct == pytest.approx(100 * sum(ranged) / len(ranged)) and f.range_days == 113
    nov_dec = sum(int(r["volume_t"]) for r in rows if r["date"][5:7] in ("11", "12"))
    assert f.nov_dec_volume_share_by_year == {"2021": pytest.approx(100 * nov_dec / 178_789_350)}
    assert f.quiet_listed_days == sum(1 for r in rows if int(r["listed_vol_t"]) < 1000)


@pytest.mark.parametrize("name", ["2022-2023", "2024"])
def test_later_periods_use_the_listed_vwap_in_the_composite_era(name):
    first, last = R.REAL_PERIODS[name]
    rows = read_csv_rows(first, last)
    f = R.real_facts(first, last)
    closes = independent_closes(rows)
    std = 100 * sample_std([math.log(b / a) for a, b in zip(closes, closes[1:])])
    assert f.return_std_pct == pytest.approx(std, rel=1e-12)
    assert f.last_close_fen == closes[-1]
    assert f.volume_t == sum(int(r["volume_t"]) for r in rows)
    # block tonnes at their daily VWAP against the day's close
    premium = sum(fen(r["block_turnover_cny"]) / c for r, c in zip(rows, closes)
                  if int(r["block_vol_t"]))
    blocks = sum(int(r["block_vol_t"]) for r in rows)
    assert f.block_vwap_vs_close_pct == pytest.approx(100 * (premium / blocks - 1))
    # high and low only from listed-basis days
    assert f.range_days == sum(1 for r in rows if r["price_basis"] == "listed" and r["high"])
    if name == "2024":
        assert f.range_pct is None and f.last_close_fen == 9793  # 11,395,448.00 / 116,368 t


# ---------------------------------------------------------------------- the distance

def test_distance_is_zero_on_itself_and_sums_the_scaled_misses():
    real = R.real_facts(*R.REAL_PERIODS["2024"])
    assert R.distance(real, real) == 0.0
    sim = R.MarketFacts(**{**real.__dict__, "return_std_pct": real.return_std_pct * 1.5,
                           "block_share_pct": real.block_share_pct - 20,
                           "return_autocorr_lag1": real.return_autocorr_lag1 + 0.1,
                           "block_vwap_vs_close_pct": None})
    terms = R.distance_terms(sim, real)
    assert terms["return_std_pct"] == pytest.approx(0.25)  # half again: (0.5)²
    assert terms["block_share_pct"] == pytest.approx(4.0)  # 20 points over 10
    assert terms["return_autocorr_lag1"] == pytest.approx(0.25)  # 0.1 over 0.2
    assert terms["block_vwap_vs_close_pct"] == 1.0  # missing in the simulation
    assert terms["range_pct"] == 0.0  # not defined for the real 2024
    assert R.distance(sim, real) == pytest.approx(sum(terms.values()))
    assert R.distance(sim, real, {"block_share_pct": 0.5}) == pytest.approx(
        sum(terms.values()) - 2.0)
    with pytest.raises(RealismError, match="no statistic spread"):
        R.distance(sim, real, {"spread": 1.0})


# ---------------------------------------------------------------------- a simulation

@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    """A short simulation inside the real 2024 period, written as cea simulate does."""
    from sim import simout
    from sim.simulate import simulate
    from tests.sim.test_simulate import small

    out = tmp_path_factory.mktemp("realism") / "sim"
    simout.write_tables(simulate(small(days=5, start="2024-11-04")), out)
    return out


def test_report_compares_a_simulation_with_the_overlapping_period(sim_dir):
    doc = R.report(sim_dir)
    assert doc["period"] == "2024"
    assert doc["window"]["first"] == "2024-11-04" and doc["window"]["last"] == "2024-11-08"
    assert doc["window"]["simulated_days"] == doc["window"]["real_days"] == 5
    assert doc == json.loads((sim_dir / "realism.json").read_text())
    assert doc["files"] == [R.JSON_NAME, *R.PLOT_NAMES]
    for name in R.PLOT_NAMES:
        assert (sim_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # the simulated side is days.csv's totals and trades.csv's listed high and low
    with open(sim_dir / "days.csv") as fh:
        days = list(csv.DictReader(fh))
    with open(sim_dir / "trades.csv") as fh:
        listed = [fen(t["price"]) for t in csv.DictReader(fh) if t["segment"] == "LISTED"
                  and t["time"].startswith("2024-11-04")]
    stats = doc["statistics"]
    assert stats["volume_t"]["simulated"] == sum(int(d["listed_volume"]) + int(d["block_volume"])
                                                 for d in days)
    # the published volume_t of 2024-11-04 .. 2024-11-08
    assert stats["volume_t"]["real"] == 621_166 + 2_274_030 + 601_405 + 813_062 + 2_798_318
    assert stats["days"] == {"simulated": 5, "real": 5, "ratio": 1.0}
    first = R.simulated_days(sim_dir)[0]
    assert (first.high, first.low) == (max(listed), min(listed))
    assert isinstance(stats["volume_t"]["simulated"], int)
    assert isinstance(stats["average_price_fen"]["real"], int)
    assert set(stats) == {s.name for s in R.STATISTICS}
    assert doc["distance"] == pytest.approx(sum(doc["distance_terms"].values()))


def test_report_against_a_period_the_run_does_not_reach(sim_dir, tmp_path):
    doc = R.report(sim_dir, "first-period", out=tmp_path, plots=False)
    assert doc["window"]["first"] is None and doc["window"]["real_days"] == 114
    assert doc["files"] == [R.JSON_NAME] and (tmp_path / R.JSON_NAME).exists()
    assert doc["statistics"]["volume_t"]["real"] == 178_789_350


def fake_sim_dir(path: Path, dates: list[str]) -> Path:
    """A directory shaped like cea simulate's output, with days.csv and trades.csv only."""
    from engine.csvfile import write_csv
    from sim import simout

    path.mkdir(parents=True)
    write_csv(path / "days.csv", [list(simout.DAY_COLUMNS)] + [
        [d, "70.00", "70.00", 1000, 0, "70000.00", "0.00"] for d in dates])
    write_csv(path / "trades.csv", [list(R.TRADE_COLUMNS)] + [
        [i + 1, f"{d}T09:30:00.000000", "LISTED", "70.00", 1000, "b", "s", "A", "B", "BUY"]
        for i, d in enumerate(dates)])
    (path / "summary.json").write_text("{}\n")
    return path


def test_cli_prints_the_table_and_writes_the_files(sim_dir):
    r = invoke("realism", sim_dir, "--json-only")
    assert r.exit_code == 0, r.output
    assert "against the real period 2024" in r.output
    assert "return_std_pct" in r.output and "nov_dec_volume_share_pct" in r.output
    assert "distance" in r.output and "wrote 1 file into" in r.output
    r = invoke("realism", "--real", "first-period")
    assert r.exit_code == 0, r.output
    assert "178,789,350 t" in r.output and "42.85 CNY/t" in r.output and "2.60 %" in r.output
    assert "54.22 CNY/t" in r.output


def test_cli_errors_are_one_line(tmp_path):
    early = fake_sim_dir(tmp_path / "early", ["2024-01-02", "2024-01-03"])
    (tmp_path / "empty").mkdir()
    replay_like = tmp_path / "replay"
    replay_like.mkdir()
    (replay_like / "summary.json").write_text("{}\n")
    (replay_like / "days.csv").write_text("date,basis\n2024-01-02,listed\n")
    no_trades = fake_sim_dir(tmp_path / "notrades", ["2024-06-03"])
    (no_trades / "trades.csv").unlink()
    cases = [
        ((early,), "does not overlap the real data"),
        ((tmp_path / "missing",), "no such directory"),
        ((tmp_path / "empty",), "not a cea simulate or cea replay output directory"),
        ((replay_like,), "neither cea simulate's nor cea replay's"),
        ((no_trades,), "no trades.csv"),
        ((early, "--period", "2025"), "no real period '2025'"),
        (("--real", "2019"), "no real period '2019'"),
        ((early, "--real", "2024"), "not both"),
        ((), "give a cea simulate output directory"),
    ]
    for args, needle in cases:
        r = invoke("realism", *args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and r.output.count("\n") == 1, (args, r.output)
    assert not (early / R.JSON_NAME).exists()
    # with a period named, the run is compared whole against it
    r = invoke("realism", early, "--period", "2024", "--json-only")
    assert r.exit_code == 0, r.output
    assert "the whole run and period" in r.output and (early / R.JSON_NAME).exists()
