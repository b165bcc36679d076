"""The durable store under the ledger: one connection, one dialect, explicit transactions.

``open_store(url)`` gives a ``Store`` for ``sqlite:///path``, a plain path or ``:memory:``
(SQLite in WAL mode with ``synchronous=FULL``: a committed transaction survives a crash of
the process or the machine) or ``postgresql://...`` (PostgreSQL through psycopg 3, with the
server's default durable commit). SQL is written once with ``?`` placeholders; the store
rewrites them for psycopg. The ledger is the only writer.

>>> s = open_store(":memory:")
>>> s.dialect
'sqlite'
>>> with s.transaction():
...     _ = s.execute("CREATE TABLE t (x BIGINT)")
...     s.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
>>> s.query("SELECT sum(x) FROM t")
[(3,)]
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path


class StoreError(RuntimeError):
    """The store could not be opened or a statement failed."""


class Store:
    """A connection in autocommit mode; ``transaction()`` groups statements atomically."""

    dialect = "?"
    pk = "BIGINT PRIMARY KEY"
    integrity_errors: tuple = ()

    def __init__(self, conn, url: str):
        self.conn = conn
        self.url = url
        self._depth = 0

    def _sql(self, sql: str) -> str:
        return sql

    def execute(self, sql: str, params=()):
        return self.conn.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows) -> None:
        self.conn.cursor().executemany(self._sql(sql), rows)

    def query(self, sql: str, params=()) -> list[tuple]:
        return [tuple(r) for r in self.conn.execute(self._sql(sql), params).fetchall()]

    def bulk_insert(self, table: str, columns: int, rows) -> None:
        """Append ``rows`` to ``table`` (no conflict handling: the caller filtered them)."""
        self.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * columns)})", rows)

    @contextmanager
    def transaction(self):
        """BEGIN ... COMMIT, or ROLLBACK on any exception (re-raised). Not re-entrant."""
        if self._depth:
            raise StoreError("nested transaction")
        self._depth = 1
        self.conn.execute("BEGIN")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    def close(self) -> None:
        self.conn.close()


class SqliteStore(Store):
    dialect = "sqlite"
    pk = "INTEGER PRIMARY KEY"  # the rowid alias: no second index for the key
    integrity_errors = (sqlite3.IntegrityError,)

    @classmethod
    def connect(cls, path: str) -> "SqliteStore":
        if path != ":memory:":
            parent = Path(path).parent
            if not parent.is_dir():
                raise StoreError(f"{path}: directory {parent} does not exist")
            try:  # a new ledger is the owner's alone (its -wal and -shm files take its mode)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as e:
                raise StoreError(f"{path}: cannot create the ledger: {e.strerror}") from None
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            if path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"{path}: cannot switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA cache_size=-131072")  # 128 MiB: the indexes stay in memory
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot open the ledger: {e}") from None
        return cls(conn, path)


class PostgresStore(Store):
    dialect = "postgresql"
    pk = "BIGINT PRIMARY KEY"

    @classmethod
    def connect(cls, conninfo: str) -> "PostgresStore":
        try:
            import psycopg
        except ImportError:  # pragma: no cover - psycopg is a dependency
            raise StoreError("PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'") from None
        try:
            conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL: {e}".strip()) from None
        store = cls(conn, conninfo)
        store.integrity_errors = (psycopg.errors.IntegrityError,)
        return store

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def executemany(self, sql: str, rows) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(self._sql(sql), rows)

    def bulk_insert(self, table: str, columns: int, rows) -> None:
        # COPY: one round trip for the batch instead of a statement per row
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def is_postgres(url: str) -> bool:
    """A ``postgresql://`` URL or a libpq ``key=value`` conninfo string."""
    return url.startswith(("postgresql://", "postgres://")) or bool(
        re.match(r"^\s*[a-z_]+\s*=", url))


def open_store(url: str) -> Store:
    """A store for ``sqlite:///path``, a path, ``:memory:`` or ``postgresql://...``."""
    url = str(url)
    if is_postgres(url):
        return PostgresStore.connect(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):] or ":memory:"
    return SqliteStore.connect(url)
