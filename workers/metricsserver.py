"""A worker's own `GET /metrics`, on `METRICS_PORT`: a tiny aiohttp server beside its services."""

from __future__ import annotations

import logging

from aiohttp import web

from ticketwire import metrics
from ticketwire.keys import Keys
from ticketwire.redisconn import connect
from ticketwire.secret import Secret

log = logging.getLogger("ticketwire.worker")


async def start_metrics_server(
    redis_url: str,
    keys: Keys,
    partitions: int,
    port: int,
    *,
    host: str = "0.0.0.0",
    sentinel_password: Secret | None = None,
) -> web.AppRunner:
    """Serve /metrics on `port` until the returned runner is cleaned up.

    The server has a Redis client of its own: it is up before the worker's services start and
    stays up while they wait out a Redis outage, reporting `ticketwire_redis_up 0` meanwhile.
    """
    redis = connect(redis_url, timeout=2.0, sentinel_password=sentinel_password)
    exposition = metrics.Exposition(redis, keys, partitions)

    async def view(request: web.Request) -> web.Response:
        body = await exposition.render()
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def close_redis(app: web.Application) -> None:
        await redis.aclose()

    app = web.Application()
    app.router.add_get("/metrics", view)
    app.on_cleanup.append(close_redis)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner
