"""``cea simulate`` with targeted takes (issue 20: listed agreement trading's "pick an order
off the displayed book"): some listed takers send TAKE commands.

- off by default: the default configuration draws and trades exactly as before (its trade
  checksum is pinned below, computed before takes existed);
- switched on, takes happen, from covered entities and noise traders alike;
- replayed command by command through the reference book, every accepted take trades once,
  for its declared quantity, at its target's price, with a target that was resting in the
  best five levels of the other side at that moment and was not the taker's own;
- no take ever targets its own agent's order; rejected takes carry a target reason;
- the same seed gives byte-identical outputs with takes on, the ledger reconciles, and
  commands.csv (with its ``target`` column) replays through ``cea match``;
- ``--via-server`` runs without takes (the wire has no Take yet) and says so.
"""

from __future__ import annotations

import csv
import json

import msgspec
import numpy as np
import pytest

from engine import batch as B
from engine.accounts import Accounts, RiskConfig
from engine.book import make_book
from engine.codes import Action, EventKind, OrderType, Reason, Segment, Side
from engine.orderfile import parse_prior_close
from engine.tradingdays import TradingCalendar
from sim import agents as A
from sim.simout import run
from sim.simulate import SimConfig, SimConfigError, load_config, resolve_takes, simulate, \
    takes_configured
from sim.viaserver import TAKES_OFF, without_takes
from tests.sim.test_simulate import small
from tests.test_cli import invoke, run_cea

#: ``small()``'s trade checksum before the simulator knew of takes (a10175e)
DEFAULT_CHECKSUM = "9d7d9abba5864f7ba43e17a5113e428c8a039942f78d8cbe37a9f697eefafe51"

TARGET_REASONS = {Reason.UNKNOWN_TARGET, Reason.TARGET_SAME_SIDE, Reason.TARGET_NOT_LISTED,
                  Reason.TARGET_NOT_IN_BEST_FIVE, Reason.TARGET_OWN_ORDER,
                  Reason.TARGET_QTY_EXCEEDED}


def with_takes(cfg: SimConfig, share: float = 0.5) -> SimConfig:
    """``cfg`` with every kind that takes liquidity sending ``share`` of it as takes."""
    return msgspec.structs.replace(cfg, **{
        section: msgspec.structs.replace(getattr(cfg, section), take_share=share)
        for section in ("covered_entity", "noise_trader", "individual", "institution")})


@pytest.fixture(scope="module")
def taking():
    return simulate(with_takes(small()))


def take_rows(r):
    return np.flatnonzero(r.commands["action"] == Action.TAKE)


def test_off_by_default_and_the_default_run_is_unchanged():
    cfg = SimConfig()
    assert not takes_configured(cfg)
    assert (cfg.covered_entity.take_share, cfg.noise_trader.take_share,
            cfg.individual.take_share, cfg.institution.take_share) == (0.0, 0.0, 0.0, 0.0)
    r = simulate(small())
    assert r.summary["trade_checksum"] == DEFAULT_CHECKSUM
    assert not (r.commands["action"] == Action.TAKE).any() and "takes" not in r.summary


def test_takes_happen_when_switched_on(taking):
    s = taking.summary["takes"]
    assert s["sent"] > 20 and s["trades"] > 10 and 0 < s["listed_volume_share_pct"] < 100
    rows = take_rows(taking)
    assert s["sent"] == len(rows)
    kinds = {A.AgentKind(int(taking.agents.kind[a])) for a in taking.commands["account"][rows]}
    assert {A.AgentKind.COVERED_ENTITY, A.AgentKind.NOISE_TRADER} <= kinds
    c = taking.commands[rows]
    assert (c["type"] == OrderType.TAKE).all() and (c["qty"] > 0).all()
    # takes are accepted as TAKE orders naming their target
    acc = taking.accepted[taking.accepted[:, B.ACCEPTED_TYPE] == OrderType.TAKE]
    assert len(acc) == s["trades"]
    assert set(acc[:, B.ACCEPTED_TARGET].tolist()) <= set(c["price"].tolist())
    assert taking.summary["book_crossed_steps"] == 0
    taking.engine.check_invariants()


def test_each_take_trades_at_its_targets_price_within_the_best_five(taking):
    """Replay every command, one at a time, through the reference book with the same
    accounts: before each TAKE the target is where the taker saw it, and the take trades
    once, at the target's price, for exactly its quantity."""
    r = taking
    agents = r.agents
    acc = Accounts(1, RiskConfig(), capacity=len(agents))
    for i in range(len(agents)):
        acc.open_account(agents.account_type(i), i)
        if agents.cash[i]:
            acc.deposit(i, int(agents.cash[i]))
        if agents.allowances[i]:
            acc.allowance_in(i, 0, int(agents.allowances[i]))
    book = make_book("reference", [parse_prior_close(r.config.prior_close)],
                     TradingCalendar.xshg(weekdays_beyond=True), accounts=acc)
    trades, accepted, rejected = [], 0, {}
    for i in range(len(r.commands)):
        row = r.commands[i:i + 1]
        take = int(row["action"][0]) == Action.TAKE
        if take:
            side, target, qty = int(row["side"][0]), int(row["price"][0]), int(row["qty"][0])
            other = Side.SELL if side == Side.BUY else Side.BUY
            shown = {o[0]: o for o in book.resting_in_levels(0, Segment.LISTED, other, 5)}
        ev = book.submit_batch(row)
        tr = ev[ev[:, B.KIND] == EventKind.TRADE]
        trades.append(tr)
        if not take:
            continue
        rj = ev[ev[:, B.KIND] == EventKind.REJECTED]
        if len(rj):
            reason = Reason(int(rj[0, B.REASON]))
            rejected[reason] = rejected.get(reason, 0) + 1
            assert reason in TARGET_REASONS | {Reason.INSUFFICIENT_FUNDS,
                                               Reason.INSUFFICIENT_ALLOWANCES}, reason
            assert not len(tr)
            continue
        accepted += 1
        assert target in shown, "the target rests in the best five levels of the other side"
        _, price, open_qty, owner = shown[target]
        assert owner != int(row["account"][0]) and qty <= open_qty
        assert len(tr) == 1
        t = tr[0]
        assert (t[B.PRICE], t[B.QTY], t[B.SIDE], t[B.SEGMENT]) == (price, qty, side,
                                                                   Segment.LISTED)
        mine, theirs = (B.ORDER, B.ORDER2) if side == Side.BUY else (B.ORDER2, B.ORDER)
        assert (t[mine], t[theirs]) == (int(row["order"][0]), target)
    assert accepted == r.summary["takes"]["trades"] > 0
    assert {k.name: v for k, v in rejected.items()} == r.summary["takes"]["rejects"]
    # the one-at-a-time replay trades exactly as the simulation's batches did
    cols = [B.TRADE_ID, B.TS, B.SEGMENT, B.PRICE, B.QTY, B.ORDER, B.ORDER2, B.ACCOUNT,
            B.ACCOUNT2, B.SIDE]
    assert np.array_equal(np.concatenate(trades)[:, cols], r.trades[:, cols])


def test_no_take_targets_its_own_agents_order(taking):
    c = taking.commands
    owner = dict(zip(c["order"][c["action"] == Action.NEW].tolist(),
                     c["account"][c["action"] == Action.NEW].tolist()))
    rows = c[c["action"] == Action.TAKE]
    assert all(owner[t] != a for t, a in zip(rows["price"].tolist(), rows["account"].tolist()))
    assert "TARGET_OWN_ORDER" not in taking.summary["rejects"]


def test_resolve_takes_picks_as_a_participant_would():
    # asks: 6000 (orders 7 of agent 2, 8 of agent 3), 6010 (9 of agent 3), 6020 (10)
    asks = [(7, 6000, 300, 2), (8, 6000, 200, 3), (9, 6010, 100, 3), (10, 6020, 50, 4)]

    def intents(agent, limit, qty, pick):
        n = len(agent)
        return [(np.array(agent), np.full(n, int(Side.BUY)), np.full(n, 3),
                 np.array(limit), np.array(qty), np.array(pick), np.full(n, True))]

    resting = {int(Side.SELL): asks}.__getitem__
    # within the best level, the pick chooses (no time priority); quantity capped at open
    t = resolve_takes(intents([5, 5], [6020, 6020], [1000, 50], [0.0, 0.99]), resting, set())
    assert t.target.tolist() == [7, 8] and t.qty.tolist() == [300, 50]
    # never its own order: agent 2 takes 8, agent 3 takes 7; with 7 gone, agent 3 owns the
    # rest of the best level and the next: it goes to the third
    t = resolve_takes(intents([2, 3], [6020, 6020], [10, 10], [0.0, 0.0]), resting, set())
    assert t.target.tolist() == [8, 7]
    t = resolve_takes(intents([3], [6020], [10], [0.0]), resting, {7})
    assert t.target.tolist() == [10]
    # an order cancelled in the step is gone; beyond the limit nothing is taken: the limit
    # order goes instead
    t = resolve_takes(intents([5, 5], [6010, 6000], [10, 10], [0.0, 0.0]), resting, {7, 8})
    assert t.target.tolist() == [9]
    agent, side, tif, price, qty, keep = t.instead
    assert (agent.tolist(), price.tolist(), qty.tolist()) == ([5], [6000], [10])


def test_same_seed_same_bytes_and_the_ledger_reconciles(tmp_path):
    cfg = with_takes(small(days=3))
    first, _ = run(cfg, tmp_path / "a")
    second, _ = run(cfg, tmp_path / "b")
    names = ("commands.csv", "trades.csv", "orders.csv", "rejects.csv", "days.csv",
             "balances.json")
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first.summary["ledger_reconciles"] is True
    assert first.summary["takes"]["trades"] > 0
    with open(tmp_path / "a" / "commands.csv") as f:
        rows = list(csv.DictReader(f))
    takes = [r for r in rows if r["action"] == "TAKE"]
    assert takes and all(r["price"] == "" and r["type"] == "TAKE" and r["target"]
                         for r in takes)
    assert all(r["target"] == "" for r in rows if r["action"] != "TAKE")
    ids = {r["order_id"] for r in takes}
    with open(tmp_path / "a" / "orders.csv") as f:
        taken = [r for r in csv.DictReader(f) if r["order_id"] in ids]
    assert taken and all(r["status"] == "FILLED" and r["segment"] == "LISTED" for r in taken)
    with open(tmp_path / "a" / "trades.csv") as f:
        by_take = [r for r in csv.DictReader(f)
                   if (r["buy_order_id"] if r["aggressor"] == "BUY" else r["sell_order_id"])
                   in ids]
    assert len(by_take) == len(taken)


def test_commands_replay_through_cea_match(tmp_path):
    cfg = with_takes(small(days=3))
    out = tmp_path / "sim"
    result, _ = run(cfg, out)
    assert result.summary["takes"]["sent"] > 0
    again = tmp_path / "match"
    m = invoke("match", out / "commands.csv", "--accounts", out / "accounts.csv",
               "--prior-close", cfg.prior_close, "--out", again, "-q")
    assert m.exit_code == 0, m.output
    for name in ("trades.csv", "rejects.csv", "days.csv"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_take_share_is_checked():
    with pytest.raises(SimConfigError, match="take_share"):
        load_config(**{"covered_entity": msgspec.structs.replace(
            SimConfig().covered_entity, take_share=1.5)})


def test_scenarios_take_a_tenth():
    for name in ("first-period", "2024"):
        assert load_config(scenario=name).covered_entity.take_share == 0.1


def test_via_server_runs_without_takes(tmp_path):
    cfg = with_takes(SimConfig())
    off = without_takes(cfg)
    assert takes_configured(cfg) and not takes_configured(off)
    assert msgspec.structs.replace(with_takes(off, 0.0), seed=off.seed) == off  # only those
    path = tmp_path / "sim.toml"
    path.write_text(
        "days = 1\nsteps_per_hour = 2\n[population]\ncovered_entities = 10\nmarket_makers = 1\n"
        "noise_traders = 4\ninstitutions = 0\nindividuals = 0\nblock_traders = 0\n"
        "[covered_entity]\nact_probability = 0.05\ntake_share = 0.5\n")
    out = tmp_path / "vs"
    r = run_cea("simulate", "--config", str(path), "--via-server", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "targeted takes are off with --via-server" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "via-server" and summary["takes"] == {"off": TAKES_OFF}
