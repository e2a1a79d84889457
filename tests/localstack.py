"""A stand-in for a running `ticketwire up`: a real receiver on the test Redis, its lock and
`up.json` published in a data directory, and the CLI run as a real process against it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from cli.localup import DataDirLock, LocalUp
from receiver.app import create_app, vendor_intakes
from tests.procs import ROOT
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors.cstar.settings import CStarSettings
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.thena.settings import ThenaSettings

#: The local up's secrets: every delivery signed otherwise is refused with 401.
UP_SECRETS = {"inboxops": "whsec_up_io", "cstar": "whsec_up_cs", "thena": "tok_up_th"}


def receiver_settings(
    keys: Keys,
    secrets: Mapping[str, str],
    redis_url: str,
    accounts: Mapping[str, str] | None = None,
) -> Settings:
    """A receiver accepting all three helpdesks, each with one secret.

    `accounts` adds named InboxOps accounts: account name → its one webhook secret.
    """
    named = {
        name: InboxOpsSettings(webhook_secrets=(Secret(secret),))
        for name, secret in (accounts or {}).items()
    }
    return Settings(
        redis_url=redis_url,
        key_prefix=keys.prefix,
        partitions=4,
        vendors={
            "inboxops": InboxOpsSettings(webhook_secrets=(Secret(secrets["inboxops"]),)),
            "cstar": CStarSettings(webhook_secrets=(Secret(secrets["cstar"]),)),
            "thena": ThenaSettings(webhook_secrets=(Secret(secrets["thena"]),)),
        },
        named_accounts={"inboxops": named} if named else {},
    )


async def serve(aiohttp_server: Any, settings: Settings, redis: Redis) -> str:
    """Start a real receiver on loopback; its `/webhooks` base URL."""
    server = await aiohttp_server(create_app(settings, redis, vendor_intakes(settings)))
    return str(server.make_url("/webhooks"))


@dataclass
class LocalStack:
    """A receiver published as the local `up` of `data_dir`."""

    data_dir: Path
    receiver_url: str
    redis_url: str
    keys: Keys
    simulators: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a command run next to that `up`."""
        mine = {
            "TICKETWIRE_DATA_DIR": str(self.data_dir),
            "TICKETWIRE_KEY_PREFIX": self.keys.prefix,
        }
        return cli_env(**{**mine, **extra})

    async def run(self, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
        """Run `ticketwire ARGS…` next to that `up`; its exit status, stdout and stderr."""
        return await run_cli(*args, env=env if env is not None else self.env())


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without REDIS_URL or webhook secrets, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "REDIS_URL" and not k.endswith("_WEBHOOK_SECRETS")
    }
    env.update(extra)
    return env


async def run_cli(*args: str, env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run `ticketwire ARGS…` as a process; its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        cwd=ROOT,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def local_up(
    tmp_path: Path,
    aiohttp_server: Any,
    redis: Redis,
    redis_url: str,
    keys: Keys,
    *,
    simulators: Mapping[str, str] | None = None,
    accounts: Mapping[str, str] | None = None,
) -> AsyncIterator[LocalStack]:
    """Publish a real receiver as the running `up` of `tmp_path/data`, for the test's length.

    `accounts`: named InboxOps accounts the receiver and the published `up` know, with secrets.
    """
    settings = receiver_settings(keys, UP_SECRETS, redis_url, accounts)
    url = await serve(aiohttp_server, settings, redis)
    data_dir = tmp_path / "data"
    lock = DataDirLock(data_dir)
    lock.acquire()
    lock.publish(
        LocalUp(
            data_dir=str(data_dir),
            pid=os.getpid(),
            receiver_url=url,
            redis_url=redis_url,
            webhook_secrets=dict(UP_SECRETS),
            account_secrets={f"inboxops@{n}": s for n, s in (accounts or {}).items()},
            simulators=dict(simulators or {}),
            key_prefix=keys.prefix,
        )
    )
    try:
        yield LocalStack(data_dir, url, redis_url, keys, dict(simulators or {}))
    finally:
        lock.release()


async def stored(redis: Redis, keys: Keys, partitions: int = 4) -> list[dict[bytes, bytes]]:
    """Every stored delivery's stream fields, over all partitions."""
    out = []
    for p in range(partitions):
        out.extend(fields for _, fields in await redis.xrange(keys.stream(p)))
    return out
