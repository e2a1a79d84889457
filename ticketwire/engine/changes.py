"""What an event changed on its ticket, and the last-seen state that tells (pure, no I/O).

Where the helpdesk says what changed (cStar's `data.changes`, Thena's `previousTicket`), that is
used. Otherwise the event's ticket is compared with `Event.previous`: the values of the fields
rules read, as the last event applied for the ticket carried them (kept by the worker's state
store). The first event of a ticket never seen before has nothing to compare with: for
`ticket.created` every field counts as changed from null; for any other type changes are unknown
and no change operator holds.

The order of a ticket's events is decided here too (`order_key`, `MemoryTicketState`), in the
same way as the worker's Redis script, so a dry run sees what a worker would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ticketwire.engine.operators import MISSING, same
from ticketwire.event import Event
from ticketwire.vocabulary import COMMON_FIELDS

#: Why a change cannot be told for a ticket seen for the first time.
FIRST_SEEN = "first event seen for this ticket; no earlier state to compare"
#: Why a change cannot be told for a field the earlier state did not keep.
NOT_KEPT = "not kept in the earlier state (no rule read it when that event was handled)"
CREATED = "ticket.created"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class _Any:
    def __repr__(self) -> str:
        return "any value"


#: Default of `from_` / `to` in `changed()`: any value matches.
ANY: Any = _Any()


@dataclass(frozen=True)
class Change:
    """One field's value before and after an event, or why the earlier value is unknown."""

    old: Any
    new: Any
    #: False when there is nothing to compare with; `why` says what is missing.
    known: bool = True
    why: str = ""
    #: True when the earlier value is null because the event created the ticket.
    created: bool = False

    @property
    def changed(self) -> bool:
        """True when the earlier value is known and differs (a missing value equals null)."""
        return self.known and not same(self.old, self.new)


def split_field(text: str) -> tuple[str, ...]:
    """Split a field as rules write it (`status`, `ticket.status`, `common.status`, `a.b`).

    Raises `ValueError` for fields that do not change with the ticket (`event.*`, `changes.*`).
    """
    parts = tuple(text.strip().split("."))
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"field {text!r}: expected a dotted path such as status or common.status")
    if parts[0] in ("event", "changes"):
        raise ValueError(
            f"field {text!r}: only ticket fields and common.* have earlier values to compare; "
            "name the ticket field itself, e.g. status"
        )
    if parts[0] == "common" and (len(parts) != 2 or parts[1] not in COMMON_FIELDS):
        raise ValueError(
            f"field {text!r}: common fields are common.{', common.'.join(COMMON_FIELDS)}"
        )
    if parts[0] == "ticket" and len(parts) > 1:
        parts = parts[1:]
    return parts


def top_field(path: tuple[str, ...]) -> str:
    """The name the state store keeps a path under: its top-level ticket field, or `common.x`."""
    return f"common.{path[1]}" if path[0] == "common" else path[0]


def walk(value: Any, parts: Iterable[str]) -> Any:
    """The value at `parts` inside mappings and lists (`"0"` indexes a list); else `MISSING`."""
    for part in parts:
        if isinstance(value, Mapping):
            value = value.get(part, MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def _now(event: Event, path: tuple[str, ...]) -> Any:
    if path[0] == "common":
        value = event.common.get(path[1], MISSING)
        return MISSING if value is None else value
    return walk(event.ticket, path)


_COMMON_VIEWS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}


def _common_view(vendor: str) -> Callable[[Mapping[str, Any]], dict[str, Any]] | None:
    """The vendor's neutral view of a ticket dict (None for a vendor not registered)."""
    found = _COMMON_VIEWS.get(vendor)
    if found is None:
        from ticketwire.vendors.registry import derived_or_none

        found = derived_or_none(_COMMON_VIEWS, vendor, lambda v: v.common_view())
    return found


def _vendor_before(event: Event, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The ticket as it was before the event, by the vendor's own account of what changed."""
    before = dict(event.ticket)
    for key, change in changes.items():
        if isinstance(change, Mapping):
            before[key] = change.get("from")
    return before


def change_of(event: Event, path: tuple[str, ...]) -> Change:
    """The value of a compiled field path before and after `event`."""
    new = _now(event, path)
    changes = event.changes
    if changes is not None:
        if path[0] != "common":
            change = changes.get(path[0])
            if isinstance(change, Mapping):
                return Change(walk(change.get("from"), path[1:]), new)
            return Change(new, new)
        view = _common_view(event.vendor)
        if view is not None:
            old = view(_vendor_before(event, changes)).get(path[1])
            return Change(MISSING if old is None else old, new)
    previous = event.previous
    if previous is not None:
        if path[0] == "common":
            kept, key, rest = previous.get("common") or {}, path[1], path[2:]
        else:
            kept, key, rest = previous.get("ticket") or {}, path[0], path[1:]
        if key not in kept:
            return Change(MISSING, new, known=False, why=NOT_KEPT)
        return Change(walk(kept[key], rest), new)
    if event.type == CREATED:
        return Change(None, new, created=True)
    return Change(MISSING, new, known=False, why=FIRST_SEEN)


def field_changes(event: Event) -> dict[str, tuple[Any, Any]] | None:
    """Changed field → (old, new) for this event; None when unknown.

    Keys are top-level ticket fields as the vendor names them (`status`, `custom_fields`) and
    `common.<field>` for the neutral view. Without the vendor's word, only the fields the state
    store kept (those rules read) can be compared; a created ticket lists every non-null field.
    """
    previous = event.previous
    if event.changes is None and previous is not None:
        return _against_previous(event, previous)
    out: dict[str, tuple[Any, Any]] = {}

    def note(name: str, old: Any, new: Any) -> None:
        old = None if old is MISSING else old
        new = None if new is MISSING else new
        if not same(old, new):
            out[name] = (old, new)

    changes = event.changes
    if changes is not None:
        for key, change in changes.items():
            if isinstance(change, Mapping):
                note(key, change.get("from"), event.ticket.get(key, change.get("to")))
        view = _common_view(event.vendor)
        if view is not None:
            before = view(_vendor_before(event, changes))
            for name in COMMON_FIELDS:
                note(f"common.{name}", before.get(name), event.common.get(name))
        return out
    if event.type == CREATED:
        for key, new in event.ticket.items():
            note(key, None, new)
        for name in COMMON_FIELDS:
            note(f"common.{name}", None, event.common.get(name))
        return out
    return None


def _against_previous(event: Event, previous: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Changes against the state the store kept; the common case, so it avoids a closure."""
    out: dict[str, tuple[Any, Any]] = {}
    for source, current, prefix in (
        (previous.get("ticket"), event.ticket, ""),
        (previous.get("common"), event.common, "common."),
    ):
        for key, old in (source or {}).items():
            new = current.get(key)
            if old is new:
                # The same object (most fields, most events): nothing to compare.
                continue
            old = None if old is MISSING else old
            new = None if new is MISSING else new
            if not same(old, new):
                out[prefix + key] = (old, new)
    return out


def changed(event: Event, field: str, *, from_: Any = ANY, to: Any = ANY) -> bool:
    """True when `field` changed with this event (from `from_`, to `to`, when given).

    False when the change cannot be told (first event seen for the ticket). For Python rules,
    e.g. `when=lambda ev: changed(ev, "status", to="waiting")`.
    """
    change = change_of(event, split_field(field))
    if not change.changed:
        return False
    if from_ is not ANY and not same(change.old, from_):
        return False
    return to is ANY or same(change.new, to)


def not_changed(event: Event, field: str) -> bool:
    """True when `field` is known not to have changed with this event."""
    change = change_of(event, split_field(field))
    return change.known and not change.changed


# ---- the state kept per ticket, and the order of events ----


def snapshot(event: Event, fields: Iterable[str]) -> dict[str, Any]:
    """The values of `fields` (as `Router.read_fields()` names them) in the event's ticket.

    A field the ticket lacks is kept as null, so "kept and null" differs from "not kept".
    """
    ticket: dict[str, Any] = {}
    common: dict[str, Any] = {}
    for name in fields:
        if name.startswith("common."):
            common[name[7:]] = event.common.get(name[7:])
        else:
            ticket[name] = event.ticket.get(name)
    return {"ticket": ticket, "common": common}


def encode_snapshot(snap: Mapping[str, Any]) -> str:
    """Canonical JSON of a snapshot: equal snapshots give equal text."""
    return json.dumps(snap, sort_keys=True, separators=(",", ":"), default=str)


def micros(moment: datetime | None) -> int | None:
    """A date-time as whole microseconds since the epoch (exact, no float rounding)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICRO


def from_micros(value: int | None) -> datetime | None:
    """The inverse of `micros`."""
    return None if value is None else _EPOCH + value * _MICRO


def order_key(event: Event) -> tuple[int | None, int | None]:
    """(vendor sequence, updated_at in µs): what decides which of two events is newer."""
    return event.sequence, micros(event.updated_at)


def compare_order(
    incoming: tuple[int | None, int | None], applied: tuple[int | None, int | None]
) -> int:
    """-1 when `incoming` is older than `applied`, 0 when equal, 1 when newer or not comparable.

    The sequence decides when both have one; otherwise the update time, when both have one.
    """
    for mine, theirs in zip(incoming, applied, strict=True):
        if mine is not None and theirs is not None:
            return (mine > theirs) - (mine < theirs)
    return 1


@dataclass(frozen=True)
class Observation:
    """What the state store said about one event of a ticket."""

    #: The kept fields before this event (`Event.previous`); None when there is no earlier state.
    previous: dict[str, Any] | None
    #: True when a newer event of the ticket was already applied: this one is not acted on.
    stale: bool
    #: Order key and id of the event now applied (this one, unless stale).
    applied_updated_at: datetime | None
    applied_event_id: str | None
    #: True when no earlier event of the ticket was seen (within the state TTL).
    first_seen: bool
    applied_sequence: int | None = None
    #: The loop guard's raw state of the ticket, when it was read in the same call.
    prefetched: tuple[Any, ...] | None = None

    def stale_reason(self, event: Event) -> str:
        """E.g. `updated_at 2024-05-01T10:00:00Z is older than 2024-05-01T10:05:00Z applied by
        event=e2`."""
        if event.sequence is not None and self.applied_sequence is not None:
            mine, theirs = str(event.sequence), str(self.applied_sequence)
            what = "sequence"
        else:
            mine, theirs = _iso(event.updated_at), _iso(self.applied_updated_at)
            what = "updated_at"
        return f"{what} {mine} is older than {theirs} applied by event={self.applied_event_id}"


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    # Drop zeros the vendor did not send: `10:00:00.250000` reads as `10:00:00.250`.
    head, _, frac = text.partition(".")
    frac = frac.replace("+00:00", "").rstrip("0")
    return f"{head}.{frac}Z" if frac else f"{head}Z"


#: How many applied events per ticket keep the state they were compared with: a re-run of one of
#: them (after a crash, or a dead letter redriven) compares with the same state, and is not stale.
RERUN_MEMORY = 16


@dataclass
class _Kept:
    sequence: int | None
    updated_us: int | None
    event_id: str
    snapshot: str
    before: str | None
    #: Recently applied event ids → the snapshot they were compared with (None: none), oldest first.
    applied: dict[str, str | None]


class MemoryTicketState:
    """The worker's per-ticket state logic, in memory: for dry runs and tests (no TTL)."""

    def __init__(self) -> None:
        self._tickets: dict[str, _Kept] = {}

    def observe(self, event: Event, fields: Iterable[str]) -> Observation:
        """Decide whether `event` is stale and what was kept before it; apply it if not stale."""
        snap = encode_snapshot(snapshot(event, fields))
        seq, us = order_key(event)
        kept = self._tickets.get(event.ticket_key)
        if kept is None:
            kept = _Kept(seq, us, event.id, snap, None, {})
            self._tickets[event.ticket_key] = kept
        elif event.id in kept.applied:
            # Applied before: compared with what it was compared with then; nothing changes.
            return self._seen(kept, kept.applied[event.id])
        else:
            order = compare_order((seq, us), (kept.sequence, kept.updated_us))
            if order < 0:
                return Observation(
                    None,
                    True,
                    from_micros(kept.updated_us),
                    kept.event_id,
                    False,
                    kept.sequence,
                )
            if order > 0 or snap != kept.snapshot:
                kept.sequence, kept.updated_us = seq, us
                kept.before, kept.snapshot = kept.snapshot, snap
            # Otherwise another notice of the same change (one edit, several event types): it
            # compares with what came before that change, as its first notice did.
            kept.event_id = event.id
        kept.applied[event.id] = kept.before
        while len(kept.applied) > RERUN_MEMORY:
            del kept.applied[next(iter(kept.applied))]
        return self._seen(kept, kept.before)

    @staticmethod
    def _seen(kept: _Kept, before: str | None) -> Observation:
        previous = None if before is None else json.loads(before)
        return Observation(
            previous,
            False,
            from_micros(kept.updated_us),
            kept.event_id,
            previous is None,
            kept.sequence,
        )
