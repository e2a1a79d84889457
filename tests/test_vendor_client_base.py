"""ApiClient and the shared problem reader against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Protocol

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ticketwire.calls import ApiCall, ApiResult
from ticketwire.errors import (
    ClientError,
    ConfigError,
    HelpdeskHTTPError,
    HelpdeskUnavailable,
    NotConnected,
    NotFound,
    RateLimited,
    ServerError,
)
from ticketwire.secret import Secret
from ticketwire.vendors.client import (
    ApiClient,
    data_list,
    data_object,
    http_base,
    ticket_path,
)
from ticketwire.vendors.problems import (
    DEFAULT_RETRY_AFTER,
    SNIPPET_CHARS,
    advised,
    decode,
    header_retry_after,
    http_error,
    scalar_text,
    unreadable_detail,
)
from workers.retrypolicy import attempt_record, may_have_applied

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Serve(Protocol):
    """Start a server answering one route; return a client on it (`timeout=` etc. as options)."""

    def __call__(
        self, method: str, path: str, handler: Handler, **options: Any
    ) -> Awaitable[Probe]:
        """The client on the started server."""
        ...


def read_probe_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    request_id: str | None = None,
) -> HelpdeskHTTPError:
    """A minimal vendor reader: `{code, message}` bodies, everything else quoted."""
    text, doc = decode(body)
    if doc is not None:
        code, detail = scalar_text(doc.get("code")), scalar_text(doc.get("message"))
    else:
        code, detail = None, unreadable_detail(headers, text)
    return http_error(
        status,
        text,
        code=code,
        detail=advised(status, detail, server="retry later", redirect="fix the URL", other=""),
        request_id=request_id,
        retry_after=lambda: header_retry_after(headers) or DEFAULT_RETRY_AFTER,
    )


class Probe(ApiClient):
    """The smallest helpdesk client: a root under `/v1`, the default bearer auth."""

    vendor = "probe"
    helpdesk = "Probe"
    url_setting = "PROBE_API_URL"
    read_error = staticmethod(read_probe_error)

    def _api_base(self, base_url: str) -> str:
        """The root under `/v1`."""
        return http_base(
            base_url, lambda: ConfigError("PROBE_API_URL", "an http(s) URL"), prefix="/v1"
        )

    async def get(self, path: str, **kw: Any) -> ApiResult:
        """GET `path` through the base's one exchange."""
        return await self._request("GET", path, **kw)


@pytest.fixture
async def serve(aiohttp_server: Any) -> AsyncIterator[Serve]:
    """Start a server answering `method path` with `handler`; return a Probe client on it."""
    async with aiohttp.ClientSession() as session:

        async def start(method: str, path: str, handler: Handler, **kw: Any) -> Probe:
            app = web.Application()
            app.router.add_route(method, path, handler)
            server: TestServer = await aiohttp_server(app)
            options = {"timeout": 5.0, "user_agent": "probe/1", **kw}
            return Probe(session, str(server.make_url("/")), Secret("k-1"), **options)

        yield start


def answer(status: int, body: str, content_type: str, **headers: str) -> Handler:
    """A handler that always sends this answer."""

    async def handler(request: web.Request) -> web.Response:
        # Content-Type as given, without the charset `text=` would add.
        sent = {"Content-Type": content_type, **headers}
        return web.Response(status=status, body=body.encode(), headers=sent)

    return handler


# --- the exchange ----------------------------------------------------------------------------


async def test_request_sends_auth_then_common_headers_and_extras_last(serve: Serve) -> None:
    seen: list[Mapping[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())
        return web.json_response({"data": [{"id": 1}]}, headers={"X-Request-Id": "srv-1"})

    client = await serve("GET", "/v1/things", echo, user_agent="probe/2")
    result = await client.get("/things", extra_headers={"Idempotency-Key": "k"})
    # aiohttp may respell a name's case on the wire; the order is what the client chose.
    sent = seen[0]
    names = [name.lower() for name in sent]
    ours = ["authorization", "accept", "user-agent", "x-request-id", "idempotency-key"]
    assert [n for n in names if n in ours] == ours
    assert sent["Authorization"] == "Bearer k-1" and sent["User-Agent"] == "probe/2"
    assert uuid.UUID(sent["X-Request-Id"])
    # The answer's own id names the result; the body is the parsed JSON.
    assert result.request_id == "srv-1" and result.body == {"data": [{"id": 1}]}
    assert result.status == 200 and result.elapsed_ms >= 0
    assert data_list(result, "GET", "/things") == [{"id": 1}]


async def test_request_id_falls_back_to_the_one_sent(serve: Serve) -> None:
    sent: list[str] = []

    async def plain(request: web.Request) -> web.Response:
        sent.append(request.headers["X-Request-Id"])
        return web.Response(status=204)

    client = await serve("GET", "/v1/empty", plain)
    result = await client.get("/empty")
    assert result.body is None and result.request_id == sent[0]


async def test_non_json_success_quotes_a_flat_cut_snippet(serve: Serve) -> None:
    page = "<html>\n  <p>Sign in</p>\n" + "x" * 500 + "</html>"
    client = await serve("GET", "/v1/page", answer(200, page, "text/html"))
    with pytest.raises(ServerError) as caught:
        await client.get("/page")
    shown = " ".join(page.split())[:SNIPPET_CHARS]
    assert caught.value.detail == (
        f"expected a JSON body, got text/html: {shown!r}; check PROBE_API_URL, then retry"
    )


async def test_slow_answer_beyond_the_timeout_is_unavailable(serve: Serve) -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    client = await serve("GET", "/v1/slow", stall, timeout=0.1)
    try:
        with pytest.raises(HelpdeskUnavailable) as caught:
            await client.get("/slow")
    finally:
        release.set()
    message = str(caught.value)
    assert "Probe GET /v1/slow failed: no response within 0.1s" in message


async def test_a_connection_never_made_is_told_apart_from_a_lost_answer() -> None:
    # A port just closed: the connection is refused, so the request carried nothing.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        closed = Probe(session, f"http://127.0.0.1:{port}/", Secret("k-1"), timeout=2.0)
        with pytest.raises(NotConnected) as caught:
            await closed.get("/x")
    assert isinstance(caught.value, HelpdeskUnavailable)
    # So a retry needs no read-back; a timeout (above) still does.
    assert not may_have_applied(attempt_record(caught.value, 0))


# --- error answers -----------------------------------------------------------------------------


async def test_problem_body_is_read_by_the_vendor_hook(serve: Serve) -> None:
    body = json.dumps({"code": "no_such_thing", "message": "thing 9 is gone"})
    client = await serve(
        "GET", "/v1/things/9", answer(404, body, "application/json", **{"X-Request-Id": "r9"})
    )
    with pytest.raises(NotFound) as caught:
        await client.get("/things/9")
    assert caught.value.code == "no_such_thing"
    assert caught.value.detail == "thing 9 is gone"
    assert caught.value.body == body


async def test_long_unreadable_error_body_is_cut_with_an_ellipsis(serve: Serve) -> None:
    page = "<h1>Bad   gateway</h1>\n" + "y" * 400
    client = await serve("GET", "/v1/proxy", answer(502, page, "text/html"))
    with pytest.raises(ServerError) as caught:
        await client.get("/proxy")
    flat = " ".join(page.split())
    snippet = flat[: SNIPPET_CHARS - 1] + "…"
    assert caught.value.detail == f"unexpected text/html response: {snippet}; retry later"


async def test_json_that_is_not_an_object_is_not_a_problem_body(serve: Serve) -> None:
    client = await serve("GET", "/v1/list", answer(400, '["a", "b"]', "application/json"))
    with pytest.raises(ClientError) as caught:
        await client.get("/list")
    assert caught.value.code is None
    assert caught.value.detail == 'unexpected application/json response: ["a", "b"]'


async def test_retry_after_in_seconds(serve: Serve) -> None:
    client = await serve("GET", "/v1/busy", answer(429, "", "text/plain", **{"Retry-After": "7"}))
    with pytest.raises(RateLimited) as caught:
        await client.get("/busy")
    assert caught.value.retry_after == 7.0
    assert caught.value.detail == "empty response body; retry after 7s"


async def test_retry_after_as_an_http_date(serve: Serve) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    client = await serve(
        "GET", "/v1/busy", answer(429, "{}", "application/json", **{"Retry-After": when})
    )
    with pytest.raises(RateLimited) as caught:
        await client.get("/busy")
    # The date has whole seconds, and some time passes between the answer and the reading.
    assert 100 < caught.value.retry_after <= 120


async def test_unreadable_retry_after_falls_back(serve: Serve) -> None:
    client = await serve(
        "GET", "/v1/busy", answer(429, "{}", "application/json", **{"Retry-After": "soon"})
    )
    with pytest.raises(RateLimited) as caught:
        await client.get("/busy")
    assert caught.value.retry_after == DEFAULT_RETRY_AFTER


# --- body shapes and paths ---------------------------------------------------------------------


def test_data_object_names_what_came_instead() -> None:
    result = ApiResult(status=200, body=["x"] * 100, request_id="r1")
    with pytest.raises(HelpdeskHTTPError) as caught:
        data_object(result, "GET", "/things/1")
    shown = repr(["x"] * 100)[: SNIPPET_CHARS - 1] + "…"
    assert caught.value.detail == (
        f"GET /things/1: expected a JSON object with a 'data' object, got {shown}"
    )
    assert caught.value.request_id == "r1"
    with pytest.raises(HelpdeskHTTPError, match="a 'data' list, got None"):
        data_list(ApiResult(status=200, body=None), "GET", "/things")


def test_ticket_path_quotes_one_segment() -> None:
    assert ticket_path("a/b c") == "/tickets/a%2Fb%20c"
    with pytest.raises(ValueError, match="empty"):
        ticket_path("")


async def test_configuration_is_checked_before_any_request() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="timeout must be positive"):
            Probe(session, "https://h.example", Secret("k"), timeout=0, user_agent="p")
        with pytest.raises(ConfigError, match="PROBE_API_URL"):
            Probe(session, "ftp://h.example", Secret("k"), timeout=1, user_agent="p")
        client = Probe(
            session, "https://h.example/v1/?q=1#f", Secret("k"), timeout=1, user_agent="p"
        )
    assert client.base_url == "https://h.example/v1"
    assert repr(client) == (
        "Probe(base_url='https://h.example/v1', api_key=Secret('**********'), timeout=1)"
    )


async def test_planned_calls_must_be_this_helpdesks() -> None:
    async with aiohttp.ClientSession() as session:
        client = Probe(session, "https://h.example", Secret("k"), timeout=1, user_agent="p")
    assert client._planned(ApiCall("probe", "get", "/x", {"a": 1}, "1")) == ("GET", None)
    assert client._planned(ApiCall("probe", "PATCH", "/x", {"a": 1}, "1")) == ("PATCH", {"a": 1})
    with pytest.raises(ValueError, match="not 'probe'"):
        client._planned(ApiCall("other", "GET", "/x", {}, "1"))
    with pytest.raises(ValueError, match="must start with '/'"):
        client._planned(ApiCall("probe", "GET", "x", {}, "1"))
