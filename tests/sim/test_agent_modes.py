"""The agent API's market modes (issue 20): a user's ``sim.agent.Agent`` takes an order off
the displayed book (``take``) and negotiates block agreements (``block_quote``,
``block_counter``, ``block_accept``, ``block_withdraw``; ``on_quote``) in process; runners
that cannot send them refuse with a clear error."""

from __future__ import annotations

import csv

import pytest

from engine.codes import Segment, Side
from sim import agents as A
from sim.agent import MODES_UNSUPPORTED, Agent, AgentError, Book, RecordingSender, Sender
from sim.simulate import Population, SimConfig, UserAgent, check_config, simulate

SMALL = Population(covered_entities=40, market_makers=2, noise_traders=10, institutions=2,
                   individuals=5, block_traders=2)
DAY = 86_400_000_000
PM = 13 * 3_600_000_000


class Taker(Agent):
    """Takes a lot off the best offer that is not its own, every step."""

    lot = 300

    def on_start(self):
        self.fills, self.updates, self.shown = [], [], []

    def on_step(self, book):
        self.shown.append((book.ask_orders, book.asks))
        offer = next((o for o in book.ask_orders if not o.own), None)
        if offer is not None and self.cash_available > 2 * self.lot * offer.price:
            self.take("BUY", min(self.lot, offer.qty), offer.order_id)

    def on_execution(self, fill):
        self.fills.append(fill)

    def on_order(self, update):
        self.updates.append(update)


class Quoter(Agent):
    """Each afternoon quotes a block (to ``peer``, or the board) 5 % under the last price;
    accepts whatever comes back; on day 1 also tries a few things that are refused."""

    peer = ""
    side = "SELL"

    def on_start(self):
        self.quotes, self.fills, self.updates, self.days = [], [], [], set()
        self.made = []

    def on_step(self, book):
        day = book.now // DAY
        if book.now % DAY >= PM and day not in self.days:
            if not self.days:
                self.block_counter("no-such-quote", price=5000)
                self.block_quote(self.side, 150_000, 5000, "NOBODY")
            self.days.add(day)
            ref = book.last or book.prior_close
            self.made.append(self.block_quote(self.side, 150_000, ref - ref // 20,
                                              self.peer or None))
        for q in book.quotes:
            if q.mine and q.my_turn:
                self.block_accept(q.quote_id, q.price, q.qty)

    def on_quote(self, update):
        self.quotes.append(update)

    def on_execution(self, fill):
        self.fills.append(fill)

    def on_order(self, update):
        self.updates.append(update)


class Counterer(Agent):
    """Counters a quote addressed to it 1 % lower once, then accepts; withdraws none."""

    def on_start(self):
        self.quotes, self.fills, self.seen = [], [], []
        self.countered = set()

    def on_step(self, book):
        for q in book.quotes:
            self.seen.append(q)
            if q.public or not q.my_turn:
                continue
            if q.quote_id not in self.countered:
                self.countered.add(q.quote_id)
                self.block_counter(q.quote_id, price=q.price - q.price // 100)
            else:
                self.block_accept(q.quote_id)

    def on_quote(self, update):
        self.quotes.append(update)

    def on_execution(self, fill):
        self.fills.append(fill)


def _run(tmp_path, monkeypatch, *agents, **kw):
    """Simulate with ``agents`` (UserAgent tables naming classes of this module); returns
    the result and the instances, by account."""
    import sim.simulate as S

    (tmp_path / "modes_mod.py").write_text(
        "from tests.sim.test_agent_modes import Counterer, Quoter, Taker\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []
    original = S.user_agents

    def keep(cfg, agents_):
        instances, numbers = original(cfg, agents_)
        made.extend(instances)
        return instances, numbers

    monkeypatch.setattr(S, "user_agents", keep)
    cfg = SimConfig(days=kw.pop("days", 2), population=SMALL, agents=list(agents), **kw)
    check_config(cfg)
    return simulate(cfg), {a.account: a for a in made}


def test_the_methods_check_their_arguments_and_a_recording_sender_keeps_them():
    a = Agent()
    a.bind(RecordingSender(), "US01", "CEA", cash=10_000_000, allowances=500_000)
    assert a.take("BUY", 100, "o7") == "US01.1"
    q = a.block_quote(Side.SELL, 200_000, 5800, "CE0001")
    a.block_counter(q, qty=150_000)
    a.block_accept(q, 5800, 150_000)
    a.block_withdraw(q)
    sent = a.sender.sent
    assert [c.action for c in sent] == ["TAKE", "BLOCK_QUOTE", "BLOCK_COUNTER", "BLOCK_ACCEPT",
                                        "BLOCK_WITHDRAW"]
    assert (sent[0].target, sent[0].side, sent[0].qty) == ("o7", Side.BUY, 100)
    assert (sent[1].counterparty, sent[1].price, sent[1].qty) == ("CE0001", 5800, 200_000)
    assert (sent[2].price, sent[2].qty) == (None, 150_000) and a.orders_sent == 2
    for bad in (lambda: a.take("HOLD", 100, "o7"), lambda: a.take("BUY", 0, "o7"),
                lambda: a.take("BUY", 100, ""), lambda: a.block_quote("BUY", 2.5, 5800),
                lambda: a.block_quote("BUY", 200_000, -1), lambda: a.block_counter(q),
                lambda: a.block_accept(q, price="58.00")):
        with pytest.raises(AgentError):
            bad()
    assert Book("CEA", 0, [], [], None, 6000).quotes == []


def test_runners_without_the_modes_refuse_them_clearly():
    from sim.viaserver import _StepSender

    for sender in (Sender(), _StepSender(None, "CEA")):
        a = Agent()
        a.bind(sender, "US01", "CEA", cash=0, allowances=0)
        for call in (lambda: a.take("BUY", 100, "o7"),
                     lambda: a.block_quote("SELL", 200_000, 5800),
                     lambda: a.block_counter("q1", price=5800), lambda: a.block_accept("q1"),
                     lambda: a.block_withdraw("q1")):
            with pytest.raises(AgentError, match="not available with this runner"):
                call()
    assert "cea simulate without --via-server" in MODES_UNSUPPORTED


def test_a_user_agent_takes_orders_off_the_displayed_book(tmp_path, monkeypatch):
    from sim.simout import write_tables

    r, made = _run(tmp_path, monkeypatch, UserAgent(agent="modes_mod:Taker", name="TK",
                                                    cash=5_000_000))
    tk = made["TK"]
    # the book shows the orders of its best five levels, best first, none of them its own
    shown = [orders for orders, _ in tk.shown if orders]
    assert shown and all(not o.own for orders in shown for o in orders)
    for orders, levels in tk.shown:
        assert sorted({o.price for o in orders}) == [lv[0] for lv in levels]
    assert tk.fills and all(f.segment == Segment.LISTED and f.side == Side.BUY
                            for f in tk.fills)
    assert tk.bought == sum(f.qty for f in tk.fills) and tk.trades == len(tk.fills)
    # a target gone by the time the take arrives (the market makers requote first) is a
    # reject with its reason, told to the agent
    refused = [u for u in tk.updates if u.status == "REJECTED"]
    assert all(u.action == "TAKE" and u.reason.startswith(("UNKNOWN_TARGET", "TARGET_"))
               for u in refused)
    write_tables(r, tmp_path / "out")
    with open(tmp_path / "out" / "commands.csv") as f:
        takes = [row for row in csv.DictReader(f) if row["account"] == "TK"]
    assert takes and all(row["action"] == "TAKE" and row["target"].startswith("o")
                         for row in takes)
    [me] = r.summary["user_agents"]
    assert me["trades"] == len(tk.fills) and me["position_t"] == tk.bought


def test_two_user_agents_negotiate_a_block_agreement(tmp_path, monkeypatch):
    r, made = _run(tmp_path, monkeypatch,
                   UserAgent(agent="modes_mod:Quoter", name="QS", allowances=1_000_000,
                             params={"peer": "CB"}),
                   UserAgent(agent="modes_mod:Counterer", name="CB", cash=100_000_000))
    qs, cb = made["QS"], made["CB"]
    # the refusals: a quote it never saw, an account that does not exist
    refused = {(u.action, u.reason) for u in qs.updates if u.status == "REJECTED"}
    assert refused == {("BLOCK_COUNTER", "UNKNOWN_QUOTE"),
                       ("BLOCK_QUOTE", "UNKNOWN_COUNTERPARTY")}
    # each day: quoted, countered 1 % lower, accepted by the maker: one BLOCK trade
    assert len(qs.made) == 2
    for quote_id in qs.made:
        story = [(u.status, u.by) for u in qs.quotes if u.quote_id == quote_id]
        assert story == [("QUOTED", "QS"), ("COUNTERED", "CB"), ("ACCEPTED", "QS")]
        assert [(u.status, u.mine) for u in cb.quotes if u.quote_id == quote_id] == [
            ("QUOTED", False), ("COUNTERED", False), ("ACCEPTED", False)]
        quoted, countered = (u.price for u in qs.quotes if u.quote_id == quote_id and
                             u.status in ("QUOTED", "COUNTERED"))
        assert countered == quoted - quoted // 100
        (sold,) = [f for f in qs.fills if f.order_id == quote_id]
        (bought,) = [f for f in cb.fills if f.order_id == quote_id]
        assert (sold.side, bought.side) == (Side.SELL, Side.BUY)
        assert sold.price == bought.price == countered and sold.qty == bought.qty == 150_000
        assert sold.segment == Segment.BLOCK and sold.trade_id == bought.trade_id
    # what the counterparty was shown: addressed to it, not public, the maker named
    assert cb.seen and all(not q.public and not q.mine and q.other == "QS" and
                           q.my_side == Side.BUY for q in cb.seen)
    assert qs.sold == cb.bought == 300_000
    users = {u["name"]: u for u in r.summary["user_agents"]}
    assert users["QS"]["position_t"] == -300_000 and users["CB"]["position_t"] == 300_000
    assert "negotiations" not in r.summary  # the covered entities do not negotiate here


def test_covered_entities_answer_a_user_agents_public_quote(tmp_path, monkeypatch):
    from sim.simulate import CoveredEntity

    r, made = _run(tmp_path, monkeypatch,
                   UserAgent(agent="modes_mod:Quoter", name="QS", allowances=3_000_000),
                   days=3, covered_entity=CoveredEntity(negotiate_share=0.5))
    qs = made["QS"]
    ended = [u for u in qs.quotes if u.status in ("ACCEPTED", "WITHDRAWN", "EXPIRED")]
    assert len(ended) == len(qs.made) == 3
    accepted = [u for u in ended if u.status == "ACCEPTED"]
    assert accepted, [(u.status, u.by) for u in qs.quotes]
    for u in accepted:
        # a covered entity found it on the board and took the other side
        who = r.agents.names.index(u.counterparty)
        assert r.agents.kind[who] == A.AgentKind.COVERED_ENTITY and u.by in (u.counterparty, "QS")
    assert qs.sold == sum(f.qty for f in qs.fills) > 0
    assert r.summary["negotiations"]["accepted"] >= len(accepted)


def test_a_run_with_negotiating_user_agents_is_reproducible(tmp_path, monkeypatch):
    agents = (UserAgent(agent="modes_mod:Quoter", name="QS", allowances=1_000_000,
                        params={"peer": "CB"}),
              UserAgent(agent="modes_mod:Counterer", name="CB", cash=100_000_000),
              UserAgent(agent="modes_mod:Taker", name="TK", cash=5_000_000))
    first, _ = _run(tmp_path, monkeypatch, *agents)
    second, _ = _run(tmp_path, monkeypatch, *agents)
    assert first.summary["trade_checksum"] == second.summary["trade_checksum"]
