"""A write-back whose send may have been applied is read back before it goes again (real HTTP, Redis).

A "dead" claim is a real claim of the outbox that is never settled, as a worker killed mid-send
leaves it; its lease is short, so the live outbox takes the tickets over. When the dead worker's
request reached the helpdesk, it was sent through the same client, so the journal shows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.thena import ThenaSimulator, ThenaSimulatorConfig
from tests.conftest import wait_for
from tests.stack import outbox_empty
from tests.test_writeback_e2e import SPECS, outbox
from ticketwire.calls import ApiCall
from ticketwire.errors import (
    ClientError,
    HelpdeskUnavailable,
    PartialFailure,
    RateLimited,
    ServerError,
)
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.trace.read import TraceReader
from ticketwire.trace.writer import TraceWriter
from ticketwire.vendors.cstar.client import CStarClient
from ticketwire.vendors.inboxops.client import InboxOpsClient
from ticketwire.vendors.inboxops.models import PATCH_FIELDS as INBOXOPS_PATCH_FIELDS
from ticketwire.vendors.thena.client import ThenaClient
from ticketwire.vendors.thena.models import BULK_UPDATE_FIELDS as THENA_BULK_FIELDS
from ticketwire.writeback import Pending
from workers.deadletter import dead_letter, redrive
from workers.outbox import Outbox, OutboxPolicy
from workers.outboxqueue import OutboxQueue, now_ms
from workers.retrypolicy import attempt_record, may_have_applied

INBOXOPS_BULK = "/tickets/bulk"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def inboxops(session) -> AsyncIterator[tuple[InboxOpsSimulator, InboxOpsClient]]:
    sim = InboxOpsSimulator(SimulatorConfig(seed=21))
    await sim.start()
    try:
        yield sim, InboxOpsClient(session, sim.url, api_key=Secret(sim.api_key))
    finally:
        await sim.stop()


@pytest.fixture
async def thena(session) -> AsyncIterator[tuple[ThenaSimulator, ThenaClient]]:
    sim = ThenaSimulator(ThenaSimulatorConfig(seed=22))
    await sim.start()
    try:
        yield sim, ThenaClient(session, sim.url, api_key=Secret(sim.api_key))
    finally:
        await sim.stop()


def io_key(ticket_id: str) -> str:
    return f"inboxops:ws:{ticket_id}"


def th_key(ticket_id: str) -> str:
    return f"thena:org:{ticket_id}"


def io_call(tid: str, method: str, path: str, body: dict[str, Any], event: str) -> ApiCall:
    return ApiCall("inboxops", method, path, body, tid, ("rule",), event)


def tags(tid: str, tag: str, event: str, op: str = "add_tags") -> ApiCall:
    body = {"operation": op, "ticket_ids": [tid], "tag_ids": [tag]}
    return io_call(tid, "POST", INBOXOPS_BULK, body, event)


def note(tid: str, text: str, event: str) -> ApiCall:
    body = {"type": "internal_note", "body_html": f"<p>{text}</p>", "body_text": text}
    return io_call(tid, "POST", f"/tickets/{tid}/messages", body, event)


async def dead_claim(redis: Redis, keys: Keys, expected: int) -> None:
    """A worker claims what is queued and dies: the claim is never settled; its lease is short."""
    queue = OutboxQueue(redis, keys, OutboxPolicy(lease_s=0.2, window_s=0.05))

    async def claimed() -> bool:
        return len(await queue.claim("dead:1", now_ms())) == expected

    await wait_for(claimed, timeout=10, message="the dead worker's claim")


async def flush(redis: Redis, keys: Keys, box: Outbox) -> None:
    box.start()
    try:
        await wait_for(lambda: outbox_empty(redis, keys), timeout=20, message="outbox drained")
    finally:
        await box.stop()


def writes(sim: Any, method: str, part: str = "") -> list[Any]:
    return [e for e in sim.journal if e.method == method and part in e.path]


async def queue_calls(box: Outbox, calls: Sequence[tuple[str, ApiCall]]) -> None:
    for i, (key, call) in enumerate(calls):
        await box.submit(key, f"ev{i}", [call])


# ---- InboxOps ----


async def test_a_patch_already_applied_is_read_and_not_sent_again(
    redis: Redis, keys: Keys, inboxops
):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    call = io_call(t["id"], "PATCH", f"/tickets/{t['id']}", {"priority": "high"}, "e1")
    box = outbox(redis, keys, client, "live")
    await box.submit(io_key(t["id"]), "e1", [call])
    await dead_claim(redis, keys, 1)
    await client.send(call)  # the dead worker's request, applied before it died
    await flush(redis, keys, box)
    assert len(writes(sim, "PATCH")) == 1
    [read] = writes(sim, "GET", f"/tickets/{t['id']}")
    assert read.at >= writes(sim, "PATCH")[0].at
    assert box.counters["api_calls_reconciled"] == 1
    assert box.counters["api_calls"] == 0


async def test_a_reconciled_call_is_traced_as_not_sent(redis: Redis, keys: Keys, inboxops):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    call = io_call(t["id"], "PATCH", f"/tickets/{t['id']}", {"priority": "high"}, "e1")
    writer = TraceWriter(redis, keys, retention_s=600, flush_s=0.02)
    policy = outbox(redis, keys, client, "live").policy  # and the client's budget
    box = Outbox(
        redis, keys, {"inboxops": client}, owner="live", specs=SPECS, policy=policy, trace=writer
    )
    await box.submit(io_key(t["id"]), "e1", [call])
    await dead_claim(redis, keys, 1)
    await client.send(call)
    await flush(redis, keys, box)
    await writer.flush()
    timeline = await TraceReader(redis, keys).ticket(io_key(t["id"]))
    [sent] = [r for r in timeline.records if r.kind == "ca"]
    assert sent.values[3] == "reconciled: already applied, not sent"


async def test_a_patch_not_applied_is_read_then_sent_once(redis: Redis, keys: Keys, inboxops):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    call = io_call(t["id"], "PATCH", f"/tickets/{t['id']}", {"priority": "high"}, "e1")
    box = outbox(redis, keys, client, "live")
    await box.submit(io_key(t["id"]), "e1", [call])
    await dead_claim(redis, keys, 1)
    await flush(redis, keys, box)
    [sent] = writes(sim, "PATCH")
    assert sent.body == {"priority": "high"}
    assert [e.method for e in sim.journal] == ["GET", "PATCH"]
    assert sim.ticket(t["id"])["priority"] == "high"


async def test_a_half_applied_patch_sends_only_the_fields_still_missing(
    redis: Redis, keys: Keys, inboxops
):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    sim.change_ticket(t["id"], priority="urgent")  # an agent, or half of our change, got there
    body = {"priority": "urgent", "status": "in_progress"}
    call = io_call(t["id"], "PATCH", f"/tickets/{t['id']}", body, "e1")
    box = outbox(redis, keys, client, "live")
    await box.submit(io_key(t["id"]), "e1", [call])
    await dead_claim(redis, keys, 1)
    await flush(redis, keys, box)
    [sent] = writes(sim, "PATCH")
    assert sent.body == {"status": "in_progress"}
    assert sim.ticket(t["id"])["status"] == "in_progress"


async def test_a_read_that_fails_is_retried_before_anything_is_sent(
    redis: Redis, keys: Keys, inboxops
):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    call = io_call(t["id"], "PATCH", f"/tickets/{t['id']}", {"priority": "high"}, "e1")
    box = outbox(redis, keys, client, "live")
    await box.submit(io_key(t["id"]), "e1", [call])
    await dead_claim(redis, keys, 1)
    await client.send(call)
    sim.faults.fail_next("GET", "/tickets/*", 503)
    await flush(redis, keys, box)
    assert [(e.method, e.status) for e in sim.journal] == [
        ("PATCH", 200),
        ("GET", 503),
        ("GET", 200),
    ]


async def test_a_change_queued_behind_an_applied_one_goes_alone_after_the_read(
    redis: Redis, keys: Keys, inboxops
):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    first = io_call(t["id"], "PATCH", f"/tickets/{t['id']}", {"priority": "high"}, "e1")
    later = io_call(t["id"], "PATCH", f"/tickets/{t['id']}", {"status": "waiting"}, "e2")
    box = outbox(redis, keys, client, "live")
    await box.submit(io_key(t["id"]), "e1", [first])
    await dead_claim(redis, keys, 1)
    await client.send(first)
    await box.submit(io_key(t["id"]), "e2", [later])  # coalesces with the uncertain one
    await flush(redis, keys, box)
    assert [e.body for e in writes(sim, "PATCH")] == [{"priority": "high"}, {"status": "waiting"}]
    shown = sim.ticket(t["id"])
    assert (shown["priority"], shown["status"]) == ("high", "waiting")


async def test_a_bulk_tag_call_half_done_sends_only_the_tickets_without_the_tag(
    redis: Redis, keys: Keys, inboxops
):
    sim, client = inboxops
    vip = sim.create_tag("resend-check")["id"]
    tickets = sim.seed_tickets(3, emit=False)
    box = outbox(redis, keys, client, "live")
    await queue_calls(
        box, [(io_key(t["id"]), tags(t["id"], vip, f"e{i}")) for i, t in enumerate(tickets)]
    )
    await dead_claim(redis, keys, 3)
    # The dead worker's bulk call reached two of the tickets (the helpdesk's bulk call is not
    # all-or-nothing for a ticket deleted or a request cut short).
    await client.send(tags(tickets[0]["id"], vip, "x0"))
    await client.send(tags(tickets[1]["id"], vip, "x1"))
    await flush(redis, keys, box)
    bulk = writes(sim, "POST", INBOXOPS_BULK)
    assert [e.body["ticket_ids"] for e in bulk] == [
        [tickets[0]["id"]],
        [tickets[1]["id"]],
        [tickets[2]["id"]],
    ]
    assert len(writes(sim, "GET")) == 3
    for t in tickets:
        assert [x["id"] for x in sim.ticket(t["id"], ["tags"])["tags"]] == [vip]


async def test_a_tag_removed_already_is_not_removed_again(redis: Redis, keys: Keys, inboxops):
    sim, client = inboxops
    vip = sim.create_tag("resend-check")["id"]
    [t] = sim.seed_tickets(1, emit=False)
    box = outbox(redis, keys, client, "live")
    await box.submit(io_key(t["id"]), "e1", [tags(t["id"], vip, "e1", "remove_tags")])
    await dead_claim(redis, keys, 1)
    await flush(redis, keys, box)
    assert not writes(sim, "POST")
    [read] = writes(sim, "GET")
    assert read.query == {"include": "tags"}


async def test_a_note_already_added_is_found_by_its_marker_and_not_added_twice(
    redis: Redis, keys: Keys, inboxops
):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    call = note(t["id"], "Escalated", "e1")
    other = note(t["id"], "Escalated", "e0")  # the same text from another event: another note
    box = outbox(redis, keys, client, "live")
    await box.submit(io_key(t["id"]), "e1", [call])
    await dead_claim(redis, keys, 1)
    await client.send(other)
    await client.send(call)  # the dead worker's note
    await flush(redis, keys, box)
    assert len(writes(sim, "POST", "/messages")) == 2
    notes = sim.messages(t["id"], ["internal_note"])
    assert [n["body_text"] for n in notes].count("Escalated") == 2
    assert writes(sim, "GET", "/messages")[0].query == {"types": "internal_note"}


async def test_a_note_not_added_is_added_once_with_its_marker(redis: Redis, keys: Keys, inboxops):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    box = outbox(redis, keys, client, "live")
    await box.submit(io_key(t["id"]), "e1", [note(t["id"], "Escalated", "e1")])
    await dead_claim(redis, keys, 1)
    await flush(redis, keys, box)
    [posted] = writes(sim, "POST", "/messages")
    assert posted.body["body_text"] == "Escalated"
    assert posted.body["body_html"].startswith("<p>Escalated</p><!-- ticketwire:")
    notes = sim.messages(t["id"], ["internal_note"])
    [kept] = [n for n in notes if n["body_text"] == "Escalated"]
    assert kept["body_html"] == posted.body["body_html"]


async def test_a_first_send_reads_nothing(redis: Redis, keys: Keys, inboxops):
    sim, client = inboxops
    vip = sim.create_tag("resend-check")["id"]
    tickets = sim.seed_tickets(2, emit=False)
    box = outbox(redis, keys, client, "live")
    await queue_calls(
        box, [(io_key(t["id"]), tags(t["id"], vip, f"e{i}")) for i, t in enumerate(tickets)]
    )
    await box.submit(io_key(tickets[0]["id"]), "n", [note(tickets[0]["id"], "hi", "n")])
    await flush(redis, keys, box)
    assert [e.method for e in sim.journal] == ["POST", "POST"]
    assert box.counters["api_calls_reconciled"] == 0


async def test_a_timed_out_call_applied_late_is_read_back_not_sent_twice(
    redis: Redis, keys: Keys, inboxops, session
):
    sim, _ = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    client = InboxOpsClient(session, sim.url, api_key=Secret(sim.api_key), timeout=0.3)
    # Applied at once, answered after the client gave up: the worker saw a timeout.
    sim.faults.fail_next("PATCH", "/tickets/*", 200, delay=1.0, late=True)
    box = outbox(redis, keys, client, "live")
    await box.submit(
        io_key(t["id"]),
        "e1",
        [io_call(t["id"], "PATCH", f"/tickets/{t['id']}", {"priority": "high"}, "e1")],
    )
    await flush(redis, keys, box)
    # The journal records a request once it is answered: the late one after its pause.
    await wait_for(lambda: len(writes(sim, "PATCH")) == 1, message="the late answer")
    assert [e.method for e in sim.journal] == ["GET", "PATCH"]
    assert box.counters["api_calls_reconciled"] == 1


def test_an_uncertain_call_keeps_its_mark_in_the_outbox_and_through_coalescing():
    from ticketwire.writeback import coalesce

    call = io_call("t", "PATCH", "/tickets/t", {"priority": "high"}, "e1")
    later = io_call("t", "PATCH", "/tickets/t", {"status": "open"}, "e2")
    marked = Pending(call, uncertain=True)
    assert Pending.from_json(marked.to_json()).uncertain
    assert "uncertain" not in Pending(call).to_json()
    [merged] = coalesce("k", [marked, Pending(later)], rank=lambda _r: 0).calls
    assert merged.uncertain and merged.call.body == {"priority": "high", "status": "open"}


@pytest.mark.parametrize(
    ("last", "read"),
    [
        ({"kind": "HelpdeskUnavailable", "error": "no response within 10s"}, True),
        ({"kind": "NotConnected", "error": "connection refused"}, False),
        ({"kind": "ServerError", "status": 503, "error": "unavailable"}, True),
        ({"kind": "ClientError", "status": 400, "error": "bad_request"}, False),
    ],
)
async def test_a_redriven_letter_is_read_back_when_its_last_attempt_may_have_been_applied(
    redis: Redis, keys: Keys, inboxops, last: dict[str, Any], read: bool
):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    call = io_call(t["id"], "PATCH", f"/tickets/{t['id']}", {"priority": "high"}, "e1")
    await dead_letter(
        redis, keys, reason="gave up", ticket_key=io_key(t["id"]), call=call, attempts=[last]
    )
    [(letter_id, _)] = await redis.xrange(keys.dlq)
    await redrive(redis, keys, letter_id.decode(), partitions=4)
    await flush(redis, keys, outbox(redis, keys, client, "live"))
    assert [e.method for e in sim.journal] == (["GET", "PATCH"] if read else ["PATCH"])


# ---- Thena ----


def th_bulk(tid: str, body: dict[str, Any], event: str) -> ApiCall:
    return ApiCall("thena", "PATCH", f"/tickets/{tid}", body, tid, ("rule",), event)


async def test_thena_a_bulk_update_half_applied_sends_only_the_rest(
    redis: Redis, keys: Keys, thena
):
    sim, client = thena
    tickets = [sim.create_ticket(title=f"t{i}") for i in range(3)]
    closed = sim.status_id("Closed")
    box = outbox(redis, keys, client, "live")
    calls = [
        (th_key(t["id"]), th_bulk(t["id"], {"statusId": closed}, f"e{i}"))
        for i, t in enumerate(tickets)
    ]
    await queue_calls(box, calls)
    await dead_claim(redis, keys, 3)
    # Two tickets were closed by the dead worker's bulk update.
    await client.bulk_update([tickets[0]["id"], tickets[1]["id"]], statusId=closed)
    await flush(redis, keys, box)
    patches = writes(sim, "PATCH")
    assert [sorted(e.body["ticketIds"]) for e in patches] == [
        sorted([tickets[0]["id"], tickets[1]["id"]]),
        [tickets[2]["id"]],
    ]
    assert len(writes(sim, "GET")) == 3
    assert all(sim.ticket(t["id"])["status"] == "Closed" for t in tickets)


async def test_thena_a_patch_already_applied_is_not_sent_again(redis: Redis, keys: Keys, thena):
    sim, client = thena
    t = sim.create_ticket(title="t")
    call = th_bulk(t["id"], {"statusName": "resolved", "priorityId": sim.priority_id("High")}, "e1")
    box = outbox(redis, keys, client, "live")
    await box.submit(th_key(t["id"]), "e1", [call])
    await dead_claim(redis, keys, 1)
    await client.send(call)
    await flush(redis, keys, box)
    assert len(writes(sim, "PATCH")) == 1
    assert len(writes(sim, "GET")) == 1


async def test_thena_a_patch_half_applied_sends_the_missing_field(redis: Redis, keys: Keys, thena):
    sim, client = thena
    t = sim.create_ticket(title="t")
    sim.change_ticket(t["id"], statusName="Resolved")
    call = th_bulk(t["id"], {"statusName": "resolved", "priorityId": sim.priority_id("High")}, "e1")
    box = outbox(redis, keys, client, "live")
    await box.submit(th_key(t["id"]), "e1", [call])
    await dead_claim(redis, keys, 1)
    await flush(redis, keys, box)
    [sent] = writes(sim, "PATCH")
    assert sent.body == {"priorityId": sim.priority_id("High")}


async def test_thena_a_create_resent_finds_its_ticket_by_its_dedup_key(
    redis: Redis, keys: Keys, thena
):
    sim, client = thena
    t = sim.create_ticket(title="origin")
    new = {"title": "follow-up", "teamId": sim.team_id, "deDuplicationKey": "ticketwire-k1"}
    body = {"tickets": [new], "options": {"stopOnError": True}}
    call = ApiCall("thena", "POST", "/tickets/bulk", body, t["id"], ("rule",), "e1")
    box = outbox(redis, keys, client, "live")
    await box.submit(th_key(t["id"]), "e1", [call])
    await dead_claim(redis, keys, 1)
    await client.send(call)
    await flush(redis, keys, box)
    assert len(writes(sim, "POST", "/tickets")) == 2
    assert [x["title"] for x in sim.tickets()].count("follow-up") == 1


# ---- cStar: its Idempotency-Key covers a request, not a ticket's change ----


@pytest.fixture
async def cstar(session) -> AsyncIterator[tuple[CStarSimulator, CStarClient]]:
    sim = CStarSimulator(CStarSimulatorConfig(seed=23))
    await sim.start()
    try:
        yield sim, CStarClient(session, sim.url, sim.team_id, Secret(sim.api_key))
    finally:
        await sim.stop()


def cs_bulk(tids: list[str], event: str) -> ApiCall:
    body = {"action": "update", "resource": "tickets", "ids": tids, "data": {"status": "closed"}}
    return ApiCall("cstar", "POST", "/bulk", body, tids[0], ("close",), event)


async def test_cstar_a_bulk_resent_with_another_ticket_does_not_apply_twice(
    redis: Redis, keys: Keys, cstar
):
    sim, client = cstar
    tickets = [t["id"] for t in sim.seed_tickets(3, emit=False)]
    box = outbox(redis, keys, client, "live")
    await queue_calls(
        box, [(f"cstar:team:{t}", cs_bulk([t], f"e{i}")) for i, t in enumerate(tickets[:2])]
    )
    await dead_claim(redis, keys, 2)
    await client.send(cs_bulk(tickets[:2], "batch:dead"))  # the dead worker's bulk call
    # A third ticket's change joins: the next bulk call is another request, with another key.
    await box.submit(f"cstar:team:{tickets[2]}", "e2", [cs_bulk([tickets[2]], "e2")])
    await flush(redis, keys, box)
    bulk = [e for e in sim.journal if e.method == "POST"]
    assert [e.body["ids"] for e in bulk] == [tickets[:2], [tickets[2]]]
    assert box.counters["api_calls_reconciled"] == 2
    assert all(sim.ticket(t)["status"] == "closed" for t in tickets)


# ---- the simulators' scripted pauses, before or after the change ----


@pytest.mark.parametrize("late", [False, True])
async def test_a_scripted_pause_holds_the_request_before_or_after_its_change(inboxops, late: bool):
    sim, client = inboxops
    [t] = sim.seed_tickets(1, emit=False)
    sim.faults.fail_next("PATCH", "/tickets/*", 200, delay=1.0, late=late)
    sending = asyncio.create_task(client.update_ticket(t["id"], priority="urgent"))
    try:
        if late:
            # Applied at once; the answer is what waits.
            await wait_for(lambda: sim.ticket(t["id"])["priority"] == "urgent", timeout=0.9)
            assert not sending.done()
        else:
            await wait_for(lambda: sending.done(), timeout=5)
        assert (await sending)["priority"] == "urgent"
    finally:
        sending.cancel()


def test_a_late_answer_must_be_a_success(inboxops):
    sim, _ = inboxops
    with pytest.raises(ValueError, match="late needs a status below 400"):
        sim.faults.fail_next("PATCH", "/tickets/*", 503, delay=1.0, late=True)


async def test_the_simulators_show_every_field_a_read_back_compares(inboxops, thena):
    # inboxops-update-ticket: "Ticket with custom_fields (GET by id, POST create 201, PATCH 200).
    # GET /tickets/{id} may add optional keys when using include= (tags, ...)".
    io_sim, io_client = inboxops
    [t] = io_sim.seed_tickets(1, emit=False)
    shown = await io_client.get_ticket(t["id"], include=["tags"])
    assert set(INBOXOPS_PATCH_FIELDS) <= set(shown)
    assert isinstance(shown["tags"], list)
    th_sim, th_client = thena
    made = th_sim.create_ticket(title="t")
    assert set(THENA_BULK_FIELDS) <= set(await th_client.get_ticket(made["id"]))


@pytest.mark.parametrize(
    ("exc", "doubt"),
    [
        (HelpdeskUnavailable("no response within 10s"), True),
        (ServerError(503, detail="down"), True),
        # A 2xx whose body is not JSON: applied or not, nobody knows.
        (ServerError(200, detail="expected a JSON body"), True),
        (PartialFailure({"7": "no answer for this id"}, transient=["7"]), True),
        (ClientError(400, detail="bad"), False),
        (RateLimited(429, retry_after=1.0), False),
    ],
)
def test_which_failed_attempts_leave_the_call_uncertain(exc: Exception, doubt: bool):
    assert may_have_applied(attempt_record(exc, 0)) is doubt
