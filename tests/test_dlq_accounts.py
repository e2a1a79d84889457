"""Dead letters of a named helpdesk account: recorded, listed, filtered, and redriven through it."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from redis.asyncio import Redis

from tests.conftest import wait_for
from tests.stack import running_worker, settled
from tests.test_accounts_end_to_end import (
    START,
    patched,
    sims,  # noqa: F401 (fixture)
    stack,
)
from tests.test_console_app import TOKEN, client_for, log_in, settings
from tests.test_dlq import (
    cli,  # noqa: F401 (fixture)
    delivery,
    patch,
    store,
)
from ticketwire import Context, Router
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.stored import StoredDelivery
from workers.deadletter import dead_letter, get_letter, redrive
from workers.dlqfilter import LetterFilter, matching


async def test_a_refused_write_back_is_dead_lettered_with_its_account_and_redriven_through_it(
    aiohttp_server,
    redis,
    redis_url,
    keys,
    sims,  # noqa: F811
    tmp_path,
    cli,  # noqa: F811
):
    a, b = sims["brand-a"], sims["brand-b"]
    settings = await stack(aiohttp_server, redis, redis_url, keys, sims, tmp_path, START)
    ticket = b.create_ticket(subject="Refused once", priority="low")
    b.faults.fail_next("PATCH", "/api/v1/tickets/*", 400)
    async with running_worker(settings):
        b.change_ticket(ticket["id"], priority="urgent")
        await wait_for(lambda: redis.xlen(keys.dlq), message="dead letter")
        [(raw_id, fields)] = await redis.xrange(keys.dlq)
        letter_id = raw_id.decode()
        assert fields[b"account"] == b"brand-b"

        code, out, err = await cli("list")
        assert code == 0, err
        [header, row] = out.splitlines()[:2]
        assert header.split()[:4] == ["ID", "AGE", "TICKET", "ACCOUNT"]
        assert row.split()[3] == "brand-b"
        code, out, _ = await cli("list", "--json")
        assert json.loads(out)[0]["account"] == "brand-b"
        code, out, _ = await cli("show", letter_id)
        assert re.search(r"^  account\s+brand-b$", out, re.MULTILINE), out

        for other in ("default", "brand-a"):
            code, out, _ = await cli("redrive", "--filter", f"account={other}", "--dry-run")
            assert code == 0 and "no dead letter matches" in out
        code, out, _ = await cli("redrive", "--filter", "account=brand-b", "--dry-run")
        assert f"{letter_id}: re-queue call" in out and "through account brand-b" in out

        code, out, err = await cli("redrive", "--filter", "account=brand-b")
        assert code == 0, err
        assert "through account brand-b" in out
        # The fault was used up: brand-b's API takes the call again, brand-a's never sees it.
        await wait_for(
            lambda: b.ticket(ticket["id"])["status"] == "in_progress",
            message="redriven PATCH accepted by brand-b",
        )
        assert [e.status for e in b.journal if e.method == "PATCH"] == [400, 200]
        assert patched(a) == []
        assert await redis.xlen(keys.dlq) == 0


def raising_once(failed: dict[str, str]) -> Router:
    """Starts urgent tickets; raises on the first event it sees, then works."""
    router = Router()

    @router.on("ticket.updated", vendor="inboxops", name="start-urgent")
    async def start_urgent(ctx: Context) -> None:
        if failed.setdefault("event", ctx.event.id) == ctx.event.id and not failed.get("fixed"):
            raise RuntimeError("lookup table missing")
        if ctx.ticket.get("priority") == "urgent" and ctx.ticket.get("status") == "open":
            ctx.update(status="in_progress")

    return router


async def test_a_failed_rule_of_a_named_account_is_re_run_for_that_account(
    aiohttp_server,
    redis,
    redis_url,
    keys,
    sims,  # noqa: F811
    tmp_path,
    cli,  # noqa: F811
):
    a, b = sims["brand-a"], sims["brand-b"]
    settings = await stack(aiohttp_server, redis, redis_url, keys, sims, tmp_path, START)
    ticket = a.create_ticket(subject="Rule raises", priority="low")
    failed: dict[str, str] = {}
    async with running_worker(settings, raising_once(failed)):
        a.change_ticket(ticket["id"], priority="urgent")
        await wait_for(lambda: redis.xlen(keys.dlq), message="dead letter of the failed rule")
        await a.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="events handled")
        [(raw_id, fields)] = await redis.xrange(keys.dlq)
        assert fields[b"account"] == b"brand-a"
        assert patched(a) == []

        failed["fixed"] = "1"
        code, out, err = await cli("redrive", "--filter", "account=brand-a,kind=event")
        assert code == 0, err
        assert f"redrove {raw_id.decode()}" in out and "through account brand-a" in out
        await wait_for(
            lambda: a.ticket(ticket["id"])["status"] == "in_progress",
            message="brand-a's ticket updated after the redrive",
        )
        assert patched(a) == [ticket["id"]] and patched(b) == []
        assert await redis.xlen(keys.dlq) == 0


async def test_an_event_letter_keeps_its_account_and_is_re_added_with_it(redis: Redis, keys: Keys):
    named = await store(redis, keys, dataclasses.replace(delivery(), account="brand-a"), 1)
    plain = await store(redis, keys, delivery("evt_2"), 2)
    named_id = await dead_letter(
        redis, keys, reason="boom", ticket_key=named.ticket_key, delivery=named, rule="r"
    )
    plain_id = await dead_letter(
        redis, keys, reason="boom", ticket_key=plain.ticket_key, delivery=plain, rule="r"
    )
    # The default account's letter is written as before: no account field.
    [(_, plain_fields)] = await redis.xrange(keys.dlq, plain_id, plain_id)
    assert b"account" not in plain_fields
    assert (await get_letter(redis, keys, plain_id)).account == "default"
    assert (await get_letter(redis, keys, named_id)).account == "brand-a"

    async def ids(text: str) -> list[str]:
        return [x.id for x in await matching(redis, keys, LetterFilter.parse(text, now_ms=0))]

    assert await ids("account=brand-a") == [named_id]
    assert await ids("account=default") == [plain_id]
    assert await ids("account=brand-b") == []

    done = await redrive(redis, keys, named_id, partitions=4)
    stream, _, entry = done.target.removeprefix("stream ").partition(" as ")
    [(eid, fields)] = await redis.xrange(stream, entry, entry)
    assert StoredDelivery.from_fields(eid, fields).account == "brand-a"


async def test_a_call_letter_takes_its_account_from_the_call(redis: Redis, keys: Keys):
    call = dataclasses.replace(patch(), account="brand-b")
    letter_id = await dead_letter(
        redis, keys, reason="HTTP 400", ticket_key="inboxops:42", call=call
    )
    letter = await get_letter(redis, keys, letter_id)
    assert letter.account == "brand-b" and letter.call == call
    await redrive(redis, keys, letter_id, partitions=4)
    [raw] = await redis.lrange(keys.outbox("inboxops:42"), 0, -1)  # type: ignore[misc]
    assert json.loads(json.loads(raw)["call"])["account"] == "brand-b"


BODY = '{"priority": "high"}'


async def test_drop_names_the_account_of_each_dropped_letter(
    redis: Redis,
    keys: Keys,
    cli,  # noqa: F811
):
    async def letter(ticket: str, account: str) -> str:
        call = dataclasses.replace(patch(ticket), account=account)
        return await dead_letter(
            redis, keys, reason="HTTP 400", ticket_key=f"inboxops:{ticket}", call=call
        )

    one, plain, two, three = (
        await letter("1", "brand-a"),
        await letter("2", "default"),
        await letter("3", "brand-b"),
        await letter("4", "brand-b"),
    )
    code, out, _ = await cli("drop", one)
    assert code == 0
    assert out.startswith(
        f"dropped {one}: PATCH /tickets/1 {BODY} ticket inboxops:1 account brand-a"
    )
    # The default account's letter is described as before: no account.
    code, out, _ = await cli("drop", plain)
    assert code == 0 and "account" not in out

    code, out, _ = await cli("drop", "--filter", "account=brand-b", "--dry-run")
    assert code == 0
    assert (
        f"would drop {two}: PATCH /tickets/3 {BODY} ticket inboxops:3 account brand-b (HTTP" in out
    )
    code, out, _ = await cli("drop", "--filter", "ticket=3")
    assert code == 0
    [line, summary] = out.splitlines()
    assert line.startswith(f"dropped {two}: ") and " account brand-b " in line
    assert summary == "dropped 1 dead letter(s) matching ticket=3"
    code, out, _ = await cli("drop", "--filter", "account=brand-b", "--json")
    doc = json.loads(out)
    assert doc["dropped"] == 1
    assert [(x["id"], x["account"]) for x in doc["letters"]] == [(three, "brand-b")]
    assert await redis.xlen(keys.dlq) == 0


async def test_the_console_shows_the_account_only_once_a_letter_has_one(
    aiohttp_client: Any, redis: Redis, keys: Keys
):
    client = await client_for(aiohttp_client, settings(keys, console_token=Secret(TOKEN)), redis)
    await log_in(client)
    plain = await store(redis, keys, delivery(), 1)
    await dead_letter(redis, keys, reason="boom", ticket_key=plain.ticket_key, delivery=plain)
    page = await (await client.get("/console/dead-letters")).text()
    assert "<th>Account</th>" not in page and 'name="account"' not in page
    named = await store(redis, keys, dataclasses.replace(delivery("evt_2"), account="brand-a"), 2)
    await dead_letter(redis, keys, reason="bang", ticket_key=named.ticket_key, delivery=named)
    page = await (await client.get("/console/dead-letters")).text()
    assert "<th>Account</th>" in page and 'name="account"' in page
    only = await (await client.get("/console/dead-letters?account=brand-a")).text()
    assert "bang" in only and "boom" not in only
