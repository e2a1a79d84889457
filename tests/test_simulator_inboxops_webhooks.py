"""Webhooks of the InboxOps simulator, received by a real aiohttp server on loopback: signature,
envelope, retries on the compressed clock, ordering, fault knobs, and the events each change emits."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from simulator.common.clock import ManualClock
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from ticketwire.errors import InvalidSignature
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook, sign

SECRET = "whsec_simulator_test"
FAST = 1e-5  # one simulated minute lasts 0.6 ms


@dataclass
class Hit:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def env(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def event(self) -> str:
        return str(self.env["event"])


class Receiver:
    """Records deliveries; verifies signatures (401 when wrong); answers scripted statuses."""

    def __init__(self) -> None:
        self.url = ""
        self.hits: list[Hit] = []
        self.script: deque[int] = deque()
        self.hold_next = 0
        self.gate = asyncio.Event()
        self.verifier = InboxOpsWebhook([Secret(SECRET)])

    async def handle(self, request: web.Request) -> web.Response:
        hit = Hit(dict(request.headers), await request.read())
        self.hits.append(hit)
        if self.hold_next > 0:
            self.hold_next -= 1
            await self.gate.wait()
        try:
            self.verifier.verify(request.headers, hit.body)
        except InvalidSignature:
            hit.status = 401
        else:
            hit.status = self.script.popleft() if self.script else 200
        return web.Response(status=hit.status, text=f"answered {hit.status}")

    @property
    def accepted(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]

    def events_for(self, ticket_id: str) -> list[str]:
        return [h.event for h in self.accepted if h.env["data"]["id"] == ticket_id]


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[Any]]) -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hook"))
    yield rec
    rec.gate.set()  # never leave a held request hanging at shutdown


class Client:
    """Calls the simulator's API with the default key."""

    def __init__(self, sim: InboxOpsSimulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        h = {"Authorization": f"Bearer {self.sim.api_key}", **(headers or {})}
        async with self.session.request(
            method, self.sim.url + "/api/v1" + path, json=body, headers=h
        ) as r:
            return r.status, await r.json(content_type=None)


@asynccontextmanager
async def running(
    receiver: Receiver,
    clock: ManualClock | None = None,
    events: list[str] | None = None,
    **cfg: Any,
) -> AsyncIterator[Client]:
    """A started simulator (rate limit off) with one endpoint pointing at `receiver`."""
    settings: dict[str, Any] = {"seed": 5, "rate_limit_per_minute": None, "time_scale": FAST}
    sim = InboxOpsSimulator(SimulatorConfig(**{**settings, **cfg}), clock=clock)
    await sim.start()
    sim.add_endpoint(receiver.url, SECRET, events)
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(sim, session)
    finally:
        await sim.stop()


async def test_delivery_is_signed_compact_and_carries_the_ticket(receiver: Receiver) -> None:
    async with running(receiver) as api:
        status, body = await api.call("POST", "/tickets", {"subject": "Signed"})
        assert status == 201
        await api.sim.wait_deliveries_idle()
    [hit] = receiver.hits
    raw = hit.body
    env = hit.env
    assert list(env) == ["event", "event_id", "tenant_id", "created_at", "data"]
    assert raw == json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode()
    assert env["event"] == "ticket.created"
    assert env["tenant_id"] == api.sim.workspace_id
    assert env["data"] == body["data"]
    signature = hit.headers["X-InboxOps-Signature"]
    assert signature == sign(raw, SECRET)
    assert len(signature) == 64
    assert signature == signature.lower()
    InboxOpsWebhook([Secret(SECRET)]).verify(hit.headers, raw)
    event = InboxOpsWebhook([Secret(SECRET)]).parse(raw)
    assert (event.type, event.id, event.ticket_id) == (
        "ticket.created",
        env["event_id"],
        body["data"]["id"],
    )
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"] == "InboxOps-Webhooks/1.0"
    [record] = api.sim.deliveries
    assert (record.event, record.event_id, record.attempt, record.status) == (
        "ticket.created",
        env["event_id"],
        1,
        200,
    )
    assert record.succeeded and not record.failed and record.error is None
    assert record.endpoint_id == next(iter(api.sim.emitter.endpoints))
    assert record.delivered_at <= api.sim.clock.now()


async def test_signature_prefix_can_be_switched_on(receiver: Receiver) -> None:
    async with running(receiver, webhook_signature_prefix=True) as api:
        api.sim.create_ticket(subject="prefixed")
        await api.sim.wait_deliveries_idle()
        api.sim.settings.webhook_signature_prefix = False
        api.sim.create_ticket(subject="bare")
        await api.sim.wait_deliveries_idle()
    first, second = receiver.hits
    assert first.headers["X-InboxOps-Signature"] == "sha256=" + sign(first.body, SECRET)
    assert second.headers["X-InboxOps-Signature"] == sign(second.body, SECRET)
    assert [h.status for h in receiver.hits] == [200, 200]


async def test_the_api_answers_without_waiting_for_deliveries(receiver: Receiver) -> None:
    receiver.hold_next = 1
    async with running(receiver) as api:
        t = api.sim.create_ticket(subject="slow receiver")
        await wait_for(lambda: receiver.hits, message="the held delivery")
        status, _ = await api.call("PATCH", f"/tickets/{t['id']}", {"subject": "still fast"})
        assert status == 200
        assert api.sim.emitter.pending == 2
        with pytest.raises(TimeoutError):
            await api.sim.wait_deliveries_idle(timeout=0.05)
        receiver.gate.set()
        await api.sim.wait_deliveries_idle()
        assert api.sim.emitter.pending == 0
    assert receiver.events_for(t["id"]) == ["ticket.created", "ticket.updated"]


async def test_retries_follow_the_doubling_schedule_with_a_stable_event_id(
    receiver: Receiver,
) -> None:
    clock = ManualClock()
    receiver.script.extend([500, 503])
    async with running(receiver, clock=clock) as api:
        api.sim.create_ticket(subject="retry me")
        await wait_for(lambda: len(receiver.hits) == 1 and clock.sleepers == 1, message="1st")
        clock.advance(59)
        assert clock.sleepers == 1
        assert len(receiver.hits) == 1
        clock.advance(1)
        await wait_for(lambda: len(receiver.hits) == 2 and clock.sleepers == 1, message="2nd")
        clock.advance(119)
        assert clock.sleepers == 1
        clock.advance(1)
        await api.sim.wait_deliveries_idle()
    log = api.sim.deliveries
    assert [(r.attempt, r.status, r.succeeded) for r in log] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert [(r.delivered_at - log[0].delivered_at).total_seconds() for r in log] == [0, 60, 180]
    assert len({r.event_id for r in log}) == 1
    assert len({h.body for h in receiver.hits}) == 1
    assert {h.env["event_id"] for h in receiver.hits} == {log[0].event_id}


async def test_a_delivery_is_marked_failed_after_ten_attempts(receiver: Receiver) -> None:
    receiver.script.extend([500] * 10)
    async with running(receiver) as api:
        api.sim.create_ticket(subject="never accepted")
        await api.sim.wait_deliveries_idle(timeout=5)
        log = api.sim.deliveries
    assert [r.attempt for r in log] == list(range(1, 11))
    assert [r.failed for r in log] == [False] * 9 + [True]
    assert not any(r.succeeded for r in log)
    assert len(receiver.hits) == 10
    gaps = [(b.delivered_at - a.delivered_at).total_seconds() for a, b in itertools.pairwise(log)]
    # Each wait is at least the scheduled 1, 2, 4 … 256 minutes (the exact schedule is checked on
    # a manual clock above; here real request time, magnified by the scale, adds to each gap).
    for gap, minutes in zip(gaps, [2**i for i in range(9)], strict=True):
        assert gap >= minutes * 60


async def test_timeouts_and_refused_connections_are_failed_attempts(receiver: Receiver) -> None:
    receiver.hold_next = 1
    async with running(receiver, webhook_timeout=0.1) as api:
        api.sim.create_ticket(subject="times out once")
        await api.sim.wait_deliveries_idle()
        first, second = api.sim.deliveries
        assert first.status is None
        assert first.error is not None and "timeout" in first.error
        assert second.succeeded
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    async with running(receiver, webhook_max_attempts=2) as api:
        api.sim.add_endpoint(f"http://127.0.0.1:{closed_port}/hook", SECRET)
        api.sim.create_ticket(subject="nobody listens")
        await api.sim.wait_deliveries_idle()
        refused = [r for r in api.sim.deliveries if r.status is None]
        assert [r.attempt for r in refused] == [1, 2]
        assert refused[-1].failed
        assert refused[0].error


async def test_events_of_one_ticket_arrive_in_order_even_across_retries(receiver: Receiver) -> None:
    receiver.script.append(500)
    async with running(receiver) as api:
        t = api.sim.create_ticket(subject="ordered")
        other = api.sim.create_ticket(subject="independent")
        api.sim.change_ticket(t["id"], subject="ordered 2")
        api.sim.change_ticket(t["id"], status="closed")
        await api.sim.wait_deliveries_idle()
    mine = [h for h in receiver.hits if h.env["data"]["id"] == t["id"]]
    assert [(h.event, h.status) for h in mine] == [
        ("ticket.created", 500),
        ("ticket.created", 200),
        ("ticket.updated", 200),
        ("ticket.updated", 200),
        ("ticket.status_changed", 200),
        ("ticket.closed", 200),
    ]
    assert [h.env["data"]["subject"] for h in mine[2:]] == ["ordered 2"] * 4
    assert receiver.events_for(other["id"]) == ["ticket.created"]


async def test_patch_emits_the_documented_event_combinations(receiver: Receiver) -> None:
    async with running(receiver) as api:
        sim = api.sim
        t = sim.create_ticket(subject="combos")
        path = f"/tickets/{t['id']}"
        escalated = next(s["id"] for s in sim.statuses if s["name"] == "Escalated")
        agent = sim.agents[0]["id"]
        steps: list[tuple[dict[str, Any], list[str]]] = [
            ({"subject": "combos 2"}, ["ticket.updated"]),
            ({"custom_fields": {"region": "eu"}}, ["ticket.updated"]),
            ({"status_id": escalated}, ["ticket.updated", "ticket.status_changed"]),
            ({"status": "in_progress"}, []),
            ({"status": "in_progress", "status_id": sim.statuses[1]["id"]},
             ["ticket.updated", "ticket.status_changed"]),
            ({"assignee_id": agent}, ["ticket.updated", "ticket.assigned"]),
            ({"assignee_id": agent, "subject": "combos 2"}, []),
            ({"status": "closed"}, ["ticket.updated", "ticket.status_changed", "ticket.closed"]),
            ({"status": "open", "assignee_id": None},
             ["ticket.updated", "ticket.status_changed", "ticket.assigned"]),
        ]  # fmt: skip
        expected = ["ticket.created"]
        for body, events in steps:
            status, _ = await api.call("PATCH", path, body)
            assert status == 200
            if not events:
                # Events are queued before the answer, so nothing pending means nothing emitted.
                assert sim.emitter.pending == 0
            expected += events
            await sim.wait_deliveries_idle()
            assert receiver.events_for(t["id"]) == expected, body
    closed = [h for h in receiver.accepted if h.event == "ticket.closed"]
    assert closed[0].env["data"]["status"] == "closed"


async def test_bulk_fires_per_ticket_webhooks_like_patch(receiver: Receiver) -> None:
    async with running(receiver) as api:
        sim = api.sim
        a, b, c = (sim.create_ticket(subject=f"bulk {i}") for i in range(3))
        vip = sim.tags[0]["id"]
        sim.change_ticket(c["id"], tag_ids=[vip])
        ids = [a["id"], b["id"], c["id"]]
        await sim.wait_deliveries_idle()
        receiver.hits.clear()

        async def bulk(body: dict[str, Any]) -> dict[str, Any]:
            status, reply = await api.call("POST", "/tickets/bulk", {**body, "ticket_ids": ids})
            assert status == 200
            await sim.wait_deliveries_idle()
            return dict(reply["data"])

        assert (await bulk({"operation": "update_status", "status": "closed"}))["updated"] == 3
        for i in ids:
            assert receiver.events_for(i) == [
                "ticket.updated",
                "ticket.status_changed",
                "ticket.closed",
            ]
        receiver.hits.clear()
        await bulk({"operation": "assign", "assignee_id": sim.agents[0]["id"]})
        assert {i: receiver.events_for(i) for i in ids} == {
            i: ["ticket.updated", "ticket.assigned"] for i in ids
        }
        receiver.hits.clear()
        assert (await bulk({"operation": "add_tags", "tag_ids": [vip]}))["tags_added"] == 2
        assert [receiver.events_for(i) for i in ids] == [["ticket.updated"], ["ticket.updated"], []]
        receiver.hits.clear()
        await bulk({"operation": "move_inbox", "inbox_id": sim.inboxes[1]["id"]})
        assert [receiver.events_for(i) for i in ids] == [["ticket.updated"]] * 3


async def test_endpoint_event_filter(receiver: Receiver) -> None:
    async with running(receiver, events=["ticket.closed", "ticket.assigned"]) as api:
        t = api.sim.create_ticket(subject="filtered")
        api.sim.change_ticket(t["id"], subject="x")
        api.sim.change_ticket(t["id"], status="closed", assignee_id=api.sim.agents[0]["id"])
        await api.sim.wait_deliveries_idle()
        with pytest.raises(ValueError, match="unknown event"):
            api.sim.add_endpoint(receiver.url, SECRET, ["ticket.deleted"])
    assert [h.event for h in receiver.hits] == ["ticket.closed", "ticket.assigned"]


async def test_idempotent_replays_emit_nothing_and_agent_edits_emit(receiver: Receiver) -> None:
    async with running(receiver) as api:
        key = {"Idempotency-Key": "k-1"}
        for _ in range(3):
            status, _ = await api.call("POST", "/tickets", {"subject": "once"}, key)
            assert status == 201
        t = api.sim.create_ticket(subject="agent")
        api.sim.change_ticket(t["ticket_number"], tag_ids=[api.sim.tags[1]["id"]])
        api.sim.change_ticket(t["ticket_number"], tag_ids=[api.sim.tags[1]["id"]])
        await api.sim.wait_deliveries_idle()
    assert [h.event for h in receiver.hits].count("ticket.created") == 2
    assert receiver.events_for(t["id"]) == ["ticket.created", "ticket.updated"]


async def test_duplicate_fault_delivers_the_same_event_twice(receiver: Receiver) -> None:
    async with running(receiver) as api:
        api.sim.faults.webhooks.duplicate_next = 1
        api.sim.create_ticket(subject="twice")
        api.sim.create_ticket(subject="once")
        await api.sim.wait_deliveries_idle()
        twice = [h for h in receiver.hits if h.env["data"]["subject"] == "twice"]
        once = [h for h in receiver.hits if h.env["data"]["subject"] == "once"]
        assert len(twice) == 2
        assert twice[0].body == twice[1].body
        assert len(once) == 1
        flags = [(r.event_id == twice[0].env["event_id"], r.duplicate) for r in api.sim.deliveries]
        assert sorted(flags) == [(False, False), (True, False), (True, True)]
        receiver.hits.clear()
        api.sim.faults.webhooks.duplicate = 1.0
        api.sim.create_ticket(subject="always")
        await api.sim.wait_deliveries_idle()
        assert len(receiver.hits) == 2
        assert receiver.hits[0].body == receiver.hits[1].body


async def test_reorder_fault_shuffles_a_group_and_flushes_a_partial_one(receiver: Receiver) -> None:
    async with running(receiver, reorder_flush_after=0.05) as api:
        api.sim.faults.webhooks.reorder_window = 4
        t = api.sim.create_ticket(subject="v0")
        for i in range(1, 4):
            api.sim.change_ticket(t["id"], subject=f"v{i}")
        await api.sim.wait_deliveries_idle()
        subjects = [h.env["data"]["subject"] for h in receiver.hits]
        assert sorted(subjects) == ["v0", "v1", "v2", "v3"]
        assert subjects != ["v0", "v1", "v2", "v3"]
        receiver.hits.clear()
        api.sim.create_ticket(subject="alone")
        await api.sim.wait_deliveries_idle()
        assert [h.env["data"]["subject"] for h in receiver.hits] == ["alone"]


async def test_bad_signature_fault_is_rejected_then_retried_correctly(receiver: Receiver) -> None:
    async with running(receiver) as api:
        api.sim.faults.webhooks.bad_signature_next = 1
        api.sim.create_ticket(subject="tampered")
        await api.sim.wait_deliveries_idle()
    bad, good = receiver.hits
    assert bad.body == good.body
    assert bad.headers["X-InboxOps-Signature"] != sign(bad.body, SECRET)
    assert (bad.status, good.status) == (401, 200)
    assert [(r.bad_signature, r.status) for r in api.sim.deliveries] == [(True, 401), (False, 200)]


async def test_burst_fault_multiplies_bulk_events(receiver: Receiver) -> None:
    async with running(receiver) as api:
        sim = api.sim
        a, b = sim.create_ticket(subject="a"), sim.create_ticket(subject="b")
        await sim.wait_deliveries_idle()
        receiver.hits.clear()
        sim.faults.webhooks.burst = 3
        body = {
            "operation": "add_tags",
            "ticket_ids": [a["id"], b["id"]],
            "tag_ids": [sim.tags[0]["id"]],
        }
        status, reply = await api.call("POST", "/tickets/bulk", body)
        assert (status, reply["data"]["updated"]) == (200, 2)
        await sim.wait_deliveries_idle()
        assert len(receiver.hits) == 6
        assert {h.event for h in receiver.hits} == {"ticket.updated"}
        assert len({h.env["event_id"] for h in receiver.hits}) == 6
        assert [len(receiver.events_for(t["id"])) for t in (a, b)] == [3, 3]
        receiver.hits.clear()
        await api.call("PATCH", f"/tickets/{a['id']}", {"subject": "single"})
        await sim.wait_deliveries_idle()
        assert len(receiver.hits) == 1


async def test_reset_cancels_pending_deliveries_and_keeps_endpoints(receiver: Receiver) -> None:
    receiver.hold_next = 1
    async with running(receiver) as api:
        endpoints = dict(api.sim.emitter.endpoints)
        api.sim.create_ticket(subject="doomed")
        await wait_for(lambda: receiver.hits, message="the held delivery")
        assert api.sim.emitter.pending == 1
        api.sim.reset()
        assert api.sim.emitter.pending == 0
        await api.sim.wait_deliveries_idle(timeout=0.01)
        assert api.sim.deliveries == []
        assert api.sim.emitter.endpoints == endpoints
        receiver.gate.set()
        api.sim.create_ticket(subject="after reset")
        await api.sim.wait_deliveries_idle()
        assert receiver.hits[-1].env["data"]["ticket_number"] == 1


async def test_seed_makes_event_payloads_reproducible(receiver: Receiver) -> None:
    bodies = []
    for _ in range(2):
        receiver.hits.clear()
        async with running(receiver, clock=ManualClock()) as api:
            t = api.sim.create_ticket(subject="same")
            await api.call("PATCH", f"/tickets/{t['id']}", {"status": "waiting"})
            await api.sim.wait_deliveries_idle()
        bodies.append([h.body for h in receiver.hits])
    assert bodies[0] == bodies[1]
    assert len(bodies[0]) == 3
