"""Acme Desk's one action, `set_status: <neutral status>`, planned as `PATCH /tickets/{id}`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ticketwire.calls import ApiCall
from ticketwire.engine.actions import (
    ActionError,
    ActionSpec,
    Plan,
    VendorSpec,
)
from ticketwire.event import Event
from ticketwire.vocabulary import NEUTRAL_STATUSES, vendor_status

if TYPE_CHECKING:
    from ticketwire.engine.evaluate import Decision

VENDOR = "acmedesk"


def _set_status(value: Any) -> tuple[str, dict[str, Any]]:
    if value not in NEUTRAL_STATUSES:
        raise ActionError(
            f"set_status: expects a neutral status, got {value!r}", accepted=NEUTRAL_STATUSES
        )
    return "set_status", {"status": vendor_status(VENDOR, value)}


def plan(event: Event, decisions: Sequence[Decision]) -> Plan:
    """One PATCH of the last status the fired rules set, unless the ticket already has it."""
    wanted: tuple[str, str] | None = None
    for decision in decisions:
        if decision.fired:
            for action in decision.actions:
                wanted = (action.params["status"], action.rule)
    if wanted is None:
        return Plan()
    status, rule = wanted
    if event.ticket.get("status") == status:
        return Plan(notes=[f"status already {status!r}; dropped (rule {rule!r})"])
    call = ApiCall(
        vendor=VENDOR,
        method="PATCH",
        path=f"/tickets/{event.ticket_id}",
        body={"status": status},
        ticket_id=event.ticket_id,
        rules=(rule,),
        event_id=event.id,
    )
    return Plan(calls=[call])


SPEC = VendorSpec(
    vendor=VENDOR,
    actions={
        "set_status": ActionSpec("set_status", "set the status: a neutral status", _set_status)
    },
    planner=plan,
)
