"""rules/cstar_on_call_tag.yml: urgent cStar tickets get the `on-call` tag."""

from ruletest import cstar, decide


def test_an_urgent_ticket_gets_the_tag_beside_its_own() -> None:
    out = decide("cstar", cstar(priority="urgent", tags=["billing"]))
    assert out.fired == ["cstar-on-call-tag"]
    # cStar replaces the whole tag list: the ticket's own tags are sent along.
    assert out.sent("tags") == ["billing", "on-call"]


def test_a_ticket_already_tagged_sends_nothing() -> None:
    out = decide("cstar", cstar(priority="urgent", tags=["on-call"]))
    assert out.calls == []


def test_a_normal_ticket_is_left_alone() -> None:
    assert decide("cstar", cstar(priority="normal")).fired == []
