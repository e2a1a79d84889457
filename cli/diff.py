"""`ticketwire diff`: how a rules change alters the planned calls on captured deliveries."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cli.dryrun import load_router, plan_deliveries, planning_settings, read_all
from ticketwire.calls import ApiCall
from ticketwire.config import Settings
from ticketwire.engine import Router

Kind = Literal["added", "removed", "changed"]
_MARK: dict[Kind, str] = {"added": "+", "removed": "-", "changed": "~"}


@dataclass(frozen=True)
class DeliveryPlan:
    """The calls one set of rules planned for one delivery."""

    ticket: str
    event_id: str
    event_type: str
    calls: tuple[ApiCall, ...]


@dataclass(frozen=True)
class CallChange:
    """One call the new rules add, no longer send, or send with another body."""

    kind: Kind
    event_id: str
    event_type: str
    old: ApiCall | None
    new: ApiCall | None

    def to_json(self) -> dict[str, Any]:
        """JSON form for `--json`."""
        return {
            "kind": self.kind,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "old": _call_json(self.old),
            "new": _call_json(self.new),
        }


@dataclass(frozen=True)
class TicketDiff:
    """Every change of one ticket's calls, in delivery order."""

    ticket: str
    changes: tuple[CallChange, ...]


def diff_delivery(old: DeliveryPlan, new: DeliveryPlan) -> list[CallChange]:
    """Pair the two plans' calls by method and path, in order; report what differs."""
    by_target: dict[tuple[str, str], list[ApiCall]] = defaultdict(list)
    for call in old.calls:
        by_target[(call.method, call.path)].append(call)
    out: list[CallChange] = []
    for call in new.calls:
        earlier = by_target.get((call.method, call.path))
        if not earlier:
            out.append(CallChange("added", new.event_id, new.event_type, None, call))
            continue
        before = earlier.pop(0)
        if before.body != call.body:
            out.append(CallChange("changed", new.event_id, new.event_type, before, call))
    for left in by_target.values():
        out.extend(CallChange("removed", old.event_id, old.event_type, c, None) for c in left)
    return out


def diff_plans(old: Sequence[DeliveryPlan], new: Sequence[DeliveryPlan]) -> list[TicketDiff]:
    """Per ticket (first seen first), the calls added, removed and changed between two plans.

    Both sequences plan the same deliveries in the same order, one entry per delivery.
    """
    if len(old) != len(new):
        raise ValueError(f"plans of {len(old)} and {len(new)} deliveries cannot be compared")
    per_ticket: dict[str, list[CallChange]] = {}
    for before, after in zip(old, new, strict=True):
        changes = diff_delivery(before, after)
        if changes:
            per_ticket.setdefault(after.ticket, []).extend(changes)
    return [TicketDiff(ticket, tuple(changes)) for ticket, changes in per_ticket.items()]


def render(diffs: Sequence[TicketDiff], deliveries: int) -> str:
    """The diff as text: per ticket, per event, `+`/`-`/`~` call lines, then a summary line."""
    lines: list[str] = []
    counts = {"added": 0, "removed": 0, "changed": 0}
    for td in diffs:
        lines.append(f"ticket {td.ticket}")
        last = None
        for ch in td.changes:
            counts[ch.kind] += 1
            if ch.event_id != last:
                lines.append(f"  event {ch.event_id} ({ch.event_type})")
                last = ch.event_id
            lines.append(f"    {_MARK[ch.kind]} {_describe(ch)}")
    lines.append(
        f"{len(diffs)} ticket(s) planned differently over {deliveries} deliveries: "
        f"{counts['added']} call(s) added, {counts['removed']} removed, "
        f"{counts['changed']} changed"
    )
    return "\n".join(lines)


def _describe(ch: CallChange) -> str:
    if ch.kind == "changed" and ch.old and ch.new:
        return (
            f"{ch.new.method} {ch.new.path} {json.dumps(ch.old.body, sort_keys=True)} → "
            f"{json.dumps(ch.new.body, sort_keys=True)}{_rules(ch.new)}"
        )
    call = ch.new or ch.old
    assert call is not None
    return f"{call.describe()}{_rules(call)}"


def _rules(call: ApiCall) -> str:
    return f"  (rules: {', '.join(call.rules)})" if call.rules else ""


def _call_json(call: ApiCall | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {"method": call.method, "path": call.path, "body": call.body, "rules": list(call.rules)}


async def plans_of(
    router: Router, records: list[dict[str, Any]], vendor: str | None, settings: Settings
) -> list[DeliveryPlan]:
    """One `DeliveryPlan` per record (unreadable ones plan nothing)."""
    out = []
    async for step in plan_deliveries(router, records, vendor, settings):
        ev = step.event
        out.append(
            DeliveryPlan(
                ticket=ev.ticket_key if ev else "(unreadable)",
                event_id=ev.id if ev else str(step.record.get("event_id")),
                event_type=ev.type if ev else "?",
                calls=tuple(step.calls),
            )
        )
    return out


async def _diff(
    files: list[Path], old_dir: Path, new_dir: Path, vendor: str | None, as_json: bool
) -> int:
    old_router, new_router = load_router(old_dir), load_router(new_dir)
    if old_router is None or new_router is None:
        return 1
    settings = planning_settings("diff")
    if settings is None:
        return 2
    records = read_all(files)
    if not records:
        print("no deliveries in the given files", file=sys.stderr)
        return 1
    # Each side plays its own ticket state and loop guard: which fields are kept, and what a
    # rule's limits suppress, depend on the rules.
    old = await plans_of(old_router, records, vendor, settings)
    new = await plans_of(new_router, records, vendor, settings)
    diffs = diff_plans(old, new)
    if as_json:
        doc = {
            "deliveries": len(records),
            "tickets": [
                {"ticket": td.ticket, "changes": [c.to_json() for c in td.changes]} for td in diffs
            ],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(render(diffs, len(records)))
    return 0


def run_diff(
    files: list[Path], old_dir: Path, new_dir: Path, vendor: str | None, as_json: bool
) -> int:
    """Print how the rules in `new_dir` plan differently from `old_dir` on the deliveries."""
    return asyncio.run(_diff(files, old_dir, new_dir, vendor, as_json))
