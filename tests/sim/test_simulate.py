"""``cea simulate``: reproducibility, the agents' behaviour, conservation, outputs, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from engine import batch as B
from engine.accounts import CA_TOTAL, HD_TOTAL
from engine.codes import Action, Reason, Segment
from engine.rules import BLOCK_MIN_QTY, DAY_US, PM_OPEN_US
from sim import agents as A
from sim.simulate import Population, SimConfig, SimConfigError, load_config, simulate
from tests.test_cli import invoke, run_cea

SMALL = Population(covered_entities=60, market_makers=3, noise_traders=20, institutions=4,
                   individuals=15, block_traders=3)


def small(**kw) -> SimConfig:
    d = SimConfig()
    base = dict(days=4, steps_per_hour=6, population=SMALL,
                covered_entity=msgspec.structs.replace(d.covered_entity, act_probability=0.02),
                noise_trader=msgspec.structs.replace(d.noise_trader, act_probability=0.1),
                block_trader=msgspec.structs.replace(d.block_trader, act_probability=0.3))
    base.update(kw)
    return SimConfig(**base)


@pytest.fixture(scope="module")
def run():
    return simulate(small())


def test_same_seed_same_trades_other_seed_other_trades(run):
    again = simulate(small())
    assert again.summary["trade_checksum"] == run.summary["trade_checksum"]
    assert np.array_equal(again.trades, run.trades)
    assert np.array_equal(again.commands, run.commands)
    other = simulate(small(seed=2))
    assert other.summary["trade_checksum"] != run.summary["trade_checksum"]


def test_the_run_trades_in_both_segments_and_never_crosses(run):
    s = run.summary
    assert s["trades"] > 50 and s["listed_volume_t"] > 0 and s["block_volume_t"] > 0
    assert s["book_crossed_steps"] == 0
    run.engine.check_invariants()
    t = run.trades
    block = t[t[:, B.SEGMENT] == Segment.BLOCK]
    # block orders are of 100,000 t or more (a trade may fill part of one), and they
    # trade only in the afternoon window
    a = run.accepted
    assert (a[a[:, B.SEGMENT] == Segment.BLOCK, B.QTY] >= BLOCK_MIN_QTY).all()
    assert (a[a[:, B.SEGMENT] == Segment.LISTED, B.QTY] < BLOCK_MIN_QTY).all()
    assert ((block[:, B.TS] % DAY_US) >= PM_OPEN_US).all()
    # every trade inside its day's band
    for d in run.days:
        day = t[(t[:, B.TS] // DAY_US) == np.datetime64(d.date, "D").astype(np.int64)]
        listed = day[day[:, B.SEGMENT] == Segment.LISTED]
        assert ((listed[:, B.PRICE] >= d.listed_low) & (listed[:, B.PRICE] <= d.listed_high)).all()
        blk = day[day[:, B.SEGMENT] == Segment.BLOCK]
        assert ((blk[:, B.PRICE] >= d.block_low) & (blk[:, B.PRICE] <= d.block_high)).all()
        # the close is the VWAP of the listed trades, rounded half up
        if d.listed_volume:
            assert d.close == (d.listed_turnover * 2 + d.listed_volume) // (2 * d.listed_volume)
            assert d.listed_volume == int(listed[:, B.QTY].sum())


def test_cash_and_allowances_are_conserved(run):
    bal, n = run.engine.balances, len(run.agents)
    # no fees by default: every fen and tonne is still with some agent
    assert int(bal.cash[:n, CA_TOTAL].sum()) == int(run.agents.cash.sum())
    assert int(bal.holdings[:n, HD_TOTAL].sum()) == int(run.agents.allowances.sum())
    assert (bal.cash[:n, CA_TOTAL] >= 0).all() and (bal.holdings[:n, HD_TOTAL] >= 0).all()


def test_covered_entities_trade_towards_their_position_and_never_past_it(run):
    covered = run.agents.of(A.AgentKind.COVERED_ENTITY)
    start, now = run.agents.year_need[covered], run.agents.need[covered]
    # what is left to do keeps its sign (no entity overshoots) and shrank somewhere
    assert ((start > 0) <= (now >= 0)).all() and ((start < 0) <= (now <= 0)).all()
    assert (np.abs(now) <= np.abs(start)).all()
    assert (np.abs(now) < np.abs(start)).sum() > 5
    held = run.engine.balances.holdings[covered, HD_TOTAL]
    bought = (start - now)  # + bought, - sold
    assert np.array_equal(held, run.agents.allowances[covered] + bought)


def test_urgency_rises_towards_the_deadline():
    p = msgspec.structs.asdict(SimConfig().covered_entity)
    assert A.urgency(365, p) == 1.0
    assert A.urgency(0, p) == p["urgency_max"]
    assert 1.0 < A.urgency(p["urgency_days"] // 2, p) < p["urgency_max"]
    # the same entities, far from and close to the deadline: more orders close to it
    cfg = dict(days=10, steps_per_hour=4, population=SMALL)
    far = simulate(SimConfig(start="2024-03-01", deadline="2024-12-31", **cfg))
    near = simulate(SimConfig(start="2024-12-10", deadline="2024-12-31", **cfg))

    def covered_orders(r):
        cov = set(r.agents.of(A.AgentKind.COVERED_ENTITY).tolist())
        new = r.commands[r.commands["action"] == Action.NEW]
        return sum(a in cov for a in new["account"].tolist())

    assert covered_orders(near) > 2 * covered_orders(far)


def test_market_makers_respect_their_inventory_limit():
    limit, quote = 20_000, 5_000
    cfg = small(days=6, market_maker=msgspec.structs.replace(
        SimConfig().market_maker, inventory_limit=limit, quote_qty=quote))
    r = simulate(cfg)
    mm = r.agents.of(A.AgentKind.MARKET_MAKER)
    inventory = r.engine.balances.holdings[mm, HD_TOTAL] - r.agents.allowances[mm]
    # a maker stops bidding (offering) once past the limit; one step's quotes can overshoot
    assert (np.abs(inventory) <= limit + quote).all()


def test_rejects_come_with_reasons():
    ind = msgspec.structs.replace(SimConfig().individual, fat_finger=0.5, act_probability=0.2)
    r = simulate(small(days=2, individual=ind))
    assert r.summary["rejects"].get("PRICE_OUTSIDE_BAND", 0) > 0
    reasons = set(r.summary["rejects"])
    assert reasons <= {x.name for x in Reason}


def test_only_admitted_types_have_agents():
    r = simulate(small(days=1, admitted=["COVERED_ENTITY"]))
    counts = r.summary["agents"]
    assert counts["INSTITUTION"] == counts["INDIVIDUAL"] == 0
    assert counts["COVERED_ENTITY"] == SMALL.covered_entities


def test_config_file_defaults_and_errors(tmp_path):
    path = tmp_path / "sim.toml"
    path.write_text('days = 3\nseed = 9\n[population]\ncovered_entities = 10\n')
    cfg = load_config(path, days=2)
    assert (cfg.days, cfg.seed, cfg.population.covered_entities) == (2, 9, 10)
    assert cfg.population.market_makers == Population().market_makers
    for text, needle in [('dayz = 3\n', "dayz"), ('days = "x"\n', "days"),
                         ('days = 0\n', "days must be"), ('start = "2024-13-01"\n', "start"),
                         ('prior_close = "60.001"\n', "prior close"),
                         ('admitted = ["BANK"]\n', "BANK"), ('days = [\n', "TOML"),
                         ('[covered_entity]\nact_probability = 2.0\n', "act_probability"),
                         ('[population]\nsource = "census"\n', "source")]:
        path.write_text(text)
        with pytest.raises(SimConfigError, match=needle):
            load_config(path)
    with pytest.raises(SimConfigError, match="No such file"):
        load_config(tmp_path / "missing.toml")


def test_cli_writes_every_output_and_matches_cea_match(tmp_path):
    cfg = tmp_path / "sim.toml"
    cfg.write_text(
        "days = 3\nsteps_per_hour = 6\n[population]\ncovered_entities = 40\nmarket_makers = 2\n"
        "noise_traders = 10\ninstitutions = 2\nindividuals = 10\nblock_traders = 2\n"
        "[covered_entity]\nact_probability = 0.03\n[individual]\nfat_finger = 0.3\n")
    out = tmp_path / "out"
    result = invoke("simulate", "--config", cfg, "--out", out, "--seed", "5")
    assert result.exit_code == 0, result.output
    assert "trade checksum" in result.output and "ledger reconciles" in result.output
    for name in ("commands.csv", "accounts.csv", "trades.csv", "orders.csv", "rejects.csv",
                 "days.csv", "intraday.csv", "summary.json", "balances.json", "reconcile.json",
                 "ledger.sqlite", "close.png", "volume.png", "intraday.png", "depth.png"):
        assert (out / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one statement (CSV and JSON) for an account of each of the six agent kinds
    assert len(list((out / "statements").glob("*.csv"))) == 6
    assert list((out / "statements").glob("E0001_*.json"))  # the generator's first entity
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 5 and summary["ledger_reconciles"] is True
    assert json.loads((out / "reconcile.json").read_text())["ok"] is True
    # the order file replays through cea match to the same trades, rejects and days
    again = tmp_path / "match"
    m = invoke("match", out / "commands.csv", "--accounts", out / "accounts.csv",
               "--prior-close", "70.00", "--out", again, "-q")
    assert m.exit_code == 0, m.output
    for name in ("trades.csv", "rejects.csv", "days.csv"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    assert summary["rejects"]  # fat fingers were rejected, and the files agree on them

    def orders(path):
        with open(path) as f:
            return {r["order_id"]: r for r in csv.DictReader(f)}

    # the order statuses agree, except the last day's (the simulator closed that day at
    # 15:00; cea match stops with its last command, the day still open)
    sim_orders, match_orders = orders(out / "orders.csv"), orders(again / "orders.csv")
    assert sim_orders.keys() == match_orders.keys()
    differ = [k for k in sim_orders if sim_orders[k] != match_orders[k]]
    assert all(sim_orders[k]["status"] == "EXPIRED" for k in differ)


def test_cli_bad_input(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("days = -1\n")
    for args, needle in [(("--config", bad), "days must be"),
                         (("--config", tmp_path / "none.toml"), "none.toml"),
                         (("--days", "0"), "days must be")]:
        r = invoke("simulate", *args, "--out", tmp_path / "o")
        assert r.exit_code == 2 and needle in r.output, r.output
        assert not (tmp_path / "o").exists()


def test_print_config_reads_back(tmp_path):
    r = invoke("simulate", "--print-config")
    assert r.exit_code == 0
    path = tmp_path / "defaults.toml"
    path.write_text(r.output)
    assert load_config(path) == SimConfig()


def test_via_server_runs_the_agents_as_clients(tmp_path):
    cfg = tmp_path / "sim.toml"
    cfg.write_text(
        "days = 2\nsteps_per_hour = 3\n[population]\ncovered_entities = 20\nmarket_makers = 2\n"
        "noise_traders = 6\ninstitutions = 2\nindividuals = 4\nblock_traders = 2\n"
        "[covered_entity]\nact_probability = 0.05\n")
    out = tmp_path / "vs"
    r = run_cea("simulate", "--config", str(cfg), "--via-server", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "via-server" and summary["days"] == 2
    assert summary["trades"] > 0 and summary["ledger_reconciles"] is True
    with open(out / "days.csv") as f:
        days = list(csv.DictReader(f))
    assert [d["date"] for d in days] == ["2024-01-02", "2024-01-03"]
    with open(out / "trades.csv") as f:
        trades = list(csv.DictReader(f))
    assert len(trades) == summary["trades"]
    assert sum(int(t["qty"]) for t in trades if t["segment"] == "LISTED") == \
        sum(int(d["listed_volume"]) for d in days)
    assert (out / "close.png").exists() and (out / "depth.png").exists()
    assert Path(out / "server" / "data").is_dir()


def test_covered_entities_surrender_at_the_deadline(tmp_path):
    from ledger.core import Ledger, engine_balances

    pop = msgspec.structs.replace(SMALL, covered_entities=80)
    cfg = SimConfig(days=24, start="2024-12-02", deadline="2024-12-31", steps_per_hour=4,
                    population=pop, covered_entity=msgspec.structs.replace(
                        SimConfig().covered_entity, act_probability=0.05))
    ledger = Ledger.open(str(tmp_path / "ledger.sqlite"), ["CEA"])
    try:
        r = simulate(cfg, ledger=ledger)
        assert [d.date for d in r.days][-1] > "2024-12-31"  # the deadline was passed
        (report,) = r.reports
        assert report.period == "2023" and len(report.entities) == 80
        row = r.summary["compliance"][0]
        assert row["compliant"] + row["partial"] + row["short"] == 80
        # every entity surrendered what it held of its obligation, no more
        surrendered = {s.entity: s.cea for s in ledger.surrenders("2023")}
        for e in report.entities:
            assert surrendered.get(e.entity, 0) == e.surrendered_cea <= e.obligation
            assert e.shortfall == e.obligation - e.surrendered_cea
            assert (e.status == "COMPLIANT") == (e.shortfall == 0)
        # the allocations came from the registry, one ALLOC operation per entity
        allocated = ledger.store.query("SELECT count(*), sum(amount) FROM operation "
                                       "WHERE ref LIKE 'ALLOC-2023-%'")[0]
        assert allocated == (80, int(r.agents.allowances[r.agents.of(
            A.AgentKind.COVERED_ENTITY)].sum()))
        # allowances went from the holdings to @SURRENDERED; the ledger matches the engine
        balances = ledger.balances(include_external=True)
        assert balances["@SURRENDERED"]["CEA"] == sum(surrendered.values())
        assert sum(b.get("CEA", 0) for b in balances.values()) == 0
        expected, fees = engine_balances(r.engine.balances, r.engine.accounts.name, ["CEA"])
        assert ledger.reconcile(expected, fees).ok
        # long entities (who sell only part of their surplus) and the short ones who bought
        # their whole gap before the deadline are compliant
        assert row["fully_covered"] > 0
        assert row["compliant"] >= (80 - row["short_entities"]) + row["fully_covered"]
    finally:
        ledger.close()
