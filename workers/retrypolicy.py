"""When a failed write-back goes again, and when it is given up for a dead letter (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ticketwire.errors import HelpdeskHTTPError, RateLimited
from workers.outboxpolicy import OutboxPolicy


def next_try(policy: OutboxPolicy, attempts: int, now: int) -> int | None:
    """When (ms) a call that failed `attempts` times goes again; None once it is given up."""
    if attempts >= policy.max_attempts:
        return None
    return now + int(policy.backoff(attempts) * 1000)


def gave_up(attempts: int) -> str:
    """Why a call that kept failing is dead-lettered."""
    return f"gave up after {attempts} attempts"


def may_have_applied(attempt: Mapping[str, Any]) -> bool:
    """True when a failed attempt leaves unknown whether the helpdesk applied the call.

    No answer (timeout, reset), a 5xx, a 2xx that could not be read (a `ServerError` too), or a
    bulk answer that left an id in doubt: a re-send reads the ticket first. A 4xx or a 429 was
    refused, and a connection never made (`NotConnected`) carried nothing: nothing was applied.
    """
    status = attempt.get("status")
    return attempt.get("kind") in ("HelpdeskUnavailable", "PartialFailure", "ServerError") or (
        isinstance(status, int) and status >= 500
    )


def attempt_record(exc: BaseException, at: int) -> dict[str, Any]:
    """What a failed attempt leaves on its call (and on its dead letter): when, what, the answer."""
    out: dict[str, Any] = {"at": at, "error": str(exc), "kind": type(exc).__name__}
    if isinstance(exc, HelpdeskHTTPError):
        out["status"] = exc.status
        out["request_id"] = exc.request_id
        if exc.body:
            out["body"] = exc.body[:500]
    if isinstance(exc, RateLimited):
        out["retry_after"] = exc.retry_after
    return out
