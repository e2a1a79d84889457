"""Two InboxOps workspaces as two accounts: receiver → worker → each write-back to its own API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from receiver.app import create_app, vendor_intakes
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.stack import running_worker, settled, stack_settings
from tests.test_end_to_end import ESCALATE
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.ratebudget import Limit
from ticketwire.secret import Secret
from ticketwire.vendors import registry
from ticketwire.vendors.inboxops.settings import InboxOpsSettings

SECRETS = {"brand-a": "whsec_brand_a_e2e", "brand-b": "whsec_brand_b_e2e"}

#: The shared escalation rule, without its tag (tag ids differ between the two workspaces).
START = ESCALATE.replace('  - add_tags: ["{tag}"]\n', "")
assert "add_tags" not in START


@pytest.fixture
async def sims() -> AsyncIterator[dict[str, InboxOpsSimulator]]:
    out = {
        name: InboxOpsSimulator(
            SimulatorConfig(seed=seed, rate_limit_per_minute=None, time_scale=0.001)
        )
        for name, seed in (("brand-a", 11), ("brand-b", 12))
    }
    for s in out.values():
        await s.start()
    yield out
    for s in out.values():
        await s.stop()


async def stack(
    aiohttp_server: Any,
    redis: Redis,
    redis_url: str,
    keys: Keys,
    sims: dict[str, InboxOpsSimulator],
    tmp_path: Path,
    rules: str,
    limits: dict[str, tuple[Limit, ...]] | None = None,
) -> Settings:
    """Settings naming both workspaces as accounts, and a receiver each simulator posts to."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yml").write_text(rules)
    # No default account: every event comes through a named account's route.
    settings = stack_settings(
        redis_url,
        keys,
        sims["brand-a"],
        rules_dir,
        vendors={},
        named_accounts={
            "inboxops": {
                name: InboxOpsSettings(
                    webhook_secrets=(Secret(SECRETS[name]),),
                    api_url=sim.url,
                    api_key=Secret(sim.api_key),
                    **({"rate_limits": limits[name]} if limits and name in limits else {}),
                )
                for name, sim in sims.items()
            }
        },
    )
    server = await aiohttp_server(create_app(settings, redis, vendor_intakes(settings)))
    for name, sim in sims.items():
        sim.add_endpoint(str(server.make_url(f"/webhooks/inboxops/{name}")), SECRETS[name])
    return settings


async def escalate_each(
    sims: dict[str, InboxOpsSimulator], tickets: dict[str, Any], redis: Redis, keys: Keys
) -> None:
    """Make each workspace's ticket urgent; wait until each is started and all is handled."""
    for name, sim in sims.items():
        sim.change_ticket(tickets[name]["id"], priority="urgent")
    for name, sim in sims.items():
        tid = tickets[name]["id"]
        await wait_for(
            lambda sim=sim, tid=tid: sim.ticket(tid)["status"] == "in_progress",
            message=f"{name}'s ticket updated",
        )
    for s in sims.values():
        await s.wait_deliveries_idle()
    await wait_for(lambda: settled(redis, keys), message="all deliveries handled")


def patched(sim: InboxOpsSimulator) -> list[str]:
    return [e.path.rsplit("/", 1)[-1] for e in sim.journal if e.method == "PATCH"]


async def test_each_write_back_reaches_the_workspace_its_event_came_from(
    aiohttp_server, redis, redis_url, keys, sims, tmp_path
):
    a, b = sims["brand-a"], sims["brand-b"]
    assert a.api_key != b.api_key
    settings = await stack(aiohttp_server, redis, redis_url, keys, sims, tmp_path, START)
    tickets = {name: sim.create_ticket(subject=name, priority="low") for name, sim in sims.items()}
    async with running_worker(settings):
        await escalate_each(sims, tickets, redis, keys)
    # Each workspace saw exactly its own ticket's write-back, with its own key.
    assert patched(a) == [tickets["brand-a"]["id"]]
    assert patched(b) == [tickets["brand-b"]["id"]]


async def test_a_429_pauses_only_its_own_account(
    aiohttp_server, redis, redis_url, keys, sims, tmp_path
):
    a, b = sims["brand-a"], sims["brand-b"]
    settings = await stack(aiohttp_server, redis, redis_url, keys, sims, tmp_path, START)
    scopes = registry.budget_scopes(settings)
    scope_a, scope_b = scopes["inboxops@brand-a"][0], scopes["inboxops@brand-b"][0]
    assert scope_a != scope_b
    a.faults.fail_next("PATCH", "/api/v1/tickets/*", 429, retry_after=60)
    tickets = {name: sim.create_ticket(subject=name, priority="low") for name, sim in sims.items()}
    async with running_worker(settings):
        a.change_ticket(tickets["brand-a"]["id"], priority="urgent")
        await wait_for(
            lambda: [e for e in a.journal if e.method == "PATCH" and e.status == 429],
            message="brand-a answered 429",
        )
        b.change_ticket(tickets["brand-b"]["id"], priority="urgent")
        await wait_for(
            lambda: b.ticket(tickets["brand-b"]["id"])["status"] == "in_progress",
            message="brand-b written while brand-a waits",
        )
        assert await redis.exists(f"{keys.prefix}budget:{scope_a}:paused")
        assert not await redis.exists(f"{keys.prefix}budget:{scope_b}:paused")
        assert a.ticket(tickets["brand-a"]["id"])["status"] == "open"


async def test_an_exhausted_budget_holds_only_its_own_account(
    aiohttp_server, redis, redis_url, keys, sims, tmp_path
):
    a, b = sims["brand-a"], sims["brand-b"]
    # brand-a may send one request an hour: its second write-back must wait for the budget.
    hourly = {"brand-a": (Limit("all", 1, 3600.0),)}
    settings = await stack(aiohttp_server, redis, redis_url, keys, sims, tmp_path, START, hourly)
    first, second = (a.create_ticket(subject=f"a{n}", priority="low") for n in (1, 2))
    other = b.create_ticket(subject="b", priority="low")
    async with running_worker(settings):
        a.change_ticket(first["id"], priority="urgent")
        await wait_for(
            lambda: a.ticket(first["id"])["status"] == "in_progress",
            message="brand-a's one request of the hour",
        )
        a.change_ticket(second["id"], priority="urgent")
        await wait_for(
            lambda: redis.zcard(keys.wb_due), message="brand-a's second write-back queued"
        )
        b.change_ticket(other["id"], priority="urgent")
        await wait_for(
            lambda: b.ticket(other["id"])["status"] == "in_progress",
            message="brand-b written while brand-a's budget is spent",
        )
        # brand-a was never asked more than its budget allows: the wait was ours, not a 429.
        assert patched(a) == [first["id"]]
        assert not [e for e in a.journal if e.status == 429]
        assert a.ticket(second["id"])["status"] == "open"

        async def only_a_queued() -> bool:
            # brand-b's entry goes once its call is settled, a moment after the simulator saw it.
            return await redis.zcard(keys.wb_due) == 1

        await wait_for(only_a_queued, message="brand-a's write-back still queued, alone")
        assert patched(a) == [first["id"]]


async def test_a_rule_pinned_to_one_account_runs_on_its_events_only(
    aiohttp_server, redis, redis_url, keys, sims, tmp_path
):
    a, b = sims["brand-a"], sims["brand-b"]
    pinned = START.replace("events:", "accounts: [brand-b]\nevents:")
    settings = await stack(aiohttp_server, redis, redis_url, keys, sims, tmp_path, pinned)
    tickets = {name: sim.create_ticket(subject=name, priority="low") for name, sim in sims.items()}
    async with running_worker(settings):
        for name, sim in sims.items():
            sim.change_ticket(tickets[name]["id"], priority="urgent")
        await wait_for(
            lambda: b.ticket(tickets["brand-b"]["id"])["status"] == "in_progress",
            message="brand-b's ticket updated",
        )
        for s in sims.values():
            await s.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all deliveries handled")
    assert a.ticket(tickets["brand-a"]["id"])["status"] == "open"
    assert patched(a) == []


async def test_each_accounts_deliveries_are_stored_and_handled_in_its_own_lane(
    aiohttp_server, redis, redis_url, keys, sims, tmp_path
):
    settings = await stack(aiohttp_server, redis, redis_url, keys, sims, tmp_path, START)
    tickets = {name: sim.create_ticket(subject=name, priority="low") for name, sim in sims.items()}
    async with running_worker(settings):
        await escalate_each(sims, tickets, redis, keys)
    stored = {
        lane: sum([await redis.xlen(keys.stream(p, lane)) for p in range(settings.partitions)])
        for lane in ("", "inboxops@brand-a", "inboxops@brand-b")
    }
    # No default account here: nothing in the shared lane, each workspace's in its own.
    assert stored[""] == 0
    assert stored["inboxops@brand-a"] >= 1 and stored["inboxops@brand-b"] >= 1
    assert await redis.smembers(keys.lanes) == {b"inboxops@brand-a", b"inboxops@brand-b"}
