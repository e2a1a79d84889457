"""End to end: simulator → signed webhook → receiver → Redis → arq worker → rules → API write-back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from receiver.app import create_app
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.stack import SECRET, outbox_empty, running_worker, settled, stack_settings
from ticketwire.config import Settings
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=7, rate_limit_per_minute=None, time_scale=0.001))
    await s.start()
    yield s
    await s.stop()


def write_rules(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "rules.yml").write_text(text)
    return d


async def start_receiver(aiohttp_server: Any, settings: Settings, redis: Redis, sim) -> str:
    app = create_app(
        settings, redis, [InboxOpsWebhook(settings.vendor("inboxops").webhook_secrets)]
    )
    server = await aiohttp_server(app)
    url = str(server.make_url("/webhooks/inboxops"))
    sim.add_endpoint(url, SECRET)
    return url


def calls(sim: InboxOpsSimulator, method: str, path_part: str) -> list[Any]:
    return [e for e in sim.journal if e.method == method and path_part in e.path]


ESCALATE = """
name: start-urgent
vendor: inboxops
events: [ticket.updated]
if:
  all:
    - {field: priority, equals: urgent}
    - {field: status, equals: open}
then:
  - update: {status: in_progress}
  - add_tags: ["{tag}"]
"""


async def test_delivery_runs_rule_and_writes_back(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    tag = sim.create_tag("escalated")
    rules = write_rules(tmp_path, ESCALATE.replace("{tag}", tag["id"]))
    settings = stack_settings(redis_url, keys, sim, rules)
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="Checkout broken", priority="normal")
    async with running_worker(settings):
        sim.change_ticket(ticket["id"], priority="urgent")
        await wait_for(
            lambda: sim.ticket(ticket["id"])["status"] == "in_progress", message="PATCH applied"
        )
        await wait_for(
            lambda: tag["id"] in [t["id"] for t in sim.ticket(ticket["id"], ["tags"])["tags"]],
            message="tag added through bulk",
        )
        [patch] = calls(sim, "PATCH", ticket["id"])
        assert patch.body == {"status": "in_progress"} and patch.status == 200
        [bulk] = calls(sim, "POST", "/tickets/bulk")
        assert bulk.body == {
            "operation": "add_tags",
            "ticket_ids": [ticket["id"]],
            "tag_ids": [tag["id"]],
        }
        # The write-backs make the simulator send new webhooks; they must settle, not loop.
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all deliveries handled")
        assert len(calls(sim, "PATCH", ticket["id"])) == 1
        assert len(calls(sim, "POST", "/tickets/bulk")) == 1


async def test_events_stored_before_any_worker_ran_are_processed(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    rules = write_rules(tmp_path, ESCALATE.replace("{tag}", sim.create_tag("x")["id"]))
    settings = stack_settings(redis_url, keys, sim, rules)
    await start_receiver(aiohttp_server, settings, redis, sim)
    tickets = [sim.create_ticket(subject=f"t{i}", priority="low") for i in range(5)]
    for t in tickets:
        sim.change_ticket(t["id"], priority="urgent")
    await sim.wait_deliveries_idle()
    assert all(sim.ticket(t["id"])["status"] == "open" for t in tickets)  # nobody processed yet
    async with running_worker(settings):
        await wait_for(
            lambda: all(sim.ticket(t["id"])["status"] == "in_progress" for t in tickets),
            message="backlog processed",
        )


async def test_loop_rule_fires_once(aiohttp_server, redis, redis_url, keys, sim, tmp_path, caplog):
    # Tags are not in InboxOps ticket payloads, so this rule's condition stays true after its own
    # write-back: only echo suppression keeps it from firing on every resulting webhook.
    tag = sim.create_tag("loop-tag")
    rules = write_rules(
        tmp_path,
        f"""
name: tag-urgent
vendor: inboxops
events: [ticket.updated, ticket.created]
if: {{field: priority, equals: urgent}}
then:
  - add_tags: ["{tag["id"]}"]
""",
    )
    settings = stack_settings(redis_url, keys, sim, rules)
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="loop?", priority="low")
    caplog.set_level("INFO", logger="ticketwire")
    async with running_worker(settings):
        sim.change_ticket(ticket["id"], priority="urgent")
        await wait_for(lambda: calls(sim, "POST", "/tickets/bulk"), message="first write-back")
        # Its echo (ticket.updated from the bulk) must arrive and be handled.
        await wait_for(lambda: "echo: same actions" in caplog.text, message="echo suppressed")
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all deliveries handled")
        assert len(calls(sim, "POST", "/tickets/bulk")) == 1


async def test_duplicate_delivery_is_processed_once(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    rules = write_rules(tmp_path, ESCALATE.replace("{tag}", sim.create_tag("d")["id"]))
    settings = stack_settings(redis_url, keys, sim, rules)
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="dup", priority="low")
    sim.faults.webhooks.duplicate_next = 5
    async with running_worker(settings):
        sim.change_ticket(ticket["id"], priority="urgent")
        await wait_for(lambda: calls(sim, "POST", "/tickets/bulk"), message="write-back")
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all deliveries handled")
        stats = await redis.hgetall(keys.stats)
        assert int(stats[b"duplicate"]) >= 1
        assert len(calls(sim, "PATCH", ticket["id"])) == 1


async def test_429_waits_retry_after_then_succeeds(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    rules = write_rules(tmp_path, ESCALATE.replace("{tag}", sim.create_tag("r")["id"]))
    settings = stack_settings(redis_url, keys, sim, rules)
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="rate limited", priority="low")
    sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 429, retry_after=1)
    async with running_worker(settings):
        sim.change_ticket(ticket["id"], priority="urgent")
        await wait_for(
            lambda: sim.ticket(ticket["id"])["status"] == "in_progress",
            timeout=15,
            message="PATCH retried after Retry-After",
        )
        patches = calls(sim, "PATCH", ticket["id"])
        assert [p.status for p in patches] == [429, 200]
        waited = (patches[1].at - patches[0].at).total_seconds()
        assert waited >= 0.9, f"retried after {waited}s, before Retry-After"
        # The bulk call of the same event was queued behind the PATCH, never before it.
        await wait_for(lambda: calls(sim, "POST", "/tickets/bulk"), message="bulk after PATCH")
        [bulk] = calls(sim, "POST", "/tickets/bulk")
        assert bulk.at >= patches[1].at


async def test_5xx_is_retried_with_backoff_then_dead_lettered(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    rules = write_rules(tmp_path, ESCALATE.replace("{tag}", sim.create_tag("f")["id"]))
    settings = stack_settings(redis_url, keys, sim, rules, max_attempts=3)
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="server errors", priority="low")
    sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 500, times=10)
    async with running_worker(settings):
        sim.change_ticket(ticket["id"], priority="urgent")
        await wait_for(lambda: redis.xlen(keys.dlq), timeout=15, message="dead letter")
        [(_, letter)] = await redis.xrange(keys.dlq)
        assert b"gave up after 3 attempts" in letter[b"reason"]
        attempts = json.loads(letter[b"attempts"])
        assert [a["status"] for a in attempts] == [500, 500, 500]
        assert json.loads(letter[b"call"])["method"] == "PATCH"
        assert letter[b"rules"] == b"start-urgent"
        # The next call of the event still goes out after the dead letter.
        await wait_for(
            lambda: calls(sim, "POST", "/tickets/bulk"), message="bulk after dead letter"
        )
        await wait_for(lambda: outbox_empty(redis, keys), message="outbox drained")


async def test_other_4xx_is_dead_lettered_without_retry(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    rules = write_rules(
        tmp_path,
        """
name: bad-status-id
vendor: inboxops
events: [ticket.updated]
if: {field: priority, equals: urgent}
then:
  - update: {status_id: 00000000-0000-4000-8000-000000000000}
""",
    )
    settings = stack_settings(redis_url, keys, sim, rules)
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="bad request", priority="low")
    async with running_worker(settings):
        sim.change_ticket(ticket["id"], priority="urgent")
        await wait_for(lambda: redis.xlen(keys.dlq), message="dead letter")
        [(_, letter)] = await redis.xrange(keys.dlq)
        assert b"not retried" in letter[b"reason"]
        assert [a["status"] for a in json.loads(letter[b"attempts"])] == [400]
        assert len(calls(sim, "PATCH", ticket["id"])) == 1


async def test_steps_are_logged_one_line_each(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path, caplog
):
    rules = write_rules(tmp_path, ESCALATE.replace("{tag}", sim.create_tag("l")["id"]))
    settings = stack_settings(redis_url, keys, sim, rules)
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="logged", priority="low")
    caplog.set_level("INFO", logger="ticketwire")
    async with running_worker(settings):
        sim.change_ticket(ticket["id"], subject="renamed")  # a change the rule skips
        sim.change_ticket(ticket["id"], priority="urgent")  # a change the rule acts on
        await wait_for(lambda: calls(sim, "POST", "/tickets/bulk"), message="write-back")
        await wait_for(
            lambda: "api POST /api/v1/tickets/bulk" in caplog.text, message="api log line"
        )
    text = caplog.text
    assert "received inboxops ticket.updated" in text
    assert "stored inboxops event=" in text
    assert "rule start-urgent skipped" in text and "condition false" in text
    assert "rule start-urgent fired" in text
    # Paths as InboxOps documents and logs them: "PATCH /api/v1/tickets/{id}".
    assert f"api PATCH /api/v1/tickets/{ticket['id']}" in text and "→ 200" in text
    assert "api PATCH /tickets/" not in text and "api POST /tickets/" not in text
