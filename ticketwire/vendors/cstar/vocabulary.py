"""cStar statuses and priorities in the neutral vocabulary, both ways."""

from __future__ import annotations

from ticketwire.vocabulary import NEUTRAL_PRIORITIES, Vocabulary

VOCABULARY = Vocabulary(
    status_to={
        "new": "new",
        "open": "open",
        "in_progress": "open",
        "waiting": "pending",
        "resolved": "resolved",
        "closed": "closed",
    },
    status_from={
        "new": "new",
        "open": "open",
        "pending": "waiting",
        "resolved": "resolved",
        "closed": "closed",
    },
    priority_to={p: p for p in NEUTRAL_PRIORITIES},
    # cStar documents `urgent`; one article says `critical` for the same level.
    priority_from={
        "low": "low",
        "normal": "normal",
        "high": "high",
        "urgent": "urgent",
        "critical": "urgent",
    },
)
