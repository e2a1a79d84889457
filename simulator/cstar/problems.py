"""API errors: `ApiError`, its two renderings (the current envelope, the older legacy shape), and
the errors of requests no route serves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from simulator.common.clock import iso
from simulator.common.gateway import RoutingErrors
from simulator.common.problems import CodedError, error_response

DOC_URL = "https://www.cstar.help/developers/errors"
#: `doc_url` by status where the bulk page shows one: its 401 and 403 link to the API
#: reference's authentication section, its 429 to the rate-limiting one.
DOC_URLS = {
    401: "https://www.cstar.help/developers/api-reference#authentication",
    403: "https://www.cstar.help/developers/api-reference#authentication",
    429: "https://www.cstar.help/developers/api-reference#rate-limiting",
}

#: Error `type` for each status, as the error reference names them (403 as the bulk page shows).
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "authorization_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
}
#: The code used when only an HTTP status is known (scripted faults, routing).
CODE_FOR_STATUS = {
    400: "parameter_invalid",
    401: "authentication_required",
    403: "insufficient_permissions",
    404: "resource_missing",
    405: "method_not_allowed",
    409: "idempotency_conflict",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}
#: Upper-case codes of the legacy shape.
LEGACY_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    429: "RATE_LIMITED",
}


class ApiError(CodedError):
    """A cStar error answer; `field` is the error's `param`."""

    codes = CODE_FOR_STATUS


def invalid(param: str, message: str) -> ApiError:
    """400 `parameter_invalid` naming the parameter."""
    return ApiError(400, "parameter_invalid", f"{param}: {message}", field=param)


def missing(param: str) -> ApiError:
    """400 `parameter_missing` naming the parameter."""
    return ApiError(400, "parameter_missing", f"{param}: is required", field=param)


def not_found(what: str, ident: str) -> ApiError:
    """404 `resource_missing`."""
    return ApiError(404, "resource_missing", f"No such {what}: {ident!r}")


def render(
    err: ApiError,
    request_id: str,
    now: datetime,
    *,
    legacy: bool,
    retry_after_in: tuple[str, ...],
) -> web.Response:
    """The HTTP response for `err`; `X-Request-Id` and rate-limit headers are added by the caller."""
    headers = dict(err.headers)
    message = err.message
    if err.retry_after is not None:
        if "header" in retry_after_in:
            headers["Retry-After"] = str(err.retry_after)
        if "message" in retry_after_in:
            message = f"{message}. Try again in {err.retry_after} seconds"
    body: dict[str, Any]
    if legacy:
        body = {
            "error": {"code": LEGACY_CODES.get(err.status, err.code.upper()), "message": message}
        }
        if err.retry_after is not None and "body" in retry_after_in:
            body["retryAfter"] = err.retry_after
    else:
        error: dict[str, Any] = {
            "type": TYPES.get(err.status, "api_error"),
            "code": err.code,
            "message": message,
        }
        if err.field is not None:
            error["param"] = err.field
        if err.retry_after is not None and "body" in retry_after_in:
            error["retryAfter"] = err.retry_after
        error["doc_url"] = DOC_URLS.get(err.status, f"{DOC_URL}#{err.code}")
        error["request_id"] = request_id
        body = {"success": False, "error": error, "meta": {"timestamp": iso(now)}}
    return error_response(err.status, body, headers)


#: The errors of a request no route serves.
ROUTING_ERRORS = RoutingErrors(
    not_allowed=lambda message, allow: ApiError(405, "method_not_allowed", message, headers=allow),
    not_found=lambda request: ApiError(404, "route_not_found", f"no route for {request.path}"),
    other=ApiError.for_status,
)
