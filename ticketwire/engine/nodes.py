"""Rule values with their source line, and the helpers that turn mistakes into clear errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ticketwire.errors import RuleConfigError


@dataclass(frozen=True, eq=False)
class Node:
    """One value of a rule file: a mapping (`dict[str, Node]`), a list of nodes, or a scalar.

    `line` is 1-based, or None for rules written in Python (no file position to point at).
    """

    value: Any
    line: int | None = None
    key_lines: Mapping[str, int | None] = field(default_factory=dict)

    @property
    def is_map(self) -> bool:
        """True for a mapping node."""
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        """True for a sequence node."""
        return isinstance(self.value, list)

    def key_line(self, key: str) -> int | None:
        """Line of `key` in this mapping, falling back to the mapping's own line."""
        line = self.key_lines.get(key)
        return self.line if line is None else line

    def plain(self) -> Any:
        """The value with every nested node unwrapped into plain dicts and lists."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def kind(self) -> str:
        """Name the value's type the way a rule author thinks of it."""
        return kind_of(self.value)

    @classmethod
    def from_plain(cls, value: Any) -> Node:
        """Wrap a plain Python value (e.g. a `when=` mapping) as a node without lines."""
        if isinstance(value, Mapping):
            return cls({str(k): cls.from_plain(v) for k, v in value.items()})
        if isinstance(value, list | tuple):
            return cls([cls.from_plain(v) for v in value])
        return cls(value)


def kind_of(value: Any) -> str:
    """Name a value's type in rule-author terms: `a string`, `a list`, `true/false`..."""
    if isinstance(value, Node):
        value = value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime | date):
        return "a date"
    if isinstance(value, dict | Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def suggest(got: object, accepted: Iterable[str]) -> str:
    """Return `; did you mean 'x'?` for the closest accepted value, or an empty string."""
    if not isinstance(got, str):
        return ""
    close = difflib.get_close_matches(got, list(accepted), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown(what: str, got: object, accepted: Iterable[str], line: int | None) -> RuleConfigError:
    """Build the error for a value outside a closed set, with a did-you-mean hint."""
    names = list(accepted)
    return RuleConfigError(
        f"unknown {what} {got!r}{suggest(got, names)}", line=line, accepted=names
    )


def located(exc: RuleConfigError, *, file: str | None, rule: str | None) -> RuleConfigError:
    """Return `exc` with the file and rule filled in where it did not know them."""
    return RuleConfigError(
        exc.message,
        file=exc.file or file,
        line=exc.line,
        rule=exc.rule or rule,
        accepted=exc.accepted,
    )
