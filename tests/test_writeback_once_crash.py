"""A worker killed (SIGKILL) while the helpdesk holds its PATCH: the heir reads the ticket back and
the write is applied exactly once, whether the helpdesk applied it before its pause or after."""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.procs import spawn
from tests.stack import outbox_empty
from tests.test_writeback_e2e import outbox
from ticketwire.calls import ApiCall
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.client import InboxOpsClient

HELPER = Path(__file__).parent / "helpers" / "outbox_proc.py"
#: The dead worker's lease: the heir takes the ticket over this long after the claim.
LEASE_S = 3.0
#: How long the simulator holds the PATCH: within the lease, so the held request has ended
#: (applied) before the heir reads; past it, see the README's Failure handling.
HOLD_S = 1.0


@pytest.mark.slow
@pytest.mark.parametrize("late", [False, True], ids=["applied-after-the-pause", "applied-first"])
async def test_a_write_held_when_its_worker_is_killed_is_applied_exactly_once(
    redis: Redis, keys: Keys, redis_url: str, late: bool
) -> None:
    sim = InboxOpsSimulator(SimulatorConfig(seed=31))
    await sim.start()
    try:
        [t] = sim.seed_tickets(1, emit=False)
        path = f"/tickets/{t['id']}"
        call = ApiCall("inboxops", "PATCH", path, {"priority": "urgent"}, t["id"], ("r",), "e1")
        async with aiohttp.ClientSession() as session:
            client = InboxOpsClient(session, sim.url, api_key=Secret(sim.api_key))
            heir = outbox(redis, keys, client, "heir")
            await heir.submit(f"inboxops:ws:{t['id']}", "e1", [call])
            sim.faults.fail_next("PATCH", path, 200, delay=HOLD_S, late=late)
            doomed = await spawn(
                [sys.executable, str(HELPER), "--url", redis_url, "--prefix", keys.prefix,
                 "--api-url", sim.url, "--worker", "doomed", "--lease", str(LEASE_S)],
                env={"INBOXOPS_API_KEY": sim.api_key},
            )  # fmt: skip
            try:
                await doomed.wait_output("flusher started")
                # The simulator took the PATCH and holds it.
                await wait_for(lambda: not sim.faults.scripted, timeout=20, message="PATCH held")
            finally:
                await doomed.kill()  # SIGKILL: no settle, no release; its claim stands
            assert not [e for e in sim.journal if e.method == "PATCH"]  # still held, unanswered
            heir.start()
            try:
                await wait_for(lambda: outbox_empty(redis, keys), timeout=30, message="taken over")
            finally:
                await heir.stop()
            await wait_for(
                lambda: any(e.method == "PATCH" for e in sim.journal), message="the held PATCH"
            )
        patches = [e for e in sim.journal if e.method == "PATCH"]
        reads = [e for e in sim.journal if e.method == "GET" and e.path.endswith(t["id"])]
        assert len(patches) == 1, [(e.method, e.path, e.body) for e in sim.journal]
        assert len(reads) == 1
        assert heir.counters["api_calls_reconciled"] == 1
        assert heir.counters["api_calls"] == 0
        assert sim.ticket(t["id"])["priority"] == "urgent"
    finally:
        await sim.stop()
