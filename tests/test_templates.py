"""Templates in action values: `{{ticket.<field>}}` and `{{common.<field>}}`, checked and filled."""

from __future__ import annotations

import pytest

from ticketwire.engine import templates
from ticketwire.engine.templates import OMIT, TemplateError, check, render, render_text

SOURCES = templates.sources_of(
    {
        "priority": "urgent",
        "seats": 40,
        "vip": True,
        "customer": {"email": "ana@example.com", "name": None},
        "tags": ["a", "b"],
    },
    {"priority": "urgent", "status": "open", "assignee": None},
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Escalated because priority is {{ticket.priority}}",
            "Escalated because priority is urgent",
        ),
        ("{{ common.status }} / {{common.priority}}", "open / urgent"),
        ("for {{ticket.customer.email}}", "for ana@example.com"),
        ("seats {{ticket.seats}}, vip {{ticket.vip}}", "seats 40, vip true"),
        ("tags {{ticket.tags}}", 'tags ["a","b"]'),
        ("[{{ticket.missing}}][{{ticket.customer.name}}][{{common.assignee}}]", "[][][]"),
        ("no placeholder", "no placeholder"),
    ],
)
def test_render_text_fills_inline(text, expected):
    assert render_text(text, SOURCES) == expected


def test_a_whole_placeholder_keeps_the_value_and_a_missing_one_is_omitted():
    assert render("{{ticket.seats}}", SOURCES) == 40
    assert render({"a": "{{ticket.missing}}", "b": "{{ticket.tags}}"}, SOURCES) == {"b": ["a", "b"]}
    assert render(["{{ticket.missing}}", "x"], SOURCES) == ["x"]
    assert render("{{ticket.missing}}", SOURCES) is OMIT


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{{event.id}}", "unknown placeholder '{{event.id}}'"),
        ("{{ticket}}", "unknown placeholder '{{ticket}}'"),
        ("{{ticket.title}", "unbalanced"),
        ("a }} b", "unbalanced"),
        ("{{common.plan}}", "the neutral fields are common.status"),
        (["ok", {"x": "{{ticket.1x}}"}], "unknown placeholder '{{ticket.1x}}'"),
    ],
)
def test_check_refuses_what_cannot_be_filled(value, says):
    with pytest.raises(TemplateError) as caught:
        check(value)
    assert says in str(caught.value)


def test_check_knows_the_helpdesks_ticket_fields_when_given():
    check(
        "{{ticket.priority}} {{ticket.customer.email}}",
        ticket_fields=frozenset({"priority", "customer"}),
    )
    with pytest.raises(TemplateError) as caught:
        check("{{ticket.title}}", ticket_fields=frozenset({"priority", "subject"}))
    assert "no field 'title'; known fields: priority, subject" in str(caught.value)
