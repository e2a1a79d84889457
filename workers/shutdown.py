"""A worker's stop on SIGTERM: finish what it holds within the grace period, hand back the rest.

Reading stops at once. The events running finish, the flusher finishes the calls it is sending
and the scheduled-rules job its run, side by side, until the grace period ends; every partition
is given back as soon as nothing of it runs. What is still running then is cut short so that
nothing is lost: its stream entries stay pending for the partition's next owner, the outbox
claims go back (a call that was on its way is left as a lapsed claim: it may have gone out), the
scheduled run's lock is released with its run left `running`, so the next tick makes it up.
Then the connections close. Every step after the grace period is bounded, so the whole stop
ends within the grace period plus `MARGIN_S`, however Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Collection
from typing import Any

from ticketwire.stoptask import stop_task
from workers.app import stop_services
from workers.consumer import Consumer
from workers.outbox import Handback, Outbox
from workers.ownership import ranges

log = logging.getLogger("ticketwire.worker")

#: Longest the stop takes past the grace period: giving back, then closing the connections.
MARGIN_S = 5.0
#: A stop still going this long past grace + margin is ended by force (exit status 1).
WATCHDOG_S = 2.0


def holding(ctx: dict[str, Any], jobs: Collection[asyncio.Task[Any]]) -> str:
    """What the worker holds right now, for the line that starts its stop."""
    consumer: Consumer | None = ctx.get("consumer")
    outbox: Outbox | None = ctx.get("outbox")
    parts = "none"
    running = buffered = 0
    if consumer is not None:
        stats = consumer.stats
        parts = ranges(consumer.owned) or "none"
        running, buffered = stats["in_flight"], stats["buffered"]
    claimed = 0 if outbox is None else outbox.claimed
    return (
        f"partitions {parts}, {running} events running, {buffered} buffered, "
        f"{claimed} write-back tickets claimed, {len(jobs)} scheduled jobs running"
    )


def start_watchdog(after_s: float) -> threading.Timer:
    """End the process if its stop is still going after `after_s` (a stop must never hang)."""

    def overran() -> None:
        log.error("stop overran its grace period by %.0fs; exiting now", after_s)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(after_s, overran)
    timer.daemon = True
    timer.start()
    return timer


async def stop_worker(
    ctx: dict[str, Any],
    jobs: Collection[asyncio.Task[Any]],
    *,
    grace_s: float,
    started: float,
    signal_name: str,
) -> bool:
    """Stop gracefully from `started` (loop time) within `grace_s`; True if nothing was cut short.

    `jobs` are arq's job tasks still running (the scheduled-rules tick): they may finish within
    the grace period, then they are cancelled.
    """
    loop = asyncio.get_running_loop()
    deadline = started + grace_s
    log.info(
        "worker stopping on %s (grace %.0fs): holds %s", signal_name, grace_s, holding(ctx, jobs)
    )
    consumer: Consumer | None = ctx.get("consumer")
    outbox: Outbox | None = ctx.get("outbox")
    before = dict(consumer.stats) if consumer is not None else {}

    async def jobs_end() -> int:
        pending: set[asyncio.Task[Any]] = {t for t in jobs if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
        for task in pending:
            # The scheduler releases its lock and leaves the run to be made up.
            await stop_task(task, "the scheduled-rules job")
        return len(pending)

    remaining = max(0.0, deadline - loop.time())
    steps: list[Any] = [jobs_end()]
    if consumer is not None:
        steps.append(consumer.stop(drain_timeout=remaining))
    if outbox is not None:
        steps.append(outbox.stop(within=remaining))
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.error("stop: %s: %s", type(result).__name__, result)
    cut_jobs = results[0] if isinstance(results[0], int) else 0
    back = next((r for r in results if isinstance(r, Handback)), Handback())

    try:
        async with asyncio.timeout(max(0.1, deadline + MARGIN_S - loop.time())):
            await stop_services(ctx)
    except TimeoutError:
        log.warning("stop: closing connections took too long; left to the exit")

    after = consumer.stats if consumer is not None else {}

    def grew(name: str) -> int:
        return after.get(name, 0) - before.get(name, 0)

    clean = (
        cut_jobs == 0
        and (consumer is None or consumer.drained)
        and back.released == back.in_flight == 0
    )
    log.info(
        "worker stopped after %.1fs (%s): %d events finished, %d handed back pending "
        "(%d cut short); partitions given back %s; write-backs: %d tickets settled, %d handed "
        "back, %d left as maybe sent; %d scheduled jobs cut short",
        loop.time() - started,
        "all finished" if clean else "grace period ran out",
        grew("handled") + grew("failed"),
        grew("dropped") + grew("cancelled"),
        grew("cancelled"),
        ranges(consumer.released if consumer is not None else ()) or "none",
        back.settled,
        back.released,
        back.in_flight,
        cut_jobs,
    )
    return clean
