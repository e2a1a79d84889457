"""Loop safety end to end: InboxOps simulator → receiver → Redis → worker → write-back → echo.

Each test counts the write-backs in the simulator's journal after everything has settled: the
deliveries our own writes caused were received and handled, and nothing more was sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from receiver.app import create_app
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.stack import SECRET, quiet, running_worker, stack_settings
from ticketwire.config import Settings
from ticketwire.engine import Context, Router
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook

#: Short enough that only the mechanism under test can stop a loop.
NO_ECHO_WINDOW = 0.001


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=11, rate_limit_per_minute=None, time_scale=0.001))
    await s.start()
    yield s
    await s.stop()


async def start_receiver(
    aiohttp_server: Any, settings: Settings, redis: Redis, sim: InboxOpsSimulator
) -> None:
    app = create_app(
        settings, redis, [InboxOpsWebhook(settings.vendor("inboxops").webhook_secrets)]
    )
    server = await aiohttp_server(app)
    sim.add_endpoint(str(server.make_url("/webhooks/inboxops")), SECRET)


def write_rules(tmp_path: Path, text: str = "") -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    if text:
        (d / "rules.yml").write_text(text)
    return d


def journal(sim: InboxOpsSimulator, method: str, path_part: str) -> list[Any]:
    return [e for e in sim.journal if e.method == method and path_part in e.path]


def score_router() -> Router:
    """A rule that writes the field its own condition reads, with a new value every time."""
    router = Router()

    @router.on(
        "ticket.updated",
        vendor="inboxops",
        when={"field": "custom_fields.score", "exists": True},
        name="count-updates",
    )
    async def count_updates(ctx: Context) -> None:
        score = ctx.ticket["custom_fields"]["score"] + 1
        ctx.log.info("scoring %d", score)
        ctx.update(custom_fields={"score": score})

    return router


async def test_rule_writing_the_field_it_reads_does_not_loop(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path, caplog
):
    # Each firing writes a new value, so neither the planner's no-op check nor the same-actions
    # echo check can stop it: the delivery our PATCH causes must be recognised as our own write.
    settings = stack_settings(redis_url, keys, sim, write_rules(tmp_path))
    await start_receiver(aiohttp_server, settings, redis, sim)
    caplog.set_level("INFO", logger="ticketwire")
    ticket = sim.create_ticket(subject="count me", custom_fields={"score": 1})
    async with running_worker(settings, score_router()):
        await quiet(sim, redis, keys)
        sim.change_ticket(ticket["id"], subject="count me, please")
        await quiet(sim, redis, keys)
        assert len(journal(sim, "PATCH", ticket["id"])) == 1
        assert sim.ticket(ticket["id"])["custom_fields"]["score"] == 2
        assert (
            "rule count-updates suppressed on ticket="
            f"{ticket['id']}: echo: this delivery only reflects our own write of custom_fields"
        ) in caplog.text
        # A person's change afterwards is not an echo: the rule runs once more.
        sim.change_ticket(ticket["id"], subject="and again")
        await quiet(sim, redis, keys)
        assert len(journal(sim, "PATCH", ticket["id"])) == 2
        assert sim.ticket(ticket["id"])["custom_fields"]["score"] == 3


async def test_fuse_stops_a_loop_nothing_else_catches(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path, caplog
):
    settings = stack_settings(
        redis_url,
        keys,
        sim,
        write_rules(tmp_path),
        echo_window_s=NO_ECHO_WINDOW,
        fuse_per_hour=3,
    )
    await start_receiver(aiohttp_server, settings, redis, sim)
    caplog.set_level("INFO", logger="ticketwire")
    ticket = sim.create_ticket(subject="loop", custom_fields={"score": 1})
    async with running_worker(settings, score_router()):
        await quiet(sim, redis, keys)
        sim.change_ticket(ticket["id"], subject="loop!")
        await quiet(sim, redis, keys)
        assert len(journal(sim, "PATCH", ticket["id"])) == 3
        assert sim.ticket(ticket["id"])["custom_fields"]["score"] == 4
        assert "loop fuse: 3 rule firings on this ticket in the last 1h (limit 3" in caplog.text


ONCE = """
name: tag-urgent-once
vendor: inboxops
events: [ticket.updated]
if: {field: priority, equals: urgent}
once_per_ticket: true
rearm: {field: priority, not_equals: urgent}
then:
  - add_tags: ["{tag}"]
"""


async def test_once_per_ticket_fires_once_until_rearmed(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path, caplog
):
    # Tags are not in InboxOps payloads, so the condition still holds on every later delivery
    # (including the one the bulk call causes); with the echo window off only once_per_ticket
    # keeps the rule quiet.
    tag = sim.create_tag("urgent-seen")
    rules = write_rules(tmp_path, ONCE.replace("{tag}", tag["id"]))
    settings = stack_settings(redis_url, keys, sim, rules, echo_window_s=NO_ECHO_WINDOW)
    await start_receiver(aiohttp_server, settings, redis, sim)
    caplog.set_level("INFO", logger="ticketwire")
    ticket = sim.create_ticket(subject="once", priority="low")
    tid = ticket["id"]
    async with running_worker(settings):
        await quiet(sim, redis, keys)
        sim.change_ticket(tid, priority="urgent")
        await quiet(sim, redis, keys)
        for subject in ("still urgent", "still urgent!", "still urgent!!"):
            sim.change_ticket(tid, subject=subject)
            await quiet(sim, redis, keys)
        assert len(journal(sim, "POST", "/tickets/bulk")) == 1
        assert (
            f"rule tag-urgent-once suppressed on ticket={tid}: once_per_ticket: fired at"
            in caplog.text
        )
        assert "re-arms when priority not_equals 'urgent'" in caplog.text
        # The rearm condition holds (the rule's own condition does not): re-armed, not fired.
        sim.change_ticket(tid, priority="low")
        await quiet(sim, redis, keys)
        assert f"rule tag-urgent-once re-armed on ticket={tid}" in caplog.text
        assert len(journal(sim, "POST", "/tickets/bulk")) == 1
        sim.change_ticket(tid, priority="urgent")
        await quiet(sim, redis, keys)
        sim.change_ticket(tid, subject="urgent again")
        await quiet(sim, redis, keys)
        assert len(journal(sim, "POST", "/tickets/bulk")) == 2
