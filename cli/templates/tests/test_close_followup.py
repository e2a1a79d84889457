"""rules/close_followup.py: a resolved ticket gets a reminder three days later."""

from ruletest import decide, inboxops


def test_a_resolved_ticket_gets_a_reminder_three_days_later() -> None:
    out = decide("inboxops", inboxops("ticket.status_changed", status="resolved"))
    assert out.fired == ["close_followup.schedule_follow_up"]
    assert out.sent("remind_at") == "2025-03-06T09:00:00Z"


def test_a_ticket_still_open_is_left_alone() -> None:
    out = decide("inboxops", inboxops("ticket.status_changed", status="open"))
    assert "close_followup.schedule_follow_up" not in out.fired
    assert out.sent("remind_at") is None
