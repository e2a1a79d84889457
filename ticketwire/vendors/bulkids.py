"""Bulk calls that list their tickets' ids in the body: grouping them and filling in other ids."""

from __future__ import annotations

from dataclasses import replace

from ticketwire.calls import ApiCall
from ticketwire.writeback import id_list_key


def id_list(call: ApiCall, method: str, path: str, ids_field: str) -> tuple[str, list[str]] | None:
    """Group key and ids of a `method path` call listing ids under `ids_field`; else None."""
    if call.method != method or call.path != path:
        return None
    ids = call.body.get(ids_field)
    if not isinstance(ids, list):
        return None
    return id_list_key(call.body, ids_field), [str(i) for i in ids]


def for_ids(call: ApiCall, ids: list[str], ids_field: str) -> ApiCall:
    """The same bulk call for other tickets."""
    return replace(call, body={**call.body, ids_field: list(ids)}, ticket_id=ids[0])


def is_ticket_patch(call: ApiCall) -> bool:
    """True for a `PATCH /tickets/{id}` of the call's own ticket."""
    return call.method == "PATCH" and call.path == f"/tickets/{call.ticket_id}"
