"""The vendor-neutral vocabulary, and how each helpdesk's words map onto it: one place for all.

Rules that should work on every helpdesk read `common.status`, `common.priority`,
`common.assignee`, `common.tags` and `common.subject`, and act with `set_status`, `set_priority`,
`assign`, `unassign`, `add_tags` and `remove_tags` using the neutral values below, and `add_note`
(`ticketwire.engine.notes`; a helpdesk without it says why in its `VendorSpec.lacks`). Each
vendor translates through these tables, both ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NEUTRAL_STATUSES: tuple[str, ...] = ("new", "open", "in_progress", "waiting", "resolved", "closed")
NEUTRAL_PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
#: Keys of `Event.common`, the neutral view every vendor's parser fills in.
COMMON_FIELDS: tuple[str, ...] = ("status", "priority", "assignee", "tags", "subject")

#: Neutral status → each vendor's own status value (Thena: the status *name*, matched per team).
STATUS_TO_VENDOR: Mapping[str, Mapping[str, str]] = {
    "inboxops": {
        "new": "open",
        "open": "open",
        "in_progress": "in_progress",
        "waiting": "waiting",
        "resolved": "resolved",
        "closed": "closed",
    },
    "cstar": {
        "new": "new",
        "open": "open",
        "in_progress": "open",
        "waiting": "pending",
        "resolved": "resolved",
        "closed": "closed",
    },
    "thena": {
        "new": "Open",
        "open": "Open",
        "in_progress": "In progress",
        "waiting": "On hold",
        "resolved": "Resolved",
        "closed": "Closed",
    },
}

#: Each vendor's status → neutral status (lower-cased vendor values; unknown values map to None).
STATUS_FROM_VENDOR: Mapping[str, Mapping[str, str]] = {
    "inboxops": {s: s for s in ("open", "in_progress", "waiting", "resolved", "closed")},
    "cstar": {
        "new": "new",
        "open": "open",
        "pending": "waiting",
        "resolved": "resolved",
        "closed": "closed",
    },
    "thena": {
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
}

#: Neutral priority → each vendor's own priority value (Thena: the priority *name*).
PRIORITY_TO_VENDOR: Mapping[str, Mapping[str, str]] = {
    "inboxops": {p: p for p in NEUTRAL_PRIORITIES},
    "cstar": {p: p for p in NEUTRAL_PRIORITIES},
    "thena": {"low": "Low", "normal": "Medium", "high": "High", "urgent": "Urgent"},
}

PRIORITY_FROM_VENDOR: Mapping[str, Mapping[str, str]] = {
    "inboxops": {p: p for p in NEUTRAL_PRIORITIES},
    # cStar documents `urgent`; one article says `critical` for the same level.
    "cstar": {
        "low": "low",
        "normal": "normal",
        "high": "high",
        "urgent": "urgent",
        "critical": "urgent",
    },
    "thena": {
        "low": "low",
        "medium": "normal",
        "normal": "normal",
        "high": "high",
        "urgent": "urgent",
    },
}


def neutral_status(vendor: str, value: Any) -> str | None:
    """Map a vendor's status value to the neutral vocabulary (None when unknown or absent)."""
    if not isinstance(value, str):
        return None
    return STATUS_FROM_VENDOR[vendor].get(value.strip().lower())


def neutral_priority(vendor: str, value: Any) -> str | None:
    """Map a vendor's priority value to the neutral vocabulary (None when unknown or absent)."""
    if not isinstance(value, str):
        return None
    return PRIORITY_FROM_VENDOR[vendor].get(value.strip().lower())


def vendor_status(vendor: str, neutral: str) -> str:
    """The vendor's own value for a neutral status."""
    return STATUS_TO_VENDOR[vendor][neutral]


def vendor_priority(vendor: str, neutral: str) -> str:
    """The vendor's own value for a neutral priority."""
    return PRIORITY_TO_VENDOR[vendor][neutral]
