"""Write-back against the simulators over HTTP and real Redis: batching, coalescing, one budget.

Two `Outbox`es in one test stand for two worker processes: each has its own HTTP client and
its own `RateBudget` object, and they share only Redis, exactly as separate processes do.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.stack import outbox_empty, running_worker, stack_settings
from tests.test_end_to_end import start_receiver, write_rules
from ticketwire.calls import ApiCall
from ticketwire.keys import Keys
from ticketwire.ratebudget import RateBudget, parse_limits
from ticketwire.secret import Secret
from ticketwire.vendors import registry
from ticketwire.vendors.cstar.batching import spec as cstar_spec
from ticketwire.vendors.cstar.client import CStarClient
from ticketwire.vendors.inboxops.batching import spec as inboxops_spec
from ticketwire.vendors.inboxops.client import InboxOpsClient
from workers.outbox import Outbox, OutboxPolicy

SPECS = {"inboxops": inboxops_spec(), "cstar": cstar_spec()}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def started_sim(**config: Any) -> InboxOpsSimulator:
    sim = InboxOpsSimulator(SimulatorConfig(seed=11, **config))
    await sim.start()
    return sim


def outbox(
    redis: Redis,
    keys: Keys,
    client: Any,
    owner: str,
    *,
    limits: str = "",
    max_wait_s: float = 2.0,
    **policy: Any,
) -> Outbox:
    client.budget = RateBudget(
        redis, keys.prefix, f"{client.vendor}:acct", parse_limits(limits), max_wait_s=max_wait_s
    )
    defaults: dict[str, Any] = {"window_s": 0.05, "backoff_base_s": 0.05, "poll_s": 0.02}
    return Outbox(
        redis,
        keys,
        {client.vendor: client},
        owner=owner,
        specs=SPECS,
        policy=OutboxPolicy(**{**defaults, **policy}),
    )


def patch(ticket: dict[str, Any], body: dict[str, Any], event: str) -> ApiCall:
    tid = ticket["id"]
    return ApiCall("inboxops", "PATCH", f"/tickets/{tid}", body, tid, ("rule",), event)


def key(ticket_id: str) -> str:
    return f"inboxops:ws:{ticket_id}"


def api(sim: InboxOpsSimulator, method: str, part: str = "") -> list[Any]:
    return [e for e in sim.journal if e.method == method and part in e.path]


async def test_a_thousand_tickets_needing_one_tag_cost_ten_bulk_calls(
    aiohttp_server, redis: Redis, redis_url: str, keys: Keys, tmp_path
):
    sim = await started_sim(rate_limit_per_minute=100, time_scale=1.0)
    try:
        vip = sim.create_tag("bulk-batch-test")
        rules = write_rules(
            tmp_path,
            f"name: tag-new\nvendor: inboxops\nevents: [ticket.created]\n"
            f'then:\n  - add_tags: ["{vip["id"]}"]\n',
        )
        # A window long enough that the simulator's webhook sender (not the worker) sets the
        # pace of arrivals; the default 300 ms batches as well when deliveries come fast.
        settings = stack_settings(redis_url, keys, sim, rules, coalesce_window_s=1.0)
        await start_receiver(aiohttp_server, settings, redis, sim)
        async with running_worker(settings):
            tickets = sim.seed_tickets(1000)

            def tagged() -> bool:
                return all(
                    vip["id"] in [t["id"] for t in sim.ticket(x["id"], ["tags"])["tags"]]
                    for x in tickets
                )

            await wait_for(tagged, timeout=60, message="every ticket tagged")
            await wait_for(lambda: outbox_empty(redis, keys), message="outbox drained")
        bulk = api(sim, "POST", "/tickets/bulk")
        assert len(bulk) == math.ceil(1000 / 100)
        assert [e.status for e in bulk] == [200] * 10
        assert sorted(i for e in bulk for i in e.body["ticket_ids"]) == sorted(
            t["id"] for t in tickets
        )
        # The tag's own webhooks came back: the planner saw the tag and sent nothing more.
        assert not api(sim, "PATCH")
    finally:
        await sim.stop()


async def test_events_of_one_ticket_within_the_window_become_one_patch(
    redis: Redis, keys: Keys, session
):
    sim = await started_sim(rate_limit_per_minute=None)
    try:
        client = InboxOpsClient(session, sim.url, Secret(sim.api_key))
        box = outbox(redis, keys, client, "w1", window_s=0.5)
        ticket = sim.create_ticket(subject="merge me")
        await box.submit(key(ticket["id"]), "e1", [patch(ticket, {"priority": "high"}, "e1")])
        await box.submit(key(ticket["id"]), "e2", [patch(ticket, {"status": "waiting"}, "e2")])
        await box.submit(key(ticket["id"]), "e3", [patch(ticket, {"priority": "urgent"}, "e3")])
        # A re-run of an event that was already planned adds nothing.
        await box.submit(key(ticket["id"]), "e1", [patch(ticket, {"priority": "high"}, "e1")])
        box.start()
        await wait_for(lambda: outbox_empty(redis, keys), message="outbox drained")
        await box.stop()
        [sent] = api(sim, "PATCH", ticket["id"])
        assert sent.body == {"priority": "urgent", "status": "waiting"}
        assert sim.ticket(ticket["id"])["priority"] == "urgent"
    finally:
        await sim.stop()


def _most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_two_workers_sharing_one_budget_never_exceed_it(redis: Redis, keys: Keys, session):
    sim = await started_sim(rate_limit_per_minute=10, rate_limit_window_seconds=1.0, time_scale=1.0)
    try:
        boxes = [
            outbox(
                redis,
                keys,
                InboxOpsClient(session, sim.url, Secret(sim.api_key)),
                f"w{n}",
                limits="10/1s",
                max_wait_s=0.05,
                claim_limit=3,
            )
            for n in (1, 2)
        ]
        tickets = [sim.create_ticket(subject=f"t{i}") for i in range(40)]
        for i, ticket in enumerate(tickets):
            # A different custom value per ticket: nothing to batch, 40 requests to pace.
            body = {"custom_fields": {"score": i}}
            await boxes[i % 2].submit(key(ticket["id"]), f"e{i}", [patch(ticket, body, f"e{i}")])
        for box in boxes:
            box.start()
        await wait_for(lambda: outbox_empty(redis, keys), timeout=30, message="outbox drained")
        sent = [box.counters["api_calls"] for box in boxes]
        for box in boxes:
            await box.stop()
        patches = api(sim, "PATCH")
        assert [e.status for e in patches] == [200] * 40, "the simulator answered 429"
        at = [e.at.timestamp() for e in patches]
        assert _most_in_any_window(at, 1.0) <= 10
        assert all(n > 0 for n in sent), f"both workers sent requests: {sent}"
        assert sum(sent) == 40
    finally:
        await sim.stop()


async def test_a_429_pauses_every_worker_until_retry_after(redis: Redis, keys: Keys, session):
    sim = await started_sim(rate_limit_per_minute=None, time_scale=1.0)
    try:
        boxes = [
            outbox(
                redis,
                keys,
                InboxOpsClient(session, sim.url, Secret(sim.api_key)),
                f"w{n}",
                claim_limit=1,
                concurrency=1,
            )
            for n in (1, 2)
        ]
        tickets = [sim.create_ticket(subject=f"t{i}") for i in range(10)]
        sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 429, retry_after=2)
        for i, ticket in enumerate(tickets):
            body = {"custom_fields": {"score": i}}
            await boxes[i % 2].submit(key(ticket["id"]), f"e{i}", [patch(ticket, body, f"e{i}")])
        for box in boxes:
            box.start()
        await wait_for(lambda: outbox_empty(redis, keys), timeout=30, message="outbox drained")
        sent = [box.counters["api_calls"] for box in boxes]
        for box in boxes:
            await box.stop()
        patches = api(sim, "PATCH")
        [limited] = [e for e in patches if e.status == 429]
        after = [e.at - limited.at for e in patches if e.at > limited.at]
        # Only a request already in flight when the 429 came back may land right after it.
        quiet = [d for d in after if timedelta(seconds=0.2) < d < timedelta(seconds=1.9)]
        assert quiet == [], "a worker sent during the pause"
        assert len([e for e in patches if e.status == 200]) == 10
        assert all(n > 0 for n in sent), f"both workers resumed: {sent}"
    finally:
        await sim.stop()


async def test_a_bulk_partial_failure_is_retried_for_the_failed_id_only(
    redis: Redis, keys: Keys, session
):
    sim = CStarSimulator(CStarSimulatorConfig(seed=5))
    await sim.start()
    try:
        client = CStarClient(session, sim.url, sim.team_id, Secret(sim.api_key))
        box = outbox(redis, keys, client, "w1", backoff_base_s=0.5)
        tickets = [sim.create_ticket(title=f"t{i}") for i in range(3)]
        flaky = tickets[1]["id"]
        sim.faults.fail_bulk_ids([flaky], "api_error")
        for i, t in enumerate(tickets):
            body = {
                "action": "update",
                "resource": "tickets",
                "ids": [t["id"]],
                "data": {"status": "closed"},
            }
            call = ApiCall("cstar", "POST", "/bulk", body, t["id"], ("close",), f"e{i}")
            await box.submit(f"cstar:team:{t['id']}", f"e{i}", [call])
        box.start()

        def bulk_calls() -> list[Any]:
            return [e for e in sim.journal if e.method == "POST" and e.path.endswith("/bulk")]

        await wait_for(lambda: len(bulk_calls()) == 1, message="first bulk call")
        sim.faults.clear()
        await wait_for(lambda: outbox_empty(redis, keys), timeout=20, message="outbox drained")
        await box.stop()
        first, second = bulk_calls()
        assert sorted(first.body["ids"]) == sorted(t["id"] for t in tickets)
        assert second.body["ids"] == [flaky]
        assert all(sim.ticket(t["id"])["status"] == "closed" for t in tickets)
        assert await redis.xlen(keys.dlq) == 0
    finally:
        await sim.stop()


def test_budget_scopes_name_the_account_never_the_key():
    from ticketwire.config import Settings

    settings = Settings.from_env(
        {
            "INBOXOPS_API_URL": "http://x",
            "INBOXOPS_API_KEY": "ixk_secret_value",
            "CSTAR_TEAM_ID": "team-1",
            "CSTAR_API_KEY": "sk_test_abc",
        },
        role="check",
    )
    scopes = registry.budget_scopes(settings)
    assert set(scopes) == {"inboxops", "cstar"}
    assert all("secret" not in s and "sk_test" not in s for s, _ in scopes.values())
    assert scopes["cstar"][0].startswith("cstar:team-1:")
