"""The request journal: one entry per `/api/v1` request, for asserting what a client sent."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.common.journal import Request


@dataclass(frozen=True)
class JournalEntry(Request):
    """One API request and the status it got; `at` is simulated time."""

    request_id: str
    #: Team of the API key, when the key was known.
    team_id: str | None
    #: Request headers, with the Authorization value masked.
    headers: dict[str, str] = field(default_factory=dict)
    #: True when the answer was replayed for a repeated Idempotency-Key.
    replayed: bool = False
