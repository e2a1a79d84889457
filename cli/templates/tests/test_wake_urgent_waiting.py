"""rules/wake_urgent_waiting.yml: on every helpdesk, an urgent ticket waiting goes back to open."""

from ruletest import cstar, decide, inboxops, thena


def test_an_urgent_waiting_ticket_is_reopened_on_every_helpdesk() -> None:
    bodies = {
        "inboxops": inboxops(priority="urgent", status="waiting"),
        "cstar": cstar(priority="urgent", status="pending"),
        "thena": thena(priorityName="Urgent", statusName="On hold"),
    }
    for vendor, body in bodies.items():
        out = decide(vendor, body)
        assert "wake-urgent-waiting" in out.fired, (vendor, out.reasons)


def test_a_waiting_ticket_that_is_not_urgent_keeps_waiting() -> None:
    out = decide("inboxops", inboxops(priority="high", status="waiting"))
    assert "wake-urgent-waiting" not in out.fired
