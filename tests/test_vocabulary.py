"""The neutral vocabulary: `common.*` fields read the same on every vendor's events."""

from __future__ import annotations

import json

import pytest

from ticketwire.engine import Router, compile_yaml, evaluate
from ticketwire.engine.actions import NEUTRAL_ACTIONS
from ticketwire.errors import RuleConfigError
from ticketwire.vendors.inboxops.webhook import parse
from ticketwire.vocabulary import (
    NEUTRAL_PRIORITIES,
    NEUTRAL_STATUSES,
    STATUS_FROM_VENDOR,
    STATUS_TO_VENDOR,
    neutral_priority,
    neutral_status,
    vendor_status,
)


def inboxops_event(**ticket):
    body = {
        "event": "ticket.updated",
        "event_id": "e1",
        "tenant_id": "ws",
        "created_at": "2026-11-23T10:00:00Z",
        "data": {"id": "t1", **ticket},
    }
    return parse(json.dumps(body).encode())


def test_inboxops_events_carry_the_common_view():
    ev = inboxops_event(status="waiting", priority="urgent", assignee_id="a1", subject="Hi")
    assert ev.common == {
        "status": "waiting",
        "priority": "urgent",
        "assignee": "a1",
        "tags": None,
        "subject": "Hi",
    }


@pytest.mark.parametrize("vendor", ["inboxops", "cstar", "thena"])
def test_every_neutral_status_maps_to_a_vendor_value_and_back(vendor):
    for neutral in NEUTRAL_STATUSES:
        own = vendor_status(vendor, neutral)
        back = neutral_status(vendor, own)
        assert back is not None
        assert vendor_status(vendor, back) == own  # round trip lands on the same vendor value
    assert set(STATUS_TO_VENDOR[vendor]) == set(NEUTRAL_STATUSES)
    assert set(STATUS_FROM_VENDOR[vendor].values()) <= set(NEUTRAL_STATUSES)


def test_unknown_vendor_values_are_none():
    assert neutral_status("cstar", "archived") is None
    assert neutral_priority("cstar", "critical") == "urgent"
    assert neutral_priority("thena", "Medium") == "normal"
    assert neutral_priority("inboxops", None) is None
    assert set(NEUTRAL_PRIORITIES) == {"low", "normal", "high", "urgent"}


async def test_a_rule_on_common_fields_fires_from_the_neutral_view():
    rules, errors = compile_yaml(
        """
name: waiting-urgent
events: [ticket.updated]
if:
  all:
    - {field: common.status, equals: waiting}
    - {field: common.priority, in: [high, urgent]}
then:
  - set_priority: high
""",
        file="r.yml",
    )
    assert errors == []
    router = Router()
    for rule in rules:
        router.add(rule)
    [fired] = await evaluate(router, inboxops_event(status="waiting", priority="urgent"))
    assert fired.fired
    [skipped] = await evaluate(router, inboxops_event(status="open", priority="urgent"))
    assert not skipped.fired and "common.status" in skipped.reason


@pytest.mark.parametrize(
    ("condition", "says"),
    [
        ("{field: common.state, equals: open}", "unknown common field 'state'"),
        ("{field: common.status, equals: pending}", "unknown neutral status 'pending'"),
    ],
)
def test_common_fields_and_values_are_checked_at_load(condition, says):
    _, errors = compile_yaml(
        f"name: r\nevents: [ticket.updated]\nif: {condition}\nthen:\n  - set_priority: high\n",
        file="r.yml",
    )
    assert len(errors) == 1 and isinstance(errors[0], RuleConfigError)
    assert says in str(errors[0])


def _compile(text: str):
    return compile_yaml(text, file="r.yml")


def test_neutral_actions_unpinned_mean_each_vendors_own_value():
    rules, errors = _compile("name: r\nevents: [ticket.updated]\nthen:\n  - set_status: waiting\n")
    assert errors == []
    [action] = rules[0].actions
    assert action.variants is not None  # one reading per vendor, picked per event
    assert action.for_vendor("inboxops").params == {"status": "waiting"}


def test_vendor_specific_action_unpinned_says_how_to_pin():
    _, [error] = _compile(
        "name: r\nevents: [ticket.updated]\nthen:\n  - update: {status: in_progress}\n"
    )
    # Every helpdesk that refuses it, each with its own reason.
    assert error.message.startswith("'update' works on inboxops only (cstar: update.status: ")
    assert "; thena: update: unknown field 'status'" in error.message
    assert "pin it with vendor: inboxops" in error.message


def test_an_action_only_one_helpdesk_has_names_all_that_lack_it():
    _, [error] = _compile("name: r\nevents: [ticket.updated]\nthen:\n  - move_inbox: in_1\n")
    assert error.message.startswith(
        "'move_inbox' works on inboxops only (cstar and thena have no such action); a rule "
        "without vendor: runs on every helpdesk, so pin it with vendor: inboxops, or use the "
        "neutral actions set_status,"
    )
    assert "for vendor" not in error.message
    assert error.message.endswith(", ".join(NEUTRAL_ACTIONS))
    assert error.accepted == ()  # the message says what to use instead


def test_an_action_no_helpdesk_has_speaks_for_none_of_them():
    _, [error] = _compile("name: r\nevents: [ticket.updated]\nthen:\n  - add_tag: [vip]\n")
    assert error.message.startswith(
        "unknown action 'add_tag'; did you mean 'add_tags'? No helpdesk"
    )
    assert "vendor: cstar | inboxops | thena" in error.message
    assert "'cstar'" not in error.message


def test_a_value_no_helpdesk_takes_is_one_neutral_message():
    _, [error] = _compile("name: r\nevents: [ticket.updated]\nthen:\n  - set_status: wating\n")
    assert error.message == (
        "set_status: 'wating' is not one of the accepted values; did you mean 'waiting'?"
    )


def test_a_pinned_rule_keeps_its_helpdesks_words():
    _, [error] = _compile(
        "name: r\nvendor: cstar\nevents: [ticket.updated]\nthen:\n  - move_inbox: in_1\n"
    )
    assert error.message.startswith("unknown action 'move_inbox' for vendor 'cstar'")


def test_an_action_the_pinned_vendor_cannot_do_is_rejected_naming_it():
    _, [error] = _compile(
        "name: r\nevents: [ticket.updated]\nvendor: thena\nthen:\n  - add_tags: [vip]\n"
    )
    assert "unknown action 'add_tags' for vendor 'thena'" in error.message


@pytest.mark.parametrize(
    "ticket",
    [
        {"status": "waiting", "priority": "urgent", "assignee_id": "a1", "subject": "Hi"},
        {
            "status": "open",
            "custom_fields": {"plan": "x"},
            "updated_at": "2026-11-23T09:00:00.000Z",
        },
    ],
)
def test_stored_bodies_parse_to_the_same_event(ticket):
    from ticketwire.vendors.inboxops.webhook import parse_stored

    body = {
        "event": "ticket.updated",
        "event_id": "e1",
        "tenant_id": "ws",
        "created_at": "2026-11-23T10:00:00Z",
        "data": {"id": "t1", **ticket},
    }
    raw = json.dumps(body).encode()
    assert parse_stored(raw).model_dump() == parse(raw).model_dump()


def test_a_stored_body_intake_would_refuse_still_fails_loudly():
    from ticketwire.errors import MalformedEvent
    from ticketwire.vendors.inboxops.webhook import parse_stored

    with pytest.raises(MalformedEvent):
        parse_stored(b'{"event": "ticket.updated", "data": {"id": 5}}')


async def test_rules_read_what_the_helpdesk_says_changed():
    from ticketwire.vendors.cstar.webhook import parse as cstar_parse

    body = {
        "id": "evt_1",
        "type": "ticket.updated",
        "created_at": "2026-11-23T10:00:00Z",
        "team_id": "team",
        "data": {
            "ticket": {"id": "tkt_1", "title": "x", "status": "pending", "priority": "high"},
            "changes": {"status": {"from": "open", "to": "pending"}},
        },
    }
    rules, errors = compile_yaml(
        "name: r\nvendor: cstar\nevents: [ticket.updated]\n"
        "if:\n  all:\n    - {field: changes.status.from, equals: open}\n"
        "    - {field: changes.status.to, equals: pending}\n"
        "then:\n  - set_priority: urgent\n",
        file="r.yml",
    )
    assert errors == []
    router = Router()
    router.add(rules[0])
    [fired] = await evaluate(router, cstar_parse(json.dumps(body).encode()))
    assert fired.fired
    del body["data"]["changes"]
    [skipped] = await evaluate(router, cstar_parse(json.dumps(body).encode()))
    assert not skipped.fired and "changes.status.from is missing" in skipped.reason


def test_changes_paths_are_checked_at_load():
    _, [error] = compile_yaml(
        "name: r\nvendor: cstar\nevents: [ticket.updated]\n"
        "if: {field: changes.status, equals: open}\nthen:\n  - set_priority: urgent\n",
        file="r.yml",
    )
    assert "changes.<field>.from" in error.message


def test_a_helpdesks_explained_gap_keeps_its_explanation():
    from ticketwire.engine.actions import ActionError, _unpinned_error

    gap = ActionError("thena has no add_note: Thena documents no API that adds a note")
    error = _unpinned_error("add_note", ["cstar", "inboxops"], {"thena": gap})
    assert error.message.startswith(
        "'add_note' works on cstar and inboxops only (thena has no add_note: Thena documents no "
        "API that adds a note); a rule without vendor: runs on every helpdesk, so pin it with "
        "vendor: cstar or vendor: inboxops (one copy of the rule for each)"
    )
    assert error.accepted == ()
