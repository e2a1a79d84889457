"""Dead letters: filter them, preview a redrive, redrive or drop every letter a filter matches."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from receiver.console.context import console_key
from receiver.console.forms import text_field
from ticketwire.accountkey import DEFAULT
from ticketwire.vendors import registry
from workers.deadletter import KIND_CALL, KIND_EVENT
from workers.dlqfilter import (
    KEYS,
    FilterError,
    LetterFilter,
    drop_matching,
    matching,
    redrive_matching,
)

#: Most letters the page lists; the count above the table says how many match.
SHOWN = 200
#: Counts an action reports back to the page after it redirects.
DONE = ("redriven", "skipped", "failed", "dropped")


@dataclass(frozen=True)
class LetterQuery:
    """The filter form read into a letter filter (None: no key given), and what was wrong."""

    filter: LetterFilter | None
    values: dict[str, str]
    errors: list[str] = field(default_factory=list)


def parse_filter(form: Mapping[str, Any], now_ms: int) -> LetterQuery:
    """Read the filter form as the CLI's `--filter key=value,…` would be read."""
    values = {k: text_field(form, k) for k in KEYS}
    given = {k: v for k, v in values.items() if v}
    if any("," in v for v in given.values()):
        return LetterQuery(None, values, ["A filter value cannot hold a comma."])
    if not given:
        return LetterQuery(None, values)
    try:
        flt = LetterFilter.parse(",".join(f"{k}={v}" for k, v in given.items()), now_ms=now_ms)
    except FilterError as exc:
        return LetterQuery(None, values, [str(exc)])
    except (ValueError, OverflowError):
        return LetterQuery(None, values, ["A time in this filter is out of range."])
    return LetterQuery(flt, values)


def done_counts(query: Mapping[str, str]) -> dict[str, int]:
    """What the last action did, as the redirect after it reported (numbers only)."""
    out = {}
    for name in DONE:
        raw = query.get(name, "")
        if raw.isdigit() and len(raw) < 10:
            out[name] = int(raw)
    return out


async def page(request: web.Request) -> web.Response:
    """The matching letters, and with `preview=1` what redriving them would do."""
    console = request.app[console_key]
    query = parse_filter(request.query, int(time.time() * 1000))
    flt = query.filter or LetterFilter()
    letters: list[Any] = []
    previews: list[Any] = []
    if not query.errors:
        letters = await matching(console.redis, console.keys, flt)
        if request.query.get("preview") and query.filter is not None:
            report = await redrive_matching(
                console.redis,
                console.keys,
                query.filter,
                partitions=console.settings.partitions,
                dry_run=True,
            )
            previews = report.previews
    given = {k: v for k, v in query.values.items() if v}
    # Single-account setups keep the page they had: the account appears once accounts exist.
    accounts = (
        bool(console.settings.named_accounts)
        or "account" in given
        or any(x.account != DEFAULT for x in letters)
    )
    return console.render(
        request,
        "deadletters.html",
        status=400 if query.errors else 200,
        letters=list(reversed(letters))[:SHOWN],
        total=len(letters),
        previews=previews,
        values=query.values,
        given=given,
        described=_described(query.filter),
        errors=query.errors,
        done=done_counts(request.query),
        vendors=registry.names(),
        kinds=(KIND_EVENT, KIND_CALL),
        shown=SHOWN,
        accounts=accounts,
    )


def _described(flt: LetterFilter | None) -> str:
    if flt is None:
        return ""
    try:
        return flt.describe()
    except (ValueError, OverflowError, OSError):
        # A time far outside the calendar: matching still works, only its display does not.
        return "the filter given"


async def _chosen(request: web.Request) -> tuple[LetterFilter | None, dict[str, str], str]:
    query = parse_filter(await request.post(), int(time.time() * 1000))
    given = {k: v for k, v in query.values.items() if v}
    if query.errors:
        return None, given, query.errors[0]
    if query.filter is None:
        return None, given, "Choose a filter first: an action never takes every letter unasked."
    return query.filter, given, ""


async def redrive(request: web.Request) -> web.StreamResponse:
    """Redrive every letter the filter matches, oldest first."""
    console = request.app[console_key]
    flt, given, problem = await _chosen(request)
    if flt is None:
        return console.refuse(request, 400, problem)
    report = await redrive_matching(
        console.redis, console.keys, flt, partitions=console.settings.partitions, dry_run=False
    )
    counts = {
        "redriven": len(report.redriven),
        "skipped": len(report.skipped),
        "failed": len(report.failed),
    }
    raise web.HTTPSeeOther(f"/console/dead-letters?{urlencode({**given, **counts})}")


async def drop(request: web.Request) -> web.StreamResponse:
    """Delete every letter the filter matches."""
    console = request.app[console_key]
    flt, given, problem = await _chosen(request)
    if flt is None:
        return console.refuse(request, 400, problem)
    dropped = len(await drop_matching(console.redis, console.keys, flt))
    raise web.HTTPSeeOther(f"/console/dead-letters?{urlencode({**given, 'dropped': dropped})}")
