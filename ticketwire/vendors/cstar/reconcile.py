"""What a cStar update whose send may already have been applied still has to do (pure).

cStar recognises a repeated request by its `Idempotency-Key` for 24 hours, but the key is the
request's: a retry that coalesces differently (a later change of the ticket joined it) or rides
in another bulk call (other tickets joined) is another request with another key. So an uncertain
`PATCH /tickets/{id}` or one ticket's part of a bulk update is read back first, like the other
helpdesks': fields already holding their value are dropped, tag additions and removals already
there too. Notes are not read back: a note call is never merged nor batched, so its key is the
same on every send, and cStar keeps it for 24 hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ticketwire.calls import ApiCall
from ticketwire.engine.planning import same
from ticketwire.vendors.bulkids import is_ticket_patch
from ticketwire.vendors.cstar.batching import bulk_ids
from ticketwire.vendors.cstar.client import MERGE_METADATA, MERGE_TAGS


def readable(call: ApiCall) -> bool:
    """True for an update whose effect the ticket shows (single or one ticket's bulk part)."""
    return is_ticket_patch(call) or _bulk_one(call)


def rest(call: ApiCall, ticket: Mapping[str, Any]) -> ApiCall | None:
    """The part of one ticket's update the ticket does not hold yet; None when it holds all."""
    bulk = _bulk_one(call)
    fields = call.body.get("data") if bulk else call.body
    if not isinstance(fields, Mapping):
        return call
    left = {k: v for k, v in fields.items() if not _held(k, v, ticket)}
    if not left:
        return None
    if left == fields:
        return call
    return replace(call, body={**call.body, "data": left} if bulk else left)


def _bulk_one(call: ApiCall) -> bool:
    found = bulk_ids(call)
    return found is not None and found[1] == [call.ticket_id]


def _held(name: str, value: Any, ticket: Mapping[str, Any]) -> bool:
    if name == MERGE_TAGS and isinstance(value, Mapping):
        tags = {str(t) for t in ticket.get("tags") or []}
        added = all(str(t) in tags for t in value.get("add") or [])
        return added and not any(str(t) in tags for t in value.get("remove") or [])
    if name == MERGE_METADATA and isinstance(value, Mapping):
        meta = ticket.get("metadata")
        if not isinstance(meta, Mapping):
            return False
        return all(k in meta and same(meta[k], v) for k, v in value.items())
    return name in ticket and same(ticket[name], value)
