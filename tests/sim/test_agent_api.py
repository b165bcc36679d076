"""The agent API (sim.agent): a user's class in cea simulate and against a live cea serve."""

from __future__ import annotations

import asyncio
import csv
import textwrap
from pathlib import Path

import pytest

from engine.codes import Side
from gateway.client import Client
from sim.agent import Agent, AgentError, load_agent_class
from sim.live import LiveRun
from sim.simulate import Population, SimConfig, SimConfigError, UserAgent, check_config, \
    simulate

from ..gateway.support import TOKENS, config, run_with_server

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "my_agent.py"
SMALL = Population(covered_entities=40, market_makers=2, noise_traders=10, institutions=2,
                   individuals=5, block_traders=2)


class Recorder(Agent):
    """Cancels an order it never sent, buys a lot at the best offer once there is one, and
    records every callback."""

    def on_start(self):
        self.seen = {"start": 1, "step": 0, "book": 0, "fill": [], "order": [], "close": []}

    def on_book(self, book):
        self.seen["book"] += 1

    def on_step(self, book):
        self.seen["step"] += 1
        if self.seen["step"] == 1:
            self.cancel("never-sent")
        if not self.orders_sent and book.best_ask is not None:
            self.buy(200, book.best_ask)

    def on_execution(self, fill):
        self.seen["fill"].append(fill)

    def on_order(self, update):
        self.seen["order"].append(update)

    def on_day_close(self, day):
        self.seen["close"].append(day)


def _module(tmp_path, monkeypatch, source: str, name: str = "user_agents_mod") -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _cfg(*agents, days=2, **kw) -> SimConfig:
    cfg = SimConfig(days=days, population=SMALL, agents=list(agents), **kw)
    check_config(cfg)
    return cfg


def test_the_example_agent_trades_in_a_simulation_and_its_pnl_adds_up(tmp_path):
    from sim.simout import run

    cfg = _cfg(UserAgent(agent=f"{EXAMPLE}:MeanReverter", cash=2_000_000,
                         allowances=50_000), days=3)
    result, paths = run(cfg, tmp_path)
    users = result.summary["user_agents"]
    assert [u["name"] for u in users] == ["MEANREVERTER"]
    assert users[0]["orders"] > 0 and users[0]["trades"] > 0
    with open(tmp_path / "agents.csv", newline="") as f:
        rows = {r["agent"]: r for r in csv.DictReader(f)}
    me = rows["MEANREVERTER"]
    assert me["kind"] == "USER" and me["account_type"] == "INSTITUTION"
    assert me["opening_cash"] == "2000000.00" and me["opening_allowances"] == "50000"
    # P&L = change in cash + change in allowances at the last close, to the fen
    fen = lambda s: int(s.replace(".", ""))  # noqa: E731
    pnl = fen(me["cash"]) - fen(me["opening_cash"]) + \
        (int(me["allowances"]) - int(me["opening_allowances"])) * fen(me["last_close"])
    assert fen(me["pnl"]) == pnl and me["pnl"] == users[0]["pnl_cny"]
    assert int(me["bought_t"]) - int(me["sold_t"]) == \
        int(me["allowances"]) - int(me["opening_allowances"]) == users[0]["position_t"]
    # every agent has a row; tonnes bought equal tonnes sold over the market
    assert sum(int(r["bought_t"]) for r in rows.values()) == \
        sum(int(r["sold_t"]) for r in rows.values())
    assert result.summary["ledger_reconciles"]
    # the user's orders are in the replayable order file under their own ids
    commands = (tmp_path / "commands.csv").read_text()
    assert ",MEANREVERTER,NEW,MEANREVERTER.1," in commands


def test_a_run_with_a_user_agent_is_reproducible():
    cfg = _cfg(UserAgent(agent=f"{EXAMPLE}:MeanReverter"))
    assert simulate(cfg).summary["trade_checksum"] == simulate(cfg).summary["trade_checksum"]


def test_recorder_sees_every_kind_of_callback(tmp_path, monkeypatch):
    import sim.simulate as S

    made = []
    original = S.user_agents

    def keep(cfg, agents):
        instances, numbers = original(cfg, agents)
        made.extend(instances)
        return instances, numbers

    monkeypatch.setattr(S, "user_agents", keep)
    mod = _module(tmp_path, monkeypatch, "from tests.sim.test_agent_api import Recorder\n")
    r = simulate(_cfg(UserAgent(agent=f"{mod}:Recorder", name="REC")))
    (rec,) = made
    seen = rec.seen
    steps = r.config.steps_per_hour * 4 * len(r.days)
    assert seen["start"] == 1 and seen["step"] == steps and seen["book"] == steps
    statuses = [u.status for u in seen["order"]]
    assert statuses[0] == "CANCEL_REJECTED" and seen["order"][0].reason == "UNKNOWN_ORDER"
    assert "ACCEPTED" in statuses
    assert sum(f.qty for f in seen["fill"]) == rec.bought
    assert all(f.side == Side.BUY for f in seen["fill"])
    assert [d.date for d in seen["close"]] == [d.date for d in r.days]
    assert rec.allowances - rec.opening_allowances == rec.bought


def test_config_errors_name_the_agent(tmp_path, monkeypatch):
    mod = _module(tmp_path, monkeypatch, """
        class NotAnAgent:
            pass
        """, "bad_agents_mod")
    cases = [
        (UserAgent(agent="no_such_module_xyz:A"), "cannot import"),
        (UserAgent(agent=f"{mod}:Missing"), "has no Missing"),
        (UserAgent(agent=f"{mod}:NotAnAgent"), "not a subclass"),
        (UserAgent(agent="nocolon"), "MODULE:CLASS"),
        (UserAgent(agent=f"{EXAMPLE}:MeanReverter", account_type="INDIVIDUAL"),
         "not admitted"),
        (UserAgent(agent=f"{EXAMPLE}:MeanReverter", count=0), "count"),
        (UserAgent(agent=f"{EXAMPLE}:MeanReverter", name="bad name"), "letters or digits"),
    ]
    for ua, words in cases:
        with pytest.raises(SimConfigError, match=words):
            _cfg(ua, admitted=["COVERED_ENTITY", "INSTITUTION"])
    with pytest.raises(SimConfigError, match="built-in agent"):
        simulate(_cfg(UserAgent(agent=f"{EXAMPLE}:MeanReverter", name="MM0001")))


def test_an_exception_in_the_agent_says_where(tmp_path, monkeypatch):
    mod = _module(tmp_path, monkeypatch, """
        from sim.agent import Agent

        class Broken(Agent):
            def on_step(self, book):
                raise ValueError("oops")

        class BadQty(Agent):
            def on_step(self, book):
                self.buy(0, 6000)
        """, "broken_agents_mod")
    with pytest.raises(AgentError, match=r"BROKEN: Broken.on_step raised ValueError: oops "
                                         r"\(.*broken_agents_mod.py:6\)"):
        simulate(_cfg(UserAgent(agent=f"{mod}:Broken")))
    with pytest.raises(AgentError, match="qty must be a positive whole number"):
        simulate(_cfg(UserAgent(agent=f"{mod}:BadQty")))


def test_toml_agents_tables_and_params(tmp_path):
    from sim.simulate import load_config

    path = tmp_path / "sim.toml"
    path.write_text(f'days = 2\n[[agents]]\nagent = "{EXAMPLE}:MeanReverter"\ncount = 2\n'
                    'name = "MR"\nparams = {lot = 500}\n')
    cfg = load_config(path)
    assert [(a.count, a.name, a.params) for a in cfg.agents] == [(2, "MR", {"lot": 500})]
    assert load_agent_class(cfg.agents[0].agent).__name__ == "MeanReverter"


def test_the_same_class_runs_against_a_live_server(tmp_path):
    cls = load_agent_class(f"{EXAMPLE}:MeanReverter")

    class Once(cls):
        """The example's class, plus one buy at the resting offer on the first step."""

        def on_step(self, book):
            if not getattr(self, "bought_once", False) and book.best_ask is not None:
                self.bought_once = True
                self.buy(300, book.best_ask)
                return
            super().on_step(book)

    async def body(server, host, port):
        async with Client(host, port, "A002", TOKENS["A002"]) as seller:
            ack = await seller.place("s1", "CEA", Side.SELL, 1_000, 6_000)
            assert ack.exec == 1
            agent = Once(lot=100)
            run = LiveRun(agent, host, port, "A001", TOKENS["A001"], step=0.05, duration=1.0)
            figures = await run.main()
            return agent, figures

    agent, f = run_with_server(config(tmp_path), body)
    assert f["orders"] >= 1 and f["trades"] >= 1 and f["bought_t"] >= 300
    assert f["allowances"] - f["opening_allowances"] == f["bought_t"] - f["sold_t"]
    assert f["pnl"] == (f["cash"] - f["opening_cash"]) + \
        (f["allowances"] - f["opening_allowances"]) * f["mark"]
    assert agent.prices  # its on_start and on_step ran


class EveryCommand(Agent):
    """Sends each kind of command the wire has: LIMIT DAY, MARKET IOC and FOK, amend,
    cancel, cancel_all, and an order outside the band (rejected)."""

    def on_step(self, book):
        k = self.orders_sent
        if book.mid is None:
            return
        low, high = book.band
        if k % 6 == 0:
            self.buy(300, book.mid - 20)
        elif k % 6 == 1:
            self.sell(200, tif="IOC")
        elif k % 6 == 2:
            self.buy(150, tif="FOK")
        elif k % 6 == 3:
            for order_id, o in list(self.open_orders.items())[:1]:
                self.amend(order_id, o.price + 1, o.open_qty + 100)
            self.sell(100, high + 1)  # outside the band: rejected
        elif k % 6 == 4:
            self.sell(250, book.mid + 15)
            self.cancel_all(Side.BUY)
        else:
            for order_id in list(self.open_orders)[:1]:
                self.cancel(order_id)
            self.buy(100, book.mid)


def test_every_command_of_a_user_agent_replays_through_cea_match(tmp_path, monkeypatch):
    from sim.simout import run
    from tests.test_cli import invoke

    mod = _module(tmp_path, monkeypatch, "from tests.sim.test_agent_api import EveryCommand\n",
                  "every_command_mod")
    out = tmp_path / "sim"
    result, _ = run(_cfg(UserAgent(agent=f"{mod}:EveryCommand", name="EVERY"), days=3), out)
    commands = (out / "commands.csv").read_text()
    for words in (",EVERY,NEW,EVERY.1,BUY,LIMIT,DAY,", ",SELL,MARKET,IOC,,200,",
                  ",BUY,MARKET,FOK,,150,", ",EVERY,AMEND,", ",EVERY,CANCEL,"):
        assert words in commands, words
    # a MARKET FOK is MALFORMED (MARKET orders are IOC), as cea match and the gateway say
    assert result.summary["rejects"].get("PRICE_OUTSIDE_BAND")
    assert result.summary["rejects"].get("MALFORMED")
    again = tmp_path / "match"
    m = invoke("match", out / "commands.csv", "--accounts", out / "accounts.csv",
               "--prior-close", "70.00", "--out", again, "-q")
    assert m.exit_code == 0, m.output
    for name in ("trades.csv", "rejects.csv", "days.csv"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    assert result.summary["ledger_reconciles"]


def test_the_same_class_runs_via_server_in_a_simulation(tmp_path, monkeypatch):
    from sim.viaserver import run_via_server

    mod = _module(tmp_path, monkeypatch, "from tests.sim.test_agent_api import EveryCommand\n",
                  "every_command_vs_mod")
    cfg = SimConfig(days=2, steps_per_hour=3, population=Population(
        covered_entities=20, market_makers=2, noise_traders=6, institutions=2, individuals=4,
        block_traders=2), agents=[UserAgent(agent=f"{mod}:EveryCommand", name="EVERY")])
    check_config(cfg)
    result, _ = run_via_server(cfg, tmp_path / "vs")
    (user,) = result.summary["user_agents"]
    assert user["name"] == "EVERY" and user["orders"] > 5
    trades = (tmp_path / "vs" / "trades.csv").read_text()
    assert trades.count(",EVERY,") == user["trades"] > 0
    assert result.summary["ledger_reconciles"] is True
    assert "MALFORMED" in result.summary["rejects"]  # its MARKET FOK, as in-process


def test_the_docs_show_the_example_as_it_is():
    """docs/agents.md's example is the tested file's code, line for line."""
    docs = (EXAMPLE.parents[1] / "agents.md").read_text()
    code = EXAMPLE.read_text()
    shown = docs.split("```python\n", 1)[1].split("```\n", 1)[0]
    assert shown == code[code.index("from sim.agent import Agent"):]
    assert len(shown.splitlines()) <= 40  # "a 30-line agent": the class is about that
