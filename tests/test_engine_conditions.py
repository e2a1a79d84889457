"""Condition operators, combinators and explanations (pure: no files, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ticketwire.engine import FieldSchema, Node, compile_condition
from ticketwire.engine.actions import field_schema
from ticketwire.engine.conditions import All, Leaf, Predicate, compile_when, predicate
from ticketwire.engine.durations import format_utc, parse_duration, parse_instant
from ticketwire.errors import RuleConfigError
from ticketwire.event import Event

CREATED = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


def make_event(event_type: str = "ticket.updated", **ticket: Any) -> Event:
    base: dict[str, Any] = {
        "id": "t-1",
        "subject": "Printer on fire",
        "status": "open",
        "priority": "normal",
        "assignee_id": None,
        "custom_fields": {"plan": "enterprise", "seats": 40, "regions": ["eu", "us"]},
        "created_at": "2024-05-01T09:00:00Z",
    }
    base.update(ticket)
    return Event(
        vendor="inboxops",
        type=event_type,
        id="evt-1",
        tenant="acme",
        created_at=CREATED,
        ticket_id="t-1",
        ticket=base,
    )


SCHEMA = field_schema("inboxops")


def check(spec: dict[str, Any], event: Event | None = None) -> tuple[bool, str]:
    condition = compile_condition(Node.from_plain(spec), SCHEMA)
    assert condition is not None
    verdict = condition.check(event or make_event())
    return verdict.ok, verdict.why


# (condition, expected result, fragment the explanation must contain)
CASES = [
    # equals / not_equals
    ({"field": "priority", "equals": "normal"}, True, "priority is 'normal'"),
    ({"field": "priority", "equals": "high"}, False, "priority is 'normal', rule needs 'high'"),
    ({"field": "priority", "not_equals": "high"}, True, "priority is 'normal'"),
    ({"field": "priority", "not_equals": "normal"}, False, "rule needs anything but 'normal'"),
    ({"field": "assignee_id", "equals": None}, True, "assignee_id is null"),
    ({"field": "custom_fields.missing", "equals": None}, True, "is missing"),
    # in / not_in
    ({"field": "priority", "in": ["low", "normal"]}, True, "priority is 'normal'"),
    (
        {"field": "priority", "in": ["high", "urgent"]},
        False,
        "priority is 'normal', rule needs one of ['high', 'urgent']",
    ),
    ({"field": "priority", "not_in": ["high", "urgent"]}, True, "priority is 'normal'"),
    ({"field": "priority", "not_in": ["normal"]}, False, "rule needs none of ['normal']"),
    ({"field": "custom_fields.nope", "not_in": ["x"]}, True, "custom_fields.nope is missing"),
    # contains: substring for strings, membership for lists
    ({"field": "subject", "contains": "fire"}, True, "subject is 'Printer on fire'"),
    ({"field": "subject", "contains": "water"}, False, "rule needs it to contain 'water'"),
    ({"field": "custom_fields.regions", "contains": "eu"}, True, "['eu', 'us']"),
    ({"field": "custom_fields.regions", "contains": "apac"}, False, "to contain 'apac'"),
    ({"field": "custom_fields.seats", "contains": "4"}, False, "neither text nor a list"),
    ({"field": "custom_fields.absent", "contains": "x"}, False, "is missing"),
    # matches
    ({"field": "subject", "matches": "(?i)^printer"}, True, "subject is 'Printer on fire'"),
    ({"field": "subject", "matches": "^fire"}, False, "rule needs a match for '^fire'"),
    ({"field": "custom_fields.seats", "matches": "4"}, False, "which is not text"),
    # exists
    ({"field": "custom_fields.plan", "exists": True}, True, "custom_fields.plan is 'enterprise'"),
    ({"field": "custom_fields.tier", "exists": True}, False, "rule needs it to be present"),
    ({"field": "assignee_id", "exists": False}, True, "assignee_id is null"),
    ({"field": "subject", "exists": False}, False, "rule needs it to be absent"),
    # numbers
    ({"field": "custom_fields.seats", "gt": 10}, True, "custom_fields.seats is 40"),
    ({"field": "custom_fields.seats", "gt": 40}, False, "rule needs > 40"),
    ({"field": "custom_fields.seats", "gte": 40}, True, "is 40"),
    ({"field": "custom_fields.seats", "gte": 41}, False, "rule needs >= 41"),
    ({"field": "custom_fields.seats", "lt": 41}, True, "is 40"),
    ({"field": "custom_fields.seats", "lt": 40}, False, "rule needs < 40"),
    ({"field": "custom_fields.seats", "lte": 40}, True, "is 40"),
    ({"field": "custom_fields.seats", "lte": 39.5}, False, "rule needs <= 39.5"),
    ({"field": "subject", "gt": 1}, False, "which is not a number"),
    ({"field": "custom_fields.none", "gt": 1}, False, "is missing"),
    # dates: relative to the event's created_at (2024-05-10T12:00Z), or absolute
    ({"field": "created_at", "before": "-2d"}, True, "created_at is '2024-05-01T09:00:00Z'"),
    (
        {"field": "created_at", "before": "-10d"},
        False,
        "rule needs before 2024-04-30T12:00:00Z (event time -10d)",
    ),
    ({"field": "created_at", "after": "-10d"}, True, "created_at is"),
    ({"field": "created_at", "after": "-1d"}, False, "rule needs after 2024-05-09T12:00:00Z"),
    ({"field": "created_at", "after": "2024-04-01"}, True, "created_at is"),
    ({"field": "created_at", "before": "2024-04-01T00:00:00Z"}, False, "before 2024-04-01T00:00"),
    ({"field": "subject", "before": "+1h"}, False, "which is not a date-time"),
    ({"field": "event.created_at", "after": "-30m"}, True, "event.created_at is"),
    # event fields
    ({"field": "event.type", "equals": "ticket.updated"}, True, "event.type is 'ticket.updated'"),
    ({"field": "event.tenant", "equals": "globex"}, False, "event.tenant is 'acme'"),
    # ticket. prefix is accepted
    ({"field": "ticket.priority", "equals": "normal"}, True, "ticket.priority is 'normal'"),
]


@pytest.mark.parametrize(("spec", "expected", "fragment"), CASES)
def test_operator(spec: dict[str, Any], expected: bool, fragment: str) -> None:
    ok, why = check(spec)
    assert ok is expected, why
    assert fragment in why


def test_every_operator_is_covered_both_ways() -> None:
    from ticketwire.engine import OPERATORS

    seen: dict[str, set[bool]] = {}
    for spec, expected, _ in CASES:
        op = next(k for k in spec if k != "field")
        seen.setdefault(op, set()).add(expected)
    assert {op for op, results in seen.items() if results == {True, False}} == set(OPERATORS)


def test_true_is_not_one() -> None:
    """YAML `true` must not equal the number 1 (and vice versa)."""
    event = make_event(custom_fields={"flag": 1})
    assert check({"field": "custom_fields.flag", "equals": True}, event)[0] is False
    assert check({"field": "custom_fields.flag", "equals": 1}, event)[0] is True


def test_list_index_in_path() -> None:
    assert check({"field": "custom_fields.regions.1", "equals": "us"})[0] is True
    assert check({"field": "custom_fields.regions.5", "exists": True})[0] is False


class TestCombinators:
    def test_all_lists_every_failure(self) -> None:
        ok, why = check(
            {
                "all": [
                    {"field": "priority", "equals": "high"},
                    {"field": "status", "equals": "open"},
                    {"field": "subject", "matches": "urgent"},
                ]
            }
        )
        assert not ok
        assert why == (
            "priority is 'normal', rule needs 'high'; "
            "subject is 'Printer on fire', rule needs a match for 'urgent'"
        )

    def test_all_true(self) -> None:
        ok, why = check(
            {
                "all": [
                    {"field": "status", "equals": "open"},
                    {"field": "priority", "equals": "normal"},
                ]
            }
        )
        assert ok
        assert why == "status is 'open'; priority is 'normal'"

    def test_any(self) -> None:
        ok, why = check(
            {
                "any": [
                    {"field": "priority", "equals": "high"},
                    {"field": "status", "equals": "open"},
                ]
            }
        )
        assert ok and why == "status is 'open'"
        ok, why = check(
            {
                "any": [
                    {"field": "priority", "equals": "high"},
                    {"field": "status", "equals": "closed"},
                ]
            }
        )
        assert not ok
        assert why.startswith("none of the alternatives holds: priority is 'normal'")
        assert "status is 'open', rule needs 'closed'" in why

    def test_not(self) -> None:
        ok, why = check({"not": {"field": "subject", "matches": "(?i)test"}})
        assert ok and why == "subject is 'Printer on fire'"
        ok, why = check({"not": {"field": "subject", "matches": "(?i)printer"}})
        assert not ok
        assert why == (
            "subject is 'Printer on fire'; rule needs not (subject matches '(?i)printer')"
        )

    def test_list_is_shorthand_for_all(self) -> None:
        condition = compile_condition(
            Node.from_plain([{"field": "status", "equals": "open"}]), SCHEMA
        )
        assert isinstance(condition, All)

    def test_nested(self) -> None:
        spec = {
            "all": [
                {"field": "custom_fields.plan", "equals": "enterprise"},
                {
                    "any": [
                        {"field": "priority", "in": ["low", "normal"]},
                        {"not": {"field": "x.y", "exists": True}},
                    ]
                },
            ]
        }
        schema = FieldSchema()  # no vocabulary: any field name is accepted
        condition = compile_condition(Node.from_plain(spec), schema)
        assert condition is not None
        assert condition.check(make_event()).ok
        assert condition.describe() == (
            "all(custom_fields.plan equals 'enterprise', "
            "any(priority in ['low', 'normal'], not (x.y exists true)))"
        )


class TestCompileErrors:
    @pytest.mark.parametrize(
        ("spec", "fragment", "accepted"),
        [
            ({"field": "priorty", "equals": "high"}, "did you mean 'priority'?", "priority"),
            ({"field": "priority", "equal": "high"}, "did you mean 'equals'?", "equals"),
            ({"field": "event.tenantt", "equals": "a"}, "did you mean 'tenant'?", "tenant"),
            ({"field": "priority", "equals": "hihg"}, "did you mean 'high'?", "urgent"),
            ({"field": "status", "in": ["open", "wating"]}, "did you mean 'waiting'?", "waiting"),
        ],
    )
    def test_unknown_names_suggest(
        self, spec: dict[str, Any], fragment: str, accepted: str
    ) -> None:
        with pytest.raises(RuleConfigError) as info:
            compile_condition(Node.from_plain(spec), SCHEMA)
        assert fragment in info.value.message
        assert accepted in info.value.accepted

    @pytest.mark.parametrize(
        ("spec", "fragment"),
        [
            ({"field": "priority", "in": "high"}, "in: expects a list"),
            ({"field": "priority", "not_in": []}, "not_in: the list is empty"),
            ({"field": "priority", "equals": ["a", "b"]}, "use in: for several values"),
            ({"field": "subject", "matches": "("}, "bad regular expression"),
            ({"field": "subject", "matches": 5}, "expects a regular expression as text"),
            ({"field": "subject", "exists": "yes"}, "exists: expects true or false"),
            ({"field": "subject", "gt": "5"}, "gt: expects a number"),
            ({"field": "subject", "gt": True}, "gt: expects a number"),
            ({"field": "created_at", "before": "48h"}, "needs a sign"),
            ({"field": "created_at", "after": "soon"}, "neither an ISO 8601 date-time"),
            ({"field": "priority"}, "has no operator"),
            ({"equals": "high"}, "has no field:"),
            ({"field": "priority", "equals": "high", "in": ["low"]}, "exactly one operator"),
            ({"all": []}, "all: expects a non-empty list"),
            ({"any": {"field": "a"}}, "any: expects a non-empty list"),
            ({"all": [{"field": "status", "equals": "open"}], "field": "x"}, "cannot share"),
            ("priority == high", "a condition must be a mapping"),
            ({"field": "", "equals": 1}, "field: expects a dotted path"),
            ({"field": "custom_fields..x", "equals": 1}, "has an empty part"),
        ],
    )
    def test_wrong_shapes(self, spec: Any, fragment: str) -> None:
        with pytest.raises(RuleConfigError) as info:
            compile_condition(Node.from_plain(spec), SCHEMA)
        assert fragment in info.value.message

    def test_errors_are_collected(self) -> None:
        issues: list[RuleConfigError] = []
        spec = {
            "all": [
                {"field": "priorty", "equals": "high"},
                {"field": "status", "equal": "open"},
                {"field": "subject", "matches": "ok"},
            ]
        }
        assert compile_condition(Node.from_plain(spec), SCHEMA, issues) is None
        assert [("priorty" in e.message, "equal" in e.message) for e in issues] == [
            (True, False),
            (False, True),
        ]


class TestPredicate:
    def test_lambda_label_and_reason(self) -> None:
        condition = compile_when(lambda ev: ev.ticket["priority"] == "urgent", SCHEMA)
        assert isinstance(condition, Predicate)
        verdict = condition.check(make_event())
        assert not verdict.ok
        assert verdict.why.startswith("when=<lambda at line ")
        assert verdict.why.endswith("returned False")
        assert condition.check(make_event(priority="urgent")).ok

    def test_named_function(self) -> None:
        def is_vip(event: Event) -> bool:
            return True

        assert predicate(is_vip).check(make_event()).why.endswith("is_vip is true")

    def test_mapping_compiles_to_leaves(self) -> None:
        condition = compile_when({"field": "priority", "equals": "normal"}, SCHEMA)
        assert isinstance(condition, Leaf)

    def test_rejects_other_values(self) -> None:
        with pytest.raises(RuleConfigError, match="when= expects a function"):
            compile_when(42, SCHEMA)  # type: ignore[arg-type]


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "seconds", "signed"),
        [
            ("+30m", 1800, True),
            ("-48h", -172800, True),
            ("2d", 172800, False),
            ("-1d12h", -129600, True),
            ("+1w", 604800, True),
            ("+15s", 15, True),
        ],
    )
    def test_parse(self, text: str, seconds: int, signed: bool) -> None:
        delta, has_sign = parse_duration(text)
        assert delta.total_seconds() == seconds
        assert has_sign is signed

    def test_future_instant_accepts_unsigned(self) -> None:
        instant = parse_instant("48h", sign="future")
        assert format_utc(instant.resolve(CREATED)) == "2024-05-12T12:00:00Z"

    def test_future_instant_refuses_the_past(self) -> None:
        with pytest.raises(ValueError, match="a reminder must be after it"):
            parse_instant("-1h", sign="future")

    def test_absolute_instant_ignores_anchor(self) -> None:
        instant = parse_instant("2024-06-01T08:30:00+02:00")
        assert format_utc(instant.resolve(CREATED)) == "2024-06-01T06:30:00Z"
