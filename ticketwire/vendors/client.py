"""What every helpdesk API client does alike: send one request, decode the answer, name errors.

A vendor's client supplies its API root, its auth headers, its error reader and its operations;
`ApiClient` does the exchange, the timeout, the JSON decoding and the checks of the body's shape.
"""

from __future__ import annotations

import importlib
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypedDict
from urllib.parse import quote

import aiohttp
from yarl import URL

from ticketwire.accountkey import DEFAULT
from ticketwire.calls import ApiCall, ApiResult
from ticketwire.errors import ConfigError, HelpdeskHTTPError, ServerError
from ticketwire.ratebudget import RateBudget
from ticketwire.secret import Secret
from ticketwire.vendors.http import Exchange, exchange, header
from ticketwire.vendors.problems import SNIPPET_CHARS, flat

#: Methods whose planned call sends its body.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: Seconds a request may take, unless the client is told otherwise.
DEFAULT_TIMEOUT = 10.0
#: The `User-Agent` every request sends, unless the client is told otherwise.
USER_AGENT = "ticketwire/0.1"


class Options(TypedDict, total=False):
    """What every client takes besides its account: seconds a request may take, `User-Agent`."""

    timeout: float
    user_agent: str


#: One page of a numbered listing: its items and its paging information.
Page = tuple[list[dict[str, Any]], dict[str, Any]]


class ErrorReader(Protocol):
    """A helpdesk's reading of a non-2xx answer into the error tree."""

    def __call__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        request_id: str | None = None,
    ) -> HelpdeskHTTPError:
        """The error for `status`; `request_id` is used when the answer names none."""
        ...


class ApiClient(ABC):
    """One helpdesk API root: one request per call, no retries and no sleeping."""

    #: The account's shared request budget; None sends without one.
    budget: RateBudget | None = None
    #: The configured account it acts for: its requests' `account` metrics label.
    account: str = DEFAULT
    #: The vendor planned calls name, e.g. `inboxops`.
    vendor: str
    # The three below default to what the vendor's bundle and package say (`_describe`).
    #: How messages name the helpdesk, e.g. `InboxOps`: its bundle's title.
    helpdesk: str
    #: What to check when a 2xx answer is not JSON, e.g. `THENA_API_URL`: its API URL's variable.
    url_setting: str
    #: The helpdesk's error reader: its package's `problems.error_from_response`.
    read_error: ErrorReader

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: Secret,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._check_key(api_key)
        self._describe()
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        self._session = session
        self._key = api_key
        self._base = self._api_base(base_url)
        # Messages name a call by its path as sent, as the helpdesk's own logs would.
        self._root = URL(self._base).path.rstrip("/")
        self._timeout = timeout
        self._client_timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = user_agent

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self._shown())
        return f"{type(self).__name__}({shown})"

    def _shown(self) -> list[tuple[str, object]]:
        """What `repr` shows, in order; the key shows as its `Secret` does, hidden."""
        return [("base_url", self._base), ("api_key", self._key), ("timeout", self._timeout)]

    def _describe(self) -> None:
        """Take what the client class does not say about its helpdesk from the vendor's parts."""
        said = {name for cls in type(self).__mro__ for name in vars(cls)}
        if {"helpdesk", "url_setting", "read_error"} <= said:
            return
        from ticketwire.vendors.registry import bundle  # the registry imports every vendor

        described = bundle(self.vendor)
        if "helpdesk" not in said:
            self.helpdesk = described.title
        if "url_setting" not in said:
            self.url_setting = described.variable_of("api_url")
        if "read_error" not in said:
            # The `problems` module beside the client's own.
            package = type(self).__module__.rpartition(".")[0]
            self.read_error = importlib.import_module(f"{package}.problems").error_from_response

    def _check_key(self, api_key: Secret) -> None:
        """Raise `ConfigError` when `api_key` cannot be one of this helpdesk's; any key may be."""
        return

    def _check_request(self, method: str, path: str) -> None:
        """Raise `ValueError` for a request this client may not send; every one may be sent."""
        return

    @property
    def base_url(self) -> str:
        """The API root every path is relative to."""
        return self._base

    @abstractmethod
    def _api_base(self, base_url: str) -> str:
        """The API root from the configured URL; raise `ConfigError` when it cannot be one."""

    def _headers(self, request_id: str) -> dict[str, str]:
        """Every request's headers: the API key as a bearer token, then `_common_headers`."""
        return {"Authorization": f"Bearer {self._key.reveal()}", **self._common_headers(request_id)}

    def _common_headers(self, request_id: str) -> dict[str, str]:
        """The headers every helpdesk gets besides its auth."""
        return {
            "Accept": "application/json",
            "User-Agent": self._user_agent,
            "X-Request-Id": request_id,
        }

    def _check_patch(self, fields: Mapping[str, Any], accepted: Sequence[str]) -> None:
        """Refuse a ticket PATCH of fields the helpdesk does not take, or of none."""
        unknown = sorted(set(fields) - set(accepted))
        if unknown:
            raise ValueError(
                f"{self.helpdesk} cannot PATCH {', '.join(unknown)}; accepted: {', '.join(accepted)}"
            )
        if not fields:
            raise ValueError("update_ticket needs at least one field to change")

    def _planned(self, call: ApiCall) -> tuple[str, dict[str, Any] | None]:
        """The method and the body to send of a planned call, checked to be this helpdesk's."""
        if call.vendor != self.vendor:
            raise ValueError(f"call is for {call.vendor!r}, not {self.vendor!r}: {call.describe()}")
        if not call.path.startswith("/"):
            raise ValueError(f"call path must start with '/': {call.describe()}")
        method = call.method.upper()
        return method, call.body if method in BODY_METHODS else None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> ApiResult:
        """Do one HTTP exchange: the only place a client touches the network."""
        self._check_request(method, path)
        request_id = str(uuid.uuid4())
        answer = await exchange(
            self._session,
            method,
            self._base + path,
            json=json,
            params=params,
            headers={**self._headers(request_id), **(extra_headers or {})},
            client_timeout=self._client_timeout,
            label=f"{self.helpdesk} {method} {self._root}{path}",
            request_id=request_id,
            budget=self.budget,
            account=self.account,
        )
        if not 200 <= answer.status < 300:
            raise self.read_error(answer.status, answer.headers, answer.raw, request_id=request_id)
        rid = header(answer.headers, "X-Request-Id") or request_id
        return self._result(answer, self._decode(answer, rid), rid)

    async def _data(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Do one request and return the `data` object of its answer."""
        return data_object(
            await self._request(method, path, json=json, params=params), method, path
        )

    async def _data_items(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Do one request and return the `data` list of its answer."""
        return data_list(await self._request(method, path, json=json, params=params), method, path)

    def _decode(self, answer: Exchange, request_id: str) -> Any:
        """The JSON of a 2xx answer (None when empty); a `ServerError` when it is not JSON."""
        if not answer.raw.strip():
            return None
        try:
            return json.loads(answer.raw)
        except ValueError:
            pass
        # A 2xx that is not JSON is usually a proxy or login page in front of the API. Whether
        # a retry is safe is each helpdesk's to say (idempotent writes or keys).
        shown = flat(answer.raw.decode("utf-8", errors="replace"))[:SNIPPET_CHARS]
        kind = header(answer.headers, "Content-Type") or "no content type"
        raise ServerError(
            answer.status,
            detail=(
                f"expected a JSON body, got {kind}: {shown!r}; check {self.url_setting}, then retry"
            ),
            request_id=request_id,
        )

    def _result(self, answer: Exchange, body: Any, request_id: str) -> ApiResult:
        """What a 2xx answer returns; a helpdesk may first check its envelope or read its id."""
        return ApiResult(
            status=answer.status,
            body=body,
            request_id=request_id,
            elapsed_ms=answer.elapsed_ms,
            headers=dict(answer.headers),
        )


async def numbered_pages(
    fetch: Callable[[int], Awaitable[Page]],
    is_last: Callable[[int, Page, int], bool],
) -> AsyncIterator[dict[str, Any]]:
    """Every item of pages 1, 2, … until `is_last(page, (items, info), seen so far)` says so."""
    page, seen = 1, 0
    while True:
        items, info = await fetch(page)
        for item in items:
            yield item
        seen += len(items)
        if is_last(page, (items, info), seen):
            return
        page += 1


def id_list(ids: Sequence[str], *, name: str, empty: str) -> list[str]:
    """`ids` as strings; a single string (`name` says which argument) or no id is refused."""
    if isinstance(ids, str | bytes):
        raise TypeError(f"{name} must be a sequence of ids, not a single string")
    if not ids:
        raise ValueError(empty)
    return [str(i) for i in ids]


def int_or_none(value: Any) -> int | None:
    """`value` when it is a JSON integer (not a boolean), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def http_base(base_url: str, bad: Callable[[], ConfigError], *, prefix: str = "") -> str:
    """`base_url` without query, fragment or trailing slash, ending in `prefix`; `bad()` is raised
    unless it is an http(s) URL with a host."""
    url = URL(base_url.strip())
    if url.scheme not in ("http", "https") or not url.host:
        raise bad()
    base = str(url.with_query(None).with_fragment(None)).rstrip("/")
    return base if base.endswith(prefix) else base + prefix


def ticket_path(ticket_id: str) -> str:
    """`/tickets/<id>`, the id quoted as one path segment."""
    text = str(ticket_id)
    if not text:
        raise ValueError("ticket id is empty")
    return "/tickets/" + quote(text, safe="")


def data_object(result: ApiResult, method: str, path: str) -> dict[str, Any]:
    """The `data` object of an answer's JSON body."""
    body = result.body
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        data: dict[str, Any] = body["data"]
        return data
    raise unexpected(result, method, path, "a JSON object with a 'data' object")


def data_list(result: ApiResult, method: str, path: str) -> list[dict[str, Any]]:
    """The `data` list of an answer's JSON body."""
    body = result.body
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise unexpected(result, method, path, "a JSON object with a 'data' list")
    items: list[dict[str, Any]] = body["data"]
    return items


def unexpected(result: ApiResult, method: str, path: str, wanted: str) -> HelpdeskHTTPError:
    """The error of a 2xx answer whose body is not the shape the call expects."""
    shown = repr(result.body)
    if len(shown) > SNIPPET_CHARS:
        shown = shown[: SNIPPET_CHARS - 1] + "…"
    return HelpdeskHTTPError(
        result.status,
        detail=f"{method} {path}: expected {wanted}, got {shown}",
        request_id=result.request_id,
    )
