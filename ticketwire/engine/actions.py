"""Actions rules decide on, and the registry where each vendor declares its action vocabulary.

A vendor registers a `VendorSpec`: the actions a rule may take (each with a normaliser that
validates what the rule wrote), the ticket fields conditions may read, and the planner that turns
decided actions into API calls. YAML rules and `ctx.*` calls are both validated through it.
"""

from __future__ import annotations

import importlib
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

#: Vendors shipped with ticketwire, imported on first use so the engine never imports them eagerly.
_BUILTIN_VENDORS: dict[str, str] = {
    "inboxops": "ticketwire.vendors.inboxops.actions",
    "cstar": "ticketwire.vendors.cstar.actions",
    "thena": "ticketwire.vendors.thena.actions",
}
_REGISTRY: dict[str, VendorSpec] = {}
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


def register_vendor_actions(vendor: str, spec: VendorSpec) -> None:
    """Declare `vendor`'s action vocabulary; registering again replaces it."""
    if spec.vendor != vendor:
        raise ValueError(f"spec is for {spec.vendor!r}, registered as {vendor!r}")
    _REGISTRY[vendor] = spec


def _load_builtins() -> None:
    for vendor, module in _BUILTIN_VENDORS.items():
        if vendor not in _REGISTRY:
            importlib.import_module(module)


def registered_vendors() -> tuple[str, ...]:
    """Names of every vendor with a registered vocabulary, sorted."""
    _load_builtins()
    return tuple(sorted(_REGISTRY))


def vendor_spec(vendor: str) -> VendorSpec:
    """Return the vocabulary of `vendor`, or raise `RuleConfigError` naming the known ones."""
    if vendor not in _REGISTRY and vendor in _BUILTIN_VENDORS:
        importlib.import_module(_BUILTIN_VENDORS[vendor])
    if vendor not in _REGISTRY:
        raise unknown("vendor", vendor, registered_vendors(), None)
    return _REGISTRY[vendor]


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
        if vendor is not None or not results:
            raise next(iter(failures.values()))
        # Valid for some helpdesks only: say which, and how to make the rule unambiguous.
        err = next(iter(failures.values()))
        bad = ", ".join(repr(v) for v in failures)
        fits = sorted(results)
        hint = (
            f"pin it with vendor: {fits[0]}"
            if len(fits) == 1
            else (f"pin it with vendor: (one of {', '.join(fits)})")
        )
        if name not in NEUTRAL_ACTIONS:
            hint += ", or use the neutral actions " + ", ".join(NEUTRAL_ACTIONS)
        raise ActionError(
            f"{name!r} works for {', '.join(fits)} but not for {bad} ({err.message}); "
            f"a rule without vendor: runs on every helpdesk, so {hint}",
            accepted=err.accepted,
            key=err.key,
        )
    canonical, params = next(iter(results.values()))
    if all(r == (canonical, params) for r in results.values()):
        return Action(name=canonical, params=params, rule=rule)
    return Action(name=name, params={"value": value}, rule=rule, variants=results)


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
