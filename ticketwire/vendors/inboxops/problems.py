"""Turn an InboxOps error response into the error tree (pure, no I/O).

Three body shapes are understood:

- RFC 7807 `application/problem+json` `{type, title, status, detail, code, instance}`, which the
  InboxOps guide documents for every `/api/v1` error;
- the `{error, message, code, details}` shape shown on the generated endpoint pages, where `code` is
  the numeric status;
- anything else (an HTML page from a proxy, an empty body, plain text): status plus a snippet.
"""

from __future__ import annotations

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
    unreadable_detail,
)

_ADVICE: dict[int, str] = {
    400: "fix the request: InboxOps rejected a parameter or body field",
    401: "check INBOXOPS_API_KEY: the key is missing, malformed, expired or revoked",
    404: "check the id: it does not exist in the API key's workspace",
    405: "the endpoint does not accept this method",
    409: "the change conflicts with existing data (e.g. a duplicate name)",
}
_FORBIDDEN_ADVICE = (
    "the workspace has no API access (the api_webhooks entitlement); "
    "enable it on the plan or use a key of a workspace that has it"
)
_SCOPE_ADVICE = "the key is read-only; create a read-and-write key under Settings → API"
_SERVER_ADVICE = "InboxOps failed to handle the request; it is safe to retry later"
_REDIRECT_ADVICE = "InboxOps redirected the request; set the base URL to the app's final origin"


def _read(headers: Mapping[str, str], text: str, doc: dict[str, Any] | None) -> Reading:
    title: str | None = None
    detail: str | None = None
    code: str | None = None
    instance_id: str | None = None
    if doc is not None and _is_legacy(doc):
        title = _str(doc.get("error"))
        detail = _str(doc.get("message")) or title
        detail = _with_field_errors(detail, doc.get("details"))
    elif doc is not None and _is_problem(doc):
        title = _str(doc.get("title"))
        code = _str(doc.get("code")) or _last_segment(_str(doc.get("type")))
        detail = _str(doc.get("detail")) or title
        detail = _with_field_errors(
            detail, doc.get("errors") or doc.get("invalid_params") or doc.get("details")
        )
        instance_id = _last_segment(_str(doc.get("instance")))
    else:
        detail = unreadable_detail(headers, text)
    return Reading(code, detail, header(headers, "X-Request-Id") or instance_id)


def _advice(status: int, code: str | None) -> str:
    if status == 403:
        return _SCOPE_ADVICE if code == "insufficient_scope" else _FORBIDDEN_ADVICE
    return _ADVICE.get(status, "")


def _retry_after(
    headers: Mapping[str, str], doc: dict[str, Any] | None, now: datetime | None
) -> float:
    parsed = header_retry_after(headers, now=now)
    if parsed is not None:
        return parsed
    if doc is not None:
        parsed = body_retry_after(doc, now=now)
        if parsed is not None:
            return parsed
    return DEFAULT_RETRY_AFTER


def _with_field_errors(detail: str | None, details: Any) -> str | None:
    """Append `field: message` pairs so a 400 names what to fix."""
    if not isinstance(details, list):
        return detail
    pairs = []
    for item in details:
        if not isinstance(item, dict):
            continue
        field = item.get("field") or item.get("name") or item.get("param") or item.get("pointer")
        message = item.get("message") or item.get("reason") or item.get("detail")
        if field and message and not str(message).startswith(str(field)):
            text = f"{field}: {message}"
        else:
            text = str(message or field or "")
        # Some bodies repeat the detail as the field error; say it once.
        if text and text not in (detail or ""):
            pairs.append(text)
    if not pairs:
        return detail
    listed = "; ".join(pairs)
    return f"{detail} ({listed})" if detail else listed


def _is_legacy(doc: Mapping[str, Any]) -> bool:
    return "error" in doc and "type" not in doc and not isinstance(doc.get("code"), str)


def _is_problem(doc: Mapping[str, Any]) -> bool:
    return any(k in doc for k in ("type", "title", "detail", "code"))


def _last_segment(uri: str | None) -> str | None:
    if not uri:
        return None
    segment = uri.rstrip("/").rsplit("/", 1)[-1]
    return segment if segment and segment != "about:blank" else None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text or None


#: The error of a non-2xx answer. `request_id` is the correlation id the request carried; it is
#: used when the response names none. `now` anchors an HTTP-date `Retry-After` (default: the
#: current time).
error_from_response: ErrorBodies[datetime] = ErrorBodies(
    _read, _advice, _retry_after, server=_SERVER_ADVICE, redirect=_REDIRECT_ADVICE
)
