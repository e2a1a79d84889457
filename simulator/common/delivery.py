"""Ordered webhook delivery shared by every simulator: per-ticket lanes, faults, retries, idling.

Each simulator's emitter builds and signs its own deliveries and says how to attempt one and how
long to wait before retrying; this base decides when each delivery goes out: one in flight per
(endpoint, ticket) so receivers see a ticket's events in order, a reorder fault that holds and
shuffles a group, duplicates queued like any other delivery, and `wait_idle` for tests.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import aiohttp


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


class Queued(Protocol):
    """What the scheduler reads of a delivery."""

    attempts: int

    @property
    def endpoint(self) -> _Identified: ...

    @property
    def ticket_id(self) -> str: ...


D = TypeVar("D", bound=Queued)


@dataclass
class DeliveryRun(Generic[D]):
    """Delivery state of one simulator generation; `reset()` drops it and starts a new one."""

    lanes: dict[tuple[str, str], deque[D]] = field(default_factory=dict)
    held: dict[str, list[D]] = field(default_factory=dict)
    flush_timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    pending: int = 0


class OrderedDelivery(ABC, Generic[D]):
    """Base of the simulators' webhook emitters: schedules deliveries, retries them, idles."""

    _run: DeliveryRun[D]
    _faults: Any
    _clock: Any
    _flush_after: float
    _idle: asyncio.Event | None
    _session: aiohttp.ClientSession | None
    log: Any
    endpoints: dict[str, Any]

    @property
    @abstractmethod
    def max_attempts(self) -> int:
        """Attempts per delivery, the first included."""

    @abstractmethod
    def _retry_delay(self, attempts: int) -> float:
        """Simulated seconds to wait after `attempts` failed attempts."""

    @abstractmethod
    async def _attempt(self, d: D) -> bool:
        """Send once; True on a 2xx."""

    def _enqueue(self, d: D) -> None:
        run = self._run
        run.pending += 1
        self._idle_event().clear()
        window = self._faults.webhooks.reorder_window
        if window >= 2:
            group = run.held.setdefault(d.endpoint.id, [])
            group.append(d)
            if len(group) >= window:
                self._flush(run, d.endpoint.id)
            elif d.endpoint.id not in run.flush_timers:
                loop = asyncio.get_running_loop()
                run.flush_timers[d.endpoint.id] = loop.call_later(
                    self._flush_after, self._flush, run, d.endpoint.id
                )
            return
        key = (d.endpoint.id, d.ticket_id)
        lane = run.lanes.get(key)
        if lane is not None:
            lane.append(d)
            return
        run.lanes[key] = deque([d])
        self._spawn(run, self._drain_lane(run, key))

    def _flush(self, run: DeliveryRun[D], endpoint_id: str) -> None:
        timer = run.flush_timers.pop(endpoint_id, None)
        if timer is not None:
            timer.cancel()
        group = run.held.pop(endpoint_id, [])
        if not group:
            return
        order = list(group)
        self._faults.rng.shuffle(order)
        if len(order) > 1 and order == group:
            # A shuffle may give back the same order; a reorder fault must reorder.
            order = order[1:] + order[:1]
        self._spawn(run, self._send_group(run, order))

    def _spawn(self, run: DeliveryRun[D], coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        run.tasks.add(task)
        task.add_done_callback(run.tasks.discard)

    async def _drain_lane(self, run: DeliveryRun[D], key: tuple[str, str]) -> None:
        # One delivery in flight per (endpoint, ticket): the next event of a ticket waits until
        # the previous one succeeded or gave up, so receivers see each ticket's events in order.
        lane = run.lanes[key]
        try:
            while lane:
                d = lane[0]
                try:
                    await self._deliver(d)
                finally:
                    lane.popleft()
                    self._done(run)
        finally:
            if run.lanes.get(key) is lane:
                del run.lanes[key]

    async def _send_group(self, run: DeliveryRun[D], group: list[D]) -> None:
        # First attempts go out one after another in the shuffled order, so the receiver sees
        # that order; failures then retry on their own schedule.
        for d in group:
            if await self._attempt(d):
                self._done(run)
            else:
                self._spawn(run, self._retry_then_done(run, d))

    async def _retry_then_done(self, run: DeliveryRun[D], d: D) -> None:
        try:
            await self._deliver(d)
        finally:
            self._done(run)

    def _done(self, run: DeliveryRun[D]) -> None:
        run.pending -= 1
        if run is self._run and run.pending <= 0:
            self._idle_event().set()

    async def _deliver(self, d: D) -> None:
        """Attempt until a 2xx or the last attempt, waiting the vendor's delay in between."""
        while d.attempts < self.max_attempts:
            if d.attempts:
                await self._clock.sleep(self._retry_delay(d.attempts))
            if await self._attempt(d):
                return

    def _idle_event(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    # ------------------------------------------------------------- lifecycle

    @property
    def pending(self) -> int:
        """Deliveries queued, held, in flight or waiting to retry."""
        return self._run.pending

    async def wait_idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once nothing is pending; raise TimeoutError after `timeout` real seconds."""
        if self._run.pending <= 0:
            return
        try:
            await asyncio.wait_for(self._idle_event().wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self._run.pending} webhook deliveries still pending after {timeout}s"
            ) from None

    def reset(self, *, keep_endpoints: bool) -> None:
        """Cancel everything pending, clear the log, and optionally forget the endpoints."""
        self._cancel_all()
        self.log.clear()
        if not keep_endpoints:
            self.endpoints.clear()

    def _cancel_all(self) -> list[asyncio.Task[None]]:
        old = self._run
        for timer in old.flush_timers.values():
            timer.cancel()
        tasks = list(old.tasks)
        for task in tasks:
            task.cancel()
        self._run = DeliveryRun()
        if self._idle is not None:
            self._idle.set()
        return tasks

    async def close(self) -> None:
        """Cancel pending deliveries and close the HTTP session; the log is kept."""
        tasks = self._cancel_all()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
