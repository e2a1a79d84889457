"""Thena actions: the vocabulary rules may use, and the planner that turns them into API calls.

Vocabulary (YAML form; `ctx.act(<name>, <value>)` in Python):

    set_status: <new|open|in_progress|waiting|resolved|closed>   PATCH statusName (the team's
                                    status of that name, see ticketwire.vocabulary)
    set_priority: <low|normal|high|urgent>      PATCH priorityName
    assign: <agent id>              PATCH assignedAgentId
    unassign: true                  PATCH assignedAgentId: null
    update: {field: value, ...}     PATCH /tickets/{id} with UPDATE_FIELDS (dueDate: ISO or +48h)
    bulk_update: {statusId, priorityId, assignedAgentId, typeId, isPrivate}
                                    PATCH /tickets/bulk for the event's ticket
    create_ticket: {title, requestorEmail?, teamId?, description?, statusName?, ...}
    create_tickets: [{...}, ...]  or  {tickets: [{...}], stopOnError: false}
                                    planned as POST /tickets/bulk (stopOnError defaults to
                                    true); the client sends one POST /tickets per ticket, the
                                    only create that takes a deDuplicationKey

There is no tag action: Thena's reference lists ticket tags, but no documented endpoint to write
them was available, so `add_tags` and `remove_tags` are not offered for Thena. Nor is there a
note action: the reference's menu lists "Comments & attachments" but no endpoint that adds a
comment to an existing ticket was available, so `add_note` is refused naming Thena (`LACKS`).

Templates. String values of `create_ticket(s)` may use `{{ticket.<field>}}` (dotted paths reach
into objects, e.g. `{{ticket.customer.email}}`) and `{{common.<field>}}` to copy from the event's
ticket (`ticketwire.engine.templates`). A value that is exactly one placeholder takes the
ticket's value as is (a missing or null one leaves the field out); inside longer text, missing
values read as empty and objects as JSON. Nothing else is interpreted. Each new ticket without
`teamId` goes to the event ticket's team, and gets a `deDuplicationKey` derived from the event
id, the rule and its position, so a retry of the call, a re-run of the same event or a redriven
dead letter never creates it twice (a key written in the rule is used as given).

Planning. Every rule's single-ticket changes merge into one PATCH (later rules win; a note names
the loser). Status, priority and assignee are one slot each: a rule setting `statusName`
replaces an earlier rule's `statusId` too, while one action giving both sends both (Thena then
uses the id). A change the event's ticket already shows is dropped: by id when an id is given,
else by name (ignoring case), and for neutral actions also by neutral value. Then one bulk
update, then one bulk create per create action, in rule order.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ticketwire.calls import ApiCall
from ticketwire.engine import actionchecks as checks
from ticketwire.engine import planning
from ticketwire.engine import templates as tpl
from ticketwire.engine.actions import (
    ActionError,
    ActionTable,
    Plan,
)
from ticketwire.engine.durations import TimeSpecError, format_utc, parse_instant
from ticketwire.engine.nodes import kind_of, suggest
from ticketwire.event import Event
from ticketwire.vendors.thena.models import (
    BULK_UPDATE_FIELDS,
    CREATE_FIELDS,
    TICKET_FIELDS,
    UPDATE_FIELDS,
)
from ticketwire.vendors.thena.webhook import (
    OWN_EVENTS,
    assignee_id,
    priority_name,
    status_name,
)
from ticketwire.vocabulary import (
    NEUTRAL_PRIORITIES,
    NEUTRAL_STATUSES,
    neutral_priority,
    neutral_status,
    vendor_priority,
    vendor_status,
)

if TYPE_CHECKING:
    from ticketwire.engine.evaluate import Decision

VENDOR = "thena"
BULK_PATH = "/tickets/bulk"
#: Fields that travel together: a rule setting one of a group replaces the group.
SLOTS: Mapping[str, tuple[str, ...]] = {
    "status": ("statusId", "statusName"),
    "priority": ("priorityId", "priorityName"),
    "assignee": ("assignedAgentId", "assignedAgentEmail"),
}
_SLOT_OF = {name: slot for slot, names in SLOTS.items() for name in names}
_ID_FIELDS = frozenset(
    {"statusId", "priorityId", "typeId", "sentimentId", "accountId", "teamId", "formId"}
)
_NAME_FIELDS = frozenset({"statusName", "priorityName", "title"})
_TEXT_FIELDS = frozenset(
    {
        "description",
        "source",
        "aiGeneratedTitle",
        "aiGeneratedSummary",
        "submitterEmail",
        "assignedAgentEmail",
        "requestorEmail",
        "closedById",
        "commentContent",
        "commentContentHtml",
        "commentContentJson",
        "commentImpersonatedUserName",
        "commentImpersonatedUserEmail",
        "commentImpersonatedUserAvatar",
        "deDuplicationKey",
    }
)
_BOOL_FIELDS = frozenset({"isPrivate", "isProactive", "performRouting"})
_OBJECT_FIELDS = frozenset({"metadata", "commentMetadata"})
_LIST_FIELDS = frozenset(
    {"attachmentUrls", "customFieldValues", "proactiveChannels", "commentAttachmentIds"}
)
_TIME_FIELDS = frozenset({"dueDate", "closedAt"})

ACTIONS = ActionTable(VENDOR)


# ---- validation: YAML-form value -> (canonical action, params) ----


def _templates(value: Any, what: str, key: str | None) -> None:
    """Refuse placeholders other than `{{ticket.<field>}}` / `{{common.<field>}}`, stray braces."""
    try:
        tpl.check(value)
    except tpl.TemplateError as exc:
        raise ActionError(f"{what}: {exc}", key=key) from None


def _field(name: str, value: Any, what: str, *, templates: bool = False) -> Any:
    """Check one Thena ticket field as a rule wrote it."""
    label = f"{what}.{name}"
    if templates:
        _templates(value, label, name)
        if tpl.has_placeholder(value):
            return value
    if name == "assignedAgentId":
        return None if value is None else checks.text(value, label, key=name)
    if name in _ID_FIELDS or name in _NAME_FIELDS:
        return checks.text(value, label, key=name)
    if name in _TEXT_FIELDS:
        if not isinstance(value, str):
            raise ActionError(f"{label}: expects a string, got {kind_of(value)}", key=name)
        return value
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ActionError(f"{label}: expects true or false, got {kind_of(value)}", key=name)
        return value
    if name in _OBJECT_FIELDS:
        if not isinstance(value, Mapping):
            raise ActionError(f"{label}: expects a mapping, got {kind_of(value)}", key=name)
        return checks.json_value(value, label, name)
    if name in _LIST_FIELDS:
        if not isinstance(value, list):
            raise ActionError(f"{label}: expects a list, got {kind_of(value)}", key=name)
        return checks.json_value(value, label, name)
    if name in _TIME_FIELDS:
        return checks.future_instant(value, label, key=name)
    return checks.json_value(value, label, name)


def _fields(value: Any, what: str, accepted: Sequence[str], example: str) -> dict[str, Any]:
    def check(name: str, item: Any) -> Any:
        return _field(name, item, what)

    return checks.fields(value, what, accepted, example, check)


@ACTIONS.action("set_status", "set the status: a neutral value (statusName)")
def _set_status(value: Any) -> tuple[str, dict[str, Any]]:
    return "set_status", {"status": _neutral(value, "set_status", NEUTRAL_STATUSES)}


@ACTIONS.action("set_priority", "set the priority: a neutral value")
def _set_priority(value: Any) -> tuple[str, dict[str, Any]]:
    return "set_priority", {"priority": _neutral(value, "set_priority", NEUTRAL_PRIORITIES)}


def _neutral(value: Any, what: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ActionError(
            f"{what}: {value!r} is not one of the neutral values{suggest(value, allowed)}",
            accepted=allowed,
        )
    return str(value)


ACTIONS.add("assign", "assign to an agent: <agent id>", checks.assigning("assign", "assignee"))
ACTIONS.add("unassign", "remove the assigned agent: true", checks.unassigning("unassign", {}))


@ACTIONS.action("update", "PATCH ticket fields: {field: value}")
def _update(value: Any) -> tuple[str, dict[str, Any]]:
    return "update", _fields(value, "update", UPDATE_FIELDS, "{priorityName: High}")


@ACTIONS.action("bulk_update", "bulk update of this ticket: {statusId, ...}")
def _bulk_update(value: Any) -> tuple[str, dict[str, Any]]:
    params = _fields(value, "bulk_update", BULK_UPDATE_FIELDS, "{statusId: <status id>}")
    return "bulk_update", params


def _new_ticket(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise ActionError(
            f"{what}: expects a mapping of ticket fields, e.g. "
            "{title: 'Follow-up: {{ticket.title}}'}, "
            f"got {kind_of(value)}",
            accepted=CREATE_FIELDS,
        )
    if "title" not in value:
        raise ActionError(f"{what}: a new ticket needs a title", accepted=CREATE_FIELDS)

    def check(name: str, item: Any) -> Any:
        return _field(name, item, what, templates=True)

    return checks.fields(value, what, CREATE_FIELDS, "{title: ...}", check)


@ACTIONS.action("create_ticket", "create a ticket: {title, ...}")
def _create_ticket(value: Any) -> tuple[str, dict[str, Any]]:
    return "create_tickets", {"tickets": [_new_ticket(value, "create_ticket")], "stopOnError": True}


@ACTIONS.action("create_tickets", "create tickets: [{title, ...}]")
def _create_tickets(value: Any) -> tuple[str, dict[str, Any]]:
    stop = True
    items = value
    if isinstance(value, Mapping):
        extra = sorted(set(value) - {"tickets", "stopOnError"})
        if extra:
            raise ActionError(
                f"create_tickets: unknown key {extra[0]!r}; write a list of tickets, or "
                "{tickets: [...], stopOnError: true|false}",
                accepted=("tickets", "stopOnError"),
                key=extra[0],
            )
        stop = value.get("stopOnError", True)
        if not isinstance(stop, bool):
            raise ActionError(
                f"create_tickets.stopOnError: expects true or false, got {kind_of(stop)}",
                key="stopOnError",
            )
        items = value.get("tickets")
    if not isinstance(items, list) or not items:
        raise ActionError(
            f"create_tickets: expects a non-empty list of tickets, got {kind_of(items)}"
        )
    tickets = [_new_ticket(item, f"create_tickets[{i}]") for i, item in enumerate(items)]
    return "create_tickets", {"tickets": tickets, "stopOnError": stop}


# ---- planning ----


@dataclass
class _Slot:
    """One field, or one group of fields that travel together, as the latest rule set it."""

    values: dict[str, Any]
    rule: str
    #: The neutral value of a neutral action (set_status, set_priority), for idempotence.
    neutral: str | None = None


@dataclass
class _Changes:
    """Accumulates fields across rules; later rules win, conflicts are noted."""

    slots: dict[str, _Slot] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def set(self, values: dict[str, Any], rule: str, neutral: str | None = None) -> None:
        groups: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            groups.setdefault(_SLOT_OF.get(name, name), {})[name] = value
        for key, group in groups.items():
            previous = self.slots.get(key)
            if previous is not None and previous.values != group:
                self.notes.append(
                    planning.override_note(
                        key, _show_group(group), _show_group(previous.values), rule, previous.rule
                    )
                )
            self.slots[key] = _Slot(group, rule, neutral if key in SLOTS else None)


def _show_group(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {planning.show(v)}" for k, v in values.items())


def _same_name(current: str | None, wanted: Any) -> bool:
    return (
        isinstance(current, str)
        and isinstance(wanted, str)
        and current.strip().casefold() == wanted.strip().casefold()
    )


#: Per slot: the id field, the name field, how to read the ticket's name, name → neutral value.
_NAMED: Mapping[str, tuple[str, str, Callable[[Mapping[str, Any]], str | None], Any]] = {
    "status": ("statusId", "statusName", status_name, neutral_status),
    "priority": ("priorityId", "priorityName", priority_name, neutral_priority),
}


def _held(key: str, slot: _Slot, ticket: Mapping[str, Any]) -> bool:
    """True when the event's ticket already shows what the slot sets."""
    values = slot.values
    if key in _NAMED:
        id_key, name_key, name_of, to_neutral = _NAMED[key]
        # Thena uses the id when both are given, so only the id decides then.
        if id_key in values:
            return id_key in ticket and ticket[id_key] == values[id_key]
        current = name_of(ticket)
        if _same_name(current, values.get(name_key)):
            return True
        return slot.neutral is not None and to_neutral(VENDOR, current) == slot.neutral
    if key == "assignee":
        if "assignedAgentId" in values:
            wanted = values["assignedAgentId"]
            if wanted is None:
                return _shows_unassigned(ticket)
            return bool(assignee_id(ticket) == wanted)
        agent = ticket.get("assignedAgent")
        email = ticket.get("assignedAgentEmail")
        if email is None and isinstance(agent, Mapping):
            email = agent.get("email")
        return _same_name(email, values.get("assignedAgentEmail"))
    return key in ticket and planning.same(ticket[key], values[key])


def _shows_unassigned(ticket: Mapping[str, Any]) -> bool:
    if "assignedAgentId" in ticket:
        return ticket["assignedAgentId"] is None
    return "assignedAgent" in ticket and ticket["assignedAgent"] is None


def _resolve_times(params: Mapping[str, Any], event: Event) -> dict[str, Any]:
    out = dict(params)
    for name in _TIME_FIELDS & set(params):
        if isinstance(out[name], str) and not tpl.has_placeholder(out[name]):
            try:
                moment = parse_instant(out[name], sign="future").resolve(event.created_at)
            except TimeSpecError:
                # A value copied from the event's ticket is sent as it came.
                continue
            out[name] = format_utc(moment)
    return out


@dataclass
class _Create:
    params: dict[str, Any]
    rule: str
    #: Position of this create action among its rule's create actions for the event.
    position: int


def plan(event: Event, decisions: Sequence[Decision]) -> Plan:
    """Turn the fired decisions for `event` into Thena API calls, in rule order."""
    patch = _Changes()
    bulk = _Changes()
    creates: list[_Create] = []
    notes: list[str] = []
    rule_order: dict[str, int] = {}
    for action in planning.fired_actions(decisions, rule_order):
        rule, params = action.rule, action.params
        if action.name == "set_status":
            neutral = params["status"]
            values = {"statusName": vendor_status(VENDOR, neutral)}
            patch.set(values, rule, neutral)
        elif action.name == "set_priority":
            neutral = params["priority"]
            patch.set({"priorityName": vendor_priority(VENDOR, neutral)}, rule, neutral)
        elif action.name == "assign":
            patch.set({"assignedAgentId": params["assignee"]}, rule)
        elif action.name == "unassign":
            patch.set({"assignedAgentId": None}, rule)
        elif action.name == "update":
            patch.set(_resolve_times(params, event), rule)
        elif action.name == "bulk_update":
            bulk.set(dict(params), rule)
        elif action.name == "create_tickets":
            position = sum(1 for c in creates if c.rule == rule)
            creates.append(_Create(params, rule, position))
        else:
            notes.append(planning.foreign_note(rule, action.name, "a Thena"))
    notes.extend(patch.notes)
    notes.extend(bulk.notes)
    calls: list[ApiCall] = []
    if (patch.slots or bulk.slots) and not event.ticket_id:
        notes.append("the event names no ticket; ticket changes dropped")
    else:
        calls.extend(_changes_call(event, patch, "PATCH", rule_order, notes))
        calls.extend(_changes_call(event, bulk, "BULK", rule_order, notes))
        notes.extend(_cross_notes(patch, bulk))
    for create in creates:
        call = _create_call(event, create, notes)
        if call is not None:
            calls.append(call)
    return Plan(calls=calls, notes=notes)


def _changes_call(
    event: Event, changes: _Changes, kind: str, rule_order: dict[str, int], notes: list[str]
) -> list[ApiCall]:
    body: dict[str, Any] = {}
    rules: set[str] = set()
    for key, slot in changes.slots.items():
        if _held(key, slot, event.ticket):
            notes.append(planning.held_note(key, _show_group(slot.values), slot.rule))
            continue
        body.update(slot.values)
        rules.add(slot.rule)
    if not body:
        return []
    ordered = planning.in_rule_order(rules, rule_order)
    if kind == "PATCH":
        path, body = f"/tickets/{event.ticket_id}", copy.deepcopy(body)
    else:
        path, body = BULK_PATH, {"ticketIds": [event.ticket_id], **copy.deepcopy(body)}
    return [planning.ticket_call(VENDOR, event, "PATCH", path, body, ordered)]


def _cross_notes(patch: _Changes, bulk: _Changes) -> list[str]:
    notes = []
    for key, slot in bulk.slots.items():
        other = patch.slots.get(key)
        if other is not None and other.values != slot.values:
            notes.append(
                f"{key}: set by rule {other.rule!r} (update) and rule {slot.rule!r} "
                "(bulk_update); both are sent, the bulk update last"
            )
    return notes


def _create_call(event: Event, create: _Create, notes: list[str]) -> ApiCall | None:
    tickets: list[dict[str, Any]] = []
    for index, wanted in enumerate(create.params["tickets"]):
        ticket = tpl.render(wanted, tpl.sources_of(event.ticket, event.common))
        where = f"rule {create.rule!r}: new ticket {index}"
        title = ticket.get("title")
        if not isinstance(title, str) or not title.strip():
            notes.append(f"{where} has an empty title after filling in the event's ticket; dropped")
            continue
        for name in sorted(set(wanted) - set(ticket)):
            notes.append(f"{where}: {name} left out (the event's ticket has no value for it)")
        if "teamId" not in ticket and isinstance(event.ticket.get("teamId"), str):
            ticket["teamId"] = event.ticket["teamId"]
        ticket = _resolve_times(ticket, event)
        ticket.setdefault(
            "deDuplicationKey", dedup_key(event.id, create.rule, create.position, index)
        )
        tickets.append(ticket)
    if not tickets:
        return None
    return planning.ticket_call(
        VENDOR,
        event,
        "POST",
        BULK_PATH,
        {"tickets": tickets, "options": {"stopOnError": create.params["stopOnError"]}},
        (create.rule,),
    )


def dedup_key(event_id: str, rule: str, position: int, index: int) -> str:
    """The `deDuplicationKey` of a ticket a rule creates: the same for every re-run of the event."""
    digest = hashlib.sha256(f"{event_id}\x1f{rule}\x1f{position}\x1f{index}".encode()).hexdigest()
    return f"ticketwire-{digest[:32]}"


#: Neutral actions Thena cannot do, and why (shown by `ticketwire check`).
LACKS: Mapping[str, str] = {
    "add_note": (
        "Thena documents no API that adds a comment or note to an existing ticket (a first "
        "comment only comes with a new ticket: commentContent in create_ticket)"
    ),
}

SPEC = ACTIONS.spec(plan, TICKET_FIELDS, events=OWN_EVENTS, lacks=LACKS)
