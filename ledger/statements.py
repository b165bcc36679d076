"""Statements as files: JSON (integers, fen and tonnes) and CSV (one row per movement).

The CSV has one line per opening balance, trade leg, operation and closing balance:
``kind,ref,time,asset,amount,price,qty,fee,side,counterparty`` with cash amounts in CNY
(two decimals) and allowances in tonnes, so a spreadsheet sums each asset's ``amount``
column from the opening to the closing line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from .core import CASH, Statement

HEADER = ["kind", "ref", "time", "asset", "amount", "price", "qty", "fee", "side",
          "counterparty"]


def money(fen: int) -> str:
    """Fen as CNY with two decimals: ``money(-1234)`` is ``'-12.34'``."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


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
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(statement_rows(st))
    json_path.write_text(json.dumps(statement_json(st), indent=1) + "\n", encoding="utf-8")
    return [csv_path, json_path]
