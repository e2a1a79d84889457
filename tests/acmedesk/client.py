"""Acme Desk REST client (`<api_url>/api`): read a ticket, PATCH its status or priority."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from ticketwire.calls import ApiCall, ApiResult
from ticketwire.errors import ConfigError, HelpdeskHTTPError
from ticketwire.vendors.client import ApiClient, data_object, http_base, ticket_path
from ticketwire.vendors.problems import decode, header_retry_after, http_error

VENDOR = "acmedesk"
#: The ticket fields the API's PATCH takes.
PATCH_FIELDS = ("status", "priority")


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, *, request_id: str | None = None
) -> HelpdeskHTTPError:
    """The error of a non-2xx answer: Acme's `{"error": "..."}`, else the body's text."""
    text, doc = decode(body)
    detail = str(doc.get("error")) if doc and "error" in doc else text or f"HTTP {status}"
    return http_error(
        status,
        text,
        code=None,
        detail=detail,
        request_id=request_id,
        retry_after=lambda: header_retry_after(headers) or 60.0,
    )


class AcmeDeskClient(ApiClient):
    """Async client for one Acme desk."""

    vendor = VENDOR
    helpdesk = "Acme Desk"
    url_setting = "ACMEDESK_API_URL"
    read_error = staticmethod(error_from_response)

    def _api_base(self, base_url: str) -> str:
        return http_base(
            base_url, lambda: ConfigError("ACMEDESK_API_URL", "an http(s) URL"), prefix="/api"
        )

    async def get_ticket(self, ticket_id: str) -> dict[str, Any]:
        """Fetch one ticket."""
        path = ticket_path(ticket_id)
        return data_object(await self._request("GET", path), "GET", path)

    async def update_ticket(self, ticket_id: str, **fields: Any) -> dict[str, Any]:
        """PATCH a ticket's status and/or priority; return the ticket."""
        self._check_patch(fields, PATCH_FIELDS)
        path = ticket_path(ticket_id)
        return data_object(await self._request("PATCH", path, json=fields), "PATCH", path)

    def list_tickets(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Acme Desk has no list API, so scheduled rules cannot select its tickets."""
        raise NotImplementedError("Acme Desk has no list API")

    async def send(self, call: ApiCall) -> ApiResult:
        """Send a planned call as it is."""
        method, body = self._planned(call)
        return await self._request(method, call.path, json=body)
