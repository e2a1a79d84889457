"""The webhook emitter: platform events off the request path, retries on the simulated clock,
per-ticket ordering, fault knobs, and a delivery log."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Unpack

from simulator.common import webhooks as shared
from simulator.common.clock import iso
from ticketwire.vendors.thena.webhook import SIGNATURE_HEADER, TOKEN_HEADER, sign

USER_AGENT = "Thena-Platform-Events/1.0"
Mode = Literal["token", "hmac"]
TokenScheme = Literal["bearer", "bare"]
#: Events the simulator emits; endpoints may subscribe with these or wildcards (`ticket:*`).
EVENTS: tuple[str, ...] = (
    "ticket:created",
    "ticket:updated",
    "ticket:status:changed",
    "ticket:priority:changed",
    "ticket:assigned",
    "ticket:type:changed",
    "ticket:tag:updated",
)


def envelope(
    org_id: str,
    event: str,
    event_id: str,
    timestamp: datetime,
    payload: dict[str, Any],
    actor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A platform event `{eventId, eventType, timestamp, orgId, actor?, payload}`."""
    doc: dict[str, Any] = {
        "eventId": event_id,
        "eventType": event,
        "timestamp": iso(timestamp),
        "orgId": org_id,
    }
    if actor is not None:
        doc["actor"] = actor
    doc["payload"] = payload
    return doc


@dataclass
class Endpoint(shared.EndpointBase):
    """A webhook endpoint of one organisation; empty `events` subscribes to every event."""

    org_id: str = field(kw_only=True)
    #: `token`: the secret is a static token in `header`; `hmac`: it signs the body.
    mode: Mode = "token"
    header: str = TOKEN_HEADER
    #: How a token is written: `Bearer <token>` or the bare token.
    scheme: TokenScheme = "bearer"
    #: Wrap the event as `{"message": {...}}` (the app-framework shape).
    nested: bool = False

    def wants(self, event: str) -> bool:
        """True when this endpoint receives `event` (patterns may use `*`)."""
        return self.enabled and (
            not self.events or any(fnmatch.fnmatchcase(event, p) for p in self.events)
        )

    json_fields = ("id", "org_id", "url", "events", "mode", "header", "scheme", "nested", "enabled")


Delivery = shared.Delivery[Endpoint]


class WebhookEmitter(shared.WebhookEmitterBase[Delivery]):
    """Queues each platform event per (endpoint, ticket), with a static token or an HMAC
    signature as the endpoint says, nested or flat; retries on Thena's schedule."""

    user_agent = USER_AGENT
    endpoint_type = Endpoint
    tenant_field = "org_id"
    known_events = EVENTS
    secret_word = "webhook token or secret"
    endpoints: dict[str, Endpoint]

    def __init__(
        self,
        *,
        retry_schedule: tuple[float, ...],
        signature_prefix: Callable[[], bool],
        **options: Unpack[shared.EmitterOptions],
    ) -> None:
        super().__init__(retry_schedule=retry_schedule, **options)
        self._prefix = signature_prefix

    # ------------------------------------------------------------- endpoints

    def _endpoint_fields(
        self,
        *,
        mode: str = "token",
        header: str | None = None,
        scheme: str = "bearer",
        nested: bool = False,
    ) -> dict[str, Any]:
        """The endpoint's auth and shape: the secret is the static token (`mode="token"`, sent in
        `header`, default `authorization`, as `Bearer <token>` or bare per `scheme`) or the HMAC
        key (`mode="hmac"`, header default `X-Thena-Signature`); `nested` wraps every event as
        `{"message": {...}}`."""
        if mode not in ("token", "hmac"):
            raise ValueError(f"mode must be 'token' or 'hmac' (got {mode!r})")
        if scheme not in ("bearer", "bare"):
            raise ValueError(f"scheme must be 'bearer' or 'bare' (got {scheme!r})")
        return {
            "mode": "hmac" if mode == "hmac" else "token",
            "header": header or (SIGNATURE_HEADER if mode == "hmac" else TOKEN_HEADER),
            "scheme": "bare" if scheme == "bare" else "bearer",
            "nested": nested,
        }

    def _is_pattern(self, event: str) -> bool:
        return "*" in event

    # ------------------------------------------------------------- emitting

    def emit(self, envelope: dict[str, Any], ticket_id: str) -> None:
        """Queue a platform event for every endpoint that wants it; never sends inline."""
        event = str(envelope["eventType"])
        flat = shared.compact(envelope)
        nested = b'{"message":' + flat + b"}"
        for ep in self._targets(event, lambda ep: ep.org_id == envelope["orgId"]):
            body = nested if ep.nested else flat
            self._queue(Delivery(ep, event, str(envelope["eventId"]), ticket_id, body))

    def _auth_header(self, ep: Endpoint, body: bytes, bad: bool) -> str:
        secret = ep.secret.reveal() + ("-not-the-secret" if bad else "")
        if ep.mode == "hmac":
            signature = sign(body, secret)
            return "sha256=" + signature if self._prefix() else signature
        return f"Bearer {secret}" if ep.scheme == "bearer" else secret

    def _sign(self, d: Delivery, bad: bool) -> shared.Signed:
        return shared.Signed({d.endpoint.header: self._auth_header(d.endpoint, d.body, bad)})
