"""`GET /metrics`, and the timing of every webhook answer for it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ticketwire import metrics
from ticketwire.accountkey import DEFAULT
from ticketwire.metrics import Exposition

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_view(exposition: Exposition) -> Handler:
    """Answer Prometheus's scrape; a Redis that is down shows as `ticketwire_redis_up 0`."""

    async def handler(request: web.Request) -> web.Response:
        body = await exposition.render()
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    return handler


def observed(vendor: str, handler: Handler, account: str = DEFAULT) -> Handler:
    """`handler`, counting each answer to `account`'s route by outcome and status, and timing it."""

    async def timed(request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.delivery_answered(
                vendor, exc.status, None, time.perf_counter() - start, account
            )
            raise
        except Exception:
            # The guard answers 500; counted here so it shows beside the other answers.
            metrics.delivery_answered(vendor, 500, None, time.perf_counter() - start, account)
            raise
        body = response.body if isinstance(response, web.Response) else None
        metrics.delivery_answered(
            vendor,
            response.status,
            body if isinstance(body, bytes) else None,
            time.perf_counter() - start,
            account,
        )
        return response

    return timed
