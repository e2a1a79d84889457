"""A scheduled InboxOps rule sees listed tickets, which carry no custom_fields: reading them is
refused at load time with the way to filter on them instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketwire import Context, Router
from ticketwire.engine import check_rules
from ticketwire.errors import RuleConfigError

#: inboxops-update-ticket: only the "Ticket with custom_fields (GET by id, POST create 201,
#: PATCH 200)" has them; the inboxops-list-tickets answer's ticket does not.
WITH_CUSTOM_FIELDS = "Ticket with custom_fields (GET by id, POST create 201, PATCH 200)"
REFUSED = (
    "a scheduled rule sees the tickets inboxops's list API returns, which carry no "
    "custom_fields; filter on them in select: (custom_field_<key>: value, null for no value)"
)


def test_yaml_scheduled_rule_reading_custom_fields_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text(
        "name: r\nvendor: inboxops\nevery: 15m\nselect: {status: waiting}\n"
        "if: {field: custom_fields.plan, equals: gold}\nthen:\n  - set_priority: high\n"
    )
    router, [error] = check_rules(tmp_path)
    assert router is None
    assert error.message == REFUSED
    assert error.rule == "r"


def test_the_select_form_and_event_rules_are_fine(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text(
        "- name: scheduled\n  vendor: inboxops\n  every: 15m\n"
        "  select: {status: waiting, custom_field_plan: gold}\n  then:\n    - set_priority: high\n"
        "- name: on-event\n  vendor: inboxops\n  events: [ticket.updated]\n"
        "  if: {field: custom_fields.plan, equals: gold}\n  then:\n    - set_priority: high\n"
    )
    router, errors = check_rules(tmp_path)
    assert errors == []
    assert router is not None


def test_python_scheduled_rule_reading_custom_fields_is_refused() -> None:
    router = Router()
    with pytest.raises(RuleConfigError, match="carry no custom_fields"):

        @router.every(
            "1h", vendor="inboxops", when={"field": "custom_fields.plan", "exists": False}
        )
        async def one(ctx: Context) -> None:
            ctx.set_priority("high")
