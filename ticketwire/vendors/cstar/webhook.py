"""cStar webhooks: verify `X-Signature` and parse the envelope into an `Event` (pure, no I/O).

Signature: `X-Signature: t=<unix seconds>,v1=<hex>`, the hex HMAC-SHA256 of `"{t}.{raw body}"`
with the webhook's signing secret, used as-is (the full `whsec_…` string). A delivery whose `t`
is more than `tolerance_s` away from now, in either direction, is refused as stale. The legacy
form `sha256=<hex>` (HMAC of the raw body alone, no timestamp) is still accepted, as cStar's own
verifier does, and so is the header name `x-cstar-signature` of an older page. Every active
secret is tried, so secrets can be rotated without downtime.

Parsing notes:
- The dedupe id is the envelope's `id`. cStar also sends it as `X-Event-ID`; when that header
  names an id the body does not contain, the envelope still wins and a warning is logged.
- `ticket.created/updated/closed/assigned` are canonical types as they are. cStar has no
  `ticket.status_changed`: a status change arrives as `ticket.updated` whose `changes` has
  `status`. Other types (`ticket.message_added`, `ticket.deleted`, `customer.*`, …) keep cStar's
  name; the receiver acknowledges types it does not process without storing them.
- The optional "Flat Payload" copies at the root (`ticket_id`, `ticket_title`, …) are kept as
  unknown keys; when `data.ticket` is absent they stand in for it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, ValidationError

from ticketwire.errors import InvalidSignature, MalformedEvent
from ticketwire.event import Event, Routing
from ticketwire.secret import Secret
from ticketwire.vendors.cstar.models import Envelope, Ticket
from ticketwire.vendors.http import header
from ticketwire.vendors.ids import checked
from ticketwire.vendors.validation import validate_json
from ticketwire.vocabulary import COMMON_FIELDS, neutral_priority, neutral_status

VENDOR = "cstar"
SIGNATURE_HEADER = "X-Signature"
#: The header name an older cStar page gives; accepted when `X-Signature` is absent.
OLD_SIGNATURE_HEADER = "x-cstar-signature"
EVENT_ID_HEADER = "X-Event-ID"
DEFAULT_TOLERANCE_S = 300.0
_EXPECTED = "expected 't=<unix seconds>,v1=<hex>' or the legacy 'sha256=<hex>'"
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
#: Unix seconds have 10 digits until the year 2286; more than this is not a time.
_MAX_T_DIGITS = 12

log = logging.getLogger("ticketwire.receiver")


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """Return the `X-Signature` value cStar sends for `body` at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def sign_legacy(body: bytes, secret: str) -> str:
    """Return the legacy `X-Signature` value: `sha256=` and the hex HMAC of the body alone."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(account: object, body: bytes, secret: str) -> dict[str, str]:
    """The headers cStar sends with `body` signed with `secret`, made now."""
    # A fresh timestamp: the receiver checks it against its tolerance window.
    return {SIGNATURE_HEADER: sign(body, secret, int(time.time()))}


class CStarWebhook:
    """Verifier and parser for cStar deliveries (implements `WebhookIntake`)."""

    vendor: str = VENDOR
    replay_headers: tuple[str, ...] = (
        SIGNATURE_HEADER,
        OLD_SIGNATURE_HEADER,
        EVENT_ID_HEADER,
        "X-Event-Type",
        "X-Webhook-ID",
        "X-Timestamp",
        "X-Delivery-Attempt",
        "x-cstar-request-id",
        "Content-Type",
        "User-Agent",
    )

    def __init__(
        self,
        secrets: Sequence[Secret],
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        now: Callable[[], float] = time.time,
        accept_legacy: bool = True,
    ) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is required")
        if not tolerance_s > 0:
            raise ValueError(f"tolerance_s must be a positive number of seconds, got {tolerance_s}")
        self._keys = tuple(s.reveal().encode() for s in secrets)
        self._tolerance = float(tolerance_s)
        self._now = now
        self._legacy = accept_legacy

    def __repr__(self) -> str:
        return (
            f"CStarWebhook(secrets=<{len(self._keys)} hidden>, tolerance_s={self._tolerance:g}, "
            f"accept_legacy={self._legacy})"
        )

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise `InvalidSignature` unless an active secret signed `body` recently enough."""
        name, value = _signature_header(headers)
        if value is None:
            raise InvalidSignature(
                f"missing {SIGNATURE_HEADER} header (also accepted: {OLD_SIGNATURE_HEADER}); "
                "cStar signs every delivery, so this request did not come from cStar"
            )
        timestamp, given = _parse_signature(name, value)
        if timestamp is None and not self._legacy:
            raise InvalidSignature(
                f"legacy {name} 'sha256=<hex>' is not accepted here; "
                "cStar now sends 't=<unix seconds>,v1=<hex>'"
            )
        signed = body if timestamp is None else f"{timestamp}.".encode() + body
        matched = False
        for key in self._keys:
            expected = hmac.new(key, signed, hashlib.sha256).digest()
            # Every secret and every v1 value is compared, not just until the first match, so
            # the time taken does not reveal which secret (or how many) matched.
            for candidate in given:
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise InvalidSignature(
                f"{name} does not match any active secret (check CSTAR_WEBHOOK_SECRETS against "
                "the webhook's signing secret, the full whsec_… value)"
            )
        if timestamp is not None:
            self._check_fresh(name, timestamp)
        _note_event_id(headers, body)

    def _check_fresh(self, name: str, timestamp: int) -> None:
        now = self._now()
        skew = now - timestamp
        if abs(skew) <= self._tolerance:
            return
        where = f"{skew:.0f}s old" if skew > 0 else f"{-skew:.0f}s in the future"
        raise InvalidSignature(
            f"stale {name} timestamp: t={timestamp} is {where} at now={now:.0f}, beyond the "
            f"{self._tolerance:g}s tolerance (a replay, or a clock that is off: check NTP, "
            "or raise CSTAR_SIGNATURE_TOLERANCE)"
        )

    def inspect(self, body: bytes) -> Routing:
        """Validate the whole envelope as `parse` does, without building the event's ticket."""
        env = _validate(body)
        ticket = env.data.ticket or _flat_ticket(env)
        if ticket is None:
            if env.type.startswith("ticket."):
                raise MalformedEvent("required for ticket events", field="data.ticket")
            return Routing(env.type, env.id, "", f"{VENDOR}:{env.team_id}:", env.created_at)
        key = f"{VENDOR}:{env.team_id}:{ticket.id}"
        return Routing(env.type, env.id, ticket.id, key, env.created_at)

    def parse(self, body: bytes) -> Event:
        """Parse the raw body into an `Event`, naming the first bad field on failure."""
        return parse(body)


def _signature_header(headers: Mapping[str, str]) -> tuple[str, str | None]:
    for name in (SIGNATURE_HEADER, OLD_SIGNATURE_HEADER):
        value = header(headers, name)
        if value:
            return name, value
    return SIGNATURE_HEADER, None


def _parse_signature(name: str, value: str) -> tuple[int | None, list[bytes]]:
    """Split a header value into (timestamp or None for legacy, candidate digests)."""
    value = value.strip()
    if value[:7].lower() == "sha256=":
        return None, [_digest(name, value[7:])]
    timestamp: int | None = None
    given: list[bytes] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {name}: {_EXPECTED}")
        if key == "t":
            # ASCII digits only ("²" and "١" are digits to str.isdigit), and few enough of them.
            digits = item.isascii() and item.isdigit() and len(item) <= _MAX_T_DIGITS
            if not digits or timestamp is not None:
                raise InvalidSignature(
                    f"malformed {name}: t must be one whole number of unix seconds; {_EXPECTED}"
                )
            timestamp = int(item)
        elif key == "v1":
            given.append(_digest(name, item))
        # Other schemes (v0, a future v2) are ignored, as the sender may offer several.
    if timestamp is None or not given:
        missing = "t" if timestamp is None else "v1"
        raise InvalidSignature(f"malformed {name}: no {missing}=…; {_EXPECTED}")
    return timestamp, given


def _digest(name: str, text: str) -> bytes:
    text = text.strip()
    if not _HEX.match(text):
        raise InvalidSignature(
            f"malformed {name}: the signature must be 64 hex digits (HMAC-SHA256); {_EXPECTED}"
        )
    return bytes.fromhex(text)


def _note_event_id(headers: Mapping[str, str], body: bytes) -> None:
    header_id = header(headers, EVENT_ID_HEADER)
    # A byte search, not a second JSON parse: the receiver's hot path stays one parse per body.
    if header_id and header_id.encode("utf-8", "surrogateescape") not in body:
        log.warning(
            "cStar %s %r does not appear in the body; the envelope's id is used for dedupe",
            EVENT_ID_HEADER,
            header_id,
        )


# ---- parsing ----


def parse(body: bytes) -> Event:
    """Parse a raw cStar delivery into an `Event`, or raise `MalformedEvent`."""
    env = _validate(body)
    ticket = env.data.ticket or _flat_ticket(env)
    event = functools.partial(
        Event,
        vendor=VENDOR,
        type=env.type,
        id=env.id,
        tenant=env.team_id,
        created_at=env.created_at,
    )
    if ticket is None:
        if env.type.startswith("ticket."):
            raise MalformedEvent("required for ticket events", field="data.ticket")
        # customer.*, article.*, …: parsed so the receiver can acknowledge and count them.
        return event(ticket_id="", ticket={}, common=dict.fromkeys(COMMON_FIELDS))
    return event(
        ticket_id=ticket.id,
        # Only the keys the payload carried: an absent `tags` or `assigned_to` means "unknown",
        # not "empty", to the planner's idempotence checks.
        ticket=ticket.model_dump(mode="json", exclude_unset=True),
        common={
            "status": neutral_status(VENDOR, ticket.status),
            "priority": neutral_priority(VENDOR, ticket.priority),
            "assignee": assignee_id(ticket.assigned_to),
            "tags": tag_names(ticket.tags),
            "subject": ticket.title,
        },
        changes=_changes(env.data.changes),
        updated_at=_moment(ticket.updated_at) or _utc(env.created_at),
    )


def common_view(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """The neutral view of a parsed cStar ticket dict (snake_case keys), as `parse` fills it."""
    title = ticket.get("title")
    return {
        "status": neutral_status(VENDOR, ticket.get("status")),
        "priority": neutral_priority(VENDOR, ticket.get("priority")),
        "assignee": assignee_id(ticket.get("assigned_to")),
        "tags": tag_names(ticket.get("tags")),
        "subject": title if isinstance(title, str) else None,
    }


def _moment(value: str | None) -> datetime | None:
    """The ticket's `updated_at` as a date-time; None when absent or unreadable.

    An unreadable value is not an error: the envelope's time orders the event instead.
    """
    if not value:
        return None
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _utc(moment: datetime) -> datetime:
    # A time without a zone is read as UTC, so order keys always compare.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _validate(body: bytes) -> Envelope:
    env = validate_json(Envelope, body)
    # Ids are checked by their type; the event type also reaches Redis (a counter's name).
    checked(env.type, "type")
    return env


def assignee_id(value: Any) -> str | None:
    """The agent id of an `assigned_to` value: an id, an object with `id`, or null."""
    if isinstance(value, Mapping):
        value = value.get("id")
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)
    return None


def tag_names(value: Any) -> list[str] | None:
    """Tags as a list of strings (objects give their `name`); None when the payload has none."""
    if not isinstance(value, list):
        return None
    names: list[str] = []
    for item in value:
        if isinstance(item, Mapping):
            item = item.get("name") or item.get("id")
        if isinstance(item, str) and item:
            names.append(item)
    return names


#: The flat-payload root keys that stand in for the ticket, by ticket field.
_FLAT_KEYS: Mapping[str, str] = {
    "id": "ticket_id",
    "title": "ticket_title",
    "status": "ticket_status",
    "priority": "ticket_priority",
}


def _flat_ticket(env: Envelope) -> Ticket | None:
    extra = env.model_extra or {}
    if extra.get("ticket_id") is None:
        return None
    try:
        return Ticket.model_validate({name: extra.get(key) for name, key in _FLAT_KEYS.items()})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = _FLAT_KEYS.get(str(err["loc"][0]), "ticket_id") if err["loc"] else "ticket_id"
        raise MalformedEvent(err["msg"], field=key) from None


def _changes(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping) or not value:
        return None
    out: dict[str, Any] = {}
    for name, change in value.items():
        # Changes name fields as the ticket does: `assignedTo` is read as `assigned_to`.
        key = _SNAKE.get(str(name), str(name))
        if isinstance(change, Mapping):
            before = _first(change, ("from", "old", "previous", "before"))
            after = _first(change, ("to", "new", "current", "after"))
            out[key] = {"from": before, "to": after}
        else:
            out[key] = {"from": None, "to": change}
    return out


#: camelCase spellings of ticket keys → the snake_case name the parsed ticket uses.
_SNAKE: Mapping[str, str] = {
    alias: name
    for name, info in Ticket.model_fields.items()
    if isinstance(info.validation_alias, AliasChoices)
    for alias in info.validation_alias.choices
    if isinstance(alias, str) and alias != name
}


def _first(change: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((change[k] for k in keys if k in change), None)
