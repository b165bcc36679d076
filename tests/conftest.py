"""Hypothesis profiles for the whole suite, chosen by ``HYPOTHESIS_PROFILE`` (or pytest's
``--hypothesis-profile``, which wins):

- ``ci`` (the default): every run tries the same examples (``derandomize``: seeded from each
  test), no example database, no deadline: a run is reproducible and a failure in CI fails
  on any machine;
- ``deep``: fresh random examples on every run and ten times each test's budget (its own
  ``max_examples``, or Hypothesis's 100); failures are kept in the example database (``.hypothesis/``,
  git-ignored) and replayed first next time, and printed with a ``@reproduce_failure`` blob.

A test's own ``@settings`` say what it needs (its budget, health checks) and take the rest
from the profile; under ``deep`` the budget and randomness are the profile's even where a
test's own settings name them (``pytest_collection_modifyitems`` below).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

DEEP_FACTOR = 10

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile(
    "deep", derandomize=False, deadline=None, print_blob=True,
    database=DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[1] / ".hypothesis"
                                           / "examples"),
    suppress_health_check=[HealthCheck.too_slow])  # the budget: see the hook below
# before any test module is imported: their @settings take unset values from the profile
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")


def _profile(config) -> str:
    return (config.getoption("hypothesis_profile", None)
            or os.environ.get("HYPOTHESIS_PROFILE") or "ci")


def pytest_collection_modifyitems(config, items):
    """Under ``deep``: fresh examples and DEEP_FACTOR times the budget for every Hypothesis
    test, whatever its own ``@settings`` say."""
    if _profile(config) != "deep":
        return
    deep = settings.get_profile("deep")
    done = set()
    for item in items:
        test = getattr(item, "obj", None)
        if not getattr(test, "is_hypothesis_test", False) or id(test) in done:
            continue
        done.add(id(test))  # parametrized tests share one function: scale it once
        own = getattr(test, "_hypothesis_internal_use_settings", None) or settings.default
        test._hypothesis_internal_use_settings = settings(
            own, derandomize=False, database=deep.database, print_blob=True,
            max_examples=own.max_examples * DEEP_FACTOR)
