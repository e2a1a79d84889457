"""The shipped commands as users run them: Procfile processes, `ticketwire up`, `check`, `simulate`."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import recent, wait_for
from tests.procs import BIN, Proc, free_port, free_ports, spawn
from tests.stack import settled
from ticketwire.keys import Keys
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, sign

SECRET = "whsec_processes"


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=11, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


def env_for(
    redis_url: str, keys: Keys, sim: InboxOpsSimulator, rules: Path, port: int
) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "TICKETWIRE_KEY_PREFIX": keys.prefix,
        "TICKETWIRE_PARTITIONS": "4",
        "TICKETWIRE_LEASE_TTL": "1s",
        "TICKETWIRE_HTTP_TIMEOUT": "1s",
        "TICKETWIRE_RULES": str(rules),
        "INBOXOPS_WEBHOOK_SECRETS": SECRET,
        "INBOXOPS_API_URL": sim.url,
        "INBOXOPS_API_KEY": sim.api_key,
    }


def write_rule(tmp_path: Path, tag_id: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "start.yml").write_text(
        f"""
name: start-urgent
vendor: inboxops
events: [ticket.updated]
if:
  all:
    - {{field: priority, equals: urgent}}
    - {{field: status, equals: open}}
then:
  - update: {{status: in_progress}}
  - add_tags: ["{tag_id}"]
"""
    )
    return d


def journal(sim: InboxOpsSimulator, method: str, part: str) -> list:
    return [e for e in sim.journal if e.method == method and part in e.path]


async def test_procfile_processes_and_a_worker_killed_mid_write_back(
    redis, redis_url, keys, sim, tmp_path
):
    tag = sim.create_tag("crash-test")
    rules = write_rule(tmp_path, tag["id"])
    port = free_port()
    env = env_for(redis_url, keys, sim, rules, port)
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    worker = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
    workers: list[Proc] = [worker]
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, port), message="receiver ready")
        await worker.wait_output("worker ")
        sim.add_endpoint(f"http://127.0.0.1:{port}/webhooks/inboxops", SECRET)
        ticket = sim.create_ticket(subject="crash me", priority="low")
        # The bulk call hangs past the client timeout, so the worker is mid-write-back when killed.
        sim.faults.fail_next("POST", "/api/v1/tickets/bulk", 200, delay=3.0)
        sim.change_ticket(ticket["id"], priority="urgent")
        outbox = keys.outbox(f"inboxops:{sim.workspace_id}:{ticket['id']}")

        async def bulk_in_flight() -> bool:
            patched = [e.status for e in journal(sim, "PATCH", ticket["id"])] == [200]
            return patched and await redis.llen(outbox) == 1

        await wait_for(bulk_in_flight, message="PATCH done, bulk in flight")
        await worker.kill()

        restarted = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
        workers.append(restarted)
        await wait_for(
            lambda: tag["id"] in [t["id"] for t in sim.ticket(ticket["id"], ["tags"])["tags"]],
            timeout=30,
            message="bulk sent after the restart",
        )
        await wait_for(lambda: settled(redis, keys), timeout=20, message="every event handled")

        async def drained() -> bool:
            return await redis.llen(outbox) == 0

        await wait_for(drained, timeout=30, message="restarted worker drained the outbox")
        # The bulk that was in flight at the kill is sent again (at-least-once for that call)...
        assert "api POST /api/v1/tickets/bulk" in restarted.output
        # The PATCH that had succeeded before the kill was not sent again.
        assert len(journal(sim, "PATCH", ticket["id"])) == 1
        assert sim.ticket(ticket["id"])["status"] == "in_progress"
        assert await redis.xlen(keys.dlq) == 0
    finally:
        for p in workers:
            await p.stop(signal.SIGTERM)
        assert await web.stop(signal.SIGTERM) == 0 or web.proc.returncode is not None


async def _ready(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def test_web_process_stores_signed_deliveries(redis, redis_url, keys, sim, tmp_path):
    port = free_port()
    web = await spawn(
        [str(BIN / "python"), "-m", "receiver"], env_for(redis_url, keys, sim, tmp_path, port)
    )
    try:
        body = json.dumps(
            {
                "event": "ticket.closed",
                "event_id": "evt_proc",
                "tenant_id": "ws",
                "created_at": recent(),
                "data": {"id": "t1", "status": "closed"},
            }
        ).encode()
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, port), message="receiver ready")
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET)}
            async with http.post(
                f"http://127.0.0.1:{port}/webhooks/inboxops", data=body, headers=headers
            ) as r:
                assert r.status == 202
        await web.wait_output("stored inboxops event=evt_proc")
    finally:
        assert await web.stop(signal.SIGTERM) == 0


async def test_worker_refuses_to_start_on_a_rule_typo(redis_url, keys, sim, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "typo.yml").write_text(
        "name: typo\nevnts: [ticket.updated]\nthen:\n  - set_priority: high\n"
    )
    worker = await spawn(
        [str(BIN / "arq"), "workers.settings.WorkerSettings"],
        env_for(redis_url, keys, sim, rules, free_port()),
    )
    assert await worker.finish() != 0
    assert "typo.yml:2: rule 'typo': unknown key 'evnts'" in worker.output
    assert "did you mean 'events'?" in worker.output


@pytest.mark.parametrize(
    ("process", "drop", "says"),
    [
        (
            ["python", "-m", "receiver"],
            "INBOXOPS_WEBHOOK_SECRETS",
            "INBOXOPS_WEBHOOK_SECRETS: expected",
        ),
        (["python", "-m", "receiver"], "REDIS_URL", "REDIS_URL: expected"),
        (
            ["arq", "workers.settings.WorkerSettings"],
            "INBOXOPS_API_KEY",
            "INBOXOPS_API_KEY: expected",
        ),
    ],
)
async def test_processes_name_a_missing_variable(
    redis_url, keys, sim, tmp_path, process, drop, says
):
    env = env_for(redis_url, keys, sim, tmp_path, free_port())
    del env[drop]
    proc = await spawn([str(BIN / process[0]), *process[1:]], env)
    assert await proc.finish() != 0
    assert says in proc.output
    assert "Traceback" not in proc.output


async def test_check_prints_the_table_and_rejects_typos(tmp_path):
    ok = await spawn([str(BIN / "ticketwire"), "check", "rules"], {})
    assert await ok.finish() == 0
    assert "ticket.updated" in ok.output and "escalate-enterprise" in ok.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.yml").write_text(
        "name: a\nevents: [ticket.updatd]\nif: {field: priority, equal: high}\nthen:\n  - sett: x\n"
    )
    proc = await spawn([str(BIN / "ticketwire"), "check", str(bad)], {})
    assert await proc.finish() == 1
    assert "unknown event type 'ticket.updatd'" in proc.output
    assert "a.yml:2" in proc.output


async def test_up_runs_everything_and_stops_on_ctrl_c(tmp_path):
    # `up` runs three simulators on sim_port, +1 and +2.
    port, sim_port = free_port(), free_ports(3)
    up = await spawn(
        [str(BIN / "ticketwire"), "up", "--simulator-port", str(sim_port)],
        {"PORT": str(port), "TICKETWIRE_DATA_DIR": str(tmp_path / "data")},
    )
    try:
        await up.wait_output("Ctrl-C stops everything.", timeout=30)
        for vendor in ("inboxops", "cstar", "thena"):
            assert f"http://127.0.0.1:{port}/webhooks/{vendor}" in up.output
        # Run exactly what the banner tells a newcomer to paste.
        pasted = re.findall(r"curl -s -X POST (\S+) -H '[^']*' -d '([^']*)'", up.output)
        assert len(pasted) == 3
        async with aiohttp.ClientSession() as http:
            for url, body in pasted:
                async with http.post(url, json=json.loads(body)) as r:
                    assert r.status == 200, await r.text()
        await up.wait_output("rule urgent_unassigned.route_urgent fired")
        await up.wait_output("api POST /api/v1/tickets/bulk")
        await up.wait_output("rule cstar-on-call-tag fired")
        await up.wait_output("rule thena-follow-up fired")
        await wait_for(
            lambda: len(re.findall(r"→ 20\d", up.output)) >= 3, message="three write-backs"
        )
    finally:
        code = await up.stop(signal.SIGINT)
    assert code == 0, up.output
    assert "stopped." in up.output
    assert (tmp_path / "data" / "valkey").is_dir()  # persistence in the data directory


async def wait_serving(http: aiohttp.ClientSession, url: str) -> None:
    """Wait until `url` answers 200 (a process just started)."""

    async def up() -> bool:
        try:
            async with http.get(url) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(up, timeout=20, message=f"{url} up")


async def test_simulate_serves_the_api_alone():
    port = free_port()
    proc = await spawn([str(BIN / "ticketwire"), "simulate", "inboxops", "--port", str(port)], {})
    try:
        async with aiohttp.ClientSession() as http:
            await wait_serving(http, f"http://127.0.0.1:{port}/api/v1/openapi.json")
    finally:
        assert await proc.stop(signal.SIGINT) == 0


async def test_simulate_cstar_keeps_the_documented_rate_limits():
    # cStar's API reference: secret keys 120 requests/min, publishable keys 60/min; the bulk
    # page's 429: "Rate limit exceeded. Try again in 60 seconds". `up` runs these numbers, and
    # so must `simulate cstar` when no --rate-limit is given.
    port = free_port()
    proc = await spawn([str(BIN / "ticketwire"), "simulate", "cstar", "--port", str(port)], {})
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_serving(http, f"{base}/_sim")
            async with http.get(f"{base}/_sim") as r:
                info = (await r.json())["data"]
            seen = {}
            for kind in ("api_key", "publishable_key"):
                headers = {"Authorization": f"Bearer {info[kind]}"}
                async with http.get(f"{info['api_base']}/tickets", headers=headers) as r:
                    assert r.status == 200, await r.text()
                    seen[kind] = (r.headers["X-RateLimit-Limit"], r.headers["X-RateLimit-Window"])
    finally:
        assert await proc.stop(signal.SIGINT) == 0
    assert seen == {"api_key": ("120", "60"), "publishable_key": ("60", "60")}


def test_simulate_rate_limit_option_per_helpdesk():
    from cli.simulate import simulator_config
    from simulator.cstar import CStarSimulatorConfig, RateLimit

    assert simulator_config("cstar", 1, None) == CStarSimulatorConfig(seed=1)
    hourly = RateLimit.parse(simulator_config("cstar", 1, "1000/hour").rate_limit)
    assert hourly is not None and (hourly.secret, hourly.publishable) == (1000, 100)
    assert RateLimit.parse(simulator_config("cstar", 1, "0").rate_limit) is None
    assert simulator_config("inboxops", 1, None).rate_limit_per_minute == 100
    assert simulator_config("inboxops", 1, "0").rate_limit_per_minute is None
    assert simulator_config("thena", 1, "30").rate_limit_per_minute == 30
