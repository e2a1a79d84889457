"""Thena platform events: verify the delivery and parse it into an `Event` (pure, no I/O).

Verification. Thena documents no signature for platform events; its older webhooks send a static
value you configure in the `authorization` header. Two modes:

- `token` (default): the header (default `authorization`) carries a shared token, bare or as
  `Bearer <token>`. It is compared in constant time against every active token.
- `hmac`: the header (default `X-Thena-Signature`) carries the lowercase hex HMAC-SHA256 of the
  raw body, optionally prefixed `sha256=`, checked against every active secret.

Several tokens or secrets may be active at once, so they can be rotated without downtime. No
reason given for a rejection ever includes what was sent or what was expected.

Envelope. A platform event `{eventId, eventType, timestamp, orgId, actor, payload, metadata?}`,
either at the top level or nested as `{"message": {...}}` (the app-framework shape; `message`
may also be a JSON string, as SNS sends it). Fields missing from a nested message are taken from
`messageAttributes` (`event_id`, `event_name`, `event_timestamp`, `context_organization_id`).
`timestamp` may be ISO 8601 (naive means UTC) or unix seconds or milliseconds (a number, or digits
in a string; values of 10^11 and above are milliseconds).

Types. `ticket:created` → `ticket.created`, `ticket:updated` → `ticket.updated`,
`ticket:assigned` → `ticket.assigned`, `ticket:status:changed` → `ticket.status_changed`, or
`ticket.closed` when the new status is closed (its name maps to the neutral `closed`, or it has
`statusType: closed`) and the previous one, when the payload says, was not. Every other event
keeps its Thena name (`ticket:priority:changed`, `account:created`, ...); `raw_type` is always
the Thena name.

Ticket. `payload.ticket` (for `ticket:deleted`, `payload.previousTicket`), all keys kept. When it
has no `assignedAgentId`, one is added from `assignedAgent.id` (or null when `assignedAgent` is
null), so rules and the planner read the assignee in one place. Ticket events must name a
ticket; other events get an empty ticket id and ticket.

Changes. From any of these payload keys, merged in this order (later wins per field):
`previousTicket` (Thena's documented shape for `ticket:updated`: the whole previous ticket, every
differing key becomes a change), `previous` (previous values of some keys), `changes`
(`{field: {from, to}}`, `{field: {old, new}}`, `{field: {previous, current}}`, `{field: [old,
new]}`, or `[{field, from, to}]`). None when the payload carries none of them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from ticketwire.errors import ConfigError, InvalidSignature, MalformedEvent
from ticketwire.event import Event, Routing
from ticketwire.secret import Secret
from ticketwire.vendors.http import header
from ticketwire.vendors.ids import checked
from ticketwire.vendors.strictjson import loads
from ticketwire.vendors.thena.models import PlatformEvent, Ticket
from ticketwire.vocabulary import neutral_priority, neutral_status

if TYPE_CHECKING:
    from ticketwire.vendors.thena.settings import ThenaSettings

VENDOR = "thena"
TOKEN_HEADER = "authorization"
SIGNATURE_HEADER = "X-Thena-Signature"
Mode = Literal["token", "hmac"]
MODES: tuple[str, ...] = ("token", "hmac")

#: Thena event names that map onto the canonical ones (status changes are decided per event).
CANONICAL_TYPES: Mapping[str, str] = {
    "ticket:created": "ticket.created",
    "ticket:updated": "ticket.updated",
    "ticket:assigned": "ticket.assigned",
    "ticket:status:changed": "ticket.status_changed",
}
#: Canonical event names → Thena's, for deliveries made up by `fire`; a close is a status change.
OWN_EVENT_NAMES: Mapping[str, str] = {
    **{canonical: own for own, canonical in CANONICAL_TYPES.items()},
    "ticket.closed": "ticket:status:changed",
}
#: Thena's other ticket events: parsed under their own names; rules pinned to Thena may use them.
OWN_EVENTS: tuple[str, ...] = (
    "ticket:deleted",
    "ticket:archived",
    "ticket:unarchived",
    "ticket:priority:changed",
    "ticket:type:changed",
    "ticket:sentiment:changed",
    "ticket:escalated",
    "ticket:custom_field_value:added",
    "ticket:custom_field_value:removed",
    "ticket:custom_field_value:changed",
    "ticket:tag:updated",
    "ticket:migrated",
    "ticket:comment:added",
    "ticket:comment:updated",
    "ticket:comment:deleted",
    "ticket:comment:reaction:added",
    "ticket:comment:reaction:removed",
    "ticket:csat:sent",
    "ticket:csat:received",
    "ticket:sla:breached",
    "ticket:sla:breach_warning",
)
#: Where a nested message's missing fields are found in `messageAttributes`.
_ATTRIBUTES = {
    "eventId": "event_id",
    "eventType": "event_name",
    "timestamp": "event_timestamp",
    "orgId": "context_organization_id",
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none"})
_DIGITS = re.compile(r"^-?\d+(\.\d+)?$")
#: Unix times at or above this are milliseconds (10^11 seconds is in the year 5138).
_MS_THRESHOLD = 10**11


def sign(body: bytes, secret: str) -> str:
    """The hex HMAC-SHA256 of `body` that `hmac` mode expects (no prefix)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(account: ThenaSettings, body: bytes, secret: str) -> dict[str, str]:
    """The headers Thena sends with `body` in the account's mode: the HMAC, or the token itself."""
    if account.webhook_mode == "hmac":
        return {account.webhook_header or SIGNATURE_HEADER: sign(body, secret)}
    # Token mode: captures never keep the token, so a replay always supplies it.
    return {account.webhook_header or TOKEN_HEADER: f"Bearer {secret}"}


class ThenaWebhook:
    """Verifier and parser for Thena platform-event deliveries."""

    vendor: str = VENDOR

    def __init__(
        self, mode: Mode | str, secrets: Sequence[Secret], *, header: str | None = None
    ) -> None:
        if mode not in MODES:
            raise ConfigError("THENA_WEBHOOK_MODE", "'token' or 'hmac'", str(mode))
        if not secrets or not all(s.reveal() for s in secrets):
            raise ConfigError(
                "THENA_WEBHOOK_SECRETS",
                "at least one non-empty webhook token (token mode) or secret (hmac mode)",
            )
        name = header or (TOKEN_HEADER if mode == "token" else SIGNATURE_HEADER)
        if not _HEADER_NAME.match(name):
            raise ConfigError("THENA_WEBHOOK_HEADER", "an HTTP header name, e.g. authorization")
        self.mode: str = mode
        self.header = name
        self._keys = tuple(s.reveal().encode() for s in secrets)
        # The token itself is a credential: it is not stored with the body for replays (a replay
        # adds the current token again). A signature is not a credential and is kept.
        self.replay_headers: tuple[str, ...] = (
            ("Content-Type", "User-Agent")
            if mode == "token"
            else (self.header, "Content-Type", "User-Agent")
        )

    def __repr__(self) -> str:
        return (
            f"ThenaWebhook(mode={self.mode!r}, header={self.header!r}, "
            f"secrets=<{len(self._keys)} hidden>)"
        )

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise `InvalidSignature` unless the delivery carries an active token or signature."""
        value = header(headers, self.header)
        if value is None:
            raise InvalidSignature(f"missing {self.header} header")
        if self.mode == "token":
            self._verify_token(value.strip())
        else:
            self._verify_hmac(value.strip(), body)

    def _verify_token(self, value: str) -> None:
        scheme, _, rest = value.partition(" ")
        if rest.strip():
            if scheme.lower() != "bearer":
                raise InvalidSignature(
                    f"unsupported scheme in {self.header}; send the token bare or as "
                    "'Bearer <token>'"
                )
            value = rest.strip()
        elif scheme.lower() == "bearer":
            raise InvalidSignature(f"{self.header} says Bearer but carries no token")
        if not value:
            raise InvalidSignature(f"empty {self.header} header")
        # Compare digests, not the tokens: equal lengths, so the time taken reveals nothing about
        # the length of any active token.
        # The bytes as sent: aiohttp keeps bytes that are not UTF-8 as lone surrogates. Other
        # lone surrogates stand for no bytes at all; such text matches no token (tokens are
        # UTF-8), and is refused as any other token that matches none.
        try:
            sent = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            sent = None
        given = hashlib.sha256(sent or b"").digest()
        matched = False
        for key in self._keys:
            # Every token is compared, so the time taken does not reveal which one matched.
            matched |= hmac.compare_digest(hashlib.sha256(key).digest(), given)
        if not matched or sent is None:
            raise InvalidSignature(
                f"{self.header} token matches no active token "
                "(check THENA_WEBHOOK_SECRETS against the webhook's configured token)"
            )

    def _verify_hmac(self, value: str, body: bytes) -> None:
        if value[:7].lower() == "sha256=":
            value = value[7:]
        try:
            given = bytes.fromhex(value)
        except ValueError:
            given = b""
        if len(given) != hashlib.sha256().digest_size:
            raise InvalidSignature(
                f"malformed {self.header}: expected hex HMAC-SHA256, optionally 'sha256=<hex>'"
            )
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), given)
        if not matched:
            raise InvalidSignature(
                f"{self.header} does not match any active secret "
                "(check THENA_WEBHOOK_SECRETS against the secret that signs the deliveries)"
            )

    def inspect(self, body: bytes) -> Routing:
        """Validate the body as `parse` does, returning only what storing it needs."""
        return Routing.of(self.parse(body))

    def parse(self, body: bytes) -> Event:
        """Parse the raw body into an `Event`, naming the first bad field on failure."""
        return parse(body)


def parse(body: bytes) -> Event:
    """Parse a raw Thena delivery (flat or `message`-nested) into an `Event`."""
    doc = loads(body)
    if not isinstance(doc, dict):
        raise MalformedEvent("body must be a JSON object")
    doc, prefix = _unwrap(doc)
    try:
        env = PlatformEvent.model_validate(doc)
    except ValidationError as exc:
        raise _malformed(exc, prefix) from None
    # These become Redis keys (dedupe, partition, counters) and log text.
    checked(env.eventId, prefix + "eventId")
    checked(env.eventType, prefix + "eventType")
    checked(env.orgId, prefix + "orgId")
    created_at = _timestamp(env.timestamp, prefix + "timestamp")
    ticket, ticket_id = _ticket(env, prefix)
    # Changes compare what Thena sent, not the assignee id added for convenience.
    sent = env.payload.get("ticket")
    changes = _changes(env.payload, sent if isinstance(sent, dict) else ticket)
    return Event(
        vendor=VENDOR,
        type=_event_type(env.eventType, ticket, changes),
        id=env.eventId,
        tenant=env.orgId,
        created_at=created_at,
        ticket_id=ticket_id,
        ticket=ticket,
        raw_type=env.eventType,
        common=common_view(ticket),
        changes=changes,
        updated_at=_updated_at(ticket) or created_at,
    )


def _updated_at(ticket: Mapping[str, Any]) -> datetime | None:
    """The ticket's `updatedAt`; None when absent or unreadable (the envelope's time orders it)."""
    value = ticket.get("updatedAt")
    if value is None:
        return None
    try:
        return _timestamp(value, "updatedAt")
    except MalformedEvent:
        return None


def common_view(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """The neutral view of a Thena ticket: status, priority, assignee, tags, subject."""
    tags = ticket.get("tags")
    return {
        "status": neutral_status(VENDOR, status_name(ticket)),
        "priority": neutral_priority(VENDOR, priority_name(ticket)),
        "assignee": assignee_id(ticket),
        "tags": _tag_names(tags) if isinstance(tags, list) else None,
        "subject": ticket.get("title") if isinstance(ticket.get("title"), str) else None,
    }


def status_name(ticket: Mapping[str, Any]) -> str | None:
    """The ticket's status name: `statusName`, else `status` (a name, or an object's name)."""
    return _named(ticket, "statusName", "status")


def priority_name(ticket: Mapping[str, Any]) -> str | None:
    """The ticket's priority name: `priorityName`, else `priority` (a name or an object's)."""
    return _named(ticket, "priorityName", "priority")


def assignee_id(ticket: Mapping[str, Any]) -> str | None:
    """The assigned agent's id: `assignedAgentId`, else `assignedAgent.id`."""
    value = ticket.get("assignedAgentId")
    if isinstance(value, str) and value:
        return value
    agent = ticket.get("assignedAgent")
    if isinstance(agent, Mapping) and isinstance(agent.get("id"), str):
        return str(agent["id"])
    return None


def is_closed(ticket: Mapping[str, Any]) -> bool:
    """True when the ticket's status is a closed one (by name, or `statusType: closed`)."""
    if neutral_status(VENDOR, status_name(ticket)) == "closed":
        return True
    status = ticket.get("status")
    kind = ticket.get("statusType")
    if kind is None and isinstance(status, Mapping):
        kind = status.get("type")
    return isinstance(kind, str) and kind.strip().lower() == "closed"


# ---------------------------------------------------------------- helpers


def _unwrap(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    if "eventType" in doc or "message" not in doc:
        return doc, ""
    message = doc["message"]
    if isinstance(message, str):
        message = loads(message, field="message")
    if not isinstance(message, dict):
        raise MalformedEvent("must be an object holding the platform event", field="message")
    attributes = doc.get("messageAttributes")
    if isinstance(attributes, Mapping):
        message = dict(message)
        for name, attribute in _ATTRIBUTES.items():
            if name not in message and attribute in attributes:
                message[name] = _attribute(attributes[attribute])
    return message, "message."


def _attribute(value: Any) -> Any:
    # SNS message attributes are `{"DataType": "String", "StringValue": "..."}` objects.
    if isinstance(value, Mapping):
        return value.get("StringValue", value.get("Value", value.get("value")))
    return value


def _malformed(exc: ValidationError, prefix: str) -> MalformedEvent:
    err = exc.errors(include_url=False)[0]
    # Union members show up in the location ("ticketId.int"); they are not fields.
    loc = [str(p) for p in err["loc"] if str(p) not in _UNION_TAGS and "[" not in str(p)]
    field = prefix + ".".join(loc) if loc else prefix.rstrip(".")
    if err["type"] == "missing":
        return MalformedEvent("required field is missing", field=field or None)
    return MalformedEvent(err["msg"], field=field or None)


def _timestamp(value: Any, field: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MalformedEvent("must be ISO 8601 or unix seconds/milliseconds", field=field)
    text = value.strip() if isinstance(value, str) else None
    if text is None or _DIGITS.match(text):
        try:
            # float() itself overflows on an integer of some 310 digits or more.
            number = float(value)
            seconds = number / 1000 if abs(number) >= _MS_THRESHOLD else number
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise MalformedEvent(
                f"unix time {_shown(value)} is out of range", field=field
            ) from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedEvent(
            f"{_shown(value)} is neither ISO 8601 nor unix seconds/milliseconds", field=field
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _shown(value: Any) -> str:
    # The sender's text goes into the answer and the log: a few characters of it are enough.
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:30]}… ({len(shown)} characters)"


def _ticket(env: PlatformEvent, prefix: str) -> tuple[dict[str, Any], str]:
    payload = env.payload
    where = "ticket"
    raw = payload.get("ticket")
    if raw is None and isinstance(payload.get("previousTicket"), dict):
        where, raw = "previousTicket", payload["previousTicket"]
    field = f"{prefix}payload.{where}"
    if raw is None:
        ticket_id = _loose_ticket_id(payload)
        if env.eventType.startswith("ticket:") and ticket_id is None:
            raise MalformedEvent("a ticket event must carry the ticket", field=field)
        if ticket_id is None:
            return {}, ""
        checked(ticket_id, f"{prefix}payload.ticketId")
        return {"id": ticket_id}, ticket_id
    if not isinstance(raw, dict):
        raise MalformedEvent("must be an object", field=field)
    try:
        model = Ticket.model_validate(raw)
    except ValidationError as exc:
        raise _malformed(exc, field + ".") from None
    checked(model.id, field + ".id")
    ticket = dict(raw)
    if "assignedAgentId" not in ticket and "assignedAgent" in ticket:
        agent = ticket["assignedAgent"]
        if agent is None:
            ticket["assignedAgentId"] = None
        elif isinstance(agent, Mapping) and isinstance(agent.get("id"), str):
            ticket["assignedAgentId"] = agent["id"]
    return ticket, model.id


def _loose_ticket_id(payload: Mapping[str, Any]) -> str | None:
    # Comment and similar events may name the ticket instead of carrying it.
    for holder in (payload, payload.get("comment")):
        if isinstance(holder, Mapping):
            value = holder.get("ticketId")
            if isinstance(value, str) and value:
                return value
    return None


def _event_type(raw: str, ticket: Mapping[str, Any], changes: Mapping[str, Any] | None) -> str:
    mapped = CANONICAL_TYPES.get(raw)
    if mapped != "ticket.status_changed" or not is_closed(ticket):
        return mapped or raw
    before = _previous_status(changes)
    if before is not None and is_closed(before):
        return mapped
    return "ticket.closed"


def _previous_status(changes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The previous status fields, when the payload said what they were."""
    if not changes:
        return None
    before = {
        key: changes[key]["from"]
        for key in ("statusName", "status", "statusType")
        if key in changes
    }
    return before or None


def _named(ticket: Mapping[str, Any], name_key: str, object_key: str) -> str | None:
    value = ticket.get(name_key)
    if isinstance(value, str):
        return value
    other = ticket.get(object_key)
    if isinstance(other, str):
        return other
    if isinstance(other, Mapping):
        for key in ("name", "displayName"):
            if isinstance(other.get(key), str):
                return str(other[key])
    return None


def _tag_names(tags: list[Any]) -> list[str]:
    names = []
    for tag in tags:
        if isinstance(tag, str):
            names.append(tag)
        elif isinstance(tag, Mapping) and isinstance(tag.get("name"), str):
            names.append(str(tag["name"]))
    return names


def _changes(payload: Mapping[str, Any], ticket: Mapping[str, Any]) -> dict[str, Any] | None:
    found = False
    out: dict[str, Any] = {}
    previous_ticket = payload.get("previousTicket")
    if isinstance(previous_ticket, Mapping) and payload.get("ticket") is not None:
        found = True
        for key in dict.fromkeys([*previous_ticket, *ticket]):
            before, after = previous_ticket.get(key), ticket.get(key)
            if before != after:
                out[key] = {"from": before, "to": after}
    previous = payload.get("previous")
    if isinstance(previous, Mapping):
        found = True
        for key, before in previous.items():
            if before != ticket.get(key):
                out[key] = {"from": before, "to": ticket.get(key)}
    listed = payload.get("changes")
    if isinstance(listed, Mapping):
        found = True
        for key, value in listed.items():
            out[str(key)] = _pair(value, out.get(str(key)), ticket.get(str(key)))
    elif isinstance(listed, list):
        found = True
        for item in listed:
            if isinstance(item, Mapping) and isinstance(item.get("field"), str):
                key = item["field"]
                out[key] = _pair(item, out.get(key), ticket.get(key))
    return out if found else None


def _pair(value: Any, known: Mapping[str, Any] | None, current: Any) -> dict[str, Any]:
    if isinstance(value, list | tuple) and len(value) == 2:
        return {"from": value[0], "to": value[1]}
    if isinstance(value, Mapping):
        for old, new in (("from", "to"), ("old", "new"), ("previous", "current")):
            if old in value or new in value:
                return {"from": value.get(old), "to": value.get(new, current)}
    # A bare value is the new one; the old one is whatever another key said, if any.
    return {"from": (known or {}).get("from"), "to": value}
