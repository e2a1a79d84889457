"""How cStar calls combine across tickets: `POST /bulk` (update, tickets, at most 100 ids)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ticketwire.calls import ApiCall
from ticketwire.engine.notes import is_note_call
from ticketwire.vendors.bulkids import for_ids, id_list, is_ticket_patch
from ticketwire.vendors.cstar.client import MERGE_METADATA, MERGE_TAGS
from ticketwire.writeback import BatchSpec, deep_merge

BULK_PATH = "/bulk"
#: Documented: "max 100 items per request".
MAX_IDS = 100


def bulk_ids(call: ApiCall) -> tuple[str, list[str]] | None:
    """Group key and ids of a ticket bulk update; None for any other call."""
    body = call.body
    if body.get("action") != "update" or body.get("resource") != "tickets":
        return None
    return id_list(call, "POST", BULK_PATH, "ids")


def as_bulk(call: ApiCall) -> ApiCall | None:
    """A plain PATCH of ticket fields as a bulk update (not one that merges tags or metadata).

    Tag and metadata changes replace the whole list or object and depend on what each ticket
    holds, so they stay per ticket.
    """
    if not is_ticket_patch(call):
        return None
    if not call.body or MERGE_TAGS in call.body or MERGE_METADATA in call.body:
        return None
    if "tags" in call.body or "metadata" in call.body:
        return None
    body = {"action": "update", "resource": "tickets", "ids": [call.ticket_id], "data": call.body}
    return replace(call, method="POST", path=BULK_PATH, body=body)


def with_ids(call: ApiCall, ids: list[str]) -> ApiCall:
    """The same bulk update for other tickets."""
    return for_ids(call, ids, "ids")


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge two PATCH bodies; pending tag additions and removals accumulate, in order."""
    out = deep_merge(old, new)
    if MERGE_TAGS in old and MERGE_TAGS in new:
        add = list(old[MERGE_TAGS].get("add", []))
        remove = list(old[MERGE_TAGS].get("remove", []))
        for tag in new[MERGE_TAGS].get("add", []):
            remove = [t for t in remove if t != tag]
            add.append(tag)
        for tag in new[MERGE_TAGS].get("remove", []):
            add = [t for t in add if t != tag]
            remove.append(tag)
        out[MERGE_TAGS] = {"add": list(dict.fromkeys(add)), "remove": list(dict.fromkeys(remove))}
    return out


def spec() -> BatchSpec:
    """cStar's batching rules."""
    return BatchSpec(
        bulk_ids=bulk_ids,
        as_bulk=as_bulk,
        with_ids=with_ids,
        max_ids=MAX_IDS,
        merge_patch=merge_patch,
        additive=is_note_call,
    )
