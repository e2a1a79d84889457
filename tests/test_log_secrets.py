"""Secrets never appear in logs: real receiver and worker processes with known secrets, driven
through deliveries, refusals and helpdesk failures, in the text and the JSON format."""

from __future__ import annotations

import json
import signal

import aiohttp
import pytest

from tests.conftest import wait_for
from tests.procs import BIN, Proc, free_port, spawn
from tests.stack import settled
from tests.test_json_logs import records
from tests.test_processes import (
    _ready,
    env_for,
    journal,
    sim,  # noqa: F401 (fixture)
)
from ticketwire.config import Settings
from ticketwire.logs import Redactor, secret_values
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, sign

WEBHOOK_SECRET = "whsec_known_A1b2C3d4"
OLD_SECRET = "whsec_rotated_Q7r8S9"
CONSOLE_TOKEN = "console-token-Z9y8X7w6"

RULES = """
- name: start-urgent
  vendor: inboxops
  events: [ticket.updated]
  if:
    all:
      - {field: priority, equals: urgent}
      - {field: status, equals: open}
  then:
    - update: {status: in_progress}
- name: subject-check
  vendor: inboxops
  events: [ticket.updated]
  if: {field: subject, equals: "never this"}
  then:
    - update: {priority: low}
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_no_secret_reaches_stderr_of_either_process(
    redis,
    redis_url,
    keys,
    sim,  # noqa: F811
    tmp_path,
    fmt: str,
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yml").write_text(RULES)
    port = free_port()
    api_key = sim.api_key
    env = {
        **env_for(redis_url, keys, sim, rules, port),
        "INBOXOPS_WEBHOOK_SECRETS": f"{WEBHOOK_SECRET},{OLD_SECRET}",
        "TICKETWIRE_CONSOLE_TOKEN": CONSOLE_TOKEN,
        "TICKETWIRE_LOG_FORMAT": fmt,
        "TICKETWIRE_BACKOFF": "50ms",
        "TICKETWIRE_MAX_ATTEMPTS": "3",
    }
    secrets = [WEBHOOK_SECRET, OLD_SECRET, CONSOLE_TOKEN, api_key]
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    worker = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
    procs: list[Proc] = [web, worker]
    url = f"http://127.0.0.1:{port}/webhooks/inboxops"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, port), message="receiver ready")
            # Refused at intake: a wrong signature, and the secrets themselves sent as one.
            for header in ("sha256=00", WEBHOOK_SECRET, f"sha256={OLD_SECRET}"):
                async with http.post(
                    url, data=b'{"event": "ticket.updated"}', headers=_signed(header)
                ) as r:
                    assert r.status == 401
            # Signed right, but not an event: the refusal quotes what it got.
            body = json.dumps({"event": api_key, "event_id": CONSOLE_TOKEN}).encode()
            async with http.post(url, data=body, headers=_signed(sign(body, WEBHOOK_SECRET))) as r:
                assert r.status in (202, 400)
        await worker.wait_output("runs rules")
        sim.add_endpoint(url, WEBHOOK_SECRET)

        # The helpdesk refuses the first write-back (401) and fails the next one (500, retried).
        refused = sim.create_ticket(subject=f"key {api_key} token {CONSOLE_TOKEN}", priority="low")
        sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 401)
        sim.change_ticket(refused["id"], priority="urgent")
        await wait_for(lambda: redis.xlen(keys.dlq), message="the 401 is dead-lettered")
        retried = sim.create_ticket(subject=WEBHOOK_SECRET, priority="low")
        sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 500)
        sim.change_ticket(retried["id"], priority="urgent")
        await wait_for(
            lambda: [e.status for e in journal(sim, "PATCH", retried["id"])] == [500, 200],
            message="the 500 is retried and accepted",
        )
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="every event handled")
        await worker.wait_output("rule subject-check skipped on ticket=" + retried["id"])
    finally:
        for p in procs:
            await p.stop(signal.SIGTERM)

    for proc in procs:
        leaked = [s for s in secrets if s in proc.output]
        assert not leaked, f"{leaked} in:\n{proc.output}"
        if fmt == "json":
            records(proc.output)
    # The lines that would have carried them are there, with the values replaced.
    assert "rejected inboxops 401" in web.output
    assert "rule subject-check skipped on ticket=" in worker.output
    assert "subject is '***'" in worker.output
    assert "subject is 'key *** token ***'" in worker.output
    assert "dead-lettered PATCH" in worker.output and "401" in worker.output
    assert "500" in worker.output


def _signed(signature: str) -> dict[str, str]:
    return {"Content-Type": "application/json", SIGNATURE_HEADER: signature}


def test_every_configured_secret_is_replaced() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://user:redis-pass-55@localhost:6379/0",
            "INBOXOPS_WEBHOOK_SECRETS": "whsec_a1,whsec_b2",
            "INBOXOPS_API_URL": "https://app.example",
            "INBOXOPS_API_KEY": "ixk_key_3",
            "CSTAR_WEBHOOK_SECRETS": "cs_whsec_4",
            "CSTAR_API_KEY": "sk_test_5",
            "CSTAR_TEAM_ID": "team",
            "THENA_WEBHOOK_SECRETS": "thena-token-6",
            "THENA_API_KEY": "thena-key-7",
            "TICKETWIRE_CONSOLE_TOKEN": "console-token-8-long",
        },
        role="worker",
    )
    values = secret_values(settings)
    assert sorted(values) == sorted(
        [
            "whsec_a1",
            "whsec_b2",
            "ixk_key_3",
            "cs_whsec_4",
            "sk_test_5",
            "thena-token-6",
            "thena-key-7",
            "console-token-8-long",
            "redis-pass-55",
        ]
    )
    redact = Redactor([*values, "whsec"])
    # The longest match wins: a secret containing a shorter one goes whole.
    assert redact("a whsec_a1 b sk_test_5c redis-pass-55") == "a *** b ***c ***"
    assert Redactor([])("unchanged") == "unchanged"
    assert "console-8" not in repr(settings)
