"""What a Thena update whose send may already have been applied still has to do (pure).

Before an uncertain `PATCH /tickets/{id}` or one ticket's part of `PATCH /tickets/bulk` is sent
again, the ticket is read and `rest` drops the fields it already holds: ids compared as ids,
status and priority names ignoring case (an id sent with its name decides alone, as Thena uses
the id), an agent by id or email. None: nothing is left. Creates are not read back: each new
ticket carries its `deDuplicationKey`, which Thena keeps per organisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ticketwire.calls import ApiCall
from ticketwire.engine.durations import parse_datetime
from ticketwire.engine.planning import same
from ticketwire.vendors.bulkids import is_ticket_patch
from ticketwire.vendors.thena.batching import bulk_ids
from ticketwire.vendors.thena.webhook import assignee_id, priority_name, status_name

#: Name fields, the id field that wins over each, and how to read the ticket's name.
_NAMES = {
    "statusName": ("statusId", status_name),
    "priorityName": ("priorityId", priority_name),
    "assignedAgentEmail": ("assignedAgentId", lambda t: _agent_email(t)),
}
_TIMES = frozenset({"dueDate"})


def readable(call: ApiCall) -> bool:
    """True for an update whose effect the ticket shows (single or one ticket's bulk part)."""
    return is_ticket_patch(call) or _bulk_one(call)


def rest(call: ApiCall, ticket: Mapping[str, Any]) -> ApiCall | None:
    """The part of one ticket's update the ticket does not hold yet; None when it holds all."""
    ids_field = "ticketIds" if _bulk_one(call) else None
    fields = {k: v for k, v in call.body.items() if k != ids_field}
    left = {k: v for k, v in fields.items() if not _held(k, v, fields, ticket)}
    if not left:
        return None
    if left == fields:
        return call
    body = {ids_field: call.body[ids_field], **left} if ids_field else left
    return replace(call, body=body)


def _bulk_one(call: ApiCall) -> bool:
    found = bulk_ids(call)
    return found is not None and found[1] == [call.ticket_id]


def _held(name: str, value: Any, fields: Mapping[str, Any], ticket: Mapping[str, Any]) -> bool:
    if name in _NAMES:
        id_field, read = _NAMES[name]
        if id_field in fields:
            return _held(id_field, fields[id_field], fields, ticket)
        current = read(ticket)
        return (
            isinstance(current, str)
            and isinstance(value, str)
            and current.strip().casefold() == value.strip().casefold()
        )
    if name == "assignedAgentId":
        if value is None:
            return ticket.get("assignedAgentId", ticket.get("assignedAgent", "")) is None
        return bool(assignee_id(ticket) == value)
    if name in _TIMES and ticket.get(name) is not None and value is not None:
        moment = parse_datetime(ticket[name])
        return moment is not None and moment == parse_datetime(value)
    return name in ticket and same(ticket[name], value)


def _agent_email(ticket: Mapping[str, Any]) -> str | None:
    email = ticket.get("assignedAgentEmail")
    agent = ticket.get("assignedAgent")
    if email is None and isinstance(agent, Mapping):
        email = agent.get("email")
    return email if isinstance(email, str) else None
