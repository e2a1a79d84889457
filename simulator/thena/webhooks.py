"""The webhook emitter: platform events off the request path, retries on the simulated clock,
per-ticket ordering, fault knobs, and a delivery log."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import aiohttp

from simulator.common.clock import Clock, IdSource, iso
from simulator.common.delivery import DeliveryRun, OrderedDelivery
from simulator.thena.faults import Faults
from ticketwire.secret import Secret
from ticketwire.vendors.thena.webhook import SIGNATURE_HEADER, TOKEN_HEADER, sign

log = logging.getLogger("simulator.thena.webhooks")
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
class Endpoint:
    """A webhook endpoint of one organisation; empty `events` subscribes to every event."""

    id: str
    org_id: str
    url: str
    secret: Secret
    events: tuple[str, ...] = ()
    #: `token`: the secret is a static token in `header`; `hmac`: it signs the body.
    mode: Mode = "token"
    header: str = TOKEN_HEADER
    #: How a token is written: `Bearer <token>` or the bare token.
    scheme: TokenScheme = "bearer"
    #: Wrap the event as `{"message": {...}}` (the app-framework shape).
    nested: bool = False
    enabled: bool = True

    def wants(self, event: str) -> bool:
        """True when this endpoint receives `event` (patterns may use `*`)."""
        return self.enabled and (
            not self.events or any(fnmatch.fnmatchcase(event, p) for p in self.events)
        )

    def to_json(self) -> dict[str, Any]:
        """The endpoint without its secret."""
        return {
            "id": self.id,
            "org_id": self.org_id,
            "url": self.url,
            "events": list(self.events),
            "mode": self.mode,
            "header": self.header,
            "scheme": self.scheme,
            "nested": self.nested,
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
        retry_schedule: tuple[float, ...],
        reorder_flush_after: float,
        signature_prefix: Callable[[], bool],
        log_limit: int | None,
    ) -> None:
        self._clock = clock
        self._faults = faults
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._schedule = retry_schedule
        self._flush_after = reorder_flush_after
        self._prefix = signature_prefix
        self.endpoints: dict[str, Endpoint] = {}
        self.log: deque[DeliveryRecord] = deque(maxlen=log_limit)
        self._session: aiohttp.ClientSession | None = None
        self._run = DeliveryRun()
        self._idle: asyncio.Event | None = None

    @property
    def max_attempts(self) -> int:
        """The first attempt plus one retry per entry of the schedule."""
        return len(self._schedule) + 1

    # ------------------------------------------------------------- endpoints

    def add_endpoint(
        self,
        ids: IdSource,
        org_id: str,
        url: str,
        secret: str,
        events: list[str] | tuple[str, ...] | None = None,
        *,
        mode: str = "token",
        header: str | None = None,
        scheme: str = "bearer",
        nested: bool = False,
    ) -> Endpoint:
        """Register an endpoint; unknown event names (without a wildcard) are refused."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https:// (got {url!r})")
        if not secret:
            raise ValueError("webhook token or secret must not be empty")
        if mode not in ("token", "hmac"):
            raise ValueError(f"mode must be 'token' or 'hmac' (got {mode!r})")
        if scheme not in ("bearer", "bare"):
            raise ValueError(f"scheme must be 'bearer' or 'bare' (got {scheme!r})")
        for event in events or ():
            if "*" not in event and event not in EVENTS:
                raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
        ep = Endpoint(
            id=ids.uuid(),
            org_id=org_id,
            url=url,
            secret=Secret(secret),
            events=tuple(events or ()),
            mode="hmac" if mode == "hmac" else "token",
            header=header or (SIGNATURE_HEADER if mode == "hmac" else TOKEN_HEADER),
            scheme="bare" if scheme == "bare" else "bearer",
            nested=nested,
        )
        self.endpoints[ep.id] = ep
        return ep

    # ------------------------------------------------------------- emitting

    def emit(self, envelope: dict[str, Any], ticket_id: str) -> None:
        """Queue a platform event for every endpoint that wants it; never sends inline."""
        event = str(envelope["eventType"])
        targets = [
            ep
            for ep in self.endpoints.values()
            if ep.org_id == envelope["orgId"] and ep.wants(event)
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
        flat = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
        nested = b'{"message":' + flat + b"}"
        for ep in targets:
            body = nested if ep.nested else flat
            delivery = Delivery(ep, event, str(envelope["eventId"]), ticket_id, body)
            self._enqueue(delivery)
            if self._faults.take_duplicate():
                self._enqueue(replace(delivery, duplicate=True))

    def _retry_delay(self, attempts: int) -> float:
        return float(self._schedule[attempts - 1])

    def _auth_header(self, ep: Endpoint, body: bytes, bad: bool) -> str:
        secret = ep.secret.reveal() + ("-not-the-secret" if bad else "")
        if ep.mode == "hmac":
            signature = sign(body, secret)
            return "sha256=" + signature if self._prefix() else signature
        return f"Bearer {secret}" if ep.scheme == "bearer" else secret

    async def _attempt(self, d: Delivery) -> bool:
        d.attempts += 1
        bad = self._faults.take_bad_signature()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            d.endpoint.header: self._auth_header(d.endpoint, d.body, bad),
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
