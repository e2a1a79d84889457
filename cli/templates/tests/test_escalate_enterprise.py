"""rules/escalate_enterprise.yml: enterprise-plan tickets at low/normal priority go to high."""

from ruletest import decide, inboxops


def test_an_enterprise_ticket_goes_to_high_priority() -> None:
    out = decide("inboxops", inboxops(custom_fields={"plan": "enterprise"}, priority="low"))
    assert "escalate-enterprise" in out.fired
    assert out.sent("priority") == "high"


def test_other_plans_and_test_tickets_are_left_alone() -> None:
    free = decide("inboxops", inboxops(custom_fields={"plan": "free"}))
    assert "escalate-enterprise" not in free.fired
    test = decide("inboxops", inboxops(custom_fields={"plan": "enterprise"}, subject="TEST me"))
    assert "escalate-enterprise" not in test.fired
    assert "subject matches" in test.reasons["escalate-enterprise"]
    assert test.calls == []
