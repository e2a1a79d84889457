"""The reminder timer: wakes on the simulated clock when the earliest reminder falls due."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from simulator.common.clock import Clock


class ReminderTimer:
    """One task sleeping until the next due reminder, then calling `fire` (which re-arms it).

    Requests fire due reminders on their own before they run, so the timer only makes the
    webhooks of a reminder go out when no request comes.
    """

    def __init__(
        self, clock: Clock, next_due: Callable[[], datetime | None], fire: Callable[[], object]
    ) -> None:
        self._clock = clock
        self._next_due = next_due
        self._fire = fire
        self._task: asyncio.Task[None] | None = None
        self._target: datetime | None = None

    def arm(self) -> None:
        """Sleep until the earliest reminder; a timer already due sooner is kept."""
        due = self._next_due()
        running = self._task is not None and not self._task.done()
        if running and due is not None and self._target is not None and self._target <= due:
            return
        self.cancel()
        if due is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No event loop (the Python API used synchronously): requests still fire reminders.
            return
        self._target = due
        self._task = loop.create_task(self._wait(due), name="inboxops-reminders")

    async def _wait(self, due: datetime) -> None:
        await self._clock.sleep(max(0.0, (due - self._clock.now()).total_seconds()))
        self._task = None
        self._fire()

    def cancel(self) -> None:
        """Drop the pending wake-up (the reminders stay set)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self._target = None

    async def close(self) -> None:
        """Stop the timer."""
        task = self._task
        self.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
