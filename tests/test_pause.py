"""Pausing a rule: every running worker skips it with the reason `paused` within seconds, with no
restart, until it is resumed; scheduled runs of a paused rule are skipped and not made up."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from simulator.common.clock import ManualClock
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.procs import BIN, Proc, free_port, spawn
from tests.stack import outbox_empty, stack_settings
from tests.test_processes import env_for
from tests.test_rules_reload import TAG_RULE, start_receiver, tags_of
from tests.test_scheduled_rules_e2e import NOW, T0, at, counting_router, worker, writes
from ticketwire.engine import Router, evaluate
from ticketwire.event import Event
from ticketwire.keys import Keys
from workers.pause import UnknownRule, known_rules, pause_rule, paused_rules, resume_rule
from workers.schedule import run_schedules

#: How long a worker may take to follow a pause (it reads Redis each second).
FOLLOW_S = 5.0


async def test_a_paused_rule_is_skipped_with_the_reason_paused() -> None:
    router = Router()

    @router.on("ticket.updated", vendor="inboxops", name="tidy")
    async def tidy(ctx: Any) -> None:
        ctx.add_tags(["t"])

    @router.on("ticket.updated", vendor="inboxops", name="other")
    async def other(ctx: Any) -> None:
        ctx.add_tags(["o"])

    event = Event(
        vendor="inboxops",
        id="evt_pause",
        type="ticket.updated",
        tenant="ws",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        ticket_id="t1",
        ticket={"id": "t1", "priority": "low"},
    )
    decisions = await evaluate(router, event, paused={"tidy"})
    assert [(d.rule.name, d.fired, d.reason) for d in decisions] == [
        ("tidy", False, "paused"),
        ("other", True, "fired: 1 action (add_tags)"),
    ]
    assert decisions[0].actions == ()


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=31, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


@pytest.mark.slow
async def test_pause_and_resume_reach_a_running_worker_process_without_restart(
    aiohttp_server, redis: Redis, redis_url: str, keys: Keys, sim, tmp_path: Path
) -> None:
    tag = sim.create_tag("urgent")["id"]
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "tag.yml").write_text(TAG_RULE.format(tag=tag))
    settings = stack_settings(redis_url, keys, sim, rules)
    await start_receiver(aiohttp_server, redis, sim, settings)
    env = {"REDIS_URL": redis_url, "TICKETWIRE_KEY_PREFIX": keys.prefix}

    async def command(*args: str) -> tuple[int, str]:
        proc = await spawn([str(BIN / "ticketwire"), "rules", *args], env)
        return await proc.finish(), proc.output

    proc: Proc = await spawn(
        [str(BIN / "arq"), "workers.settings.WorkerSettings"],
        env_for(redis_url, keys, sim, rules, free_port()),
    )
    try:
        await proc.wait_output("runs rules")
        await wait_for(
            lambda: _names_recorded(redis, keys), message="the worker records its rule names"
        )

        # A typo is refused, naming the rules the workers run; nothing is paused.
        code, out = await command("pause", "tag-urgnet")
        assert code == 1
        assert "no live worker runs a rule named 'tag-urgnet'" in out
        assert "the rules they run are: tag-urgent" in out
        assert await paused_rules(redis, keys) == {}

        code, out = await command("pause", "tag-urgent", "--json")
        assert code == 0, out
        assert json.loads(out.splitlines()[-1]) == {
            "rule": "tag-urgent",
            "paused": True,
            "changed": True,
        }
        await proc.wait_output("rule tag-urgent paused", timeout=FOLLOW_S)
        paused = sim.create_ticket(subject="while paused", priority="low")
        sim.change_ticket(paused["id"], priority="urgent")
        await proc.wait_output(f"rule tag-urgent skipped on ticket={paused['id']}: paused")
        await sim.wait_deliveries_idle()
        assert tag not in tags_of(sim, paused["id"])
        assert f"rule tag-urgent fired on ticket={paused['id']}" not in proc.output

        code, out = await command()
        assert code == 0, out
        assert "paused: tag-urgent by " in out
        code, out = await command("--json")
        assert "tag-urgent" in json.loads(out)["paused"]

        code, out = await command("resume", "tag-urgent")
        assert code == 0 and "rule tag-urgent resumed" in out
        await proc.wait_output("rule tag-urgent resumed", timeout=FOLLOW_S)
        resumed = sim.create_ticket(subject="after resume", priority="low")
        sim.change_ticket(resumed["id"], priority="urgent")
        await wait_for(lambda: tag in tags_of(sim, resumed["id"]), message="the rule fires again")
        assert f"rule tag-urgent fired on ticket={resumed['id']}" in proc.output
        # Resuming twice says so and is not an error.
        code, out = await command("resume", "tag-urgent")
        assert code == 0 and "was not paused" in out
    finally:
        assert await proc.stop(signal.SIGTERM) == 0, proc.output


async def _names_recorded(redis: Redis, keys: Keys) -> bool:
    return bool(await known_rules(redis, keys))


async def test_pausing_needs_a_live_worker_and_keeps_the_first_pause(
    redis: Redis, keys: Keys
) -> None:
    with pytest.raises(UnknownRule, match="no live worker has recorded its rules"):
        await pause_rule(redis, keys, "any", by="me")
    await redis.hset(
        keys.rules_workers,
        "w1",
        json.dumps({"fingerprint": "f", "rules": 1, "at": 2**41, "names": ["a"]}),
    )
    assert await pause_rule(redis, keys, "a", by="first") is True
    assert await pause_rule(redis, keys, "a", by="second") is False
    assert (await paused_rules(redis, keys))["a"].by == "first"
    assert await resume_rule(redis, keys, "a") is True
    assert await resume_rule(redis, keys, "a") is False


@pytest.fixture
async def clocked_sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(
        SimulatorConfig(seed=21, rate_limit_per_minute=None), clock=ManualClock(epoch=T0)
    )
    await s.start()
    yield s
    await s.stop()


async def test_a_paused_scheduled_rule_skips_its_runs_and_does_not_make_them_up(
    clocked_sim, redis: Redis, redis_url: str, keys: Keys, tmp_path: Path, caplog
) -> None:
    sim = clocked_sim
    caplog.set_level(logging.INFO, logger="ticketwire")
    state: dict[str, Any] = {"tag": sim.create_tag("nudged")["id"]}
    sim.create_ticket(subject="waiting", status="waiting")
    at(sim, NOW)
    settings = stack_settings(redis_url, keys, sim, tmp_path)
    async with worker(settings, counting_router(state)) as w:
        await wait_for(lambda: _names_recorded(redis, keys), message="rule names recorded")
        assert await pause_rule(redis, keys, "tag-waiting", by="test")
        await wait_for(
            lambda: w.ctx["scheduler"].paused == {"tag-waiting"},
            timeout=FOLLOW_S,
            message="the scheduler follows the pause",
        )
        await run_schedules(w.ctx, now=NOW)
        assert "scheduled rule tag-waiting: run of 2025-01-10 13:00 skipped: paused" in caplog.text
        assert state.get("calls", 0) == 0 and writes(sim) == []

        assert await resume_rule(redis, keys, "tag-waiting")
        await wait_for(
            lambda: not w.ctx["scheduler"].paused,
            timeout=FOLLOW_S,
            message="the scheduler follows the resume",
        )
        # The minute skipped while paused is not made up; the next due run goes ahead.
        await run_schedules(w.ctx, now=NOW + timedelta(minutes=1))
        assert state.get("calls", 0) == 0
        await run_schedules(w.ctx, now=NOW + timedelta(minutes=15))
        assert state["calls"] == 1
        await wait_for(lambda: outbox_empty(redis, keys), message="the tag is sent")
        assert len(writes(sim)) == 1
