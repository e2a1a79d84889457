"""`TicketState` against a real Redis: stale by time and by sequence, equal keys, re-runs, TTL,
what is kept, one script call per event, and agreement with the in-memory logic."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from ticketwire.engine.changes import RERUN_MEMORY, MemoryTicketState, Observation, snapshot
from ticketwire.event import Event
from ticketwire.keys import Keys
from workers.ticketstate import TicketState

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
FIELDS = frozenset({"status", "priority", "common.status"})
DAY = 86400.0


def event(
    event_id: str,
    seconds: float | None,
    *,
    status: str = "open",
    sequence: int | None = None,
    ticket_id: str = "t-1",
    event_type: str = "ticket.updated",
) -> Event:
    return Event(
        vendor="inboxops",
        type=event_type,
        id=event_id,
        tenant="ws",
        created_at=T0,
        ticket_id=ticket_id,
        ticket={
            "id": ticket_id,
            "status": status,
            "priority": "normal",
            "subject": "not read by any rule",
        },
        common={"status": status, "priority": "normal"},
        updated_at=None if seconds is None else T0 + timedelta(seconds=seconds),
        sequence=sequence,
    )


def kept(ev: Event) -> dict[str, Any]:
    return snapshot(ev, FIELDS)


async def stored(redis: Redis, keys: Keys, ev: Event) -> dict[bytes, bytes]:
    return dict(await redis.hgetall(keys.state(ev.ticket_key)))


async def test_first_then_newer_then_stale_by_updated_at(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    first = event("e1", 0, status="open")
    seen = await state.observe(first, FIELDS)
    assert seen == Observation(None, False, first.updated_at, "e1", True, None)
    second = event("e2", 60, status="waiting")
    seen = await state.observe(second, FIELDS)
    assert seen.previous == kept(first) and not seen.stale and not seen.first_seen
    assert (seen.applied_event_id, seen.applied_updated_at) == ("e2", second.updated_at)

    before = await stored(redis, keys, second)
    older = event("e0", 30, status="closed")
    seen = await state.observe(older, FIELDS)
    assert seen.stale and seen.previous is None and not seen.first_seen
    assert (seen.applied_event_id, seen.applied_updated_at) == ("e2", second.updated_at)
    assert await stored(redis, keys, second) == before, "a stale event must not change the state"
    [(_, record)] = await redis.xrange(keys.stale)
    assert record[b"event_id"] == b"e0" and record[b"applied_event_id"] == b"e2"
    assert record[b"updated_at"] == b"2025-03-01T09:00:30+00:00"
    assert record[b"applied_updated_at"] == b"2025-03-01T09:01:00+00:00"
    assert record[b"ticket"] == older.ticket_key.encode()
    assert record[b"type"] == b"ticket.updated" and record[b"vendor"] == b"inboxops"
    assert seen.stale_reason(older) == (
        "updated_at 2025-03-01T09:00:30Z is older than 2025-03-01T09:01:00Z applied by event=e2"
    )


async def test_the_sequence_decides_when_both_have_one(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    await state.observe(event("e1", 100, sequence=7), FIELDS)
    # Newer by time, older by the vendor's sequence: stale.
    late = event("e2", 200, sequence=6)
    seen = await state.observe(late, FIELDS)
    assert seen.stale and seen.applied_sequence == 7
    assert seen.stale_reason(late) == "sequence 6 is older than 7 applied by event=e1"
    # Older by time, newer by sequence: applied.
    assert not (await state.observe(event("e3", 50, sequence=8), FIELDS)).stale
    # Sequences compare as numbers, not as text ("10" > "9").
    assert not (await state.observe(event("e4", 50, sequence=10), FIELDS)).stale
    assert (await state.observe(event("e5", 50, sequence=9), FIELDS)).stale
    # Without a sequence on one side, the time decides.
    assert (await state.observe(event("e6", 49), FIELDS)).stale
    assert not (await state.observe(event("e7", 51), FIELDS)).stale


async def test_big_sequences_keep_their_precision(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    big = 2**62
    await state.observe(event("e1", 0, sequence=big + 1), FIELDS)
    # As Lua numbers (doubles) these two are equal; as integers the second is older.
    assert (await state.observe(event("e2", 0, sequence=big), FIELDS)).stale


async def test_equal_order_keys_are_applied(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    first = event("e1", 0, status="open")
    await state.observe(first, FIELDS)
    change = event("e2", 10, status="waiting")
    assert (await state.observe(change, FIELDS)).previous == kept(first)
    # The same edit announced as another event type: compared with what came before the edit.
    sibling = event("e2b", 10, status="waiting", event_type="ticket.status_changed")
    seen = await state.observe(sibling, FIELDS)
    assert not seen.stale and seen.previous == kept(first)
    # Another change with the same time: applied, compared with what it replaces.
    other = event("e3", 10, status="resolved")
    seen = await state.observe(other, FIELDS)
    assert not seen.stale and seen.previous == kept(change)


async def test_a_rerun_gets_the_same_previous_not_itself(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    first = event("e1", 0, status="open")
    assert (await state.observe(first, FIELDS)).first_seen
    # A crash after the first event was observed: its re-run is still the first event.
    again = await state.observe(first, FIELDS)
    assert again.first_seen and again.previous is None and not again.stale
    second = event("e2", 5, status="waiting")
    assert (await state.observe(second, FIELDS)).previous == kept(first)
    assert (await state.observe(second, FIELDS)).previous == kept(first)


async def test_ttl_is_set_and_refreshed_only_on_apply(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    first = event("e1", 10)
    await state.observe(first, FIELDS)
    key = keys.state(first.ticket_key)
    assert DAY * 1000 - 5000 < await redis.pttl(key) <= DAY * 1000
    await redis.pexpire(key, 100_000)
    await state.observe(event("e0", 5), FIELDS)  # stale
    assert await redis.pttl(key) <= 100_000
    await state.observe(event("e2", 20), FIELDS)
    assert await redis.pttl(key) > DAY * 1000 - 5000


async def test_only_the_read_fields_are_kept(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    first = event("e1", 0, status="waiting")
    await state.observe(first, FIELDS | {"assignee_id"})
    raw = await stored(redis, keys, first)
    assert json.loads(raw[b"s"]) == {
        "ticket": {"status": "waiting", "priority": "normal", "assignee_id": None},
        "common": {"status": "waiting"},
    }
    assert b"not read by any rule" not in b"".join(raw.values())


async def test_tickets_are_independent(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    await state.observe(event("a1", 100, ticket_id="a"), FIELDS)
    assert (await state.observe(event("b1", 1, ticket_id="b"), FIELDS)).first_seen


async def test_one_script_call_per_event(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    await state.observe(event("warm-up", 0), FIELDS)  # loads the script once

    async def calls() -> dict[str, int]:
        info = await redis.info("commandstats")
        return {name: int(v["calls"]) for name, v in info.items() if isinstance(v, dict)}

    before = await calls()
    for n, seconds in enumerate([1, 3, 2, 3, 5]):  # applied, applied, stale, sibling, applied
        await state.observe(event(f"e{n}", seconds), FIELDS)
    after = await calls()
    delta = {
        name: after[name] - before.get(name, 0)
        for name in after
        if after[name] != before.get(name, 0) and "info" not in name
    }
    # Commands run inside the script are counted too; nothing else was sent.
    assert delta.pop("cmdstat_evalsha") == 5
    inside = {"hmget", "hget", "hset", "hdel", "pexpire", "xadd"}
    assert set(delta) <= {f"cmdstat_{name}" for name in inside}
    assert delta["cmdstat_hmget"] == 5


async def test_the_script_and_the_in_memory_logic_agree(redis: Redis, keys: Keys) -> None:
    rng = random.Random(20250301)
    state = TicketState(redis, keys, ttl_s=DAY)
    memory = MemoryTicketState()
    statuses = ["open", "waiting", "resolved"]
    events = []
    for n in range(60):
        events.append(
            event(
                f"e{n}",
                rng.choice([None, *range(8)]),
                status=rng.choice(statuses),
                sequence=rng.choice([None, None, *range(5)]),
                ticket_id=rng.choice(["a", "b"]),
            )
        )
    # Re-runs and repeats of earlier events are part of the mix.
    events += [rng.choice(events) for _ in range(30)]
    rng.shuffle(events)
    for ev in events:
        assert await state.observe(ev, FIELDS) == memory.observe(ev, FIELDS), ev.id


async def test_a_redriven_earlier_event_is_not_stale(redis: Redis, keys: Keys) -> None:
    # A dead letter redriven after newer events of its ticket: it runs as it ran the first time.
    state = TicketState(redis, keys, ttl_s=DAY)
    events = [event(f"e{n}", n, status=("open", "waiting")[n % 2]) for n in range(RERUN_MEMORY + 2)]
    for ev in events:
        await state.observe(ev, FIELDS)
    before = await stored(redis, keys, events[-1])
    seen = await state.observe(events[-3], FIELDS)
    assert not seen.stale and seen.previous == kept(events[-4])
    assert seen.applied_event_id == events[-1].id
    assert await stored(redis, keys, events[-1]) == before, "a re-run changes nothing"
    # Only the last RERUN_MEMORY applied events are remembered; older ones are stale.
    assert (await state.observe(events[0], FIELDS)).stale
    assert not (await state.observe(events[2], FIELDS)).stale
    assert len([f for f in before if f.startswith(b"h:")]) == RERUN_MEMORY


async def test_a_stale_event_acted_on_anyway_is_not_recorded(redis: Redis, keys: Keys) -> None:
    state = TicketState(redis, keys, ttl_s=DAY)
    await state.observe(event("e1", 10), FIELDS)
    seen = await state.observe(event("e0", 5), FIELDS, record_stale=False)
    assert seen.stale and seen.applied_event_id == "e1"
    assert await redis.xlen(keys.stale) == 0
