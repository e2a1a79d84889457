"""Textbook arq worker: run the rules on each event and PATCH the helpdesk for what they planned.

    REDIS_URL=... INBOXOPS_API_URL=... INBOXOPS_API_KEY=... BENCH_RULES=bench/rules \
        arq bench.baseline.worker.WorkerSettings

A default `Worker` (max_jobs, poll_delay, keep_result, max_tries untouched). The job uses
ticketwire's own engine (`load_rules`, `evaluate`) and InboxOps planner, so both stacks do the
same work per event. A 429 raises arq's `Retry(defer=<Retry-After>)`, as arq's docs retry a
failed request: the whole job runs again once the helpdesk's window has room.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

import aiohttp
from arq import Retry
from arq.connections import RedisSettings

from bench.baseline.models import Envelope
from ticketwire.engine import evaluate, load_rules
from ticketwire.event import Event
from ticketwire.vendors.inboxops.actions import plan
from ticketwire.vocabulary import neutral_priority, neutral_status

#: Counters the benchmark reads.
PROCESSED_KEY = "bench:baseline:processed"
WRITEBACKS_KEY = "bench:baseline:writebacks"


def to_event(envelope: Envelope) -> Event:
    """The engine's event for one delivery."""
    ticket = envelope.data
    return Event(
        vendor="inboxops",
        type=envelope.event,
        id=envelope.event_id,
        tenant=envelope.tenant_id,
        created_at=envelope.created_at,
        ticket_id=ticket.id,
        ticket=ticket.model_dump(mode="json"),
        common={
            "status": neutral_status("inboxops", ticket.status),
            "priority": neutral_priority("inboxops", ticket.priority),
            "assignee": ticket.assignee_id,
            "tags": None,
            "subject": ticket.subject,
        },
    )


def retry_after(value: str | None) -> float:
    """Seconds a 429's `Retry-After` asks for (delta-seconds; a minute if absent or a date)."""
    try:
        return max(0.0, float(value or "60"))
    except ValueError:
        return 60.0


async def startup(ctx: dict[str, Any]) -> None:
    """Open the HTTP session and load the rules."""
    # Keep arq's per-job INFO lines out: logging is not what is measured.
    logging.getLogger("arq").setLevel(logging.WARNING)
    ctx["api"] = os.environ["INBOXOPS_API_URL"].rstrip("/") + "/api/v1"
    ctx["session"] = aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {os.environ['INBOXOPS_API_KEY']}"},
        timeout=aiohttp.ClientTimeout(total=10),
    )
    ctx["router"] = load_rules(os.environ.get("BENCH_RULES", "bench/rules"))


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close the HTTP session."""
    await ctx["session"].close()


async def process(ctx: dict[str, Any], envelope: Envelope) -> None:
    """Evaluate the rules, send each planned call, count the event."""
    event = to_event(envelope)
    decisions = await evaluate(ctx["router"], event)
    session: aiohttp.ClientSession = ctx["session"]
    for call in plan(event, decisions).calls:
        async with session.request(call.method, ctx["api"] + call.path, json=call.body) as resp:
            if resp.status == 429:
                # arq gives up on the job after max_tries (default 5) such retries.
                raise Retry(defer=retry_after(resp.headers.get("Retry-After")))
            resp.raise_for_status()
        await ctx["redis"].incr(WRITEBACKS_KEY)
    await ctx["redis"].incr(PROCESSED_KEY)


class WorkerSettings:
    """arq's settings: defaults except what the job needs."""

    functions: ClassVar[list[Any]] = [process]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379"))
