"""CStarClient against the cStar simulator over real HTTP on loopback, plus error parsing."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from ticketwire.calls import ApiCall
from ticketwire.errors import (
    ClientError,
    ConfigError,
    Forbidden,
    HelpdeskHTTPError,
    HelpdeskUnavailable,
    NotFound,
    PartialFailure,
    RateLimited,
    ServerError,
    Unauthorized,
)
from ticketwire.secret import Secret
from ticketwire.vendors import HelpdeskClient
from ticketwire.vendors.cstar.client import (
    DEFAULT_BASE_URL,
    CStarClient,
    idempotency_key,
    list_params,
    team_base,
)
from ticketwire.vendors.cstar.problems import error_from_response

StartSim = Callable[..., Awaitable[CStarSimulator]]
TEAM = "0b6f4c1e-5d0a-4f7e-9c1b-2a3d4e5f6a7b"


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start simulators with config overrides; all are stopped after the test."""
    started: list[CStarSimulator] = []

    async def start(**config: Any) -> CStarSimulator:
        sim = CStarSimulator(CStarSimulatorConfig(seed=3, **config))
        await sim.start(host="127.0.0.1", port=0)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(start_sim: StartSim) -> CStarSimulator:
    return await start_sim()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def client(sim: CStarSimulator, session: aiohttp.ClientSession) -> CStarClient:
    return CStarClient(session, sim.url, sim.team_id, Secret(sim.api_key))


def writes(sim: CStarSimulator) -> list[Any]:
    return [e for e in sim.journal if e.method in ("POST", "PATCH")]


def call(
    ticket_id: str,
    body: dict[str, Any],
    *,
    method: str = "PATCH",
    event: str = "evt_1",
    path: str | None = None,
) -> ApiCall:
    return ApiCall(
        vendor="cstar",
        method=method,
        path=path or f"/tickets/{ticket_id}",
        body=body,
        ticket_id=ticket_id,
        rules=("r",),
        event_id=event,
    )


# --- construction ----------------------------------------------------------------------------


async def test_publishable_key_is_refused_before_any_call(
    sim: CStarSimulator, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ConfigError) as caught:
        CStarClient(session, sim.url, sim.team_id, Secret(sim.publishable_key))
    assert caught.value.variable == "CSTAR_API_KEY"
    assert str(caught.value) == (
        "CSTAR_API_KEY: expected a secret key (sk_live_… or sk_test_…); "
        "publishable keys (pk_…) are read-only"
    )
    assert sim.publishable_key not in str(caught.value)
    assert sim.journal == []


async def test_a_read_only_client_may_use_a_publishable_key(
    sim: CStarSimulator, session: aiohttp.ClientSession
) -> None:
    ticket = sim.create_ticket(title="Read me")
    reader = CStarClient(session, sim.url, sim.team_id, Secret(sim.publishable_key), write=False)
    assert (await reader.get_ticket(ticket["id"]))["title"] == "Read me"
    with pytest.raises(ValueError, match="write=False"):
        await reader.update_ticket(ticket["id"], status="open")
    assert writes(sim) == []


async def test_other_keys_are_refused(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ConfigError, match="sk_live_"):
        CStarClient(session, DEFAULT_BASE_URL, TEAM, Secret("ixk_live_123"))
    with pytest.raises(ValueError, match="timeout"):
        CStarClient(session, DEFAULT_BASE_URL, TEAM, Secret("sk_test_1"), timeout=0)


def test_base_url_forms() -> None:
    want = f"https://www.cstar.help/api/v1/teams/{TEAM}"
    assert team_base(DEFAULT_BASE_URL, TEAM) == want
    assert team_base("https://www.cstar.help/", TEAM) == want
    assert team_base("https://www.cstar.help/api/v1", TEAM) == want
    assert team_base(want, TEAM) == want
    assert team_base(want + "/", TEAM) == want
    with pytest.raises(ConfigError, match="another team"):
        team_base("https://www.cstar.help/api/v1/teams/other", TEAM)
    with pytest.raises(ConfigError) as caught:
        team_base("ftp://x", TEAM)
    assert caught.value.variable == "CSTAR_API_URL"
    with pytest.raises(ConfigError) as caught:
        team_base(DEFAULT_BASE_URL, "")
    assert caught.value.variable == "CSTAR_TEAM_ID"


async def test_repr_hides_the_key(client: CStarClient, sim: CStarSimulator) -> None:
    assert sim.api_key not in repr(client)
    assert client.base_url == sim.api_base
    assert isinstance(client, CStarClient)
    typed: HelpdeskClient = client
    assert typed.vendor == "cstar"


# --- tickets -----------------------------------------------------------------------------------


async def test_get_and_update(client: CStarClient, sim: CStarSimulator) -> None:
    ticket = sim.create_ticket(title="Printer", tags=["hw"])
    got = await client.get_ticket(ticket["id"])
    assert got["prefixedId"] == "CST-1024" and got["messages"] == []
    assert (await client.get_ticket("CST-1024"))["id"] == ticket["id"]
    updated = await client.update_ticket(ticket["id"], status="pending", assignedTo="agt_ava")
    assert (updated["status"], updated["assignedTo"]) == ("pending", "agt_ava")
    [patch] = writes(sim)
    assert patch.body == {"status": "pending", "assignedTo": "agt_ava"}
    assert patch.headers["Idempotency-Key"].startswith("tw_")
    with pytest.raises(ValueError, match="cannot PATCH subject"):
        await client.update_ticket(ticket["id"], subject="x")
    with pytest.raises(ValueError, match="at least one field"):
        await client.update_ticket(ticket["id"])


@pytest.mark.parametrize("style", ["meta", "top"])
async def test_list_walks_every_page_in_either_pagination_style(
    start_sim: StartSim, session: aiohttp.ClientSession, style: str
) -> None:
    sim = await start_sim(pagination=style)
    sim.seed_tickets(23, emit=False)
    client = CStarClient(session, sim.url, sim.team_id, Secret(sim.api_key))
    seen = [t["id"] async for t in client.list_tickets(page_size=10)]
    assert sorted(seen) == sorted(t["id"] for t in sim.tickets())
    pages = [e.query["page"] for e in sim.journal]
    assert pages == ["1", "2", "3"]
    assert all(e.query["pageSize"] == "10" for e in sim.journal)


async def test_list_filters(client: CStarClient, sim: CStarSimulator) -> None:
    a = sim.create_ticket(title="Refund please", priority="urgent", assignedTo="agt_ava")
    sim.create_ticket(title="Other", priority="low")
    found = [t["id"] async for t in client.list_tickets(priority=["urgent", "high"])]
    assert found == [a["id"]]
    found = [t["id"] async for t in client.list_tickets(assignedTo="agt_ava", search="refund")]
    assert found == [a["id"]]
    assert sim.journal[-1].query == {
        "assignedTo": "agt_ava",
        "search": "refund",
        "page": "1",
        "pageSize": "100",
    }
    items, info = await client.list_page(page=1, page_size=1)
    assert len(items) == 1 and info == {"page": 1, "pageSize": 1, "total": 2, "totalPages": 2}


def test_list_params_are_checked_before_any_request() -> None:
    assert list_params({"status": ["new", "open"], "customerId": None}) == {"status": "new,open"}
    with pytest.raises(ValueError, match="unknown ticket filter 'assignee_id'"):
        list_params({"assignee_id": "x"})
    with pytest.raises(TypeError):
        list_params({"status": object()})


async def test_list_rejects_a_page_size_over_100(client: CStarClient) -> None:
    with pytest.raises(ValueError, match="page_size"):
        client.list_tickets(page_size=101)


# --- planned calls and idempotency -------------------------------------------------------------


def test_idempotency_key_is_derived_from_the_event_and_the_call() -> None:
    first = call("tkt_1", {"status": "closed"})
    assert idempotency_key(first) == idempotency_key(call("tkt_1", {"status": "closed"}))
    assert idempotency_key(first) != idempotency_key(call("tkt_1", {"status": "open"}))
    assert idempotency_key(first) != idempotency_key(
        call("tkt_1", {"status": "closed"}, event="e2")
    )
    anonymous = call("tkt_1", {"status": "closed"}, event="")
    assert idempotency_key(anonymous) != idempotency_key(anonymous)


async def test_a_resent_call_is_applied_once(client: CStarClient, sim: CStarSimulator) -> None:
    ticket = sim.create_ticket(title="Once")
    planned = call(ticket["id"], {"status": "closed"})
    first = await client.send(planned)
    # Someone reopens the ticket; a retry of the old call (e.g. after a worker crash) must not
    # close it again: cStar answers the stored result for the same Idempotency-Key.
    sim.change_ticket(ticket["id"], status="open")
    again = await client.send(planned)
    assert again.body == first.body
    assert sim.ticket(ticket["id"])["status"] == "open"
    assert [e.replayed for e in writes(sim)] == [False, True]


async def test_send_checks_vendor_and_path(client: CStarClient) -> None:
    with pytest.raises(ValueError, match="not 'cstar'"):
        await client.send(ApiCall("inboxops", "PATCH", "/tickets/1", {}, "1"))
    with pytest.raises(ValueError, match="must start with '/'"):
        await client.send(call("1", {}, path="tickets/1"))


async def test_merge_tags_reads_the_ticket_then_writes_the_full_list(
    client: CStarClient, sim: CStarSimulator
) -> None:
    ticket = sim.create_ticket(title="Tags", tags=["billing", "old"])
    body = {"priority": "high", "__merge_tags__": {"add": ["vip"], "remove": ["old"]}}
    result = await client.send(call(ticket["id"], body))
    assert result.body["data"]["tags"] == ["billing", "vip"]
    gets = [e for e in sim.journal if e.method == "GET"]
    assert len(gets) == 1
    [patch] = writes(sim)
    assert patch.body == {"priority": "high", "tags": ["billing", "vip"]}


async def test_merge_metadata(client: CStarClient, sim: CStarSimulator) -> None:
    ticket = sim.create_ticket(title="Meta", metadata={"plan": "pro", "seats": 3})
    await client.send(call(ticket["id"], {"__merge_metadata__": {"seats": 5, "region": "eu"}}))
    assert sim.ticket(ticket["id"])["metadata"] == {"plan": "pro", "seats": 5, "region": "eu"}


async def test_merge_with_nothing_left_to_change_sends_no_patch(
    client: CStarClient, sim: CStarSimulator
) -> None:
    ticket = sim.create_ticket(title="Done", tags=["vip"], metadata={"a": 1})
    body = {"__merge_tags__": {"add": ["vip"], "remove": ["gone"]}, "__merge_metadata__": {"a": 1}}
    result = await client.send(call(ticket["id"], body))
    assert result.body["data"]["id"] == ticket["id"]
    assert writes(sim) == []


# --- bulk -----------------------------------------------------------------------------------


async def test_bulk_partial_failure_names_the_failed_ids(
    client: CStarClient, sim: CStarSimulator
) -> None:
    a, b = sim.create_ticket(title="A"), sim.create_ticket(title="B")
    body = {
        "action": "update",
        "resource": "tickets",
        "ids": [a["id"], "tkt_missing", b["id"]],
        "data": {"status": "closed"},
    }
    with pytest.raises(PartialFailure) as caught:
        await client.send(call(a["id"], body, method="POST", path="/bulk"))
    err = caught.value
    assert list(err.failed) == ["tkt_missing"]
    assert "resource_missing" in err.failed["tkt_missing"]
    assert err.succeeded == [a["id"], b["id"]]
    assert err.transient == frozenset()
    assert sim.ticket(a["id"])["status"] == "closed"


async def test_bulk_failure_codes_decide_per_id(client: CStarClient, sim: CStarSimulator) -> None:
    a, b = sim.create_ticket(title="A"), sim.create_ticket(title="B")
    sim.faults.fail_bulk_ids([a["id"]], "rate_limit_exceeded")
    with pytest.raises(PartialFailure) as caught:
        await client.bulk("update", [a["id"], b["id"]], {"priority": "high"})
    assert caught.value.transient == {a["id"]} and list(caught.value.failed) == [a["id"]]
    # One transient and one permanent failure in the same call: each id keeps its own verdict.
    sim.faults.fail_bulk_ids([b["id"]], "resource_missing")
    with pytest.raises(PartialFailure) as caught:
        await client.bulk("update", [a["id"], b["id"]], {"priority": "low"})
    assert set(caught.value.failed) == {a["id"], b["id"]}
    assert caught.value.transient == {a["id"]}


async def test_bulk_success_returns_the_result(client: CStarClient, sim: CStarSimulator) -> None:
    a = sim.create_ticket(title="A")
    result = await client.bulk("update", [a["id"]], {"tags": ["x"]})
    assert result == {
        "object": "bulk_result",
        "action": "update",
        "resource": "tickets",
        "total": 1,
        "succeeded": 1,
        "failed": 0,
        "errors": [],
    }


async def test_bulk_limits(client: CStarClient, sim: CStarSimulator) -> None:
    ids = [f"tkt_{i}" for i in range(101)]
    with pytest.raises(ValueError, match="at most 100"):
        await client.bulk("update", ids, {"status": "closed"})
    assert writes(sim) == []
    # The simulator refuses it too, when a call gets past the client's check.
    body = {"action": "update", "resource": "tickets", "ids": ids, "data": {"status": "closed"}}
    with pytest.raises(ClientError) as caught:
        await client.send(call("tkt_0", body, method="POST", path="/bulk"))
    assert caught.value.status == 400 and caught.value.code == "parameter_invalid"
    assert "ids: at most 100 ids" in str(caught.value)
    with pytest.raises(ValueError, match="unknown bulk action"):
        await client.bulk("merge", ["tkt_1"])
    with pytest.raises(ValueError, match="needs data"):
        await client.bulk("update", ["tkt_1"])


def test_a_bulk_result_that_does_not_name_its_failures_fails_every_id() -> None:
    from ticketwire.calls import ApiResult
    from ticketwire.vendors.cstar.client import bulk_outcome

    body = {"success": True, "data": {"object": "bulk_result", "failed": 1, "errors": ["boom"]}}
    with pytest.raises(PartialFailure) as caught:
        bulk_outcome(ApiResult(200, body), ["a", "b"])
    assert set(caught.value.failed) == {"a", "b"} and caught.value.succeeded == []
    # Which of the two failed is unknown: each is retried alone, where its answer is its own.
    assert caught.value.transient == {"a", "b"}
    with pytest.raises(PartialFailure) as caught:
        bulk_outcome(ApiResult(200, body), ["a"])
    assert caught.value.failed.keys() == {"a"} and caught.value.transient == frozenset()
    lenient = {"data": {"failed": 1, "errors": [{"resourceId": "b", "error": "locked"}]}}
    with pytest.raises(PartialFailure) as caught:
        bulk_outcome(ApiResult(200, lenient), ["a", "b"])
    assert caught.value.failed == {"b": "locked"} and caught.value.succeeded == ["a"]
    assert caught.value.transient == frozenset()


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("rate_limit_exceeded", True),
        ("api_error", True),
        ("internal_error", True),
        ("service_unavailable", True),
        ("timeout", True),
        ("resource_missing", False),
        ("parameter_invalid", False),
        ("insufficient_permissions", False),
        (None, False),
    ],
)
def test_each_failed_id_is_judged_by_its_own_code(code: str | None, transient: bool) -> None:
    from ticketwire.calls import ApiResult
    from ticketwire.vendors.cstar.client import bulk_outcome

    # The documented `bulk_result` carries "failed integer — Items that failed" and `errors`.
    errors = [
        {"id": "x", "code": code, "message": "as given"},
        {"id": "gone", "code": "resource_missing", "message": "No such ticket"},
        {"id": "busy", "code": "rate_limit_exceeded", "message": "slow down"},
    ]
    body = {"data": {"object": "bulk_result", "failed": 3, "errors": errors}}
    with pytest.raises(PartialFailure) as caught:
        bulk_outcome(ApiResult(200, body), ["ok", "x", "gone", "busy"])
    assert caught.value.succeeded == ["ok"]
    assert caught.value.transient == ({"x", "busy"} if transient else {"busy"})


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "key_of", "error", "code"),
    [
        # Bulk page: "401 Authentication failed — missing or invalid API key" with code
        # "authentication_required"; "403 Insufficient permissions — wrong key type or team
        # access" with code "insufficient_permissions".
        ("page", lambda s: "sk_test_unknown", Unauthorized, "authentication_required"),
        ("page", lambda s: s.expired_key, Unauthorized, "authentication_required"),
        ("page", lambda s: s.other_team_key, Forbidden, "insufficient_permissions"),
        ("detailed", lambda s: "sk_test_unknown", Unauthorized, "invalid_api_key"),
        ("detailed", lambda s: s.expired_key, Unauthorized, "key_expired"),
        ("detailed", lambda s: s.other_team_key, Forbidden, "team_access_denied"),
    ],
)
async def test_auth_errors_keep_their_code(
    start_sim: StartSim,
    session: aiohttp.ClientSession,
    codes: str,
    key_of: Any,
    error: type[HelpdeskHTTPError],
    code: str,
) -> None:
    sim = await start_sim(auth_error_codes=codes)
    client = CStarClient(session, sim.url, sim.team_id, Secret(key_of(sim)))
    with pytest.raises(error) as caught:
        await client.get_ticket("tkt_x")
    assert caught.value.code == code
    assert caught.value.request_id == sim.journal[-1].request_id
    assert "CSTAR_" in str(caught.value)


async def test_forbidden_write_advice(client: CStarClient, sim: CStarSimulator) -> None:
    sim.faults.fail_next("PATCH", "/tickets/*", 403)
    with pytest.raises(Forbidden) as caught:
        await client.update_ticket("tkt_x", status="open")
    assert caught.value.code == "insufficient_permissions"
    assert "must be a secret key" in str(caught.value) and "CSTAR_TEAM_ID" in str(caught.value)


async def test_not_found(client: CStarClient) -> None:
    with pytest.raises(NotFound) as caught:
        await client.get_ticket("tkt_nope")
    assert caught.value.code == "resource_missing" and "tkt_nope" in str(caught.value)


@pytest.mark.parametrize(
    ("places", "wait"),
    [(["header"], 42.0), (["body"], 42.0), (["message"], 42.0), ([], 60.0)],
)
async def test_429_reads_the_wait_from_header_body_or_message(
    start_sim: StartSim, session: aiohttp.ClientSession, places: list[str], wait: float
) -> None:
    sim = await start_sim(retry_after_in=tuple(places))
    client = CStarClient(session, sim.url, sim.team_id, Secret(sim.api_key))
    sim.faults.fail_next("GET", "/tickets/*", 429, retry_after=42)
    with pytest.raises(RateLimited) as caught:
        await client.get_ticket("tkt_x")
    assert caught.value.retry_after == wait
    assert caught.value.code == "rate_limit_exceeded"


async def test_429_from_the_rate_limit(start_sim: StartSim, session: aiohttp.ClientSession) -> None:
    sim = await start_sim(rate_limit="2/minute")
    client = CStarClient(session, sim.url, sim.team_id, Secret(sim.api_key))
    ticket = sim.create_ticket(title="Busy")
    await client.get_ticket(ticket["id"])
    await client.get_ticket(ticket["id"])
    with pytest.raises(RateLimited) as caught:
        await client.get_ticket(ticket["id"])
    assert 1 <= caught.value.retry_after <= 60


async def test_legacy_error_shape(start_sim: StartSim, session: aiohttp.ClientSession) -> None:
    sim = await start_sim(legacy_errors=True)
    client = CStarClient(session, sim.url, sim.team_id, Secret("sk_test_unknown"))
    with pytest.raises(Unauthorized) as caught:
        await client.get_ticket("tkt_x")
    assert caught.value.code == "UNAUTHORIZED"
    assert "Invalid or expired API key" in str(caught.value)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors(client: CStarClient, sim: CStarSimulator, status: int) -> None:
    sim.faults.fail_next("*", "/tickets/*", status)
    with pytest.raises(ServerError) as caught:
        await client.get_ticket("tkt_x")
    assert caught.value.status == status and "safe to retry" in str(caught.value)


async def test_timeout_is_unavailable(sim: CStarSimulator, session: aiohttp.ClientSession) -> None:
    client = CStarClient(session, sim.url, sim.team_id, Secret(sim.api_key), timeout=0.1)
    sim.faults.fail_next("GET", "/tickets/*", 200, delay=0.5)
    with pytest.raises(HelpdeskUnavailable, match=r"no response within 0\.1s"):
        await client.get_ticket("tkt_x")


async def test_connection_refused_is_unavailable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = CStarClient(session, f"http://127.0.0.1:{port}", TEAM, Secret("sk_test_1"))
    with pytest.raises(HelpdeskUnavailable, match="cannot connect"):
        await client.get_ticket("tkt_x")


# --- error parsing (pure) ------------------------------------------------------------------


def test_envelope_errors_keep_param_code_and_request_id() -> None:
    body = (
        b'{"success":false,"error":{"type":"invalid_request_error","code":"parameter_invalid",'
        b'"message":"must be one of new, open","param":"status","request_id":"req_9"},'
        b'"meta":{"timestamp":"2025-12-10T14:30:00Z"}}'
    )
    err = error_from_response(400, {}, body, request_id="mine")
    assert type(err) is ClientError and err.code == "parameter_invalid"
    assert err.detail is not None and err.detail.startswith("status: must be one of")
    assert err.request_id == "req_9"


def test_older_error_shape() -> None:
    err = error_from_response(401, {}, b'{"error":{"code":"UNAUTHORIZED","message":"Bad key"}}')
    assert isinstance(err, Unauthorized) and err.code == "UNAUTHORIZED"
    assert "Bad key" in str(err) and "CSTAR_API_KEY" in str(err)


@pytest.mark.parametrize(
    ("body", "headers", "wait"),
    [
        (b'{"error":{"code":"rate_limit_exceeded","message":"x"}}', {"Retry-After": "7"}, 7.0),
        (b'{"error":{"code":"rate_limit_exceeded","message":"x","retryAfter":8}}', {}, 8.0),
        (b'{"error":{"code":"rate_limit_exceeded"},"retryAfter":"9"}', {}, 9.0),
        (b'{"error":{"message":"x"},"meta":{"retryAfter":10}}', {}, 10.0),
        (b'{"error":{"message":"Rate limit exceeded. Try again in 60 seconds"}}', {}, 60.0),
        (b'{"error":{"message":"Slow down. Try again in 2 minutes."}}', {}, 120.0),
        (b'{"error":"Too Many Requests","message":"Try again in 5 seconds"}', {}, 5.0),
        (b"<html>busy</html>", {"Retry-After": "junk"}, 60.0),
    ],
)
def test_retry_after_sources_in_order(body: bytes, headers: dict[str, str], wait: float) -> None:
    err = error_from_response(429, headers, body)
    assert isinstance(err, RateLimited) and err.retry_after == wait


def test_non_json_error_bodies() -> None:
    err = error_from_response(502, {"Content-Type": "text/html"}, b"<h1>Bad gateway</h1>")
    assert isinstance(err, ServerError)
    assert "unexpected text/html response: <h1>Bad gateway</h1>" in str(err)
    assert "empty response body" in str(error_from_response(500, {}, b""))
