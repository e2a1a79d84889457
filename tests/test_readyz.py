"""`/readyz` reports the lag against TICKETWIRE_READY_MAX_LAG; METRICS_PORT and the threshold parse."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from receiver.health import readyz
from ticketwire.config import Settings
from ticketwire.errors import ConfigError
from ticketwire.keys import GROUP, Keys


async def _server_ms(redis: Redis) -> int:
    secs, micros = await redis.time()
    return int(secs) * 1000 + int(micros) // 1000


async def _client(aiohttp_client: Any, redis: Redis, keys: Keys, max_lag_s: float) -> Any:
    app = web.Application()
    app.router.add_get("/readyz", readyz(redis, keys=keys, partitions=2, max_lag_s=max_lag_s))
    return await aiohttp_client(app)


async def test_ready_with_the_figures(aiohttp_client: Any, redis: Redis, keys: Keys) -> None:
    client = await _client(aiohttp_client, redis, keys, 60.0)
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body == {
        "status": "ready",
        "redis": "ok",
        "lag_s": 0,
        "max_lag_s": 60.0,
        "queue_depth": 0,
        "outbox_due": 0,
        "dead_letters": 0,
    }


async def test_behind_is_503_with_retry_after_and_the_figures(
    aiohttp_client: Any, redis: Redis, keys: Keys
) -> None:
    now = await _server_ms(redis)
    # Two events stored 90 s ago that no worker has handled.
    await redis.xadd(keys.stream(1), {"m": "x"}, id=f"{now - 90_000}-0")
    await redis.xadd(keys.stream(1), {"m": "x"}, id=f"{now - 90_000}-1")
    client = await _client(aiohttp_client, redis, keys, 60.0)
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "behind"
    assert body["queue_depth"] == 2 and 90 <= body["lag_s"] < 100
    assert 5 <= int(resp.headers["Retry-After"]) <= 300

    # Handled (read and acknowledged): ready again.
    await redis.xgroup_create(keys.stream(1), GROUP, id="0")
    got = await redis.xreadgroup(GROUP, "w", {keys.stream(1): ">"})
    await redis.xack(keys.stream(1), GROUP, *(i for i, _ in got[0][1]))
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["lag_s"] == 0


async def test_a_threshold_of_zero_never_turns_readyz_to_503_for_lag(
    aiohttp_client: Any, redis: Redis, keys: Keys
) -> None:
    now = await _server_ms(redis)
    await redis.xadd(keys.stream(0), {"m": "x"}, id=f"{now - 3_600_000}-0")
    client = await _client(aiohttp_client, redis, keys, 0)
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["lag_s"] >= 3600


def test_the_settings_parse() -> None:
    base = {"REDIS_URL": "redis://localhost", "INBOXOPS_WEBHOOK_SECRETS": "s"}
    s = Settings.from_env(base, role="web")
    assert (s.metrics_port, s.ready_max_lag_s) == (None, 300.0)
    s = Settings.from_env(
        {**base, "METRICS_PORT": "9100", "TICKETWIRE_READY_MAX_LAG": "90s"}, role="web"
    )
    assert (s.metrics_port, s.ready_max_lag_s) == (9100, 90.0)
    assert (
        Settings.from_env({**base, "TICKETWIRE_READY_MAX_LAG": "0"}, role="web").ready_max_lag_s
        == 0
    )
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        Settings.from_env({**base, "METRICS_PORT": "99999"}, role="web")
    with pytest.raises(ConfigError, match="TICKETWIRE_READY_MAX_LAG"):
        Settings.from_env({**base, "TICKETWIRE_READY_MAX_LAG": "soon"}, role="web")
