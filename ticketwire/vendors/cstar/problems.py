"""Turn a cStar error response into the error tree (pure, no I/O).

Body shapes understood:

- the current envelope `{success: false, error: {type, code, message, param, doc_url,
  request_id}, meta}`;
- the older `{error: {code: "UNAUTHORIZED", message}}` (upper-case codes, no type);
- `{error: "<text>", message}` and anything else (an HTML page from a proxy, an empty body):
  status plus a snippet.

A 429 waits for `Retry-After` when the header is there, else `retryAfter` in the body (inside
`error`, at the top or in `meta`), else the "Try again in N seconds" of the message, else 60 s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
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
from ticketwire.vendors.inboxops.problems import parse_retry_after

#: Seconds to wait after a 429 that says nothing about when to come back.
DEFAULT_RETRY_AFTER = 60.0
SNIPPET_CHARS = 200
BODY_CHARS = 2000
#: Error codes of a bulk item (or a response) that a later retry may fix.
TRANSIENT_CODES = re.compile(r"rate|server|internal|unavailable|timeout|api_error", re.IGNORECASE)

_TRY_AGAIN = re.compile(
    r"try again in\s+(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m)?\b", re.IGNORECASE
)
_KEY_ADVICE = "check CSTAR_API_KEY: the key is missing, malformed, expired or revoked"
_WRITE_ADVICE = (
    "use a secret key (sk_live_… or sk_test_…) in CSTAR_API_KEY; publishable keys (pk_…) are "
    "read-only"
)
_ADVICE_BY_CODE: dict[str, str] = {
    "authentication_required": _KEY_ADVICE,
    "invalid_api_key": "check CSTAR_API_KEY: cStar does not know this key",
    "invalid_key_format": "check CSTAR_API_KEY: expected sk_live_… or sk_test_…",
    "key_expired": "the key has expired; create a new secret key in cStar and set CSTAR_API_KEY",
    # The bulk page gives this one code for "wrong key type or team access".
    "insufficient_permissions": (
        "the key may not do this: CSTAR_API_KEY must be a secret key (sk_live_… or sk_test_…; "
        "publishable keys are read-only) of the team in CSTAR_TEAM_ID"
    ),
    "publishable_key_write": _WRITE_ADVICE,
    "team_access_denied": "check CSTAR_TEAM_ID: this key does not belong to that team",
}
_ADVICE_BY_STATUS: dict[int, str] = {
    400: "fix the request: cStar rejected a parameter or body field",
    401: _KEY_ADVICE,
    403: "the key may not do this; check the key type and CSTAR_TEAM_ID",
    404: "check the id: it does not exist in this team",
    409: "the request conflicts with an earlier one (e.g. an Idempotency-Key reused with "
    "another body)",
}
_SERVER_ADVICE = "cStar failed to handle the request; it is safe to retry later"


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    request_id: str | None = None,
    now: datetime | None = None,
) -> HelpdeskHTTPError:
    """Build the error for a non-2xx answer; `request_id` is used when the answer names none."""
    text = body.decode("utf-8", errors="replace")
    doc = _json_object(text)
    error = doc.get("error") if doc is not None else None
    code: str | None = None
    detail: str | None = None
    rid: str | None = None
    if isinstance(error, Mapping):
        code = _str(error.get("code")) or _str(error.get("type"))
        detail = _str(error.get("message")) or _str(error.get("type"))
        param = _str(error.get("param"))
        if param and detail and not detail.startswith(param):
            detail = f"{param}: {detail}"
        rid = _str(error.get("request_id")) or _str(error.get("requestId"))
    elif doc is not None and (error is not None or "message" in doc):
        code = _str(doc.get("code")) if isinstance(doc.get("code"), str) else None
        detail = _str(doc.get("message")) or _str(error)
    else:
        kind = _header(headers, "Content-Type") or "no content type"
        snippet = _snippet(text)
        detail = f"unexpected {kind} response: {snippet}" if snippet else "empty response body"
    meta = doc.get("meta") if doc is not None else None
    if rid is None and isinstance(meta, Mapping):
        rid = _str(meta.get("requestId")) or _str(meta.get("request_id"))
    rid = rid or _header(headers, "X-Request-Id") or request_id
    detail = _advise(status, code, detail)
    kept = text[:BODY_CHARS] or None
    if status == 429:
        retry_after = retry_after_of(headers, doc, now=now)
        detail = f"{detail}; retry after {retry_after:g}s"
        return RateLimited(
            status, retry_after=retry_after, code=code, detail=detail, request_id=rid, body=kept
        )
    return _class_for(status)(status, code=code, detail=detail, request_id=rid, body=kept)


def retry_after_of(
    headers: Mapping[str, str], doc: Mapping[str, Any] | None, *, now: datetime | None = None
) -> float:
    """Seconds to wait after a 429: header, then body `retryAfter`, then the message, then 60."""
    header = _header(headers, "Retry-After")
    if header is not None:
        parsed = parse_retry_after(header, now=now)
        if parsed is not None:
            return parsed
    if doc is None:
        return DEFAULT_RETRY_AFTER
    error = doc.get("error")
    places = [p for p in (error, doc, doc.get("meta")) if isinstance(p, Mapping)]
    for place in places:
        for key in ("retryAfter", "retry_after"):
            seconds = _seconds(place.get(key), now)
            if seconds is not None:
                return seconds
    for place in places:
        message = place.get("message")
        match = _TRY_AGAIN.search(message) if isinstance(message, str) else None
        if match:
            unit = (match.group(2) or "s").lower()
            return float(match.group(1)) * (60.0 if unit.startswith("m") else 1.0)
    return DEFAULT_RETRY_AFTER


def is_transient(code: str | None) -> bool:
    """True when an error code says rate limit or server trouble (a retry may succeed)."""
    return bool(code) and TRANSIENT_CODES.search(code or "") is not None


def _seconds(value: Any, now: datetime | None) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        return parse_retry_after(value, now=now)
    return None


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


def _advise(status: int, code: str | None, detail: str | None) -> str:
    if status >= 500:
        advice = _SERVER_ADVICE
    elif 300 <= status < 400:
        advice = "cStar redirected the request; set CSTAR_API_URL to the final origin"
    else:
        advice = _ADVICE_BY_CODE.get((code or "").lower()) or _ADVICE_BY_STATUS.get(status, "")
    parts = [p for p in (detail, advice) if p]
    return "; ".join(parts) or f"HTTP {status}"


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
    if value is None or isinstance(value, Mapping | list):
        return None
    text = value if isinstance(value, str) else str(value)
    return text or None


def _snippet(text: str) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"
