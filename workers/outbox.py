"""The write-back outbox: queued per ticket, coalesced, batched across tickets, sent under budget.

Every planned call of an event is pushed, in one atomic script, onto its ticket's outbox list,
together with a marker that the event was planned (so a re-run after a crash does not push its
calls twice), and the ticket is put in the due set, scored by when it may be sent: the push time
plus the coalescing window (300 ms by default). Calls of further events on the ticket in that
window join the same list.

Every worker runs a flusher. When a ticket falls due, the flusher claims every pending ticket at
once (the claim is a lease: the ticket's score moves to the lease's end, so a dead worker's claims
fall due again), coalesces each ticket's calls (`ticketwire.writeback.coalesce`), batches the same
change across tickets into bulk calls (`batch`) and sends them, each taking its share of the
account's shared request budget. A bulk call that is not full and carries no due ticket goes back
to wait for more tickets. Then each ticket is settled in one script: the calls done are removed,
what must be retried is put back at the head with its attempts and a not-before time (429,
backoff, spent budget), and the ticket is released. Nothing sleeps while it waits and nothing
holds a worker slot; later write-backs of the ticket queue behind it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticketwire import metrics
from ticketwire.calls import ApiCall, ApiResult
from ticketwire.errors import (
    BudgetSpent,
    ClientError,
    HelpdeskError,
    HelpdeskHTTPError,
    HelpdeskUnavailable,
    PartialFailure,
    RateLimited,
)
from ticketwire.keys import Keys
from ticketwire.trace import codes as tc
from ticketwire.trace.writer import TraceWriter
from ticketwire.vendors import HelpdeskClient
from ticketwire.writeback import (
    BatchSpec,
    Outgoing,
    Pending,
    TicketWork,
    _joined,
    batch,
    coalesce,
    single,
)
from workers.deadletter import dead_letter
from workers.outage import Outage
from workers.scriptbatch import BatchedScript, batched
from workers.stoptask import stop_task

log = logging.getLogger("ticketwire.worker")

# KEYS: outbox, planned marker, due set.
# ARGV: planned TTL s ('' = no marker), ticket key, due score ms, items...
# Pushes the items (once per marker) and makes the ticket due at the score unless it already is
# due earlier (or claimed). Returns the number of items pushed.
_PUSH_LUA = """
if ARGV[1] ~= '' and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[2])
return #ARGV - 3
"""

# KEYS: due set, owners hash. ARGV: now ms, horizon ms, limit, owner, lease end ms, outbox key
# prefix, max items per ticket.
# Claims up to `limit` tickets scored at or before the horizon (when the earliest is due by now),
# returning {ticket, score, items} triples.
_CLAIM_LUA = """
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 or tonumber(first[2]) > tonumber(ARGV[1]) then return {} end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
local out = {}
for i = 1, #due, 2 do
  local t = due[i]
  redis.call('ZADD', KEYS[1], ARGV[5], t)
  redis.call('HSET', KEYS[2], t, ARGV[4])
  out[#out + 1] = t
  out[#out + 1] = due[i + 1]
  out[#out + 1] = redis.call('LRANGE', ARGV[6] .. t, 0, tonumber(ARGV[7]) - 1)
end
return out
"""

# KEYS: due set, owners hash, then each claimed ticket's outbox. ARGV: owner, then per ticket (in
# KEYS order): ticket key, items done, score if more, number of items to put back, those items.
# Settles a claim in one call: for each ticket, drops the items it consumed, puts back what must be
# retried and releases it (due again at the score if anything is left). A ticket whose claim was
# lost (it expired and another worker took the ticket) is left alone.
_SETTLE_LUA = """
local i = 2
for k = 3, #KEYS do
  local ticket, n, score, m = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], tonumber(ARGV[i + 3])
  local first = i + 4
  i = first + m
  if redis.call('HGET', KEYS[2], ticket) == ARGV[1] then
    if n > 0 then redis.call('LTRIM', KEYS[k], n, -1) end
    for j = first + m - 1, first, -1 do redis.call('LPUSH', KEYS[k], ARGV[j]) end
    redis.call('HDEL', KEYS[2], ticket)
    if redis.call('LLEN', KEYS[k]) > 0 then
      redis.call('ZADD', KEYS[1], score, ticket)
    else
      redis.call('ZREM', KEYS[1], ticket)
    end
  end
end
return 1
"""

# KEYS: due set, owners hash. ARGV: owner, lease end ms, tickets... Extends a claim still held.
_RENEW_LUA = """
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
  end
end
return 1
"""

# KEYS: outbox, owners hash. ARGV: ticket key, owner, items done, items left...
# Records progress inside a claim (some of a ticket's calls went out, more follow) so a crash
# now does not send the finished calls again.
_CHECKPOINT_LUA = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[3]), -1)
for i = #ARGV, 4, -1 do redis.call('LPUSH', KEYS[1], ARGV[i]) end
return 1
"""

# Runs another script's writes (`also`) and then the push, in one call: KEYS and ARGV are the
# other script's followed by the push's; ARGV starts with the number of the other's keys and args.
_ALSO_LUA = """
local function other(KEYS, ARGV)
%s
end
local function push(KEYS, ARGV)
%s
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local k1, a1, k2, a2 = {}, {}, {}, {}
for i = 1, #KEYS do
  if i <= nk then k1[#k1 + 1] = KEYS[i] else k2[#k2 + 1] = KEYS[i] end
end
for i = 3, #ARGV do
  if i - 2 <= na then a1[#a1 + 1] = ARGV[i] else a2[#a2 + 1] = ARGV[i] end
end
other(k1, a1)
return push(k2, a2)
"""

#: A script's text with its keys and arguments (e.g. `LoopGuard.record_part`).
ScriptPart = tuple[str, list[str], list[str | int]]

#: Merged calls remembered with the events and planned calls they carry, for their traces.
MERGED_MEMORY = 10_000

#: Called with (ticket key, the ticket's own call) pairs about to be sent.
Written = Callable[[Sequence[tuple[str, ApiCall]]], Awaitable[None]]


@dataclass(frozen=True)
class OutboxPolicy:
    """Retry policy, coalescing window, claim sizes and lifetimes."""

    max_attempts: int = 6
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 600.0
    #: How long a claim holds its tickets before another worker may take them over.
    lease_s: float = 60.0
    planned_ttl_s: float = 72 * 3600.0
    #: How long a ticket's first queued call waits for more (of other rules, events, tickets).
    window_s: float = 0.3
    #: Most tickets one claim takes, and most queued calls read per ticket.
    claim_limit: int = 2000
    max_items: int = 100
    #: Requests in flight at once per flusher.
    concurrency: int = 16
    #: Longest a flusher idles between looks at the due set (other workers' pushes).
    poll_s: float = 0.1

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th failure (exponential, capped)."""
        return float(min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1)))


def _now_ms() -> int:
    return int(time.time() * 1000)


async def requeue(redis: Redis, keys: Keys, ticket_key: str, calls: Sequence[ApiCall]) -> None:
    """Queue calls for a ticket with fresh attempts, due now (a running worker sends them)."""
    push = redis.register_script(_PUSH_LUA)
    await push(
        keys=[keys.outbox(ticket_key), keys.planned("-"), keys.wb_due],
        args=["", ticket_key, _now_ms(), *(Pending(c).to_json() for c in calls)],
    )


@dataclass
class _Ticket:
    """A claimed ticket while its calls are being sent."""

    work: TicketWork
    score: int
    #: Index of the call to send next; calls before it are done.
    next: int = 0
    #: Set when the ticket stops this flush: the calls to put back and when they may go.
    stopped: list[Pending] | None = None
    not_before: int = 0
    #: Some of its calls went out this flush: the rest follow without waiting for company.
    started: bool = False
    #: A call given up on this flush, and why: dead-lettered before the ticket is settled.
    dead: tuple[Pending, str] | None = None


class Outbox:
    """Queue planned calls per ticket and send them, coalesced and batched, in every worker."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        clients: Mapping[str, HelpdeskClient],
        *,
        owner: str,
        specs: Mapping[str, BatchSpec] | None = None,
        rank: Callable[[str], int] = lambda _rule: 0,
        policy: OutboxPolicy | None = None,
        on_written: Written | None = None,
        trace: TraceWriter | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self._clients = clients
        self._owner = owner
        self._specs = dict(specs or {})
        self._rank = rank
        self.policy = policy or OutboxPolicy()
        self._on_written = on_written
        #: Where sent calls, retries and dead letters are traced; None when traces are off.
        self.trace = trace if trace is not None and trace.enabled else None
        #: Merged call's event id → (event ids, planned call ids) it carries (traces only).
        self._merged: dict[str, tuple[list[str], list[str]]] = {}
        #: Calls sent, counted here and added to the shared stats hash periodically.
        self.counters: Counter[str] = Counter()
        # Events in flight push in one write per loop turn (see `scriptbatch`).
        self._push = batched(redis).register(_PUSH_LUA)
        self._claim = redis.register_script(_CLAIM_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)
        self._renew = redis.register_script(_RENEW_LUA)
        self._checkpoint = redis.register_script(_CHECKPOINT_LUA)
        self._combined: dict[str, BatchedScript] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._claims = 0

    async def submit(
        self,
        ticket_key: str,
        event_id: str,
        calls: Sequence[ApiCall],
        *,
        also: ScriptPart | None = None,
    ) -> None:
        """Queue an event's calls (once per event); they go out after the coalescing window.

        `also` is another script's writes to run first in the same call (the loop guard's
        record of the event's firings): one round trip instead of two.
        """
        k = self.keys
        due = _now_ms() + int(self.policy.window_s * 1000)
        keys = [k.outbox(ticket_key), k.planned(event_id or "-"), k.wb_due]
        args: list[str | int] = [
            int(self.policy.planned_ttl_s) if event_id else "",
            ticket_key,
            due,
            *(Pending(c).to_json() for c in calls),
        ]
        if also is None:
            await self._push(keys=keys, args=args)
        else:
            text, other_keys, other_args = also
            script = self._combined.get(text)
            if script is None:
                script = self._combined[text] = batched(self.redis).register(
                    _ALSO_LUA % (text, _PUSH_LUA)
                )
            await script(
                keys=[*other_keys, *keys],
                args=[len(other_keys), len(other_args), *other_args, *args],
            )
        self._wake.set()

    async def drain(self, ticket_key: str) -> None:
        """Make a ticket's queued calls due now (its wait is over)."""
        await self.redis.zadd(self.keys.wb_due, {ticket_key: _now_ms()}, xx=True, lt=True)
        self._wake.set()

    # ---- the flusher ----

    def start(self) -> None:
        """Run the flusher in the background until `stop()`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-flusher")

    async def stop(self) -> None:
        """Stop the flusher; a flush in progress is cancelled and its claims expire."""
        if self._task is not None:
            self._stopping = True
            await stop_task(self._task, "the outbox flusher")
            self._task = None

    async def _run(self) -> None:
        outage = Outage("outbox flusher", log)
        while not self._stopping:
            try:
                while await self.flush_once():
                    outage.recovered()
                outage.recovered()
                await self._idle()
            except (RedisError, OSError) as exc:
                await asyncio.sleep(outage.failed(exc))
            except Exception:
                log.exception("outbox flusher: unexpected error; continuing")
                await asyncio.sleep(1.0)

    async def _idle(self) -> None:
        first = await self.redis.zrange(self.keys.wb_due, 0, 0, withscores=True)
        wait = self.policy.poll_s
        if first:
            wait = min(wait, max(0.0, (float(first[0][1]) - _now_ms()) / 1000))
        if wait <= 0:
            return
        self._wake.clear()
        # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as the wake-up fires, and the flusher would then never stop.
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([waiter], timeout=wait)
        finally:
            waiter.cancel()

    async def flush_once(self) -> int:
        """Claim what is due (and what may join it), send it, settle it; return tickets claimed."""
        k = self.keys
        now = _now_ms()
        self._claims += 1
        owner = f"{self._owner}:{self._claims}"
        raw = await self._claim(
            keys=[k.wb_due, k.wb_owner],
            args=[
                now,
                now + int(self.policy.window_s * 1000),
                self.policy.claim_limit,
                owner,
                now + int(self.policy.lease_s * 1000),
                k.outbox(""),
                self.policy.max_items,
            ],
        )
        if not raw:
            return 0
        tickets: dict[str, _Ticket] = {}
        for i in range(0, len(raw), 3):
            key = raw[i].decode()
            items = [Pending.from_json(x) for x in raw[i + 2]]
            if self.trace is not None and len(items) > 1:
                self._remember_merges(items)
            spec = self._specs.get(items[0].call.vendor) if items else None
            work = coalesce(key, items, rank=self._rank, spec=spec)
            for note in work.notes:
                log.info("write-back ticket=%s: %s", key, note)
            tickets[key] = _Ticket(work=work, score=int(float(raw[i + 1])))
        renewer = asyncio.create_task(self._keep_claim(owner, list(tickets)))
        try:
            await self._send_rounds(tickets, now, owner)
            await self._settle_all(tickets, owner, now)
        finally:
            renewer.cancel()
        return len(tickets)

    async def _keep_claim(self, owner: str, tickets: list[str]) -> None:
        """Extend the claim while a long flush (many rounds, slow answers) is still going."""
        every = self.policy.lease_s / 3
        while True:
            await asyncio.sleep(every)
            lease_end = _now_ms() + int(self.policy.lease_s * 1000)
            await self._renew(
                keys=[self.keys.wb_due, self.keys.wb_owner], args=[owner, lease_end, *tickets]
            )

    async def _send_rounds(self, tickets: dict[str, _Ticket], now: int, owner: str) -> None:
        sem = asyncio.Semaphore(self.policy.concurrency)
        spent: dict[str, float] = {}
        for t in tickets.values():
            # A retry claimed a little before its not-before time (the claim looks ahead by the
            # coalescing window) waits it out rather than ride along on a call that is due.
            if t.score > now and t.work.calls and t.work.calls[0].attempts:
                t.stopped, t.not_before = list(t.work.calls), t.score
        first = True
        while True:
            if not first:
                await self._record_progress(tickets, owner)
            first = False
            active = [
                (key, t.work.calls[t.next])
                for key, t in tickets.items()
                if t.stopped is None and t.next < len(t.work.calls)
            ]
            if not active:
                return
            outgoing = batch(active, self._specs)
            sendable = [o for o in outgoing if self._ready(o, tickets, now)]
            for o in outgoing:
                if o not in sendable:
                    for key in o.covers:
                        t = tickets[key]
                        t.stopped, t.not_before = t.work.calls[t.next :], t.score
            if not sendable:
                return

            async def go(o: Outgoing) -> None:
                async with sem:
                    await self._send(o, tickets, spent)

            await asyncio.gather(*(go(o) for o in sendable))

    async def _record_progress(self, tickets: dict[str, _Ticket], owner: str) -> None:
        """Checkpoint tickets with calls done and calls still to go (before the next round)."""
        moving = {
            key: t
            for key, t in tickets.items()
            if t.stopped is None and 0 < t.next < len(t.work.calls)
        }
        if not moving:
            return
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, t in moving.items():
                left = t.work.calls[t.next :]
                await self._checkpoint(
                    keys=[k.outbox(key), k.wb_owner],
                    args=[key, owner, t.work.claimed, *(p.to_json() for p in left)],
                    client=pipe,
                )
            await pipe.execute()
        for t in moving.values():
            t.work.calls = t.work.calls[t.next :]
            t.work.claimed, t.next = len(t.work.calls), 0

    def _ready(self, o: Outgoing, tickets: dict[str, _Ticket], now: int) -> bool:
        """Send now, or wait for more tickets to join: full, or one of its tickets is due."""
        spec = self._specs.get(o.call.vendor)
        if spec is not None and len(o.covers) >= spec.max_ids:
            return True
        return any(tickets[key].score <= now or tickets[key].started for key in o.covers)

    async def _send(
        self, o: Outgoing, tickets: dict[str, _Ticket], spent: dict[str, float]
    ) -> None:
        call = o.call
        started = _now_ms()
        if spent.get(call.vendor, 0) > started:
            self._stop(o, tickets, int(spent[call.vendor]), None)
            return
        try:
            client = self._client(call)
            if self._on_written is not None:
                # Recorded before sending: the helpdesk may send the webhook our write causes
                # before it answers us, and that webhook must be recognised as our echo.
                await self._on_written(
                    [(key, tickets[key].work.calls[tickets[key].next].call) for key in o.covers]
                )
            result = await client.send(call)
        except BudgetSpent as exc:
            until = _now_ms() + int(exc.retry_after * 1000)
            spent[call.vendor] = until
            metrics.api_retry(call.vendor, "budget")
            log.info("api %s waits %.1fs: %s", self._describe(o), exc.retry_after, exc)
            self._stop(o, tickets, until, None)
            return
        except RateLimited as exc:
            attempt = _attempt(exc)
            # Retry-After counts from the answer, not from when the request went out.
            until = attempt["at"] + int(exc.retry_after * 1000)
            budget = getattr(self._client(call), "budget", None)
            if budget is not None:
                await budget.pause(exc.retry_after)
            spent[call.vendor] = until
            metrics.api_retry(call.vendor, "rate_limited")
            self._trace_sent(o, tickets, 429, started, request_id=exc.request_id, retry_at=until)
            log.warning(
                "api %s → 429 rate limited; %d ticket(s) wait %.0fs (Retry-After), "
                "the account's budget is paused for every worker",
                self._describe(o),
                len(o.covers),
                exc.retry_after,
            )
            self._stop(o, tickets, until, attempt)
            return
        except PartialFailure as exc:
            # Sent and answered: traced with the answer, then each id is settled on its own.
            self._trace_sent(o, tickets, f"partial: {exc}", started)
            self._partial(o, tickets, exc)
            return
        except ClientError as exc:
            if len(o.covers) > 1:
                # One bad id can make the whole bulk call fail: send each ticket's change
                # alone, so only the ticket that is really refused is dead-lettered.
                log.warning(
                    "api %s → %s; retrying its %d tickets one by one",
                    self._describe(o),
                    exc,
                    len(o.covers),
                )
                self._trace_sent(
                    o, tickets, exc.status, started, request_id=exc.request_id, retry_at=started
                )
                for key in o.covers:
                    t = tickets[key]
                    head = t.work.calls[t.next]
                    solo = Pending(head.call, (*head.attempts, _attempt(exc)), solo=True)
                    t.stopped, t.not_before = [solo, *t.work.calls[t.next + 1 :]], started
                return
            self._trace_sent(o, tickets, exc.status, started, request_id=exc.request_id)
            await self._give_up(o, tickets, exc, "not retried: the helpdesk refused it")
            return
        except (HelpdeskUnavailable, HelpdeskHTTPError) as exc:
            self._retry_later(o, tickets, exc, started)
            return
        except HelpdeskError as exc:
            self._trace_sent(o, tickets, str(exc), started)
            await self._give_up(o, tickets, exc, "not retried")
            return
        except (RedisError, OSError, asyncio.CancelledError):
            raise  # infrastructure or shutdown: the claim expires and the calls are sent again
        except Exception as exc:
            log.exception("internal error sending %s", self._describe(o))
            await self._give_up(o, tickets, exc, "internal error")
            return
        self._trace_sent(
            o,
            tickets,
            result.status,
            started,
            elapsed_ms=result.elapsed_ms,
            request_id=result.request_id,
        )
        self._done(o, tickets, result)

    def _remember_merges(self, items: Sequence[Pending]) -> None:
        """Note what each merge `coalesce` can make of these items carries (for `ca` records)."""
        # Merged ids are digests of the events merged; every run of queued calls a merge could
        # cover is noted, so the call sent can be traced back to the events and calls it carries.
        head = items[:20]
        carried = [self._carried(item.call) for item in head]
        for i, first in enumerate(head):
            acc = first.call.event_id
            events, ids = list(carried[i][0]), list(carried[i][1])
            for j in range(i + 1, len(head)):
                acc = _joined(acc, head[j].call.event_id)
                events += [e for e in carried[j][0] if e not in events]
                ids += carried[j][1]
                if acc.startswith("merged:") and acc not in self._merged:
                    self._merged[acc] = (list(events), list(ids))
        while len(self._merged) > MERGED_MEMORY:
            del self._merged[next(iter(self._merged))]

    def _carried(self, call: ApiCall) -> tuple[list[str], list[str]]:
        """The events and planned call ids one queued call carries."""
        found = self._merged.get(call.event_id)
        if found is not None:
            return found
        return [call.event_id], [call.fingerprint()]

    def _trace_sent(
        self,
        o: Outgoing,
        tickets: dict[str, _Ticket],
        status: int | str,
        started: int,
        *,
        elapsed_ms: float | None = None,
        request_id: str | None = None,
        retry_at: int | None = None,
    ) -> None:
        """Trace a call that went out (`ca`) to each covered ticket, and its retries (`rt`)."""
        writer = self.trace
        if writer is None:
            return
        latency = round(elapsed_ms if elapsed_ms is not None else _now_ms() - started)
        url = api_root(self._clients.get(o.call.vendor)) + o.call.path
        batched = len(o.covers)
        # Each ticket's record names only its own planned calls and events, and how many tickets
        # the call covered: a bulk call's records stay linear in its size, not quadratic.
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            events, ids = self._carried(head.call)
            event_id = events[0] if len(events) == 1 else ""
            record = (
                tc.CALL,
                list(ids),
                o.call.method,
                url,
                status,
                latency,
                request_id or "",
                batched,
                list(events),
            )
            writer.record(key, event_id, record)
            if retry_at is not None:
                writer.record(
                    key,
                    event_id,
                    (tc.RETRY, head.call.fingerprint(), status, retry_at, len(head.attempts) + 1),
                )

    def _stop(
        self,
        o: Outgoing,
        tickets: dict[str, _Ticket],
        not_before: int,
        attempt: dict[str, Any] | None,
    ) -> None:
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            if attempt is not None:
                head = replace(head, attempts=(*head.attempts, attempt))
            t.stopped, t.not_before = [head, *t.work.calls[t.next + 1 :]], not_before

    def _done(self, o: Outgoing, tickets: dict[str, _Ticket], result: ApiResult) -> None:
        self.counters["api_calls"] += 1
        self.counters["api_call_tickets"] += len(o.covers)
        for key in o.covers:
            t = tickets[key]
            t.next += 1
            t.started = True
        log.info(
            "api %s → %d in %.0fms (rules: %s)",
            self._describe(o),
            result.status,
            result.elapsed_ms,
            ", ".join(o.call.rules) or "-",
        )

    def _retry_later(
        self, o: Outgoing, tickets: dict[str, _Ticket], exc: HelpdeskError, started: int = 0
    ) -> None:
        attempt = _attempt(exc)
        metrics.api_retry(o.call.vendor, "unavailable")
        # Backoff counts from when the failure was known (after a timeout, the timeout's end),
        # not from when the request went out.
        now = attempt["at"]
        if self.trace is not None:
            self._trace_retries(o, tickets, exc, started or now, now)
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            attempts = (*head.attempts, attempt)
            if len(attempts) >= self.policy.max_attempts:
                t.stopped, t.not_before = [*t.work.calls[t.next + 1 :]], now
                t.dead = (
                    Pending(head.call, attempts),
                    f"{exc} (gave up after {len(attempts)} attempts)",
                )
                continue
            delay = self.policy.backoff(len(attempts))
            t.stopped = [Pending(head.call, attempts, head.solo), *t.work.calls[t.next + 1 :]]
            t.not_before = now + int(delay * 1000)
        log.warning(
            "api %s → %s; %d ticket(s) retry with backoff (attempt %d of %d)",
            self._describe(o),
            exc,
            len(o.covers),
            max(len(tickets[k].work.calls[tickets[k].next].attempts) + 1 for k in o.covers),
            self.policy.max_attempts,
        )

    def _trace_retries(
        self, o: Outgoing, tickets: dict[str, _Ticket], exc: HelpdeskError, started: int, now: int
    ) -> None:
        """Trace a failed call and, per ticket, its retry (or nothing: its dead letter follows)."""
        status: int | str = exc.status if isinstance(exc, HelpdeskHTTPError) else str(exc)
        request_id = exc.request_id if isinstance(exc, HelpdeskHTTPError) else None
        self._trace_sent(o, tickets, status, started, request_id=request_id)
        writer = self.trace
        assert writer is not None
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            tries = len(head.attempts) + 1
            if tries >= self.policy.max_attempts:
                continue
            own = self._carried(head.call)[0]
            at = now + int(self.policy.backoff(tries) * 1000)
            writer.record(
                key,
                own[0] if len(own) == 1 else "",
                (tc.RETRY, head.call.fingerprint(), status, at, tries),
            )

    def _partial(self, o: Outgoing, tickets: dict[str, _Ticket], exc: PartialFailure) -> None:
        by_id = {tickets[key].work.calls[tickets[key].next].call.ticket_id: key for key in o.covers}
        failed_keys = {by_id[i] for i in exc.failed if i in by_id}
        # Ids the answer names that the call did not carry cannot be ours to retry; every id the
        # call carried and the answer does not list as failed succeeded.
        ok = Outgoing(o.call, tuple(k for k in o.covers if k not in failed_keys))
        if ok.covers:
            self._done(ok, tickets, ApiResult(status=200, body=None))
        attempt = _attempt(exc)
        now = attempt["at"]  # the backoff of an id retried alone counts from the answer
        retried = dead = 0
        for key in o.covers:
            if key not in failed_keys:
                continue
            t = tickets[key]
            head = t.work.calls[t.next]
            ticket_id = head.call.ticket_id
            spec = self._specs.get(head.call.vendor)
            own = Pending(single(head.call, ticket_id, spec), (*head.attempts, attempt), True)
            reason = exc.failed.get(ticket_id, "")
            # Each id on its own answer: one id's permanent refusal must not dead-letter another
            # id whose failure a retry may fix, nor the other way round.
            if ticket_id in exc.transient and len(own.attempts) < self.policy.max_attempts:
                delay = self.policy.backoff(len(own.attempts))
                t.stopped = [own, *t.work.calls[t.next + 1 :]]
                t.not_before = now + int(delay * 1000)
                retried += 1
            else:
                t.stopped, t.not_before = [*t.work.calls[t.next + 1 :]], now
                why = (
                    f"gave up after {len(own.attempts)} attempts"
                    if ticket_id in exc.transient
                    else "not retried"
                )
                t.dead = (own, f"{ticket_id}: {reason} (not updated; {why})")
                dead += 1
        log.warning(
            "api %s → %s; %d id(s) retried alone, %d dead-lettered",
            self._describe(o),
            exc,
            retried,
            dead,
        )

    async def _give_up(
        self, o: Outgoing, tickets: dict[str, _Ticket], exc: BaseException, why: str
    ) -> None:
        attempt = _attempt(exc)
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            t.stopped, t.not_before = [*t.work.calls[t.next + 1 :]], _now_ms()
            t.dead = (Pending(head.call, (*head.attempts, attempt)), f"{exc} ({why})")

    async def _settle_all(self, tickets: dict[str, _Ticket], owner: str, now: int) -> None:
        for key, t in tickets.items():
            if t.dead is None:
                continue
            item, reason = t.dead
            await dead_letter(
                self.redis,
                self.keys,
                reason=reason,
                ticket_key=key,
                call=item.call,
                attempts=[dict(a) for a in item.attempts],
                trace=self._trace_to(key, item.call),
            )
        k = self.keys
        args: list[str | int] = [owner]
        for key, t in tickets.items():
            rest = t.stopped if t.stopped is not None else []
            score = max(t.not_before, now) if t.stopped is not None else now
            args += [key, t.work.claimed, score, len(rest), *(p.to_json() for p in rest)]
        await self._settle(
            keys=[k.wb_due, k.wb_owner, *(k.outbox(key) for key in tickets)], args=args
        )

    def _trace_to(self, key: str, call: ApiCall) -> Callable[[Sequence[Any]], None] | None:
        """Where a dead letter of this ticket's call is traced (None when traces are off)."""
        writer = self.trace
        if writer is None:
            return None
        events = self._carried(call)[0]
        event_id = events[0] if len(events) == 1 else ""
        return lambda record: writer.record(key, event_id, record)

    def _describe(self, o: Outgoing) -> str:
        """The call for a log line, with its path as sent (`/api/v1/tickets/42`, not `/tickets/42`)."""
        return _describe(o, api_root(self._clients.get(o.call.vendor)))

    def _client(self, call: ApiCall) -> HelpdeskClient:
        try:
            return self._clients[call.vendor]
        except KeyError:
            raise HelpdeskError(f"no {call.vendor} API configured for this worker") from None


def api_root(client: HelpdeskClient | None) -> str:
    """The path a client's call paths are relative to (`/api/v1`, `/v1`, …); '' if none."""
    # Planned calls keep paths relative to the API root; the helpdesk's logs show full ones.
    base = getattr(client, "base_url", None)
    return urlsplit(base).path.rstrip("/") if isinstance(base, str) else ""


def _describe(o: Outgoing, root: str = "") -> str:
    call = replace(o.call, path=root + o.call.path) if root else o.call
    if len(o.covers) <= 3:
        return call.describe()
    shown = {k: v for k, v in call.body.items() if not isinstance(v, list) or len(v) <= 5}
    return (
        f"{call.method} {call.path} {json.dumps(shown, sort_keys=True)} for {len(o.covers)} tickets"
    )


def _attempt(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"at": _now_ms(), "error": str(exc), "kind": type(exc).__name__}
    if isinstance(exc, HelpdeskHTTPError):
        out["status"] = exc.status
        out["request_id"] = exc.request_id
        if exc.body:
            out["body"] = exc.body[:500]
    if isinstance(exc, RateLimited):
        out["retry_after"] = exc.retry_after
    return out
