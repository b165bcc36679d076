"""Covered entities negotiate block agreements (issue 20; the market's 大宗协议交易,
spec §3b).

With ``covered_entity.negotiate_share`` above 0, that share of the covered entities' afternoon
block decisions (a lot of 100,000 t or more, priced ``block_discount_bps`` under the listed
price) becomes a negotiation instead of a BLOCK limit order (``sim.agents.Orders.negotiate``).
``Negotiator`` turns those intents into engine commands (``COMMAND_DTYPE`` rows, account =
agent number) and plays the covered entities' side of every live negotiation, step by step:

- **the quote**: the entity (the maker) addresses a BLOCK_QUOTE at its discounted price to a
  covered entity with the opposite large need that is free to deal (not negotiating
  already, not quoting this step) and can deliver or pay for a block at that price: one of
  them at random (the intent's ``pick``). The quantity is the maker's lot, capped by what
  the counterparty needs and can deliver or pay for. With no such counterparty the quote
  goes on the public board (no counterparty);
- **the answer**: at the next step (every step while it is live) the party whose turn it is
  (the one that did not make the latest terms) answers. Its *position* is, the first time,
  the price it would itself ask or bid for a block now (the same formula as its block
  orders: the listed price less the discount, its urgency and a fresh draw of its price
  noise), afterwards its own latest proposal. It **accepts** (BLOCK_ACCEPT, stating the
  terms) when the price is no worse for it than its position, or within
  ``negotiate_tolerance_bps`` of it, and it can take the whole quantity; otherwise it
  **counters** (BLOCK_COUNTER) halfway from the terms to its position (the gap between the
  two parties halves each round) with the quantity it can do; after
  ``negotiate_rounds`` counters, or when it no longer needs a block or cannot pay for or
  deliver one, it **withdraws** (BLOCK_WITHDRAW);
- **the board**: a public quote is answered, as above, by a free covered entity with the
  opposite need (one at random), which becomes its counterparty; unanswered for
  ``negotiate_rounds`` steps, its maker withdraws it;
- **expiry**: quotes still live at 15:00 expire in the engine by themselves.

A party to a live negotiation decides nothing else meanwhile (``Market.busy``). Capacities
are the parties' own balances (available cash and sellable allowances, plus what this quote
already reserves for them), less the open quantity of their working listed order on the
same side, so a party never commits past its position and hopeless commands are not sent
(an INSUFFICIENT_* reject remains possible when the step's other orders change a balance).
Quotes of user agents (``sim.agent.Agent.block_quote``) are answered the same way when a
covered entity is their counterparty, or finds them on the board.

Everything is deterministic in the seed: quotes are answered in the order they were made,
and the draws (a responder's price noise, a board quote's responder) come from the agents'
generator, only while negotiations are switched on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine import batch as B
from engine.codes import NO_PRICE, NO_REF, Action, Segment, Side
from engine.rules import BLOCK_MIN_QTY

from . import agents as A


@dataclass
class Talk:
    """The simulator's side of one live negotiation: each covered party's position (its
    own latest proposal, fen) and limit (the worst price it accepts: its own price when it
    entered, ``negotiate_tolerance_bps`` its way), and how many steps a board quote has
    waited."""

    positions: dict[int, int] = field(default_factory=dict)
    limits: dict[int, int] = field(default_factory=dict)
    waited: int = 0


class Negotiator:
    """The covered entities' negotiations in one simulation (see the module)."""

    def __init__(self, params: dict, engine):
        self.p = params
        self.engine = engine
        self.book = engine.book
        self.accounts = engine.balances  # engine.accounts.Accounts
        self.talks: dict[int, Talk] = {}  # quote handle -> its talk (every live quote seen)
        self.counters: dict[int, int] = {}  # quote handle -> counters made on it

    # ------------------------------------------------------------------ views

    def live(self) -> dict:
        return self.book.negotiations.live

    def busy(self, n_agents: int) -> np.ndarray:
        """Agents party to a live quote (its maker, its counterparty)."""
        out = np.zeros(n_agents, dtype=bool)
        for q in self.live().values():
            for a in (q.maker, q.counterparty):
                if 0 <= a < n_agents:
                    out[a] = True
        return out

    def _unit(self, price: int) -> int:
        """Cash one tonne bought at ``price`` reserves (the fee rounded up)."""
        return self.accounts.unit(Side.BUY, price, Segment.BLOCK) if self.accounts.enabled \
            else price

    def _capacity(self, agent: int, side: int, price: int, m: A.Market, q=None) -> int:
        """Tonnes ``agent`` can pay for (buy) or deliver (sell) at ``price`` now, with what
        quote ``q`` already reserves for it (an acceptance or counter gives that back
        first)."""
        held = q.reserved.get(agent) if q is not None else None
        if side == Side.BUY:
            cash = int(m.cash[agent])
            if held is not None:
                cash += held[1] * self._unit(held[0])
            return cash // max(self._unit(price), 1)
        return int(m.sellable[agent]) + (held[1] if held is not None else 0)

    def _wants(self, agents: A.Agents, agent: int, side: int) -> int:
        """Tonnes ``agent`` still needs on ``side``, less its working listed order's open
        quantity there (0 if its need is the other way)."""
        need = int(agents.need[agent])
        need = need if side == Side.BUY else -need
        if need <= 0:
            return 0
        h = int(agents.working[agent, side - 1])
        if h >= 0:
            need -= int(self.book.order_state(h)[4])
        return max(need, 0)

    def _free(self, agents: A.Agents, side: int, price: int, m: A.Market,
              taken: np.ndarray) -> list[tuple[int, int]]:
        """Covered entities free to deal a block on ``side`` at ``price``: (agent, tonnes
        it can do), in agent order."""
        covered = agents.of(A.AgentKind.COVERED_ENTITY)
        need = agents.need[covered] if side == Side.BUY else -agents.need[covered]
        if side == Side.BUY:
            room = m.cash[covered] // max(self._unit(price), 1)
        else:
            room = m.sellable[covered]
        maybe = covered[(need >= BLOCK_MIN_QTY) & (room >= BLOCK_MIN_QTY) & ~taken[covered]]
        out = []
        for a in maybe.tolist():
            can = min(self._wants(agents, a, side), self._capacity(a, side, price, m))
            if can >= BLOCK_MIN_QTY:
                out.append((a, can))
        return out

    def own_price(self, side: int, m: A.Market, rng: np.random.Generator) -> int:
        """What a covered entity would ask or bid for a block now: the price its block
        orders have (``sim.agents._covered``), with a fresh draw of its price noise."""
        p = self.p
        u = A.urgency(m.days_left, p)
        anchor = m.last + (m.fundamental - m.last) * p.get("value_chase_pct", 0) // 100
        base = anchor - anchor * p.get("block_discount_bps", 0) // 10_000
        offset = int(np.rint(rng.normal(p["aggression_ticks"] * (u - 1) - p["patience_ticks"],
                                        p["price_sigma_ticks"])))
        sign = 1 if side == Side.BUY else -1
        return int(min(max(base + sign * offset, m.block_band[0]), m.block_band[1]))

    def _limit(self, side: int, price: int) -> int:
        """The worst price a party whose own price is ``price`` accepts."""
        tolerance = price * self.p.get("negotiate_tolerance_bps", 0) // 10_000
        return price + tolerance if side == Side.BUY else price - tolerance

    # ------------------------------------------------------------------ a step

    def step(self, intents: list[tuple], agents: A.Agents, m: A.Market, ts: int,
             next_order: int, rng: np.random.Generator) -> tuple[np.ndarray, int, list[str]]:
        """The step's negotiation commands from ``ts`` on: answers to the live quotes (in
        the order made), then the new quotes of ``intents`` (``Orders.negotiations``), whose
        handles start at ``next_order``. Returns the rows, the next free handle and the new
        quotes' ids (``q<handle>``, for the engine's order-id table)."""
        live = self.live()
        for ref in [r for r in self.talks if r not in live]:
            del self.talks[ref]
            self.counters.pop(ref, None)
        covered = agents.kind == A.AgentKind.COVERED_ENTITY
        taken = self.busy(len(agents))
        rows: list[tuple] = []  # (action, account, ref, side, price, qty, peer)
        for q in sorted(live.values(), key=lambda q: q.seq):
            self._answer(q, agents, covered, m, rng, taken, rows)
        names = []
        if intents:
            cat = lambda k: np.concatenate([part[k] for part in intents])  # noqa: E731
            agent, side, price, qty, pick = (cat(k) for k in range(5))
            taken[agent] = True  # quoting this step: nobody's counterparty
            for a, sd, pr, qt, u in zip(agent.tolist(), side.tolist(), price.tolist(),
                                        qty.tolist(), pick.tolist()):
                other = Side.SELL if sd == Side.BUY else Side.BUY
                free = self._free(agents, other, pr, m, taken)
                peer = NO_REF
                if free:
                    peer, can = free[int(u * len(free))]
                    qt = min(qt, can)
                    taken[peer] = True
                ref = next_order
                next_order += 1
                names.append(f"q{ref}")
                rows.append((Action.BLOCK_QUOTE, a, ref, sd, pr, qt, peer))
                self.talks[ref] = Talk({a: pr}, {a: self._limit(sd, pr)})
        cmds = B.empty_commands(len(rows))
        for i, (action, account, ref, sd, pr, qt, peer) in enumerate(rows):
            c = cmds[i]
            c["ts"], c["action"], c["account"], c["order"] = ts + i, action, account, ref
            c["side"], c["price"], c["qty"], c["peer"] = sd, pr, qt, peer
        return cmds, next_order, names

    def _answer(self, q, agents, covered, m, rng, taken, rows) -> None:
        """The covered party whose turn it is on quote ``q`` answers it (if any)."""
        p = self.p
        talk = self.talks.setdefault(q.ref, Talk())
        rounds = p.get("negotiate_rounds", 4)
        n = len(covered)
        if q.counterparty == NO_REF:  # on the board: the maker waits, someone may answer
            maker_side = q.side
            side = Side.SELL if maker_side == Side.BUY else Side.BUY
            free = self._free(agents, side, q.price, m, taken)
            if not free:
                talk.waited += 1
                if talk.waited > rounds and 0 <= q.maker < n and covered[q.maker]:
                    rows.append((Action.BLOCK_WITHDRAW, q.maker, q.ref, 0, NO_PRICE, 0, NO_REF))
                return
            party, _ = free[int(rng.random() * len(free))]
            taken[party] = True
        else:
            party = q.counterparty if q.proposer == q.maker else q.maker
            if not (0 <= party < n and covered[party]):
                return  # a user agent's turn: it answers itself
        side = q.side_of(party)
        can = min(self._wants(agents, party, side), self._capacity(party, side, q.price, m, q))
        if can < BLOCK_MIN_QTY:
            return _withdraw(q, party, rows)
        position = talk.positions.get(party)
        if position is None:
            position = talk.positions[party] = self.own_price(side, m, rng)
        limit = talk.limits.get(party)
        if limit is None:
            limit = talk.limits[party] = self._limit(side, position)
        buy = side == Side.BUY
        fine = q.price <= limit if buy else q.price >= limit
        qty = min(q.qty, can)
        if fine and qty == q.qty:
            rows.append((Action.BLOCK_ACCEPT, party, q.ref, 0, q.price, q.qty, NO_REF))
            return
        if self.counters.get(q.ref, 0) >= rounds or (not fine and position == limit):
            return _withdraw(q, party, rows)  # no more rounds, or no further to go
        price = NO_PRICE
        if not fine:
            # halfway from its position to the terms (rounded its way: a buyer's down),
            # never past its limit
            price = min((q.price + position) // 2, limit) if buy else \
                max(-((-(q.price + position)) // 2), limit)
            talk.positions[party] = price
            qty = min(qty, self._capacity(party, side, price, m, q))
            if qty < BLOCK_MIN_QTY:
                return _withdraw(q, party, rows)
        self.counters[q.ref] = self.counters.get(q.ref, 0) + 1
        rows.append((Action.BLOCK_COUNTER, party, q.ref, 0, price,
                     qty if qty != q.qty else 0, NO_REF))


def _withdraw(q, party: int, rows: list) -> None:
    """``party`` ends the negotiation: a BLOCK_WITHDRAW, unless ``q`` is on the board and
    ``party`` not its maker (only the maker withdraws a public quote: the others leave it)."""
    if q.counterparty != NO_REF or party == q.maker:
        rows.append((Action.BLOCK_WITHDRAW, party, q.ref, 0, NO_PRICE, 0, NO_REF))


__all__ = ["Negotiator", "Talk"]
