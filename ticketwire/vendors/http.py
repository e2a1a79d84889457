"""The one network exchange every helpdesk client makes: a timeout, no redirects, clear failures."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ticketwire.errors import HelpdeskUnavailable


@dataclass(frozen=True)
class Exchange:
    """What came back: status, headers, raw body, and how long it took."""

    status: int
    headers: Mapping[str, str]
    raw: bytes
    elapsed_ms: float


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    client_timeout: aiohttp.ClientTimeout,
    label: str,
    request_id: str,
    json: Any = None,
    params: Mapping[str, str] | None = None,
) -> Exchange:
    """Send one request; raise `HelpdeskUnavailable` (saying why) when no answer comes back.

    `label` names the call in that message, e.g. `InboxOps PATCH /tickets/42`.
    """
    started = time.monotonic()
    try:
        async with session.request(
            method,
            url,
            json=json,
            params=params,
            headers=headers,
            timeout=client_timeout,
            # A redirect would turn a PATCH into a GET and may drop the key; surface it.
            allow_redirects=False,
        ) as resp:
            raw = await resp.read()
            status, resp_headers = resp.status, resp.headers
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise HelpdeskUnavailable(
            f"{label} failed: {describe_failure(exc, client_timeout.total)} (request {request_id}); "
            "retry later"
        ) from exc
    return Exchange(status, resp_headers, raw, (time.monotonic() - started) * 1000)


def describe_failure(exc: BaseException, timeout_s: float | None) -> str:
    """Say in words why a request got no answer."""
    if isinstance(exc, TimeoutError):
        return f"no response within {timeout_s or 0:g}s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before answering"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error)
        return f"cannot connect to {exc.host}:{exc.port} ({reason})"
    return f"{type(exc).__name__}: {exc}"
