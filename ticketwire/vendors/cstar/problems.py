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

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ticketwire.vendors.http import header
from ticketwire.vendors.problems import (
    DEFAULT_RETRY_AFTER,
    ErrorBodies,
    Reading,
    body_retry_after,
    header_retry_after,
    scalar_text,
    unreadable_detail,
)

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
_REDIRECT_ADVICE = "cStar redirected the request; set CSTAR_API_URL to the final origin"


def _read(headers: Mapping[str, str], text: str, doc: dict[str, Any] | None) -> Reading:
    error = doc.get("error") if doc is not None else None
    code: str | None = None
    detail: str | None = None
    rid: str | None = None
    if isinstance(error, Mapping):
        code = scalar_text(error.get("code")) or scalar_text(error.get("type"))
        detail = scalar_text(error.get("message")) or scalar_text(error.get("type"))
        param = scalar_text(error.get("param"))
        if param and detail and not detail.startswith(param):
            detail = f"{param}: {detail}"
        rid = scalar_text(error.get("request_id")) or scalar_text(error.get("requestId"))
    elif doc is not None and (error is not None or "message" in doc):
        code = scalar_text(doc.get("code")) if isinstance(doc.get("code"), str) else None
        detail = scalar_text(doc.get("message")) or scalar_text(error)
    else:
        detail = unreadable_detail(headers, text)
    meta = doc.get("meta") if doc is not None else None
    if rid is None and isinstance(meta, Mapping):
        rid = scalar_text(meta.get("requestId")) or scalar_text(meta.get("request_id"))
    return Reading(code, detail, rid or header(headers, "X-Request-Id"))


def retry_after_of(
    headers: Mapping[str, str], doc: Mapping[str, Any] | None, now: datetime | None = None
) -> float:
    """Seconds to wait after a 429: header, then body `retryAfter`, then the message, then 60."""
    parsed = header_retry_after(headers, now=now)
    if parsed is not None:
        return parsed
    if doc is None:
        return DEFAULT_RETRY_AFTER
    error = doc.get("error")
    places = [p for p in (error, doc, doc.get("meta")) if isinstance(p, Mapping)]
    for place in places:
        seconds = body_retry_after(place, now=now)
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


def _advice(status: int, code: str | None) -> str:
    return _ADVICE_BY_CODE.get((code or "").lower()) or _ADVICE_BY_STATUS.get(status, "")


#: The error of a non-2xx answer; `request_id` is used when the answer names none.
error_from_response: ErrorBodies[datetime] = ErrorBodies(
    _read, _advice, retry_after_of, server=_SERVER_ADVICE, redirect=_REDIRECT_ADVICE
)
