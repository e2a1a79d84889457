"""Scheduled rules end to end: InboxOps simulator (hand-driven clock) + Redis + arq workers.

Runs are started by calling the cron job function with a fixed `now`, never by waiting for the
wall clock; the workers here are built without arq's own cron loop so it cannot start runs too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from simulator.common.clock import ManualClock, iso
from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
from tests.conftest import wait_for
from tests.stack import outbox_empty, stack_settings
from ticketwire.config import Settings
from ticketwire.engine import Context, Router, load_rules
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors.cstar.settings import CStarSettings
from ticketwire.vendors.thena.settings import ThenaSettings
from workers.app import worker_options
from workers.arqhost import Worker, in_process_worker
from workers.schedule import Scheduler, Tenants, run_schedules

RULES = Path(__file__).resolve().parents[1] / "rules"
#: The simulator's clock starts here; `NOW` is the minute the runs are for.
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=100)


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(
        SimulatorConfig(seed=21, rate_limit_per_minute=None), clock=ManualClock(epoch=T0)
    )
    await s.start()
    yield s
    await s.stop()


def at(sim: Any, moment: datetime) -> None:
    """Move the simulator's clock forward to `moment`."""
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    clock.advance((moment - clock.now()).total_seconds())


def writes(sim: InboxOpsSimulator) -> list[Any]:
    return [e for e in sim.journal if e.method != "GET"]


def lists(sim: InboxOpsSimulator) -> list[Any]:
    return [e for e in sim.journal if e.method == "GET" and e.path == "/api/v1/tickets"]


@contextlib.asynccontextmanager
async def worker(settings: Settings, router: Router) -> AsyncIterator[Worker]:
    """A full arq worker (consumer, outbox, scheduler), without arq's per-minute cron loop."""
    opts = worker_options(settings, router)
    assert [c.name for c in opts["cron_jobs"]] == ["run_schedules"]
    async with in_process_worker(
        settings, router, started_within=10.0, cron_jobs=[], poll_delay=0.05
    ) as w:
        yield w


async def test_shipped_stale_waiting_rule_reminds_and_inboxops_reopens_when_due(
    sim, redis: Redis, redis_url: str, keys: Keys, caplog
):
    # inboxops-update-ticket: remind_at is "Applied when PATCH also sets status to waiting
    # (status or status_id)"; remind_transition_status_id is the "Custom status to return to
    # when reminder fires".
    caplog.set_level(logging.INFO, logger="ticketwire")
    # Each ticket's updated_at is the clock when it was created.
    at(sim, NOW - timedelta(hours=100))
    old_open = sim.create_ticket(subject="old but open", status="open")
    at(sim, NOW - timedelta(hours=50))
    silent = sim.create_ticket(subject="silent for 50h", status="waiting")
    reminded_later = sim.create_ticket(
        subject="reminder still ahead",
        status="waiting",
        remind_at=iso(NOW + timedelta(hours=10)),
    )
    at(sim, NOW - timedelta(hours=30))
    recent = sim.create_ticket(subject="waiting 30h", status="waiting")
    at(sim, NOW)
    settings = stack_settings(redis_url, keys, sim, RULES)
    router = load_rules(RULES)
    async with worker(settings, router) as w:
        await run_schedules(w.ctx, now=NOW + timedelta(seconds=0.2))
        await wait_for(lambda: outbox_empty(redis, keys), message="write-backs sent")
        due = NOW + timedelta(hours=48)
        assert [(e.method, e.path, e.body) for e in writes(sim)] == [
            (
                "PATCH",
                f"/api/v1/tickets/{silent['id']}",
                {"remind_at": iso(due)[:19] + "Z", "status_id": silent["status_id"]},
            )
        ]
        assert writes(sim)[0].notes == ()
        reminded = sim.ticket(silent["id"])
        assert (reminded["status_id"], reminded["remind_at"]) == (silent["status_id"], iso(due))
        for untouched in (old_open, reminded_later, recent):
            assert sim.ticket(untouched["id"])["updated_at"] == untouched["updated_at"]
        # The rule listed with the filters resolved at the run's minute, oldest first.
        [query] = [e.query for e in lists(sim)]
        assert query["status"] == "waiting"
        assert query["updated_before"] == "2025-01-08T13:00:00Z"
        assert (query["sort"], query["order"]) == ("created_at", "asc")
        assert (
            "scheduled rule remind-stale-waiting run of 2025-01-10 13:00: 2 tickets listed, "
            "1 fired, 1 call queued" in caplog.text
        )

        # Fifteen minutes later the reminded ticket was just updated: nothing to do.
        at(sim, NOW + timedelta(minutes=15))
        before = len(writes(sim))
        await run_schedules(w.ctx, now=NOW + timedelta(minutes=15))
        assert len(writes(sim)) == before
        assert "run of 2025-01-10 13:15: 1 ticket listed, 0 fired, 0 calls queued" in caplog.text

        # 48 hours on, with no activity since: InboxOps itself moved both reminded tickets back
        # to Open when their reminders fell due, and the one waiting 78 hours gets a reminder.
        later = NOW + timedelta(hours=48, minutes=15)
        at(sim, later)
        await run_schedules(w.ctx, now=later)
        await wait_for(lambda: outbox_empty(redis, keys), message="second round sent")
        for ticket, fell_due in ((silent, due), (reminded_later, NOW + timedelta(hours=10))):
            now_open = sim.ticket(ticket["id"])
            assert (now_open["status_name"], now_open["remind_at"]) == ("Open", None)
            assert now_open["updated_at"] == iso(fell_due)
        assert sim.ticket(recent["id"])["remind_at"] == iso(later + timedelta(hours=48))
        assert sim.ticket(recent["id"])["status"] == "waiting"
        assert sim.ticket(old_open["id"])["status"] == "open"


def counting_router(state: dict[str, Any], *, block: asyncio.Event | None = None) -> Router:
    """A scheduled rule that tags every waiting ticket, counting (and optionally holding) runs."""
    router = Router()

    @router.every("15m", vendor="inboxops", select={"status": "waiting"}, name="tag-waiting")
    async def tag_waiting(ctx: Context) -> None:
        state["running"] = state.get("running", 0) + 1
        state["most"] = max(state.get("most", 0), state["running"])
        state["calls"] = state.get("calls", 0) + 1
        try:
            if block is not None:
                state["entered"] = True
                await block.wait()
        finally:
            state["running"] -= 1
        ctx.add_tags([state["tag"]])

    return router


async def test_a_run_repeated_for_its_minute_queues_nothing_twice(
    sim, redis: Redis, redis_url: str, keys: Keys, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="ticketwire")
    state: dict[str, Any] = {"tag": sim.create_tag("nudged")["id"]}
    ticket = sim.create_ticket(subject="waiting", status="waiting")
    at(sim, NOW)
    settings = stack_settings(redis_url, keys, sim, tmp_path)
    async with worker(settings, counting_router(state)) as w:
        await run_schedules(w.ctx, now=NOW)
        await wait_for(lambda: outbox_empty(redis, keys), message="tag sent")
        [bulk] = writes(sim)
        assert bulk.body == {
            "operation": "add_tags",
            "ticket_ids": [ticket["id"]],
            "tag_ids": [state["tag"]],
        }
        # A worker that died mid-run leaves the run `running` with its lock gone: the next tick
        # runs it again, and the write-back already queued for that minute is not queued again.
        await redis.set(keys.schedule_run("tag-waiting", "20250110T1300Z"), "running")
        await run_schedules(w.ctx, now=NOW + timedelta(minutes=1))
        assert "running the run of 2025-01-10 13:00 again" in caplog.text
        assert state["calls"] == 2
        await wait_for(lambda: outbox_empty(redis, keys), message="nothing left")
        assert len(writes(sim)) == 1
        # Once done, later ticks leave that minute alone.
        await run_schedules(w.ctx, now=NOW + timedelta(minutes=2))
        assert state["calls"] == 2


async def test_a_run_due_while_the_last_one_is_still_going_is_skipped_and_logged(
    sim, redis: Redis, redis_url: str, keys: Keys, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="ticketwire")
    release = asyncio.Event()
    state: dict[str, Any] = {"tag": sim.create_tag("nudged")["id"]}
    sim.create_ticket(subject="waiting", status="waiting")
    ten = datetime(2025, 1, 10, 10, 0, tzinfo=UTC)
    at(sim, ten)
    settings = stack_settings(redis_url, keys, sim, tmp_path)
    async with worker(settings, counting_router(state, block=release)) as w:
        first = asyncio.create_task(run_schedules(w.ctx, now=ten))
        await wait_for(lambda: state.get("entered"), message="the 10:00 run is going")
        await run_schedules(w.ctx, now=ten + timedelta(minutes=15))
        assert (
            "scheduled rule tag-waiting: run of 10:15 skipped; the run started 10:00 is still "
            "going" in caplog.text
        )
        release.set()
        await first
        # The skipped run stays skipped: the next tick does not make it up.
        await run_schedules(w.ctx, now=ten + timedelta(minutes=16))
        assert state["calls"] == 1
        assert "scheduled rule tag-waiting run of 2025-01-10 10:00: 1 ticket listed, 1 fired" in (
            caplog.text
        )
        assert int(await redis.hget(keys.stats, "scheduled_skipped") or 0) == 1


async def test_two_workers_never_run_the_same_schedule_at_once(
    sim, redis: Redis, redis_url: str, keys: Keys, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="ticketwire")
    release = asyncio.Event()
    state: dict[str, Any] = {"tag": sim.create_tag("nudged")["id"]}
    sim.create_ticket(subject="waiting", status="waiting")
    ten = datetime(2025, 1, 10, 10, 0, tzinfo=UTC)
    at(sim, ten)
    settings = stack_settings(redis_url, keys, sim, tmp_path)
    router = counting_router(state, block=release)
    async with worker(settings, router) as one, worker(settings, router) as two:
        # Both workers tick for the same minute at once (arq's per-minute uniqueness can let
        # that through), then the second ticks for the next due minute while the first runs.
        runs = [
            asyncio.create_task(run_schedules(one.ctx, now=ten)),
            asyncio.create_task(run_schedules(two.ctx, now=ten)),
        ]
        await wait_for(lambda: state.get("entered"), message="one run going")
        await run_schedules(two.ctx, now=ten + timedelta(minutes=15))
        await run_schedules(one.ctx, now=ten + timedelta(minutes=15))
        assert caplog.text.count("run of 10:15 skipped; the run started 10:00 is still going") == 1
        release.set()
        await asyncio.gather(*runs)
        await wait_for(lambda: outbox_empty(redis, keys), message="tag sent")
        assert state["most"] == 1
        assert state["calls"] == 1
        assert len(writes(sim)) == 1


async def test_a_run_that_loses_its_lock_stops(
    sim, redis: Redis, redis_url: str, keys: Keys, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="ticketwire")
    release = asyncio.Event()
    state: dict[str, Any] = {"tag": sim.create_tag("nudged")["id"]}
    sim.create_ticket(subject="waiting", status="waiting")
    at(sim, NOW)
    settings = stack_settings(redis_url, keys, sim, tmp_path)
    router = counting_router(state, block=release)
    async with worker(settings, router) as w:
        # The same services, with a lock short enough to be renewed (and lost) within the test.
        scheduler = Scheduler(
            router,
            w.ctx["tw_redis"],
            keys,
            {"inboxops": w.ctx["pipeline"].vendors["inboxops"].client},
            w.ctx["outbox"],
            w.ctx["pipeline"].guard,
            Tenants(w.ctx["tw_redis"], keys, partitions=4, known={}),
            owner="short-lock",
            max_tickets=100,
            lock_ttl_s=0.3,
        )
        run = asyncio.create_task(scheduler.tick(NOW))
        await wait_for(lambda: state.get("entered"), message="run going")
        lock = keys.schedule_lock("tag-waiting")
        taken = time.monotonic()
        # Still held well past its 0.3 s lifetime: it is being renewed.
        await wait_for(
            lambda: _held_since(redis, lock, taken, 0.6), message="lock renewed while the run lasts"
        )
        await redis.delete(lock)
        assert await run == []
        assert "run of 2025-01-10 13:00 stopped: its lock expired" in caplog.text
        assert writes(sim) == []
        # Left `running`: the next tick runs it again.
        assert await redis.get(keys.schedule_run("tag-waiting", "20250110T1300Z")) == b"running"


async def _held_since(redis: Redis, lock: str, taken: float, seconds: float) -> bool:
    assert await redis.exists(lock), "the lock expired while its run was going"
    return time.monotonic() - taken > seconds


async def test_the_cap_and_a_failed_listing_are_said_in_the_log(
    sim, redis: Redis, redis_url: str, keys: Keys, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="ticketwire")
    state: dict[str, Any] = {"tag": sim.create_tag("nudged")["id"]}
    tickets = [sim.create_ticket(subject=f"w{i}", status="waiting") for i in range(3)]
    at(sim, NOW)
    settings = stack_settings(redis_url, keys, sim, tmp_path, schedule_max_tickets=2)
    async with worker(settings, counting_router(state)) as w:
        await run_schedules(w.ctx, now=NOW)
        assert "2 tickets listed, 2 fired" in caplog.text
        assert "stopped at the cap of 2 tickets (TICKETWIRE_SCHEDULE_MAX_TICKETS)" in caplog.text
        await wait_for(lambda: outbox_empty(redis, keys), message="tags sent")
        tagged = {t for e in writes(sim) for t in e.body["ticket_ids"]}
        # Oldest first: the newest ticket waits for the next run.
        assert tagged == {tickets[0]["id"], tickets[1]["id"]}

        sim.faults.fail_next("GET", "/api/v1/tickets", 503)
        await run_schedules(w.ctx, now=NOW + timedelta(minutes=15))
        assert "run of 2025-01-10 13:15: 0 tickets listed" in caplog.text
        assert "listing stopped early: HelpdeskUnavailable" in caplog.text or (
            "listing stopped early: ServerError" in caplog.text
        )


@pytest.fixture
async def cstar() -> AsyncIterator[CStarSimulator]:
    s = CStarSimulator(CStarSimulatorConfig(seed=21), clock=ManualClock(epoch=T0))
    await s.start()
    s.set_rate_limit(None)
    yield s
    await s.stop()


@pytest.fixture
async def thena() -> AsyncIterator[ThenaSimulator]:
    s = ThenaSimulator(ThenaSimulatorConfig(seed=21), clock=ManualClock(epoch=T0))
    await s.start()
    s.set_rate_limit(None)
    yield s
    await s.stop()


def write_rules(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "rules.yml").write_text(text)
    return d


async def test_cstar_rule_selects_with_the_list_filters_and_reads_tickets_as_webhooks_do(
    sim, cstar, redis: Redis, redis_url: str, keys: Keys, tmp_path
):
    old = cstar.create_ticket(title="quiet", status="pending", priority="normal")
    cstar.create_ticket(title="open", status="open", priority="normal")
    at(cstar, NOW - timedelta(hours=10))
    fresh = cstar.create_ticket(title="recent", status="pending", priority="normal")
    at(cstar, NOW)
    rules = write_rules(
        tmp_path,
        "name: cstar-stale-pending\nvendor: cstar\nevery: 1h\nselect: {status: pending}\n"
        "if: {field: updated_at, before: -48h}\nthen:\n  - add_tags: [stale]\n",
    )
    settings = stack_settings(
        redis_url,
        keys,
        sim,
        rules,
    ).with_vendor(
        "cstar",
        CStarSettings(api_url=cstar.url, team_id=cstar.team_id, api_key=Secret(cstar.api_key)),
    )
    async with worker(settings, load_rules(rules)) as w:
        await run_schedules(w.ctx, now=NOW)
        await wait_for(lambda: "stale" in cstar.ticket(old["id"])["tags"], message="tag merged")
        [listing] = [e for e in cstar.journal if e.method == "GET" and e.path.endswith("/tickets")]
        assert listing.query["status"] == "pending"
        assert "stale" not in cstar.ticket(fresh["id"])["tags"]
        # The ticket key carries the configured team, as cStar's webhooks do.
        assert await redis.exists(keys.fired(f"cstar:{cstar.team_id}:{old['id']}"))


async def test_thena_rule_filters_client_side_with_if(
    sim, thena, redis: Redis, redis_url: str, keys: Keys, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="ticketwire")
    held = thena.create_ticket(title="held", statusName="On hold", requestorEmail="a@example.com")
    thena.create_ticket(title="open", statusName="Open", requestorEmail="b@example.com")
    at(thena, NOW - timedelta(hours=10))
    recent = thena.create_ticket(
        title="recent", statusName="On hold", requestorEmail="c@example.com"
    )
    at(thena, NOW)
    rules = write_rules(
        tmp_path,
        "name: thena-wake-held\nvendor: thena\nevery: 1h\n"
        f"select: {{teamId: {thena.team_id}}}\n"
        "if:\n  all:\n    - {field: common.status, equals: waiting}\n"
        "    - {field: updatedAt, before: -48h}\nthen:\n  - set_status: open\n",
    )
    settings = stack_settings(
        redis_url,
        keys,
        sim,
        rules,
    ).with_vendor("thena", ThenaSettings(api_url=thena.url, api_key=Secret(thena.api_key)))
    async with worker(settings, load_rules(rules)) as w:
        await run_schedules(w.ctx, now=NOW)
        await wait_for(lambda: thena.ticket(held["id"])["status"] == "Open", message="woken")
        assert thena.ticket(recent["id"])["status"] == "On hold"
        listings = [e for e in thena.journal if e.method == "GET" and e.path.endswith("/tickets")]
        assert listings and all(e.query["teamId"] == thena.team_id for e in listings)
        assert "run of 2025-01-10 13:00: 3 tickets listed, 1 fired, 1 call queued" in caplog.text


async def test_once_per_ticket_holds_across_runs(
    sim, redis: Redis, redis_url: str, keys: Keys, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="ticketwire")
    tag = sim.create_tag("nudged")["id"]
    ticket = sim.create_ticket(subject="waiting", status="waiting")
    at(sim, NOW)
    rules = write_rules(
        tmp_path,
        "name: nudge-once\nvendor: inboxops\nevery: 15m\nselect: {status: waiting}\n"
        f"once_per_ticket: true\nthen:\n  - add_tags: [{tag}]\n",
    )
    settings = stack_settings(redis_url, keys, sim, rules)
    async with worker(settings, load_rules(rules)) as w:
        await run_schedules(w.ctx, now=NOW)
        await wait_for(lambda: outbox_empty(redis, keys), message="tag sent")
        at(sim, NOW + timedelta(minutes=15))
        await run_schedules(w.ctx, now=NOW + timedelta(minutes=15))
        assert "run of 2025-01-10 13:15: 1 ticket listed, 0 fired" in caplog.text
        assert "1 suppressed by the loop guard" in caplog.text
        assert f"scheduled rule nudge-once suppressed on ticket={ticket['id']}" in caplog.text
        assert len(writes(sim)) == 1
