"""The trace reader over real Valkey: deliveries filters and paging, event and ticket lookups."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from ticketwire.keys import Keys
from ticketwire.trace.read import (
    AmbiguousEvent,
    AmbiguousTicket,
    DeliveryFilter,
    TraceReader,
)

BASE = 1_700_000_000_000
VENDORS = ("inboxops", "cstar", "thena")
OUTCOMES = ("handled", "handled", "handled", "stale", "duplicate", "refused")
TYPES = ("ticket.updated", "ticket.created")


def log_fields(i: int) -> dict[str, str]:
    """The i-th made-up deliveries-list entry, in the stored format."""
    vendor = VENDORS[i % 3]
    outcome = OUTCOMES[i % len(OUTCOMES)]
    return {
        "v": vendor,
        "a": "t1",
        "y": TYPES[i % 2],
        "e": f"evt_{i}",
        "k": f"{vendor}:t1:{i % 100}",
        "o": outcome,
        "s": "200" if outcome == "duplicate" else ("401" if outcome == "refused" else ""),
        "f": "\x1f".join(["escalate", "tag"] if i % 7 == 0 else []),
        "x": "invalid_signature" if outcome == "refused" else "",
        "r": str(BASE + i),
    }


async def write_log(redis: Redis, keys: Keys, n: int) -> None:
    """Write `n` entries one ms apart from BASE, the i-th with stream id `BASE+i-0`."""
    key = keys.trace_log
    for start in range(0, n, 5000):
        pipe = redis.pipeline(transaction=False)
        for i in range(start, min(n, start + 5000)):
            pipe.xadd(key, log_fields(i), id=f"{BASE + i}-0")  # type: ignore[arg-type]
        await pipe.execute()


async def write_records(
    redis: Redis, keys: Keys, ticket: str, *records: tuple[str, list[Any]]
) -> None:
    """Append (event id, record) pairs to a ticket's timeline."""
    for event_id, record in records:
        await redis.xadd(keys.trace_ticket(ticket), {"e": event_id, "c": json.dumps(record)})


async def test_unfiltered_pages_walk_the_whole_log_newest_first(redis: Redis, keys: Keys) -> None:
    await write_log(redis, keys, 25)
    reader = TraceReader(redis, keys)
    seen: list[str] = []
    before = None
    pages = 0
    while True:
        page = await reader.deliveries(DeliveryFilter(), before=before, limit=10)
        seen += [d.event_id for d in page.rows]
        pages += 1
        if page.next is None:
            break
        before = page.next
    assert seen == [f"evt_{i}" for i in range(24, -1, -1)]
    assert pages == 3


async def test_each_filter_narrows_the_rows(redis: Redis, keys: Keys) -> None:
    await write_log(redis, keys, 600)
    reader = TraceReader(redis, keys)
    cases: list[tuple[DeliveryFilter, Any]] = [
        (DeliveryFilter(vendor="cstar"), lambda f: f["v"] == "cstar"),
        (DeliveryFilter(event_type="ticket.created"), lambda f: f["y"] == "ticket.created"),
        (DeliveryFilter(outcome="refused"), lambda f: f["o"] == "refused"),
        (DeliveryFilter(ticket="thena:t1:5"), lambda f: f["k"] == "thena:t1:5"),
        (DeliveryFilter(ticket="thena:5"), lambda f: f["k"] == "thena:t1:5"),
        (DeliveryFilter(rule="tag"), lambda f: "tag" in f["f"].split("\x1f")),
        (
            DeliveryFilter(rule="tag", ticket="inboxops:t1:21"),
            lambda f: "tag" in f["f"].split("\x1f") and f["k"] == "inboxops:t1:21",
        ),
        (
            DeliveryFilter(since_ms=BASE + 100, until_ms=BASE + 199),
            lambda f: BASE + 100 <= int(f["r"]) <= BASE + 199,
        ),
        (
            DeliveryFilter(vendor="inboxops", outcome="handled", since_ms=BASE + 300),
            lambda f: f["v"] == "inboxops" and f["o"] == "handled" and int(f["r"]) >= BASE + 300,
        ),
    ]
    for flt, keep in cases:
        want = [f"evt_{i}" for i in range(599, -1, -1) if keep(log_fields(i))]
        got: list[str] = []
        before = None
        while True:
            page = await reader.deliveries(flt, before=before, limit=7)
            got += [d.event_id for d in page.rows]
            assert len(page.rows) <= 7
            if page.next is None:
                break
            before = page.next
        assert got == want, flt


async def test_row_fields_decode(redis: Redis, keys: Keys) -> None:
    await write_log(redis, keys, 8)
    page = await TraceReader(redis, keys).deliveries(DeliveryFilter(), limit=8)
    by_id = {d.event_id: d for d in page.rows}
    refused, fired = by_id["evt_5"], by_id["evt_7"]
    assert (refused.outcome, refused.status, refused.reason) == (
        "refused",
        401,
        "invalid_signature",
    )
    assert fired.rules == ("escalate", "tag") and fired.status is None
    assert fired.received_ms == BASE + 7 and fired.at_ms == BASE + 7
    assert page.next is None


async def test_a_page_never_scans_more_than_its_budget(redis: Redis, keys: Keys) -> None:
    await write_log(redis, keys, 3000)
    reader = TraceReader(redis, keys, scan_budget=1000)
    page = await reader.deliveries(DeliveryFilter(vendor="nobody"), limit=10)
    assert page.rows == [] and page.scanned == 1000 and page.budget_spent
    assert page.next == f"{BASE + 2000}-0" and page.scanned_to_ms == BASE + 2000
    rest = await reader.deliveries(DeliveryFilter(vendor="nobody"), before=page.next, limit=10)
    assert rest.scanned == 1000 and rest.next == f"{BASE + 1000}-0"


async def test_a_filtered_page_of_50000_entries_is_fast(redis: Redis, keys: Keys) -> None:
    await write_log(redis, keys, 50_000)
    reader = TraceReader(redis, keys)
    figures = []
    for flt in (
        DeliveryFilter(),
        DeliveryFilter(vendor="thena", outcome="refused"),
        DeliveryFilter(rule="escalate", event_type="ticket.updated"),
        DeliveryFilter(ticket="cstar:t1:37"),
        DeliveryFilter(vendor="nobody"),
    ):
        # The best of three: the cost of a page, not of whatever else the machine was doing.
        took = []
        for _ in range(3):
            started = time.perf_counter()
            page = await reader.deliveries(flt, limit=50)
            took.append(time.perf_counter() - started)
            assert page.scanned <= 5000
        figures.append(min(took))
        assert min(took) < 1.0, (flt, took)
    print("deliveries page ms:", [round(t * 1000, 1) for t in figures])


async def test_event_lookup_follows_the_dedupe_key(redis: Redis, keys: Keys) -> None:
    ticket = "inboxops:w1:42"
    await redis.set(keys.seen("inboxops", "e1"), ticket)
    await redis.hset(keys.trace_rules, "fp1", json.dumps({"escalate": ["priority is 'high'"]}))
    await write_records(
        redis,
        keys,
        ticket,
        ("e0", ["rx", "inboxops", "w1", "ticket.updated", "42", BASE, "3/1-0", 1, "fp1"]),
        ("e1", ["rx", "inboxops", "w1", "ticket.updated", "42", BASE, "3/2-0", 1, "fp1"]),
        ("e1", ["ru", "escalate", "F", [[0, 1, "high"]], None]),
        ("", ["ca", ["c1"], "PATCH", "/tickets/42", 200, 84, "r-1", ["42"], ["e0", "e1"]]),
        ("", ["ca", ["c2"], "PATCH", "/tickets/42", 200, 9, "r-2", ["42"], ["e0"]]),
    )
    await redis.xadd(
        keys.trace_log,
        {"v": "inboxops", "e": "e1", "k": ticket, "o": "handled", "f": "escalate", "r": str(BASE)},
    )
    trace = await TraceReader(redis, keys).event("e1")
    assert trace is not None
    assert trace.ticket == ticket and trace.vendor == "inboxops"
    assert [r.kind for r in trace.records] == ["rx", "ru", "ca"]
    assert trace.records[2].values[5] == "r-1"
    assert [d.outcome for d in trace.deliveries] == ["handled"]
    assert trace.leaves == {"fp1": {"escalate": ["priority is 'high'"]}}
    assert await TraceReader(redis, keys).event("e1", vendor="cstar") is None
    assert await TraceReader(redis, keys).event("nope") is None


async def test_event_lookup_of_a_refused_delivery_reads_the_log(redis: Redis, keys: Keys) -> None:
    await redis.xadd(
        keys.trace_log,
        {"v": "cstar", "e": "bad1", "k": "", "o": "refused", "s": "401", "x": "invalid_signature"},
    )
    trace = await TraceReader(redis, keys).event("bad1")
    assert trace is not None and trace.ticket == "" and trace.records == []
    assert [(d.outcome, d.status) for d in trace.deliveries] == [("refused", 401)]


async def test_an_event_id_of_two_vendors_is_ambiguous(redis: Redis, keys: Keys) -> None:
    await redis.set(keys.seen("inboxops", "same"), "inboxops:w:1")
    await redis.set(keys.seen("thena", "same"), "thena:o:1")
    with pytest.raises(AmbiguousEvent) as err:
        await TraceReader(redis, keys).event("same")
    assert err.value.vendors == ["inboxops", "thena"]


async def test_ticket_by_full_or_short_key_and_ambiguity(redis: Redis, keys: Keys) -> None:
    reader = TraceReader(redis, keys)
    rec = ["st", 0, "a", "b", "e0"]
    await write_records(redis, keys, "cstar:team1:7", ("e1", rec), ("e2", rec))
    await write_records(redis, keys, "cstar:team1:77", ("e3", rec))
    await write_records(redis, keys, "thena:o1:7", ("e4", rec))
    await write_records(redis, keys, "thena:o2:7", ("e5", rec))
    full = await reader.ticket("cstar:team1:7")
    assert [r.event_id for r in full.records] == ["e1", "e2"] and full.found
    short = await reader.ticket("cstar:7")
    assert short.ticket == "cstar:team1:7" and len(short.records) == 2
    last = await reader.ticket("cstar:7", limit=1)
    assert [r.event_id for r in last.records] == ["e2"] and last.truncated
    with pytest.raises(AmbiguousTicket) as err:
        await reader.ticket("thena:7")
    assert err.value.candidates == ["thena:o1:7", "thena:o2:7"]
    assert not (await reader.ticket("cstar:8")).found


async def test_a_short_key_with_glob_characters_matches_only_itself(
    redis: Redis, keys: Keys
) -> None:
    await write_records(redis, keys, "cstar:t:a*", ("e1", ["st", 0, "a", "b", ""]))
    await write_records(redis, keys, "cstar:t:ab", ("e2", ["st", 0, "a", "b", ""]))
    assert [r.event_id for r in (await TraceReader(redis, keys).ticket("cstar:a*")).records] == [
        "e1"
    ]
