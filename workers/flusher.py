"""The flusher: claim due tickets, coalesce and batch their calls, send them, settle the claim."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from ticketwire.durability import NotDurable
from ticketwire.stoptask import stop_task
from ticketwire.vendors import HelpdeskClient
from ticketwire.writeback import BatchSpec, Outgoing, batch, coalesce
from workers.calltrace import CallTrace
from workers.deadletter import dead_letter
from workers.outage import Outage
from workers.outboxqueue import OutboxQueue, now_ms
from workers.sender import ClaimedTicket, Sender, Written

log = logging.getLogger("ticketwire.worker")

#: Longest a stop takes, after its grace, to give back the claims of a flush it cut short.
HAND_BACK_S = 3.0


@dataclass
class _Flush:
    """A flush in progress: what it claimed, under which owner, and the tickets being sent."""

    owner: str
    now: int
    tickets: dict[str, ClaimedTicket]
    #: Tickets whose call is on its way to the helpdesk (from the echo record to the answer).
    sending: set[str] = field(default_factory=set)


@dataclass
class Handback:
    """What stopping the flusher did: tickets it settled, gave back, or left as maybe sent."""

    settled: int = 0
    released: int = 0
    in_flight: int = 0


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
        self._current: _Flush | None = None
        #: Tickets settled by the flush a stop let finish.
        self._settled_in_stop = 0

    @property
    def claimed(self) -> int:
        """Tickets the flush in progress holds (0 when idle)."""
        return 0 if self._current is None else len(self._current.tickets)

    def wake(self) -> None:
        """Look at the due set now: something was queued or made due."""
        self._wake.set()

    def start(self) -> None:
        """Run the flusher in the background until `stop()`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-flusher")

    async def stop(self, within: float = 0.0, *, hand_back_s: float = HAND_BACK_S) -> Handback:
        """Stop the flusher: it claims nothing more and a flush in progress ends after its sends.

        A flush still sending after `within` seconds is cut short: the tickets it claimed are
        given back, due now, except those whose call was on its way, whose claim is made to
        lapse now: whoever takes them next treats them as a claim that expired (the call may
        have gone out). Giving back takes at most `hand_back_s` more.
        """
        report = Handback()
        task, self._task = self._task, None
        if task is None:
            return report
        self._stopping = True
        self._wake.set()
        if within > 0:
            await asyncio.wait({task}, timeout=within)
        current = self._current if not task.done() else None
        await stop_task(task, "the outbox flusher")
        if current is None:
            report.settled = self._settled_in_stop
            return report
        report.in_flight = len(current.sending)
        report.released = len(current.tickets) - report.in_flight
        try:
            async with asyncio.timeout(hand_back_s):
                await self._settle_all(current.tickets, current.owner, current.now, current.sending)
                await self._queue.renew(current.owner, sorted(current.sending), lease_end=now_ms())
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "outbox flusher: could not give back %d claimed ticket(s) (%r); their claim "
                "lapses within %.0fs",
                len(current.tickets),
                exc,
                self.policy.lease_s,
            )
            report.released = 0
        return report

    async def _run(self) -> None:
        outage = Outage("outbox flusher", log)
        while not self._stopping:
            try:
                while not self._stopping and await self.flush_once():
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
        flush = self._current = _Flush(owner, now, tickets)
        try:
            await self._send_rounds(flush)
            await self._settle_all(tickets, owner, now)
        except asyncio.CancelledError:
            raise  # stopping: `stop()` gives back what `_current` holds
        except BaseException:
            self._current = None
            raise
        finally:
            renewer.cancel()
        self._current = None
        if self._stopping:
            self._settled_in_stop += len(tickets)
        return len(tickets)

    async def _keep_claim(self, owner: str, tickets: list[str]) -> None:
        """Extend the claim while a long flush (many rounds, slow answers) is still going."""
        every = self.policy.lease_s / 3
        while True:
            await asyncio.sleep(every)
            await self._queue.renew(owner, tickets)

    async def _send_rounds(self, flush: _Flush) -> None:
        tickets, now, owner = flush.tickets, flush.now, flush.owner
        sem = asyncio.Semaphore(self.policy.concurrency)
        spent: dict[str, float] = {}
        for t in tickets.values():
            # A retry claimed a little before its not-before time (the claim looks ahead by the
            # coalescing window) waits it out rather than ride along on a call that is due.
            if t.score > now and t.work.calls and t.work.calls[0].attempts:
                t.stopped, t.not_before = list(t.work.calls), t.score
        first = True
        while True:
            if self._stopping:
                # No new round once the stop began: the calls sent are done, the rest is
                # settled back, due now, for another worker.
                return
            if not first and not await self._record_progress(tickets, owner):
                return
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
                    # Left marked when cancelled: the call may have reached the helpdesk.
                    flush.sending.update(o.covers)
                    await self._sender.send(o, tickets, spent)
                    flush.sending.difference_update(o.covers)

            await asyncio.gather(*(go(o) for o in sendable))

    async def _record_progress(self, tickets: dict[str, ClaimedTicket], owner: str) -> bool:
        """Checkpoint tickets with calls done and calls still to go (before the next round).

        False when the checkpoint is not durable (it is made on the primary all the same): no
        further round goes, and what is left is settled back for a later claim.
        """
        moving = {
            key: t
            for key, t in tickets.items()
            if t.stopped is None and 0 < t.next < len(t.work.calls)
        }
        if not moving:
            return True
        durable = True
        try:
            await self._queue.checkpoint(
                owner,
                [(key, t.work.claimed, t.work.calls[t.next :]) for key, t in moving.items()],
            )
        except NotDurable as exc:
            log.warning("outbox flusher: %s; the next round waits for a later claim", exc)
            durable = False
        for t in moving.values():
            t.work.calls = t.work.calls[t.next :]
            t.work.claimed, t.next = len(t.work.calls), 0
        return durable

    def _ready(self, o: Outgoing, tickets: dict[str, ClaimedTicket], now: int) -> bool:
        """Send now, or wait for more tickets to join: full, or one of its tickets is due."""
        spec = self._specs.get(o.call.account_key)
        if spec is not None and len(o.covers) >= spec.max_ids:
            return True
        return any(tickets[key].score <= now or tickets[key].started for key in o.covers)

    async def _settle_all(
        self,
        tickets: dict[str, ClaimedTicket],
        owner: str,
        now: int,
        skip: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """Dead-letter what was given up, then settle every claimed ticket not in `skip`.

        A ticket that did not stop keeps the calls it did not send (a flush cut short).
        """
        for key, t in tickets.items():
            if t.dead is None or key in skip:
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
            t.dead = None  # a settle tried again after a stop does not letter it twice
        outcomes = []
        for key, t in tickets.items():
            if key in skip:
                continue
            rest = t.stopped if t.stopped is not None else t.work.calls[t.next :]
            score = max(t.not_before, now) if t.stopped is not None else now
            outcomes.append((key, t.work.claimed, score, rest))
        if outcomes:
            await self._queue.settle(owner, outcomes)
