"""InboxOps REST client (`/api/v1`): tickets, bulk actions, paged listing, planned calls.

The client is thin on purpose: one request per call, no retries and no sleeping. Failures come
back as the error tree (`HelpdeskUnavailable`, `RateLimited`, ...) and the worker decides from
the error type whether to retry, defer or dead-letter.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ticketwire.calls import ApiCall, ApiResult
from ticketwire.errors import ConfigError
from ticketwire.secret import Secret
from ticketwire.vendors.client import (
    ApiClient,
    Page,
    data_list,
    http_base,
    id_list,
    int_or_none,
    numbered_pages,
    ticket_path,
)
from ticketwire.vendors.inboxops import reconcile
from ticketwire.vendors.inboxops.models import BULK_OPERATIONS, PATCH_FIELDS

VENDOR = "inboxops"
API_PREFIX = "/api/v1"
KEY_PREFIX = "ixk_"
#: InboxOps accepts at most this many distinct `custom_field_<key>` filters per request.
MAX_CUSTOM_FIELD_FILTERS = 10
#: The value of a `custom_field_<key>` filter that matches tickets with no stored value.
EMPTY = "__empty__"

#: Message types `GET /tickets/{id}/messages` lists (its `types` filter).
MESSAGE_TYPES: tuple[str, ...] = ("email", "internal_note")
#: Filters `GET /tickets` accepts (besides `custom_fields`, which expands to `custom_field_<key>`).
LIST_FILTERS: tuple[str, ...] = (
    "query",
    "q",
    "status",
    "inbox_id",
    "assignee_id",
    "priority",
    "tag_ids",
    "created_after",
    "created_before",
    "updated_after",
    "updated_before",
    "sort",
    "order",
)

#: The filters InboxOps documents as comma-separated lists; every other one takes one value.
LIST_VALUED: frozenset[str] = frozenset({"status", "tag_ids"})


class InboxOpsClient(ApiClient):
    """Async client for one InboxOps workspace (the API key identifies the workspace)."""

    vendor = VENDOR
    # A 2xx that is not JSON leaves unknown whether the request was applied; the retry reads the
    # ticket first (`still_to_send`) and sends only what is missing, a note only when no note
    # carries its marker (InboxOps documents no idempotency for messages).
    url_setting = "the base URL"

    def _check_key(self, api_key: Secret) -> None:
        """Refuse a key that is not an InboxOps API key, before any call."""
        if not api_key.reveal().startswith(KEY_PREFIX):
            raise ConfigError("INBOXOPS_API_KEY", "a key starting with 'ixk_' from Settings → API")

    def _api_base(self, base_url: str) -> str:
        """The API root every path is relative to, e.g. `https://app.inboxops.app/api/v1`."""
        return http_base(
            base_url,
            lambda: ConfigError(
                "INBOXOPS_API_URL",
                "the InboxOps app origin, e.g. https://app.inboxops.app",
                base_url,
            ),
            prefix=API_PREFIX,
        )

    async def get_ticket(self, ticket_id: str, *, include: Sequence[str] = ()) -> dict[str, Any]:
        """Fetch one ticket by id or ticket number; `include` adds e.g. `tags`, `contact`."""
        params = {"include": _join(include)} if include else None
        return await self._data("GET", ticket_path(ticket_id), params=params)

    async def update_ticket(self, ticket_id: str, **fields: Any) -> dict[str, Any]:
        """PATCH the given fields (`assignee_id=None` unassigns); return the updated ticket."""
        self._check_patch(fields, PATCH_FIELDS)
        path = ticket_path(ticket_id)
        return await self._data("PATCH", path, json=_jsonable(fields))

    async def bulk(
        self, operation: str, ticket_ids: Sequence[str], **params: Any
    ) -> dict[str, Any]:
        """Run one bulk action; return `{operation, updated}`, plus `tags_added` for add_tags or
        `tags_removed` for remove_tags (InboxOps sends each only for its operation)."""
        body = bulk_body(operation, ticket_ids, **params)
        return await self._data("POST", "/tickets/bulk", json=body)

    async def list_messages(
        self, ticket_id: str, *, types: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The ticket's emails and internal notes, oldest first (drafts are left out).

        `types` narrows to `email` and/or `internal_note` (default: both).
        """
        unknown = sorted(set(types) - set(MESSAGE_TYPES))
        if unknown:
            raise ValueError(
                f"unknown message type {', '.join(unknown)}; accepted: {', '.join(MESSAGE_TYPES)}"
            )
        path = ticket_path(ticket_id) + "/messages"
        params = {"types": _join(types)} if types else None
        return await self._data_items("GET", path, params=params)

    async def add_note(
        self, ticket_id: str, body_text: str, *, body_html: str | None = None
    ) -> dict[str, Any]:
        """Add an internal note (the only message the API adds); return the new message."""
        if not body_text.strip():
            raise ValueError("a note needs text")
        body = note_body(body_text)
        if body_html is not None:
            body["body_html"] = body_html
        path = ticket_path(ticket_id) + "/messages"
        return await self._data("POST", path, json=body)

    def list_tickets(self, *, per_page: int = 100, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Iterate over every matching ticket, page by page from page 1.

        The filters are checked now, so a bad filter raises before any request is made.
        """
        if per_page < 1:
            raise ValueError(f"per_page must be at least 1, got {per_page}")
        params = list_params(filters)
        return self._iterate(per_page, params)

    async def list_page(
        self, *, page: int, per_page: int, **filters: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Fetch one page of tickets; return the tickets and `meta` (`page, per_page, total`)."""
        return await self._page(page, per_page, list_params(filters))

    async def send(self, call: ApiCall) -> ApiResult:
        """Send a planned call (path relative to `/api/v1`); a note carries its marker."""
        method, body = self._planned(reconcile.with_marker(call))
        return await self._request(method, call.path, json=body)

    async def still_to_send(self, call: ApiCall) -> ApiCall | None:
        """Read the ticket and return what of one ticket's `call` it does not show yet."""
        what = reconcile.reading(call)
        if what is None:
            return call
        if what == "notes":
            notes = await self.list_messages(call.ticket_id, types=["internal_note"])
            return reconcile.rest(call, {}, notes)
        include = ["tags"] if what == "tags" else []
        return reconcile.rest(call, await self.get_ticket(call.ticket_id, include=include), [])

    def _iterate(self, per_page: int, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        def is_last(page: int, answer: Page, seen: int) -> bool:
            items, meta = answer
            # The server may cap per_page below what was asked; a page is "short" only
            # against the size the server says it used.
            size = int_or_none(meta.get("per_page")) or per_page
            total = int_or_none(meta.get("total"))
            return not items or len(items) < size or (total is not None and seen >= total)

        return numbered_pages(lambda page: self._page(page, per_page, params), is_last)

    async def _page(self, page: int, per_page: int, params: Mapping[str, str]) -> Page:
        query = {**params, "page": str(page), "per_page": str(per_page)}
        result = await self._request("GET", "/tickets", params=query)
        items = data_list(result, "GET", "/tickets")
        meta = result.body.get("meta")
        return items, meta if isinstance(meta, dict) else {}


def list_params(filters: Mapping[str, Any]) -> dict[str, str]:
    """Turn `list_tickets` filters into query parameters (lists comma-joined, datetimes in UTC).

    `custom_fields={"plan": "pro"}` becomes `custom_field_plan=pro`; a `None` value there becomes
    `__empty__` (no stored value). Other `None` filters are left out.
    """
    params: dict[str, str] = {}
    for name, value in filters.items():
        if name == "custom_fields":
            params.update(_custom_field_params(value))
        elif name not in LIST_FILTERS:
            raise ValueError(
                f"unknown ticket filter {name!r}; accepted: "
                f"{', '.join(LIST_FILTERS)}, custom_fields"
            )
        elif value is not None:
            if _is_list(value) and name not in LIST_VALUED:
                raise ValueError(
                    f"InboxOps takes one value for the ticket filter {name!r}; lists are "
                    f"accepted only for {', '.join(sorted(LIST_VALUED))}"
                )
            params[name] = _query_value(name, value)
    return params


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def bulk_body(operation: str, ticket_ids: Sequence[str], **params: Any) -> dict[str, Any]:
    """Build the `POST /tickets/bulk` body, checking the operation and the ids."""
    if operation not in BULK_OPERATIONS:
        raise ValueError(
            f"unknown bulk operation {operation!r}; accepted: {', '.join(BULK_OPERATIONS)}"
        )
    ids = id_list(ticket_ids, name="ticket_ids", empty="bulk needs at least one ticket id")
    return {"operation": operation, "ticket_ids": ids, **_jsonable(params)}


def note_body(text: str) -> dict[str, Any]:
    """The body of `POST /tickets/{id}/messages` for an internal note of plain `text`."""
    shown = html.escape(text).replace("\r\n", "\n").replace("\n", "<br>")
    return {"type": "internal_note", "body_html": f"<p>{shown}</p>", "body_text": text}


def iso_utc(value: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with a `Z` suffix."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{value!r} has no time zone; pass an aware datetime (e.g. datetime.now(UTC))"
        )
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _custom_field_params(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError("custom_fields must be a mapping of field_key to value")
    if len(value) > MAX_CUSTOM_FIELD_FILTERS:
        raise ValueError(
            f"InboxOps accepts at most {MAX_CUSTOM_FIELD_FILTERS} custom field filters per "
            f"request, got {len(value)}: {', '.join(map(str, value))}"
        )
    params = {}
    for key, field_value in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"custom field keys must be non-empty strings, got {key!r}")
        name = f"custom_field_{key}"
        params[name] = EMPTY if field_value is None else _query_value(name, field_value)
    return params


def _query_value(name: str, value: Any) -> str:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, Sequence):
        return _join(value)
    raise TypeError(f"filter {name!r}: cannot send a {type(value).__name__} as a query value")


def _join(values: Sequence[Any]) -> str:
    if isinstance(values, str):
        return values
    return ",".join(str(v) for v in values)


def _jsonable(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: iso_utc(v) if isinstance(v, datetime) else v for k, v in fields.items()}
