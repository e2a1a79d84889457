"""A fourth helpdesk, Acme Desk, plugged in as one package and one registry line: its simulator
→ the receiver's `/webhooks/acmedesk` → the worker → a write-back through Acme's API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from pytest_aiohttp import AiohttpServer
from redis.asyncio import Redis

from cli.dryrun import parse_capture
from receiver.app import create_app
from tests.acmedesk import VENDOR
from tests.acmedesk.settings import AcmeDeskSettings
from tests.acmedesk.simulator import AcmeDeskSimulator, AcmeDeskSimulatorConfig
from tests.conftest import wait_for
from tests.extra_vendor import extra_vendor
from tests.stack import running_worker, settled
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.trace.read import TraceReader
from ticketwire.vendors import registry
from ticketwire.vendors.registry import Registry
from workers.dlqfilter import FilterError, LetterFilter

SECRET = "whsec_acme"
NOW = "2026-12-03T09:00:00Z"
RULE = """\
name: acme-urgent-in-progress
vendor: acmedesk
events: [ticket.updated]
if: {field: common.priority, equals: urgent}
then:
  - set_status: in_progress
"""


@dataclass
class Acme:
    sim: AcmeDeskSimulator
    settings: Settings


@pytest.fixture
def with_acmedesk() -> Iterator[Registry]:
    """The built-in vendors plus Acme Desk, active for one test."""
    with extra_vendor(VENDOR) as extended:
        yield extended


@pytest.fixture
async def acme(
    with_acmedesk: Registry,
    aiohttp_server: AiohttpServer,
    redis: Redis,
    redis_url: str,
    keys: Keys,
    tmp_path: Path,
) -> AsyncIterator[Acme]:
    # One attempt per delivery: a refused one is not retried behind the test's back.
    sim = AcmeDeskSimulator(AcmeDeskSimulatorConfig(seed=4, webhook_retry_schedule=()))
    await sim.start()
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme.yml").write_text(RULE)
    settings = Settings(
        redis_url=redis_url,
        key_prefix=keys.prefix,
        rules_dir=rules,
        partitions=4,
        lease_ttl_s=2.0,
        http_timeout_s=3.0,
        backoff_s=0.05,
        max_attempts=3,
        vendors={
            "acmedesk": AcmeDeskSettings((Secret(SECRET),), sim.url, Secret(sim.api_key)),
        },
    )
    server = await aiohttp_server(create_app(settings, redis, registry.intakes(settings)))
    sim.add_endpoint(str(server.make_url("/webhooks/acmedesk")), SECRET)
    yield Acme(sim, settings)
    await sim.stop()


async def stored(redis: Redis, keys: Keys) -> int:
    """How many deliveries the receiver stored, over every partition."""
    return sum([await redis.xlen(keys.stream(p)) for p in range(4)])


async def test_a_signed_update_is_written_back_through_acmes_api_once(
    acme: Acme, redis: Redis, keys: Keys
) -> None:
    ticket = acme.sim.create_ticket(subject="Checkout is down", priority="P3")
    async with running_worker(acme.settings):
        acme.sim.change_ticket(ticket["id"], priority="P1")
        await wait_for(
            lambda: acme.sim.ticket(ticket["id"])["status"] == "doing", message="write-back"
        )
        # The write-back's own ticket.updated comes back too; the rule holds, nothing more is sent.
        await acme.sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="all handled")
    assert [d.status for d in acme.sim.deliveries] == [202, 202, 202]
    [patch] = [e for e in acme.sim.journal if e.method == "PATCH"]
    assert (patch.path, patch.body, patch.status) == (
        f"/api/tickets/{ticket['id']}",
        {"status": "doing"},
        200,
    )
    async with aiohttp.ClientSession() as session:
        client = VENDOR.client(VENDOR.of(acme.settings), session, 3.0)
        assert client is not None
        assert (await client.get_ticket(ticket["id"]))["status"] == "doing"
    # Traces of the event are found without naming the vendor: every registry vendor is looked up.
    trace = await TraceReader(redis, keys).event(acme.sim.deliveries[1].event_id)
    assert trace is not None and trace.ticket == f"acmedesk:{acme.sim.desk}:{ticket['id']}"


async def test_a_forged_signature_gets_401_and_is_not_stored(
    acme: Acme, redis: Redis, keys: Keys
) -> None:
    acme.sim.faults.webhooks.bad_signature_next = 1
    acme.sim.create_ticket(subject="Forged")
    await acme.sim.wait_deliveries_idle()
    [delivery] = acme.sim.deliveries
    assert (delivery.bad_signature, delivery.status) == (True, 401)
    assert await stored(redis, keys) == 0
    acme.sim.create_ticket(subject="Signed")
    await acme.sim.wait_deliveries_idle()
    assert [d.status for d in acme.sim.deliveries] == [401, 202]
    assert await stored(redis, keys) == 1


def test_vendor_names_are_the_registrys_when_checked(with_acmedesk: Registry) -> None:
    assert LetterFilter.parse("vendor=acmedesk", now_ms=0).vendor == "acmedesk"
    with pytest.raises(FilterError, match="inboxops, cstar, thena, acmedesk"):
        LetterFilter.parse("vendor=nodesk", now_ms=0)
    ticket = {"id": "AC-1", "desk": "d", "status": "todo", "priority": "P1", "updated_at": NOW}
    body = {"id": "e1", "type": "ticket.updated", "occurred_at": NOW, "ticket": ticket}
    event = parse_capture({"vendor": "acmedesk", "body": json.dumps(body)}, None)
    assert (event.ticket_key, event.common["priority"]) == ("acmedesk:d:AC-1", "urgent")
