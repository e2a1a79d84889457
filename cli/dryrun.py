"""`ticketwire dry-run`: run rules on captured deliveries and print what they would have done."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from cli.capture import read_captures
from ticketwire.config import Settings
from ticketwire.engine import check_rules, evaluate, plan
from ticketwire.engine.changes import MemoryTicketState
from ticketwire.engine.guard import GuardPolicy, MemoryGuard, firing_print
from ticketwire.engine.limits import limits_of, rearmed_by
from ticketwire.errors import ConfigError, MalformedEvent
from ticketwire.event import Event
from ticketwire.vendors.registry import VENDORS, parser


def parse_capture(record: dict[str, Any], default_vendor: str | None) -> Event:
    """Parse a capture record's body with its vendor's parser."""
    vendor = record.get("vendor") or default_vendor
    if vendor not in VENDORS:
        raise MalformedEvent(f"unknown vendor {vendor!r}; pass --vendor ({', '.join(VENDORS)})")
    return parser(vendor)(record["body"].encode("utf-8"))


async def _dry_run(files: list[Path], rules_dir: Path, vendor: str | None) -> int:
    router, errors = check_rules(rules_dir)
    if errors or router is None:
        print(f"{len(errors)} error(s) in {rules_dir}:", file=sys.stderr)
        for err in errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    quiet = logging.getLogger("ticketwire.dry-run")
    # The deliveries given play the worker's ticket state: a ticket's first delivery has no
    # earlier state, later ones compare with it, and older ones than already seen are stale.
    state = MemoryTicketState()
    try:
        settings = Settings.from_env(os.environ, role="check")
    except ConfigError as exc:
        print(f"ticketwire dry-run: configuration error: {exc}", file=sys.stderr)
        return 2
    # The loop guard's memory is played the same way, on the deliveries' receive times.
    guard = MemoryGuard(
        GuardPolicy(
            echo_window_ms=int(settings.echo_window_s * 1000),
            fuse_limit=settings.fuse_per_hour,
            fuse_window_ms=int(settings.fuse_window_s * 1000),
        )
    )
    n = 0
    for path in files:
        for record in read_captures(path):
            n += 1
            try:
                event = parse_capture(record, vendor)
            except MalformedEvent as exc:
                print(f"#{n} {record.get('event_id') or path}: cannot parse: {exc}")
                continue
            print(f"#{n} {event.vendor} {event.type} event={event.id} ticket={event.ticket_id}")
            if event.ticket_id:
                seen = state.observe(event, router.read_fields(event.vendor))
                if seen.stale:
                    print(f"    stale   {seen.stale_reason(event)}; not acted on")
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
                    print(f"    suppressed {d.rule.name}: {held[d.rule.name]}")
                    continue
                mark = "fired  " if d.fired else "skipped"
                print(f"    {mark} {d.rule.name}: {d.reason}")
            for name in verdict.rearmed:
                print(f"    re-armed {name}: {router.get(name).limits.rearm_text()}")
            for name, why in broken:
                print(f"    error   {name}: rearm condition failed: {why}")
            result = plan(event, [d for d in firing if d.rule.name in verdict.allowed])
            for note in result.notes:
                print(f"    note    {note}")
            for call in result.calls:
                print(f"    would   {call.describe()}")
            if not result.calls:
                print("    would   send nothing")
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
