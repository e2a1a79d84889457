"""The deliveries list: every delivery outcome, newest first, filtered and paged by a cursor."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from receiver.console.context import console_key
from receiver.console.forms import cursor, parse_time, text_field
from ticketwire.trace import codes
from ticketwire.trace.read import DeliveryFilter, TraceReader
from ticketwire.vendors import registry

#: Rows per page.
PAGE_SIZE = 50
#: The query parameters of the filter form, in the form's order.
FIELDS = ("vendor", "type", "outcome", "ticket", "rule", "event", "since", "until")


@dataclass(frozen=True)
class DeliveryQuery:
    """A deliveries query string read into a filter, a cursor, and what was wrong with it."""

    filter: DeliveryFilter
    before: str | None
    #: The form's values as given, to fill the form again.
    values: dict[str, str]
    errors: list[str] = field(default_factory=list)


def parse_query(query: Mapping[str, str], now_ms: int) -> DeliveryQuery:
    """Read the filter form; a bad value is reported and left out, never an error page."""
    values = {name: text_field(query, name) for name in FIELDS}
    errors: list[str] = []
    vendor = values["vendor"] or None
    if vendor is not None and vendor not in registry.names():
        errors.append(f"Unknown vendor {vendor!r}.")
        vendor = None
    outcome = values["outcome"] or None
    if outcome is not None and outcome not in codes.OUTCOMES:
        errors.append(f"Unknown outcome {outcome!r}.")
        outcome = None
    times: dict[str, int | None] = {}
    for name in ("since", "until"):
        times[name] = parse_time(values[name], now_ms) if values[name] else None
        if values[name] and times[name] is None:
            errors.append(
                f"Cannot read {name} {values[name]!r}: use 15m, 2h, 3d or 2026-01-31 14:00 (UTC)."
            )
    raw_before = text_field(query, "before")
    before = cursor(raw_before) if raw_before else None
    if raw_before and before is None:
        errors.append("The page cursor is not valid; showing the newest deliveries.")
    flt = DeliveryFilter(
        vendor=vendor,
        event_type=values["type"] or None,
        outcome=outcome,
        ticket=values["ticket"] or None,
        rule=values["rule"] or None,
        event_id=values["event"] or None,
        since_ms=times["since"],
        until_ms=times["until"],
    )
    return DeliveryQuery(flt, before, values, errors)


async def page(request: web.Request) -> web.Response:
    """One page of deliveries matching the filter form."""
    console = request.app[console_key]
    started = time.perf_counter()
    query = parse_query(request.query, int(time.time() * 1000))
    reader = TraceReader(console.redis, console.keys)
    result = await reader.deliveries(query.filter, before=query.before, limit=PAGE_SIZE)
    kept = {k: v for k, v in query.values.items() if v}
    response = console.render(
        request,
        "deliveries.html",
        status=400 if query.errors else 200,
        result=result,
        values=query.values,
        kept=kept,
        errors=query.errors,
        vendors=registry.names(),
        outcomes=codes.OUTCOMES,
        filtered=bool(kept),
    )
    # Server time of the page, for the browser's devtools and the page-speed test.
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response
