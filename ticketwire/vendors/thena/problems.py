"""Turn a Thena error response into the error tree (pure, no I/O).

Thena documents no error body. Any JSON object is read leniently: the text from `message` (a
string, or a list of strings as NestJS validation sends), else `error`, else `detail`; the code
from `code` (or `error` when `message` carried the text); `statusCode` is ignored in favour of the
real HTTP status. Anything else (HTML from a proxy, plain text, an empty body) becomes a snippet.

A 429 waits `Retry-After` (seconds or an HTTP date), else until `X-RateLimit-Reset` (unix seconds;
a small number is taken as seconds to wait), else 60 seconds.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ticketwire.errors import (
    ClientError,
    Forbidden,
    HelpdeskHTTPError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)

#: Seconds to wait after a 429 that says nothing about when to come back.
DEFAULT_RETRY_AFTER = 60.0
#: Longest body excerpt quoted in an error message.
SNIPPET_CHARS = 200
#: Longest body text kept on the error for logs and the dead-letter list.
BODY_CHARS = 2000
#: An `X-RateLimit-Reset` below this is a number of seconds to wait, not a unix time.
_EPOCH_FLOOR = 1_000_000_000

_ADVICE: dict[int, str] = {
    400: "fix the request: Thena rejected a parameter or body field",
    401: (
        "check THENA_API_KEY (and, with THENA_AUTH=bearer, THENA_ORG_ID): the key or token is "
        "missing, wrong or expired"
    ),
    403: "the key's user may not do this (team membership or organisation permissions)",
    404: "check the id: it does not exist in this organisation",
    405: "the endpoint does not accept this method",
    409: "the change conflicts with existing data",
}
_SERVER_ADVICE = "Thena failed to handle the request; it is safe to retry later"


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    request_id: str | None = None,
    now: float | None = None,
) -> HelpdeskHTTPError:
    """Build the error for a non-2xx answer; `now` (unix seconds) anchors reset times."""
    text = body.decode("utf-8", errors="replace")
    doc = _json_object(text)
    code: str | None = None
    if doc is not None:
        message = _message(doc.get("message"))
        error = _str(doc.get("error"))
        detail = message or error or _str(doc.get("detail"))
        code = _str(doc.get("code"))
        if code is None and message and error and error != message:
            code = error
    else:
        kind = _header(headers, "Content-Type") or "no content type"
        snippet = _snippet(text)
        detail = f"unexpected {kind} response: {snippet}" if snippet else "empty response body"
    rid = _header(headers, "X-Request-Id") or request_id
    detail = _advise(status, detail)
    kept = text[:BODY_CHARS] or None
    if status == 429:
        retry_after = retry_after_from(headers, now=now)
        return RateLimited(
            status,
            retry_after=retry_after,
            code=code,
            detail=f"{detail}; retry after {retry_after:g}s",
            request_id=rid,
            body=kept,
        )
    return _class_for(status)(status, code=code, detail=detail, request_id=rid, body=kept)


def retry_after_from(headers: Mapping[str, str], *, now: float | None = None) -> float:
    """Seconds to wait after a 429: `Retry-After`, else `X-RateLimit-Reset`, else 60."""
    moment = time.time() if now is None else now
    header = _header(headers, "Retry-After")
    if header is not None:
        parsed = _retry_after(header, moment)
        if parsed is not None:
            return parsed
    reset = _header(headers, "X-RateLimit-Reset")
    if reset is not None:
        try:
            value = float(reset.strip())
        except ValueError:
            value = -1.0
        if 0 <= value < float("inf"):
            return max(0.0, value - moment) if value >= _EPOCH_FLOOR else value
    return DEFAULT_RETRY_AFTER


def _retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.fromtimestamp(now, UTC)).total_seconds())


def _class_for(status: int) -> type[HelpdeskHTTPError]:
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


def _advise(status: int, detail: str | None) -> str:
    if status >= 500:
        advice = _SERVER_ADVICE
    elif 300 <= status < 400:
        advice = "Thena redirected the request; set THENA_API_URL to the final origin"
    else:
        advice = _ADVICE.get(status, "")
    parts = [p for p in (detail, advice) if p]
    return "; ".join(parts) or f"HTTP {status}"


def _message(value: Any) -> str | None:
    if isinstance(value, list):
        items = [str(v) for v in value if v not in (None, "")]
        return "; ".join(items) or None
    return _str(value)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value or None


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = value if isinstance(value, str) else str(value)
    return text or None


def _snippet(text: str) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"
