"""Error answers' shared parts: HTTP reason phrases and the compact JSON response."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web


def phrase(status: int) -> str:
    """The HTTP reason phrase of `status` (`Error` for a status HTTP does not name)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


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
