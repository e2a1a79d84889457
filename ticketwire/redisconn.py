"""Open Redis connections with timeouts, so a hung Redis never hangs a request or a worker."""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError


class _HiredisPacking:
    """Pack commands with hiredis, in C, as redis-py's synchronous client already does.

    redis-py 5's asyncio connection packs in Python, re-joining its buffer once per argument:
    for a worker sending a script call of a dozen arguments per event, that was a tenth of its
    CPU. The bytes are the same; an argument of the wrong type is the same `DataError`.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        """The command in the Redis protocol, as one buffer."""
        # A command name with a space is several words (`SCRIPT LOAD`), as redis-py splits it.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(f"Invalid input in a Redis command: {exc}") from exc


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packing(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    if issubclass(cls, _HiredisPacking):
        return cls
    made = _PACKING.get(cls)
    if made is None:
        made = _PACKING[cls] = type(cls.__name__, (_HiredisPacking, cls), {"__module__": __name__})
    return made


def connect(url: str, *, timeout: float = 5.0) -> Redis:
    """Return a client for `url` with connect/read timeouts and periodic health checks."""
    client: Redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 2.0),
        health_check_interval=30,
    )
    # The URL chose TCP, TLS or a Unix socket; keep that class and only change how it packs.
    pool = client.connection_pool
    pool.connection_class = _packing(pool.connection_class)
    return client
