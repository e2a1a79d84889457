"""What an InboxOps rule's `remind_at` will do, in words, for `ticketwire check` (pure).

InboxOps applies `remind_at` only "when PATCH also sets status to waiting (status or
status_id)", and a reminder that falls due moves the ticket to `remind_transition_status_id`
(or the waiting status's own target, Open by default). A rule author who writes `remind_at`
alone should learn that before the rule runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ticketwire.engine import Rule
from ticketwire.vendors.inboxops.actions import REMINDER_FIELDS, VENDOR

APPLIES = "InboxOps applies a reminder only when the PATCH also sets status to waiting"
FALLS_DUE = (
    "when it falls due, InboxOps moves the ticket to {target}; a status change before then "
    "drops the reminder"
)
DEFAULT_TARGET = "the waiting status's reminder target (Open by default)"


def reminder_notes(rules: Iterable[Rule]) -> list[str]:
    """One line per InboxOps rule that sets a reminder, saying what the reminder will do."""
    notes: list[str] = []
    for rule in rules:
        if rule.vendor != VENDOR:
            continue
        text = _explain_actions(rule) if rule.handler is None else _explain_code(rule.handler)
        if text:
            notes.append(f"{rule.source}: rule {rule.name!r}: {text}")
    return notes


def _explain_actions(rule: Rule) -> str:
    fields: dict[str, Any] = {}
    for action in rule.actions:
        if action.name == "update":
            fields.update(action.params)
    if not any(name in fields for name in REMINDER_FIELDS):
        return ""
    return _explain(fields)


def _explain(fields: Mapping[str, Any]) -> str:
    when = fields.get("remind_at", "unchanged")
    target = fields.get("remind_transition_status_id")
    what = f"remind_at {_show(when)}"
    if "status" in fields and fields["status"] != "waiting":
        return (
            f"{what} is never applied: {APPLIES}, and this rule sets status "
            f"{fields['status']!r}; ticketwire drops it"
        )
    if "status_id" in fields:
        sent = (
            f"it goes with status_id {fields['status_id']!r}, which must be a custom status of "
            "type waiting"
        )
    elif "status" in fields:
        sent = "it goes with the rule's status 'waiting'"
    elif when is None:
        return (
            f"{what} clears the reminder of a waiting ticket ({APPLIES}, so the ticket's own "
            "waiting status goes with it); a ticket in another status has none, and nothing is sent"
        )
    else:
        sent = (
            "ticketwire sends the ticket's own waiting status with it, or status 'waiting' for a "
            "ticket in another status, which moves that ticket to waiting"
        )
    moves = FALLS_DUE.format(
        target=f"status {target!r}" if target else DEFAULT_TARGET,
    )
    return f"{what}: {APPLIES}; {sent}; {moves}"


def _explain_code(handler: Callable[..., Any]) -> str:
    # A Python rule's actions are known only when it runs; its code says whether it reminds.
    try:
        code = inspect.getsource(handler)
    except (OSError, TypeError):
        return ""
    if "remind_at" not in code:
        return ""
    target = f"its remind_transition_status_id, else {DEFAULT_TARGET}"
    return (
        f"its code sets remind_at: {APPLIES}, so ticketwire sends the ticket's own waiting status "
        "with it unless the rule sets a status (a status other than waiting drops the reminder, "
        f"and a ticket in another status moves to waiting); {FALLS_DUE.format(target=target)}"
    )


def _show(value: Any) -> str:
    return "null" if value is None else str(value)
