"""InboxOpsClient against the InboxOps simulator over real HTTP on loopback; RecordingClient."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from ticketwire.calls import ApiCall
from ticketwire.errors import (
    ClientError,
    ConfigError,
    Forbidden,
    HelpdeskHTTPError,
    HelpdeskUnavailable,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.client import InboxOpsClient, list_params
from ticketwire.vendors.recording import RecordingClient

StartSim = Callable[..., Awaitable[InboxOpsSimulator]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start simulators with config overrides; all are stopped after the test."""
    started: list[InboxOpsSimulator] = []

    async def start(**config: Any) -> InboxOpsSimulator:
        sim = InboxOpsSimulator(SimulatorConfig(seed=1, **config))
        await sim.start(host="127.0.0.1", port=0)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(start_sim: StartSim) -> InboxOpsSimulator:
    """One simulator with the default configuration."""
    return await start_sim()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The HTTP session the clients share."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def client(sim: InboxOpsSimulator, session: aiohttp.ClientSession) -> InboxOpsClient:
    """A client with the simulator's read-and-write key."""
    return InboxOpsClient(session, sim.url, Secret(sim.api_key))


def client_with(
    sim: InboxOpsSimulator, session: aiohttp.ClientSession, key: str, **kw: Any
) -> InboxOpsClient:
    """A client on `sim` with another key or options."""
    return InboxOpsClient(session, sim.url, Secret(key), **kw)


def query_of(entry: Any) -> dict[str, str]:
    """A journal entry's query as a dict, whether the journal keeps a string or a mapping."""
    q = entry.query
    if isinstance(q, str):
        return dict(parse_qsl(q.lstrip("?"), keep_blank_values=True))
    return {str(k): str(v) for k, v in dict(q or {}).items()}


def api_entries(sim: InboxOpsSimulator, method: str | None = None) -> list[Any]:
    """Journal entries for `/api/v1` requests, optionally of one method."""
    return [
        e
        for e in sim.journal
        if e.path.startswith("/api/v1") and (method is None or e.method == method)
    ]


def by_type(rows: list[dict[str, Any]], status_type: str) -> dict[str, Any]:
    """The first custom status (or priority) row of a type that is not the default one."""
    matching = [r for r in rows if status_type in (r.get("status_type"), r.get("priority_type"))]
    return next((r for r in matching if not r.get("is_default")), matching[0])


def plan_options(sim: InboxOpsSimulator) -> list[dict[str, Any]]:
    """The options of the seeded `plan` select field."""
    plan = next(f for f in sim.custom_fields if f["field_key"] == "plan")
    options: list[dict[str, Any]] = plan["options"]
    return options


# --- construction ----------------------------------------------------------------------------


async def test_key_must_start_with_ixk(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ConfigError) as caught:
        InboxOpsClient(session, "https://app.inboxops.app", Secret("sk_live_123"))
    assert caught.value.variable == "INBOXOPS_API_KEY"
    assert "a key starting with 'ixk_' from Settings → API" in str(caught.value)
    assert "sk_live_123" not in str(caught.value)


async def test_base_url_must_be_an_http_origin(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ConfigError) as caught:
        InboxOpsClient(session, "app.inboxops.app", Secret("ixk_abc"))
    assert caught.value.variable == "INBOXOPS_API_URL"


@pytest.mark.parametrize(
    "base",
    [
        "https://app.inboxops.app",
        "https://app.inboxops.app/",
        "https://app.inboxops.app/api/v1",
        "https://app.inboxops.app/api/v1/",
    ],
)
async def test_base_url_gets_api_v1_once(session: aiohttp.ClientSession, base: str) -> None:
    client = InboxOpsClient(session, base, Secret("ixk_abc"))
    assert client.base_url == "https://app.inboxops.app/api/v1"


async def test_repr_hides_the_key(session: aiohttp.ClientSession) -> None:
    client = InboxOpsClient(session, "https://app.inboxops.app", Secret("ixk_supersecret"))
    shown = repr(client)
    assert "ixk_supersecret" not in shown and "supersecret" not in shown
    assert "https://app.inboxops.app/api/v1" in shown


# --- reads -----------------------------------------------------------------------------------


async def test_get_ticket_by_id_and_by_number(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    made = sim.create_ticket(subject="Printer on fire")
    by_id = await client.get_ticket(made["id"])
    by_number = await client.get_ticket(str(made["ticket_number"]))
    assert by_id["id"] == by_number["id"] == made["id"]
    assert by_id["subject"] == "Printer on fire"
    paths = [e.path for e in api_entries(sim, "GET")]
    assert paths == [f"/api/v1/tickets/{made['id']}", f"/api/v1/tickets/{made['ticket_number']}"]


async def test_get_ticket_include(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    made = sim.create_ticket(subject="Tagged")
    tag = sim.create_tag("include-me")
    await client.bulk("add_tags", [made["id"]], tag_ids=[tag["id"]])
    plain = await client.get_ticket(made["id"])
    assert "tags" not in plain
    full = await client.get_ticket(made["id"], include=["tags", "contact"])
    assert [t["id"] for t in full["tags"]] == [tag["id"]]
    assert query_of(api_entries(sim, "GET")[-1]) == {"include": "tags,contact"}


async def test_every_request_carries_key_accept_and_a_request_id(
    session: aiohttp.ClientSession,
) -> None:
    """Headers the simulator does not journal, checked on a plain loopback server."""
    seen: list[Mapping[str, str]] = []

    async def ticket(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())
        return web.json_response({"data": {"id": request.match_info["id"]}})

    app = web.Application()
    app.router.add_get("/api/v1/tickets/{id}", ticket)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("/"))
        client = InboxOpsClient(session, base, Secret("ixk_k1"), user_agent="tw-test/1")
        first = await client.send(ApiCall("inboxops", "GET", "/tickets/7", {}, "7"))
        await client.get_ticket("a/b")
    assert first.body == {"data": {"id": "7"}}
    assert [h["Authorization"] for h in seen] == ["Bearer ixk_k1"] * 2
    assert all(h["Accept"] == "application/json" for h in seen)
    assert all(h["User-Agent"] == "tw-test/1" for h in seen)
    ids = [h["X-Request-Id"] for h in seen]
    assert len(set(ids)) == 2 and all(uuid.UUID(i) for i in ids)
    # Without an X-Request-Id in the answer, the result names the one the request carried.
    assert first.request_id == ids[0]


async def test_non_json_success_and_redirects_are_errors(
    session: aiohttp.ClientSession,
) -> None:
    async def login_page(request: web.Request) -> web.Response:
        return web.Response(text="<html>Sign in</html>", content_type="text/html")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://elsewhere.example/api/v1/tickets/1")

    app = web.Application()
    app.router.add_get("/api/v1/tickets/1", login_page)
    app.router.add_patch("/api/v1/tickets/2", moved)
    async with TestServer(app, host="127.0.0.1") as server:
        client = InboxOpsClient(session, str(server.make_url("/")), Secret("ixk_k1"))
        with pytest.raises(ServerError, match="expected a JSON body, got text/html"):
            await client.get_ticket("1")
        with pytest.raises(HelpdeskHTTPError, match="base URL") as caught:
            await client.update_ticket("2", subject="x")
    assert caught.value.status == 302


# --- updates ---------------------------------------------------------------------------------


async def test_update_each_field_kind(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    made = sim.create_ticket(subject="Old subject", inbox_id=sim.inboxes[0]["id"])
    assignee = sim.agents[0]["id"]
    contact = str(uuid.uuid4())

    got = await client.update_ticket(made["id"], subject="New subject")
    assert got["subject"] == "New subject"

    got = await client.update_ticket(made["id"], status="in_progress", priority="high")
    assert (got["status"], got["priority"]) == ("in_progress", "high")

    custom_status = by_type(sim.statuses, "resolved")
    got = await client.update_ticket(made["id"], status="open", status_id=custom_status["id"])
    assert got["status_id"] == custom_status["id"]  # status_id wins over status
    assert got["status"] == "resolved"

    custom_priority = sim.priorities[-1]
    got = await client.update_ticket(made["id"], priority_id=custom_priority["id"])
    assert got["priority_id"] == custom_priority["id"]

    other_inbox = sim.inboxes[1]["id"]
    got = await client.update_ticket(
        made["id"], assignee_id=assignee, inbox_id=other_inbox, contact_id=contact
    )
    assert (got["assignee_id"], got["inbox_id"], got["contact_id"]) == (
        assignee,
        other_inbox,
        contact,
    )

    remind = datetime(2030, 5, 1, 9, 30, tzinfo=UTC) + timedelta(hours=2)
    back_to = by_type(sim.statuses, "open")
    got = await client.update_ticket(
        made["id"],
        status="waiting",
        remind_at=remind,
        remind_transition_status_id=back_to["id"],
    )
    assert got["status"] == "waiting"
    assert got["remind_at"].startswith("2030-05-01T11:30:00")
    assert got["remind_transition_status_id"] == back_to["id"]
    sent = api_entries(sim, "PATCH")[-1].body
    assert sent["remind_at"] == "2030-05-01T11:30:00Z"

    got = await client.update_ticket(made["id"], custom_fields={"region": "eu-west"})
    assert got["custom_fields"]["region"] == "eu-west"

    assert sim.ticket(made["id"])["subject"] == "New subject"


async def test_update_with_null_unassigns(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    made = sim.create_ticket(subject="Assigned", assignee_id=sim.agents[1]["id"])
    got = await client.update_ticket(made["id"], assignee_id=None)
    assert got["assignee_id"] is None
    assert sim.ticket(made["id"])["assignee_id"] is None
    assert api_entries(sim, "PATCH")[-1].body == {"assignee_id": None}


async def test_update_rejects_unknown_fields_before_any_request(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    with pytest.raises(ValueError, match="cannot PATCH tags; accepted: subject"):
        await client.update_ticket("1", tags=["x"])
    with pytest.raises(ValueError, match="at least one field"):
        await client.update_ticket("1")
    assert api_entries(sim) == []


# --- bulk ------------------------------------------------------------------------------------


async def test_bulk_each_operation(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    ids = [sim.create_ticket(subject=f"Bulk {i}")["id"] for i in range(3)]
    vip, urgent = sim.create_tag("bulk-a"), sim.create_tag("bulk-b")
    agent = sim.agents[2]["id"]
    inbox = sim.inboxes[1]["id"]

    # inboxops-bulk-ticket-actions: tags_added is "Present for add_tags" and tags_removed
    # "Present for remove_tags"; the client passes on what came.
    closed = await client.bulk("update_status", ids, status="closed")
    assert closed == {"operation": "update_status", "updated": 3}
    assert {sim.ticket(i)["status"] for i in ids} == {"closed"}

    assigned = await client.bulk("assign", ids[:2], assignee_id=agent)
    assert (assigned["operation"], assigned["updated"]) == ("assign", 2)
    assert [sim.ticket(i)["assignee_id"] for i in ids] == [agent, agent, None]

    added = await client.bulk("add_tags", ids, tag_ids=[vip["id"], urgent["id"]])
    assert added == {"operation": "add_tags", "updated": 3, "tags_added": 6}
    again = await client.bulk("add_tags", ids, tag_ids=[vip["id"]])
    assert again["tags_added"] == 0  # links that exist already do not count

    removed = await client.bulk("remove_tags", ids[:1], tag_ids=[vip["id"], urgent["id"]])
    assert removed == {"operation": "remove_tags", "updated": 1, "tags_removed": 2}

    moved = await client.bulk("move_inbox", ids, inbox_id=inbox)
    assert (moved["operation"], moved["updated"]) == ("move_inbox", 3)
    assert {sim.ticket(i)["inbox_id"] for i in ids} == {inbox}

    first = api_entries(sim, "POST")[0]
    assert first.path == "/api/v1/tickets/bulk"
    assert first.body == {"operation": "update_status", "ticket_ids": ids, "status": "closed"}


async def test_bulk_checks_its_arguments_before_any_request(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    with pytest.raises(
        ValueError, match="unknown bulk operation 'delete'; accepted: update_status"
    ):
        await client.bulk("delete", ["1"])
    with pytest.raises(ValueError, match="at least one ticket id"):
        await client.bulk("assign", [], assignee_id=None)
    with pytest.raises(TypeError, match="not a single string"):
        await client.bulk("assign", "abc", assignee_id=None)
    assert api_entries(sim) == []


# --- listing ---------------------------------------------------------------------------------


async def test_list_tickets_pages_through_everything(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    made = [sim.create_ticket(subject=f"Ticket {i}")["id"] for i in range(7)]
    got = [t["id"] async for t in client.list_tickets(per_page=3, sort="created_at", order="asc")]
    assert got == made
    pages = [query_of(e) for e in api_entries(sim, "GET")]
    assert [(p["page"], p["per_page"]) for p in pages] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert all(p["sort"] == "created_at" and p["order"] == "asc" for p in pages)


async def test_list_tickets_stops_when_total_is_reached(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    for i in range(6):
        sim.create_ticket(subject=f"Ticket {i}")
    got = [t async for t in client.list_tickets(per_page=3)]
    assert len(got) == 6
    # Two full pages make the total: no third request for an empty page.
    assert len(api_entries(sim, "GET")) == 2


async def test_list_page_returns_items_and_meta(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    for i in range(5):
        sim.create_ticket(subject=f"Ticket {i}")
    items, meta = await client.list_page(page=2, per_page=2)
    assert len(items) == 2
    assert (meta["page"], meta["per_page"], meta["total"]) == (2, 2, 5)


async def test_list_filters(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    inbox = sim.inboxes[0]["id"]
    tag = sim.create_tag("refunds")
    keep = sim.create_ticket(subject="Refund please", inbox_id=inbox)
    closed = sim.create_ticket(subject="Refund done", inbox_id=inbox)
    sim.create_ticket(subject="Something else", inbox_id=inbox)
    await client.update_ticket(closed["id"], status="closed")
    await client.bulk("add_tags", [keep["id"], closed["id"]], tag_ids=[tag["id"]])
    since = datetime.now(UTC) - timedelta(hours=1)

    found = [
        t["id"]
        async for t in client.list_tickets(
            query="refund",
            status=["open", "in_progress"],
            inbox_id=inbox,
            tag_ids=[tag["id"]],
            created_after=since,
            updated_before="2999-01-01T00:00:00Z",
        )
    ]
    assert found == [keep["id"]]
    sent = query_of(api_entries(sim, "GET")[-1])
    assert sent["status"] == "open,in_progress"
    assert sent["tag_ids"] == tag["id"]
    assert sent["created_after"] == since.isoformat().replace("+00:00", "Z")
    assert sent["created_after"].endswith("Z")

    both = [t["id"] async for t in client.list_tickets(q="refund", status="open,closed")]
    assert sorted(both) == sorted([keep["id"], closed["id"]])


async def test_list_custom_field_filters(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    growth = next(o["id"] for o in plan_options(sim) if o["label"] == "Growth")
    pro = sim.create_ticket(subject="Pro", custom_fields={"plan": growth, "region": "eu-west"})
    sim.create_ticket(subject="Elsewhere", custom_fields={"plan": growth, "region": "us-east"})
    bare = sim.create_ticket(subject="No plan")
    got = [
        t["id"]
        async for t in client.list_tickets(custom_fields={"plan": growth, "region": "eu-west"})
    ]
    assert got == [pro["id"]]
    sent = query_of(api_entries(sim, "GET")[-1])
    assert (sent["custom_field_plan"], sent["custom_field_region"]) == (growth, "eu-west")
    empty = [t["id"] async for t in client.list_tickets(custom_fields={"plan": None})]
    assert empty == [bare["id"]]
    assert query_of(api_entries(sim, "GET")[-1])["custom_field_plan"] == "__empty__"


async def test_list_refuses_bad_filters_before_any_request(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    eleven = {f"field_{i}": "x" for i in range(11)}
    with pytest.raises(ValueError, match="at most 10 custom field filters"):
        client.list_tickets(custom_fields=eleven)
    with pytest.raises(ValueError, match="unknown ticket filter 'colour'"):
        client.list_tickets(colour="red")
    with pytest.raises(ValueError, match="no time zone"):
        client.list_tickets(created_after=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="at most 10"):
        await client.list_page(page=1, per_page=10, custom_fields=eleven)
    # inboxops-list-tickets: "Comma-separated statuses", "Comma-separated tag UUIDs"; priority
    # is one of "low normal high urgent".
    with pytest.raises(ValueError, match="one value for the ticket filter 'priority'"):
        client.list_tickets(priority=["low", "high"])
    assert api_entries(sim) == []


def test_list_params_shapes() -> None:
    when = datetime(2024, 12, 25, 11, 0, tzinfo=UTC) + timedelta(minutes=30)
    assert list_params(
        {
            "status": ("open", "waiting"),
            "assignee_id": "__unassigned__",
            "priority": None,
            "updated_before": when,
            "custom_fields": {"plan": "pro", "region": None},
        }
    ) == {
        "status": "open,waiting",
        "assignee_id": "__unassigned__",
        "updated_before": "2024-12-25T11:30:00Z",
        "custom_field_plan": "pro",
        "custom_field_region": "__empty__",
    }


# --- errors ----------------------------------------------------------------------------------


async def test_401_for_an_unknown_or_malformed_key(
    sim: InboxOpsSimulator, session: aiohttp.ClientSession
) -> None:
    for key in ("ixk_not_a_real_key", "ixk_", sim.revoked_key):
        with pytest.raises(Unauthorized) as caught:
            await client_with(sim, session, key).get_ticket("1")
        err = caught.value
        assert (err.status, err.code) == (401, "unauthorized")
        assert "check INBOXOPS_API_KEY" in str(err)
        assert "not_a_real_key" not in str(err)


async def test_403_forbidden_without_entitlement(
    sim: InboxOpsSimulator, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(Forbidden) as caught:
        await client_with(sim, session, sim.no_entitlement_key).get_ticket("1")
    assert caught.value.code == "forbidden"
    assert "api_webhooks" in str(caught.value)


async def test_403_insufficient_scope_for_a_read_only_key(
    sim: InboxOpsSimulator, session: aiohttp.ClientSession
) -> None:
    made = sim.create_ticket(subject="Read me")
    reader = client_with(sim, session, sim.read_only_key)
    assert (await reader.get_ticket(made["id"]))["id"] == made["id"]
    with pytest.raises(Forbidden) as caught:
        await reader.update_ticket(made["id"], subject="Write me")
    assert caught.value.code == "insufficient_scope"
    assert "the key is read-only; create a read-and-write key" in str(caught.value)
    assert sim.ticket(made["id"])["subject"] == "Read me"


async def test_404_for_unknown_and_foreign_tickets(
    sim: InboxOpsSimulator, client: InboxOpsClient, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(NotFound) as missing:
        await client.get_ticket(str(uuid.uuid4()))
    assert missing.value.code == "not_found"
    made = sim.create_ticket(subject="Mine")
    stranger = client_with(sim, session, sim.other_workspace_key)
    with pytest.raises(NotFound):
        await stranger.get_ticket(made["id"])
    with pytest.raises(NotFound):
        await stranger.update_ticket(made["id"], subject="Theirs")
    assert sim.ticket(made["id"])["subject"] == "Mine"


async def test_400_names_the_field(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    made = sim.create_ticket(subject="Prioritise me")
    with pytest.raises(ClientError) as caught:
        await client.update_ticket(made["id"], priority="blazing")
    err = caught.value
    assert type(err) is ClientError
    assert (err.status, err.code) == (400, "bad_request")
    assert "priority" in str(err)


async def test_429_retry_after_header(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    made = sim.create_ticket(subject="Busy")
    sim.faults.fail_next("GET", "/api/v1/tickets/*", 429, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await client.get_ticket(made["id"])
    assert caught.value.retry_after == 7
    assert caught.value.code == "rate_limit_exceeded"
    # The fault is spent: the next call goes through, and the client itself never retried.
    assert (await client.get_ticket(made["id"]))["id"] == made["id"]
    assert len(api_entries(sim, "GET")) == 2


async def test_429_from_the_workspace_rate_limit(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    made = sim.create_ticket(subject="Busy")
    sim.set_rate_limit(2)
    await client.get_ticket(made["id"])
    await client.get_ticket(made["id"])
    with pytest.raises(RateLimited) as caught:
        await client.get_ticket(made["id"])
    assert 0 < caught.value.retry_after <= 60


async def test_legacy_429_reads_retry_after_from_the_body(
    start_sim: StartSim, session: aiohttp.ClientSession
) -> None:
    sim = await start_sim(legacy_errors=True, rate_limit_per_minute=1)
    client = client_with(sim, session, sim.api_key)
    made = sim.create_ticket(subject="Legacy")
    await client.get_ticket(made["id"])
    with pytest.raises(RateLimited) as caught:
        await client.get_ticket(made["id"])
    err = caught.value
    assert err.body is not None
    assert err.retry_after == json.loads(err.body)["retryAfter"] > 0
    assert err.code is None  # legacy bodies carry only the numeric status


async def test_legacy_errors_map_like_problems(
    start_sim: StartSim, session: aiohttp.ClientSession
) -> None:
    sim = await start_sim(legacy_errors=True)
    client = client_with(sim, session, sim.api_key)
    with pytest.raises(NotFound) as caught:
        await client.get_ticket(str(uuid.uuid4()))
    assert caught.value.detail
    with pytest.raises(Unauthorized):
        await client_with(sim, session, "ixk_nope").get_ticket("1")


async def test_500_is_a_server_error(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    made = sim.create_ticket(subject="Fragile")
    sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 500)
    with pytest.raises(ServerError) as caught:
        await client.update_ticket(made["id"], subject="Changed")
    assert caught.value.status == 500
    assert "retry" in str(caught.value)


async def test_slow_answer_beyond_the_timeout_is_unavailable(
    sim: InboxOpsSimulator, session: aiohttp.ClientSession
) -> None:
    made = sim.create_ticket(subject="Slow")
    client = client_with(sim, session, sim.api_key, timeout=0.1)
    # Long enough to be sure to miss the timeout; short because stopping the simulator waits.
    sim.faults.fail_next("GET", "/api/v1/tickets/*", 500, delay=1.0)
    with pytest.raises(HelpdeskUnavailable) as caught:
        await client.get_ticket(made["id"])
    message = str(caught.value)
    assert f"GET /api/v1/tickets/{made['id']}" in message
    assert "no response within 0.1s" in message


async def test_closed_port_is_unavailable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more, so the connection is refused.
    client = InboxOpsClient(session, f"http://127.0.0.1:{port}", Secret("ixk_k"))
    with pytest.raises(HelpdeskUnavailable) as caught:
        await client.bulk("assign", ["1"], assignee_id=None)
    message = str(caught.value)
    assert "POST /api/v1/tickets/bulk" in message
    assert f"cannot connect to 127.0.0.1:{port}" in message


async def test_server_hanging_up_is_unavailable(session: aiohttp.ClientSession) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = InboxOpsClient(session, f"http://127.0.0.1:{port}", Secret("ixk_k"))
        with pytest.raises(HelpdeskUnavailable) as caught:
            await client.update_ticket("42", subject="x")
    finally:
        server.close()
        await server.wait_closed()
    message = str(caught.value)
    assert "PATCH /api/v1/tickets/42" in message
    assert "closed the connection" in message


async def test_request_ids_reach_errors_and_results(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    made = sim.create_ticket(subject="Traced")
    result = await client.send(
        ApiCall("inboxops", "PATCH", f"/tickets/{made['id']}", {"subject": "x"}, made["id"])
    )
    assert result.request_id == api_entries(sim)[-1].request_id
    with pytest.raises(NotFound) as caught:
        await client.get_ticket(str(uuid.uuid4()))
    rid = api_entries(sim)[-1].request_id
    assert rid and caught.value.request_id == rid
    assert f"(request {rid})" in str(caught.value)
    assert len({result.request_id, rid}) == 2


# --- send ------------------------------------------------------------------------------------


async def test_send_patch(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    made = sim.create_ticket(subject="Planned")
    call = ApiCall(
        vendor="inboxops",
        method="PATCH",
        path=f"/tickets/{made['id']}",
        body={"priority": "high", "status": "in_progress"},
        ticket_id=made["id"],
        rules=("escalate",),
        event_id="evt_1",
    )
    result = await client.send(call)
    assert result.status == 200
    assert result.body["data"]["priority"] == "high"
    assert result.elapsed_ms > 0
    assert sim.ticket(made["id"])["status"] == "in_progress"
    entry = api_entries(sim)[-1]
    assert (entry.method, entry.path, entry.body) == (
        "PATCH",
        f"/api/v1/tickets/{made['id']}",
        call.body,
    )


async def test_send_bulk(sim: InboxOpsSimulator, client: InboxOpsClient) -> None:
    ids = [sim.create_ticket(subject=f"Many {i}")["id"] for i in range(2)]
    call = ApiCall(
        "inboxops",
        "POST",
        "/tickets/bulk",
        {"operation": "update_status", "ticket_ids": ids, "status": "resolved"},
        ids[0],
    )
    result = await client.send(call)
    assert result.body["data"]["updated"] == 2
    assert {sim.ticket(i)["status"] for i in ids} == {"resolved"}


async def test_send_refuses_another_vendors_call(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    with pytest.raises(ValueError, match="not 'inboxops'"):
        await client.send(ApiCall("cstar", "PATCH", "/tickets/1", {}, "1"))
    assert api_entries(sim) == []


async def test_base_url_already_ending_in_api_v1(
    sim: InboxOpsSimulator, session: aiohttp.ClientSession
) -> None:
    made = sim.create_ticket(subject="Anywhere")
    client = InboxOpsClient(session, sim.url + "/api/v1/", Secret(sim.api_key))
    assert (await client.get_ticket(made["id"]))["id"] == made["id"]


# --- RecordingClient -------------------------------------------------------------------------


async def test_recording_client_records_and_never_writes(
    sim: InboxOpsSimulator, client: InboxOpsClient
) -> None:
    made = sim.create_ticket(subject="Dry")
    recorder = RecordingClient(client=client)
    assert recorder.vendor == "inboxops"
    patch = ApiCall("inboxops", "PATCH", f"/tickets/{made['id']}", {"subject": "Wet"}, made["id"])
    bulk = ApiCall("inboxops", "POST", "/tickets/bulk", {"operation": "assign"}, made["id"])
    first = await recorder.send(patch)
    second = await recorder.send(bulk)
    assert recorder.calls == [patch, bulk]
    assert (first.status, first.body) == (200, {"data": {"subject": "Wet"}})
    assert first.request_id != second.request_id
    assert api_entries(sim) == []
    assert sim.ticket(made["id"])["subject"] == "Dry"
    # Reads go to the real client.
    assert (await recorder.get_ticket(made["id"]))["subject"] == "Dry"
    assert [t["id"] async for t in recorder.list_tickets(status="open")] == [made["id"]]
    assert {e.method for e in api_entries(sim)} == {"GET"}


async def test_recording_client_answers_from_given_tickets() -> None:
    tickets = {
        "t1": {"id": "t1", "ticket_number": 1, "status": "open", "priority": "low"},
        "t2": {"id": "t2", "ticket_number": 2, "status": "closed", "priority": "high"},
        "t3": {"id": "t3", "ticket_number": 3, "status": "open", "priority": "high"},
    }
    recorder = RecordingClient("inboxops", tickets=tickets)
    assert (await recorder.get_ticket("t2"))["status"] == "closed"
    assert (await recorder.get_ticket("3"))["id"] == "t3"
    with pytest.raises(NotFound, match="ticket t9 is not among the 3 dry-run tickets"):
        await recorder.get_ticket("t9")
    got = [t["id"] async for t in recorder.list_tickets(status="open", per_page=50)]
    assert got == ["t1", "t3"]
    got = [t["id"] async for t in recorder.list_tickets(priority=["high"], status=None)]
    assert got == ["t2", "t3"]
    with pytest.raises(ValueError, match="cannot be filtered by created_after"):
        recorder.list_tickets(created_after="2024-01-01T00:00:00Z")
    fetched = await recorder.get_ticket("t1")
    fetched["status"] = "closed"
    assert tickets["t1"]["status"] == "open"
    assert (await recorder.get_ticket("t1"))["status"] == "open"
    await recorder.send(ApiCall("inboxops", "PATCH", "/tickets/t1", {"status": "closed"}, "t1"))
    assert len(recorder.calls) == 1
    assert "tickets" in repr(recorder)


def test_recording_client_needs_a_vendor() -> None:
    with pytest.raises(ValueError, match="needs a vendor name or a client"):
        RecordingClient()
