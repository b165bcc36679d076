"""``Ledger``: accounts, operations, trade settlement, end of day, statements, reconciliation.

Settlement is delivery versus payment, trade by trade (cea-rules.md §6): per trade the buyer
pays price x qty plus its fee, the seller delivers the tonnes and receives price x qty less its
fee, the fees go to ``@FEES``. The engine has already locked both legs when it matched, so
settlement cannot fail for want of funds; the ledger still refuses (and rolls back the whole
batch) anything that would take a participant's balance below zero, an unknown account, or an
amount that is not a positive integer.

Trades arrive in batches (``settle_events`` takes the engine's event rows as they come out of
a batch, ``settle_trades`` takes ``Trade`` records); one batch is one transaction: the trade
rows, then their postings generated inside the database (``INSERT ... SELECT``, four or five
legs per trade), then the balance rows changed by the batch. A trade id already in the ledger
is skipped, so publishing a batch twice (a retry after a crash) settles each trade once.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from engine import batch as B
from engine.accounts import CA_KNOWN, CA_TOTAL, HD_TOTAL, RK_FEES, MAX_BALANCE
from engine.codes import AccountType, EventKind, Segment
from engine.rules import DAY_US
from engine.tradingdays import date_of_day, day_of_date, format_time

from .schema import LATEST, MIGRATIONS
from .store import Store, StoreError, open_store

CASH = "CNY"  # asset 0: fen
#: CCER offsets (China Certified Emission Reductions), tonnes; not traded on the CEA system
#: (cea-rules.md §1), added to a ledger by its first ``offset_in``
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


class Ledger:
    """The settlement ledger over one store. One writer at a time."""

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
             fee_bps_block: int = 0, fee_bps_auction: int = 0) -> "Ledger":
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

    def _account_id(self, name: str) -> int:
        id_ = self.accounts.get(name)
        if id_ is None or id_ in self.external:
            raise LedgerError(f"UNKNOWN_ACCOUNT: no account {name!r}")
        return id_

    def _operation(self, kind: str, name: str, asset: str, amount: int, ref: str,
                   day: int) -> bool:
        account = self._account_id(name)
        if asset not in self.assets and asset != CCER:
            raise LedgerError(f"no instrument {asset!r}")
        amount = _positive(amount, f"{kind} amount")
        if not isinstance(ref, str) or not ref:
            raise LedgerError("an operation needs a non-empty ref (its idempotency key)")
        counter = self.accounts[BANK if asset == CASH else REGISTRY]
        with self._writing():
            if self.store.query("SELECT 1 FROM operation WHERE ref = ?", (ref,)):
                return False  # applied before: idempotent
            asset_id = self._asset_id(asset)
            self._write_operation(kind, account, asset_id, amount, ref, day, counter,
                                  f"{kind} of {amount} {asset} for {name!r}")
        return True

    @contextmanager
    def _writing(self):
        """One store transaction; on failure the in-memory names are reloaded from the store,
        so an asset or account added inside the rolled-back transaction is forgotten too."""
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

    def _write_operation(self, kind: str, account: int, asset_id: int, amount: int, ref: str,
                         day: int, counter: int, what: str) -> int:
        """Inside a transaction: the operation row, its two postings (the account and its
        external counterpart) and the balances; return the operation id."""
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
        self._apply_balances([(a, asset_id, x) for a, x in legs], what)
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

    # ------------------------------------------------------------------ compliance

    def record_obligations(self, obligations: Iterable) -> int:
        """Record entities' compliance obligations (``ledger.compliance.Obligation``, one per
        entity and period) in one transaction; return how many were new. An obligation
        recorded before with the same figures is skipped; with other figures it is refused
        (a recorded obligation is never changed: [our modelling choice]). ``surrender`` and
        ``borrow`` check against these records."""
        from .compliance import Obligation, recomputed

        rows, seen = [], set()
        for ob in obligations:
            if not isinstance(ob, Obligation):
                raise LedgerError(f"not an Obligation: {ob!r}")
            if recomputed(ob) != ob:
                raise LedgerError(f"{ob.entity!r}: the obligation's figures do not follow "
                                  f"from its units under the rules of period {ob.period}")
            key = (self._account_id(ob.entity), ob.period)
            if key in seen:
                raise LedgerError(f"{ob.entity!r} has two obligations for period {ob.period}")
            seen.add(key)
            rows.append((*key, ob.verified_emissions, ob.allocation, ob.obligation,
                         ob.ccer_limit, ob.borrow_limit, ob.borrow_from))
        new = 0
        with self._writing():
            for row in rows:
                have = self.store.query(
                    "SELECT verified_emissions, allocation, obligation, ccer_limit, "
                    "borrow_limit, borrow_from FROM obligation WHERE account = ? AND period = ?",
                    row[:2])
                if not have:
                    self.store.execute("INSERT INTO obligation VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                       row)
                    new += 1
                elif tuple(have[0]) != row[2:]:
                    raise LedgerError(
                        f"{self.account_names[row[0]]!r} already has an obligation for period "
                        f"{row[1]} (verified emissions, allocation, obligation, CCER limit, "
                        f"borrowing limit, lender: {tuple(have[0])}), not {row[2:]}; a recorded "
                        "obligation is not changed")
        return new

    def _obligation_row(self, account: int, period: str) -> tuple:
        rows = self.store.query(
            "SELECT obligation, ccer_limit, borrow_limit, borrow_from FROM obligation "
            "WHERE account = ? AND period = ?", (account, str(period)))
        if not rows:
            raise LedgerError(f"no obligation recorded for {self.account_names[account]!r} in "
                              f"period {period!r} (record it first: cea compliance obligations)")
        return rows[0]

    def _holding(self, account: int, asset: str) -> int:
        if asset not in self.assets:
            return 0
        rows = self.store.query("SELECT amount FROM balance WHERE account = ? AND asset = ?",
                                (account, self.assets[asset]))
        return int(rows[0][0]) if rows else 0

    def surrender(self, name: str, period: str, cea: int = 0, ccer: int = 0, *, ref: str,
                  day: int, instrument: str = "CEA") -> bool:
        """Surrender ``cea`` tonnes of allowances (of ``instrument``) and ``ccer`` tonnes of
        CCER offsets for ``name``'s obligation in ``period``: both move to ``@SURRENDERED``,
        one transaction with the surrender row, two operations (SURRENDER) and their
        postings and balances. Refused, with nothing written: an unknown account, no
        obligation recorded for the period, amounts that are not integers >= 0 (at least one
        positive), an instrument that is not an allowance, more than the account holds, CCER
        beyond the CCER limit (cumulated over the period's surrenders), and anything beyond
        what is still owed (obligation - surrendered so far: over-surrender is refused, [our
        modelling choice]). The same ``ref`` again for the same entity and period: no-op,
        returns False (idempotent, like operations); with other figures: refused."""
        account = self._account_id(name)
        if instrument not in self.assets or instrument in (CASH, CCER):
            raise LedgerError(f"{instrument!r} is not an allowance instrument of this ledger "
                              f"({', '.join(a for a in self.assets if a not in (CASH, CCER))})")
        cea = _tonnes_or_zero(cea, "surrendered CEA")
        ccer = _tonnes_or_zero(ccer, "surrendered CCER")
        if not cea and not ccer:
            raise LedgerError("a surrender needs a positive CEA or CCER quantity")
        if not isinstance(ref, str) or not ref:
            raise LedgerError("a surrender needs a non-empty ref (its idempotency key)")
        what = f"surrender by {name!r} for period {period}"
        with self._writing():
            q = self.store.query
            asset = self.assets[instrument]
            done = q("SELECT day, asset, allowances, ccer FROM surrender WHERE account = ? "
                     "AND period = ? AND ref = ?", (account, str(period), ref))
            if done:
                if tuple(done[0]) != (int(day), asset, cea, ccer):
                    raise LedgerError(f"{what}: ref {ref!r} was used for another surrender "
                                      f"(day, asset, CEA, CCER: {tuple(done[0])})")
                return False
            obligation, ccer_limit, _, _ = self._obligation_row(account, period)
            have_cea, have_ccer = q("SELECT coalesce(sum(allowances), 0), coalesce(sum(ccer), "
                                    "0) FROM surrender WHERE account = ? AND period = ?",
                                    (account, str(period)))[0]
            still = obligation - have_cea - have_ccer
            if cea + ccer > still:
                raise LedgerError(f"{what}: {cea + ccer} t is more than still owed ({still} t "
                                  f"of an obligation of {obligation} t)")
            if have_ccer + ccer > ccer_limit:
                raise LedgerError(f"{what}: CCER {ccer} t would bring the CCER surrendered to "
                                  f"{have_ccer + ccer} t, above the CCER limit {ccer_limit} t")
            for asset_name, amount in ((instrument, cea), (CCER, ccer)):
                held = self._holding(account, asset_name)
                if amount > held:
                    raise LedgerError(f"{what}: {amount} t {asset_name} is more than held "
                                      f"({held} t)")
            sid = (q("SELECT max(surrender_id) FROM surrender")[0][0] or 0) + 1
            self.store.execute("INSERT INTO surrender VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (sid, account, str(period), ref, int(day), asset, cea, ccer))
            for asset_name, amount in ((instrument, cea), (CCER, ccer)):
                if amount:
                    self._write_operation("SURRENDER", account, self.assets[asset_name],
                                          amount, f"surrender#{sid}:{asset_name}", day,
                                          self.accounts[SURRENDERED],
                                          f"{what} of {amount} t {asset_name}")
        return True

    def borrow(self, name: str, period: str, tonnes: int, *, ref: str, day: int,
               instrument: str = "CEA") -> bool:
        """Borrowing: ``tonnes`` of the lending period's allowances issued early to ``name``
        for its obligation in ``period`` (a BORROW operation from ``@REGISTRY``, and a
        borrowing row naming the lending period, whose allocation is to be netted by it:
        ``ledger.compliance.net_allocation``). Refused, with nothing written: an unknown
        account, no obligation recorded, a period or entity without a borrowing limit, a
        total borrowed above the limit. The same ``ref`` again for the same entity and period:
        no-op, returns False; with other figures: refused."""
        account = self._account_id(name)
        if instrument not in self.assets or instrument in (CASH, CCER):
            raise LedgerError(f"{instrument!r} is not an allowance instrument of this ledger")
        tonnes = _positive(tonnes, "borrowed tonnes")
        if not isinstance(ref, str) or not ref:
            raise LedgerError("borrowing needs a non-empty ref (its idempotency key)")
        what = f"borrowing by {name!r} for period {period}"
        with self._writing():
            q = self.store.query
            asset = self.assets[instrument]
            done = q("SELECT day, asset, tonnes FROM borrowing WHERE account = ? AND period = ? "
                     "AND ref = ?", (account, str(period), ref))
            if done:
                if tuple(done[0]) != (int(day), asset, tonnes):
                    raise LedgerError(f"{what}: ref {ref!r} was used for another borrowing "
                                      f"(day, asset, tonnes: {tuple(done[0])})")
                return False
            _, _, limit, lender = self._obligation_row(account, period)
            if not limit:
                raise LedgerError(f"{what}: not allowed (no borrowing limit for this entity "
                                  "and period)")
            before = q("SELECT coalesce(sum(tonnes), 0) FROM borrowing WHERE account = ? AND "
                       "period = ?", (account, str(period)))[0][0]
            if before + tonnes > limit:
                raise LedgerError(f"{what}: {tonnes} t would bring the borrowed total to "
                                  f"{before + tonnes} t, above the limit {limit} t")
            bid = (q("SELECT max(borrowing_id) FROM borrowing")[0][0] or 0) + 1
            self.store.execute("INSERT INTO borrowing VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (bid, account, str(period), lender, ref, int(day), asset, tonnes))
            self._write_operation("BORROW", account, asset, tonnes, f"borrow#{bid}", day,
                                  self.accounts[REGISTRY], what)
        return True

    def obligations(self, period: str) -> list["ObligationRecord"]:
        """The obligations recorded for ``period``, by entity name."""
        return sorted(ObligationRecord(self.account_names[a], p, *rest)
                      for a, p, *rest in self.store.query(
                          "SELECT * FROM obligation WHERE period = ?", (str(period),)))

    def surrenders(self, period: str) -> list["SurrenderRecord"]:
        """The surrenders for ``period``, in the order they were made."""
        return [SurrenderRecord(self.account_names[a], p, ref, date_of_day(d),
                                self.asset_names[asset], cea, ccer)
                for a, p, ref, d, asset, cea, ccer in self.store.query(
                    "SELECT account, period, ref, day, asset, allowances, ccer FROM surrender "
                    "WHERE period = ? ORDER BY surrender_id", (str(period),))]

    def borrowings(self, *, period: str | None = None,
                   lender: str | None = None) -> list["BorrowingRecord"]:
        """Borrowings for obligations of ``period`` and/or from ``lender``'s allocation, in
        the order they were made."""
        return [BorrowingRecord(self.account_names[a], p, lend, ref, date_of_day(d),
                                self.asset_names[asset], t)
                for a, p, lend, ref, d, asset, t in self.store.query(
                    "SELECT account, period, borrow_from, ref, day, asset, tonnes FROM "
                    "borrowing ORDER BY borrowing_id")
                if (period is None or p == period) and (lender is None or lend == lender)]

    def _apply_balances(self, deltas, what: str) -> None:
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

    # ------------------------------------------------------------------ settlement

    def settle_trades(self, trades: Iterable[Trade]) -> int:
        """Settle ``Trade`` records as one batch; return how many were new."""
        cols, buy_orders, sell_orders = [], [], []
        for t in trades:
            if t.instrument not in self.assets or t.instrument in (CASH, CCER):
                raise LedgerError(f"trade {t.trade_id}: no instrument {t.instrument!r}")
            cols.append((t.trade_id, t.day, t.ts, self.assets[t.instrument], t.segment, t.price,
                         t.qty, self._account_id(t.buyer), self._account_id(t.seller)))
            buy_orders.append(t.buy_order)
            sell_orders.append(t.sell_order)
        return self._settle(np.array(cols, dtype=np.int64).reshape(-1, 9), buy_orders,
                            sell_orders)

    def settle_events(self, events: np.ndarray, account_name: Callable[[int], str],
                      order_name: Callable[[int], str], instruments: Sequence[str],
                      feed: tuple[str, int] | None = None) -> int:
        """Settle the TRADE rows of an engine event array and record its DAY_CLOSED rows,
        in one transaction. ``account_name`` / ``order_name`` turn engine handles into
        names; ``instruments`` names the engine's instruments by index. ``feed`` (name,
        position) records, in the same transaction, how far that source is now settled."""
        trades = events[events[:, B.KIND] == EventKind.TRADE]
        days = events[events[:, B.KIND] == EventKind.DAY_CLOSED]
        asset_of = np.array([self.assets[name] for name in instruments], dtype=np.int64)
        # engine account handles -> ledger ids, looked up once per distinct handle
        handles = np.unique(np.concatenate([trades[:, B.ACCOUNT], trades[:, B.ACCOUNT2]]))
        ids = np.array([self._account_id(account_name(int(h))) for h in handles.tolist()],
                       dtype=np.int64)
        cols = np.empty((len(trades), 9), dtype=np.int64)
        cols[:, 0] = trades[:, B.TRADE_ID]
        cols[:, 1] = trades[:, B.TS] // DAY_US
        cols[:, 2] = trades[:, B.TS]
        cols[:, 3] = asset_of[trades[:, B.INSTRUMENT]]
        cols[:, 4] = trades[:, B.SEGMENT]
        cols[:, 5] = trades[:, B.PRICE]
        cols[:, 6] = trades[:, B.QTY]
        cols[:, 7] = ids[np.searchsorted(handles, trades[:, B.ACCOUNT])]
        cols[:, 8] = ids[np.searchsorted(handles, trades[:, B.ACCOUNT2])]
        buy_orders = [order_name(h) for h in trades[:, B.ORDER].tolist()]
        sell_orders = [order_name(h) for h in trades[:, B.ORDER2].tolist()]
        closes = [(r[B.ORDER], int(asset_of[r[B.INSTRUMENT]]), r[B.AUX1], r[B.PRICE], r[B.QTY],
                   r[B.AUX2], r[B.ACCOUNT], r[B.ACCOUNT2]) for r in days.tolist()]
        return self._settle(cols, buy_orders, sell_orders, closes, feed)

    def feed_position(self, name: str) -> int:
        """How far the source ``name`` has been settled (-1: never)."""
        rows = self.store.query("SELECT position FROM feed WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else -1

    def _settle(self, cols: np.ndarray, buy_orders: list[str], sell_orders: list[str],
                closes: list[tuple] = (), feed: tuple[str, int] | None = None) -> int:
        """cols: trade_id, day, ts, asset, segment, price, qty, buyer, seller (ledger ids)."""
        if len(cols):
            bad = np.flatnonzero((cols[:, 5] <= 0) | (cols[:, 6] <= 0) | (cols[:, 7] == cols[:, 8])
                                 | (cols[:, 4] < 0) | (cols[:, 4] >= len(self.fee_bps)))
            if len(bad):
                raise LedgerError(f"trade {int(cols[bad[0], 0])}: price and quantity must be "
                                  "positive, the buyer differ from the seller and the segment "
                                  "be LISTED 0, BLOCK 1 or AUCTION 2")
            if len(np.unique(cols[:, 0])) != len(cols):
                raise LedgerError("a batch names the same trade id twice")
        store = self.store
        with store.transaction():
            new = 0
            if len(cols):
                lo, hi = int(cols[:, 0].min()), int(cols[:, 0].max())
                seen = np.array([t for (t,) in store.query(
                    "SELECT trade_id FROM trade WHERE trade_id BETWEEN ? AND ?", (lo, hi))],
                    dtype=np.int64)
                keep = ~np.isin(cols[:, 0], seen) if len(seen) else np.ones(len(cols), bool)
                cols = cols[keep]
                new = len(cols)
            if new:
                bps = np.array(self.fee_bps, dtype=np.int64)[cols[:, 4]]
                fees = (cols[:, 5] * cols[:, 6] * bps + 5000) // 10000  # engine.accounts.fee
                kept = np.flatnonzero(keep).tolist()
                rows = list(zip(*cols.T.tolist(), [buy_orders[k] for k in kept],
                                [sell_orders[k] for k in kept], fees.tolist(), fees.tolist()))
                store.bulk_insert("trade", 13, rows)
                self._postings(np.sort(cols[:, 0]).tolist())
                self._apply_balances(self._trade_deltas(cols, fees), "a trade batch")
            for c in closes:
                self._close_day(*c)
            if feed is not None:
                store.execute("INSERT INTO feed VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                              "position = excluded.position", feed)
        return new

    def _postings(self, ids: list[int]) -> None:
        """The legs of trades ``ids``, generated in SQL one contiguous id run at a time."""
        fees_account = self.accounts[FEES]
        runs, start = [], 0
        for k in range(1, len(ids) + 1):
            if k == len(ids) or ids[k] != ids[k - 1] + 1:
                runs.append((ids[start], ids[k - 1]))
                start = k
        legs = [
            "buyer, 0, -(price * qty + buyer_fee)",  # buyer pays
            "seller, 0, price * qty - seller_fee",  # seller is paid
            "seller, asset, -qty",  # seller delivers
            "buyer, asset, qty",  # buyer receives
        ]
        for lo, hi in runs:
            for leg in legs:
                self.store.execute(
                    f"INSERT INTO posting SELECT {SOURCE_TRADE}, trade_id, day, {leg} FROM trade "
                    "WHERE trade_id BETWEEN ? AND ?", (lo, hi))
            self.store.execute(
                f"INSERT INTO posting SELECT {SOURCE_TRADE}, trade_id, day, {fees_account}, 0, "
                "buyer_fee + seller_fee FROM trade WHERE trade_id BETWEEN ? AND ? "
                "AND buyer_fee + seller_fee > 0", (lo, hi))

    def _trade_deltas(self, t: np.ndarray, fee_each: np.ndarray):
        """Net change per (account, asset) of a batch of trades, exact in int64."""
        notional = t[:, 5] * t[:, 6]
        zeros = np.zeros(len(t), dtype=np.int64)
        acc = np.concatenate([t[:, 7], t[:, 8], t[:, 8], t[:, 7],
                              np.full(len(t), self.accounts[FEES])])
        asset = np.concatenate([zeros, zeros, t[:, 3], t[:, 3], zeros])
        amount = np.concatenate([-(notional + fee_each), notional - fee_each, -t[:, 6], t[:, 6],
                                 2 * fee_each])
        key = acc * (len(self.assets) + 1) + asset
        order = np.argsort(key, kind="stable")
        key, acc, asset, amount = key[order], acc[order], asset[order], amount[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        sums = np.add.reduceat(amount, starts)
        return list(zip(acc[starts].tolist(), asset[starts].tolist(), sums.tolist()))

    def _close_day(self, day, asset, prior_close, close, listed_volume, block_volume,
                   listed_turnover, block_turnover) -> None:
        """A DAY_CLOSED row: the closing price, and once a day its settlement report."""
        self.store.execute(
            "INSERT INTO day_close VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, asset) "
            "DO NOTHING", (day, asset, prior_close, close, listed_volume, block_volume,
                           listed_turnover, block_turnover))
        n, cash, tonnes, fees = self.store.query(
            "SELECT count(*), coalesce(sum(price * qty), 0), coalesce(sum(qty), 0), "
            "coalesce(sum(buyer_fee + seller_fee), 0) FROM trade WHERE day = ?", (day,))[0]
        self.store.execute("INSERT INTO settlement VALUES (?, ?, ?, ?, ?) ON CONFLICT (day) "
                           "DO UPDATE SET trades = excluded.trades, cash_moved = "
                           "excluded.cash_moved, tonnes_moved = excluded.tonnes_moved, "
                           "fees = excluded.fees", (day, n, cash, tonnes, fees))

    # ------------------------------------------------------------------ reading

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

    def trade_count(self) -> int:
        return self.store.query("SELECT count(*) FROM trade")[0][0]

    def trades_between(self, lo: int, hi: int) -> list[tuple[Trade, int, int]]:
        """The settled trades with ids ``lo`` .. ``hi``, by id, each with (buyer fee, seller
        fee) in fen."""
        rows = self.store.query(
            "SELECT trade_id, day, ts, asset, segment, price, qty, buyer, seller, buy_order, "
            "sell_order, buyer_fee, seller_fee FROM trade WHERE trade_id BETWEEN ? AND ? "
            "ORDER BY trade_id", (int(lo), int(hi)))
        names, assets = self.account_names, self.asset_names
        return [(Trade(int(tid), int(day), int(ts), assets[asset], int(seg), int(price),
                       int(qty), names[buyer], names[seller], bo, so), int(bf), int(sf))
                for tid, day, ts, asset, seg, price, qty, buyer, seller, bo, so, bf, sf in rows]

    def days(self) -> list[tuple]:
        """(date, instrument, prior close, close, listed volume, block volume) per day."""
        return [(date_of_day(d).isoformat(), self.asset_names[a], p, c, lv, bv)
                for d, a, p, c, lv, bv in self.store.query(
                    "SELECT day, asset, prior_close, close, listed_volume, block_volume "
                    "FROM day_close ORDER BY day, asset")]

    def statement(self, name: str, date: str | dt.date) -> "Statement":
        """The account's statement for one trading date: opening balances, the day's trades
        (with fees) and operations, closing balances."""
        account = self._account_id(name)
        day = day_of_date(date if isinstance(date, dt.date) else _parse_date(date))
        opening = {asset: 0 for asset in self.assets}
        for asset, amount in self.store.query(
                "SELECT asset, sum(amount) FROM posting WHERE account = ? AND day < ? "
                "GROUP BY asset", (account, day)):
            opening[self.asset_names[asset]] = int(amount)
        trades = []
        for (tid, ts, asset, seg, price, qty, buyer, seller, bo, so, bfee, sfee) in self.store.query(
                "SELECT trade_id, ts, asset, segment, price, qty, buyer, seller, buy_order, "
                "sell_order, buyer_fee, seller_fee FROM trade WHERE day = ? AND "
                "(buyer = ? OR seller = ?) ORDER BY trade_id", (day, account, account)):
            buy = buyer == account
            trades.append(StatementTrade(
                tid, format_time(ts), self.asset_names[asset], SEGMENT_NAMES[seg],
                "BUY" if buy else "SELL", price, qty, bo if buy else so,
                self.account_names[seller if buy else buyer],
                -(price * qty + bfee) if buy else price * qty - sfee, qty if buy else -qty,
                bfee if buy else sfee))
        operations = [StatementOperation(ref, kind, self.asset_names[asset],
                                         amount if kind in INTO_ACCOUNT else -amount)
                      for ref, kind, asset, amount in self.store.query(
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

    # ------------------------------------------------------------------ reconciliation

    def reconcile(self, expected: dict[str, dict[str, int]] | None = None,
                  expected_fees: int | None = None) -> "Reconciliation":
        """Check the ledger against itself and, when given, the engine's balances.

        Internally: every transaction's postings net to zero per asset; the balance table
        equals the postings replayed from scratch; each trade has its four legs. Against
        ``expected`` ({account: {asset: amount}}): every participant balance agrees, and the
        fee account holds ``expected_fees``.
        """
        q = self.store.query
        problems = []
        for source, txn, asset, total in q(
                "SELECT source, txn, asset, sum(amount) FROM posting GROUP BY source, txn, asset "
                "HAVING sum(amount) <> 0 LIMIT 5"):
            problems.append(f"transaction {source}:{txn} nets {total} in asset "
                            f"{self.asset_names.get(asset, asset)}, not 0")
        replayed = {(a, s): int(x) for a, s, x in q(
            "SELECT account, asset, sum(amount) FROM posting GROUP BY account, asset")}
        stored = {(a, s): int(x) for a, s, x in q("SELECT account, asset, amount FROM balance")}
        for key in sorted(set(replayed) | set(stored)):
            if replayed.get(key, 0) != stored.get(key, 0):
                problems.append(f"balance of {self.account_names[key[0]]} in "
                                f"{self.asset_names[key[1]]}: table {stored.get(key, 0)}, "
                                f"postings {replayed.get(key, 0)}")
        trades = self.trade_count()
        legs = q(f"SELECT count(*) FROM posting WHERE source = {SOURCE_TRADE} AND asset > 0")[0][0]
        if legs != 2 * trades:
            problems.append(f"{trades} trades have {legs} allowance legs, not {2 * trades}")
        for (account,) in q("SELECT account FROM balance WHERE external = 0 AND amount < 0"):
            problems.append(f"{self.account_names[account]} has a negative balance")
        if expected is not None:
            have = self.balances()
            for name in sorted(set(have) | set(expected)):
                for asset in self.assets:
                    a = have.get(name, {}).get(asset, 0)
                    b = expected.get(name, {}).get(asset, 0)
                    if a != b:
                        problems.append(f"{name} {asset}: ledger {a}, engine {b}")
        if expected_fees is not None:
            fees = self.balances(include_external=True)[FEES][CASH]
            if fees != expected_fees:
                problems.append(f"fees: ledger {fees}, engine {expected_fees}")
        return Reconciliation(not problems, problems, len(self.balances()), trades)


@dataclass(frozen=True, order=True)
class ObligationRecord:
    """An obligation as the ledger holds it (totals over the entity's unit kinds)."""

    entity: str
    period: str
    verified_emissions: int
    allocation: int
    obligation: int
    ccer_limit: int
    borrow_limit: int
    borrow_from: str | None


@dataclass(frozen=True)
class SurrenderRecord:
    entity: str
    period: str
    ref: str
    date: dt.date
    instrument: str  # the allowance instrument of the CEA leg
    cea: int
    ccer: int


@dataclass(frozen=True)
class BorrowingRecord:
    entity: str
    period: str  # the obligation it helps meet
    lender: str  # the period whose allocation it was issued from (to be netted there)
    ref: str
    date: dt.date
    instrument: str
    tonnes: int


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


def _positive(amount, what: str) -> int:
    """``amount`` as an int in 1..MAX_BALANCE, or LedgerError naming it."""
    if isinstance(amount, bool) or not isinstance(amount, (int, np.integer)) \
            or not 0 < int(amount) <= MAX_BALANCE:
        raise LedgerError(f"{what} must be an integer 1..{MAX_BALANCE}, not {amount!r}")
    return int(amount)


def _tonnes_or_zero(amount, what: str) -> int:
    """0, or ``amount`` as an int in 1..MAX_BALANCE, or LedgerError naming it."""
    if isinstance(amount, (int, np.integer)) and not isinstance(amount, bool) and amount == 0:
        return 0
    return _positive(amount, what)


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError:
        raise LedgerError(f"date {text!r} is not YYYY-MM-DD") from None


__all__ = ["BorrowingRecord", "Ledger", "LedgerError", "ObligationRecord", "Reconciliation",
           "Statement", "StoreError", "SurrenderRecord", "Trade", "engine_balances", "migrate"]
