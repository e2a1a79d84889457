"""cStar (cstar.help): webhook verification and parsing, API client, and the actions rules may take."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ticketwire.vendors.bundle import Vendor, packaged
from ticketwire.vendors.cstar.settings import CStarSettings, read
from ticketwire.vendors.cstar.vocabulary import VOCABULARY

if TYPE_CHECKING:
    from ticketwire.engine.select import VendorSelect

NAME = "cstar"


def _select() -> VendorSelect:
    from ticketwire.engine.select import SelectKey, VendorSelect, select_keys
    from ticketwire.vendors.cstar.models import PRIORITIES, STATUSES

    keys = select_keys(
        SelectKey("status", "enum", values=STATUSES),
        SelectKey("priority", "enum", values=PRIORITIES),
        SelectKey("assignedTo", "text"),
        SelectKey("customerId", "text"),
        SelectKey("search", "text"),
    )
    return VendorSelect(NAME, keys)


def _listed_view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from pydantic import ValidationError

    from ticketwire.vendors.cstar.models import Ticket
    from ticketwire.vendors.cstar.webhook import assignee_id, tag_names
    from ticketwire.vocabulary import neutral_priority, neutral_status

    try:
        model = Ticket.model_validate(dict(item))
    except ValidationError as exc:
        raise ValueError(f"a listed cStar ticket is unreadable: {exc.errors()[0]['msg']}") from None
    # The list answers camelCase; webhooks, and so rules, use the snake_case names.
    ticket = model.model_dump(mode="json", exclude_unset=True)
    return ticket, {
        "status": neutral_status(NAME, model.status),
        "priority": neutral_priority(NAME, model.priority),
        "assignee": assignee_id(model.assigned_to),
        "tags": tag_names(model.tags),
        "subject": model.title,
    }


VENDOR: Vendor[CStarSettings] = Vendor(
    name=NAME,
    title="cStar",
    settings=CStarSettings,
    read=read,
    webhook_hint="the webhook signing secret(s) from cStar, comma-separated",
    require=CStarSettings.require,
    select=_select,
    listed=lambda: _listed_view,
    vocabulary=VOCABULARY,
    **packaged(__name__),
)
