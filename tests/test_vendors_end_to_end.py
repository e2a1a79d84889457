"""Three helpdesks on one engine: each simulator → its receiver route → worker → write-back.

Uses the repository's shipped rules, so these are also the shipped rules' tests for cStar,
Thena and the vendor-neutral rule.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from receiver.app import create_app
from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
from tests.conftest import recent, wait_for
from tests.stack import running_worker, settled
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors import registry
from ticketwire.vendors.cstar.settings import CStarSettings
from ticketwire.vendors.cstar.webhook import sign as cstar_sign
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.thena.settings import ThenaSettings

RULES = Path(__file__).resolve().parents[1] / "rules"
IO_SECRET, CS_SECRET, TH_TOKEN = "whsec_io", "whsec_cs", "thena-token"


@dataclass
class Three:
    io: InboxOpsSimulator
    cs: CStarSimulator
    th: ThenaSimulator
    settings: Settings
    url: str


@pytest.fixture
async def three(aiohttp_server, redis: Redis, redis_url: str, keys: Keys) -> AsyncIterator[Three]:
    io = InboxOpsSimulator(SimulatorConfig(seed=3, rate_limit_per_minute=None))
    cs = CStarSimulator(CStarSimulatorConfig(seed=3))
    th = ThenaSimulator(ThenaSimulatorConfig(seed=3))
    for sim in (io, cs, th):
        await sim.start()
    cs.set_rate_limit(None)
    th.set_rate_limit(None)
    settings = Settings(
        redis_url=redis_url,
        key_prefix=keys.prefix,
        rules_dir=RULES,
        partitions=4,
        lease_ttl_s=2.0,
        http_timeout_s=3.0,
        backoff_s=0.05,
        max_attempts=3,
        vendors={
            "inboxops": InboxOpsSettings((Secret(IO_SECRET),), io.url, Secret(io.api_key)),
            "cstar": CStarSettings(
                webhook_secrets=(Secret(CS_SECRET),),
                api_url=cs.url,
                team_id=cs.team_id,
                api_key=Secret(cs.api_key),
            ),
            "thena": ThenaSettings(
                webhook_secrets=(Secret(TH_TOKEN),), api_url=th.url, api_key=Secret(th.api_key)
            ),
        },
    )
    server = await aiohttp_server(create_app(settings, redis, registry.intakes(settings)))
    url = str(server.make_url("/webhooks"))
    io.add_endpoint(f"{url}/inboxops", IO_SECRET)
    cs.add_endpoint(f"{url}/cstar", CS_SECRET)
    th.add_endpoint(f"{url}/thena", TH_TOKEN)
    yield Three(io, cs, th, settings, url)
    for sim in (io, cs, th):
        await sim.stop()


def journal(sim: Any, method: str, part: str = "") -> list[Any]:
    return [e for e in sim.journal if e.method == method and part in e.path]


async def test_the_same_neutral_rule_acts_on_all_three(three: Three, redis, keys, caplog):
    caplog.set_level("INFO", logger="ticketwire")
    io_t = three.io.create_ticket(subject="Cannot pay", priority="normal")
    three.io.change_ticket(io_t["id"], status="waiting", assignee_id=three.io.agents[0]["id"])
    cs_t = three.cs.create_ticket(title="Cannot pay", status="pending", priority="normal")
    th_t = three.th.create_ticket(title="Cannot pay", statusName="On hold", priorityName="Medium")
    async with running_worker(three.settings):
        await three.io.wait_deliveries_idle()
        three.io.change_ticket(io_t["id"], priority="urgent")
        three.cs.change_ticket(cs_t["id"], priority="urgent")
        three.th.change_ticket(th_t["id"], priorityName="Urgent")
        await wait_for(lambda: three.io.ticket(io_t["id"])["status"] == "open", message="inboxops")
        await wait_for(lambda: three.cs.ticket(cs_t["id"])["status"] == "open", message="cstar")
        await wait_for(lambda: three.th.ticket(th_t["id"])["status"] == "Open", message="thena")
        # cStar's own rule fired on the same event: both rules' writes went out as one PATCH.
        await wait_for(lambda: "on-call" in three.cs.ticket(cs_t["id"])["tags"], message="tag")
        [patch] = journal(three.cs, "PATCH", cs_t["id"])
        assert patch.body["status"] == "open" and "on-call" in patch.body["tags"]
        for sim in (three.io, three.cs, three.th):
            await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all handled")
        # The write-backs' own webhooks did not make the rule fire again anywhere.
        assert len(journal(three.cs, "PATCH", cs_t["id"])) == 1
        assert len(journal(three.th, "PATCH", th_t["id"])) == 1
    # Each write-back's log line names the path the helpdesk received (`/api/v1/teams/…`).
    for sim, ticket in ((three.io, io_t), (three.cs, cs_t), (three.th, th_t)):
        [sent] = [e.path for e in journal(sim, "PATCH", ticket["id"])]
        assert f"api PATCH {sent} " in caplog.text, sent


async def test_thena_follow_up_ticket_is_created_once(three: Three, redis, keys):
    ticket = three.th.create_ticket(title="Refund", requestorEmail="ana@example.com")
    three.th.faults.webhooks.duplicate_next = 3
    async with running_worker(three.settings):
        three.th.change_ticket(ticket["id"], statusName="Closed")

        def follow_ups() -> list[dict[str, Any]]:
            return [t for t in three.th.tickets() if t["title"] == "Follow-up: Refund"]

        await wait_for(follow_ups, message="follow-up created")
        await three.th.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all handled")
        [created] = follow_ups()
        assert created["requestorEmail"] == "ana@example.com"


async def test_thena_create_tickets_retried_after_a_failure_creates_each_once(
    three: Three, redis, keys, tmp_path
):
    # The third of three new tickets fails with a 503; the worker retries the call. The bulk
    # page offers no deDuplicationKey, the single create does: each ticket goes out alone with
    # its key, and the retry finds the two made before the failure.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "split.yml").write_text(
        "name: split\nvendor: thena\nevents: [ticket.status_changed]\nthen:\n"
        "  - create_tickets:\n"
        "      - {title: 'Part 1: {{ticket.title}}'}\n"
        "      - {title: 'Part 2: {{ticket.title}}'}\n"
        "      - {title: 'Part 3: {{ticket.title}}'}\n"
    )
    settings = replace(three.settings, rules_dir=rules)
    ticket = three.th.create_ticket(title="Outage")
    three.th.faults.fail_next("POST", "/tickets", 503, after=2)
    async with running_worker(settings):
        three.th.change_ticket(ticket["id"], statusName="In progress")

        def parts() -> list[str]:
            return sorted(t["title"] for t in three.th.tickets() if t["title"].startswith("Part"))

        await wait_for(lambda: len(parts()) == 3, message="three parts created")
        await three.th.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all handled")
    assert parts() == ["Part 1: Outage", "Part 2: Outage", "Part 3: Outage"]
    creates = [e for e in three.th.journal if e.method == "POST"]
    assert [e.status for e in creates] == [201, 201, 503, 201, 201, 201]
    assert [e.body["deDuplicationKey"] for e in creates[3:]] == [
        e.body["deDuplicationKey"] for e in creates[:3]
    ]


async def test_cstar_bulk_partial_failure_is_dead_lettered_per_id(
    three: Three, redis, keys, tmp_path, aiohttp_client
):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "close.yml").write_text(
        "name: close-spam\nvendor: cstar\nevents: [ticket.updated]\n"
        "if: {field: title, matches: '(?i)spam'}\nthen:\n  - bulk_update: {status: closed}\n"
    )
    settings = replace(three.settings, rules_dir=rules)
    body = json.dumps(
        {
            "id": "evt_missing",
            "type": "ticket.updated",
            "created_at": recent(),
            "team_id": three.cs.team_id,
            "data": {
                "ticket": {"id": "tkt_does_not_exist", "title": "Spam offer", "status": "open"}
            },
        }
    ).encode()
    client = await aiohttp_client(create_app(settings, redis, registry.intakes(settings)))
    sig = cstar_sign(body, CS_SECRET, int(time.time()))
    async with running_worker(settings):
        resp = await client.post(
            "/webhooks/cstar",
            data=body,
            headers={"Content-Type": "application/json", "X-Signature": sig},
        )
        assert resp.status == 202
        await wait_for(lambda: redis.xlen(keys.dlq), message="dead letter")
        [(_, letter)] = await redis.xrange(keys.dlq)
        assert b"tkt_does_not_exist" in letter[b"reason"]
        assert json.loads(letter[b"call"])["path"] == "/bulk"
        assert len(journal(three.cs, "POST", "/bulk")) == 1  # not retried: cStar refused the id


@pytest.mark.parametrize("vendor", ["cstar", "thena"])
async def test_429_then_success_and_5xx_then_dead_letter(three: Three, redis, keys, vendor):
    sim = three.cs if vendor == "cstar" else three.th
    fields = {"title": "Slow", "priority": "normal", "status": "pending"}
    if vendor == "thena":
        fields = {"title": "Slow", "priorityName": "Medium", "statusName": "On hold"}
    first, second = sim.create_ticket(**fields), sim.create_ticket(**fields)
    urgent = {"priority": "urgent"} if vendor == "cstar" else {"priorityName": "Urgent"}
    sim.faults.fail_next("PATCH", f"*{first['id']}", 429, retry_after=1)
    async with running_worker(three.settings):
        sim.change_ticket(first["id"], **urgent)
        await wait_for(
            lambda: [e.status for e in journal(sim, "PATCH", first["id"])] == [429, 200],
            timeout=15,
            message="429 then 200",
        )
        sim.faults.fail_next("PATCH", f"*{second['id']}", 500, times=10)
        sim.change_ticket(second["id"], **urgent)
        await wait_for(lambda: redis.xlen(keys.dlq), timeout=15, message="dead letter")
        [(_, letter)] = await redis.xrange(keys.dlq)
        assert b"gave up after 3 attempts" in letter[b"reason"]
        assert [a["status"] for a in json.loads(letter[b"attempts"])] == [500, 500, 500]


async def test_receiver_routes_check_each_vendors_scheme(three: Three, aiohttp_client, redis):
    client = await aiohttp_client(
        create_app(three.settings, redis, registry.intakes(three.settings))
    )
    body = json.dumps(
        {
            "id": "evt_sig",
            "type": "ticket.created",
            "created_at": recent(),
            "team_id": "t",
            "data": {"ticket": {"id": "tkt_1", "title": "x", "status": "new"}},
        }
    ).encode()
    json_ct = {"Content-Type": "application/json"}
    stale = cstar_sign(body, CS_SECRET, int(time.time()) - 3600)
    resp = await client.post(
        "/webhooks/cstar", data=body, headers={**json_ct, "X-Signature": stale}
    )
    assert resp.status == 401 and "stale" in (await resp.json())["detail"]
    fresh = cstar_sign(body, CS_SECRET, int(time.time()))
    resp = await client.post(
        "/webhooks/cstar", data=body, headers={**json_ct, "X-Signature": fresh}
    )
    assert resp.status == 202
    thena_body = json.dumps(
        {
            "eventId": "th_1",
            "eventType": "ticket:priority:changed",
            "timestamp": int(time.time()),
            "orgId": "o",
            "payload": {"ticket": {"id": "t1", "title": "x"}},
        }
    ).encode()
    resp = await client.post(
        "/webhooks/thena", data=thena_body, headers={**json_ct, "authorization": "Bearer nope"}
    )
    assert resp.status == 401
    resp = await client.post(
        "/webhooks/thena",
        data=thena_body,
        headers={**json_ct, "authorization": f"Bearer {TH_TOKEN}"},
    )
    # Thena's own ticket events are stored for rules pinned to thena, not ignored.
    assert resp.status == 202 and (await resp.json())["status"] == "stored"
