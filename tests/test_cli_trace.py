"""`ticketwire trace` end to end: a real receiver and worker handle a real delivery from the
simulator, then the command, run as a process, shows the event and its ticket's timeline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.procs import BIN, ROOT, free_port, spawn
from tests.stack import settled
from tests.test_processes import SECRET, _ready, env_for, write_rule
from ticketwire.keys import Keys
from ticketwire.trace.read import DeliveryFilter, TraceReader


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def trace_cli(*args: str, env: Mapping[str, str]) -> Ran:
    """Run `ticketwire trace ARGS` as a process with `env` on a clean environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TICKETWIRE_", "INBOXOPS_"))}
    base.pop("REDIS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "python"),
        "-m",
        "cli",
        "trace",
        *args,
        cwd=ROOT,
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=17, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


async def test_trace_shows_what_a_handled_event_did(
    redis: Redis, redis_url: str, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    tag = sim.create_tag("traced")
    port = free_port()
    env = env_for(redis_url, keys, sim, write_rule(tmp_path, tag["id"]), port)
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    worker = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, port), message="receiver ready")
        await worker.wait_output("started: ")
        sim.add_endpoint(f"http://127.0.0.1:{port}/webhooks/inboxops", SECRET)
        ticket = sim.create_ticket(subject="trace me", priority="low")
        sim.change_ticket(ticket["id"], priority="urgent")
        key = f"inboxops:{sim.workspace_id}:{ticket['id']}"
        reader = TraceReader(redis, keys)

        async def traced() -> str | None:
            page = await reader.deliveries(
                DeliveryFilter(ticket=key, rule="start-urgent", outcome="handled")
            )
            timeline = await reader.ticket(key)
            sent = [r for r in timeline.records if r.kind == "ca"]
            return page.rows[0].event_id if page.rows and len(sent) >= 2 else None

        event_id = await wait_for(traced, timeout=30, message="event handled and calls traced")
        await wait_for(lambda: settled(redis, keys), timeout=20, message="every event handled")
        cli_env = {"REDIS_URL": redis_url, "TICKETWIRE_KEY_PREFIX": keys.prefix}

        shown = await trace_cli(event_id, env=cli_env)
        assert shown.code == 0, shown
        text = shown.out
        assert f"event {event_id} (inboxops), ticket {key}" in text
        assert f"received inboxops ticket.updated for ticket {ticket['id']}" in text
        assert "dedupe: first delivery" in text
        assert "changes: priority: 'low' → 'urgent'" in text
        assert "rule start-urgent: fired — priority is 'urgent', status is 'open'" in text
        assert (
            f"handled  inboxops ticket.updated {event_id} ticket {key} fired start-urgent" in text
        )
        patch = [x for x in text.splitlines() if "PATCH" in x and "→ 200 in" in x]
        assert patch and f"carried event {event_id}" in patch[0], text

        as_json = await trace_cli(event_id, "--json", env=cli_env)
        assert as_json.code == 0, as_json
        doc = json.loads(as_json.out)
        kinds = [r["kind"] for r in doc["records"]]
        assert kinds[0] == "received" and "rule" in kinds and "call" in kinds, kinds
        assert doc["deliveries"][0]["outcome"] == "handled"

        timeline = await trace_cli("--ticket", f"inboxops:{ticket['id']}", env=cli_env)
        assert timeline.code == 0, timeline
        assert timeline.out.splitlines()[0].startswith(f"ticket {key}: ")
        # Both events of the ticket, each line naming its event.
        assert f"  {event_id}  rule start-urgent: fired" in timeline.out
        assert "ticket.created" in timeline.out
        last = await trace_cli("--ticket", key, "--limit", "1", "--json", env=cli_env)
        one: dict[str, Any] = json.loads(last.out)
        assert len(one["records"]) == 1 and one["truncated"] is True
    finally:
        await worker.stop(signal.SIGTERM)
        await web.stop(signal.SIGTERM)


async def test_trace_says_why_it_shows_nothing(redis: Redis, redis_url: str, keys: Keys) -> None:
    env = {"REDIS_URL": redis_url, "TICKETWIRE_KEY_PREFIX": keys.prefix}
    # Nothing stored under the prefix at all: traces off where the processes run, or idle.
    empty = await trace_cli("evt_x", env=env)
    assert empty.code == 4 and "no traces are stored under key prefix" in empty.err, empty
    assert "TICKETWIRE_TRACE_RETENTION=0" in empty.err and empty.out == ""

    await redis.xadd(keys.trace_log, {"v": "inboxops", "e": "other", "o": "handled"})
    unknown = await trace_cli("evt_x", env=env)
    assert unknown.code == 1, unknown
    assert "no trace of event evt_x" in unknown.err and "kept 72 h" in unknown.err
    kept = await trace_cli("evt_x", env={**env, "TICKETWIRE_TRACE_RETENTION": "6h"})
    assert kept.code == 1 and "kept 6 h" in kept.err, kept
    off = await trace_cli("evt_x", env={**env, "TICKETWIRE_TRACE_RETENTION": "0"})
    assert off.code == 4 and "traces are off" in off.err, off
    no_ticket = await trace_cli("--ticket", "inboxops:w:1", env=env)
    assert no_ticket.code == 1 and "no trace of ticket inboxops:w:1" in no_ticket.err

    await redis.set(keys.seen("inboxops", "twice"), "inboxops:w:1")
    await redis.set(keys.seen("cstar", "twice"), "cstar:t:1")
    both = await trace_cli("twice", env=env)
    assert both.code == 3 and "known for inboxops, cstar" in both.err and "--vendor" in both.err

    record = json.dumps(["st", 0, "a", "", ""])
    await redis.xadd(keys.trace_ticket("thena:o1:9"), {"e": "e1", "c": record})
    await redis.xadd(keys.trace_ticket("thena:o2:9"), {"e": "e2", "c": record})
    ambiguous = await trace_cli("--ticket", "thena:9", env=env)
    assert ambiguous.code == 3, ambiguous
    assert "thena:o1:9, thena:o2:9" in ambiguous.err and "give the full key" in ambiguous.err
    full = await trace_cli("--ticket", "thena:o2:9", env=env)
    assert full.code == 0 and "e2  stale check: order key a; first event applied" in full.out

    usage = await trace_cli(env=env)
    assert usage.code == 2 and "EVENT_ID or --ticket" in usage.err
    vendor = await trace_cli("e1", "--vendor", "zendesk", env=env)
    assert vendor.code == 2 and "unknown vendor 'zendesk'" in vendor.err
    down = await trace_cli("e1", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.code == 1 and "cannot reach Redis" in down.err
