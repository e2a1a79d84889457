"""Which tickets a scheduled rule looks at: `select:` checked per vendor, resolved at run time (pure).

`select:` holds the filters of the vendor's list API, and only those: the helpdesk applies them,
so a rule never pages through tickets it cannot act on. Anything else goes in `if:`, which
ticketwire checks on every listed ticket. Relative times (`updated_before: -48h`) are resolved
against the minute the run is for, so a re-run of the same minute selects the same way.

A listed ticket becomes an `Event` of type `ticket.scheduled` whose id names the rule, the run's
minute and the ticket (`sched:<rule>:<YYYYmmddTHHMMZ>:<ticket id>`): logs never mistake it for a
webhook, and a re-run of the same minute plans and queues the same write-backs, once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from ticketwire.engine.durations import Instant, TimeSpecError, format_utc, parse_instant
from ticketwire.engine.nodes import Node, kind_of, unknown
from ticketwire.errors import RuleConfigError
from ticketwire.event import Event

#: The event type of the events a scheduled run builds from listed tickets.
SCHEDULED_EVENT = "ticket.scheduled"
#: Most distinct custom-field filters one list request takes, unless a vendor says otherwise.
MAX_CUSTOM_FIELD_FILTERS = 10
_CUSTOM_PREFIX = "custom_field_"
#: Paging is ticketwire's job: it lists every matching ticket up to the configured cap.
_PAGING = frozenset({"page", "per_page", "pageSize", "page_size", "limit", "sort", "order"})

Kind = Literal["text", "enum", "instant"]
_UNSIGNED = re.compile(r"^(?:\d+[smhdw])+$")


@dataclass(frozen=True)
class SelectKey:
    """One filter a vendor's list API takes."""

    name: str
    kind: Kind
    #: The filter name the client's `list_tickets` takes (differs for aliases).
    wire: str = ""
    values: tuple[str, ...] = ()
    #: Accepts a list of values (sent comma-separated).
    many: bool = False


@dataclass(frozen=True)
class VendorSelect:
    """A vendor's list filters, and what every listing of it adds (e.g. a stable sort order)."""

    vendor: str
    keys: Mapping[str, SelectKey]
    custom_fields: bool = False
    listing: Mapping[str, str] = field(default_factory=dict)
    #: Ticket fields the list API leaves out of the tickets it returns.
    unlisted: frozenset[str] = frozenset()
    #: How the helpdesk's name is written in messages (the vendor name when empty).
    title: str = ""
    max_custom_fields: int = MAX_CUSTOM_FIELD_FILTERS

    @property
    def accepted(self) -> tuple[str, ...]:
        """Every key `select:` may use, for error messages."""
        names = tuple(self.keys)
        return (*names, "custom_field_<key>", "custom_fields") if self.custom_fields else names


def select_keys(*items: SelectKey) -> dict[str, SelectKey]:
    """Keys by name, each with its wire name filled in (its own name unless an alias)."""
    return {k.name: SelectKey(k.name, k.kind, k.wire or k.name, k.values, k.many) for k in items}


_SELECTS: dict[str, VendorSelect] = {}


def vendor_select(vendor: str) -> VendorSelect:
    """The list filters of `vendor`; raise `RuleConfigError` for a vendor without a list API."""
    found = _SELECTS.get(vendor)
    if found is None:
        from ticketwire.vendors.registry import active, derived

        registry = active()
        if vendor not in registry.names:
            raise unknown("vendor for a scheduled rule", vendor, sorted(registry.names), None)
        found = derived(_SELECTS, vendor, lambda v: v.select())
    return found


@dataclass(frozen=True)
class Selection:
    """A scheduled rule's validated `select:`; `filters()` turns it into list filters for a run."""

    vendor: str
    #: Filter name (as the client takes it) → value; instants stay unresolved until a run.
    values: Mapping[str, Any] = field(default_factory=dict)
    #: Custom field key → value (None: the field has no value).
    custom_fields: Mapping[str, Any] = field(default_factory=dict)

    def filters(self, run_at: datetime) -> dict[str, Any]:
        """Keyword filters for the client's `list_tickets`, relative times resolved at `run_at`."""
        out: dict[str, Any] = dict(vendor_select(self.vendor).listing)
        for name, value in self.values.items():
            out[name] = value.resolve(run_at) if isinstance(value, Instant) else value
        if self.custom_fields:
            out["custom_fields"] = dict(self.custom_fields)
        return out

    def describe(self) -> str:
        """The selection as written, e.g. `status=waiting updated_before=-48h`."""
        parts = [
            f"{name}={value.text if isinstance(value, Instant) else _show(value)}"
            for name, value in self.values.items()
        ]
        parts += [f"custom_field_{k}={_show(v)}" for k, v in self.custom_fields.items()]
        return " ".join(parts) or "every ticket"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "null" if value is None else str(value)


def compile_select(vendor: str, node: Node | Mapping[str, Any] | None) -> Selection:
    """Validate a `select:` mapping for `vendor`; raise `RuleConfigError` naming the bad key."""
    selection, found = check_select(vendor, node)
    if found:
        raise found[0]
    assert selection is not None
    return selection


def check_select(
    vendor: str, node: Node | Mapping[str, Any] | None
) -> tuple[Selection | None, list[RuleConfigError]]:
    """Validate a `select:` mapping, gathering every mistake; the selection is None if any."""
    spec = vendor_select(vendor)
    if node is None:
        return Selection(vendor), []
    if not isinstance(node, Node):
        if not isinstance(node, Mapping):
            error = RuleConfigError(
                f"select: expects a mapping of {vendor} list filters, got {kind_of(node)}",
                accepted=spec.accepted,
            )
            return None, [error]
        node = Node.from_plain(dict(node))
    if not node.is_map:
        error = RuleConfigError(
            f"select: expects a mapping of {vendor} list filters, e.g. "
            "{status: waiting, updated_before: -48h}, got " + node.kind(),
            line=node.line,
            accepted=spec.accepted,
        )
        return None, [error]
    found: list[RuleConfigError] = []
    values: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for key, item in node.value.items():
        try:
            _add_key(spec, values, custom, key, item, node.key_line(key))
        except RuleConfigError as exc:
            found.append(exc)
    if len(custom) > spec.max_custom_fields:
        found.append(
            RuleConfigError(
                f"select: {spec.title or vendor} takes at most {spec.max_custom_fields} custom "
                "field filters "
                f"in one request, got {len(custom)}; move the rest into if:",
                line=node.line,
            )
        )
    if found:
        return None, found
    return Selection(vendor, values, custom), []


def _add_key(
    spec: VendorSelect,
    values: dict[str, Any],
    custom: dict[str, Any],
    key: str,
    item: Node,
    line: int | None,
) -> None:
    if key in _PAGING:
        raise RuleConfigError(
            f"select: {key!r} is not a filter: ticketwire pages through every matching "
            "ticket itself (up to TICKETWIRE_SCHEDULE_MAX_TICKETS)",
            line=line,
            accepted=spec.accepted,
        )
    if spec.custom_fields and key == "custom_fields":
        if not item.is_map:
            raise RuleConfigError(
                f"select: custom_fields expects a mapping of field key to value, got {item.kind()}",
                line=item.line,
            )
        for field_key, field_value in item.value.items():
            _add_custom(custom, field_key, field_value, item.key_line(field_key))
        return
    if spec.custom_fields and key.startswith(_CUSTOM_PREFIX):
        _add_custom(custom, key[len(_CUSTOM_PREFIX) :], item, line)
        return
    select_key = spec.keys.get(key)
    if select_key is None:
        error = unknown(f"{spec.vendor} list filter", key, spec.accepted, line)
        hint = "; other conditions go in if:, which is checked on every listed ticket"
        raise RuleConfigError(f"select: {error.message}{hint}", line=line, accepted=error.accepted)
    if select_key.wire in values:
        raise RuleConfigError(
            f"select: {key!r} repeats the filter {select_key.wire!r}; give it once", line=line
        )
    values[select_key.wire] = _value(select_key, item, spec.vendor)


def _add_custom(custom: dict[str, Any], key: str, item: Node, line: int | None) -> None:
    if not key:
        raise RuleConfigError(
            "select: custom_field_ needs the field's key, e.g. custom_field_plan", line=line
        )
    if key in custom:
        raise RuleConfigError(f"select: custom field {key!r} is filtered twice", line=line)
    value = item.value
    if isinstance(value, datetime):
        value = format_utc(value)
    elif isinstance(value, date):
        value = value.isoformat()
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise RuleConfigError(
            f"select: custom field {key!r} takes one value (text, a number, an option id, or "
            f"null for no value), got {item.kind()}",
            line=item.line,
        )
    custom[key] = value


def _value(key: SelectKey, item: Node, vendor: str) -> Any:
    if key.kind == "instant":
        text = item.value.strip() if isinstance(item.value, str) else None
        if text and text[0] not in "+-" and _UNSIGNED.match(text):
            raise RuleConfigError(
                f"select: {key.name}: {text!r} needs a sign: -{text} means {text} before the "
                "run's time",
                line=item.line,
            )
        try:
            return parse_instant(item.value)
        except TimeSpecError as exc:
            raise RuleConfigError(f"select: {key.name}: {exc}", line=item.line) from None
    raw = [v.value for v in item.value] if item.is_list else [item.value]
    if item.is_list and not key.many:
        raise RuleConfigError(
            f"select: {key.name} takes one value on {vendor}; for several, select none and "
            f"write if: {{field: ..., in: [...]}}",
            line=item.line,
        )
    if not raw:
        raise RuleConfigError(f"select: {key.name}: the list is empty", line=item.line)
    for value in raw:
        if not isinstance(value, str) or not value.strip():
            raise RuleConfigError(
                f"select: {key.name} expects text, got {kind_of(value)}",
                line=item.line,
                accepted=key.values,
            )
        if key.kind == "enum" and value not in key.values:
            error = unknown(f"{key.name} value", value, key.values, item.line)
            raise RuleConfigError(f"select: {error.message}", line=item.line, accepted=key.values)
    return list(raw) if item.is_list else raw[0]


def scheduled_event_id(rule: str, run_at: datetime, ticket_id: str) -> str:
    """`sched:<rule>:<YYYYmmddTHHMMZ>:<ticket id>`: the same for every re-run of that minute."""
    return f"sched:{rule}:{run_at.strftime('%Y%m%dT%H%MZ')}:{ticket_id}"


def listed_event(
    vendor: str, item: Mapping[str, Any], *, rule: str, tenant: str, run_at: datetime
) -> Event:
    """The `ticket.scheduled` event for one ticket a list request returned.

    The ticket has the shape that vendor's webhooks carry, so conditions and the planner read it
    exactly as they read a webhook's. Raises `ValueError` for an item without an id.
    """
    ticket, common = _ticket_view(vendor, item)
    ticket_id = ticket.get("id")
    if not isinstance(ticket_id, str | int) or isinstance(ticket_id, bool) or not str(ticket_id):
        raise ValueError(f"a listed {vendor} ticket has no id: {sorted(item)[:8]}")
    ticket_id = str(ticket_id)
    return Event(
        vendor=vendor,
        type=SCHEDULED_EVENT,
        id=scheduled_event_id(rule, run_at, ticket_id),
        tenant=tenant,
        created_at=run_at,
        ticket_id=ticket_id,
        ticket=ticket,
        raw_type="schedule",
        common=common,
    )


def _ticket_view(vendor: str, item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from ticketwire.vendors.registry import active

    registry = active()
    if vendor not in registry.names:
        raise ValueError(f"no scheduled rules for vendor {vendor!r}")
    return registry.get(vendor).listed()(item)
