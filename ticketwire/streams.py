"""Every partition stream deliveries are stored in: the default lane's and each named lane's.

A lane is one account's set of partition streams (`Keys.stream(p, lane)`), so a burst on one
account queues behind nothing of another's. The default accounts of every helpdesk share the
default lane (""), the streams `events:<p>` of earlier versions. Named lanes are listed in the
SET `Keys.lanes`, which the receiver adds to in the same script that stores the delivery.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from ticketwire.keys import Keys


def lane_names(members: Iterable[bytes | str]) -> list[str]:
    """The default lane first, then the named lanes of an SMEMBERS reply, sorted."""
    named = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
    named.discard("")
    return ["", *sorted(named)]


async def read_lanes(redis: Redis, keys: Keys) -> list[str]:
    """Every lane with streams: the default lane first, then the named ones."""
    return lane_names(await redis.smembers(keys.lanes))  # type: ignore[misc]


async def every_stream(redis: Redis, keys: Keys, partitions: int) -> list[tuple[int, str]]:
    """(partition, stream key) of every lane's partitions, lane by lane."""
    return [
        (p, keys.stream(p, lane))
        for lane in await read_lanes(redis, keys)
        for p in range(partitions)
    ]


async def handled(redis: Redis, keys: Keys, partitions: int) -> bool:
    """True when every stored delivery of every lane has been read and acknowledged."""
    for _, stream in await every_stream(redis, keys, partitions):
        if not await redis.exists(stream):
            continue
        for group in await redis.xinfo_groups(stream):
            if group["pending"] or (group.get("lag") or 0):
                return False
    return True
