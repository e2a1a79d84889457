"""The one network exchange every helpdesk client makes: a timeout, no redirects, clear failures."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ticketwire import metrics
from ticketwire.accountkey import DEFAULT
from ticketwire.errors import HelpdeskUnavailable, NotConnected
from ticketwire.ratebudget import RateBudget


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
    budget: RateBudget | None = None,
    account: str = DEFAULT,
) -> Exchange:
    """Send one request; raise `HelpdeskUnavailable` (saying why) when no answer comes back.

    `label` names the call in that message, e.g. `InboxOps PATCH /tickets/42`. With a
    `budget`, the request first takes its share of the account's budget (raising `BudgetSpent`
    when that would take long), and a 429 pauses the budget for every worker.
    """
    if budget is not None:
        await budget.acquire(method, url, label=label)
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
        metrics.api_call(label, method, url, "error", time.monotonic() - started, account)
        # A connection never made carried no request: a retry need not read the ticket back.
        unsent = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
        raise (NotConnected if unsent else HelpdeskUnavailable)(
            f"{label} failed: {describe_failure(exc, client_timeout.total)} (request {request_id}); "
            "retry later"
        ) from exc
    metrics.api_call(label, method, url, status, time.monotonic() - started, account)
    if status == 429 and budget is not None:
        metrics.budget_paused(budget.scope)
        await budget.pause(retry_after_header(resp_headers) or DEFAULT_PAUSE_S)
    return Exchange(status, resp_headers, raw, (time.monotonic() - started) * 1000)


#: How long a 429 without a usable Retry-After pauses the budget; the client's own reading of
#: the answer (a body field, a reset header) may extend it.
DEFAULT_PAUSE_S = 1.0


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After: <seconds>` header, if present and numeric."""
    raw = headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name` in any letter case, or None when it is absent."""
    value = headers.get(name)
    if value is None:
        # Plain dicts are case-sensitive; aiohttp's multidicts are not.
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


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
