"""How InboxOps calls combine across tickets: `POST /tickets/bulk` with `ticket_ids`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ticketwire.calls import ApiCall
from ticketwire.engine.notes import is_note_call
from ticketwire.vendors.bulkids import for_ids, id_list, is_ticket_patch
from ticketwire.vendors.inboxops.actions import REMINDER_FIELDS
from ticketwire.writeback import BatchSpec, deep_merge

BULK_PATH = "/tickets/bulk"
#: The documented maximum is unknown; the simulator's default, overridable by INBOXOPS_BULK_MAX.
DEFAULT_MAX_IDS = 100
#: Two fields that set one thing; the id "takes precedence" when a body has both.
_PAIRS = (("status", "status_id"), ("priority", "priority_id"))


def bulk_ids(call: ApiCall) -> tuple[str, list[str]] | None:
    """Group key and ids of a bulk call; None for any other call."""
    return id_list(call, "POST", BULK_PATH, "ticket_ids")


def as_bulk(call: ApiCall) -> ApiCall | None:
    """A PATCH that sets only the status, or only an assignee, as its bulk operation."""
    if not is_ticket_patch(call):
        return None
    body = call.body
    if set(body) == {"status"}:
        op = {"operation": "update_status", "status": body["status"]}
    elif set(body) == {"status_id"}:
        op = {"operation": "update_status", "status_id": body["status_id"]}
    elif set(body) == {"assignee_id"} and body["assignee_id"] is not None:
        op = {"operation": "assign", "assignee_id": body["assignee_id"]}
    else:
        return None
    return replace(call, method="POST", path=BULK_PATH, body={**op, "ticket_ids": [call.ticket_id]})


def with_ids(call: ApiCall, ids: list[str]) -> ApiCall:
    """The same bulk operation for other tickets."""
    return for_ids(call, ids, "ticket_ids")


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge two PATCH bodies of one ticket so the result ends as sending both in order would.

    A newer status (or priority) replaces both spellings of the older one, since an older
    `status_id` would otherwise win over a newer `status`. A reminder stays with the waiting
    status it was sent with: a newer status other than waiting, which ends the reminder, drops it.
    """
    kept = dict(old)
    for pair in _PAIRS:
        if any(name in new for name in pair):
            for name in pair:
                kept.pop(name, None)
    leaves_waiting = "status_id" not in new and new.get("status", "waiting") != "waiting"
    if leaves_waiting and not any(name in new for name in REMINDER_FIELDS):
        for name in REMINDER_FIELDS:
            kept.pop(name, None)
    return deep_merge(kept, new)


def spec(max_ids: int = DEFAULT_MAX_IDS) -> BatchSpec:
    """InboxOps' batching rules with a bulk size limit."""
    return BatchSpec(
        bulk_ids=bulk_ids,
        as_bulk=as_bulk,
        with_ids=with_ids,
        max_ids=max_ids,
        merge_patch=merge_patch,
        additive=is_note_call,
    )
