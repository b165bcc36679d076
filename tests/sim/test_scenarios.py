"""The named scenarios and the behaviour behind them (issue 19).

- ``2024`` over seeds 1-5 does the same against 2024-05-24..2024-12-31 (the real series'
  part of that year), in bands of the same kind: the volume a year's larger imbalance
  brings, the November-December block rush, and the day-to-day reversal and calm/turbulent
  spells of the real daily closes;
- ``first-period`` over seeds 1-5 lands, in its medians, inside the issue's bands around the
  real first compliance period (volume, turnover, average price, last close, the year-end
  rush, the block share and discount, daily volatility, autocorrelation, uneven volume),
  with its two-year obligation, covered entities only, and a surrender on the deadline;
- the same seed gives byte-identical outputs;
- every new mechanism is off by default: the default configuration draws and trades exactly
  as before (its checksum is pinned by tests/sim/test_simulate.py);
- scenario files layer under ``--config``, and bad names are one-line errors.
"""

from __future__ import annotations

import json
import statistics

import pytest

from sim import agents as A
from sim.calibrate import simulate_point, target
from sim.realism import facts_from_days, period_dates, real_facts, simulated_days
from sim.simout import run
from sim.simulate import SimConfig, SimConfigError, load_config, scenario_names

from ..test_cli import invoke

SEEDS = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def first_period(tmp_path_factory):
    """Five seeds of the first-period scenario, written out: (seed, directory, result)."""
    root = tmp_path_factory.mktemp("first-period")
    out = []
    for seed in SEEDS:
        cfg = load_config(scenario="first-period", seed=seed)
        result, _ = run(cfg, root / str(seed))
        out.append((seed, root / str(seed), result))
    return out


def test_scenarios_are_shipped():
    assert {"first-period", "2024"} <= set(scenario_names())
    cfg = load_config(scenario="first-period")
    assert (cfg.start, cfg.days, cfg.prior_close, cfg.deadline) == (
        "2021-07-16", 114, "48.00", "2021-12-31")
    assert cfg.admitted == ["COVERED_ENTITY"]
    pop = cfg.population
    assert pop.market_makers == pop.noise_traders == pop.block_traders == 0
    assert load_config(scenario="2024").deadline == "2024-12-31"


def test_first_period_within_the_issue_bands(first_period):
    real = real_facts(*period_dates("first-period"))
    facts = [facts_from_days(simulated_days(d)) for _, d, _ in first_period]

    def median(name):
        return statistics.median(getattr(f, name) for f in facts)

    assert 0.75 * real.volume_t <= median("volume_t") <= 1.25 * real.volume_t
    assert 0.75 * real.turnover_fen <= median("turnover_fen") <= 1.25 * real.turnover_fen
    assert 0.85 * 4285 <= median("average_price_fen") <= 1.15 * 4285
    assert 0.85 * 5422 <= median("last_close_fen") <= 1.15 * 5422
    assert median("nov_dec_volume_share_pct") >= 70
    assert 70 <= median("block_share_pct") <= 92
    assert median("block_vwap_vs_close_pct") < 0  # block trades under the close
    assert 0.6 * 2.60 <= median("return_std_pct") <= 1.6 * 2.60
    assert -0.35 <= median("return_autocorr_lag1") <= 0.25
    assert median("log10_volume_std") >= 0.8


@pytest.fixture(scope="module")
def year_2024():
    """The 2024 scenario's facts over seeds 1-5 (in process, no ledger, no files), and the
    real period's, both over the dates they share."""
    cfg = load_config(scenario="2024")
    window = target(cfg)
    return [simulate_point(cfg, {}, seed, window) for seed in SEEDS], window


def test_2024_within_bands(year_2024):
    facts, window = year_2024
    real = window.real
    assert (window.first, window.last) == ("2024-05-24", "2024-12-31")

    def median(name):
        return statistics.median(getattr(f, name) for f in facts)

    assert 0.75 * real.volume_t <= median("volume_t") <= 1.25 * real.volume_t
    assert 0.75 * real.turnover_fen <= median("turnover_fen") <= 1.25 * real.turnover_fen
    for name in ("average_price_fen", "last_close_fen"):
        assert 0.85 * getattr(real, name) <= median(name) <= 1.15 * getattr(real, name), name
    # 79 % of May-Dec's volume came in November and December; the first period's >= 70 %
    assert median("nov_dec_volume_share_pct") >= 65
    assert 70 <= median("block_share_pct") <= 92
    assert median("block_vwap_vs_close_pct") < 0
    assert 0.6 * real.return_std_pct <= median("return_std_pct") <= 1.6 * real.return_std_pct
    # the real closes reverse from day to day (-0.45) and cluster in calm and turbulent
    # spells (|return| autocorrelation +0.41)
    assert -0.6 <= median("return_autocorr_lag1") <= -0.15
    assert median("abs_return_autocorr_lag1") >= 0.15
    assert median("log10_volume_std") >= 0.6


def test_2024_obligation(year_2024):
    cfg = load_config(scenario="2024")
    assert cfg.population.imbalance_pct == 300 and cfg.admitted == ["COVERED_ENTITY"]


def test_day_mood_and_turbulence():
    p = {"activity_sigma": 0.0, "quiet_probability": 0.0, "quiet_activity": 0.05,
         "jump_probability": 0.0, "jump_pct": 0.0}
    import numpy as np

    # off: nothing drawn, the day's value is the fundamental
    rng = np.random.default_rng(1)
    c = A.day_conditions(p, rng, 6000)
    assert (c.value, c.scale, c.turbulence) == (6000, 1.0, 0.0)
    assert rng.random() == np.random.default_rng(1).random()
    # the mood moves today's value only; the fundamental it returns is unchanged
    on = p | {"mood_pct": 2.0}
    moods = [A.day_conditions(on, np.random.default_rng(s), 6000) for s in range(400)]
    assert all(c.fundamental == 6000 for c in moods)
    spread = statistics.pstdev(c.value / 6000 - 1 for c in moods)
    assert 0.017 < spread < 0.023
    # turbulence persists: an AR(1) of the given persistence, mean scale 1
    on = p | {"turbulence_sigma": 0.6, "turbulence_persistence": 0.9}
    rng, h, hs, scales = np.random.default_rng(7), 0.0, [], []
    for _ in range(4000):
        c = A.day_conditions(on, rng, 6000, h)
        h = c.turbulence
        hs.append(h)
        scales.append(c.scale)
    lag1 = np.corrcoef(hs[:-1], hs[1:])[0, 1]
    assert 0.85 < lag1 < 0.95 and 0.5 < statistics.pstdev(hs) < 0.7
    assert 0.9 < statistics.fmean(scales) < 1.1


def test_imbalance_scales_the_generated_year():
    base = load_config(scenario="2024", days=1)
    from sim.simulate import simulate
    import msgspec

    small = simulate(msgspec.structs.replace(base, ledger=False, population=msgspec.structs.replace(
        base.population, imbalance_pct=100))).population
    large = simulate(msgspec.structs.replace(base, ledger=False)).population
    assert 90_000_000 <= small["shortfall_t"] <= 96_000_000
    # (the year's obligation rules cap a few entities' gap: a little under 3 x 94 Mt)
    assert 240_000_000 <= large["shortfall_t"] <= 290_000_000
    assert large["surplus_t"] >= large["shortfall_t"]


def test_first_period_obligation_and_surrender(first_period):
    seed, directory, result = first_period[0]
    info = result.summary["population"]
    # two emission years (2019 and 2020) owed at once: about 188 Mt short across entities
    assert info["compliance_period"] == "2019-20"
    assert 170_000_000 <= info["shortfall_t"] <= 200_000_000
    assert {k: v for k, v in result.summary["agents"].items() if v} == {"COVERED_ENTITY": 2162}
    [row] = result.summary["compliance"]
    # the run ends on the deadline: the surrender happened (each entity compliant, partial
    # or short after it)
    assert row["deadline"] == "2021-12-31"
    assert row["compliant"] + row["partial"] + row["short"] == 2162
    assert (directory / "compliance").is_dir()


def test_same_seed_same_bytes(first_period, tmp_path):
    seed, directory, _ = first_period[0]
    run(load_config(scenario="first-period", seed=seed), tmp_path)
    for name in ("trades.csv", "days.csv", "commands.csv", "orders.csv"):
        assert (tmp_path / name).read_bytes() == (directory / name).read_bytes(), name


def test_mechanisms_are_off_by_default():
    cfg = SimConfig()
    ce = cfg.covered_entity
    assert (ce.urgency_power, ce.price_elasticity, ce.value_chase_pct,
            ce.block_discount_bps) == (1.0, 0.0, 0, 0)
    assert cfg.block_trader.discount_bps == 0 and cfg.fundamental.mean_reversion_pct == 0
    d = cfg.day
    assert (d.activity_sigma, d.quiet_probability, d.jump_probability) == (0.0, 0.0, 0.0)


def test_config_layers_over_the_scenario(tmp_path):
    path = tmp_path / "over.toml"
    path.write_text("days = 3\n[covered_entity]\nprice_elasticity = 1.5\n")
    cfg = load_config(path, scenario="first-period")
    assert cfg.days == 3 and cfg.covered_entity.price_elasticity == 1.5
    # the rest of the table is the scenario's
    assert cfg.covered_entity.block_discount_bps == 700 and cfg.start == "2021-07-16"
    with pytest.raises(SimConfigError, match="no scenario 'nope'"):
        load_config(scenario="nope")
    path.write_text("[day]\njump_probability = 2.0\n")
    with pytest.raises(SimConfigError, match="day: probabilities"):
        load_config(path, scenario="first-period")


def test_cli_scenario(tmp_path):
    r = invoke("simulate", "--scenario", "first-period", "--print-config")
    assert r.exit_code == 0 and 'start = "2021-07-16"' in r.output
    assert "block_discount_bps = 700" in r.output
    r = invoke("simulate", "--scenario", "nope", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "no scenario 'nope'" in r.output
    r = invoke("simulate", "--scenario", "first-period", "--days", "5", "--out",
               tmp_path / "fp", "--quiet")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "fp" / "summary.json").read_text())
    assert summary["first_day"] == "2021-07-16" and summary["days"] == 5
