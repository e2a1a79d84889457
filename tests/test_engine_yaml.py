"""YAML rules: loading with line numbers, the `on:` trap, compilation, and every error kind."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ticketwire.engine import RULE_KEYS, Action, check_rules, compile_yaml, load_rules, parse_yaml
from ticketwire.errors import RuleConfigError

EVENT_TYPES = [
    "ticket.assigned",
    "ticket.closed",
    "ticket.created",
    "ticket.status_changed",
    "ticket.updated",
]


def write(tmp_path: Path, text: str, name: str = "rule.yml") -> Path:
    path = tmp_path / name
    body = textwrap.dedent(text).lstrip("\n")
    if _single_rule(body) and "vendor:" not in body:
        # These tests exercise the InboxOps vocabulary; a rule without vendor: must mean the
        # same on every helpdesk. Appending the key keeps every asserted line number.
        body = body.rstrip("\n") + "\nvendor: inboxops\n"
    path.write_text(body, encoding="utf-8")
    return path


def _single_rule(body: str) -> bool:
    first = body.lstrip().split("\n", 1)[0]
    return first.startswith("name:") and "\n---" not in body and "\nrules:" not in body


def errors_of(tmp_path: Path, text: str, name: str = "rule.yml") -> list[RuleConfigError]:
    path = write(tmp_path, text, name)
    router, errors = check_rules(path)
    assert router is None
    assert errors, "expected errors"
    return errors


def only_error(tmp_path: Path, text: str) -> RuleConfigError:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


VALID = """
    name: escalate-enterprise
    events: [ticket.created, ticket.updated]
    vendor: inboxops
    description: Raise enterprise tickets.
    if:
      all:
        - field: custom_fields.plan
          equals: enterprise
        - field: priority
          in: [low, normal]
        - not: {field: subject, matches: "(?i)test"}
    then:
      - update: {priority: high, assignee_id: null}
      - add_tags: [tag-1, tag-2, tag-1]
      - remove_tags: [tag-3]
      - move_inbox: inbox-2
      - update_status: waiting
      - update_status: {status_id: status-9}
      - assign: agent-7
      - unassign: true
      - set_status: in_progress
      - set_priority: urgent
      - remind_at: "+48h"
      - remind_at: 2024-06-01T10:00:00Z
"""


class TestCompile:
    def test_full_rule(self, tmp_path: Path) -> None:
        router = load_rules(write(tmp_path, VALID))
        (rule,) = router.rules
        assert rule.name == "escalate-enterprise"
        assert rule.events == {"ticket.created", "ticket.updated"}
        assert rule.vendor == "inboxops"
        assert rule.source == f"{tmp_path / 'rule.yml'}:1"
        assert rule.description == "Raise enterprise tickets."
        assert rule.handler is None
        name = "escalate-enterprise"
        assert rule.actions == (
            Action("update", {"priority": "high", "assignee_id": None}, name),
            Action("add_tags", {"tag_ids": ["tag-1", "tag-2"]}, name),
            Action("remove_tags", {"tag_ids": ["tag-3"]}, name),
            Action("move_inbox", {"inbox_id": "inbox-2"}, name),
            Action("update_status", {"status": "waiting"}, name),
            Action("update_status", {"status_id": "status-9"}, name),
            Action("assign", {"assignee_id": "agent-7"}, name),
            Action("update", {"assignee_id": None}, name),
            Action("update", {"status": "in_progress"}, name),
            Action("update", {"priority": "urgent"}, name),
            Action("update", {"remind_at": "+48h"}, name),
            Action("update", {"remind_at": "2024-06-01T10:00:00Z"}, name),
        )
        assert rule.condition is not None
        assert rule.condition.describe() == (
            "all(custom_fields.plan equals 'enterprise', priority in ['low', 'normal'], "
            "not (subject matches '(?i)test'))"
        )

    def test_on_key_is_not_a_boolean(self, tmp_path: Path) -> None:
        """PyYAML's YAML 1.1 reads `on:` as True; rules must see the key `on`."""
        router = load_rules(
            write(
                tmp_path,
                """
                name: with-on
                on: ticket.created
                then: [{set_priority: high}]
                """,
            )
        )
        assert router.rules[0].events == {"ticket.created"}

    def test_yes_no_on_off_values_stay_strings(self) -> None:
        (doc,) = parse_yaml("a: yes\nb: no\nc: on\nd: off\ne: true\nf: False\ng: 1:30\nh: 010\n")
        assert doc.plain() == {
            "a": "yes",
            "b": "no",
            "c": "on",
            "d": "off",
            "e": True,
            "f": False,
            "g": "1:30",
            "h": "010",
        }

    def test_yes_equals_the_string(self, tmp_path: Path) -> None:
        rules, errors = compile_yaml(
            "name: r\nevent: ticket.created\nif: {field: custom_fields.vip, equals: yes}\n"
            "then: [{set_priority: high}]\n",
            file="r.yml",
        )
        assert errors == []
        condition = rules[0].condition
        assert condition is not None
        assert condition.describe() == "custom_fields.vip equals 'yes'"

    def test_numbers_and_floats(self) -> None:
        (doc,) = parse_yaml("a: 40\nb: -3\nc: 2.5\nd: 1e3\ne: 0x1f\n")
        assert doc.plain() == {"a": 40, "b": -3, "c": 2.5, "d": 1000.0, "e": 31}

    def test_event_key_and_string_events(self, tmp_path: Path) -> None:
        router = load_rules(
            write(
                tmp_path,
                """
                - name: one
                  event: ticket.closed
                  then: [{set_priority: high}]
                - name: two
                  events: ticket.assigned
                  then: [{set_priority: high}]
                """,
            )
        )
        assert [(r.name, r.events) for r in router.rules] == [
            ("one", {"ticket.closed"}),
            ("two", {"ticket.assigned"}),
        ]

    def test_rules_key_and_lines(self, tmp_path: Path) -> None:
        router = load_rules(
            write(
                tmp_path,
                """
                rules:
                  - name: first
                    event: ticket.created
                    then: [{set_priority: high}]
                  - name: second
                    event: ticket.created
                    then: [{set_priority: low}]
                """,
            )
        )
        assert [r.source.rsplit(":", 1)[1] for r in router.rules] == ["2", "5"]

    def test_several_documents(self, tmp_path: Path) -> None:
        router = load_rules(
            write(
                tmp_path,
                """
                name: a
                event: ticket.created
                then: [{set_priority: high}]
                ---
                name: b
                event: ticket.created
                then: [{set_priority: low}]
                """,
            )
        )
        assert [r.name for r in router.rules] == ["a", "b"]

    def test_merge_keys(self, tmp_path: Path) -> None:
        router = load_rules(
            write(
                tmp_path,
                """
                - &base
                  name: base
                  event: ticket.created
                  then: [{set_priority: high}]
                - <<: *base
                  name: derived
                """,
            )
        )
        assert [r.name for r in router.rules] == ["base", "derived"]

    def test_no_if_means_always(self, tmp_path: Path) -> None:
        router = load_rules(
            write(tmp_path, "name: r\nevent: ticket.created\nthen: [{assign: a}]\n")
        )
        assert router.rules[0].condition is None


class TestErrors:
    """Every mistake names file, line, rule and what is accepted."""

    def test_unknown_top_level_key(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: typo
            evnts: [ticket.created]
            then: [{set_priority: high}]
            """,
        )
        assert error.file == str(tmp_path / "rule.yml")
        assert error.line == 2
        assert error.rule == "typo"
        assert "unknown key 'evnts'; did you mean 'events'?" in error.message
        assert error.accepted == RULE_KEYS
        assert set(RULE_KEYS) >= {"name", "events", "vendor", "if", "then", "schedule", "rearm"}
        assert str(error) == (
            f"{tmp_path / 'rule.yml'}:2: rule 'typo': unknown key 'evnts'; did you mean "
            f"'events'? (accepted: {', '.join(RULE_KEYS)})"
        )

    def test_unknown_operator(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: r
            event: ticket.created
            if:
              all:
                - field: priority
                  equals: high
                - field: status
                  equal: open
            then: [{set_priority: high}]
            """,
        )
        assert (error.line, error.rule) == (8, "r")
        assert "unknown operator 'equal'; did you mean 'equals'?" in error.message
        assert "equals" in error.accepted and "matches" in error.accepted

    def test_unknown_action(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: r
            event: ticket.created
            then:
              - set_priority: high
              - add_tag: [t]
            """,
        )
        assert (error.line, error.rule) == (5, "r")
        assert "unknown action 'add_tag'" in error.message
        assert "did you mean 'add_tags'?" in error.message
        assert "add_tags" in error.accepted and "update" in error.accepted

    def test_unknown_patch_field(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: r
            event: ticket.created
            then:
              - update:
                  subject: Hello
                  priorty: high
            """,
        )
        assert (error.line, error.rule) == (6, "r")
        assert "unknown field 'priorty'; did you mean 'priority'?" in error.message
        assert "priority" in error.accepted and "custom_fields" in error.accepted

    def test_unknown_event_type(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: r
            events:
              - ticket.created
              - ticket.close
            then: [{set_priority: high}]
            """,
        )
        assert (error.line, error.rule) == (4, "r")
        assert "unknown event type 'ticket.close'; did you mean 'ticket.closed'?" in error.message
        assert list(error.accepted) == EVENT_TYPES

    def test_in_with_a_string(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: r
            event: ticket.created
            if: {field: priority, in: high}
            then: [{set_priority: high}]
            """,
        )
        assert (error.line, error.rule) == (3, "r")
        assert "in: expects a list, e.g. in: [high, urgent], got a string" in error.message

    def test_add_tags_with_a_scalar(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: r
            event: ticket.created
            then:
              - add_tags: vip
            """,
        )
        assert (error.line, error.rule) == (4, "r")
        assert "add_tags: expects a non-empty list of tag ids" in error.message
        assert "got a string" in error.message

    def test_bad_regex(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: r
            event: ticket.created
            if:
              field: subject
              matches: "(unclosed"
            then: [{set_priority: high}]
            """,
        )
        assert (error.line, error.rule) == (5, "r")
        assert "bad regular expression '(unclosed'" in error.message

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            ("48h", "needs a sign: write -48h for before the event or +48h for after it"),
            ("-2x", "neither an ISO 8601 date-time"),
            ("2024-13-45", "neither an ISO 8601 date-time"),
        ],
    )
    def test_bad_duration_or_date(self, tmp_path: Path, value: str, fragment: str) -> None:
        error = only_error(
            tmp_path,
            f"""
            name: r
            event: ticket.created
            if: {{field: created_at, before: "{value}"}}
            then: [{{set_priority: high}}]
            """,
        )
        assert (error.line, error.rule) == (3, "r")
        assert fragment in error.message

    def test_bad_reminder(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: r
            event: ticket.created
            then:
              - remind_at: tomorrow
            """,
        )
        assert error.line == 4
        assert "remind_at:" in error.message and "'tomorrow'" in error.message

    def test_invalid_enum_values(self, tmp_path: Path) -> None:
        errors = errors_of(
            tmp_path,
            """
            name: r
            event: ticket.created
            if: {field: status, in: [open, wating]}
            then:
              - set_priority: hihg
              - update: {status: closd}
              - update_status: {status: pending}
            """,
        )
        assert [(e.line, e.rule) for e in errors] == [(3, "r"), (5, "r"), (6, "r"), (7, "r")]
        assert "unknown status 'wating'; did you mean 'waiting'?" in errors[0].message
        assert "'hihg' is not one of the accepted values; did you mean 'high'?" in errors[1].message
        assert errors[1].accepted == ("low", "normal", "high", "urgent")
        assert "did you mean 'closed'?" in errors[2].message
        assert "waiting" in errors[3].accepted

    def test_leaf_with_two_operators(self, tmp_path: Path) -> None:
        error = only_error(
            tmp_path,
            """
            name: r
            event: ticket.created
            if:
              field: priority
              equals: high
              in: [low]
            then: [{set_priority: high}]
            """,
        )
        assert (error.line, error.rule) == (6, "r")
        assert "2 operators (equals, in)" in error.message
        assert "exactly one operator" in error.message

    @pytest.mark.parametrize(
        ("text", "line", "fragment", "accepted"),
        [
            ("event: ticket.created\nthen: [{assign: a}]\n", 1, "the rule has no name:", None),
            ("name: r\nthen: [{assign: a}]\n", 1, "the rule has no events:", "ticket.created"),
            ("name: r\nevent: ticket.created\n", 1, "the rule has no then:", None),
            ("name: r\nevent: ticket.created\nthen: []\n", 3, "non-empty list of actions", None),
            ("name: r\nevent: ticket.created\nthen: {assign: a}\n", 3, "then: expects a", None),
        ],
    )
    def test_missing_parts(
        self, tmp_path: Path, text: str, line: int, fragment: str, accepted: str | None
    ) -> None:
        error = only_error(tmp_path, text)
        assert error.line == line
        assert fragment in error.message
        if accepted:
            assert accepted in error.accepted

    @pytest.mark.parametrize(
        ("text", "line", "fragment"),
        [
            (
                "name: r\nevents: [ticket.created]\non: ticket.closed\nthen: [{assign: a}]\n",
                3,
                "use only one of events:, event:, on:",
            ),
            ("name: r\nname: s\nevent: ticket.created\nthen: [{assign: a}]\n", 2, "duplicate key"),
            ("name: bad name\nevent: ticket.created\nthen: [{assign: a}]\n", 1, "no spaces"),
            (
                "name: r\nevent: ticket.created\nthen:\n  - assign: a\n    add_tags: [t]\n",
                4,
                "each then: item is one action",
            ),
            (
                "name: r\nevent: ticket.created\nvendor: inboxopz\nthen: [{assign: a}]\n",
                3,
                "unknown vendor 'inboxopz'; did you mean 'inboxops'?",
            ),
            ("name: r\nevent: 5\nthen: [{assign: a}]\n", 2, "expects event types"),
            (
                "name: r\nevent: ticket.created\nthen: [{update_status: {status_id: s, x: 1}}]\n",
                3,
                "unknown key 'x'",
            ),
            ("name: r\nevent: ticket.created\nthen: [{unassign: false}]\n", 3, "unassign: true"),
            ("name: r\nevent: ticket.created\nthen: [{assign: null}]\n", 3, "use unassign: true"),
            ("name: r\nevent: ticket.created\nthen: [{update: {}}]\n", 3, "update: expects"),
            (
                "name: r\nevent: ticket.created\nthen: [{update: {inbox_id: null}}]\n",
                3,
                "cannot be null",
            ),
            ("name: r\nevent: ticket.created\ndescription: [1]\nthen: [{assign: a}]\n", 3, "text"),
        ],
    )
    def test_other_mistakes(self, tmp_path: Path, text: str, line: int, fragment: str) -> None:
        error = only_error(tmp_path, text)
        assert error.line == line
        assert fragment in error.message

    def test_yaml_syntax_error_has_a_line(self, tmp_path: Path) -> None:
        error = only_error(tmp_path, "name: r\nevent: ticket.created\nthen: [unclosed\n")
        assert error.file == str(tmp_path / "rule.yml")
        assert error.line is not None and error.line >= 3
        assert error.message.startswith("invalid YAML:")

    def test_empty_file(self, tmp_path: Path) -> None:
        error = only_error(tmp_path, "# nothing here\n")
        assert "the file is empty" in error.message

    def test_scalar_document(self, tmp_path: Path) -> None:
        error = only_error(tmp_path, "just text\n")
        assert "a rule must be a mapping" in error.message
        assert "events" in error.accepted

    def test_every_error_of_a_file_is_reported(self, tmp_path: Path) -> None:
        errors = errors_of(
            tmp_path,
            """
            - name: first
              evnts: [ticket.created]
              if:
                - field: priorty
                  equals: high
              then:
                - updat: {priority: high}
            - name: second
              on: ticket.creatd
              then: [{set_priority: high}]
            """,
        )
        assert [(e.rule, e.line) for e in errors] == [
            ("first", 2),
            ("first", 4),
            ("first", 7),
            ("second", 9),
        ]

    def test_errors_across_files_and_first_raised(self, tmp_path: Path) -> None:
        write(tmp_path, "name: a\nevent: ticket.created\nthen: [{set_priority: hi}]\n", "a.yml")
        write(tmp_path, "name: b\nevent: ticket.create\nthen: [{set_priority: high}]\n", "b.yaml")
        router, errors = check_rules(tmp_path)
        assert router is None
        assert [(Path(e.file or "").name, e.rule) for e in errors] == [
            ("a.yml", "a"),
            ("b.yaml", "b"),
        ]
        with pytest.raises(RuleConfigError) as info:
            load_rules(tmp_path)
        assert info.value.rule == "a"

    def test_duplicate_names_across_files(self, tmp_path: Path) -> None:
        write(tmp_path, "name: same\nevent: ticket.created\nthen: [{assign: a}]\n", "a.yml")
        write(tmp_path, "\nname: same\nevent: ticket.closed\nthen: [{assign: a}]\n", "b.yml")
        _, errors = check_rules(tmp_path)
        (error,) = errors
        assert error.file == str(tmp_path / "b.yml")
        assert error.line == 1
        assert error.rule == "same"
        assert "already used by the rule at" in error.message
        assert "a.yml:1" in error.message


def test_relative_dates_are_anchored_on_the_event(tmp_path: Path) -> None:
    """A replay decides like the first delivery: `-48h` counts from the event, not the clock."""
    from ticketwire.event import Event

    router = load_rules(
        write(
            tmp_path,
            """
            name: stale
            event: ticket.updated
            if: {field: updated_at, before: "-48h"}
            then: [{add_tags: [stale]}]
            """,
        )
    )
    condition = router.rules[0].condition
    assert condition is not None

    def at(created: datetime) -> bool:
        event = Event(
            vendor="inboxops",
            type="ticket.updated",
            id="e",
            tenant="t",
            created_at=created,
            ticket_id="1",
            ticket={"id": "1", "updated_at": "2024-05-01T00:00:00Z"},
        )
        return condition.check(event).ok

    assert at(datetime(2024, 5, 3, 1, tzinfo=UTC)) is True
    assert at(datetime(2024, 5, 2, 23, tzinfo=UTC)) is False
