"""The vendor-neutral vocabulary, and how each helpdesk's words map onto it.

Rules that should work on every helpdesk read `common.status`, `common.priority`,
`common.assignee`, `common.tags` and `common.subject`, and act with `set_status`, `set_priority`,
`assign`, `unassign`, `add_tags` and `remove_tags` using the neutral values below, and `add_note`
(`ticketwire.engine.notes`; a helpdesk without it says why in its `VendorSpec.lacks`). Each
vendor's bundle carries its `Vocabulary`, translated through here both ways.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

NEUTRAL_STATUSES: tuple[str, ...] = ("new", "open", "in_progress", "waiting", "resolved", "closed")
NEUTRAL_PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
#: Keys of `Event.common`, the neutral view every vendor's parser fills in.
COMMON_FIELDS: tuple[str, ...] = ("status", "priority", "assignee", "tags", "subject")


@dataclass(frozen=True)
class Vocabulary:
    """One helpdesk's status and priority values against the neutral ones."""

    #: Neutral status → the vendor's own status value.
    status_to: Mapping[str, str]
    #: The vendor's status (lower-cased) → neutral status; values not listed map to None.
    status_from: Mapping[str, str]
    #: Neutral priority → the vendor's own priority value.
    priority_to: Mapping[str, str]
    #: The vendor's priority (lower-cased) → neutral priority.
    priority_from: Mapping[str, str]


_CACHE: dict[str, Vocabulary] = {}


def vocabulary(vendor: str) -> Vocabulary:
    """The vocabulary of `vendor`'s bundle; raise `KeyError` for a vendor not registered."""
    known = _CACHE.get(vendor)
    if known is None:
        from ticketwire.vendors.registry import derived

        known = derived(_CACHE, vendor, lambda v: v.vocabulary)
    return known


class _ByVendor(Mapping[str, Mapping[str, str]]):
    """One direction of every registered vendor's vocabulary, looked up on use."""

    def __init__(self, pick: Callable[[Vocabulary], Mapping[str, str]]) -> None:
        self._pick = pick

    def __getitem__(self, vendor: str) -> Mapping[str, str]:
        return self._pick(vocabulary(vendor))

    def __iter__(self) -> Iterator[str]:
        from ticketwire.vendors.registry import names

        return iter(names())

    def __len__(self) -> int:
        from ticketwire.vendors.registry import names

        return len(names())


#: Neutral status → each vendor's own status value (Thena: the status *name*, matched per team).
STATUS_TO_VENDOR: Mapping[str, Mapping[str, str]] = _ByVendor(lambda v: v.status_to)
#: Each vendor's status → neutral status (lower-cased vendor values; unknown values map to None).
STATUS_FROM_VENDOR: Mapping[str, Mapping[str, str]] = _ByVendor(lambda v: v.status_from)
#: Neutral priority → each vendor's own priority value (Thena: the priority *name*).
PRIORITY_TO_VENDOR: Mapping[str, Mapping[str, str]] = _ByVendor(lambda v: v.priority_to)
PRIORITY_FROM_VENDOR: Mapping[str, Mapping[str, str]] = _ByVendor(lambda v: v.priority_from)


def neutral_status(vendor: str, value: Any) -> str | None:
    """Map a vendor's status value to the neutral vocabulary (None when unknown or absent)."""
    if not isinstance(value, str):
        return None
    return vocabulary(vendor).status_from.get(value.strip().lower())


def neutral_priority(vendor: str, value: Any) -> str | None:
    """Map a vendor's priority value to the neutral vocabulary (None when unknown or absent)."""
    if not isinstance(value, str):
        return None
    return vocabulary(vendor).priority_from.get(value.strip().lower())


def vendor_status(vendor: str, neutral: str) -> str:
    """The vendor's own value for a neutral status."""
    return vocabulary(vendor).status_to[neutral]


def vendor_priority(vendor: str, neutral: str) -> str:
    """The vendor's own value for a neutral priority."""
    return vocabulary(vendor).priority_to[neutral]
