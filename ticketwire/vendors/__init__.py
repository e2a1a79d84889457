"""Vendor seams: each helpdesk supplies its webhook verifier/parser, API client and actions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from ticketwire.calls import ApiCall, ApiResult
from ticketwire.event import Event, Routing
from ticketwire.ratebudget import RateBudget


class WebhookIntake(Protocol):
    """What the receiver needs from a vendor: verify, parse, and which headers to keep."""

    vendor: str
    #: Request headers stored with the raw body so that a replay can re-verify it.
    replay_headers: tuple[str, ...]

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise `InvalidSignature` unless the body is signed with an active secret."""
        ...

    def parse(self, body: bytes) -> Event:
        """Parse the raw body once into an `Event`, or raise `MalformedEvent`."""
        ...

    def inspect(self, body: bytes) -> Routing:
        """Validate the body as `parse` does, returning only what storing it needs."""
        ...


class HelpdeskClient(Protocol):
    """What rules and workers need from a helpdesk API client (real, or recording for dry runs)."""

    vendor: str
    #: The account's shared request budget, taken before every request (None: no budget).
    budget: RateBudget | None
    #: The configured account the client acts for (`default`, or a name from the accounts file).
    account: str

    async def get_ticket(self, ticket_id: str) -> dict[str, Any]:
        """Fetch one ticket."""
        ...

    def list_tickets(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Iterate over every ticket matching the filters, across pages."""
        ...

    async def send(self, call: ApiCall) -> ApiResult:
        """Send one planned call; raise a `HelpdeskError` subclass on failure."""
        ...
