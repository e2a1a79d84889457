"""Steps every vendor's planner shares: walking fired actions, rule order, notes on what drops."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ticketwire.calls import ApiCall
from ticketwire.event import Event

if TYPE_CHECKING:
    from ticketwire.engine.actions import Action
    from ticketwire.engine.evaluate import Decision


def fired_actions(decisions: Sequence[Decision], order: dict[str, int]) -> Iterator[Action]:
    """The actions of the fired decisions, in rule order; `order` learns each rule's position."""
    for decision in decisions:
        if not decision.fired:
            continue
        order.setdefault(decision.rule.name, len(order))
        yield from decision.actions


def in_rule_order(rules: Iterable[str], order: Mapping[str, int]) -> tuple[str, ...]:
    """`rules` sorted by when they fired; unknown ones last."""
    return tuple(sorted(rules, key=lambda r: order.get(r, len(order))))


def ticket_call(
    vendor: str, event: Event, method: str, path: str, body: dict[str, Any], rules: tuple[str, ...]
) -> ApiCall:
    """A call about the event's ticket, made for `rules`."""
    return ApiCall(
        vendor=vendor,
        method=method,
        path=path,
        body=body,
        ticket_id=event.ticket_id,
        rules=rules,
        event_id=event.id,
    )


def ticket_patch(
    vendor: str, event: Event, body: dict[str, Any], rules: tuple[str, ...]
) -> ApiCall:
    """`PATCH /tickets/{id}` of the event's ticket, made for `rules`."""
    return ticket_call(vendor, event, "PATCH", f"/tickets/{event.ticket_id}", body, rules)


def show(value: Any) -> str:
    """A value as a note shows it: `null` or its repr."""
    return "null" if value is None else repr(value)


def same(current: Any, wanted: Any) -> bool:
    """Equal, without `True == 1`: a flag matches only a flag."""
    if isinstance(current, bool) or isinstance(wanted, bool):
        return isinstance(current, bool) and isinstance(wanted, bool) and current == wanted
    return bool(current == wanted)


def override_note(label: str, value: str, previous: str, rule: str, previous_rule: str) -> str:
    """The note for a later rule replacing an earlier rule's value (both already shown)."""
    return f"{label}: rule {rule!r} sets {value}, overriding {previous} from rule {previous_rule!r}"


def held_note(label: str, shown: str, rule: str) -> str:
    """The note for a change dropped because the ticket already has it."""
    return f"{label} already {shown}; dropped (rule {rule!r})"


def foreign_note(rule: str, action: str, helpdesk: str) -> str:
    """The note for an action the vendor's planner does not know; `helpdesk` as `a cStar`."""
    return f"rule {rule!r}: {action!r} is not {helpdesk} action; dropped"
