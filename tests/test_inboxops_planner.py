"""The InboxOps planner: one merged PATCH, bulk calls after it, no-ops dropped, notes explain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ticketwire import Context, Router
from ticketwire.calls import ApiCall
from ticketwire.engine import Decision, Rule, evaluate, make_action
from ticketwire.engine import plan as engine_plan
from ticketwire.event import Event
from ticketwire.vendors.inboxops.actions import plan

CREATED = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
TICKET: dict[str, Any] = {
    "id": "t-1",
    "subject": "Printer on fire",
    "status": "open",
    "status_id": "st-open",
    "priority": "normal",
    "priority_id": "pr-normal",
    "assignee_id": None,
    "inbox_id": "inbox-support",
    "remind_at": "2024-05-12T12:00:00.000Z",
    "custom_fields": {"plan": "gold", "seats": 40},
}


def make_event(**ticket: Any) -> Event:
    return Event(
        vendor="inboxops",
        type="ticket.updated",
        id="evt-9",
        tenant="acme",
        created_at=CREATED,
        ticket_id="t-1",
        ticket={**TICKET, **ticket},
    )


def decision(name: str, *actions: tuple[str, Any], fired: bool = True) -> Decision:
    built = tuple(make_action("inboxops", a, v, rule=name) for a, v in actions)
    rule = Rule(
        name=name, events=frozenset({"ticket.updated"}), actions=built or _placeholder(name)
    )
    return Decision(rule, fired, "fired" if fired else "condition false", built if fired else ())


def _placeholder(name: str) -> tuple[Any, ...]:
    return (make_action("inboxops", "set_priority", "low", rule=name),)


def patch(body: dict[str, Any], rules: tuple[str, ...]) -> ApiCall:
    return ApiCall(
        vendor="inboxops",
        method="PATCH",
        path="/tickets/t-1",
        body=body,
        ticket_id="t-1",
        rules=rules,
        event_id="evt-9",
    )


def bulk(op: str, rules: tuple[str, ...], **params: Any) -> ApiCall:
    return ApiCall(
        vendor="inboxops",
        method="POST",
        path="/tickets/bulk",
        body={"operation": op, "ticket_ids": ["t-1"], **params},
        ticket_id="t-1",
        rules=rules,
        event_id="evt-9",
    )


class TestPatchMerge:
    def test_updates_of_all_rules_merge_into_one_patch(self) -> None:
        result = plan(
            make_event(),
            [
                decision("a", ("update", {"priority": "high"})),
                decision("b", ("set_status", "waiting"), ("update", {"subject": "Fire!"})),
            ],
        )
        assert result.calls == [
            patch({"priority": "high", "status": "waiting", "subject": "Fire!"}, ("a", "b"))
        ]
        assert result.notes == []

    def test_later_rule_wins_and_the_loser_is_named(self) -> None:
        result = plan(
            make_event(),
            [
                decision("first", ("set_priority", "high")),
                decision("second", ("set_priority", "urgent")),
            ],
        )
        assert result.calls == [patch({"priority": "urgent"}, ("second",))]
        assert result.notes == [
            "priority: rule 'second' sets 'urgent', overriding 'high' from rule 'first'"
        ]

    def test_same_value_from_two_rules_is_not_a_conflict(self) -> None:
        result = plan(
            make_event(),
            [decision("a", ("set_priority", "high")), decision("b", ("set_priority", "high"))],
        )
        assert result.calls == [patch({"priority": "high"}, ("b",))]
        assert result.notes == []

    def test_custom_fields_merge_per_key(self) -> None:
        result = plan(
            make_event(),
            [
                decision("a", ("update", {"custom_fields": {"plan": "platinum", "region": "eu"}})),
                decision("b", ("update", {"custom_fields": {"region": "us", "score": 9}})),
            ],
        )
        assert result.calls == [
            patch({"custom_fields": {"plan": "platinum", "region": "us", "score": 9}}, ("a", "b"))
        ]
        assert result.notes == [
            "custom_fields.region: rule 'b' sets 'us', overriding 'eu' from rule 'a'"
        ]

    def test_rules_that_did_not_fire_are_ignored(self) -> None:
        result = plan(make_event(), [decision("off", ("set_priority", "high"), fired=False)])
        assert result.calls == []
        assert result.notes == []

    def test_engine_plan_dispatches_on_the_vendor(self) -> None:
        decisions = [decision("a", ("set_priority", "high"), ("add_tags", ["x"]))]
        assert engine_plan(make_event(), decisions) == plan(make_event(), decisions)


class TestIdempotence:
    def test_field_already_set_is_dropped(self) -> None:
        result = plan(
            make_event(priority="high"),
            [decision("a", ("update", {"priority": "high", "subject": "New subject"}))],
        )
        assert result.calls == [patch({"subject": "New subject"}, ("a",))]
        assert result.notes == ["priority already 'high'; dropped (rule 'a')"]

    def test_nothing_left_means_no_patch(self) -> None:
        result = plan(
            make_event(),
            [
                decision("a", ("set_status", "open")),
                decision("b", ("unassign", True)),
                decision("c", ("update", {"custom_fields": {"plan": "gold", "nothing": None}})),
            ],
        )
        assert result.calls == []
        assert result.notes == [
            "status already 'open'; dropped (rule 'a')",
            "assignee_id already null; dropped (rule 'b')",
            "custom_fields.plan already 'gold'; dropped (rule 'c')",
            "custom_fields.nothing already null; dropped (rule 'c')",
        ]

    def test_rule_with_everything_dropped_is_not_credited(self) -> None:
        result = plan(
            make_event(),
            [
                decision("noop", ("set_priority", "normal")),
                decision("real", ("set_status", "waiting")),
            ],
        )
        assert result.calls == [patch({"status": "waiting"}, ("real",))]

    def test_status_and_ids_compare_with_their_own_fields(self) -> None:
        result = plan(
            make_event(),
            [
                decision(
                    "a",
                    (
                        "update",
                        {"status_id": "st-open", "priority_id": "pr-high", "status": "open"},
                    ),
                )
            ],
        )
        assert result.calls == [patch({"priority_id": "pr-high"}, ("a",))]
        assert result.notes == [
            "status_id already 'st-open'; dropped (rule 'a')",
            "status already 'open'; dropped (rule 'a')",
        ]

    def test_remind_at_is_compared_as_an_instant(self) -> None:
        # The ticket says 2024-05-12T12:00:00.000Z; +48h from the event is the same instant.
        result = plan(make_event(), [decision("a", ("remind_at", "+48h"))])
        assert result.calls == []
        assert result.notes == ["remind_at already '2024-05-12T12:00:00Z'; dropped (rule 'a')"]

    def test_a_field_the_ticket_lacks_is_sent(self) -> None:
        ticket_without = {k: v for k, v in TICKET.items() if k != "assignee_id"}
        event = Event(
            vendor="inboxops",
            type="ticket.updated",
            id="evt-9",
            tenant="acme",
            created_at=CREATED,
            ticket_id="t-1",
            ticket=ticket_without,
        )
        assert plan(event, [decision("a", ("unassign", True))]).calls == [
            patch({"assignee_id": None}, ("a",))
        ]

    def test_bulk_ops_already_in_effect_are_dropped(self) -> None:
        result = plan(
            make_event(assignee_id="agent-1"),
            [
                decision("a", ("update_status", "open")),
                decision("b", ("update_status", {"status_id": "st-open"})),
                decision("c", ("assign", "agent-1")),
                decision("d", ("move_inbox", "inbox-support")),
                decision("e", ("add_tags", ["t1"]), ("remove_tags", ["t2"])),
            ],
        )
        assert result.calls == [
            bulk("add_tags", ("e",), tag_ids=["t1"]),
            bulk("remove_tags", ("e",), tag_ids=["t2"]),
        ]
        assert result.notes == [
            "update_status: status already 'open'; dropped (rule 'a')",
            "update_status: status_id already 'st-open'; dropped (rule 'b')",
            "assign: assignee_id already 'agent-1'; dropped (rule 'c')",
            "move_inbox: inbox_id already 'inbox-support'; dropped (rule 'd')",
        ]


class TestBulk:
    def test_bulk_calls_follow_the_patch_in_rule_order(self) -> None:
        result = plan(
            make_event(),
            [
                decision("a", ("add_tags", ["vip", "hot"]), ("set_priority", "high")),
                decision("b", ("assign", "agent-7"), ("move_inbox", "inbox-billing")),
                decision("c", ("update_status", {"status_id": "st-waiting"})),
            ],
        )
        assert result.calls == [
            patch({"priority": "high"}, ("a",)),
            bulk("add_tags", ("a",), tag_ids=["vip", "hot"]),
            bulk("assign", ("b",), assignee_id="agent-7"),
            bulk("move_inbox", ("b",), inbox_id="inbox-billing"),
            bulk("update_status", ("c",), status_id="st-waiting"),
        ]
        assert [c.describe() for c in result.calls][1] == (
            'POST /tickets/bulk {"operation": "add_tags", "tag_ids": ["vip", "hot"], '
            '"ticket_ids": ["t-1"]}'
        )

    def test_identical_operations_are_sent_once_for_every_rule(self) -> None:
        result = plan(
            make_event(),
            [
                decision("a", ("add_tags", ["vip"])),
                decision("b", ("add_tags", ["vip"])),
                decision("c", ("add_tags", ["hot"])),
            ],
        )
        assert result.calls == [
            bulk("add_tags", ("a", "b"), tag_ids=["vip"]),
            bulk("add_tags", ("c",), tag_ids=["hot"]),
        ]

    def test_adding_and_removing_one_tag_is_noted(self) -> None:
        result = plan(
            make_event(),
            [decision("a", ("add_tags", ["vip"])), decision("b", ("remove_tags", ["vip"]))],
        )
        assert len(result.calls) == 2
        assert result.notes == [
            (
                "tag 'vip' is added by rule 'a' and removed by rule 'b'; "
                "both calls are sent, in rule order"
            )
        ]


#: inboxops-update-ticket, `remind_at`.
WITH_WAITING = "Applied when PATCH also sets status to waiting (status or status_id)"
MOVES = (
    "remind_at: status 'waiting' sent with it, as InboxOps applies a reminder only with status "
    "waiting; this 'open' ticket moves to waiting"
)


def waiting(**ticket: Any) -> Event:
    """An event whose ticket waits in the custom status 'st-waiting', with no reminder."""
    return make_event(
        **{"status": "waiting", "status_id": "st-waiting", "remind_at": None, **ticket}
    )


class TestRemindAt:
    def test_relative_reminder_is_resolved_against_the_event(self) -> None:
        result = plan(waiting(), [decision("a", ("remind_at", "+2d"))])
        assert result.calls == [
            patch({"remind_at": "2024-05-12T12:00:00Z", "status_id": "st-waiting"}, ("a",))
        ]

    def test_absolute_reminder_is_normalised_to_utc(self) -> None:
        result = plan(
            waiting(), [decision("a", ("update", {"remind_at": "2024-06-01T10:00:00+02:00"}))]
        )
        assert result.calls == [
            patch({"remind_at": "2024-06-01T08:00:00Z", "status_id": "st-waiting"}, ("a",))
        ]

    def test_clearing_a_reminder(self) -> None:
        event = waiting(remind_at="2024-05-12T12:00:00.000Z")
        result = plan(event, [decision("a", ("remind_at", None))])
        assert result.calls == [patch({"remind_at": None, "status_id": "st-waiting"}, ("a",))]

    def test_replay_plans_the_same_call(self) -> None:
        """Relative times come from the event, so a replay next week plans identical calls."""
        decisions = [decision("a", ("remind_at", "+48h"))]
        first = plan(waiting(), decisions).calls
        again = plan(waiting(), decisions).calls
        assert first == again
        assert first[0].fingerprint() == again[0].fingerprint()


class TestReminderCarriesWaiting:
    """WITH_WAITING: every PATCH with a reminder sets status to waiting in the same body."""

    def test_a_ticket_not_waiting_is_sent_status_waiting(self) -> None:
        result = plan(make_event(remind_at=None), [decision("a", ("remind_at", "+2d"))])
        assert result.calls == [
            patch({"remind_at": "2024-05-12T12:00:00Z", "status": "waiting"}, ("a",))
        ]
        assert result.notes == [MOVES]

    def test_a_waiting_ticket_keeps_its_own_custom_status(self) -> None:
        # Not `status: waiting`, which could swap "Waiting on customer" for the default one.
        result = plan(waiting(), [decision("a", ("remind_at", "+2d"))])
        assert result.calls[0].body["status_id"] == "st-waiting"
        assert "status" not in result.calls[0].body
        assert result.notes == []

    def test_a_waiting_ticket_without_status_id_gets_status_waiting(self) -> None:
        event = make_event(status="waiting", status_id=None, remind_at=None)
        result = plan(event, [decision("a", ("remind_at", "+2d"))])
        assert result.calls[0].body == {"remind_at": "2024-05-12T12:00:00Z", "status": "waiting"}

    def test_dropping_no_ops_keeps_the_status_a_rule_set(self) -> None:
        # status 'waiting' is what the ticket has; alone it would be dropped as a no-op.
        result = plan(
            make_event(status="waiting", remind_at=None),
            [decision("a", ("set_status", "waiting"), ("remind_at", "+2d"))],
        )
        assert result.calls == [
            patch({"status": "waiting", "remind_at": "2024-05-12T12:00:00Z"}, ("a",))
        ]
        assert result.notes == []

    def test_the_ticket_status_id_a_rule_sets_is_kept_too(self) -> None:
        result = plan(
            waiting(),
            [decision("a", ("update", {"status_id": "st-waiting", "remind_at": "+2d"}))],
        )
        assert result.calls[0].body == {
            "status_id": "st-waiting",
            "remind_at": "2024-05-12T12:00:00Z",
        }
        assert result.notes == []

    def test_another_status_id_goes_with_a_note(self) -> None:
        result = plan(
            make_event(remind_at=None),
            [decision("a", ("update", {"status_id": "st-later", "remind_at": "+2d"}))],
        )
        assert result.calls[0].body == {
            "status_id": "st-later",
            "remind_at": "2024-05-12T12:00:00Z",
        }
        assert result.notes == [
            (
                "remind_at: InboxOps applies it only with a waiting status; it goes with status_id "
                "'st-later' (rule 'a'), which must be a custom status of type waiting"
            )
        ]

    def test_a_rule_setting_another_status_drops_the_reminder(self) -> None:
        result = plan(
            make_event(remind_at=None),
            [decision("a", ("remind_at", "+2d")), decision("b", ("set_status", "in_progress"))],
        )
        assert result.calls == [patch({"status": "in_progress"}, ("b",))]
        assert result.notes == [
            (
                "remind_at: dropped; InboxOps applies it only with status waiting, and rule 'b' sets "
                "status 'in_progress'"
            )
        ]

    def test_clearing_on_a_ticket_not_waiting_is_dropped(self) -> None:
        result = plan(make_event(), [decision("a", ("remind_at", None))])
        assert result.calls == []
        assert result.notes == [
            (
                "remind_at: dropped; InboxOps changes a reminder only with status waiting, and "
                "clearing it would move this 'open' ticket to waiting"
            )
        ]

    def test_clearing_a_transition_on_a_ticket_not_waiting_is_dropped(self) -> None:
        event = make_event(remind_transition_status_id="st-closed")
        result = plan(event, [decision("a", ("update", {"remind_transition_status_id": None}))])
        assert result.calls == []
        assert result.notes[0].startswith("remind_transition_status_id: dropped;")

    def test_transition_status_alone_also_carries_waiting(self) -> None:
        result = plan(
            waiting(), [decision("a", ("update", {"remind_transition_status_id": "st-closed"}))]
        )
        assert result.calls[0].body == {
            "remind_transition_status_id": "st-closed",
            "status_id": "st-waiting",
        }

    def test_a_reminder_the_ticket_has_needs_no_status(self) -> None:
        # The ticket already reminds at that instant: nothing to send, no status either.
        event = waiting(remind_at="2024-05-12T12:00:00.000Z")
        result = plan(event, [decision("a", ("remind_at", "+48h"))])
        assert result.calls == []


def test_unknown_actions_are_dropped_with_a_note() -> None:
    rule = Rule(name="odd", events=frozenset({"ticket.updated"}), actions=_placeholder("odd"))
    from ticketwire.engine import Action

    result = plan(make_event(), [Decision(rule, True, "fired", (Action("send_sms", {}, "odd"),))])
    assert result.calls == []
    assert result.notes == ["rule 'odd': 'send_sms' is not an InboxOps action; dropped"]


async def test_python_and_yaml_rules_plan_together() -> None:
    from ticketwire.engine import compile_yaml

    rules, errors = compile_yaml(
        "name: yaml-rule\nevent: ticket.updated\nthen:\n  - set_priority: high\n"
        "  - add_tags: [vip]\nvendor: inboxops\n",
        file="r.yml",
    )
    assert errors == []
    router = Router()
    router.add(rules[0])

    @router.on("ticket.updated", name="py-rule")
    async def py_rule(ctx: Context) -> None:
        ctx.set_priority("urgent")
        ctx.add_tags(["vip"])
        ctx.assign("agent-3")

    event = make_event()
    result = plan(event, await evaluate(router, event))
    assert result.calls == [
        patch({"priority": "urgent"}, ("py-rule",)),
        bulk("add_tags", ("yaml-rule", "py-rule"), tag_ids=["vip"]),
        bulk("assign", ("py-rule",), assignee_id="agent-3"),
    ]
    assert result.notes == [
        "priority: rule 'py-rule' sets 'urgent', overriding 'high' from rule 'yaml-rule'"
    ]
