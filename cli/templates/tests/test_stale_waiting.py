"""rules/stale_waiting.yml: every 15 minutes, tickets left waiting two days get a reminder."""

from ruletest import NOW, decide_scheduled, inboxops, selection

RULE = "remind-stale-waiting"


def test_each_run_lists_tickets_waiting_untouched_for_two_days() -> None:
    filters = selection(RULE)
    assert filters["status"] == "waiting"
    assert filters["updated_before"].isoformat() == "2025-03-01T09:00:00+00:00"


def test_a_stale_ticket_without_a_reminder_gets_one() -> None:
    ticket = inboxops(status="waiting", updated_at="2025-02-27T08:00:00.000Z")["data"]
    out = decide_scheduled(RULE, ticket)
    assert out.fired == [RULE]
    assert out.sent("remind_at") >= NOW.replace(".000", "")


def test_a_ticket_with_a_reminder_is_left_alone() -> None:
    reminded = "2025-02-27T08:00:00.000Z"
    ticket = inboxops(status="waiting", remind_at=reminded, updated_at=reminded)["data"]
    out = decide_scheduled(RULE, ticket)
    assert out.fired == []
    assert out.calls == []
