"""Ledger backends for the tests: every test taking ``ledger_url`` runs on SQLite and on a
real PostgreSQL server that this conftest starts on loopback (once per session, a fresh
database per test). Where PostgreSQL cannot be started the PostgreSQL cases are skipped with
the reason (``pytest -rs`` prints it), except in CI (``CI=true`` in the environment, as
``.ci/run`` sets): there they fail, saying why."""

from __future__ import annotations

import itertools

import pytest

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    from tests.pgserver import in_ci, postgres_unavailable_reason, start_postgres

    reason = postgres_unavailable_reason()
    if reason and in_ci():
        pytest.fail(f"CI=true and the PostgreSQL backend cannot be tested: {reason}",
                    pytrace=False)
    if reason:
        pytest.skip(f"PostgreSQL backend not tested: {reason}")
    conninfo, stop = start_postgres(str(tmp_path_factory.mktemp("pg")))
    try:
        yield conninfo
    finally:
        stop()


def fresh_database(conninfo: str) -> str:
    """A new empty database on the test server; its conninfo."""
    import psycopg

    name = f"ledger_{next(_counter)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return _with_dbname(conninfo, name)


def _with_dbname(conninfo: str, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(conninfo)
    params["dbname"] = name
    return make_conninfo(**params)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return fresh_database(request.getfixturevalue("postgres"))
