"""Webhooks of the cStar simulator, received by a real aiohttp server on loopback and verified
with `CStarWebhook`: headers, envelope, events per change, retry schedule, faults."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from simulator.common.clock import ManualClock
from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from tests.conftest import wait_for
from ticketwire.errors import InvalidSignature
from ticketwire.secret import Secret
from ticketwire.vendors.cstar.webhook import CStarWebhook, parse, sign, sign_legacy

SECRET = "whsec_sim_cstar_1"
FAST = 1e-6  # the 24 h retry wait lasts 86 ms


@dataclass
class Hit:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    status: int = 0
    why: str = ""

    @property
    def env(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def type(self) -> str:
        return str(self.env["type"])


class Receiver:
    """Records deliveries; verifies them (401 when not valid); answers scripted statuses."""

    def __init__(self) -> None:
        self.url = ""
        self.hits: list[Hit] = []
        self.script: deque[int] = deque()
        self.hold_next = 0
        self.gate = asyncio.Event()
        self.verifier = CStarWebhook([Secret(SECRET)])

    async def handle(self, request: web.Request) -> web.Response:
        hit = Hit(dict(request.headers), await request.read())
        self.hits.append(hit)
        if self.hold_next > 0:
            self.hold_next -= 1
            await self.gate.wait()
        try:
            self.verifier.verify(request.headers, hit.body)
        except InvalidSignature as exc:
            hit.status, hit.why = 401, exc.reason
        else:
            hit.status = self.script.popleft() if self.script else 200
        return web.Response(status=hit.status, text=f"answered {hit.status}")

    @property
    def accepted(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]

    def types_for(self, ticket_id: str) -> list[str]:
        return [h.type for h in self.accepted if h.env["data"]["ticket"]["id"] == ticket_id]


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[Any]]) -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hook"))
    yield rec
    rec.gate.set()


@asynccontextmanager
async def running(
    receiver: Receiver,
    clock: ManualClock | None = None,
    events: list[str] | None = None,
    **cfg: Any,
) -> AsyncIterator[CStarSimulator]:
    """A started simulator (rate limit off) with one webhook pointing at `receiver`."""
    settings: dict[str, Any] = {"seed": 8, "rate_limit": None, "time_scale": FAST}
    sim = CStarSimulator(CStarSimulatorConfig(**{**settings, **cfg}), clock=clock)
    await sim.start()
    sim.add_endpoint(receiver.url, SECRET, events)
    try:
        yield sim
    finally:
        await sim.stop()


async def call(
    sim: CStarSimulator, method: str, path: str, body: Any = None
) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        async with http.request(method, sim.api_base + path, json=body, headers=headers) as r:
            return r.status, await r.json(), r.headers["X-Request-Id"]


async def test_delivery_headers_envelope_and_signature(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        status, body, request_id = await call(
            sim, "POST", "/tickets", {"title": "Signed", "customerName": "Sam"}
        )
        assert status == 201
        await sim.wait_deliveries_idle()
    [hit] = receiver.hits
    assert hit.status == 200, hit.why
    env = hit.env
    assert list(env) == ["id", "type", "created_at", "team_id", "data"]
    assert env["type"] == "ticket.created" and env["team_id"] == sim.team_id
    ticket = env["data"]["ticket"]
    assert ticket["id"] == body["data"]["id"] and ticket["prefixed_id"] == "CST-1024"
    assert ticket["customer_id"] == body["data"]["customerId"]
    assert ticket["dashboard_url"].endswith(ticket["id"])
    assert env["data"]["customer"]["name"] == "Sam" and "changes" not in env["data"]
    h = hit.headers
    assert h["User-Agent"] == "cStar-Webhooks/1.0" and h["Content-Type"] == "application/json"
    assert h["X-Event-Type"] == "ticket.created" and h["X-Event-ID"] == env["id"]
    assert env["id"].startswith("evt_")
    assert h["X-Webhook-ID"] == next(iter(sim.emitter.endpoints)) and h["X-Webhook-ID"].startswith(
        "whk_"
    )
    assert h["X-Delivery-Attempt"] == "1"
    assert h["x-cstar-request-id"] == request_id
    t = int(h["X-Signature"].split(",")[0].removeprefix("t="))
    assert h["X-Signature"] == sign(hit.body, SECRET, t)
    assert h["X-Timestamp"].endswith("Z")
    event = parse(hit.body)
    assert (event.type, event.id, event.ticket_id, event.tenant) == (
        "ticket.created",
        env["id"],
        ticket["id"],
        sim.team_id,
    )
    [record] = sim.deliveries
    assert (record.attempt, record.status, record.signed_at) == (1, 200, t)


async def test_updates_carry_changes_closing_and_assigning_add_events(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        t = sim.create_ticket(title="Lifecycle", tags=["a"])
        await call(sim, "PATCH", f"/tickets/{t['id']}", {"status": "closed", "tags": ["a", "b"]})
        await call(sim, "PATCH", f"/tickets/{t['id']}", {"assignedTo": "agt_ava"})
        await call(sim, "PATCH", f"/tickets/{t['id']}", {"assignedTo": None})
        await call(sim, "PATCH", f"/tickets/{t['id']}", {"assignedTo": None})  # no-op
        await sim.wait_deliveries_idle()
    assert receiver.types_for(t["id"]) == [
        "ticket.created",
        "ticket.updated",
        "ticket.closed",
        "ticket.updated",
        "ticket.assigned",
        "ticket.updated",
    ]
    updates = [h.env for h in receiver.accepted if h.type == "ticket.updated"]
    assert updates[0]["data"]["changes"] == {
        "status": {"from": "new", "to": "closed"},
        "tags": {"from": ["a"], "to": ["a", "b"]},
    }
    assert updates[1]["data"]["changes"] == {"assigned_to": {"from": None, "to": "agt_ava"}}
    closed = next(h for h in receiver.accepted if h.type == "ticket.closed")
    assert "changes" not in closed.env["data"]
    first_update = parse(next(h.body for h in receiver.accepted if h.type == "ticket.updated"))
    assert first_update.changes is not None and first_update.common["tags"] == ["a", "b"]


async def test_messages_deletes_and_bulk_emit_per_ticket(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        a, b = sim.create_ticket(title="A"), sim.create_ticket(title="B")
        sim.add_message(a["id"], "Any news?")
        body = {
            "action": "update",
            "resource": "tickets",
            "ids": [a["id"], b["id"], "tkt_x"],
            "data": {"priority": "high"},
        }
        status, _, _ = await call(sim, "POST", "/bulk", body)
        assert status == 200
        sim.delete_ticket(b["id"])
        await sim.wait_deliveries_idle()
    assert receiver.types_for(a["id"]) == [
        "ticket.created",
        "ticket.message_added",
        "ticket.updated",
    ]
    assert receiver.types_for(b["id"]) == ["ticket.created", "ticket.updated", "ticket.deleted"]
    message = next(h.env for h in receiver.accepted if h.type == "ticket.message_added")
    assert message["data"]["message"]["content"] == "Any news?"


async def test_retry_schedule_on_the_simulated_clock(receiver: Receiver) -> None:
    clock = ManualClock()
    receiver.script.extend([500, 503])
    async with running(receiver, clock=clock) as sim:
        sim.create_ticket(title="retry me")
        await wait_for(lambda: len(receiver.hits) == 1 and clock.sleepers == 1, message="1st")
        clock.advance(29)
        assert clock.sleepers == 1 and len(receiver.hits) == 1
        clock.advance(1)
        await wait_for(lambda: len(receiver.hits) == 2 and clock.sleepers == 1, message="2nd")
        clock.advance(119)
        assert clock.sleepers == 1 and len(receiver.hits) == 2
        clock.advance(1)
        await sim.wait_deliveries_idle()
    log = sim.deliveries
    assert [(r.attempt, r.status) for r in log] == [(1, 500), (2, 503), (3, 200)]
    assert [(r.delivered_at - log[0].delivered_at).total_seconds() for r in log] == [0, 30, 150]
    assert [h.headers["X-Delivery-Attempt"] for h in receiver.hits] == ["1", "2", "3"]
    assert len({h.headers["X-Event-ID"] for h in receiver.hits}) == 1
    assert len({h.body for h in receiver.hits}) == 1


async def test_six_retries_then_failed(receiver: Receiver) -> None:
    receiver.script.extend([500] * 7)
    async with running(receiver) as sim:
        sim.create_ticket(title="never accepted")
        await sim.wait_deliveries_idle(timeout=5)
    log = sim.deliveries
    assert [r.attempt for r in log] == list(range(1, 8))
    assert [r.failed for r in log] == [False] * 6 + [True]
    gaps = [(b.delivered_at - a.delivered_at).total_seconds() for a, b in itertools.pairwise(log)]
    for gap, wait in zip(gaps, [30, 120, 600, 3600, 21600, 86400], strict=True):
        assert gap >= wait


async def test_response_budget(receiver: Receiver) -> None:
    receiver.hold_next = 1
    async with running(receiver, webhook_timeout=0.1) as sim:
        sim.create_ticket(title="slow receiver")
        await sim.wait_deliveries_idle()
        first, second = sim.deliveries
    assert first.status is None and first.error is not None and "0.1s budget" in first.error
    assert second.succeeded


@pytest.mark.parametrize("header", ["X-Signature", "x-cstar-signature"])
async def test_legacy_signature_mode_and_header_name(receiver: Receiver, header: str) -> None:
    async with running(
        receiver, webhook_signature="legacy", webhook_signature_header=header
    ) as sim:
        sim.create_ticket(title="legacy")
        await sim.wait_deliveries_idle()
        sim.settings.webhook_signature = "v1"
        sim.create_ticket(title="current")
        await sim.wait_deliveries_idle()
    first, second = receiver.hits
    assert first.headers[header] == sign_legacy(first.body, SECRET)
    assert second.headers[header].startswith("t=")
    assert [h.status for h in receiver.hits] == [200, 200]
    assert sim.deliveries[0].signed_at is None


async def test_bad_signature_and_stale_timestamp_faults(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        sim.faults.webhooks.bad_signature_next = 1
        sim.create_ticket(title="bad sig")
        await sim.wait_deliveries_idle()
        sim.faults.webhooks.stale_timestamp_next = 1
        sim.create_ticket(title="stale")
        await sim.wait_deliveries_idle()
        sim.faults.webhooks.stale_timestamp_next = 1
        sim.faults.webhooks.stale_by = -900
        sim.create_ticket(title="future")
        await sim.wait_deliveries_idle()
    assert [h.status for h in receiver.hits] == [401, 200, 401, 200, 401, 200]
    assert "does not match" in receiver.hits[0].why
    assert receiver.hits[2].why.startswith("stale X-Signature") and "old" in receiver.hits[2].why
    assert "in the future" in receiver.hits[4].why
    assert [(r.bad_signature, r.stale_timestamp) for r in sim.deliveries] == [
        (True, False),
        (False, False),
        (False, True),
        (False, False),
        (False, True),
        (False, False),
    ]


async def test_duplicates_reorder_and_burst(receiver: Receiver) -> None:
    async with running(receiver) as sim:
        sim.faults.webhooks.duplicate_next = 1
        t = sim.create_ticket(title="twice")
        await sim.wait_deliveries_idle()
        first, second = receiver.hits
        assert first.headers["X-Event-ID"] == second.headers["X-Event-ID"]
        assert first.body == second.body and sim.deliveries[1].duplicate

        receiver.hits.clear()
        sim.faults.webhooks.reorder_window = 3
        made = [sim.create_ticket(title=f"r{i}")["id"] for i in range(3)]
        await sim.wait_deliveries_idle()
        got = [h.env["data"]["ticket"]["id"] for h in receiver.hits]
        assert sorted(got) == sorted(made) and got != made

        receiver.hits.clear()
        sim.faults.webhooks.reorder_window = 0
        sim.faults.webhooks.burst = 2
        body = {
            "action": "update",
            "resource": "tickets",
            "ids": [t["id"]],
            "data": {"priority": "low"},
        }
        await call(sim, "POST", "/bulk", body)
        await sim.wait_deliveries_idle()
        ids = [h.headers["X-Event-ID"] for h in receiver.hits]
        assert [h.type for h in receiver.hits] == ["ticket.updated"] * 2 and len(set(ids)) == 2


async def test_flat_payload_and_event_filters(receiver: Receiver) -> None:
    async with running(receiver, events=["ticket.closed"], flat_payload=True) as sim:
        t = sim.create_ticket(title="Flat", customerName="Luis", customerEmail="luis@x.test")
        sim.change_ticket(t["id"], status="closed")
        await sim.wait_deliveries_idle()
    [hit] = receiver.hits
    env = hit.env
    assert hit.type == "ticket.closed"
    assert (env["ticket_id"], env["ticket_title"], env["customer_email"]) == (
        t["id"],
        "Flat",
        "luis@x.test",
    )
    assert parse(hit.body).ticket_id == t["id"]


async def test_wildcard_subscriptions_and_unknown_events(receiver: Receiver) -> None:
    async with running(receiver, events=["ticket.*"]) as sim:
        with pytest.raises(ValueError, match="unknown event"):
            sim.add_endpoint(receiver.url, SECRET, ["ticket.reopened"])
        sim.create_ticket(title="wild")
        await sim.wait_deliveries_idle()
    assert [h.type for h in receiver.hits] == ["ticket.created"]
