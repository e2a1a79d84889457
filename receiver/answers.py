"""The receiver's error answers: one JSON shape, and `Retry-After` on every 5xx."""

from __future__ import annotations

from aiohttp import web

#: How long a sender should wait before retrying when the receiver could not take the event.
RETRY_AFTER_S = 5


def error(status: int, code: str, detail: str, **headers: str) -> web.Response:
    """A JSON error answer `{"error", "detail"}`; a 5xx always says when to retry."""
    if status >= 500:
        headers.setdefault("Retry-After", str(RETRY_AFTER_S))
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)
