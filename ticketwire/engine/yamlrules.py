"""YAML rules: parse with line numbers (YAML 1.2 booleans) and compile into ordinary `Rule`s.

PyYAML follows YAML 1.1, where an unquoted `on`, `off`, `yes` or `no` is a boolean, so
`on: ticket.created` would load as `{True: 'ticket.created'}`. The loader here resolves only
`true`/`false` as booleans, so `on` stays a key and `yes`/`no` stay strings.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from ticketwire.accountkey import ACCOUNT_NAME
from ticketwire.engine.actions import (
    Action,
    ActionError,
    field_schema,
    known_events,
    make_action,
    vendor_spec,
)
from ticketwire.engine.conditions import Condition, FieldSchema, compile_condition
from ticketwire.engine.limits import limits_from_yaml
from ticketwire.engine.nodes import Node, located, unknown
from ticketwire.engine.router import EVENT_TYPES, NAME_PATTERN, Rule
from ticketwire.engine.schedule import SCHEDULE_KEYS, yaml_schedule
from ticketwire.errors import RuleConfigError

#: Keys a rule mapping may have.
RULE_KEYS: tuple[str, ...] = (
    "name",
    "events",
    "event",
    "on",
    "vendor",
    "accounts",
    "description",
    "if",
    "then",
    "once_per_ticket",
    "cooldown",
    "rearm",
    "schedule",
    "every",
    "select",
)
_EVENT_KEYS = ("events", "event", "on")
_MAX_DEPTH = 64
#: Values one file may hold once its aliases are expanded: a few aliases to aliases can stand
#: for billions of values ("billion laughs"); real rule files hold a few thousand.
_MAX_VALUES = 100_000
_SCHEDULE_LINE = re.compile(r"^\s*(?:-\s*)?schedule\s*:\s*[*@]")

_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class RuleYamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: only true/false are booleans, no base-60 numbers."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose as PyYAML does, refusing nesting deeper than rules use before it recurses."""
        # PyYAML composes recursively: ten thousand `[` would end in a RecursionError.
        if self._depth > _MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise RuleConfigError("the YAML nests too deeply", line=mark.line + 1)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


RuleYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RuleYamlLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
RuleYamlLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)
RuleYamlLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, *, file: str | None = None) -> list[Node]:
    """Parse every YAML document of `text` into nodes that remember their line."""
    try:
        # The reader checks every character as it starts: NUL or a lone surrogate stops it here.
        loader = RuleYamlLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _unreadable(exc, text, file) from None
    try:
        documents = []
        budget = [_MAX_VALUES]
        while loader.check_node():
            root = loader.get_node()
            if root is not None:
                documents.append(_convert(loader, root, 0, budget))
        return documents
    except yaml.reader.ReaderError as exc:
        raise _unreadable(exc, text, file) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        lines = text.splitlines()
        if mark and mark.line < len(lines) and _SCHEDULE_LINE.match(lines[mark.line]):
            # An unquoted `*/15 * * * *` reads as a YAML alias, `@daily` as a reserved character.
            problem += '; quote the cron expression, e.g. schedule: "*/15 * * * *"'
        raise RuleConfigError(
            f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise RuleConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()


def _unreadable(exc: yaml.reader.ReaderError, text: str, file: str | None) -> RuleConfigError:
    line = text.count("\n", 0, exc.position) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return RuleConfigError(
        f"invalid YAML: character U+{code:04X} is not allowed in a YAML file (control "
        "characters other than tab and newline, and lone surrogates)",
        file=file,
        line=line,
    )


def _convert(loader: RuleYamlLoader, node: yaml.Node, depth: int, budget: list[int]) -> Node:
    line = node.start_mark.line + 1
    if depth > _MAX_DEPTH:
        raise RuleConfigError("the YAML nests too deeply (a recursive alias?)", line=line)
    budget[0] -= 1
    if budget[0] < 0:
        raise RuleConfigError(
            f"the YAML holds more than {_MAX_VALUES} values once its aliases are expanded",
            line=line,
        )
    if isinstance(node, ScalarNode):
        try:
            value = loader.construct_object(node, deep=True)
        except ValueError as exc:
            raise RuleConfigError(f"cannot read {node.value!r}: {exc}", line=line) from None
        except (LookupError, AttributeError, TypeError, OverflowError):
            # PyYAML's constructors fail on explicitly tagged text in their own ways: `!!bool
            # maybe` raises KeyError, `!!timestamp` on text that is not one AttributeError.
            tag = node.tag.removeprefix("tag:yaml.org,2002:")
            raise RuleConfigError(f"cannot read {node.value!r} as !!{tag}", line=line) from None
        return Node(value, line)
    if isinstance(node, SequenceNode):
        return Node([_convert(loader, item, depth + 1, budget) for item in node.value], line)
    if isinstance(node, MappingNode):
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        loader.flatten_mapping(node)
        merged = len(node.value) - own
        values: dict[str, Node] = {}
        key_lines: dict[str, int | None] = {}
        from_merge: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise RuleConfigError("mapping keys must be plain text", line=key_line)
            key = str(key_node.value)
            # Keys of the mapping itself override keys merged in with `<<:`; a key written
            # twice in the mapping itself is almost always a mistake.
            if key in values and key not in from_merge:
                raise RuleConfigError(
                    f"duplicate key {key!r} (first on line {key_lines[key]})", line=key_line
                )
            if index < merged:
                from_merge.add(key)
            else:
                from_merge.discard(key)
            values[key] = _convert(loader, value_node, depth + 1, budget)
            key_lines[key] = key_line
        return Node(values, line, key_lines)
    raise RuleConfigError(f"unsupported YAML node {type(node).__name__}", line=line)


def compile_yaml(text: str, *, file: str) -> tuple[list[Rule], list[RuleConfigError]]:
    """Compile one YAML file's text into rules, gathering every error instead of stopping."""
    try:
        documents = parse_yaml(text, file=file)
    except RuleConfigError as exc:
        return [], [located(exc, file=file, rule=None)]
    if not documents:
        return [], [RuleConfigError("the file is empty; expected a rule or a list", file=file)]
    items: list[Node] = []
    errors: list[RuleConfigError] = []
    for doc in documents:
        if doc.is_list:
            items.extend(doc.value)
        elif doc.is_map and "rules" in doc.value:
            others = [k for k in doc.value if k != "rules"]
            if others:
                errors.append(
                    RuleConfigError(
                        f"a file with rules: holds nothing else; move {others[0]!r} into a rule",
                        file=file,
                        line=doc.key_line(others[0]),
                    )
                )
            listed = doc.value["rules"]
            if listed.is_list:
                items.extend(listed.value)
            else:
                errors.append(
                    RuleConfigError(
                        f"rules: expects a list of rules, got {listed.kind()}",
                        file=file,
                        line=listed.line,
                    )
                )
        else:
            items.append(doc)
    rules: list[Rule] = []
    for item in items:
        rule, issues = compile_rule(item, file=file)
        errors.extend(issues)
        if rule is not None:
            rules.append(rule)
    return rules, errors


def compile_rule(node: Node, *, file: str) -> tuple[Rule | None, list[RuleConfigError]]:
    """Compile one rule mapping; return the rule (None on error) and every error found."""
    if not node.is_map:
        error = RuleConfigError(
            f"a rule must be a mapping with name:, events: and then:, got {node.kind()}",
            file=file,
            line=node.line,
            accepted=RULE_KEYS,
        )
        return None, [error]
    name, issues = _name(node)
    misspelt = _unknown_keys(node)
    issues.extend(misspelt)
    vendor = _collect(issues, _vendor, node)
    scheduled = any(k in node.value for k in SCHEDULE_KEYS)
    events = frozenset[str]() if scheduled else _collect(issues, _events, node, vendor)
    schedule, select = yaml_schedule(node, vendor, issues)
    description = _collect(issues, _description, node)
    schema = _collect(issues, field_schema, vendor) or FieldSchema()
    condition = _condition(node, schema, issues)
    actions = _collect(issues, _actions, node, vendor, name or "<unnamed>", issues)
    limits = limits_from_yaml(node, schema, issues)
    accounts = _collect(issues, _accounts, node, scheduled)
    rule = None
    if not issues and name and (events or schedule) and actions and limits is not None:
        try:
            rule = Rule(
                name=name,
                events=events,
                vendor=vendor,
                source=f"{file}:{node.line}",
                condition=condition,
                actions=actions,
                options={"description": description} if description else {},
                limits=limits,
                schedule=schedule,
                select=select,
                accounts=accounts,
            )
        except RuleConfigError as exc:
            issues.append(exc)
    # `evnts:` already says "did you mean 'events'?"; a second "no events:" error adds nothing.
    near = {m for e in misspelt for m in difflib.get_close_matches(e.got, RULE_KEYS, 1, 0.6)}
    if near & set(SCHEDULE_KEYS):
        near.add("events")
    issues = [e for e in issues if not (isinstance(e, _MissingKey) and e.key in near)]
    return rule, [located(e, file=file, rule=name) for e in issues]


class _MissingKey(RuleConfigError):
    """A required rule key is absent."""

    def __init__(self, key: str, message: str, *, line: int | None, accepted: Any = ()) -> None:
        super().__init__(message, line=line, accepted=accepted)
        self.key = key


class _UnknownKey(RuleConfigError):
    """A rule key outside RULE_KEYS."""

    def __init__(self, got: str, line: int | None) -> None:
        base = unknown("key", got, RULE_KEYS, line)
        super().__init__(base.message, line=line, accepted=base.accepted)
        self.got = got


def _collect(issues: list[RuleConfigError], fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except RuleConfigError as exc:
        issues.append(exc)
        return None


def _name(node: Node) -> tuple[str | None, list[RuleConfigError]]:
    if "name" not in node.value:
        return None, [_MissingKey("name", "the rule has no name:", line=node.line)]
    value = node.value["name"]
    if not isinstance(value.value, str) or not NAME_PATTERN.match(value.value):
        error = RuleConfigError(
            f"name: must be text of letters, digits and _ . : - (no spaces), got {value.value!r}",
            line=value.line,
        )
        return None, [error]
    return value.value, []


def _unknown_keys(node: Node) -> list[_UnknownKey]:
    return [_UnknownKey(key, node.key_line(key)) for key in node.value if key not in RULE_KEYS]


def _events(node: Node, vendor: str | None) -> frozenset[str]:
    present = [k for k in _EVENT_KEYS if k in node.value]
    if not present:
        raise _MissingKey(
            "events",
            "the rule has no events: (the event types it runs for)",
            line=node.line,
            accepted=EVENT_TYPES,
        )
    if len(present) > 1:
        raise RuleConfigError(
            f"use only one of events:, event:, on: (found {', '.join(present)})",
            line=node.key_line(present[1]),
        )
    value = node.value[present[0]]
    items = value.value if value.is_list else [value]
    if not items:
        raise RuleConfigError(f"{present[0]}: the list is empty", line=value.line)
    events: set[str] = set()
    for item in items:
        if not isinstance(item.value, str):
            raise RuleConfigError(
                f"{present[0]}: expects event types such as ticket.created, got {item.kind()}",
                line=item.line,
                accepted=EVENT_TYPES,
            )
        allowed = known_events(vendor)
        if item.value not in allowed:
            raise unknown("event type", item.value, allowed, item.line)
        events.add(item.value)
    return frozenset(events)


def _optional_text(node: Node, key: str, expects: str) -> Node | None:
    """The rule's `key` when it is text; None when the rule has no such key."""
    if key not in node.value:
        return None
    value: Node = node.value[key]
    if not isinstance(value.value, str):
        raise RuleConfigError(f"{key}: expects {expects}, got {value.kind()}", line=value.line)
    return value


def _vendor(node: Node) -> str | None:
    value = _optional_text(node, "vendor", "a vendor name")
    if value is None:
        return None
    try:
        vendor_spec(value.value)
    except RuleConfigError as exc:
        raise RuleConfigError(exc.message, line=value.line, accepted=exc.accepted) from None
    return str(value.value)


def _accounts(node: Node, scheduled: bool) -> frozenset[str] | None:
    """`accounts: [name, ...]`: the helpdesk accounts whose events the rule runs on."""
    if "accounts" not in node.value:
        return None
    value = node.value["accounts"]
    if scheduled:
        raise RuleConfigError(
            "accounts: applies to event rules; a scheduled rule lists the default account's "
            "tickets",
            line=value.line,
        )
    items = value.value if value.is_list else None
    if not items:
        raise RuleConfigError(
            "accounts: expects a list of account names, e.g. [default, brand-a]", line=value.line
        )
    for item in items:
        if not (isinstance(item.value, str) and ACCOUNT_NAME.match(item.value)):
            raise RuleConfigError(
                "accounts: account names are 1 to 32 lowercase letters, digits or '-', "
                f"got {item.value!r}",
                line=item.line,
            )
    return frozenset(item.value for item in items)


def _description(node: Node) -> str | None:
    value = _optional_text(node, "description", "text")
    return None if value is None else str(value.value)


def _condition(node: Node, schema: FieldSchema, issues: list[RuleConfigError]) -> Condition | None:
    if "if" not in node.value:
        return None
    return compile_condition(node.value["if"], schema, issues)


def _actions(
    node: Node, vendor: str | None, rule: str, issues: list[RuleConfigError]
) -> tuple[Action, ...] | None:
    if "then" not in node.value:
        raise _MissingKey("then", "the rule has no then: (the actions to take)", line=node.line)
    then = node.value["then"]
    if not then.is_list or not then.value:
        raise RuleConfigError(
            "then: expects a non-empty list of actions, e.g.\n  then:\n    - update: {priority: high}",
            line=then.line,
        )
    actions = []
    for item in then.value:
        try:
            actions.append(_action(item, vendor, rule))
        except RuleConfigError as exc:
            issues.append(exc)
    return tuple(actions) if len(actions) == len(then.value) else None


def _action(item: Node, vendor: str | None, rule: str) -> Action:
    if not item.is_map or len(item.value) != 1:
        count = f"{len(item.value)} keys" if item.is_map else item.kind()
        raise RuleConfigError(
            f"each then: item is one action such as `- update: {{priority: high}}`, got {count}",
            line=item.line,
        )
    ((name, value),) = item.value.items()
    try:
        return make_action(vendor, name, value.plain(), rule=rule)
    except ActionError as exc:
        line = value.key_line(exc.key) if exc.key and value.is_map else value.line
        if exc.message.startswith("unknown action"):
            line = item.key_line(name)
        raise RuleConfigError(exc.message, line=line, accepted=exc.accepted) from None
    except RuleConfigError as exc:
        raise RuleConfigError(exc.message, line=item.line, accepted=exc.accepted) from None
