"""What every helpdesk's error reader does alike: decode the body, quote it, pick the error class.

Each vendor's `problems.py` reads its own body shapes into a `Reading` (a code, a detail and a
request id) and builds its reader as `ErrorBodies`, which decodes the body and hands the reading to
`http_error`; a body no reader understands is quoted by `unreadable_detail`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

from ticketwire.errors import (
    ClientError,
    Forbidden,
    HelpdeskHTTPError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)
from ticketwire.vendors.http import header

#: Seconds to wait after a 429 that says nothing about when to come back.
DEFAULT_RETRY_AFTER = 60.0
#: Longest body excerpt quoted in an error message.
SNIPPET_CHARS = 200
#: Longest body text kept on the error for logs and the dead-letter list.
BODY_CHARS = 2000

#: What anchors a helpdesk's wait after a 429 (a datetime, or unix seconds).
Now = TypeVar("Now")


def decode(body: bytes) -> tuple[str, dict[str, Any] | None]:
    """The body as text, and as a JSON object when it is one."""
    text = body.decode("utf-8", errors="replace")
    return text, json_object(text)


def json_object(text: str) -> dict[str, Any] | None:
    """`text` parsed as JSON when that gives an object; None for anything else."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def flat(text: str) -> str:
    """`text` on one line, each run of white space one blank."""
    return " ".join(text.split())


def snippet(text: str) -> str:
    """`text` on one line, cut to `SNIPPET_CHARS` with an ellipsis when longer."""
    shown = flat(text)
    return shown if len(shown) <= SNIPPET_CHARS else shown[: SNIPPET_CHARS - 1] + "…"


def unreadable_detail(headers: Mapping[str, str], text: str) -> str:
    """The detail of a body no reader understood: its content type and a snippet of it."""
    kind = header(headers, "Content-Type") or "no content type"
    shown = snippet(text)
    return f"unexpected {kind} response: {shown}" if shown else "empty response body"


def scalar_text(value: Any) -> str | None:
    """A JSON scalar as text; None for null, an empty string, an object or a list."""
    if value is None or isinstance(value, Mapping | list):
        return None
    text = value if isinstance(value, str) else str(value)
    return text or None


def advised(status: int, detail: str | None, *, server: str, redirect: str, other: str) -> str:
    """`detail` followed by the advice for `status`: `server` for a 5xx, `redirect` for a 3xx."""
    if status >= 500:
        advice = server
    elif 300 <= status < 400:
        advice = redirect
    else:
        advice = other
    parts = [p for p in (detail, advice) if p]
    return "; ".join(parts) or f"HTTP {status}"


def parse_retry_after(value: str, *, now: datetime | None = None) -> float | None:
    """Read a `Retry-After` value: delta-seconds or an HTTP-date; None if it is neither."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # A negative or non-finite delay is as good as none; fall back to the next source.
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def header_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds the `Retry-After` header asks for; None when it is absent or unreadable."""
    value = header(headers, "Retry-After")
    return None if value is None else parse_retry_after(value, now=now)


def body_retry_after(place: Mapping[str, Any], *, now: datetime | None = None) -> float | None:
    """Seconds a body's `retryAfter` (or `retry_after`) asks for: a number or a `Retry-After` text."""
    for key in ("retryAfter", "retry_after"):
        value = place.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value >= 0:
                return float(value)
        elif isinstance(value, str):
            parsed = parse_retry_after(value, now=now)
            if parsed is not None:
                return parsed
    return None


def class_for(status: int) -> type[HelpdeskHTTPError]:
    """The error class of a non-2xx status."""
    exact: dict[int, type[HelpdeskHTTPError]] = {
        401: Unauthorized,
        403: Forbidden,
        404: NotFound,
    }
    if status in exact:
        return exact[status]
    if 400 <= status < 500:
        return ClientError
    if status >= 500:
        return ServerError
    return HelpdeskHTTPError


def http_error(
    status: int,
    text: str,
    *,
    code: str | None,
    detail: str,
    request_id: str | None,
    retry_after: Callable[[], float],
) -> HelpdeskHTTPError:
    """The error of a non-2xx answer; a 429 says how long to wait, as `retry_after` reads it."""
    kept = text[:BODY_CHARS] or None
    if status == 429:
        seconds = retry_after()
        return RateLimited(
            status,
            retry_after=seconds,
            code=code,
            detail=f"{detail}; retry after {seconds:g}s",
            request_id=request_id,
            body=kept,
        )
    return class_for(status)(status, code=code, detail=detail, request_id=request_id, body=kept)


@dataclass(frozen=True)
class Reading:
    """What an error body says: its code, its detail, and the request id the answer names."""

    code: str | None
    detail: str | None
    request_id: str | None


@dataclass(frozen=True)
class ErrorBodies(Generic[Now]):
    """A helpdesk's error reader: its reading of bodies, its advice and its wait after a 429."""

    #: The answer's headers, body text and JSON object (None when not one) as a `Reading`.
    read: Callable[[Mapping[str, str], str, dict[str, Any] | None], Reading]
    #: What to do about an error that is neither a 5xx nor a 3xx, by status and code.
    advice: Callable[[int, str | None], str]
    #: Seconds to wait after a 429, from the headers, the JSON body and `now`.
    retry_after: Callable[[Mapping[str, str], dict[str, Any] | None, Now | None], float]
    #: What to do about a 5xx.
    server: str
    #: What to do about a 3xx.
    redirect: str

    def __call__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        request_id: str | None = None,
        now: Now | None = None,
    ) -> HelpdeskHTTPError:
        """Build the error for a non-2xx answer; `request_id` is used when the answer names none."""
        text, doc = decode(body)
        reading = self.read(headers, text, doc)
        detail = advised(
            status,
            reading.detail,
            server=self.server,
            redirect=self.redirect,
            other=self.advice(status, reading.code),
        )
        return http_error(
            status,
            text,
            code=reading.code,
            detail=detail,
            request_id=reading.request_id or request_id,
            retry_after=lambda: self.retry_after(headers, doc, now),
        )
