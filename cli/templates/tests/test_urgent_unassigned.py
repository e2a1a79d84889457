"""rules/urgent_unassigned.py: urgent tickets nobody owns go to the on-call agent."""

from ruletest import decide, inboxops

ON_CALL = "6f1c2b7e-0d4a-4c1e-9a55-3b8e2f7d9c10"


def test_an_urgent_unassigned_ticket_is_assigned_to_on_call() -> None:
    out = decide("inboxops", inboxops(priority="urgent", assignee_id=None))
    assert "urgent_unassigned.route_urgent" in out.fired
    assert out.sent("assignee_id") == ON_CALL


def test_an_assigned_ticket_is_left_alone() -> None:
    out = decide("inboxops", inboxops(priority="urgent", assignee_id=ON_CALL))
    assert "urgent_unassigned.route_urgent" not in out.fired
    assert out.calls == []
