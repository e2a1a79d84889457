"""ThenaClient against the Thena simulator over real HTTP on loopback (both auth schemes, bulk
answers, paging, errors and rate limits), plus the error parser on its own."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
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
from ticketwire.vendors.thena.client import ThenaClient, list_params
from ticketwire.vendors.thena.problems import error_from_response

StartSim = Callable[..., Awaitable[ThenaSimulator]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    started: list[ThenaSimulator] = []

    async def start(**config: Any) -> ThenaSimulator:
        sim = ThenaSimulator(ThenaSimulatorConfig(seed=1, **config))
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(start_sim: StartSim) -> ThenaSimulator:
    return await start_sim(rate_limit_per_minute=None)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def client(sim: ThenaSimulator, session: aiohttp.ClientSession) -> ThenaClient:
    return ThenaClient(session, sim.url, api_key=Secret(sim.api_key))


def bearer(sim: ThenaSimulator, session: aiohttp.ClientSession, **kw: Any) -> ThenaClient:
    return ThenaClient(
        session,
        sim.url,
        auth="bearer",
        api_key=Secret(sim.bearer_token),
        org_id=kw.pop("org_id", sim.org_id),
        **kw,
    )


def call(method: str, path: str, body: dict[str, Any], ticket: str = "t") -> ApiCall:
    return ApiCall("thena", method, path, body, ticket, ("rule",), "evt-1")


# --- construction ----------------------------------------------------------------------------


async def test_configuration_mistakes_name_the_variable(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ConfigError, match="THENA_AUTH"):
        ThenaClient(session, auth="oauth", api_key=Secret("k"))
    with pytest.raises(ConfigError, match="THENA_API_KEY"):
        ThenaClient(session, api_key=Secret(" "))
    with pytest.raises(ConfigError, match="THENA_ORG_ID"):
        ThenaClient(session, auth="bearer", api_key=Secret("jwt"))
    with pytest.raises(ConfigError, match="THENA_API_URL"):
        ThenaClient(session, "platform.thena.ai", api_key=Secret("k"))
    with pytest.raises(ValueError, match="timeout"):
        ThenaClient(session, api_key=Secret("k"), timeout=0)


@pytest.mark.parametrize(
    "base",
    ["https://platform.thena.ai", "https://platform.thena.ai/", "https://platform.thena.ai/v1"],
)
async def test_base_url_gets_v1_once(session: aiohttp.ClientSession, base: str) -> None:
    client = ThenaClient(session, base, api_key=Secret("k"))
    assert client.base_url == "https://platform.thena.ai/v1"
    assert ThenaClient(session, api_key=Secret("k")).base_url == "https://platform.thena.ai/v1"


async def test_repr_hides_the_key(session: aiohttp.ClientSession) -> None:
    client = ThenaClient(session, api_key=Secret("very-secret"), auth="bearer", org_id="E1")
    assert "very-secret" not in repr(client)
    assert "org_id='E1'" in repr(client)


# --- auth schemes ----------------------------------------------------------------------------


async def test_api_key_scheme(sim: ThenaSimulator, client: ThenaClient) -> None:
    t = sim.create_ticket(title="by key")
    assert (await client.get_ticket(t["id"]))["title"] == "by key"
    [entry] = sim.journal
    assert "x-api-key" in entry.headers
    assert "Authorization" not in entry.headers and "x-org-id" not in entry.headers


async def test_bearer_scheme_sends_the_org_id(
    sim: ThenaSimulator, session: aiohttp.ClientSession
) -> None:
    t = sim.create_ticket(title="by token")
    assert (await bearer(sim, session).get_ticket(t["id"]))["title"] == "by token"
    [entry] = sim.journal
    assert entry.headers["Authorization"].startswith("Bearer ")
    assert entry.headers["x-org-id"] == sim.org_id
    with pytest.raises(Forbidden, match="not a member"):
        await bearer(sim, session, org_id=sim.other_org_id).get_ticket(t["id"])


async def test_a_scheme_the_server_does_not_take_is_unauthorized(
    sim: ThenaSimulator, client: ThenaClient, session: aiohttp.ClientSession
) -> None:
    sim.settings.auth_schemes = "bearer"
    with pytest.raises(Unauthorized, match="THENA_API_KEY") as caught:
        await client.list_page(page=0, limit=1)
    assert "missing Authorization" in str(caught.value)
    assert await bearer(sim, session).list_page(page=0, limit=1) == []
    wrong = ThenaClient(session, sim.url, api_key=Secret("thena_sim_wrong"))
    sim.settings.auth_schemes = "both"
    with pytest.raises(Unauthorized, match="Invalid API key"):
        await wrong.get_ticket("x")


# --- single tickets --------------------------------------------------------------------------


async def test_update_sends_id_and_name_as_given_and_thena_uses_the_id(
    sim: ThenaSimulator, client: ThenaClient
) -> None:
    t = sim.create_ticket(title="both")
    got = await client.update_ticket(
        t["id"], statusId=sim.status_id("Resolved"), statusName="Closed", priorityName="High"
    )
    assert (got["status"], got["priority"]) == ("Resolved", "High")
    assert sim.journal[-1].body == {
        "statusId": sim.status_id("Resolved"),
        "statusName": "Closed",
        "priorityName": "High",
    }
    got = await client.update_ticket(t["id"], assignedAgentId=None, title="renamed")
    assert (got["assignedAgentId"], got["title"]) == (None, "renamed")


async def test_update_refuses_unknown_fields_before_any_request(
    sim: ThenaSimulator, client: ThenaClient
) -> None:
    with pytest.raises(ValueError, match="does not accept status"):
        await client.update_ticket("x", status="closed")
    with pytest.raises(ValueError, match="at least one field"):
        await client.update_ticket("x")
    with pytest.raises(ValueError, match="empty"):
        await client.get_ticket("")
    assert sim.journal == []


async def test_create_ticket_and_dedup(sim: ThenaSimulator, client: ThenaClient) -> None:
    made = await client.create_ticket(title="one", teamId=sim.team_id, deDuplicationKey="k")
    again = await client.create_ticket(title="two", teamId=sim.team_id, deDuplicationKey="k")
    assert again == made
    assert len(sim.tickets()) == 1


# --- bulk ------------------------------------------------------------------------------------


async def test_bulk_update_skipped_ids_are_a_partial_failure(
    sim: ThenaSimulator, client: ThenaClient
) -> None:
    mine = sim.create_ticket(title="mine")
    eng = sim.create_ticket(title="eng", teamId=sim.other_team_id)
    body = {"ticketIds": [mine["id"], "CNOPE", eng["id"]], "statusId": sim.status_id("Closed")}
    with pytest.raises(PartialFailure) as caught:
        await client.send(call("PATCH", "/tickets/bulk", body, mine["id"]))
    failure = caught.value
    assert failure.failed == {
        "CNOPE": "ticket not found",
        eng["id"]: "statusId is not a status of team ENG",
    }
    assert failure.succeeded == [mine["id"]]
    # Skipped for what the ticket is: refused for good, never retried.
    assert failure.transient == frozenset()
    assert sim.ticket(mine["id"])["status"] == "Closed"
    # The plain method returns the answer; skipped ids are for the caller to look at.
    data = await client.bulk_update(["CNOPE"], isPrivate=True)
    assert data == {"updated": [], "skipped": [{"id": "CNOPE", "reason": "ticket not found"}]}
    ok = await client.send(
        call("PATCH", "/tickets/bulk", {"ticketIds": [mine["id"]], "isPrivate": True})
    )
    assert ok.status == 200


def test_bulk_update_ids_thena_did_not_report_are_retried_alone() -> None:
    from ticketwire.calls import ApiResult
    from ticketwire.vendors.thena.client import check_bulk_update

    # Documented answer: `{"data":{"updated":[{"id","title"}],"skipped":[{"id","reason"}]}}`.
    answer = {"data": {"updated": [{"id": "A", "title": "a"}], "skipped": [{"id": "B"}]}}
    with pytest.raises(PartialFailure) as caught:
        check_bulk_update(ApiResult(200, answer), {"ticketIds": ["A", "B", "C"]})
    assert caught.value.failed == {
        "B": "skipped (no reason given)",
        "C": "not reported as updated by Thena",
    }
    # B was skipped for good; what became of C is unknown, and alone its answer will tell.
    assert caught.value.transient == {"C"}
    alone = {"data": {"updated": [], "skipped": []}}
    with pytest.raises(PartialFailure) as caught:
        check_bulk_update(ApiResult(200, alone), {"ticketIds": ["C"]})
    assert caught.value.failed.keys() == {"C"} and caught.value.transient == frozenset()


async def test_bulk_update_checks_its_arguments(sim: ThenaSimulator, client: ThenaClient) -> None:
    with pytest.raises(TypeError):
        await client.bulk_update("abc", isPrivate=True)
    with pytest.raises(ValueError, match="at least one ticket"):
        await client.bulk_update([], isPrivate=True)
    with pytest.raises(ValueError, match="does not accept statusName"):
        await client.bulk_update(["a"], statusName="Closed")
    assert sim.journal == []


async def test_bulk_create_stop_on_error_true_and_false(
    sim: ThenaSimulator, client: ThenaClient
) -> None:
    tickets = [
        {"title": "ok 1", "teamId": sim.team_id},
        {"title": "bad", "teamId": sim.team_id, "statusName": "Nope"},
        {"title": "ok 2", "teamId": sim.team_id},
    ]
    with pytest.raises(ClientError, match=r"tickets\[1\]: statusName") as caught:
        await client.create_tickets(tickets, stop_on_error=True)
    assert caught.value.status == 400
    assert [t["title"] for t in sim.tickets()] == ["ok 1"]
    created = await client.create_tickets(tickets, stop_on_error=False)
    assert [c["title"] for c in created] == ["ok 1", "ok 2"]
    assert sim.journal[-1].body["options"] == {"stopOnError": False}
    # The bulk page's ticket fields hold no deDuplicationKey: refused before any request.
    sent = len(sim.journal)
    with pytest.raises(ValueError, match=r"tickets\[0\] has deDuplicationKey"):
        await client.create_tickets([{**tickets[0], "deDuplicationKey": "k"}])
    assert len(sim.journal) == sent


def creates(sim: ThenaSimulator, titles: list[str], *, stop: bool = True, **bad: Any) -> ApiCall:
    """A planned bulk create, each ticket with its own deDuplicationKey (as the planner sends)."""
    tickets = [
        {"title": t, "teamId": sim.team_id, "deDuplicationKey": f"key-{t}", **bad.get(t, {})}
        for t in titles
    ]
    return call("POST", "/tickets/bulk", {"tickets": tickets, "options": {"stopOnError": stop}})


def posts(sim: ThenaSimulator) -> list[tuple[str, str, Any]]:
    return [(e.method, e.path, (e.body or {}).get("deDuplicationKey")) for e in sim.journal]


@pytest.mark.parametrize("conflict", [False, True])
async def test_bulk_create_retried_after_its_nth_ticket_failed_creates_each_once(
    start_sim: StartSim, session: aiohttp.ClientSession, conflict: bool
) -> None:
    # The bulk page lists no deDuplicationKey among a bulk ticket's fields; the create page
    # (POST /v1/tickets) does. So a planned bulk create goes out as one POST /v1/tickets per
    # ticket, each with its key, and a retry finds the tickets made before the failure. What a
    # used key answers is not documented: the ticket (201) or a conflict (409); both work.
    sim = await start_sim(rate_limit_per_minute=None, dedup_conflict=conflict)
    client = ThenaClient(session, sim.url, api_key=Secret(sim.api_key))
    planned = creates(sim, ["a", "b", "c", "d"], stop=True)
    sim.faults.fail_next("POST", "/tickets", 503, after=2)  # the third ticket fails
    with pytest.raises(ServerError):
        await client.send(planned)
    assert [t["title"] for t in sim.tickets()] == ["a", "b"]
    assert posts(sim) == [("POST", "/v1/tickets", f"key-{t}") for t in "abc"]
    result = await client.send(planned)  # the worker's retry: the same call
    assert result.status == 201
    assert [t["title"] for t in sim.tickets()] == ["a", "b", "c", "d"]
    ids = [None, None] if conflict else [t["id"] for t in sim.tickets()[:2]]
    ids += [t["id"] for t in sim.tickets()[2:]]
    assert result.body["data"] == [{"id": i, "title": t} for i, t in zip(ids, "abcd", strict=True)]
    await client.send(planned)  # and once more, as a re-run after a crash would
    assert len(sim.tickets()) == 4
    assert all(path == "/v1/tickets" for _, path, _ in posts(sim))


@pytest.mark.parametrize(
    ("stop", "says", "made", "sent"),
    [
        # stopOnError true: the refused ticket ends the call; none after it is sent.
        (True, "1 of 3 ticket(s) created, none after it sent (stopOnError)", ["a"], "ab"),
        # stopOnError false: every ticket is sent, the refused ones named at the end.
        (False, "2 of 3 ticket(s) created (", ["a", "c"], "abc"),
    ],
)
async def test_bulk_create_names_the_refused_ticket(
    sim: ThenaSimulator,
    client: ThenaClient,
    stop: bool,
    says: str,
    made: list[str],
    sent: str,
) -> None:
    planned = creates(sim, ["a", "b", "c"], stop=stop, b={"statusName": "Nope"})
    for _ in range(2):  # the second time as a redriven dead letter: nothing made twice
        with pytest.raises(ClientError) as caught:
            await client.send(planned)
        assert caught.value.status == 400
        assert "tickets[1] ('b'): statusName" in str(caught.value)
        assert says in str(caught.value)
        assert [t["title"] for t in sim.tickets()] == made
    assert [key for _, _, key in posts(sim)] == [f"key-{t}" for t in sent * 2]


async def test_bulk_create_stops_on_a_failure_of_the_whole_call(
    start_sim: StartSim, session: aiohttp.ClientSession
) -> None:
    # A 401 (or a 429) is not one ticket's fault: it ends the call even with stopOnError false.
    sim = await start_sim(rate_limit_per_minute=None)
    wrong = ThenaClient(session, sim.url, api_key=Secret("thena_sim_wrong"))
    with pytest.raises(Unauthorized):
        await wrong.send(creates(sim, ["a", "b"], stop=False))
    assert len(sim.journal) == 1


# --- listing ---------------------------------------------------------------------------------


async def test_list_tickets_pages_from_zero(sim: ThenaSimulator, client: ThenaClient) -> None:
    made = [sim.create_ticket(title=f"t{i}")["id"] for i in range(5)]
    eng = sim.create_ticket(title="eng", teamId=sim.other_team_id)["id"]
    assert [t["id"] async for t in client.list_tickets(limit=2)] == [*made, eng]
    pages = [e.query["page"] for e in sim.journal]
    assert pages == ["0", "1", "2", "3"]
    assert [t["id"] async for t in client.list_tickets(team_id=sim.other_team_id)] == [eng]
    assert len([t async for t in client.list_tickets(dateRange="1w", teamId=None)]) == 6
    sim.settings.list_shape = "object"
    assert [t["id"] async for t in client.list_tickets(limit=4)] == [*made, eng]


async def test_list_refuses_bad_filters_before_any_request(
    sim: ThenaSimulator, client: ThenaClient
) -> None:
    with pytest.raises(ValueError, match="dateRange '5d'"):
        client.list_tickets(dateRange="5d")
    with pytest.raises(ValueError, match="unknown ticket filter 'status'"):
        client.list_tickets(status="open")
    with pytest.raises(ValueError, match="limit"):
        client.list_tickets(limit=0)
    with pytest.raises(TypeError):
        list_params({"teamId": 5})
    assert sim.journal == []


async def test_list_copes_with_servers_that_page_differently(
    session: aiohttp.ClientSession,
) -> None:
    async def everything(request: web.Request) -> web.Response:
        # Ignores both page and limit: always the same three tickets.
        return web.json_response({"status": True, "data": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})

    async def capped(request: web.Request) -> web.Response:
        # Honours page but never sends more than 2 per page, whatever the limit asked.
        page = int(request.query["page"])
        rows = [{"id": str(i)} for i in range(5)][page * 2 : page * 2 + 2]
        return web.json_response({"status": True, "data": rows})

    app = web.Application()
    app.router.add_get("/v1/tickets", everything)
    app.router.add_get("/capped/v1/tickets", capped)
    async with TestServer(app, host="127.0.0.1") as server:
        client = ThenaClient(session, str(server.make_url("/")), api_key=Secret("k"))
        assert [t["id"] async for t in client.list_tickets(limit=2)] == ["a", "b", "c"]
        assert [t["id"] async for t in client.list_tickets(limit=3)] == ["a", "b", "c"]
        capped_client = ThenaClient(session, str(server.make_url("/capped")), api_key=Secret("k"))
        got = [t["id"] async for t in capped_client.list_tickets(limit=50)]
        assert got == ["0", "1", "2", "3", "4"]


# --- errors ----------------------------------------------------------------------------------


async def test_404_and_400_carry_thenas_message(sim: ThenaSimulator, client: ThenaClient) -> None:
    with pytest.raises(NotFound, match="ticket CNOPE not found") as caught:
        await client.get_ticket("CNOPE")
    assert caught.value.status == 404
    assert caught.value.code == "Not Found"
    t = sim.create_ticket(title="x")
    with pytest.raises(ClientError, match="statusName: 'Gone' is not a status"):
        await client.update_ticket(t["id"], statusName="Gone")
    sim.settings.error_format = "envelope"
    with pytest.raises(NotFound, match="ticket CNOPE not found") as caught:
        await client.get_ticket("CNOPE")
    assert caught.value.code == "not_found"


async def test_429_retry_after_then_reset_then_default(
    sim: ThenaSimulator, client: ThenaClient
) -> None:
    sim.faults.fail_next("GET", "/tickets", 429, retry_after=7, reset_after=30)
    sim.faults.fail_next("GET", "/tickets", 429, reset_after=30)
    sim.faults.fail_next("GET", "/tickets", 429)
    waits = []
    for _ in range(3):
        with pytest.raises(RateLimited) as caught:
            await client.list_page(page=0, limit=1)
        waits.append(caught.value.retry_after)
    assert waits[0] == 7
    assert 28 <= waits[1] <= 31
    assert waits[2] == 60


async def test_429_from_the_organisation_limit(
    start_sim: StartSim, session: aiohttp.ClientSession
) -> None:
    sim = await start_sim(rate_limit_per_minute=1)
    client = ThenaClient(session, sim.url, api_key=Secret(sim.api_key))
    result = await client.send(call("GET", "/tickets", {}))
    assert result.headers["X-RateLimit-Remaining"] == "0"
    with pytest.raises(RateLimited) as caught:
        await client.send(call("GET", "/tickets", {}))
    assert 55 <= caught.value.retry_after <= 61
    assert "Too Many Requests" in str(caught.value)


async def test_5xx_is_a_server_error(sim: ThenaSimulator, client: ThenaClient) -> None:
    sim.faults.fail_next("PATCH", "/tickets/*", 502)
    with pytest.raises(ServerError) as caught:
        await client.update_ticket("x", title="y")
    assert caught.value.status == 502
    assert "safe to retry" in str(caught.value)


async def test_slow_answer_is_unavailable(
    sim: ThenaSimulator, session: aiohttp.ClientSession
) -> None:
    client = ThenaClient(session, sim.url, api_key=Secret(sim.api_key), timeout=0.05)
    # Long enough to miss the timeout surely; short because stopping the simulator waits for it.
    sim.faults.fail_next("GET", "/tickets/*", 500, delay=0.4)
    with pytest.raises(HelpdeskUnavailable, match="no response within 0.05s"):
        await client.get_ticket("slow")


async def test_closed_port_is_unavailable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ThenaClient(session, f"http://127.0.0.1:{port}", api_key=Secret("k"))
    with pytest.raises(HelpdeskUnavailable, match=f"cannot connect to 127.0.0.1:{port}"):
        await client.bulk_update(["a"], isPrivate=True)


async def test_odd_success_answers_are_errors(session: aiohttp.ClientSession) -> None:
    async def login_page(request: web.Request) -> web.Response:
        return web.Response(text="<html>Sign in</html>", content_type="text/html")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://elsewhere.example/v1/tickets/1")

    async def refused(request: web.Request) -> web.Response:
        return web.json_response({"status": False, "message": "Ticket is archived"})

    async def shapeless(request: web.Request) -> web.Response:
        return web.json_response({"status": True, "data": {"ok": 1}})

    app = web.Application()
    app.router.add_get("/v1/tickets/1", login_page)
    app.router.add_patch("/v1/tickets/2", moved)
    app.router.add_patch("/v1/tickets/3", refused)
    app.router.add_patch("/v1/tickets/bulk", shapeless)
    async with TestServer(app, host="127.0.0.1") as server:
        client = ThenaClient(session, str(server.make_url("/")), api_key=Secret("k"))
        with pytest.raises(ServerError, match="expected a JSON body, got text/html"):
            await client.get_ticket("1")
        with pytest.raises(HelpdeskHTTPError, match="redirected") as caught:
            await client.update_ticket("2", title="x")
        assert caught.value.status == 302
        with pytest.raises(ClientError, match="status=false: Ticket is archived"):
            await client.update_ticket("3", title="x")
        with pytest.raises(HelpdeskHTTPError, match="'updated' and 'skipped'"):
            await client.send(
                call("PATCH", "/tickets/bulk", {"ticketIds": ["a"], "isPrivate": True})
            )


async def test_send_refuses_another_vendors_call(client: ThenaClient) -> None:
    with pytest.raises(ValueError, match="not 'thena'"):
        await client.send(ApiCall("inboxops", "GET", "/tickets", {}, "t"))
    with pytest.raises(ValueError, match="must start with"):
        await client.send(ApiCall("thena", "GET", "tickets", {}, "t"))


# --- the error parser on its own -------------------------------------------------------------


def test_error_bodies_are_read_leniently() -> None:
    nest = (
        b'{"statusCode":400,"message":["title must be a string","teamId is required"],'
        b'"error":"Bad Request"}'
    )
    err = error_from_response(400, {}, nest, request_id="r1")
    assert type(err) is ClientError
    assert (err.code, err.request_id) == ("Bad Request", "r1")
    assert "title must be a string; teamId is required" in str(err)
    coded = error_from_response(409, {}, b'{"code":"DUPLICATE","message":"exists"}')
    assert (coded.code, coded.detail is not None and coded.detail.startswith("exists")) == (
        "DUPLICATE",
        True,
    )
    only_error = error_from_response(403, {}, b'{"error":"Forbidden resource"}')
    assert isinstance(only_error, Forbidden) and "Forbidden resource" in str(only_error)
    html = error_from_response(502, {"Content-Type": "text/html"}, b"<h1>Bad   gateway</h1>")
    assert isinstance(html, ServerError)
    assert "unexpected text/html response: <h1>Bad gateway</h1>" in str(html)
    empty = error_from_response(500, {}, b"")
    assert "empty response body" in str(empty)
    unauthorized = error_from_response(401, {"X-Request-Id": "rid"}, b'{"message":"Unauthorized"}')
    assert isinstance(unauthorized, Unauthorized) and unauthorized.request_id == "rid"


def test_retry_after_sources() -> None:
    now = 1_700_000_000.0
    cases = [
        ({"Retry-After": "12"}, 12.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:15:00 GMT"}, 100.0),
        ({"Retry-After": "soon", "X-RateLimit-Reset": str(int(now) + 45)}, 45.0),
        ({"x-ratelimit-reset": "30"}, 30.0),
        ({"X-RateLimit-Reset": str(int(now) - 5)}, 0.0),
        ({"X-RateLimit-Reset": "never"}, 60.0),
        ({}, 60.0),
    ]
    for headers, wait in cases:
        err = error_from_response(429, headers, b"", now=now)
        assert isinstance(err, RateLimited)
        assert err.retry_after == pytest.approx(wait), headers
