"""``cea match --accounts``: the spec's replay with the risk stage and settlement on.

The accounts file (``ledger.opening``) gives the opening balances. An account that sends
orders but is not in the file has no account: its orders are rejected UNKNOWN_ACCOUNT.

``run_settled_match`` opens every account in the engine and in the ledger (the opening
balances as DEPOSIT and ALLOWANCE_IN operations dated the day before the first command),
runs the order file through the engine with reservation on, settles every trade and day
close into the ledger, then writes per-account statements for every trading date, the
engine's balances (``balances.json``) and the reconciliation of the two (``reconcile.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from engine import batch as B
from engine.accounts import AccountError, Accounts, RiskConfig
from engine.codes import EventKind
from engine.orderfile import MatchResult, OrderFile, run_match
from engine.rules import DAY_US
from engine.tradingdays import date_of_day
from ledger.core import Ledger, LedgerError, Reconciliation, engine_balances
from ledger.opening import open_balances, read_accounts_file
from ledger.statements import write_statement


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
        acc = Accounts(len(instruments), risk,
                       capacity=max(16, len(order_file.accounts) + len(opening)))
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
