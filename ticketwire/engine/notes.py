"""The `add_note` action: an internal note on the ticket, its text a template (pure).

Rules write `add_note: "Escalated because priority is {{ticket.priority}}"` or
`add_note: {text: "…", <option>: …}` (options only where a helpdesk documents one, e.g. cStar's
`sender`). Each vendor validates with `note_params` and fills the text in with `note_text` when
it plans the event. Notes are never merged with other calls nor dropped as already done: two
notes are two calls, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ticketwire.calls import ApiCall
from ticketwire.engine import templates
from ticketwire.engine.actions import Action, ActionError
from ticketwire.engine.nodes import kind_of, suggest
from ticketwire.engine.planning import ticket_call
from ticketwire.event import Event

NAME = "add_note"
#: Longest note text accepted in a rule (helpdesks document no limit; this catches mistakes).
MAX_TEXT = 10_000

#: Check one option's value; return it as it is sent.
OptionCheck = Callable[[Any], Any]


def note_params(
    value: Any,
    *,
    options: Mapping[str, OptionCheck] | None = None,
    ticket_fields: frozenset[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Validate what a rule wrote for `add_note`; return `("add_note", {"text": …, **options})`."""
    options = options or {}
    accepted = ("text", *options)
    if isinstance(value, str):
        params: dict[str, Any] = {"text": value}
    elif isinstance(value, Mapping):
        extra = [str(k) for k in value if k not in accepted]
        if extra:
            raise ActionError(
                f"{NAME}: unknown key {extra[0]!r}{suggest(extra[0], accepted)}; write "
                f"{NAME}: <text> or {NAME}: {{{', '.join(accepted)}}}",
                accepted=accepted,
                key=extra[0],
            )
        if "text" not in value:
            raise ActionError(f"{NAME}: the note needs a text", accepted=accepted)
        params = {"text": value["text"]}
        for name, check in options.items():
            if name in value:
                params[name] = check(value[name])
    else:
        raise ActionError(
            f"{NAME}: expects the note's text, e.g. {NAME}: "
            f'"Escalated because priority is {{{{ticket.priority}}}}", got {kind_of(value)}',
            accepted=accepted,
        )
    text = params["text"]
    if not isinstance(text, str) or not text.strip():
        raise ActionError(
            f"{NAME}: the text must be non-empty, got {kind_of(text)}",
            key="text" if isinstance(value, Mapping) else None,
        )
    if len(text) > MAX_TEXT:
        raise ActionError(
            f"{NAME}: the text is {len(text)} characters; at most {MAX_TEXT}",
            key="text" if isinstance(value, Mapping) else None,
        )
    try:
        templates.check(text, ticket_fields=ticket_fields)
    except templates.TemplateError as exc:
        raise ActionError(
            f"{NAME}: {exc}", key="text" if isinstance(value, Mapping) else None
        ) from None
    return NAME, params


def is_note(action: Action) -> bool:
    """True for an `add_note` action with its text."""
    return action.name == NAME and isinstance(action.params.get("text"), str)


def note_text(params: Mapping[str, Any], event: Event) -> str:
    """The note's text with the event's ticket filled in, trimmed."""
    sources = templates.sources_of(event.ticket, event.common)
    return templates.render_text(str(params["text"]), sources).strip()


def note_call(vendor: str, event: Event, body: dict[str, Any], rule: str) -> ApiCall:
    """The call that adds one note to the event's ticket: `POST /tickets/{id}/messages`."""
    return ticket_call(vendor, event, "POST", f"/tickets/{event.ticket_id}/messages", body, (rule,))


def note_action_call(
    vendor: str,
    event: Event,
    params: Mapping[str, Any],
    rule: str,
    body_of: Callable[[str, Mapping[str, Any]], dict[str, Any]],
    notes: list[str],
) -> ApiCall | None:
    """The call for one `add_note`, or None (noted) when its text comes out empty."""
    text = note_text(params, event)
    if not text:
        notes.append(f"rule {rule!r}: the note is empty once the ticket is filled in; dropped")
        return None
    return note_call(vendor, event, body_of(text, params), rule)


def is_note_call(call: ApiCall) -> bool:
    """True for a call `note_call` built: each one sent is one more note on the ticket."""
    return call.method == "POST" and call.path == f"/tickets/{call.ticket_id}/messages"
