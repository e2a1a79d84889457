"""cStar REST client (`/api/v1/teams/{teamId}`): tickets, bulk, paged listing, planned calls.

Thin on purpose: one request per call (two for a tag or metadata merge, see `send`), no retries,
no sleeping. Failures come back as the error tree and the worker decides what to do.

Every POST and PATCH carries an `Idempotency-Key`. For a planned call it is derived from the
event id and the call's fingerprint, so a retry after a crash is recognised by cStar (for 24 h)
and applied once; calls without an event id get a fresh key per send.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Unpack
from urllib.parse import quote

import aiohttp

from ticketwire.calls import ApiCall, ApiResult
from ticketwire.engine.notes import is_note_call
from ticketwire.errors import ConfigError, PartialFailure
from ticketwire.secret import Secret
from ticketwire.vendors.client import (
    ApiClient,
    Options,
    Page,
    data_list,
    data_object,
    http_base,
    id_list,
    int_or_none,
    numbered_pages,
    ticket_path,
)
from ticketwire.vendors.cstar.models import (
    BULK_ACTIONS,
    BULK_RESOURCES,
    MAX_BULK_IDS,
    MAX_PAGE_SIZE,
    PATCH_FIELDS,
)
from ticketwire.vendors.cstar.problems import is_transient
from ticketwire.vendors.http import Exchange

VENDOR = "cstar"
DEFAULT_BASE_URL = "https://www.cstar.help"
API_PREFIX = "/api/v1"
#: Filters `GET /tickets` accepts.
LIST_FILTERS: tuple[str, ...] = ("status", "priority", "assignedTo", "customerId", "search")
#: Body keys of a planned PATCH that `send` resolves against the ticket's current state first.
MERGE_TAGS = "__merge_tags__"
MERGE_METADATA = "__merge_metadata__"

_READ_ONLY = "a secret key (sk_live_… or sk_test_…); publishable keys (pk_…) are read-only"


class CStarClient(ApiClient):
    """Async client for one cStar team."""

    vendor = VENDOR

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        team_id: str,
        api_key: Secret,
        *,
        write: bool = True,
        **options: Unpack[Options],
    ) -> None:
        key = api_key.reveal()
        if not key.startswith(("sk_", "pk_")):
            raise ConfigError("CSTAR_API_KEY", "a cStar secret key (sk_live_… or sk_test_…)")
        if write and key.startswith("pk_"):
            # Refused before any call: every write would answer 403 anyway.
            raise ConfigError("CSTAR_API_KEY", _READ_ONLY)
        self._team_id = team_id
        self._write = write
        super().__init__(session, base_url, api_key, **options)

    def _shown(self) -> list[tuple[str, object]]:
        """The common fields, then whether the client may write."""
        return [*super()._shown(), ("write", self._write)]

    def _api_base(self, base_url: str) -> str:
        """The team's API root every path is relative to, e.g. `…/api/v1/teams/<uuid>`."""
        return team_base(base_url or DEFAULT_BASE_URL, self._team_id)

    def _check_request(self, method: str, path: str) -> None:
        """Refuse a write before sending it when the client was built with `write=False`."""
        if method not in ("GET", "HEAD") and not self._write:
            raise ValueError(f"this client was built with write=False; cannot {method} {path}")

    def _result(self, answer: Exchange, body: Any, request_id: str) -> ApiResult:
        """The answer, named by the request id cStar puts in its `meta` when there is one."""
        return super()._result(answer, body, _response_id(body) or request_id)

    # ------------------------------------------------------------------ tickets

    async def get_ticket(self, ticket_id: str) -> dict[str, Any]:
        """Fetch one ticket (with its messages, as cStar inlines them)."""
        path = ticket_path(ticket_id)
        return _data_object(await self._request("GET", path), "GET", path)

    async def update_ticket(
        self, ticket_id: str, *, idempotency_key: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """PATCH the given fields (`assignedTo=None` unassigns; `tags` replaces the list)."""
        self._check_patch(fields, PATCH_FIELDS)
        path = ticket_path(ticket_id)
        result = await self._request(
            "PATCH", path, json=fields, extra_headers=_idempotent(idempotency_key or _fresh_key())
        )
        return _data_object(result, "PATCH", path)

    async def bulk(
        self,
        action: str,
        ids: Sequence[str],
        data: Mapping[str, Any] | None = None,
        *,
        resource: str = "tickets",
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Run one bulk action; return the `bulk_result`, or raise `PartialFailure`."""
        body = bulk_body(action, ids, data, resource=resource)
        result = await self._request(
            "POST", "/bulk", json=body, extra_headers=_idempotent(idempotency_key or _fresh_key())
        )
        return bulk_outcome(result, body["ids"])

    def list_tickets(
        self, *, page_size: int = MAX_PAGE_SIZE, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Iterate over every matching ticket, page by page from page 1.

        The filters are checked now, so a bad filter raises before any request is made.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
        return self._iterate(page_size, list_params(filters))

    async def list_page(
        self, *, page: int, page_size: int = MAX_PAGE_SIZE, **filters: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One page of tickets and its pagination as `{page, pageSize, total, totalPages, hasMore}`."""
        return await self._page(page, page_size, list_params(filters))

    # ------------------------------------------------------------------ planned calls

    async def send(self, call: ApiCall) -> ApiResult:
        """Send a planned call; its path is relative to the team root (`/tickets/…`, `/bulk`).

        A PATCH body may carry `__merge_tags__: {add, remove}` and `__merge_metadata__: {k: v}`
        when the event did not say what the ticket holds (cStar replaces the whole list or
        object): the ticket is read first and the full value computed. If nothing is left to
        change, no PATCH is sent and the answer is the ticket as read.

        A bulk call whose result lists failed ids raises `PartialFailure` naming them.
        """
        method, body = self._planned(call)
        key = idempotency_key(call) if body is not None else None
        if (
            method == "PATCH"
            and body is not None
            and (MERGE_TAGS in body or MERGE_METADATA in body)
        ):
            merged = await self._merged(call, body)
            if isinstance(merged, ApiResult):
                return merged
            # The body now depends on what was read, so the key covers it too: a retry that
            # reads the same state sends the same request, one that reads a newer state does not
            # collide with the first key.
            key = _key_for(call.event_id, f"{call.fingerprint()}:{_digest(merged)}")
            body = merged
        result = await self._request(method, call.path, json=body, extra_headers=_idempotent(key))
        if method == "POST" and call.path.rstrip("/") == "/bulk" and body is not None:
            ids = body.get("ids")
            bulk_outcome(result, [str(i) for i in ids] if isinstance(ids, list) else [])
        return result

    async def still_to_send(self, call: ApiCall) -> ApiCall | None:
        """Read the ticket and return what of one ticket's update it does not hold yet.

        Notes go as they are: their `Idempotency-Key` is the same on every send.
        """
        from ticketwire.vendors.cstar import reconcile  # it reads this module's constants

        if not reconcile.readable(call):
            return call
        return reconcile.rest(call, await self.get_ticket(call.ticket_id))

    async def _merged(self, call: ApiCall, body: dict[str, Any]) -> dict[str, Any] | ApiResult:
        path = call.path
        read = await self._request("GET", path)
        ticket = _data_object(read, "GET", path)
        out = {
            k: copy.deepcopy(v) for k, v in body.items() if k not in (MERGE_TAGS, MERGE_METADATA)
        }
        tags_op = body.get(MERGE_TAGS)
        if isinstance(tags_op, Mapping):
            current = [str(t) for t in ticket.get("tags") or [] if isinstance(t, str | int)]
            wanted = merge_tags(current, tags_op.get("add") or [], tags_op.get("remove") or [])
            if wanted != current:
                out["tags"] = wanted
        meta_op = body.get(MERGE_METADATA)
        if isinstance(meta_op, Mapping):
            current_meta = ticket.get("metadata")
            base = dict(current_meta) if isinstance(current_meta, Mapping) else {}
            wanted_meta = {**base, **meta_op}
            if wanted_meta != base:
                out["metadata"] = wanted_meta
        if not out:
            return read
        return out

    # ------------------------------------------------------------------ transport

    def _iterate(self, page_size: int, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        def is_last(page: int, answer: Page, seen: int) -> bool:
            items, info = answer
            size = int_or_none(info.get("pageSize")) or page_size
            total = int_or_none(info.get("total"))
            pages = int_or_none(info.get("totalPages"))
            more = info.get("hasMore")
            return (
                not items
                or more is False
                or (pages is not None and page >= pages)
                or (total is not None and seen >= total)
                or (more is None and len(items) < size)
            )

        return numbered_pages(lambda page: self._page(page, page_size, params), is_last)

    async def _page(self, page: int, page_size: int, params: Mapping[str, str]) -> Page:
        query = {**params, "page": str(page), "pageSize": str(page_size)}
        result = await self._request("GET", "/tickets", params=query)
        return data_list(result, "GET", "/tickets"), pagination_of(result.body)


# ---------------------------------------------------------------------- pure helpers


def team_base(base_url: str, team_id: str) -> str:
    """The team's API root from an origin (or a URL already ending in `/api/v1[/teams/<id>]`)."""
    if not team_id or "/" in team_id:
        raise ConfigError("CSTAR_TEAM_ID", "the UUID of your cStar team", team_id or None)
    base = http_base(
        base_url, lambda: ConfigError("CSTAR_API_URL", f"the cStar origin, e.g. {DEFAULT_BASE_URL}")
    )
    team_path = f"{API_PREFIX}/teams/{quote(team_id, safe='')}"
    if base.endswith(team_path):
        return base
    if f"{API_PREFIX}/teams/" in base:
        raise ConfigError(
            "CSTAR_API_URL",
            f"the cStar origin (e.g. {DEFAULT_BASE_URL}); the URL names another team than "
            "CSTAR_TEAM_ID",
        )
    base = base.removesuffix(API_PREFIX)
    return base + team_path


def idempotency_key(call: ApiCall) -> str:
    """The `Idempotency-Key` of a planned call: stable for an event's call, fresh without one."""
    if is_note_call(call):
        # Two rules may leave the same text on one event: two notes, so two keys.
        return _key_for(call.event_id, f"{call.fingerprint()}:{','.join(call.rules)}")
    return _key_for(call.event_id, call.fingerprint())


def _idempotent(key: str | None) -> dict[str, str] | None:
    """The header that carries `key`; none without a key."""
    return None if key is None else {"Idempotency-Key": key}


def _key_for(event_id: str, fingerprint: str) -> str:
    if not event_id:
        return _fresh_key()
    digest = hashlib.sha256(f"{event_id}\n{fingerprint}".encode()).hexdigest()[:40]
    return f"tw_{digest}"


def _fresh_key() -> str:
    return f"tw_{uuid.uuid4().hex}"


def _digest(body: Mapping[str, Any]) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def merge_tags(current: Sequence[str], add: Sequence[Any], remove: Sequence[Any]) -> list[str]:
    """The full tag list after removing then adding (current order kept, new tags appended)."""
    gone = {str(t) for t in remove}
    out = [t for t in current if t not in gone]
    for tag in add:
        if str(tag) not in out:
            out.append(str(tag))
    return out


def bulk_body(
    action: str, ids: Sequence[str], data: Mapping[str, Any] | None, *, resource: str = "tickets"
) -> dict[str, Any]:
    """Build the `POST /bulk` body, checking the action, the resource and the ids."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}; accepted: {', '.join(BULK_ACTIONS)}")
    if resource not in BULK_RESOURCES:
        raise ValueError(
            f"unknown bulk resource {resource!r}; accepted: {', '.join(BULK_RESOURCES)}"
        )
    sent = id_list(ids, name="ids", empty="bulk needs at least one id")
    if len(sent) > MAX_BULK_IDS:
        raise ValueError(f"cStar takes at most {MAX_BULK_IDS} ids per bulk call, got {len(ids)}")
    if action == "update" and not data:
        raise ValueError("a bulk update needs data, e.g. {'status': 'closed'}")
    body: dict[str, Any] = {"action": action, "resource": resource, "ids": sent}
    if data:
        body["data"] = dict(data)
    return body


def bulk_outcome(result: ApiResult, ids: Sequence[str]) -> dict[str, Any]:
    """The `bulk_result` of an answer; raise `PartialFailure` when any id was not processed.

    `errors[]` items are read leniently (`{id, code, message}`, or `resourceId`/`error`). Each
    failed id is judged on its own code: transient (rate limit, server trouble) or not. When
    cStar counts more failures than it names, every id it did not name is treated as failed
    too (an id is never counted as done while cStar may have failed it), and as transient when
    the call carried several ids: sent alone, its own answer says what became of it.
    """
    data = _data_object(result, "POST", "/bulk")
    failed_count = int_or_none(data.get("failed")) or 0
    listed = data.get("errors")
    errors: list[Any] = listed if isinstance(listed, list) else []
    failed: dict[str, str] = {}
    transient: set[str] = set()
    for item in errors:
        if not isinstance(item, Mapping):
            continue
        item_id = item.get("id") or item.get("resourceId") or item.get("resource_id")
        if item_id is None:
            continue
        code = item.get("code") or item.get("type")
        message = item.get("message") or item.get("error") or code or "failed"
        failed[str(item_id)] = f"{code}: {message}" if code and code != message else str(message)
        if is_transient(str(code) if code else None):
            transient.add(str(item_id))
    if failed_count > len(failed):
        for item_id in ids:
            if item_id not in failed:
                failed[item_id] = (
                    f"cStar reported {failed_count} failure(s) without naming every id; "
                    "not counted as done"
                )
                if len(ids) > 1:
                    transient.add(item_id)
    if not failed:
        return data
    succeeded = [i for i in ids if i not in failed]
    raise PartialFailure(failed, succeeded, transient=transient)


def pagination_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """Paging info from `meta.pagination` or a top-level `pagination`, whichever is present."""
    meta = body.get("meta")
    info = meta.get("pagination") if isinstance(meta, Mapping) else None
    if not isinstance(info, Mapping):
        info = body.get("pagination")
    return dict(info) if isinstance(info, Mapping) else {}


def list_params(filters: Mapping[str, Any]) -> dict[str, str]:
    """Turn `list_tickets` filters into query parameters (lists comma-joined; None left out)."""
    params: dict[str, str] = {}
    for name, value in filters.items():
        if name not in LIST_FILTERS:
            raise ValueError(f"unknown ticket filter {name!r}; accepted: {', '.join(LIST_FILTERS)}")
        if value is None:
            continue
        if isinstance(value, str | int) and not isinstance(value, bool):
            params[name] = str(value)
        elif isinstance(value, Sequence):
            params[name] = ",".join(str(v) for v in value)
        else:
            raise TypeError(f"filter {name!r}: cannot send a {type(value).__name__}")
    return params


def _response_id(body: Any) -> str | None:
    meta = body.get("meta") if isinstance(body, dict) else None
    value = meta.get("requestId") if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


def _data_object(result: ApiResult, method: str, path: str) -> dict[str, Any]:
    body = result.body
    # Older pages answer the object itself, without the envelope.
    if (
        isinstance(body, dict)
        and not isinstance(body.get("data"), dict)
        and "success" not in body
        and ("id" in body or "object" in body)
    ):
        return body
    return data_object(result, method, path)
