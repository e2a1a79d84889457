"""Run a command's work on its Redis, closing the connection after and telling Redis trouble."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cli.redisurl import safe_url
from ticketwire.redisconn import connect
from ticketwire.secret import Secret


def run_on_redis(
    url: str,
    work: Callable[[Redis], Awaitable[int]],
    fail: Callable[[str], int],
    *,
    sentinel_password: Secret | None = None,
) -> int:
    """`work`'s exit status; when Redis cannot be reached or answers an error, `fail`'s."""

    async def go() -> int:
        redis = connect(url, sentinel_password=sentinel_password)
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        return fail(
            f"cannot reach Redis at {safe_url(url)} ({exc}); check REDIS_URL and that Redis is "
            "running and reachable from here"
        )
    except RedisError as exc:
        return fail(f"Redis at {safe_url(url)} answered with an error: {exc}")
