"""Open Redis connections with timeouts, so a hung Redis never hangs a request or a worker."""

from __future__ import annotations

from redis.asyncio import Redis


def connect(url: str, *, timeout: float = 5.0) -> Redis:
    """Return a client for `url` with connect/read timeouts and periodic health checks."""
    client: Redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 2.0),
        health_check_interval=30,
    )
    return client
