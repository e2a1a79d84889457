"""The trace walk of conditions: leaf results and values, same outcome as `holds` (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_engine_conditions import make_event
from ticketwire.engine import FieldSchema, Node, compile_condition
from ticketwire.engine.conditions import TRACE_TEXT_MAX
from ticketwire.event import Event

CONDITION = {
    "any": [
        {"all": [{"field": "priority", "equals": "urgent"}, {"field": "status", "equals": "open"}]},
        {"not": {"field": "custom_fields.plan", "in": ["free", "trial"]}},
        {"field": "custom_fields.missing", "exists": True},
    ]
}


def trace(condition: Any, event: Event) -> tuple[bool, list[list[Any]]]:
    compiled = compile_condition(Node.from_plain(condition), FieldSchema())
    assert compiled is not None
    ok, leaves = compiled.trace(event)
    assert ok == compiled.holds(event) == compiled.check(event).ok
    return ok, leaves


def test_leaves_are_numbered_in_order_and_a_short_circuit_skips_the_rest() -> None:
    compiled = compile_condition(Node.from_plain(CONDITION), FieldSchema())
    assert compiled is not None
    assert compiled.leaf_texts() == [
        "priority equals 'urgent'",
        "status equals 'open'",
        "not (custom_fields.plan in ['free', 'trial'])",
        "custom_fields.missing exists true",
    ]
    # The first alternative fails on its first leaf; the second holds and ends the walk.
    ok, leaves = trace(CONDITION, make_event())
    assert ok and leaves == [[0, 0, "normal"], [2, 0, "enterprise"]]


def test_a_missing_field_has_no_value_and_change_leaves_show_both_values() -> None:
    ok, leaves = trace(CONDITION, make_event(custom_fields={"plan": "free"}))
    assert not ok and leaves == [[0, 0, "normal"], [2, 1, "free"], [3, 0]]
    event = make_event(status="waiting").model_copy(
        update={"previous": {"ticket": {"status": "open"}, "common": {}}}
    )
    ok, leaves = trace({"field": "status", "changed_to": "waiting"}, event)
    assert ok and leaves == [[0, 1, ["open", "waiting"]]]


@pytest.mark.parametrize("length", [TRACE_TEXT_MAX, TRACE_TEXT_MAX + 1])
def test_long_text_is_cut(length: int) -> None:
    subject = "x" * length
    _, [[_, _, seen]] = trace({"field": "subject", "matches": "y"}, make_event(subject=subject))
    assert seen == (subject if length <= TRACE_TEXT_MAX else "x" * TRACE_TEXT_MAX + "…")
