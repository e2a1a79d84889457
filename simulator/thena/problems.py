"""API errors of the Thena simulator: `ApiError`, its two renderings, and the errors of requests
no route serves.

Thena documents no error body, so two plausible ones are offered: `nest` (the default,
`{statusCode, message, error}` as NestJS services answer) and `envelope` (the success envelope
turned around: `{status: false, message, timestamp, code}`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.common.gateway import RoutingErrors
from simulator.common.problems import error_response, phrase


class ApiError(Exception):
    """An error answer: HTTP status, a message that says what to fix, extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    @classmethod
    def for_status(cls, status: int, message: str | None = None) -> ApiError:
        """An error for a bare HTTP status (scripted faults)."""
        return cls(status, message or f"simulated {status} {phrase(status)}")


def bad_request(field: str, message: str) -> ApiError:
    """400 whose message starts with the offending field."""
    return ApiError(400, f"{field}: {message}", field=field)


def not_found(message: str) -> ApiError:
    """404."""
    return ApiError(404, message)


def render(err: ApiError, *, error_format: str, timestamp: str) -> web.Response:
    """The HTTP response for `err` in the configured format."""
    body: dict[str, Any]
    if error_format == "envelope":
        code = phrase(err.status).lower().replace(" ", "_").replace("-", "_")
        body = {"status": False, "message": err.message, "timestamp": timestamp, "code": code}
    else:
        body = {"statusCode": err.status, "message": err.message, "error": phrase(err.status)}
    return error_response(err.status, body, err.headers)


#: The errors of a request no route serves.
ROUTING_ERRORS = RoutingErrors(
    not_allowed=lambda message, allow: ApiError(405, message, headers=allow),
    not_found=lambda request: ApiError(404, f"Cannot {request.method} {request.path}"),
    other=ApiError.for_status,
)
