"""Opening balances: the accounts file that gives them, and opening them in the ledger.

The accounts file is a CSV of opening balances, one account per line::

    account,type,cash,CEA
    A001,COVERED_ENTITY,1000000.00,0
    A002,INSTITUTION,0.00,50000

``type`` is COVERED_ENTITY, INSTITUTION or INDIVIDUAL; ``cash`` is CNY with at most two
decimals; one column per instrument holds allowances in whole tonnes (a missing column is 0).
``cea match --accounts`` (``cea.match``), ``cea serve --accounts`` and ``cea auction
--accounts`` read it; ``cea population --accounts`` writes it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from engine.accounts import MAX_BALANCE
from engine.codes import AccountType
from engine.orderfile import parse_price

from .core import CASH, Ledger, LedgerError


@dataclass(frozen=True)
class OpeningBalance:
    account: str
    type: AccountType
    cash: int  # fen
    allowances: dict[str, int]  # tonnes per instrument


def read_accounts_file(path: str | Path, instruments: list[str]) -> list[OpeningBalance]:
    """Parse an accounts CSV; raise ``LedgerError`` naming the line of any bad field."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise LedgerError(f"{path}: cannot read accounts file: {e.strerror}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise LedgerError(f"{path}: empty accounts file")
    header = [h.strip() for h in rows[0]]
    if header[:3] != ["account", "type", "cash"]:
        raise LedgerError(f"{path}: the header must start with account,type,cash "
                          f"(then one column per instrument), not {','.join(header)}")
    unknown = [h for h in header[3:] if h not in instruments]
    if unknown:
        raise LedgerError(f"{path}: column {unknown[0]!r} is not an instrument "
                          f"({', '.join(instruments)})")
    out, seen = [], set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in row):
            continue
        where = f"{path}:{line}"
        if len(row) != len(header):
            raise LedgerError(f"{where}: {len(row)} fields, the header has {len(header)}")
        name, kind, cash = (f.strip() for f in row[:3])
        if not name or name.startswith("@") or name in seen:
            raise LedgerError(f"{where}: account {name!r} is empty, reserved or repeated")
        seen.add(name)
        if kind.upper() not in AccountType.__members__:
            raise LedgerError(f"{where}: type {kind!r} is not one of "
                              f"{', '.join(AccountType.__members__)}")
        fen = parse_price(cash or "0")
        if fen is None or fen > MAX_BALANCE:
            raise LedgerError(f"{where}: cash {cash!r} is not CNY with at most two decimals "
                              f"(at most {MAX_BALANCE // 100})")
        allowances = {}
        for instrument, value in zip(header[3:], row[3:]):
            value = value.strip() or "0"
            if not value.isdigit() or int(value) > MAX_BALANCE:
                raise LedgerError(f"{where}: {instrument} {value!r} is not whole tonnes "
                                  f"(at most {MAX_BALANCE})")
            allowances[instrument] = int(value)
        out.append(OpeningBalance(name, AccountType[kind.upper()], fen, allowances))
    return out


def open_balances(ledger: Ledger, opening: list[OpeningBalance], day: int) -> None:
    """Open each account in the ledger with its opening cash and allowances: DEPOSIT and
    ALLOWANCE_IN operations dated ``day``, refs ``opening:<account>:<asset>`` (applying them
    again changes nothing)."""
    for o in opening:
        ledger.open_account(o.account, o.type)
        if o.cash:
            ledger.deposit(o.account, o.cash, ref=f"opening:{o.account}:{CASH}", day=day)
        for name, tonnes in o.allowances.items():
            if tonnes:
                ledger.allowance_in(o.account, name, tonnes, ref=f"opening:{o.account}:{name}",
                                    day=day)
