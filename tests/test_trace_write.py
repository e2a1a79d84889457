"""Traces written by a real worker: simulator → receiver → Redis → worker → write-back.

Each test reads what the worker stored under `tw:trace:*` (the ticket's timeline, the deliveries
list, the hourly rule counts, the rules' leaf descriptions) after real deliveries were handled.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from receiver.app import create_app
from simulator.common.clock import ManualClock
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.procs import free_port
from tests.stack import SECRET, quiet, running_worker, stack_settings
from ticketwire.config import Settings
from ticketwire.engine import Context, Router, load_rules
from ticketwire.keys import Keys
from ticketwire.trace import codes
from ticketwire.trace.writer import TraceWriter
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook

URGENT = """
name: start-urgent-work
on: [ticket.created, ticket.updated]
vendor: inboxops
if:
  all:
    - field: priority
      equals: urgent
    - field: status
      equals: open
then:
  - set_status: in_progress
---
name: escalate-outage
on: [ticket.created, ticket.updated]
vendor: inboxops
if:
  all:
    - field: subject
      matches: "(?i)outage"
    - field: priority
      in: [low, normal]
then:
  - set_priority: urgent
"""

VIP = """
---
name: vip-is-high
on: [ticket.updated]
vendor: inboxops
if: {field: subject, matches: "(?i)vip"}
then:
  - set_priority: high
"""


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=12, rate_limit_per_minute=None, time_scale=0.001))
    await s.start()
    yield s
    await s.stop()


def rules_dir(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    for i, doc in enumerate(text.split("\n---\n")):
        (d / f"r{i}.yml").write_text(doc)
    return d


async def start_receiver(
    aiohttp_server: Any, settings: Settings, redis: Redis, sim: InboxOpsSimulator
) -> None:
    # The simulator's manual clock dates events in January 2025, too old for the
    # event-age check (tested on its own in test_event_age).
    settings = replace(settings, max_event_age_s=0)
    app = create_app(
        settings, redis, [InboxOpsWebhook(settings.vendor("inboxops").webhook_secrets)]
    )
    server = await aiohttp_server(app)
    sim.add_endpoint(str(server.make_url("/webhooks/inboxops")), SECRET)


async def ticket_key(redis: Redis, keys: Keys, ticket_id: str) -> str:
    """The ticket key (`inboxops:<workspace>:<id>`) its timeline is stored under."""

    async def find() -> str | None:
        async for k in redis.scan_iter(match=f"{keys.trace_ticket('inboxops:*:')}{ticket_id}"):
            return str(k.decode()[len(keys.trace_ticket("")) :])
        return None

    found: str = await wait_for(find, message=f"a timeline for ticket {ticket_id}")
    return found


async def timeline(redis: Redis, keys: Keys, key: str) -> list[tuple[str, list[Any]]]:
    rows = await redis.xrange(keys.trace_ticket(key))
    return flat([(f[b"e"].decode(), json.loads(f[b"c"])) for _, f in rows])


def flat(entries: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
    """One (event id, record) per record: an event's own records share one timeline entry."""
    return [(e, r) for e, c in entries for r in (c if c and isinstance(c[0], list) else [c])]


async def deliveries(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    rows = await redis.xrange(keys.trace_log)
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in rows]


def kinds(records: list[tuple[str, list[Any]]], kind: str) -> list[tuple[str, list[Any]]]:
    return [(e, c) for e, c in records if c[0] == kind]


async def wait_records(redis: Redis, keys: Keys, key: str, kind: str, n: int = 1) -> list[Any]:
    async def got() -> list[tuple[str, list[Any]]] | None:
        found = kinds(await timeline(redis, keys, key), kind)
        return found if len(found) >= n else None

    found: list[Any] = await wait_for(got, message=f"{n} {kind} record(s) on {key}")
    return found


async def test_a_firing_event_leaves_every_record_and_no_secret(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    settings = stack_settings(redis_url, keys, sim, rules_dir(tmp_path, URGENT))
    await start_receiver(aiohttp_server, settings, redis, sim)
    ticket = sim.create_ticket(subject="Printer", priority="normal")
    async with running_worker(settings):
        await quiet(sim, redis, keys)
        sim.change_ticket(ticket["id"], priority="urgent")
        await quiet(sim, redis, keys)
        key = await ticket_key(redis, keys, ticket["id"])
        await wait_records(redis, keys, key, codes.CALL)
    records = await timeline(redis, keys, key)
    fired = next(d for d in sim.deliveries if d.event == "ticket.updated").event_id
    mine = [c for e, c in records if e == fired]
    assert [c[0] for c in mine] == ["rx", "st", "ch", "ru", "ru", "pl", "ca"]
    rx, st, ch, ru1, ru2, pl, ca = mine
    ws = key.split(":")[1]
    assert rx[:5] == ["rx", "inboxops", ws, "ticket.updated", ticket["id"]]
    assert rx[6].count("/") == 1 and rx[7] == 1
    # Stale check: this event's order key is newer than the creation's, which it follows.
    created = next(d for d in sim.deliveries if d.event == "ticket.created").event_id
    assert st[1] == 0 and int(st[2]) > int(st[3]) and st[4] == created
    # The new ticket's own record of changes keeps only the fields the rules read.
    [new] = [c for e, c in records if e == created and c[0] == "ch"]
    assert {f for f, _, _ in new[1] if not f.startswith("common.")} == {
        "priority",
        "status",
        "subject",
    }
    assert ["priority", "normal", "urgent"] in ch[1]
    assert ru1 == ["ru", "start-urgent-work", "F", [[0, 1, "urgent"], [1, 1, "open"]], None]
    # The short circuit stops at the regex: the second leaf was never evaluated.
    assert ru2 == ["ru", "escalate-outage", "C", [[0, 0, "Printer"]], None]
    [[call_id, method, path, body, rules]] = pl[1]
    assert (method, path, body, rules) == (
        "PATCH",
        f"/tickets/{ticket['id']}",
        {"status": "in_progress"},
        ["start-urgent-work"],
    )
    assert ca[1] == [call_id] and ca[2:5] == ["PATCH", f"/api/v1/tickets/{ticket['id']}", 200]
    assert ca[6] and ca[7] == 1 and ca[8] == [fired]
    # The leaf descriptions are stored once for the rules' fingerprint.
    leaves = json.loads(await redis.hget(keys.trace_rules, rx[8]))
    assert leaves["start-urgent-work"] == ["priority equals 'urgent'", "status equals 'open'"]
    entries = await deliveries(redis, keys)
    entry = next(d for d in entries if d["e"] == fired)
    assert entry | {"r": ""} == {
        "v": "inboxops",
        "a": ws,
        "y": "ticket.updated",
        "e": fired,
        "k": key,
        "o": "handled",
        "s": "",
        "f": "start-urgent-work",
        "x": "",
        "r": "",
    }
    assert int(entry["r"]) > 1_600_000_000_000
    stats = {}
    async for k in redis.scan_iter(match=keys.trace_rulestats("*")):
        stats.update(await redis.hgetall(k))
        assert 0 < await redis.ttl(k) <= codes.RULESTATS_TTL_S
    assert stats[b"start-urgent-work\x1ff"] == b"1"
    # No secret in anything stored for traces.
    async for k in redis.scan_iter(match=f"{keys.prefix}trace:*"):
        kind = (await redis.type(k)).decode()
        raw = (
            await redis.xrange(k)
            if kind == "stream"
            else await redis.hgetall(k)
            if kind == "hash"
            else b""
        )
        text = repr(raw)
        assert SECRET not in text and sim.api_key not in text


async def test_a_batched_call_is_traced_on_every_ticket_it_covers(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    settings = stack_settings(
        redis_url, keys, sim, rules_dir(tmp_path, URGENT), coalesce_window_s=1.0
    )
    await start_receiver(aiohttp_server, settings, redis, sim)
    a = sim.create_ticket(subject="A", priority="normal")
    b = sim.create_ticket(subject="B", priority="normal")
    async with running_worker(settings):
        await quiet(sim, redis, keys)
        sim.change_ticket(a["id"], priority="urgent")
        sim.change_ticket(b["id"], priority="urgent")
        await quiet(sim, redis, keys)
        ka, kb = await ticket_key(redis, keys, a["id"]), await ticket_key(redis, keys, b["id"])
        [(ea, ca)] = await wait_records(redis, keys, ka, codes.CALL)
        [(eb, cb)] = await wait_records(redis, keys, kb, codes.CALL)
    assert [e.path for e in sim.journal if e.method == "POST"] == ["/api/v1/tickets/bulk"]
    # Each ticket's record names the call, how many tickets it covered, and only that ticket's
    # own planned call and event.
    assert ca[2:5] == cb[2:5] == ["POST", "/api/v1/tickets/bulk", 200]
    assert ca[7] == cb[7] == 2
    updates = {d.event_id for d in sim.deliveries if d.event == "ticket.updated"}
    assert ca[8] == [ea] and cb[8] == [eb] and {ea, eb} <= updates and ea != eb
    [pa] = [c[1][0][0] for _, c in kinds(await timeline(redis, keys, ka), "pl")]
    [pb] = [c[1][0][0] for _, c in kinds(await timeline(redis, keys, kb), "pl")]
    assert ca[1] == [pa] and cb[1] == [pb]


async def test_a_coalesced_call_names_both_events_it_carries(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    settings = stack_settings(
        redis_url,
        keys,
        sim,
        rules_dir(tmp_path, URGENT + VIP),
        coalesce_window_s=2.0,
        echo_window_s=0.001,
    )
    await start_receiver(aiohttp_server, settings, redis, sim)
    t = sim.create_ticket(subject="Order", priority="normal")
    async with running_worker(settings):
        await quiet(sim, redis, keys)
        sim.change_ticket(t["id"], priority="urgent")
        sim.change_ticket(t["id"], subject="Order for a VIP")
        await quiet(sim, redis, keys)
        key = await ticket_key(redis, keys, t["id"])
        [(e, ca)] = await wait_records(redis, keys, key, codes.CALL)
    patches = [x for x in sim.journal if x.method == "PATCH"]
    assert len(patches) == 1 and patches[0].body == {"status": "in_progress", "priority": "high"}
    records = await timeline(redis, keys, key)
    planned = [(ev, c[1][0][0]) for ev, c in kinds(records, "pl")]
    assert len(planned) == 2 and e == ""
    assert ca[8] == [ev for ev, _ in planned] and ca[1] == [cid for _, cid in planned]


async def test_a_429_is_traced_with_its_retry_and_then_the_call(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    settings = stack_settings(redis_url, keys, sim, rules_dir(tmp_path, URGENT))
    await start_receiver(aiohttp_server, settings, redis, sim)
    t = sim.create_ticket(subject="Slow", priority="normal")
    async with running_worker(settings):
        await quiet(sim, redis, keys)
        sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 429, retry_after=1)
        sim.change_ticket(t["id"], priority="urgent")
        await quiet(sim, redis, keys)
        key = await ticket_key(redis, keys, t["id"])
        calls = await wait_records(redis, keys, key, codes.CALL, 2)
    records = await timeline(redis, keys, key)
    [(_, rt)] = kinds(records, "rt")
    [(_, pl)] = kinds(records, "pl")
    assert rt[1] == pl[1][0][0] and rt[2] == 429 and rt[4] == 1
    assert [c[4] for _, c in calls] == [429, 200]
    # The retry is after the answer plus Retry-After, and the second call went then.
    order = [c[0] for _, c in records]
    assert order.index("rt") < len(order) - 1 - order[::-1].index("ca")


async def test_a_refused_call_and_a_failing_rule_are_traced_as_dead_letters(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    router = load_rules(rules_dir(tmp_path, URGENT))

    @router.on("ticket.updated", vendor="inboxops", name="broken")
    async def broken(ctx: Context) -> None:
        raise RuntimeError("no such field")

    settings = stack_settings(redis_url, keys, sim, tmp_path / "rules")
    await start_receiver(aiohttp_server, settings, redis, sim)
    t = sim.create_ticket(subject="Refused", priority="normal")
    async with running_worker(settings, router):
        await quiet(sim, redis, keys)
        sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 422)
        sim.change_ticket(t["id"], priority="urgent")
        await quiet(sim, redis, keys)
        key = await ticket_key(redis, keys, t["id"])
        letters = await wait_records(redis, keys, key, codes.DEAD_LETTER, 2)
    records = await timeline(redis, keys, key)
    by_kind = {c[1]: c for _, c in letters}
    assert set(by_kind) == {"event", "call"}
    dlq = {i.decode() for i, _ in await redis.xrange(keys.dlq)}
    assert {c[2] for c in by_kind.values()} == dlq
    assert "rule broken failed" in by_kind["event"][3]
    [err] = [c for _, c in kinds(records, "ru") if c[1] == "broken"]
    assert err[2] == "E" and "RuntimeError: no such field" in err[4]
    call = [c for _, c in kinds(records, "ca")][-1]
    assert call[4] == 422


async def test_a_stale_event_is_traced_with_both_order_keys(
    aiohttp_server, redis, redis_url, keys, tmp_path
):
    sim = InboxOpsSimulator(
        SimulatorConfig(seed=11, rate_limit_per_minute=None), clock=ManualClock()
    )
    await sim.start()
    try:
        clock = sim.clock
        assert isinstance(clock, ManualClock)
        settings = stack_settings(redis_url, keys, sim, rules_dir(tmp_path, URGENT))
        await start_receiver(aiohttp_server, settings, redis, sim)
        t = sim.create_ticket(subject="Refund", priority="normal")
        async with running_worker(settings):
            await quiet(sim, redis, keys)
            sim.faults.webhooks.reorder_window = 2
            clock.advance(60)
            sim.change_ticket(t["id"], subject="Refund 1")
            clock.advance(60)
            sim.change_ticket(t["id"], subject="Refund 2")
            await quiet(sim, redis, keys)
            key = await ticket_key(redis, keys, t["id"])

            async def stale_entry() -> dict[str, str] | None:
                return next((d for d in await deliveries(redis, keys) if d["o"] == "stale"), None)

            entry = await wait_for(stale_entry, message="a stale entry in the deliveries list")
        older, newer = [d.event_id for d in sim.deliveries if d.event == "ticket.updated"][::-1]
        assert entry["e"] == older and entry["k"] == key
        records = await timeline(redis, keys, key)
        [(_, st)] = [(e, c) for e, c in kinds(records, "st") if e == older]
        assert st[1] == 1 and int(st[2]) < int(st[3]) and st[4] == newer
        # Nothing after the stale check: it was not acted on.
        assert [c[0] for e, c in records if e == older] == ["rx", "st"]
    finally:
        await sim.stop()


def score_router() -> Router:
    router = Router()

    @router.on(
        "ticket.updated",
        vendor="inboxops",
        when={"field": "custom_fields.score", "exists": True},
        name="count-updates",
    )
    async def count_updates(ctx: Context) -> None:
        ctx.update(custom_fields={"score": ctx.ticket["custom_fields"]["score"] + 1})

    return router


async def test_a_loop_guard_suppression_is_traced_with_its_reason_code(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    (tmp_path / "rules").mkdir()
    settings = stack_settings(redis_url, keys, sim, tmp_path / "rules")
    await start_receiver(aiohttp_server, settings, redis, sim)
    t = sim.create_ticket(subject="count me", custom_fields={"score": 1})
    async with running_worker(settings, score_router()):
        await quiet(sim, redis, keys)
        sim.change_ticket(t["id"], subject="count me, please")
        await quiet(sim, redis, keys)
        key = await ticket_key(redis, keys, t["id"])

        async def suppressed() -> list[Any]:
            return [
                c
                for _, c in kinds(await timeline(redis, keys, key), "ru")
                if c[2] == codes.RULE_SUPPRESSED
            ]

        [ru] = await wait_for(suppressed, message="a suppressed rule record")
    code, fields, age_ms, rules = ru[4]
    assert code == codes.SUPPRESS_ECHO and "custom_fields" in fields and rules == ["count-updates"]
    assert isinstance(age_ms, int)
    entries = await deliveries(redis, keys)
    assert any(d["o"] == "handled" and d["f"] == "" and d["k"] == key for d in entries)
    stats: dict[bytes, bytes] = {}
    async for k in redis.scan_iter(match=keys.trace_rulestats("*")):
        stats.update(await redis.hgetall(k))
    assert stats[b"count-updates\x1fs"] == b"1" and stats[b"count-updates\x1ff"] == b"1"


async def test_retention_zero_records_nothing(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path
):
    settings = stack_settings(
        redis_url, keys, sim, rules_dir(tmp_path, URGENT), trace_retention_s=0.0
    )
    await start_receiver(aiohttp_server, settings, redis, sim)
    t = sim.create_ticket(subject="Off", priority="normal")
    async with running_worker(settings):
        await quiet(sim, redis, keys)
        sim.change_ticket(t["id"], priority="urgent")
        await quiet(sim, redis, keys)
        assert sim.ticket(t["id"])["status"] == "in_progress"
    # The worker has stopped, and a stopping worker writes what it buffered: nothing here.
    assert [k async for k in redis.scan_iter(match=f"{keys.prefix}trace:*")] == []


async def test_traces_that_cannot_be_written_do_not_stop_handling(
    aiohttp_server, redis, redis_url, keys, sim, tmp_path, caplog
):
    settings = stack_settings(redis_url, keys, sim, rules_dir(tmp_path, URGENT))
    await start_receiver(aiohttp_server, settings, redis, sim)
    t = sim.create_ticket(subject="Away", priority="normal")
    # Traces go to a Redis nobody listens on; everything else to the real one.
    away = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    writer = TraceWriter(away, keys, retention_s=3600, buffer_max=5, flush_s=0.02)
    async with running_worker(settings) as worker:
        await worker.ctx["trace"].stop()
        worker.ctx["pipeline"].trace = worker.ctx["outbox"].trace = writer
        writer.start()
        await quiet(sim, redis, keys)
        sim.change_ticket(t["id"], priority="urgent")
        await quiet(sim, redis, keys)
        await wait_for(lambda: sim.ticket(t["id"])["status"] == "in_progress", message="sent")
        await wait_for(lambda: writer.dropped > 0, message="records dropped")
        assert writer.pending <= 5
        await writer.stop()
    assert "trace buffer full" in caplog.text
    assert caplog.text.count("trace buffer full") == 1
    await away.aclose()


async def test_the_writer_keeps_its_bounds(redis, keys):
    writer = TraceWriter(redis, keys, retention_s=60, log_max=100)
    for i in range(1500):
        writer.record("inboxops:w:1", f"e{i}", ("rx", "inboxops", "w", "t", "1", 0, "", 1, ""))
    await writer.flush()
    n = await redis.xlen(keys.trace_ticket("inboxops:w:1"))
    # MAXLEN ~ trims whole nodes (100 entries each): about the cap, never far above it.
    assert codes.TICKET_MAX <= n < codes.TICKET_MAX + 200
    assert 0 < await redis.ttl(keys.trace_ticket("inboxops:w:1")) <= 60
    # Entries older than the retention go with the next write (MINID ~).
    for i in range(300):
        await redis.xadd(keys.trace_log, {"e": "old"}, id=f"{1000 + i}-0")
    writer.log({"e": "new"})
    await writer.flush()
    left = [f[b"e"] for _, f in await redis.xrange(keys.trace_log)]
    assert left.count(b"old") < 100 and left[-1] == b"new"
    # And the list never grows far beyond TICKETWIRE_TRACE_MAX.
    for i in range(1000):
        writer.log({"e": f"n{i}"})
    await writer.flush()
    assert 100 <= await redis.xlen(keys.trace_log) < 300


async def test_a_flush_that_fails_keeps_its_records_for_the_next(keys):
    away = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    writer = TraceWriter(away, keys, retention_s=60)
    writer.record("k", "e1", ("dl", "call", "1-0", "gone"))
    writer.rule_count("r", "f")
    with pytest.raises((RedisError, OSError)):
        await writer.flush()
    # Kept for the next flush, within the buffer's bound.
    assert writer.pending == 1 and writer.dropped == 0
    await away.aclose()


async def test_records_with_any_text_are_stored_exactly(redis, keys):
    # The script splits one text on separators JSON never leaves raw: quotes, backslashes,
    # brackets, commas, line breaks and other scripts inside strings must not confuse it.
    nasty = ['a"b', "c\\", "]}", "[{,", 'x\\"]', "€ 日本 \U0001f600", "\ud800", "", "\n\t"]
    writer = TraceWriter(redis, keys, retention_s=60)
    records = [
        ("rx", "inboxops", nasty[0], "t", nasty[1], 1_700_000_000_123, "1/2-0", 1, "fp"),
        ("ru", "r", "C", [[0, 0, {"k": nasty}], [1, 1, []], [2, 1, {}]], None),
        ("ch", [["f", None, 1.5], ["g", True, -3]]),
    ]
    key = 'inboxops:w:"]\\'
    writer.event(key, 'e"1', records, "handled", "r\x1fs")
    writer.record(key, "e,2", ("dl", "call", "1-0", nasty[4]))
    assert await writer.flush() == 5
    rows = await redis.xrange(keys.trace_ticket(key))
    got = [(f[b"e"].decode(), json.loads(f[b"c"])) for _, f in rows]
    # The event's records share one entry; a record written alone has its own.
    assert got == [
        ('e"1', json.loads(json.dumps(records))),
        ("e,2", ["dl", "call", "1-0", nasty[4]]),
    ]
    [(_, entry)] = await redis.xrange(keys.trace_log)
    assert {k.decode(): v.decode() for k, v in entry.items()} == {
        "v": "inboxops",
        "a": nasty[0],
        "y": "t",
        "e": 'e"1',
        "k": key,
        "o": "handled",
        "s": "",
        "f": "r\x1fs",
        "x": "",
        "r": "1700000000123",
    }
