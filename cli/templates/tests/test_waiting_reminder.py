"""rules/waiting_reminder.yml: a ticket that starts waiting gets a reminder 48 hours later."""

from ruletest import decide, inboxops


def test_a_waiting_ticket_gets_a_reminder_two_days_later() -> None:
    # The events happen at ruletest.NOW, 2025-03-03T09:00:00Z.
    out = decide("inboxops", inboxops("ticket.status_changed", status="waiting"))
    assert out.fired == ["remind-waiting"]
    assert out.sent("remind_at") == "2025-03-05T09:00:00Z"


def test_a_reminder_already_set_is_kept() -> None:
    body = inboxops("ticket.status_changed", status="waiting", remind_at="2025-03-04T09:00:00Z")
    out = decide("inboxops", body)
    assert out.fired == []
    assert out.calls == []
