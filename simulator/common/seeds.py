"""What every simulator's seeded tickets draw alike: a customer, a title, a group, a priority."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FIRST_NAMES = ("Maya", "Liam", "Sofia", "Noah", "Aisha", "Kenji", "Lena", "Omar", "Priya", "Tom")


@dataclass(frozen=True)
class SeedFields:
    """A vendor's names for the fields every seeded ticket gets, and its four priority levels."""

    title: str
    group: str
    priority: str
    requester: str
    #: Lowest first; the second is drawn most often.
    levels: Sequence[str]


def plausible(
    rng: random.Random,
    names: SeedFields,
    titles: Sequence[str],
    groups: Sequence[Any],
    domains: Sequence[str],
) -> tuple[str, dict[str, Any]]:
    """A customer's first name and the title, group, priority and requester fields, drawn in
    that order (a title's `{n}` becomes a five-digit number)."""
    name = rng.choice(FIRST_NAMES)
    fields = {
        names.title: rng.choice(titles).format(n=rng.randint(10000, 99999)),
        names.group: rng.choice(groups).id,
        names.priority: rng.choices(names.levels, (2, 5, 2, 1))[0],
        names.requester: f"{name.lower()}{rng.randint(1, 99)}@{rng.choice(domains)}",
    }
    return name, fields
