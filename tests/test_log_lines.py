"""What the worker's log says about an event: every line true, in the order things happened."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from receiver.app import create_app
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.stack import SECRET, outbox_empty, running_worker, settled, stack_settings
from tests.test_loop_safety_e2e import score_router
from ticketwire.engine import Context, Router, evaluate
from ticketwire.logs import UnsignalledShutdown
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=31, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def stack(aiohttp_server, redis, redis_url, keys, sim, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    settings = stack_settings(redis_url, keys, sim, rules)
    app = create_app(
        settings, redis, [InboxOpsWebhook(settings.vendor("inboxops").webhook_secrets)]
    )
    server = await aiohttp_server(app)
    sim.add_endpoint(str(server.make_url("/webhooks/inboxops")), SECRET)
    return settings


def lines(caplog: pytest.LogCaptureFixture, part: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if part in r.getMessage()]


async def test_a_rules_own_line_is_logged_only_when_its_firing_goes_through(
    stack, redis, keys, sim, caplog
):
    # Its rule logs `scoring <n>` before writing score n.
    router = score_router()
    caplog.set_level(logging.INFO, logger="ticketwire")
    ticket = sim.create_ticket(subject="count me", custom_fields={"score": 1})
    async with running_worker(stack, router):
        sim.change_ticket(ticket["id"], subject="count me, please")
        await wait_for(lambda: sim.ticket(ticket["id"])["custom_fields"]["score"] == 2)
        # The write-back's own webhook runs the rule again; the loop guard suppresses it.
        await wait_for(
            lambda: lines(caplog, "rule count-updates suppressed"), message="the echo suppressed"
        )
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all handled")
        await wait_for(lambda: outbox_empty(redis, keys), message="write-backs sent")
    said = [r.getMessage() for r in caplog.records if "count-updates" in r.getMessage()]
    # One firing went through: its line once, right before the fired line.
    assert len(lines(caplog, ": scoring 2")) == 1
    assert lines(caplog, ": scoring 3") == []
    at = next(i for i, m in enumerate(said) if m.endswith(": scoring 2"))
    assert said[at + 1].startswith(f"rule count-updates fired on ticket={ticket['id']}")
    [suppressed] = lines(caplog, "rule count-updates suppressed")
    assert suppressed.endswith("; the line it logged is not shown"), suppressed


async def test_held_lines_keep_the_rules_logger_level_and_source():
    from tests.test_engine_router import make_event

    router = Router()

    @router.on("ticket.updated", name="quiet")
    async def quiet(ctx: Context) -> None:
        ctx.log.debug("not shown at INFO")
        ctx.log.warning("looked at %s", ctx.ticket_id)
        ctx.set_priority("high")

    logger = logging.getLogger("ticketwire.test-held")
    logger.setLevel(logging.INFO)
    [decision] = await evaluate(router, make_event(), log=logger, hold_log=True)
    [record] = decision.log_lines
    assert record.getMessage() == "rule quiet event evt-1: looked at t-1"
    assert record.levelno == logging.WARNING and record.funcName == "quiet"
    assert record.pathname == __file__
    assert decision.withheld() == "; the line it logged is not shown"


async def test_an_event_no_rule_listens_to_says_so(stack, redis, keys, sim, caplog):
    router = Router()

    @router.on("ticket.created", vendor="inboxops", name="on-create")
    async def on_create(ctx: Context) -> None:
        ctx.set_priority("high")

    caplog.set_level(logging.INFO, logger="ticketwire")
    ticket = sim.create_ticket(subject="assign me")
    async with running_worker(stack, router):
        sim.change_ticket(ticket["id"], assignee_id=sim.agents[0]["id"])
        await wait_for(
            lambda: lines(caplog, "no rule listens to ticket.assigned on inboxops"),
            message="the line",
        )
    [line] = lines(caplog, "processing inboxops ticket.assigned")
    assert line.endswith(f"ticket={ticket['id']}: no rule listens to ticket.assigned on inboxops")
    # An event a rule listens to does not say it.
    assert all("no rule listens" not in m for m in lines(caplog, "ticket.created"))


def test_arqs_shutdown_line_names_no_signal_that_was_not_sent():
    keep = UnsignalledShutdown()

    def record(sig: str) -> logging.LogRecord:
        return logging.LogRecord(
            "arq.worker",
            logging.INFO,
            "w.py",
            1,
            "shutdown on %s ◆ %d jobs complete",
            (sig, 0),
            None,
        )

    assert not keep.filter(record("SIGUSR1"))
    assert keep.filter(record("SIGTERM"))
