"""The throwaway PostgreSQL server of the tests: ``bench.pgserver`` (bench/pgserver.py), where
the code lives so that the ledger benchmark, an installed package, can use it too."""

from bench.pgserver import *  # noqa: F401,F403
from bench.pgserver import postgres_unavailable_reason, start_postgres  # noqa: F401


def in_ci() -> bool:
    """``CI`` is true in the environment (``.ci/run``, and most CI services, export
    ``CI=true``): there a PostgreSQL test that cannot run fails instead of skipping."""
    import os

    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
