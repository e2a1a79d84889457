"""Thena actions and planner: the vocabulary (no tag actions), neutral actions, id-wins, the
merge of rules, idempotence against the event's ticket, bulk update, create_ticket templating
with dedup keys, and the planned calls sent to the simulator."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

import ticketwire.vendors.thena.actions  # noqa: F401  (registers the vocabulary)
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
from ticketwire.calls import ApiCall
from ticketwire.engine import Decision, Rule, compile_yaml, make_action, vendor_spec
from ticketwire.engine import plan as engine_plan
from ticketwire.engine.actions import Action, ActionError
from ticketwire.event import Event
from ticketwire.secret import Secret
from ticketwire.vendors.thena.actions import dedup_key, plan
from ticketwire.vendors.thena.client import ThenaClient
from ticketwire.vendors.thena.webhook import parse

CREATED = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
TICKET: dict[str, Any] = {
    "id": "CT1",
    "title": "Printer on fire",
    "statusId": "st-open",
    "statusName": "Open",
    "priorityId": "pr-medium",
    "priorityName": "Medium",
    "teamId": "T1",
    "assignedAgent": {"id": "U1", "email": "ada@acme.test", "name": "Ada"},
    "assignedAgentId": "U1",
    "requestorEmail": "maya@example.com",
    "customer": {"email": "maya@example.com", "name": "Maya"},
    "isPrivate": False,
    "typeId": "ty-q",
    "ticketId": "17",
}


def make_event(**ticket: Any) -> Event:
    """The event with ticket fields changed; a value of `...` removes the key."""
    merged = {**TICKET, **ticket}
    return Event(
        vendor="thena",
        type="ticket.updated",
        id="evt-9",
        tenant="ORG1",
        created_at=CREATED,
        ticket_id="CT1",
        ticket={k: v for k, v in merged.items() if v is not ...},
    )


def decision(name: str, *actions: tuple[str, Any]) -> Decision:
    built = tuple(make_action("thena", a, v, rule=name) for a, v in actions)
    rule = Rule(name=name, events=frozenset({"ticket.updated"}), actions=built)
    return Decision(rule, True, "fired", built)


def patch(body: dict[str, Any], rules: tuple[str, ...]) -> ApiCall:
    return ApiCall("thena", "PATCH", "/tickets/CT1", body, "CT1", rules, "evt-9")


def bulk(body: dict[str, Any], rules: tuple[str, ...]) -> ApiCall:
    return ApiCall(
        "thena", "PATCH", "/tickets/bulk", {"ticketIds": ["CT1"], **body}, "CT1", rules, "evt-9"
    )


# --- vocabulary ------------------------------------------------------------------------------


def test_vocabulary_has_no_tag_actions_and_declares_thena_events() -> None:
    spec = vendor_spec("thena")
    assert set(spec.actions) == {
        "set_status",
        "set_priority",
        "assign",
        "unassign",
        "update",
        "bulk_update",
        "create_ticket",
        "create_tickets",
    }
    assert "ticket:priority:changed" in spec.events
    assert "ticket:tag:updated" in spec.events
    assert "ticket.closed" not in spec.events


def test_yaml_rules_pinned_to_thena() -> None:
    good = """
        name: urgent-escalation
        vendor: thena
        events: [ticket:priority:changed, ticket:escalated]
        if: {field: common.priority, equals: urgent}
        then:
          - set_status: in_progress
          - create_ticket: {title: "Escalated: {{ticket.title}}"}
    """
    rules, errors = compile_yaml(textwrap.dedent(good), file="r.yml")
    assert errors == []
    assert rules[0].events == frozenset({"ticket:priority:changed", "ticket:escalated"})
    tags = """
        name: tagger
        vendor: thena
        events: [ticket.created]
        then: [{add_tags: [vip]}]
    """
    _, errors = compile_yaml(textwrap.dedent(tags), file="r.yml")
    assert len(errors) == 1
    assert "unknown action 'add_tags'" in str(errors[0])
    assert "create_ticket" in str(errors[0])
    unpinned = """
        name: everywhere
        events: [ticket:priority:changed]
        then: [{unassign: true}]
    """
    _, errors = compile_yaml(textwrap.dedent(unpinned), file="r.yml")
    assert "unknown event type 'ticket:priority:changed'" in str(errors[0])


def test_unpinned_tag_actions_name_thena() -> None:
    with pytest.raises(ActionError, match=r"\(thena has no such action\)"):
        make_action(None, "add_tags", ["vip"], rule="r")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("set_status", "done", "not one of the neutral values"),
        ("set_priority", "Medium", "not one of the neutral values"),
        ("assign", None, "use unassign: true"),
        ("unassign", False, "write unassign: true"),
        ("update", {"status": "Closed"}, "unknown field 'status'"),
        ("update", {"isPrivate": "yes"}, "expects true or false"),
        ("update", {"metadata": [1]}, "expects a mapping"),
        ("update", {"dueDate": "tomorrow"}, "update.dueDate"),
        ("update", {"statusId": None}, "expects a non-empty string"),
        ("update", {}, "expects a mapping of fields"),
        ("bulk_update", {"statusName": "Closed"}, "unknown field 'statusName'"),
        ("create_ticket", {"description": "no title"}, "needs a title"),
        ("create_ticket", {"title": "{{event.id}}"}, "unknown placeholder '{{event.id}}'"),
        ("create_ticket", {"title": "{{ticket.title}"}, "unbalanced"),
        ("create_ticket", {"title": "x", "teamID": "T1"}, "unknown field 'teamID'"),
        ("create_tickets", [], "non-empty list"),
        ("create_tickets", {"tickets": [{"title": "x"}], "stopOnError": "no"}, "true or false"),
        ("create_tickets", {"tickets": [{"title": "x"}], "atomic": True}, "unknown key 'atomic'"),
    ],
)
def test_invalid_actions_say_what_is_wrong(name: str, value: Any, message: str) -> None:
    with pytest.raises(ActionError, match=message.replace("[", r"\[").replace("{", r"\{")):
        make_action("thena", name, value, rule="r")


# --- neutral actions and merging -------------------------------------------------------------


def test_neutral_actions_map_through_the_vocabulary() -> None:
    result = plan(
        make_event(assignedAgent=None, assignedAgentId=None),
        [
            decision("a", ("set_status", "waiting"), ("set_priority", "normal")),
            decision("b", ("assign", "U2")),
        ],
    )
    assert result.calls == [patch({"statusName": "On hold", "assignedAgentId": "U2"}, ("a", "b"))]
    # normal is Medium, which the ticket already has.
    assert result.notes == ["priority already priorityName 'Medium'; dropped (rule 'a')"]
    result = plan(make_event(), [decision("c", ("unassign", True), ("set_priority", "urgent"))])
    assert result.calls == [patch({"assignedAgentId": None, "priorityName": "Urgent"}, ("c",))]


def test_later_rule_wins_and_the_loser_is_named() -> None:
    result = plan(
        make_event(),
        [decision("first", ("set_priority", "high")), decision("second", ("set_priority", "low"))],
    )
    assert result.calls == [patch({"priorityName": "Low"}, ("second",))]
    assert result.notes == [
        (
            "priority: rule 'second' sets priorityName 'Low', overriding priorityName 'High' "
            "from rule 'first'"
        )
    ]


def test_an_id_and_a_name_in_one_action_are_both_sent() -> None:
    result = plan(
        make_event(),
        [decision("a", ("update", {"statusId": "st-closed", "statusName": "Closed"}))],
    )
    assert result.calls == [patch({"statusId": "st-closed", "statusName": "Closed"}, ("a",))]


def test_a_later_name_replaces_an_earlier_id() -> None:
    result = plan(
        make_event(),
        [
            decision("by-id", ("update", {"statusId": "st-closed"})),
            decision("by-name", ("set_status", "resolved")),
        ],
    )
    # Sending both would let the earlier rule's id win at Thena.
    assert result.calls == [patch({"statusName": "Resolved"}, ("by-name",))]
    assert "overriding statusId 'st-closed' from rule 'by-id'" in result.notes[0]


def test_update_fields_merge_across_rules() -> None:
    result = plan(
        make_event(),
        [
            decision("a", ("update", {"title": "Fire!", "metadata": {"k": 1}})),
            decision("b", ("update", {"isPrivate": True, "dueDate": "+48h"})),
        ],
    )
    assert result.calls == [
        patch(
            {
                "title": "Fire!",
                "metadata": {"k": 1},
                "isPrivate": True,
                "dueDate": "2025-01-08T09:00:00Z",
            },
            ("a", "b"),
        )
    ]


def test_unfired_and_foreign_actions_are_left_out() -> None:
    fired = decision("a", ("set_status", "closed"))
    idle = Decision(fired.rule, False, "condition false", ())
    assert plan(make_event(), [idle]).calls == []
    odd = Decision(fired.rule, True, "fired", (Action("move_inbox", {"inbox_id": "x"}, "a"),))
    result = plan(make_event(), [odd])
    assert result.calls == []
    assert result.notes == ["rule 'a': 'move_inbox' is not a Thena action; dropped"]


# --- idempotence -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ticket", "action"),
    [
        ({}, ("set_status", "open")),
        ({}, ("set_status", "new")),
        ({"statusName": "Pending"}, ("set_status", "waiting")),
        ({"statusName": "closed"}, ("update", {"statusName": "Closed"})),
        ({}, ("update", {"statusId": "st-open", "statusName": "Closed"})),
        ({}, ("set_priority", "normal")),
        ({}, ("update", {"priorityId": "pr-medium"})),
        ({}, ("assign", "U1")),
        ({"assignedAgentId": ...}, ("assign", "U1")),
        ({"assignedAgentId": ..., "assignedAgent": None}, ("unassign", True)),
        ({}, ("update", {"assignedAgentEmail": "ADA@acme.test"})),
        ({}, ("update", {"isPrivate": False, "title": "Printer on fire"})),
        ({}, ("bulk_update", {"typeId": "ty-q", "isPrivate": False})),
    ],
)
def test_changes_the_ticket_already_shows_are_dropped(
    ticket: dict[str, Any], action: tuple[str, Any]
) -> None:
    result = plan(make_event(**ticket), [decision("r", action)])
    assert result.calls == []
    assert result.notes and all("dropped (rule 'r')" in n for n in result.notes)


@pytest.mark.parametrize(
    ("ticket", "action"),
    [
        # The id decides when both are given: a different id is a change even with the same name.
        ({}, ("update", {"statusId": "st-other", "statusName": "Open"})),
        # A custom status the vocabulary does not know is not the neutral one asked for.
        ({"statusName": "Waiting on customer"}, ("set_status", "waiting")),
        # Nothing says who is assigned: unassigning is sent.
        ({"assignedAgentId": ..., "assignedAgent": ...}, ("unassign", True)),
        ({"assignedAgentId": None, "assignedAgent": None}, ("assign", "U1")),
    ],
)
def test_changes_the_ticket_does_not_show_are_sent(
    ticket: dict[str, Any], action: tuple[str, Any]
) -> None:
    result = plan(make_event(**ticket), [decision("r", action)])
    assert len(result.calls) == 1
    assert result.notes == []


# --- bulk update -----------------------------------------------------------------------------


def test_bulk_update_carries_the_events_ticket_only() -> None:
    result = plan(
        make_event(),
        [
            decision("a", ("bulk_update", {"statusId": "st-closed", "isPrivate": False})),
            decision("b", ("bulk_update", {"priorityId": "pr-high"}), ("set_priority", "low")),
        ],
    )
    assert result.calls == [
        patch({"priorityName": "Low"}, ("b",)),
        bulk({"statusId": "st-closed", "priorityId": "pr-high"}, ("a", "b")),
    ]
    assert result.notes == [
        "isPrivate already isPrivate False; dropped (rule 'a')",
        (
            "priority: set by rule 'b' (update) and rule 'b' (bulk_update); both are sent, "
            "the bulk update last"
        ),
    ]


# --- create_ticket ---------------------------------------------------------------------------


def test_create_ticket_fills_templates_team_and_dedup_key() -> None:
    result = plan(
        make_event(),
        [
            decision(
                "follow-up",
                (
                    "create_ticket",
                    {
                        "title": "Follow-up: {{ ticket.title }} (#{{ticket.ticketId}})",
                        "requestorEmail": "{{ticket.requestorEmail}}",
                        "description": "Agent: {{ticket.assignedAgent.name}}, {{ticket.nothing}}.",
                        "isPrivate": "{{ticket.isPrivate}}",
                        "metadata": {"origin": "{{ticket.id}}", "gone": "{{ticket.nope}}"},
                        "priorityName": "High",
                    },
                ),
            )
        ],
    )
    [created] = result.calls
    assert (created.method, created.path, created.rules) == (
        "POST",
        "/tickets/bulk",
        ("follow-up",),
    )
    assert created.body == {
        "tickets": [
            {
                "title": "Follow-up: Printer on fire (#17)",
                "requestorEmail": "maya@example.com",
                "description": "Agent: Ada, .",
                "isPrivate": False,
                "metadata": {"origin": "CT1"},
                "priorityName": "High",
                "teamId": "T1",
                "deDuplicationKey": dedup_key("evt-9", "follow-up", 0, 0),
            }
        ],
        "options": {"stopOnError": True},
    }
    assert result.notes == []


def test_dedup_keys_are_stable_per_event_rule_and_position() -> None:
    decisions = [
        decision(
            "r1",
            ("create_ticket", {"title": "a"}),
            ("create_tickets", [{"title": "b"}, {"title": "c"}]),
        ),
        decision("r2", ("create_ticket", {"title": "d", "deDuplicationKey": "mine-{{ticket.id}}"})),
    ]
    first = plan(make_event(), decisions)
    again = plan(make_event(), decisions)
    assert first.calls == again.calls
    keys = [t["deDuplicationKey"] for c in first.calls for t in c.body["tickets"]]
    assert keys[:3] == [
        dedup_key("evt-9", "r1", 0, 0),
        dedup_key("evt-9", "r1", 1, 0),
        dedup_key("evt-9", "r1", 1, 1),
    ]
    assert keys[3] == "mine-CT1"
    assert len(set(keys)) == 4
    other_event = plan(make_event().model_copy(update={"id": "evt-10"}), decisions)
    assert [t["deDuplicationKey"] for t in other_event.calls[0].body["tickets"]] != keys[:1]


def test_create_tickets_options_and_dropped_tickets() -> None:
    result = plan(
        make_event(teamId=...),
        [
            decision(
                "r",
                (
                    "create_tickets",
                    {
                        "tickets": [
                            {"title": "{{ticket.missing}}"},
                            {"title": "kept", "requestorEmail": "{{ticket.customer.email}}"},
                            {"title": "no email", "requestorEmail": "{{ticket.contactEmail}}"},
                        ],
                        "stopOnError": False,
                    },
                ),
            )
        ],
    )
    [created] = result.calls
    assert created.body["options"] == {"stopOnError": False}
    assert [t["title"] for t in created.body["tickets"]] == ["kept", "no email"]
    assert created.body["tickets"][0]["requestorEmail"] == "maya@example.com"
    assert "teamId" not in created.body["tickets"][0]
    assert result.notes == [
        "rule 'r': new ticket 0 has an empty title after filling in the event's ticket; dropped",
        "rule 'r': new ticket 2: requestorEmail left out (the event's ticket has no value for it)",
    ]


def test_the_engine_plans_thena_events_with_this_planner() -> None:
    result = engine_plan(make_event(), [decision("r", ("set_status", "closed"))])
    assert result.calls == [patch({"statusName": "Closed"}, ("r",))]


# --- against the simulator -------------------------------------------------------------------


async def test_planned_calls_apply_to_the_simulator_and_a_rerun_creates_nothing() -> None:
    sim = ThenaSimulator(ThenaSimulatorConfig(seed=2, rate_limit_per_minute=None))
    await sim.start()
    try:
        t = sim.create_ticket(title="Broken VPN", requestorEmail="omar@example.com")
        sim.change_ticket(t["id"], statusName="Closed")
        env = {
            "eventId": "evt-closed",
            "eventType": "ticket:status:changed",
            "timestamp": 1736154000,
            "orgId": sim.org_id,
            "payload": {"ticket": sim.event_ticket(t["id"])},
        }
        event = parse(json.dumps(env).encode())
        assert event.type == "ticket.closed"
        decisions = [
            decision("reopen-high", ("set_priority", "high"), ("assign", sim.agents[1]["id"])),
            decision(
                "follow-up",
                (
                    "create_ticket",
                    {
                        "title": "Check in: {{ticket.title}}",
                        "requestorEmail": "{{ticket.customer.email}}",
                    },
                ),
            ),
        ]
        calls = plan(event, decisions).calls
        async with aiohttp.ClientSession() as session:
            client = ThenaClient(session, sim.url, api_key=Secret(sim.api_key))
            for c in calls:
                await client.send(c)
            for c in plan(event, decisions).calls:
                await client.send(c)
        tickets = sim.tickets()
        assert [x["title"] for x in tickets] == ["Broken VPN", "Check in: Broken VPN"]
        assert (tickets[0]["priority"], tickets[0]["assignedAgentId"]) == (
            "High",
            sim.agents[1]["id"],
        )
        assert tickets[1]["requestorEmail"] == "omar@example.com"
        assert tickets[1]["teamId"] == sim.team_id
    finally:
        await sim.stop()
