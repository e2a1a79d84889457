"""What scheduled rules see of InboxOps' list API: its `select:` keys and a listed ticket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ticketwire.engine.select import SelectKey, VendorSelect, select_keys
from ticketwire.vendors.inboxops.models import PRIORITIES, STATUSES
from ticketwire.vocabulary import neutral_priority, neutral_status

VENDOR = "inboxops"

# Oldest first: a ticket created while the run pages cannot shift the pages still to come.
# Only "Ticket with custom_fields (GET by id, POST create 201, PATCH 200)": the list
# answer's tickets carry no custom_fields.
SELECT = VendorSelect(
    VENDOR,
    select_keys(
        SelectKey("status", "enum", values=STATUSES, many=True),
        SelectKey("priority", "enum", values=PRIORITIES),
        SelectKey("inbox_id", "text"),
        SelectKey("assignee_id", "text"),
        SelectKey("tag_ids", "text", many=True),
        SelectKey("query", "text"),
        SelectKey("q", "text"),
        SelectKey("created_after", "instant"),
        SelectKey("created_before", "instant"),
        SelectKey("updated_after", "instant"),
        SelectKey("updated_before", "instant"),
    ),
    custom_fields=True,
    listing={"sort": "created_at", "order": "asc"},
    unlisted=frozenset({"custom_fields"}),
    title="InboxOps",
)


def view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A listed ticket as rules read it, and its common view."""
    ticket = dict(item)
    return ticket, {
        "status": neutral_status(VENDOR, ticket.get("status")),
        "priority": neutral_priority(VENDOR, ticket.get("priority")),
        "assignee": ticket.get("assignee_id"),
        # InboxOps tickets carry no tags, in webhooks and lists alike.
        "tags": None,
        "subject": ticket.get("subject"),
    }
