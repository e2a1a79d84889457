"""What scheduled rules see of cStar's list API: its `select:` keys and a listed ticket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ticketwire.engine.select import SelectKey, VendorSelect, select_keys
from ticketwire.vendors.cstar.models import PRIORITIES, STATUSES, Ticket
from ticketwire.vendors.cstar.webhook import assignee_id, tag_names
from ticketwire.vocabulary import neutral_priority, neutral_status

VENDOR = "cstar"

SELECT = VendorSelect(
    VENDOR,
    select_keys(
        SelectKey("status", "enum", values=STATUSES),
        SelectKey("priority", "enum", values=PRIORITIES),
        SelectKey("assignedTo", "text"),
        SelectKey("customerId", "text"),
        SelectKey("search", "text"),
    ),
)


def view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A listed ticket as rules read it, and its common view."""
    try:
        model = Ticket.model_validate(dict(item))
    except ValidationError as exc:
        raise ValueError(f"a listed cStar ticket is unreadable: {exc.errors()[0]['msg']}") from None
    # The list answers camelCase; webhooks, and so rules, use the snake_case names.
    ticket = model.model_dump(mode="json", exclude_unset=True)
    return ticket, {
        "status": neutral_status(VENDOR, model.status),
        "priority": neutral_priority(VENDOR, model.priority),
        "assignee": assignee_id(model.assigned_to),
        "tags": tag_names(model.tags),
        "subject": model.title,
    }
