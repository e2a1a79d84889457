"""Several accounts of one helpdesk on the real receiver: each route verifies with its own secrets."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from receiver.app import create_app, vendor_intakes
from tests.conftest import wait_for
from tests.test_receiver import envelope, stream_entries
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, sign

DEFAULT_SECRET = "whsec_default_0123456"
A_SECRET = "whsec_brand_a_0123456"
B_SECRET = "whsec_brand_b_0123456"


def _account(secret: str) -> InboxOpsSettings:
    return InboxOpsSettings(webhook_secrets=(Secret(secret),))


@pytest.fixture
async def client(aiohttp_client: Any, redis: Redis, keys: Keys) -> TestClient:
    s = Settings(
        key_prefix=keys.prefix,
        partitions=4,
        vendors={"inboxops": _account(DEFAULT_SECRET)},
        named_accounts={"inboxops": {"brand-a": _account(A_SECRET), "brand-b": _account(B_SECRET)}},
    )
    client: TestClient = await aiohttp_client(create_app(s, redis, vendor_intakes(s)))
    return client


async def post(client: TestClient, path: str, body: bytes, secret: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}
    resp = await client.post(path, data=body, headers=headers)
    return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        ("/webhooks/inboxops/brand-a", A_SECRET),
        ("/webhooks/inboxops/brand-b", B_SECRET),
        ("/webhooks/inboxops", DEFAULT_SECRET),
        ("/webhooks/inboxops/default", DEFAULT_SECRET),
    ],
)
async def test_each_account_verifies_only_with_its_own_secret(client, path, secret):
    for other in {DEFAULT_SECRET, A_SECRET, B_SECRET} - {secret}:
        status, answer = await post(client, path, envelope("evt_x"), other)
        assert (status, answer["error"]) == (401, "invalid_signature"), other
    status, answer = await post(client, path, envelope("evt_x"), secret)
    assert (status, answer["status"]) == (202, "stored")


async def test_stored_deliveries_carry_their_account(client, redis, keys):
    assert (await post(client, "/webhooks/inboxops/brand-a", envelope("e1"), A_SECRET))[0] == 202
    assert (await post(client, "/webhooks/inboxops", envelope("e2"), DEFAULT_SECRET))[0] == 202
    stored = {d.event_id: d.account for d in await stream_entries(redis, keys)}
    assert stored == {"e1": "brand-a", "e2": "default"}


async def test_dedupe_is_per_account(client, redis, keys):
    body = envelope("same")
    assert (await post(client, "/webhooks/inboxops/brand-a", body, A_SECRET))[1][
        "status"
    ] == "stored"
    assert (await post(client, "/webhooks/inboxops/brand-b", body, B_SECRET))[1][
        "status"
    ] == "stored"
    assert (await post(client, "/webhooks/inboxops/brand-a", body, A_SECRET))[1]["status"] == (
        "duplicate"
    )
    # The default account's two routes are one account: one dedupe marker.
    assert (await post(client, "/webhooks/inboxops", body, DEFAULT_SECRET))[1]["status"] == "stored"
    again = await post(client, "/webhooks/inboxops/default", body, DEFAULT_SECRET)
    assert again[1]["status"] == "duplicate"
    assert await redis.exists(
        keys.seen("inboxops", "same", "brand-a"), keys.seen("inboxops", "same")
    )


async def test_an_unknown_account_is_a_404_and_listed_as_refused(client, redis, keys, caplog):
    status, answer = await post(client, "/webhooks/inboxops/brand-c", envelope(), A_SECRET)
    assert status == 404 and answer["error"] == "unknown_account"
    assert "'brand-c'" in answer["detail"] and "brand-a" not in answer["detail"]
    assert "rejected inboxops 404: unknown account 'brand-c'" in caplog.text

    async def refused() -> list[dict[bytes, bytes]]:
        entries = [f for _, f in await redis.xrange(keys.trace_log)]
        return [
            f
            for f in entries
            if f.get(b"n") == b"unknown_account" or b"unknown_account" in f.values()
        ]

    [entry] = await wait_for(refused, message="the refusal listed")
    assert b"404" in entry.values()
    # Another vendor with no account here still has no route at all.
    resp = await client.post("/webhooks/cstar/brand-a", data=b"{}")
    assert resp.status == 404 and resp.content_type != "application/json"


async def test_a_vendor_with_only_named_accounts_refuses_its_default_route(
    aiohttp_client, redis, keys
):
    s = Settings(
        key_prefix=keys.prefix,
        partitions=4,
        named_accounts={"inboxops": {"brand-a": _account(A_SECRET)}},
    )
    client = await aiohttp_client(create_app(s, redis, vendor_intakes(s)))
    assert (await post(client, "/webhooks/inboxops", envelope(), A_SECRET))[0] == 404
    assert (await post(client, "/webhooks/inboxops/default", envelope(), A_SECRET))[0] == 404
    assert (await post(client, "/webhooks/inboxops/brand-a", envelope(), A_SECRET))[0] == 202
