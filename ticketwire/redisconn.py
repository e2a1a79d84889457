"""Open Redis connections with timeouts, so a hung Redis never hangs a request or a worker.

A `redis+sentinel://` URL is served by redis-py's Sentinel client: each new connection asks the
Sentinels for the current master, and one to a master that was demoted since raises a
`ConnectionError` (redis-py turns its READONLY answer into one), as a lost Redis does.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import DataError

from ticketwire.secret import Secret
from ticketwire.sentinelurl import is_sentinel_url, parse_sentinel_url

R = TypeVar("R", bound=Redis)


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


@overload
def connect(
    url: str, *, timeout: float = 5.0, sentinel_password: Secret | None = None
) -> Redis: ...


@overload
def connect(
    url: str, *, timeout: float = 5.0, sentinel_password: Secret | None = None, redis_class: type[R]
) -> R: ...


def connect(
    url: str,
    *,
    timeout: float = 5.0,
    sentinel_password: Secret | None = None,
    redis_class: type[Redis] = Redis,
) -> Redis:
    """Return a client for `url` with connect/read timeouts and periodic health checks.

    `sentinel_password` is the Sentinels' own, for a `redis+sentinel://` URL whose Sentinels
    require one; `redis_class` the client class (arq's pool is an `ArqRedis`).
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(timeout, 2.0),
        "health_check_interval": 30,
    }
    if is_sentinel_url(url):
        client = _master_client(url, options, sentinel_password, redis_class)
    else:
        client = redis_class.from_url(url, **options)
    # The URL chose TCP, TLS or a Unix socket; keep that class and only change how it packs.
    pool = client.connection_pool
    pool.connection_class = _packing(pool.connection_class)
    return client


def _master_client(
    url: str, options: dict[str, Any], sentinel_password: Secret | None, redis_class: type[R]
) -> R:
    target = parse_sentinel_url(url)
    sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    if sentinel_password is not None:
        sentinel_options["password"] = sentinel_password.reveal()
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    client: R = sentinel.master_for(
        target.service,
        redis_class=_closing_sentinels(redis_class),
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    client._ticketwire_sentinel = sentinel  # type: ignore[attr-defined]
    return client


_CLOSING: dict[type[Redis], type[Redis]] = {}


def _closing_sentinels(cls: type[R]) -> type[R]:
    """`cls` whose `aclose` closes the connections to the Sentinels too."""
    made = _CLOSING.get(cls)
    if made is None:

        async def aclose(self: Redis, close_connection_pool: bool | None = None) -> None:
            await cls.aclose(self, close_connection_pool)
            for s in self._ticketwire_sentinel.sentinels:  # type: ignore[attr-defined]
                await s.aclose()

        made = _CLOSING[cls] = type(cls.__name__, (cls,), {"aclose": aclose})
    return made  # type: ignore[return-value]
