"""`TICKETWIRE_LOG_FORMAT=json`: every line the receiver and worker processes write is one JSON
object, arq's and aiohttp's included, with the vendor, event, ticket and rule it is about."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from typing import Any

import aiohttp
import pytest

from tests.conftest import wait_for
from tests.procs import BIN, Proc, free_port, spawn
from tests.stack import settled
from tests.test_processes import (
    SECRET,
    _ready,
    env_for,
    journal,
    sim,  # noqa: F401 (fixture)
    write_rule,
)
from ticketwire.config import Settings
from ticketwire.errors import ConfigError
from ticketwire.logs import (
    ContextFilter,
    JsonFormatter,
    Redactor,
    TextFormatter,
    set_log_context,
)

WORKER = [str(BIN / "arq"), "workers.settings.WorkerSettings"]
RECEIVER = [str(BIN / "python"), "-m", "receiver"]


def records(output: str) -> list[dict[str, Any]]:
    """Every line of `output` as JSON; fails naming the first line that is not."""
    out = []
    for line in output.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\nin:\n{output}") from None
        assert isinstance(doc, dict), line
        assert {"time", "level", "logger", "message"} <= doc.keys(), line
        out.append(doc)
    return out


def one(docs: list[dict[str, Any]], start: str) -> dict[str, Any]:
    found = [d for d in docs if d["message"].startswith(start)]
    assert found, f"no line starting {start!r} in {[d['message'] for d in docs]}"
    return found[0]


async def bad_http(port: int) -> None:
    """A request aiohttp cannot parse: it answers 400 and its server logger says so."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()


@pytest.mark.slow
async def test_receiver_and_worker_write_json_lines_with_their_context(
    redis,
    redis_url,
    keys,
    sim,  # noqa: F811
    tmp_path,
) -> None:
    tag = sim.create_tag("json")
    rules = write_rule(tmp_path, tag["id"])
    port = free_port()
    env = {**env_for(redis_url, keys, sim, rules, port), "TICKETWIRE_LOG_FORMAT": "json"}
    web = await spawn(RECEIVER, env)
    worker = await spawn(WORKER, env)
    procs: list[Proc] = [web, worker]
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, port), message="receiver ready")
            # Refused at intake: a delivery without a valid signature.
            async with http.post(
                f"http://127.0.0.1:{port}/webhooks/inboxops",
                json={"event": "ticket.updated"},
                headers={"X-InboxOps-Signature": "sha256=00"},
            ) as r:
                assert r.status == 401
        await bad_http(port)
        await worker.wait_output("runs rules")
        sim.add_endpoint(f"http://127.0.0.1:{port}/webhooks/inboxops", SECRET)
        ticket = sim.create_ticket(subject="json logs", priority="low")
        sim.change_ticket(ticket["id"], priority="urgent")
        await wait_for(
            lambda: [e.status for e in journal(sim, "PATCH", ticket["id"])] == [200],
            message="the rule's write-back",
        )
        await wait_for(lambda: settled(redis, keys), message="every event handled")
        await worker.wait_output("fired on ticket=")
    finally:
        for p in procs:
            assert await p.stop(signal.SIGTERM) == 0, p.output

    key = f"inboxops:{sim.workspace_id}:{ticket['id']}"
    web_docs = records(web.output)
    refused = one(web_docs, "rejected inboxops 401")
    assert (refused["level"], refused["logger"], refused["vendor"]) == (
        "WARNING",
        "ticketwire.receiver",
        "inboxops",
    )
    received = one(web_docs, "received inboxops ticket.updated")
    assert received["vendor"] == "inboxops" and received["ticket"] == key
    assert received["message"].endswith(f"event={received['event_id']} ticket={ticket['id']}")
    # aiohttp's own server line about a request it could not parse.
    server_error = one(web_docs, "rejected 400 at the HTTP level")
    assert server_error["logger"] == "aiohttp.server" and server_error["level"] == "WARNING"

    worker_docs = records(worker.output)
    # arq's own lines, written before the worker's start-up code ran, are JSON too.
    started = one(worker_docs, "Starting worker for")
    assert started["logger"] == "arq.worker"
    fired = one(worker_docs, "rule start-urgent fired on ticket=")
    assert fired["rule"] == "start-urgent"
    assert (fired["vendor"], fired["ticket"]) == ("inboxops", key)
    assert fired["event_id"] == received["event_id"]
    processing = [
        d for d in worker_docs if d["message"].startswith("processing inboxops ticket.updated")
    ]
    assert processing and all(d["ticket"] == key and "rule" not in d for d in processing)
    api = one(worker_docs, "api PATCH")
    assert api["logger"].startswith("ticketwire")


def test_json_lines_carry_the_exception_and_a_rules_own_bound_fields() -> None:
    formatter = JsonFormatter(Redactor(["s3cret-value"]))
    context = ContextFilter()

    def line(record: logging.LogRecord) -> dict[str, Any]:
        assert context.filter(record)
        return dict(json.loads(formatter.format(record)))

    try:
        raise ValueError("bad s3cret-value")
    except ValueError:
        import sys

        exc = sys.exc_info()
    record = logging.LogRecord("ticketwire.worker", logging.ERROR, "f", 1, "boom", (), exc)
    doc = line(record)
    assert doc["message"] == "boom" and "ValueError: bad ***" in doc["exception"]
    assert "s3cret" not in json.dumps(doc)
    # A rule's own logger binds rule, event and ticket id; they are the fields.
    record = logging.LogRecord("ticketwire.rules", logging.INFO, "f", 1, "hello", (), None)
    record.rule, record.event_id, record.ticket_id = "tidy", "evt_9", "42"
    doc = line(record)
    assert (doc["rule"], doc["event_id"], doc["ticket"]) == ("tidy", "evt_9", "42")


async def test_the_context_belongs_to_the_task_that_set_it() -> None:
    formatter = TextFormatter(Redactor([]))
    seen: dict[str, Any] = {}

    async def handle(event_id: str) -> None:
        set_log_context(vendor="cstar", event_id=event_id, ticket=f"cstar:t:{event_id}")
        await asyncio.sleep(0)  # the other task runs in between
        record = logging.LogRecord("x", logging.INFO, "f", 1, "rule %s skipped", ("r",), None)
        ContextFilter().filter(record)
        seen[event_id] = (record.event_id, record.ticket, record.rule)  # type: ignore[attr-defined]
        assert formatter.format(record).endswith("x: rule r skipped")

    await asyncio.gather(handle("a"), handle("b"))
    assert seen == {"a": ("a", "cstar:t:a", "r"), "b": ("b", "cstar:t:b", "r")}


def test_log_format_is_text_or_json() -> None:
    assert Settings.from_env({}, role="check").log_format == "text"
    assert Settings.from_env({"TICKETWIRE_LOG_FORMAT": "JSON"}, role="check").log_format == "json"
    with pytest.raises(ConfigError, match="TICKETWIRE_LOG_FORMAT: expected text or json"):
        Settings.from_env({"TICKETWIRE_LOG_FORMAT": "xml"}, role="check")


async def test_a_misconfigured_process_says_so_in_json(
    redis_url,
    keys,
    sim,  # noqa: F811
    tmp_path,
) -> None:
    env = {**env_for(redis_url, keys, sim, tmp_path, free_port()), "TICKETWIRE_LOG_FORMAT": "json"}
    del env["INBOXOPS_API_KEY"]
    worker = await spawn(WORKER, env)
    assert await worker.finish() != 0
    [doc] = records(worker.output)
    assert doc["level"] == "ERROR"
    assert "INBOXOPS_API_KEY: expected" in doc["message"]
