"""Which Thena ticket fields a write-back call sets, as the event's ticket shows them (pure).

`PATCH /tickets/{id}` and `PATCH /tickets/bulk` (for the ids in `ticketIds`) set their fields.
A status or priority set by name also changes its id (and the other way round), an assignee
changes `assignedAgent` and `assignedTo`. `POST /tickets/bulk` creates tickets: it sets no
field of an existing ticket, so it is never the cause of an echo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ticketwire.calls import ApiCall
from ticketwire.engine.echo import Shows, echo_fields, with_followers
from ticketwire.vendors.bundle import Echo

VENDOR = "thena"
#: Fields the helpdesk changes on every write; a change in them alone says nothing.
BOOKKEEPING = frozenset({"updatedAt", "updated_at"})
_COMMON, _FOLLOWERS = echo_fields(
    VENDOR,
    status=Shows(("statusName", "statusId"), also=("status", "statusType")),
    priority=Shows(("priorityName", "priorityId"), also=("priority",)),
    assignee=Shows(("assignedAgentId", "assignedAgentEmail"), also=("assignedAgent", "assignedTo")),
    subject=Shows(("title",)),
)


def _fields(body: Mapping[str, Any]) -> dict[str, Any]:
    return with_followers(body, _COMMON, _FOLLOWERS)


def written_fields(call: ApiCall) -> dict[str, Any]:
    """Ticket fields (event names) and values that `call` sets; `{}` for calls that set none."""
    body = call.body
    if call.method != "PATCH":
        return {}
    if call.path == "/tickets/bulk":
        return _fields({k: v for k, v in body.items() if k != "ticketIds"})
    if call.path.startswith("/tickets/"):
        return _fields(body)
    return {}


#: The loop guard's view of the vendor's writes, the bundle's `echo`.
ECHO = Echo(written_fields, BOOKKEEPING)
