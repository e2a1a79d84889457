"""API errors: the `ApiError` exception, its two renderings (RFC 7807 problem+json, legacy JSON),
and the errors of requests no route serves."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.common.gateway import RoutingErrors
from simulator.common.problems import CodedError, error_response, phrase

PROBLEM_BASE = "https://docs.inboxops.app/api/problems/"
INSTANCE_BASE = PROBLEM_BASE + "instances/"

TITLES = {
    "bad_request": "Bad Request",
    "unauthorized": "Unauthorized",
    "forbidden": "Forbidden",
    "insufficient_scope": "Insufficient Scope",
    "not_found": "Not Found",
    "method_not_allowed": "Method Not Allowed",
    "conflict": "Conflict",
    "idempotency_conflict": "Idempotency Conflict",
    "rate_limit_exceeded": "Too Many Requests",
    "internal_error": "Internal Server Error",
    "service_unavailable": "Service Unavailable",
}

#: The code used when only an HTTP status is known (scripted faults).
CODE_FOR_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    429: "rate_limit_exceeded",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(CodedError):
    """An InboxOps error answer; a retry wait is also its `Retry-After` header."""

    codes = CODE_FOR_STATUS

    @staticmethod
    def _code_of(reason: str) -> str:
        return reason.lower().replace(" ", "_").replace("-", "_")


def bad_request(field: str, detail: str) -> ApiError:
    """400 `bad_request` whose detail starts with the offending field or parameter."""
    return ApiError(400, "bad_request", f"{field}: {detail}", field=field)


def not_found(detail: str, field: str | None = None) -> ApiError:
    """404 `not_found`."""
    return ApiError(404, "not_found", detail, field=field)


def render(err: ApiError, request_id: str, *, legacy: bool) -> web.Response:
    """The HTTP response for `err`; `X-Request-Id` is added by the middleware."""
    if legacy:
        body: dict[str, Any] = {
            "error": phrase(err.status),
            "message": err.message,
            "code": err.status,
        }
        if err.field is not None:
            # As the pages show it, `{"field": "email", "message": "Invalid email format"}`:
            # the message does not repeat the field.
            reason = err.message.removeprefix(f"{err.field}: ")
            body["details"] = [{"field": err.field, "message": reason}]
        if err.retry_after is not None:
            body["retryAfter"] = err.retry_after
        content_type = "application/json"
    else:
        body = {
            "type": PROBLEM_BASE + err.code,
            "title": TITLES.get(err.code, phrase(err.status)),
            "status": err.status,
            "detail": err.message,
            "code": err.code,
            "instance": INSTANCE_BASE + request_id,
        }
        content_type = "application/problem+json"
    headers = dict(err.headers)
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    return error_response(err.status, body, headers, content_type)


#: The errors of a request no route serves.
ROUTING_ERRORS = RoutingErrors(
    not_allowed=lambda message, allow: ApiError(405, "method_not_allowed", message, headers=allow),
    not_found=lambda request: ApiError(404, "not_found", f"no route for {request.path}"),
    other=ApiError.for_status,
)
