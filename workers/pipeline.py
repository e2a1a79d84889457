"""What a worker does with one stored delivery: parse, run rules, guard loops, plan, write back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from redis.exceptions import RedisError

from ticketwire import metrics
from ticketwire.accountkey import DEFAULT
from ticketwire.engine import Decision, Plan, Router, evaluate
from ticketwire.engine.changes import field_changes
from ticketwire.engine.guard import firing_print
from ticketwire.engine.limits import limits_of, rearmed_by
from ticketwire.errors import MalformedEvent
from ticketwire.event import Event
from ticketwire.logs import set_log_context
from ticketwire.stored import StoredDelivery
from ticketwire.trace import codes as tc
from ticketwire.trace.writer import TraceWriter, short
from ticketwire.vendors import HelpdeskClient
from workers.deadletter import dead_letter
from workers.loopguard import LoopGuard
from workers.outbox import Outbox
from workers.ticketstate import TicketState

log = logging.getLogger("ticketwire.worker")

#: Longest wait between retries while Redis is unreachable.
MAX_REDIS_BACKOFF_S = 5.0


@dataclass(frozen=True)
class VendorRuntime:
    """A vendor as the worker sees it: parse raw bodies, plan calls, and its API client."""

    parse: Callable[[bytes], Event]
    plan: Callable[[Event, Sequence[Decision]], Plan]
    client: HelpdeskClient | None
    #: The API clients of the vendor's other accounts, by account name.
    accounts: Mapping[str, HelpdeskClient] = field(default_factory=dict)

    def client_of(self, account: str) -> HelpdeskClient | None:
        """The API client of `account` (None when this worker has none for it)."""
        return self.client if account == DEFAULT else self.accounts.get(account)


class Pipeline:
    """Turn one stored delivery into rule decisions and queued write-backs."""

    #: Rules skipped with the reason `paused`, as the rules follower last read them.
    paused: frozenset[str] = frozenset()

    def __init__(
        self,
        router: Router,
        vendors: dict[str, VendorRuntime],
        outbox: Outbox,
        guard: LoopGuard,
        *,
        state: TicketState | None = None,
        trace: TraceWriter | None = None,
    ) -> None:
        self.router = router
        self.vendors = vendors
        self.outbox = outbox
        self.guard = guard
        #: Last-seen ticket state: stale events are dropped, change operators compare with it.
        self.state = state
        #: Per vendor, the fields its rules read: all the state keeps of a ticket.
        self.read_fields = {name: router.read_fields(name) for name in vendors}
        self.counters: Counter[str] = Counter()
        #: Where each event's trace goes; None when traces are off (nothing is built then).
        self.trace = trace if trace is not None and trace.enabled else None
        self.rules_print = self._describe_rules(router)

    def use_rules(self, router: Router) -> None:
        """Run `router`'s rules on the events handled from now on.

        An event already being handled finishes with the rules it started with: `_handle` reads
        the router once, so a swap never lands in the middle of an event.
        """
        self.read_fields = {name: router.read_fields(name) for name in self.vendors}
        self.rules_print = self._describe_rules(router)
        self.router = router

    def _describe_rules(self, router: Router) -> str:
        """Store the rules' leaf descriptions for traces; return their fingerprint ("" if off)."""
        if self.trace is None:
            return ""
        texts = {
            r.name: (r.condition.leaf_texts() if r.condition is not None else [])
            for r in router.rules
        }
        canon = json.dumps(texts, sort_keys=True, separators=(",", ":"))
        fingerprint = hashlib.sha256(canon.encode()).hexdigest()[:16]
        self.trace.rules(fingerprint, texts)
        return fingerprint

    async def handle(self, delivery: StoredDelivery) -> None:
        """Process one delivery; never returns before it is handled or dead-lettered.

        The consumer acknowledges the entry when this returns, so a Redis outage is waited out
        here (the entry stays unacknowledged if the worker stops meanwhile) and anything else
        unexpected is dead-lettered with the event, never dropped.
        """
        set_log_context(
            vendor=delivery.vendor, event_id=delivery.event_id, ticket=delivery.ticket_key
        )
        delay = 0.1
        while True:
            # An attempt cut short by Redis is traced again in full by the next one.
            trace = _EventTrace() if self.trace is not None else None
            try:
                outcome = await self._handle(delivery, trace)
                if trace is not None:
                    self._traced(delivery, trace, outcome)
                return
            except (RedisError, OSError) as exc:
                log.warning(
                    "redis unavailable while handling event=%s (%s); retrying in %.1fs",
                    delivery.event_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_REDIS_BACKOFF_S)
            except Exception as exc:
                log.exception("internal error handling event=%s", delivery.event_id)
                metrics.event_done(delivery.vendor, "error", delivery.received_ms)
                await self._dead_letter(
                    delivery, f"internal error: {type(exc).__name__}: {exc}", trace=trace
                )
                if trace is not None:
                    self._traced(delivery, trace, tc.ERROR)
                return

    async def _dead_letter(
        self,
        delivery: StoredDelivery,
        reason: str,
        *,
        rule: str = "",
        trace: _EventTrace | None = None,
    ) -> None:
        # The letter carries the delivery itself, so a redrive can re-add it once fixed.
        await dead_letter(
            self.outbox.redis,
            self.outbox.keys,
            reason=reason,
            ticket_key=delivery.ticket_key,
            event_id=delivery.event_id,
            delivery=delivery,
            rule=rule,
            trace=trace.records.append if trace is not None else None,
        )

    def _traced(self, delivery: StoredDelivery, trace: _EventTrace, outcome: str) -> None:
        """Hand an event's records and its deliveries-list entry to the trace writer."""
        writer = self.trace
        if writer is None:
            return
        key, event_id = delivery.ticket_key, delivery.event_id
        fired = tc.RULE_SEP.join(trace.fired)
        records = trace.records
        if key and records and records[0][0] == tc.RECEIVED:
            # The entry is made from the `rx` record where the records are written.
            writer.event(key, event_id, records, outcome, fired)
            return
        for record in records:
            writer.record(key, event_id, record)
        writer.log(
            {
                "v": delivery.vendor,
                "a": "",
                "y": delivery.event_type,
                "e": event_id,
                "k": key,
                "o": outcome,
                "f": fired,
                "r": str(delivery.received_ms),
                "n": "" if delivery.account == DEFAULT else delivery.account,
            }
        )

    async def _handle(self, delivery: StoredDelivery, trace: _EventTrace | None = None) -> str:
        # One router for the whole event, whatever `use_rules` swaps in meanwhile.
        router, read_fields = self.router, self.read_fields
        vendor = self.vendors.get(delivery.vendor)
        if vendor is None:
            log.error(
                "skipped %s event=%s: no %s vendor configured in this worker",
                delivery.event_type,
                delivery.event_id,
                delivery.vendor,
            )
            self.counters["unconfigured"] += 1
            metrics.event_done(delivery.vendor, "unconfigured", delivery.received_ms)
            return tc.UNCONFIGURED
        try:
            event = vendor.parse(delivery.body)
            if delivery.account != DEFAULT:
                event = event.model_copy(update={"account": delivery.account})
        except MalformedEvent as exc:  # verified at intake; only a changed parser gets here
            log.error("skipped event=%s entry=%s: %s", delivery.event_id, delivery.entry_id, exc)
            self.counters["malformed"] += 1
            metrics.event_done(delivery.vendor, "malformed", delivery.received_ms)
            return tc.MALFORMED
        if trace is not None:
            received: tuple[Any, ...] = (
                tc.RECEIVED,
                event.vendor,
                event.tenant,
                event.type,
                event.ticket_id,
                delivery.received_ms,
                f"{delivery.partition}/{delivery.entry_id}" if delivery.entry_id else "",
                delivery.deliveries,
                self.rules_print,
            )
            # A named account only: the default account's records stay as they were.
            if event.account != DEFAULT:
                received += (event.account,)
            trace.records.append(received)
        rerun = f", re-run #{delivery.deliveries}" if delivery.deliveries > 1 else ""
        # The event still updates the ticket's last-seen state below: later events compare
        # with it even when no rule acts on this one.
        idle = (
            ""
            if router.rules_for(event.type, event.vendor, event.account)
            else f": no rule listens to {event.type} on {event.vendor}"
        )
        log.info(
            "processing %s %s event=%s ticket=%s%s%s",
            event.vendor,
            event.type,
            event.id,
            event.ticket_id,
            rerun,
            idle,
        )
        prefetched = None
        if self.state is not None and event.ticket_id:
            fields = read_fields.get(event.vendor)
            if fields is None:
                fields = read_fields[event.vendor] = router.read_fields(event.vendor)
            redriven = delivery.redriven_from
            # A redriven event applied before (the state remembers its recent ones) is not
            # stale: it compares with the same earlier state as the first time.
            seen = await self.state.observe(
                event,
                fields,
                record_stale=not redriven,
                # The loop guard's reads ride along: a firing event needs no round trip for them.
                guard_keys=self.guard.prefetch_keys(event.ticket_key),
                guard_since_ms=self.guard.fuse_since_ms(),
                trace=trace.records.append if trace is not None else None,
            )
            if seen.stale and redriven:
                # Redriven by hand after a fix, from further back than the state remembers: it
                # runs as asked, with no earlier state to compare, and the state is untouched.
                log.info(
                    "event=%s redriven from dead letter %s: %s; run as asked",
                    event.id,
                    redriven,
                    seen.stale_reason(event),
                )
            elif seen.stale:
                # Acting on an older version of the ticket could undo what a newer event did.
                log.info(
                    "stale event=%s ticket=%s: %s; not acted on",
                    event.id,
                    event.ticket_id,
                    seen.stale_reason(event),
                )
                self.counters["stale"] += 1
                metrics.event_stale(delivery.vendor, delivery.received_ms)
                return tc.STALE
            else:
                event = event.model_copy(update={"previous": seen.previous})
                prefetched = seen.prefetched
        # Explaining why a rule was skipped costs more than deciding it; only do it when the
        # log will show the explanation.
        explain = log.isEnabledFor(logging.INFO)
        # A rule's own log lines wait for the loop guard: a suppressed firing must not log as
        # if it ran.
        decisions = await evaluate(
            router,
            event,
            helpdesk=vendor.client_of(event.account),
            log=log,
            explain=explain,
            hold_log=True,
            trace=trace is not None,
            paused=self.paused,
        )
        for d in decisions:
            if not (d.fired and d.actions):
                d.emit_log()
            if d.error is not None:
                # Kept as a dead letter so the event can be redriven once the rule is fixed.
                await self._dead_letter(
                    delivery,
                    f"rule {d.rule.name} failed: {d.reason}",
                    rule=d.rule.name,
                    trace=trace,
                )
            elif not d.fired:
                log.info("rule %s skipped on ticket=%s: %s", d.rule.name, event.ticket_id, d.reason)
        firing = [d for d in decisions if d.fired and d.actions]
        prints = [(d.rule.name, firing_print(d.actions, event)) for d in firing]
        # A disarmed rule re-arms on any event of its ticket, whether or not the rule runs on it.
        rearm, broken = rearmed_by(router, event)
        for name, why in broken:
            log.warning(
                "rule %s rearm condition failed on ticket=%s: %s", name, event.ticket_id, why
            )
        limits = limits_of(d.rule for d in firing)
        changes = field_changes(event) if prints or trace is not None else None
        if trace is not None and changes:
            # A new ticket "changes" every field it has: only those the rules read are kept.
            keep = read_fields.get(event.vendor, ()) if event.previous is None else None
            trace.records.append(
                (
                    tc.CHANGES,
                    [
                        [f, short(old), short(new)]
                        for f, (old, new) in changes.items()
                        if keep is None or f in keep or f.startswith("common.")
                    ],
                )
            )
        verdict = await self.guard.check(
            event.ticket_key,
            prints,
            event_id=event.id,
            limits=limits,
            rearm=rearm,
            changes=changes if prints else None,
            vendor=event.vendor,
            prefetched=prefetched,
        )
        for name in verdict.rearmed:
            log.info(
                "rule %s re-armed on ticket=%s: %s",
                name,
                event.ticket_id,
                router.get(name).limits.rearm_text(),
            )
        held = {d.rule.name: d.withheld() for d in firing}
        for name, why in verdict.suppressed:
            log.info(
                "rule %s suppressed on ticket=%s: %s%s",
                name,
                event.ticket_id,
                why,
                held.get(name, ""),
            )
        kept = [d for d in firing if d.rule.name in verdict.allowed]
        metrics.decided(decisions, kept, verdict.suppressed)
        for d in kept:
            d.emit_log()
            log.info(
                "rule %s fired on ticket=%s: %s",
                d.rule.name,
                event.ticket_id,
                "; ".join(_show(a.name, a.params) for a in d.actions),
            )
        plan = vendor.plan(event, kept)
        for note in plan.notes:
            log.info("plan ticket=%s: %s", event.ticket_id, note)
        if trace is not None:
            self._trace_rules(trace, decisions, verdict.allowed, verdict.suppressed, verdict.codes)
            if plan.calls:
                trace.records.append(
                    (
                        tc.PLANNED,
                        [[c.fingerprint(), c.method, c.path, c.body, c.rules] for c in plan.calls],
                    )
                )
        record = self.guard.record_part(
            event.ticket_key,
            [p for p in prints if p[0] in verdict.allowed],
            event_id=event.id,
            limits=limits,
            rearmed=verdict.rearmed,
        )
        if plan.calls:
            # Where the call came from, so a dead letter can show the event while it is kept.
            origin = f"{delivery.partition}/{delivery.entry_id}" if delivery.entry_id else ""
            calls = [replace(c, origin=origin, account=event.account) for c in plan.calls]
            # The firings are recorded in the same call that queues their write-backs.
            await self.outbox.submit(event.ticket_key, event.id, calls, also=record)
        else:
            if record is not None:
                await self.guard.run(record)
            if kept:
                log.info(
                    "ticket=%s needs no API call: already in the target state", event.ticket_id
                )
        self.counters["processed"] += 1
        metrics.event_handled(delivery.vendor, delivery.received_ms)
        self.counters["fired"] += len(kept)
        return tc.HANDLED

    def _trace_rules(
        self,
        trace: _EventTrace,
        decisions: Sequence[Decision],
        allowed: Sequence[str],
        suppressed: Sequence[tuple[str, str]],
        reasons: Sequence[list[Any]],
    ) -> None:
        """One `ru` record per rule considered, and the rules' hourly counts."""
        append = trace.records.append
        for d in decisions:
            if d.fired or d.error is not None:
                self._trace_rule(trace, d, allowed, suppressed, reasons)
                continue
            reason = d.reason
            if reason == "paused":
                self._trace_rule(trace, d, allowed, suppressed, reasons)
                continue
            # Most rules on most events: a condition false (or no actions), nothing counted.
            outcome = _NO_ACTIONS if reason == "no actions" else _CONDITION_FALSE
            append((_RULE, d.rule.name, outcome, d.leaves or [], None))

    def _trace_rule(
        self,
        trace: _EventTrace,
        d: Decision,
        allowed: Sequence[str],
        suppressed: Sequence[tuple[str, str]],
        reasons: Sequence[list[Any]],
    ) -> None:
        """The `ru` record of a rule that fired, was held back, failed or is paused."""
        writer = self.trace
        assert writer is not None
        name = d.rule.name
        detail: Any = None
        if d.fired and d.actions:
            if name in allowed:
                outcome, stat = tc.RULE_FIRED, tc.STAT_FIRED
                trace.fired.append(name)
            else:
                outcome, stat = tc.RULE_SUPPRESSED, tc.STAT_SUPPRESSED
                held = dict(zip([n for n, _ in suppressed], reasons, strict=False))
                detail = held.get(name)
        elif d.error is not None:
            outcome, stat, detail = tc.RULE_ERROR, tc.STAT_ERROR, d.reason
        elif d.reason == "paused":
            outcome, stat = tc.RULE_PAUSED, tc.STAT_PAUSED
        else:
            outcome, stat = tc.RULE_NO_ACTIONS, ""
        trace.records.append((_RULE, name, outcome, d.leaves or [], detail))
        if stat:
            writer.rule_count(name, stat)


# Read once: the record of a rule that did not fire is built on every event for every rule.
_RULE, _NO_ACTIONS, _CONDITION_FALSE = tc.RULE, tc.RULE_NO_ACTIONS, tc.RULE_CONDITION_FALSE


class _EventTrace:
    """One event's trace records, gathered while it is handled and written when it is done."""

    __slots__ = ("fired", "records")

    def __init__(self) -> None:
        self.fired: list[str] = []
        self.records: list[Any] = []


def _show(name: str, params: object) -> str:
    return f"{name} {params}"
