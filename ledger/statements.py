"""Reading the ledger out: an account's statement for one trading date (as data, JSON and
CSV), and the reconciliation of the ledger against itself and the engine's balances.

The CSV has one line per opening balance, trade leg, operation and closing balance:
``kind,ref,time,asset,amount,price,qty,fee,side,counterparty`` with cash amounts in CNY
(two decimals) and allowances in tonnes, so a spreadsheet sums each asset's ``amount``
column from the opening to the closing line.

``statement`` and ``reconcile`` take the ledger (a ``ledger.accounts.LedgerAccounts``) first;
``ledger.core.Ledger`` has them as methods of the same name.
"""

from __future__ import annotations

from engine.csvfile import write_csv
from engine.units import format_fen

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.accounts import CA_KNOWN, CA_TOTAL, HD_TOTAL, RK_FEES
from engine.tradingdays import date_of_day, day_of_date, format_time

from .accounts import (CASH, FEES, INTO_ACCOUNT, SEGMENT_NAMES, SOURCE_TRADE, LedgerAccounts,
                       parse_date)
from .settlement import trade_count


@dataclass(frozen=True)
class StatementTrade:
    trade_id: int
    time: str
    instrument: str
    segment: str
    side: str
    price: int
    qty: int
    order_id: str
    counterparty: str
    cash: int  # fen: what the trade moved in this account's cash, fee included
    tonnes: int
    fee: int


@dataclass(frozen=True)
class StatementOperation:
    ref: str
    kind: str
    asset: str
    amount: int  # signed: into the account is positive


@dataclass(frozen=True)
class Statement:
    account: str
    date: str
    opening: dict[str, int]
    trades: list[StatementTrade]
    operations: list[StatementOperation]
    fees: int
    closing: dict[str, int]


@dataclass(frozen=True)
class Reconciliation:
    ok: bool
    problems: list[str]
    accounts: int
    trades: int


def statement(ledger: LedgerAccounts, name: str, date: str | dt.date) -> Statement:
    """The account's statement for one trading date: opening balances, the day's trades
    (with fees) and operations, closing balances."""
    account = ledger.account_id(name)
    day = day_of_date(date if isinstance(date, dt.date) else parse_date(date))
    opening = {asset: 0 for asset in ledger.assets}
    for asset, amount in ledger.store.query(
            "SELECT asset, sum(amount) FROM posting WHERE account = ? AND day < ? "
            "GROUP BY asset", (account, day)):
        opening[ledger.asset_names[asset]] = int(amount)
    trades = []
    for (tid, ts, asset, seg, price, qty, buyer, seller, bo, so, bfee, sfee) in ledger.store.query(
            "SELECT trade_id, ts, asset, segment, price, qty, buyer, seller, buy_order, "
            "sell_order, buyer_fee, seller_fee FROM trade WHERE day = ? AND "
            "(buyer = ? OR seller = ?) ORDER BY trade_id", (day, account, account)):
        buy = buyer == account
        trades.append(StatementTrade(
            tid, format_time(ts), ledger.asset_names[asset], SEGMENT_NAMES[seg],
            "BUY" if buy else "SELL", price, qty, bo if buy else so,
            ledger.account_names[seller if buy else buyer],
            -(price * qty + bfee) if buy else price * qty - sfee, qty if buy else -qty,
            bfee if buy else sfee))
    operations = [StatementOperation(ref, kind, ledger.asset_names[asset],
                                     amount if kind in INTO_ACCOUNT else -amount)
                  for ref, kind, asset, amount in ledger.store.query(
                      "SELECT ref, kind, asset, amount FROM operation WHERE account = ? "
                      "AND day = ? ORDER BY op_id", (account, day))]
    closing = dict(opening)
    for t in trades:
        closing[CASH] += t.cash
        closing[t.instrument] += t.tonnes
    for op in operations:
        closing[op.asset] += op.amount
    return Statement(name, date_of_day(day).isoformat(), opening, trades, operations,
                     sum(t.fee for t in trades), closing)


# ---------------------------------------------------------------------- reconciliation

def reconcile(ledger: LedgerAccounts, expected: dict[str, dict[str, int]] | None = None,
              expected_fees: int | None = None) -> Reconciliation:
    """Check the ledger against itself and, when given, the engine's balances.

    Internally: every transaction's postings net to zero per asset; the balance table
    equals the postings replayed from scratch; each trade has its four legs. Against
    ``expected`` ({account: {asset: amount}}): every participant balance agrees, and the
    fee account holds ``expected_fees``.
    """
    q = ledger.store.query
    problems = []
    for source, txn, asset, total in q(
            "SELECT source, txn, asset, sum(amount) FROM posting GROUP BY source, txn, asset "
            "HAVING sum(amount) <> 0 LIMIT 5"):
        problems.append(f"transaction {source}:{txn} nets {total} in asset "
                        f"{ledger.asset_names.get(asset, asset)}, not 0")
    replayed = {(a, s): int(x) for a, s, x in q(
        "SELECT account, asset, sum(amount) FROM posting GROUP BY account, asset")}
    stored = {(a, s): int(x) for a, s, x in q("SELECT account, asset, amount FROM balance")}
    for key in sorted(set(replayed) | set(stored)):
        if replayed.get(key, 0) != stored.get(key, 0):
            problems.append(f"balance of {ledger.account_names[key[0]]} in "
                            f"{ledger.asset_names[key[1]]}: table {stored.get(key, 0)}, "
                            f"postings {replayed.get(key, 0)}")
    trades = trade_count(ledger)
    legs = q(f"SELECT count(*) FROM posting WHERE source = {SOURCE_TRADE} AND asset > 0")[0][0]
    if legs != 2 * trades:
        problems.append(f"{trades} trades have {legs} allowance legs, not {2 * trades}")
    for (account,) in q("SELECT account FROM balance WHERE external = 0 AND amount < 0"):
        problems.append(f"{ledger.account_names[account]} has a negative balance")
    if expected is not None:
        have = ledger.balances()
        for name in sorted(set(have) | set(expected)):
            for asset in ledger.assets:
                a = have.get(name, {}).get(asset, 0)
                b = expected.get(name, {}).get(asset, 0)
                if a != b:
                    problems.append(f"{name} {asset}: ledger {a}, engine {b}")
    if expected_fees is not None:
        fees = ledger.balances(include_external=True)[FEES][CASH]
        if fees != expected_fees:
            problems.append(f"fees: ledger {fees}, engine {expected_fees}")
    return Reconciliation(not problems, problems, len(ledger.balances()), trades)


def engine_balances(accounts, account_name: Callable[[int], str], instruments: Sequence[str]
                    ) -> tuple[dict[str, dict[str, int]], int]:
    """The engine's in-memory balances as {account: {asset: amount}}, and its fees."""
    out = {}
    n = accounts.n_instruments
    for handle in np.flatnonzero(accounts.cash[:, CA_KNOWN]).tolist():
        row = {CASH: int(accounts.cash[handle, CA_TOTAL])}
        for i, name in enumerate(instruments):
            row[name] = int(accounts.holdings[handle * n + i, HD_TOTAL])
        out[account_name(handle)] = row
    return out, int(accounts.risk[RK_FEES])


# ---------------------------------------------------------------------- files

HEADER = ["kind", "ref", "time", "asset", "amount", "price", "qty", "fee", "side",
          "counterparty"]


def money(fen: int) -> str:
    """Fen as CNY with two decimals: ``money(-1234)`` is ``'-12.34'`` (``engine.units``)."""
    return format_fen(fen)


def _amount(asset: str, amount: int) -> str:
    return money(amount) if asset == CASH else str(amount)


def statement_rows(st: Statement) -> list[list[str]]:
    rows = [HEADER]
    for asset, amount in st.opening.items():
        rows.append(["OPENING", "", "", asset, _amount(asset, amount), "", "", "", "", ""])
    for t in st.trades:
        common = [str(t.trade_id), t.time]
        rows.append(["TRADE"] + common + [CASH, money(t.cash), money(t.price), str(t.qty),
                                          money(t.fee), t.side, t.counterparty])
        rows.append(["TRADE"] + common + [t.instrument, str(t.tonnes), money(t.price),
                                          str(t.qty), "", t.side, t.counterparty])
    for op in st.operations:
        rows.append([op.kind, op.ref, "", op.asset, _amount(op.asset, op.amount), "", "", "", "",
                     ""])
    for asset, amount in st.closing.items():
        rows.append(["CLOSING", "", "", asset, _amount(asset, amount), "", "", "", "", ""])
    return rows


def statement_json(st: Statement) -> dict:
    out = asdict(st)
    out["units"] = {asset: ("fen" if asset == CASH else "t") for asset in st.opening}
    return out


def write_statement(st: Statement, directory: Path) -> list[Path]:
    """``<account>_<date>.csv`` and ``.json`` in ``directory``; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{st.account}_{st.date}"
    csv_path, json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
    write_csv(csv_path, statement_rows(st))
    json_path.write_text(json.dumps(statement_json(st), indent=1) + "\n", encoding="utf-8")
    return [csv_path, json_path]


__all__ = ["HEADER", "Reconciliation", "Statement", "StatementOperation", "StatementTrade",
           "engine_balances", "money", "reconcile", "statement", "statement_json",
           "statement_rows", "write_statement"]
