"""``Ledger``: the settlement ledger's one object, for callers; the rules live in the modules.

=========================  ==============================================================
``ledger.accounts``        names, ``LedgerError``, ``Trade``, migration; ``LedgerAccounts``:
                           the store, accounts, operations, balances
``ledger.settlement``      trade settlement (DvP postings, fees), end of day, settled trades
``ledger.compliance``      obligations, surrender, borrowing, the compliance report
``ledger.statements``      statements (data and files), reconciliation, engine balances
``ledger.core``            ``Ledger``: ``LedgerAccounts`` with the functions of the three
                           modules above as methods; every name callers import from here
=========================  ==============================================================

Each method below is one line handing the ledger to the function of the same name (or, for
``obligations``, ``compliance.recorded_obligations``); the modules import ``ledger.accounts``
and never this module, so nothing in ``ledger`` imports back what imports it.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable, Iterable, Sequence

import numpy as np

from . import compliance, settlement, statements
from .accounts import (AUCTION, BANK, CASH, CCER, EXTERNAL, FEES, INTO_ACCOUNT, OPERATIONS,
                       REGISTRY, SEGMENT_NAMES, SOURCE_OPERATION, SOURCE_TRADE, SURRENDERED,
                       LedgerAccounts, LedgerError, Trade, migrate)
from .compliance import BorrowingRecord, ObligationRecord, SurrenderRecord
from .statements import (Reconciliation, Statement, StatementOperation, StatementTrade,
                         engine_balances)
from .store import StoreError


class Ledger(LedgerAccounts):
    """The settlement ledger over one store. One writer at a time.

    Accounts, operations and balances: ``LedgerAccounts``; the rest delegates to
    ``ledger.settlement``, ``ledger.compliance`` and ``ledger.statements``."""

    # ------------------------------------------------------------------ settlement

    def settle_trades(self, trades: Iterable[Trade]) -> int:
        """Settle ``Trade`` records as one batch; return how many were new."""
        return settlement.settle_trades(self, trades)

    def settle_events(self, events: np.ndarray, account_name: Callable[[int], str],
                      order_name: Callable[[int], str], instruments: Sequence[str],
                      feed: tuple[str, int] | None = None) -> int:
        """Settle an engine event array's trades and day closes: ``settlement.settle_events``."""
        return settlement.settle_events(self, events, account_name, order_name, instruments,
                                        feed)

    def feed_position(self, name: str) -> int:
        """How far the source ``name`` has been settled (-1: never)."""
        return settlement.feed_position(self, name)

    def trade_count(self) -> int:
        return settlement.trade_count(self)

    def trades_between(self, lo: int, hi: int) -> list[tuple[Trade, int, int]]:
        """The settled trades with ids ``lo`` .. ``hi``, each with (buyer fee, seller fee)."""
        return settlement.trades_between(self, lo, hi)

    def days(self) -> list[tuple]:
        """(date, instrument, prior close, close, listed volume, block volume) per day."""
        return settlement.days(self)

    # ------------------------------------------------------------------ compliance

    def record_obligations(self, obligations: Iterable) -> int:
        """Record compliance obligations: ``compliance.record_obligations``."""
        return compliance.record_obligations(self, obligations)

    def surrender(self, name: str, period: str, cea: int = 0, ccer: int = 0, *, ref: str,
                  day: int, instrument: str = "CEA") -> bool:
        """Surrender for an obligation: ``compliance.surrender``."""
        return compliance.surrender(self, name, period, cea, ccer, ref=ref, day=day,
                                    instrument=instrument)

    def borrow(self, name: str, period: str, tonnes: int, *, ref: str, day: int,
               instrument: str = "CEA") -> bool:
        """Borrow from a later period's allocation: ``compliance.borrow``."""
        return compliance.borrow(self, name, period, tonnes, ref=ref, day=day,
                                 instrument=instrument)

    def obligations(self, period: str) -> list[ObligationRecord]:
        """The obligations recorded for ``period``, by entity name."""
        return compliance.recorded_obligations(self, period)

    def surrenders(self, period: str) -> list[SurrenderRecord]:
        """The surrenders for ``period``, in the order they were made."""
        return compliance.surrenders(self, period)

    def borrowings(self, *, period: str | None = None,
                   lender: str | None = None) -> list[BorrowingRecord]:
        """Borrowings for obligations of ``period`` and/or from ``lender``'s allocation."""
        return compliance.borrowings(self, period=period, lender=lender)

    # ------------------------------------------------------------------ statements

    def statement(self, name: str, date: str | dt.date) -> Statement:
        """The account's statement for one trading date: ``statements.statement``."""
        return statements.statement(self, name, date)

    def reconcile(self, expected: dict[str, dict[str, int]] | None = None,
                  expected_fees: int | None = None) -> Reconciliation:
        """Check the ledger against itself and the engine: ``statements.reconcile``."""
        return statements.reconcile(self, expected, expected_fees)


__all__ = ["AUCTION", "BANK", "BorrowingRecord", "CASH", "CCER", "EXTERNAL", "FEES",
           "INTO_ACCOUNT", "Ledger", "LedgerAccounts", "LedgerError", "OPERATIONS",
           "ObligationRecord", "REGISTRY", "Reconciliation", "SEGMENT_NAMES",
           "SOURCE_OPERATION", "SOURCE_TRADE", "SURRENDERED", "Statement", "StatementOperation",
           "StatementTrade", "StoreError", "SurrenderRecord", "Trade", "engine_balances",
           "migrate"]
