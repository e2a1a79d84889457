"""One bad delivery, one bad answer: a batch's other deliveries are stored, and every 5xx the
receiver gives carries `Retry-After`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from receiver.app import create_app
from receiver.guard import guard
from receiver.health import readyz
from receiver.intake import Intake, UnstorableDelivery
from tests.test_receiver import NEW_SECRET, envelope, post, settings, stream_entries
from ticketwire.event import Routing
from ticketwire.keys import Keys, partition_of
from ticketwire.stored import StoredDelivery
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, InboxOpsWebhook, sign

TICKET_KEY = "inboxops:ws_1:{}"


class LenientInboxOps(InboxOpsWebhook):
    """InboxOps with a parser that lets a lone surrogate through, as Thena's once did."""

    def inspect(self, body: bytes) -> Routing:
        routing = super().inspect(body)
        if routing.id.startswith("lenient"):
            return routing._replace(id="x\ud800")
        return routing


async def make_client(
    aiohttp_client: Any, redis: Redis, keys: Keys, vendor: Any = None
) -> TestClient:
    s = settings(keys)
    app = create_app(s, redis, [vendor or InboxOpsWebhook(s.vendor("inboxops").webhook_secrets)])
    client: TestClient = await aiohttp_client(app)
    return client


def delivery(event_id: str, ticket: str = "t1") -> StoredDelivery:
    return StoredDelivery(
        vendor="inboxops",
        event_id=event_id,
        event_type="ticket.updated",
        ticket_key=TICKET_KEY.format(ticket),
        body=b"{}",
        received_ms=1,
    )


async def test_an_unencodable_delivery_fails_alone_in_its_batch(redis, keys):
    intake = Intake(redis, keys, partitions=4, dedupe_ttl_s=60)
    await intake.start()
    try:
        good = [delivery(f"evt_{i}", f"t{i}") for i in range(60)]
        bad = [delivery("x\ud800"), delivery("evt_bad_ticket", "t\udc00")]
        results = await asyncio.gather(
            *(intake.store(d) for d in bad + good),
            intake.count_ignored("inboxops", "odd\ud800"),
            intake.count_ignored("inboxops", "message.received"),
            return_exceptions=True,
        )
    finally:
        await intake.close()
    assert all(isinstance(r, UnstorableDelivery) for r in results[:2])
    assert isinstance(results[-2], UnstorableDelivery) and results[-1] is None
    assert [r[0] for r in results[2:-2]] == ["stored"] * 60  # type: ignore[index]
    assert intake.batches < 30  # they still went together
    assert len(await stream_entries(redis, keys)) == 60


async def test_a_delivery_a_parser_let_through_is_400_and_its_batch_is_stored(
    aiohttp_client, redis, keys
):
    s = settings(keys)
    client = await make_client(
        aiohttp_client, redis, keys, LenientInboxOps(s.vendor("inboxops").webhook_secrets)
    )
    bodies = [envelope("lenient-1")] + [envelope(f"evt_{i}", id=f"t-{i}") for i in range(40)]
    answers = await asyncio.gather(*(post(client, b) for b in bodies))
    assert answers[0].status == 400
    assert (await answers[0].json())["error"] == "malformed_event"
    assert [a.status for a in answers[1:]] == [202] * 40
    assert len(await stream_entries(redis, keys)) == 40


async def test_a_partition_redis_refuses_fails_only_its_deliveries(aiohttp_client, redis, keys):
    client = await make_client(aiohttp_client, redis, keys)
    tickets = [f"t-{i}" for i in range(40)]
    broken = partition_of(TICKET_KEY.format(tickets[0]), 4)
    # A stream key holding a string: every XADD to it fails with WRONGTYPE.
    await redis.set(keys.stream(broken), "not a stream")
    bodies = [envelope(f"evt_{t}", id=t) for t in tickets]
    answers = await asyncio.gather(*(post(client, b) for b in bodies))
    refused = [t for t, a in zip(tickets, answers, strict=True) if a.status != 202]
    assert refused == [t for t in tickets if partition_of(TICKET_KEY.format(t), 4) == broken]
    for a in answers:
        if a.status != 202:
            assert a.status == 503 and a.headers["Retry-After"] == "5"
            assert (await a.json())["error"] == "storage_unavailable"
    # The failed deliveries left no dedupe key behind: once Redis takes them, a retry stores
    # them (an answer of "duplicate" would drop them).
    await redis.delete(keys.stream(broken))
    again = await asyncio.gather(*(post(client, envelope(f"evt_{t}", id=t)) for t in refused))
    assert [a.status for a in again] == [202] * len(refused)
    assert len(await stream_entries(redis, keys)) == len(tickets)


async def test_a_batch_redis_refuses_whole_is_retried_alone_and_answered_503(
    aiohttp_client, redis, keys
):
    client = await make_client(aiohttp_client, redis, keys)
    # The counters' hash holding a string: the batch script fails after its XADDs.
    await redis.set(keys.stats, "not a hash")
    bodies = [envelope(f"evt_{i}", id=f"t-{i}") for i in range(20)]
    answers = await asyncio.gather(*(post(client, b) for b in bodies))
    assert [(a.status, a.headers.get("Retry-After")) for a in answers] == [(503, "5")] * 20
    # The sender retries once Redis takes writes again: each event is kept exactly once.
    await redis.delete(keys.stats)
    again = await asyncio.gather(*(post(client, b) for b in bodies))
    assert {a.status for a in again} <= {200, 202}
    assert sorted(e.event_id for e in await stream_entries(redis, keys)) == sorted(
        f"evt_{i}" for i in range(20)
    )


async def test_an_unexpected_error_is_a_logged_500_with_retry_after(
    aiohttp_client, redis, keys, caplog
):
    s = settings(keys)
    app = create_app(s, redis, [InboxOpsWebhook(s.vendor("inboxops").webhook_secrets)])

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    async def unavailable(request: web.Request) -> web.Response:
        raise web.HTTPServiceUnavailable()

    app.router.add_post("/broken", broken)
    app.router.add_get("/unavailable", unavailable)
    client: TestClient = await aiohttp_client(app)
    resp = await client.post("/broken", data=b"{}")
    assert resp.status == 500 and resp.headers["Retry-After"] == "5"
    assert (await resp.json())["error"] == "internal_error"
    assert "a bug" not in await resp.text()
    assert "internal error POST '/broken'" in caplog.text and "RuntimeError: a bug" in caplog.text
    resp = await client.get("/unavailable")
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    # Client errors pass through as they were.
    assert (await client.get("/webhooks/inboxops")).status == 405
    assert "Retry-After" not in (await client.get("/nowhere")).headers


async def test_requests_aiohttp_refuses_are_one_warning_line(aiohttp_client, redis, keys, caplog):
    caplog.set_level(logging.DEBUG)
    client = await make_client(aiohttp_client, redis, keys)
    r, w = await asyncio.open_connection("127.0.0.1", client.port)
    w.write(b"POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 9000 + b"\r\n\r\n")
    answer = await r.read()
    w.close()
    assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    [record] = [rec for rec in caplog.records if rec.name == "aiohttp.server"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "rejected 400 at the HTTP level: Got more than 8190 bytes" in record.getMessage()


async def test_readyz_unavailable_carries_retry_after(aiohttp_client):
    redis = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    app = web.Application(middlewares=[guard])
    app.router.add_get("/readyz", readyz(redis))
    try:
        client: TestClient = await aiohttp_client(app)
        resp = await client.get("/readyz")
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    finally:
        await redis.aclose()


async def test_a_header_that_is_not_utf8_is_not_kept_for_replays(aiohttp_client, redis, keys):
    client = await make_client(aiohttp_client, redis, keys)
    body = envelope("evt_ua")
    r, w = await asyncio.open_connection("127.0.0.1", client.port)
    w.write(
        b"POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nUser-Agent: agent-\xff\xfe\r\n"
        + f"{SIGNATURE_HEADER}: {sign(body, NEW_SECRET)}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    answer = await r.read()
    w.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer
    [stored] = await stream_entries(redis, keys)
    assert "User-Agent" not in stored.headers and stored.headers[SIGNATURE_HEADER]
