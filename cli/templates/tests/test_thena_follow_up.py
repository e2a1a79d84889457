"""rules/thena_follow_up.yml: a closed Thena ticket opens a follow-up ticket due in 7 days."""

from ruletest import decide, thena


def test_closing_a_ticket_opens_a_follow_up() -> None:
    out = decide("thena", thena("ticket:status:changed", statusName="Closed"))
    assert out.fired == ["thena-follow-up"]
    (created,) = out.sent("tickets")
    assert created["title"] == "Follow-up: Cannot log in after password reset"
    assert created["requestorEmail"] == "ana@example.com"
    assert created["dueDate"] == "2025-03-10T09:00:00Z"


def test_other_status_changes_open_nothing() -> None:
    out = decide("thena", thena("ticket:status:changed", statusName="In progress"))
    assert out.fired == []
    assert out.calls == []
