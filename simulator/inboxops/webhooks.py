"""The webhook emitter: signed deliveries off the request path, retries on the simulated clock,
per-ticket ordering, fault knobs, and a delivery log."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import aiohttp

from simulator.common.clock import Clock, IdSource, iso
from simulator.common.delivery import DeliveryRun, OrderedDelivery
from simulator.inboxops.faults import Faults
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, sign

log = logging.getLogger("simulator.inboxops.webhooks")
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


def encode(doc: dict[str, Any]) -> bytes:
    """The body as InboxOps sends it: compact JSON, UTF-8."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Endpoint:
    """A webhook endpoint of one workspace; an empty `events` list subscribes to every event."""

    id: str
    workspace_id: str
    url: str
    secret: Secret
    events: tuple[str, ...] = ()
    enabled: bool = True

    def wants(self, event: str) -> bool:
        """True when this endpoint receives `event`."""
        return self.enabled and (not self.events or event in self.events)

    def to_json(self) -> dict[str, Any]:
        """The endpoint without its secret."""
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
        }


@dataclass(frozen=True)
class DeliveryRecord:
    """One delivery attempt as the log keeps it."""

    endpoint_id: str
    event: str
    event_id: str
    ticket_id: str
    attempt: int
    #: HTTP status of the answer, or None when there was none (see `error`).
    status: int | None
    error: str | None
    succeeded: bool
    #: Simulated time the attempt was sent.
    delivered_at: datetime
    #: True on the last attempt of a delivery that never succeeded.
    failed: bool = False
    duplicate: bool = False
    bad_signature: bool = False
    response_snippet: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON form for `GET /_sim/deliveries`."""
        return {
            "endpoint_id": self.endpoint_id,
            "event": self.event,
            "event_id": self.event_id,
            "ticket_id": self.ticket_id,
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
            "succeeded": self.succeeded,
            "delivered_at": iso(self.delivered_at),
            "failed": self.failed,
            "duplicate": self.duplicate,
            "bad_signature": self.bad_signature,
            "response_snippet": self.response_snippet,
        }


@dataclass
class Delivery:
    """One event on its way to one endpoint; `event_id` and `body` never change across retries."""

    endpoint: Endpoint
    event: str
    event_id: str
    ticket_id: str
    body: bytes
    attempts: int = 0
    duplicate: bool = False


class WebhookEmitter(OrderedDelivery[Delivery]):
    """Queues events per (endpoint, ticket) and delivers them in the background."""

    def __init__(
        self,
        *,
        clock: Clock,
        faults: Faults,
        timeout: float,
        max_attempts: int,
        retry_base: float,
        reorder_flush_after: float,
        signature_prefix: Callable[[], bool],
        log_limit: int | None,
    ) -> None:
        self._clock = clock
        self._faults = faults
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_attempts = max_attempts
        self._retry_base = retry_base
        self._flush_after = reorder_flush_after
        self._prefix = signature_prefix
        self.endpoints: dict[str, Endpoint] = {}
        self.log: deque[DeliveryRecord] = deque(maxlen=log_limit)
        self._session: aiohttp.ClientSession | None = None
        self._run = DeliveryRun()
        self._idle: asyncio.Event | None = None

    # ------------------------------------------------------------- endpoints

    def add_endpoint(
        self,
        ids: IdSource,
        workspace_id: str,
        url: str,
        secret: str,
        events: list[str] | tuple[str, ...] | None = None,
        *,
        endpoint_id: str | None = None,
    ) -> Endpoint:
        """Register an endpoint; unknown event names are refused."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https:// (got {url!r})")
        if not secret:
            raise ValueError("webhook secret must not be empty")
        for event in events or ():
            if event not in EVENTS:
                raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
        ep = Endpoint(
            endpoint_id or ids.uuid(), workspace_id, url, Secret(secret), tuple(events or ())
        )
        self.endpoints[ep.id] = ep
        return ep

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
        targets = [
            ep
            for ep in self.endpoints.values()
            if ep.workspace_id == workspace_id and ep.wants(event)
        ]
        if not targets:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "webhook deliveries need a running event loop; change tickets from async code "
                "while endpoints are registered"
            ) from None
        body = encode(envelope(event, event_id, workspace_id, created_at, ticket))
        for ep in targets:
            delivery = Delivery(ep, event, event_id, str(ticket["id"]), body)
            self._enqueue(delivery)
            if self._faults.take_duplicate():
                self._enqueue(replace(delivery, duplicate=True))

    @property
    def max_attempts(self) -> int:
        """Attempts per delivery, the first included."""
        return self._max_attempts

    def _retry_delay(self, attempts: int) -> float:
        # The plan's schedule: 1, 2, 4, 8 … minutes (times the base).
        return float(self._retry_base * 2 ** (attempts - 1))

    async def _attempt(self, d: Delivery) -> bool:
        d.attempts += 1
        secret = d.endpoint.secret.reveal()
        bad = self._faults.take_bad_signature()
        signature = sign(d.body, secret + "-not-the-secret" if bad else secret)
        if self._prefix():
            signature = "sha256=" + signature
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature,
        }
        sent_at = self._clock.now()
        status: int | None = None
        error: str | None = None
        snippet = ""
        try:
            session = self._client()
            async with session.post(
                d.endpoint.url, data=d.body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                snippet = (await resp.content.read(200)).decode("utf-8", "replace")
        except TimeoutError:
            error = f"timeout after {self._timeout.total}s"
        except Exception as exc:  # noqa: BLE001 - any failure to get an answer is a failed attempt
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        last = not ok and d.attempts >= self.max_attempts
        self.log.append(
            DeliveryRecord(
                endpoint_id=d.endpoint.id,
                event=d.event,
                event_id=d.event_id,
                ticket_id=d.ticket_id,
                attempt=d.attempts,
                status=status,
                error=error,
                succeeded=ok,
                delivered_at=sent_at,
                failed=last,
                duplicate=d.duplicate,
                bad_signature=bad,
                response_snippet=snippet,
            )
        )
        if last:
            log.warning(
                "webhook %s %s to %s failed after %d attempts",
                d.event,
                d.event_id,
                d.endpoint.url,
                d.attempts,
            )
        return ok

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session
