"""Platform events of the Thena simulator, received by a real aiohttp server on loopback and
checked with `ThenaWebhook`: token and HMAC auth, flat and nested shapes, the events of each
change, the retry schedule on the compressible clock, and the fault knobs."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from receiver.app import create_app, vendor_intakes
from simulator.common.clock import ManualClock
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
from tests.conftest import wait_for
from ticketwire.config import Settings
from ticketwire.errors import InvalidSignature
from ticketwire.event import Event
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors.thena.settings import ThenaSettings
from ticketwire.vendors.thena.webhook import ThenaWebhook, sign

TOKEN = "thena-webhook-token"
FAST = 1e-5  # the 80 s retry wait lasts 0.8 ms


@dataclass
class Hit:
    """One request the receiver got, and what it answered."""

    headers: Mapping[str, str]
    body: bytes
    status: int = 0

    @property
    def doc(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def env(self) -> dict[str, Any]:
        doc = self.doc
        return dict(doc["message"]) if "message" in doc else doc


class Receiver:
    """Verifies with a `ThenaWebhook` (401 when wrong), records, answers scripted statuses."""

    def __init__(self) -> None:
        self.url = ""
        self.hits: list[Hit] = []
        self.script: deque[int] = deque()
        self.hook = ThenaWebhook("token", [Secret(TOKEN)])

    async def handle(self, request: web.Request) -> web.Response:
        hit = Hit(request.headers.copy(), await request.read())
        self.hits.append(hit)
        try:
            self.hook.verify(request.headers, hit.body)
        except InvalidSignature:
            hit.status = 401
        else:
            hit.status = self.script.popleft() if self.script else 200
        return web.Response(status=hit.status, text=f"answered {hit.status}")

    @property
    def accepted(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]

    def events(self) -> list[Event]:
        return [self.hook.parse(h.body) for h in self.accepted]


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[Any]]) -> Receiver:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hook"))
    return rec


@asynccontextmanager
async def running(
    receiver: Receiver | None,
    clock: ManualClock | None = None,
    endpoint: dict[str, Any] | None = None,
    **cfg: Any,
) -> AsyncIterator[ThenaSimulator]:
    """A started simulator (rate limit off) with one endpoint pointing at `receiver`."""
    settings: dict[str, Any] = {"seed": 5, "rate_limit_per_minute": None, "time_scale": FAST}
    sim = ThenaSimulator(ThenaSimulatorConfig(**{**settings, **cfg}), clock=clock)
    await sim.start()
    if receiver is not None:
        sim.add_endpoint(receiver.url, TOKEN, **(endpoint or {}))
    try:
        yield sim
    finally:
        await sim.stop()


async def api(sim: ThenaSimulator, method: str, path: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, sim.url + "/v1" + path, json=body, headers={"x-api-key": sim.api_key}
        ) as r,
    ):
        return r.status, await r.json()


# --- auth and shape --------------------------------------------------------------------------


async def test_default_delivery_is_a_bearer_token_and_a_flat_event(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        status, body = await api(
            sim,
            "POST",
            "/tickets",
            {"title": "Hello", "teamId": sim.team_id, "requestorEmail": "ana@example.com"},
        )
        assert status == 201
        await sim.wait_deliveries_idle()
    [hit] = receiver.hits
    assert hit.status == 200
    assert hit.headers["authorization"] == f"Bearer {TOKEN}"
    assert hit.headers["User-Agent"] == "Thena-Platform-Events/1.0"
    env = hit.doc
    assert list(env) == ["eventId", "eventType", "timestamp", "orgId", "actor", "payload"]
    assert hit.body == json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode()
    assert (env["eventType"], env["orgId"]) == ("ticket:created", sim.org_id)
    assert env["actor"]["type"] == "AGENT"
    ticket = env["payload"]["ticket"]
    assert ticket["id"] == body["data"]["id"]
    assert (ticket["statusName"], ticket["priorityName"]) == ("Open", "Medium")
    assert "assignedAgentId" not in ticket
    assert ticket["assignedAgent"] is None
    # Ticket events page: `ticket:created` payload `ticket{id, ticketId, title, description,
    # customerContact*, priorityId, statusId, statusName, priorityName, sentiment*, source,
    # createdAt, teamId, teamName, teamIdentifier, subTeam*, isEscalated, customer{id,email,name},
    # assignedTo, assignedAgent{…}|null, tags?, isArchived, …}`
    for name in (
        "ticketId",
        "description",
        "customerContactEmail",
        "priorityId",
        "statusId",
        "sentimentId",
        "source",
        "createdAt",
        "teamId",
        "teamName",
        "teamIdentifier",
        "subTeamId",
        "isEscalated",
        "assignedTo",
        "tags",
        "isArchived",
    ):
        assert name in ticket, name
    assert set(ticket["customer"]) == {"id", "email", "name"}
    assert ticket["customer"]["email"] == "ana@example.com"
    assert ticket["customer"]["id"] == ticket["customerContactId"]
    [event] = receiver.events()
    assert (event.type, event.id, event.tenant, event.ticket_id) == (
        "ticket.created",
        env["eventId"],
        sim.org_id,
        ticket["id"],
    )
    assert event.common["status"] == "open"
    [record] = sim.deliveries
    assert (record.event, record.event_id, record.attempt, record.status) == (
        "ticket:created",
        env["eventId"],
        1,
        200,
    )
    assert record.succeeded and not record.failed and not record.bad_signature


async def test_bare_token_in_a_custom_header(receiver: Receiver) -> None:
    receiver.hook = ThenaWebhook("token", [Secret(TOKEN)], header="X-Thena-Token")
    endpoint = {"header": "X-Thena-Token", "scheme": "bare"}
    async with running(receiver, endpoint=endpoint) as sim:
        sim.create_ticket(title="custom header")
        await sim.wait_deliveries_idle()
    [hit] = receiver.hits
    assert (hit.status, hit.headers["X-Thena-Token"]) == (200, TOKEN)
    assert "authorization" not in {k.lower() for k in hit.headers}


async def test_hmac_signed_with_and_without_prefix(receiver: Receiver) -> None:
    receiver.hook = ThenaWebhook("hmac", [Secret(TOKEN)])
    async with running(receiver, endpoint={"mode": "hmac"}) as sim:
        sim.create_ticket(title="signed")
        await sim.wait_deliveries_idle()
        sim.settings.webhook_signature_prefix = True
        sim.create_ticket(title="prefixed")
        await sim.wait_deliveries_idle()
    first, second = receiver.hits
    assert first.headers["X-Thena-Signature"] == sign(first.body, TOKEN)
    assert second.headers["X-Thena-Signature"] == "sha256=" + sign(second.body, TOKEN)
    assert [h.status for h in receiver.hits] == [200, 200]


async def test_nested_and_flat_endpoints_get_the_same_event(
    receiver: Receiver, aiohttp_server: Callable[..., Awaitable[Any]]
) -> None:
    nested = Receiver()
    app = web.Application()
    app.router.add_post("/hook", nested.handle)
    nested.url = str((await aiohttp_server(app)).make_url("/hook"))
    async with running(receiver) as sim:
        sim.add_endpoint(nested.url, TOKEN, nested=True)
        sim.create_ticket(title="twice")
        await sim.wait_deliveries_idle()
    [flat_hit], [nested_hit] = receiver.hits, nested.hits
    assert nested_hit.body == b'{"message":' + flat_hit.body + b"}"
    assert nested.events() == receiver.events()


async def test_endpoints_subscribe_by_name_or_wildcard(receiver: Receiver) -> None:
    async with running(receiver, endpoint={"events": ["ticket:status:*"]}) as sim:
        t = sim.create_ticket(title="filtered")
        sim.change_ticket(t["id"], statusName="Resolved", priorityName="High")
        await sim.wait_deliveries_idle()
    assert [h.env["eventType"] for h in receiver.hits] == ["ticket:status:changed"]
    with pytest.raises(ValueError, match="unknown event"):
        sim.add_endpoint(receiver.url, TOKEN, ["ticket:exploded"])


# --- events per change -----------------------------------------------------------------------


async def test_events_of_each_change(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        t = sim.create_ticket(title="lifecycle")
        tid = t["id"]
        agent = sim.agents[0]
        assert (await api(sim, "PATCH", f"/tickets/{tid}", {"statusName": "In progress"}))[0] == 200
        await api(sim, "PATCH", f"/tickets/{tid}", {"priorityName": "Urgent"})
        await api(sim, "PATCH", f"/tickets/{tid}", {"assignedAgentId": agent["id"]})
        # A no-op emits nothing.
        await api(sim, "PATCH", f"/tickets/{tid}", {"assignedAgentId": agent["id"]})
        sim.change_ticket(tid, tags=["vip"])
        await api(sim, "PATCH", f"/tickets/{tid}", {"statusName": "Closed"})
        await sim.wait_deliveries_idle()
    raw = [h.env["eventType"] for h in receiver.hits]
    assert raw == [
        "ticket:created",
        "ticket:updated",
        "ticket:status:changed",
        "ticket:updated",
        "ticket:priority:changed",
        "ticket:updated",
        "ticket:assigned",
        "ticket:updated",
        "ticket:tag:updated",
        "ticket:updated",
        "ticket:status:changed",
    ]
    events = receiver.events()
    assert [e.type for e in events] == [
        "ticket.created",
        "ticket.updated",
        "ticket.status_changed",
        "ticket.updated",
        "ticket:priority:changed",
        "ticket.updated",
        "ticket.assigned",
        "ticket.updated",
        "ticket:tag:updated",
        "ticket.updated",
        "ticket.closed",
    ]
    assigned = events[6]
    assert assigned.common["assignee"] == agent["id"]
    assert assigned.ticket["assignedAgentId"] == agent["id"]
    assert assigned.changes is not None
    assert assigned.changes["assignedTo"] == {"from": None, "to": agent["id"]}
    closed = events[-1]
    assert closed.changes is not None
    assert closed.changes["statusName"] == {"from": "In progress", "to": "Closed"}
    assert closed.common["tags"] == ["vip"]
    # All events of one change carry the same ticket, with distinct event ids.
    assert events[-2].ticket == closed.ticket
    assert len({e.id for e in events}) == len(events)


async def test_bulk_calls_emit_per_ticket(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        a = sim.create_ticket(title="a")
        b = sim.create_ticket(title="b")
        await sim.wait_deliveries_idle()
        receiver.hits.clear()
        await api(
            sim,
            "PATCH",
            "/tickets/bulk",
            {"ticketIds": [a["id"], b["id"]], "statusId": sim.status_id("Resolved")},
        )
        await sim.wait_deliveries_idle()
        pairs = sorted(
            (h.env["payload"]["ticket"]["id"], h.env["eventType"]) for h in receiver.hits
        )
        assert pairs == sorted(
            [
                (t, e)
                for t in (a["id"], b["id"])
                for e in ("ticket:updated", "ticket:status:changed")
            ]
        )
        receiver.hits.clear()
        tickets = [
            {"title": "new 1", "teamId": sim.team_id},
            {"title": "new 2", "teamId": sim.team_id},
        ]
        await api(sim, "POST", "/tickets/bulk", {"tickets": tickets})
        once = {"title": "new 3", "teamId": sim.team_id, "deDuplicationKey": "d1"}
        await api(sim, "POST", "/tickets", once)
        # The same dedup key again: no ticket, no event.
        await api(sim, "POST", "/tickets", once)
        await sim.wait_deliveries_idle()
    assert [h.env["eventType"] for h in receiver.hits] == ["ticket:created"] * 3


# --- retries ---------------------------------------------------------------------------------


async def test_retries_follow_the_10_20_30_50_80_schedule(receiver: Receiver) -> None:
    clock = ManualClock()
    receiver.script.extend([500, 502, 503, 500, 500])
    async with running(receiver, clock=clock) as sim:
        sim.create_ticket(title="retry me")
        for n, wait in enumerate((10, 20, 30, 50, 80), start=1):
            await wait_for(
                lambda n=n: len(receiver.hits) == n and clock.sleepers == 1, message=f"attempt {n}"
            )
            clock.advance(wait - 1)
            assert clock.sleepers == 1 and len(receiver.hits) == n
            clock.advance(1)
        await sim.wait_deliveries_idle()
    log = sim.deliveries
    assert [(r.attempt, r.status, r.succeeded) for r in log] == [
        (1, 500, False),
        (2, 502, False),
        (3, 503, False),
        (4, 500, False),
        (5, 500, False),
        (6, 200, True),
    ]
    assert [(r.delivered_at - log[0].delivered_at).total_seconds() for r in log] == [
        0,
        10,
        30,
        60,
        110,
        190,
    ]
    assert len({r.event_id for r in log}) == 1
    assert len({h.body for h in receiver.hits}) == 1


async def test_a_delivery_fails_after_six_attempts(receiver: Receiver) -> None:
    receiver.script.extend([500] * 6)
    async with running(receiver) as sim:
        sim.create_ticket(title="never accepted")
        await sim.wait_deliveries_idle(timeout=5)
    assert [(r.attempt, r.failed) for r in sim.deliveries] == [
        (1, False),
        (2, False),
        (3, False),
        (4, False),
        (5, False),
        (6, True),
    ]


async def test_refused_connections_are_failed_attempts() -> None:
    async with running(None, webhook_retry_schedule=(1.0,)) as sim:
        sim.add_endpoint("http://127.0.0.1:9/hook", TOKEN)
        sim.create_ticket(title="nobody listens")
        await sim.wait_deliveries_idle(timeout=5)
    assert [(r.attempt, r.status, r.failed) for r in sim.deliveries] == [
        (1, None, False),
        (2, None, True),
    ]
    assert all(r.error for r in sim.deliveries)


# --- faults ----------------------------------------------------------------------------------


async def test_bad_token_then_a_good_retry(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        sim.faults.webhooks.bad_signature_next = 1
        sim.create_ticket(title="bad token first")
        await sim.wait_deliveries_idle()
    first, second = receiver.hits
    assert first.status == 401 and first.headers["authorization"] != f"Bearer {TOKEN}"
    assert second.status == 200
    assert [r.bad_signature for r in sim.deliveries] == [True, False]
    assert first.body == second.body


async def test_duplicates_share_the_event_id(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        sim.faults.webhooks.duplicate_next = 1
        sim.create_ticket(title="twice")
        await sim.wait_deliveries_idle()
    first, second = receiver.events()
    assert first == second
    assert [r.duplicate for r in sim.deliveries] == [False, True]


async def test_reorder_window_shuffles_a_group(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        sim.faults.webhooks.reorder_window = 3
        made = [sim.create_ticket(title=f"t{i}")["id"] for i in range(3)]
        await sim.wait_deliveries_idle()
    got = [e.ticket_id for e in receiver.events()]
    assert sorted(got) == sorted(made)
    assert got != made


async def test_burst_repeats_bulk_events_with_fresh_ids(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        t = sim.create_ticket(title="burst")
        await sim.wait_deliveries_idle()
        receiver.hits.clear()
        sim.faults.webhooks.burst = 3
        await api(sim, "PATCH", "/tickets/bulk", {"ticketIds": [t["id"]], "isPrivate": True})
        await sim.wait_deliveries_idle()
    events = receiver.events()
    assert [e.raw_type for e in events] == ["ticket:updated"] * 3
    assert len({e.id for e in events}) == 3


# --- into the receiver -----------------------------------------------------------------------


async def test_the_receiver_stores_thena_events(
    aiohttp_server: Callable[..., Awaitable[Any]], redis: Redis, keys: Keys
) -> None:
    settings = Settings(
        key_prefix=keys.prefix,
        partitions=2,
        vendors={"thena": ThenaSettings(webhook_secrets=(Secret(TOKEN),))},
    )
    app = create_app(settings, redis, vendor_intakes(settings))
    server = await aiohttp_server(app)
    async with running(None) as sim:
        sim.add_endpoint(str(server.make_url("/webhooks/thena")), TOKEN, nested=True)
        sim.faults.webhooks.bad_signature_next = 1
        t = sim.create_ticket(title="into the stream")
        sim.change_ticket(t["id"], priorityName="Urgent")
        await sim.wait_deliveries_idle()
    answers = [(r.event, r.status) for r in sim.deliveries]
    assert answers == [
        ("ticket:created", 401),
        ("ticket:created", 202),
        ("ticket:updated", 202),
        ("ticket:priority:changed", 202),
    ]
    assert all(json.loads(r.response_snippet)["status"] == "stored" for r in sim.deliveries[1:])
    stats = await redis.hgetall(keys.stats)  # type: ignore[misc]
    assert int(stats[b"accepted"]) == 3
