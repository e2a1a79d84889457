"""The cStar store: teams, keys, customers, tickets, messages, bulk and idempotency (pure, no I/O).

Every operation validates first and changes nothing when it raises `ApiError`; a change reports
the webhook events it causes in a `TicketChange`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.common.clock import Clock, IdSource, iso
from simulator.common.idempotency import fingerprint
from simulator.common.keys import KeyRing, KeySpec
from simulator.common.records import Record
from simulator.common.store import IdempotentStore
from simulator.cstar.config import CStarSimulatorConfig
from simulator.cstar.problems import ApiError, invalid, missing, not_found
from ticketwire.vendors.cstar.models import BULK_ACTIONS, BULK_RESOURCES, PRIORITIES, STATUSES

CREATE_FIELDS = frozenset(
    {
        "title",
        "customerId",
        "customerName",
        "customerEmail",
        "priority",
        "status",
        "tags",
        "notes",
        "metadata",
        "initialMessage",
        "assignedTo",
        "channel",
    }
)
UPDATE_FIELDS = frozenset(
    {"title", "status", "priority", "assignedTo", "tags", "notes", "metadata"}
)
#: PATCH field → the key the webhook ticket and `changes` use (webhooks are snake_case).
WEBHOOK_NAMES = {
    "title": "title",
    "status": "status",
    "priority": "priority",
    "assignedTo": "assigned_to",
    "tags": "tags",
    "notes": "notes",
    "metadata": "metadata",
}
#: Fields a bulk update of customers may set (the customer object's own fields).
CUSTOMER_FIELDS = frozenset({"name", "email"})
CHANNELS = ("email", "chat", "web", "api", "phone")
DASHBOARD = "https://www.cstar.help/dashboard/tickets/"


@dataclass
class Customer(Record):
    """A customer (`cus_…`)."""

    id: str
    name: str
    email: str | None
    created_at: str

    def to_webhook(self) -> dict[str, Any]:
        """The webhook shape: the fields, snake_case."""
        return super().to_json()

    def to_json(self) -> dict[str, Any]:
        """The REST shape (camelCase)."""
        return {
            "id": self.id,
            "object": "customer",
            "name": self.name,
            "email": self.email,
            "createdAt": self.created_at,
        }


@dataclass
class IdempotencyEntry:
    """What the first request with a key sent and got."""

    request_hash: str
    status: int
    response: dict[str, Any]
    expires_at: float


@dataclass
class Team:
    """One cStar team and everything in it."""

    id: str
    name: str
    prefix: str
    next_number: int
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_prefixed: dict[str, str] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    idempotency: dict[str, IdempotencyEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class TicketChange:
    """A ticket after an operation and the events it causes (none for a no-op)."""

    ticket: dict[str, Any]
    events: tuple[str, ...] = ()
    #: `{field: {from, to}}` in webhook (snake_case) names, for `ticket.updated`.
    changes: dict[str, Any] = field(default_factory=dict)
    customer: dict[str, Any] | None = None
    message: dict[str, Any] | None = None


#: The keys a store issues, in the order their tokens are drawn.
KEYS = (
    KeySpec("api_key", "sk_test_", "default", "secret"),
    KeySpec("publishable_key", "pk_test_", "default", "publishable"),
    KeySpec("expired_key", "sk_test_", "default", "secret", retired=True),
    KeySpec("other_team_key", "sk_test_", "other", "secret"),
)


class Store(IdempotentStore):
    """Teams, keys and every operation of the simulated API."""

    def __init__(self, seed: int, clock: Clock, config: CStarSimulatorConfig) -> None:
        super().__init__(seed, clock, config.idempotency_ttl)
        self._max_bulk_ids = config.max_bulk_ids
        teams = IdSource(seed, "teams")
        keys = IdSource(seed, "keys")
        self.default = Team(
            teams.uuid(), "Acme Support", config.ticket_prefix, config.first_ticket_number
        )
        self.other = Team(teams.uuid(), "Globex Helpdesk", "GLX", 1)
        self.teams = {t.id: t for t in (self.default, self.other)}
        self.keys = KeyRing()
        tenants = {"default": self.default.id, "other": self.other.id}
        self.keys.issue(KEYS, lambda: keys.token(16), tenants)

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{self.ids.token(12)}"

    # ------------------------------------------------------------------ lookups

    def ticket(self, team: Team, ref: str) -> dict[str, Any]:
        """A ticket by `tkt_…` id or prefixed id (`CST-1024`); 404 when not in this team."""
        ticket_id = ref if ref in team.tickets else team.by_prefixed.get(ref.upper())
        if ticket_id is None:
            raise not_found("ticket", ref)
        return team.tickets[ticket_id]

    def render(
        self, team: Team, ticket: Mapping[str, Any], *, messages: bool = False
    ) -> dict[str, Any]:
        """The REST shape of a ticket (a copy), optionally with its messages inlined."""
        # Shallow copy plus the two mutable values: cheaper than a deep copy on every answer.
        out = dict(ticket)
        out["tags"] = list(ticket["tags"])
        out["metadata"] = copy.deepcopy(ticket["metadata"])
        if messages:
            out["messages"] = [dict(m) for m in team.messages.get(ticket["id"], [])]
        return out

    def webhook_ticket(self, ticket: Mapping[str, Any]) -> dict[str, Any]:
        """The snake_case ticket webhooks carry."""
        return {
            "id": ticket["id"],
            "prefixed_id": ticket["prefixedId"],
            "title": ticket["title"],
            "status": ticket["status"],
            "priority": ticket["priority"],
            "channel": ticket["channel"],
            "customer_id": ticket["customerId"],
            "customer_name": ticket["customerName"],
            "assigned_to": ticket["assignedTo"],
            "tags": list(ticket["tags"]),
            "metadata": _copy(ticket["metadata"]),
            "created_at": ticket["createdAt"],
            "updated_at": ticket["updatedAt"],
            "dashboard_url": DASHBOARD + ticket["id"],
        }

    def customer_of(self, team: Team, ticket: Mapping[str, Any]) -> dict[str, Any] | None:
        """The webhook shape of the ticket's customer, if any."""
        customer = team.customers.get(ticket.get("customerId") or "")
        return customer.to_webhook() if customer else None

    # ------------------------------------------------------------------ tickets

    def create_ticket(self, team: Team, body: Mapping[str, Any]) -> TicketChange:
        """`POST /tickets`: `title` required; `customerName` finds or creates a customer."""
        _only(body, CREATE_FIELDS, "ticket")
        if "title" not in body:
            raise missing("title")
        fields = self._validate(body, creating=True)
        customer = self._customer_for(team, body)
        now = iso(self._now())
        number = team.next_number
        ticket: dict[str, Any] = {
            "id": self._id("tkt"),
            "object": "ticket",
            "prefixedId": f"{team.prefix}-{number}",
            "title": fields["title"],
            "status": fields.get("status", "new"),
            "priority": fields.get("priority", "normal"),
            "channel": _choice(body.get("channel", "api"), CHANNELS, "channel"),
            "customerId": customer.id if customer else None,
            "customerName": customer.name if customer else None,
            "assignedTo": fields.get("assignedTo"),
            "tags": fields.get("tags", []),
            "notes": fields.get("notes"),
            "messageCount": 0,
            # SLA fields of the ticket object; no SLA policy is simulated.
            "responseDeadline": None,
            "resolutionDeadline": None,
            "firstResponseAt": None,
            "responseTier": None,
            "resolutionTier": None,
            "slaPaused": False,
            "metadata": fields.get("metadata", {}),
            "createdAt": now,
            "updatedAt": now,
            "closedAt": now if fields.get("status") == "closed" else None,
            "resolvedAt": now if fields.get("status") == "resolved" else None,
        }
        team.next_number += 1
        team.tickets[ticket["id"]] = ticket
        team.by_prefixed[ticket["prefixedId"]] = ticket["id"]
        team.messages[ticket["id"]] = []
        initial = body.get("initialMessage")
        if initial is not None:
            if not isinstance(initial, str) or not initial.strip():
                raise invalid("initialMessage", "must be a non-empty string")
            self._append_message(team, ticket, {"content": initial, "sender": "customer"})
        return TicketChange(
            self.render(team, ticket), ("ticket.created",), customer=self.customer_of(team, ticket)
        )

    def update_ticket(
        self, team: Team, ticket: dict[str, Any], body: Mapping[str, Any]
    ) -> TicketChange:
        """`PATCH /tickets/{id}`: `tags` and `metadata` replace the whole value."""
        _only(body, UPDATE_FIELDS, "ticket update")
        fields = self._validate(body, creating=False)
        return self._apply(team, ticket, fields)

    def _apply(self, team: Team, ticket: dict[str, Any], fields: Mapping[str, Any]) -> TicketChange:
        changes = {
            WEBHOOK_NAMES[k]: {"from": _copy(ticket[k]), "to": _copy(v)}
            for k, v in fields.items()
            if ticket[k] != v
        }
        if not changes:
            return TicketChange(self.render(team, ticket))
        old_status, old_assignee = ticket["status"], ticket["assignedTo"]
        now = iso(self._now())
        for key, value in fields.items():
            ticket[key] = _copy(value)
        ticket["updatedAt"] = now
        if ticket["status"] != old_status:
            ticket["closedAt"] = now if ticket["status"] == "closed" else None
            ticket["resolvedAt"] = now if ticket["status"] == "resolved" else ticket["resolvedAt"]
        events = ["ticket.updated"]
        if ticket["status"] == "closed" and old_status != "closed":
            events.append("ticket.closed")
        if ticket["assignedTo"] is not None and ticket["assignedTo"] != old_assignee:
            events.append("ticket.assigned")
        return TicketChange(
            self.render(team, ticket),
            tuple(events),
            changes=changes,
            customer=self.customer_of(team, ticket),
        )

    def delete_ticket(self, team: Team, ticket: dict[str, Any]) -> TicketChange:
        """`DELETE /tickets/{id}`: the ticket and its messages are gone; emits `ticket.deleted`."""
        del team.tickets[ticket["id"]]
        team.by_prefixed.pop(ticket["prefixedId"], None)
        team.messages.pop(ticket["id"], None)
        return TicketChange(
            _copy(ticket), ("ticket.deleted",), customer=self.customer_of(team, ticket)
        )

    def add_message(
        self, team: Team, ticket: dict[str, Any], body: Mapping[str, Any]
    ) -> TicketChange:
        """`POST /tickets/{id}/messages` `{content, sender}`; emits `ticket.message_added`."""
        _only(body, {"content", "sender"}, "message")
        content = body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise invalid("content", "must be a non-empty string")
        sender = _choice(body.get("sender", "agent"), ("agent", "customer"), "sender")
        message = self._append_message(team, ticket, {"content": content, "sender": sender})
        ticket["updatedAt"] = message["createdAt"]
        return TicketChange(
            self.render(team, ticket),
            ("ticket.message_added",),
            customer=self.customer_of(team, ticket),
            message=dict(message),
        )

    def _append_message(
        self, team: Team, ticket: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        message = {
            "id": self._id("msg"),
            "object": "message",
            "ticketId": ticket["id"],
            "content": body["content"],
            "sender": body["sender"],
            "createdAt": iso(self._now()),
        }
        team.messages.setdefault(ticket["id"], []).append(message)
        ticket["messageCount"] += 1
        return message

    def _validate(self, body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in sorted(set(body) & (UPDATE_FIELDS | {"title"})):
            value = body[name]
            if name == "title":
                if not isinstance(value, str) or not value.strip():
                    raise invalid("title", "must be a non-empty string")
            elif name == "status":
                value = _choice(value, STATUSES, "status")
            elif name == "priority":
                value = _choice(value, PRIORITIES, "priority")
            elif name == "assignedTo":
                if value is not None and (not isinstance(value, str) or not value):
                    raise invalid("assignedTo", "must be an agent id or null")
            elif name == "tags":
                if not isinstance(value, list) or not all(
                    isinstance(t, str) and t.strip() for t in value
                ):
                    raise invalid("tags", "must be an array of non-empty strings (the full list)")
                value = list(dict.fromkeys(t.strip() for t in value))
            elif name == "notes":
                if value is not None and not isinstance(value, str):
                    raise invalid("notes", "must be a string or null")
            elif name == "metadata" and not isinstance(value, dict):
                raise invalid("metadata", "must be an object")
            out[name] = value
        return out

    def _customer_for(self, team: Team, body: Mapping[str, Any]) -> Customer | None:
        if body.get("customerId") is not None:
            customer = team.customers.get(str(body["customerId"]))
            if customer is None:
                raise invalid("customerId", f"no such customer {body['customerId']!r}")
            return customer
        name = body.get("customerName")
        if name is None:
            return None
        if not isinstance(name, str) or not name.strip():
            raise invalid("customerName", "must be a non-empty string")
        email = body.get("customerEmail")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            raise invalid("customerEmail", "must be an email address")
        for customer in team.customers.values():
            if customer.name == name.strip() and (email is None or customer.email == email):
                return customer
        customer = Customer(self._id("cus"), name.strip(), email, iso(self._now()))
        team.customers[customer.id] = customer
        return customer

    # ------------------------------------------------------------------ bulk

    def bulk(
        self,
        team: Team,
        body: Mapping[str, Any],
        *,
        fail_ids: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], list[TicketChange]]:
        """`POST /bulk` on tickets, customers or articles: validated as a whole first, then
        applied id by id.

        Unknown ids (and ids in `fail_ids`, a fault knob of id → error code) are reported in
        `errors[]` as `{id, code, message}` and left unchanged; the rest are applied. The
        simulator serves no article API, so it holds no article and every article id is unknown.
        """
        _only(body, {"action", "resource", "ids", "data"}, "bulk request")
        for name in ("action", "resource", "ids"):
            if name not in body:
                raise missing(name)
        action = _choice(body["action"], BULK_ACTIONS, "action")
        resource = _choice(body["resource"], BULK_RESOURCES, "resource")
        ids = body["ids"]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise invalid("ids", "must be a non-empty array of id strings")
        max_ids = self._max_bulk_ids
        if len(ids) > max_ids:
            raise invalid("ids", f"at most {max_ids} ids per request (got {len(ids)})")
        fields: dict[str, Any] = {}
        if action == "update":
            data = body.get("data")
            if not isinstance(data, dict) or not data:
                raise (
                    missing("data")
                    if data is None
                    else invalid("data", "must be a non-empty object")
                )
            fields = self._bulk_fields(resource, data)
        unique = list(dict.fromkeys(ids))
        errors: list[dict[str, Any]] = []
        changes: list[TicketChange] = []
        for item_id in unique:
            code = (fail_ids or {}).get(item_id)
            if code is not None:
                errors.append({"id": item_id, "code": code, "message": f"simulated {code}"})
                continue
            if resource == "tickets":
                ticket = team.tickets.get(item_id)
                if ticket is not None:
                    if action == "delete":
                        changes.append(self.delete_ticket(team, ticket))
                    else:
                        changes.append(self._apply(team, ticket, fields))
                    continue
            elif resource == "customers" and item_id in team.customers:
                if action == "delete":
                    del team.customers[item_id]
                else:
                    customer = team.customers[item_id]
                    customer.name = fields.get("name", customer.name)
                    customer.email = fields.get("email", customer.email)
                continue
            what = resource.removesuffix("s")
            errors.append(
                {
                    "id": item_id,
                    "code": "resource_missing",
                    "message": f"No such {what}: {item_id!r}",
                }
            )
        result = {
            "object": "bulk_result",
            "action": action,
            "resource": resource,
            "total": len(unique),
            "succeeded": len(unique) - len(errors),
            "failed": len(errors),
            "errors": errors,
        }
        return result, changes

    def _bulk_fields(self, resource: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """The checked `data` of a bulk update of `resource`."""
        if resource == "tickets":
            _only(data, UPDATE_FIELDS, "bulk data")
            return self._validate(data, creating=False)
        if resource == "customers":
            _only(data, CUSTOMER_FIELDS, "bulk customer data")
            out: dict[str, Any] = {}
            if "name" in data:
                name = data["name"]
                if not isinstance(name, str) or not name.strip():
                    raise invalid("name", "must be a non-empty string")
                out["name"] = name.strip()
            if "email" in data:
                email = data["email"]
                if email is not None and (not isinstance(email, str) or "@" not in email):
                    raise invalid("email", "must be an email address or null")
                out["email"] = email
            return out
        # No article fields are documented; any object is taken (no article exists here).
        return dict(data)

    # ------------------------------------------------------------------ idempotency

    def replay(
        self, team: Team, key: str, method: str, path: str, body: object
    ) -> IdempotencyEntry | None:
        """The stored answer for a repeated key, None for a new one; 409 for another request."""
        if not 1 <= len(key) <= 255:
            raise invalid("Idempotency-Key", "must be 1 to 255 characters")
        entry = team.idempotency.get(key)
        if entry is None or entry.expires_at <= self._monotonic():
            return None
        if entry.request_hash != fingerprint([method, path, body]):
            raise ApiError(
                409,
                "idempotency_conflict",
                f"Idempotency-Key {key!r} was already used with a different request within "
                "24 hours; send a new key for a new request",
            )
        return entry

    def remember(
        self,
        team: Team,
        key: str,
        method: str,
        path: str,
        body: object,
        status: int,
        response: dict[str, Any],
    ) -> None:
        """Store a successful answer under its key for `idempotency_ttl` simulated seconds."""
        now = self._monotonic()
        if len(team.idempotency) > 10_000:
            # Keep memory bounded on long runs: drop what has expired.
            team.idempotency = {k: e for k, e in team.idempotency.items() if e.expires_at > now}
        team.idempotency[key] = IdempotencyEntry(
            fingerprint([method, path, body]), status, response, now + self.idempotency_ttl
        )


def _only(body: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    allowed = frozenset(allowed)
    extra = sorted(k for k in body if k not in allowed)
    if extra:
        raise invalid(extra[0], f"unknown {what} field; accepted: {', '.join(sorted(allowed))}")


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise invalid(name, f"must be one of {', '.join(allowed)} (got {value!r})")
    return str(value)


def _copy(value: Any) -> Any:
    return copy.deepcopy(value) if isinstance(value, dict | list) else value
