"""A receiver's stop: from SIGTERM on, new webhook requests get 503 while those in flight finish."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from receiver.answers import error

log = logging.getLogger("ticketwire.receiver")

#: Where deliveries arrive; every other route (health, metrics, console) keeps answering.
WEBHOOKS = "/webhooks/"


class Drain:
    """Whether the receiver is stopping, and how many webhook requests it is still handling."""

    def __init__(self) -> None:
        self.stopping = False
        self.in_flight = 0
        #: New webhook requests refused since the stop began.
        self.refused = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        """Refuse every webhook request from now on; those in flight go on."""
        self.stopping = True

    async def idle(self) -> None:
        """Wait until no webhook request is being handled."""
        await self._idle.wait()

    def enter(self) -> None:
        """A webhook request starts being handled."""
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        """A webhook request has its answer."""
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()


drain_key = web.AppKey("drain", Drain)


@web.middleware
async def draining(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer webhook requests 503 `shutting_down` once the stop began; count those in flight."""
    drain = request.app[drain_key]
    if not request.path.startswith(WEBHOOKS):
        return await handler(request)
    if drain.stopping:
        drain.refused += 1
        refused = error(
            503,
            "shutting_down",
            "this receiver is stopping; the event was not stored, retry later",
        )
        # The sender's retry goes to a new connection, so to an instance that is not stopping.
        refused.force_close()
        return refused
    drain.enter()
    try:
        response = await handler(request)
    finally:
        drain.leave()
    if drain.stopping and not response.prepared:
        response.force_close()
    return response
