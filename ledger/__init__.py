"""The settlement ledger: every trade the engine makes, settled delivery versus payment as
double-entry postings in a durable store (SQLite in WAL mode by default, PostgreSQL through
psycopg 3), idempotent on trade id; account operations (deposits, withdrawals, registry
transfers) as journaled postings too; end-of-day settlement reports, statements and the
reconciliation against the engine's in-memory balances; compliance obligations, surrender
and borrowing.

``Ledger`` (``ledger.core``) is the one object callers use. Its rules live in modules that
take the ledger as their first argument: ``ledger.accounts`` (the store, accounts,
operations, balances: the ``LedgerAccounts`` base class), ``ledger.settlement`` (trades, fees,
end of day), ``ledger.compliance`` (obligations, surrender, borrowing, the compliance report)
and ``ledger.statements`` (statements, reconciliation).

>>> from ledger import Ledger
>>> led = Ledger.open(":memory:", instruments=["CEA"])
>>> led.open_account("A001", "COVERED_ENTITY"); led.open_account("A002", "COVERED_ENTITY")
>>> led.deposit("A001", 1_000_000, ref="d1", day=19787)
True
>>> led.deposit("A001", 1_000_000, ref="d1", day=19787)  # the same ref again: applied once
False
>>> led.allowance_in("A002", "CEA", 500, ref="a1", day=19787)
True
>>> led.settle_trades([Trade(1, 19787, 0, "CEA", 0, 6000, 100, "A001", "A002", "b1", "s1")])
1
>>> led.settle_trades([Trade(1, 19787, 0, "CEA", 0, 6000, 100, "A001", "A002", "b1", "s1")])
0
>>> led.balances()["A001"], led.balances()["A002"]
({'CNY': 400000, 'CEA': 100}, {'CNY': 600000, 'CEA': 400})
"""

from .core import Ledger, LedgerError, Trade  # noqa: F401 (Trade: used by the example)
from .compliance import (ComplianceError, Obligation, UnitEmissions, compliance_period,
                         compliance_report, obligation)

__all__ = ["ComplianceError", "Ledger", "LedgerError", "Obligation", "Trade", "UnitEmissions",
           "compliance_period", "compliance_report", "obligation"]
