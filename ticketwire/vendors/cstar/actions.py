"""cStar actions: the vocabulary rules may use, and the planner that turns them into API calls.

Vocabulary (YAML form; `ctx.act(name, value)` in Python):

    set_status: <new|open|in_progress|waiting|resolved|closed>   neutral, mapped through
                                    ticketwire.vocabulary (waiting → pending, in_progress → open)
    set_priority: <low|normal|high|urgent>
    assign: <agent id>              PATCH assignedTo
    unassign: true                  PATCH assignedTo: null
    add_tags / remove_tags: [names] cStar tags are plain strings
    update: {status, priority, assignedTo, tags, metadata, title}   PATCH fields in cStar's
                                    words; `tags` and `metadata` replace the whole value
    set_metadata: {key: value}      merged into the ticket's metadata
    bulk_update: {field: value}     POST /bulk {action: update, resource: tickets} for this ticket
    add_note: <text> | {text, sender}   POST /tickets/{id}/messages {content, sender}; sender
                                    defaults to agent; the text may use {{ticket.<field>}}

The neutral actions normalise straight to cStar's words (`set_status: waiting` becomes
`update {status: pending}`), so the planner only ever sees cStar fields.

The planner is pure. It merges every fired rule's single-ticket changes into one PATCH (later
rules win, notes name the loser), drops changes the ticket already has, and sends bulk calls
after it, then one message call per `add_note`, in rule order (never merged, never dropped as
already done). cStar's PATCH replaces `tags` and `metadata` wholesale, so the planner computes the
full value from the event's ticket. When the event does not carry the ticket's tags (or
metadata), the PATCH carries `__merge_tags__: {add, remove}` (or `__merge_metadata__: {k: v}`)
instead, and `CStarClient.send` reads the ticket and computes the full value just before it
writes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ticketwire.calls import ApiCall
from ticketwire.engine import actionchecks as checks
from ticketwire.engine import planning
from ticketwire.engine.actions import (
    ActionError,
    ActionTable,
    Plan,
)
from ticketwire.engine.nodes import kind_of
from ticketwire.engine.notes import note_action_call, note_params
from ticketwire.event import Event
from ticketwire.vendors.cstar.client import MERGE_METADATA, MERGE_TAGS
from ticketwire.vendors.cstar.models import (
    OWN_EVENTS,
    PATCH_FIELDS,
    PRIORITIES,
    PRIORITIES_SEEN,
    STATUSES,
    Ticket,
)
from ticketwire.vendors.cstar.webhook import assignee_id, tag_names
from ticketwire.vocabulary import (
    NEUTRAL_PRIORITIES,
    NEUTRAL_STATUSES,
    neutral_priority,
    vendor_priority,
    vendor_status,
)

if TYPE_CHECKING:
    from ticketwire.engine.evaluate import Decision

VENDOR = "cstar"
#: Ticket keys conditions may read: the parsed webhook ticket (snake_case) plus documented extras.
TICKET_FIELDS = frozenset(Ticket.model_fields) | frozenset(
    {
        "object",
        "customer_name",
        "notes",
        "message_count",
        "closed_at",
        "resolved_at",
        "response_deadline",
        "resolution_deadline",
        "first_response_at",
        "sla_paused",
    }
)

ACTIONS = ActionTable(VENDOR)


# ---- validation: YAML-form value -> (canonical action, params) ----


def _tag_list(value: Any, what: str, *, allow_empty: bool, key: str | None = None) -> list[str]:
    if not isinstance(value, list) or (not value and not allow_empty):
        example = "[vip, billing]"
        raise ActionError(
            f"{what}: expects a {'' if allow_empty else 'non-empty '}list of tag names, "
            f"e.g. {example}, got {kind_of(value)}",
            key=key,
        )
    return list(dict.fromkeys(checks.text(v, f"{what} item", key=key) for v in value))


def _metadata(value: Any, what: str, *, key: str | None = None) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise ActionError(
            f"{what}: expects a mapping of keys to values, e.g. {{plan: pro}}, got {kind_of(value)}",
            key=key,
        )
    return {str(k): checks.json_value(v, f"{what}.{k}", key or str(k)) for k, v in value.items()}


def _field(name: str, value: Any, what: str) -> Any:
    label = f"{what}.{name}"
    if name == "status":
        return checks.enum(value, label, STATUSES, key=name)
    if name == "priority":
        return checks.enum(value, label, PRIORITIES, key=name)
    if name == "assignedTo":
        return None if value is None else checks.text(value, label, key=name)
    if name == "tags":
        return _tag_list(value, label, allow_empty=True, key=name)
    if name == "metadata":
        return _metadata(value, label, key=name)
    return checks.text(value, label, key=name)


def _fields(value: Any, what: str) -> dict[str, Any]:
    def check(name: str, item: Any) -> Any:
        return _field(name, item, what)

    return checks.fields(value, what, PATCH_FIELDS, "{priority: high}", check)


@ACTIONS.action("set_status", "set the status: a neutral status (waiting → pending)")
def _set_status(value: Any) -> tuple[str, dict[str, Any]]:
    neutral = checks.enum(value, "set_status", NEUTRAL_STATUSES)
    return "update", {"status": vendor_status(VENDOR, neutral)}


@ACTIONS.action("set_priority", "set the priority: low|normal|high|urgent")
def _set_priority(value: Any) -> tuple[str, dict[str, Any]]:
    neutral = checks.enum(value, "set_priority", NEUTRAL_PRIORITIES)
    return "update", {"priority": vendor_priority(VENDOR, neutral)}


ACTIONS.add("assign", "assign to an agent: <agent id>", checks.assigning("update", "assignedTo"))
ACTIONS.add(
    "unassign", "remove the assignee: true", checks.unassigning("update", {"assignedTo": None})
)


def _tags(op: str) -> Any:
    def normalize(value: Any) -> tuple[str, dict[str, Any]]:
        return op, {"tags": _tag_list(value, op, allow_empty=False)}

    return normalize


ACTIONS.add("add_tags", "add tags by name: [names]", _tags("add_tags"))
ACTIONS.add("remove_tags", "remove tags by name: [names]", _tags("remove_tags"))


@ACTIONS.action("update", "PATCH ticket fields: {field: value}")
def _update(value: Any) -> tuple[str, dict[str, Any]]:
    return "update", _fields(value, "update")


@ACTIONS.action("set_metadata", "merge keys into metadata: {key: value}")
def _set_metadata(value: Any) -> tuple[str, dict[str, Any]]:
    return "set_metadata", {"metadata": _metadata(value, "set_metadata")}


@ACTIONS.action("bulk_update", "POST /bulk update for this ticket: {field: value}")
def _bulk_update(value: Any) -> tuple[str, dict[str, Any]]:
    return "bulk_update", {"data": _fields(value, "bulk_update")}


#: The `sender` of a note when the rule names none: the note comes from the support side.
NOTE_SENDER = "agent"


@ACTIONS.action("add_note", "leave a note: <text> or {text, sender}")
def _add_note(value: Any) -> tuple[str, dict[str, Any]]:
    def sender(given: Any) -> str:
        return checks.text(given, "add_note.sender", key="sender")

    return note_params(value, options={"sender": sender}, ticket_fields=TICKET_FIELDS)


# ---- planning ----


def _rules_text(rules: Sequence[str]) -> str:
    return ", ".join(repr(r) for r in dict.fromkeys(rules))


class _Whole:
    """A list or object cStar replaces wholesale (tags, metadata), changed in rule order.

    `value` is the full value when known (from the event, or set by a rule); otherwise the
    pending changes are kept as `add`/`remove` (tags) or `merge` (metadata) for the client.
    """

    def __init__(self, label: str, current: Any) -> None:
        self.label = label
        self.current = current
        self.value: Any = copy.deepcopy(current)
        self.add: list[str] = []
        self.remove: list[str] = []
        self.merge: dict[str, Any] = {}
        self.rules: list[str] = []
        self.notes: list[str] = []
        self._added_by: dict[str, list[str]] = {}
        self._removed_by: dict[str, list[str]] = {}

    def replace(self, value: Any, rule: str) -> None:
        others = [r for r in self.rules if r != rule]
        if others:
            self.notes.append(
                f"{self.label}: rule {rule!r} sets the whole value {planning.show(value)}, replacing "
                f"the changes of rule {_rules_text(others)}"
            )
        self.value = copy.deepcopy(value)
        self.add, self.remove, self.merge = [], [], {}
        self.rules = [rule]

    def add_tags(self, tags: list[str], rule: str) -> None:
        self._clash(tags, self._removed_by, rule, "removed")
        for tag in tags:
            self._added_by.setdefault(tag, []).append(rule)
            if self.value is not None:
                if tag not in self.value:
                    self.value.append(tag)
            else:
                self.remove = [t for t in self.remove if t != tag]
                if tag not in self.add:
                    self.add.append(tag)
        self.rules.append(rule)

    def remove_tags(self, tags: list[str], rule: str) -> None:
        self._clash(tags, self._added_by, rule, "added")
        for tag in tags:
            self._removed_by.setdefault(tag, []).append(rule)
            if self.value is not None:
                self.value = [t for t in self.value if t != tag]
            else:
                self.add = [t for t in self.add if t != tag]
                if tag not in self.remove:
                    self.remove.append(tag)
        self.rules.append(rule)

    def merge_keys(self, items: dict[str, Any], rule: str) -> None:
        if self.value is not None:
            self.value = {**self.value, **copy.deepcopy(items)}
        else:
            self.merge.update(copy.deepcopy(items))
        self.rules.append(rule)

    def _clash(self, tags: list[str], seen: dict[str, list[str]], rule: str, how: str) -> None:
        for tag in tags:
            earlier = [r for r in seen.get(tag, []) if r != rule]
            if earlier:
                self.notes.append(
                    f"tag {tag!r} is {how} by rule {_rules_text(earlier)} and "
                    f"{'added' if how == 'removed' else 'removed'} by rule {rule!r}; "
                    "the later rule wins"
                )

    @property
    def touched(self) -> bool:
        return bool(self.rules)


def _current_tags(ticket: Mapping[str, Any]) -> list[str] | None:
    return tag_names(ticket.get("tags")) if "tags" in ticket else None


def _current_metadata(ticket: Mapping[str, Any]) -> dict[str, Any] | None:
    value = ticket.get("metadata")
    return dict(value) if isinstance(value, Mapping) else None


def _current_assignee(ticket: Mapping[str, Any]) -> tuple[bool, str | None]:
    for key in ("assigned_to", "assignedTo"):
        if key in ticket:
            return True, assignee_id(ticket[key])
    return False, None


def _same_tags(current: Sequence[str], wanted: Sequence[str]) -> bool:
    # cStar tags are a set of names: the same names in another order are no change.
    return set(current) == set(wanted)


def _holds(ticket: Mapping[str, Any], field: str, value: Any) -> bool:
    """True when the event's ticket already has `value` in cStar field `field`."""
    if field == "assignedTo":
        known, current = _current_assignee(ticket)
        return known and current == value
    if field == "priority":
        return "priority" in ticket and neutral_priority(VENDOR, ticket["priority"]) == (
            neutral_priority(VENDOR, value)
        )
    if field == "tags":
        tags = _current_tags(ticket)
        return tags is not None and _same_tags(tags, value)
    if field == "metadata":
        return bool(_current_metadata(ticket) == value)
    return field in ticket and bool(ticket[field] == value)


class _Patch:
    """Single-ticket changes across rules: scalar fields (later rule wins), tags, metadata."""

    def __init__(self, ticket: Mapping[str, Any]) -> None:
        self.ticket = ticket
        self.fields: dict[str, tuple[Any, str]] = {}
        self.tags = _Whole("tags", _current_tags(ticket))
        self.metadata = _Whole("metadata", _current_metadata(ticket))
        self.notes: list[str] = []

    def set(self, name: str, value: Any, rule: str) -> None:
        if name == "tags":
            self.tags.replace(value, rule)
            return
        if name == "metadata":
            self.metadata.replace(value, rule)
            return
        previous = self.fields.get(name)
        if previous is not None and previous[0] != value:
            self.notes.append(
                planning.override_note(
                    name, planning.show(value), planning.show(previous[0]), rule, previous[1]
                )
            )
        self.fields[name] = (value, rule)


def plan(event: Event, decisions: Sequence[Decision]) -> Plan:
    """Turn the fired decisions for `event` into cStar API calls, in rule order."""
    patch = _Patch(event.ticket)
    bulk: dict[str, tuple[dict[str, Any], list[str]]] = {}
    messages: list[tuple[dict[str, Any], str]] = []
    notes: list[str] = []
    order: dict[str, int] = {}
    for action in planning.fired_actions(decisions, order):
        name, params, rule = action.name, action.params, action.rule
        if name == "update":
            for field, value in params.items():
                patch.set(field, value, rule)
        elif name == "add_tags":
            patch.tags.add_tags(list(params["tags"]), rule)
        elif name == "remove_tags":
            patch.tags.remove_tags(list(params["tags"]), rule)
        elif name == "set_metadata":
            patch.metadata.merge_keys(params["metadata"], rule)
        elif name == "bulk_update":
            key = json.dumps(params["data"], sort_keys=True)
            if key in bulk:
                if rule not in bulk[key][1]:
                    bulk[key][1].append(rule)
            else:
                bulk[key] = (params["data"], [rule])
        elif name == "add_note":
            messages.append((params, rule))
        else:
            notes.append(planning.foreign_note(rule, name, "a cStar"))
    notes.extend(patch.notes + patch.tags.notes + patch.metadata.notes)
    planned = [_patch_call(event, patch, order, notes)]
    planned.extend(_bulk_call(event, data, rules, notes) for data, rules in bulk.values())
    planned.extend(_note_call(event, params, rule, notes) for params, rule in messages)
    return Plan(calls=[c for c in planned if c is not None], notes=notes)


def _patch_call(
    event: Event, patch: _Patch, order: dict[str, int], notes: list[str]
) -> ApiCall | None:
    ticket = event.ticket
    body: dict[str, Any] = {}
    rules: set[str] = set()
    for field, (value, rule) in patch.fields.items():
        if _holds(ticket, field, value):
            notes.append(planning.held_note(field, planning.show(value), rule))
            continue
        body[field] = value
        rules.add(rule)
    for whole, marker in ((patch.tags, MERGE_TAGS), (patch.metadata, MERGE_METADATA)):
        if not whole.touched:
            continue
        if whole.value is not None:
            same = (
                _same_tags(whole.current, whole.value)
                if marker == MERGE_TAGS and whole.current is not None
                else whole.value == whole.current
            )
            if same:
                notes.append(
                    f"{whole.label} already {planning.show(whole.value)}; dropped "
                    f"(rule {_rules_text(whole.rules)})"
                )
                continue
            body[whole.label] = copy.deepcopy(whole.value)
        elif marker == MERGE_TAGS:
            body[marker] = {"add": list(whole.add), "remove": list(whole.remove)}
        else:
            body[marker] = copy.deepcopy(whole.merge)
        rules.update(whole.rules)
    if not body:
        return None
    return planning.ticket_patch(VENDOR, event, body, planning.in_rule_order(rules, order))


def _bulk_call(
    event: Event, data: dict[str, Any], rules: list[str], notes: list[str]
) -> ApiCall | None:
    wanted: dict[str, Any] = {}
    for field, value in data.items():
        if _holds(event.ticket, field, value):
            notes.append(f"bulk_update: {field} already {planning.show(value)}; left out")
        else:
            wanted[field] = copy.deepcopy(value)
    if not wanted:
        notes.append(f"bulk_update: nothing to change; dropped (rule {_rules_text(rules)})")
        return None
    return planning.ticket_call(
        VENDOR,
        event,
        "POST",
        "/bulk",
        {"action": "update", "resource": "tickets", "ids": [event.ticket_id], "data": wanted},
        tuple(rules),
    )


def _note_call(event: Event, params: dict[str, Any], rule: str, notes: list[str]) -> ApiCall | None:
    return note_action_call(VENDOR, event, params, rule, _note_body, notes)


def _note_body(text: str, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"content": text, "sender": params.get("sender", NOTE_SENDER)}


SPEC = ACTIONS.spec(
    plan,
    TICKET_FIELDS,
    field_enums={"status": STATUSES, "priority": PRIORITIES_SEEN},
    events=OWN_EVENTS,
)
