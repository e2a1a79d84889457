"""Our Redis connections pack commands with hiredis: the same bytes, the same errors, any scheme."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import DataError

from ticketwire.keys import Keys
from ticketwire.redisconn import connect

COMMANDS: list[tuple[object, ...]] = [
    ("PING",),
    ("SET", "k", "v"),
    ("SET", b"k", b"\x00\xff binary"),
    ("EVALSHA", "a" * 40, 2, "k1", b"k2", 1.5, 0.1, -3, 10**20, 1e100, 1e-7, "é ünïcode"),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", "x"),
    ("XADD", "s", "MAXLEN", "~", 1000, "*", "f", "x" * 10_000),
    ("SET", "k", memoryview(b"view")),
]


def _bytes(chunks: list[bytes]) -> bytes:
    return b"".join(bytes(c) for c in chunks)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_packs_the_same_bytes_as_redis_py(command: tuple[object, ...]) -> None:
    ours = connect("redis://127.0.0.1:1").connection_pool.make_connection()
    assert _bytes(ours.pack_command(*command)) == _bytes(Connection().pack_command(*command))
    pair = [command, ("PING",)]
    assert _bytes(ours.pack_commands(pair)) == _bytes(Connection().pack_commands(pair))


@pytest.mark.parametrize("bad", [True, None, bytearray(b"x"), {"a": 1}])
def test_an_argument_of_the_wrong_type_is_a_data_error(bad: object) -> None:
    ours = connect("redis://127.0.0.1:1").connection_pool.make_connection()
    with pytest.raises(DataError):
        ours.pack_command("SET", "k", bad)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6380/0", SSLConnection),
        ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
    ],
)
def test_the_url_still_chooses_tcp_tls_or_a_unix_socket(url: str, kind: type) -> None:
    made = connect(url).connection_pool.make_connection()
    assert isinstance(made, kind)
    assert type(made).__name__ == kind.__name__
    assert type(made).pack_command is not kind.pack_command


async def test_commands_and_scripts_round_trip_on_a_real_server(redis_url: str, keys: Keys) -> None:
    client = connect(redis_url)
    try:
        key = keys.prefix + "k"
        value = "é ünïcode " + "x" * 10_000
        assert await client.set(key, value)
        assert (await client.get(key)).decode() == value
        assert await client.eval("return redis.call('STRLEN', KEYS[1])", 1, key) == len(
            value.encode()
        )
        pipe = client.pipeline(transaction=False)
        pipe.incrby(key + ":n", 2)
        pipe.incrbyfloat(key + ":n", 0.5)
        assert await pipe.execute() == [2, 2.5]
        await client.delete(key, key + ":n")
    finally:
        await client.aclose()
