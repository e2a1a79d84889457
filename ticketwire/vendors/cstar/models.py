"""cStar wire shapes: the webhook envelope and its ticket (pydantic v2), and the API's value sets.

Webhook bodies are snake_case; some pages show camelCase for the same keys, so both spellings
are accepted and the parsed ticket always uses the snake_case name. Unknown keys are kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ticketwire.vendors.ids import Id

STATUSES: tuple[str, ...] = ("new", "open", "pending", "resolved", "closed")
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
#: Priorities a payload may carry: one cStar article says `critical` where the API says `urgent`.
PRIORITIES_SEEN: tuple[str, ...] = (*PRIORITIES, "critical")
#: Fields `PATCH /tickets/{id}` (and bulk `update` data) accept, as ticketwire sends them.
PATCH_FIELDS: tuple[str, ...] = ("status", "priority", "assignedTo", "tags", "metadata", "title")
BULK_ACTIONS: tuple[str, ...] = ("update", "delete")
BULK_RESOURCES: tuple[str, ...] = ("tickets", "customers", "articles")
MAX_BULK_IDS = 100
MAX_PAGE_SIZE = 100
#: Ticket events cStar sends. The first four are canonical ticketwire event types as they are.
TICKET_EVENTS: tuple[str, ...] = (
    "ticket.created",
    "ticket.updated",
    "ticket.closed",
    "ticket.assigned",
    "ticket.message_added",
    "ticket.deleted",
)
#: cStar's own ticket events (beyond the canonical ones) that rules pinned to cStar may use.
OWN_EVENTS: tuple[str, ...] = ("ticket.message_added", "ticket.deleted")


def _alias(*names: str) -> Any:
    return Field(None, validation_alias=AliasChoices(*names))


class Ticket(BaseModel):
    """The ticket inside a webhook's `data`; only `id` is required, unknown keys are kept."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    #: A string or an exact integer (kept as its digits); a float is refused, not stringified.
    id: Id
    prefixed_id: str | None = _alias("prefixed_id", "prefixedId")
    title: str | None = None
    status: str | None = None
    priority: str | None = None
    channel: str | None = None
    customer_id: str | None = _alias("customer_id", "customerId")
    #: An agent id, or (in some payloads) an object with an `id`; null when unassigned.
    assigned_to: Any = _alias("assigned_to", "assignedTo")
    #: Tag names; None when the payload carries no `tags` key.
    tags: Any = None
    metadata: Any = None
    created_at: str | None = _alias("created_at", "createdAt")
    updated_at: str | None = _alias("updated_at", "updatedAt")
    dashboard_url: str | None = _alias("dashboard_url", "dashboardUrl")


class EventData(BaseModel):
    """`data` of a delivery: the ticket and customer (ticket events), and what changed."""

    model_config = ConfigDict(extra="allow")

    ticket: Ticket | None = None
    customer: Any = None
    changes: Any = None


class Envelope(BaseModel):
    """A webhook delivery: `{id, type, created_at, team_id, data}`; flat-payload copies are kept."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    id: Id
    type: str
    created_at: datetime = Field(validation_alias=AliasChoices("created_at", "createdAt"))
    team_id: Id = Field(validation_alias=AliasChoices("team_id", "teamId"))
    data: EventData = Field(default_factory=EventData)
