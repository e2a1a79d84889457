"""Acme Desk's four statuses and P1-P4 priorities in the neutral vocabulary, both ways."""

from __future__ import annotations

from ticketwire.vocabulary import Vocabulary

VOCABULARY = Vocabulary(
    status_to={
        "new": "todo",
        "open": "todo",
        "in_progress": "doing",
        "waiting": "blocked",
        "resolved": "done",
        "closed": "done",
    },
    status_from={"todo": "open", "doing": "in_progress", "blocked": "waiting", "done": "closed"},
    priority_to={"low": "P4", "normal": "P3", "high": "P2", "urgent": "P1"},
    priority_from={"p4": "low", "p3": "normal", "p2": "high", "p1": "urgent"},
)
