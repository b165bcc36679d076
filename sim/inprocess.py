"""User agents (``sim.agent.Agent``) inside ``cea simulate``: their commands join each
decision step's batch, the engine's events come back to them as fills and order updates.

At every step each agent sees its balances (from the engine's accounts), the LISTED book's
best five levels (and their orders, for takes), the live negotiated block quotes it may see
and the clock, in the order the agents are configured; its commands go to the engine after
the built-in agents' commands of the same step, a microsecond apart, in the order it sent
them. Order ids are ``ACCOUNT.N`` (N counts the agent's orders, takes and quotes from 1), so
a run is reproducible to the byte like any simulation.

Takes and negotiation commands naming what the engine never saw (a target or a quote id
unknown, a counterparty that is no account) are refused at once, as a cancel of an order
the agent never sent is: ``on_order`` with status REJECTED and the reason the engine would
give (UNKNOWN_TARGET, UNKNOWN_QUOTE, UNKNOWN_COUNTERPARTY).
"""

from __future__ import annotations

import numpy as np

from engine import batch as B
from engine.accounts import CA_RESERVED, CA_TOTAL, HD_PENDING, HD_RESERVED, HD_TOTAL
import dataclasses

from engine.codes import NO_PRICE, NO_REF, Action, EventKind, OrderType, QuoteEnd, Reason, \
    Segment, Side, Stp, TimeInForce
from engine.checks import new_order_codes_valid, order_check, take_check, terms_check
from engine.tradingdays import date_of_day

from .agent import Agent, Book, DayClose, Fill, OrderUpdate, QuoteUpdate, QuoteView, Sender, \
    ShownOrder, call, notify_fill, notify_order, notify_quote

_STATUS = {EventKind.ACCEPTED: "ACCEPTED", EventKind.CANCELLED: "CANCELLED",
           EventKind.EXPIRED: "EXPIRED", EventKind.AMENDED: "AMENDED"}
_REFUSED = {Action.NEW: "REJECTED", Action.CANCEL: "CANCEL_REJECTED",
            Action.AMEND: "AMEND_REJECTED"}
_NEGOTIATION = (Action.BLOCK_QUOTE, Action.BLOCK_COUNTER, Action.BLOCK_ACCEPT,
                Action.BLOCK_WITHDRAW)
_QUOTE_STATUS = {int(Action.BLOCK_QUOTE): "QUOTED", int(Action.BLOCK_COUNTER): "COUNTERED"}


class InProcessAgents(Sender):
    """The user agents of one simulation. ``handles[i]`` is ``agents[i]``'s account handle
    in the engine; ``names`` the engine's order-id table (``engine.orders``)."""

    def __init__(self, agents: list[Agent], handles: list[int], names, instrument: str,
                 accounts=None):
        self.agents = agents
        self.accounts = accounts  # the engine's account names (engine.accounts)
        self.by_account = dict(zip(handles, agents))
        self.handle_of = {id(a): h for a, h in zip(agents, handles)}
        self.names = names
        self.instrument = instrument
        self.pending: list[tuple] = []
        self.order_handle: dict[str, int] = {}  # order id -> order handle
        self.owner: dict[int, tuple[Agent, str]] = {}  # order handle -> (agent, order id)

    def __bool__(self) -> bool:
        return bool(self.agents)

    # ---- Sender: commands are kept until the step's batch is built

    def new(self, agent, side, qty, price, tif) -> str:
        order_id = f"{agent.account}.{agent.orders_sent + 1}"
        self.pending.append((Action.NEW, agent, order_id, side, qty, price, tif))
        return order_id

    def cancel(self, agent, order_id) -> None:
        self.pending.append((Action.CANCEL, agent, order_id, 0, 0, 0, 0))

    def amend(self, agent, order_id, price, qty) -> None:
        self.pending.append((Action.AMEND, agent, order_id, 0, qty, price, 0))

    def take_order(self, agent, side, qty, target) -> str:
        order_id = f"{agent.account}.{agent.orders_sent + 1}"
        self.pending.append((Action.TAKE, agent, order_id, side, qty, None, target))
        return order_id

    def block_quote(self, agent, side, qty, price, counterparty) -> str:
        quote_id = f"{agent.account}.{agent.orders_sent + 1}"
        self.pending.append((Action.BLOCK_QUOTE, agent, quote_id, side, qty, price,
                             counterparty))
        return quote_id

    def block_counter(self, agent, quote_id, price, qty) -> None:
        self.pending.append((Action.BLOCK_COUNTER, agent, quote_id, 0, qty, price, None))

    def block_accept(self, agent, quote_id, price, qty) -> None:
        self.pending.append((Action.BLOCK_ACCEPT, agent, quote_id, 0, qty, price, None))

    def block_withdraw(self, agent, quote_id) -> None:
        self.pending.append((Action.BLOCK_WITHDRAW, agent, quote_id, 0, None, None, None))

    # ---- the simulation's side

    def refresh(self, balances, now: int) -> None:
        """Each agent's balances and the clock, from the engine's accounts."""
        for handle, agent in self.by_account.items():
            cash = balances.cash[handle]
            held = balances.holdings[handle]  # one instrument: holding row == account handle
            agent.now = now
            agent.cash = int(cash[CA_TOTAL])
            agent.cash_available = int(cash[CA_TOTAL] - cash[CA_RESERVED])
            agent.allowances = int(held[HD_TOTAL])
            agent.sellable = int(held[HD_TOTAL] - held[HD_RESERVED] - held[HD_PENDING])

    def start(self, balances, now: int) -> None:
        self.refresh(balances, now)
        for agent in self.agents:
            agent.opening_cash, agent.opening_allowances = agent.cash, agent.allowances
            call(agent, "on_start")

    def step(self, engine, balances, now: int, last: int | None, prior_close: int,
             volume: int) -> None:
        """Show every agent the clock and the book; collect what they send."""
        self.refresh(balances, now)
        book = Book(self.instrument, now,
                    [(lv.price, lv.qty, lv.orders) for lv in engine.depth(side=Side.BUY)],
                    [(lv.price, lv.qty, lv.orders) for lv in engine.depth(side=Side.SELL)],
                    last, prior_close, "OPEN", volume)
        bids, asks = engine.resting(side=Side.BUY), engine.resting(side=Side.SELL)
        negotiating = bool(engine.book.negotiations.live)
        for agent in self.agents:
            if last is not None:
                agent.last_price = last
            mine = agent.account
            seen = dataclasses.replace(
                book,
                bid_orders=[ShownOrder(o.order_id, o.price, o.open, o.account == mine)
                            for o in bids],
                ask_orders=[ShownOrder(o.order_id, o.price, o.open, o.account == mine)
                            for o in asks],
                quotes=[_view(q, mine) for q in engine.quotes(mine)] if negotiating else [])
            call(agent, "on_book", seen)
            call(agent, "on_step", seen)

    def commands(self, ts: int, next_order: int) -> tuple[np.ndarray, int, list]:
        """The step's commands from ``ts`` on (``COMMAND_DTYPE``), the next free order
        handle, and the updates for commands naming orders the agent never sent."""
        rows = B.empty_commands(len(self.pending))
        keep = np.ones(len(rows), dtype=bool)
        refused = []
        new_names = []
        for i, (action, agent, order_id, side, qty, price, tif) in enumerate(self.pending):
            r = rows[i]
            r["ts"] = ts + i
            r["action"] = action
            r["account"] = self.handle_of[id(agent)]
            if action in (Action.TAKE, Action.BLOCK_QUOTE):
                # tif carries the take's target, the quote's counterparty (or None)
                if action == Action.TAKE:
                    other = self.names.find(tif)
                    unknown = other == NO_REF and Reason.UNKNOWN_TARGET
                else:
                    other = NO_REF if tif is None else self._account(tif)
                    unknown = other == NO_REF and tif is not None and \
                        Reason.UNKNOWN_COUNTERPARTY
                if unknown:
                    keep[i] = False
                    refused.append((agent, OrderUpdate(order_id, "REJECTED", unknown.name, 0,
                                                       ts, Action(action).name)))
                    continue
                r["order"] = next_order
                self.order_handle[order_id] = next_order
                self.owner[next_order] = (agent, order_id)
                new_names.append(order_id)
                next_order += 1
                r["side"], r["qty"] = side, qty
                if action == Action.TAKE:
                    r["type"], r["tif"], r["stp"] = OrderType.TAKE, TimeInForce.IOC, \
                        Stp.CANCEL_NEWEST
                    r["price"] = other  # the target (B.TAKE_TARGET)
                    r["check"] = take_check(True, qty, False)
                else:
                    r["price"], r["peer"] = price, other
                    r["check"] = terms_check(True, True, qty, True, price)
                continue
            if action in _NEGOTIATION:  # COUNTER, ACCEPT, WITHDRAW: a quote named by id
                handle = self.order_handle.get(order_id, self.names.find(order_id))
                if handle == NO_REF:
                    keep[i] = False
                    refused.append((agent, OrderUpdate(order_id, "REJECTED",
                                                       Reason.UNKNOWN_QUOTE.name, 0, ts,
                                                       Action(action).name)))
                    continue
                r["order"] = handle
                r["price"] = NO_PRICE if price is None else price
                r["qty"] = qty or 0
                r["check"] = terms_check(action != Action.BLOCK_COUNTER or
                                         price is not None or qty is not None,
                                         qty is not None, qty or 0, price is not None,
                                         price or 0)
                continue
            if action == Action.NEW:
                r["order"] = next_order
                self.order_handle[order_id] = next_order
                self.owner[next_order] = (agent, order_id)
                new_names.append(order_id)
                next_order += 1
                r["side"] = side
                r["type"] = OrderType.LIMIT if price is not None else OrderType.MARKET
                r["tif"] = tif
                r["stp"] = Stp.CANCEL_NEWEST
                r["price"] = price if price is not None else NO_PRICE
                r["qty"] = qty
                # the edge's checks, as the order file and the gateway make them
                well = new_order_codes_valid(side, r["type"], tif, Stp.CANCEL_NEWEST)
                r["check"] = order_check(well, qty, price is None, price is not None,
                                         price or 0)
                continue
            handle = self.order_handle.get(order_id)
            if handle is None or self.owner[handle][0] is not agent:
                keep[i] = False
                refused.append((agent, OrderUpdate(order_id, _REFUSED[action],
                                                   Reason.UNKNOWN_ORDER.name, 0, ts)))
                continue
            r["order"] = handle
            if action == Action.AMEND:
                r["price"], r["qty"] = price, qty
                r["check"] = order_check(True, qty, False, True, price)
        self.pending.clear()
        if new_names:
            self.names.add_many(new_names)
        rows = rows[keep]
        rows["ts"] = ts + np.arange(len(rows))
        return rows, next_order, refused

    def _account(self, name: str) -> int:
        """The account handle of ``name`` (NO_REF: no such account)."""
        return NO_REF if self.accounts is None else self.accounts.find(name)

    def deliver(self, ev: np.ndarray, cmds: np.ndarray, refused=()) -> None:
        """Route the batch's events (``cmds`` the batch it answered) to their agents."""
        for agent, update in refused:
            notify_order(agent, update)
        if not len(ev):
            return
        kind = ev[:, B.KIND]
        mine = np.isin(ev[:, B.ACCOUNT], list(self.by_account)) | \
            (np.isin(kind, [EventKind.TRADE, EventKind.QUOTE, EventKind.QUOTE_ENDED])
             & np.isin(ev[:, B.ACCOUNT2], list(self.by_account)))
        for row in ev[mine].tolist():
            k = row[B.KIND]
            if k in (EventKind.QUOTE, EventKind.QUOTE_ENDED):
                self._quote_event(row)
                continue
            if k == EventKind.TRADE and row[B.SEGMENT] == Segment.BLOCK and \
                    row[B.ORDER] == row[B.ORDER2]:  # an accepted negotiation (spec §3b)
                quote_id = self.names.name(row[B.ORDER])
                for acct, side in ((B.ACCOUNT, Side.BUY), (B.ACCOUNT2, Side.SELL)):
                    agent = self.by_account.get(row[acct])
                    if agent is not None:
                        notify_fill(agent, Fill(quote_id, side, row[B.PRICE], row[B.QTY],
                                                row[B.TRADE_ID], row[B.TS], Segment.BLOCK, 0))
                continue
            if k == EventKind.REJECTED and row[B.AUX1] in _NEGOTIATION:
                # the sender's, by account: the quote may be another's
                agent = self.by_account.get(row[B.ACCOUNT])
                if agent is not None:
                    notify_order(agent, OrderUpdate(
                        self.names.name(row[B.ORDER]), "REJECTED", Reason(row[B.REASON]).name,
                        0, row[B.TS], Action(row[B.AUX1]).name))
                continue
            if k == EventKind.TRADE:
                for acct, order, side, open_col in ((B.ACCOUNT, B.ORDER, Side.BUY, B.AUX1),
                                                    (B.ACCOUNT2, B.ORDER2, Side.SELL, B.AUX2)):
                    owner = self.owner.get(row[order])
                    if row[acct] in self.by_account and owner is not None:
                        notify_fill(owner[0], Fill(owner[1], side, row[B.PRICE], row[B.QTY],
                                              row[B.TRADE_ID], row[B.TS],
                                              Segment(row[B.SEGMENT]), row[open_col]))
                continue
            owner = self.owner.get(row[B.ORDER])
            if owner is None:
                continue
            action = ""
            if k == EventKind.REJECTED:
                status = _REFUSED.get(Action(row[B.AUX1]), "REJECTED")
                reason, open_qty = Reason(row[B.REASON]).name, 0
                if row[B.AUX1] == Action.TAKE:
                    action = "TAKE"
            elif k in _STATUS:
                status = _STATUS[k]
                reason = Reason(row[B.REASON]).name if k == EventKind.CANCELLED else ""
                open_qty = row[B.QTY] if k in (EventKind.ACCEPTED, EventKind.AMENDED) else 0
            else:
                continue
            notify_order(owner[0], OrderUpdate(owner[1], status, reason, open_qty, row[B.TS],
                                               action))

    def _quote_event(self, row: list) -> None:
        """A QUOTE or QUOTE_ENDED row to the user agents party to it (``on_quote``)."""
        maker, peer = row[B.QUOTE_MAKER], row[B.QUOTE_COUNTERPARTY]
        if row[B.KIND] == EventKind.QUOTE:
            status, by = _QUOTE_STATUS[row[B.QUOTE_ACTION]], row[B.QUOTE_PROPOSER]
        else:
            status, by = QuoteEnd(row[B.QUOTE_END]).name, row[B.QUOTE_ENDED_BY]
        name = self.accounts.name if self.accounts is not None else str
        for account in dict.fromkeys((maker, peer)):
            agent = self.by_account.get(account)
            if agent is not None:
                notify_quote(agent, QuoteUpdate(
                    self.names.name(row[B.ORDER]), status, Side(row[B.SIDE]), row[B.PRICE],
                    row[B.QTY], account == maker, name(peer) if peer >= 0 else "",
                    name(by) if by >= 0 else "", row[B.TS]))

    def day_closed(self, day: int, close: int, listed: int, block: int) -> None:
        info = DayClose(date_of_day(day).isoformat(), close, listed, block)
        for agent in self.agents:
            agent.last_price = close
            call(agent, "on_day_close", info)


def _view(q, me: str) -> QuoteView:
    """An ``engine.messages.QuoteState`` as agent ``me`` sees it."""
    mine = q.maker == me
    public = not q.counterparty
    other = "" if public else (q.counterparty if mine else q.maker)
    return QuoteView(q.quote_id, Side(q.side), q.price, q.qty, mine, public, other, q.by != me)


__all__ = ["InProcessAgents"]
