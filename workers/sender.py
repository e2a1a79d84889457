"""Send one write-back call and settle, per ticket it covers, what its answer means."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any, Unpack

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
from ticketwire.writeback import BatchSpec, Outgoing, Pending, TicketWork, single
from workers.calltrace import Answer, CallTrace, Heads, api_root
from workers.outboxpolicy import OutboxPolicy
from workers.outboxqueue import now_ms
from workers.resend import resend, uncertain
from workers.retrypolicy import attempt_record, gave_up, may_have_applied, next_try

log = logging.getLogger("ticketwire.worker")

#: Called with (ticket key, the ticket's own call) pairs about to be sent.
Written = Callable[[Sequence[tuple[str, ApiCall]]], Awaitable[None]]


@dataclass
class ClaimedTicket:
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


@dataclass(eq=False)
class Sender:
    """Send outgoing calls for a flusher, each under its account's budget, and read the answers."""

    clients: Mapping[str, HelpdeskClient]
    _: KW_ONLY
    specs: Mapping[str, BatchSpec]
    policy: OutboxPolicy
    on_written: Written | None
    trace: CallTrace | None
    #: Calls sent, counted here and added to the shared stats hash periodically.
    counters: Counter[str] = field(default_factory=Counter, init=False)

    async def send(
        self, o: Outgoing, tickets: dict[str, ClaimedTicket], spent: dict[str, float]
    ) -> None:
        """Send a call; mark each covered ticket done, stopped for later, or given up on."""
        call = o.call
        started = now_ms()
        if spent.get(call.account_key, 0) > started:
            self._stop(o, tickets, int(spent[call.account_key]), None)
            return
        try:
            client = self._client(call)
            if uncertain(o, self._head_of(o, tickets)):
                # Its last send may have been applied: only what the tickets lack goes.
                again = await self._resend(o, tickets, client, started)
                if again is None:
                    return
                o, call = again, again.call
            if self.on_written is not None:
                # Recorded before sending: the helpdesk may send the webhook our write causes
                # before it answers us, and that webhook must be recognised as our echo.
                await self.on_written(
                    [(key, tickets[key].work.calls[tickets[key].next].call) for key in o.covers]
                )
            result = await client.send(call)
        except BudgetSpent as exc:
            until = now_ms() + int(exc.retry_after * 1000)
            spent[call.account_key] = until
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
            spent[call.account_key] = until
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
                        head.call,
                        (*head.attempts, attempt_record(exc, now_ms())),
                        solo=True,
                        uncertain=head.uncertain,
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

    @staticmethod
    def _head_of(o: Outgoing, tickets: dict[str, ClaimedTicket]) -> dict[str, Pending]:
        return {key: tickets[key].work.calls[tickets[key].next] for key in o.covers}

    async def _resend(
        self, o: Outgoing, tickets: dict[str, ClaimedTicket], client: HelpdeskClient, started: int
    ) -> Outgoing | None:
        """Read the uncertain tickets of `o`; settle those already done; return what goes now."""
        heads = self._head_of(o, tickets)
        plan = await resend(o, heads, client, self.specs.get(o.call.account_key))
        for key, rest in plan.rest.items():
            head = heads[key]
            # A ticket that leaves a bulk call goes on its own, in the next round.
            alone = head.solo or len(o.covers) > 1
            tickets[key].work.calls[tickets[key].next] = Pending(rest, head.attempts, alone)
        if plan.send is not None:
            for key in plan.send.covers:
                t = tickets[key]
                t.work.calls[t.next] = replace(t.work.calls[t.next], uncertain=False)
        if plan.done:
            done = Outgoing(o.call, tuple(plan.done))
            self.counters["api_calls_reconciled"] += len(plan.done)
            self._trace_sent(done, tickets, "reconciled: already applied, not sent", started)
            _advance(tickets, plan.done)
            log.info(
                "api %s: reconciled, not sent again: %d ticket(s) already show it (rules: %s)",
                self._describe(done),
                len(plan.done),
                ", ".join(o.call.rules) or "-",
            )
        return plan.send

    def _trace_sent(
        self,
        o: Outgoing,
        tickets: dict[str, ClaimedTicket],
        status: int | str,
        started: int,
        **answer: Unpack[Answer],
    ) -> None:
        """Trace the call to each ticket it covers, when traces are on."""
        if self.trace is not None:
            self.trace.sent(o.call, self._heads(o, tickets), status, started, **answer)

    @staticmethod
    def _heads(o: Outgoing, tickets: dict[str, ClaimedTicket]) -> Heads:
        """Each ticket the call covers, with its own queued call the call carries."""
        return [(key, tickets[key].work.calls[tickets[key].next]) for key in o.covers]

    def _stop(
        self,
        o: Outgoing,
        tickets: dict[str, ClaimedTicket],
        not_before: int,
        attempt: dict[str, Any] | None,
    ) -> None:
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            if attempt is not None:
                head = replace(head, attempts=(*head.attempts, attempt))
            t.stopped, t.not_before = [head, *t.work.calls[t.next + 1 :]], not_before

    def _done(self, o: Outgoing, tickets: dict[str, ClaimedTicket], result: ApiResult) -> None:
        self.counters["api_calls"] += 1
        self.counters["api_call_tickets"] += len(o.covers)
        _advance(tickets, o.covers)
        log.info(
            "api %s → %d in %.0fms (rules: %s)",
            self._describe(o),
            result.status,
            result.elapsed_ms,
            ", ".join(o.call.rules) or "-",
        )

    def _retry_later(
        self, o: Outgoing, tickets: dict[str, ClaimedTicket], exc: HelpdeskError, started: int = 0
    ) -> None:
        attempt = attempt_record(exc, now_ms())
        metrics.api_retry(o.call.vendor, "unavailable")
        # Backoff counts from when the failure was known (after a timeout, the timeout's end),
        # not from when the request went out.
        now = attempt["at"]
        if self.trace is not None:
            self.trace.retries(o.call, self._heads(o, tickets), exc, started or now, now)
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            attempts = (*head.attempts, attempt)
            at = next_try(self.policy, len(attempts), now)
            if at is None:
                t.stopped, t.not_before = [*t.work.calls[t.next + 1 :]], now
                t.dead = (Pending(head.call, attempts), f"{exc} ({gave_up(len(attempts))})")
                continue
            # No answer, or a 5xx: the helpdesk may have applied it. Read before sending again
            # (and still, when it was the read before a re-send that failed).
            doubt = head.uncertain or may_have_applied(attempt)
            t.stopped = [
                Pending(head.call, attempts, head.solo, doubt),
                *t.work.calls[t.next + 1 :],
            ]
            t.not_before = at
        log.warning(
            "api %s → %s; %d ticket(s) retry with backoff (attempt %d of %d)",
            self._describe(o),
            exc,
            len(o.covers),
            max(len(tickets[k].work.calls[tickets[k].next].attempts) + 1 for k in o.covers),
            self.policy.max_attempts,
        )

    def _partial(self, o: Outgoing, tickets: dict[str, ClaimedTicket], exc: PartialFailure) -> None:
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
            spec = self.specs.get(head.call.account_key)
            reason = exc.failed.get(ticket_id, "")
            # Each id on its own answer: one id's permanent refusal must not dead-letter another
            # id whose failure a retry may fix, nor the other way round.
            transient = ticket_id in exc.transient
            # A transient failure may be one the answer could not account for: read first.
            own = Pending(
                single(head.call, ticket_id, spec), (*head.attempts, attempt), True, transient
            )
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
        self, o: Outgoing, tickets: dict[str, ClaimedTicket], exc: BaseException, why: str
    ) -> None:
        attempt = attempt_record(exc, now_ms())
        for key in o.covers:
            t = tickets[key]
            head = t.work.calls[t.next]
            t.stopped, t.not_before = [*t.work.calls[t.next + 1 :]], now_ms()
            t.dead = (Pending(head.call, (*head.attempts, attempt)), f"{exc} ({why})")

    def _describe(self, o: Outgoing) -> str:
        """The call for a log line, with its path as sent (`/api/v1/tickets/42`, not `/tickets/42`)."""
        return _describe(o, api_root(self.clients.get(o.call.account_key)))

    def _client(self, call: ApiCall) -> HelpdeskClient:
        try:
            return self.clients[call.account_key]
        except KeyError:
            what = call.vendor if call.account == "default" else f"{call.vendor} {call.account}"
            raise HelpdeskError(f"no {what} API configured for this worker") from None


def _describe(o: Outgoing, root: str = "") -> str:
    call = replace(o.call, path=root + o.call.path) if root else o.call
    if len(o.covers) <= 3:
        return call.describe()
    shown = {k: v for k, v in call.body.items() if not isinstance(v, list) or len(v) <= 5}
    return (
        f"{call.method} {call.path} {json.dumps(shown, sort_keys=True)} for {len(o.covers)} tickets"
    )


def _advance(tickets: dict[str, ClaimedTicket], keys: Iterable[str]) -> None:
    """Mark each ticket's current call as settled: the next call is its next one."""
    for key in keys:
        t = tickets[key]
        t.next += 1
        t.started = True
