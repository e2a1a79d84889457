"""The request journal: one entry per `/v1` request, for asserting what a client sent."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.common.journal import Request

#: Request headers whose values are credentials; the journal keeps only their first characters.
MASKED = ("authorization", "x-api-key")


@dataclass(frozen=True)
class JournalEntry(Request):
    """One API request and the status it got; `at` is simulated time."""

    #: Organisation of the credential, when it was known.
    org_id: str | None
    #: Request headers, with credential values masked.
    headers: dict[str, str] = field(default_factory=dict)
