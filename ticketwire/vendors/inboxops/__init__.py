"""InboxOps: webhook verification and parsing, API client, and the actions rules may take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ticketwire.vendors.bundle import Vendor, packaged
from ticketwire.vendors.inboxops.settings import InboxOpsSettings, read
from ticketwire.vendors.inboxops.vocabulary import VOCABULARY

if TYPE_CHECKING:
    from ticketwire.engine.router import Rule
    from ticketwire.engine.select import VendorSelect

NAME = "inboxops"


def _select() -> VendorSelect:
    from ticketwire.engine.select import SelectKey, VendorSelect, select_keys
    from ticketwire.vendors.inboxops.models import PRIORITIES, STATUSES

    keys = select_keys(
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
    )
    # Oldest first: a ticket created while the run pages cannot shift the pages still to come.
    # Only "Ticket with custom_fields (GET by id, POST create 201, PATCH 200)": the list
    # answer's tickets carry no custom_fields.
    return VendorSelect(
        NAME,
        keys,
        custom_fields=True,
        listing={"sort": "created_at", "order": "asc"},
        unlisted=frozenset({"custom_fields"}),
        title="InboxOps",
    )


def _listed_view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from ticketwire.vocabulary import neutral_priority, neutral_status

    ticket = dict(item)
    return ticket, {
        "status": neutral_status(NAME, ticket.get("status")),
        "priority": neutral_priority(NAME, ticket.get("priority")),
        "assignee": ticket.get("assignee_id"),
        # InboxOps tickets carry no tags, in webhooks and lists alike.
        "tags": None,
        "subject": ticket.get("subject"),
    }


def _rule_notes(rules: Iterable[Rule]) -> list[str]:
    from ticketwire.vendors.inboxops.reminders import reminder_notes

    return reminder_notes(rules)


VENDOR: Vendor[InboxOpsSettings] = Vendor(
    name=NAME,
    title="InboxOps",
    settings=InboxOpsSettings,
    read=read,
    webhook_hint="the webhook signing secret(s) from InboxOps Settings → Webhooks, comma-separated",
    select=_select,
    listed=lambda: _listed_view,
    vocabulary=VOCABULARY,
    rule_notes=_rule_notes,
    **packaged(__name__, parser="parse_stored"),
)
