"""arq jobs of the worker: a Redis outage during a deferred drain is retried, never dropped."""

from __future__ import annotations

import pytest
from arq import Retry
from redis.asyncio import Redis

from tests.procs import free_port
from ticketwire.keys import Keys
from workers.app import drain_outbox
from workers.outbox import Outbox


async def test_drain_job_asks_arq_to_retry_when_redis_is_down():
    dead = Redis(port=free_port(), socket_connect_timeout=0.5)
    outbox = Outbox(dead, Keys("t:"), {}, owner="w1")
    with pytest.raises(Retry):
        await drain_outbox({"outbox": outbox, "job_try": 1}, "inboxops:ws:t1")
    await dead.aclose()
