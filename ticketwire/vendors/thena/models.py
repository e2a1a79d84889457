"""Thena wire shapes: the platform event, its actor and the ticket, and the API's field lists."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

#: The per-team statuses a new Thena team starts with (statuses are custom, matched by name).
STATUS_NAMES: tuple[str, ...] = ("Open", "In progress", "On hold", "Resolved", "Closed")
#: The priorities a new Thena team starts with.
PRIORITY_NAMES: tuple[str, ...] = ("Low", "Medium", "High", "Urgent")
#: `dateRange` values `GET /v1/tickets` accepts (calendar-based, UTC).
DATE_RANGES: tuple[str, ...] = ("1d", "2d", "1w", "2w", "3w", "4w", "1m", "3m")

#: Fields `PATCH /v1/tickets/{id}` accepts (all optional; an id beats a name).
UPDATE_FIELDS: tuple[str, ...] = (
    "title",
    "description",
    "statusId",
    "statusName",
    "priorityId",
    "priorityName",
    "assignedAgentId",
    "assignedAgentEmail",
    "accountId",
    "dueDate",
    "submitterEmail",
    "sentimentId",
    "typeId",
    "isPrivate",
    "source",
    "metadata",
    "aiGeneratedTitle",
    "aiGeneratedSummary",
    "attachmentUrls",
    "customFieldValues",
)
#: Fields `PATCH /v1/tickets/bulk` applies to every id of `ticketIds`.
BULK_UPDATE_FIELDS: tuple[str, ...] = (
    "statusId",
    "priorityId",
    "assignedAgentId",
    "typeId",
    "isPrivate",
)
#: Fields of one ticket in `tickets[]` of `POST /v1/tickets/bulk`, as the bulk page lists them.
BULK_CREATE_FIELDS: tuple[str, ...] = (
    "title",
    "requestorEmail",
    "teamId",
    "assignedAgentId",
    "assignedAgentEmail",
    "accountId",
    "description",
    "dueDate",
    "submitterEmail",
    "statusId",
    "statusName",
    "priorityId",
    "priorityName",
    "metadata",
    "typeId",
    "isPrivate",
    "source",
    "aiGeneratedTitle",
    "aiGeneratedSummary",
    "attachmentUrls",
    "customFieldValues",
    "performRouting",
    "formId",
)
#: Fields of one ticket in `POST /v1/tickets` (the create page): the bulk ones and more, among
#: them `deDuplicationKey`, which the bulk page does not list.
CREATE_FIELDS: tuple[str, ...] = (
    *BULK_CREATE_FIELDS,
    "sentimentId",
    "isProactive",
    "proactiveChannels",
    "closedAt",
    "closedById",
    "commentContent",
    "commentContentHtml",
    "commentContentJson",
    "commentAttachmentIds",
    "commentMetadata",
    "commentImpersonatedUserName",
    "commentImpersonatedUserEmail",
    "commentImpersonatedUserAvatar",
    "deDuplicationKey",
)


class Ticket(BaseModel):
    """A ticket as events and API answers show it; unknown keys are kept as they came."""

    model_config = ConfigDict(extra="allow")

    id: str
    ticketId: int | str | None = None
    ticketIdentifier: str | None = None
    title: str | None = None
    description: str | None = None
    statusId: str | None = None
    statusName: str | None = None
    priorityId: str | None = None
    priorityName: str | None = None
    teamId: str | None = None
    teamName: str | None = None
    assignedAgentId: str | None = None
    #: An object `{id, email, name}` in events; the API answers show a string.
    assignedAgent: dict[str, Any] | str | None = None
    requestorEmail: str | None = None
    tags: list[Any] | None = None
    isPrivate: bool | None = None
    typeId: str | None = None


class Actor(BaseModel):
    """Who caused the event."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    type: str | None = None
    email: str | None = None


class PlatformEvent(BaseModel):
    """A platform event `{eventId, eventType, timestamp, orgId, actor, payload, metadata?}`.

    `timestamp` stays raw here (ISO 8601, or unix seconds or milliseconds); the parser reads it.
    """

    model_config = ConfigDict(extra="allow")

    eventId: str
    eventType: str
    timestamp: Any
    orgId: str
    actor: Actor | None = None
    payload: dict[str, Any]
    metadata: dict[str, Any] | None = None


#: Ticket fields conditions of rules pinned to Thena may read (events and API answers).
TICKET_FIELDS: frozenset[str] = frozenset(Ticket.model_fields) | frozenset(
    {
        "source",
        "status",
        "priority",
        "storyPoints",
        "accountId",
        "account",
        "teamIdentifier",
        "subTeamId",
        "subTeamName",
        "subTeamIdentifier",
        "type",
        "assignedAgentEmail",
        "assignedAgentAvatar",
        "assignedTo",
        "customerContactId",
        "customerContactFirstName",
        "customerContactLastName",
        "customerContactEmail",
        "customer",
        "submitterEmail",
        "customFieldValues",
        "customFields",
        "metadata",
        "sentiment",
        "sentimentId",
        "sentimentName",
        "isEscalated",
        "isArchived",
        "isProactive",
        "proactiveChannels",
        "aiGeneratedTitle",
        "aiGeneratedSummary",
        "lastCustomerComment",
        "lastVendorComment",
        "dueDate",
        "formId",
        "createdAt",
        "updatedAt",
        "deletedAt",
        "archivedAt",
    }
)
