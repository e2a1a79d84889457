"""One delivery's trace and one ticket's timeline, as English lines in order."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from receiver.console.context import console_key
from receiver.console.forms import MAX_FIELD, text_field
from ticketwire.trace import codes, render
from ticketwire.trace.read import AmbiguousEvent, AmbiguousTicket, Record, RuleLeaves, TraceReader
from ticketwire.vendors import registry

#: Most timeline records one page shows (the newest).
TIMELINE_SHOWN = 1000


@dataclass(frozen=True)
class Line:
    """One record as the page shows it."""

    at_ms: int
    event_id: str
    kind: str
    #: CSS class: the kind, and a rule's outcome (`rule-F`, `rule-S`…).
    css: str
    text: str


def lines(records: list[Record], leaves: RuleLeaves) -> list[Line]:
    """Each record as a line with the class that colours it."""
    ctx = render.Context(records, leaves)
    out = []
    for r in records:
        css = f"kind-{r.kind}"
        if r.kind == codes.RULE and len(r.values) > 1 and isinstance(r.values[1], str):
            css += f" rule-{r.values[1]}"
        out.append(Line(r.at_ms, r.event_id, r.kind, css, render.record_text(r, ctx)))
    return out


def _bad(name: str) -> bool:
    return not name or len(name) > MAX_FIELD or not name.isprintable()


async def event_page(request: web.Request) -> web.Response:
    """Everything traced about one event: its deliveries and its records."""
    console = request.app[console_key]
    event_id = request.match_info["event_id"]
    vendor = text_field(request.query, "vendor") or None
    if _bad(event_id) or (vendor is not None and vendor not in registry.names()):
        return console.refuse(request, 400, "That is not an event id and vendor.")
    reader = TraceReader(console.redis, console.keys)
    try:
        trace = await reader.event(event_id, vendor)
    except AmbiguousEvent as exc:
        return console.render(
            request,
            "choose.html",
            status=300,
            what=f"event {event_id}",
            links=[
                (f"/console/events/{event_id}?vendor={v}", f"{v} event {event_id}")
                for v in exc.vendors
            ],
        )
    if trace is None:
        return console.refuse(
            request, 404, f"Nothing is traced for event {event_id} (expired, or never received)."
        )
    return console.render(
        request,
        "event.html",
        trace=trace,
        lines=lines(trace.records, trace.leaves),
    )


async def ticket_page(request: web.Request) -> web.Response:
    """A ticket's timeline: every record of every event, oldest first."""
    console = request.app[console_key]
    key = request.match_info["key"]
    if _bad(key):
        return console.refuse(request, 400, "That is not a ticket key.")
    reader = TraceReader(console.redis, console.keys)
    try:
        timeline = await reader.ticket(key, limit=TIMELINE_SHOWN)
    except AmbiguousTicket as exc:
        return console.render(
            request,
            "choose.html",
            status=300,
            what=f"ticket {key}",
            links=[(f"/console/tickets/{c}", c) for c in exc.candidates],
        )
    if not timeline.found:
        return console.refuse(request, 404, f"Nothing is traced for ticket {key}.")
    return console.render(
        request,
        "ticket.html",
        timeline=timeline,
        lines=lines(timeline.records, timeline.leaves),
    )
