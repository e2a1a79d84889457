"""Partition ownership across workers: who should own what, and the leases that say who does.

Every live worker heartbeats into one ZSET. Each worker computes the same assignment from the same
set of live ids (rendezvous hashing with a load bound), so they agree without talking to each other.
A lease key per partition (`SET NX PX`) makes ownership exclusive while views of the live set
briefly differ; leases are renewed and released only by their holder (compare-and-set scripts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Collection, Iterable, Sequence
from typing import cast

from redis.asyncio import Redis

from ticketwire.keys import Keys
from ticketwire.streams import lane_names

# Heartbeat, prune the dead, list the living: one round trip, timed by the server's clock so
# workers with skewed clocks still agree on who is alive.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def weight(partition: int, worker_id: str) -> int:
    """Rendezvous weight of a worker for a partition: a stable 64-bit hash of the pair."""
    digest = hashlib.blake2b(f"{partition}:{worker_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(workers: Iterable[str], partitions: int) -> dict[int, str]:
    """Owner of each partition: rendezvous hashing, bounded so shares differ by at most one.

    Plain rendezvous hashing spreads 16 partitions over 2 workers as unevenly as 12/4. Here the
    (partition, worker) pairs are taken strongest weight first and a pair is skipped once its
    worker has its share, so most partitions still go to their top choice (few move when a worker
    joins or leaves) while every worker gets floor or ceil of partitions / workers. Every worker
    that sees the same live set computes the same answer.
    """
    live = sorted(set(workers))
    if not live:
        return {}
    low, extra = divmod(partitions, len(live))
    pairs = sorted(((weight(p, w), w, p) for p in range(partitions) for w in live), reverse=True)
    load = dict.fromkeys(live, 0)
    full = 0  # workers that took one above `low`; at most `extra` may
    owners: dict[int, str] = {}
    for _, w, p in pairs:
        if p in owners:
            continue
        if load[w] < low:
            pass
        elif load[w] == low and full < extra:
            full += 1
        else:
            continue
        owners[p] = w
        load[w] += 1
        if len(owners) == partitions:
            break
    return owners


def share(worker_id: str, workers: Iterable[str], partitions: int) -> frozenset[int]:
    """The partitions `worker_id` should own when `workers` are alive (itself always counted)."""
    owners = assign({*workers, worker_id}, partitions)
    return frozenset(p for p, w in owners.items() if w == worker_id)


class Leases:
    """The Redis side of ownership for one worker: heartbeat, acquire, renew, release."""

    def __init__(self, redis: Redis, keys: Keys, worker_id: str, *, ttl_ms: int) -> None:
        self._redis = redis
        self._keys = keys
        self._id = worker_id
        self._ttl_ms = ttl_ms

    async def beat(
        self, held: Sequence[int], *, alive: bool = True
    ) -> tuple[list[str], list[bool], list[str]]:
        """Heartbeat (or, not `alive`, leave the live set) and renew `held` leases: one round trip.

        Returns the live workers, the renewals, and every lane with streams (default first).
        """
        pipe = self._redis.pipeline(transaction=False)
        if alive:
            pipe.eval(_HEARTBEAT, 1, self._keys.workers, self._id, str(self._ttl_ms))
        else:
            pipe.zrem(self._keys.workers, self._id)
            pipe.zrange(self._keys.workers, 0, -1)
        for p in held:
            pipe.eval(_RENEW, 1, self._keys.lease(p), self._id, str(self._ttl_ms))
        pipe.smembers(self._keys.lanes)
        replies = await pipe.execute()
        if not alive:
            replies = replies[1:]
        live = [w.decode() if isinstance(w, bytes) else str(w) for w in replies[0]]
        return live, [bool(r) for r in replies[1:-1]], lane_names(replies[-1])

    async def acquire(self, wanted: Collection[int]) -> list[int]:
        """Take the leases of `wanted` that nobody holds; return the partitions now held."""
        if not wanted:
            return []
        order = sorted(wanted)
        pipe = self._redis.pipeline(transaction=False)
        for p in order:
            pipe.set(self._keys.lease(p), self._id, nx=True, px=self._ttl_ms)
        replies = await pipe.execute()
        return [p for p, ok in zip(order, replies, strict=True) if ok]

    async def release(self, partition: int) -> bool:
        """Give a lease back so another worker can take it at once; False if it was not ours."""
        reply = self._redis.eval(_RELEASE, 1, self._keys.lease(partition), self._id)
        released = await cast("Awaitable[int]", reply)
        return bool(released)

    async def release_all(self, partitions: Collection[int], *, deregister: bool = False) -> None:
        """Give back several leases in one round trip (those still ours); `deregister` too."""
        if not partitions and not deregister:
            return
        pipe = self._redis.pipeline(transaction=False)
        for p in partitions:
            pipe.eval(_RELEASE, 1, self._keys.lease(p), self._id)
        if deregister:
            pipe.zrem(self._keys.workers, self._id)
        await pipe.execute()

    async def deregister(self) -> None:
        """Leave the live set, so the others stop counting this worker at their next tick."""
        await self._redis.zrem(self._keys.workers, self._id)

    async def holder(self, partition: int) -> str | None:
        """Who holds a partition's lease right now (None when free)."""
        value = await self._redis.get(self._keys.lease(partition))
        return value.decode() if isinstance(value, bytes) else value
