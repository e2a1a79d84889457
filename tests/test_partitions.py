"""Partition ownership: the shared assignment every worker computes, and the Redis leases."""

from __future__ import annotations

from collections import Counter

import pytest
from redis.asyncio import Redis

from tests.conftest import wait_for
from ticketwire.keys import Keys
from workers.partitions import Leases, assign, share

WORKERS = ["alpha-1", "bravo-7", "charlie-3", "delta-9", "echo-2"]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("partitions", [1, 7, 16, 64])
def test_assignment_covers_every_partition_evenly(n: int, partitions: int) -> None:
    owners = assign(WORKERS[:n], partitions)
    assert sorted(owners) == list(range(partitions))
    loads = Counter(owners.values())
    assert set(loads) <= set(WORKERS[:n])
    # Nobody above its ceiling share, nobody idle while partitions are plentiful.
    assert max(loads.values()) <= -(-partitions // n)
    if partitions >= n:
        assert len(loads) == n
        assert min(loads.values()) >= partitions // n - 1


def test_assignment_is_the_same_whatever_order_workers_are_seen_in() -> None:
    first = assign(WORKERS, 16)
    assert assign(list(reversed(WORKERS)), 16) == first
    assert assign([*WORKERS, *WORKERS], 16) == first


def test_shares_of_live_workers_are_disjoint_and_complete() -> None:
    shares = [share(w, WORKERS[:3], 16) for w in WORKERS[:3]]
    assert sum(len(s) for s in shares) == 16
    assert frozenset().union(*shares) == frozenset(range(16))


def test_a_worker_always_counts_itself() -> None:
    assert share("newcomer", [], 4) == frozenset(range(4))
    assert share("newcomer", ["alpha-1"], 16) == share("newcomer", ["alpha-1", "newcomer"], 16)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_a_joining_worker_moves_about_one_share(n: int) -> None:
    before = assign(WORKERS[:n], 64)
    after = assign(WORKERS[: n + 1], 64)
    moved = [p for p in before if before[p] != after[p]]
    newcomer = [p for p in after if after[p] == WORKERS[n]]
    # Ideal is exactly the newcomer's share; hash-mod-n placement would move about 4/5 of all.
    assert len(moved) <= 1.5 * len(newcomer)


async def test_leases_are_exclusive_and_only_their_holder_renews_or_releases(
    redis: Redis, keys: Keys
) -> None:
    a = Leases(redis, keys, "a", ttl_ms=5000)
    b = Leases(redis, keys, "b", ttl_ms=5000)
    assert await a.acquire([0, 1]) == [0, 1]
    assert await b.acquire([1, 2, 0]) == [2]
    assert await a.holder(1) == "a"
    assert await b.holder(3) is None

    _, renewed, _ = await b.beat([0, 2])
    assert renewed == [False, True]
    assert not await b.release(0)
    assert await a.holder(0) == "a"

    assert await a.release(0)
    assert await a.holder(0) is None
    assert await b.acquire([0]) == [0]
    _, renewed, _ = await a.beat([0, 1])
    assert renewed == [False, True]


async def test_renewal_extends_the_lease(redis: Redis, keys: Keys) -> None:
    a = Leases(redis, keys, "a", ttl_ms=5000)
    await a.acquire([0])
    await redis.pexpire(keys.lease(0), 100)
    _, renewed, _ = await a.beat([0])
    assert renewed == [True]
    assert 4000 < await redis.pttl(keys.lease(0)) <= 5000


async def test_leases_expire_when_not_renewed(redis: Redis, keys: Keys) -> None:
    a = Leases(redis, keys, "a", ttl_ms=100)
    b = Leases(redis, keys, "b", ttl_ms=100)
    assert await a.acquire([5]) == [5]
    assert await b.acquire([5]) == []

    async def b_gets_it() -> bool:
        return await b.acquire([5]) == [5]

    await wait_for(b_gets_it, timeout=5, message="the unrenewed lease to expire")
    assert await a.holder(5) == "b"


async def test_heartbeat_lists_the_living_and_prunes_the_dead(redis: Redis, keys: Keys) -> None:
    a = Leases(redis, keys, "a", ttl_ms=5000)
    b = Leases(redis, keys, "b", ttl_ms=5000)
    await redis.zadd(keys.workers, {"ghost": 1})  # expired long ago
    await b.beat([])
    live, renewed, _ = await a.beat([])
    assert sorted(live) == ["a", "b"]
    assert renewed == []
    assert await redis.zscore(keys.workers, "ghost") is None

    await b.deregister()
    live, _, _ = await a.beat([])
    assert live == ["a"]
