"""`GET /healthz` (the process is alive) and `GET /readyz` (Redis answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError


async def healthz(request: web.Request) -> web.Response:
    """Answer 200 while the process serves requests."""
    return web.json_response({"status": "ok"})


def readyz(
    redis: Redis, *, timeout: float = 1.0
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Build a handler answering 200 when Redis answers PING in time, else 503."""

    async def handler(request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(redis.ping(), timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            return web.json_response(
                {"status": "unavailable", "redis": f"{type(exc).__name__}: {exc}"}, status=503
            )
        return web.json_response({"status": "ready", "redis": "ok"})

    return handler
