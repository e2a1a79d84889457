"""The webhook emitter: signed deliveries off the request path, cStar's retry schedule on the
simulated clock, per-ticket ordering, fault knobs, and a delivery log."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Unpack

from simulator.common import webhooks as shared
from simulator.common.clock import iso
from simulator.cstar.faults import Faults
from ticketwire.vendors.cstar.models import TICKET_EVENTS
from ticketwire.vendors.cstar.webhook import sign, sign_legacy

USER_AGENT = "cStar-Webhooks/1.0"


def envelope(
    team_id: str,
    event: str,
    event_id: str,
    created_at: datetime,
    ticket: dict[str, Any],
    customer: dict[str, Any] | None,
    *,
    changes: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    flat: bool = False,
) -> dict[str, Any]:
    """A delivery's envelope `{id, type, created_at, team_id, data}`; `flat` adds the flat copies."""
    data: dict[str, Any] = {"ticket": ticket, "customer": customer}
    if event == "ticket.updated":
        data["changes"] = changes
    if event == "ticket.message_added" and message is not None:
        data["message"] = message
    doc: dict[str, Any] = {
        "id": event_id,
        "type": event,
        "created_at": iso(created_at),
        "team_id": team_id,
        "data": data,
    }
    if flat:
        who = customer or {}
        doc.update(
            ticket_id=ticket["id"],
            ticket_title=ticket.get("title"),
            ticket_status=ticket.get("status"),
            ticket_priority=ticket.get("priority"),
            customer_name=who.get("name"),
            customer_email=who.get("email"),
        )
    return doc


@dataclass
class Endpoint(shared.EndpointBase):
    """A webhook (`whk_…`) of one team; no events, `*` or `ticket.*` subscribe to many."""

    team_id: str = field(kw_only=True)

    def wants(self, event: str) -> bool:
        """True when this endpoint receives `event`."""
        if not self.enabled:
            return False
        if not self.events:
            return True
        family = event.split(".", 1)[0] + ".*"
        return any(e in ("*", event, family) for e in self.events)

    def to_json(self) -> dict[str, Any]:
        """The endpoint without its secret."""
        return {
            "id": self.id,
            "object": "webhook",
            "team_id": self.team_id,
            "url": self.url,
            "events": list(self.events),
            "isActive": self.enabled,
        }


@dataclass(frozen=True)
class DeliveryRecord(shared.DeliveryRecord):
    """One delivery attempt as the log keeps it, with what its signature said about time."""

    #: The `t` the attempt was signed with (real unix seconds; None for legacy signatures).
    signed_at: int | None = None
    stale_timestamp: bool = False

    #: cStar's key order: `delivered_at` last.
    json_fields = (
        "endpoint_id",
        "event",
        "event_id",
        "ticket_id",
        "attempt",
        "status",
        "error",
        "succeeded",
        "signed_at",
        "failed",
        "duplicate",
        "bad_signature",
        "stale_timestamp",
        "response_snippet",
        "delivered_at",
    )


@dataclass
class Delivery(shared.Delivery[Endpoint]):
    """A delivery that also carries the API request which caused it."""

    request_id: str = ""


@dataclass(frozen=True)
class Signing:
    """How attempts are signed right now (read from the settings at every attempt)."""

    mode: str
    header: str


class WebhookEmitter(shared.WebhookEmitterBase[Delivery]):
    """Queues events per (endpoint, ticket) and delivers them in the background."""

    user_agent = USER_AGENT
    endpoint_type = Endpoint
    tenant_field = "team_id"
    known_events = TICKET_EVENTS
    patterns_named = ", *, ticket.*"
    endpoints: dict[str, Endpoint]
    log: deque[DeliveryRecord]
    _faults: Faults

    def __init__(
        self,
        *,
        retry_schedule: tuple[float, ...],
        signing: Callable[[], Signing],
        wall: Callable[[], float] = time.time,
        **options: Unpack[shared.EmitterOptions],
    ) -> None:
        super().__init__(retry_schedule=retry_schedule, **options)
        self._signing = signing
        self._wall = wall

    # ------------------------------------------------------------- endpoints

    def add_endpoint(self, new_id: Callable[[], str], *args: Any, **options: Any) -> Endpoint:
        """Register an endpoint as the base does, its id drawn before the checks."""
        # A refused registration has always used up an id; later ids stay as they were.
        endpoint_id = new_id()
        endpoint: Endpoint = super().add_endpoint(lambda: endpoint_id, *args, **options)
        return endpoint

    def _is_pattern(self, event: str) -> bool:
        return event == "*" or event.endswith(".*")

    # ------------------------------------------------------------- emitting

    def emit(
        self,
        team_id: str,
        event: str,
        event_id: str,
        envelope: dict[str, Any],
        *,
        ticket_id: str,
        request_id: str,
    ) -> None:
        """Queue `envelope` for every endpoint that wants `event`; never sends inline."""
        body = shared.compact(envelope)
        for ep in self._targets(event, lambda ep: ep.team_id == team_id):
            self._queue(Delivery(ep, event, event_id, ticket_id, body, request_id=request_id))

    def _sign(self, d: Delivery, bad: bool) -> shared.Signed:
        secret = d.endpoint.secret.reveal()
        if bad:
            secret += "-not-the-secret"
        signing = self._signing()
        stale_by = self._faults.take_stale() if signing.mode == "v1" else 0.0
        # `t` is real unix time, not simulated: receivers check it against their own clock.
        signed_at = int(self._wall() - stale_by)
        if signing.mode == "v1":
            signature = sign(d.body, secret, signed_at)
        else:
            signature = sign_legacy(d.body, secret)
        headers = {
            signing.header: signature,
            "X-Event-Type": d.event,
            "X-Event-ID": d.event_id,
            "X-Webhook-ID": d.endpoint.id,
            "X-Timestamp": iso(datetime.fromtimestamp(signed_at, UTC)),
            "X-Delivery-Attempt": str(d.attempts),
            "x-cstar-request-id": d.request_id,
        }
        return shared.Signed(headers, signed_at if signing.mode == "v1" else None, stale_by != 0)

    def _timeout_error(self) -> str:
        return f"no response within the {self._timeout.total:g}s budget"

    def _record(
        self,
        d: Delivery,
        answer: shared.Answer,
        sent_at: datetime,
        last: bool,
        bad: bool,
        signed: shared.Signed,
    ) -> DeliveryRecord:
        shared = super()._record(d, answer, sent_at, last, bad, signed)
        return DeliveryRecord(
            **vars(shared), signed_at=signed.signed_at, stale_timestamp=signed.stale
        )
