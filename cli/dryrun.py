"""`ticketwire dry-run`: run rules on captured deliveries and print what they would have done."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.capture import read_captures, record_account
from ticketwire.accountkey import DEFAULT
from ticketwire.calls import ApiCall
from ticketwire.config import Settings
from ticketwire.engine import Router, check_rules, evaluate, plan
from ticketwire.engine.changes import MemoryTicketState
from ticketwire.engine.guard import GuardPolicy, MemoryGuard, firing_print
from ticketwire.engine.limits import limits_of, rearmed_by
from ticketwire.errors import ConfigError, MalformedEvent
from ticketwire.event import Event
from ticketwire.vendors import registry
from ticketwire.vendors.registry import parser


def parse_capture(record: dict[str, Any], default_vendor: str | None) -> Event:
    """Parse a capture record's body with its vendor's parser."""
    vendor = record.get("vendor") or default_vendor
    known = registry.names()
    if vendor not in known:
        raise MalformedEvent(f"unknown vendor {vendor!r}; pass --vendor ({', '.join(known)})")
    try:
        account = record_account(record)
    except ValueError as exc:
        raise MalformedEvent(str(exc)) from None
    event = parser(vendor)(record["body"].encode("utf-8"))
    # A named account's delivery plays as that account's, so rules pinned to accounts match.
    return event if account == DEFAULT else event.model_copy(update={"account": account})


@dataclass
class Planned:
    """What the rules decided on one delivery: printable lines, and the calls they would send."""

    n: int
    #: `#1 inboxops ticket.updated event=… ticket=…`, or why the delivery could not be read.
    heading: str
    record: dict[str, Any]
    event: Event | None = None
    lines: list[str] = field(default_factory=list)
    calls: list[ApiCall] = field(default_factory=list)


def guard_for(settings: Settings) -> MemoryGuard:
    """The loop guard played in memory, with the configured windows."""
    return MemoryGuard(
        GuardPolicy(
            echo_window_ms=int(settings.echo_window_s * 1000),
            fuse_limit=settings.fuse_per_hour,
            fuse_window_ms=int(settings.fuse_window_s * 1000),
        )
    )


async def plan_deliveries(
    router: Router, records: Iterable[dict[str, Any]], vendor: str | None, settings: Settings
) -> AsyncIterator[Planned]:
    """Run `router` on each delivery in order, as a worker would; send nothing."""
    quiet = logging.getLogger("ticketwire.dry-run")
    # The deliveries given play the worker's ticket state: a ticket's first delivery has no
    # earlier state, later ones compare with it, and older ones than already seen are stale.
    state = MemoryTicketState()
    # The loop guard's memory is played the same way, on the deliveries' receive times.
    guard = guard_for(settings)
    for n, record in enumerate(records, 1):
        try:
            event = parse_capture(record, vendor)
        except MalformedEvent as exc:
            yield Planned(n, f"#{n} {record.get('event_id')}: cannot parse: {exc}", record)
            continue
        out = Planned(
            n, f"#{n} {event.vendor} {event.type} event={event.id} ticket={event.ticket_id}", record
        )
        out.event = event
        if event.ticket_id:
            seen = state.observe(event, router.read_fields(event.vendor))
            if seen.stale:
                out.lines.append(f"stale   {seen.stale_reason(event)}; not acted on")
                yield out
                continue
            event = event.model_copy(update={"previous": seen.previous})
        decisions = await evaluate(router, event, log=quiet)
        firing = [d for d in decisions if d.fired and d.actions]
        rearm, broken = rearmed_by(router, event)
        verdict = guard.check(
            event.ticket_key,
            [(d.rule.name, firing_print(d.actions, event)) for d in firing],
            event_id=event.id,
            now_ms=_received_ms(record, event),
            limits=limits_of(d.rule for d in firing),
            rearm=rearm,
        )
        held = dict(verdict.suppressed)
        for d in decisions:
            if d.rule.name in held:
                out.lines.append(f"suppressed {d.rule.name}: {held[d.rule.name]}")
                continue
            mark = "fired  " if d.fired else "skipped"
            out.lines.append(f"{mark} {d.rule.name}: {d.reason}")
        for name in verdict.rearmed:
            out.lines.append(f"re-armed {name}: {router.get(name).limits.rearm_text()}")
        for name, why in broken:
            out.lines.append(f"error   {name}: rearm condition failed: {why}")
        result = plan(event, [d for d in firing if d.rule.name in verdict.allowed])
        out.lines.extend(f"note    {note}" for note in result.notes)
        out.calls = list(result.calls)
        out.lines.extend(f"would   {call.describe()}" for call in result.calls)
        if not result.calls:
            out.lines.append("would   send nothing")
        yield out


def load_router(rules_dir: Path) -> Router | None:
    """The rules of `rules_dir`, or None after printing their errors."""
    router, errors = check_rules(rules_dir)
    if errors or router is None:
        print(f"{len(errors)} error(s) in {rules_dir}:", file=sys.stderr)
        for err in errors:
            print(f"  {err}", file=sys.stderr)
        return None
    return router


def planning_settings(verb: str) -> Settings | None:
    """The windows the loop guard is played with, or None after printing what is wrong."""
    try:
        return Settings.from_env(os.environ, role="check")
    except ConfigError as exc:
        print(f"ticketwire {verb}: configuration error: {exc}", file=sys.stderr)
        return None


def read_all(files: list[Path]) -> list[dict[str, Any]]:
    """Every capture record of `files`, in order; a bare body's label is its file name."""
    out = []
    for path in files:
        for record in read_captures(path):
            out.append({**record, "event_id": record.get("event_id") or str(path)})
    return out


async def _dry_run(files: list[Path], rules_dir: Path, vendor: str | None) -> int:
    router = load_router(rules_dir)
    if router is None:
        return 1
    settings = planning_settings("dry-run")
    if settings is None:
        return 2
    n = 0
    async for step in plan_deliveries(router, read_all(files), vendor, settings):
        n += 1
        print(step.heading)
        for line in step.lines:
            print(f"    {line}")
    if n == 0:
        print("no deliveries in the given files", file=sys.stderr)
        return 1
    return 0


def _received_ms(record: dict[str, Any], event: Event) -> int:
    """When the delivery was received (captures say), else when the event happened."""
    received = record.get("received_ms")
    if isinstance(received, int | float) and not isinstance(received, bool):
        return int(received)
    return int(event.created_at.timestamp() * 1000)


def run_dry_run(files: list[Path], rules_dir: Path, vendor: str | None) -> int:
    """Print, for each captured delivery, every rule's decision and the calls it would send."""
    return asyncio.run(_dry_run(files, rules_dir, vendor))
