"""How Thena calls combine across tickets: `PATCH /tickets/bulk` with `ticketIds`."""

from __future__ import annotations

from dataclasses import replace

from ticketwire.calls import ApiCall
from ticketwire.vendors.bulkids import for_ids, id_list, is_ticket_patch
from ticketwire.vendors.thena.models import BULK_UPDATE_FIELDS
from ticketwire.writeback import BatchSpec

BULK_PATH = "/tickets/bulk"
#: The documented maximum is unknown; overridable by THENA_BULK_MAX.
DEFAULT_MAX_IDS = 100


def bulk_ids(call: ApiCall) -> tuple[str, list[str]] | None:
    """Group key and ids of a bulk update; None for any other call."""
    return id_list(call, "PATCH", BULK_PATH, "ticketIds")


def as_bulk(call: ApiCall) -> ApiCall | None:
    """A PATCH of fields the bulk endpoint also takes (status, priority, agent, type, privacy)."""
    if not is_ticket_patch(call):
        return None
    if not call.body or not set(call.body) <= set(BULK_UPDATE_FIELDS):
        return None
    return replace(call, path=BULK_PATH, body={"ticketIds": [call.ticket_id], **call.body})


def with_ids(call: ApiCall, ids: list[str]) -> ApiCall:
    """The same bulk update for other tickets."""
    return for_ids(call, ids, "ticketIds")


def spec(max_ids: int = DEFAULT_MAX_IDS) -> BatchSpec:
    """Thena's batching rules with a bulk size limit."""
    return BatchSpec(bulk_ids=bulk_ids, as_bulk=as_bulk, with_ids=with_ids, max_ids=max_ids)
