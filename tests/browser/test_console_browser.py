"""The console in headless Chromium against real receiver and worker processes, Redis and the
simulator: refusal without the token, the list and a filter, a trace, a ticket's timeline,
pausing a rule (seen in what the worker does next) and a bulk redrive."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.browser.harness import (
    RULE,
    Stack,
    browser_page,
    chromium_missing,
    log_in,
    running_stack,
    shoot,
)
from tests.conftest import wait_for
from ticketwire.keys import Keys
from ticketwire.trace.read import Delivery, DeliveryFilter, TraceReader

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(chromium_missing()), reason=chromium_missing() or "-"),
]


async def handled(stack: Stack, ticket_id: str, priority: str) -> Delivery:
    """Wait for the worker's trace of the change of a ticket to `priority`; its list row."""
    reader = TraceReader(stack.redis, stack.keys)
    flt = DeliveryFilter(ticket=stack.ticket_key(ticket_id), outcome="handled")

    async def row() -> Delivery | None:
        for d in (await reader.deliveries(flt, limit=50)).rows:
            trace = await reader.event(d.event_id, "inboxops")
            if trace is not None and any(
                r.kind == "ch" and ["priority", "low", priority] in r.values[0]
                for r in trace.records
            ):
                return d
        return None

    found: Delivery = await wait_for(
        row, timeout=20, message=f"the traced change of ticket {ticket_id} to {priority}"
    )
    return found


async def test_without_the_token_the_console_refuses(
    redis: Redis, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with (
        running_stack(redis, redis_url, keys, tmp_path) as stack,
        browser_page(stack.base) as page,
    ):
        await page.goto("/console/deliveries")
        assert page.url.endswith("/console/login?next=/console/deliveries")
        await shoot(page, "1-login")
        await page.fill("#token", "not-the-token")
        await page.click("button[type=submit]")
        assert "Wrong token." in await page.inner_text("main")
        assert await page.context.cookies() == []
        await page.goto("/console/rules")
        assert "/console/login" in page.url
        assert await page.locator("table").count() == 0


async def test_the_list_a_filter_a_trace_and_a_timeline(
    redis: Redis, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with running_stack(redis, redis_url, keys, tmp_path) as stack:
        sim = stack.sim
        hot = sim.create_ticket(subject="Printer on fire", priority="low")
        cold = sim.create_ticket(subject="Toner low", priority="low")
        sim.change_ticket(hot["id"], priority="urgent")
        sim.change_ticket(cold["id"], priority="high")
        fired = await handled(stack, hot["id"], "urgent")
        quiet = await handled(stack, cold["id"], "high")
        await wait_for(lambda: stack.tag in stack.tags_of(hot["id"]), message="rule fired")
        assert fired.rules == (RULE,) and quiet.rules == ()

        async with browser_page(stack.base) as page:
            await log_in(page)
            assert page.url.endswith("/console/deliveries")
            body = await page.inner_text("table.deliveries")
            assert fired.event_id in body and quiet.event_id in body
            await shoot(page, "2-deliveries")

            # Filter by the rule that fired, through the form.
            await page.fill("input[name=rule]", RULE)
            await page.click("form.filters button[type=submit]")
            await page.wait_for_url("**/console/deliveries?*rule=tag-urgent*")
            body = await page.inner_text("table.deliveries")
            assert fired.event_id in body and quiet.event_id not in body
            await shoot(page, "3-deliveries-filtered")

            # The trace of the event, from its link.
            await page.click(f"a:has-text('{fired.event_id}')")
            await page.wait_for_url(f"**/console/events/{fired.event_id}*")
            trace = await page.inner_text("#trace")
            assert f"rule {RULE}: fired" in trace
            assert "priority: 'low' → 'urgent'" in trace
            assert "POST /api/v1/tickets/bulk" in trace
            await shoot(page, "4-trace")

            # The ticket's timeline, from the trace.
            await page.click(f"a:has-text('{fired.ticket}')")
            await page.wait_for_url("**/console/tickets/**")
            timeline = await page.inner_text("#timeline")
            assert f"received inboxops ticket.updated for ticket {hot['id']}" in timeline
            assert f"rule {RULE}: fired" in timeline
            assert "→ 200" in timeline
            await shoot(page, "5-timeline")

            # Live counters: complete without scripts, refreshed by the page's own script.
            await page.goto("/console/live")
            assert "Dead letters" in await page.inner_text(".cards")
            assert "accepted" in await page.inner_text("#counters")
            await page.wait_for_function(
                "() => document.getElementById('rate-in').textContent.endsWith('/s')"
            )
            await shoot(page, "11-live")


async def test_pausing_a_rule_makes_the_worker_skip_it(
    redis: Redis, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with running_stack(redis, redis_url, keys, tmp_path) as stack:
        sim = stack.sim
        async with browser_page(stack.base) as page:
            await log_in(page)
            await page.goto("/console/rules")
            row = page.locator(f"tr[data-rule='{RULE}']")
            assert "running" in await row.inner_text()
            await row.locator("button:has-text('Pause')").click()
            await page.wait_for_url("**/console/rules?paused=*")
            assert "paused" in await page.locator(f"tr[data-rule='{RULE}']").inner_text()
            await shoot(page, "6-rules-paused")

            # The worker follows within seconds, with no restart; the next event skips the rule.
            await stack.worker.wait_output(f"rule {RULE} paused", timeout=5)
            ticket = sim.create_ticket(subject="While paused", priority="low")
            sim.change_ticket(ticket["id"], priority="urgent")
            skipped = await handled(stack, ticket["id"], "urgent")
            assert skipped.rules == ()
            await stack.worker.wait_output(f"rule {RULE} skipped on ticket={ticket['id']}: paused")
            assert stack.tag not in stack.tags_of(ticket["id"])
            await page.goto(f"/console/events/{skipped.event_id}?vendor=inboxops")
            assert f"rule {RULE}: paused, skipped" in await page.inner_text("#trace")

            # Resume: the next event fires it again.
            await page.goto("/console/rules")
            await page.locator(f"tr[data-rule='{RULE}'] button:has-text('Resume')").click()
            await page.wait_for_url("**/console/rules?resumed=*")
            await stack.worker.wait_output(f"rule {RULE} resumed", timeout=5)
            again = sim.create_ticket(subject="After resume", priority="low")
            sim.change_ticket(again["id"], priority="urgent")
            await wait_for(
                lambda: stack.tag in stack.tags_of(again["id"]), timeout=20, message="fires again"
            )
            await page.goto("/console/rules")
            row_text = await page.locator(f"tr[data-rule='{RULE}']").inner_text()
            assert "running" in row_text
            await shoot(page, "7-rules")


async def test_a_bulk_redrive_by_filter(
    redis: Redis, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    async with running_stack(redis, redis_url, keys, tmp_path) as stack:
        sim = stack.sim
        # The helpdesk refuses the write-backs: each becomes a dead letter.
        sim.faults.fail_next("POST", "/api/v1/tickets/bulk", 422, times=100)
        tickets = [sim.create_ticket(subject=f"Refused {i}", priority="low") for i in range(3)]
        for t in tickets:
            sim.change_ticket(t["id"], priority="urgent")

        async def letters() -> bool:
            return await stack.redis.xlen(stack.keys.dlq) == 3

        await wait_for(letters, timeout=30, message="three dead letters")
        sim.faults.clear()

        async with browser_page(stack.base) as page:
            await log_in(page)
            await page.goto("/console/dead-letters")
            assert "3 letters" in await page.inner_text("#letter-count")
            await page.fill("input[name=rule]", RULE)
            await page.click("form.filters button:has-text('Preview redrive')")
            await page.wait_for_url("**/console/dead-letters?*preview=1*")
            preview = await page.inner_text("#preview")
            assert preview.count("re-queue call") == 3, preview
            assert await stack.redis.xlen(stack.keys.dlq) == 3, "a preview changes nothing"
            await shoot(page, "8-dead-letters-preview")

            await page.click("button:has-text('Redrive 3 matching')")
            await page.wait_for_url("**/console/dead-letters?*redriven=3*")
            assert "3 redriven" in await page.inner_text("main")
            await shoot(page, "9-dead-letters-redriven")
        for t in tickets:
            await wait_for(
                lambda t=t: stack.tag in stack.tags_of(t["id"]),
                timeout=20,
                message=f"the redriven call tags ticket {t['id']}",
            )
        assert await stack.redis.xlen(stack.keys.dlq) == 0
