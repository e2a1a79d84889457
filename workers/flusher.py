"""The flusher: claim due tickets, coalesce and batch their calls, send them, settle the claim."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping

from redis.exceptions import RedisError

from ticketwire.stoptask import stop_task
from ticketwire.vendors import HelpdeskClient
from ticketwire.writeback import BatchSpec, Outgoing, batch, coalesce
from workers.calltrace import CallTrace
from workers.deadletter import dead_letter
from workers.outage import Outage
from workers.outboxqueue import OutboxQueue, now_ms
from workers.sender import ClaimedTicket, Sender, Written

log = logging.getLogger("ticketwire.worker")


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
        self._owner = owner
        self._specs = specs
        self._rank = rank
        self._trace = trace
        self._sender = Sender(
            clients, specs=specs, policy=self.policy, on_written=on_written, trace=trace
        )
        self.counters: Counter[str] = self._sender.counters
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
        tickets: dict[str, ClaimedTicket] = {}
        for key, score, items in claimed:
            if self._trace is not None and len(items) > 1:
                self._trace.remember_merges(items)
            spec = self._specs.get(items[0].call.account_key) if items else None
            work = coalesce(key, items, rank=self._rank, spec=spec)
            for note in work.notes:
                log.info("write-back ticket=%s: %s", key, note)
            tickets[key] = ClaimedTicket(work=work, score=score)
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

    async def _send_rounds(self, tickets: dict[str, ClaimedTicket], now: int, owner: str) -> None:
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
                    await self._sender.send(o, tickets, spent)

            await asyncio.gather(*(go(o) for o in sendable))

    async def _record_progress(self, tickets: dict[str, ClaimedTicket], owner: str) -> None:
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

    def _ready(self, o: Outgoing, tickets: dict[str, ClaimedTicket], now: int) -> bool:
        """Send now, or wait for more tickets to join: full, or one of its tickets is due."""
        spec = self._specs.get(o.call.account_key)
        if spec is not None and len(o.covers) >= spec.max_ids:
            return True
        return any(tickets[key].score <= now or tickets[key].started for key in o.covers)

    async def _settle_all(self, tickets: dict[str, ClaimedTicket], owner: str, now: int) -> None:
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
