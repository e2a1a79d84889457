"""Which Redis a command reads: `REDIS_URL`, else that of the `ticketwire up` in the data directory.

A command run next to a local `up` (`capture`, `dlq`, `rules`) needs no configuration: it uses
that `up`'s Redis and, unless `TICKETWIRE_KEY_PREFIX` is set, its key prefix, and says so on
stderr (stdout stays the command's answer, `--json` included).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from urllib.parse import urlparse

from cli.localup import find_local_up
from ticketwire.config import Role, Settings
from ticketwire.errors import ConfigError


class Unconfigured(Exception):
    """A bad variable, or no Redis to use; the message says what to do."""


def command_settings(command: str, environ: Mapping[str, str], *, role: Role) -> Settings:
    """The settings `ticketwire COMMAND` runs with, its Redis included; `Unconfigured` if none."""
    try:
        settings = Settings.from_env(environ, role=role)
    except ConfigError as exc:
        raise Unconfigured(f"configuration error: {exc}") from None
    return with_redis(settings, command)


def redis_settings(command: str, environ: Mapping[str, str], *, role: Role) -> Settings | None:
    """`command_settings`, or None once stderr says why there are none."""
    try:
        settings = command_settings(command, environ, role=role)
    except Unconfigured as exc:
        print(f"ticketwire {command}: {exc}", file=sys.stderr)
        return None
    return settings


def with_redis(settings: Settings, command: str) -> Settings:
    """`settings` with the Redis (and key prefix) `ticketwire COMMAND` uses; `Unconfigured` if none."""
    if settings.redis_url:
        return settings
    up = find_local_up(settings.data_dir)
    if up is None:
        raise Unconfigured(
            "set REDIS_URL to the Redis ticketwire stores into (e.g. redis://host:6379/0), or "
            "run this where a `ticketwire up` runs: no `ticketwire up` runs in "
            f"{settings.data_dir.resolve()} (TICKETWIRE_DATA_DIR)"
        )
    prefix = settings.key_prefix if settings.key_prefix_configured else up.key_prefix
    print(
        f"ticketwire {command}: using the Redis of the `ticketwire up` running in {up.data_dir} "
        f"({safe_url(up.redis_url)}, key prefix {prefix}); set REDIS_URL for another",
        file=sys.stderr,
    )
    return dataclasses.replace(settings, redis_url=up.redis_url, key_prefix=prefix)


def safe_url(url: str) -> str:
    """`url` with any password replaced by `****`, fit to print."""
    p = urlparse(url)
    if p.password is None:
        return url
    # The netloc after its user part, as written: a Sentinel URL lists several host:port.
    hosts = p.netloc.rpartition("@")[2]
    user = f"{p.username}:****@" if p.username else ":****@"
    return p._replace(netloc=user + hosts).geturl()
