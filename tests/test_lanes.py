"""Account lanes on a real Redis: where deliveries are stored, and a burst that delays no one else."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from receiver.intake import Intake
from tests.conftest import wait_for
from tests.test_consumer import Make, Recorder, interleaved, make, pending_total, store
from ticketwire.accountkey import lane_of
from ticketwire.keys import GROUP, Keys, partition_of
from ticketwire.stored import StoredDelivery

__all__ = ["make"]  # the fixture, shared with the consumer's tests

BURST = 10_000
TRICKLE = 100
A, B = "inboxops@brand-a", "inboxops@brand-b"


def delivery(account: str, ticket: str, n: int, received_ms: int = 1) -> StoredDelivery:
    return StoredDelivery(
        vendor="inboxops",
        event_id=f"{account}:{ticket}:{n}",
        event_type="ticket.updated",
        ticket_key=f"inboxops:ws:{ticket}",
        body=b'{"n": %d}' % n,
        received_ms=received_ms,
        account=account,
    )


@pytest.fixture
async def intake(redis: Redis, keys: Keys) -> AsyncIterator[Intake]:
    """The receiver's intake, storing into 16 partitions."""
    it = Intake(redis, keys, partitions=16, dedupe_ttl_s=60)
    await it.start()
    yield it
    await it.close()


async def lengths(redis: Redis, keys: Keys, lane: str) -> int:
    return sum([await redis.xlen(keys.stream(p, lane)) for p in range(16)])


async def test_a_named_accounts_deliveries_land_in_its_lane_the_defaults_in_the_old_streams(
    redis: Redis, keys: Keys, intake: Intake, make: Make
) -> None:
    for n in range(5):
        await intake.store(delivery("default", f"t{n}", n))
        await intake.store(delivery("brand-a", f"t{n}", n))
    assert await lengths(redis, keys, "") == 5
    assert await lengths(redis, keys, A) == 5
    assert keys.stream(3) == f"{keys.prefix}events:3"
    assert keys.stream(3, A) == f"{keys.prefix}events:{A}:3"
    # Only named lanes are listed: the default lane is always read.
    assert await redis.smembers(keys.lanes) == {A.encode()}

    seen: list[StoredDelivery] = []

    async def handler(d: StoredDelivery) -> None:
        seen.append(d)

    consumer = make(handler, lanes=[A])
    await consumer.start()
    await wait_for(lambda: len(seen) == 10, message="both lanes handled")
    await consumer.wait_idle()
    for d in seen:
        assert d.stream == keys.stream(partition_of(d.ticket_key, 16), lane_of(d.vendor, d.account))
    assert await pending_total(redis, keys) == 0


async def test_a_burst_on_one_account_does_not_delay_another(
    redis: Redis, keys: Keys, intake: Intake, make: Make
) -> None:
    handled_a = 0
    a_when_b_done: int | None = None
    b_latency: list[float] = []

    async def handler(d: StoredDelivery) -> None:
        nonlocal handled_a, a_when_b_done
        if d.account == "brand-a":
            handled_a += 1
            return
        b_latency.append(time.time() - d.received_ms / 1000)
        if len(b_latency) == TRICKLE:
            a_when_b_done = handled_a

    consumer = make(handler, lanes=[A, B])
    await consumer.start()
    await asyncio.gather(*(intake.store(delivery("brand-a", f"a{n}", 0)) for n in range(BURST)))
    await wait_for(lambda: handled_a >= 200, message="the burst under way")
    now_ms = int(time.time() * 1000)
    await asyncio.gather(
        *(intake.store(delivery("brand-b", f"b{n}", 0, now_ms)) for n in range(TRICKLE))
    )
    await wait_for(lambda: a_when_b_done is not None, timeout=30, message="account B handled")
    assert a_when_b_done is not None and a_when_b_done < BURST // 2, (
        f"B waited for {a_when_b_done} of A's {BURST} events"
    )
    p99 = sorted(b_latency)[int(0.99 * (TRICKLE - 1))]
    assert p99 < 3.0
    await wait_for(lambda: handled_a == BURST, timeout=60, message="the rest of the burst")
    await consumer.wait_idle()
    assert await pending_total(redis, keys) == 0


async def test_a_lane_only_redis_lists_is_found_and_drained(
    redis: Redis, keys: Keys, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    consumer = make(rec, partitions=4)  # configured with no named lane at all
    await consumer.start()
    await store(redis, keys, interleaved(4, 3), 4, account="newcomer")
    with caplog.at_level(logging.INFO, logger="workers.consumer"):
        await wait_for(lambda: rec.has(12), message="the new lane's deliveries")
    await consumer.wait_idle()
    assert "reading new lanes inboxops@newcomer" in caplog.text
    assert await pending_total(redis, keys, 4) == 0


async def test_the_same_entry_id_in_two_lanes_is_handled_and_acknowledged_in_each(
    redis: Redis, keys: Keys, make: Make
) -> None:
    for account in ("default", "brand-a"):
        d = delivery(account, "t1", 1)
        stream = keys.stream(partition_of(d.ticket_key, 2), lane_of(d.vendor, d.account))
        await redis.xadd(stream, d.to_fields(), id="1700000000000-0")  # type: ignore[arg-type]
    await redis.sadd(keys.lanes, A)  # type: ignore[misc]

    seen: list[str] = []

    async def handler(d: StoredDelivery) -> None:
        seen.append(d.event_id)

    consumer = make(handler, partitions=2)
    await consumer.start()
    await wait_for(lambda: len(seen) == 2, message="both entries")
    await consumer.wait_idle()
    assert sorted(seen) == ["brand-a:t1:1", "default:t1:1"]
    assert await pending_total(redis, keys, 2) == 0


async def test_the_backlog_counts_every_lane(redis: Redis, keys: Keys, intake: Intake) -> None:
    from ticketwire.backlog import read_backlog

    for n in range(3):
        await intake.store(delivery("default", f"t{n}", n))
    for n in range(4):
        await intake.store(delivery("brand-a", f"t{n}", n))
    backlog = await read_backlog(redis, keys, 16)
    assert backlog.queue_depth == 7
    assert sum(backlog.partition_depths) == 7
    assert len(backlog.partition_depths) == 16
    # Read by a worker, not yet acknowledged: pending, still in the queue.
    p = partition_of("inboxops:ws:t0", 16)
    await redis.xgroup_create(keys.stream(p, A), GROUP, id="0")
    await redis.xreadgroup(GROUP, "w", {keys.stream(p, A): ">"})
    backlog = await read_backlog(redis, keys, 16)
    assert (backlog.queue_depth, backlog.queue_pending) == (7, 1)
