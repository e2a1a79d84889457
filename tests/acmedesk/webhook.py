"""Acme Desk webhooks: verify `X-Acme-Signature` (hex HMAC-SHA256 of the body) and parse them."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from ticketwire.errors import InvalidSignature, MalformedEvent
from ticketwire.event import Event, Routing
from ticketwire.secret import Secret
from ticketwire.vendors.ids import checked
from ticketwire.vendors.strictjson import loads
from ticketwire.vocabulary import neutral_priority, neutral_status

VENDOR = "acmedesk"
SIGNATURE_HEADER = "X-Acme-Signature"


class Ticket(BaseModel):
    """The fields of a ticket every event carries; others are passed to rules as sent."""

    model_config = ConfigDict(extra="allow")

    id: str
    desk: str
    status: str
    priority: str
    updated_at: AwareDatetime


class Envelope(BaseModel):
    """`{id, type, occurred_at, ticket}`."""

    id: str
    type: str
    occurred_at: AwareDatetime
    ticket: Ticket


def sign(body: bytes, secret: str) -> str:
    """The header value Acme Desk sends for `body`."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(account: object, body: bytes, secret: str) -> dict[str, str]:
    """The headers Acme Desk sends with `body` signed with `secret`."""
    return {SIGNATURE_HEADER: sign(body, secret)}


class AcmeDeskWebhook:
    """Verifier and parser for Acme Desk deliveries."""

    vendor: str = VENDOR
    replay_headers: tuple[str, ...] = (SIGNATURE_HEADER, "Content-Type")

    def __init__(self, secrets: Sequence[Secret]) -> None:
        self._keys = tuple(s.reveal().encode() for s in secrets)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise `InvalidSignature` unless some active secret signed `body`."""
        given = headers.get(SIGNATURE_HEADER, "").strip().encode()
        if not given:
            raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
        matched = False
        for key in self._keys:
            # Every secret is compared, so the time taken does not tell which one matched.
            expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise InvalidSignature(f"{SIGNATURE_HEADER} does not match any active secret")

    def parse(self, body: bytes) -> Event:
        """The event of a raw delivery, or `MalformedEvent`."""
        return parse(body)

    def inspect(self, body: bytes) -> Routing:
        """What storing the delivery needs, validated as `parse` does."""
        env = _validate(body)
        return Routing(
            env.type, env.id, env.ticket.id, f"{VENDOR}:{env.ticket.desk}:{env.ticket.id}"
        )


def parse(body: bytes) -> Event:
    """Parse a raw Acme Desk delivery into an `Event`, or raise `MalformedEvent`."""
    env = _validate(body)
    ticket: dict[str, Any] = loads(body)["ticket"]
    return Event(
        vendor=VENDOR,
        type=env.type,
        id=env.id,
        tenant=env.ticket.desk,
        created_at=env.occurred_at,
        ticket_id=env.ticket.id,
        ticket=ticket,
        common=common_view(ticket),
        updated_at=env.ticket.updated_at,
    )


def common_view(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """The neutral view of an Acme ticket dict."""
    return {
        "status": neutral_status(VENDOR, ticket.get("status")),
        "priority": neutral_priority(VENDOR, ticket.get("priority")),
        "assignee": ticket.get("assignee"),
        "tags": None,
        "subject": ticket.get("subject"),
    }


def _validate(body: bytes) -> Envelope:
    try:
        env = Envelope.model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        raise MalformedEvent(err["msg"], field=field) from None
    # These become Redis keys and log text.
    for value, name in (
        (env.type, "type"),
        (env.id, "id"),
        (env.ticket.id, "ticket.id"),
        (env.ticket.desk, "ticket.desk"),
    ):
        checked(value, name)
    return env
