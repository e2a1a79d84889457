"""InboxOps actions: the vocabulary rules may use, and the planner that turns them into API calls.

Vocabulary (YAML form; `ctx.<name>(...)` in Python):

    update: {field: value, ...}     PATCH /tickets/{id} with PATCH_FIELDS (`assignee_id: null` unassigns)
    add_tags / remove_tags: [ids]   POST /tickets/bulk
    move_inbox: <inbox id>          POST /tickets/bulk
    update_status: <status> | {status_id: <id>}     POST /tickets/bulk
    assign: <agent id>              POST /tickets/bulk
    unassign: true                  sugar for update {assignee_id: null}
    set_status / set_priority / remind_at           sugar for update {status | priority | remind_at}
    add_note: <text> | {text: <text>}               POST /tickets/{id}/messages, an internal note;
                                    the text may use {{ticket.<field>}} and {{common.<field>}}

The planner is pure: it merges every fired rule's PATCH fields into one call (later rules win),
drops changes the ticket already has, and orders bulk operations after the PATCH and notes last,
one call per note in rule order (a note is never merged or dropped as already done).

InboxOps applies `remind_at` (and `remind_transition_status_id`) only "when PATCH also sets status
to waiting (status or status_id)", so a PATCH that carries a reminder always carries a waiting
status too: the ticket's own waiting status when it is waiting, else `status: waiting`.
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
from ticketwire.engine.durations import (
    format_utc,
    parse_datetime,
    parse_instant,
)
from ticketwire.engine.nodes import kind_of, suggest
from ticketwire.engine.notes import note_action_call, note_params
from ticketwire.event import Event
from ticketwire.vendors.inboxops.client import note_body
from ticketwire.vendors.inboxops.models import (
    BULK_OPERATIONS,
    PATCH_FIELDS,
    PRIORITIES,
    STATUSES,
    Ticket,
)

if TYPE_CHECKING:
    from ticketwire.engine.evaluate import Decision

VENDOR = "inboxops"
#: Keys `GET /tickets/{id}?include=` may add to a ticket; conditions may read them too.
INCLUDE_KEYS = ("tags", "contact", "company", "inbox", "sla", "participants")
TICKET_FIELDS = frozenset(Ticket.model_fields) | frozenset(INCLUDE_KEYS)
_NULLABLE = frozenset({"assignee_id", "remind_at", "remind_transition_status_id"})
#: The PATCH fields that hold an id, which InboxOps names `<thing>_id`.
_ID_FIELDS = frozenset(name for name in PATCH_FIELDS if name.endswith("_id"))
#: Fields InboxOps applies only with a waiting status in the same PATCH.
REMINDER_FIELDS = ("remind_at", "remind_transition_status_id")
#: Which ticket field a bulk operation's idempotence is checked against.
_BULK_STATE = {"assign": ("assignee_id",), "move_inbox": ("inbox_id",)}

ACTIONS = ActionTable(VENDOR)


# ---- validation: YAML-form value -> (canonical action, params) ----


def _remind(value: Any, *, key: str | None = None) -> str | None:
    return checks.future_instant(value, "remind_at", key=key)


def _field(name: str, value: Any) -> Any:
    if name == "status":
        return checks.enum(value, "update.status", STATUSES, key=name)
    if name == "priority":
        return checks.enum(value, "update.priority", PRIORITIES, key=name)
    if name == "remind_at":
        return _remind(value, key=name)
    if name == "custom_fields":
        if not isinstance(value, Mapping) or not value:
            raise ActionError(
                "update.custom_fields: expects a mapping of field keys to values, "
                f"got {kind_of(value)}",
                key=name,
            )
        return {str(k): checks.json_value(v, f"custom_fields.{k}", name) for k, v in value.items()}
    if value is None and name in _NULLABLE:
        return None
    what = f"update.{name}"
    if name in _ID_FIELDS and value is None:
        raise ActionError(f"{what}: cannot be null", key=name)
    return checks.text(value, what, key=name)


@ACTIONS.action("update", "PATCH ticket fields: {field: value}")
def _update(value: Any) -> tuple[str, dict[str, Any]]:
    return "update", checks.fields(value, "update", PATCH_FIELDS, "{priority: high}", _field)


def _tags(op: str) -> Any:
    def normalize(value: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(value, list) or not value:
            raise ActionError(
                f"{op}: expects a non-empty list of tag ids, e.g. {op}: [<tag uuid>], "
                f"got {kind_of(value)}"
            )
        ids = [checks.text(v, f"{op} item") for v in value]
        return op, {"tag_ids": list(dict.fromkeys(ids))}

    return normalize


ACTIONS.add("add_tags", "add tags by id: [ids]", _tags("add_tags"))
ACTIONS.add("remove_tags", "remove tags by id: [ids]", _tags("remove_tags"))


@ACTIONS.action("move_inbox", "move to an inbox: <inbox id>")
def _move_inbox(value: Any) -> tuple[str, dict[str, Any]]:
    return "move_inbox", {"inbox_id": checks.text(value, "move_inbox")}


@ACTIONS.action("update_status", "status name or {status_id: <id>}")
def _update_status(value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return "update_status", {"status": checks.enum(value, "update_status", STATUSES)}
    if isinstance(value, Mapping):
        keys = [k for k in value if k in ("status", "status_id")]
        extra = [k for k in value if k not in ("status", "status_id")]
        if extra:
            raise ActionError(
                f"update_status: unknown key {extra[0]!r}{suggest(extra[0], ['status', 'status_id'])}",
                accepted=("status", "status_id"),
                key=str(extra[0]),
            )
        if len(keys) == 1 and keys[0] == "status":
            status = checks.enum(value["status"], "update_status.status", STATUSES, key="status")
            return "update_status", {"status": status}
        if len(keys) == 1:
            status_id = checks.text(value["status_id"], "update_status.status_id", key="status_id")
            return "update_status", {"status_id": status_id}
    raise ActionError(
        "update_status: expects a status name or {status_id: <custom status id>} (exactly one)",
        accepted=STATUSES,
    )


ACTIONS.add("assign", "assign to an agent: <agent id>", checks.assigning("assign", "assignee_id"))
ACTIONS.add(
    "unassign", "remove the assignee: true", checks.unassigning("update", {"assignee_id": None})
)


@ACTIONS.action("set_status", "set the status (via PATCH)")
def _set_status(value: Any) -> tuple[str, dict[str, Any]]:
    return "update", {"status": checks.enum(value, "set_status", STATUSES)}


@ACTIONS.action("set_priority", "set the priority (via PATCH)")
def _set_priority(value: Any) -> tuple[str, dict[str, Any]]:
    return "update", {"priority": checks.enum(value, "set_priority", PRIORITIES)}


@ACTIONS.action("remind_at", "set a reminder: +48h or ISO 8601")
def _remind_at(value: Any) -> tuple[str, dict[str, Any]]:
    return "update", {"remind_at": _remind(value)}


@ACTIONS.action("add_note", "leave an internal note: <text> or {text}")
def _add_note(value: Any) -> tuple[str, dict[str, Any]]:
    return note_params(value, ticket_fields=TICKET_FIELDS)


# ---- planning ----


def _same(field: str, current: Any, wanted: Any) -> bool:
    if field == "remind_at" and current is not None and wanted is not None:
        return parse_datetime(current) == parse_datetime(wanted)
    return planning.same(current, wanted)


def _resolve(params: dict[str, Any], event: Event) -> dict[str, Any]:
    if params.get("remind_at") is None:
        return params
    moment = parse_instant(params["remind_at"], sign="future").resolve(event.created_at)
    return {**params, "remind_at": format_utc(moment)}


class _Patch:
    """Accumulates PATCH fields across rules; later rules win, conflicts are noted."""

    def __init__(self) -> None:
        self.fields: dict[str, tuple[Any, str]] = {}
        self.notes: list[str] = []

    def set(self, label: str, value: Any, rule: str) -> None:
        previous = self.fields.get(label)
        if previous is not None and not _same(label, previous[0], value):
            self.notes.append(
                planning.override_note(
                    label, planning.show(value), planning.show(previous[0]), rule, previous[1]
                )
            )
        self.fields[label] = (value, rule)


def plan(event: Event, decisions: Sequence[Decision]) -> Plan:
    """Turn the fired decisions for `event` into InboxOps API calls, in rule order."""
    patch = _Patch()
    bulk: dict[str, tuple[str, dict[str, Any], list[str]]] = {}
    internal_notes: list[tuple[dict[str, Any], str]] = []
    notes: list[str] = []
    rule_order: dict[str, int] = {}
    for action in planning.fired_actions(decisions, rule_order):
        if action.name == "update":
            for name, value in _resolve(action.params, event).items():
                if name == "custom_fields":
                    for key, item in value.items():
                        patch.set(f"custom_fields.{key}", item, action.rule)
                else:
                    patch.set(name, value, action.rule)
        elif action.name in BULK_OPERATIONS:
            key = json.dumps([action.name, action.params], sort_keys=True)
            if key in bulk:
                if action.rule not in bulk[key][2]:
                    bulk[key][2].append(action.rule)
            else:
                bulk[key] = (action.name, action.params, [action.rule])
        elif action.name == "add_note":
            internal_notes.append((action.params, action.rule))
        else:
            notes.append(planning.foreign_note(action.rule, action.name, "an InboxOps"))
    notes.extend(patch.notes)
    notes.extend(_tag_clashes(list(bulk.values())))
    calls: list[ApiCall] = []
    patch_call = _patch_call(event, patch, rule_order, notes)
    if patch_call is not None:
        calls.append(patch_call)
    calls.extend(_bulk_calls(event, list(bulk.values()), notes))
    calls.extend(_note_calls(event, internal_notes, notes))
    return Plan(calls=calls, notes=notes)


def _patch_call(
    event: Event, patch: _Patch, rule_order: dict[str, int], notes: list[str]
) -> ApiCall | None:
    ticket = event.ticket
    current_custom = ticket.get("custom_fields") or {}
    body: dict[str, Any] = {}
    sources: dict[str, str] = {}
    # A reminder needs its waiting status in the same PATCH, even one the ticket already has.
    reminder = any(
        not (name in ticket and _same(name, ticket[name], value))
        for name, (value, _) in patch.fields.items()
        if name in REMINDER_FIELDS
    )
    for label, (value, rule) in patch.fields.items():
        if label.startswith("custom_fields."):
            key = label.partition(".")[2]
            if _same(label, current_custom.get(key), value):
                notes.append(planning.held_note(label, planning.show(value), rule))
                continue
            body.setdefault("custom_fields", {})[key] = value
        else:
            needed = reminder and label in ("status", "status_id")
            if label in ticket and _same(label, ticket[label], value) and not needed:
                notes.append(planning.held_note(label, planning.show(value), rule))
                continue
            body[label] = value
        sources[label] = rule
    if any(f in body for f in REMINDER_FIELDS):
        _with_waiting(body, patch, ticket, notes)
    # The rules whose fields are still in the body (a dropped reminder takes its rule away).
    rules = {r for label, r in sources.items() if label in body or label.startswith("custom_")}
    if not body:
        return None
    ordered = planning.in_rule_order(rules, rule_order)
    # A copy: the call outlives this plan (outbox, dead letters) and must not share lists with
    # the rules' actions.
    return planning.ticket_patch(VENDOR, event, copy.deepcopy(body), ordered)


def _with_waiting(
    body: dict[str, Any], patch: _Patch, ticket: Mapping[str, Any], notes: list[str]
) -> None:
    """Give the reminder fields of `body` the waiting status InboxOps needs, or drop them."""
    reminder = " and ".join(f for f in REMINDER_FIELDS if f in body)
    waiting = ticket.get("status") == "waiting"
    if "status_id" in body:
        value, rule = patch.fields["status_id"]
        if not (waiting and ticket.get("status_id") == value):
            notes.append(
                f"{reminder}: InboxOps applies it only with a waiting status; it goes with "
                f"status_id {value!r} (rule {rule!r}), which must be a custom status of type "
                "waiting"
            )
        return
    if "status" in body:
        value, rule = patch.fields["status"]
        if value != "waiting":
            for name in REMINDER_FIELDS:
                body.pop(name, None)
            notes.append(
                f"{reminder}: dropped; InboxOps applies it only with status waiting, and rule "
                f"{rule!r} sets status {value!r}"
            )
        return
    clearing = all(body[name] is None for name in REMINDER_FIELDS if name in body)
    if not waiting and clearing:
        for name in REMINDER_FIELDS:
            body.pop(name, None)
        notes.append(
            f"{reminder}: dropped; InboxOps changes a reminder only with status waiting, and "
            f"clearing it would move this {ticket.get('status')!r} ticket to waiting"
        )
        return
    if waiting and ticket.get("status_id"):
        # The ticket's own status: `status: waiting` could trade a custom waiting status
        # (e.g. "Waiting on customer") for the default one.
        body["status_id"] = ticket["status_id"]
        return
    body["status"] = "waiting"
    notes.append(
        f"{reminder}: status 'waiting' sent with it, as InboxOps applies a reminder only with "
        f"status waiting; this {ticket.get('status')!r} ticket moves to waiting"
    )


def _tag_clashes(ops: list[tuple[str, dict[str, Any], list[str]]]) -> list[str]:
    added: dict[str, list[str]] = {}
    for op, params, rules in ops:
        if op == "add_tags":
            for tag in params["tag_ids"]:
                added.setdefault(tag, []).extend(rules)
    notes = []
    for op, params, rules in ops:
        if op == "remove_tags":
            for tag in params["tag_ids"]:
                if tag in added:
                    notes.append(
                        f"tag {tag!r} is added by rule {', '.join(map(repr, added[tag]))} "
                        f"and removed by rule {', '.join(map(repr, rules))}; "
                        "both calls are sent, in rule order"
                    )
    return notes


def _bulk_calls(
    event: Event, ops: list[tuple[str, dict[str, Any], list[str]]], notes: list[str]
) -> list[ApiCall]:
    ticket = event.ticket
    calls = []
    for op, params, rules in ops:
        state = _BULK_STATE.get(op) or (tuple(params) if op == "update_status" else ())
        held = [f for f in state if f in ticket and _same(f, ticket[f], params.get(f))]
        if state and len(held) == len(state):
            shown = ", ".join(f"{f} already {planning.show(ticket[f])}" for f in held)
            notes.append(f"{op}: {shown}; dropped (rule {', '.join(map(repr, rules))})")
            continue
        calls.append(
            planning.ticket_call(
                VENDOR,
                event,
                "POST",
                "/tickets/bulk",
                {"operation": op, "ticket_ids": [event.ticket_id], **copy.deepcopy(params)},
                tuple(rules),
            )
        )
    return calls


def _note_calls(
    event: Event, wanted: list[tuple[dict[str, Any], str]], notes: list[str]
) -> list[ApiCall]:
    calls = []
    for params, rule in wanted:
        call = note_action_call(VENDOR, event, params, rule, _note_body, notes)
        if call is not None:
            calls.append(call)
    return calls


def _note_body(text: str, params: Mapping[str, Any]) -> dict[str, Any]:
    return note_body(text)


SPEC = ACTIONS.spec(plan, TICKET_FIELDS, field_enums={"status": STATUSES, "priority": PRIORITIES})
