"""Checks every vendor's actions make on what a rule wrote: texts, closed sets, JSON, fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from ticketwire.engine.actions import ActionError, Normalizer
from ticketwire.engine.durations import TimeSpecError, format_utc, parse_instant
from ticketwire.engine.nodes import kind_of, suggest

#: Check one field's value as a rule wrote it; return it as it is sent.
FieldCheck = Callable[[str, Any], Any]


def text(value: Any, what: str, *, key: str | None = None) -> str:
    """A non-empty string, trimmed."""
    if not isinstance(value, str) or not value.strip():
        raise ActionError(f"{what}: expects a non-empty string, got {kind_of(value)}", key=key)
    return value.strip()


def enum(value: Any, what: str, allowed: Sequence[str], *, key: str | None = None) -> str:
    """One of `allowed`."""
    if value not in allowed:
        raise ActionError(
            f"{what}: {value!r} is not one of the accepted values{suggest(value, allowed)}",
            accepted=allowed,
            key=key,
        )
    return str(value)


def json_value(value: Any, what: str, key: str | None) -> Any:
    """`value` as JSON can carry it: dates and times as ISO 8601 text."""
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [json_value(v, what, key) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_value(v, what, key) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ActionError(f"{what}: cannot send {kind_of(value)}", key=key)


def future_instant(value: Any, what: str, *, key: str | None = None) -> str | None:
    """A time to come: ISO 8601 or a delay such as `+48h`, as written; None stays None."""
    if value is None:
        return None
    try:
        return parse_instant(value, sign="future").text
    except TimeSpecError as exc:
        raise ActionError(f"{what}: {exc}", key=key) from None


def fields(
    value: Any, what: str, accepted: Sequence[str], example: str, check: FieldCheck
) -> dict[str, Any]:
    """A non-empty mapping of `accepted` field names, each value passed through `check`."""
    if not isinstance(value, Mapping) or not value:
        raise ActionError(
            f"{what}: expects a mapping of fields, e.g. {what}: {example}, got {kind_of(value)}",
            accepted=accepted,
        )
    params: dict[str, Any] = {}
    for name, item in value.items():
        if name not in accepted:
            raise ActionError(
                f"{what}: unknown field {name!r}{suggest(name, accepted)}",
                accepted=accepted,
                key=str(name),
            )
        params[name] = check(name, item)
    return params


def agent(value: Any) -> str:
    """The agent id of `assign`, which never unassigns."""
    if value is None:
        raise ActionError("assign: expects an agent id; to remove the assignee use unassign: true")
    return text(value, "assign")


def unassign(value: Any) -> None:
    """`unassign` takes only `true`."""
    if value is not True:
        raise ActionError(f"unassign: write unassign: true, got {value!r}")


def assigning(action: str, field: str) -> Normalizer:
    """The normaliser of `assign`: `action` setting `field` to the agent id the rule wrote."""

    def normalize(value: Any) -> tuple[str, dict[str, Any]]:
        return action, {field: agent(value)}

    return normalize


def unassigning(action: str, params: Mapping[str, Any]) -> Normalizer:
    """The normaliser of `unassign`: `action` with `params`, once the rule wrote `true`."""

    def normalize(value: Any) -> tuple[str, dict[str, Any]]:
        unassign(value)
        return action, dict(params)

    return normalize
