"""`GET /healthz` (the process is alive) and `GET /readyz` (Redis answers, workers keep up)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from receiver.answers import RETRY_AFTER_S
from ticketwire.backlog import read_backlog
from ticketwire.keys import Keys


async def healthz(request: web.Request) -> web.Response:
    """Answer 200 while the process serves requests."""
    return web.json_response({"status": "ok"})


def readyz(
    redis: Redis,
    *,
    timeout: float = 1.0,
    keys: Keys | None = None,
    partitions: int = 16,
    max_lag_s: float = 300.0,
    stopping: Callable[[], bool] = lambda: False,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Build a handler answering 200 when Redis answers in time, else 503.

    With `keys`, it also reads the backlog and answers 503 when the oldest unhandled event has
    waited longer than `max_lag_s` (0: never), with the figures, so an operator sees how far
    behind it is. While `stopping()`, it answers 503 so a load balancer takes this one out.
    """

    async def handler(request: web.Request) -> web.Response:
        if stopping():
            return web.json_response(
                {"status": "stopping"}, status=503, headers={"Retry-After": str(RETRY_AFTER_S)}
            )
        try:
            async with asyncio.timeout(timeout):
                if keys is None:
                    await redis.ping()
                    return web.json_response({"status": "ready", "redis": "ok"})
                backlog = await read_backlog(redis, keys, partitions)
        except (RedisError, OSError, TimeoutError) as exc:
            return web.json_response(
                {"status": "unavailable", "redis": f"{type(exc).__name__}: {exc}"},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        figures = {
            "redis": "ok",
            "lag_s": round(backlog.oldest_unhandled_s, 3),
            "max_lag_s": max_lag_s,
            "queue_depth": backlog.queue_depth,
            "outbox_due": backlog.outbox_due,
            "dead_letters": backlog.dead_letters,
        }
        if max_lag_s and backlog.oldest_unhandled_s > max_lag_s:
            # Try again once the excess could be worked off, within reason.
            wait = min(300, max(RETRY_AFTER_S, math.ceil(backlog.oldest_unhandled_s - max_lag_s)))
            return web.json_response(
                {"status": "behind", **figures}, status=503, headers={"Retry-After": str(wait)}
            )
        return web.json_response({"status": "ready", **figures})

    return handler
