"""Rules reloaded while running: SIGHUP across real worker processes, `up` watching its directory,
and a swap that lands between events, never inside one."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from receiver.app import create_app
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.procs import BIN, Proc, free_port, free_ports, spawn
from tests.stack import SECRET, outbox_empty, running_worker, settled, stack_settings
from tests.test_processes import env_for
from ticketwire.engine import Context, Router
from ticketwire.engine.ruleset import load_rule_set, rules_fingerprint
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook
from workers.reload import rules_in_force

TAG_RULE = """
name: tag-urgent
vendor: inboxops
events: [ticket.updated]
if: {{field: priority, equals: urgent}}
then:
  - add_tags: ["{tag}"]
"""

TYPO = "name: typo\nevnts: [ticket.updated]\nthen:\n  - set_priority: high\n"


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=23, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


async def start_receiver(aiohttp_server: Any, redis: Redis, sim: InboxOpsSimulator, settings: Any):
    app = create_app(
        settings, redis, [InboxOpsWebhook(settings.vendor("inboxops").webhook_secrets)]
    )
    server = await aiohttp_server(app)
    sim.add_endpoint(str(server.make_url("/webhooks/inboxops")), SECRET)


def tags_of(sim: InboxOpsSimulator, ticket_id: str) -> set[str]:
    return {t["id"] for t in sim.ticket(ticket_id, ["tags"])["tags"]}


def test_the_fingerprint_names_the_files_contents(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(TAG_RULE.format(tag="t1"))
    first = rules_fingerprint(tmp_path)
    assert first == rules_fingerprint(tmp_path) and len(first) == 12
    (tmp_path / "a.yml").write_text(TAG_RULE.format(tag="t2"))
    assert rules_fingerprint(tmp_path) != first
    (tmp_path / "a.yml").write_text(TAG_RULE.format(tag="t1"))
    assert rules_fingerprint(tmp_path) == first
    # Files the loader skips do not count.
    (tmp_path / "_draft.yml").write_text(TYPO)
    (tmp_path / "notes.txt").write_text("x")
    assert rules_fingerprint(tmp_path) == first
    assert rules_fingerprint(tmp_path / "missing") == "-"
    loaded = load_rule_set(tmp_path)
    assert loaded.ok and loaded.fingerprint == first
    assert loaded.describe() == f"rules {first} (1 rule)"


def test_check_prints_the_fingerprint_workers_log(tmp_path: Path, capsys) -> None:
    from cli.check import run_check

    (tmp_path / "a.yml").write_text(TAG_RULE.format(tag="t1"))
    assert run_check(tmp_path) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"1 rule(s) in {tmp_path}: OK, rules {rules_fingerprint(tmp_path)}\n")


def rules_dir(root: Path, name: str, text: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "tag.yml").write_text(text)
    return d


@pytest.mark.slow
async def test_sighup_reloads_every_worker_and_a_bad_file_keeps_the_rules(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    old_tag, new_tag = sim.create_tag("old")["id"], sim.create_tag("new")["id"]
    # Each worker reads its own copy of the rules, as on separate machines.
    dirs = [rules_dir(tmp_path, f"w{i}", TAG_RULE.format(tag=old_tag)) for i in (1, 2)]
    settings = stack_settings(redis_url, keys, sim, dirs[0])
    await start_receiver(aiohttp_server, redis, sim, settings)
    workers: list[Proc] = []

    async def rules_command(*args: str) -> Proc:
        env = {"REDIS_URL": redis_url, "TICKETWIRE_KEY_PREFIX": keys.prefix}
        return await spawn([str(BIN / "ticketwire"), "rules", *args], env)

    try:
        for d in dirs:
            workers.append(
                await spawn(
                    [str(BIN / "arq"), "workers.settings.WorkerSettings"],
                    env_for(redis_url, keys, sim, d, free_port()),
                )
            )
        old_fp = rules_fingerprint(dirs[0])
        for w in workers:
            await w.wait_output(f"runs rules {old_fp} (1 rule)")

        # New rules on every machine, then SIGHUP to one worker: both switch.
        for d in dirs:
            (d / "tag.yml").write_text(TAG_RULE.format(tag=new_tag))
        new_fp = rules_fingerprint(dirs[0])
        workers[0].proc.send_signal(signal.SIGHUP)
        await workers[0].wait_output(
            f"rules reloaded (SIGHUP): rules {new_fp} (1 rule), was {old_fp}"
        )
        await workers[1].wait_output(
            f"rules reloaded (published by another worker): rules {new_fp} (1 rule), was {old_fp}"
        )

        async def all_on(fp: str) -> bool:
            published, running = await rules_in_force(redis, keys)
            return published.get("fingerprint") == fp and [w.fingerprint for w in running] == [
                fp,
                fp,
            ]

        await wait_for(lambda: all_on(new_fp), message="both workers record the new rules")
        agreed = await rules_command()
        assert await agreed.finish() == 0, agreed.output
        assert "every live worker runs the published rules" in agreed.output
        first = sim.create_ticket(subject="reload me", priority="low")
        sim.change_ticket(first["id"], priority="urgent")
        await wait_for(lambda: new_tag in tags_of(sim, first["id"]), message="the new rule acts")
        assert old_tag not in tags_of(sim, first["id"])

        # A typo: the worker says what is wrong and keeps the rules it runs.
        (dirs[0] / "typo.yml").write_text(TYPO)
        workers[0].proc.send_signal(signal.SIGHUP)
        await workers[0].wait_output("rules reload (SIGHUP) refused: 1 error(s)")
        await workers[0].wait_output("typo.yml:2: rule 'typo': unknown key 'evnts'")
        assert f"keeping rules {new_fp} (1 rule)" in workers[0].output
        second = sim.create_ticket(subject="still reloaded", priority="low")
        sim.change_ticket(second["id"], priority="urgent")
        await wait_for(lambda: new_tag in tags_of(sim, second["id"]), message="rules kept")

        # One machine's files differ: its worker refuses the published rules and says so.
        (dirs[0] / "typo.yml").unlink()
        (dirs[0] / "tag.yml").write_text(TAG_RULE.format(tag=old_tag))
        workers[0].proc.send_signal(signal.SIGHUP)
        await workers[0].wait_output(f"rules reloaded (SIGHUP): rules {old_fp} (1 rule)")
        await workers[1].wait_output(
            f"rules {old_fp} were published, but this worker's files in {dirs[1]} are {new_fp}"
        )

        async def refusal_recorded() -> bool:
            _, running = await rules_in_force(redis, keys)
            return sorted((w.fingerprint, w.refused) for w in running) == [
                (new_fp, f"its rule files are {new_fp}, not the published {old_fp}"),
                (old_fp, ""),
            ] or sorted((w.fingerprint, w.refused) for w in running) == [
                (old_fp, ""),
                (new_fp, f"its rule files are {new_fp}, not the published {old_fp}"),
            ]

        await wait_for(refusal_recorded, message="the refusal is recorded")
        status = await rules_command()
        assert await status.finish() == 1, status.output
        assert f"published: rules {old_fp}" in status.output
        assert f"its rule files are {new_fp}, not the published {old_fp}" in status.output
        assert "workers disagree: deploy the same rule files to every worker" in status.output
        as_json = await rules_command("--json")
        assert await as_json.finish() == 1, as_json.output
        report = json.loads(as_json.output)
        assert report["agreed"] is False and report["published"]["fingerprint"] == old_fp
        assert sorted(w["fingerprint"] for w in report["workers"]) == sorted([old_fp, new_fp])
    finally:
        for w in workers:
            await w.stop(signal.SIGTERM)


@pytest.mark.slow
async def test_up_reloads_when_a_rule_file_changes(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    port, sim_port = free_port(), free_ports(3)
    up = await spawn(
        [str(BIN / "ticketwire"), "up", "--simulator-port", str(sim_port)],
        {
            "PORT": str(port),
            "TICKETWIRE_DATA_DIR": str(tmp_path / "data"),
            "TICKETWIRE_RULES": str(rules),
        },
    )
    change = f"http://127.0.0.1:{sim_port}/_sim/tickets/{{}}/change"
    try:
        await up.wait_output("Ctrl-C stops everything.", timeout=30)
        async with aiohttp.ClientSession() as http:

            async def urgent(ticket: str) -> None:
                async with http.post(change.format(ticket), json={"priority": "urgent"}) as r:
                    assert r.status == 200, await r.text()

            await urgent("1")
            await up.wait_output("no rule listens to ticket.updated on inboxops")

            (rules / "wake.yml").write_text(
                "name: wake\nevents: [ticket.updated]\n"
                "if: {field: common.priority, equals: urgent}\nthen:\n  - set_status: open\n"
            )
            await up.wait_output("rules reloaded (a file in the rules directory changed)")
            await urgent("2")
            await up.wait_output("rule wake fired on ticket=")

            (rules / "typo.yml").write_text(TYPO)
            await up.wait_output("rules reload (a file in the rules directory changed) refused")
            await up.wait_output("typo.yml:2: rule 'typo': unknown key 'evnts'")
            await urgent("3")
            await wait_for(
                lambda: up.output.count("rule wake fired on ticket=") == 2,
                message="the rules in force act on the next event",
            )
    finally:
        code = await up.stop(signal.SIGINT)
    assert code == 0, up.output
    assert "shutdown on SIGINT (Ctrl-C)" in up.output
    assert "SIGUSR1" not in up.output


async def test_a_reload_lands_between_events_never_inside_one(
    aiohttp_server, redis, redis_url, keys, tmp_path
):
    sim = InboxOpsSimulator(SimulatorConfig(seed=5, rate_limit_per_minute=None))
    await sim.start()
    try:
        rules = tmp_path / "rules"
        rules.mkdir()
        settings = stack_settings(redis_url, keys, sim, rules)
        await start_receiver(aiohttp_server, redis, sim, settings)
        entered, release = asyncio.Event(), asyncio.Event()
        router = Router()

        @router.on("ticket.updated", vendor="inboxops", name="slow")
        async def slow(ctx: Context) -> None:
            entered.set()
            await release.wait()
            ctx.set_priority("high")

        async with running_worker(settings, router) as worker:
            ticket = sim.create_ticket(subject="slow", priority="low")
            sim.change_ticket(ticket["id"], subject="slow, changed")
            await asyncio.wait_for(entered.wait(), 10)
            # The event is inside rule `slow`; the new rules replace it.
            (rules / "fast.yml").write_text(
                "name: fast\nvendor: inboxops\nevents: [ticket.updated]\n"
                "if: {field: subject, contains: fast}\nthen:\n  - set_status: waiting\n"
            )
            assert await worker.ctx["reloader"].reload("test")
            release.set()
            await wait_for(lambda: settled(redis, keys), message="event handled")
            await wait_for(lambda: outbox_empty(redis, keys), message="write-back sent")
            # It finished with the rules it started with.
            assert sim.ticket(ticket["id"])["priority"] == "high"
            assert sim.ticket(ticket["id"])["status"] != "waiting"
            sim.change_ticket(ticket["id"], subject="fast now")
            await wait_for(
                lambda: sim.ticket(ticket["id"])["status"] == "waiting", message="new rules act"
            )
    finally:
        await sim.stop()


def test_rules_status_is_json_for_scripts(tmp_path: Path) -> None:
    from workers.reload import WorkerRules

    entry = WorkerRules("w1", "abc", 3, 1700000000000, "its rule files are x")
    assert WorkerRules.from_json("w1", entry.to_json()) == entry
    assert json.loads(entry.to_json())["refused"] == "its rule files are x"
    assert WorkerRules.from_json("w2", b"{").refused == "unreadable record"


async def test_the_status_leaves_out_and_forgets_workers_that_died(redis, keys, tmp_path):
    from workers.reload import FORGET_AFTER_S, RulesReloader, WorkerRules, _now_ms

    (tmp_path / "a.yml").write_text(TAG_RULE.format(tag="t1"))
    now = _now_ms()
    old = WorkerRules("dead-long-ago", "abc", 1, now - int(FORGET_AFTER_S * 1000) - 1)
    quiet = WorkerRules("dead-lately", "abc", 1, now - 60_000)
    await redis.hset(keys.rules_workers, mapping={w.worker: w.to_json() for w in (old, quiet)})
    reloader = RulesReloader(
        redis,
        keys,
        tmp_path,
        worker_id="alive",
        running=load_rule_set(tmp_path),
        apply=lambda router: None,
    )
    await reloader.start()
    try:
        await redis.zadd(keys.workers, {"alive": now + 60_000})
        published, running = await rules_in_force(redis, keys)
        assert published["fingerprint"] == rules_fingerprint(tmp_path)
        assert published["by"] == "alive"
        # Heartbeating, or recorded within the last half minute: shown; others left out.
        assert [w.worker for w in running] == ["alive"]
        await reloader._prune()
        assert set(await redis.hkeys(keys.rules_workers)) == {b"alive", b"dead-lately"}
    finally:
        await reloader.stop()
    assert await redis.hkeys(keys.rules_workers) == [b"dead-lately"]
