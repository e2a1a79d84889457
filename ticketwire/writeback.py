"""Write-back planning: coalesce a ticket's queued calls, then batch the same change across tickets.

Pure functions from queued calls to API calls, so they can be tested and reasoned about without
Redis or HTTP. The worker's outbox feeds them what it claimed and sends what they return.

- `coalesce` merges one ticket's queued calls: runs of consecutive PATCHes of the ticket become
  one PATCH (a field written twice keeps the later event's value, as sending both in order
  would; the overridden value is noted), and a repeated identical call is sent once, unless
  it adds something each time it is sent (a note: `BatchSpec.additive`).
- `batch` groups the calls of many tickets that make the same change into bulk calls, chunked to
  the vendor's maximum. It works in rounds (each ticket's first call, then its second ...) so the
  calls of one ticket are still sent in order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ticketwire.calls import ApiCall


@dataclass(frozen=True)
class Pending:
    """One call queued for a ticket, with the attempts already made and whether it goes alone."""

    call: ApiCall
    attempts: tuple[Mapping[str, Any], ...] = ()
    #: Never batched with other tickets (set after a bulk call was refused as a whole).
    solo: bool = False
    #: A send of it began and its outcome is unknown (the helpdesk may have applied it): the
    #: ticket is read before it is sent again, and only what is still missing goes.
    uncertain: bool = False

    def to_json(self) -> str:
        """Serialise for the outbox list."""
        doc: dict[str, Any] = {"call": self.call.to_json(), "attempts": list(self.attempts)}
        if self.solo:
            doc["solo"] = True
        if self.uncertain:
            doc["uncertain"] = True
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Pending:
        """Inverse of `to_json`."""
        doc = json.loads(raw)
        return cls(
            call=ApiCall.from_json(doc["call"]),
            attempts=tuple(doc.get("attempts", ())),
            solo=bool(doc.get("solo", False)),
            uncertain=bool(doc.get("uncertain", False)),
        )


@dataclass(frozen=True)
class BatchSpec:
    """How one vendor's calls combine across tickets (all functions pure).

    `bulk_ids(call)` returns `(group key, ticket ids)` for a call that is already a bulk call,
    `as_bulk(call)` rewrites a single-ticket call as a one-id bulk call (or None when the
    vendor's bulk endpoint cannot express it), `with_ids(call, ids)` rebuilds a bulk call for other
    ids, and `max_ids` is the largest id list one bulk call may carry.
    """

    bulk_ids: Callable[[ApiCall], tuple[str, list[str]] | None]
    as_bulk: Callable[[ApiCall], ApiCall | None]
    with_ids: Callable[[ApiCall, list[str]], ApiCall]
    max_ids: int = 100
    #: Merge two PATCH bodies of one ticket; default: later keys win, nested objects merged.
    merge_patch: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    #: True for a call that adds something each time it is sent (a note): never sent once for two.
    additive: Callable[[ApiCall], bool] | None = None


@dataclass
class TicketWork:
    """A ticket's queued calls after coalescing, with what the merge dropped."""

    ticket_key: str
    #: Items claimed from the outbox; all of them are replaced by `calls` once settled.
    claimed: int
    calls: list[Pending]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outgoing:
    """One request to send and the tickets whose queued call it carries."""

    call: ApiCall
    covers: tuple[str, ...]


def _ticket_patch_path(call: ApiCall) -> bool:
    return call.method == "PATCH" and call.path.rstrip("/").endswith("/" + call.ticket_id)


def _conflicts(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    out: list[tuple[str, Any, Any]] = []
    for key, value in new.items():
        if key not in old:
            continue
        before = old[key]
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            out.extend(_conflicts(before, value, f"{prefix}{key}."))
        elif before != value:
            out.append((f"{prefix}{key}", before, value))
    return out


def deep_merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new` over `old`; nested objects (custom fields, metadata) are merged key by key."""
    out = dict(old)
    for key, value in new.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def coalesce(
    ticket_key: str,
    items: Sequence[Pending],
    *,
    rank: Callable[[str], int],
    spec: BatchSpec | None = None,
) -> TicketWork:
    """Merge one ticket's queued calls into as few calls as keep the same outcome.

    When two queued PATCHes write one field, the later one (a later event's) wins and the
    earlier value is noted; within one event, rules were already merged by rule order. Only
    consecutive PATCHes merge: a call in between (a bulk operation) may touch the same field,
    and the order of the two must then be kept. `rank(rule)` orders the merged call's rules.
    """
    out: list[Pending] = []
    notes: list[str] = []
    merge = (spec.merge_patch if spec else None) or deep_merge
    for item in items:
        call = item.call
        prev = out[-1] if out else None
        if (
            prev is not None
            and _ticket_patch_path(call)
            and _ticket_patch_path(prev.call)
            and prev.call.path == call.path
            and not item.solo
            and not prev.solo
        ):
            # One event's rules were already merged by rule order when it was planned; between
            # events, the later one saw the newer ticket, so it wins, exactly as if both had
            # been sent one after the other.
            body = merge(prev.call.body, call.body)
            winner, loser = call, prev.call
            for name, dropped, kept in _conflicts(loser.body, winner.body):
                notes.append(
                    f"{name}: rule {_rules(winner)} sets {_show(kept)}, overriding "
                    f"{_show(dropped)} from rule {_rules(loser)} (event {loser.event_id})"
                )
            rules = tuple(dict.fromkeys((*prev.call.rules, *call.rules)))
            merged = replace(
                prev.call,
                body=body,
                rules=tuple(sorted(rules, key=rank)),
                event_id=_joined(prev.call.event_id, call.event_id),
            )
            out[-1] = Pending(merged, prev.attempts, prev.solo, prev.uncertain or item.uncertain)
            continue
        # Only a repeat of the call just before is dropped: [add X, remove X, add X] must keep
        # its last add. Two equal notes are two notes.
        additive = spec is not None and spec.additive is not None and spec.additive(call)
        if (
            prev is not None
            and not additive
            and prev.call.fingerprint() == call.fingerprint()
            and not item.attempts
        ):
            notes.append(f"{call.describe()} queued twice in a row for this ticket; sent once")
            if item.uncertain and not prev.uncertain:
                out[-1] = replace(prev, uncertain=True)
            continue
        out.append(item)
    return TicketWork(ticket_key=ticket_key, claimed=len(items), calls=out, notes=notes)


def _joined(a: str, b: str) -> str:
    if not a or a == b:
        return b
    if not b:
        return a
    # The merged call's identity (idempotency keys derive from it) must be the same when the
    # same events are merged again after a crash, and stay short however many events merge.
    return "merged:" + hashlib.sha256(f"{a}\n{b}".encode()).hexdigest()[:20]


def _rules(call: ApiCall) -> str:
    return ", ".join(repr(r) for r in call.rules) or "-"


def _show(value: Any) -> str:
    return "null" if value is None else json.dumps(value, sort_keys=True, default=str)


def batch(
    round_calls: Sequence[tuple[str, Pending]],
    specs: Mapping[str, BatchSpec],
) -> list[Outgoing]:
    """Group one round's calls (one per ticket) into as few requests as the vendors allow.

    Calls that already are bulk calls group by their change; single-ticket calls a vendor can
    express in bulk join them when at least two tickets share the change. Everything else is
    sent as it is. Groups are chunked to the vendor's `max_ids`.
    """
    groups: dict[tuple[str, str], list[tuple[str, ApiCall]]] = {}
    alone: list[Outgoing] = []
    convertible: dict[tuple[str, str], list[tuple[str, ApiCall, ApiCall]]] = {}
    for ticket_key, item in round_calls:
        call: ApiCall = item.call
        spec = specs.get(call.account_key)
        if spec is None or item.solo:
            alone.append(Outgoing(call, (ticket_key,)))
            continue
        found = spec.bulk_ids(call)
        if found is not None and len(found[1]) == 1:
            groups.setdefault((call.account_key, found[0]), []).append((ticket_key, call))
            continue
        bulk = spec.as_bulk(call) if found is None else None
        key = spec.bulk_ids(bulk) if bulk is not None else None
        if bulk is not None and key is not None:
            convertible.setdefault((call.account_key, key[0]), []).append((ticket_key, call, bulk))
            continue
        alone.append(Outgoing(call, (ticket_key,)))
    for gkey, candidates in convertible.items():
        if len(candidates) + len(groups.get(gkey, [])) >= 2:
            groups.setdefault(gkey, []).extend((t, bulk) for t, _, bulk in candidates)
        else:
            alone.extend(Outgoing(orig, (t,)) for t, orig, _ in candidates)
    out: list[Outgoing] = []
    for (owner, _), grouped in groups.items():
        members = grouped
        if len(members) == 1:
            ticket_key, call = members[0]
            out.append(Outgoing(call, (ticket_key,)))
            continue
        spec = specs[owner]
        for start in range(0, len(members), spec.max_ids):
            chunk = members[start : start + spec.max_ids]
            ids = [c.ticket_id for _, c in chunk]
            first = chunk[0][1]
            rules = tuple(dict.fromkeys(r for _, c in chunk for r in c.rules))
            events = sorted(f"{t}|{c.event_id}" for t, c in chunk)
            call = replace(
                spec.with_ids(first, ids),
                rules=rules,
                event_id="batch:" + hashlib.sha256("\n".join(events).encode()).hexdigest()[:20],
                # Many events: each ticket's own call (and origin) is what a dead letter keeps.
                origin="",
            )
            out.append(Outgoing(call, tuple(t for t, _ in chunk)))
    return out + alone


def single(call: ApiCall, ticket_id: str, spec: BatchSpec | None) -> ApiCall:
    """The part of a bulk call that concerns one ticket (for per-id retries and dead letters)."""
    if spec is None or spec.bulk_ids(call) is None:
        return call
    return replace(spec.with_ids(call, [ticket_id]), ticket_id=ticket_id)


def id_list_key(body: Mapping[str, Any], ids_field: str) -> str:
    """Group key of a bulk body: everything but its id list, canonically encoded."""
    rest = {k: v for k, v in body.items() if k != ids_field}
    return json.dumps(rest, sort_keys=True, separators=(",", ":"))
