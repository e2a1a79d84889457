"""JSON as RFC 8259 defines it: Python's parsers also accept `NaN` and `Infinity`, which are not JSON."""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json

from ticketwire.errors import MalformedEvent


def loads(data: bytes | str, *, field: str | None = None) -> Any:
    """Parse strict JSON (UTF-8, no NaN/Infinity, no lone surrogates, nesting ≤ 200 levels)."""
    try:
        return from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        what = "body is" if field is None else "is a string but"
        raise MalformedEvent(f"{what} not valid JSON: {exc}", field=field) from None


def refuse_non_finite(body: bytes) -> None:
    """Raise `MalformedEvent` if `body` uses a `NaN` or `Infinity` literal.

    For bodies a lenient parser (pydantic's `model_validate_json`) already accepted: only a body
    that mentions one of the words, usually inside a string, is parsed a second time.
    """
    if b"NaN" in body or b"Infinity" in body:
        loads(body)
