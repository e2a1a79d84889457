"""A helpdesk client for dry runs: it records every planned call and changes nothing."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ticketwire.accountkey import DEFAULT
from ticketwire.calls import ApiCall, ApiResult
from ticketwire.errors import NotFound
from ticketwire.ratebudget import RateBudget
from ticketwire.vendors import HelpdeskClient


class RecordingClient:
    """Record `send` calls and answer as if each succeeded; never writes to the helpdesk.

    Reads go to `client` when one is given (a real, read-only use of the helpdesk), otherwise to
    `tickets`, a dict of ticket objects keyed by id. Without a client, `list_tickets` filters the
    given tickets by exact field values (a list value matches any of its items).
    """

    def __init__(
        self,
        vendor: str | None = None,
        *,
        client: HelpdeskClient | None = None,
        tickets: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        if vendor is None:
            if client is None:
                raise ValueError("RecordingClient needs a vendor name or a client to read through")
            vendor = client.vendor
        self.vendor: str = vendor
        #: Nothing is sent, so nothing is taken from a budget.
        self.budget: RateBudget | None = None
        self.account = DEFAULT
        self._client = client
        self._tickets = {str(k): dict(v) for k, v in (tickets or {}).items()}
        #: Every call passed to `send`, in order.
        self.calls: list[ApiCall] = []

    def __repr__(self) -> str:
        source = repr(self._client) if self._client is not None else f"{len(self._tickets)} tickets"
        return f"RecordingClient(vendor={self.vendor!r}, reads={source}, calls={len(self.calls)})"

    async def send(self, call: ApiCall) -> ApiResult:
        """Record `call` and answer 200 with the request body echoed as `data`."""
        self.calls.append(call)
        return ApiResult(
            status=200,
            body={"data": copy.deepcopy(call.body)},
            request_id=f"dry-run-{len(self.calls)}",
        )

    async def get_ticket(self, ticket_id: str) -> dict[str, Any]:
        """Read from the real client, else from the given tickets (by id or `ticket_number`)."""
        if self._client is not None:
            return await self._client.get_ticket(ticket_id)
        key = str(ticket_id)
        found = self._tickets.get(key) or next(
            (t for t in self._tickets.values() if str(t.get("ticket_number")) == key), None
        )
        if found is None:
            raise NotFound(
                404,
                code="not_found",
                detail=f"ticket {key} is not among the {len(self._tickets)} dry-run tickets",
            )
        return copy.deepcopy(found)

    def list_tickets(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Iterate through the real client, else over the given tickets matching `filters`."""
        if self._client is not None:
            return self._client.list_tickets(**filters)
        wanted = {k: v for k, v in filters.items() if k not in _PAGING}
        fields = {name for ticket in self._tickets.values() for name in ticket}
        unknown = sorted(set(wanted) - fields) if self._tickets else []
        if unknown:
            raise ValueError(
                f"dry-run tickets cannot be filtered by {', '.join(unknown)}: without a client "
                "only exact ticket field values are matched; pass client= to use the helpdesk"
            )
        return self._matching(wanted)

    async def _matching(self, filters: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for ticket in self._tickets.values():
            if all(_matches(ticket, name, want) for name, want in filters.items()):
                yield copy.deepcopy(ticket)


#: Paging options that mean nothing for an in-memory list.
_PAGING = frozenset({"per_page", "page"})


def _matches(ticket: Mapping[str, Any], name: str, want: Any) -> bool:
    if want is None:
        return True
    have = ticket.get(name)
    if isinstance(want, list | tuple | set | frozenset):
        return have in want or str(have) in {str(w) for w in want}
    return bool(have == want or str(have) == str(want))
