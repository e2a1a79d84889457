"""`add_note`: validation and `ticketwire check`, planning per helpdesk, coalescing, batching, the
cStar idempotency key and how a note's echo is recognised."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cli.check import run_check
from ticketwire import Context, Router
from ticketwire.calls import ApiCall
from ticketwire.engine import Decision, Rule, check_rules, compile_yaml, evaluate, make_action
from ticketwire.engine import plan as engine_plan
from ticketwire.engine.actions import NEUTRAL_ACTIONS, ActionError
from ticketwire.engine.echo import ANY, NOTE, Write, match_echo
from ticketwire.engine.guard import GuardPolicy, GuardState, decide, firing_print
from ticketwire.errors import RuleConfigError
from ticketwire.event import Event
from ticketwire.vendors.cstar import batching as cstar_batching
from ticketwire.vendors.cstar.client import idempotency_key
from ticketwire.vendors.cstar.echo import written_fields as cstar_written
from ticketwire.vendors.inboxops import batching as inboxops_batching
from ticketwire.vendors.inboxops.echo import written_fields as inboxops_written
from ticketwire.writeback import Pending, batch, coalesce

CREATED = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
ESCALATED = "Escalated because priority is {{ticket.priority}}"


def event(vendor: str = "inboxops", event_id: str = "evt-1", **ticket: Any) -> Event:
    base: dict[str, Any] = (
        {"id": "t-1", "subject": "Printer on fire", "status": "open", "priority": "urgent"}
        if vendor == "inboxops"
        else {"id": "t-1", "title": "Printer on fire", "status": "open", "priority": "urgent"}
    )
    return Event(
        vendor=vendor,
        type="ticket.updated",
        id=event_id,
        tenant="acme",
        created_at=CREATED,
        ticket_id="t-1",
        ticket={**base, **ticket},
        common={"priority": "urgent", "status": "open", "subject": "Printer on fire"},
    )


def decision(vendor: str | None, name: str, *actions: tuple[str, Any]) -> Decision:
    built = tuple(make_action(vendor, a, v, rule=name) for a, v in actions)
    rule = Rule(name=name, events=frozenset({"ticket.updated"}), vendor=vendor, actions=built)
    return Decision(rule, True, "fired", built)


def note_call(vendor: str, body: dict[str, Any], rule: str, event_id: str = "evt-1") -> ApiCall:
    return ApiCall(vendor, "POST", "/tickets/t-1/messages", body, "t-1", (rule,), event_id)


def io_note(text: str, rule: str = "a", event_id: str = "evt-1") -> ApiCall:
    body = {"type": "internal_note", "body_html": f"<p>{text}</p>", "body_text": text}
    return note_call("inboxops", body, rule, event_id)


# ---- the action and `ticketwire check`


def test_add_note_is_a_neutral_action():
    assert "add_note" in NEUTRAL_ACTIONS


@pytest.mark.parametrize("vendor", ["inboxops", "cstar"])
def test_a_string_or_text_mapping_gives_the_same_action(vendor):
    a = make_action(vendor, "add_note", ESCALATED, rule="r")
    b = make_action(vendor, "add_note", {"text": ESCALATED}, rule="r")
    assert a == b and a.params == {"text": ESCALATED}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "the text must be non-empty"),
        ({"text": "  "}, "the text must be non-empty"),
        ({"body": "x"}, "unknown key 'body'"),
        ({}, "the note needs a text"),
        (["x"], "expects the note's text"),
        ("Hi {{ticket.nope}}", "no field 'nope'"),
        ("Hi {{event.id}}", "unknown placeholder '{{event.id}}'"),
        ("x" * 10_001, "at most 10000"),
    ],
)
def test_bad_notes_are_refused(value, says):
    with pytest.raises(ActionError) as caught:
        make_action("inboxops", "add_note", value, rule="r")
    assert says in caught.value.message


def test_sender_is_a_cstar_option_only():
    action = make_action("cstar", "add_note", {"text": "x", "sender": "agent"}, rule="r")
    assert action.params == {"text": "x", "sender": "agent"}
    with pytest.raises(ActionError) as caught:
        make_action("inboxops", "add_note", {"text": "x", "sender": "agent"}, rule="r")
    assert "unknown key 'sender'" in caught.value.message


def _rules(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "notes.yml").write_text(text)
    return d


def test_check_reports_a_neutral_note_rule_thena_cannot_run(tmp_path, capsys):
    d = _rules(
        tmp_path,
        "name: escalate-note\nevents: [ticket.updated]\nthen:\n"
        '  - set_priority: high\n  - add_note: "Escalated because priority is {{common.priority}}"\n',
    )
    assert run_check(d) == 1
    err = capsys.readouterr().err
    assert f"{d / 'notes.yml'}:5: rule 'escalate-note'" in err
    assert "'add_note' works on cstar and inboxops only (thena has no add_note:" in err
    assert "Thena documents no API that adds a comment or note to an existing ticket" in err
    assert "pin it with vendor: cstar or vendor: inboxops" in err
    assert "(accepted:" not in err  # Thena's other actions are no answer to a missing one


def test_check_reports_a_bad_placeholder_with_its_line(tmp_path):
    d = _rules(
        tmp_path,
        "name: r\nvendor: inboxops\nevents: [ticket.updated]\nthen:\n"
        "  - add_note:\n      text: 'Plan {{ticket.custom_fields.plan}} / {{tikcet.priority}}'\n",
    )
    _, [error] = check_rules(d)
    assert error.line == 6 and error.rule == "r"
    assert "add_note: unknown placeholder '{{tikcet.priority}}'" in error.message


def test_pinned_rules_load(tmp_path):
    rules, errors = compile_yaml(
        "- name: io\n  vendor: inboxops\n  events: [ticket.updated]\n"
        f'  then: [{{add_note: "{ESCALATED}"}}]\n'
        "- name: cs\n  vendor: cstar\n  events: [ticket.updated]\n"
        f'  then: [{{add_note: {{text: "{ESCALATED}", sender: agent}}}}]\n',
        file="r.yml",
    )
    assert errors == []
    assert [r.actions[0].name for r in rules] == ["add_note", "add_note"]


async def test_python_rules_leave_notes_through_ctx():
    router = Router()

    @router.on("ticket.updated", name="py-note")
    async def py_note(ctx: Context) -> None:
        ctx.add_note("Escalated because priority is {{ticket.priority}}")

    ev = event()
    calls = engine_plan(ev, await evaluate(router, ev)).calls
    assert calls == [io_note("Escalated because priority is urgent", "py-note")]


async def test_ctx_add_note_on_thena_says_why_not():
    router = Router()

    @router.on("ticket.updated", name="py-note")
    async def py_note(ctx: Context) -> None:
        ctx.add_note("hello")

    ev = event().model_copy(update={"vendor": "thena"})
    [d] = await evaluate(router, ev)
    assert isinstance(d.error, RuleConfigError)
    assert "Thena documents no API that adds a comment or note" in str(d.error)


# ---- planning


def test_inboxops_plans_an_internal_note_after_the_field_changes():
    ev = event()
    result = engine_plan(
        ev,
        [
            decision("inboxops", "a", ("add_note", ESCALATED), ("set_status", "in_progress")),
            decision("inboxops", "b", ("add_note", "Line 1 <b>\n{{ticket.subject}}")),
        ],
    )
    assert [c.method for c in result.calls] == ["PATCH", "POST", "POST"]
    assert result.calls[1:] == [
        io_note("Escalated because priority is urgent", "a"),
        note_call(
            "inboxops",
            {
                # docs: Only {"type":"internal_note","body_html","body_text"} is allowed.
                "type": "internal_note",
                "body_html": "<p>Line 1 &lt;b&gt;<br>Printer on fire</p>",
                "body_text": "Line 1 <b>\nPrinter on fire",
            },
            "b",
        ),
    ]


def test_cstar_plans_a_message_with_content_and_sender():
    ev = event("cstar")
    result = engine_plan(
        ev,
        [
            decision("cstar", "a", ("add_note", ESCALATED)),
            decision("cstar", "b", ("add_note", {"text": "{{common.subject}}", "sender": "bot"})),
        ],
    )
    # docs: GET and POST /tickets/{ticketId}/messages: the POST takes {content, sender}.
    assert result.calls == [
        note_call(
            "cstar", {"content": "Escalated because priority is urgent", "sender": "agent"}, "a"
        ),
        note_call("cstar", {"content": "Printer on fire", "sender": "bot"}, "b"),
    ]


@pytest.mark.parametrize("vendor", ["inboxops", "cstar"])
def test_equal_notes_are_never_merged_nor_dropped(vendor):
    ev = event(vendor)
    result = engine_plan(
        ev,
        [
            decision(vendor, "a", ("add_note", "same"), ("add_note", "same")),
            decision(vendor, "b", ("add_note", "same")),
        ],
    )
    assert [c.rules for c in result.calls] == [("a",), ("a",), ("b",)]
    assert result.notes == []


def test_a_note_empty_once_filled_in_is_dropped_with_a_reason():
    result = engine_plan(
        event(), [decision("inboxops", "a", ("add_note", "{{ticket.assignee_id}}"))]
    )
    assert result.calls == []
    assert result.notes == ["rule 'a': the note is empty once the ticket is filled in; dropped"]


# ---- write-back: coalescing, batching, idempotency


def test_notes_of_two_events_are_two_calls_in_order():
    items = [
        Pending(
            ApiCall("inboxops", "PATCH", "/tickets/t-1", {"priority": "high"}, "t-1", ("a",), "e1")
        ),
        Pending(io_note("Escalated", "a", "e1")),
        Pending(io_note("Escalated", "a", "e2")),
        Pending(
            ApiCall("inboxops", "PATCH", "/tickets/t-1", {"status": "open"}, "t-1", ("a",), "e2")
        ),
    ]
    work = coalesce("k", items, rank=lambda r: 0, spec=inboxops_batching.spec())
    assert [p.call for p in work.calls] == [i.call for i in items]
    assert work.notes == []


def test_notes_never_join_a_bulk_call():
    round_calls = [
        (f"inboxops:acme:{t}", Pending(replace_ticket(io_note("Escalated"), t))) for t in ("1", "2")
    ]
    out = batch(round_calls, {"inboxops": inboxops_batching.spec(), "cstar": cstar_batching.spec()})
    assert [o.call.path for o in out] == ["/tickets/1/messages", "/tickets/2/messages"]


def replace_ticket(call: ApiCall, ticket: str) -> ApiCall:
    return ApiCall(
        call.vendor,
        call.method,
        f"/tickets/{ticket}/messages",
        call.body,
        ticket,
        call.rules,
        call.event_id,
    )


def test_cstar_keys_two_rules_equal_notes_apart_and_a_retry_alike():
    body = {"content": "same", "sender": "agent"}
    a, b = note_call("cstar", body, "a"), note_call("cstar", body, "b")
    assert idempotency_key(a) != idempotency_key(b)
    assert idempotency_key(a) == idempotency_key(note_call("cstar", body, "a"))


# ---- loop safety: a note's echo


def test_note_calls_are_recorded_as_a_note():
    assert inboxops_written(io_note("Escalated")) == {NOTE: "Escalated"}
    call = note_call("cstar", {"content": "Escalated", "sender": "agent"}, "a")
    assert cstar_written(call) == {NOTE: "Escalated", "message_count": ANY, "messageCount": ANY}


def writes(*items: tuple[str, Any, str], at: int = 1_000) -> list[Write]:
    return [Write(path, value, (rule,), at) for path, value, rule in items]


def test_a_delivery_that_changed_nothing_after_our_note_is_its_echo():
    recorded = writes((NOTE, "Escalated", "note-rule"), ("priority", "high", "prio-rule"))
    match = match_echo({}, recorded, now_ms=2_000, window_ms=60_000)
    assert match is not None and match.rules == ("note-rule",) and match.fields == ("a note",)
    # Bookkeeping alone is still "nothing changed".
    ignored = {"updated_at": ("2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z")}
    assert match_echo(
        ignored, recorded, ignore=frozenset({"updated_at"}), now_ms=2_000, window_ms=60_000
    )


def test_a_real_change_after_our_note_is_not_its_echo():
    recorded = writes((NOTE, "Escalated", "note-rule"))
    assert (
        match_echo({"status": ("open", "closed")}, recorded, now_ms=2_000, window_ms=60_000) is None
    )
    # Nor is anything once the echo window has passed.
    assert match_echo({}, recorded, now_ms=70_000, window_ms=60_000) is None
    # Without a note, a delivery that changed nothing explains nothing.
    assert match_echo({}, writes(("priority", "high", "p")), now_ms=2_000, window_ms=60_000) is None


def test_a_message_count_that_follows_our_cstar_note_is_its_echo():
    recorded = writes(
        *(
            (k, v, "note-rule")
            for k, v in cstar_written(note_call("cstar", {"content": "x"}, "a")).items()
        )
    )
    match = match_echo({"message_count": (1, 2)}, recorded, now_ms=2_000, window_ms=60_000)
    assert match is not None and match.rules == ("note-rule",)


def test_the_guard_skips_only_the_rule_that_wrote_the_note():
    state = GuardState(writes=writes((NOTE, "Escalated", "note-rule")))
    verdict = decide(
        [("note-rule", "fp1"), ("other", "fp2")],
        state,
        policy=GuardPolicy(),
        now_ms=2_000,
        event_id="e2",
        changes={},
    )
    assert verdict.allowed == ("other",)
    [(name, why)] = verdict.suppressed
    assert name == "note-rule" and why.startswith(
        "echo: this delivery only reflects our own write of a note"
    )


def test_a_note_counts_by_its_filled_in_text_for_echo_by_actions():
    action = make_action("inboxops", "add_note", "Status is now {{ticket.status}}", rule="r")
    open_, waiting = event(status="open"), event(status="waiting", event_id="evt-2")
    assert firing_print([action], open_) != firing_print([action], waiting)
    assert firing_print([action], open_) == firing_print([action], event(event_id="evt-3"))
    other = make_action("inboxops", "set_priority", "high", rule="r")
    assert firing_print([other], open_) == firing_print([other], waiting)
