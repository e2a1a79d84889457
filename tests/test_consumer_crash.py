"""A worker killed mid-delivery (SIGKILL): another takes its partitions over and re-runs only what
was unfinished, in order, marked as a re-run."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import wait_for
from tests.helpers.consumer_proc import handled_key, hanging_key
from tests.test_consumer import Recorder, interleaved, pending_total, store
from ticketwire.accountkey import lane_of
from ticketwire.keys import GROUP, Keys
from workers.consumer import Consumer

HELPER = Path(__file__).parent / "helpers" / "consumer_proc.py"
PARTITIONS = 4
HANG_ON = "inboxops:t0:3"


@pytest.mark.slow
# A named account's lane too: neither worker is configured with it, both find it in Redis.
@pytest.mark.parametrize("account", ["default", "acme"])
async def test_a_killed_workers_unfinished_deliveries_are_rerun_elsewhere(
    redis: Redis, keys: Keys, redis_url: str, tmp_path: Path, account: str
) -> None:
    lane = lane_of("inboxops", account)
    events = interleaved(3, 10)  # t0, t1, t2 with 0..9 each
    stored = await store(redis, keys, events, PARTITIONS, account=account)
    ids = dict(zip(events, stored, strict=True))
    tail = [("inboxops:t0", s) for s in range(3, 10)]  # the hung event and what queues behind it
    tail_ids = {ids[e] for e in tail}

    log = tmp_path / "doomed.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HELPER), "--url", redis_url, "--prefix", keys.prefix,
            "--worker", "doomed", "--partitions", str(PARTITIONS), "--lease-ttl", "1.5",
            "--hang-on", HANG_ON, stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:

        async def only_the_tail_is_pending() -> bool:
            if await redis.get(hanging_key(keys)) != HANG_ON.encode():
                return False
            pending = set()
            for p in range(PARTITIONS):
                rows = await redis.xpending_range(keys.stream(p, lane), GROUP, "-", "+", 100)
                pending |= {r["message_id"].decode() for r in rows}
            return bool(pending) and pending <= tail_ids

        await wait_for(
            only_the_tail_is_pending,
            timeout=15,
            message=f"the worker to hang with only t0:3.. pending (log: {log})",
        )
    finally:
        proc.kill()  # SIGKILL: no shutdown hook, no release, no acknowledgement
        await proc.wait()

    first_run = [r.decode().split("|") for r in await redis.lrange(handled_key(keys), 0, -1)]
    assert Counter(e for e, _, _ in first_run) == Counter(
        f"{t}:{s}" for t, s in events if (t, s) not in tail or s == 3
    )

    rec = Recorder()
    heir = Consumer(
        redis, keys, rec, worker_id="heir", partitions=PARTITIONS, lease_ttl=1.5, block_ms=200
    )
    await heir.start()
    try:
        await wait_for(lambda: rec.has(len(tail)), timeout=10, message="the take-over")
        await heir.wait_idle()
    finally:
        await heir.stop()

    # Exactly the unfinished ones, in order; the hung one again, flagged as a re-run.
    assert rec.events == [f"{t}:{s}" for t, s in tail]
    assert rec.deliveries[HANG_ON] >= 2
    assert heir.stats["claimed"] >= 1
    assert await pending_total(redis, keys, PARTITIONS) == 0
