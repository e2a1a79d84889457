"""Per-ticket lanes: one key's items run one at a time in arrival order, keys run concurrently."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ticketwire.stoptask import stop_task

T = TypeVar("T")


class _Lane(Generic[T]):
    __slots__ = ("busy", "items", "key")

    def __init__(self, key: str, item: T) -> None:
        self.key = key
        self.items: deque[T] = deque((item,))
        #: True while `items[0]` is being run; a busy head is never purged.
        self.busy = False


class Lanes(Generic[T]):
    """A FIFO per key, drained by at most `concurrency` tasks; one key never runs twice at once.

    `run` must not raise: it owns its item's outcome. A task that finishes a lane moves straight
    on to the next waiting lane, so a steady stream of work creates few tasks.
    """

    def __init__(self, run: Callable[[T], Awaitable[None]], *, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._run = run
        self._concurrency = concurrency
        self._lanes: dict[str, _Lane[T]] = {}
        self._ready: deque[_Lane[T]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = 0

    @property
    def busy(self) -> int:
        """Items being run right now."""
        return self._busy

    @property
    def tasks(self) -> int:
        """Lane tasks alive (at most `concurrency`)."""
        return len(self._tasks)

    def push(self, key: str, item: T) -> None:
        """Queue `item` behind everything already queued or running for `key`."""
        lane = self._lanes.get(key)
        if lane is not None:
            lane.items.append(item)
            return
        lane = _Lane(key, item)
        self._lanes[key] = lane
        if len(self._tasks) < self._concurrency:
            task = asyncio.create_task(self._drain(lane), name=f"lane:{key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._ready.append(lane)

    def purge(self, drop: Callable[[T], bool]) -> list[T]:
        """Remove queued items `drop` picks (running ones stay); return them in queue order."""
        removed: list[T] = []
        for key, lane in list(self._lanes.items()):
            head = [lane.items.popleft()] if lane.busy else []
            kept = head
            for item in lane.items:
                (removed if drop(item) else kept).append(item)
            lane.items = deque(kept)
            if not kept:
                # Idle and empty: `_next` and `_drain` skip a lane that is no longer registered.
                del self._lanes[key]
        return removed

    async def wait(self) -> None:
        """Wait until no lane task is left (running items finished, nothing queued)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def cancel(self) -> None:
        """Cancel every running item and wait for the lane tasks to end."""
        # Cancelled again if one is lost on the way (see `ticketwire.stoptask`).
        await asyncio.gather(*(stop_task(t, f"the handler {t.get_name()}") for t in self._tasks))

    def _next(self) -> _Lane[T] | None:
        while self._ready:
            lane = self._ready.popleft()
            if lane.items:
                return lane
        return None

    async def _drain(self, first: _Lane[T]) -> None:
        lane: _Lane[T] | None = first
        while lane is not None:
            items = lane.items
            while items:
                lane.busy = True
                self._busy += 1
                try:
                    await self._run(items[0])
                finally:
                    self._busy -= 1
                    lane.busy = False
                    # `purge` may have swapped the deque; the head is still first in the new one.
                    items = lane.items
                    items.popleft()
            if self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]
            lane = self._next()
