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

A call whose send may have been applied (its claim was found unsettled, or its answer was a
timeout or a 5xx) is marked uncertain in the outbox; before it goes again its tickets are read
back and only what they lack is sent (`workers.resend`). A first send reads nothing.

With `TICKETWIRE_DURABILITY=fsync|replica` a claim and each checkpoint are acknowledged durable
before a call goes: a claim lost in a failover would make a call in flight look never sent, and
it would go again unread.

The parts: `workers.outboxqueue` (the Redis side: lists, due set, claims), `workers.flusher`
(claim, coalesce, batch, settle), `workers.sender` (send one call, read its answer for each
ticket), `workers.resend` (what of an uncertain call still goes), `workers.retrypolicy` (when a
failed call goes again or is given up), `workers.calltrace` (the trace records of what was sent)
and `workers.outboxpolicy` (the settings).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from redis.asyncio import Redis

from ticketwire.calls import ApiCall
from ticketwire.durability import Durability
from ticketwire.keys import Keys
from ticketwire.trace.writer import TraceWriter
from ticketwire.vendors import HelpdeskClient
from ticketwire.writeback import BatchSpec
from workers.calltrace import CallTrace
from workers.flusher import Flusher, Handback
from workers.outboxpolicy import OutboxPolicy
from workers.outboxqueue import OutboxQueue, ScriptPart
from workers.sender import Written

__all__ = ["Handback", "Outbox", "OutboxPolicy"]


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
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.policy = policy or OutboxPolicy()
        #: Where sent calls, retries and dead letters are traced; None when traces are off.
        self.trace = trace if trace is not None and trace.enabled else None
        self._queue = OutboxQueue(redis, keys, self.policy, durability)
        self._flusher = Flusher(
            self._queue,
            clients,
            owner=owner,
            specs=dict(specs or {}),
            rank=rank,
            on_written=on_written,
            trace=None if self.trace is None else CallTrace(self.trace, clients, self.policy),
        )
        #: Calls sent, counted here and added to the shared stats hash periodically.
        self.counters: Counter[str] = self._flusher.counters

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
        await self._queue.push(ticket_key, event_id, calls, also=also)
        self._flusher.wake()

    async def drain(self, ticket_key: str) -> None:
        """Make a ticket's queued calls due now (its wait is over)."""
        await self._queue.due_now(ticket_key)
        self._flusher.wake()

    @property
    def claimed(self) -> int:
        """Tickets the flush in progress holds (0 when idle)."""
        return self._flusher.claimed

    def start(self) -> None:
        """Run the flusher in the background until `stop()`."""
        self._flusher.start()

    async def stop(self, within: float = 0.0) -> Handback:
        """Stop the flusher, letting a flush in progress finish its sends for `within` seconds."""
        return await self._flusher.stop(within)

    async def flush_once(self) -> int:
        """Claim what is due (and what may join it), send it, settle it; return tickets claimed."""
        return await self._flusher.flush_once()
