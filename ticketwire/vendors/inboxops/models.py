"""InboxOps wire shapes: the webhook envelope and the ticket object (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["open", "in_progress", "waiting", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]
STATUSES: tuple[str, ...] = ("open", "in_progress", "waiting", "resolved", "closed")
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
BULK_OPERATIONS: tuple[str, ...] = (
    "update_status",
    "assign",
    "add_tags",
    "remove_tags",
    "move_inbox",
)
#: Fields `PATCH /api/v1/tickets/{id}` accepts.
PATCH_FIELDS: tuple[str, ...] = (
    "subject",
    "status",
    "status_id",
    "priority",
    "priority_id",
    "assignee_id",
    "inbox_id",
    "contact_id",
    "remind_at",
    "remind_transition_status_id",
    "custom_fields",
)


class Ticket(BaseModel):
    """The ticket object of create, get, patch and list responses; unknown keys are kept."""

    model_config = ConfigDict(extra="allow")

    id: str
    ticket_number: int | None = None
    subject: str | None = None
    inbox_id: str | None = None
    status: str | None = None
    status_id: str | None = None
    status_name: str | None = None
    status_color: str | None = None
    priority: str | None = None
    priority_id: str | None = None
    priority_name: str | None = None
    priority_color: str | None = None
    assignee_id: str | None = None
    contact_id: str | None = None
    remind_at: datetime | None = None
    remind_transition_status_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    custom_fields: dict[str, Any] = {}


class Envelope(BaseModel):
    """A webhook delivery: `{event, event_id, tenant_id, created_at, data: Ticket}`."""

    model_config = ConfigDict(extra="allow")

    event: str
    event_id: str
    tenant_id: str
    created_at: datetime
    data: Ticket
