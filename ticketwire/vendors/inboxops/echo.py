"""Which InboxOps ticket fields a write-back call sets, as the webhook's ticket shows them (pure).

`PATCH /tickets/{id}` sets its body's fields (`custom_fields` key by key); a status or priority
also changes its id, name and colour. `POST /tickets/bulk` operations: `update_status` and
`assign` and `move_inbox` set their field; `add_tags` / `remove_tags` change the ticket's tags
(InboxOps payloads carry no tags, so those only matter where a ticket was read with tags). A note
(`POST /tickets/{id}/messages`) is recorded as `NOTE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ticketwire.calls import ApiCall
from ticketwire.engine.echo import (
    NOTE,
    Shows,
    echo_fields,
    members,
    with_followers,
)
from ticketwire.engine.notes import is_note_call
from ticketwire.vendors.bundle import Echo

VENDOR = "inboxops"
#: Fields the helpdesk changes on every write; a change in them alone says nothing.
BOOKKEEPING = frozenset({"updated_at"})
_COMMON, _FOLLOWERS = echo_fields(
    VENDOR,
    status=Shows(("status", "status_id"), also=("status_name", "status_color")),
    priority=Shows(("priority", "priority_id"), also=("priority_name", "priority_color")),
    assignee=Shows(("assignee_id",)),
    subject=Shows(("subject",)),
)


def _patch_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in body.items():
        if name == "custom_fields" and isinstance(value, Mapping):
            flat.update((f"custom_fields.{key}", item) for key, item in value.items())
        else:
            flat[name] = value
    return with_followers(flat, _COMMON, _FOLLOWERS)


def written_fields(call: ApiCall) -> dict[str, Any]:
    """Ticket fields (webhook names) and values that `call` sets; `{}` for calls that set none."""
    body = call.body
    if is_note_call(call):
        return {NOTE: body.get("body_text")}
    if call.method == "PATCH" and call.path.startswith("/tickets/"):
        return _patch_fields(body)
    if call.method != "POST" or call.path != "/tickets/bulk":
        return {}
    op = body.get("operation")
    if op in ("add_tags", "remove_tags"):
        ids = [str(t) for t in body.get("tag_ids") or ()]
        tags = members(has=ids) if op == "add_tags" else members(lacks=ids)
        return {"tags": tags, "common.tags": tags}
    if op == "update_status":
        return _patch_fields({k: body[k] for k in ("status", "status_id") if k in body})
    if op == "assign":
        return _patch_fields({"assignee_id": body.get("assignee_id")})
    if op == "move_inbox":
        return _patch_fields({"inbox_id": body.get("inbox_id")})
    return {}


#: The loop guard's view of the vendor's writes, the bundle's `echo`.
ECHO = Echo(written_fields, BOOKKEEPING)
