"""Which partitions this worker holds: leases taken, renewed, lost and given back, and their state."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence

from redis.asyncio import Redis

from ticketwire import metrics
from ticketwire.keys import Keys
from workers.outage import TRANSIENT
from workers.partitions import Leases, share


class PartState(enum.Enum):
    """Where a held partition is: taking over pending entries, reading, or being given back."""

    CLAIMING = "claiming"  # taking over pending entries; nothing new is read yet
    READING = "reading"
    RELEASING = "releasing"  # owned elsewhere now: finish what is buffered, then give it back


@dataclasses.dataclass(eq=False)
class Part:
    """A partition whose lease this worker holds, and how far its reading has got."""

    number: int
    stream: str
    #: Monotonic time until which the lease is surely ours (counted from when renewal was sent).
    valid_until: float
    state: PartState = PartState.CLAIMING
    #: XAUTOCLAIM cursor while pending entries are being taken over; None once done.
    cursor: str | None = "0-0"
    claimed: int = 0
    #: Claiming again after a failed read, to pick up entries the lost reply carried.
    reread: bool = False
    trimmed_at: float = float("-inf")


class Ownership:
    """Hold this worker's share of the partitions: heartbeat, take, renew, lose and give back.

    The reader of the partitions is told through callbacks: `lost` (a partition is no longer
    surely ours: forget what is buffered of it), `drained` (nothing of it is buffered or being
    read, so it may be given back), `before_release` (acknowledge what is done first),
    `acquired` (partitions just taken) and `changed` (the set of partitions to read changed).
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        worker_id: str,
        *,
        partitions: int,
        ttl: float,
        call_timeout_s: float,
        log: logging.Logger,
        lost: Callable[[int, str], None],
        drained: Callable[[int], bool],
        before_release: Callable[[], Awaitable[None]],
        acquired: Callable[[Sequence[int]], Awaitable[None]],
        changed: Callable[[], None],
    ) -> None:
        self._id = worker_id
        self._partitions = partitions
        self._ttl = ttl
        self._timeout_s = call_timeout_s
        self._log = log
        self._leases = Leases(redis, keys, worker_id, ttl_ms=max(1, int(ttl * 1000)))
        self._streams = [keys.stream(p) for p in range(partitions)]
        self._lost = lost
        self._drained = drained
        self._before_release = before_release
        self._acquired = acquired
        self._changed = changed
        #: Partitions held, by number.
        self.parts: dict[int, Part] = {}
        #: Workers alive at the last heartbeat, this one included.
        self.live = 0

    def holds(self, part: Part) -> bool:
        """True while `part` is still the record of a partition held (not lost or retaken)."""
        return self.parts.get(part.number) is part

    def expire(self, now: float) -> None:
        """Drop the partitions whose lease may have run out by `now` (monotonic)."""
        for part in list(self.parts.values()):
            if now >= part.valid_until:
                self.drop(part, "its lease was not renewed in time")

    def drop(self, part: Part, why: str) -> None:
        """Stop holding a partition whose lease is no longer surely ours."""
        if not self.holds(part):
            return
        del self.parts[part.number]
        metrics.lease_moved("lost")
        self._lost(part.number, why)

    async def tick(self, *, acquire: bool) -> bool:
        """One ownership round: heartbeat, renew, rebalance, give back, take (with `acquire`).

        Returns True when a read in flight should be woken to see the new set of partitions.
        """
        self.expire(time.monotonic())
        held = list(self.parts.values())
        sent = time.monotonic()
        async with asyncio.timeout(self._timeout_s):
            live, renewed = await self._leases.beat([p.number for p in held])
        for part, ok in zip(held, renewed, strict=True):
            if not self.holds(part):
                continue
            if ok:
                part.valid_until = sent + self._ttl
            else:
                self.drop(part, "its lease expired or another worker holds it")
        self.live = len(set(live) | {self._id})
        desired = share(self._id, live, self._partitions)
        unblock = False
        for part in self.parts.values():
            if part.number not in desired and part.state is not PartState.RELEASING:
                part.state = PartState.RELEASING
                unblock = True
            elif part.number in desired and part.state is PartState.RELEASING:
                part.state = PartState.READING if part.cursor is None else PartState.CLAIMING
                self._changed()
        await self._release_drained()
        if acquire:
            unblock = await self._acquire(desired) or unblock
        return unblock

    async def _release_drained(self) -> None:
        released = []
        for part in list(self.parts.values()):
            if part.state is not PartState.RELEASING or not self._drained(part.number):
                continue
            await self._before_release()
            if not self.holds(part) or not self._drained(part.number):
                continue
            if part.state is not PartState.RELEASING:
                continue
            async with asyncio.timeout(self._timeout_s):
                await self._leases.release(part.number)
            del self.parts[part.number]
            released.append(part.number)
        if released:
            metrics.lease_moved("released", len(released))
            self._log.info("released partitions %s to other workers", ranges(released))

    async def _acquire(self, desired: Collection[int]) -> bool:
        wanted = [p for p in desired if p not in self.parts]
        if not wanted:
            return False
        sent = time.monotonic()
        async with asyncio.timeout(self._timeout_s):
            got = await self._leases.acquire(wanted)
        if not got:
            return False
        for p in got:
            self.parts[p] = Part(p, self._streams[p], valid_until=sent + self._ttl)
        self._changed()
        metrics.lease_moved("acquired", len(got))
        self._log.info("acquired partitions %s", ranges(got))
        await self._acquired(got)
        return True

    async def leave(self) -> list[int]:
        """Give back every lease held and leave the live set (at stop); return what was given."""
        released = sorted(self.parts)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._leases.release_all(released)
        except TRANSIENT as exc:
            self._log.warning(
                "stop: could not release partitions (%s); they free up in %.1fs", exc, self._ttl
            )
            released = []
        self.parts.clear()
        with contextlib.suppress(*TRANSIENT):
            async with asyncio.timeout(self._timeout_s):
                await self._leases.deregister()
        return released


def ranges(numbers: Iterable[int]) -> str:
    """Render partitions compactly: [0, 1, 2, 5] -> '0-2,5'."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
