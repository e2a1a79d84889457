"""Counting a scenario's outcome from what the simulators recorded and what Redis kept (pure).

The definitions the table uses (also in `tests/faults/__init__.py`):

- **sent**: distinct event ids the simulators tried to deliver (`GET /_sim/deliveries`);
  **accepted**: those answered 2xx at least once.
- **processed**: distinct event ids of stream entries the workers' consumer group has read and
  acknowledged (entry id at or below the group's last-delivered id, and not pending).
- **lost**: accepted but not processed, once everything drained.
- **duplicated write-backs**: over the journal's successful (2xx) write requests of ours (their
  `User-Agent` is ticketwire's), each *effect* is counted per ticket: a field set to a value
  (`PATCH` field, or a bulk operation with its parameters, per ticket id), or a note's text on a
  ticket. Every successful write of an effect the ticket already got from an earlier write of
  ours counts once as duplicated, whether or not it changed anything the second time.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_TICKET = re.compile(r"/tickets/([^/]+)$")
_NOTE = re.compile(r"/tickets/([^/]+)/messages$")
_BULK = re.compile(r"/bulk$")
_WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def sent_ids(deliveries: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every event id a simulator tried to deliver."""
    return {str(d["event_id"]) for d in deliveries}


def accepted_ids(deliveries: Iterable[Mapping[str, Any]]) -> set[str]:
    """Event ids answered 2xx at least once."""
    return {str(d["event_id"]) for d in deliveries if d.get("succeeded")}


def answered(deliveries: Iterable[Mapping[str, Any]], status: int) -> int:
    """Delivery attempts answered `status`."""
    return sum(1 for d in deliveries if d.get("status") == status)


def ours(entry: Mapping[str, Any]) -> bool:
    """A journal entry of a request ticketwire's client sent."""
    headers = {str(k).lower(): str(v) for k, v in (entry.get("headers") or {}).items()}
    return headers.get("user-agent", "").startswith("ticketwire/")


def effects(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(ticket id, effect) of one write request: what it asks the helpdesk to make true."""
    path, body = str(entry["path"]), entry.get("body")
    if not isinstance(body, dict):
        body = {}
    if _BULK.search(path):
        id_keys = ("ticket_ids", "ticketIds", "ids")
        ids = next((body[k] for k in id_keys if isinstance(body.get(k), list)), [])
        params = {k: v for k, v in body.items() if k not in id_keys}
        shown = json.dumps(params, sort_keys=True)
        return [(str(t), f"bulk {shown}") for t in ids]
    if m := _NOTE.search(path):
        return [(m.group(1), f"note {json.dumps(body, sort_keys=True)}")]
    if m := _TICKET.search(path):
        return [(m.group(1), f"set {k}={json.dumps(v, sort_keys=True)}") for k, v in body.items()]
    return [("", f"{entry['method']} {path} {json.dumps(body, sort_keys=True)}")]


def successful_writes(journal: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Our write requests the helpdesk answered 2xx, in journal order."""
    return [
        e
        for e in journal
        if ours(e) and str(e["method"]).upper() in _WRITES and 200 <= int(e["status"]) < 300
    ]


def duplicated(journal: Iterable[Mapping[str, Any]]) -> tuple[int, list[str]]:
    """Duplicated write-backs (see the module docstring) and a few of them, described."""
    seen: Counter[tuple[str, str]] = Counter()
    for entry in successful_writes(journal):
        for effect in effects(entry):
            seen[effect] += 1
    extra = {k: n - 1 for k, n in seen.items() if n > 1}
    shown = [f"ticket {t}: {e} x{n + 1}" for (t, e), n in sorted(extra.items())[:5]]
    return sum(extra.values()), shown


def notes_per_ticket(journal: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Our successful notes, per ticket id."""
    return Counter(
        t for e in successful_writes(journal) for t, eff in effects(e) if eff.startswith("note ")
    )


def parse_at(value: str) -> datetime:
    """A journal time (`2026-01-01T00:00:00.000Z`)."""
    return datetime.fromisoformat(value)


def most_in_window(times: Iterable[datetime], seconds: float) -> int:
    """The most request times within any window of `seconds` (sliding, both ends included)."""
    ts = sorted(t.timestamp() for t in times)
    best, start = 0, 0
    for end, t in enumerate(ts):
        while t - ts[start] >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def first_write_after(journal: Iterable[Mapping[str, Any]], moment: datetime) -> float | None:
    """Seconds from `moment` to our first successful write after it (None: there was none)."""
    times = [parse_at(str(e["at"])) for e in successful_writes(journal)]
    later = [t for t in times if t >= moment]
    return (min(later) - moment).total_seconds() if later else None


@dataclass
class Outcome:
    """One scenario's row, with what else was found."""

    scenario: str
    size: str
    sent: int = 0
    accepted: int = 0
    processed: int = 0
    lost: int = 0
    duplicated: int = 0
    #: Worst recovery time in seconds, and what it measures.
    recovery_s: float | None = None
    recovery: str = ""
    #: Seconds from the (last) fault's end until everything drained.
    drained_s: float | None = None
    #: How often the fault showed (deliveries refused, requests failed …), and what was counted.
    fault_hits: int = 0
    fault_seen: str = ""
    #: Tickets whose final state is not the expected one (ticket: what differs).
    wrong_tickets: list[str] = field(default_factory=list)
    #: Our requests in the busiest window of the helpdesk's limit, and the limit.
    busiest: int = 0
    limit: str = ""
    dead_letters: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        """Nothing lost, nothing duplicated, every ticket as expected, no error."""
        return (
            not self.error
            and self.lost == 0
            and self.duplicated == 0
            and not self.wrong_tickets
            and self.dead_letters == 0
        )

    def to_json(self) -> dict[str, Any]:
        """The row as the `--out` file keeps it."""
        return {
            "scenario": self.scenario,
            "size": self.size,
            "sent": self.sent,
            "accepted": self.accepted,
            "processed": self.processed,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "recovery_s": self.recovery_s,
            "recovery": self.recovery,
            "drained_s": self.drained_s,
            "fault_hits": self.fault_hits,
            "fault_seen": self.fault_seen,
            "wrong_tickets": self.wrong_tickets,
            "busiest": self.busiest,
            "limit": self.limit,
            "dead_letters": self.dead_letters,
            "seconds": round(self.seconds, 1),
            "notes": self.notes,
            "error": self.error,
            "passed": self.passed,
        }
