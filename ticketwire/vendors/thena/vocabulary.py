"""Thena status and priority *names* (matched per team) in the neutral vocabulary, both ways."""

from __future__ import annotations

from ticketwire.vocabulary import Vocabulary

VOCABULARY = Vocabulary(
    status_to={
        "new": "Open",
        "open": "Open",
        "in_progress": "In progress",
        "waiting": "On hold",
        "resolved": "Resolved",
        "closed": "Closed",
    },
    status_from={
        "open": "open",
        "new": "new",
        "in progress": "in_progress",
        "in_progress": "in_progress",
        "on hold": "waiting",
        "waiting": "waiting",
        "pending": "waiting",
        "resolved": "resolved",
        "closed": "closed",
    },
    priority_to={"low": "Low", "normal": "Medium", "high": "High", "urgent": "Urgent"},
    priority_from={
        "low": "low",
        "medium": "normal",
        "normal": "normal",
        "high": "high",
        "urgent": "urgent",
    },
)
