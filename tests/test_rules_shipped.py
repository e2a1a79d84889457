"""The rules shipped in rules/: each loads, fires where it should, plans what it should, and
stays quiet where it should not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ticketwire.calls import ApiCall
from ticketwire.engine import Decision, Router, check_rules, evaluate, load_rules, render_table
from ticketwire.event import Event
from ticketwire.vendors.inboxops.actions import plan

RULES_DIR = Path(__file__).resolve().parents[1] / "rules"
CREATED = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
AGENT = "6f1c2b7e-0d4a-4c1e-9a55-3b8e2f7d9c10"

SHIPPED = {
    "escalate-enterprise",
    "urgent_unassigned.route_urgent",
    "close_followup.schedule_follow_up",
    "remind-waiting",
    # Tested against their simulators in tests/test_vendors_end_to_end.py.
    "wake-urgent-waiting",
    "cstar-on-call-tag",
    "thena-follow-up",
    # Time-based; tested end to end in tests/test_scheduled_rules_e2e.py.
    "remind-stale-waiting",
}
#: inboxops-update-ticket, `remind_at`.
WITH_WAITING = "Applied when PATCH also sets status to waiting (status or status_id)"


@pytest.fixture(scope="module")
def router() -> Router:
    return load_rules(RULES_DIR)


def make_event(event_type: str, **ticket: Any) -> Event:
    base: dict[str, Any] = {
        "id": "5b0c2f7e-1111-4a4a-9b9b-000000000001",
        "ticket_number": 1042,
        "subject": "Cannot log in after password reset",
        "status": "open",
        "status_id": "st-open",
        "priority": "normal",
        "assignee_id": None,
        "inbox_id": "inbox-support",
        "remind_at": None,
        "remind_transition_status_id": None,
        "custom_fields": {},
        "created_at": "2024-05-10T11:00:00.000Z",
        "updated_at": "2024-05-10T12:00:00.000Z",
    }
    base.update(ticket)
    return Event(
        vendor="inboxops",
        type=event_type,
        id="evt-shipped",
        tenant="acme",
        created_at=CREATED,
        ticket_id=base["id"],
        ticket=base,
    )


async def decide(router: Router, event: Event, name: str) -> Decision:
    (decision,) = [d for d in await evaluate(router, event) if d.rule.name == name]
    return decision


def bodies(calls: list[ApiCall]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(c.method, c.path.replace(c.ticket_id, "{id}"), c.body) for c in calls]


def test_every_shipped_rule_loads(router: Router) -> None:
    _, errors = check_rules(RULES_DIR)
    assert errors == []
    assert {r.name for r in router.rules} == SHIPPED
    assert {r.vendor for r in router.rules} == {"inboxops", "cstar", "thena", None}
    table = render_table(router)
    for name in SHIPPED:
        assert name in table


def test_rules_dir_is_not_a_package() -> None:
    assert not (RULES_DIR / "__init__.py").exists()
    assert (RULES_DIR / "README.md").exists()


class TestEscalateEnterprise:
    NAME = "escalate-enterprise"

    async def test_fires_and_plans_high_priority(self, router: Router) -> None:
        event = make_event("ticket.created", custom_fields={"plan": "enterprise"})
        decision = await decide(router, event, self.NAME)
        assert decision.fired, decision.reason
        result = plan(event, [decision])
        text = (
            "Escalated to high priority: the customer is on the enterprise plan "
            "(priority was normal)."
        )
        assert bodies(result.calls) == [
            ("PATCH", "/tickets/{id}", {"priority": "high"}),
            (
                "POST",
                "/tickets/{id}/messages",
                {"type": "internal_note", "body_html": f"<p>{text}</p>", "body_text": text},
            ),
        ]
        assert [c.rules for c in result.calls] == [(self.NAME,), (self.NAME,)]

    @pytest.mark.parametrize(
        ("ticket", "reason"),
        [
            ({"custom_fields": {"plan": "free"}}, "custom_fields.plan is 'free', rule needs"),
            ({"custom_fields": {}}, "custom_fields.plan is missing"),
            (
                {"custom_fields": {"plan": "enterprise"}, "priority": "urgent"},
                "priority is 'urgent', rule needs one of ['low', 'normal']",
            ),
            (
                {"custom_fields": {"plan": "enterprise"}, "subject": "TEST please ignore"},
                "rule needs not (subject matches",
            ),
        ],
    )
    async def test_stays_quiet(self, router: Router, ticket: dict[str, Any], reason: str) -> None:
        decision = await decide(router, make_event("ticket.updated", **ticket), self.NAME)
        assert not decision.fired
        assert decision.reason.startswith("condition false: ")
        assert reason in decision.reason

    async def test_its_own_write_back_does_not_refire(self, router: Router) -> None:
        event = make_event("ticket.updated", custom_fields={"plan": "enterprise"}, priority="high")
        assert not (await decide(router, event, self.NAME)).fired


class TestUrgentUnassigned:
    NAME = "urgent_unassigned.route_urgent"

    async def test_fires_and_assigns_on_call(self, router: Router) -> None:
        event = make_event("ticket.updated", priority="urgent")
        decision = await decide(router, event, self.NAME)
        assert decision.fired, decision.reason
        result = plan(event, [decision])
        assert bodies(result.calls) == [
            (
                "POST",
                "/tickets/bulk",
                {"operation": "assign", "ticket_ids": [event.ticket_id], "assignee_id": AGENT},
            )
        ]

    async def test_tags_when_configured(
        self, router: Router, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        rule = router.get(self.NAME)
        assert rule.handler is not None
        # The handler's own globals: loading the directory again would import a fresh module.
        monkeypatch.setitem(rule.handler.__globals__, "URGENT_TAG_IDS", ["tag-urgent"])
        event = make_event("ticket.created", priority="urgent")
        result = plan(event, [await decide(router, event, self.NAME)])
        assert [c.body["operation"] for c in result.calls] == ["assign", "add_tags"]
        assert result.calls[1].body["tag_ids"] == ["tag-urgent"]

    @pytest.mark.parametrize(
        ("ticket", "reason"),
        [
            ({"priority": "high"}, "priority is 'high', rule needs 'urgent'"),
            (
                {"priority": "urgent", "assignee_id": AGENT},
                f"assignee_id is '{AGENT}', rule needs it to be absent (missing or null)",
            ),
        ],
    )
    async def test_stays_quiet(self, router: Router, ticket: dict[str, Any], reason: str) -> None:
        decision = await decide(router, make_event("ticket.updated", **ticket), self.NAME)
        assert not decision.fired
        assert decision.reason == f"condition false: {reason}"

    async def test_does_not_run_on_other_events(self, router: Router) -> None:
        event = make_event("ticket.closed", priority="urgent")
        assert self.NAME not in [d.rule.name for d in await evaluate(router, event)]


class TestRemindWaiting:
    NAME = "remind-waiting"

    async def test_fires_and_sets_a_reminder_two_days_after_the_event(self, router: Router) -> None:
        # WITH_WAITING: the ticket's own waiting status goes with the reminder.
        event = make_event("ticket.status_changed", status="waiting", status_id="st-waiting")
        decision = await decide(router, event, self.NAME)
        assert decision.fired, decision.reason
        result = plan(event, [decision])
        assert bodies(result.calls) == [
            (
                "PATCH",
                "/tickets/{id}",
                {"remind_at": "2024-05-12T12:00:00Z", "status_id": "st-waiting"},
            )
        ]
        assert result.notes == []

    @pytest.mark.parametrize(
        ("ticket", "reason"),
        [
            ({"status": "open"}, "status is 'open', rule needs 'waiting'"),
            (
                {"status": "waiting", "remind_at": "2024-05-11T09:00:00.000Z"},
                "remind_at is '2024-05-11T09:00:00.000Z', rule needs it to be absent (missing or null)",
            ),
        ],
    )
    async def test_stays_quiet(self, router: Router, ticket: dict[str, Any], reason: str) -> None:
        event = make_event("ticket.status_changed", **ticket)
        decision = await decide(router, event, self.NAME)
        assert not decision.fired
        assert decision.reason == f"condition false: {reason}"


class TestCloseFollowUp:
    NAME = "close_followup.schedule_follow_up"

    async def test_fires_and_reminds_after_three_days(self, router: Router) -> None:
        # WITH_WAITING: a resolved ticket is parked as waiting so the reminder applies.
        event = make_event("ticket.status_changed", status="resolved")
        decision = await decide(router, event, self.NAME)
        assert decision.fired, decision.reason
        result = plan(event, [decision])
        assert bodies(result.calls) == [
            ("PATCH", "/tickets/{id}", {"status": "waiting", "remind_at": "2024-05-13T12:00:00Z"})
        ]
        assert result.notes == []

    async def test_closes_when_a_status_is_configured(
        self, router: Router, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        rule = router.get(self.NAME)
        assert rule.handler is not None
        monkeypatch.setitem(rule.handler.__globals__, "CLOSED_STATUS_ID", "st-closed")
        event = make_event("ticket.status_changed", status="resolved")
        result = plan(event, [await decide(router, event, self.NAME)])
        assert bodies(result.calls) == [
            (
                "PATCH",
                "/tickets/{id}",
                {
                    "status": "waiting",
                    "remind_at": "2024-05-13T12:00:00Z",
                    "remind_transition_status_id": "st-closed",
                },
            )
        ]

    @pytest.mark.parametrize(
        "ticket",
        [{"status": "waiting"}, {"status": "resolved", "remind_at": "2024-05-20T00:00:00.000Z"}],
    )
    async def test_stays_quiet(self, router: Router, ticket: dict[str, Any]) -> None:
        decision = await decide(router, make_event("ticket.status_changed", **ticket), self.NAME)
        assert not decision.fired
        assert decision.reason == ("condition false: when=resolved_without_reminder returned False")


async def test_waiting_and_resolved_rules_share_an_event_without_clashing(router: Router) -> None:
    """Both status rules run on ticket.status_changed; each acts only on its own status."""
    waiting = make_event("ticket.status_changed", status="waiting")
    fired = [d.rule.name for d in await evaluate(router, waiting) if d.fired]
    assert fired == ["remind-waiting"]
