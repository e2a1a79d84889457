"""The fault scenarios: each starts the real processes, drives a known load through them, injects
its fault, waits until everything drained and counts the outcome (`measure.Outcome`)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.conftest import wait_for
from tests.faults import measure
from tests.faults.measure import Outcome
from tests.faults.proxy import FaultProxy
from tests.faults.stack import (
    KEYS,
    PARTITIONS,
    SECRET,
    Named,
    Sampler,
    Stack,
    Valkey,
    now,
    valkey_binary,
)
from tests.procs import free_port, spawn
from ticketwire.stored import StoredDelivery


@dataclass(frozen=True)
class Size:
    """How big a run is: tickets edited, seconds the edits are spread over, a fault's length."""

    name: str
    tickets: int
    load_s: float
    fault_s: float
    kills: int
    burst_tickets: int
    burst_k: int
    lease_ttl: str
    #: Most seconds to wait for everything to drain after the load.
    settle_s: float


SIZES = {
    "short": Size("short", 16, 5.0, 4.0, 2, 10, 30, "3s", 90.0),
    "full": Size("full", 200, 60.0, 60.0, 6, 100, 100, "15s", 600.0),
}

#: The agent's edits per ticket group (InboxOps fields), and what each group should end as.
GROUPS: dict[str, list[dict[str, Any]]] = {
    "urgent": [{"priority": "high"}, {"priority": "urgent"}],
    "closed": [{"status": "closed"}],
    "low": [{"priority": "low"}],
}
GROUP_OF = ("urgent", "urgent", "closed", "low")


@dataclass(frozen=True)
class Desk:
    """What the load needs to know of one helpdesk's simulator and the suite's rules for it."""

    vendor: str
    #: The body of `POST /_sim/tickets` for the i-th ticket.
    create: Callable[[int], dict[str, Any]]
    #: The field of a ticket the `/_sim/tickets/{…}` routes take.
    key: str
    #: The agent's edits per group, and which group the i-th ticket is in.
    groups: dict[str, list[dict[str, Any]]]
    group_of: tuple[str, ...]
    #: What a ticket of each group ends as, and what the ticket (with our notes) shows.
    want: dict[str, dict[str, Any]]
    shows: Callable[[dict[str, Any], str, int], dict[str, Any]]
    tickets_path: str = "/_sim/tickets"


def _inboxops_shows(t: dict[str, Any], tag: str, notes: int) -> dict[str, Any]:
    tagged = any(str(x.get("id")) == tag for x in t.get("tags") or [])
    return {"priority": t["priority"], "status": t["status"], "tagged": tagged, "notes": notes}


INBOXOPS = Desk(
    "inboxops",
    lambda i: {"subject": f"Fault suite {i}", "priority": "normal"},
    "ticket_number",
    GROUPS,
    GROUP_OF,
    {g: {} for g in GROUPS},
    _inboxops_shows,
    "/_sim/tickets?include=tags",
)
CSTAR = Desk(
    "cstar",
    lambda i: {"title": f"Fault suite {i}", "priority": "normal"},
    "id",
    {"urgent": [{"priority": "urgent"}], "low": [{"priority": "low"}]},
    ("urgent", "low"),
    {
        "urgent": {"priority": "urgent", "tagged": True},
        "low": {"priority": "low", "tagged": False},
    },
    lambda t, _, __: {"priority": t["priority"], "tagged": "on-call" in (t.get("tags") or [])},
)
THENA = Desk(
    "thena",
    lambda i: {"title": f"Fault suite {i}", "requestorEmail": f"user{i}@example.com"},
    "id",
    {"urgent": [{"priorityName": "Urgent"}], "low": [{"priorityName": "Low"}]},
    ("urgent", "low"),
    {
        "urgent": {"priority": "Urgent", "status": "In progress"},
        "low": {"priority": "Low", "status": "Open"},
    },
    lambda t, _, __: {"priority": t["priority"], "status": t["status"]},
)


def expected(group: str) -> dict[str, Any]:
    """What a ticket of `group` ends as, after the agent's edits and the suite's rules."""
    return {
        "urgent": {"priority": "urgent", "status": "in_progress", "tagged": True, "notes": 0},
        "closed": {"priority": "normal", "status": "closed", "tagged": False, "notes": 1},
        "low": {"priority": "low", "status": "open", "tagged": False, "notes": 0},
    }[group]


@dataclass
class Run:
    """One scenario's stack, its tickets and what the fault recorded."""

    name: str
    size: Size
    stack: Stack
    sampler: Sampler
    #: Ticket number → (id, group).
    tickets: dict[int, tuple[str, str]] = field(default_factory=dict)
    recoveries: list[float] = field(default_factory=list)
    recovery: str = ""
    #: (monotonic time of a kill, partitions the killed worker held, seconds to take them over).
    kills: list[tuple[float, set[int], float]] = field(default_factory=list)
    #: Ids of the tickets the burst's bulk call closes.
    burst_ids: list[str] = field(default_factory=list)
    #: Wall times at which a helpdesk fault ended (recovery: first write-back after each).
    fault_ends: list[datetime] = field(default_factory=list)
    #: When a Redis fault ended (monotonic) and the acknowledged count then (recovery: until
    #: it rises).
    redis_back: list[tuple[float, int | None]] = field(default_factory=list)
    #: Monotonic time the last fault ended (the drain is measured from it).
    last_fault_end: float | None = None
    #: What shows the fault happened (e.g. deliveries answered 503), counted at the end.
    evidence: Evidence | None = None
    #: Wall times of each helpdesk fault: (start, end).
    storms: list[tuple[datetime, datetime]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    load_done: asyncio.Event = field(default_factory=asyncio.Event)
    webhook_url: str = ""
    desk: Desk = INBOXOPS


Fault = Callable[["Run"], Awaitable[None]]
#: How often a fault showed, and what was counted: (run, deliveries, journal) → (count, what).
Evidence = Callable[["Run", list[dict[str, Any]], list[dict[str, Any]]], Awaitable[tuple[int, str]]]


def per_minute(settings: dict[str, Any]) -> int:
    """The simulator's per-minute request limit (0: none)."""
    if settings.get("rate_limit_per_minute"):
        return int(settings["rate_limit_per_minute"])
    text = str(settings.get("rate_limit") or "")
    count, _, unit = text.partition("/")
    return int(count) if count.isdigit() and unit.startswith("min") else 0


async def create_tickets(run: Run, count: int) -> None:
    """`count` open, normal tickets (each sends its `ticket.created`)."""
    desk = run.desk
    for i in range(count):
        ticket = await run.stack.sim_post(desk.vendor, "/_sim/tickets", desk.create(i))
        group = desk.group_of[i % len(desk.group_of)]
        run.tickets[ticket[desk.key]] = (str(ticket["id"]), group)


async def agent(run: Run) -> None:
    """The agent's edits, spread evenly over the load's seconds."""
    mine = {n: g for n, (t, g) in run.tickets.items() if t not in run.burst_ids}
    # Every ticket's first edit, then the second ones: a ticket's edits are apart in time.
    groups = run.desk.groups
    edits = [(n, change) for n, g in mine.items() for change in groups[g][:1]]
    edits += [(n, change) for n, g in mine.items() for change in groups[g][1:]]
    gap = run.size.load_s / max(1, len(edits))
    started = time.monotonic()
    for i, (number, change) in enumerate(edits):
        await asyncio.sleep(max(0.0, started + i * gap - time.monotonic()))  # the load's pace
        await run.stack.sim_post(run.desk.vendor, f"/_sim/tickets/{number}/change", change)
    run.load_done.set()


async def processed_ids(client: Redis) -> set[str]:
    """Event ids of every stream entry the consumer group read and acknowledged."""
    out: set[str] = set()
    for p in range(PARTITIONS):
        stream = KEYS.stream(p)
        if not await client.exists(stream):
            continue
        groups = await client.xinfo_groups(stream)
        group = next((g for g in groups if g["name"] in (b"workers", "workers")), None)
        if group is None:
            continue
        last = _entry_id(group["last-delivered-id"])
        pending = {
            _entry_id(item["message_id"])
            for item in await client.xpending_range(stream, group["name"], "-", "+", 1_000_000)
        }
        for entry_id, fields in await client.xrange(stream):
            eid = _entry_id(entry_id)
            if eid <= last and eid not in pending:
                out.add(StoredDelivery.from_fields(entry_id, fields).event_id)
    return out


def _entry_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def redis_is_back(run: Run) -> None:
    """Record that Redis answers again now, with how many events were acknowledged then."""
    sample = await run.stack.acked()
    run.redis_back.append((time.monotonic(), sum(sample) if sample is not None else None))
    mark_end(run)


def mark_end(run: Run) -> None:
    """Record that the fault ended now."""
    run.last_fault_end = time.monotonic()


async def outcome(run: Run, started: float, drained_at: float | None = None) -> Outcome:
    """Count what happened, from the simulator's records and Redis."""
    stack = run.stack
    out = Outcome(run.name, run.size.name)
    desk = run.desk
    deliveries, _ = await stack.sim_data(desk.vendor, "/_sim/deliveries")
    if isinstance(deliveries, dict):  # Thena's: {deliveries, pending}
        deliveries = deliveries["deliveries"]
    journal, _ = await stack.sim_data(desk.vendor, "/_sim/journal")
    tickets, _ = await stack.sim_data(desk.vendor, desk.tickets_path)
    done = await processed_ids(stack.client)
    sent, accepted = measure.sent_ids(deliveries), measure.accepted_ids(deliveries)
    out.sent, out.accepted = len(sent), len(accepted)
    out.processed = len(sent & done)
    out.lost = len(accepted - done)
    out.duplicated, shown = measure.duplicated(journal)
    out.notes.extend(f"duplicated: {s}" for s in shown)
    out.dead_letters = int(await stack.client.xlen(KEYS.dlq))
    notes = measure.notes_per_ticket(journal)
    tag = stack.tag_id()
    by_key = {t[desk.key]: t for t in tickets}
    for number, (ticket_id, group) in sorted(run.tickets.items()):
        want = desk.want[group] or expected(group)
        got = desk.shows(by_key[number], tag, notes.get(ticket_id, 0))
        if got != want:
            diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
            out.wrong_tickets.append(
                f"#{number} {group}: "
                + ", ".join(f"{k} {g!r}, expected {w!r}" for k, (g, w) in diff.items())
            )
    times = [measure.parse_at(str(e["at"])) for e in journal if measure.ours(e)]
    settings, _ = await stack.sim_data(desk.vendor, "/_sim/settings")
    limit = per_minute(settings)
    out.busiest, out.limit = measure.most_in_window(times, 60.0), f"{limit}/min"
    if limit and out.busiest > limit:
        out.notes.append(f"rate budget exceeded: {out.busiest} requests in 60 s, limit {limit}")
        out.error = out.error or "over the rate budget"
    throttled = sum(1 for e in journal if measure.ours(e) and int(e["status"]) == 429)
    if throttled and not run.name.startswith("429"):
        out.notes.append(f"{throttled} of our requests got the helpdesk's own 429")
    for end in run.fault_ends:
        took = measure.first_write_after(journal, end)
        if took is not None:
            run.recoveries.append(took)
    for killed_at, mine, took in run.kills:
        progress = run.sampler.first_progress_after(killed_at, mine) if mine else None
        run.recoveries.append(max(took, progress) if progress is not None else took)
    for back, base in run.redis_back:
        took_s = run.sampler.first_progress_after(back, base=base)
        if took_s is not None:
            run.recoveries.append(took_s)
    out.recovery_s = round(max(run.recoveries), 2) if run.recoveries else None
    out.recovery = run.recovery
    if drained_at is not None and run.last_fault_end is not None:
        out.drained_s = round(max(0.0, drained_at - run.last_fault_end), 2)
    if run.evidence is not None:
        out.fault_hits, out.fault_seen = await run.evidence(run, deliveries, journal)
    out.notes.extend(run.notes)
    out.notes.extend(run.checks)
    if run.checks:
        out.error = out.error or "; ".join(run.checks)
    out.seconds = time.monotonic() - started
    return out


async def scenario(
    name: str,
    size: Size,
    fault: Fault,
    *,
    workers: int = 2,
    receivers: int = 1,
    web_proxy: bool = False,
    api_proxy: bool = False,
    redis_args: tuple[str, ...] = (),
    worker_env: dict[str, str] | None = None,
    receiver_env: dict[str, str] | None = None,
    redis_url: Callable[[Run], Awaitable[str]] | None = None,
    recovery: str = "",
    setup: Callable[[Run], Awaitable[None]] | None = None,
    evidence: Evidence | None = None,
    desk: Desk = INBOXOPS,
) -> Outcome:
    """Run one scenario end to end; an exception is reported in the outcome, not raised."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"tw-faults-{name}-"))
    stack = Stack(workdir, lease_ttl=size.lease_ttl)
    stack.worker_env.update(worker_env or {})
    stack.receiver_env.update(receiver_env or {})
    run = Run(name, size, stack, Sampler(stack), recovery=recovery, evidence=evidence, desk=desk)
    try:
        if redis_url is None:
            await stack.start_redis(*redis_args)
        sim = await stack.start_simulator("inboxops")
        if desk.vendor != "inboxops":
            sim = await stack.start_simulator(desk.vendor)
        if redis_url is not None:
            stack.redis_url = await redis_url(run)
        if api_proxy:
            stack.api_urls[desk.vendor] = (await stack.proxy([sim.port])).url
        for _ in range(receivers):
            await stack.start_receiver()
        if web_proxy:
            proxy = await stack.proxy([r.port for r in stack.receivers])
            base = proxy.url
        else:
            base = f"http://127.0.0.1:{stack.receivers[0].port}"
        run.webhook_url = f"{base}/webhooks/{desk.vendor}"
        for _ in range(workers):
            await stack.start_worker()
        await stack.sim_post(
            desk.vendor, "/_sim/endpoints", {"url": run.webhook_url, "secret": SECRET}
        )
        # Made with the endpoint in place: rules compare changes with the state their
        # `ticket.created` delivery recorded.
        await create_tickets(run, size.tickets)
        if setup is not None:
            await setup(run)
        run.sampler.start()
        load = asyncio.create_task(agent(run))
        try:
            await fault(run)
            await load
        finally:
            if not load.done():
                load.cancel()
        drained_at = await stack.settle(size.settle_s)
        await run.sampler.stop()
        return await outcome(run, started, drained_at)
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
            raise
        out = Outcome(name, size.name, recovery=recovery)
        out.error = f"{type(exc).__name__}: {exc}"[:2000]
        out.notes.append(traceback.format_exc()[-3000:])
        for named in stack.history:
            tail = "\n".join(named.proc.output.splitlines()[-15:])
            out.notes.append(f"--- {named.name} (exit {named.proc.proc.returncode}):\n{tail}")
        with contextlib.suppress(Exception):
            partial = await outcome(run, started)
            out.sent, out.accepted, out.processed = (
                partial.sent,
                partial.accepted,
                partial.processed,
            )
            out.lost, out.duplicated = partial.lost, partial.duplicated
            out.recovery_s, out.busiest, out.limit = (
                partial.recovery_s,
                partial.busiest,
                partial.limit,
            )
            out.wrong_tickets = partial.wrong_tickets
            out.fault_hits, out.fault_seen = partial.fault_hits, partial.fault_seen
        out.seconds = time.monotonic() - started
        return out
    finally:
        await run.sampler.stop()
        await stack.close()
        shutil.rmtree(workdir, ignore_errors=True)


async def after_load_starts(run: Run, fraction: float = 0.3) -> None:
    """Wait until a share of the load's time has passed (the fault comes mid-load)."""
    await asyncio.sleep(run.size.load_s * fraction)  # a point in the load, not a synchronisation


# ------------------------------------------------------------------ evidence


def refused_deliveries(status: int) -> Evidence:
    """Delivery attempts the receivers answered `status`."""

    async def count(run: Run, deliveries: list[dict[str, Any]], _: Any) -> tuple[int, str]:
        return measure.answered(deliveries, status), f"delivery attempts answered {status}"

    return count


async def redis_gone(run: Run, deliveries: list[dict[str, Any]], _: Any) -> tuple[int, str]:
    """Delivery attempts answered 503, and worker log lines saying Redis went away."""
    lines = sum(
        1
        for named in run.stack.history
        if named.name.startswith("worker")
        for line in named.proc.output.splitlines()
        if "redis unavailable" in line
    )
    refused = measure.answered(deliveries, 503)
    return refused + lines, f"{refused} deliveries answered 503, {lines} 'redis unavailable' lines"


async def kills(run: Run, *_: Any) -> tuple[int, str]:
    """Workers killed."""
    return len(run.kills), "workers SIGKILLed"


def requests_in_storm(what: str, status: int | None = None) -> Evidence:
    """Our API requests the helpdesk received during its fault (answered `status`, if given)."""

    async def count(run: Run, _: Any, journal: list[dict[str, Any]]) -> tuple[int, str]:
        n = 0
        for entry in journal:
            if not measure.ours(entry):
                continue
            at = measure.parse_at(str(entry["at"]))
            within = any(start <= at <= end for start, end in run.storms)
            if within and (status is None or int(entry["status"]) == status):
                n += 1
        return n, what

    return count


def worker_lines(*needles: str) -> Evidence:
    """Worker log lines naming the fault (requests that never reached the helpdesk)."""

    async def count(run: Run, *_: Any) -> tuple[int, str]:
        n = sum(
            1
            for named in run.stack.history
            if named.name.startswith("worker")
            for line in named.proc.output.splitlines()
            if any(needle in line for needle in needles)
        )
        return n, "worker log lines: " + " / ".join(needles)

    return count


async def duplicate_deliveries(
    run: Run, deliveries: list[dict[str, Any]], _: Any
) -> tuple[int, str]:
    """Deliveries the simulator sent a second time."""
    return sum(1 for d in deliveries if d.get("duplicate")), "deliveries sent twice"


async def stale_events(run: Run, *_: Any) -> tuple[int, str]:
    """Events the workers found older than one already applied (delivered out of order)."""
    stats = await run.stack.client.hget(KEYS.stats, "stale")
    return int(stats or 0), "stale events (arrived after a newer one of their ticket)"


async def burst_deliveries(run: Run, deliveries: list[dict[str, Any]], _: Any) -> tuple[int, str]:
    """Deliveries of the burst's tickets."""
    burst = set(run.burst_ids)
    return sum(1 for d in deliveries if d["ticket_id"] in burst), "deliveries of the bulk call"


# ------------------------------------------------------------------ process faults


async def _kill_and_replace(run: Run, victim: Named) -> None:
    stack = run.stack
    owners = await stack.owners()
    mine = {p for p, owner in owners.items() if owner.startswith(f"{victim.name}-")}
    killed_at = time.monotonic()
    await stack.kill(victim)
    await stack.start_worker(wait=False)

    async def taken_over() -> bool:
        now_owners = await stack.owners()
        return all(
            p in now_owners and not now_owners[p].startswith(f"{victim.name}-") for p in mine
        )

    await wait_for(taken_over, timeout=60.0, interval=0.1, message="its partitions taken over")
    took = time.monotonic() - killed_at
    run.kills.append((killed_at, mine, took))
    mark_end(run)
    if took > 30.0:
        run.checks.append(f"partitions of {victim.name} taken over after {took:.1f}s (> 30 s)")


async def _sigkill(run: Run) -> None:
    gap = run.size.load_s / (run.size.kills + 1)
    for _ in range(run.size.kills):
        await asyncio.sleep(gap)  # the next point in the load
        victim = run.stack.workers[0]  # the oldest: kill one, then the other
        await _kill_and_replace(run, victim)


async def sigkill(size: Size) -> Outcome:
    """Workers SIGKILLed mid-load, one after the other, each replaced by a new one."""
    return await scenario(
        "sigkill",
        size,
        _sigkill,
        recovery="kill → its partitions leased by another worker and acknowledging again",
        evidence=kills,
    )


def probe_delivery(run: Run, ticket: str) -> tuple[bytes, dict[str, str]]:
    """A signed InboxOps `ticket.updated` of a ticket no rule acts on (the suite's own probe)."""
    from cli.fire import build_body, ticket_from
    from ticketwire.vendors.inboxops.webhook import signed_headers

    moment = now()
    body = build_body(
        "inboxops",
        "ticket.updated",
        ticket_from("inboxops", ticket, {"priority": "low", "status": "open"}, [], moment),
        tenant=str(run.stack.sims["inboxops"].info["workspace_id"]),
        event_id=str(uuid.uuid4()),
        now=moment,
    )
    return body, {"Content-Type": "application/json", **signed_headers(None, body, SECRET)}


async def _shutdown_probe(run: Run, old: Named) -> None:
    """SIGTERM a receiver with a request in flight: that one must still be stored (2xx), a new
    one must be answered 503 `shutting_down` with Retry-After, and the receiver must exit 0."""
    body, headers = probe_delivery(run, "probe-in-flight")
    reader, writer = await asyncio.open_connection("127.0.0.1", old.port)
    try:
        await _probe_in_flight(run, old, body, headers, reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    code = await old.proc.finish(timeout=35.0)
    run.stack._forget(old)
    if code != 0:
        run.checks.append(f"receiver {old.name} exited {code} after SIGTERM")


async def _probe_in_flight(
    run: Run,
    old: Named,
    body: bytes,
    headers: dict[str, str],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        (
            f"POST /webhooks/inboxops HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body[:8]
    )
    await writer.drain()
    old.proc.proc.send_signal(signal.SIGTERM)
    url = f"http://127.0.0.1:{old.port}/webhooks/inboxops"
    seen: list[str] = []

    async def refused_new() -> bool:
        new_body, new_headers = probe_delivery(run, "probe-new")
        try:
            async with run.stack.session.post(url, data=new_body, headers=new_headers) as resp:
                text = await resp.text()
                seen.append(
                    f"{resp.status} {text[:80]} Retry-After={resp.headers.get('Retry-After')}"
                )
                return resp.status == 503
        except (aiohttp.ClientError, OSError) as exc:
            seen.append(f"{type(exc).__name__}")
            return True

    await wait_for(refused_new, timeout=10.0, interval=0.05, message="a new request refused")
    last = seen[-1]
    if not (last.startswith("503") and "shutting_down" in last and "Retry-After=None" not in last):
        run.checks.append(f"a new request after SIGTERM got {last}, not 503 shutting_down")
    writer.write(body[8:])
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(), 30.0)
    except (OSError, TimeoutError) as exc:
        answer = f"{type(exc).__name__}".encode()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 20" not in status:
        run.checks.append(f"the request in flight at SIGTERM got {status or 'no answer'}")
    run.notes.append(f"{old.name} after SIGTERM: new requests got {seen[-3:]}; in flight: {status}")


async def _sigterm(run: Run) -> None:
    stack = run.stack
    proxy = stack.proxies[0]
    await after_load_starts(run, 0.2)
    grace = 25.0 + 10.0
    for i, old in enumerate(list(stack.receivers)):
        new = await stack.start_receiver()
        proxy.upstreams = [r.port for r in stack.receivers if r is not old]
        began = time.monotonic()
        if i == 0:
            await _shutdown_probe(run, old)
        else:
            code = await stack.terminate(old, timeout=grace)
            if code != 0:
                run.checks.append(f"receiver {old.name} exited {code} after SIGTERM")
        run.notes.append(f"{old.name} stopped in {time.monotonic() - began:.1f}s; {new.name} up")
    for old in list(stack.workers):
        new = await stack.start_worker()
        began = time.monotonic()
        code = await stack.terminate(old, timeout=grace)
        run.recoveries.append(time.monotonic() - began)
        if code != 0:
            run.checks.append(f"worker {old.name} exited {code} after SIGTERM")
        run.notes.append(f"{old.name} stopped in {time.monotonic() - began:.1f}s; {new.name} up")
    mark_end(run)


async def replaced(run: Run, *_: Any) -> tuple[int, str]:
    """Processes stopped with SIGTERM."""
    return sum(1 for n in run.stack.history if n.proc.proc.returncode is not None), (
        "receivers and workers stopped with SIGTERM"
    )


async def sigterm(size: Size) -> Outcome:
    """A deploy under load: each receiver and worker replaced (new one up, old one SIGTERMed)."""
    return await scenario(
        "sigterm",
        size,
        _sigterm,
        receivers=2,
        web_proxy=True,
        recovery="SIGTERM of a worker → it exited (its work handed over)",
        evidence=replaced,
    )


# ------------------------------------------------------------------ Redis faults


async def _redis_restart(run: Run) -> None:
    await after_load_starts(run)
    redis = run.stack.redis
    assert redis is not None
    await redis.stop(signal.SIGTERM)
    await redis.start()
    await redis_is_back(run)


async def redis_restart(size: Size) -> Outcome:
    """Valkey (append-only) stopped with SIGTERM mid-load, started again on its files and port."""
    return await scenario(
        "redis-restart",
        size,
        _redis_restart,
        recovery="Redis answering again → first event acknowledged",
        evidence=redis_gone,
    )


async def _redis_down(run: Run) -> None:
    await after_load_starts(run)
    redis = run.stack.redis
    assert redis is not None
    await redis.stop(signal.SIGKILL)
    await asyncio.sleep(10.0 if run.size.name == "full" else run.size.fault_s)  # the outage
    await redis.start()
    await redis_is_back(run)


async def redis_down(size: Size) -> Outcome:
    """Valkey SIGKILLed mid-load and kept down (10 s in full), then started again."""
    return await scenario(
        "redis-down",
        size,
        _redis_down,
        recovery="Redis answering again → first event acknowledged",
        evidence=redis_gone,
    )


async def _redis_oom(run: Run) -> None:
    await after_load_starts(run)
    client = run.stack.client
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", str(used + 64 * 1024))
    await asyncio.sleep(run.size.fault_s)  # the fault's length
    await client.config_set("maxmemory", "0")
    await redis_is_back(run)
    for web in run.stack.receivers:
        if web.proc.proc.returncode is not None:
            run.checks.append(f"receiver {web.name} exited {web.proc.proc.returncode} under OOM")
        lines = [ln for ln in web.proc.output.splitlines() if "maxmemory" in ln]
        first = lines[0][:220] if lines else "none"
        run.notes.append(f"{web.name}: {len(lines)} log lines about maxmemory; first: {first}")
        if not lines:
            run.checks.append(f"receiver {web.name} logged nothing about Redis' memory")


async def redis_oom(size: Size) -> Outcome:
    """Valkey's `maxmemory` (noeviction) cut to just above its use mid-load, then lifted."""
    return await scenario(
        "redis-oom",
        size,
        _redis_oom,
        recovery="memory raised → first event acknowledged",
        evidence=refused_deliveries(503),
    )


async def _sentinel_url(run: Run) -> str:
    stack = run.stack
    # No wait before a replica's first sync: the survivor re-syncs with the promoted one at once.
    sync = ("--repl-diskless-sync-delay", "0")
    primary = Valkey(free_port(), stack.workdir / "primary", sync)
    await primary.start()
    # Two replicas: after the failover the promoted one still has a replica to WAIT for, as
    # `TICKETWIRE_DURABILITY=replica` with one replica needs (the README says so).
    replicas = [
        Valkey(
            free_port(),
            stack.workdir / f"replica{i}",
            (*sync, "--replicaof", "127.0.0.1", str(primary.port)),
        )
        for i in (1, 2)
    ]
    for replica in replicas:
        await replica.start()
    sport = free_port()
    conf = stack.workdir / "sentinel.conf"
    conf.write_text(
        f"port {sport}\nbind 127.0.0.1\nsentinel monitor tw 127.0.0.1 {primary.port} 1\n"
        "sentinel down-after-milliseconds tw 1000\nsentinel failover-timeout tw 5000\n"
    )
    sentinel = Valkey(sport, stack.workdir / "sentinel")
    sentinel.proc = await spawn([valkey_binary(), str(conf), "--sentinel"], {})
    stack.redis = primary
    stack.others.extend([*replicas, sentinel])
    ports = ", ".join(str(r.port) for r in replicas)
    run.notes.append(f"primary {primary.port}, replicas {ports}, sentinel {sport}")
    from redis.asyncio.sentinel import Sentinel

    watcher = Sentinel([("127.0.0.1", sport)], socket_timeout=1.0)
    stack.clients.extend(watcher.sentinels)
    stack._client = watcher.master_for("tw", socket_timeout=2.0)
    return f"redis+sentinel://127.0.0.1:{sport}/tw"


async def _redis_failover(run: Run) -> None:
    await after_load_starts(run)
    primary = run.stack.redis
    assert primary is not None
    await primary.stop(signal.SIGKILL)
    killed = time.monotonic()
    await wait_for(run.stack.acked, timeout=60.0, message="the replica promoted")
    run.notes.append(
        f"replica answering as primary {time.monotonic() - killed:.1f}s after the kill"
    )
    run.redis_back.append((killed, None))
    mark_end(run)


async def redis_failover(size: Size) -> Outcome:
    """Primary + replica + Sentinel, `TICKETWIRE_DURABILITY=replica`; the primary SIGKILLed."""
    env = {"TICKETWIRE_DURABILITY": "replica"}
    return await scenario(
        "redis-failover",
        size,
        _redis_failover,
        redis_url=_sentinel_url,
        worker_env=env,
        receiver_env=env,
        recovery="primary killed → first event acknowledged",
        evidence=refused_deliveries(503),
    )


# ------------------------------------------------------------------ helpdesk storms


def _storm(status: int, *, retry_after: int | None = None, delay: float = 0.0) -> Fault:
    async def fault(run: Run) -> None:
        await after_load_starts(run)
        body: dict[str, Any] = {"status": status, "seconds": run.size.fault_s, "delay": delay}
        if retry_after is not None:
            body["retry_after"] = retry_after
        start = now()
        await run.stack.sim_post(run.desk.vendor, "/_sim/faults", {"storm": body})
        await asyncio.sleep(run.size.fault_s)  # the storm's length
        run.fault_ends.append(now())
        run.storms.append((start, now()))
        mark_end(run)

    return fault


def _proxy_fault(kind: str) -> Fault:
    async def fault(run: Run) -> None:
        await after_load_starts(run)
        proxy: FaultProxy = run.stack.proxies[0]
        start = now()
        await (proxy.refuse if kind == "refused" else proxy.hang)(run.size.fault_s)
        run.fault_ends.append(now())
        run.storms.append((start, now()))
        mark_end(run)

    return fault


async def hung(run: Run, *_: Any) -> tuple[int, str]:
    """Requests the proxy held unanswered."""
    return run.stack.proxies[0].hung, "requests held and never answered"


STORM_RECOVERY = "fault end → first write-back accepted"


async def storm_429(size: Size) -> Outcome:
    """Every API request answered 429 (Retry-After: 2) for the storm's length."""
    return await scenario(
        "429",
        size,
        _storm(429, retry_after=2),
        recovery=STORM_RECOVERY,
        evidence=requests_in_storm("our requests answered 429", 429),
    )


async def storm_500(size: Size) -> Outcome:
    """Every API request answered 500 for the storm's length."""
    return await scenario(
        "500",
        size,
        _storm(500),
        recovery=STORM_RECOVERY,
        evidence=requests_in_storm("our requests answered 500", 500),
    )


async def storm_timeouts(size: Size) -> Outcome:
    """Every API request answered (and applied) 3 s late, past the workers' 2 s timeout."""
    return await scenario(
        "timeouts",
        size,
        _storm(0, delay=3.0),
        worker_env={"TICKETWIRE_HTTP_TIMEOUT": "2s"},
        recovery=STORM_RECOVERY,
        evidence=requests_in_storm("our requests answered 3 s late"),
    )


async def storm_refused(size: Size) -> Outcome:
    """The API's address refuses connections for the storm's length."""
    return await scenario(
        "refused",
        size,
        _proxy_fault("refused"),
        api_proxy=True,
        recovery=STORM_RECOVERY,
        evidence=worker_lines("Connect call failed", "Cannot connect"),
    )


async def storm_hang(size: Size) -> Outcome:
    """The API accepts connections and never answers, for the storm's length."""
    return await scenario(
        "hang",
        size,
        _proxy_fault("hang"),
        api_proxy=True,
        worker_env={"TICKETWIRE_HTTP_TIMEOUT": "2s"},
        recovery=STORM_RECOVERY,
        evidence=hung,
    )


# ------------------------------------------------------------------ delivery faults


def _knobs(webhooks: dict[str, Any]) -> Fault:
    async def fault(run: Run) -> None:
        await run.stack.sim_post("inboxops", "/_sim/faults", {"webhooks": webhooks})

    return fault


async def duplicates(size: Size) -> Outcome:
    """Half of all events delivered twice (the simulator's `duplicate` knob)."""
    return await scenario(
        "duplicates", size, _knobs({"duplicate": 0.5}), evidence=duplicate_deliveries
    )


async def reorder(size: Size) -> Outcome:
    """Deliveries held in groups of 5 and sent shuffled (`reorder_window`)."""
    return await scenario("reorder", size, _knobs({"reorder_window": 5}), evidence=stale_events)


async def _burst_tickets(run: Run) -> None:
    # Tickets of the burst's own, which the agent leaves alone.
    for i in range(run.size.burst_tickets):
        ticket = await run.stack.sim_post(
            "inboxops", "/_sim/tickets", {"subject": f"Burst {i}", "priority": "normal"}
        )
        run.tickets[int(ticket["ticket_number"])] = (str(ticket["id"]), "closed")
        run.burst_ids.append(str(ticket["id"]))


async def _burst(run: Run) -> None:
    stack, ids = run.stack, run.burst_ids
    await after_load_starts(run)
    await stack.sim_post("inboxops", "/_sim/faults", {"webhooks": {"burst": run.size.burst_k}})
    sim = stack.sims["inboxops"]
    async with stack.session.post(
        f"{sim.url}/api/v1/tickets/bulk",
        json={"operation": "update_status", "ticket_ids": ids, "status": "closed"},
        headers={"Authorization": f"Bearer {sim.info['api_key']}"},
    ) as resp:
        assert resp.status < 300, await resp.text()
    await stack.sim_post("inboxops", "/_sim/faults", {"webhooks": {"burst": 0}})
    run.notes.append(f"bulk call closed {len(ids)} tickets with burst k={run.size.burst_k}")
    mark_end(run)


async def burst(size: Size) -> Outcome:
    """One bulk call whose per-ticket events come k times each (the `burst` knob)."""
    return await scenario(
        "burst",
        size,
        _burst,
        setup=_burst_tickets,
        recovery="",
        evidence=burst_deliveries,
    )


async def storm_429_cstar(size: Size) -> Outcome:
    """The 429 storm on cStar (Retry-After: 2); its urgent tickets are tagged `on-call`."""
    return await scenario(
        "429-cstar",
        size,
        _storm(429, retry_after=2),
        recovery=STORM_RECOVERY,
        evidence=requests_in_storm("our requests answered 429", 429),
        desk=CSTAR,
    )


async def storm_500_thena(size: Size) -> Outcome:
    """The 500 storm on Thena; its urgent open tickets are put in progress."""
    return await scenario(
        "500-thena",
        size,
        _storm(500),
        recovery=STORM_RECOVERY,
        evidence=requests_in_storm("our requests answered 500", 500),
        desk=THENA,
    )


SCENARIOS: dict[str, Callable[[Size], Awaitable[Outcome]]] = {
    "sigkill": sigkill,
    "sigterm": sigterm,
    "redis-restart": redis_restart,
    "redis-down": redis_down,
    "redis-oom": redis_oom,
    "redis-failover": redis_failover,
    "429": storm_429,
    "500": storm_500,
    "timeouts": storm_timeouts,
    "refused": storm_refused,
    "hang": storm_hang,
    "duplicates": duplicates,
    "reorder": reorder,
    "burst": burst,
    "429-cstar": storm_429_cstar,
    "500-thena": storm_500_thena,
}

#: Scenarios that fail until a feature being built elsewhere lands, and why.
