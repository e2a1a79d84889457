"""Thena REST client (`https://platform.thena.ai/v1`): tickets, bulk update and create, listing.

Two auth schemes, as configuration: `api-key` sends `x-api-key: <key>` (the current docs);
`bearer` sends `Authorization: Bearer <token>` plus `x-org-id` (the older reference pages,
including the bulk ones). An `org_id` given with `api-key` is sent as `x-org-id` too.

One request per call, no retries and no sleeping: failures come back as the error tree and the
worker decides. `send()` also checks bulk update answers: ids Thena skipped (or did not report)
raise `PartialFailure`.

A planned bulk create (`POST /tickets/bulk`, `{tickets, options: {stopOnError}}`) is sent as one
`POST /tickets` per ticket, in order, because only the single create takes a `deDuplicationKey`
(the bulk page lists no such field): a retry, or a redriven dead letter, then finds the tickets
already created instead of creating them again. `stopOnError` keeps its meaning: true stops at
the first ticket Thena refuses, false goes on and reports the refused ones at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal, Unpack

import aiohttp

from ticketwire.calls import ApiCall, ApiResult
from ticketwire.errors import ClientError, ConfigError, PartialFailure
from ticketwire.secret import Secret
from ticketwire.vendors.client import (
    ApiClient,
    Options,
    data_object,
    http_base,
    id_list,
    ticket_path,
    unexpected,
)
from ticketwire.vendors.http import Exchange
from ticketwire.vendors.thena import reconcile
from ticketwire.vendors.thena.models import (
    BULK_CREATE_FIELDS,
    BULK_UPDATE_FIELDS,
    DATE_RANGES,
    UPDATE_FIELDS,
)

VENDOR = "thena"
DEFAULT_BASE_URL = "https://platform.thena.ai"
API_PREFIX = "/v1"
Auth = Literal["api-key", "bearer"]
AUTH_SCHEMES: tuple[str, ...] = ("api-key", "bearer")
#: Filters `list_tickets` accepts, with the snake_case spellings they may also be given in.
LIST_FILTERS: Mapping[str, str] = {
    "teamId": "teamId",
    "team_id": "teamId",
    "dateRange": "dateRange",
    "date_range": "dateRange",
}
#: Keys a list answer's `data` object may hold the tickets under (the docs do not say).
_LIST_KEYS = ("tickets", "items", "results", "data")
BULK_PATH = "/tickets/bulk"
#: Answers that refuse one ticket of a bulk create, not the whole call (with stopOnError false
#: the next ticket is still sent).
_TICKET_REFUSALS = frozenset({400, 404, 409, 422})


class ThenaClient(ApiClient):
    """Async client for one Thena organisation."""

    vendor = VENDOR

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str = DEFAULT_BASE_URL,
        *,
        auth: Auth | str = "api-key",
        api_key: Secret,
        org_id: str | None = None,
        **options: Unpack[Options],
    ) -> None:
        if auth not in AUTH_SCHEMES:
            raise ConfigError("THENA_AUTH", "'api-key' or 'bearer'", str(auth))
        if not api_key.reveal().strip():
            raise ConfigError(
                "THENA_API_KEY",
                "an API key (Organization Settings → Security and Access) or, with "
                "THENA_AUTH=bearer, a bearer token",
            )
        if auth == "bearer" and not org_id:
            raise ConfigError(
                "THENA_ORG_ID", "your Thena organisation id (required with THENA_AUTH=bearer)"
            )
        self._auth = auth
        self._org_id = org_id
        super().__init__(session, base_url, api_key, **options)

    def _shown(self) -> list[tuple[str, object]]:
        """The root, the auth scheme, the key, the organisation and the timeout."""
        return [
            ("base_url", self._base),
            ("auth", self._auth),
            ("api_key", self._key),
            ("org_id", self._org_id),
            ("timeout", self._timeout),
        ]

    def _api_base(self, base_url: str) -> str:
        """The API root every path is relative to, e.g. `https://platform.thena.ai/v1`."""
        return http_base(
            base_url,
            lambda: ConfigError(
                "THENA_API_URL", "the Thena API origin, e.g. https://platform.thena.ai"
            ),
            prefix=API_PREFIX,
        )

    async def get_ticket(self, ticket_id: str) -> dict[str, Any]:
        """Fetch one ticket."""
        path = ticket_path(ticket_id)
        return await self._data("GET", path)

    async def update_ticket(self, ticket_id: str, **fields: Any) -> dict[str, Any]:
        """PATCH the given fields (both an id and a name are sent as given; Thena uses the id)."""
        _check_fields("update_ticket", fields, UPDATE_FIELDS)
        path = ticket_path(ticket_id)
        return await self._data("PATCH", path, json=fields)

    async def bulk_update(self, ticket_ids: Sequence[str], **fields: Any) -> dict[str, Any]:
        """`PATCH /tickets/bulk`; return `{updated: [{id, title}], skipped: [{id, reason}]}`.

        Skipped ids are returned, not raised; `send()` raises `PartialFailure` for them.
        """
        body = bulk_update_body(ticket_ids, **fields)
        return await self._data("PATCH", BULK_PATH, json=body)

    async def create_ticket(self, **fields: Any) -> dict[str, Any]:
        """`POST /tickets`: create one ticket; return it."""
        if not fields:
            raise ValueError("create_ticket needs at least a title")
        return await self._data("POST", "/tickets", json=fields)

    async def create_tickets(
        self, tickets: Sequence[Mapping[str, Any]], *, stop_on_error: bool = True
    ) -> list[dict[str, Any]]:
        """`POST /tickets/bulk`; return the `[{id, title}]` of the tickets created.

        With `stop_on_error=False` Thena leaves invalid tickets out; compare the lengths. The
        bulk page offers no `deDuplicationKey`: a call sent twice creates its tickets twice
        (`send()` of a planned bulk create does not have that problem, see the module doc).
        """
        body = bulk_create_body(tickets, stop_on_error=stop_on_error)
        return await self._data_items("POST", BULK_PATH, json=body)

    def list_tickets(self, *, limit: int = 50, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Iterate over every matching ticket, page by page from page 0.

        Filters: `teamId` (or `team_id`) and `dateRange` (or `date_range`, one of 1d, 2d, 1w,
        2w, 3w, 4w, 1m, 3m). They are checked now, so a bad filter raises before any request.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return self._iterate(limit, list_params(filters))

    async def list_page(self, *, page: int, limit: int, **filters: Any) -> list[dict[str, Any]]:
        """Fetch one page (zero-based) of tickets."""
        return await self._page(page, limit, list_params(filters))

    async def send(self, call: ApiCall) -> ApiResult:
        """Send a planned call (path relative to `/v1`), checking bulk answers id by id."""
        method, body = self._planned(call)
        if call.path == BULK_PATH and method == "POST":
            return await self._create_each(call.body)
        result = await self._request(method, call.path, json=body)
        if call.path == BULK_PATH and method == "PATCH":
            check_bulk_update(result, call.body)
        return result

    async def still_to_send(self, call: ApiCall) -> ApiCall | None:
        """Read the ticket and return what of one ticket's update it does not hold yet.

        Creates go as they are: Thena finds a ticket already made by its `deDuplicationKey`.
        """
        if not reconcile.readable(call):
            return call
        return reconcile.rest(call, await self.get_ticket(call.ticket_id))

    async def _create_each(self, body: Mapping[str, Any]) -> ApiResult:
        """A bulk create as one `POST /tickets` per ticket, each with its `deDuplicationKey`.

        Answers like the bulk page: 201 `{status, message, data: [{id, title}]}`. A refused
        ticket raises its `ClientError`, naming it: at once with stopOnError, else after the
        others were sent. Any other failure (5xx, timeout, 429, spent budget) is raised as is:
        the whole call is retried, and the tickets it created already are found by their keys.
        """
        tickets, stop = bulk_create_parts(body)
        created: list[dict[str, Any]] = []
        refused: list[tuple[str, ClientError]] = []
        elapsed = 0.0
        for index, ticket in enumerate(tickets):
            where = f"tickets[{index}] ({ticket.get('title')!r})"
            try:
                result = await self._request("POST", "/tickets", json=dict(ticket))
            except ClientError as exc:
                if exc.status == 409 and ticket.get("deDuplicationKey"):
                    # The key was used before: the ticket exists (Thena may answer the ticket
                    # or a conflict; it does not document which).
                    created.append({"id": None, "title": ticket.get("title")})
                    continue
                if exc.status not in _TICKET_REFUSALS:
                    raise
                if stop:
                    raise _refusal(
                        exc, [(where, exc)], created, len(tickets), stopped=True
                    ) from exc
                refused.append((where, exc))
                continue
            elapsed += result.elapsed_ms
            made = data_object(result, "POST", "/tickets")
            created.append({"id": made.get("id"), "title": made.get("title")})
        if refused:
            raise _refusal(refused[0][1], refused, created, len(tickets), stopped=False)
        return ApiResult(
            status=201,
            body={"status": True, "message": "Success", "data": created},
            elapsed_ms=elapsed,
        )

    async def _iterate(self, limit: int, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        # Thena documents neither the largest `limit` nor paging metadata, so the page size the
        # server really uses is learnt from the answers: a page shorter than the longest one seen
        # is the last, and so is an empty one.
        page, size = 0, 0
        first_ids: set[Any] = set()
        while True:
            items = await self._page(page, limit, params)
            if not items:
                return
            first = items[0].get("id") if isinstance(items[0], dict) else None
            if first is not None and first in first_ids:
                # The same page again: the server ignores `page`. Stop rather than loop.
                return
            first_ids.add(first)
            for item in items:
                yield item
            size = max(size, len(items))
            if len(items) < size:
                return
            page += 1

    async def _page(self, page: int, limit: int, params: Mapping[str, str]) -> list[dict[str, Any]]:
        query = {**params, "page": str(page), "limit": str(limit)}
        result = await self._request("GET", "/tickets", params=query)
        body = result.body
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict):
            data = next((data[k] for k in _LIST_KEYS if isinstance(data.get(k), list)), None)
        if not isinstance(data, list):
            raise unexpected(result, "GET", "/tickets", "a JSON object with a 'data' list")
        return data

    def _headers(self, request_id: str) -> dict[str, str]:
        """The common headers, then the key or token and the organisation as configured."""
        headers = self._common_headers(request_id)
        if self._auth == "bearer":
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        else:
            headers["x-api-key"] = self._key.reveal()
        if self._org_id:
            headers["x-org-id"] = self._org_id
        return headers

    def _result(self, answer: Exchange, body: Any, request_id: str) -> ApiResult:
        """The answer, unless its envelope says `status: false`."""
        if isinstance(body, dict) and body.get("status") is False:
            # The envelope says it failed even though the HTTP status does not.
            raise ClientError(
                answer.status,
                detail=f"Thena answered status=false: {body.get('message') or 'no message'}",
                request_id=request_id,
                body=answer.raw.decode("utf-8", "replace")[:2000],
            )
        return super()._result(answer, body, request_id)


def list_params(filters: Mapping[str, Any]) -> dict[str, str]:
    """Turn `list_tickets` filters into query parameters (None values are left out)."""
    params: dict[str, str] = {}
    for name, value in filters.items():
        wire = LIST_FILTERS.get(name)
        if wire is None:
            raise ValueError(
                f"unknown ticket filter {name!r}; accepted: teamId, dateRange "
                "(or team_id, date_range)"
            )
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise TypeError(f"filter {name!r} must be a non-empty string, got {value!r}")
        if wire == "dateRange" and value not in DATE_RANGES:
            raise ValueError(
                f"dateRange {value!r} is not one of the accepted values: {', '.join(DATE_RANGES)}"
            )
        params[wire] = value
    return params


def bulk_update_body(ticket_ids: Sequence[str], **fields: Any) -> dict[str, Any]:
    """Build the `PATCH /tickets/bulk` body, checking the ids and the fields."""
    ids = id_list(ticket_ids, name="ticket_ids", empty="bulk_update needs at least one ticket id")
    _check_fields("bulk_update", fields, BULK_UPDATE_FIELDS)
    return {"ticketIds": ids, **fields}


def bulk_create_body(
    tickets: Sequence[Mapping[str, Any]], *, stop_on_error: bool = True
) -> dict[str, Any]:
    """Build the `POST /tickets/bulk` body `{tickets, options: {stopOnError}}`, checking that
    each ticket has only the fields the bulk page lists."""
    if isinstance(tickets, Mapping) or not tickets:
        raise ValueError("create_tickets needs a non-empty list of ticket objects")
    for index, ticket in enumerate(tickets):
        unknown = sorted(set(ticket) - set(BULK_CREATE_FIELDS))
        if unknown:
            raise ValueError(
                f"create_tickets: tickets[{index}] has {', '.join(unknown)}, which Thena's bulk "
                "create does not take (create_ticket does, deDuplicationKey included)"
            )
    return {"tickets": [dict(t) for t in tickets], "options": {"stopOnError": stop_on_error}}


def check_bulk_update(result: ApiResult, body: Mapping[str, Any]) -> None:
    """Raise `PartialFailure` unless every requested id is in the answer's `updated` list.

    A skipped id was refused for what it is (not found, not a status of its team): not
    transient. An id the answer lists neither as updated nor as skipped is transient when the
    call carried several ids: sent alone, its own answer says what became of it.
    """
    data = result.body.get("data") if isinstance(result.body, dict) else None
    updated = data.get("updated") if isinstance(data, dict) else None
    skipped = data.get("skipped") if isinstance(data, dict) else None
    if not isinstance(updated, list) and not isinstance(skipped, list):
        raise unexpected(
            result, "PATCH", BULK_PATH, "a 'data' object with 'updated' and 'skipped' lists"
        )
    done = [str(u.get("id")) for u in updated or () if isinstance(u, dict)]
    failed: dict[str, str] = {}
    for item in skipped or ():
        if isinstance(item, dict) and item.get("id") is not None:
            failed[str(item["id"])] = str(item.get("reason") or "skipped (no reason given)")
    requested = [str(i) for i in body.get("ticketIds") or ()]
    unreported = [i for i in requested if i not in failed and i not in done]
    for ticket_id in unreported:
        failed[ticket_id] = "not reported as updated by Thena"
    if failed:
        raise PartialFailure(failed, done, transient=unreported if len(requested) > 1 else ())


def bulk_create_parts(body: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], bool]:
    """The tickets and the `stopOnError` (default true) of a bulk create body."""
    tickets = body.get("tickets")
    if not isinstance(tickets, list) or not tickets:
        raise ValueError("a bulk create needs a non-empty 'tickets' list")
    if not all(isinstance(t, Mapping) for t in tickets):
        raise ValueError("every item of 'tickets' must be a ticket object")
    options = body.get("options")
    stop = options.get("stopOnError", True) if isinstance(options, Mapping) else True
    return tickets, stop is not False


def _refusal(
    first: ClientError,
    refused: Sequence[tuple[str, ClientError]],
    created: Sequence[Mapping[str, Any]],
    total: int,
    *,
    stopped: bool,
) -> ClientError:
    """The error of a bulk create Thena refused tickets of, saying what was and was not made."""
    reasons = "; ".join(f"{where}: {exc.detail or exc}" for where, exc in refused)
    made = f"{len(created)} of {total} ticket(s) created"
    if stopped:
        made += ", none after it sent (stopOnError)"
    ids = ", ".join(str(c["id"]) for c in created if c.get("id"))
    return type(first)(
        first.status,
        code=first.code,
        detail=f"{reasons}; {made}{f' ({ids})' if ids else ''}",
        request_id=first.request_id,
        body=first.body,
    )


def _check_fields(what: str, fields: Mapping[str, Any], accepted: Sequence[str]) -> None:
    unknown = sorted(set(fields) - set(accepted))
    if unknown:
        raise ValueError(
            f"{what}: Thena does not accept {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    if not fields:
        raise ValueError(f"{what} needs at least one field to change")
