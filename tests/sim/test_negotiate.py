"""``cea simulate`` with negotiated block agreements (issue 20: "covered entities with large
needs negotiate block agreements at a discount"): ``covered_entity.negotiate_share`` of the
afternoon block decisions become BLOCK_QUOTE / COUNTER / ACCEPT / WITHDRAW commands.

- off by default: the default configuration draws and trades exactly as before (its trade
  checksum is pinned by tests/sim/test_take.py, computed before negotiations existed);
- switched on, negotiations happen: quotes addressed and public, counters, acceptances,
  withdrawals and expiry, with no reject;
- replayed command by command through the reference book, each negotiated trade is at the
  terms one party proposed and the other accepted;
- negotiated prices are at a discount to the listed price;
- the same seed gives byte-identical outputs with it on, the ledger reconciles, and
  commands.csv (with its ``counterparty`` column) replays through ``cea match``;
- ``--via-server`` runs without negotiations and says so.
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
from engine.codes import NO_REF, Action, EventKind, Segment, Side
from engine.orderfile import parse_prior_close
from engine.rules import BLOCK_MIN_QTY
from engine.tradingdays import TradingCalendar
from sim import agents as A
from sim.simout import run
from sim.simulate import SimConfig, SimConfigError, load_config, negotiated_trades, \
    negotiations_configured, simulate
from sim.viaserver import NEGOTIATIONS_OFF, without_negotiations
from tests.sim.test_simulate import SMALL, small
from tests.sim.test_take import DEFAULT_CHECKSUM
from tests.test_cli import invoke, run_cea

NEGOTIATION = (Action.BLOCK_QUOTE, Action.BLOCK_COUNTER, Action.BLOCK_ACCEPT,
               Action.BLOCK_WITHDRAW)


def negotiating_config(share: float = 1.0, **kw) -> SimConfig:
    """``small()`` with more covered entities, wider prices and a 4 % block discount, every
    block decision negotiated."""
    cfg = small(population=msgspec.structs.replace(SMALL, covered_entities=120), **kw)
    return msgspec.structs.replace(cfg, covered_entity=msgspec.structs.replace(
        cfg.covered_entity, act_probability=0.05, price_sigma_ticks=30, block_discount_bps=400,
        negotiate_share=share, negotiate_tolerance_bps=20))


@pytest.fixture(scope="module")
def negotiating():
    return simulate(negotiating_config())


def test_off_by_default_and_the_default_run_is_unchanged():
    cfg = SimConfig()
    assert not negotiations_configured(cfg) and cfg.covered_entity.negotiate_share == 0.0
    r = simulate(small())
    assert r.summary["trade_checksum"] == DEFAULT_CHECKSUM
    assert not np.isin(r.commands["action"], NEGOTIATION).any()
    assert "negotiations" not in r.summary and not len(r.quotes)


def test_negotiations_happen_when_switched_on(negotiating):
    r = negotiating
    s = r.summary["negotiations"]
    assert s["quotes"] > 10 and s["accepted"] > 5 and s["counters"] > 0
    assert s["withdrawn"] > 0 and s["expired"] > 0 and s["addressed"] > 0 and s["public"] > 0
    assert s["accepted"] + s["withdrawn"] + s["expired"] == s["quotes"]  # all ended by 15:00
    assert s["rejects"] == {} and s["trades"] == s["accepted"]
    assert 0 < s["block_volume_share_pct"] < 100
    # only covered entities negotiate, blocks of 100,000 t and more
    c = r.commands[np.isin(r.commands["action"], NEGOTIATION)]
    assert {A.AgentKind(int(r.agents.kind[a])) for a in c["account"]} == \
        {A.AgentKind.COVERED_ENTITY}
    quotes = c[c["action"] == Action.BLOCK_QUOTE]
    assert len(quotes) == s["sent"]["BLOCK_QUOTE"] == s["quotes"]
    assert (quotes["qty"] >= BLOCK_MIN_QTY).all()
    # an addressed quote goes to an entity with the opposite need
    addressed = quotes[quotes["peer"] >= 0]
    assert len(addressed) == s["addressed"]
    assert (r.agents.kind[addressed["peer"]] == A.AgentKind.COVERED_ENTITY).all()
    assert (addressed["peer"] != addressed["account"]).all()
    t = negotiated_trades(r)
    assert (t[:, B.SEGMENT] == Segment.BLOCK).all() and (t[:, B.QTY] >= BLOCK_MIN_QTY).all()
    assert s["volume_t"] == int(t[:, B.QTY].sum())
    assert r.summary["book_crossed_steps"] == 0
    r.engine.check_invariants()
    assert not r.engine.book.negotiations.live  # the last day closed: every quote ended


def _replay_book(r):
    agents = r.agents
    acc = Accounts(1, RiskConfig(), capacity=len(agents))
    for i in range(len(agents)):
        acc.open_account(agents.account_type(i), i)
        if agents.cash[i]:
            acc.deposit(i, int(agents.cash[i]))
        if agents.allowances[i]:
            acc.allowance_in(i, 0, int(agents.allowances[i]))
    return make_book("reference", [parse_prior_close(r.config.prior_close)],
                     TradingCalendar.xshg(weekdays_beyond=True), accounts=acc)


def test_each_negotiated_trade_is_at_terms_one_party_proposed_and_the_other_accepted(
        negotiating):
    """Replay every command, one at a time, through the reference book with the same
    accounts: each BLOCK_ACCEPT comes from the party that did not make the live terms,
    states them, and trades exactly them, between the quote's two parties."""
    r = negotiating
    book = _replay_book(r)
    trades, accepted = [], 0
    for i in range(len(r.commands)):
        row = r.commands[i:i + 1]
        action, account = int(row["action"][0]), int(row["account"][0])
        before = None
        if action == Action.BLOCK_ACCEPT:
            q = book.negotiations.live[int(row["order"][0])]
            before = (q.maker, q.counterparty, q.side, q.price, q.qty, q.proposer)
        ev = book.submit_batch(row)
        tr = ev[ev[:, B.KIND] == EventKind.TRADE]
        trades.append(tr)
        assert not (ev[:, B.KIND] == EventKind.REJECTED).any()
        if before is None:
            continue
        maker, peer, side, price, qty, proposer = before
        accepted += 1
        # the acceptor did not make the terms; the proposer is a party (a public quote's
        # acceptor becomes its counterparty)
        assert proposer != account and proposer in (maker, peer)
        assert account in (maker, peer) or peer == NO_REF
        assert (int(row["price"][0]), int(row["qty"][0])) == (price, qty)  # stated terms
        (t,) = tr
        mine = side if account == maker else (Side.SELL if side == Side.BUY else Side.BUY)
        buyer, seller = (account, proposer) if mine == Side.BUY else (proposer, account)
        assert (t[B.PRICE], t[B.QTY], t[B.SEGMENT]) == (price, qty, Segment.BLOCK)
        assert (t[B.TRADE_BUY_ACCOUNT], t[B.TRADE_SELL_ACCOUNT]) == (buyer, seller)
        assert t[B.ORDER] == t[B.ORDER2] == int(row["order"][0])
    assert accepted == r.summary["negotiations"]["accepted"] > 0
    # the one-at-a-time replay trades exactly as the simulation's batches did
    cols = [B.TRADE_ID, B.TS, B.SEGMENT, B.PRICE, B.QTY, B.ORDER, B.ORDER2, B.ACCOUNT,
            B.ACCOUNT2, B.SIDE]
    assert np.array_equal(np.concatenate(trades)[:, cols], r.trades[:, cols])


def test_counters_move_halfway_and_accepts_come_from_the_other_party(negotiating):
    r = negotiating
    q = r.quotes
    terms: dict[int, tuple] = {}
    for e in q.tolist():
        if e[B.KIND] != EventKind.QUOTE:
            continue
        if e[B.QUOTE_ACTION] == Action.BLOCK_COUNTER:
            old_price, old_qty, old_by = terms[e[B.ORDER]]
            assert e[B.QUOTE_PROPOSER] != old_by  # answers, never a party's own revision
            assert e[B.QTY] <= old_qty and (e[B.PRICE], e[B.QTY]) != (old_price, old_qty)
        terms[e[B.ORDER]] = (e[B.PRICE], e[B.QTY], e[B.QUOTE_PROPOSER])


def test_negotiated_prices_are_at_a_discount_to_the_listed_price(negotiating):
    r = negotiating
    s = r.summary["negotiations"]
    assert s["vwap_vs_close_pct"] < -2  # 4 % under the listed price, give or take
    t = negotiated_trades(r)
    close = {np.datetime64(d.date, "D").astype(np.int64): d.close for d in r.days}
    gap = [p / close[ts // 86_400_000_000] - 1 for p, ts in zip(t[:, B.PRICE], t[:, B.TS])]
    assert np.mean(gap) < 0 and np.median(gap) < 0


def test_same_seed_same_bytes_the_ledger_reconciles_and_cea_match_replays(tmp_path):
    cfg = negotiating_config()
    first, _ = run(cfg, tmp_path / "a")
    second, _ = run(cfg, tmp_path / "b")
    for name in ("commands.csv", "trades.csv", "orders.csv", "rejects.csv", "days.csv",
                 "quotes.csv", "balances.json", "agents.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first.summary["ledger_reconciles"] is True
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["negotiations"] == first.summary["negotiations"]
    with open(tmp_path / "a" / "commands.csv") as f:
        rows = list(csv.DictReader(f))
    assert "counterparty" in rows[0] and "target" not in rows[0]
    talk = [r for r in rows if r["action"].startswith("BLOCK_")]
    assert {r["action"] for r in talk} == {"BLOCK_QUOTE", "BLOCK_COUNTER", "BLOCK_ACCEPT",
                                           "BLOCK_WITHDRAW"}
    assert all(r["counterparty"] == "" for r in rows if r["action"] != "BLOCK_QUOTE")
    assert any(r["counterparty"] for r in talk)
    with open(tmp_path / "a" / "trades.csv") as f:
        negotiated = [r for r in csv.DictReader(f) if r["buy_order_id"] == r["sell_order_id"]]
    assert len(negotiated) == first.summary["negotiations"]["trades"]
    assert all(r["segment"] == "BLOCK" and r["buy_order_id"].startswith("q")
               for r in negotiated)
    # the order file replays: the same trades, rejects, days; quotes.csv as the simulator's
    again = tmp_path / "match"
    m = invoke("match", tmp_path / "a" / "commands.csv", "--accounts",
               tmp_path / "a" / "accounts.csv", "--prior-close", cfg.prior_close,
               "--out", again, "-q")
    assert m.exit_code == 0, m.output
    for name in ("trades.csv", "rejects.csv", "days.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (again / name).read_bytes(), name
    # (but for the last day's quotes: cea match ends inside it, the simulator closes it)
    mine = (tmp_path / "a" / "quotes.csv").read_text().splitlines()
    theirs = (again / "quotes.csv").read_text().splitlines()
    assert mine[0] == theirs[0] and len(mine) == len(theirs)
    for a, b in zip(mine[1:], theirs[1:]):
        assert a == b or (b.split(",")[6] == "LIVE" and a.split(",")[6] == "EXPIRED")


def test_negotiate_share_is_checked_and_the_scenarios_negotiate():
    with pytest.raises(SimConfigError, match="negotiate_share"):
        load_config(**{"covered_entity": msgspec.structs.replace(
            SimConfig().covered_entity, negotiate_share=1.5)})
    assert load_config(scenario="first-period").covered_entity.negotiate_share == 0.3
    assert load_config(scenario="2024").covered_entity.negotiate_share == 0.2


def test_via_server_runs_without_negotiations(tmp_path):
    cfg = negotiating_config()
    off = without_negotiations(cfg)
    assert negotiations_configured(cfg) and not negotiations_configured(off)
    path = tmp_path / "sim.toml"
    path.write_text(
        "days = 1\nsteps_per_hour = 2\n[population]\ncovered_entities = 10\nmarket_makers = 1\n"
        "noise_traders = 4\ninstitutions = 0\nindividuals = 0\nblock_traders = 0\n"
        "[covered_entity]\nact_probability = 0.05\nnegotiate_share = 0.5\n")
    out = tmp_path / "vs"
    r = run_cea("simulate", "--config", str(path), "--via-server", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "negotiated block agreements are off with --via-server" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "via-server" and summary["negotiations"] == {
        "off": NEGOTIATIONS_OFF}
