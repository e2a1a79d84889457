"""The fast boolean path of conditions always agrees with the explaining one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ticketwire.engine import Router, compile_yaml, evaluate
from ticketwire.event import Event

LEAVES = [
    "{field: priority, equals: urgent}",
    "{field: priority, not_equals: low}",
    "{field: status, in: [open, waiting]}",
    "{field: status, not_in: [closed]}",
    "{field: subject, contains: Printer}",
    "{field: subject, matches: '(?i)fire'}",
    "{field: assignee_id, exists: true}",
    "{field: custom_fields.score, gte: 5}",
    "{field: custom_fields.score, lt: 3}",
    "{field: updated_at, before: '-48h'}",
    "{field: updated_at, after: '-1h'}",
    "{field: custom_fields.missing, gt: 1}",
    "{field: common.priority, equals: urgent}",
]
TREES = [
    *LEAVES,
    "{all: [" + ", ".join(LEAVES[:3]) + "]}",
    "{any: [" + ", ".join(LEAVES[3:7]) + "]}",
    "{not: " + LEAVES[0] + "}",
    "{all: [{any: [" + LEAVES[1] + ", " + LEAVES[5] + "]}, {not: " + LEAVES[8] + "}]}",
]
TICKETS = [
    {
        "priority": "urgent",
        "status": "open",
        "subject": "Printer on fire",
        "assignee_id": "a",
        "custom_fields": {"score": 7},
        "updated_at": "2026-11-20T10:00:00Z",
    },
    {
        "priority": "low",
        "status": "closed",
        "subject": "hello",
        "assignee_id": None,
        "custom_fields": {"score": "n/a"},
        "updated_at": "2026-11-23T09:30:00Z",
    },
    {"priority": "normal", "status": "waiting", "subject": None, "custom_fields": {}},
]


def event(ticket: dict) -> Event:
    return Event(
        vendor="inboxops",
        type="ticket.updated",
        id="e",
        tenant="ws",
        created_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        ticket_id="t",
        ticket={"id": "t", **ticket},
        common={"priority": ticket.get("priority")},
    )


@pytest.mark.parametrize("tree", TREES)
async def test_holds_agrees_with_check(tree: str) -> None:
    rules, errors = compile_yaml(
        f"name: r\nvendor: inboxops\nevents: [ticket.updated]\nif: {tree}\nthen:\n"
        "  - set_priority: high\n",
        file="r.yml",
    )
    assert errors == []
    router = Router()
    router.add(rules[0])
    for ticket in TICKETS:
        ev = event(ticket)
        condition = rules[0].condition
        assert condition is not None
        assert condition.holds(ev) == condition.check(ev).ok, (tree, ticket)
        [fast] = await evaluate(router, ev, explain=False)
        [slow] = await evaluate(router, ev)
        assert fast.fired == slow.fired and fast.actions == slow.actions
