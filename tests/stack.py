"""Run the real pieces together for end-to-end tests: simulator, receiver, arq worker."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from simulator.inboxops import InboxOpsSimulator
from tests.conftest import wait_for
from ticketwire.config import Settings
from ticketwire.engine import Router, load_rules
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.streams import handled
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from workers.arqhost import Worker, in_process_worker

SECRET = "whsec_end_to_end"


def stack_settings(
    redis_url: str, keys: Keys, sim: InboxOpsSimulator, rules_dir: Path, **overrides: Any
) -> Settings:
    """Settings for a test stack: small partitions, short leases, fast retries."""
    base = Settings(
        redis_url=redis_url,
        key_prefix=keys.prefix,
        rules_dir=rules_dir,
        partitions=4,
        lease_ttl_s=2.0,
        http_timeout_s=3.0,
        backoff_s=0.05,
        max_attempts=3,
        vendors={
            "inboxops": InboxOpsSettings(
                webhook_secrets=(Secret(SECRET),),
                api_url=sim.url,
                api_key=Secret(sim.api_key),
            ),
        },
    )
    return dataclasses.replace(base, **overrides)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, router: Router | None = None) -> AsyncIterator[Worker]:
    """An arq worker with the ticketwire consumer, in this event loop, stopped cleanly after."""
    router = router or load_rules(settings.rules_dir)
    async with in_process_worker(settings, router, started_within=10.0, poll_delay=0.05) as worker:
        yield worker


async def settled(redis: Redis, keys: Keys, partitions: int = 4) -> bool:
    """True when every stored delivery has been read and acknowledged by a worker."""
    return await handled(redis, keys, partitions)


async def outbox_empty(redis: Redis, keys: Keys) -> bool:
    """True when no ticket has write-backs still queued."""
    async for _ in redis.scan_iter(match=f"{keys.prefix}outbox:*"):
        return False
    return True


async def quiet(sim: InboxOpsSimulator, redis: Redis, keys: Keys) -> None:
    """Wait until every delivery (also those our write-backs caused) is handled and sent."""
    for _ in range(50):
        before = len(sim.deliveries)
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="deliveries handled")
        await wait_for(lambda: outbox_empty(redis, keys), message="write-backs sent")
        await sim.wait_deliveries_idle()
        if len(sim.deliveries) == before:
            return
    raise AssertionError("deliveries never stopped: a loop")
