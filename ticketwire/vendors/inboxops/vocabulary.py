"""InboxOps statuses and priorities in the neutral vocabulary, both ways."""

from __future__ import annotations

from ticketwire.vocabulary import NEUTRAL_PRIORITIES, Vocabulary

VOCABULARY = Vocabulary(
    status_to={
        "new": "open",
        "open": "open",
        "in_progress": "in_progress",
        "waiting": "waiting",
        "resolved": "resolved",
        "closed": "closed",
    },
    status_from={s: s for s in ("open", "in_progress", "waiting", "resolved", "closed")},
    priority_to={p: p for p in NEUTRAL_PRIORITIES},
    priority_from={p: p for p in NEUTRAL_PRIORITIES},
)
