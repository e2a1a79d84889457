"""A named account's event in the traces: the deliveries list, `ticketwire trace --account`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from simulator.inboxops import InboxOpsSimulator
from tests.conftest import wait_for
from tests.stack import running_worker, settled
from tests.test_accounts_end_to_end import START, sims, stack
from tests.test_cli_trace import trace_cli
from ticketwire.keys import Keys
from ticketwire.trace import codes
from ticketwire.trace.read import DeliveryFilter, TraceReader
from ticketwire.trace.writer import TraceWriter

__all__ = ["sims"]


async def test_a_named_accounts_event_is_traced_and_found_with_its_account(
    aiohttp_server: Any,
    redis: Redis,
    redis_url: str,
    keys: Keys,
    sims: dict[str, InboxOpsSimulator],
    tmp_path: Path,
) -> None:
    sim = sims["brand-a"]
    settings = await stack(aiohttp_server, redis, redis_url, keys, sims, tmp_path, START)
    ticket = sim.create_ticket(subject="brand-a", priority="low")
    key = f"inboxops:{sim.workspace_id}:{ticket['id']}"
    reader = TraceReader(redis, keys)
    named = DeliveryFilter(ticket=key, outcome="handled", account="brand-a")
    async with running_worker(settings):
        # Delivered twice: intake answers the second as a duplicate, in the account's name too.
        sim.faults.webhooks.duplicate_next = 1
        sim.change_ticket(ticket["id"], priority="urgent")

        async def handled() -> str | None:
            rows = (await reader.deliveries(named)).rows
            return next((d.event_id for d in rows if d.rules), None)

        event_id = await wait_for(handled, timeout=30, message="brand-a's event handled")
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="every event handled")

    row = next(d for d in (await reader.deliveries(named)).rows if d.event_id == event_id)
    assert (row.account, row.tenant) == ("brand-a", sim.workspace_id)
    dup = DeliveryFilter(ticket=key, outcome="duplicate", account="brand-a")
    dups = (await reader.deliveries(dup)).rows
    assert [(d.event_id, d.tenant) for d in dups] == [(event_id, sim.workspace_id)]
    # Another account's filter, and the default account's, leave it out.
    for other in ("brand-b", "default"):
        flt = DeliveryFilter(ticket=key, account=other)
        assert not (await reader.deliveries(flt)).rows

    env = {"REDIS_URL": redis_url, "TICKETWIRE_KEY_PREFIX": keys.prefix}
    shown = await trace_cli(event_id, "--account", "brand-a", env=env)
    assert shown.code == 0, shown
    assert f"event {event_id} (inboxops, account brand-a), ticket {key}" in shown.out
    assert (
        f"received inboxops ticket.updated for ticket {ticket['id']} "
        f"(workspace {sim.workspace_id}, account brand-a)"
    ) in shown.out
    assert f"ticket {key} account brand-a fired start-urgent" in shown.out

    as_json = await trace_cli(event_id, "--account", "brand-a", "--json", env=env)
    doc = json.loads(as_json.out)
    rx = doc["records"][0]
    assert (rx["kind"], rx["tenant"], rx["account"]) == ("received", sim.workspace_id, "brand-a")
    assert doc["account"] == "brand-a" and doc["deliveries"][0]["account"] == "brand-a"

    # Looked up as the default account's, it is not found, and the message says why.
    missing = await trace_cli(event_id, env=env)
    assert missing.code == 1 and "--account NAME" in missing.err, missing


async def test_only_a_named_accounts_entries_carry_an_account_field(
    redis: Redis, keys: Keys
) -> None:
    writer = TraceWriter(redis, keys, retention_s=60)
    rx = ("rx", "inboxops", "w1", "ticket.updated", "42", 1, "0/1-0", 1, "fp")
    writer.event("inboxops:w1:42", "e-default", [rx], "handled", "")
    writer.event("inboxops:w1:43", "e-named", [(*rx, "brand-a")], "handled", "")
    writer.log({"v": "inboxops", "e": "l-default", "o": "error", "n": ""})
    writer.log({"v": "inboxops", "e": "l-named", "o": "error", "n": "brand-a"})
    await writer.flush()
    entries = await redis.xrange(keys.trace_log)
    accounts = {f[b"e"].decode(): f.get(codes.LOG_ACCOUNT.encode()) for _, f in entries}
    assert accounts == {
        "e-default": None,
        "e-named": b"brand-a",
        "l-default": None,
        "l-named": b"brand-a",
    }
