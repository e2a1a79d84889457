"""rules/stale_waiting.yml: every 15 minutes, remind and later close tickets left waiting."""

from ruletest import decide_scheduled, inboxops, selection

TWO_DAYS_BEFORE = "2025-03-01T09:00:00Z"


def test_each_run_lists_tickets_waiting_untouched_for_two_days() -> None:
    for rule in ("remind-stale-waiting", "close-stale-waiting"):
        filters = selection(rule)
        assert filters["status"] == "waiting"
        assert filters["updated_before"].isoformat().replace("+00:00", "Z") == TWO_DAYS_BEFORE


def test_a_stale_ticket_without_a_reminder_gets_one_now() -> None:
    ticket = inboxops(status="waiting", updated_at="2025-02-27T08:00:00.000Z")["data"]
    out = decide_scheduled("remind-stale-waiting", ticket)
    assert out.calls == [
        'PATCH /tickets/94f96301-e79c-47e8-b6de-3500ef550601 {"remind_at": "2025-03-03T09:00:00Z"}'
    ]


def test_it_closes_only_two_days_after_the_reminder() -> None:
    reminded = "2025-02-27T08:00:00.000Z"
    ticket = inboxops(status="waiting", remind_at=reminded, updated_at=reminded)["data"]
    out = decide_scheduled("close-stale-waiting", ticket)
    assert out.calls == ['PATCH /tickets/94f96301-e79c-47e8-b6de-3500ef550601 {"status": "closed"}']
    ticket["remind_at"] = "2025-03-02T08:00:00.000Z"
    assert decide_scheduled("close-stale-waiting", ticket).calls == []
