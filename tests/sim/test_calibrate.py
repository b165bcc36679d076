"""``sim.calibrate`` and ``cea calibrate``: the space and its file's errors, the search on a
known objective (no Ray), the moments of a result in memory against those of its output
directory, and the command end to end on a local Ray instance: its files, the best point,
best.toml read back by load_config, the same command giving the same calibration.json, and
no Ray process left behind, even when a simulation fails."""

from __future__ import annotations

import json
import subprocess
import time

import msgspec
import pytest

from sim import calibrate as C
from sim import realism as R
from sim.calibrate import CalibrationError, Parameter, Space, parse_space
from sim.simulate import SimConfig, load_config, scenario_names

from cea import calibrate_cmd
from cea.cli import app
from tests.test_cli import assert_clean_error, invoke

if not any(c.name == "calibrate" for c in app.registered_commands):
    calibrate_cmd.register(app)  # until cea.cli registers it

SPACE = """
[parameters]
"covered_entity.price_elasticity" = [0.0, 6.0]
"covered_entity.block_discount_bps" = [0, 1500]
"covered_entity.act_probability" = [1e-5, 5e-4, "log"]

[weights]
range_pct = 0.5
"""


def raylets() -> set[int]:
    proc = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True)
    return {int(pid) for pid in proc.stdout.split()}


@pytest.fixture
def no_ray_left():
    """Every Ray process the test started is gone at its end (and Ray is shut down)."""
    before = raylets()
    yield
    import ray

    ray.shutdown()
    deadline = time.monotonic() + 15
    while raylets() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not raylets() - before, "a raylet is left running"


# ---------------------------------------------------------------------- the space

def test_parameters_map_the_unit_interval_to_their_bounds():
    p = Parameter("fundamental.daily_vol_bps", "int", 50, 400)
    assert (p.value(0), p.value(1), p.value(0.5), p.value(7)) == (50, 400, 225, 400)
    assert p.unit(225) == 0.5 and p.unit(-3) == 0.0
    q = Parameter("covered_entity.act_probability", "float", 1e-5, 1e-3, log=True)
    assert q.value(0.5) == pytest.approx(1e-4)
    assert q.unit(1e-4) == pytest.approx(0.5)
    assert q.value(0.123456789) == float(f"{q.value(0.123456789):.6g}")  # 6 digits


def test_the_default_spaces_are_valid_and_read_back_from_their_file(tmp_path):
    for scenario in [None] + [s for s in C.DEFAULT_SPACES if s in scenario_names()]:
        cfg = load_config(scenario=scenario)
        space = C.default_space(scenario, cfg)
        values = C.current_values(cfg, space)
        assert all(p.low <= values[p.name] <= p.high for p in space.parameters)
        path = tmp_path / "space.toml"
        path.write_text(C.space_toml(space), encoding="utf-8")
        again = C.load_space(path, cfg)
        assert again.parameters == space.parameters
        assert {**R.DEFAULT_WEIGHTS, **again.weights} == R.DEFAULT_WEIGHTS
    fp = C.default_space("first-period")
    kinds = {p.name: p.kind for p in fp.parameters}
    assert kinds["covered_entity.block_discount_bps"] == "int"
    assert kinds["covered_entity.price_elasticity"] == "float"


def test_configured_replaces_only_the_named_fields():
    cfg = load_config(scenario="first-period")
    new = C.configured(cfg, {"covered_entity.price_elasticity": 1.5, "day.jump_pct": 2.0,
                             "fundamental.daily_vol_bps": 99})
    assert new.covered_entity.price_elasticity == 1.5 and new.day.jump_pct == 2.0
    assert new.fundamental.daily_vol_bps == 99
    assert new.covered_entity.urgency_power == cfg.covered_entity.urgency_power
    assert msgspec.structs.replace(new, covered_entity=cfg.covered_entity, day=cfg.day,
                                   fundamental=cfg.fundamental) == cfg


@pytest.mark.parametrize("table, words", [
    ({}, ["no [parameters] table"]),
    ({"parameters": {}}, ["no [parameters] table"]),
    ({"parameters": {"day.jump_pct": [0, 1]}, "extra": {}}, ["unknown table extra"]),
    ({"parameters": {"price_elasticity": [0, 1]}}, ["section.field"]),
    ({"parameters": {"a.b.c": [0, 1]}}, ["section.field"]),
    ({"parameters": {"nowhere.x": [0, 1]}}, ["no section 'nowhere'", "covered_entity"]),
    ({"parameters": {"day.nothing": [0, 1]}}, ["no field 'nothing' in [day]", "jump_pct"]),
    ({"parameters": {"population.source": [0, 1]}}, ["not a number"]),
    ({"parameters": {"agents.count": [0, 1]}}, ["no section 'agents'"]),
    ({"parameters": {"day.jump_pct": 3}}, ["bounds must be [low, high]"]),
    ({"parameters": {"day.jump_pct": [1]}}, ["bounds must be [low, high]"]),
    ({"parameters": {"day.jump_pct": ["a", "b"]}}, ["bounds must be [low, high]"]),
    ({"parameters": {"day.jump_pct": [True, 2]}}, ["bounds must be [low, high]"]),
    ({"parameters": {"day.jump_pct": [5.0, 5.0]}}, ["low must be below high"]),
    ({"parameters": {"day.jump_pct": [0.0, 1.0, "cubic"]}}, ["\"log\" or \"linear\""]),
    ({"parameters": {"day.jump_pct": [0.0, 1.0, "log"]}}, ["log scale needs low > 0"]),
    ({"parameters": {"fundamental.daily_vol_bps": [0.5, 10]}}, ["integer bounds"]),
    ({"parameters": {"covered_entity.block_probability": [0.0, 2.0]}},
     ["'covered_entity.block_probability' = 2", "out of range"]),
    ({"parameters": {"day.jump_pct": [0, 1]}, "weights": {"nothing": 1}},
     ["[weights]: no statistic nothing", "range_pct"]),
    ({"parameters": {"day.jump_pct": [0, 1]}, "weights": {"range_pct": -1}},
     ["numbers >= 0"]),
])
def test_space_errors_name_what_is_wrong(table, words):
    with pytest.raises(CalibrationError) as e:
        parse_space(table, "space.toml")
    assert str(e.value).startswith("space.toml: ") and "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_space_file_errors(tmp_path):
    with pytest.raises(CalibrationError, match="No such file"):
        C.load_space(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[parameters\n", encoding="utf-8")
    with pytest.raises(CalibrationError, match="not valid TOML"):
        C.load_space(bad)
    good = tmp_path / "good.toml"
    good.write_text(SPACE, encoding="utf-8")
    space = C.load_space(good)
    assert space.names == ["covered_entity.price_elasticity",
                           "covered_entity.block_discount_bps",
                           "covered_entity.act_probability"]
    assert space.weights == {"range_pct": 0.5} and space.parameters[2].log


# ---------------------------------------------------------------------- the search

def _quadratic(batch):
    """A known objective: 0 at x = 2.5, y = 700 (the space below)."""
    out = []
    for v in batch:
        d = ((v["covered_entity.price_elasticity"] - 2.5) / 6) ** 2 + \
            ((v["covered_entity.block_discount_bps"] - 700) / 1500) ** 2
        out.append((d, [d], {}))
    return out


def test_the_search_is_deterministic_starts_from_the_scenario_and_refines():
    space = parse_space({"parameters": {"covered_entity.price_elasticity": [0.0, 6.0],
                                        "covered_entity.block_discount_bps": [0, 1500]}})
    start = {"covered_entity.price_elasticity": 3.0, "covered_entity.block_discount_bps": 0}
    rounds = []
    points = C.search(space, _quadratic, 8, 4, seed=5, start=start,
                      progress=lambda r, new, best: rounds.append((r, len(new), best.distance)))
    again = C.search(space, _quadratic, 8, 4, seed=5, start=start)
    assert [p.as_dict() for p in points] == [p.as_dict() for p in again]
    other = C.search(space, _quadratic, 8, 4, seed=6, start=start)
    assert [p.values for p in other] != [p.values for p in points]
    assert points[0].values == start and points[0].round == 1
    assert [p.index for p in points] == list(range(len(points)))
    assert [r for r, _, _ in rounds] == [1, 2, 3, 4] and rounds[0][1] == 8
    for p in points:
        assert 0 <= p.values["covered_entity.price_elasticity"] <= 6
        assert isinstance(p.values["covered_entity.block_discount_bps"], int)
    best_by_round = [d for _, _, d in rounds]
    assert best_by_round == sorted(best_by_round, reverse=True)
    assert best_by_round[-1] < best_by_round[0] and best_by_round[-1] < 0.002
    # later rounds stay in the shrinking box around the best so far
    r4 = [p for p in points if p.round == 4]
    best3 = min((p for p in points if p.round <= 3), key=lambda p: p.distance)
    for p in r4:
        assert abs(p.values["covered_entity.price_elasticity"]
                   - best3.values["covered_entity.price_elasticity"]) <= 6 * 0.0625 + 1e-9


def test_the_search_evaluates_each_point_once():
    space = parse_space({"parameters": {"fundamental.mean_reversion_pct": [0, 2]}})
    calls = []

    def evaluate(batch):
        calls.append(batch)
        return [(float(v["fundamental.mean_reversion_pct"]), [], {}) for v in batch]

    points = C.search(space, evaluate, 10, 3, seed=1)
    assert sorted(p.values["fundamental.mean_reversion_pct"] for p in points) == [0, 1, 2]
    assert min(points, key=lambda p: p.distance).values == {
        "fundamental.mean_reversion_pct": 0}


def test_latin_hypercube_puts_one_point_in_each_stratum():
    import numpy as np

    pts = C.latin_hypercube(np.random.default_rng(0), 7, np.zeros(3), np.ones(3))
    for d in range(3):
        assert sorted(np.floor(pts[:, d] * 7).astype(int).tolist()) == list(range(7))


# ---------------------------------------------------------------------- the moments

def test_days_of_result_are_the_days_of_the_output_directory(tmp_path):
    from sim.simout import run

    cfg = msgspec.structs.replace(load_config(scenario="first-period", days=4), ledger=False)
    result, _ = run(cfg, tmp_path)
    assert C.days_of_result(result) == R.simulated_days(tmp_path)


def test_medians_across_seeds():
    def facts(block_premium, std):
        return R.MarketFacts(
            "2021-07-16", "2021-07-20", 3, 10, 100, 10, 3, 10, 2, std, None, None,
            block_vwap_vs_close_pct=block_premium)

    m = C.median_statistics([facts(-5.0, 1.0), facts(None, 3.0), facts(-1.0, 2.0)])
    assert m["return_std_pct"] == 2.0 and m["block_vwap_vs_close_pct"] == -3.0
    assert m["return_autocorr_lag1"] is None  # defined by none
    m = C.median_statistics([facts(-5.0, 1.0), facts(None, 3.0), facts(None, 2.0)])
    assert m["block_vwap_vs_close_pct"] is None  # more than half do not define it
    assert C.median_statistics([facts(-5.0, 1.0), facts(None, 4.0)])[
        "block_vwap_vs_close_pct"] == -5.0


def test_the_target_is_the_window_cea_realism_compares():
    cfg = load_config(scenario="first-period", days=10)
    t = C.target(cfg)
    assert (t.period, t.first, t.real_days) == ("first-period", "2021-07-16", 10)
    assert t.real == R.real_facts(t.first, t.last)
    whole = C.target(cfg, "2024")
    assert whole.first is None and whole.real == R.real_facts(*R.period_dates("2024"))
    with pytest.raises(CalibrationError, match="no real period 'nope'"):
        C.target(cfg, "nope")
    with pytest.raises(CalibrationError, match="does not overlap"):
        C.target(load_config(start="2030-01-02", days=5))


# ---------------------------------------------------------------------- on Ray

def test_ray_is_shut_down_when_a_simulation_fails(no_ray_left):
    cfg = load_config(scenario="first-period", days=2)
    t = C.target(cfg)
    empty = C.Target(t.period, t.period_first, t.period_last, "2030-01-01", "2030-12-31",
                     t.basis, t.real_days, t.real)
    import ray

    with pytest.raises(CalibrationError, match="seed 1: no simulated day"):
        with C.ray_session() as session:
            assert ray.is_initialized()
            evaluate = C.ray_evaluator(session, cfg, [1], empty, {})
            evaluate([C.current_values(cfg, C.default_space("first-period"))])
    assert not ray.is_initialized()  # the fixture checks that no raylet is left


def test_cea_calibrate_end_to_end_on_local_ray(tmp_path, no_ray_left):
    space = tmp_path / "space.toml"
    space.write_text(SPACE, encoding="utf-8")
    args = ["calibrate", "--scenario", "first-period", "--days", "8", "--budget", "3",
            "--seeds", "2", "--rounds", "2", "--seed", "4", "--space", space]
    first = invoke(*args, "--out", tmp_path / "a")
    assert first.exit_code == 0, first.output
    assert first.stdout.count("round ") >= 2 and "round 2/2:" in first.stdout
    assert "block_vwap_vs_close_pct" in first.stdout and "wrote 2 files" in first.stdout
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["best.toml",
                                                                  "calibration.json"]
    doc = json.loads((tmp_path / "a" / "calibration.json").read_text())
    assert doc["period"] == "first-period" and doc["seeds"] == [1, 2]
    assert [p["name"] for p in doc["space"]] == C.load_space(space).names
    assert doc["weights"]["range_pct"] == 0.5
    points = doc["points"]
    assert 3 < len(points) <= 6 and [p["round"] for p in points][:3] == [1, 1, 1]
    assert all(len(p["seed_distances"]) == 2 for p in points)
    best = doc["best"]
    assert best["distance"] == min(p["distance"] for p in points)
    assert best["parameters"] == points[best["index"]]["parameters"]
    base = load_config(scenario="first-period")
    own = C.current_values(base, C.load_space(space))  # the scenario's own values
    assert doc["baseline"]["parameters"] == points[0]["parameters"] == own
    assert own["covered_entity.block_discount_bps"] == base.covered_entity.block_discount_bps
    terms = {k: v["term"] for k, v in best["statistics"].items()}
    assert sum(terms.values()) == pytest.approx(best["distance"], abs=1e-5)
    assert set(terms) == {s.name for s in R.STATISTICS}
    # best.toml over the scenario gives the best values, and nothing else changes
    cfg = load_config(tmp_path / "a" / "best.toml", scenario="first-period")
    for name, value in best["parameters"].items():
        section, field = name.split(".")
        assert getattr(getattr(cfg, section), field) == value
    assert C.configured(base, best["parameters"]) == cfg
    # ... and runs as the calibration ran it: seed 1 of best.toml has its recorded distance
    short = load_config(tmp_path / "a" / "best.toml", scenario="first-period", days=8)
    window = C.target(short)
    facts = C.simulate_point(short, {}, 1, window)
    assert round(R.distance(facts, window.real, {"range_pct": 0.5}), 6) == \
        best["seed_distances"][0]
    last = points[-1]  # not the scenario's values: its parameters are as simulated too
    facts = C.simulate_point(load_config(scenario="first-period", days=8), last["parameters"],
                             1, window)
    assert round(R.distance(facts, window.real, {"range_pct": 0.5}), 6) == \
        last["seed_distances"][0]
    # the same command, the same calibration
    second = invoke(*args, "--out", tmp_path / "b")
    assert second.exit_code == 0, second.output
    assert (tmp_path / "a" / "calibration.json").read_bytes() == \
        (tmp_path / "b" / "calibration.json").read_bytes()
    assert (tmp_path / "a" / "best.toml").read_bytes() == \
        (tmp_path / "b" / "best.toml").read_bytes()


# ---------------------------------------------------------------------- the command's errors

@pytest.mark.parametrize("extra, words", [
    (["--space", "{missing}"], ["--space", "no such file"]),
    (["--space", "{bad}"], ["no field 'nothing' in [day]"]),
    (["--period", "nope"], ["no real period 'nope'"]),
    (["--scenario", "nope"], ["no scenario 'nope'"]),
    (["--days", "0"], ["--days"]),
    (["--budget", "0"], ["--budget"]),
    ([], ["--out DIR"]),
])
def test_cea_calibrate_errors(tmp_path, extra, words):
    bad = tmp_path / "bad.toml"
    bad.write_text('[parameters]\n"day.nothing" = [0, 1]\n', encoding="utf-8")
    extra = [e.format(missing=tmp_path / "missing.toml", bad=bad) for e in extra]
    out = [] if not extra else ["--out", tmp_path / "out"]
    r = invoke("calibrate", "--scenario", "first-period", *extra, *out)
    if extra and extra[0] in ("--days", "--budget"):  # typer's own range check
        assert r.exit_code == 2 and words[0] in r.stderr
    else:
        assert_clean_error(r.exit_code, r.stdout, r.stderr, *words)
    assert not (tmp_path / "out").exists()


def test_cea_calibrate_print_space():
    r = invoke("calibrate", "--scenario", "first-period", "--print-space")
    assert r.exit_code == 0, r.output
    space = parse_space(__import__("tomllib").loads(r.stdout))
    assert space.parameters == C.default_space("first-period").parameters


def test_the_configuration_has_every_default_space_field():
    fields = {f"{s}.{f}" for s in ("covered_entity", "day", "fundamental", "population")
              for f in msgspec.structs.asdict(getattr(SimConfig(), s))}
    for table in C.DEFAULT_SPACES.values():
        assert set(table) <= fields
    assert isinstance(C.default_space(None), Space)
