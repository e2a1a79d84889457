"""Text templates in action values: `{{ticket.<field>}}` and `{{common.<field>}}` (pure).

A placeholder names a dotted path into the event's ticket as the helpdesk sent it
(`{{ticket.customer.email}}`) or into its neutral view (`{{common.priority}}`, see
`ticketwire.vocabulary.COMMON_FIELDS`). Nothing else is interpreted: no expressions, filters or
escapes. `check` runs when a rule is loaded, so a bad placeholder is reported with the rule's
file and line; `render` and `render_text` fill placeholders in when an event is planned.

Rendering: a value that is exactly one placeholder takes the field's value as it is (`OMIT`
when missing or null, so the caller can leave the field out); inside longer text a missing value
reads as empty, true/false and numbers as JSON, objects and lists as compact JSON.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from ticketwire.vocabulary import COMMON_FIELDS

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PATH = re.compile(r"^(ticket|common)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)$")
#: What a whole-placeholder value renders to when the field is missing or null.
OMIT: Any = object()
_EXAMPLE = "{{ticket.<field>}} or {{common.<field>}}, e.g. {{ticket.priority}}"


class TemplateError(ValueError):
    """A template in a rule is malformed or names a field that cannot exist."""


def has_placeholder(value: Any) -> bool:
    """True for a string holding at least one `{{…}}` placeholder."""
    return isinstance(value, str) and PLACEHOLDER.search(value) is not None


def check(value: Any, *, ticket_fields: frozenset[str] | None = None) -> None:
    """Raise `TemplateError` for a placeholder other than ticket/common paths, or stray braces.

    Strings inside lists and mappings are checked too. `ticket_fields`, when given, are the
    top-level ticket fields a placeholder may start with; `common.` takes the neutral fields.
    """
    if isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            _check_path(match.group(0), match.group(1), ticket_fields)
        rest = PLACEHOLDER.sub("", value)
        if "{{" in rest or "}}" in rest:
            raise TemplateError(f"unbalanced '{{{{' or '}}}}' in {value!r}")
    elif isinstance(value, list | tuple):
        for item in value:
            check(item, ticket_fields=ticket_fields)
    elif isinstance(value, Mapping):
        for item in value.values():
            check(item, ticket_fields=ticket_fields)


def _check_path(text: str, path: str, ticket_fields: frozenset[str] | None) -> None:
    found = _PATH.match(path)
    if found is None:
        raise TemplateError(f"unknown placeholder {text!r}; write {_EXAMPLE}")
    root, first = found.group(1), found.group(2).split(".")[1]
    if root == "common" and first not in COMMON_FIELDS:
        raise TemplateError(
            f"unknown placeholder {text!r}: the neutral fields are "
            + ", ".join(f"common.{f}" for f in COMMON_FIELDS)
        )
    if root == "ticket" and ticket_fields is not None and first not in ticket_fields:
        close = sorted(ticket_fields)
        raise TemplateError(
            f"unknown placeholder {text!r}: this helpdesk's tickets have no field {first!r}; "
            f"known fields: {', '.join(close)}"
        )


def lookup(sources: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted `root.field…` path of `sources`; None when any part is missing."""
    value: Any = sources
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def render(value: Any, sources: Mapping[str, Any]) -> Any:
    """Fill placeholders in strings (inside lists and mappings too); `OMIT` marks a dropped value."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole is not None:
            found = lookup(sources, whole.group(1))
            return OMIT if found is None else copy.deepcopy(found)
        return render_text(value, sources)
    if isinstance(value, list):
        items = [render(v, sources) for v in value]
        return [v for v in items if v is not OMIT]
    if isinstance(value, Mapping):
        rendered = {k: render(v, sources) for k, v in value.items()}
        return {k: v for k, v in rendered.items() if v is not OMIT}
    return value


def render_text(text: str, sources: Mapping[str, Any]) -> str:
    """Fill every placeholder of `text` inline: always text, a missing value reads as empty."""
    return PLACEHOLDER.sub(lambda m: inline(lookup(sources, m.group(1))), text)


def inline(value: Any) -> str:
    """How a value reads inside text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sources_of(ticket: Mapping[str, Any], common: Mapping[str, Any]) -> dict[str, Any]:
    """The roots placeholders read from: the event's ticket and its neutral view."""
    return {"ticket": ticket, "common": common}
