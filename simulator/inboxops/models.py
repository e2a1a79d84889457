"""The simulator's workspace data: statuses, priorities, inboxes, tags, custom fields, tickets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.common.records import Named, Record
from simulator.inboxops.messages import Message

FieldType = Literal["text", "number", "date", "date_time", "select", "multi_select"]


@dataclass(frozen=True)
class Status(Record):
    """A custom status; `status_type` is one of the five built-in values."""

    id: str
    status_type: str
    name: str
    color: str
    position: int
    is_default: bool
    reminder_enabled: bool = False
    remind_transition_status_id: str | None = None


@dataclass(frozen=True)
class Priority(Record):
    """A custom priority; `priority` is the level (low, normal, high, urgent)."""

    id: str
    priority: str
    name: str
    color: str
    position: int
    is_default: bool = True


@dataclass(frozen=True)
class Tag(Named):
    """A workspace tag."""

    color: str


@dataclass(frozen=True)
class Inbox(Named):
    """A mailbox tickets arrive in."""

    email: str


@dataclass(frozen=True)
class Option:
    """One choice of a select or multi_select custom field."""

    id: str
    label: str


@dataclass(frozen=True)
class FieldDef:
    """A ticket custom-field definition; a non-empty `inbox_ids` scopes it to those inboxes."""

    id: str
    key: str
    label: str
    type: FieldType
    options: tuple[Option, ...] = ()
    inbox_ids: tuple[str, ...] = ()

    def applies_to(self, inbox_id: str | None) -> bool:
        """True when tickets in `inbox_id` have this field."""
        return not self.inbox_ids or inbox_id in self.inbox_ids

    def option_ids(self) -> frozenset[str]:
        """The ids of the options."""
        return frozenset(o.id for o in self.options)

    def to_json(self) -> dict[str, Any]:
        """The definition as `sim.custom_fields` shows it."""
        return {
            "id": self.id,
            "field_key": self.key,
            "label": self.label,
            "type": self.type,
            "options": [{"id": o.id, "label": o.label} for o in self.options],
            "inbox_ids": list(self.inbox_ids),
        }


@dataclass(frozen=True)
class Agent(Named):
    """A workspace user tickets can be assigned to."""

    email: str


@dataclass(frozen=True)
class Company(Named):
    """A CRM company, found by email domain."""

    domain: str


@dataclass(frozen=True)
class Contact(Record):
    """A CRM contact (a customer who writes in)."""

    id: str
    email: str
    name: str
    company_id: str | None


@dataclass
class TicketRecord:
    """A stored ticket: the API shape in `data`, plus what only `include=` or the app shows."""

    data: dict[str, Any]
    #: Tag ids in the order they were linked (a dict keeps order and gives O(1) membership).
    tags: dict[str, None] = field(default_factory=dict)
    #: Emails and internal notes in arrival order (`GET /tickets/{id}/messages`).
    messages: list[Message] = field(default_factory=list)

    @property
    def notes(self) -> list[dict[str, str]]:
        """The bodies of the ticket's internal notes, oldest first."""
        return [
            {"body_html": m.body_html, "body_text": m.body_text}
            for m in self.messages
            if m.type == "internal_note"
        ]

    @property
    def id(self) -> str:
        """The ticket's uuid."""
        return str(self.data["id"])

    @property
    def number(self) -> int:
        """The ticket's per-workspace number."""
        return int(self.data["ticket_number"])


@dataclass(frozen=True)
class IdempotencyEntry:
    """What a create with an Idempotency-Key stored: body hash, the 201 body, expiry (sim seconds)."""

    body_hash: str
    response: dict[str, Any]
    expires_at: float


@dataclass
class Workspace:
    """One tenant's data. Tickets are indexed by id and by number so lookups are O(1)."""

    id: str
    name: str
    domain: str
    entitled: bool
    statuses: list[Status]
    priorities: list[Priority]
    inboxes: list[Inbox]
    fields: dict[str, FieldDef]
    agents: list[Agent]
    tags: dict[str, Tag] = field(default_factory=dict)
    tag_names: dict[str, str] = field(default_factory=dict)
    contacts: dict[str, Contact] = field(default_factory=dict)
    contact_by_email: dict[str, str] = field(default_factory=dict)
    companies: dict[str, Company] = field(default_factory=dict)
    company_by_domain: dict[str, str] = field(default_factory=dict)
    tickets: dict[str, TicketRecord] = field(default_factory=dict)
    by_number: dict[int, TicketRecord] = field(default_factory=dict)
    next_number: int = 1
    idempotency: dict[str, IdempotencyEntry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status_by_id = {s.id: s for s in self.statuses}
        self.default_status = {s.status_type: s for s in self.statuses if s.is_default}
        self.priority_by_id = {p.id: p for p in self.priorities}
        self.default_priority = {p.priority: p for p in self.priorities if p.is_default}
        self.inbox_by_id = {i.id: i for i in self.inboxes}
        self.agent_by_id = {a.id: a for a in self.agents}
