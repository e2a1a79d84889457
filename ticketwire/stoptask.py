"""Stop a background task for certain, even when a cancellation is lost on the way.

On Python 3.11, `asyncio.wait_for` returns its result instead of raising `CancelledError` when
the cancellation lands just as the awaited call completes (CPython gh-86296, fixed in 3.12).
redis-py sends every command through it, so a loop that polls Redis can lose the one
`cancel()` meant to stop it and run on for ever, and whoever awaits it waits for ever: more
likely the busier the machine. `stop_task` cancels again until the task has ended, and says
what it waits for when that takes long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

log = logging.getLogger("ticketwire")

#: How long a cancelled task gets before it is cancelled again.
RECANCEL_S = 0.5
#: After this long, a task still not ended is named in the log (and again as often).
SLOW_STOP_S = 3.0


async def stop_task(task: asyncio.Task[Any], what: str) -> None:
    """Cancel `task` (again, if it swallowed the cancellation) and wait until it has ended."""
    started = time.monotonic()
    said = started
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_S)
        now = time.monotonic()
        if not task.done() and now - said >= SLOW_STOP_S:
            log.warning("stopping: still waiting for %s after %.0fs", what, now - started)
            said = now
    with contextlib.suppress(asyncio.CancelledError):
        await task
