"""The cStar simulator's API over real HTTP: envelopes, auth, team scope, publishable keys,
idempotency, bulk, rate limits, listing, messages and the `/_sim` control routes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from simulator.common.clock import ManualClock
from simulator.cstar import (
    SIM_KEY,
    CStarSimulator,
    CStarSimulatorConfig,
    RateLimit,
    create_app,
    run_simulator,
)
from tests.conftest import wait_for
from ticketwire.errors import ConfigError

StartSim = Callable[..., Awaitable[CStarSimulator]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    started: list[CStarSimulator] = []

    async def start(clock: ManualClock | None = None, **config: Any) -> CStarSimulator:
        sim = CStarSimulator(CStarSimulatorConfig(seed=11, **config), clock=clock)
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(start_sim: StartSim) -> CStarSimulator:
    return await start_sim()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Api:
    """Raw requests to one simulator with one key."""

    def __init__(self, sim: CStarSimulator, http: aiohttp.ClientSession, key: str | None) -> None:
        self.sim, self.http, self.key = sim, http, key

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        team: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, CIMultiDict[str], Any]:
        url = f"{self.sim.url}/api/v1/teams/{team or self.sim.team_id}{path}"
        sent = dict(headers or {})
        if self.key is not None:
            sent.setdefault("Authorization", f"Bearer {self.key}")
        async with self.http.request(method, url, json=body, headers=sent, params=params) as resp:
            return resp.status, CIMultiDict(resp.headers), await resp.json(content_type=None)


@pytest.fixture
def api(sim: CStarSimulator, http: aiohttp.ClientSession) -> Api:
    return Api(sim, http, sim.api_key)


# --- envelopes and auth ------------------------------------------------------------------------


async def test_success_envelope(api: Api, sim: CStarSimulator) -> None:
    status, headers, body = await api("POST", "/tickets", {"title": "Help", "customerName": "Dana"})
    assert status == 201 and body["success"] is True
    assert body["meta"]["requestId"] == headers["X-Request-Id"]
    assert body["meta"]["requestId"].startswith("req_")
    ticket = body["data"]
    assert ticket["id"].startswith("tkt_") and ticket["prefixedId"] == "CST-1024"
    assert ticket["customerId"].startswith("cus_") and ticket["customerName"] == "Dana"
    assert (ticket["status"], ticket["priority"], ticket["object"]) == ("new", "normal", "ticket")
    # The tickets reference's object: id, object, title, status, priority, customerId,
    # customerName, assignedTo, tags, notes, messageCount, responseDeadline, resolutionDeadline,
    # firstResponseAt, responseTier, resolutionTier, slaPaused, metadata, createdAt, updatedAt,
    # closedAt, resolvedAt.
    documented = {
        *("id", "object", "title", "status", "priority", "customerId", "customerName"),
        *("assignedTo", "tags", "notes", "messageCount", "responseDeadline"),
        *("resolutionDeadline", "firstResponseAt", "responseTier", "resolutionTier"),
        *("slaPaused", "metadata", "createdAt", "updatedAt", "closedAt", "resolvedAt"),
    }
    assert documented <= set(ticket), documented - set(ticket)
    status, _, body = await api("GET", f"/tickets/{ticket['prefixedId']}")
    assert status == 200 and body["data"]["id"] == ticket["id"] and body["data"]["messages"] == []


AUTH_CASES = [None, "Basic sk_test_x", "Bearer ixk_live_x", "Bearer sk_test_unknown", "expired"]


async def unauthenticated(sim: CStarSimulator, http: aiohttp.ClientSession, auth: str | None):
    headers = {"Authorization": f"Bearer {sim.expired_key}" if auth == "expired" else auth}
    return await Api(sim, http, None)(
        "POST",
        "/bulk",
        {"action": "update", "resource": "tickets", "ids": ["tkt_1"], "data": {"status": "open"}},
        headers={k: v for k, v in headers.items() if v},
    )


@pytest.mark.parametrize("auth", AUTH_CASES)
async def test_authentication_errors_as_the_bulk_page_shows_them(
    sim: CStarSimulator, http: aiohttp.ClientSession, auth: str | None
) -> None:
    # Bulk page: "401 Authentication failed — missing or invalid API key"
    # {"success": false, "error": {"type": "authentication_error", "code":
    # "authentication_required", "message": "Invalid or expired API key", "doc_url":
    # "https://www.cstar.help/developers/api-reference#authentication", "request_id":
    # "req_abc123"}, "meta": {"timestamp": "2025-12-10T14:30:00Z"}}
    status, resp_headers, body = await unauthenticated(sim, http, auth)
    assert status == 401
    assert body == {
        "success": False,
        "error": {
            "type": "authentication_error",
            "code": "authentication_required",
            "message": "Invalid or expired API key",
            "doc_url": "https://www.cstar.help/developers/api-reference#authentication",
            "request_id": resp_headers["X-Request-Id"],
        },
        "meta": {"timestamp": body["meta"]["timestamp"]},
    }
    assert body["error"]["request_id"].startswith("req_")


@pytest.mark.parametrize(
    ("auth", "code"),
    list(
        zip(
            AUTH_CASES,
            [
                "authentication_required",
                "invalid_key_format",
                "invalid_key_format",
                "invalid_api_key",
                "key_expired",
            ],
            strict=True,
        )
    ),
)
async def test_authentication_errors_with_the_error_code_article_codes(
    start_sim: StartSim, http: aiohttp.ClientSession, auth: str | None, code: str
) -> None:
    sim = await start_sim(auth_error_codes="detailed")
    status, _, body = await unauthenticated(sim, http, auth)
    assert status == 401
    assert body["error"]["type"] == "authentication_error" and body["error"]["code"] == code
    assert (
        body["error"]["doc_url"] == "https://www.cstar.help/developers/api-reference#authentication"
    )


@pytest.mark.parametrize(
    ("codes", "code"), [("page", "insufficient_permissions"), ("detailed", "team_access_denied")]
)
async def test_team_scope(
    start_sim: StartSim, http: aiohttp.ClientSession, codes: str, code: str
) -> None:
    # Bulk page: "403 Insufficient permissions — wrong key type or team access", code
    # "insufficient_permissions"; the error-code article names `team_access_denied`.
    sim = await start_sim(auth_error_codes=codes)
    api = Api(sim, http, sim.api_key)
    for team in (sim.other_team_id, "00000000-0000-4000-8000-000000000000"):
        status, _, body = await api("GET", "/tickets", team=team)
        assert status == 403
        assert body["error"] == {
            **body["error"],
            "type": "authorization_error",
            "code": code,
            "doc_url": "https://www.cstar.help/developers/api-reference#authentication",
        }


@pytest.mark.parametrize("code", ["insufficient_permissions", "publishable_key_write"])
async def test_publishable_keys_read_but_do_not_write(
    start_sim: StartSim, http: aiohttp.ClientSession, code: str
) -> None:
    sim = await start_sim(publishable_write_code=code)
    ticket = sim.create_ticket(title="Read only")
    api = Api(sim, http, sim.publishable_key)
    status, _, _ = await api("GET", f"/tickets/{ticket['id']}")
    assert status == 200
    for method, path, body in [
        ("PATCH", f"/tickets/{ticket['id']}", {"status": "open"}),
        ("POST", "/bulk", {"action": "delete", "resource": "tickets", "ids": [ticket["id"]]}),
    ]:
        status, _, answer = await api(method, path, body)
        assert status == 403
        # Bulk page: "403 Insufficient permissions — wrong key type or team access"
        # {"type": "authorization_error", "code": "insufficient_permissions", "message":
        # "Secret key required for this endpoint"}
        assert answer["error"]["type"] == "authorization_error"
        assert answer["error"]["code"] == code
        assert answer["error"]["message"] == "Secret key required for this endpoint"
    assert sim.ticket(ticket["id"])["status"] == "new"


async def test_legacy_error_shape(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(legacy_errors=True)
    status, _, body = await Api(sim, http, "sk_test_nope")("GET", "/tickets")
    assert status == 401 and body == {
        "error": {"code": "UNAUTHORIZED", "message": "Invalid or expired API key"}
    }


async def test_routing_errors(api: Api) -> None:
    status, _, body = await api("GET", "/nothing")
    assert status == 404 and body["error"]["code"] == "route_not_found"
    status, headers, body = await api("PUT", "/tickets/tkt_1", {})
    assert status == 405 and "PATCH" in headers["Allow"]


async def test_validation_errors_name_the_parameter(api: Api, sim: CStarSimulator) -> None:
    status, _, body = await api("POST", "/tickets", {"priority": "high"})
    assert status == 400 and body["error"]["code"] == "parameter_missing"
    assert body["error"]["param"] == "title"
    ticket = sim.create_ticket(title="x")
    status, _, body = await api("PATCH", f"/tickets/{ticket['id']}", {"status": "waiting"})
    assert status == 400 and body["error"]["param"] == "status"
    status, _, body = await api("PATCH", f"/tickets/{ticket['id']}", {"subject": "x"})
    assert body["error"]["param"] == "subject" and "unknown" in body["error"]["message"]
    status, _, body = await api("GET", "/tickets/tkt_missing")
    assert status == 404 and body["error"]["type"] == "not_found_error"
    assert body["error"]["code"] == "resource_missing"


# --- idempotency ---------------------------------------------------------------------------


async def test_same_key_same_body_replays(api: Api, sim: CStarSimulator) -> None:
    ticket = sim.create_ticket(title="Idem")
    key = {"Idempotency-Key": "k-1"}
    path = f"/tickets/{ticket['id']}"
    first = await api("PATCH", path, {"status": "closed"}, headers=key)
    sim.change_ticket(ticket["id"], status="open")
    again = await api("PATCH", path, {"status": "closed"}, headers=key)
    assert again[0] == 200 and again[2] == first[2]
    assert again[1]["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first[1]
    assert sim.ticket(ticket["id"])["status"] == "open"
    assert [e.replayed for e in sim.journal] == [False, True]


async def test_same_key_other_body_conflicts(api: Api, sim: CStarSimulator) -> None:
    ticket = sim.create_ticket(title="Idem")
    key = {"Idempotency-Key": "k-2"}
    await api("PATCH", f"/tickets/{ticket['id']}", {"status": "closed"}, headers=key)
    status, _, body = await api(
        "PATCH", f"/tickets/{ticket['id']}", {"status": "open"}, headers=key
    )
    assert status == 409 and body["error"]["code"] == "idempotency_conflict"
    assert sim.ticket(ticket["id"])["status"] == "closed"


async def test_creates_replay_and_keys_expire_after_24_hours(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    clock = ManualClock()
    sim = await start_sim(clock=clock)
    api = Api(sim, http, sim.api_key)
    key = {"Idempotency-Key": "create-1"}
    first = await api("POST", "/tickets", {"title": "Once"}, headers=key)
    again = await api("POST", "/tickets", {"title": "Once"}, headers=key)
    assert first[0] == again[0] == 201 and first[2] == again[2]
    assert len(sim.tickets()) == 1
    clock.advance(24 * 3600 + 1)
    later = await api("POST", "/tickets", {"title": "Once"}, headers=key)
    assert later[2]["data"]["id"] != first[2]["data"]["id"] and len(sim.tickets()) == 2


async def test_failed_requests_are_not_remembered(api: Api, sim: CStarSimulator) -> None:
    key = {"Idempotency-Key": "k-3"}
    status, _, _ = await api("POST", "/tickets", {"priority": "high"}, headers=key)
    assert status == 400
    status, _, _ = await api("POST", "/tickets", {"title": "Fixed"}, headers=key)
    assert status == 201


# --- bulk ------------------------------------------------------------------------------------


async def test_bulk_partial_failure(api: Api, sim: CStarSimulator) -> None:
    a, b = sim.create_ticket(title="A"), sim.create_ticket(title="B")
    body = {
        "action": "update",
        "resource": "tickets",
        "ids": [a["id"], "tkt_ghost", b["id"], a["id"]],
        "data": {"status": "closed", "tags": ["done"]},
    }
    status, _, answer = await api("POST", "/bulk", body)
    # Bulk page: "200 Bulk result" {"success": true, "data": {"object": "bulk_result", "action":
    # "update", "resource": "tickets", "total": 5, "succeeded": 5, "failed": 0, "errors": []}}
    assert status == 200
    assert set(answer) == {"success", "data"} and answer["success"] is True
    assert answer["data"] == {
        "object": "bulk_result",
        "action": "update",
        "resource": "tickets",
        "total": 3,
        "succeeded": 2,
        "failed": 1,
        "errors": [
            {
                "id": "tkt_ghost",
                "code": "resource_missing",
                "message": "No such ticket: 'tkt_ghost'",
            }
        ],
    }
    assert [sim.ticket(t["id"])["tags"] for t in (a, b)] == [["done"], ["done"]]


async def test_bulk_on_customers_and_articles(api: Api, sim: CStarSimulator) -> None:
    # Bulk page: "Perform bulk updates or deletes on tickets, customers, or articles."
    sim.create_ticket(title="A", customerName="Dana", customerEmail="dana@x.io")
    sim.create_ticket(title="B", customerName="Luis")
    dana, luis = (c["id"] for c in sim.customers())
    status, _, answer = await api(
        "POST",
        "/bulk",
        {
            "action": "update",
            "resource": "customers",
            "ids": [dana, "cus_ghost"],
            "data": {"name": "Dana W.", "email": "dana@w.io"},
        },
    )
    assert status == 200
    assert answer["data"] == {
        "object": "bulk_result",
        "action": "update",
        "resource": "customers",
        "total": 2,
        "succeeded": 1,
        "failed": 1,
        "errors": [
            {
                "id": "cus_ghost",
                "code": "resource_missing",
                "message": "No such customer: 'cus_ghost'",
            }
        ],
    }
    assert [(c["name"], c["email"]) for c in sim.customers()] == [
        ("Dana W.", "dana@w.io"),
        ("Luis", None),
    ]
    status, _, answer = await api(
        "POST", "/bulk", {"action": "delete", "resource": "customers", "ids": [luis]}
    )
    assert (status, answer["data"]["succeeded"]) == (200, 1)
    assert [c["id"] for c in sim.customers()] == [dana]
    # The simulator serves no article API, so it holds no article: each id fails alone.
    status, _, answer = await api(
        "POST", "/bulk", {"action": "delete", "resource": "articles", "ids": ["art_1", "art_2"]}
    )
    assert status == 200
    assert (answer["data"]["resource"], answer["data"]["failed"]) == ("articles", 2)
    assert answer["data"]["errors"][0] == {
        "id": "art_1",
        "code": "resource_missing",
        "message": "No such article: 'art_1'",
    }


async def test_bulk_delete(api: Api, sim: CStarSimulator) -> None:
    a = sim.create_ticket(title="A")
    status, _, answer = await api(
        "POST", "/bulk", {"action": "delete", "resource": "tickets", "ids": [a["id"]]}
    )
    assert status == 200 and answer["data"]["succeeded"] == 1 and sim.tickets() == []


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"resource": "tickets", "ids": ["t"]}, "parameter_missing", "action"),
        ({"action": "merge", "resource": "tickets", "ids": ["t"]}, "parameter_invalid", "action"),
        ({"action": "update", "resource": "tickets", "ids": ["t"]}, "parameter_missing", "data"),
        (
            {"action": "delete", "resource": "macros", "ids": ["t"]},
            "parameter_invalid",
            "resource",
        ),
        (
            {"action": "update", "resource": "customers", "ids": ["c"], "data": {"status": "x"}},
            "parameter_invalid",
            "status",
        ),
        ({"action": "delete", "resource": "tickets", "ids": []}, "parameter_invalid", "ids"),
        (
            {"action": "update", "resource": "tickets", "ids": ["t"], "data": {"status": "x"}},
            "parameter_invalid",
            "status",
        ),
    ],
)
async def test_bulk_validation(api: Api, body: dict[str, Any], code: str, param: str) -> None:
    status, _, answer = await api("POST", "/bulk", body)
    assert status == 400
    assert (answer["error"]["code"], answer["error"]["param"]) == (code, param)


async def test_bulk_over_100_ids(api: Api) -> None:
    ids = [f"tkt_{i}" for i in range(101)]
    status, _, answer = await api(
        "POST",
        "/bulk",
        {"action": "update", "resource": "tickets", "ids": ids, "data": {"status": "open"}},
    )
    assert status == 400
    assert answer["error"]["code"] == "parameter_invalid" and answer["error"]["param"] == "ids"
    assert "at most 100 ids" in answer["error"]["message"]


# --- rate limits -----------------------------------------------------------------------------


async def test_rate_limit_headers_and_429(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    sim = await start_sim(clock=clock, rate_limit="2/minute")
    api = Api(sim, http, sim.api_key)
    status, headers, _ = await api("GET", "/tickets")
    assert status == 200
    assert headers["X-RateLimit-Limit"] == "2" and headers["X-RateLimit-Remaining"] == "1"
    assert headers["X-RateLimit-Window"] == "60"
    assert int(headers["X-RateLimit-Reset"]) == int(clock.now().timestamp()) + 60
    await api("GET", "/tickets")
    clock.advance(15)
    status, headers, body = await api("GET", "/tickets")
    assert status == 429
    assert headers["Retry-After"] == "45" and headers["X-RateLimit-Remaining"] == "0"
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert body["error"]["retryAfter"] == 45
    assert body["error"]["message"] == "Rate limit exceeded. Try again in 45 seconds"
    assert (
        body["error"]["doc_url"] == "https://www.cstar.help/developers/api-reference#rate-limiting"
    )
    # Counted per key: the publishable key has its own budget.
    status, _, _ = await Api(sim, http, sim.publishable_key)("GET", "/tickets")
    assert status == 200
    clock.advance(45)
    assert (await api("GET", "/tickets"))[0] == 200


async def test_rate_limit_presets(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim()
    secret, publishable = Api(sim, http, sim.api_key), Api(sim, http, sim.publishable_key)
    assert (await secret("GET", "/tickets"))[1]["X-RateLimit-Limit"] == "120"
    assert (await publishable("GET", "/tickets"))[1]["X-RateLimit-Limit"] == "60"
    sim.set_rate_limit("1000/hour")
    headers = (await secret("GET", "/tickets"))[1]
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Window"]) == ("1000", "3600")
    assert (await publishable("GET", "/tickets"))[1]["X-RateLimit-Limit"] == "100"
    sim.set_rate_limit(None)
    assert "X-RateLimit-Limit" not in (await secret("GET", "/tickets"))[1]


def test_rate_limit_specs() -> None:
    assert RateLimit.parse("5/second") == RateLimit(5, 5, 1.0, "5/second")
    assert RateLimit.parse(30) == RateLimit(30, 30, 60.0, "30/minute")
    assert RateLimit.parse(0) is None and RateLimit.parse("0/hour") is None
    with pytest.raises(ConfigError, match="rate_limit"):
        RateLimit.parse("fast")
    with pytest.raises(ConfigError, match="rate_limit"):
        CStarSimulatorConfig(rate_limit="lots")


# --- listing, messages, deletes -----------------------------------------------------------------


async def test_list_filters_and_meta_pagination(api: Api, sim: CStarSimulator) -> None:
    a = sim.create_ticket(title="Refund please", priority="urgent", assignedTo="agt_ava")
    b = sim.create_ticket(title="Another refund", priority="low", status="pending", notes="VIP")
    sim.create_ticket(title="Unrelated")
    _, _, body = await api("GET", "/tickets", params={"search": "REFUND", "pageSize": "1"})
    assert [t["id"] for t in body["data"]] == [b["id"]]
    assert body["meta"]["pagination"] == {"page": 1, "pageSize": 1, "total": 2, "totalPages": 2}
    _, _, body = await api("GET", "/tickets", params={"priority": "urgent,high"})
    assert [t["id"] for t in body["data"]] == [a["id"]]
    _, _, body = await api("GET", "/tickets", params={"status": "pending", "search": "vip"})
    assert [t["id"] for t in body["data"]] == [b["id"]]
    _, _, body = await api(
        "GET", "/tickets", params={"assignedTo": "agt_ava", "expand": "customer"}
    )
    assert [t["id"] for t in body["data"]] == [a["id"]] and body["data"][0]["customer"] is None
    status, _, body = await api("GET", "/tickets", params={"pageSize": "101"})
    assert status == 400 and body["error"]["param"] == "pageSize"


async def test_top_level_pagination(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(pagination="top")
    sim.seed_tickets(3, emit=False)
    _, _, body = await Api(sim, http, sim.api_key)("GET", "/tickets", params={"pageSize": "2"})
    assert body["pagination"] == {"total": 3, "page": 1, "pageSize": 2, "hasMore": True}
    assert "pagination" not in body["meta"]


async def test_messages_customers_and_delete(api: Api, sim: CStarSimulator) -> None:
    status, _, body = await api(
        "POST", "/tickets", {"title": "Hi", "customerName": "Mei", "initialMessage": "Hello?"}
    )
    ticket = body["data"]
    assert ticket["messageCount"] == 1
    status, _, body = await api(
        "POST", f"/tickets/{ticket['id']}/messages", {"content": "On it", "sender": "agent"}
    )
    assert status == 201 and body["data"]["id"].startswith("msg_")
    _, _, body = await api("GET", f"/tickets/{ticket['id']}/messages")
    assert [m["content"] for m in body["data"]] == ["Hello?", "On it"]
    _, _, body = await api("GET", f"/customers/{ticket['customerId']}")
    assert body["data"]["name"] == "Mei"
    status, _, body = await api("DELETE", f"/tickets/{ticket['id']}")
    assert status == 200 and body["data"] == {"deleted": True, "id": ticket["id"]}
    assert (await api("GET", f"/tickets/{ticket['id']}"))[0] == 404


# --- control routes and determinism -----------------------------------------------------------


async def test_control_routes(sim: CStarSimulator, http: aiohttp.ClientSession) -> None:
    async def control(method: str, path: str, body: Any = None) -> Any:
        async with http.request(method, sim.url + path, json=body) as resp:
            return resp.status, await resp.json()

    status, info = await control("GET", "/_sim")
    assert status == 200 and info["data"]["team_id"] == sim.team_id
    assert "POST /_sim/tickets/{id}/change" in info["data"]["routes"]
    _, created = await control("POST", "/_sim/tickets", {"title": "Agent made"})
    ticket_id = created["data"]["id"]
    _, changed = await control("POST", f"/_sim/tickets/{ticket_id}/change", {"status": "closed"})
    assert changed["data"]["status"] == "closed"
    status, settings = await control(
        "POST", "/_sim/settings", {"rate_limit": "1000/hour", "flat_payload": True}
    )
    assert status == 200 and settings["data"]["rate_limit"] == "1000/hour"
    status, bad = await control("POST", "/_sim/settings", {"pagination": "sideways"})
    assert status == 400 and bad["error"]["param"] == "pagination"
    status, faults = await control(
        "POST",
        "/_sim/faults",
        {"webhooks": {"stale_timestamp_next": 2}, "bulk_fail_ids": {"tkt_x": "api_error"}},
    )
    assert faults["data"]["webhooks"]["stale_timestamp_next"] == 2
    assert sim.faults.bulk_fail_ids == {"tkt_x": "api_error"}
    _, seeded = await control("POST", "/_sim/seed", {"tickets": 3, "emit": False})
    assert seeded["data"]["created"] == 3 and len(sim.tickets()) == 4
    await control("POST", "/_sim/reset")
    assert sim.tickets() == [] and sim.settings.flat_payload is False


async def test_reset_is_deterministic(sim: CStarSimulator) -> None:
    keys = (sim.team_id, sim.api_key, sim.publishable_key)
    first = sim.seed_tickets(2, emit=False)
    sim.reset()
    assert (sim.team_id, sim.api_key, sim.publishable_key) == keys
    again = sim.seed_tickets(2, emit=False)
    assert [t["id"] for t in again] == [t["id"] for t in first]
    assert [t["title"] for t in again] == [t["title"] for t in first]


async def test_create_app_serves_a_simulator_from_a_config(
    aiohttp_client: Callable[..., Awaitable[Any]],
) -> None:
    app = create_app(CStarSimulatorConfig(seed=2))
    client = await aiohttp_client(app)
    sim = app[SIM_KEY]
    resp = await client.get(
        f"/api/v1/teams/{sim.team_id}/tickets", headers={"Authorization": f"Bearer {sim.api_key}"}
    )
    assert resp.status == 200 and (await resp.json())["data"] == []


async def test_run_simulator_serves_until_cancelled(http: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = asyncio.create_task(
        run_simulator(CStarSimulatorConfig(seed=4), port=port, seed_tickets=3)
    )

    async def seeded() -> Any:
        try:
            async with http.get(f"http://127.0.0.1:{port}/_sim/tickets") as resp:
                return len((await resp.json())["data"]) == 3
        except aiohttp.ClientConnectionError:
            return False

    try:
        await wait_for(seeded, timeout=5, message="the simulator to serve its seeded tickets")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with pytest.raises(ValueError, match="secret is required"):
        await run_simulator(CStarSimulatorConfig(), webhook_url="http://x/hook")
