"""A ticket's messages: emails and internal notes, as `GET/POST /tickets/{id}/messages` show them.

Documented (research §1.9.6): the list returns `email` and `internal_note` rows oldest first, the
in-app timeline, with draft outbound messages left out; `types` filters by a comma-separated list
of `email` and/or `internal_note` (default both). The API only adds internal notes
`{"type": "internal_note", body_html, body_text}`; outbound replies are not supported. Row fields
seen: `id, direction, type, from_address, to_addresses, cc_addresses, …` (the rest was cut off).

Assumed here: the remaining row fields (`ticket_id, subject, body_html, body_text, is_draft,
author_id, created_at`); a note's `direction` is null; a note with only one of its bodies gets
the other derived (text escaped into HTML, HTML stripped to text); the POST answers 201
`{data: Message}` and the list `{data, meta}` on one page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.common.records import Record
from simulator.inboxops.problems import bad_request

MESSAGE_TYPES: tuple[str, ...] = ("email", "internal_note")
DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")
NOTE_FIELDS = frozenset({"type", "body_html", "body_text"})
#: Fields an agent or customer may give a message through `/_sim` (drafts and emails too).
AGENT_FIELDS = NOTE_FIELDS | {
    "direction",
    "from_address",
    "to_addresses",
    "cc_addresses",
    "subject",
    "is_draft",
    "author_id",
}
MAX_BODY = 100_000
_TAG = re.compile(r"<[^>]*>")
_BREAK = re.compile(r"<br\s*/?>|</p>\s*<p[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class Message(Record):
    """One row of a ticket's timeline; its JSON form is the API row."""

    id: str
    ticket_id: str
    type: str
    direction: str | None
    body_html: str
    body_text: str
    created_at: str
    from_address: str | None = None
    to_addresses: tuple[str, ...] = ()
    cc_addresses: tuple[str, ...] = ()
    subject: str | None = None
    is_draft: bool = False
    author_id: str | None = None
    #: Order of arrival, to keep messages of the same millisecond in timeline order.
    seq: int = field(default=0, compare=False)

    json_fields = (
        "id",
        "ticket_id",
        "type",
        "direction",
        "from_address",
        "to_addresses",
        "cc_addresses",
        "subject",
        "body_html",
        "body_text",
        "is_draft",
        "author_id",
        "created_at",
    )


def parse_types(raw: str | None) -> tuple[str, ...]:
    """The `types` filter: comma-separated `email` / `internal_note`; absent or empty means both."""
    if raw is None or not raw.strip():
        return MESSAGE_TYPES
    wanted: list[str] = []
    for item in raw.split(","):
        name = item.strip()
        if not name:
            continue
        if name not in MESSAGE_TYPES:
            raise bad_request(
                "types", f"{name!r} is not a message type; use {' and/or '.join(MESSAGE_TYPES)}"
            )
        if name not in wanted:
            wanted.append(name)
    return tuple(wanted) or MESSAGE_TYPES


def timeline(messages: Iterable[Message], types: Iterable[str]) -> list[dict[str, Any]]:
    """The rows the list answers: oldest first, drafts left out, only the given types."""
    kinds = frozenset(types)
    rows = [m for m in messages if m.type in kinds and not m.is_draft]
    rows.sort(key=lambda m: (m.created_at, m.seq))
    return [m.to_json() for m in rows]


def note_bodies(body: Mapping[str, Any]) -> tuple[str, str]:
    """Validate a `POST …/messages` body; return the note's `(body_html, body_text)`."""
    kind = body.get("type")
    if kind is None:
        raise bad_request("type", 'is required; the API adds only {"type": "internal_note"}')
    if kind != "internal_note":
        raise bad_request(
            "type",
            f"must be internal_note (got {kind!r}); outbound replies are not supported "
            "through the API",
        )
    for key in body:
        if key not in NOTE_FIELDS:
            raise bad_request(
                key, f"unknown field for a note; accepted fields: {', '.join(sorted(NOTE_FIELDS))}"
            )
    return bodies(body)


def bodies(body: Mapping[str, Any]) -> tuple[str, str]:
    """`(body_html, body_text)` of a message, deriving a missing one from the other."""
    given: dict[str, str] = {}
    for name in ("body_html", "body_text"):
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if not isinstance(value, str):
            raise bad_request(name, "must be a string")
        if len(value) > MAX_BODY:
            raise bad_request(name, f"must be at most {MAX_BODY} characters")
        given[name] = value
    text = given.get("body_text")
    markup = given.get("body_html")
    if not (text or "").strip() and not _plain(markup or "").strip():
        raise bad_request("body_text", "a message needs a non-empty body_text or body_html")
    if markup is None:
        markup = "<p>" + html.escape(text or "").replace("\n", "<br>") + "</p>"
    if text is None:
        text = _plain(markup)
    return markup, text


def _plain(markup: str) -> str:
    return html.unescape(_TAG.sub("", _BREAK.sub("\n", markup))).strip()


def addresses(value: Any, name: str) -> tuple[str, ...]:
    """A list of email addresses, or 400 naming the field."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(a, str) and "@" in a for a in value):
        raise bad_request(name, "must be an array of email addresses")
    return tuple(value)
