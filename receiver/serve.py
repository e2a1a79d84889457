"""Serve the receiver until SIGTERM or SIGINT, then stop within the grace period.

aiohttp's `run_app` closes the listener the moment the signal comes (a load balancer still
routing here gets refused connections) and then waits up to its `shutdown_timeout` for handlers.
Here, from the signal on, new webhook requests (new connections or keep-alive ones) get 503
`shutting_down` with `Retry-After` and `Connection: close`, and `/readyz` answers 503, for
`TICKETWIRE_DRAIN_DELAY`; the requests in flight finish meanwhile and get their usual answer.
Only then is the listener closed. A request still waiting for its store when the grace period
is nearly over is answered 503 (its event may be stored all the same: the sender's retry is then
answered `duplicate`), never dropped, never given a 2xx for what was not stored.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from receiver.app import intake_key
from receiver.drain import drain_key
from ticketwire.config import Settings

log = logging.getLogger("ticketwire.receiver")

#: The end of the grace period kept to answer what is still waiting and close the connections.
ANSWER_S = 1.0


async def serve(app: web.Application, settings: Settings, host: str = "0.0.0.0") -> None:
    """Run `app` on `host`:`settings.port` until a stop signal, then stop gracefully."""
    grace = settings.shutdown_grace_s
    last = min(ANSWER_S, grace / 4)
    runner = web.AppRunner(
        app,
        access_log=None,
        # aiohttp counts it from the connection's start too: slow headers are cut off by it.
        keepalive_timeout=settings.idle_timeout_s,
        # What is left of the grace period once the webhook requests are answered.
        shutdown_timeout=last,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, settings.port).start()
        loop = asyncio.get_running_loop()
        signalled: asyncio.Future[str] = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _first, signalled, sig.name)
        name = await signalled
    except BaseException:
        await runner.cleanup()
        raise
    started = loop.time()
    drain = app[drain_key]
    drain.begin()
    log.info(
        "receiver stopping on %s (grace %.0fs, drain delay %.0fs): %d webhook requests in flight; "
        "new ones are answered 503",
        name,
        grace,
        settings.drain_delay_s,
        drain.in_flight,
    )
    cut = 0
    try:
        if settings.drain_delay_s:
            # Platforms route to a stopping instance for a moment: answer them, do not refuse.
            await asyncio.sleep(settings.drain_delay_s)
        async with asyncio.timeout_at(started + grace - last):
            await drain.idle()
    except TimeoutError:
        cut = app[intake_key].shut()
    finally:
        await runner.cleanup()
    log.info(
        "receiver stopped after %.1fs: %d webhook requests refused with 503 while stopping, %d "
        "still waiting for their store when the grace period ran out, answered 503",
        loop.time() - started,
        drain.refused,
        cut,
    )


def _first(signalled: asyncio.Future[str], name: str) -> None:
    if signalled.done():
        log.info("receiver: %s while stopping; the stop goes on", name)
    else:
        signalled.set_result(name)
