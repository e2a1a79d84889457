"""Which Redis `capture`, `dlq` and `rules` read: REDIS_URL, else the running local `up`'s, with
its key prefix unless one is configured. Real CLI processes next to a published local `up`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from cli.localup import INFO_NAME, DataDirLock, find_local_up
from cli.redisurl import safe_url
from tests.localstack import LocalStack, local_up
from ticketwire.config import Settings
from ticketwire.keys import Keys
from workers.arqhost import in_process_worker
from workers.deadletter import dead_letter

COMMANDS = (["capture"], ["dlq", "list"], ["rules"])


@pytest.fixture
async def up(tmp_path, aiohttp_server, redis, redis_url, keys) -> AsyncIterator[LocalStack]:
    async for stack in local_up(tmp_path, aiohttp_server, redis, redis_url, keys):
        yield stack


def unprefixed(up: LocalStack, **extra: str) -> dict[str, str]:
    """The environment of a command next to `up` that configures no key prefix."""
    env = up.env(**extra)
    del env["TICKETWIRE_KEY_PREFIX"]
    return env


def note(up: LocalStack, command: str, prefix: str) -> str:
    return (
        f"ticketwire {command}: using the Redis of the `ticketwire up` running in {up.data_dir} "
        f"({safe_url(up.redis_url)}, key prefix {prefix}); set REDIS_URL for another"
    )


async def test_capture_takes_the_local_ups_redis_and_key_prefix(up, tmp_path):
    for n in range(2):
        code, _, err = await up.run(
            "fire", "inboxops", "--ticket", f"t{n}", "--tenant", "ws", env=unprefixed(up)
        )
        assert code == 0, err
    out = tmp_path / "out.jsonl"
    code, _, err = await up.run("capture", "-o", str(out), env=unprefixed(up))
    assert code == 0, err
    assert note(up, "capture", up.keys.prefix) in err
    assert f"captured 2 deliveries to {out}, failed 0" in err


async def test_dlq_takes_the_local_ups_redis_and_key_prefix(up, redis: Redis):
    lid = await dead_letter(redis, up.keys, reason="boom", ticket_key="inboxops:t1")
    code, out, err = await up.run("dlq", "list", "--json", env=unprefixed(up))
    assert code == 0, err
    assert [letter["id"] for letter in json.loads(out)] == [lid]
    assert note(up, "dlq", up.keys.prefix) in err


async def test_rules_takes_the_local_ups_redis_and_key_prefix(up, tmp_path: Path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "wake.yml").write_text(
        "name: wake\nevents: [ticket.updated]\nthen:\n  - set_status: open\n"
    )
    settings = Settings(
        redis_url=up.redis_url, key_prefix=up.keys.prefix, rules_dir=rules, partitions=4
    )
    async with in_process_worker(settings, started_within=10.0):
        code, out, err = await up.run("rules", env=unprefixed(up))
    assert code == 0, out + err
    assert note(up, "rules", up.keys.prefix) in err
    assert "every live worker runs the published rules" in out


async def test_a_configured_key_prefix_wins_over_the_local_ups(up, redis: Redis):
    await dead_letter(redis, up.keys, reason="boom", ticket_key="inboxops:t1")
    other = Keys(up.keys.prefix + "other:")
    mine = await dead_letter(redis, other, reason="mine", ticket_key="inboxops:t2")
    env = up.env(TICKETWIRE_KEY_PREFIX=other.prefix)
    code, out, err = await up.run("dlq", "list", "--json", env=env)
    assert code == 0, err
    assert [letter["id"] for letter in json.loads(out)] == [mine]
    assert note(up, "dlq", other.prefix) in err


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
async def test_without_redis_url_or_local_up_each_command_names_both(up, tmp_path, argv):
    elsewhere = tmp_path / "elsewhere"
    code, out, err = await up.run(*argv, env=up.env(TICKETWIRE_DATA_DIR=str(elsewhere)))
    assert code == 2 and out == ""
    assert f"ticketwire {argv[0]}: set REDIS_URL to the Redis ticketwire stores into" in err
    assert "redis://host:6379/0" in err
    assert f"no `ticketwire up` runs in {elsewhere.resolve()} (TICKETWIRE_DATA_DIR)" in err


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
async def test_redis_url_wins_over_the_local_up_and_is_not_announced(up, argv):
    code, _, err = await up.run(*argv, env=up.env(REDIS_URL=up.redis_url))
    # `rules` exits 1 here: no worker runs on that Redis.
    assert code == (1 if argv == ["rules"] else 0), err
    assert "using the Redis of the `ticketwire up`" not in err
    assert "set REDIS_URL" not in err


def test_an_up_json_without_a_key_prefix_still_loads(tmp_path: Path):
    with DataDirLock(tmp_path) as lock:
        (lock.data_dir / INFO_NAME).write_text(
            json.dumps(
                {
                    "data_dir": str(tmp_path),
                    "pid": 1,
                    "receiver_url": "http://127.0.0.1:8000/webhooks",
                    "redis_url": "redis://127.0.0.1:6379/0",
                }
            )
        )
        found = find_local_up(tmp_path)
    assert found is not None and found.key_prefix == "tw:"
