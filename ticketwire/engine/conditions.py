"""Rule conditions: a small AST compiled once at load, evaluated purely against an event.

Every check returns a `CheckResult` whose `why` names the field, its actual value and what the rule
needed, so a skipped rule can always say why it was skipped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from ticketwire.engine.changes import Change, change_of, top_field, walk
from ticketwire.engine.nodes import Node, kind_of, unknown
from ticketwire.engine.operators import (
    CHANGE_OPERATORS,
    ENUM_CHECKED,
    MISSING,
    OPERATORS,
    Incomparable,
    Operator,
    same,
    show,
)
from ticketwire.errors import RuleConfigError
from ticketwire.event import Event
from ticketwire.vocabulary import COMMON_FIELDS, NEUTRAL_PRIORITIES, NEUTRAL_STATUSES

#: Fields of the event itself that a condition may read as `event.<name>`.
EVENT_FIELDS: tuple[str, ...] = ("vendor", "type", "id", "tenant", "created_at", "ticket_id")
COMBINATORS: tuple[str, ...] = ("all", "any", "not")
#: Longest text a trace keeps of a value a condition read.
TRACE_TEXT_MAX = 200


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a condition: whether it holds, and a human explanation."""

    ok: bool
    why: str
    #: Just the values read (e.g. `subject is 'help'`), used when a `not` explains itself.
    fact: str = ""


class Condition(ABC):
    """A compiled, pure test of an event."""

    @abstractmethod
    def check(self, event: Event) -> CheckResult:
        """Evaluate against `event`, explaining the result."""

    def holds(self, event: Event) -> bool:
        """Evaluate against `event` without building the explanation (the hot path)."""
        return self.check(event).ok

    @abstractmethod
    def describe(self) -> str:
        """Render the condition as a short human expression."""

    def fields(self) -> frozenset[str]:
        """Ticket fields (top level) and `common.*` paths this condition reads."""
        return frozenset()

    def trace(self, event: Event) -> tuple[bool, list[list[Any]]]:
        """Evaluate like `holds`, listing each leaf evaluated as `[index, ok 0|1, value seen]`.

        Indexes count the leaves in `leaf_texts()` order; leaves a short circuit skipped are not
        listed, and a leaf that read nothing has no value. No text is formatted.
        """
        out: list[list[Any]] = []
        return self.trace_at(event, out, 0), out

    def trace_at(self, event: Event, out: list[list[Any]], index: int) -> bool:
        """`trace`, appending to `out` with leaves numbered from `index` (the hot path's form)."""
        ok = self.holds(event)
        out.append([index, 1 if ok else 0])
        return ok

    @cached_property
    def leaf_count(self) -> int:
        """How many leaves the condition has."""
        return 1

    def leaf_texts(self) -> list[str]:
        """Each leaf's description, in the order `trace` numbers them."""
        return [self.describe()]


def _seen(value: Any) -> Any:
    # A long text (a description matched by a regex) is cut: the trace is a summary.
    if isinstance(value, str) and len(value) > TRACE_TEXT_MAX:
        return value[:TRACE_TEXT_MAX] + "…"
    return value


@dataclass(frozen=True)
class FieldSchema:
    """What conditions may read: known top-level ticket fields and the values of enum fields."""

    #: None accepts any field name (no vendor vocabulary to check against).
    ticket_fields: frozenset[str] | None = None
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# ---- the AST ----


@dataclass(frozen=True)
class Leaf(Condition):
    """`field` compared with one operator."""

    field: str
    path: tuple[str, ...]
    op: Operator
    operand: Any

    def check(self, event: Event) -> CheckResult:
        """Compare the field's actual value with the operand."""
        actual = resolve(event, self.path)
        needs = self.op.needs(self.operand, event.created_at)
        try:
            ok = self.op.test(actual, self.operand, event.created_at)
        except Incomparable as exc:
            fact = f"{self.field} is {show(actual)}"
            return CheckResult(False, f"{fact}, {exc.why}; rule needs {needs}", fact)
        fact = f"{self.field} is {show(actual)}"
        if ok:
            return CheckResult(True, fact, fact)
        return CheckResult(False, f"{fact}, rule needs {needs}", fact)

    def holds(self, event: Event) -> bool:
        """Compare without formatting values (same outcome as `check().ok`)."""
        try:
            return bool(self.op.test(resolve(event, self.path), self.operand, event.created_at))
        except Incomparable:
            return False

    def trace_at(self, event: Event, out: list[list[Any]], index: int) -> bool:
        actual = resolve(event, self.path)
        try:
            ok = bool(self.op.test(actual, self.operand, event.created_at))
        except Incomparable:
            ok = False
        if actual is MISSING:
            out.append([index, 1 if ok else 0])
        elif isinstance(actual, str) and len(actual) > TRACE_TEXT_MAX:
            out.append([index, 1 if ok else 0, actual[:TRACE_TEXT_MAX] + "…"])
        else:
            # As `_seen` would keep it, without a call per leaf: this runs on every event.
            out.append([index, 1 if ok else 0, actual])
        return ok

    def describe(self) -> str:
        """E.g. `priority in ['high', 'urgent']`."""
        return f"{self.field} {self.op.name} {self.op.operand_text(self.operand)}"

    def fields(self) -> frozenset[str]:
        """The ticket field or `common.*` path read; the event's own fields are not kept."""
        return _read_field(self.path)


def _read_field(path: tuple[str, ...]) -> frozenset[str]:
    if path[0] in ("event", "changes"):
        return frozenset()
    return frozenset({top_field(path)})


@dataclass(frozen=True)
class ChangeLeaf(Condition):
    """`field` compared with its value before the event: changed, changed_from/_to, not_changed."""

    field: str
    path: tuple[str, ...]
    op: str
    #: True for `changed` and `not_changed`; the accepted values for `changed_from/_to`.
    operand: Any

    def check(self, event: Event) -> CheckResult:
        """Compare the field's earlier and current values, explaining in words."""
        change = change_of(event, self.path)
        if not change.known:
            fact = f"{self.field}: {change.why}"
            return CheckResult(False, fact, fact)
        if change.changed:
            fact = f"{self.field} changed from {show(change.old)} to {show(change.new)}"
            if change.created:
                fact += " (new ticket)"
        else:
            fact = f"{self.field} did not change (still {show(change.new)})"
        if self._test(change):
            return CheckResult(True, fact, fact)
        return CheckResult(False, f"{fact}, rule needs {self._needs()}", fact)

    def holds(self, event: Event) -> bool:
        """Compare without formatting values (same outcome as `check().ok`)."""
        change = change_of(event, self.path)
        return change.known and self._test(change)

    def trace_at(self, event: Event, out: list[list[Any]], index: int) -> bool:
        change = change_of(event, self.path)
        if not change.known:
            out.append([index, 0])
            return False
        ok = self._test(change)
        out.append([index, 1 if ok else 0, [_seen(change.old), _seen(change.new)]])
        return ok

    def _test(self, change: Change) -> bool:
        if self.op == "not_changed":
            return not change.changed
        if not change.changed:
            return False
        if self.op == "changed_from":
            return any(same(change.old, v) for v in self.operand)
        if self.op == "changed_to":
            return any(same(change.new, v) for v in self.operand)
        return True

    def _values(self) -> str:
        values = tuple(self.operand)
        return show(values[0]) if len(values) == 1 else f"one of {list(values)!r}"

    def _needs(self) -> str:
        if self.op == "changed":
            return "it to change"
        if self.op == "not_changed":
            return "it unchanged"
        direction = "from" if self.op == "changed_from" else "to"
        return f"a change {direction} {self._values()}"

    def describe(self) -> str:
        """E.g. `status changed_to 'waiting'`, `status changed`."""
        if self.op in ("changed", "not_changed"):
            return f"{self.field} {self.op}"
        return f"{self.field} {self.op} {self._values()}"

    def fields(self) -> frozenset[str]:
        """The ticket field or `common.*` path whose earlier value is compared."""
        return _read_field(self.path)


@dataclass(frozen=True)
class _Group(Condition):
    """A condition over child conditions: its leaves and fields are theirs, in order."""

    children: tuple[Condition, ...]
    #: How `describe` names the group, e.g. `all`.
    word: ClassVar[str]

    @cached_property
    def leaf_count(self) -> int:
        """How many leaves the children have."""
        return sum(c.leaf_count for c in self.children)

    def leaf_texts(self) -> list[str]:
        """The children's leaves, in order."""
        return [t for c in self.children for t in c.leaf_texts()]

    def fields(self) -> frozenset[str]:
        """Every field any child reads."""
        return frozenset().union(*(c.fields() for c in self.children))

    def describe(self) -> str:
        """E.g. `all(a, b)`."""
        return f"{self.word}({', '.join(c.describe() for c in self.children)})"


@dataclass(frozen=True)
class All(_Group):
    """Every child holds; a failure lists every failing child."""

    word = "all"

    def check(self, event: Event) -> CheckResult:
        """Evaluate every child so that all failures are explained at once."""
        results = [child.check(event) for child in self.children]
        failed = [v.why for v in results if not v.ok]
        fact = "; ".join(v.fact for v in results)
        if failed:
            return CheckResult(False, "; ".join(failed), fact)
        return CheckResult(True, "; ".join(v.why for v in results), fact)

    def holds(self, event: Event) -> bool:
        """Stop at the first failing child."""
        return all(child.holds(event) for child in self.children)

    def trace_at(self, event: Event, out: list[list[Any]], index: int) -> bool:
        # The first child that fails decides; the leaves after it are not evaluated.
        for child in self.children:
            if not child.trace_at(event, out, index):
                return False
            index += child.leaf_count
        return True


@dataclass(frozen=True)
class AnyOf(_Group):
    """At least one child holds."""

    word = "any"

    def check(self, event: Event) -> CheckResult:
        """Stop at the first child that holds."""
        results = []
        for child in self.children:
            result = child.check(event)
            if result.ok:
                return result
            results.append(result)
        return CheckResult(
            False,
            "none of the alternatives holds: " + " | ".join(v.why for v in results),
            "; ".join(v.fact for v in results),
        )

    def holds(self, event: Event) -> bool:
        """Stop at the first child that holds."""
        return any(child.holds(event) for child in self.children)

    def trace_at(self, event: Event, out: list[list[Any]], index: int) -> bool:
        # The first child that holds decides; the leaves after it are not evaluated.
        for child in self.children:
            if child.trace_at(event, out, index):
                return True
            index += child.leaf_count
        return False


@dataclass(frozen=True)
class Not(Condition):
    """The child does not hold."""

    child: Condition

    def check(self, event: Event) -> CheckResult:
        """Invert the child, explaining with the child's own reason."""
        result = self.child.check(event)
        if result.ok:
            why = f"{result.fact}; rule needs not ({self.child.describe()})"
            return CheckResult(False, why, result.fact)
        return CheckResult(True, result.fact, result.fact)

    def holds(self, event: Event) -> bool:
        """Invert the child."""
        return not self.child.holds(event)

    def trace_at(self, event: Event, out: list[list[Any]], index: int) -> bool:
        # The leaves show what they read; the inversion is in the rule's description.
        return not self.child.trace_at(event, out, index)

    @cached_property
    def leaf_count(self) -> int:
        """The child's leaves."""
        return self.child.leaf_count

    def leaf_texts(self) -> list[str]:
        """The child's leaves, each marked as inverted."""
        return [f"not ({t})" for t in self.child.leaf_texts()]

    def describe(self) -> str:
        """E.g. `not (subject matches '(?i)test')`."""
        return f"not ({self.child.describe()})"

    def fields(self) -> frozenset[str]:
        """The fields the child reads."""
        return self.child.fields()


@dataclass(frozen=True)
class Predicate(Condition):
    """A Python `when=` function of the event."""

    fn: Callable[[Event], object]
    label: str

    def check(self, event: Event) -> CheckResult:
        """Call the function; its exceptions propagate to the caller."""
        result = self.fn(event)
        if result:
            why = f"when={self.label} is true"
            return CheckResult(True, why, why)
        why = f"when={self.label} returned {result!r}"
        return CheckResult(False, why, why)

    def describe(self) -> str:
        """E.g. `when=is_vip`."""
        return f"when={self.label}"


def resolve(event: Event, path: tuple[str, ...]) -> Any:
    """Read a compiled field path: `("event", "type")` or a dotted path into the ticket."""
    if path[0] == "event":
        return getattr(event, path[1])
    if path[0] == "common":
        value = event.common.get(path[1], MISSING)
        return MISSING if value is None else value
    current: Any = event.ticket
    if path[0] == "changes":
        # `changes.<field>.from|to`: what the helpdesk says changed (cStar sends it).
        current, path = event.changes or {}, path[1:]
    return walk(current, path)


# ---- compiling ----


def compile_field(node: Node, schema: FieldSchema) -> tuple[str, ...]:
    """Validate a `field:` path and split it into parts."""
    text = node.value
    if not isinstance(text, str) or not text.strip():
        raise RuleConfigError(
            f"field: expects a dotted path such as priority or custom_fields.plan, "
            f"got {node.kind()}",
            line=node.line,
        )
    parts = tuple(text.strip().split("."))
    if any(not p for p in parts):
        raise RuleConfigError(f"field: {text!r} has an empty part", line=node.line)
    if parts[0] == "event":
        if len(parts) != 2 or parts[1] not in EVENT_FIELDS:
            got = ".".join(parts[1:]) or ""
            raise unknown("event field", got, EVENT_FIELDS, node.line)
        return parts
    if parts[0] == "changes":
        if len(parts) != 3 or parts[2] not in ("from", "to"):
            raise RuleConfigError(
                f"field: {text!r}: changes are read as changes.<field>.from or changes.<field>.to",
                line=node.line,
                accepted=("changes.<field>.from", "changes.<field>.to"),
            )
        return parts
    if parts[0] == "common":
        if len(parts) != 2 or parts[1] not in COMMON_FIELDS:
            got = ".".join(parts[1:]) or ""
            raise unknown("common field", got, COMMON_FIELDS, node.line)
        return parts
    fields = schema.ticket_fields
    if parts[0] == "ticket" and len(parts) > 1 and (fields is None or "ticket" not in fields):
        parts = parts[1:]
    if fields is not None and parts[0] not in fields:
        accepted = (
            sorted(fields)
            + [f"event.{f}" for f in EVENT_FIELDS]
            + [f"common.{f}" for f in COMMON_FIELDS]
        )
        raise unknown("ticket field", parts[0], accepted, node.line)
    return parts


def compile_reads(reads: Iterable[str], schema: FieldSchema) -> frozenset[str]:
    """Validate a Python rule's `reads=` fields; return the names the state store keeps."""
    if isinstance(reads, str):
        raise RuleConfigError(
            f"expects a list of fields such as ['status', 'common.priority'], got {reads!r}"
        )
    out: set[str] = set()
    for text in reads:
        path = compile_field(Node(text), schema)
        if path[0] in ("event", "changes"):
            raise RuleConfigError(
                f"{text!r} has no earlier value to keep; name ticket fields or common.*"
            )
        out.add(top_field(path))
    return frozenset(out)


def _check_enum(path: tuple[str, ...], operand_node: Node, schema: FieldSchema) -> None:
    if path in (("common", "status"), ("common", "priority")):
        what = f"neutral {path[1]}"
        allowed = NEUTRAL_STATUSES if path[1] == "status" else NEUTRAL_PRIORITIES
    elif len(path) != 1 or path[0] not in schema.enums:
        return
    else:
        what, allowed = path[0], schema.enums[path[0]]
    items = operand_node.value if operand_node.is_list else [operand_node]
    for item in items:
        if item.value is not None and item.value not in allowed:
            raise unknown(what, item.value, allowed, item.line)


def compile_condition(
    node: Node, schema: FieldSchema, issues: list[RuleConfigError] | None = None
) -> Condition | None:
    """Compile a condition tree; errors go to `issues` when given (to collect them all)."""
    own = issues if issues is not None else []
    before = len(own)
    try:
        condition = _compile(node, schema, own)
    except RuleConfigError as exc:
        own.append(exc)
        condition = None
    if issues is None and own:
        raise own[0]
    return condition if len(own) == before else None


def _compile(node: Node, schema: FieldSchema, issues: list[RuleConfigError]) -> Condition | None:
    if node.is_list:
        return _combine(All, node, "all", schema, issues)
    if not node.is_map:
        raise RuleConfigError(
            "a condition must be a mapping such as {field: priority, equals: high} "
            f"or all:/any:/not:, got {node.kind()}",
            line=node.line,
        )
    keys = list(node.value)
    combinators = [k for k in keys if k in COMBINATORS]
    if combinators:
        if len(keys) > 1:
            others = [k for k in keys if k != combinators[0]]
            raise RuleConfigError(
                f"{combinators[0]}: cannot share a mapping with {', '.join(others)}; "
                "nest each condition as its own list item",
                line=node.key_line(others[0]),
            )
        key = combinators[0]
        child = node.value[key]
        if key == "not":
            inner = _compile(child, schema, issues)
            return None if inner is None else Not(inner)
        return _combine(All if key == "all" else AnyOf, child, key, schema, issues)
    return _leaf(node, schema)


def _combine(
    kind: type[All | AnyOf],
    node: Node,
    key: str,
    schema: FieldSchema,
    issues: list[RuleConfigError],
) -> Condition | None:
    if not node.is_list or not node.value:
        raise RuleConfigError(
            f"{key}: expects a non-empty list of conditions, got {node.kind()}", line=node.line
        )
    children: list[Condition] = []
    for item in node.value:
        try:
            child = _compile(item, schema, issues)
        except RuleConfigError as exc:
            issues.append(exc)
            continue
        if child is not None:
            children.append(child)
    if len(children) != len(node.value):
        return None
    return kind(tuple(children))


def _leaf(node: Node, schema: FieldSchema) -> Leaf | ChangeLeaf:
    accepted = ["field", *OPERATORS, *CHANGE_OPERATORS, *COMBINATORS]
    for key in node.value:
        if key != "field" and key not in OPERATORS and key not in CHANGE_OPERATORS:
            raise unknown("operator", key, accepted, node.key_line(key))
    ops = [k for k in node.value if k in OPERATORS or k in CHANGE_OPERATORS]
    if "field" not in node.value:
        raise RuleConfigError(
            "this condition has no field: (write e.g. {field: priority, equals: high})",
            line=node.line,
        )
    path = compile_field(node.value["field"], schema)
    name = node.value["field"].value.strip()
    if not ops:
        raise RuleConfigError(
            f"the condition on {name!r} has no operator",
            line=node.line,
            accepted=[*OPERATORS, *CHANGE_OPERATORS],
        )
    if len(ops) > 1:
        raise RuleConfigError(
            f"the condition on {name!r} has {len(ops)} operators ({', '.join(ops)}); "
            "one condition takes exactly one operator: combine several with all:",
            line=node.key_line(ops[1]),
        )
    if ops[0] in CHANGE_OPERATORS:
        return _change_leaf(node, ops[0], name, path, schema)
    op = OPERATORS[ops[0]]
    operand_node = node.value[op.name]
    operand = op.compile(operand_node, op.name)
    if op.name in ENUM_CHECKED:
        _check_enum(path, operand_node, schema)
    return Leaf(field=name, path=path, op=op, operand=operand)


def _change_leaf(
    node: Node, op: str, name: str, path: tuple[str, ...], schema: FieldSchema
) -> ChangeLeaf:
    if path[0] in ("event", "changes"):
        hint = f"field: {path[1]}" if path[0] == "changes" else "a ticket field or common.*"
        raise RuleConfigError(
            f"{op}: compares a ticket field or common.* with its value before the event; "
            f"{name!r} has no earlier value (write {hint})",
            line=node.key_line("field"),
        )
    operand_node = node.value[op]
    operand = CHANGE_OPERATORS[op](operand_node, op)
    if op in ENUM_CHECKED:
        _check_enum(path, operand_node, schema)
    return ChangeLeaf(field=name, path=path, op=op, operand=operand)


def predicate(fn: Callable[[Event], object], label: str | None = None) -> Predicate:
    """Wrap a Python `when=` function as a condition."""
    name = label or getattr(fn, "__name__", None) or repr(fn)
    if name == "<lambda>":
        code = getattr(fn, "__code__", None)
        if code is not None:
            name = f"<lambda at line {code.co_firstlineno}>"
    return Predicate(fn=fn, label=name)


def compile_when(
    when: Condition | Callable[[Event], object] | Mapping[str, Any] | Sequence[Any] | None,
    schema: FieldSchema,
) -> Condition | None:
    """Turn a Python rule's `when=` (function, YAML-style mapping, or Condition) into a Condition."""
    if when is None or isinstance(when, Condition):
        return when
    if isinstance(when, Mapping | list | tuple):
        return compile_condition(Node.from_plain(when), schema)
    if callable(when):
        return predicate(when)
    raise RuleConfigError(
        f"when= expects a function of the event, a condition mapping, or None, got {kind_of(when)}"
    )
