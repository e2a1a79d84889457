"""arq's Redis settings and job-queue pool for REDIS_URL, a `redis+sentinel://` one included.

arq builds a Sentinel pool itself, but gives the Sentinels no password and the master no
timeouts; for a Sentinel URL the pool is opened with ticketwire's own `connect` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from ticketwire.config import Settings
from ticketwire.redisconn import connect
from ticketwire.secret import Secret
from ticketwire.sentinelurl import is_sentinel_url, parse_sentinel_url


@dataclass
class SentinelRedisSettings(RedisSettings):
    """arq's settings for a `redis+sentinel://` URL, which `open_pool` connects with."""

    url: str = field(default="", repr=False)
    sentinel_password: Secret | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"SentinelRedisSettings(sentinels={self.host!r}, master={self.sentinel_master!r})"


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's `RedisSettings` for `settings.redis_url`."""
    assert settings.redis_url
    url = settings.redis_url
    if not is_sentinel_url(url):
        return RedisSettings.from_dsn(url)
    target = parse_sentinel_url(url)
    return SentinelRedisSettings(
        host=list(target.sentinels),
        sentinel=True,
        sentinel_master=target.service,
        database=target.db,
        url=url,
        sentinel_password=settings.sentinel_password,
    )


async def open_pool(settings: RedisSettings, **options: Any) -> ArqRedis:
    """arq's job-queue pool (`create_pool`'s options), checked with a PING."""
    if not isinstance(settings, SentinelRedisSettings):
        return await create_pool(settings, **options)
    pool = connect(settings.url, sentinel_password=settings.sentinel_password, redis_class=ArqRedis)
    pool.job_serializer = options.get("job_serializer")
    pool.job_deserializer = options.get("job_deserializer")
    pool.default_queue_name = options["default_queue_name"]
    pool.expires_extra_ms = options["expires_extra_ms"]
    try:
        await pool.ping()
    except BaseException:
        await pool.aclose()
        raise
    return pool
