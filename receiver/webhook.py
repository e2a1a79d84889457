"""`POST /webhooks/<vendor>[/<account>]`: check size, type and coding, verify, parse, store, then answer.

Compressed deliveries: aiohttp decodes `Content-Encoding: gzip` and `deflate` request bodies as
they are read, in bounded steps, and the size limit applies to the decoded body, so a small
compressed bomb is refused with 413 after at most the limit has been decoded. The signature is
checked over the decoded body, the JSON the vendor signed, and that is what is stored. Any other
coding (`br`, `zstd`, `compress`, a list such as `identity, gzip`) is refused with 415 before the
body is read (aiohttp answers `br` and `zstd` with 400 itself when their decoders are not
installed); a body that is not valid data of its declared coding gets 400.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

from aiohttp import hdrs, web
from redis.exceptions import RedisError

from receiver.answers import error
from receiver.intake import Intake, ShuttingDown, UnstorableDelivery
from receiver.logbudget import RefusalLogBudget
from ticketwire.config import Settings
from ticketwire.engine.actions import known_events
from ticketwire.errors import InvalidSignature, MalformedEvent
from ticketwire.eventage import age_over, too_old_reason
from ticketwire.logs import set_log_context
from ticketwire.stored import StoredDelivery
from ticketwire.vendors import WebhookIntake

log = logging.getLogger("ticketwire.receiver")

#: Content codings aiohttp decodes while the body is read ("" and `identity` mean none).
DECODED_CODINGS = ("gzip", "deflate")
_ACCEPTED_CODINGS = frozenset({"", "identity", *DECODED_CODINGS})
#: Refusals of unverified requests listed per route and status every 10 s; the rest are counted.
TRACED_PER_PERIOD = 100


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


@dataclass(frozen=True)
class Limits:
    """What every webhook route refuses beyond: sizes, times and ages, from the settings."""

    max_body_bytes: int
    body_timeout_s: float
    #: 0: no event is refused for its age.
    max_event_age_s: float
    dedupe_window_s: float

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits `settings` set."""
        return cls(
            settings.max_body_bytes,
            settings.body_timeout_s,
            settings.max_event_age_s,
            settings.dedupe_ttl_s,
        )


class WebhookHandler:
    """Handle one vendor's deliveries; the vendor seam does the signature and envelope."""

    def __init__(
        self, vendor: WebhookIntake, intake: Intake, limits: Limits, account: str = "default"
    ) -> None:
        self.vendor = vendor
        self.account = account
        #: How logs name the route: the vendor, and the account when it is not the default.
        self.label = vendor.vendor if account == "default" else f"{vendor.vendor}/{account}"
        self.intake = intake
        self.limits = limits
        self._log_budget = RefusalLogBudget()
        self._trace_budget = RefusalLogBudget(burst=TRACED_PER_PERIOD)
        # The canonical ticket events, plus the vendor's own ones that rules pinned to it may use.
        self.stored_types = frozenset(known_events(vendor.vendor))

    async def __call__(self, request: web.Request) -> web.Response:
        name = self.label
        set_log_context(vendor=self.vendor.vendor, event_id=None, ticket=None)
        if (
            request.content_length is not None
            and request.content_length > self.limits.max_body_bytes
        ):
            # Refuse before reading: the body may be huge and is never needed.
            self._reject(413, "body of %d bytes", request.content_length)
            self._refused(413, "payload_too_large")
            return _unread_rest(request, _too_large(self.limits.max_body_bytes))
        codings = request.headers.getall(hdrs.CONTENT_ENCODING, ())
        if codings and (len(codings) > 1 or codings[0].lower() not in _ACCEPTED_CODINGS):
            shown = ", ".join(codings)[:100]
            self._reject(415, "content encoding %r", shown)
            self._refused(415, "unsupported_content_encoding")
            return error(
                415,
                "unsupported_content_encoding",
                f"Content-Encoding {shown!r} is not accepted; send the body uncompressed, "
                f"or compressed with one of: {', '.join(DECODED_CODINGS)}",
                **{hdrs.ACCEPT_ENCODING: ", ".join(DECODED_CODINGS)},
            )
        try:
            if request.content.is_eof():
                # All of it arrived with the headers (the usual case): nothing to wait for.
                body = await request.read()
            else:
                async with asyncio.timeout(self.limits.body_timeout_s):
                    body = await request.read()
        except TimeoutError:
            # A slow-loris sender: it holds a connection and a handler until cut off.
            self._reject(408, "the body did not arrive within %gs", self.limits.body_timeout_s)
            self._refused(408, "body_timeout")
            answer = error(
                408,
                "body_timeout",
                f"the body did not arrive within {self.limits.body_timeout_s:g}s; send it at once",
            )
            return _unread_rest(request, answer, broken=True)
        except web.HTTPRequestEntityTooLarge:
            self._reject(413, "body over the limit (chunked or decoded)")
            self._refused(413, "payload_too_large")
            return _unread_rest(request, _too_large(self.limits.max_body_bytes))
        except web.RequestPayloadError as exc:
            # Only the payload's coding or framing can be wrong here; the cause names which.
            problem = _payload_problem(exc)
            self._reject(400, "unreadable body: %s", problem)
            self._refused(400, "malformed_body")
            answer = error(400, "malformed_body", f"the body could not be read as sent: {problem}")
            return _unread_rest(request, answer, broken=True)
        except ConnectionResetError:
            log.info("%s: the sender closed the connection before the body arrived", name)
            self._refused(400, "malformed_body")
            return error(400, "malformed_body", "the connection closed before the body arrived")
        # Checked once the body is read (within the limit): a refused request whose body is
        # left unread is drained by aiohttp after the answer, and a broken gzip body there would
        # end in a reset instead of this answer.
        if not _is_json(request.content_type):
            self._reject(415, "content type %r", request.content_type[:100])
            self._refused(415, "unsupported_media_type")
            return error(
                415,
                "unsupported_media_type",
                f"expected Content-Type: application/json, got {request.content_type[:100]!r}",
            )
        try:
            self.vendor.verify(request.headers, body)
        except InvalidSignature as exc:
            self._reject(401, "%s", exc.reason)
            self._refused(401, "invalid_signature")
            return error(401, "invalid_signature", exc.reason)
        try:
            event = self.vendor.inspect(body)
        except MalformedEvent as exc:
            self._reject(400, "%s", exc)
            self._refused(400, "malformed_event")
            return web.json_response(
                {"error": "malformed_event", "detail": str(exc), "field": exc.field}, status=400
            )
        set_log_context(event_id=event.id, ticket=event.ticket_key)
        age = age_over(event.created_at, time.time(), self.limits.max_event_age_s)
        if age is not None:
            reason = too_old_reason(age, self.limits.max_event_age_s, self.limits.dedupe_window_s)
            self._reject(400, "event=%s: %s", event.id, reason)
            self._refused(400, "event_too_old", event.id, event.type, event.ticket_key)
            return error(400, "event_too_old", reason)
        try:
            if event.type not in self.stored_types:
                await self.intake.count_ignored(self.vendor.vendor, event.type)
                log.info("ignored %s %s event=%s: not a ticket event", name, event.type, event.id)
                return web.json_response(
                    {"status": "ignored", "event_id": event.id, "event": event.type}, status=202
                )
            log.info(
                "received %s %s event=%s ticket=%s", name, event.type, event.id, event.ticket_id
            )
            delivery = StoredDelivery(
                vendor=self.vendor.vendor,
                event_id=event.id,
                event_type=event.type,
                ticket_key=event.ticket_key,
                body=body,
                received_ms=int(time.time() * 1000),
                headers={
                    h: value
                    for h in self.vendor.replay_headers
                    if (value := request.headers.get(h)) is not None and _replayable(value)
                },
                account=self.account,
            )
            outcome, entry = await self.intake.store(delivery)
        except UnstorableDelivery as exc:
            self._reject(400, "%s", exc)
            self._refused(400, "malformed_event", event.id, event.type, event.ticket_key)
            return web.json_response(
                {"error": "malformed_event", "detail": str(exc), "field": None}, status=400
            )
        except ShuttingDown as exc:
            self._reject(503, "event=%s not stored: %s", event.id, exc)
            self._refused(503, "shutting_down", event.id, event.type, event.ticket_key)
            response = error(
                503, "shutting_down", "this receiver is stopping; it was not accepted, retry later"
            )
            response.force_close()
            return response
        except (RedisError, OSError, TimeoutError) as exc:
            self._reject(503, "could not store event=%s: %s", event.id, exc)
            # Redis is likely away, so this entry is likely dropped; it is noted all the same.
            self._refused(503, "storage_unavailable", event.id, event.type, event.ticket_key)
            return error(
                503,
                "storage_unavailable",
                "the event could not be stored; it was not accepted, retry later",
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

    def _reject(self, status: int, detail: str, *args: object) -> None:
        """Log a refusal's line, within the route's budget (a flood is counted, not logged)."""
        note = self._log_budget.admit(status)
        if note is not None:
            # A 503 is ours (Redis away), not the sender's: an error, not a warning.
            level = logging.ERROR if status >= 500 else logging.WARNING
            verb = "unavailable" if status >= 500 else "rejected"
            log.log(level, f"{verb} %s %d: {detail}%s", self.label, status, *args, note)

    def _refused(
        self, status: int, reason: str, event_id: str = "", event_type: str = "", ticket: str = ""
    ) -> None:
        """Note a refusal in the deliveries list: what is known of it, never body or headers.

        Only facts of a verified, parsed delivery are noted: an unverified body is anyone's.
        Unverified refusals are noted within a budget: a flood of them, anyone's to send, must
        not push the entries of real deliveries out of the list (the metrics count them all).
        """
        if not event_id and self._trace_budget.admit(status) is None:
            return
        self.intake.refusals.note(
            self.vendor.vendor,
            status,
            reason,
            event_id=event_id,
            event_type=event_type,
            ticket_key=ticket,
            account=self.account,
        )


def _answer(status: int, outcome: str, event_id: str, entry: str) -> web.Response:
    # Encoded by hand: this is every accepted delivery's answer, and json_response's generic
    # path is a measurable share of the receiver's CPU per delivery.
    body = b'{"status":"%s","event_id":%s,"entry":"%s"}' % (
        outcome.encode(),
        json.dumps(event_id).encode(),
        entry.encode(),
    )
    return web.Response(body=body, status=status, content_type="application/json")


def _unread_rest(
    request: web.Request, answer: web.Response, *, broken: bool = False
) -> web.Response:
    """`answer`, after which the rest of the body is not read and the connection closes.

    After an early answer aiohttp drains the unread body. It must not: when the rest is broken
    (it would log the same error again as unhandled), or compressed (it would decode the rest of
    a bomb, CPU spent on a refused request). A plain body is drained as usual, so the sender
    reads the answer rather than a reset.
    """
    coding = request.headers.get(hdrs.CONTENT_ENCODING, "").lower()
    if broken or coding in DECODED_CODINGS:
        request.content.feed_eof()
        answer.force_close()
    return answer


def _replayable(value: str) -> bool:
    # aiohttp keeps bytes that are not UTF-8 as lone surrogates; a replay could not send them.
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _payload_problem(exc: BaseException) -> str:
    # aiohttp's errors carry the words in `message`; str() adds the status and line breaks.
    cause = exc.__cause__ or exc
    text = getattr(cause, "message", None) or str(cause)
    return " ".join(str(text).split())[:200]


def _too_large(limit: int) -> web.Response:
    return error(
        413,
        "payload_too_large",
        f"body exceeds {limit} bytes (raise TICKETWIRE_MAX_BODY if deliveries are legitimately larger)",
    )
