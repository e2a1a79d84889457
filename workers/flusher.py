"""The flusher: claim due tickets, coalesce and batch their calls, send them, settle the claim."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

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
from ticketwire.vendors import HelpdeskClient
from ticketwire.writeback import (
    BatchSpec,
    Outgoing,
    Pending,
    TicketWork,
    batch,
    coalesce,
    single,
)
from workers.calltrace import CallTrace, Heads, api_root
from workers.deadletter import dead_letter
from workers.outage import Outage
from workers.outboxqueue import OutboxQueue, now_ms
from workers.retrypolicy import attempt_record, gave_up, next_try
from workers.stoptask import stop_task

log = logging.getLogger("ticketwire.worker")

#: Called with (ticket key, the ticket's own call) pairs about to be sent.
Written = Callable[[Sequence[tuple[str, ApiCall]]], Awaitable[None]]


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


class Flusher:
    """Send the queue's due tickets, coalesced and batched, each call under its account's budget."""

    def __init__(
        self,
        queue: OutboxQueue,
        clients: Mapping[str, HelpdeskClient],
        *,
        owner: str,
        specs: Mapping[str, BatchSpec],
        rank: Callable[[str], int],
        on_written: Written | None,
        trace: CallTrace | None,
    ) -> None:
        self._queue = queue
        self.policy = queue.policy
        self._clients = clients
        self._owner = owner
        self._specs = specs
        self._rank = rank
        self._on_written = on_written
        self._trace = trace
        #: Calls sent, counted here and added to the shared stats hash periodically.
        self.counters: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._claims = 0

    def wake(self) -> None:
        """Look at the due set now: something was queued or made due."""
        self._wake.set()

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
        first = await self._queue.next_due()
        wait = self.policy.poll_s
        if first is not None:
            wait = min(wait, max(0.0, (first - now_ms()) / 1000))
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
        now = now_ms()
        self._claims += 1
        owner = f"{self._owner}:{self._claims}"
        claimed = await self._queue.claim(owner, now)
        if not claimed:
            return 0
        tickets: dict[str, _Ticket] = {}
        for key, score, items in claimed:
            if self._trace is not None and len(items) > 1:
                self._trace.remember_merges(items)
            spec = self._specs.get(items[0].call.vendor) if items else None
            work = coalesce(key, items, rank=self._rank, spec=spec)
            for note in work.notes:
                log.info("write-back ticket=%s: %s", key, note)
            tickets[key] = _Ticket(work=work, score=score)
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
            await self._queue.renew(owner, tickets)

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
        await self._queue.checkpoint(
            owner,
            [(key, t.work.claimed, t.work.calls[t.next :]) for key, t in moving.items()],
        )
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
        started = now_ms()
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
            until = now_ms() + int(exc.retry_after * 1000)
            spent[call.vendor] = until
            metrics.api_retry(call.vendor, "budget")
            log.info("api %s waits %.1fs: %s", self._describe(o), exc.retry_after, exc)
            self._stop(o, tickets, until, None)
            return
        except RateLimited as exc:
            attempt = attempt_record(exc, now_ms())
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
                    solo = Pending(
                        head.call, (*head.attempts, attempt_record(exc, now_ms())), solo=True
                    )
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
        if self._trace is not None:
            self._trace.sent(
                o.call,
                self._heads(o, tickets),
                status,
                started,
                elapsed_ms=elapsed_ms,
                request_id=request_id,
                retry_at=retry_at,
            )

    @staticmethod
    def _heads(o: Outgoing, tickets: dict[str, _Ticket]) -> Heads:
        """Each ticket the call covers, with its own queued call the call carries."""
        return [(key, tickets[key].work.calls[tickets[key].next]) for key in o.covers]

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
        attempt = attempt_record(exc, now_ms())
        metrics.api_retry(o.call.vendor, "unavailable")
        # Backoff counts from when the failure was known (after a timeout, the timeout's end),
        # not from when the request went out.
        now = attempt["at"]
        if self._trace is not None:
            self._trace.retries(o.call, self._heads(o, tickets), exc, started or now, now)
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            attempts = (*head.attempts, attempt)
            at = next_try(self.policy, len(attempts), now)
            if at is None:
                t.stopped, t.not_before = [*t.work.calls[t.next + 1 :]], now
                t.dead = (Pending(head.call, attempts), f"{exc} ({gave_up(len(attempts))})")
                continue
            t.stopped = [Pending(head.call, attempts, head.solo), *t.work.calls[t.next + 1 :]]
            t.not_before = at
        log.warning(
            "api %s → %s; %d ticket(s) retry with backoff (attempt %d of %d)",
            self._describe(o),
            exc,
            len(o.covers),
            max(len(tickets[k].work.calls[tickets[k].next].attempts) + 1 for k in o.covers),
            self.policy.max_attempts,
        )

    def _partial(self, o: Outgoing, tickets: dict[str, _Ticket], exc: PartialFailure) -> None:
        by_id = {tickets[key].work.calls[tickets[key].next].call.ticket_id: key for key in o.covers}
        failed_keys = {by_id[i] for i in exc.failed if i in by_id}
        # Ids the answer names that the call did not carry cannot be ours to retry; every id the
        # call carried and the answer does not list as failed succeeded.
        ok = Outgoing(o.call, tuple(k for k in o.covers if k not in failed_keys))
        if ok.covers:
            self._done(ok, tickets, ApiResult(status=200, body=None))
        attempt = attempt_record(exc, now_ms())
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
            transient = ticket_id in exc.transient
            at = next_try(self.policy, len(own.attempts), now) if transient else None
            if at is not None:
                t.stopped, t.not_before = [own, *t.work.calls[t.next + 1 :]], at
                retried += 1
            else:
                t.stopped, t.not_before = [*t.work.calls[t.next + 1 :]], now
                why = gave_up(len(own.attempts)) if transient else "not retried"
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
        attempt = attempt_record(exc, now_ms())
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            t.stopped, t.not_before = [*t.work.calls[t.next + 1 :]], now_ms()
            t.dead = (Pending(head.call, (*head.attempts, attempt)), f"{exc} ({why})")

    async def _settle_all(self, tickets: dict[str, _Ticket], owner: str, now: int) -> None:
        for key, t in tickets.items():
            if t.dead is None:
                continue
            item, reason = t.dead
            await dead_letter(
                self._queue.redis,
                self._queue.keys,
                reason=reason,
                ticket_key=key,
                call=item.call,
                attempts=[dict(a) for a in item.attempts],
                trace=None if self._trace is None else self._trace.letter_to(key, item.call),
            )
        outcomes = []
        for key, t in tickets.items():
            rest = t.stopped if t.stopped is not None else []
            score = max(t.not_before, now) if t.stopped is not None else now
            outcomes.append((key, t.work.claimed, score, rest))
        await self._queue.settle(owner, outcomes)

    def _describe(self, o: Outgoing) -> str:
        """The call for a log line, with its path as sent (`/api/v1/tickets/42`, not `/tickets/42`)."""
        return _describe(o, api_root(self._clients.get(o.call.vendor)))

    def _client(self, call: ApiCall) -> HelpdeskClient:
        try:
            return self._clients[call.vendor]
        except KeyError:
            raise HelpdeskError(f"no {call.vendor} API configured for this worker") from None


def _describe(o: Outgoing, root: str = "") -> str:
    call = replace(o.call, path=root + o.call.path) if root else o.call
    if len(o.covers) <= 3:
        return call.describe()
    shown = {k: v for k, v in call.body.items() if not isinstance(v, list) or len(v) <= 5}
    return (
        f"{call.method} {call.path} {json.dumps(shown, sort_keys=True)} for {len(o.covers)} tickets"
    )
