"""Condition operators: validate an operand at load time, compare an actual value at run time.

Each operator also phrases what it needs (`one of ['high', 'urgent']`), which the condition
tree uses to explain why a rule was skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ticketwire.engine.durations import Instant, TimeSpecError, format_utc, parse_datetime
from ticketwire.engine.durations import parse_instant as _parse_instant
from ticketwire.engine.nodes import Node
from ticketwire.errors import RuleConfigError


class _Missing:
    """The value of a path that is not in the ticket."""

    def __repr__(self) -> str:
        return "missing"


MISSING: Any = _Missing()


def show(value: Any) -> str:
    """Render an actual value for a reason line: `'high'`, `null`, `missing`, `3`."""
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return repr(format_utc(value))
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def same(a: Any, b: Any) -> bool:
    """Equality that keeps `true` apart from `1` and a missing value equal to null."""
    a = None if a is MISSING else a
    b = None if b is MISSING else b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


class Incomparable(Exception):
    """The actual value has the wrong type for the operator; `why` says how."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


# ---- operand compilers: validate what the rule wrote, at load time ----


def _scalar(node: Node, op: str) -> Any:
    value = node.value
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    hint = "; use in: for several values" if node.is_list and op == "equals" else ""
    raise RuleConfigError(
        f"{op}: expects one value (text, number, true/false or null), got {node.kind()}{hint}",
        line=node.line,
    )


def _scalars(node: Node, op: str) -> tuple[Any, ...]:
    if not node.is_list:
        raise RuleConfigError(
            f"{op}: expects a list, e.g. {op}: [high, urgent], got {node.kind()}", line=node.line
        )
    if not node.value:
        raise RuleConfigError(f"{op}: the list is empty", line=node.line)
    return tuple(_scalar(item, op) for item in node.value)


def _regex(node: Node, op: str) -> re.Pattern[str]:
    if not isinstance(node.value, str):
        raise RuleConfigError(
            f"{op}: expects a regular expression as text, got {node.kind()}", line=node.line
        )
    try:
        return re.compile(node.value)
    except re.error as exc:
        raise RuleConfigError(
            f"{op}: bad regular expression {node.value!r}: {exc}", line=node.line
        ) from None


def _bool(node: Node, op: str) -> bool:
    if not isinstance(node.value, bool):
        raise RuleConfigError(
            f"{op}: expects true or false, got {show(node.value)}", line=node.line
        )
    return node.value


def _number(node: Node, op: str) -> float:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleConfigError(f"{op}: expects a number, got {node.kind()}", line=node.line)
    return value


def _instant(node: Node, op: str) -> Instant:
    try:
        return _parse_instant(node.value, sign="required")
    except TimeSpecError as exc:
        raise RuleConfigError(f"{op}: {exc}", line=node.line) from None


# ---- tests: actual value x compiled operand -> bool, or Incomparable ----


def _contains(actual: Any, operand: Any) -> bool:
    if actual is MISSING or actual is None:
        return False
    if isinstance(actual, str):
        return str(operand) in actual
    if isinstance(actual, list | tuple):
        return any(same(item, operand) for item in actual)
    if isinstance(actual, dict):
        return operand in actual
    raise Incomparable("which is neither text nor a list")


def _matches(actual: Any, operand: re.Pattern[str]) -> bool:
    if actual is MISSING or actual is None:
        return False
    if not isinstance(actual, str):
        raise Incomparable("which is not text")
    return operand.search(actual) is not None


def _numeric(compare: Callable[[float, float], bool]) -> Callable[[Any, Any, datetime], bool]:
    def test(actual: Any, operand: Any, _anchor: datetime) -> bool:
        if actual is MISSING or actual is None:
            return False
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            raise Incomparable("which is not a number")
        return compare(actual, operand)

    return test


def _temporal(later: bool) -> Callable[[Any, Any, datetime], bool]:
    def test(actual: Any, operand: Instant, anchor: datetime) -> bool:
        if actual is MISSING or actual is None:
            return False
        moment = parse_datetime(actual)
        if moment is None:
            raise Incomparable("which is not a date-time")
        bound = operand.resolve(anchor)
        return moment > bound if later else moment < bound

    return test


@dataclass(frozen=True)
class Operator:
    """One comparison a condition leaf may use."""

    name: str
    compile: Callable[[Node, str], Any]
    test: Callable[[Any, Any, datetime], bool]
    needs: Callable[[Any, datetime | None], str]
    operand_text: Callable[[Any], str] = repr


def _when_text(operand: Instant) -> str:
    return operand.text


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator("equals", _scalar, lambda a, o, _: same(a, o), lambda o, _: show(o), show),
        Operator(
            "not_equals",
            _scalar,
            lambda a, o, _: not same(a, o),
            lambda o, _: f"anything but {show(o)}",
            show,
        ),
        Operator(
            "in",
            _scalars,
            lambda a, o, _: any(same(a, v) for v in o),
            lambda o, _: f"one of {list(o)!r}",
            lambda o: repr(list(o)),
        ),
        Operator(
            "not_in",
            _scalars,
            lambda a, o, _: not any(same(a, v) for v in o),
            lambda o, _: f"none of {list(o)!r}",
            lambda o: repr(list(o)),
        ),
        Operator(
            "contains",
            _scalar,
            lambda a, o, _: _contains(a, o),
            lambda o, _: f"it to contain {show(o)}",
            show,
        ),
        Operator(
            "matches",
            _regex,
            lambda a, o, _: _matches(a, o),
            lambda o, _: f"a match for {o.pattern!r}",
            lambda o: repr(o.pattern),
        ),
        Operator(
            "exists",
            _bool,
            lambda a, o, _: (a is not MISSING and a is not None) == o,
            lambda o, _: "it to be present" if o else "it to be absent (missing or null)",
            lambda o: "true" if o else "false",
        ),
        Operator("gt", _number, _numeric(lambda a, o: a > o), lambda o, _: f"> {o!r}"),
        Operator("gte", _number, _numeric(lambda a, o: a >= o), lambda o, _: f">= {o!r}"),
        Operator("lt", _number, _numeric(lambda a, o: a < o), lambda o, _: f"< {o!r}"),
        Operator("lte", _number, _numeric(lambda a, o: a <= o), lambda o, _: f"<= {o!r}"),
        Operator(
            "before",
            _instant,
            _temporal(later=False),
            lambda o, anchor: f"before {o.describe(anchor)}",
            _when_text,
        ),
        Operator(
            "after",
            _instant,
            _temporal(later=True),
            lambda o, anchor: f"after {o.describe(anchor)}",
            _when_text,
        ),
    )
}


# ---- change operators: compare a field with its value before the event ----


def _only_true(node: Node, op: str) -> bool:
    if node.value is True:
        return True
    if node.value is False:
        opposite = "not_changed" if op == "changed" else "changed"
        raise RuleConfigError(
            f"{op}: takes only true; for the opposite write {opposite}: true", line=node.line
        )
    raise RuleConfigError(f"{op}: expects true, got {show(node.value)}", line=node.line)


def _one_or_more(node: Node, op: str) -> tuple[Any, ...]:
    if node.is_list:
        return _scalars(node, op)
    return (_scalar(node, op),)


#: Operators that compare a field with its value before the event: the operand compiler of each.
#: `changed_from` and `changed_to` take one value or a list (any of them).
CHANGE_OPERATORS: dict[str, Callable[[Node, str], Any]] = {
    "changed": _only_true,
    "changed_from": _one_or_more,
    "changed_to": _one_or_more,
    "not_changed": _only_true,
}

#: Operators whose operands are checked against a field's closed set of values.
ENUM_CHECKED = frozenset({"equals", "not_equals", "in", "not_in", "changed_from", "changed_to"})
