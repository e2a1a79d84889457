"""The webhook emitter: signed deliveries off the request path, retries on the simulated clock,
per-ticket ordering, fault knobs, and a delivery log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Unpack

from simulator.common import webhooks as shared
from simulator.common.clock import iso
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, sign

USER_AGENT = "InboxOps-Webhooks/1.0"
EVENTS: tuple[str, ...] = (
    "ticket.created",
    "ticket.updated",
    "ticket.assigned",
    "ticket.status_changed",
    "ticket.closed",
)


def envelope(
    event: str, event_id: str, workspace_id: str, created_at: datetime, ticket: dict[str, Any]
) -> dict[str, Any]:
    """A delivery's envelope: `{event, event_id, tenant_id, created_at, data}`, in that order."""
    return {
        "event": event,
        "event_id": event_id,
        "tenant_id": workspace_id,
        "created_at": iso(created_at),
        "data": ticket,
    }


#: The body as InboxOps sends it: the shared shared.compact JSON.
encode = shared.compact


@dataclass
class Endpoint(shared.EndpointBase):
    """A webhook endpoint of one workspace; an empty `events` list subscribes to every event."""

    workspace_id: str = field(kw_only=True)

    json_fields = ("id", "workspace_id", "url", "events", "enabled")


Delivery = shared.Delivery[Endpoint]


def retry_schedule(max_attempts: int, retry_base: float) -> tuple[float, ...]:
    """The plan's schedule: 1, 2, 4, 8 … minutes (times the base), one wait per retry."""
    return tuple(retry_base * 2**retry for retry in range(max_attempts - 1))


class WebhookEmitter(shared.WebhookEmitterBase[Delivery]):
    """Queues each event, signed with the endpoint's secret, per (endpoint, ticket); retries
    with doubling waits."""

    user_agent = USER_AGENT
    endpoint_type = Endpoint
    tenant_field = "workspace_id"
    known_events = EVENTS
    endpoints: dict[str, Endpoint]

    def __init__(
        self,
        *,
        max_attempts: int,
        retry_base: float,
        signature_prefix: Callable[[], bool],
        **options: Unpack[shared.EmitterOptions],
    ) -> None:
        super().__init__(retry_schedule=retry_schedule(max_attempts, retry_base), **options)
        self._prefix = signature_prefix

    # ------------------------------------------------------------- emitting

    def emit(
        self,
        workspace_id: str,
        event: str,
        event_id: str,
        created_at: datetime,
        ticket: dict[str, Any],
    ) -> None:
        """Queue `event` for every endpoint that wants it; returns at once (never sends inline)."""
        body = shared.compact(envelope(event, event_id, workspace_id, created_at, ticket))
        for ep in self._targets(event, lambda ep: ep.workspace_id == workspace_id):
            self._queue(Delivery(ep, event, event_id, str(ticket["id"]), body))

    def _sign(self, d: Delivery, bad: bool) -> shared.Signed:
        secret = d.endpoint.secret.reveal()
        signature = sign(d.body, secret + "-not-the-secret" if bad else secret)
        if self._prefix():
            signature = "sha256=" + signature
        return shared.Signed({SIGNATURE_HEADER: signature})
