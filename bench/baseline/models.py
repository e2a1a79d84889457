"""The InboxOps webhook envelope as a user would model it from the docs (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Ticket(BaseModel):
    """The ticket object in `data`; fields not listed are kept."""

    model_config = ConfigDict(extra="allow")

    id: str
    ticket_number: int | None = None
    subject: str | None = None
    inbox_id: str | None = None
    status: str | None = None
    status_id: str | None = None
    priority: str | None = None
    priority_id: str | None = None
    assignee_id: str | None = None
    contact_id: str | None = None
    remind_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    custom_fields: dict[str, Any] = {}


class Envelope(BaseModel):
    """One delivery: `{event, event_id, tenant_id, created_at, data}`."""

    event: str
    event_id: str
    tenant_id: str
    created_at: datetime
    data: Ticket


class CStarTicket(BaseModel):
    """The ticket in a cStar delivery's `data`; fields not listed are kept."""

    model_config = ConfigDict(extra="allow")

    id: str
    title: str | None = None
    status: str | None = None
    priority: str | None = None
    customer_id: str | None = None
    assigned_to: str | None = None
    tags: list[str] = []
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CStarData(BaseModel):
    """`data` of a cStar delivery: the ticket, its customer and what changed."""

    model_config = ConfigDict(extra="allow")

    ticket: CStarTicket | None = None
    customer: dict[str, Any] | None = None
    changes: dict[str, Any] | None = None


class CStarEnvelope(BaseModel):
    """One cStar delivery: `{id, type, created_at, team_id, data}`."""

    id: str
    type: str
    created_at: datetime
    team_id: str
    data: CStarData
