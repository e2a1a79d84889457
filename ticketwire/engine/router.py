"""The rule registry: `Rule` and `Router` (registration order kept, routers compose)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ticketwire.accountkey import ACCOUNT_NAME
from ticketwire.engine.actions import Action, field_schema, known_events, vendor_spec
from ticketwire.engine.conditions import Condition, FieldSchema, compile_reads, compile_when
from ticketwire.engine.limits import NO_LIMITS, FiringLimits, firing_limits
from ticketwire.engine.nodes import located, unknown
from ticketwire.engine.schedule import Schedule, ScheduleError, parse_cron, parse_every
from ticketwire.engine.select import Selection, compile_select, vendor_select
from ticketwire.errors import RuleConfigError
from ticketwire.event import PROCESSED_EVENTS, Event
from ticketwire.vendors.registry import names, spoken_list

if TYPE_CHECKING:
    from ticketwire.engine.context import Context

Handler = Callable[["Context"], Awaitable[None]]
When = Condition | Callable[[Event], object] | Mapping[str, Any] | Sequence[Any] | None
H = TypeVar("H", bound=Callable[..., Awaitable[None]])

#: Names go into job ids, log lines and `--rule NAME`, so keep them to a safe alphabet.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
EVENT_TYPES: tuple[str, ...] = tuple(sorted(PROCESSED_EVENTS))


def split_source(source: str) -> tuple[str | None, int | None]:
    """Split `file:line` into its parts (either may be None)."""
    file, sep, line = source.rpartition(":")
    if sep and line.isdigit():
        return file or None, int(line)
    return source or None, None


@dataclass(frozen=True, kw_only=True, eq=False)
class Rule:
    """One automation: when `events` arrive and `condition` holds, take actions.

    YAML rules carry their `actions`; Python rules carry a `handler` that queues actions on
    its `Context`. The engine treats both alike. Rules compare and hash by identity (their
    names are unique within a router).
    """

    name: str
    events: frozenset[str]
    vendor: str | None = None
    source: str = ""
    condition: Condition | None = None
    actions: tuple[Action, ...] = ()
    handler: Handler | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: once_per_ticket, cooldown and rearm (see `ticketwire.engine.limits`).
    limits: FiringLimits = NO_LIMITS
    #: Set for a time-based rule, which has no events: when it runs (minute resolution, UTC).
    schedule: Schedule | None = None
    #: A time-based rule's list API filters (None: every ticket the API lists).
    select: Selection | None = None
    #: Fields a Python rule's handler reads (`reads=`), kept so `ctx.changed()` can compare them.
    reads: frozenset[str] = frozenset()
    #: The helpdesk accounts whose events the rule runs on (None: every account).
    accounts: frozenset[str] | None = None

    def __post_init__(self) -> None:
        file, line = split_source(self.source)

        def fail(message: str, accepted: Sequence[str] = ()) -> RuleConfigError:
            return RuleConfigError(message, file=file, line=line, rule=self.name, accepted=accepted)

        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise fail(
                f"rule name {self.name!r} must be non-empty and use only letters, digits, "
                "and _ . : -"
            )
        if self.schedule is not None:
            self._check_schedule(fail)
        elif not self.events:
            raise fail("a rule needs at least one event type", EVENT_TYPES)
        if self.vendor is not None:
            try:
                vendor_spec(self.vendor)
            except RuleConfigError as exc:
                raise fail(exc.message, exc.accepted) from None
        allowed = known_events(self.vendor)
        for event_type in sorted(self.events):
            if event_type not in allowed:
                bad = unknown("event type", event_type, allowed, line)
                raise located(bad, file=file, rule=self.name)
        if self.accounts is not None:
            wrong = sorted(repr(a) for a in self.accounts if not ACCOUNT_NAME.match(str(a)))
            if wrong or not self.accounts:
                raise fail(
                    "accounts: expects account names of 1 to 32 lowercase letters, digits or "
                    f"'-' (got {', '.join(wrong) or 'none'})"
                )
        if self.handler is None and not self.actions:
            raise fail("a rule needs actions (then:) or a handler function")
        if self.handler is not None and not inspect.iscoroutinefunction(self.handler):
            raise fail("the rule's handler must be an `async def` function taking a Context")

    def _check_schedule(self, fail: Callable[[str], RuleConfigError]) -> None:
        if self.events:
            raise fail(
                "a scheduled rule runs on its schedule, not on events; remove the events "
                "(or write two rules)"
            )
        if self.vendor is None:
            raise fail(
                f"a scheduled rule needs a vendor ({spoken_list(names())}): it lists "
                "tickets through that helpdesk's API"
            )
        if self.select is not None and self.select.vendor != self.vendor:
            raise fail(f"the selection is for {self.select.vendor}, the rule for {self.vendor}")
        reads = set(self.reads)
        for condition in (self.condition, self.limits.rearm):
            if condition is not None:
                reads |= condition.fields()
        try:
            hidden = vendor_select(self.vendor).unlisted
        except RuleConfigError:
            hidden = frozenset()  # an unknown vendor is named by the vendor check below
        unlisted = sorted(reads & hidden)
        if unlisted:
            hint = (
                "; filter on them in select: (custom_field_<key>: value, null for no value)"
                if unlisted == ["custom_fields"]
                else ""
            )
            raise fail(
                f"a scheduled rule sees the tickets {self.vendor}'s list API returns, which "
                f"carry no {', '.join(unlisted)}{hint}"
            )

    @property
    def description(self) -> str:
        """The rule's `description` option, or the handler's docstring's first line."""
        text = self.options.get("description")
        if isinstance(text, str) and text.strip():
            return text.strip()
        doc = inspect.getdoc(self.handler) if self.handler else None
        return doc.splitlines()[0] if doc else ""

    def matches(
        self, event_type: str, vendor: str | None = None, account: str | None = None
    ) -> bool:
        """True when this rule runs for `event_type` from `vendor`'s `account`."""
        if event_type not in self.events:
            return False
        if account is not None and self.accounts is not None and account not in self.accounts:
            return False
        return self.vendor is None or vendor is None or self.vendor == vendor


@contextlib.contextmanager
def _located_at(file: str | None, line: int | None, rule: str, what: str = "") -> Iterator[None]:
    """Re-raise a `RuleConfigError` from inside as one at the decorated function (`what: …`)."""
    try:
        yield
    except RuleConfigError as exc:
        message = f"{what}: {exc.message}" if what else exc.message
        raise RuleConfigError(
            message, file=file, line=line, rule=rule, accepted=exc.accepted
        ) from None


def _compile_limits(
    at: Callable[..., contextlib.AbstractContextManager[None]],
    schema: FieldSchema,
    when: When,
    rearm: When,
    once_per_ticket: bool,
    cooldown: str | timedelta | None,
) -> tuple[Condition | None, FiringLimits]:
    """A decorator's `when=` condition and its firing limits, errors located by `at`."""
    with at("when="):
        condition = compile_when(when, schema)
    with at("rearm="):
        rearm_condition = compile_when(rearm, schema)
    with at():
        limits = firing_limits(
            once_per_ticket=once_per_ticket, cooldown=cooldown, rearm=rearm_condition
        )
    return condition, limits


def _function_source(fn: Callable[..., Any]) -> tuple[str, str]:
    """Return (`file:line`, module stem) of a function, for default names and errors."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        return f"{code.co_filename}:{code.co_firstlineno}", Path(code.co_filename).stem
    module = getattr(fn, "__module__", "") or "rules"
    return module, module.rpartition(".")[2]


class Router:
    """An ordered registry of rules: `on()` decorates handlers, `add()` takes built rules.

    `Router(*others)` and `include(other)` copy other routers' rules, so each rule file owns
    its router and the loader merges them. Rule names are unique within a router.
    """

    def __init__(self, *routers: Router) -> None:
        self._rules: list[Rule] = []
        self._by_name: dict[str, Rule] = {}
        for other in routers:
            self.include(other)

    def __repr__(self) -> str:
        return f"Router({len(self._rules)} rules)"

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(list(self._rules))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def rules(self) -> list[Rule]:
        """Every rule, in registration order (a copy)."""
        return list(self._rules)

    def add(self, rule: Rule) -> Rule:
        """Register `rule`; a second rule with the same name raises `RuleConfigError`."""
        previous = self._by_name.get(rule.name)
        if previous is not None:
            file, line = split_source(rule.source)
            raise RuleConfigError(
                f"the name {rule.name!r} is already used by the rule at "
                f"{previous.source or '<unknown>'}; rule names must be unique",
                file=file,
                line=line,
                rule=rule.name,
            )
        self._rules.append(rule)
        self._by_name[rule.name] = rule
        return rule

    def include(self, other: Router) -> None:
        """Add every rule of `other`, in its order."""
        for rule in other.rules:
            self.add(rule)

    def get(self, name: str) -> Rule:
        """Return the rule called `name`, or raise `KeyError` listing the known names."""
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name) or "none"
            raise KeyError(f"no rule named {name!r} (known: {known})") from None

    def rules_for(
        self, event_type: str, vendor: str | None = None, account: str | None = None
    ) -> list[Rule]:
        """Rules that run for `event_type` from `vendor`'s `account`, in registration order."""
        return [rule for rule in self._rules if rule.matches(event_type, vendor, account)]

    def read_fields(self, vendor: str | None = None) -> frozenset[str]:
        """Top-level ticket fields and `common.*` paths rules read: what the state store keeps.

        From every rule's condition (and rearm condition) and Python rules' `reads=`; with
        `vendor`, only from the rules that may run on that vendor's events.
        """
        out: set[str] = set()
        for rule in self._rules:
            if vendor is not None and rule.vendor not in (None, vendor):
                continue
            for condition in (rule.condition, rule.limits.rearm):
                if condition is not None:
                    out |= condition.fields()
            out |= rule.reads
        return frozenset(out)

    def on(
        self,
        *events: str,
        when: When = None,
        name: str | None = None,
        vendor: str | None = None,
        description: str | None = None,
        once_per_ticket: bool = False,
        cooldown: str | timedelta | None = None,
        rearm: When = None,
        reads: Iterable[str] = (),
        accounts: Iterable[str] | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated `async def rule(ctx)` for `events`; sugar over `add()`.

        `when` is a function of the `Event` returning true to run the rule, or a condition
        mapping written as in YAML (`{"field": "priority", "in": ["high", "urgent"]}`), whose
        failures explain themselves. The default name is `<file stem>.<function name>`.
        `once_per_ticket`, `cooldown` (`"30m"` or a timedelta) and `rearm` (like `when`) limit
        how often the rule fires on one ticket, as the YAML keys of the same names do.
        `reads` names the fields the handler compares with `ctx.changed()` (e.g. `["status",
        "common.priority"]`), so their earlier values are kept; `when` fields are kept anyway.
        `accounts` names the helpdesk accounts whose events the rule runs on (default: all).
        """

        def register(fn: H) -> H:
            source, stem = _function_source(fn)
            rule_name = name or f"{stem}.{fn.__name__}"
            file, line = split_source(source)
            for event_type in events:
                if not isinstance(event_type, str):
                    raise RuleConfigError(
                        f"event types are strings such as 'ticket.created', got {event_type!r}",
                        file=file,
                        line=line,
                        rule=rule_name,
                        accepted=EVENT_TYPES,
                    )
            at = functools.partial(_located_at, file, line, rule_name)
            with at():
                schema = field_schema(vendor)
            condition, limits = _compile_limits(at, schema, when, rearm, once_per_ticket, cooldown)
            with at("reads="):
                read_fields = compile_reads(reads, schema)
            options = {"description": description} if description else {}
            self.add(
                Rule(
                    name=rule_name,
                    events=frozenset(events),
                    vendor=vendor,
                    source=source,
                    condition=condition,
                    handler=fn,
                    options=options,
                    limits=limits,
                    reads=read_fields,
                    accounts=None if accounts is None else frozenset(accounts),
                )
            )
            return fn

        return register

    def every(
        self,
        interval: str,
        *,
        vendor: str,
        select: Mapping[str, Any] | None = None,
        when: When = None,
        name: str | None = None,
        description: str | None = None,
        once_per_ticket: bool = False,
        cooldown: str | timedelta | None = None,
        rearm: When = None,
    ) -> Callable[[H], H]:
        """Run the decorated `async def rule(ctx)` every `interval` (e.g. `"15m"`, `"1h"`).

        Each run lists `vendor`'s tickets matching `select` (its list API's filters, relative
        times such as `"-48h"` resolved at the run's minute) and runs the rule on each one
        for which `when` holds. Intervals count from Monday 2001-01-01 00:00 UTC.
        `once_per_ticket`, `cooldown` and `rearm` work as they do for `on()`.
        """
        limits = (once_per_ticket, cooldown, rearm)
        return self._scheduled(
            "every", parse_every, interval, vendor, select, when, name, description, limits
        )

    def cron(
        self,
        expression: str,
        *,
        vendor: str,
        select: Mapping[str, Any] | None = None,
        when: When = None,
        name: str | None = None,
        description: str | None = None,
        once_per_ticket: bool = False,
        cooldown: str | timedelta | None = None,
        rearm: When = None,
    ) -> Callable[[H], H]:
        """Run the decorated `async def rule(ctx)` on a cron schedule (five fields, UTC).

        E.g. `@router.cron("0 9 * * mon-fri", vendor="inboxops", select={"status": "waiting"})`;
        otherwise as `every()`.
        """
        limits = (once_per_ticket, cooldown, rearm)
        return self._scheduled(
            "cron", parse_cron, expression, vendor, select, when, name, description, limits
        )

    def _scheduled(
        self,
        method: str,
        parse: Callable[[object], Schedule],
        written: str,
        vendor: str,
        select: Mapping[str, Any] | None,
        when: When,
        name: str | None,
        description: str | None,
        limits: tuple[bool, str | timedelta | None, When],
    ) -> Callable[[H], H]:
        once_per_ticket, cooldown, rearm = limits

        def register(fn: H) -> H:
            source, stem = _function_source(fn)
            rule_name = name or f"{stem}.{fn.__name__}"
            file, line = split_source(source)

            def fail(message: str, accepted: Sequence[str] = ()) -> RuleConfigError:
                return RuleConfigError(
                    message, file=file, line=line, rule=rule_name, accepted=accepted
                )

            try:
                schedule = parse(written)
            except ScheduleError as exc:
                raise fail(f"router.{method}(): {exc.message}", exc.accepted) from None
            at = functools.partial(_located_at, file, line, rule_name)
            with at():
                selection = compile_select(vendor, select)
                schema = field_schema(vendor)
            condition, firing = _compile_limits(at, schema, when, rearm, once_per_ticket, cooldown)
            options = {"description": description} if description else {}
            self.add(
                Rule(
                    name=rule_name,
                    events=frozenset(),
                    vendor=vendor,
                    source=source,
                    condition=condition,
                    handler=fn,
                    options=options,
                    limits=firing,
                    schedule=schedule,
                    select=selection,
                )
            )
            return fn

        return register
