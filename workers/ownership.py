"""Which partitions this worker holds: leases taken, renewed, lost and given back, and their state.

A lease covers its partition in every lane (`ticketwire.streams`): a held partition is read in
each lane's stream. Lanes that appear in Redis while a partition is held are added to it, their
pending entries taken over before anything new is read, as for a partition just taken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence

from redis.asyncio import Redis

from ticketwire import metrics
from ticketwire.keys import Keys
from ticketwire.streams import lane_names
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
    #: Lane → this partition's stream in it; the default lane ("") first.
    streams: dict[str, str]
    #: Monotonic time until which the lease is surely ours (counted from when renewal was sent).
    valid_until: float
    state: PartState = PartState.CLAIMING
    #: Stream → XAUTOCLAIM cursor, for the streams whose pending entries are still being taken
    #: over; empty once done.
    cursors: dict[str, str] = dataclasses.field(default_factory=dict)
    claimed: int = 0
    #: Claiming again after a failed read, to pick up entries the lost reply carried.
    reread: bool = False
    trimmed_at: float = float("-inf")

    def add_lanes(self, streams: dict[str, str]) -> None:
        """Read these lanes' streams too, after taking over their pending entries."""
        for lane, stream in streams.items():
            if lane not in self.streams:
                self.streams[lane] = stream
                self.cursors[stream] = "0-0"
        if self.cursors and self.state is PartState.READING:
            self.state = PartState.CLAIMING

    def claim_all(self) -> None:
        """Take over every stream's pending entries again, before anything new is read."""
        self.cursors = dict.fromkeys(self.streams.values(), "0-0")


class Ownership:
    """Hold this worker's share of the partitions: heartbeat, take, renew, lose and give back.

    The reader of the partitions is told through callbacks: `lost` (a partition is no longer
    surely ours: forget what is buffered of it), `drained` (nothing of it is buffered or being
    read, so it may be given back), `before_release` (acknowledge what is done first),
    `acquired` (streams about to be read: partitions just taken, lanes just found) and `changed`
    (the set of streams to read changed). `lanes` are the named lanes known at start; every lane
    listed in Redis is read as well, once a tick finds it.
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
        acquired: Callable[[Sequence[str]], Awaitable[None]],
        changed: Callable[[], None],
        lanes: Iterable[str] = (),
    ) -> None:
        self._id = worker_id
        self._partitions = partitions
        self._ttl = ttl
        self._timeout_s = call_timeout_s
        self._log = log
        self._leases = Leases(redis, keys, worker_id, ttl_ms=max(1, int(ttl * 1000)))
        self._keys = keys
        #: Every lane read, the default lane ("") first.
        self.lanes = lane_names(lanes)
        self._lost = lost
        self._drained = drained
        self._before_release = before_release
        self._acquired = acquired
        self._changed = changed
        #: Partitions held, by number.
        self.parts: dict[int, Part] = {}
        #: Workers alive at the last heartbeat, this one included.
        self.live = 0
        #: Partitions given back so far, in order.
        self.given_back: list[int] = []

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

    async def tick(self, *, acquire: bool, leaving: bool = False) -> bool:
        """One ownership round: heartbeat, renew, rebalance, give back, take (with `acquire`).

        `leaving`: this worker stops; it leaves the live set (so the others count it out and
        want its partitions now) and gives back every partition once nothing of it runs.
        Returns True when a read in flight should be woken to see the new set of partitions.
        """
        self.expire(time.monotonic())
        held = list(self.parts.values())
        sent = time.monotonic()
        async with asyncio.timeout(self._timeout_s):
            live, renewed, lanes = await self._leases.beat(
                [p.number for p in held], alive=not leaving
            )
        for part, ok in zip(held, renewed, strict=True):
            if not self.holds(part):
                continue
            if ok:
                part.valid_until = sent + self._ttl
            else:
                self.drop(part, "its lease expired or another worker holds it")
        self.live = len(set(live) | {self._id})
        unblock = await self._add_lanes(lanes)
        desired = frozenset() if leaving else share(self._id, live, self._partitions)
        for part in self.parts.values():
            if part.number not in desired and part.state is not PartState.RELEASING:
                part.state = PartState.RELEASING
                unblock = True
            elif part.number in desired and part.state is PartState.RELEASING:
                part.state = PartState.CLAIMING if part.cursors else PartState.READING
                self._changed()
        await self._release_drained()
        if acquire:
            unblock = await self._acquire(desired) or unblock
        return unblock

    def streams(self, p: int, lanes: Iterable[str] | None = None) -> dict[str, str]:
        """Lane → stream of partition `p`, in `lanes` (default: every lane read)."""
        return {
            lane: self._keys.stream(p, lane) for lane in (self.lanes if lanes is None else lanes)
        }

    async def _add_lanes(self, listed: Sequence[str]) -> bool:
        new = [lane for lane in listed if lane not in self.lanes]
        if not new:
            return False
        # Groups first: a failure leaves the lanes unknown, and the next tick tries again.
        held = list(self.parts.values())
        await self._acquired([s for part in held for s in self.streams(part.number, new).values()])
        self.lanes += new
        for part in held:
            part.add_lanes(self.streams(part.number, new))
        self._log.info("reading new lanes %s", ", ".join(new))
        self._changed()
        return True

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
            self.given_back += released
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
        taken = [Part(p, self.streams(p), valid_until=sent + self._ttl) for p in got]
        for part in taken:
            part.claim_all()
            self.parts[part.number] = part
        self._changed()
        metrics.lease_moved("acquired", len(got))
        self._log.info("acquired partitions %s", ranges(got))
        await self._acquired([s for part in taken for s in part.streams.values()])
        return True

    async def leave(self, within: float | None = None) -> list[int]:
        """Give back every lease held and leave the live set (at stop); return what was given.

        Both take one round trip, together at most `within` seconds (default: a call's limit).
        """
        released = sorted(self.parts)
        try:
            async with asyncio.timeout(within or self._timeout_s):
                await self._leases.release_all(released, deregister=True)
        except TRANSIENT as exc:
            self._log.warning(
                "stop: could not release partitions %s (%r); they free up within %.1fs",
                ranges(released) or "none",
                exc,
                self._ttl,
            )
            released = []
        self.parts.clear()
        self.given_back += released
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
