"""The backlog read: queue depth and age, outbox, dead letters, paused budgets, over real Redis."""

from __future__ import annotations

from redis.asyncio import Redis

from tests.conftest import wait_for
from ticketwire.backlog import LAG_COUNT_CAP, read_backlog
from ticketwire.keys import GROUP, Keys
from ticketwire.ratebudget import Limit, RateBudget


async def _server_ms(redis: Redis) -> int:
    secs, micros = await redis.time()
    return int(secs) * 1000 + int(micros) // 1000


async def test_an_empty_deployment_has_no_backlog(redis: Redis, keys: Keys) -> None:
    b = await read_backlog(redis, keys, 4)
    assert (b.queue_depth, b.queue_pending, b.oldest_unhandled_s) == (0, 0, 0.0)
    assert (b.outbox_tickets, b.outbox_due, b.oldest_due_s, b.dead_letters) == (0, 0, 0.0, 0)
    assert b.paused_budgets == {}
    assert b.partition_depths == (0, 0, 0, 0)
    assert not b.approximate


async def test_undelivered_and_pending_entries_count_and_the_oldest_sets_the_age(
    redis: Redis, keys: Keys
) -> None:
    now = await _server_ms(redis)
    s0, s1 = keys.stream(0), keys.stream(1)
    # Partition 0: three entries 30 s old, two of them read by a worker and not acknowledged.
    for seq in range(3):
        await redis.xadd(s0, {"m": "x"}, id=f"{now - 30_000}-{seq}")
    await redis.xgroup_create(s0, GROUP, id="0")
    await redis.xreadgroup(GROUP, "w1", {s0: ">"}, count=2)
    # Partition 1: no group yet (no worker ever started): everything waits; 60 s old.
    await redis.xadd(s1, {"m": "x"}, id=f"{now - 60_000}-0")
    b = await read_backlog(redis, keys, 2)
    assert b.partition_depths == (3, 1)
    assert (b.queue_depth, b.queue_pending) == (4, 2)
    assert 59 <= b.oldest_unhandled_s < 70

    # Handling partition 1's entry leaves partition 0's pending entry as the oldest.
    await redis.xgroup_create(s1, GROUP, id="0")
    got = await redis.xreadgroup(GROUP, "w1", {s1: ">"})
    await redis.xack(s1, GROUP, got[0][1][0][0])
    b = await read_backlog(redis, keys, 2)
    assert b.partition_depths == (3, 0)
    assert 29 <= b.oldest_unhandled_s < 40

    # All acknowledged, none undelivered: no backlog, whatever stays in the stream for replay.
    got = await redis.xreadgroup(GROUP, "w1", {s0: ">"})
    ids = await redis.xrange(s0)
    await redis.xack(s0, GROUP, *(i for i, _ in ids))
    b = await read_backlog(redis, keys, 2)
    assert (b.queue_depth, b.oldest_unhandled_s) == (0, 0.0)


async def test_an_unknown_lag_is_counted_instead(redis: Redis, keys: Keys) -> None:
    s = keys.stream(0)
    await redis.xgroup_create(s, GROUP, id="0", mkstream=True)
    ids = [await redis.xadd(s, {"m": "x"}) for _ in range(5)]
    await redis.xreadgroup(GROUP, "w1", {s: ">"}, count=1)
    # A deletion inside the undelivered range makes the server's lag null.
    await redis.xdel(s, ids[3])
    groups = await redis.xinfo_groups(s)
    assert groups[0]["lag"] is None
    b = await read_backlog(redis, keys, 1)
    assert (b.queue_depth, b.queue_pending) == (4, 1)
    assert not b.approximate


async def test_an_unknown_lag_past_the_cap_is_a_lower_bound(redis: Redis, keys: Keys) -> None:
    s = keys.stream(0)
    await redis.xgroup_create(s, GROUP, id="0", mkstream=True)
    async with redis.pipeline(transaction=False) as pipe:
        for _ in range(LAG_COUNT_CAP + 5):
            pipe.xadd(s, {"m": "x"})
        ids = await pipe.execute()
    await redis.xdel(s, ids[-1])
    b = await read_backlog(redis, keys, 1)
    assert b.queue_depth == LAG_COUNT_CAP
    assert b.approximate


async def test_outbox_dead_letters_and_paused_budgets(redis: Redis, keys: Keys) -> None:
    now = await _server_ms(redis)
    await redis.zadd(
        keys.wb_due,
        {"inboxops:t:1": now - 12_000, "inboxops:t:2": now - 1_000, "inboxops:t:3": now + 60_000},
    )
    await redis.xadd(keys.dlq, {"kind": "writeback"})
    await redis.xadd(keys.dlq, {"kind": "event"})
    budget = RateBudget(redis, keys.prefix, "inboxops:abc", [Limit("all", 10, 60.0)])
    await budget.pause(30)
    b = await read_backlog(redis, keys, 1)
    assert (b.outbox_tickets, b.outbox_due) == (3, 2)
    assert 11 <= b.oldest_due_s < 20
    assert b.dead_letters == 2
    assert list(b.paused_budgets) == ["inboxops:abc"]
    assert 25 < b.paused_budgets["inboxops:abc"] <= 30
    # Only future write-backs: nothing is overdue.
    await redis.zrem(keys.wb_due, "inboxops:t:1", "inboxops:t:2")
    b = await read_backlog(redis, keys, 1)
    assert (b.outbox_tickets, b.outbox_due, b.oldest_due_s) == (1, 0, 0.0)


async def test_a_pause_that_ended_is_not_reported(redis: Redis, keys: Keys) -> None:
    budget = RateBudget(redis, keys.prefix, "cstar:team:abc", [])
    await budget.pause(0.2)

    async def unpaused() -> bool:
        return not (await read_backlog(redis, keys, 1)).paused_budgets

    await wait_for(unpaused, timeout=5, message="the pause to end")
    assert await redis.zcard(keys.budgets_paused) == 1


async def test_the_read_costs_two_round_trips_whatever_the_backlog(
    redis_url: str, keys: Keys, redis: Redis
) -> None:
    counted: list[int] = []
    client = Redis.from_url(redis_url)
    real = client.connection_pool.get_connection

    async def counting(*args: object, **kwargs: object) -> object:
        counted.append(1)
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    client.connection_pool.get_connection = counting  # type: ignore[method-assign]
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for p in range(8):
                for _ in range(200):
                    pipe.xadd(keys.stream(p), {"m": "x"})
            await pipe.execute()
        b = await read_backlog(client, keys, 8)
        assert b.queue_depth == 1600
        assert len(counted) == 2
    finally:
        await client.aclose()
