"""What an InboxOps call whose send may already have been applied still has to do (pure).

Before an uncertain call is sent again, the ticket is read (`reading` says what to read) and
`rest` keeps only what the ticket does not show yet: PATCH fields already holding their value
are dropped, bulk operations the ticket already shows are dropped (tags by tag), and a note
whose marker is already on one of the ticket's internal notes is dropped. None: nothing is left.

A note's marker is an HTML comment in its `body_html`, derived from the call's identity (event,
rules, body), added when the note is sent (`with_marker`); it does not show in the note.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from ticketwire.calls import ApiCall
from ticketwire.engine.durations import parse_datetime
from ticketwire.engine.notes import is_note_call
from ticketwire.engine.planning import same
from ticketwire.vendors.bulkids import is_ticket_patch

#: What to read of the ticket: the ticket, the ticket with its tags, or its internal notes.
Reading = Literal["ticket", "tags", "notes"]

#: Fields InboxOps applies only with a waiting status in the same PATCH.
_REMINDER_FIELDS = ("remind_at", "remind_transition_status_id")
#: Two fields that set one thing; the id "takes precedence" when a body has both.
_PAIRS = (("status", "status_id"), ("priority", "priority_id"))
#: The ticket field each single-valued bulk operation sets.
_BULK_FIELD = {"assign": "assignee_id", "move_inbox": "inbox_id"}


def reading(call: ApiCall) -> Reading | None:
    """What must be read to know what of `call` is left; None when it cannot be checked."""
    if is_ticket_patch(call):
        return "ticket"
    if is_note_call(call):
        return "notes"
    if call.method == "POST" and call.path == "/tickets/bulk":
        op = call.body.get("operation")
        if op in ("add_tags", "remove_tags"):
            return "tags"
        if op in ("update_status", *_BULK_FIELD):
            return "ticket"
    return None


def rest(
    call: ApiCall, ticket: Mapping[str, Any], notes: Sequence[Mapping[str, Any]]
) -> ApiCall | None:
    """The part of one ticket's `call` the ticket does not show yet; None when nothing is left."""
    if is_note_call(call):
        mark = marker(call)
        kept = any(mark in str(n.get("body_html") or "") for n in notes)
        return None if kept else call
    if is_ticket_patch(call):
        body = patch_rest(call.body, ticket)
    elif call.body.get("operation") in ("add_tags", "remove_tags"):
        body = _tags_rest(call.body, ticket)
    else:
        body = _bulk_rest(call.body, ticket)
    if body is None:
        return None
    return call if body == call.body else replace(call, body=body)


def patch_rest(body: Mapping[str, Any], ticket: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fields of a PATCH body the ticket does not hold yet; None when it holds them all."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name == "custom_fields" and isinstance(value, Mapping):
            current = ticket.get("custom_fields") or {}
            left = {k: v for k, v in value.items() if not (k in current and same(current[k], v))}
            if left:
                out[name] = left
        elif not (name in ticket and _same(name, ticket[name], value)):
            out[name] = value
    for name_field, id_field in _PAIRS:
        # The id wins when both were sent: a held id means the name is held too.
        if id_field in body and id_field not in out:
            out.pop(name_field, None)
    if any(name in out for name in _REMINDER_FIELDS):
        # InboxOps applies a reminder only with a waiting status in the same PATCH.
        for name in ("status", "status_id"):
            if name in body:
                out[name] = body[name]
    return out or None


def _bulk_rest(body: Mapping[str, Any], ticket: Mapping[str, Any]) -> dict[str, Any] | None:
    op = body.get("operation")
    fields = (
        [_BULK_FIELD[op]]
        if op in _BULK_FIELD
        else [f for f in ("status_id", "status") if f in body]
    )
    if "status_id" in fields:
        fields = ["status_id"]
    held = all(f in ticket and same(ticket[f], body[f]) for f in fields)
    return None if fields and held else dict(body)


def _tags_rest(body: Mapping[str, Any], ticket: Mapping[str, Any]) -> dict[str, Any] | None:
    present = {str(t.get("id")) for t in ticket.get("tags") or [] if isinstance(t, Mapping)}
    adding = body.get("operation") == "add_tags"
    left = [t for t in body.get("tag_ids") or [] if (str(t) in present) != adding]
    return {**body, "tag_ids": left} if left else None


def _same(name: str, current: Any, wanted: Any) -> bool:
    if name == "remind_at" and current is not None and wanted is not None:
        moment = parse_datetime(current)
        return moment is not None and moment == parse_datetime(wanted)
    return same(current, wanted)


def marker(call: ApiCall) -> str:
    """The marker a note call's note carries: the same for every send of that call."""
    raw = "\x1f".join([call.event_id, *call.rules, call.ticket_id, str(call.body.get("body_text"))])
    return f"<!-- ticketwire:{hashlib.sha256(raw.encode()).hexdigest()[:24]} -->"


def with_marker(call: ApiCall) -> ApiCall:
    """A note call whose `body_html` ends with its marker; any other call as it is."""
    if not is_note_call(call):
        return call
    html = str(call.body.get("body_html") or "")
    mark = marker(call)
    if mark in html:
        return call
    return replace(call, body={**call.body, "body_html": html + mark})
