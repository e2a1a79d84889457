"""The canonical event every vendor's envelope is parsed into."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

#: Event types the workers run rules for. Others are acknowledged and counted, not processed.
PROCESSED_EVENTS = frozenset(
    {
        "ticket.created",
        "ticket.updated",
        "ticket.status_changed",
        "ticket.closed",
        "ticket.assigned",
    }
)


class Event(BaseModel):
    """One verified ticket event, vendor-neutral."""

    model_config = ConfigDict(frozen=True)

    vendor: str
    type: str
    id: str
    tenant: str
    created_at: datetime
    ticket_id: str
    ticket: dict[str, Any]
    #: The vendor's own name for the event, when it differs from `type`.
    raw_type: str | None = None
    #: The vendor-neutral view (`ticketwire.vocabulary.COMMON_FIELDS`): status, priority, ...
    common: dict[str, Any] = {}
    #: What changed, `{field: {"from": old, "to": new}}`, when the vendor says so.
    changes: dict[str, Any] | None = None
    #: When the ticket was last changed, as the payload says (its `updated_at`, else the
    #: envelope's time): the order key that tells a stale delivery from a newer one.
    updated_at: datetime | None = None
    #: The vendor's own monotonic sequence number of the change, when its payload has one.
    sequence: int | None = None
    #: The last-seen values of the fields rules read, `{"ticket": {...}, "common": {...}}`, from
    #: the event applied before this one; None when no earlier event of the ticket was seen.
    previous: dict[str, Any] | None = None
    #: The helpdesk account the delivery came to (`/webhooks/<vendor>/<account>`).
    account: str = "default"

    @property
    def ticket_key(self) -> str:
        """Identify the ticket across vendors and tenants: `vendor:tenant:ticket_id`."""
        return f"{self.vendor}:{self.tenant}:{self.ticket_id}"


class Routing(NamedTuple):
    """What the receiver needs to store a delivery: its type, id and ticket."""

    type: str
    id: str
    ticket_id: str
    ticket_key: str
    #: When the helpdesk says the event happened (the envelope's time); None if it cannot say.
    created_at: datetime | None = None

    @classmethod
    def of(cls, event: Event) -> Routing:
        """The routing facts of a fully parsed event."""
        return cls(event.type, event.id, event.ticket_id, event.ticket_key, event.created_at)
