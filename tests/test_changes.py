"""Change operators and `field_changes` (pure): the vendor's word, the last-seen state, the first
event of a ticket, order keys, and the in-memory state a dry run uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ticketwire import Context, Router
from ticketwire.engine import Node, check_rules, compile_condition, compile_yaml, evaluate
from ticketwire.engine.actions import field_schema
from ticketwire.engine.changes import (
    FIRST_SEEN,
    MemoryTicketState,
    changed,
    compare_order,
    field_changes,
    micros,
    not_changed,
    snapshot,
)
from ticketwire.errors import RuleConfigError
from ticketwire.event import Event
from ticketwire.vendors.cstar.webhook import parse as cstar_parse
from ticketwire.vendors.inboxops.webhook import parse as inboxops_parse
from ticketwire.vendors.inboxops.webhook import parse_stored
from ticketwire.vendors.thena.webhook import parse as thena_parse

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
SCHEMA = field_schema("inboxops")


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def inboxops_body(
    event_type: str = "ticket.updated",
    event_id: str = "e1",
    at: datetime = T0,
    **ticket: Any,
) -> bytes:
    data = {
        "id": "t-1",
        "subject": "Printer on fire",
        "status": "open",
        "priority": "normal",
        "assignee_id": None,
        "custom_fields": {"plan": "pro"},
        "created_at": iso(T0 - timedelta(days=1)),
        "updated_at": iso(at),
        **ticket,
    }
    envelope = {
        "event": event_type,
        "event_id": event_id,
        "tenant_id": "ws-1",
        "created_at": iso(at),
        "data": data,
    }
    return json.dumps(envelope).encode()


def inboxops_event(
    event_type: str = "ticket.updated", event_id: str = "e1", at: datetime = T0, **ticket: Any
) -> Event:
    return parse_stored(inboxops_body(event_type, event_id, at, **ticket))


def after(previous: Event, event: Event, fields: frozenset[str]) -> Event:
    """`event` as the worker hands it to rules after `previous` was applied."""
    return event.model_copy(update={"previous": snapshot(previous, fields)})


def check(spec: dict[str, Any], event: Event, schema: Any = SCHEMA) -> tuple[bool, str]:
    condition = compile_condition(Node.from_plain(spec), schema)
    assert condition is not None
    verdict = condition.check(event)
    assert condition.holds(event) is verdict.ok, "holds() and check() disagree"
    return verdict.ok, verdict.why


FIELDS = frozenset({"status", "priority", "custom_fields", "common.status"})
OPEN = inboxops_event(event_id="e1", at=T0, status="open")
WAITING = after(
    OPEN, inboxops_event(event_id="e2", at=T0 + timedelta(minutes=1), status="waiting"), FIELDS
)


class TestOperatorsOnSnapshots:
    @pytest.mark.parametrize(
        ("spec", "expected", "why"),
        [
            ({"field": "status", "changed": True}, True, "status changed from 'open' to 'waiting'"),
            (
                {"field": "status", "changed_to": "waiting"},
                True,
                "changed from 'open' to 'waiting'",
            ),
            ({"field": "status", "changed_from": "open"}, True, "changed from 'open' to 'waiting'"),
            ({"field": "status", "changed_to": ["closed", "waiting"]}, True, "to 'waiting'"),
            (
                {"field": "status", "changed_to": "closed"},
                False,
                "status changed from 'open' to 'waiting', rule needs a change to 'closed'",
            ),
            (
                {"field": "status", "changed_from": ["waiting", "resolved"]},
                False,
                "rule needs a change from one of ['waiting', 'resolved']",
            ),
            (
                {"field": "status", "not_changed": True},
                False,
                "status changed from 'open' to 'waiting', rule needs it unchanged",
            ),
            (
                {"field": "priority", "changed": True},
                False,
                "priority did not change (still 'normal'), rule needs it to change",
            ),
            (
                {"field": "priority", "changed_to": "normal"},
                False,
                "priority did not change (still 'normal'), rule needs a change to 'normal'",
            ),
            ({"field": "priority", "not_changed": True}, True, "priority did not change"),
            ({"field": "common.status", "changed_to": "waiting"}, True, "common.status changed"),
            ({"field": "ticket.status", "changed_from": "open"}, True, "ticket.status changed"),
            ({"field": "custom_fields.plan", "not_changed": True}, True, "still 'pro'"),
        ],
    )
    def test_operator(self, spec: dict[str, Any], expected: bool, why: str) -> None:
        ok, text = check(spec, WAITING)
        assert ok is expected, text
        assert why in text

    def test_nested_path_reads_the_kept_top_level_field(self) -> None:
        later = after(
            OPEN,
            inboxops_event(
                event_id="e2", at=T0 + timedelta(seconds=1), custom_fields={"plan": "ent"}
            ),
            FIELDS,
        )
        ok, why = check({"field": "custom_fields.plan", "changed_to": "ent"}, later)
        assert ok, why
        assert "custom_fields.plan changed from 'pro' to 'ent'" in why

    def test_a_field_the_state_did_not_keep_cannot_be_compared(self) -> None:
        ok, why = check({"field": "subject", "changed": True}, WAITING)
        assert not ok
        assert (
            why
            == "subject: not kept in the earlier state (no rule read it when that event was handled)"
        )

    def test_not_of_a_change_explains_itself(self) -> None:
        ok, why = check({"not": {"field": "status", "changed_to": "waiting"}}, WAITING)
        assert not ok
        assert why == (
            "status changed from 'open' to 'waiting'; rule needs not (status changed_to 'waiting')"
        )

    def test_a_missing_field_equals_null(self) -> None:
        before = inboxops_event(event_id="e1", assignee_id=None)
        now = after(
            before,
            inboxops_event(event_id="e2", at=T0 + timedelta(1), assignee_id="a-7"),
            frozenset({"assignee_id"}),
        )
        assert check({"field": "assignee_id", "changed_from": None}, now)[0]
        assert check({"field": "assignee_id", "changed_to": "a-7"}, now)[0]


class TestFirstEvent:
    def test_any_other_event_on_an_unseen_ticket_cannot_be_compared(self) -> None:
        first = inboxops_event(status="waiting")
        for spec in (
            {"field": "status", "changed": True},
            {"field": "status", "changed_to": "waiting"},
            {"field": "status", "changed_from": "open"},
            {"field": "status", "not_changed": True},
        ):
            ok, why = check(spec, first)
            assert not ok
            assert why == f"status: {FIRST_SEEN}"
        assert field_changes(first) is None
        assert FIRST_SEEN == "first event seen for this ticket; no earlier state to compare"

    def test_created_changes_every_field_from_null(self) -> None:
        created = inboxops_event("ticket.created", status="open", assignee_id=None)
        ok, why = check({"field": "status", "changed_to": "open"}, created)
        assert ok and why == "status changed from null to 'open' (new ticket)"
        assert check({"field": "status", "changed_from": None}, created)[0]
        # A field null at creation did not change.
        assert check({"field": "assignee_id", "not_changed": True}, created)[0]
        changes = field_changes(created)
        assert changes is not None
        assert changes["status"] == (None, "open")
        assert changes["common.status"] == (None, "open")
        assert changes["custom_fields"] == (None, {"plan": "pro"})
        assert "assignee_id" not in changes and "common.tags" not in changes


class TestVendorChanges:
    def cstar(self, changes: Any, **ticket: Any) -> Event:
        body = {
            "id": "evt_1",
            "type": "ticket.updated",
            "created_at": iso(T0),
            "team_id": "team",
            "data": {
                "ticket": {
                    "id": "tkt_1",
                    "title": "Cannot pay",
                    "status": "pending",
                    "priority": "normal",
                    "assigned_to": None,
                    "tags": ["billing"],
                    "updated_at": iso(T0),
                    **ticket,
                },
                "changes": changes,
            },
        }
        return cstar_parse(json.dumps(body).encode())

    def test_cstar_changes_are_used_even_on_a_ticket_never_seen(self) -> None:
        event = self.cstar({"status": {"from": "open", "to": "pending"}})
        assert event.previous is None
        schema = field_schema("cstar")
        assert check({"field": "status", "changed_to": "pending"}, event, schema)[0]
        ok, why = check({"field": "common.status", "changed_to": "waiting"}, event, schema)
        assert ok and why == "common.status changed from 'open' to 'waiting'"
        # A field the vendor does not list did not change.
        assert check({"field": "priority", "not_changed": True}, event, schema)[0]
        assert field_changes(event) == {
            "status": ("open", "pending"),
            "common.status": ("open", "waiting"),
        }

    def test_cstar_camel_case_change_names_read_as_the_ticket_does(self) -> None:
        event = self.cstar({"assignedTo": {"from": None, "to": "agent-9"}}, assigned_to="agent-9")
        assert event.changes == {"assigned_to": {"from": None, "to": "agent-9"}}
        assert field_changes(event) == {
            "assigned_to": (None, "agent-9"),
            "common.assignee": (None, "agent-9"),
        }

    def test_vendor_changes_win_over_the_kept_state(self) -> None:
        event = self.cstar({"priority": {"from": "low", "to": "normal"}}).model_copy(
            update={"previous": {"ticket": {"priority": "urgent"}, "common": {}}}
        )
        assert field_changes(event) == {
            "priority": ("low", "normal"),
            "common.priority": ("low", "normal"),
        }

    def test_thena_previous_ticket(self) -> None:
        ticket = {"id": "T1", "title": "Refund", "statusName": "On hold", "priorityName": "High"}
        body = {
            "eventId": "ev1",
            "eventType": "ticket:status:changed",
            "timestamp": iso(T0),
            "orgId": "org",
            "payload": {
                "ticket": {**ticket, "updatedAt": iso(T0)},
                "previousTicket": {
                    **ticket,
                    "statusName": "Open",
                    "updatedAt": iso(T0 - timedelta(1)),
                },
            },
        }
        event = thena_parse(json.dumps(body).encode())
        changes = field_changes(event)
        assert changes is not None
        assert changes["statusName"] == ("Open", "On hold")
        assert changes["common.status"] == ("open", "waiting")
        assert "priorityName" not in changes and "common.priority" not in changes
        assert changed(event, "common.status", from_="open", to="waiting")


class TestPythonHelpers:
    def test_changed_and_not_changed(self) -> None:
        assert changed(WAITING, "status")
        assert changed(WAITING, "status", to="waiting")
        assert changed(WAITING, "ticket.status", from_="open", to="waiting")
        assert not changed(WAITING, "status", from_="waiting")
        assert not changed(WAITING, "priority")
        assert not_changed(WAITING, "priority")
        first = inboxops_event()
        assert not changed(first, "status") and not not_changed(first, "status")

    def test_fields_that_cannot_change_are_refused(self) -> None:
        with pytest.raises(ValueError, match="only ticket fields and common"):
            changed(WAITING, "event.type")
        with pytest.raises(ValueError, match="common fields are"):
            changed(WAITING, "common.colour")

    async def test_context_and_reads(self) -> None:
        router = Router()
        seen: list[Any] = []

        @router.on("ticket.updated", vendor="inboxops", reads=["subject", "common.priority"])
        async def watch(ctx: Context) -> None:
            seen.append((ctx.changed("subject", to="Fire!"), ctx.not_changed("common.priority")))
            seen.append(ctx.changes)

        assert router.read_fields() == frozenset({"subject", "common.priority"})
        fields = router.read_fields()
        before = inboxops_event(event_id="e1")
        now = after(
            before, inboxops_event(event_id="e2", at=T0 + timedelta(1), subject="Fire!"), fields
        )
        await evaluate(router, now)
        assert seen == [(True, True), {"subject": ("Printer on fire", "Fire!")}]

    def test_reads_are_checked_like_fields(self) -> None:
        router = Router()
        with pytest.raises(
            RuleConfigError, match="reads=: unknown ticket field 'stauts'; did you mean 'status'"
        ):

            @router.on("ticket.updated", vendor="inboxops", reads=["stauts"])
            async def rule(ctx: Context) -> None:
                """Never registered."""

        with pytest.raises(RuleConfigError, match="no earlier value to keep"):

            @router.on("ticket.updated", vendor="inboxops", reads=["event.type"])
            async def other(ctx: Context) -> None:
                """Never registered."""


class TestYaml:
    RULE = """
name: to-waiting
vendor: inboxops
events: [ticket.updated]
if:
  all:
    - {field: status, changed_to: waiting}
    - any:
        - {field: priority, changed_from: [low, normal]}
        - not: {field: common.status, not_changed: true}
    - {field: custom_fields.plan, equals: pro}
then:
  - set_priority: high
"""

    def test_read_fields_walk_every_condition(self) -> None:
        rules, errors = compile_yaml(self.RULE, file="r.yml")
        assert not errors
        router = Router()
        router.add(rules[0])
        assert router.read_fields() == frozenset(
            {"status", "priority", "common.status", "custom_fields"}
        )

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            (
                "{field: status, changed_too: waiting}",
                "unknown operator 'changed_too'; did you mean 'changed_to'?",
            ),
            (
                "{field: status, chnaged: true}",
                "unknown operator 'chnaged'; did you mean 'changed'?",
            ),
            ("{field: status, not_chnaged: true}", "did you mean 'not_changed'?"),
            (
                "{field: status, changed_to: wating}",
                "unknown status 'wating'; did you mean 'waiting'?",
            ),
            ("{field: common.status, changed_from: [pending]}", "unknown neutral status 'pending'"),
            (
                "{field: status, changed: false}",
                "changed: takes only true; for the opposite write not_changed: true",
            ),
            ("{field: status, not_changed: yes}", "not_changed: expects true, got 'yes'"),
            ("{field: status, changed_to: {a: 1}}", "changed_to: expects one value"),
            ("{field: event.type, changed: true}", "'event.type' has no earlier value"),
            ("{field: changes.status.to, changed: true}", "(write field: status)"),
        ],
    )
    def test_mistakes_are_refused_with_a_suggestion(
        self, tmp_path: Path, line: str, message: str
    ) -> None:
        path = tmp_path / "rule.yml"
        path.write_text(
            f"name: r\nvendor: inboxops\nevents: [ticket.updated]\nif: {line}\nthen:\n"
            "  - set_priority: high\n"
        )
        router, errors = check_rules(path)
        assert router is None
        assert len(errors) == 1, [str(e) for e in errors]
        assert message in str(errors[0])
        assert "rule.yml:4" in str(errors[0])

    def test_the_accepted_list_names_the_change_operators(self, tmp_path: Path) -> None:
        path = tmp_path / "rule.yml"
        path.write_text(
            "name: r\nvendor: inboxops\nevents: [ticket.updated]\n"
            "if: {field: status, chagned: true}\nthen:\n  - set_priority: high\n"
        )
        _, errors = check_rules(path)
        assert "changed, changed_from, changed_to, not_changed" in str(errors[0])

    async def test_a_rule_fires_only_on_the_transition(self) -> None:
        rules, errors = compile_yaml(self.RULE, file="r.yml")
        assert not errors
        router = Router()
        router.add(rules[0])
        fields = router.read_fields()
        fired = await evaluate(
            router, WAITING.model_copy(update={"previous": snapshot(OPEN, fields)})
        )
        assert fired[0].fired, fired[0].reason
        assert "condition true: status changed from 'open' to 'waiting'" in fired[0].reason
        again = after(
            WAITING,
            inboxops_event(event_id="e3", at=T0 + timedelta(hours=1), status="waiting"),
            fields,
        )
        [skipped] = await evaluate(router, again)
        assert not skipped.fired
        assert skipped.reason.startswith(
            "condition false: status did not change (still 'waiting'), rule needs a change to 'waiting'"
        )


class TestOrderKeys:
    def test_parsers_fill_updated_at(self) -> None:
        body = inboxops_body(at=T0 + timedelta(milliseconds=250))
        assert parse_stored(body).updated_at == T0 + timedelta(milliseconds=250)
        assert inboxops_parse(body).updated_at == T0 + timedelta(milliseconds=250)
        assert parse_stored(body).sequence is None

    def test_inboxops_without_updated_at_uses_the_envelope_time(self) -> None:
        doc = json.loads(inboxops_body(at=T0))
        del doc["data"]["updated_at"]
        doc["created_at"] = iso(T0 + timedelta(seconds=5))
        body = json.dumps(doc).encode()
        assert parse_stored(body).updated_at == T0 + timedelta(seconds=5)
        assert inboxops_parse(body).updated_at == T0 + timedelta(seconds=5)

    def test_cstar_updated_at_camel_or_snake_else_the_envelope(self) -> None:
        def event(**ticket: Any) -> Event:
            body = {
                "id": "evt",
                "type": "ticket.updated",
                "created_at": iso(T0),
                "team_id": "team",
                "data": {"ticket": {"id": "tkt", **ticket}},
            }
            return cstar_parse(json.dumps(body).encode())

        later = T0 + timedelta(seconds=3)
        assert event(updatedAt=iso(later)).updated_at == later
        assert event(updated_at=iso(later)).updated_at == later
        assert event().updated_at == T0
        assert event(updated_at="last tuesday").updated_at == T0

    def test_thena_updated_at_else_the_envelope_timestamp(self) -> None:
        def event(**ticket: Any) -> Event:
            body = {
                "eventId": "ev",
                "eventType": "ticket:updated",
                "timestamp": iso(T0),
                "orgId": "org",
                "payload": {"ticket": {"id": "T1", **ticket}},
            }
            return thena_parse(json.dumps(body).encode())

        later = T0 + timedelta(seconds=7)
        assert event(updatedAt=iso(later)).updated_at == later
        assert event(updatedAt=int(later.timestamp() * 1000)).updated_at == later
        assert event().updated_at == T0
        assert event(updatedAt="soon").updated_at == T0

    def test_compare_order(self) -> None:
        us = micros(T0)
        assert us is not None
        assert compare_order((None, us), (None, us + 1)) == -1
        assert compare_order((None, us), (None, us)) == 0
        # The sequence decides when both have one, whatever the times say.
        assert compare_order((5, us + 10), (7, us)) == -1
        assert compare_order((7, us), (5, us + 10)) == 1
        # Nothing to compare: not stale.
        assert compare_order((None, None), (3, us)) == 1


class TestMemoryState:
    def test_stale_equal_rerun_and_sibling(self) -> None:
        state = MemoryTicketState()
        first = inboxops_event(event_id="e1", at=T0, status="open")
        seen = state.observe(first, FIELDS)
        assert (seen.previous, seen.stale, seen.first_seen) == (None, False, True)
        second = inboxops_event(event_id="e2", at=T0 + timedelta(seconds=2), status="waiting")
        seen = state.observe(second, FIELDS)
        assert seen.previous == snapshot(first, FIELDS) and not seen.first_seen
        # The same change announced as another event type: same order key, same snapshot.
        sibling = inboxops_event(
            "ticket.status_changed", "e2b", T0 + timedelta(seconds=2), status="waiting"
        )
        assert state.observe(sibling, FIELDS).previous == snapshot(first, FIELDS)
        # A re-run of an applied event gets the same previous, not itself.
        assert state.observe(second, FIELDS).previous == snapshot(first, FIELDS)
        older = inboxops_event(event_id="e0", at=T0 + timedelta(seconds=1), status="closed")
        seen = state.observe(older, FIELDS)
        assert seen.stale and seen.previous is None
        assert seen.applied_event_id == "e2b"
        assert seen.stale_reason(older) == (
            "updated_at 2025-03-01T09:00:01Z is older than 2025-03-01T09:00:02Z applied by event=e2b"
        )
        # Equal time, another snapshot: applied, compared with what it replaces.
        same_time = inboxops_event(event_id="e3", at=T0 + timedelta(seconds=2), status="resolved")
        seen = state.observe(same_time, FIELDS)
        assert not seen.stale and seen.previous == snapshot(second, FIELDS)


class TestDryRun:
    async def test_a_capture_sequence_gives_the_earlier_state(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from cli.dryrun import _dry_run

        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "r.yml").write_text(
            "name: into-waiting\nvendor: inboxops\nevents: [ticket.updated]\n"
            "if: {field: status, changed_to: waiting}\nthen:\n  - set_priority: high\n"
        )
        bodies = [
            inboxops_body(event_id="e1", at=T0, status="open"),
            inboxops_body(event_id="e2", at=T0 + timedelta(minutes=2), status="waiting"),
            inboxops_body(event_id="e3", at=T0 + timedelta(minutes=1), status="open"),
        ]
        cap = tmp_path / "cap.jsonl"
        cap.write_text(
            "".join(
                json.dumps({"vendor": "inboxops", "event_id": None, "body": b.decode()}) + "\n"
                for b in bodies
            )
        )
        assert await _dry_run([cap], rules, None) == 0
        out = capsys.readouterr().out
        first, second, third = out.split("#")[1:]
        assert f"status: {FIRST_SEEN}" in first and "send nothing" in first
        assert "condition true: status changed from 'open' to 'waiting'" in second
        assert 'would   PATCH /tickets/t-1 {"priority": "high"}' in second
        assert (
            "stale   updated_at 2025-03-01T09:01:00Z is older than 2025-03-01T09:02:00Z "
            "applied by event=e2; not acted on"
        ) in third


def test_read_fields_per_vendor() -> None:
    rules, errors = compile_yaml(
        """
- name: any-desk
  events: [ticket.updated]
  if: {field: common.status, changed: true}
  then: [{set_priority: high}]
- name: thena-only
  vendor: thena
  events: [ticket.updated]
  if: {field: statusName, changed_to: Closed}
  then: [{set_priority: high}]
""",
        file="r.yml",
    )
    assert not errors, [str(e) for e in errors]
    router = Router()
    for rule in rules:
        router.add(rule)
    assert router.read_fields() == frozenset({"common.status", "statusName"})
    assert router.read_fields("inboxops") == frozenset({"common.status"})
    assert router.read_fields("thena") == frozenset({"common.status", "statusName"})
