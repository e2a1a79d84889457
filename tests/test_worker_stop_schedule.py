"""A worker stopped while a scheduled rule runs: the run is given the grace period, then cut
short with its lock released and its run left `running`, so the next tick makes it up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from simulator.common.clock import ManualClock
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.stack import outbox_empty, stack_settings
from tests.test_scheduled_rules_e2e import NOW, T0, at, counting_router, worker, writes
from ticketwire.keys import Keys
from workers.schedule import run_schedules
from workers.shutdown import stop_worker


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(
        SimulatorConfig(seed=23, rate_limit_per_minute=None), clock=ManualClock(epoch=T0)
    )
    await s.start()
    yield s
    await s.stop()


async def test_a_scheduled_run_cut_short_by_a_stop_is_made_up_by_the_next_tick(
    sim: InboxOpsSimulator, redis: Redis, redis_url: str, keys: Keys, tmp_path: Any, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="ticketwire")
    held = asyncio.Event()  # never set: the run outlasts the grace period
    state: dict[str, Any] = {"tag": sim.create_tag("nudged")["id"]}
    sim.create_ticket(subject="waiting", status="waiting")
    at(sim, NOW)
    settings = stack_settings(redis_url, keys, sim, tmp_path)
    async with worker(settings, counting_router(state, block=held)) as one:
        job = asyncio.create_task(run_schedules(one.ctx, now=NOW))
        await wait_for(lambda: state.get("entered"), message="the run to be going")
        lock = keys.schedule_lock("tag-waiting")
        assert await redis.exists(lock)
        loop = asyncio.get_running_loop()
        clean = await stop_worker(
            one.ctx, [job], grace_s=0.3, started=loop.time(), signal_name="SIGTERM"
        )
        assert not clean and job.done()
        assert "1 scheduled jobs cut short" in caplog.text
        # Its lock is released at once and its run left to be made up.
        assert not await redis.exists(lock)
        assert await redis.get(keys.schedule_run("tag-waiting", "20250110T1300Z")) == b"running"
        assert writes(sim) == []

    async with worker(settings, counting_router(state)) as two:
        await run_schedules(two.ctx, now=NOW + timedelta(minutes=1))
        assert "running the run of 2025-01-10 13:00 again" in caplog.text
        await wait_for(lambda: outbox_empty(redis, keys), message="the made-up run's tag sent")
        assert len(writes(sim)) == 1
