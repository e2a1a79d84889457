"""`Record`: a dataclass whose JSON form is its fields by name; `Named`: a record with an id and a name."""

from __future__ import annotations

from dataclasses import Field, dataclass, fields
from datetime import datetime
from typing import Any, ClassVar

from simulator.common.clock import iso


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, datetime):
        return iso(value)
    return value


class Record:
    """Mixed into a dataclass whose `to_json` is every field by name (tuples as lists, times ISO)."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    #: The fields the JSON form shows, in its order; None shows every field in declaration order.
    json_fields: ClassVar[tuple[str, ...] | None] = None

    def to_json(self) -> dict[str, Any]:
        """The fields by name, in `json_fields` order."""
        names = self.json_fields or tuple(f.name for f in fields(self))
        return {name: _json_value(getattr(self, name)) for name in names}


@dataclass(frozen=True)
class Named(Record):
    """A record with an id and a name, the fields its JSON form starts with."""

    id: str
    name: str
