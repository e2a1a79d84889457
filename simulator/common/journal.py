"""The request journal's common part: what every simulator records of an API request."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from simulator.common.records import Record


@dataclass(frozen=True)
class Request(Record):
    """One API request and the status it got; `at` is when it arrived, in simulated time."""

    method: str
    path: str
    query: dict[str, str]
    #: The parsed JSON body, or None when there was none or it was not JSON.
    body: Any
    status: int
    at: datetime


def request_fields(request: web.Request, body: Any, status: int, at: datetime) -> dict[str, Any]:
    """The `Request` fields of a journal entry for `request`, arrived at `at`, answered `status`."""
    return {
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "body": body,
        "status": status,
        "at": at,
    }


def masked(
    headers: Mapping[str, str], keep: int, names: Collection[str] = ("authorization",)
) -> dict[str, str]:
    """A copy of `headers` with the values of the credential headers `names` (lower case) cut to
    their first `keep` characters."""
    return {k: (v[:keep] + "…" if k.lower() in names else v) for k, v in headers.items()}
