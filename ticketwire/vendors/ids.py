"""Ids that name events, tickets and tenants: checked once, before they become Redis keys and log text."""

from __future__ import annotations

from typing import Annotated

from pydantic import PlainValidator

from ticketwire.errors import MalformedEvent

#: Longest id accepted (event, ticket and tenant ids become Redis keys; real ones are < 64).
MAX_ID_CHARS = 256
# An integer of more bits than this has more digits than MAX_ID_CHARS: refused before str().
_MAX_ID_BITS = MAX_ID_CHARS * 4


def id_problem(text: str) -> str | None:
    """Why `text` cannot name an event, ticket or tenant; None when it can."""
    if not text:
        return "must not be empty"
    if len(text) > MAX_ID_CHARS:
        return f"must be at most {MAX_ID_CHARS} characters, got {len(text)}"
    # Control characters (and lone surrogates) would forge log lines or fail to encode.
    if not text.isprintable():
        return "must not contain control or unprintable characters"
    return None


def checked(text: str, field: str) -> str:
    """`text` unchanged if it can name an event, ticket or tenant; else `MalformedEvent`."""
    problem = id_problem(text)
    if problem is not None:
        raise MalformedEvent(problem, field=field)
    return text


def _exact_id(value: object) -> str:
    # A float is never an id: 1e999999 and 2e999999 both read as inf, and 1.0 as "1.0".
    if type(value) is int:
        if value.bit_length() > _MAX_ID_BITS:
            raise ValueError(f"must be at most {MAX_ID_CHARS} characters")
        value = str(value)
    elif not isinstance(value, str):
        raise ValueError("must be a string or a whole number")
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: A pydantic field type: a string, or an exact integer kept as its digits, and nothing else.
Id = Annotated[str, PlainValidator(_exact_id)]
