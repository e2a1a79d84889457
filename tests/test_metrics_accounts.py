"""A named account's deliveries and API calls are counted under its `account` label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from simulator.inboxops import InboxOpsSimulator
from tests.conftest import wait_for
from tests.stack import running_worker, settled
from tests.test_accounts_end_to_end import START, sims, stack
from ticketwire.keys import Keys

__all__ = ["sims"]

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape() -> Series:
    """Every sample the process exposes, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def count(got: Series, name: str, **labels: str) -> float:
    return got.get((name, frozenset(labels.items())), 0.0)


async def test_each_accounts_series_carry_its_name(
    aiohttp_server: Any,
    redis: Redis,
    redis_url: str,
    keys: Keys,
    sims: dict[str, InboxOpsSimulator],
    tmp_path: Path,
) -> None:
    a = sims["brand-a"]
    settings = await stack(aiohttp_server, redis, redis_url, keys, sims, tmp_path, START)
    stored = {"vendor": "inboxops", "outcome": "stored", "status": "202"}
    patched = {"vendor": "inboxops", "endpoint": "update", "status": "200"}
    before = scrape()
    ticket = a.create_ticket(subject="counted", priority="low")
    async with running_worker(settings):
        a.change_ticket(ticket["id"], priority="urgent")
        await wait_for(
            lambda: a.ticket(ticket["id"])["status"] == "in_progress", message="written back"
        )
        await a.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="every delivery handled")
    after = scrape()

    def added(name: str, account: str, labels: dict[str, str]) -> float:
        return count(after, name, account=account, **labels) - count(
            before, name, account=account, **labels
        )

    deliveries = "ticketwire_deliveries_total"
    assert added(deliveries, "brand-a", stored) == len(a.deliveries) >= 2
    assert added("ticketwire_api_calls_total", "brand-a", patched) == 1
    # Nothing of brand-a's is counted under brand-b's name, nor the default account's.
    for other in ("brand-b", "default"):
        assert added(deliveries, other, stored) == 0
        assert added("ticketwire_api_calls_total", other, patched) == 0
