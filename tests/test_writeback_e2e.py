"""Write-back against the simulators over HTTP and real Redis: batching, coalescing, one budget.

Two `Outbox`es in one test stand for two worker processes: each has its own HTTP client and
its own `RateBudget` object, and they share only Redis, exactly as separate processes do.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
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
from ticketwire.vendors.thena.batching import spec as thena_spec
from ticketwire.vendors.thena.client import ThenaClient
from ticketwire.writeback import Pending
from workers.outbox import Outbox, OutboxPolicy

SPECS = {"inboxops": inboxops_spec(), "cstar": cstar_spec(), "thena": thena_spec()}


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
        # The deliveries are all stored before the worker starts, and the window outlasts the
        # worker's pass over them however busy the machine is: every write-back is queued
        # before the first is due, so the batches are full ones whatever the pace of arrivals.
        settings = stack_settings(redis_url, keys, sim, rules, coalesce_window_s=3.0)
        await start_receiver(aiohttp_server, settings, redis, sim)
        tickets = sim.seed_tickets(1000)

        async def stored() -> bool:
            lengths = [await redis.xlen(keys.stream(p)) for p in range(settings.partitions)]
            return sum(lengths) >= 1000

        await wait_for(stored, timeout=60, message="every delivery stored")
        async with running_worker(settings):

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


@pytest.fixture
async def cstar(session) -> AsyncIterator[tuple[CStarSimulator, CStarClient]]:
    """A cStar simulator and a client of its team."""
    sim = CStarSimulator(CStarSimulatorConfig(seed=6))
    await sim.start()
    try:
        yield sim, CStarClient(session, sim.url, sim.team_id, Secret(sim.api_key))
    finally:
        await sim.stop()


def cstar_bulk(ticket_id: str, event: str, data: dict[str, Any]) -> ApiCall:
    body = {"action": "update", "resource": "tickets", "ids": [ticket_id], "data": data}
    return ApiCall("cstar", "POST", "/bulk", body, ticket_id, ("close",), event)


async def test_a_bulk_call_with_a_transient_and_a_permanent_failure_decides_each_id(
    redis: Redis, keys: Keys, cstar: tuple[CStarSimulator, CStarClient]
):
    # README: "each failed id is retried alone (transient codes) or dead-lettered alone".
    sim, client = cstar
    box = outbox(redis, keys, client, "w1", backoff_base_s=0.5)
    tickets = [sim.create_ticket(title=f"t{i}") for i in range(2)]
    flaky, gone = tickets[1]["id"], "tkt_deleted_meanwhile"
    sim.faults.fail_bulk_ids([flaky], "api_error")
    for i, ticket_id in enumerate([tickets[0]["id"], flaky, gone]):
        call = cstar_bulk(ticket_id, f"e{i}", {"status": "closed"})
        await box.submit(f"cstar:team:{ticket_id}", f"e{i}", [call])
    box.start()

    def bulk_calls() -> list[Any]:
        return [e for e in sim.journal if e.method == "POST" and e.path.endswith("/bulk")]

    await wait_for(lambda: len(bulk_calls()) == 1, message="first bulk call")
    sim.faults.clear()
    await wait_for(lambda: outbox_empty(redis, keys), timeout=20, message="outbox drained")
    await box.stop()
    first, second = bulk_calls()
    assert sorted(first.body["ids"]) == sorted([tickets[0]["id"], flaky, gone])
    # The transient id alone went again; the permanent one did not.
    assert second.body["ids"] == [flaky]
    assert all(sim.ticket(t["id"])["status"] == "closed" for t in tickets)
    [letter] = await redis.xrange(keys.dlq)
    fields = letter[1]
    assert fields[b"ticket"] == f"cstar:team:{gone}".encode()
    assert b"resource_missing" in fields[b"reason"] and b"not retried" in fields[b"reason"]
    assert json.loads(fields[b"call"])["body"]["ids"] == [gone]


async def test_a_thena_skip_dead_letters_that_ticket_alone(redis: Redis, keys: Keys, session):
    # Thena's bulk update answers `{"updated":[{"id","title"}],"skipped":[{"id","reason"}]}`.
    sim = ThenaSimulator(ThenaSimulatorConfig(seed=9))
    await sim.start()
    try:
        client = ThenaClient(session, sim.url, api_key=Secret(sim.api_key))
        box = outbox(redis, keys, client, "w1")
        mine = sim.create_ticket(title="mine")
        other = sim.create_ticket(title="other team", teamId=sim.other_team_id)
        closed = sim.status_id("Closed")
        for i, t in enumerate([mine, other]):
            call = ApiCall("thena", "PATCH", f"/tickets/{t['id']}", {"statusId": closed}, t["id"])
            await box.submit(f"thena:org:{t['id']}", f"e{i}", [call])
        box.start()
        await wait_for(lambda: outbox_empty(redis, keys), timeout=20, message="outbox drained")
        await box.stop()
        [bulk] = [e for e in sim.journal if e.method == "PATCH"]
        assert sorted(bulk.body["ticketIds"]) == sorted([mine["id"], other["id"]])
        assert sim.ticket(mine["id"])["status"] == "Closed"
        [(_, fields)] = await redis.xrange(keys.dlq)
        assert fields[b"ticket"] == f"thena:org:{other['id']}".encode()
        assert b"not a status of team" in fields[b"reason"] and b"not retried" in fields[b"reason"]
        # The letter keeps the ticket's own call, as planned, not the bulk call it rode in.
        assert json.loads(fields[b"call"])["path"] == f"/tickets/{other['id']}"
    finally:
        await sim.stop()


async def queued_retry(redis: Redis, keys: Keys, ticket_key: str) -> tuple[float, Any]:
    """A ticket's not-before time in the due set, and the one failed attempt of its queued call."""
    due = await redis.zscore(keys.wb_due, ticket_key)
    [raw] = await redis.lrange(keys.outbox(ticket_key), 0, -1)
    [attempt] = Pending.from_json(raw).attempts
    assert due is not None
    return due, attempt


FAILURES = {
    # A slow answer beyond the client's timeout: the failure is known only at the timeout's end.
    "timeout": {"status": 200, "delay": 1.0, "timeout": 0.4, "known_after": 0.4},
    "5xx": {"status": 503, "delay": 0.4, "timeout": 3.0, "known_after": 0.4},
    "429": {"status": 429, "delay": 0.4, "timeout": 3.0, "known_after": 0.4, "retry_after": 1},
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_retry_waits_its_backoff_from_when_the_failure_was_known(
    redis: Redis, keys: Keys, session, failure: str
):
    f = FAILURES[failure]
    sim = await started_sim(rate_limit_per_minute=None, time_scale=1.0)
    try:
        client = InboxOpsClient(session, sim.url, Secret(sim.api_key), timeout=f["timeout"])
        box = outbox(redis, keys, client, "w1", window_s=0, backoff_base_s=1.0)
        ticket = sim.create_ticket(subject="slow")
        sim.faults.fail_next(
            "PATCH",
            "/api/v1/tickets/*",
            f["status"],
            delay=f["delay"],
            retry_after=f.get("retry_after"),
        )
        await box.submit(key(ticket["id"]), "e1", [patch(ticket, {"priority": "high"}, "e1")])
        sent_ms = time.time() * 1000
        assert await box.flush_once() == 1
        due, attempt = await queued_retry(redis, keys, key(ticket["id"]))
        wait_ms = 1000 * (f.get("retry_after") or 1.0)  # Retry-After, or the first backoff
        # The attempt is recorded when its failure was known, and the retry waits from then.
        assert attempt["at"] >= sent_ms + 1000 * f["known_after"]
        assert due >= attempt["at"] + wait_ms
        assert due >= sent_ms + 1000 * f["known_after"] + wait_ms
    finally:
        await sim.stop()


async def test_a_bulk_id_retried_alone_waits_its_backoff_from_the_answer(
    redis: Redis, keys: Keys, cstar: tuple[CStarSimulator, CStarClient]
):
    sim, client = cstar
    box = outbox(redis, keys, client, "w1", window_s=0, backoff_base_s=1.0)
    tickets = [sim.create_ticket(title=f"t{i}") for i in range(2)]
    flaky = tickets[1]["id"]
    sim.faults.fail_bulk_ids([flaky], "api_error")
    sim.faults.fail_next("POST", "/bulk", 200, delay=0.4)
    for i, t in enumerate(tickets):
        call = cstar_bulk(t["id"], f"e{i}", {"status": "closed"})
        await box.submit(f"cstar:team:{t['id']}", f"e{i}", [call])
    sent_ms = time.time() * 1000
    assert await box.flush_once() == 2
    due, attempt = await queued_retry(redis, keys, f"cstar:team:{flaky}")
    assert attempt["at"] >= sent_ms + 400
    assert due >= attempt["at"] + 1000


async def test_a_retry_does_not_ride_along_early_on_a_due_bulk_call(
    redis: Redis, keys: Keys, cstar: tuple[CStarSimulator, CStarClient]
):
    sim, client = cstar
    # The claim looks 5 s ahead for tickets to batch with: a retry due in 2 s is in reach.
    box = outbox(redis, keys, client, "w1", window_s=5.0, backoff_base_s=2.0)
    waiting, fresh = (sim.create_ticket(title=f"t{i}") for i in range(2))
    sim.faults.fail_next("POST", "/bulk", 503)
    await box.submit(f"cstar:team:{waiting['id']}", "e0", [cstar_bulk(waiting["id"], "e0", {})])
    await box.drain(f"cstar:team:{waiting['id']}")
    assert await box.flush_once() == 1
    retry_at = await redis.zscore(keys.wb_due, f"cstar:team:{waiting['id']}")
    await box.submit(f"cstar:team:{fresh['id']}", "e1", [cstar_bulk(fresh["id"], "e1", {})])
    await box.drain(f"cstar:team:{fresh['id']}")
    assert await box.flush_once() == 2
    bulk = [e for e in sim.journal if e.method == "POST" and e.path.endswith("/bulk")]
    assert [e.body["ids"] for e in bulk] == [[waiting["id"]], [fresh["id"]]]
    assert await redis.zscore(keys.wb_due, f"cstar:team:{waiting['id']}") == retry_at


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
