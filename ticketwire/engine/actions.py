"""Actions rules decide on, and each vendor's action vocabulary as its bundle declares it.

A vendor's bundle gives a `VendorSpec` (`Vendor.actions`): the actions a rule may take (each with a
normaliser that validates what the rule wrote), the ticket fields conditions may read, and the
planner that turns decided actions into API calls. YAML rules and `ctx.*` calls are both
validated through it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ticketwire.calls import ApiCall
from ticketwire.engine.conditions import FieldSchema
from ticketwire.engine.nodes import suggest, unknown
from ticketwire.event import PROCESSED_EVENTS, Event

if TYPE_CHECKING:
    from ticketwire.engine.evaluate import Decision
    from ticketwire.vendors.bundle import Vendor

#: Each active vendor's spec, built from its bundle on first lookup (see `registry.derived`).
_SPECS: dict[str, VendorSpec] = {}
#: Actions with one meaning on every helpdesk (see `ticketwire.vocabulary`).
NEUTRAL_ACTIONS: tuple[str, ...] = (
    "set_status",
    "set_priority",
    "assign",
    "unassign",
    "add_tags",
    "remove_tags",
    "add_note",
)


@dataclass(frozen=True)
class Action:
    """One thing a rule decided to do, e.g. `Action("update", {"priority": "high"}, "escalate")`."""

    name: str
    params: dict[str, Any]
    rule: str
    #: For a rule without `vendor:`: what the action means for each vendor, `{vendor: (name,
    #: params)}`; `for_vendor()` picks the one of the event's vendor before planning.
    variants: Mapping[str, tuple[str, dict[str, Any]]] | None = None

    def for_vendor(self, vendor: str) -> Action:
        """This action as `vendor` understands it."""
        if self.variants is None:
            return self
        name, params = self.variants[vendor]
        return Action(name=name, params=params, rule=self.rule)

    def describe(self) -> str:
        """One line, e.g. `update {"priority": "high"}`."""
        return f"{self.name} {json.dumps(self.params, sort_keys=True, default=str)}"


class ActionError(ValueError):
    """What a rule wrote for an action is invalid; `key` names the offending field, if any."""

    def __init__(
        self, message: str, *, accepted: Sequence[str] = (), key: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.accepted = tuple(accepted)
        self.key = key


#: Validate what a rule wrote for one action; return the canonical action name and params.
Normalizer = Callable[[Any], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class ActionSpec:
    """One action of a vendor's vocabulary."""

    name: str
    summary: str
    normalize: Normalizer


@dataclass
class Plan:
    """The API calls a set of decisions comes to, and notes on what was dropped and why."""

    calls: list[ApiCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


Planner = Callable[[Event, "Sequence[Decision]"], Plan]


@dataclass(frozen=True)
class VendorSpec:
    """Everything the engine needs to know about one vendor's rules."""

    vendor: str
    actions: Mapping[str, ActionSpec]
    planner: Planner
    #: Top-level ticket fields conditions may read; None accepts any.
    ticket_fields: frozenset[str] | None = None
    #: Closed sets of values for some fields, checked in conditions (e.g. `priority`).
    field_enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The vendor's own event types, beyond the canonical ones, that rules pinned to it may use.
    events: tuple[str, ...] = ()
    #: Neutral actions this helpdesk cannot do, with why: a rule using one is refused, saying so.
    lacks: Mapping[str, str] = field(default_factory=dict)


class ActionTable:
    """A vendor's actions in the order declared, each declared beside its normaliser."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.specs: dict[str, ActionSpec] = {}

    def action(self, name: str, summary: str) -> Callable[[Normalizer], Normalizer]:
        """Declare the decorated normaliser as the action `name`."""

        def declare(normalize: Normalizer) -> Normalizer:
            self.add(name, summary, normalize)
            return normalize

        return declare

    def add(self, name: str, summary: str, normalize: Normalizer) -> None:
        """Declare `normalize` as the action `name`."""
        self.specs[name] = ActionSpec(name, summary, normalize)

    def spec(
        self,
        planner: Planner,
        ticket_fields: frozenset[str] | None,
        *,
        field_enums: Mapping[str, tuple[str, ...]] | None = None,
        events: tuple[str, ...] = (),
        lacks: Mapping[str, str] | None = None,
    ) -> VendorSpec:
        """The vendor's spec: these actions, planned by `planner`."""
        return VendorSpec(
            self.vendor, self.specs, planner, ticket_fields, field_enums or {}, events, lacks or {}
        )


def registered_vendors() -> tuple[str, ...]:
    """Names of every vendor of the active registry, sorted."""
    from ticketwire.vendors.registry import active

    return tuple(sorted(active().names))


def vendor_spec(vendor: str) -> VendorSpec:
    """Return the vocabulary of `vendor`, or raise `RuleConfigError` naming the known ones."""
    found = _SPECS.get(vendor)
    if found is None:
        from ticketwire.vendors.registry import active, derived

        if vendor not in active().names:
            raise unknown("vendor", vendor, registered_vendors(), None)
        found = derived(_SPECS, vendor, _spec_of)
    return found


def _spec_of(bundle: Vendor[Any]) -> VendorSpec:
    spec = bundle.actions()
    if spec.vendor != bundle.name:
        raise ValueError(f"the actions of {bundle.name!r} are a spec for {spec.vendor!r}")
    return spec


def known_events(vendor: str | None) -> tuple[str, ...]:
    """Event types a rule may listen to: the canonical ones, plus a pinned vendor's own."""
    own = vendor_spec(vendor).events if vendor is not None else ()
    return (*sorted(PROCESSED_EVENTS), *own)


def _specs(vendor: str | None) -> list[VendorSpec]:
    if vendor is not None:
        return [vendor_spec(vendor)]
    return [vendor_spec(v) for v in registered_vendors()]


def action_names(vendor: str | None) -> tuple[str, ...]:
    """Action names a rule for `vendor` may use (every vendor's, when None)."""
    names: dict[str, None] = {}
    for spec in _specs(vendor):
        names.update(dict.fromkeys(spec.actions))
    return tuple(names)


def make_action(vendor: str | None, name: str, value: Any, *, rule: str) -> Action:
    """Validate one action against `vendor` (or every vendor when None) and build it.

    Raises `ActionError` with the accepted values when the action or its value is invalid.
    """
    specs = _specs(vendor)
    results: dict[str, tuple[str, dict[str, Any]]] = {}
    failures: dict[str, ActionError] = {}
    for spec in specs:
        if name not in spec.actions:
            accepted = list(spec.actions)
            reason = spec.lacks.get(name)
            failures[spec.vendor] = ActionError(
                f"{spec.vendor} has no {name}: {reason}"
                if reason
                else f"unknown action {name!r} for vendor {spec.vendor!r}{suggest(name, accepted)}",
                # A known gap needs no list of what the helpdesk can do instead.
                accepted=() if reason else accepted,
            )
            continue
        try:
            results[spec.vendor] = spec.actions[name].normalize(value)
        except ActionError as exc:
            failures[spec.vendor] = exc
    if failures:
        if vendor is not None:
            raise next(iter(failures.values()))
        raise _unpinned_error(name, sorted(results), failures)
    canonical, params = next(iter(results.values()))
    if all(r == (canonical, params) for r in results.values()):
        return Action(name=canonical, params=params, rule=rule)
    return Action(name=name, params={"value": value}, rule=rule, variants=results)


def _unpinned_error(name: str, fits: list[str], failures: dict[str, ActionError]) -> ActionError:
    """Why an action of a rule without `vendor:` fails: on which helpdesks, and how to pin it."""
    lacking = sorted(v for v in failures if name not in vendor_spec(v).actions)
    refused = {v: failures[v] for v in sorted(failures) if v not in lacking}
    by_message: dict[str, list[str]] = {}
    for v, err in refused.items():
        by_message.setdefault(err.message, []).append(v)
    if not lacking and not fits and (len(by_message) == 1 or name in NEUTRAL_ACTIONS):
        # A value no helpdesk takes; a neutral action's values are the same everywhere.
        return next(iter(refused.values()))
    neutral = "the neutral actions " + ", ".join(NEUTRAL_ACTIONS)
    if not fits and not refused:
        return ActionError(
            f"unknown action {name!r}{suggest(name, action_names(None))} No helpdesk has it; a "
            f"rule without vendor: runs on every helpdesk and may use {neutral}; a helpdesk's own "
            f"actions need the rule pinned with vendor: {' | '.join(registered_vendors())}",
        )
    # A helpdesk's known gap keeps its own explanation; the others lack it plainly.
    plain = [v for v in lacking if failures[v].message.startswith("unknown action ")]
    problems = []
    if plain:
        have = "has" if len(plain) == 1 else "have"
        problems.append(f"{_joined(plain)} {have} no such action")
    problems += [failures[v].message for v in lacking if v not in plain]
    problems += [f"{_joined(vs)}: {message}" for message, vs in by_message.items()]
    works = f"works on {_joined(fits)} only" if fits else "works on no helpdesk"
    if fits:
        pin = " or ".join(f"vendor: {v}" for v in fits)
        hint = f"pin it with {pin}" + (" (one copy of the rule for each)" if len(fits) > 1 else "")
        if name not in NEUTRAL_ACTIONS:
            hint += f", or use {neutral}"
    else:
        hint = "write a value every helpdesk accepts, or pin it with vendor:"
    only = next(iter(refused.values())) if len(refused) == 1 and not lacking else None
    return ActionError(
        f"{name!r} {works} ({'; '.join(problems)}); a rule without vendor: runs on every "
        f"helpdesk, so {hint}",
        # What to write instead is in the message; a list is an answer only to one bad value.
        accepted=only.accepted if only else (),
        key=only.key if only else None,
    )


def _joined(names: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def field_schema(vendor: str | None) -> FieldSchema:
    """What conditions of a rule for `vendor` may read (the union over vendors when None)."""
    fields: set[str] = set()
    enums: dict[str, tuple[str, ...]] = {}
    for spec in _specs(vendor):
        if spec.ticket_fields is None:
            return FieldSchema(ticket_fields=None, enums=enums)
        fields |= spec.ticket_fields
        for name, values in spec.field_enums.items():
            merged = dict.fromkeys(enums.get(name, ()))
            merged.update(dict.fromkeys(values))
            enums[name] = tuple(merged)
    return FieldSchema(ticket_fields=frozenset(fields), enums=enums)


def plan(event: Event, decisions: Sequence[Decision]) -> Plan:
    """Plan the API calls for `decisions` with the planner of the event's vendor."""
    return vendor_spec(event.vendor).planner(event, decisions)
