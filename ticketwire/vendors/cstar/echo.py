"""Which cStar ticket fields a write-back call sets, as the webhook's ticket shows them (pure).

Webhooks name fields in snake_case (`assigned_to`) where the API takes camelCase (`assignedTo`).
`PATCH /tickets/{id}` and `POST /bulk {action: update, data}` set their fields; `tags` and
`metadata` are whole values, or pending merges (`__merge_tags__`, `__merge_metadata__`) that the
client completes just before sending. A status change also moves `closed_at` / `resolved_at`.
A note (`POST /tickets/{id}/messages`) is recorded as `NOTE`; it moves the message count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ticketwire.calls import ApiCall
from ticketwire.engine.echo import ANY, NOTE, members
from ticketwire.engine.notes import is_note_call
from ticketwire.vendors.bundle import Echo
from ticketwire.vendors.cstar.client import MERGE_METADATA, MERGE_TAGS
from ticketwire.vocabulary import neutral_priority, neutral_status

VENDOR = "cstar"
#: Fields the helpdesk changes on every write; a change in them alone says nothing.
BOOKKEEPING = frozenset({"updated_at", "updatedAt"})
#: API field → the webhook ticket's name for it.
_WEBHOOK_NAMES: Mapping[str, str] = {"assignedTo": "assigned_to"}
_FOLLOWERS: Mapping[str, tuple[str, ...]] = {
    "status": ("closed_at", "resolved_at", "closedAt", "resolvedAt"),
}


def _fields(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name == MERGE_TAGS and isinstance(value, Mapping):
            tags = members(has=value.get("add") or (), lacks=value.get("remove") or ())
            out["tags"] = out["common.tags"] = tags
            continue
        if name == MERGE_METADATA and isinstance(value, Mapping):
            for key, item in value.items():
                out[f"metadata.{key}"] = item
            continue
        field = _WEBHOOK_NAMES.get(name, name)
        out[field] = value
        for follower in _FOLLOWERS.get(field, ()):
            out.setdefault(follower, ANY)
        if field == "status":
            out["common.status"] = neutral_status(VENDOR, value) or ANY
        elif field == "priority":
            out["common.priority"] = neutral_priority(VENDOR, value) or ANY
        elif field == "assigned_to":
            out["common.assignee"] = value
        elif field == "tags":
            out["common.tags"] = value
        elif field == "title":
            out["common.subject"] = value
    return out


def written_fields(call: ApiCall) -> dict[str, Any]:
    """Ticket fields (webhook names) and values that `call` sets; `{}` for calls that set none."""
    if is_note_call(call):
        return {NOTE: call.body.get("content"), "message_count": ANY, "messageCount": ANY}
    if call.method == "PATCH" and call.path.startswith("/tickets/"):
        return _fields(call.body)
    if call.method == "POST" and call.path == "/bulk" and call.body.get("action") == "update":
        data = call.body.get("data")
        return _fields(data) if isinstance(data, Mapping) else {}
    return {}


#: The loop guard's view of the vendor's writes, the bundle's `echo`.
ECHO = Echo(written_fields, BOOKKEEPING)
