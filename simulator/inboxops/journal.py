"""The request journal: one entry per `/api/v1` request, for asserting what a client sent."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.common.journal import Request


@dataclass(frozen=True)
class JournalEntry(Request):
    """One API request and the status it got; `at` is simulated time."""

    request_id: str
    #: Workspace of the API key, when the key was known.
    workspace_id: str | None
    #: Request headers, with the Authorization value masked.
    headers: dict[str, str] = field(default_factory=dict)
    #: What the simulator did not apply, and why (e.g. a `remind_at` sent without waiting).
    notes: tuple[str, ...] = ()
