"""Router, Context, evaluate() and the rules loader: Python and YAML rules through one engine."""

from __future__ import annotations

import logging
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ticketwire
import ticketwire.engine
from ticketwire import Context, Event, Router
from ticketwire.engine import (
    Action,
    Rule,
    check_rules,
    compile_yaml,
    evaluate,
    load_rules,
    render_table,
    run_rule,
)
from ticketwire.errors import RuleConfigError

CREATED = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


def make_event(
    event_type: str = "ticket.updated", vendor: str = "inboxops", **ticket: Any
) -> Event:
    base: dict[str, Any] = {
        "id": "t-1",
        "subject": "Printer on fire",
        "status": "open",
        "priority": "urgent",
        "assignee_id": None,
        "custom_fields": {},
    }
    base.update(ticket)
    return Event(
        vendor=vendor,
        type=event_type,
        id="evt-1",
        tenant="acme",
        created_at=CREATED,
        ticket_id="t-1",
        ticket=base,
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_public_exports() -> None:
    assert ticketwire.__all__ == ["Context", "Event", "Router"]
    for name in ticketwire.engine.__all__:
        assert hasattr(ticketwire.engine, name), name


class TestRouter:
    def test_on_registers_in_order_with_default_names(self) -> None:
        router = Router()

        @router.on("ticket.created")
        async def first(ctx: Context) -> None:
            ctx.set_priority("high")

        @router.on("ticket.created", "ticket.updated", name="custom", vendor="inboxops")
        async def second(ctx: Context) -> None:
            """Second rule's summary.

            More detail.
            """

        assert [r.name for r in router.rules] == ["test_engine_router.first", "custom"]
        assert router.get("custom").events == {"ticket.created", "ticket.updated"}
        assert router.get("custom").description == "Second rule's summary."
        assert router.get("custom").vendor == "inboxops"
        file, line = router.rules[0].source.rsplit(":", 1)
        assert file == __file__ and int(line) > 0
        assert [r.name for r in router.rules_for("ticket.created")] == [
            "test_engine_router.first",
            "custom",
        ]
        assert [r.name for r in router.rules_for("ticket.updated", "inboxops")] == ["custom"]
        assert [r.name for r in router.rules_for("ticket.updated", "cstar")] == []
        assert router.rules_for("ticket.closed") == []
        assert "custom" in router and len(router) == 2

    def test_decorator_returns_the_function(self) -> None:
        router = Router()

        async def handler(ctx: Context) -> None:
            pass

        assert router.on("ticket.created")(handler) is handler

    def test_duplicate_names(self) -> None:
        router = Router()

        @router.on("ticket.created", name="dup")
        async def one(ctx: Context) -> None:
            pass

        with pytest.raises(RuleConfigError) as info:

            @router.on("ticket.closed", name="dup")
            async def two(ctx: Context) -> None:
                pass

        assert info.value.rule == "dup"
        assert info.value.file == __file__
        assert "already used by the rule at" in info.value.message

    def test_include_and_compose(self) -> None:
        a, b = Router(), Router()

        @a.on("ticket.created", name="a1")
        async def a1(ctx: Context) -> None:
            pass

        @b.on("ticket.created", name="b1")
        async def b1(ctx: Context) -> None:
            pass

        merged = Router(a)
        merged.include(b)
        assert [r.name for r in merged.rules] == ["a1", "b1"]
        assert [r.name for r in Router(b, a).rules] == ["b1", "a1"]
        with pytest.raises(RuleConfigError):
            merged.include(a)

    def test_get_unknown(self) -> None:
        with pytest.raises(KeyError, match="no rule named 'x'"):
            Router().get("x")

    @pytest.mark.parametrize(
        ("kwargs", "events", "fragment"),
        [
            ({}, ("ticket.creatd",), "did you mean 'ticket.created'?"),
            ({}, (), "at least one event type"),
            ({"vendor": "inboxopz"}, ("ticket.created",), "unknown vendor 'inboxopz'"),
            ({"name": "has space"}, ("ticket.created",), "must be non-empty"),
            ({"when": {"field": "priorty", "equals": "x"}}, ("ticket.created",), "priority"),
            ({"when": 3}, ("ticket.created",), "when= expects"),
            ({}, (["ticket.created"],), "event types are strings"),
        ],
    )
    def test_registration_errors(
        self, kwargs: dict[str, Any], events: tuple[Any, ...], fragment: str
    ) -> None:
        router = Router()

        async def handler(ctx: Context) -> None:
            pass

        with pytest.raises(RuleConfigError) as info:
            router.on(*events, **kwargs)(handler)
        assert fragment in str(info.value)
        assert info.value.file == __file__
        assert info.value.line is not None

    def test_handler_must_be_async(self) -> None:
        def not_async(ctx: Context) -> None:
            pass

        with pytest.raises(RuleConfigError, match="async def"):
            Router().on("ticket.created")(not_async)  # type: ignore[type-var]

    def test_rule_needs_actions_or_handler(self) -> None:
        with pytest.raises(RuleConfigError, match="needs actions"):
            Rule(name="empty", events=frozenset({"ticket.created"}))


class TestContext:
    def test_actions_are_validated_and_queued(self) -> None:
        ctx = Context(make_event(), rule="r")
        ctx.update(priority="high", custom_fields={"plan": "gold"})
        ctx.add_tags(("a", "b"))
        ctx.remove_tags(["c"])
        ctx.move_inbox("inbox-1")
        ctx.update_status("waiting")
        ctx.update_status(status_id="custom-1")
        ctx.assign("agent-1")
        ctx.unassign()
        ctx.set_status("resolved")
        ctx.set_priority("low")
        ctx.remind_at("+2h")
        ctx.remind_at(timedelta(minutes=5))
        ctx.remind_at(datetime(2024, 6, 1, tzinfo=UTC))
        ctx.remind_at(None)
        ctx.set_custom_fields({"seats": 3})
        assert [a.describe() for a in ctx.actions] == [
            'update {"custom_fields": {"plan": "gold"}, "priority": "high"}',
            'add_tags {"tag_ids": ["a", "b"]}',
            'remove_tags {"tag_ids": ["c"]}',
            'move_inbox {"inbox_id": "inbox-1"}',
            'update_status {"status": "waiting"}',
            'update_status {"status_id": "custom-1"}',
            'assign {"assignee_id": "agent-1"}',
            'update {"assignee_id": null}',
            'update {"status": "resolved"}',
            'update {"priority": "low"}',
            'update {"remind_at": "+2h"}',
            'update {"remind_at": "+300s"}',
            'update {"remind_at": "2024-06-01T00:00:00Z"}',
            'update {"remind_at": null}',
            'update {"custom_fields": {"seats": 3}}',
        ]
        assert all(a.rule == "r" for a in ctx.actions)
        assert len(ctx) == 15

    @pytest.mark.parametrize(
        ("call", "fragment", "accepted"),
        [
            (lambda c: c.update(priorty="high"), "did you mean 'priority'?", "priority"),
            (lambda c: c.set_priority("hihg"), "did you mean 'high'?", "urgent"),
            (lambda c: c.set_status("done"), "'done' is not one of", "closed"),
            (lambda c: c.add_tags("vip"), "expects a non-empty list", None),
            (lambda c: c.add_tags([]), "expects a non-empty list", None),
            (lambda c: c.update_status(), "exactly one", "open"),
            (lambda c: c.update_status("open", status_id="x"), "exactly one", "open"),
            (lambda c: c.remind_at("-1h"), "must be after it", None),
            (lambda c: c.act("delete"), "unknown action 'delete'", "update"),
            (lambda c: c.assign(""), "non-empty string", None),
        ],
    )
    def test_invalid_actions(self, call: Any, fragment: str, accepted: str | None) -> None:
        ctx = Context(make_event(), rule="r")
        with pytest.raises(RuleConfigError) as info:
            call(ctx)
        assert fragment in info.value.message
        assert info.value.rule == "r"
        # The error points at the rule's own line, not at the engine.
        assert info.value.file == __file__
        if accepted:
            assert accepted in info.value.accepted
        assert ctx.actions == []

    def test_ticket_is_a_copy(self) -> None:
        event = make_event()
        ctx = Context(event, rule="r")
        ctx.ticket["priority"] = "low"
        assert event.ticket["priority"] == "urgent"
        assert ctx.ticket_id == "t-1"
        assert ctx.helpdesk is None

    def test_log_is_bound_to_rule_and_event(self, caplog: pytest.LogCaptureFixture) -> None:
        ctx = Context(make_event(), rule="r")
        with caplog.at_level(logging.INFO, logger="ticketwire.rules"):
            ctx.log.info("hello %s", "there")
        (record,) = caplog.records
        assert record.getMessage() == "rule r event evt-1: hello there"
        assert record.__dict__["rule"] == "r"
        assert record.__dict__["ticket_id"] == "t-1"


YAML_RULE = """
name: yaml-escalate
events: [ticket.updated]
if:
  field: priority
  in: [high, urgent]
then:
  - update: {status: in_progress}
  - add_tags: [hot]
vendor: inboxops
""".lstrip()


class TestEvaluate:
    async def test_python_and_yaml_rules_go_through_one_evaluate(self) -> None:
        rules, errors = compile_yaml(YAML_RULE, file="rules/escalate.yml")
        assert errors == []
        router = Router()
        router.add(rules[0])

        @router.on("ticket.updated", when=lambda ev: ev.ticket["priority"] == "urgent")
        async def python_rule(ctx: Context) -> None:
            ctx.assign("agent-9")

        @router.on("ticket.updated", name="never")
        async def quiet(ctx: Context) -> None:
            pass

        decisions = await evaluate(router, make_event())
        assert [(d.rule.name, d.fired) for d in decisions] == [
            ("yaml-escalate", True),
            ("test_engine_router.python_rule", True),
            ("never", False),
        ]
        assert decisions[0].reason == (
            "fired: 2 actions (update, add_tags); condition true: priority is 'urgent'"
        )
        assert decisions[0].actions == (
            Action("update", {"status": "in_progress"}, "yaml-escalate"),
            Action("add_tags", {"tag_ids": ["hot"]}, "yaml-escalate"),
        )
        assert decisions[1].actions == (
            Action("assign", {"assignee_id": "agent-9"}, "test_engine_router.python_rule"),
        )
        assert decisions[2].reason == "no actions"
        assert decisions[2].describe() == "never: no actions"

        decisions = await evaluate(router, make_event(priority="low"))
        assert [d.fired for d in decisions] == [False, False, False]
        assert decisions[0].reason == (
            "condition false: priority is 'low', rule needs one of ['high', 'urgent']"
        )
        assert decisions[1].reason.startswith("condition false: when=<lambda at line ")

    async def test_only_rules_for_the_event_type_and_vendor(self) -> None:
        router = Router()

        @router.on("ticket.closed", name="closed")
        async def closed(ctx: Context) -> None:
            ctx.set_priority("low")

        @router.on("ticket.updated", name="other-vendor", vendor="inboxops")
        async def other(ctx: Context) -> None:
            ctx.set_priority("low")

        assert await evaluate(router, make_event("ticket.updated", vendor="cstar")) == []
        assert await evaluate(router, make_event("ticket.created")) == []
        assert [d.rule.name for d in await evaluate(router, make_event("ticket.closed"))] == [
            "closed"
        ]

    async def test_a_failing_rule_does_not_stop_the_others(self) -> None:
        router = Router()

        @router.on("ticket.updated", name="boom")
        async def boom(ctx: Context) -> None:
            ctx.set_priority("high")
            raise RuntimeError("database on fire")

        @router.on("ticket.updated", name="bad-when", when=lambda ev: ev.ticket["nope"])
        async def bad_when(ctx: Context) -> None:
            ctx.set_priority("high")

        @router.on("ticket.updated", name="bad-action")
        async def bad_action(ctx: Context) -> None:
            ctx.update(priorty="high")

        @router.on("ticket.updated", name="fine")
        async def fine(ctx: Context) -> None:
            ctx.set_priority("high")

        decisions = await evaluate(router, make_event())
        assert [(d.rule.name, d.fired) for d in decisions] == [
            ("boom", False),
            ("bad-when", False),
            ("bad-action", False),
            ("fine", True),
        ]
        assert decisions[0].reason == "error: RuntimeError: database on fire"
        assert decisions[0].actions == ()  # half a rule is never applied
        assert isinstance(decisions[0].error, RuntimeError)
        assert decisions[1].reason == "error: in condition: KeyError: 'nope'"
        assert decisions[2].reason.startswith("error: RuleConfigError: ")
        assert "did you mean 'priority'?" in decisions[2].reason

    async def test_mapping_when_explains_itself(self) -> None:
        router = Router()

        @router.on(
            "ticket.updated",
            name="m",
            when={
                "all": [
                    {"field": "priority", "equals": "urgent"},
                    {"field": "status", "equals": "waiting"},
                ]
            },
        )
        async def handler(ctx: Context) -> None:
            ctx.set_priority("high")

        (decision,) = await evaluate(router, make_event())
        assert decision.reason == "condition false: status is 'open', rule needs 'waiting'"

    async def test_context_gets_helpdesk_and_logger(self, caplog: pytest.LogCaptureFixture) -> None:
        seen: dict[str, Any] = {}
        router = Router()

        @router.on("ticket.updated", name="spy")
        async def spy(ctx: Context) -> None:
            seen["helpdesk"] = ctx.helpdesk
            seen["rule"] = ctx.rule
            ctx.log.warning("looked")

        marker = object()
        logger = logging.getLogger("custom.rules")
        with caplog.at_level(logging.WARNING, logger="custom.rules"):
            decision = await run_rule(router.get("spy"), make_event(), helpdesk=marker, log=logger)  # type: ignore[arg-type]
        assert decision.reason == "no actions"
        assert seen == {"helpdesk": marker, "rule": router.get("spy")}
        assert caplog.records[0].name == "custom.rules"
        assert caplog.records[0].getMessage() == "rule spy event evt-1: looked"


class TestLoader:
    def test_loads_yaml_and_python_in_file_name_order(self, tmp_path: Path) -> None:
        write(tmp_path, "b_rule.yml", "name: b\nevent: ticket.created\nthen: [{assign: x}]\n")
        write(
            tmp_path,
            "a_rule.py",
            """
            from ticketwire import Context, Router

            router = Router()


            @router.on("ticket.created")
            async def first(ctx: Context) -> None:
                ctx.assign("y")
            """,
        )
        write(tmp_path, "c_rule.yaml", "name: c\nevent: ticket.created\nthen: [{assign: z}]\n")
        write(tmp_path, "_disabled.yml", "this is not even valid: [")
        write(tmp_path, ".hidden.py", "raise SystemExit")
        write(tmp_path, "notes.txt", "ignored")
        router = load_rules(tmp_path)
        assert [r.name for r in router.rules] == ["a_rule.first", "b", "c"]
        assert router.rules[0].source == f"{tmp_path / 'a_rule.py'}:6"
        assert router.rules[1].source == f"{tmp_path / 'b_rule.yml'}:1"

    def test_relative_paths_stay_relative(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "rules").mkdir()
        write(
            tmp_path / "rules",
            "vip.py",
            """
            from ticketwire import Context, Router

            router = Router()


            @router.on("ticket.created")
            async def escalate(ctx: Context) -> None:
                ctx.set_priority("high")
            """,
        )
        monkeypatch.chdir(tmp_path)
        router = load_rules("rules")
        assert router.rules[0].source == "rules/vip.py:6"
        assert "rules/vip.py:6" in render_table(router)
        write(tmp_path / "rules", "broken.py", "import os\n\nraise RuntimeError('no')\n")
        _, errors = check_rules("rules")
        assert [(e.file, e.line) for e in errors] == [("rules/broken.py", 3)]

    def test_single_file(self, tmp_path: Path) -> None:
        path = write(tmp_path, "one.yml", "name: one\nevent: ticket.created\nthen: [{assign: x}]\n")
        assert [r.name for r in load_rules(path).rules] == ["one"]

    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(RuleConfigError) as info:
            load_rules(tmp_path / "nope")
        assert info.value.file == str(tmp_path / "nope")
        assert "no such rules directory" in info.value.message

    def test_empty_directory_is_an_empty_router(self, tmp_path: Path) -> None:
        assert len(load_rules(tmp_path)) == 0

    @pytest.mark.parametrize(
        ("source", "line", "fragment"),
        [
            ("x = 1\n", None, "defines no module-level `router`"),
            ("router = {}\n", None, "`router` is a dict, expected a ticketwire.Router"),
            ("import os\n\ndef broken(:\n", 3, "syntax error"),
            ("x = 1\nraise ValueError('bad setting')\n", 2, "ValueError: bad setting"),
            (
                (
                    "from ticketwire import Router\nrouter = Router()\n\n\n"
                    "@router.on('ticket.creatd')\nasync def f(ctx):\n    pass\n"
                ),
                5,
                "did you mean 'ticket.created'?",
            ),
        ],
    )
    def test_python_file_errors(
        self, tmp_path: Path, source: str, line: int | None, fragment: str
    ) -> None:
        path = tmp_path / "broken.py"
        path.write_text(source, encoding="utf-8")
        router, errors = check_rules(tmp_path)
        assert router is None
        (error,) = errors
        assert error.file == str(path)
        assert error.line == line
        assert fragment in error.message

    def test_every_file_error_is_gathered(self, tmp_path: Path) -> None:
        write(tmp_path, "a.py", "x = 1\n")
        write(tmp_path, "b.yml", "name: b\nevent: ticket.created\nthen: [{asign: x}]\n")
        write(tmp_path, "c.yml", "name: c\nevent: ticket.created\nthen: [{assign: x}]\n")
        router, errors = check_rules(tmp_path)
        assert router is None
        assert [Path(e.file or "").name for e in errors] == ["a.py", "b.yml"]

    def test_python_and_yaml_share_one_namespace(self, tmp_path: Path) -> None:
        write(
            tmp_path,
            "a.py",
            """
            from ticketwire import Context, Router

            router = Router()


            @router.on("ticket.created", name="shared")
            async def first(ctx: Context) -> None:
                ctx.assign("y")
            """,
        )
        write(tmp_path, "b.yml", "name: shared\nevent: ticket.created\nthen: [{assign: x}]\n")
        _, errors = check_rules(tmp_path)
        (error,) = errors
        assert error.rule == "shared"
        assert error.file == str(tmp_path / "b.yml")


def test_render_table() -> None:
    router = Router()
    rules, _ = compile_yaml(YAML_RULE, file="rules/escalate.yml")
    router.add(rules[0])

    @router.on("ticket.updated", "ticket.created", name="py-rule", vendor="inboxops")
    async def handler(ctx: Context) -> None:
        pass

    lines = render_table(router).splitlines()
    assert lines[0].split() == ["EVENT", "RULE", "VENDOR", "SOURCE"]
    body = [line.split() for line in lines[2:]]
    source = router.get("py-rule").source
    assert body == [
        ["ticket.assigned", "-"],
        ["ticket.closed", "-"],
        ["ticket.created", "py-rule", "inboxops", source],
        ["ticket.status_changed", "-"],
        ["ticket.updated", "yaml-escalate", "inboxops", "rules/escalate.yml:1"],
        ["py-rule", "inboxops", source],
    ]
