"""`POST /webhooks/<vendor>`: check size and type, verify, parse, store, then answer."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web
from redis.exceptions import RedisError

from receiver.intake import Intake
from ticketwire.engine.actions import known_events
from ticketwire.errors import InvalidSignature, MalformedEvent
from ticketwire.stored import StoredDelivery
from ticketwire.vendors import WebhookIntake

log = logging.getLogger("ticketwire.receiver")

#: How long a sender should wait before retrying when Redis cannot take the event.
RETRY_AFTER_S = 5


def _error(status: int, error: str, detail: str, **headers: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


class WebhookHandler:
    """Handle one vendor's deliveries; the vendor seam does the signature and envelope."""

    def __init__(self, vendor: WebhookIntake, intake: Intake, *, max_body_bytes: int) -> None:
        self.vendor = vendor
        self.intake = intake
        self.max_body_bytes = max_body_bytes
        # The canonical ticket events, plus the vendor's own ones that rules pinned to it may use.
        self.stored_types = frozenset(known_events(vendor.vendor))

    async def __call__(self, request: web.Request) -> web.Response:
        name = self.vendor.vendor
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            # Refuse before reading: the body may be huge and is never needed.
            log.warning("rejected %s 413: body of %d bytes", name, request.content_length)
            return _too_large(self.max_body_bytes)
        if not _is_json(request.content_type):
            log.warning("rejected %s 415: content type %r", name, request.content_type)
            return _error(
                415,
                "unsupported_media_type",
                f"expected Content-Type: application/json, got {request.content_type!r}",
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("rejected %s 413: chunked body over the limit", name)
            return _too_large(self.max_body_bytes)
        try:
            self.vendor.verify(request.headers, body)
        except InvalidSignature as exc:
            log.warning("rejected %s 401: %s", name, exc.reason)
            return _error(401, "invalid_signature", exc.reason)
        try:
            event = self.vendor.inspect(body)
        except MalformedEvent as exc:
            log.warning("rejected %s 400: %s", name, exc)
            return web.json_response(
                {"error": "malformed_event", "detail": str(exc), "field": exc.field}, status=400
            )
        try:
            if event.type not in self.stored_types:
                await self.intake.count_ignored(name, event.type)
                log.info("ignored %s %s event=%s: not a ticket event", name, event.type, event.id)
                return web.json_response(
                    {"status": "ignored", "event_id": event.id, "event": event.type}, status=202
                )
            log.info(
                "received %s %s event=%s ticket=%s", name, event.type, event.id, event.ticket_id
            )
            delivery = StoredDelivery(
                vendor=name,
                event_id=event.id,
                event_type=event.type,
                ticket_key=event.ticket_key,
                body=body,
                received_ms=int(time.time() * 1000),
                headers={
                    h: request.headers[h]
                    for h in self.vendor.replay_headers
                    if h in request.headers
                },
            )
            outcome, entry = await self.intake.store(delivery)
        except (RedisError, OSError, TimeoutError) as exc:
            log.error("unavailable %s 503: could not store event=%s: %s", name, event.id, exc)
            return _error(
                503,
                "storage_unavailable",
                "the event could not be stored; it was not accepted, retry later",
                **{"Retry-After": str(RETRY_AFTER_S)},
            )
        if outcome == "duplicate":
            log.info(
                "duplicate %s %s event=%s ticket=%s: already stored within the dedupe window",
                name,
                event.type,
                event.id,
                event.ticket_id,
            )
            return _answer(200, "duplicate", event.id, "")
        log.info("stored %s event=%s as %s", name, event.id, entry)
        return _answer(202, "stored", event.id, entry)


def _answer(status: int, outcome: str, event_id: str, entry: str) -> web.Response:
    # Encoded by hand: this is every accepted delivery's answer, and json_response's generic
    # path is a measurable share of the receiver's CPU per delivery.
    body = b'{"status":"%s","event_id":%s,"entry":"%s"}' % (
        outcome.encode(),
        json.dumps(event_id).encode(),
        entry.encode(),
    )
    return web.Response(body=body, status=status, content_type="application/json")


def _too_large(limit: int) -> web.Response:
    return _error(
        413,
        "payload_too_large",
        f"body exceeds {limit} bytes (raise TICKETWIRE_MAX_BODY if deliveries are legitimately larger)",
    )
