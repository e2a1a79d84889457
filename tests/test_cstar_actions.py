"""The cStar planner: neutral actions mapped to cStar's words, one merged PATCH, tag and metadata
merges, bulk updates, idempotence against the event's ticket; and a planned call end to end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from ticketwire import Context, Router
from ticketwire.calls import ApiCall
from ticketwire.engine import Action, Decision, Rule, compile_yaml, evaluate, make_action
from ticketwire.engine import plan as engine_plan
from ticketwire.engine.actions import ActionError, known_events, vendor_spec
from ticketwire.event import Event
from ticketwire.secret import Secret
from ticketwire.vendors.cstar.actions import plan
from ticketwire.vendors.cstar.client import CStarClient
from ticketwire.vendors.cstar.webhook import parse

CREATED = datetime(2025, 11, 24, 15, 0, tzinfo=UTC)
TICKET: dict[str, Any] = {
    "id": "tkt_1",
    "title": "Printer on fire",
    "status": "open",
    "priority": "normal",
    "assigned_to": None,
    "tags": ["billing"],
    "metadata": {"plan": "pro"},
}


def make_event(*, drop: tuple[str, ...] = (), **ticket: Any) -> Event:
    data = {k: v for k, v in {**TICKET, **ticket}.items() if k not in drop}
    return Event(
        vendor="cstar",
        type="ticket.updated",
        id="evt_9",
        tenant="team-1",
        created_at=CREATED,
        ticket_id="tkt_1",
        ticket=data,
    )


def decision(name: str, *actions: tuple[str, Any], fired: bool = True) -> Decision:
    built = tuple(make_action("cstar", a, v, rule=name) for a, v in actions)
    placeholder = (make_action("cstar", "set_priority", "low", rule=name),)
    rule = Rule(name=name, events=frozenset({"ticket.updated"}), actions=built or placeholder)
    return Decision(rule, fired, "fired" if fired else "condition false", built if fired else ())


def patch(body: dict[str, Any], rules: tuple[str, ...]) -> ApiCall:
    return ApiCall("cstar", "PATCH", "/tickets/tkt_1", body, "tkt_1", rules, "evt_9")


def bulk(data: dict[str, Any], rules: tuple[str, ...]) -> ApiCall:
    body = {"action": "update", "resource": "tickets", "ids": ["tkt_1"], "data": data}
    return ApiCall("cstar", "POST", "/bulk", body, "tkt_1", rules, "evt_9")


# --- neutral actions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("neutral", "sent"),
    [
        ("waiting", "pending"),
        ("in_progress", "open"),
        ("new", "new"),
        ("resolved", "resolved"),
        ("closed", "closed"),
    ],
)
def test_set_status_maps_through_the_vocabulary(neutral: str, sent: str) -> None:
    result = plan(
        make_event(status="pending" if sent != "pending" else "new"),
        [decision("a", ("set_status", neutral))],
    )
    assert result.calls == [patch({"status": sent}, ("a",))]


def test_set_status_already_held_is_dropped() -> None:
    result = plan(make_event(status="pending"), [decision("a", ("set_status", "waiting"))])
    assert result.calls == []
    assert result.notes == ["status already 'pending'; dropped (rule 'a')"]
    # in_progress means open on cStar, which the ticket already is.
    assert plan(make_event(), [decision("a", ("set_status", "in_progress"))]).calls == []


def test_set_priority_and_the_critical_alias() -> None:
    assert plan(make_event(), [decision("a", ("set_priority", "urgent"))]).calls == [
        patch({"priority": "urgent"}, ("a",))
    ]
    held = plan(make_event(priority="critical"), [decision("a", ("set_priority", "urgent"))])
    assert held.calls == [] and held.notes == ["priority already 'urgent'; dropped (rule 'a')"]


def test_assign_and_unassign() -> None:
    assert plan(make_event(), [decision("a", ("assign", "agt_ava"))]).calls == [
        patch({"assignedTo": "agt_ava"}, ("a",))
    ]
    assigned = make_event(assigned_to={"id": "agt_ava"})
    assert plan(assigned, [decision("a", ("assign", "agt_ava"))]).calls == []
    assert plan(assigned, [decision("a", ("unassign", True))]).calls == [
        patch({"assignedTo": None}, ("a",))
    ]
    assert plan(make_event(), [decision("a", ("unassign", True))]).calls == []


def test_unknown_assignee_is_sent() -> None:
    """Without `assigned_to` in the payload, unassigning cannot be known to be a no-op."""
    result = plan(make_event(drop=("assigned_to",)), [decision("a", ("unassign", True))])
    assert result.calls == [patch({"assignedTo": None}, ("a",))]


def test_add_and_remove_tags_with_known_tags_send_the_full_list() -> None:
    result = plan(
        make_event(tags=["billing", "old"]),
        [decision("a", ("add_tags", ["vip", "billing"])), decision("b", ("remove_tags", ["old"]))],
    )
    assert result.calls == [patch({"tags": ["billing", "vip"]}, ("a", "b"))]


def test_tags_already_held_are_dropped() -> None:
    result = plan(
        make_event(tags=["vip", "billing"]),
        [decision("a", ("add_tags", ["vip"])), decision("b", ("remove_tags", ["gone"]))],
    )
    assert result.calls == []
    assert result.notes == ["tags already ['vip', 'billing']; dropped (rule 'a', 'b')"]


def test_unknown_tags_become_a_merge_for_the_client() -> None:
    result = plan(
        make_event(drop=("tags",)),
        [
            decision("a", ("add_tags", ["vip", "late"])),
            decision("b", ("remove_tags", ["late", "spam"])),
        ],
    )
    assert result.calls == [
        patch({"__merge_tags__": {"add": ["vip"], "remove": ["late", "spam"]}}, ("a", "b"))
    ]
    assert result.notes == [
        "tag 'late' is added by rule 'a' and removed by rule 'b'; the later rule wins"
    ]


def test_a_full_tag_list_replaces_earlier_tag_changes() -> None:
    result = plan(
        make_event(drop=("tags",)),
        [decision("a", ("add_tags", ["vip"])), decision("b", ("update", {"tags": ["x"]}))],
    )
    assert result.calls == [patch({"tags": ["x"]}, ("b",))]
    assert result.notes == [
        "tags: rule 'b' sets the whole value ['x'], replacing the changes of rule 'a'"
    ]
    later = plan(
        make_event(drop=("tags",)),
        [decision("a", ("update", {"tags": []})), decision("b", ("add_tags", ["vip"]))],
    )
    assert later.calls == [patch({"tags": ["vip"]}, ("a", "b"))]


def test_set_metadata_merges_into_known_metadata() -> None:
    result = plan(make_event(), [decision("a", ("set_metadata", {"seats": 5}))])
    assert result.calls == [patch({"metadata": {"plan": "pro", "seats": 5}}, ("a",))]
    held = plan(make_event(), [decision("a", ("set_metadata", {"plan": "pro"}))])
    assert held.calls == []


def test_set_metadata_with_unknown_metadata_becomes_a_merge() -> None:
    result = plan(
        make_event(drop=("metadata",)),
        [decision("a", ("set_metadata", {"seats": 5})), decision("b", ("set_metadata", {"x": 1}))],
    )
    assert result.calls == [patch({"__merge_metadata__": {"seats": 5, "x": 1}}, ("a", "b"))]


# --- cStar's own actions ---------------------------------------------------------------------


def test_update_fields_merge_and_later_rules_win() -> None:
    result = plan(
        make_event(),
        [
            decision("a", ("update", {"status": "pending", "title": "Fire!"})),
            decision("b", ("set_status", "closed"), ("set_priority", "high")),
        ],
    )
    assert result.calls == [
        patch({"status": "closed", "title": "Fire!", "priority": "high"}, ("a", "b"))
    ]
    assert result.notes == ["status: rule 'b' sets 'closed', overriding 'pending' from rule 'a'"]


def test_bulk_update_is_one_call_for_this_ticket_after_the_patch() -> None:
    result = plan(
        make_event(),
        [
            decision("a", ("bulk_update", {"status": "closed", "priority": "normal"})),
            decision(
                "b",
                ("set_priority", "high"),
                ("bulk_update", {"priority": "normal", "status": "closed"}),
            ),
        ],
    )
    assert result.calls == [
        patch({"priority": "high"}, ("b",)),
        bulk({"status": "closed"}, ("a", "b")),
    ]
    assert "bulk_update: priority already 'normal'; left out" in result.notes


def test_bulk_update_with_nothing_to_change_is_dropped() -> None:
    result = plan(make_event(), [decision("a", ("bulk_update", {"status": "open"}))])
    assert result.calls == []
    assert result.notes[-1] == "bulk_update: nothing to change; dropped (rule 'a')"


def test_rules_that_did_not_fire_and_foreign_actions_are_ignored() -> None:
    rule = Rule(
        name="odd",
        events=frozenset({"ticket.updated"}),
        actions=(make_action("cstar", "set_priority", "low", rule="odd"),),
    )
    odd = Decision(rule, True, "fired", (Action("move_inbox", {"inbox_id": "x"}, "odd"),))
    result = plan(make_event(), [decision("a", ("set_priority", "high"), fired=False), odd])
    assert result.calls == []
    assert result.notes == ["rule 'odd': 'move_inbox' is not a cStar action; dropped"]


def test_engine_plan_dispatches_on_the_vendor() -> None:
    decisions = [decision("a", ("set_priority", "high"))]
    assert engine_plan(make_event(), decisions).calls == plan(make_event(), decisions).calls


# --- validation and registration -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("update", {"subject": "x"}, "unknown field 'subject'"),
        ("update", {"status": "waiting"}, "'waiting' is not one of the accepted values"),
        ("update", {"tags": "vip"}, "list of tag names"),
        ("update", {}, "expects a mapping of fields"),
        ("set_status", "pending", "'pending' is not one of the accepted values"),
        ("add_tags", [], "non-empty list of tag names"),
        ("add_tags", ["ok", ""], "add_tags item: expects a non-empty string"),
        ("set_metadata", "plan=pro", "expects a mapping"),
        ("bulk_update", {"title": ""}, "bulk_update.title: expects a non-empty string"),
        ("assign", None, "use unassign: true"),
        ("unassign", "yes", "write unassign: true"),
    ],
)
def test_invalid_actions_say_what_is_wrong(name: str, value: Any, says: str) -> None:
    with pytest.raises(ActionError) as caught:
        make_action("cstar", name, value, rule="r")
    assert says in caught.value.message


def test_neutral_actions_normalise_to_cstar_words() -> None:
    """What a rule without `vendor:` means on cStar is decided when the rule is loaded."""
    assert make_action("cstar", "set_status", "waiting", rule="r").params == {"status": "pending"}
    assert make_action("cstar", "assign", "agt_ava", rule="r").params == {"assignedTo": "agt_ava"}
    assert make_action("cstar", "add_tags", ["vip", "vip"], rule="r").params == {"tags": ["vip"]}
    unpinned = make_action(None, "set_status", "in_progress", rule="r").for_vendor("cstar")
    assert (unpinned.name, unpinned.params) == ("update", {"status": "open"})


def test_own_events_are_declared_for_pinned_rules() -> None:
    assert vendor_spec("cstar").events == ("ticket.message_added", "ticket.deleted")
    assert "ticket.message_added" in known_events("cstar")
    assert "ticket.message_added" not in known_events(None)
    rules, errors = compile_yaml(
        "name: on-message\nevent: ticket.message_added\nvendor: cstar\nthen:\n"
        "  - set_status: open\n",
        file="r.yml",
    )
    assert errors == [] and rules[0].events == {"ticket.message_added"}
    router = Router()

    @router.on("ticket.deleted", vendor="cstar")
    async def gone(ctx: Context) -> None:
        ctx.log.info("deleted")

    assert router.rules[0].events == {"ticket.deleted"}


async def test_python_and_yaml_rules_plan_together() -> None:
    rules, errors = compile_yaml(
        "name: yaml-rule\nevent: ticket.updated\nvendor: cstar\nthen:\n"
        "  - set_status: waiting\n  - add_tags: [vip]\n",
        file="r.yml",
    )
    assert errors == []
    router = Router()
    router.add(rules[0])

    @router.on("ticket.updated", name="py-rule", vendor="cstar")
    async def py_rule(ctx: Context) -> None:
        ctx.assign("agt_ben")
        ctx.act("set_metadata", {"escalated": True})

    event = make_event()
    result = plan(event, await evaluate(router, event))
    assert result.calls == [
        patch(
            {
                "status": "pending",
                "assignedTo": "agt_ben",
                "tags": ["billing", "vip"],
                "metadata": {"plan": "pro", "escalated": True},
            },
            ("yaml-rule", "py-rule"),
        )
    ]


# --- end to end: webhook → plan → client → simulator -----------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[CStarSimulator]:
    sim = CStarSimulator(CStarSimulatorConfig(seed=5))
    await sim.start()
    yield sim
    await sim.stop()


async def test_a_planned_tag_merge_applies_on_the_simulator(sim: CStarSimulator) -> None:
    ticket = sim.create_ticket(title="Merge me", tags=["billing", "spam"])
    envelope = {
        "id": "evt_77",
        "type": "ticket.updated",
        "created_at": "2025-11-24T15:00:00Z",
        "team_id": sim.team_id,
        # A payload without tags: the planner cannot know them, the client reads them.
        "data": {"ticket": {"id": ticket["id"], "title": "Merge me", "status": "new"}},
    }
    event = parse(json.dumps(envelope).encode())
    result = plan(
        event,
        [
            decision(
                "a", ("add_tags", ["vip"]), ("remove_tags", ["spam"]), ("set_status", "waiting")
            )
        ],
    )
    [planned] = result.calls
    assert planned.body == {
        "status": "pending",
        "__merge_tags__": {"add": ["vip"], "remove": ["spam"]},
    }
    planned = ApiCall.from_json(planned.to_json())  # as the outbox stores it
    async with aiohttp.ClientSession() as session:
        client = CStarClient(session, sim.url, sim.team_id, Secret(sim.api_key))
        await client.send(planned)
    after = sim.ticket(ticket["id"])
    assert after["tags"] == ["billing", "vip"] and after["status"] == "pending"
