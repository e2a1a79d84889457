"""Script calls made in one loop turn go out as one pipeline, each caller getting its own reply."""

from __future__ import annotations

import asyncio
import socket

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from ticketwire.keys import Keys
from workers.scriptbatch import ScriptBatch, batched

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
FAIL_ON_NEGATIVE = """
if tonumber(ARGV[1]) < 0 then return redis.error_reply('negative: ' .. ARGV[1]) end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


async def test_calls_in_one_turn_are_one_batch_and_replies_keep_their_order(
    redis: Redis, keys: Keys
) -> None:
    batch = ScriptBatch(redis)
    incr = batch.register(INCR_BY)
    key = keys.prefix + "n"
    replies = await asyncio.gather(*(incr(keys=[key], args=[i]) for i in range(1, 51)))
    # Each reply is the running total after that call, so order on the server is call order.
    assert replies == [i * (i + 1) // 2 for i in range(1, 51)]
    assert (batch.batches, batch.calls) == (1, 50)
    assert int(await redis.get(key)) == 1275


async def test_awaited_one_by_one_each_call_is_its_own_batch(redis: Redis, keys: Keys) -> None:
    batch = ScriptBatch(redis)
    incr = batch.register(INCR_BY)
    key = keys.prefix + "n"
    for i in range(3):
        assert await incr(keys=[key], args=[1]) == i + 1
    assert (batch.batches, batch.calls) == (3, 3)


async def test_one_client_has_one_batcher_shared_across_scripts(redis: Redis, keys: Keys) -> None:
    assert batched(redis) is batched(redis)
    a = batched(redis).register(INCR_BY)
    b = batched(redis).register(FAIL_ON_NEGATIVE)
    before = batched(redis).batches
    got = await asyncio.gather(
        a(keys=[keys.prefix + "a"], args=[2]), b(keys=[keys.prefix + "b"], args=[3])
    )
    assert got == [2, 3]
    assert batched(redis).batches == before + 1


async def test_a_failing_call_fails_only_its_caller(redis: Redis, keys: Keys) -> None:
    batch = ScriptBatch(redis)
    script = batch.register(FAIL_ON_NEGATIVE)
    key = keys.prefix + "n"
    got = await asyncio.gather(
        script(keys=[key], args=[1]),
        script(keys=[key], args=[-5]),
        script(keys=[key], args=[10]),
        return_exceptions=True,
    )
    assert got[0] == 1 and got[2] == 11
    assert isinstance(got[1], ResponseError) and "negative: -5" in str(got[1])


@pytest.mark.parametrize("concurrent", [1, 7])
async def test_a_script_the_server_lost_is_loaded_and_sent_again(
    redis: Redis, keys: Keys, concurrent: int
) -> None:
    batch = ScriptBatch(redis)
    # A script body of this test's own, so the flush below is what makes the server miss it.
    incr = batch.register(INCR_BY + f" -- {keys.prefix}")
    key = keys.prefix + "n"
    assert await incr(keys=[key], args=[1]) == 1
    await redis.script_flush()
    got = await asyncio.gather(*(incr(keys=[key], args=[1]) for _ in range(concurrent)))
    assert sorted(got) == list(range(2, concurrent + 2))
    assert (await redis.script_exists(incr.sha)) == [True]


async def test_a_cancelled_caller_does_not_disturb_the_others(redis: Redis, keys: Keys) -> None:
    batch = ScriptBatch(redis)
    incr = batch.register(INCR_BY)
    key = keys.prefix + "n"
    first = asyncio.ensure_future(incr(keys=[key], args=[1]))
    second = asyncio.ensure_future(incr(keys=[key], args=[1]))
    first.cancel()
    assert await second in (1, 2)
    assert first.cancelled()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_redis_down_fails_every_caller_with_the_connection_error() -> None:
    client = Redis(host="127.0.0.1", port=_closed_port(), socket_connect_timeout=1)
    try:
        batch = ScriptBatch(client)
        incr = batch.register(INCR_BY)
        got = await asyncio.gather(
            *(incr(keys=["k"], args=[1]) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(g, RedisConnectionError) for g in got), got
        # And a single call, which takes the path without a pipeline.
        with pytest.raises(RedisConnectionError):
            await incr(keys=["k"], args=[1])
    finally:
        await client.aclose()
