"""`ticketwire trace`: one event's trace by its event id, or a ticket's timeline."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from cli.redisrun import run_on_redis
from cli.redisurl import redis_settings
from ticketwire.accountkey import ACCOUNT_NAME, ACCOUNT_PATTERN, DEFAULT
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.trace.read import AmbiguousEvent, AmbiguousTicket, TraceReader
from ticketwire.trace.render import event_json, event_lines, timeline_json, timeline_lines
from ticketwire.vendors import registry

#: Exit statuses: shown; nothing found (or Redis failed); misconfigured or misused; ambiguous
#: key or event id; no traces kept at all.
OK, NOT_FOUND, USAGE, AMBIGUOUS, OFF = 0, 1, 2, 3, 4

Command = Callable[[TraceReader], Awaitable[int]]


def run_trace(
    event_id: str | None,
    *,
    vendor: str | None = None,
    account: str = DEFAULT,
    ticket: str | None = None,
    limit: int | None = None,
    as_json: bool = False,
) -> int:
    """Run `ticketwire trace`; return the exit status (see OK … OFF)."""
    if (event_id is None) == (ticket is None):
        return _fail("give either an EVENT_ID or --ticket KEY", USAGE)
    known = registry.names()
    if vendor is not None and vendor not in known:
        return _fail(f"unknown vendor {vendor!r}; one of: {', '.join(known)}", USAGE)
    if not ACCOUNT_NAME.match(account):
        return _fail(f"--account {account!r} is not an account name ({ACCOUNT_PATTERN})", USAGE)
    if limit is not None and limit < 1:
        return _fail(f"--limit must be at least 1 (got {limit})", USAGE)
    settings = redis_settings("trace", os.environ, role="check")
    if settings is None:
        return USAGE
    retention = settings.trace_retention_s
    if retention <= 0:
        return _fail(
            "traces are off (TICKETWIRE_TRACE_RETENTION=0): nothing is recorded to show; set "
            "it (e.g. 72h) for the receiver and workers, then new deliveries are traced",
            OFF,
        )
    if ticket is not None:
        key = ticket
        return _run(settings, lambda r: _ticket(r, key, limit, as_json, retention))
    assert event_id is not None
    eid = event_id
    return _run(settings, lambda r: _event(r, eid, vendor, account, as_json, retention))


def _kept(retention_s: float) -> str:
    hours = retention_s / 3600
    shown = f"{hours:g} h" if hours >= 1 else f"{retention_s:g} s"
    return f"traces are kept {shown} (TICKETWIRE_TRACE_RETENTION)"


async def _event(
    reader: TraceReader,
    event_id: str,
    vendor: str | None,
    account: str,
    as_json: bool,
    retention: float,
) -> int:
    try:
        trace = await reader.event(event_id, vendor, account)
    except AmbiguousEvent as exc:
        return _fail(
            f"event id {event_id} is known for {', '.join(exc.vendors)}; say which with "
            f"--vendor {exc.vendors[0]}",
            AMBIGUOUS,
        )
    if trace is None:
        where = vendor or ", ".join(registry.names())
        if account != DEFAULT:
            where += f", account {account}"
        why = "it was never received here, or it is older than the traces kept"
        if account == DEFAULT:
            why += "; an event of a named account needs --account NAME"
        return await _missing(reader, retention, f"no trace of event {event_id} ({where}): {why}")
    return _print(event_json(trace) if as_json else event_lines(trace))


async def _ticket(
    reader: TraceReader, key: str, limit: int | None, as_json: bool, retention: float
) -> int:
    if key.count(":") < 1:
        return _fail(
            f"ticket key {key!r} names no vendor: use vendor:tenant:ticket as `dlq list` prints "
            "it, or vendor:ticket",
            USAGE,
        )
    try:
        timeline = await reader.ticket(key, limit=limit)
    except AmbiguousTicket as exc:
        return _fail(
            f"{key} matches {len(exc.candidates)} tickets of different accounts: "
            f"{', '.join(exc.candidates)}; give the full key",
            AMBIGUOUS,
        )
    if not timeline.found:
        why = "no event of it was handled here recently"
        return await _missing(reader, retention, f"no trace of ticket {key}: {why}")
    return _print(timeline_json(timeline) if as_json else timeline_lines(timeline))


async def _missing(reader: TraceReader, retention: float, message: str) -> int:
    """Nothing found: because no traces are kept at all, or as `message` says."""
    if not await reader.enabled():
        return _none_stored(reader, retention)
    return _fail(f"{message} ({_kept(retention)})", NOT_FOUND)


def _print(found: dict[str, Any] | list[str]) -> int:
    """Print what was found: a JSON document, or lines of text."""
    if isinstance(found, dict):
        print(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        print("\n".join(found))
    return OK


def _none_stored(reader: TraceReader, retention: float) -> int:
    return _fail(
        f"no traces are stored under key prefix {reader.keys.prefix!r}: traces are off where the "
        "receiver and workers run (TICKETWIRE_TRACE_RETENTION=0), or nothing was received in "
        f"the time they are kept ({_kept(retention)})",
        OFF,
    )


def _run(settings: Settings, command: Command) -> int:
    assert settings.redis_url

    async def work(redis: Redis) -> int:
        return await command(TraceReader(redis, Keys(settings.key_prefix)))

    return run_on_redis(
        settings.redis_url,
        work,
        lambda message: _fail(message, NOT_FOUND),
        sentinel_password=settings.sentinel_password,
    )


def _fail(message: str, status: int) -> int:
    print(f"ticketwire trace: {message}", file=sys.stderr)
    return status
