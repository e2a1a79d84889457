"""End to end: change operators and stale deliveries through simulator → receiver → worker.

A rule using `changed_to` fires on the transition only; a delivery older than one already
applied is recorded stale and not acted on; and a sequence of ticket changes delivered shuffled
and duplicated ends in the same helpdesk state as the same changes delivered in order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from receiver.app import create_app
from simulator.common.clock import ManualClock
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
from tests.conftest import wait_for
from tests.stack import SECRET, outbox_empty, running_worker, settled, stack_settings
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors import registry
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook
from ticketwire.vendors.thena.settings import ThenaSettings
from ticketwire.vendors.thena.webhook import priority_name, status_name
from ticketwire.vocabulary import neutral_priority, neutral_status, vendor_status

TH_TOKEN = "thena-ordering-token"


def write_rules(tmp_path: Path, text: str) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "rules.yml").write_text(text)
    return rules


def patches(sim: InboxOpsSimulator, ticket_id: str) -> list[Any]:
    return [e for e in sim.journal if e.method == "PATCH" and ticket_id in e.path]


@pytest.fixture
async def inboxops() -> AsyncIterator[InboxOpsSimulator]:
    sim = InboxOpsSimulator(
        SimulatorConfig(seed=11, rate_limit_per_minute=None), clock=ManualClock()
    )
    await sim.start()
    yield sim
    await sim.stop()


async def start_receiver(aiohttp_server: Any, settings: Settings, redis: Redis) -> str:
    # The simulator's manual clock dates events in January 2025, too old for the
    # event-age check (tested on its own in test_event_age).
    settings = replace(settings, max_event_age_s=0)
    app = create_app(
        settings, redis, [InboxOpsWebhook(settings.vendor("inboxops").webhook_secrets)]
    )
    server = await aiohttp_server(app)
    return str(server.make_url("/webhooks/inboxops"))


TO_WAITING = """
name: waiting-is-urgent
vendor: inboxops
events: [ticket.updated]
if: {field: status, changed_to: waiting}
then:
  - set_priority: urgent
"""


async def test_changed_to_fires_on_the_transition_only(
    aiohttp_server, redis, redis_url, keys, inboxops, tmp_path, caplog
):
    sim, clock = inboxops, inboxops.clock
    assert isinstance(clock, ManualClock)
    settings = stack_settings(redis_url, keys, sim, write_rules(tmp_path, TO_WAITING))
    sim.add_endpoint(await start_receiver(aiohttp_server, settings, redis), SECRET)
    caplog.set_level("INFO", logger="ticketwire")
    ticket = sim.create_ticket(subject="Where is my order?", priority="normal")
    async with running_worker(settings):
        clock.advance(60)
        sim.change_ticket(ticket["id"], status="waiting")
        await wait_for(
            lambda: sim.ticket(ticket["id"])["priority"] == "urgent", message="rule fired"
        )
        # Still waiting, but nothing about the status changed: the rule stays quiet.
        clock.advance(60)
        sim.change_ticket(ticket["id"], subject="Where is my order? (2nd ask)")
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all deliveries handled")
        await wait_for(lambda: outbox_empty(redis, keys), message="write-backs sent")
        assert [p.body for p in patches(sim, ticket["id"])] == [{"priority": "urgent"}]
        assert (
            "rule waiting-is-urgent skipped on ticket="
            f"{ticket['id']}: condition false: status did not change (still 'waiting'), "
            "rule needs a change to 'waiting'"
        ) in caplog.text
        # The ticket was seen from its creation, so the change was never unknown.
        assert "first event seen for this ticket" not in caplog.text


async def test_a_rule_on_a_ticket_never_seen_says_why_it_waits(
    aiohttp_server, redis, redis_url, keys, inboxops, tmp_path, caplog
):
    sim = inboxops
    settings = stack_settings(redis_url, keys, sim, write_rules(tmp_path, TO_WAITING))
    # The ticket exists before the endpoint does: its first delivery is a status change.
    ticket = sim.create_ticket(subject="Old ticket", priority="normal")
    sim.add_endpoint(await start_receiver(aiohttp_server, settings, redis), SECRET)
    caplog.set_level("INFO", logger="ticketwire")
    async with running_worker(settings):
        sim.clock.advance(60)  # type: ignore[attr-defined]
        sim.change_ticket(ticket["id"], status="waiting")
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all deliveries handled")
        assert (
            "condition false: status: first event seen for this ticket; no earlier state to compare"
        ) in caplog.text
        assert patches(sim, ticket["id"]) == []


STATUS_RULE = """
name: into-waiting
vendor: inboxops
events: [ticket.status_changed]
if: {field: status, changed_to: waiting}
then:
  - set_priority: high
"""


async def test_an_older_delivery_is_recorded_stale_and_not_acted_on(
    aiohttp_server, redis, redis_url, keys, inboxops, tmp_path, caplog
):
    sim, clock = inboxops, inboxops.clock
    assert isinstance(clock, ManualClock)
    settings = stack_settings(redis_url, keys, sim, write_rules(tmp_path, STATUS_RULE))
    url = await start_receiver(aiohttp_server, settings, redis)
    sim.add_endpoint(url, SECRET, ["ticket.created", "ticket.status_changed"])
    caplog.set_level("INFO", logger="ticketwire")
    ticket = sim.create_ticket(subject="Refund", priority="normal")
    async with running_worker(settings):
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="created handled")
        # The two status changes go out as a group of two, never in their own order.
        sim.faults.webhooks.reorder_window = 2
        clock.advance(60)
        sim.change_ticket(ticket["id"], status="waiting")
        clock.advance(60)
        sim.change_ticket(ticket["id"], status="in_progress")
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all deliveries handled")
        first, second = [d.event_id for d in sim.deliveries if d.event == "ticket.status_changed"][
            ::-1
        ]  # delivered newest first
        [(_, record)] = await redis.xrange(keys.stale)
        assert record[b"event_id"].decode() == first
        assert record[b"applied_event_id"].decode() == second
        assert record[b"updated_at"] == b"2025-01-06T09:01:00+00:00"
        assert record[b"applied_updated_at"] == b"2025-01-06T09:02:00+00:00"
        assert (
            f"stale event={first} ticket={ticket['id']}: updated_at 2025-01-06T09:01:00Z is "
            f"older than 2025-01-06T09:02:00Z applied by event={second}; not acted on"
        ) in caplog.text
        # Acting on it would have seen open → waiting; the ticket is in progress by now.
        assert patches(sim, ticket["id"]) == []
        assert sim.ticket(ticket["id"])["priority"] == "normal"
        await wait_for(
            lambda: redis.hget(keys.stats, "stale"), message="stale counted in the stats"
        )
        assert int(await redis.hget(keys.stats, "stale")) == 1


# ---- shuffled and duplicated deliveries end where ordered ones do ----

#: Neutral rules, so the same file runs on InboxOps and Thena.
TRANSITIONS = """
- name: waiting-is-high
  events: [ticket.status_changed]
  if: {field: common.status, changed_to: waiting}
  then:
    - set_priority: high
- name: leaving-waiting-is-normal
  events: [ticket.status_changed]
  if: {field: common.status, changed_from: waiting}
  then:
    - set_priority: normal
"""
#: open → waiting → in progress → waiting: three transitions, each firing one rule.
STEPS = ("waiting", "in_progress", "waiting")


@dataclass
class Desk:
    """One helpdesk simulator, driven in neutral words."""

    vendor: str
    sim: Any
    clock: ManualClock
    create: Callable[[], str]
    set_status: Callable[[str, str], None]
    state: Callable[[str], tuple[str | None, str | None]]


def inboxops_desk(seed: int) -> Desk:
    clock = ManualClock()
    sim = InboxOpsSimulator(SimulatorConfig(seed=seed, rate_limit_per_minute=None), clock=clock)

    def state(ticket_id: str) -> tuple[str | None, str | None]:
        t = sim.ticket(ticket_id)
        return (
            neutral_status("inboxops", t["status"]),
            neutral_priority("inboxops", t["priority"]),
        )

    return Desk(
        "inboxops",
        sim,
        clock,
        create=lambda: str(sim.create_ticket(subject="Ordering", priority="low")["id"]),
        set_status=lambda tid, s: sim.change_ticket(tid, status=vendor_status("inboxops", s)),
        state=state,
    )


def thena_desk(seed: int) -> Desk:
    clock = ManualClock()
    sim = ThenaSimulator(ThenaSimulatorConfig(seed=seed), clock=clock)

    def state(ticket_id: str) -> tuple[str | None, str | None]:
        t = sim.ticket(ticket_id)
        return (
            neutral_status("thena", status_name(t)),
            neutral_priority("thena", priority_name(t)),
        )

    return Desk(
        "thena",
        sim,
        clock,
        create=lambda: str(sim.create_ticket(title="Ordering", priorityName="Low")["id"]),
        set_status=lambda tid, s: sim.change_ticket(tid, statusName=vendor_status("thena", s)),
        state=state,
    )


DESKS = {"inboxops": inboxops_desk, "thena": thena_desk}
#: Only the events the rules run on: write-backs change the priority, which sends no status
#: event, so the deliveries under test are exactly the agent's status changes.
SUBSCRIBED = {
    "inboxops": ["ticket.created", "ticket.status_changed"],
    "thena": ["ticket:created", "ticket:status:changed"],
}


async def run_steps(
    desk: Desk, aiohttp_server: Any, redis: Redis, settings: Settings, *, shuffle: bool
) -> tuple[tuple[str | None, str | None], dict[bytes, bytes]]:
    """Create a ticket, walk it through STEPS, and return its final state and the stats."""
    sim, keys = desk.sim, Keys(settings.key_prefix)
    await sim.start()
    if desk.vendor == "thena":
        sim.set_rate_limit(None)
        settings = settings.with_vendor(
            "thena",
            ThenaSettings(
                webhook_secrets=(Secret(TH_TOKEN),), api_url=sim.url, api_key=Secret(sim.api_key)
            ),
        )
    else:
        settings = settings.with_vendor(
            "inboxops",
            InboxOpsSettings((Secret(SECRET),), sim.url, Secret(sim.api_key)),
        )
    try:
        # The simulator's manual clock dates events in January 2025, too old for the
        # event-age check (tested on its own in test_event_age).
        settings = replace(settings, max_event_age_s=0)
        server = await aiohttp_server(create_app(settings, redis, registry.intakes(settings)))
        url = str(server.make_url(f"/webhooks/{desk.vendor}"))
        sim.add_endpoint(
            url, TH_TOKEN if desk.vendor == "thena" else SECRET, SUBSCRIBED[desk.vendor]
        )
        async with running_worker(settings):
            ticket_id = desk.create()
            await sim.wait_deliveries_idle()
            await wait_for(lambda: settled(redis, keys), message="created handled")
            if shuffle:
                # Every status change delivered twice, the six deliveries sent in a shuffle.
                sim.faults.webhooks.duplicate_next = len(STEPS)
                sim.faults.webhooks.reorder_window = 2 * len(STEPS)
            for status in STEPS:
                desk.clock.advance(60)
                desk.set_status(ticket_id, status)
                if not shuffle:
                    # In order, one step at a time: each change and its write-back settle
                    # before the next change is made.
                    await sim.wait_deliveries_idle()
                    await wait_for(lambda: settled(redis, keys), message="step handled")
                    await wait_for(lambda: outbox_empty(redis, keys), message="step written")
            await sim.wait_deliveries_idle()
            await wait_for(lambda: settled(redis, keys), message="all deliveries handled")
            await wait_for(lambda: outbox_empty(redis, keys), message="write-backs sent")
        # Stopping the worker flushed its counters to the stats hash.
        return desk.state(ticket_id), await redis.hgetall(keys.stats)
    finally:
        await sim.stop()


@pytest.mark.parametrize("vendor", ["inboxops", "thena"])
async def test_shuffled_and_duplicated_deliveries_end_where_ordered_ones_do(
    aiohttp_server, redis, redis_url, keys, tmp_path, vendor
):
    rules = write_rules(tmp_path, TRANSITIONS)
    base = Settings(
        redis_url=redis_url,
        rules_dir=rules,
        partitions=4,
        lease_ttl_s=2.0,
        http_timeout_s=3.0,
        backoff_s=0.05,
        max_attempts=3,
        # The rules act on transitions only, so they cannot feed themselves; a short echo window
        # lets a rule act again on the same ticket as the steps come back to `waiting`.
        echo_window_s=0.001,
    )
    ordered = dataclasses.replace(base, key_prefix=f"{keys.prefix}ordered:")
    shuffled = dataclasses.replace(base, key_prefix=f"{keys.prefix}shuffled:")
    in_order, in_order_stats = await run_steps(
        DESKS[vendor](5), aiohttp_server, redis, ordered, shuffle=False
    )
    assert in_order == ("waiting", "high")
    assert b"stale" not in in_order_stats
    final, stats = await run_steps(DESKS[vendor](5), aiohttp_server, redis, shuffled, shuffle=True)
    assert final == in_order
    # The faults did happen: duplicates were refused at intake, older deliveries were stale.
    assert int(stats[b"duplicate"]) == len(STEPS)
    assert int(stats.get(b"stale", 0)) >= 1
