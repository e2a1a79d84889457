"""InboxOps webhooks: verify `X-InboxOps-Signature` and parse the envelope (pure, no I/O).

The signature is the lowercase hex HMAC-SHA256 of the raw body with the endpoint secret, with an
optional `sha256=` prefix. Every active secret is tried, so secrets can be rotated without
downtime. InboxOps signs no timestamp, so replay protection comes from the event-id dedupe window.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ticketwire.errors import InvalidSignature, MalformedEvent
from ticketwire.event import Event, Routing
from ticketwire.secret import Secret
from ticketwire.vendors.ids import checked
from ticketwire.vendors.inboxops.models import Envelope
from ticketwire.vendors.strictjson import loads
from ticketwire.vendors.validation import validate_json
from ticketwire.vocabulary import neutral_priority, neutral_status

SIGNATURE_HEADER = "X-InboxOps-Signature"
VENDOR = "inboxops"


def sign(body: bytes, secret: str) -> str:
    """Return the header value InboxOps would send for `body` (lowercase hex, no prefix)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(account: object, body: bytes, secret: str) -> dict[str, str]:
    """The headers InboxOps sends with `body` signed with `secret`."""
    return {SIGNATURE_HEADER: sign(body, secret)}


class InboxOpsWebhook:
    """Verifier and parser for InboxOps deliveries."""

    vendor: str = VENDOR
    replay_headers: tuple[str, ...] = (SIGNATURE_HEADER, "Content-Type", "User-Agent")

    def __init__(self, secrets: Sequence[Secret]) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is required")
        self._keys = tuple(s.reveal().encode() for s in secrets)

    def __repr__(self) -> str:
        return f"InboxOpsWebhook(secrets=<{len(self._keys)} hidden>)"

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise `InvalidSignature` unless some active secret signed `body`."""
        value = headers.get(SIGNATURE_HEADER)
        if not value:
            raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
        value = value.strip()
        if value[:7].lower() == "sha256=":
            value = value[7:]
        try:
            given = bytes.fromhex(value)
        except ValueError:
            raise InvalidSignature(
                f"malformed {SIGNATURE_HEADER}: expected hex HMAC-SHA256, optionally 'sha256=<hex>'"
            ) from None
        matched = False
        for key in self._keys:
            # Compare against every secret, not just until the first match, so the time taken
            # does not reveal which secret (or how many) matched.
            expected = hmac.new(key, body, hashlib.sha256).digest()
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise InvalidSignature(
                f"{SIGNATURE_HEADER} does not match any active secret "
                "(check INBOXOPS_WEBHOOK_SECRETS against the endpoint's secret)"
            )

    def parse(self, body: bytes) -> Event:
        """Parse the raw body into an `Event`, naming the first bad field on failure."""
        return parse(body)

    def inspect(self, body: bytes) -> Routing:
        """Validate the whole envelope (400s name the field) without building the ticket dict."""
        env = _validate(body)
        ticket_key = f"{VENDOR}:{env.tenant_id}:{env.data.id}"
        return Routing(env.event, env.event_id, env.data.id, ticket_key, env.created_at)


def parse(body: bytes) -> Event:
    """Parse a raw InboxOps delivery into an `Event`, or raise `MalformedEvent`."""
    env = _validate(body)
    # Rules see the ticket exactly as InboxOps sent it (not re-serialised from the model), and
    # the Event is built from values just validated, so it is not validated a second time.
    ticket: dict[str, Any] = loads(body)["data"]
    return Event.model_construct(
        vendor=VENDOR,
        type=env.event,
        id=env.event_id,
        tenant=env.tenant_id,
        created_at=env.created_at,
        ticket_id=env.data.id,
        ticket=ticket,
        raw_type=None,
        common={
            "status": neutral_status(VENDOR, env.data.status),
            "priority": neutral_priority(VENDOR, env.data.priority),
            "assignee": env.data.assignee_id,
            # InboxOps ticket payloads carry no tags.
            "tags": None,
            "subject": env.data.subject,
        },
        changes=None,
        updated_at=_utc(env.data.updated_at) or env.created_at,
        sequence=None,
        previous=None,
    )


def parse_stored(body: bytes) -> Event:
    """Parse a body the receiver already validated: one JSON decode, no second validation.

    Falls back to `parse` (and its precise errors) if the body is not what intake accepted.
    """
    try:
        # Strict JSON, as intake read it: json.loads takes NaN, lone surrogates, and nests until
        # a RecursionError.
        doc = loads(body)
        ticket: dict[str, Any] = doc["data"]
        ticket_id = ticket["id"]
        created = datetime.fromisoformat(doc["created_at"])
        if created.tzinfo is None or not isinstance(ticket_id, str):
            return parse(body)
        stamp = ticket.get("updated_at")
        updated = created if stamp is None else datetime.fromisoformat(stamp)
        if updated.tzinfo is None:
            updated = updated.replace(tzinfo=UTC)
        return Event.model_construct(
            vendor=VENDOR,
            type=doc["event"],
            id=doc["event_id"],
            tenant=doc["tenant_id"],
            created_at=created,
            ticket_id=ticket_id,
            ticket=ticket,
            raw_type=None,
            common=common_view(ticket),
            changes=None,
            updated_at=updated,
            sequence=None,
            previous=None,
        )
    except (ValueError, KeyError, TypeError, MalformedEvent):
        return parse(body)


def common_view(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """The neutral view of an InboxOps ticket dict: status, priority, assignee, tags, subject."""
    return {
        "status": neutral_status(VENDOR, ticket.get("status")),
        "priority": neutral_priority(VENDOR, ticket.get("priority")),
        "assignee": ticket.get("assignee_id"),
        # InboxOps ticket payloads carry no tags.
        "tags": None,
        "subject": ticket.get("subject"),
    }


def _utc(moment: datetime | None) -> datetime | None:
    # A time without a zone is read as UTC, so order keys always compare.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _validate(body: bytes) -> Envelope:
    env = validate_json(Envelope, body)
    # These become Redis keys (dedupe, partition) and log text.
    checked(env.event, "event")
    checked(env.event_id, "event_id")
    checked(env.tenant_id, "tenant_id")
    checked(env.data.id, "data.id")
    return env
