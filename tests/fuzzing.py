"""Budgets and tallies of the property-based tests: how many inputs each may try, and tried."""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

#: The total number of generated inputs the fuzz tests share in a long run; unset or 0 runs
#: each with its small default, as the everyday suite does.
ENV = "TICKETWIRE_FUZZ_EXAMPLES"
TOTAL = int(os.environ.get(ENV) or 0)

#: Inputs actually tried, per test: printed at the end of the run.
TRIED: Counter[str] = Counter()

# Reproducible runs: the examples derive from each test's name, not from a fresh random seed,
# and no example database is written; slow examples (huge bodies, deep documents) are expected.
settings.register_profile(
    "ticketwire",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ticketwire")


def budget(default: int, share: float) -> int:
    """Inputs for one test: `default`, or its `share` of the long run's total when that is set."""
    return max(default, round(TOTAL * share)) if TOTAL else default


def examples(default: int, share: float) -> settings:
    """Hypothesis settings for one property: the profile, with that test's budget."""
    return settings(max_examples=budget(default, share))


def tried(test: str, count: int = 1) -> None:
    """Count `count` inputs tried by `test`."""
    TRIED[test] += count
