"""`ticketwire dry-run`: run rules on captured deliveries and print what they would have done."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from cli.capture import read_captures
from ticketwire.engine import check_rules, evaluate, plan
from ticketwire.errors import MalformedEvent
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
            decisions = await evaluate(router, event, log=quiet)
            for d in decisions:
                mark = "fired  " if d.fired else "skipped"
                print(f"    {mark} {d.rule.name}: {d.reason}")
            result = plan(event, [d for d in decisions if d.fired and d.actions])
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


def run_dry_run(files: list[Path], rules_dir: Path, vendor: str | None) -> int:
    """Print, for each captured delivery, every rule's decision and the calls it would send."""
    return asyncio.run(_dry_run(files, rules_dir, vendor))
