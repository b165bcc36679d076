"""The ledger's ground floor: its names (assets, external accounts, segments, operations), its
error, the ``Trade`` record, the schema migration, and ``LedgerAccounts``: the store, the
participant accounts, the account operations (deposits, withdrawals, registry transfers)
and the balance table.

Every other module of ``ledger`` builds on this one and it imports none of them:
``ledger.settlement`` (trades, end of day), ``ledger.compliance`` (obligations, surrender,
borrowing), ``ledger.statements`` (statements, reconciliation), and ``ledger.core``, whose
``Ledger`` is ``LedgerAccounts`` with those modules' functions as methods.

An operation is one transaction: the operation row, two postings (the participant account and
its external counterpart, ``@BANK`` for cash, ``@REGISTRY`` for allowances and CCERs) and the
balance rows; it is idempotent on a caller-chosen ``ref``.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Self, Sequence

import numpy as np

from engine.accounts import MAX_BALANCE
from engine.codes import AccountType, Segment

from .schema import LATEST, MIGRATIONS
from .store import Store, open_store

CASH = "CNY"  # asset 0: fen
#: CCER offsets (China Certified Emission Reductions), tonnes; not traded on the CEA system
#: (docs/rules.md §9), added to a ledger by its first ``offset_in``
CCER = "CCER"
BANK, REGISTRY, FEES = "@BANK", "@REGISTRY", "@FEES"
#: where surrendered allowances and CCERs go: out of circulation, for compliance
SURRENDERED = "@SURRENDERED"
EXTERNAL = (BANK, REGISTRY, FEES, SURRENDERED)
SOURCE_TRADE, SOURCE_OPERATION = 1, 2
#: a trade's segment code in the ledger: the engine's two book segments, and one-way bidding
#: (the allowance auction, cleared outside the continuous books)
AUCTION = 2
SEGMENT_NAMES = {Segment.LISTED: "LISTED", Segment.BLOCK: "BLOCK", AUCTION: "AUCTION"}
OPERATIONS = ("DEPOSIT", "WITHDRAW", "ALLOWANCE_IN", "ALLOWANCE_OUT", "SURRENDER", "BORROW")
#: the operations that move an asset into the participant's account (the others move it out)
INTO_ACCOUNT = ("DEPOSIT", "ALLOWANCE_IN", "BORROW")


class LedgerError(ValueError):
    """A ledger operation refused; nothing of it was written."""


@dataclass(frozen=True)
class Trade:
    """One trade as the ledger records it (prices in fen, quantities in tonnes)."""

    trade_id: int
    day: int  # engine day number (days since 1970-01-01)
    ts: int  # µs
    instrument: str
    segment: int
    price: int
    qty: int
    buyer: str
    seller: str
    buy_order: str
    sell_order: str


def migrate(store: Store) -> int:
    """Apply the migrations the store lacks; return the schema version now."""
    store.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, "
                  "description TEXT NOT NULL)")
    have = store.query("SELECT max(version) FROM schema_version")[0][0] or 0
    if have > LATEST:
        raise LedgerError(f"the ledger has schema version {have}; this program knows up to "
                          f"{LATEST}: upgrade cea")
    for version, description, statements in MIGRATIONS:
        if version <= have:
            continue
        with store.transaction():
            for sql in statements:
                store.execute(sql.replace("{pk}", store.pk))
            store.execute("INSERT INTO schema_version VALUES (?, ?)", (version, description))
    return LATEST


def positive_amount(amount, what: str) -> int:
    """``amount`` as an int in 1..MAX_BALANCE, or LedgerError naming it."""
    if isinstance(amount, bool) or not isinstance(amount, (int, np.integer)) \
            or not 0 < int(amount) <= MAX_BALANCE:
        raise LedgerError(f"{what} must be an integer 1..{MAX_BALANCE}, not {amount!r}")
    return int(amount)


def amount_or_zero(amount, what: str) -> int:
    """0, or ``amount`` as an int in 1..MAX_BALANCE, or LedgerError naming it."""
    if isinstance(amount, (int, np.integer)) and not isinstance(amount, bool) and amount == 0:
        return 0
    return positive_amount(amount, what)


def parse_date(text: str) -> dt.date:
    """``YYYY-MM-DD`` as a date, or LedgerError."""
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError:
        raise LedgerError(f"date {text!r} is not YYYY-MM-DD") from None


class LedgerAccounts:
    """The ledger's store, accounts, account operations and balances. One writer at a time.

    ``ledger.core.Ledger`` is this class with settlement, compliance and statements on top;
    the functions of those modules take any ``LedgerAccounts``."""

    def __init__(self, store: Store, instruments: Sequence[str] = ("CEA",),
                 fee_bps_listed: int = 0, fee_bps_block: int = 0, fee_bps_auction: int = 0):
        self.store = store
        # indexed by the trade's segment code: LISTED 0, BLOCK 1, AUCTION 2 (one-way bidding)
        self.fee_bps = (int(fee_bps_listed), int(fee_bps_block), int(fee_bps_auction))
        self.version = migrate(store)
        self._load()
        missing = [name for name in [CASH, *instruments] if name not in self.assets]
        if missing or any(name not in self.accounts for name in EXTERNAL):
            with store.transaction():
                for name in missing:
                    store.execute("INSERT INTO asset VALUES (?, ?, ?)",
                                  (len(self.assets), name, "fen" if name == CASH else "t"))
                    self.assets[name] = len(self.assets)
                for name in EXTERNAL:
                    if name not in self.accounts:
                        self._insert_account(name, "EXTERNAL", 1)
            self._load()
        self.instruments = list(instruments)

    @classmethod
    def open(cls, url: str, instruments: Sequence[str] = ("CEA",), fee_bps_listed: int = 0,
             fee_bps_block: int = 0, fee_bps_auction: int = 0) -> Self:
        """Open (creating and migrating as needed) the ledger at ``url``."""
        store = open_store(url)
        try:
            return cls(store, instruments, fee_bps_listed, fee_bps_block, fee_bps_auction)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def _load(self) -> None:
        self.accounts: dict[str, int] = {}
        self.account_names: dict[int, str] = {}
        self.external: set[int] = set()
        for id_, name, external in self.store.query("SELECT id, name, external FROM account ORDER BY id"):
            self.accounts[name] = id_
            self.account_names[id_] = name
            if external:
                self.external.add(id_)
        self.assets = {name: id_ for id_, name in self.store.query("SELECT id, name FROM asset ORDER BY id")}
        self.asset_names = {v: k for k, v in self.assets.items()}

    def _insert_account(self, name: str, kind: str, external: int) -> int:
        id_ = max(self.account_names, default=-1) + 1
        self.store.execute("INSERT INTO account VALUES (?, ?, ?, ?)", (id_, name, kind, external))
        self.accounts[name] = id_
        self.account_names[id_] = name
        if external:
            self.external.add(id_)
        return id_

    # ------------------------------------------------------------------ accounts, operations

    def open_account(self, name: str, kind: AccountType | str) -> None:
        """Register a participant account (again with the same type: nothing happens)."""
        kind_name = kind.name if isinstance(kind, AccountType) else str(kind).upper()
        if kind_name not in AccountType.__members__:
            raise LedgerError(f"account type {kind!r} is not one of "
                              f"{', '.join(AccountType.__members__)}")
        if not isinstance(name, str) or not name or name.startswith("@") or "," in name:
            raise LedgerError(f"account name {name!r}: non-empty, no comma, not starting with @")
        if name in self.accounts:
            have = self.store.query("SELECT kind FROM account WHERE name = ?", (name,))[0][0]
            if have != kind_name:
                raise LedgerError(f"account {name!r} is already open as {have}")
            return
        with self.store.transaction():
            self._insert_account(name, kind_name, 0)

    def account_id(self, name: str) -> int:
        """The id of the participant account ``name``; LedgerError (UNKNOWN_ACCOUNT) for an
        unknown or external one."""
        id_ = self.accounts.get(name)
        if id_ is None or id_ in self.external:
            raise LedgerError(f"UNKNOWN_ACCOUNT: no account {name!r}")
        return id_

    def _operation(self, kind: str, name: str, asset: str, amount: int, ref: str,
                   day: int) -> bool:
        account = self.account_id(name)
        if asset not in self.assets and asset != CCER:
            raise LedgerError(f"no instrument {asset!r}")
        amount = positive_amount(amount, f"{kind} amount")
        if not isinstance(ref, str) or not ref:
            raise LedgerError("an operation needs a non-empty ref (its idempotency key)")
        counter = self.accounts[BANK if asset == CASH else REGISTRY]
        with self.writing():
            if self.store.query("SELECT 1 FROM operation WHERE ref = ?", (ref,)):
                return False  # applied before: idempotent
            asset_id = self._asset_id(asset)
            self.write_operation(kind, account, asset_id, amount, ref, day, counter,
                                 f"{kind} of {amount} {asset} for {name!r}")
        return True

    @contextmanager
    def writing(self):
        """One store transaction (they do not nest); on failure the in-memory names are
        reloaded from the store, so an asset or account added inside the rolled-back
        transaction is forgotten too."""
        try:
            with self.store.transaction():
                yield
        except BaseException:
            self._load()
            raise

    def _asset_id(self, asset: str) -> int:
        """The asset's id; the CCER asset is added on first use (inside the caller's
        transaction)."""
        if asset not in self.assets:
            self.store.execute("INSERT INTO asset VALUES (?, ?, ?)",
                               (len(self.assets), asset, "t"))
            self.assets[asset] = len(self.assets)
            self.asset_names[self.assets[asset]] = asset
        return self.assets[asset]

    def write_operation(self, kind: str, account: int, asset_id: int, amount: int, ref: str,
                        day: int, counter: int, what: str) -> int:
        """Inside a transaction (``writing``): the operation row, its two postings (the
        account and its external counterpart ``counter``) and the balances; return the
        operation id."""
        if self.store.query("SELECT 1 FROM operation WHERE ref = ?", (ref,)):
            raise LedgerError(f"operation ref {ref!r} is already taken")
        sign = 1 if kind in INTO_ACCOUNT else -1
        op_id = (self.store.query("SELECT max(op_id) FROM operation")[0][0] or 0) + 1
        self.store.execute("INSERT INTO operation VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (op_id, ref, kind, int(day), account, asset_id, amount))
        legs = [(account, sign * amount), (counter, -sign * amount)]
        self.store.executemany(
            "INSERT INTO posting VALUES (?, ?, ?, ?, ?, ?)",
            [(SOURCE_OPERATION, op_id, int(day), a, asset_id, x) for a, x in legs])
        self.apply_balances([(a, asset_id, x) for a, x in legs], what)
        return op_id

    def deposit(self, name: str, fen: int, *, ref: str, day: int) -> bool:
        """Cash paid in from the bank. False if ``ref`` was applied before."""
        return self._operation("DEPOSIT", name, CASH, fen, ref, day)

    def withdraw(self, name: str, fen: int, *, ref: str, day: int) -> bool:
        return self._operation("WITHDRAW", name, CASH, fen, ref, day)

    def allowance_in(self, name: str, instrument: str, tonnes: int, *, ref: str,
                     day: int) -> bool:
        """Allowances transferred in from the registry (allocation, purchase elsewhere)."""
        return self._operation("ALLOWANCE_IN", name, instrument, tonnes, ref, day)

    def allowance_out(self, name: str, instrument: str, tonnes: int, *, ref: str,
                      day: int) -> bool:
        """Allowances transferred out to the registry (surrender for compliance goes through
        ``surrender``, which checks the obligation)."""
        return self._operation("ALLOWANCE_OUT", name, instrument, tonnes, ref, day)

    def offset_in(self, name: str, tonnes: int, *, ref: str, day: int) -> bool:
        """CCER offsets transferred in from the registry (bought on the CCER market, held for
        surrender), in tonnes; the ledger's CCER asset is added with the first one. False if
        ``ref`` was applied before. Out again: ``allowance_out(name, CCER, ...)``."""
        return self._operation("ALLOWANCE_IN", name, CCER, tonnes, ref, day)

    # ------------------------------------------------------------------ balances

    def apply_balances(self, deltas, what: str) -> None:
        """Inside a transaction: add ``deltas`` ((account id, asset id, amount), ...) to the
        balance table; LedgerError naming ``what`` if a participant balance would go below
        zero."""
        # a zero row first, then the update: CHECK (amount >= 0) is evaluated on the row an
        # INSERT proposes, so an upsert carrying a negative delta would fail even where the
        # balance covers it
        rows = [(int(a), int(asset), int(x)) for a, asset, x in deltas if x]
        try:
            self.store.executemany(
                "INSERT INTO balance VALUES (?, ?, 0, ?) ON CONFLICT (account, asset) DO NOTHING",
                [(a, asset, int(a in self.external)) for a, asset, _ in rows])
            self.store.executemany(
                "UPDATE balance SET amount = amount + ? WHERE account = ? AND asset = ?",
                [(x, a, asset) for a, asset, x in rows])
        except self.store.integrity_errors:
            raise LedgerError(f"{what} would take a balance below zero") from None

    def holding(self, account: int, asset: str) -> int:
        """What account id ``account`` holds of ``asset`` (0 for an asset the ledger lacks)."""
        if asset not in self.assets:
            return 0
        rows = self.store.query("SELECT amount FROM balance WHERE account = ? AND asset = ?",
                                (account, self.assets[asset]))
        return int(rows[0][0]) if rows else 0

    def balances(self, include_external: bool = False) -> dict[str, dict[str, int]]:
        """{account: {asset: amount}} from the balance table (every asset listed)."""
        out: dict[str, dict[str, int]] = {}
        for name, id_ in sorted(self.accounts.items()):
            if id_ in self.external and not include_external:
                continue
            out[name] = {asset: 0 for asset in self.assets}
        for account, asset, amount in self.store.query(
                "SELECT account, asset, amount FROM balance"):
            name = self.account_names[account]
            if name in out:
                out[name][self.asset_names[asset]] = amount
        return out


__all__ = ["AUCTION", "BANK", "CASH", "CCER", "EXTERNAL", "FEES", "INTO_ACCOUNT",
           "LedgerAccounts", "LedgerError", "OPERATIONS", "REGISTRY", "SEGMENT_NAMES",
           "SOURCE_OPERATION", "SOURCE_TRADE", "SURRENDERED", "Trade", "amount_or_zero",
           "migrate", "parse_date", "positive_amount"]
