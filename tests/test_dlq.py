"""Dead letters with their context, and `ticketwire dlq` list / show / redrive / drop."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from cli.main import main
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.stack import running_worker, settled, stack_settings
from tests.test_end_to_end import calls, start_receiver, write_rules
from tests.test_receiver import stream_entries
from ticketwire import Context, Router
from ticketwire.calls import ApiCall
from ticketwire.keys import Keys, partition_of
from ticketwire.stored import StoredDelivery
from workers.deadletter import (
    DeadLetter,
    LetterBusy,
    LetterNotFound,
    dead_letter,
    get_letter,
    redrive,
)

TICKET = "inboxops:7b0d8e5e-0000-4000-8000-000000000001"


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=11, rate_limit_per_minute=None, time_scale=0.001))
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url, keys):
    """Run `ticketwire dlq ...` in-process (on its own thread, as the command runs its own loop)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("TICKETWIRE_KEY_PREFIX", keys.prefix)

    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            await asyncio.to_thread(main, ["dlq", *argv])
        out = capsys.readouterr()
        return int(exited.value.code or 0), out.out, out.err

    return run


def delivery(event_id: str = "evt_1", ticket: str = TICKET, body: bytes | None = None):
    return StoredDelivery(
        vendor="inboxops",
        event_id=event_id,
        event_type="ticket.updated",
        ticket_key=ticket,
        body=body or json.dumps({"event_id": event_id, "data": {"subject": "Printer"}}).encode(),
        received_ms=1_700_000_000_000,
        headers={"X-InboxOps-Signature": "sha256=abc"},
    )


async def store(redis: Redis, keys: Keys, d: StoredDelivery, partition: int) -> StoredDelivery:
    """Put a delivery in a partition stream, as the receiver does, and read it back."""
    entry = (await redis.xadd(keys.stream(partition), d.to_fields())).decode()  # type: ignore[arg-type]
    [(eid, fields)] = await redis.xrange(keys.stream(partition), entry, entry)
    return StoredDelivery.from_fields(eid, fields, partition=partition)


def patch(ticket_id: str = "42", *, origin: str = "", event_id: str = "evt_1") -> ApiCall:
    return ApiCall(
        vendor="inboxops",
        method="PATCH",
        path=f"/tickets/{ticket_id}",
        body={"priority": "high"},
        ticket_id=ticket_id,
        rules=("escalate", "tidy"),
        event_id=event_id,
        origin=origin,
    )


ATTEMPT = {"at": 1_700_000_001_000, "error": "HTTP 422 invalid", "kind": "ClientError"}


# ------------------------------------------------------------------ through the real paths


START_URGENT = """
name: start-urgent
vendor: inboxops
events: [ticket.updated]
if:
  all:
    - {field: priority, equals: urgent}
    - {field: status, equals: open}
then:
  - update: {status: in_progress}
"""


async def test_refused_call_is_listed_shown_and_redriven_to_the_helpdesk(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path, cli
):
    settings = stack_settings(redis_url, keys, sim, write_rules(tmp_path, START_URGENT))
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="Refused once", priority="low")
    sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 422)
    async with running_worker(settings):
        sim.change_ticket(ticket["id"], priority="urgent")
        await wait_for(lambda: redis.xlen(keys.dlq), message="dead letter")
        [refused] = calls(sim, "PATCH", ticket["id"])
        assert refused.status == 422

        code, out, err = await cli("list")
        assert code == 0, err
        [header, row] = out.splitlines()[:2]
        assert header.split()[:5] == ["ID", "AGE", "TICKET", "RULES", "CALL"]
        [(raw_id, _)] = await redis.xrange(keys.dlq)
        letter_id = raw_id.decode()
        assert row.startswith(letter_id)
        assert f":{ticket['id']}" in row and "start-urgent" in row
        assert f"PATCH /tickets/{ticket['id']}" in row and "422" in row

        code, out, _ = await cli("list", "--json")
        [item] = json.loads(out)
        assert item["id"] == letter_id and item["kind"] == "call"
        assert item["rules"] == ["start-urgent"] and item["attempts"] == 1

        code, out, _ = await cli("show", letter_id)
        assert code == 0
        assert "HTTP 422" in out and f"request {refused.request_id}" in out
        assert '"status": "in_progress"' in out  # the call's body
        assert f"ticketwire dlq redrive {letter_id}" in out

        code, out, err = await cli("redrive", letter_id)
        assert code == 0, err
        assert f"redrove {letter_id}" in out and "requeued" in out
        # The fault was used up: the redriven call goes out again and is accepted.
        await wait_for(
            lambda: [c.status for c in calls(sim, "PATCH", ticket["id"])] == [422, 200],
            message="redriven PATCH sent",
        )
        assert sim.ticket(ticket["id"])["status"] == "in_progress"
        assert await redis.xlen(keys.dlq) == 0


def flaky_router(state: dict[str, object], tag_id: str) -> Router:
    router = Router()

    @router.on("ticket.updated", vendor="inboxops", name="tag-urgent")
    async def tag_urgent(ctx: Context) -> None:
        if ctx.ticket.get("priority") == "urgent":
            ctx.add_tags([tag_id])

    @router.on("ticket.updated", vendor="inboxops", name="start-urgent")
    async def start_urgent(ctx: Context) -> None:
        if state["broken"]:
            # Fails on the event it first sees (the priority change), not on the echo of the
            # other rule's write-back, so exactly one letter is written.
            if state.setdefault("failed_on", ctx.event.id) == ctx.event.id:
                raise RuntimeError("lookup table missing")
            return
        if ctx.ticket.get("priority") == "urgent" and ctx.ticket.get("status") == "open":
            ctx.update(status="in_progress")

    return router


async def test_failed_rule_letter_carries_the_event_and_redrive_runs_it_again(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path, cli
):
    tag = sim.create_tag("urgent")
    state = {"broken": True}
    settings = stack_settings(redis_url, keys, sim, tmp_path)
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="Rule raises", priority="low")
    async with running_worker(settings, flaky_router(state, tag["id"])):
        sim.change_ticket(ticket["id"], priority="urgent")
        await wait_for(lambda: redis.xlen(keys.dlq), message="dead letter of the failed rule")
        # The rule that did not fail still wrote back (and marked the event as planned).
        await wait_for(lambda: calls(sim, "POST", "/tickets/bulk"), message="tag write-back")
        await sim.wait_deliveries_idle()
        await wait_for(lambda: settled(redis, keys), message="events handled")
        assert not calls(sim, "PATCH", ticket["id"])
        [(raw_id, _)] = await redis.xrange(keys.dlq)
        letter_id = raw_id.decode()

        code, out, _ = await cli("show", letter_id)
        assert code == 0
        assert "failed    rule start-urgent" in out
        assert "RuntimeError: lookup table missing" in out
        assert "event body: inboxops ticket.updated" in out
        assert ticket["id"] in out.split("event body:")[1]  # the stored body itself
        assert "whsec" not in out

        state["broken"] = False
        code, out, err = await cli("redrive", letter_id)
        assert code == 0, err
        assert f"redrove {letter_id}" in out and "re-added to stream" in out
        await wait_for(
            lambda: [c.status for c in calls(sim, "PATCH", ticket["id"])] == [200],
            message="the fixed rule's PATCH after the redrive",
        )
        assert sim.ticket(ticket["id"])["status"] == "in_progress"
        assert await redis.xlen(keys.dlq) == 0


# ------------------------------------------------------------------------ letters' content


async def test_event_letter_keeps_the_stored_delivery_and_the_rule(redis, keys):
    d = await store(redis, keys, delivery(), 2)
    lid = await dead_letter(
        redis, keys, reason="rule r failed: boom", ticket_key=d.ticket_key, delivery=d, rule="r"
    )
    letter = await get_letter(redis, keys, lid)
    assert letter.kind == "event" and letter.rules == ("r",)
    assert letter.event_id == "evt_1" and letter.origin == f"2/{d.entry_id}"
    assert letter.delivery is not None and letter.delivery.body == d.body
    assert letter.delivery.headers == d.headers and letter.redrivable
    assert int(await redis.hget(keys.stats, "dead_letters")) == 1


async def test_letters_of_earlier_versions_still_read(redis, keys):
    # The fields dead_letter() wrote before letters carried their kind, origin and delivery.
    await redis.xadd(
        keys.dlq,
        {
            "reason": "HTTP 400",
            "ticket": TICKET,
            "event_id": "evt_old",
            "rules": "escalate",
            "call": patch().to_json().replace(',"origin":""', ""),
            "attempts": json.dumps([ATTEMPT]),
            "at": "1700000002000",
        },
    )
    await redis.xadd(keys.dlq, {"reason": "internal error", "ticket": TICKET, "call": ""})
    old_call, old_event = [DeadLetter.from_fields(i, f) for i, f in await redis.xrange(keys.dlq)]
    assert old_call.kind == "call" and old_call.redrivable
    assert old_call.call == patch() and old_call.attempts == (ATTEMPT,)
    assert old_event.kind == "event" and not old_event.redrivable


async def test_a_damaged_letter_lists_but_is_not_redriven(redis, keys, cli):
    lid = (
        await redis.xadd(keys.dlq, {"kind": "call", "ticket": TICKET, "call": "{not json"})
    ).decode()
    code, out, _ = await cli("list")
    assert code == 0 and "call (unreadable)" in out
    code, _, err = await cli("redrive", lid)
    assert code == 1 and "cannot be read back" in err and f"ticketwire dlq drop {lid}" in err
    assert await redis.xlen(keys.dlq) == 1


async def test_call_json_without_origin_is_read():
    raw = patch().to_json().replace(',"origin":""', "")
    assert "origin" not in raw
    assert ApiCall.from_json(raw).origin == ""
    assert ApiCall.from_json(patch(origin="3/1-0").to_json()).origin == "3/1-0"


# --------------------------------------------------------------------------- list and show


async def test_list_is_newest_first_limited_and_json(redis, keys, cli):
    ids = []
    for n in range(3):
        ids.append(
            await dead_letter(
                redis,
                keys,
                reason=f"reason {n}",
                ticket_key=f"inboxops:{n}",
                call=patch(str(n)),
                attempts=[ATTEMPT],
            )
        )
    code, out, _ = await cli("list", "--limit", "2")
    assert code == 0
    rows = out.splitlines()
    assert rows[1].startswith(ids[2]) and rows[2].startswith(ids[1])
    assert "escalate, tidy" in rows[1]
    assert "2 of 3 dead letter(s), newest first; --limit 3 shows all" in out
    code, out, _ = await cli("list", "--json")
    assert [x["id"] for x in json.loads(out)] == ids[::-1]


async def test_list_when_empty_says_so(cli, keys):
    code, out, _ = await cli("list")
    assert code == 0 and f"no dead letters under key prefix '{keys.prefix}'" in out


async def test_show_prints_the_event_body_from_the_stream_while_retained(redis, keys, cli):
    d = await store(redis, keys, delivery(body=b'{"subject": "Printer on fire"}'), 1)
    lid = await dead_letter(
        redis,
        keys,
        reason="HTTP 422 (not retried)",
        ticket_key=TICKET,
        call=patch(origin=f"1/{d.entry_id}"),
        attempts=[{**ATTEMPT, "status": 422, "request_id": "req_9", "body": '{"error":"x"}'}],
    )
    code, out, _ = await cli("show", lid)
    assert code == 0
    assert f"stream entry 1/{d.entry_id}" in out
    assert "#1 2023-11-14 22:13:21 UTC  HTTP 422  request req_9" in out
    assert 'body: {"error":"x"}' in out
    assert '"subject": "Printer on fire"' in out
    assert "headers kept for replay: X-InboxOps-Signature" in out and "sha256=abc" not in out

    code, out, _ = await cli("show", lid, "--json")
    doc = json.loads(out)
    assert doc["call"]["path"] == "/tickets/42" and doc["attempts"][0]["request_id"] == "req_9"
    assert doc["event"]["body"] == '{"subject": "Printer on fire"}'
    assert doc["event"]["header_names"] == ["X-InboxOps-Signature"]

    await redis.xdel(keys.stream(1), d.entry_id)  # trimmed after TICKETWIRE_RETENTION
    code, out, _ = await cli("show", lid)
    assert code == 0 and "no longer in the stream" in out and "TICKETWIRE_RETENTION" in out


async def test_unknown_or_malformed_id_is_a_clear_error(cli, keys):
    for action in ("show", "redrive", "drop"):
        code, out, err = await cli(action, "1700000000000-7")
        assert code == 1 and out == ""
        assert "no dead letter 1700000000000-7" in err and "ticketwire dlq list" in err
    code, _, err = await cli("show", "nonsense")
    assert code == 1
    assert "'nonsense' is not a dead-letter id" in err and "ticketwire dlq list" in err


async def test_unreachable_redis_names_the_url_without_its_password(cli, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    code, _, err = await cli("list")
    assert code == 1
    assert f"cannot reach Redis at redis://:****@127.0.0.1:{port}/0" in err
    assert "check REDIS_URL" in err and "hunter2" not in err


async def test_missing_redis_url_says_what_to_set(cli, monkeypatch, tmp_path):
    monkeypatch.delenv("REDIS_URL")
    # No `ticketwire up` runs there whose Redis could be used instead.
    monkeypatch.setenv("TICKETWIRE_DATA_DIR", str(tmp_path))
    code, _, err = await cli("list")
    assert code == 2 and "set REDIS_URL" in err
    assert f"no `ticketwire up` runs in {tmp_path.resolve()}" in err


# ------------------------------------------------------------------------- redrive and drop


async def test_redriven_event_goes_to_its_partition_with_the_same_fields(redis, keys, cli):
    await redis.hset(keys.meta, "partitions", "4")
    d = await store(redis, keys, delivery(), partition_of(TICKET, 4))
    lid = await dead_letter(
        redis, keys, reason="internal error: KeyError", ticket_key=TICKET, delivery=d
    )
    code, out, err = await cli("redrive", lid)
    assert code == 0, err
    entries = await stream_entries(redis, keys)
    assert [e.partition for e in entries] == [partition_of(TICKET, 4)] * 2
    again = entries[1]
    assert (again.body, again.headers, again.event_id, again.meta()) == (
        d.body,
        d.headers,
        d.event_id,
        d.meta(),
    )
    assert f"re-added to stream {keys.stream(again.partition)} as {again.entry_id}" in out
    [(_, raw)] = await redis.xrange(keys.stream(again.partition), again.entry_id, again.entry_id)
    assert raw == {b"m": d.meta(), b"b": d.body, b"r": lid.encode()}
    assert await redis.xlen(keys.dlq) == 0


async def test_a_named_accounts_event_is_redriven_to_its_own_lane(redis, keys, cli):
    await redis.hset(keys.meta, "partitions", "4")
    lane, p = "inboxops@brand-a", partition_of(TICKET, 4)
    d = replace(delivery(), account="brand-a")
    entry = (await redis.xadd(keys.stream(p, lane), d.to_fields())).decode()  # type: ignore[arg-type]
    [(eid, fields)] = await redis.xrange(keys.stream(p, lane), entry, entry)
    d = StoredDelivery.from_fields(eid, fields, partition=p)
    lid = await dead_letter(redis, keys, reason="x", ticket_key=TICKET, delivery=d)
    code, out, err = await cli("redrive", lid)
    assert code == 0, err
    assert f"re-added to stream {keys.stream(p, lane)} as " in out
    assert await redis.xlen(keys.stream(p, lane)) == 2
    assert await redis.xlen(keys.stream(p)) == 0
    # Listed, so every worker reads the lane.
    assert await redis.smembers(keys.lanes) == {lane.encode()}


async def test_show_finds_a_named_accounts_event_in_its_lane(redis, keys, cli):
    lane = "inboxops@brand-a"
    d = replace(delivery(body=b'{"subject": "Lane"}'), account="brand-a")
    entry = (await redis.xadd(keys.stream(1, lane), d.to_fields())).decode()  # type: ignore[arg-type]
    call = replace(patch(origin=f"1/{entry}"), account="brand-a")
    lid = await dead_letter(redis, keys, reason="HTTP 422", ticket_key=TICKET, call=call)
    code, out, _ = await cli("show", lid)
    assert code == 0 and '"subject": "Lane"' in out


async def test_rule_failure_redrive_clears_the_planned_mark_internal_error_keeps_it(redis, keys):
    await redis.hset(keys.meta, "partitions", "4")
    for n, rule in enumerate(("broken-rule", "")):
        d = await store(redis, keys, delivery(f"evt_{n}"), partition_of(TICKET, 4))
        await redis.set(keys.planned(d.event_id), "1")
        lid = await dead_letter(redis, keys, reason="x", ticket_key=TICKET, delivery=d, rule=rule)
        await redrive(redis, keys, lid, partitions=4)
    # A fixed rule's calls must be queued on the re-run; after an internal error, what the
    # event planned before failing is already queued and must not be queued twice.
    assert not await redis.exists(keys.planned("evt_0"))
    assert await redis.exists(keys.planned("evt_1"))


async def test_redriven_call_is_requeued_with_fresh_attempts(redis, keys, cli):
    lid = await dead_letter(
        redis, keys, reason="gave up", ticket_key=TICKET, call=patch(), attempts=[ATTEMPT] * 3
    )
    code, out, err = await cli("redrive", lid)
    assert code == 0, err
    assert f"requeued in the outbox of ticket {TICKET}" in out
    [item] = await redis.lrange(keys.outbox(TICKET), 0, -1)
    queued = json.loads(item)
    assert ApiCall.from_json(queued["call"]) == patch() and queued["attempts"] == []
    assert await redis.xlen(keys.dlq) == 0


async def test_concurrent_redrives_put_a_letter_back_exactly_once(redis, keys):
    await redis.hset(keys.meta, "partitions", "4")
    d = await store(redis, keys, delivery(), 0)
    event_letter = await dead_letter(redis, keys, reason="x", ticket_key=TICKET, delivery=d)
    call_letter = await dead_letter(redis, keys, reason="y", ticket_key=TICKET, call=patch())
    for lid in (event_letter, call_letter):
        results = await asyncio.gather(
            *(redrive(redis, keys, lid, partitions=4) for _ in range(8)), return_exceptions=True
        )
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert all(isinstance(r, LetterNotFound | LetterBusy) for r in lost), lost
    assert len(await stream_entries(redis, keys)) == 2  # the original and one re-add
    assert await redis.llen(keys.outbox(TICKET)) == 1
    assert await redis.xlen(keys.dlq) == 0


async def test_a_letter_being_redriven_is_not_redriven_or_dropped_again(redis, keys, cli):
    lid = await dead_letter(redis, keys, reason="y", ticket_key=TICKET, call=patch())
    await redis.set(keys.dlq_claim(lid), "someone-else", px=60_000)
    with pytest.raises(LetterBusy):
        await redrive(redis, keys, lid, partitions=4)
    code, _, err = await cli("drop", lid)
    assert code == 1 and "being redriven by another process" in err
    assert await redis.xlen(keys.dlq) == 1
    assert await redis.llen(keys.outbox(TICKET)) == 0


async def test_redrive_all_reports_counts_and_runs_an_event_once(redis, keys, cli):
    await redis.hset(keys.meta, "partitions", "4")
    d = await store(redis, keys, delivery(), 3)
    # Two rules failed on the same event: one re-run covers both letters.
    await dead_letter(redis, keys, reason="rule a failed", ticket_key=TICKET, delivery=d, rule="a")
    await dead_letter(redis, keys, reason="rule b failed", ticket_key=TICKET, delivery=d, rule="b")
    await dead_letter(redis, keys, reason="gave up", ticket_key=TICKET, call=patch())
    legacy = (await redis.xadd(keys.dlq, {"reason": "old", "ticket": TICKET, "call": ""})).decode()
    code, out, err = await cli("redrive", "--all")
    assert code == 1  # the legacy letter could not be redriven
    assert (
        "redrove 2 dead letter(s): 1 event(s), 1 call(s); 1 more letter(s) of the same events "
        "removed with them; skipped 0; failed 1" in out
    )
    assert f"not redriven {legacy}" in err and "ticketwire replay" in err
    assert len(await stream_entries(redis, keys)) == 2
    assert await redis.llen(keys.outbox(TICKET)) == 1
    assert [i.decode() for i, _ in await redis.xrange(keys.dlq)] == [legacy]

    code, out, _ = await cli("redrive", "--all", "--json")
    doc = json.loads(out)
    assert doc["redriven"] == [] and [f["id"] for f in doc["failed"]] == [legacy]


async def test_drop_deletes_one_letter_and_says_what_it_was(redis, keys, cli):
    keep = await dead_letter(redis, keys, reason="a", ticket_key=TICKET, call=patch("1"))
    gone = await dead_letter(redis, keys, reason="HTTP 404", ticket_key=TICKET, call=patch("2"))
    code, out, _ = await cli("drop", gone)
    assert code == 0
    assert out.startswith(f"dropped {gone}: PATCH /tickets/2")
    assert "rules escalate, tidy" in out and "reason: HTTP 404" in out
    assert [i.decode() for i, _ in await redis.xrange(keys.dlq)] == [keep]
    code, _, err = await cli("drop", gone)
    assert code == 1 and f"no dead letter {gone}" in err
