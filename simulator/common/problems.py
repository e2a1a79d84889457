"""Error answers' shared parts: HTTP reason phrases, the coded error, the compact JSON response."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar, Self

from aiohttp import web


def phrase(status: int) -> str:
    """The HTTP reason phrase of `status` (`Error` for a status HTTP does not name)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class CodedError(Exception):
    """An error answer with a stable code: HTTP status, code, a message that says what to fix, the
    field at fault, extra headers, and the seconds until a retry may pass (429)."""

    #: The code used when only an HTTP status is known (scripted faults, routing).
    codes: ClassVar[Mapping[int, str]] = {}

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        self.retry_after = retry_after

    @classmethod
    def for_status(
        cls, status: int, message: str | None = None, retry_after: int | None = None
    ) -> Self:
        """An error for a bare HTTP status, with the documented code when there is one."""
        reason = phrase(status)
        code = cls.codes.get(status) or cls._code_of(reason)
        return cls(status, code, message or f"simulated {status} {reason}", retry_after=retry_after)

    @staticmethod
    def _code_of(reason: str) -> str:
        """The code of a status the vendor documents none for, from its reason phrase."""
        return reason.lower().replace(" ", "_")


def error_response(
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    content_type: str = "application/json",
) -> web.Response:
    """An error answer with its body as compact JSON."""
    return web.Response(
        status=status,
        text=json.dumps(body, separators=(",", ":")),
        content_type=content_type,
        headers=headers,
    )
