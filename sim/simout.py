"""The files a simulation writes: the engine's order files, the run's tables and summary.

``commands.csv`` (every command the agents sent, in the order file format of spec §8) and
``accounts.csv`` (the opening balances) make a simulation replayable without the agents:
``cea match commands.csv --accounts accounts.csv --prior-close P`` gives the same
``trades.csv``, ``orders.csv``, ``rejects.csv`` and ``days.csv``, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine import batch as B
from engine.codes import Action, OrderStatus, OrderType, Reason, Segment, Side, TimeInForce
from engine.orderfile import HEADER
from engine.tradingdays import format_time

from .agents import AgentKind
from engine.csvfile import write_csv
from engine.units import format_fen

from .simulate import SimResult


def write_table(path: Path, rows) -> Path:
    """``rows`` (header first) as the CSV file ``path``; returns the path."""
    write_csv(path, rows)
    return path


def write_tables(r: SimResult, out: Path) -> list[Path]:
    """commands, accounts, trades, orders, rejects, days, intraday (CSV) and summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    names = r.agents.names
    order = r.engine.orders.name
    cmds = r.commands
    paths = []

    paths.append(write_table(out / "commands.csv", command_rows(cmds, names, order)))

    paths.append(write_table(out / "accounts.csv", account_rows(r.agents, r.config.instrument)))

    paths.append(write_table(out / "trades.csv", trade_rows(r.trades, order, names.__getitem__)))

    rows = [["order_id", "account", "segment", "side", "status", "reason", "filled_qty",
             "open_qty"]]
    state = r.engine.book.order_state
    for a in r.accepted.tolist():
        status, reason, _, filled, open_qty = state(a[B.ORDER])
        rows.append([order(a[B.ORDER]), names[a[B.ACCOUNT]], Segment(a[B.SEGMENT]).name,
                     Side(a[B.SIDE]).name, OrderStatus(status).name,
                     Reason(reason).name if status == OrderStatus.CANCELLED else "", filled,
                     open_qty])
    paths.append(write_table(out / "orders.csv", rows))

    rows = [["line", "action", "order_id", "reason"]]
    for i, reason in r.rejects.tolist():
        c = cmds[i]
        rows.append([i + 1, Action(int(c["action"])).name, order(int(c["order"])),
                     Reason(reason).name])
    paths.append(write_table(out / "rejects.csv", rows))

    if np.isin(cmds["action"], list(_NEGOTIATION)).any():
        paths.append(write_table(out / "quotes.csv", quote_rows(r.quotes, order, names)))

    paths.append(write_table(out / "agents.csv", agent_rows(r)))
    paths.append(write_table(out / "days.csv", day_rows(r.days)))
    paths.append(write_table(out / "intraday.csv", intraday_rows(r.samples)))
    if r.emissions_csv:
        path = out / "emissions.csv"  # for cea compliance obligations / report
        path.write_text(r.emissions_csv, encoding="utf-8")
        paths.append(path)
    paths.append(write_summary(r, out))
    return paths


_NEGOTIATION = {int(a): a.name for a in (Action.BLOCK_QUOTE, Action.BLOCK_COUNTER,
                                          Action.BLOCK_ACCEPT, Action.BLOCK_WITHDRAW)}


def command_rows(cmds: np.ndarray, names, order) -> list[list]:
    """``commands.csv``: the commands (``COMMAND_DTYPE``) in the order file format (spec §8),
    ``names`` the account names by handle, ``order(handle)`` the order ids. With any TAKE
    among them the file has the optional column ``target`` (the order id a take takes
    from; empty on other rows); a TAKE row has no price (it trades at its target's). With
    any negotiation row (BLOCK_QUOTE, BLOCK_COUNTER, BLOCK_ACCEPT, BLOCK_WITHDRAW: the
    quote's id in ``order_id``; price and qty as stated, empty for unchanged) it has the
    column ``counterparty`` (a BLOCK_QUOTE's addressee; empty: public, and on other rows)."""
    with_target = bool((cmds["action"] == Action.TAKE).any())
    with_peer = bool(np.isin(cmds["action"], list(_NEGOTIATION)).any())
    rows = [HEADER + (["target"] if with_target else []) +
            (["counterparty"] if with_peer else [])]
    tail = [""] * (with_target + with_peer)
    for ts, action, account, ref, side, typ, tif, price, qty, peer in zip(
            cmds["ts"].tolist(), cmds["action"].tolist(), cmds["account"].tolist(),
            cmds["order"].tolist(), cmds["side"].tolist(), cmds["type"].tolist(),
            cmds["tif"].tolist(), cmds["price"].tolist(), cmds["qty"].tolist(),
            cmds["peer"].tolist()):
        if action in _NEGOTIATION:
            quote = action == Action.BLOCK_QUOTE
            row = [format_time(ts), names[account], _NEGOTIATION[action], order(ref),
                   Side(side).name if quote else "", "", "",
                   format_fen(price) if price != -1 else "", qty or "", ""]
            if with_target:
                row.append("")
            rows.append(row + [names[peer] if quote and peer >= 0 else ""])
        elif action == Action.NEW:
            market = typ == OrderType.MARKET
            rows.append([format_time(ts), names[account], "NEW", order(ref), Side(side).name,
                         OrderType(typ).name, TimeInForce(tif).name,
                         "" if market else format_fen(price), qty, ""] + tail)
        elif action == Action.TAKE:  # the target's handle rides in the price field
            rows.append([format_time(ts), names[account], "TAKE", order(ref), Side(side).name,
                         OrderType.TAKE.name, TimeInForce.IOC.name, "", qty, "",
                         order(price)] + ([""] if with_peer else []))
        elif action == Action.AMEND:  # user agents amend; the built-in ones never do
            rows.append([format_time(ts), names[account], "AMEND", order(ref), "", "", "",
                         format_fen(price), qty, ""] + tail)
        else:
            rows.append([format_time(ts), names[account], "CANCEL", order(ref), "", "", "",
                         "", "", ""] + tail)
    return rows


def quote_rows(quotes: np.ndarray, order, names) -> list[list]:
    """``quotes.csv`` as ``cea match`` writes it (spec §3b): one row per quote made, in the
    order made, from its QUOTE / QUOTE_ENDED events: its last terms, status (ACCEPTED,
    WITHDRAWN, EXPIRED; LIVE if still open), who ended it and how many counters it had."""
    from engine.codes import EventKind, QuoteEnd

    rows: dict[int, list] = {}
    for e in quotes.tolist():
        peer = e[B.QUOTE_COUNTERPARTY]
        q = rows.setdefault(e[B.ORDER], [order(e[B.ORDER]), "", "", "", "", "", "LIVE", "", -1])
        q[1:6] = [names[e[B.QUOTE_MAKER]], names[peer] if peer >= 0 else "",
                  Side(e[B.SIDE]).name, format_fen(e[B.PRICE]), e[B.QTY]]
        if e[B.KIND] == EventKind.QUOTE:
            q[8] += 1  # the quote itself counts -1 + 1 = 0 counters
        else:
            by = e[B.QUOTE_ENDED_BY]
            q[6] = QuoteEnd(e[B.QUOTE_END]).name
            q[7] = names[by] if by >= 0 else ""
    return [["quote_id", "maker", "counterparty", "side", "price", "qty", "status",
             "ended_by", "counters"]] + list(rows.values())


#: ``agents.csv``'s columns; of them, ``AGENT_MONEY`` are CNY (fen inside), the rest text
#: (``AGENT_TEXT``) or integers.
AGENT_COLUMNS = ("agent", "kind", "account_type", "orders", "trades", "bought_t", "sold_t",
                 "opening_cash", "cash", "opening_allowances", "allowances", "fees",
                 "last_close", "pnl")
AGENT_MONEY = ("opening_cash", "cash", "fees", "last_close", "pnl")
AGENT_TEXT = ("agent", "kind", "account_type")
#: ``days.csv``'s columns (as ``cea match`` writes them); of them ``DAY_MONEY`` are CNY.
DAY_COLUMNS = ("date", "prior_close", "close", "listed_volume", "block_volume",
               "listed_turnover", "block_turnover")
DAY_MONEY = ("prior_close", "close", "listed_turnover", "block_turnover")


def agent_rows(r: SimResult) -> list[list]:
    """``agents.csv``: every agent's activity, balances and P&L (CNY) marked to the last
    close (``sim.simulate.agent_results``)."""
    from .simulate import agent_results

    results = agent_results(r)
    return [list(AGENT_COLUMNS)] + [[format_fen(row[k]) if k in AGENT_MONEY else row[k]
                                     for k in AGENT_COLUMNS] for row in results]


def account_rows(agents, instrument: str) -> list[list]:
    """The agents' opening balances, as ``cea match --accounts`` and ``cea serve --accounts``
    read them."""
    rows = [["account", "type", "cash", instrument]]
    for i, name in enumerate(agents.names):
        kind = agents.account_type(i).name
        rows.append([name, kind, format_fen(int(agents.cash[i])), int(agents.allowances[i])])
    return rows


def trade_rows(trades: np.ndarray, order_name, account_name) -> list[list]:
    """``trades.csv`` as ``cea match`` writes it, from TRADE event rows."""
    rows = [["trade_id", "time", "segment", "price", "qty", "buy_order_id", "sell_order_id",
             "buy_account", "sell_account", "aggressor"]]
    for t in trades.tolist():
        rows.append([t[B.TRADE_ID], format_time(t[B.TS]), Segment(t[B.SEGMENT]).name,
                     format_fen(t[B.PRICE]), t[B.QTY], order_name(t[B.ORDER]),
                     order_name(t[B.ORDER2]), account_name(t[B.ACCOUNT]),
                     account_name(t[B.ACCOUNT2]), Side(t[B.SIDE]).name])
    return rows


def day_rows(days) -> list[list]:
    """``days.csv`` as ``cea match`` writes it."""
    rows = [list(DAY_COLUMNS)]
    for d in days:
        rows.append([d.date, format_fen(d.prior_close), format_fen(d.close), d.listed_volume,
                     d.block_volume, format_fen(d.listed_turnover), format_fen(d.block_turnover)])
    return rows


def intraday_rows(samples: np.ndarray) -> list[list]:
    """Each decision step's best bid, best offer and last listed price."""
    rows = [["time", "best_bid", "best_ask", "last"]]
    for ts, bid, ask, last in samples.tolist():
        rows.append([format_time(ts), format_fen(bid) if bid else "", format_fen(ask) if ask else "",
                     format_fen(last) if last else ""])
    return rows


def write_summary(r: SimResult, out: Path) -> Path:
    path = out / "summary.json"
    path.write_text(json.dumps(r.summary, indent=2) + "\n", encoding="utf-8")
    return path


def write_ledger_files(r: SimResult, ledger, engine, out: Path, skip: tuple = ()
                       ) -> list[Path]:
    """The engine's balances (``engine``: an ``engine.Engine``; accounts in ``skip`` left
    out), their reconciliation with ``ledger`` (also ``summary['ledger_reconciles']``),
    statements of one account of each agent kind for the last day, and the compliance
    reports."""
    import datetime as dt
    from dataclasses import asdict

    from ledger.compliance import write_report
    from ledger.core import engine_balances
    from ledger.statements import write_statement

    expected, fees = engine_balances(engine.balances, engine.accounts.name,
                                     [r.config.instrument])
    for name in skip:
        expected.pop(name, None)
    reconciliation = ledger.reconcile(expected, fees)
    r.summary["ledger_reconciles"] = reconciliation.ok
    paths = []
    for name, data in (("balances.json", {"accounts": expected, "fees": fees}),
                       ("reconcile.json", asdict(reconciliation))):
        (out / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n",
                                encoding="utf-8")
        paths.append(out / name)
    last = dt.date.fromisoformat(r.days[-1].date)
    for kind in AgentKind:
        members = r.agents.of(kind)
        if len(members):
            st = ledger.statement(r.agents.names[int(members[0])], last)
            paths += write_statement(st, out / "statements")
    for report in r.reports:
        paths += write_report(report, out / "compliance")
    return paths


def run(cfg, out: Path, progress=None) -> tuple[SimResult, list[Path]]:
    """Simulate ``cfg`` and write everything into ``out``: the tables and summary, the
    ledger (``ledger.sqlite``, recreated) with statements of one account of each agent kind
    for the last day, the engine's balances and their reconciliation, and the plots."""
    from ledger.core import Ledger

    from .plots import plot_simulation
    from .simulate import simulate

    out.mkdir(parents=True, exist_ok=True)
    ledger = None
    if cfg.ledger:
        path = out / "ledger.sqlite"
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)  # a simulation's ledger is its output
        ledger = Ledger.open(str(path), [cfg.instrument], cfg.fee_bps_listed, cfg.fee_bps_block)
    try:
        result = simulate(cfg, progress=progress, ledger=ledger)
        paths = write_tables(result, out)
        if ledger is not None:
            paths += write_ledger_files(result, ledger, result.engine, out)
            paths += [write_summary(result, out), out / "ledger.sqlite"]
    finally:
        if ledger is not None:
            ledger.close()
    day = cfg.plot_day or result.days[len(result.days) // 2].date
    paths += plot_simulation(result, out, day)
    return result, paths
