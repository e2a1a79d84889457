"""Run the rules in ../rules on one helpdesk event, as `ticketwire dry-run` does: nothing is sent.

A test builds the webhook body a helpdesk sends (`inboxops(...)`, `cstar(...)`, `thena(...)`),
and `decide()` parses it with the same parser the receiver runs, evaluates every rule and plans
the API calls the worker would send. `decide_scheduled()` does the same for one ticket a run of
a time-based rule lists.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from ticketwire.engine import Decision, Router, evaluate, load_rules, plan, run_rule
from ticketwire.engine.select import listed_event
from ticketwire.event import Event
from ticketwire.vendors.registry import parser

RULES = Path(__file__).resolve().parents[1] / "rules"
NOW = "2025-03-03T09:00:00.000Z"


@dataclass(frozen=True)
class Outcome:
    """What the rules decided on one event."""

    #: Names of the rules that fired, in order.
    fired: list[str]
    #: Rule name -> why it fired or not (the worker logs the same text).
    reasons: dict[str, str]
    #: The calls the worker would send, e.g. `PATCH /tickets/7 {"priority": "high"}`.
    calls: list[str]
    #: Their bodies, in the same order.
    bodies: list[dict[str, Any]]

    def sent(self, field: str) -> Any:
        """The value the calls send for `field` (the last one wins), or None if none sends it."""
        values = [body[field] for body in self.bodies if field in body]
        return values[-1] if values else None


@cache
def rules() -> Router:
    """The project's rules, loaded once."""
    return load_rules(RULES)


def decide(vendor: str, body: dict[str, Any]) -> Outcome:
    """Run every rule on a webhook body `vendor` sent and plan what they would send."""
    event = parser(vendor)(json.dumps(body).encode())
    return _outcome(event, asyncio.run(evaluate(rules(), event)))


def decide_scheduled(rule: str, ticket: dict[str, Any], run_at: str = NOW) -> Outcome:
    """Run time-based `rule` at `run_at` on one ticket its list request returned."""
    found = rules().get(rule)
    assert found.vendor, f"{rule} is not a time-based rule"
    when = datetime.fromisoformat(run_at).astimezone(UTC)
    event = listed_event(found.vendor, ticket, rule=rule, tenant="test", run_at=when)
    return _outcome(event, [asyncio.run(run_rule(found, event))])


def selection(rule: str, run_at: str = NOW) -> dict[str, Any]:
    """The list filters a run of time-based `rule` at `run_at` asks the helpdesk for."""
    select = rules().get(rule).select
    assert select is not None, f"{rule} has no select:"
    return select.filters(datetime.fromisoformat(run_at).astimezone(UTC))


def _outcome(event: Event, decisions: list[Decision]) -> Outcome:
    fired = [d for d in decisions if d.fired]
    calls = plan(event, fired).calls
    return Outcome(
        fired=[d.rule.name for d in fired],
        reasons={d.rule.name: d.reason for d in decisions},
        calls=[call.describe() for call in calls],
        bodies=[dict(call.body) for call in calls],
    )


def inboxops(event: str = "ticket.updated", **ticket: Any) -> dict[str, Any]:
    """An InboxOps webhook body; `ticket` overrides fields of a plain open ticket."""
    data: dict[str, Any] = {
        "id": "94f96301-e79c-47e8-b6de-3500ef550601",
        "ticket_number": 7,
        "subject": "Cannot log in after password reset",
        "inbox_id": "ae52d55a-ca5c-4e6b-901f-3f897fd4dc06",
        "status": "open",
        "status_id": "111d4b0a-7d89-4c63-9af7-95a73e070307",
        "priority": "normal",
        "priority_id": "087e6f05-0690-4210-8c50-04735d1e4d4d",
        "assignee_id": None,
        "contact_id": None,
        "remind_at": None,
        "remind_transition_status_id": None,
        "created_at": NOW,
        "updated_at": NOW,
        "custom_fields": {},
    }
    data.update(ticket)
    return {
        "event": event,
        "event_id": "77bcaf00-0838-4bc5-8666-2e140e5df7f6",
        "tenant_id": "4c566b1c-11a1-425c-a807-88c7e46a1006",
        "created_at": NOW,
        "data": data,
    }


def cstar(
    event: str = "ticket.updated", changes: dict[str, Any] | None = None, **ticket: Any
) -> dict[str, Any]:
    """A cStar webhook body; `changes` is cStar's `{field: {from, to}}`."""
    data: dict[str, Any] = {
        "id": "tkt_11a1725c280788c7e46a1006",
        "title": "Cannot log in after password reset",
        "status": "open",
        "priority": "normal",
        "assigned_to": None,
        "tags": [],
        "metadata": {},
        "created_at": NOW,
        "updated_at": NOW,
    }
    data.update(ticket)
    return {
        "id": "evt_86662e140e5df7f6de1b3e6b",
        "type": event,
        "created_at": NOW,
        "team_id": "dc34943b-fb24-4987-96d2-3085d1b654aa",
        "data": {"ticket": data, "customer": None, "changes": changes or {}},
    }


def thena(event: str = "ticket:updated", **ticket: Any) -> dict[str, Any]:
    """A Thena platform event; `event` is Thena's own type, e.g. `ticket:status:changed`."""
    data: dict[str, Any] = {
        "id": "C19GJJXNR1J15RC7TC3VXEHGAHWJK2",
        "ticketId": "1",
        "title": "Cannot log in after password reset",
        "statusName": "Open",
        "priorityName": "Medium",
        "createdAt": NOW,
        "customer": {"email": "ana@example.com", "name": "Ana"},
        "tags": [],
    }
    data.update(ticket)
    return {
        "eventId": "8332fcdf-7018-4ddc-a655-b33b84a64bc7",
        "eventType": event,
        "timestamp": NOW,
        "orgId": "EA4KFPZ4G4YNAPGJEMVC73WDWQ1",
        "payload": {"ticket": data},
    }
