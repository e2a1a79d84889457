"""With traces off (TICKETWIRE_TRACE_RETENTION=0) intake lists nothing; dedupe is unchanged."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from tests.test_receiver import OLD_SECRET, envelope, make_client, settings
from ticketwire.keys import Keys
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, sign


async def test_traces_off_lists_nothing_and_the_dedupe_key_still_holds_the_ticket(
    aiohttp_client: Any, redis: Redis, keys: Keys
) -> None:
    client = await make_client(aiohttp_client, settings(keys, trace_retention_s=0), redis)
    body = envelope("evt_off")
    for want in (202, 200):
        resp = await client.post(
            "/webhooks/inboxops",
            data=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body, OLD_SECRET),
            },
        )
        assert resp.status == want
    resp = await client.post(
        "/webhooks/inboxops", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 401
    assert (
        await redis.get(keys.seen("inboxops", "evt_off"))
    ) == b"inboxops:ws_1:7b0d8e5e-0000-4000-8000-000000000001"
    assert not await redis.exists(keys.trace_log)
