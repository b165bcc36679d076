"""The ledger's schema as versioned migrations, one SQL text for SQLite and PostgreSQL.

Each migration runs once, in its own transaction, and records its version in
``schema_version``; opening a ledger applies the ones it lacks and refuses a ledger written
by a newer version. ``{pk}`` stands for the dialect's 64-bit integer primary key (SQLite's
rowid alias ``INTEGER PRIMARY KEY``; PostgreSQL's ``BIGINT PRIMARY KEY``).

Amounts are integers: cash in fen (asset 0, ``CNY``), allowances in tonnes (one asset per
instrument). Every transaction's postings sum to zero per asset; the external accounts
``@BANK`` (cash paid in and out), ``@REGISTRY`` (allowances transferred in and out) and
``@FEES`` (the exchange's fee income) are the counterparts of money entering or leaving the
participants, so the sum over all accounts of each asset is always zero. ``@SURRENDERED``
(added with migration 4) receives the allowances and CCER offsets surrendered for compliance.
"""

from __future__ import annotations

#: (version, what it adds, statements)
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "accounts, assets, trades, operations, postings and balances", [
        """CREATE TABLE account (
            id {pk},
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            external SMALLINT NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE asset (
            id {pk},
            name TEXT NOT NULL UNIQUE,
            unit TEXT NOT NULL
        )""",
        # one row per trade: the idempotency key is the engine's trade id
        """CREATE TABLE trade (
            trade_id {pk},
            day BIGINT NOT NULL,
            ts BIGINT NOT NULL,
            asset BIGINT NOT NULL,
            segment SMALLINT NOT NULL,
            price BIGINT NOT NULL CHECK (price > 0),
            qty BIGINT NOT NULL CHECK (qty > 0),
            buyer BIGINT NOT NULL,
            seller BIGINT NOT NULL,
            buy_order TEXT NOT NULL,
            sell_order TEXT NOT NULL,
            buyer_fee BIGINT NOT NULL CHECK (buyer_fee >= 0),
            seller_fee BIGINT NOT NULL CHECK (seller_fee >= 0),
            CHECK (buyer <> seller)
        )""",
        # deposits, withdrawals, registry transfers: idempotent on the caller's ref
        """CREATE TABLE operation (
            op_id {pk},
            ref TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            day BIGINT NOT NULL,
            account BIGINT NOT NULL,
            asset BIGINT NOT NULL,
            amount BIGINT NOT NULL CHECK (amount > 0)
        )""",
        # txn: a trade id (source 1) or an operation id (source 2)
        """CREATE TABLE posting (
            source SMALLINT NOT NULL,
            txn BIGINT NOT NULL,
            day BIGINT NOT NULL,
            account BIGINT NOT NULL,
            asset BIGINT NOT NULL,
            amount BIGINT NOT NULL
        )""",
        "CREATE INDEX posting_by_day ON posting (day, account)",
        """CREATE TABLE balance (
            account BIGINT NOT NULL,
            asset BIGINT NOT NULL,
            amount BIGINT NOT NULL,
            external SMALLINT NOT NULL,
            PRIMARY KEY (account, asset),
            CHECK (external = 1 OR amount >= 0)
        )""",
    ]),
    (2, "end of day: closing prices and the day's settlement report", [
        """CREATE TABLE day_close (
            day BIGINT NOT NULL,
            asset BIGINT NOT NULL,
            prior_close BIGINT NOT NULL,
            close BIGINT NOT NULL,
            listed_volume BIGINT NOT NULL,
            block_volume BIGINT NOT NULL,
            listed_turnover BIGINT NOT NULL,
            block_turnover BIGINT NOT NULL,
            PRIMARY KEY (day, asset)
        )""",
        """CREATE TABLE settlement (
            day {pk},
            trades BIGINT NOT NULL,
            cash_moved BIGINT NOT NULL,
            tonnes_moved BIGINT NOT NULL,
            fees BIGINT NOT NULL
        )""",
        "CREATE INDEX trade_by_day ON trade (day)",
    ]),
    (3, "feed positions: how far a source (the server's journal) has been settled", [
        """CREATE TABLE feed (
            name TEXT PRIMARY KEY,
            position BIGINT NOT NULL
        )""",
    ]),
    (4, "compliance: obligations, surrenders (to @SURRENDERED) and borrowing", [
        # one row per entity and compliance period (ledger.compliance.Obligation's totals);
        # surrender and borrowing are checked against it
        """CREATE TABLE obligation (
            account BIGINT NOT NULL,
            period TEXT NOT NULL,
            verified_emissions BIGINT NOT NULL CHECK (verified_emissions >= 0),
            allocation BIGINT NOT NULL CHECK (allocation >= 0),
            obligation BIGINT NOT NULL CHECK (obligation >= 0),
            ccer_limit BIGINT NOT NULL CHECK (ccer_limit BETWEEN 0 AND obligation),
            borrow_limit BIGINT NOT NULL CHECK (borrow_limit BETWEEN 0 AND obligation),
            borrow_from TEXT,
            CHECK (borrow_limit = 0 OR borrow_from IS NOT NULL),
            PRIMARY KEY (account, period)
        )""",
        # the idempotency key is (account, period, ref); the legs are SURRENDER operations
        # with refs surrender#<id>:<asset>
        """CREATE TABLE surrender (
            surrender_id {pk},
            account BIGINT NOT NULL,
            period TEXT NOT NULL,
            ref TEXT NOT NULL,
            day BIGINT NOT NULL,
            asset BIGINT NOT NULL,
            allowances BIGINT NOT NULL CHECK (allowances >= 0),
            ccer BIGINT NOT NULL CHECK (ccer >= 0),
            CHECK (allowances + ccer > 0),
            UNIQUE (account, period, ref)
        )""",
        # next period's allowances issued early (a BORROW operation, ref borrow#<id>); the
        # lending period's allocation is to be reduced by the tonnes
        """CREATE TABLE borrowing (
            borrowing_id {pk},
            account BIGINT NOT NULL,
            period TEXT NOT NULL,
            borrow_from TEXT NOT NULL,
            ref TEXT NOT NULL,
            day BIGINT NOT NULL,
            asset BIGINT NOT NULL,
            tonnes BIGINT NOT NULL CHECK (tonnes > 0),
            UNIQUE (account, period, ref)
        )""",
    ]),
]

LATEST = MIGRATIONS[-1][0]
