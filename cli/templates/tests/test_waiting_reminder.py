"""rules/waiting_reminder.yml: a ticket that starts waiting gets a reminder 48 hours later."""

from ruletest import NOW, decide, inboxops


def test_a_waiting_ticket_gets_a_reminder_two_days_later() -> None:
    out = decide("inboxops", inboxops("ticket.status_changed", status="waiting"))
    assert out.fired == ["remind-waiting"]
    assert NOW == "2025-03-03T09:00:00.000Z"
    assert out.calls == [
        'PATCH /tickets/94f96301-e79c-47e8-b6de-3500ef550601 {"remind_at": "2025-03-05T09:00:00Z"}'
    ]


def test_a_reminder_already_set_is_kept() -> None:
    body = inboxops("ticket.status_changed", status="waiting", remind_at="2025-03-04T09:00:00Z")
    assert decide("inboxops", body).fired == []
