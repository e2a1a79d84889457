"""Turn a Thena error response into the error tree (pure, no I/O).

Thena documents no error body. Any JSON object is read leniently: the text from `message` (a
string, or a list of strings as NestJS validation sends), else `error`, else `detail`; the code
from `code` (or `error` when `message` carried the text); `statusCode` is ignored in favour of the
real HTTP status. Anything else (HTML from a proxy, plain text, an empty body) becomes a snippet.

A 429 waits `Retry-After` (seconds or an HTTP date), else until `X-RateLimit-Reset` (unix seconds;
a small number is taken as seconds to wait), else 60 seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ticketwire.vendors.http import header
from ticketwire.vendors.problems import (
    DEFAULT_RETRY_AFTER,
    ErrorBodies,
    Reading,
    header_retry_after,
    scalar_text,
    unreadable_detail,
)

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
_REDIRECT_ADVICE = "Thena redirected the request; set THENA_API_URL to the final origin"


def _read(headers: Mapping[str, str], text: str, doc: dict[str, Any] | None) -> Reading:
    code: str | None = None
    if doc is not None:
        message = _message(doc.get("message"))
        error = scalar_text(doc.get("error"))
        detail = message or error or scalar_text(doc.get("detail"))
        code = scalar_text(doc.get("code"))
        if code is None and message and error and error != message:
            code = error
    else:
        detail = unreadable_detail(headers, text)
    return Reading(code, detail, header(headers, "X-Request-Id"))


def _advice(status: int, code: str | None) -> str:
    return _ADVICE.get(status, "")


def retry_after_from(headers: Mapping[str, str], *, now: float | None = None) -> float:
    """Seconds to wait after a 429: `Retry-After`, else `X-RateLimit-Reset`, else 60."""
    moment = time.time() if now is None else now
    parsed = header_retry_after(headers, now=datetime.fromtimestamp(moment, UTC))
    if parsed is not None:
        return parsed
    reset = header(headers, "X-RateLimit-Reset")
    if reset is not None:
        try:
            value = float(reset.strip())
        except ValueError:
            value = -1.0
        if 0 <= value < float("inf"):
            return max(0.0, value - moment) if value >= _EPOCH_FLOOR else value
    return DEFAULT_RETRY_AFTER


def _message(value: Any) -> str | None:
    if isinstance(value, list):
        items = [str(v) for v in value if v not in (None, "")]
        return "; ".join(items) or None
    return scalar_text(value)


#: The error of a non-2xx answer; `now` (unix seconds) anchors reset times.
error_from_response: ErrorBodies[float] = ErrorBodies(
    _read,
    _advice,
    lambda headers, doc, now: retry_after_from(headers, now=now),
    server=_SERVER_ADVICE,
    redirect=_REDIRECT_ADVICE,
)
