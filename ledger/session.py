"""``cea match --accounts``: the spec's replay with the risk stage and settlement on.

The accounts file is a CSV of opening balances, one account per line::

    account,type,cash,CEA
    A001,COVERED_ENTITY,1000000.00,0
    A002,INSTITUTION,0.00,50000

``type`` is COVERED_ENTITY, INSTITUTION or INDIVIDUAL; ``cash`` is CNY with at most two
decimals; one column per instrument holds allowances in whole tonnes (a missing column is 0).
An account that sends orders but is not in the file has no account: its orders are rejected
UNKNOWN_ACCOUNT.

``run_settled_match`` opens every account in the engine and in the ledger (the opening
balances as DEPOSIT and ALLOWANCE_IN operations dated the day before the first command),
runs the order file through the engine with reservation on, settles every trade and day
close into the ledger, then writes per-account statements for every trading date, the
engine's balances (``balances.json``) and the reconciliation of the two (``reconcile.json``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.accounts import MAX_BALANCE, AccountError, Accounts, RiskConfig
from engine.codes import AccountType, EventKind
from engine import batch as B
from engine.orderfile import MatchResult, OrderFile, parse_price, run_match
from engine.rules import DAY_US
from engine.tradingdays import date_of_day

from .core import CASH, Ledger, LedgerError, Reconciliation, engine_balances
from .statements import write_statement


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


@dataclass
class SettledMatch:
    result: MatchResult
    accounts: Accounts
    ledger_url: str
    reconciliation: Reconciliation
    statements: list[Path]
    settled: int


def run_settled_match(order_file: OrderFile, prior_closes: list[int], accounts_path,
                      out_dir: Path, impl: str = "numba", risk: RiskConfig | None = None,
                      ledger_url: str | None = None, check_invariants: bool = False
                      ) -> SettledMatch:
    risk = risk or RiskConfig()
    instruments = order_file.instruments
    opening = read_accounts_file(accounts_path, instruments)
    out_dir.mkdir(parents=True, exist_ok=True)
    if ledger_url is None:
        path = out_dir / "ledger.sqlite"
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)  # a replay's ledger is its output, like the CSVs
        ledger_url = str(path)
    ledger = Ledger.open(ledger_url, instruments, risk.fee_bps_listed, risk.fee_bps_block)
    try:
        if ledger.trade_count():
            raise LedgerError(f"{ledger_url}: the ledger already holds trades; a replay starts "
                              "from an empty ledger (trade ids restart at 1)")
        ts = order_file.commands["ts"]
        valid = ts[ts > -(2**62)]
        first_day = int(valid.min()) // DAY_US if len(valid) else 0
        acc = Accounts(len(instruments), risk, capacity=max(16, len(order_file.accounts) + len(opening)))
        for o in opening:
            handle = order_file.accounts.handle(o.account)
            try:
                acc.open_account(o.type, handle)
                if o.cash:
                    acc.deposit(handle, o.cash)
                for i, name in enumerate(instruments):
                    if o.allowances.get(name):
                        acc.allowance_in(handle, i, o.allowances[name])
            except AccountError as e:
                raise LedgerError(f"{accounts_path}: account {o.account}: {e}") from None
        open_balances(ledger, opening, first_day - 1)
        result = run_match(order_file, prior_closes, impl, check_invariants=check_invariants,
                           accounts=acc)
        events = result.events
        settled = ledger.settle_events(events, order_file.accounts.name, order_file.orders.name,
                                       instruments)
        days = sorted({int(r[B.TS]) // DAY_US for r in events[
            (events[:, B.KIND] == EventKind.TRADE) | (events[:, B.KIND] == EventKind.DAY_CLOSED)]})
        open_day = result.book.open_day()
        if open_day is not None and open_day[0] not in days:
            days.append(int(open_day[0]))
        statements = []
        for o in opening:
            for day in days:
                st = ledger.statement(o.account, date_of_day(day))
                statements += write_statement(st, out_dir / "statements")
        expected, fees = engine_balances(acc, order_file.accounts.name, instruments)
        reconciliation = ledger.reconcile(expected, fees)
        (out_dir / "balances.json").write_text(
            json.dumps({"accounts": expected, "fees": fees}, indent=1, sort_keys=True) + "\n",
            encoding="utf-8")
        (out_dir / "reconcile.json").write_text(
            json.dumps(asdict(reconciliation), indent=1) + "\n", encoding="utf-8")
        return SettledMatch(result, acc, ledger_url, reconciliation, statements, settled)
    finally:
        ledger.close()
