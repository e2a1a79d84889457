"""Time-based rules: an arq cron job every minute runs the scheduled rules that are due.

One run of a rule at a time, across every worker: a Redis lock (SET NX PX with a token,
renewed while the run lasts, released by compare-and-delete). A rule that comes due while its
previous run is still going skips that run and says so in the log. Every run also leaves its
state under its minute (`running`, `done`, `skipped`), so a run whose worker died is run again
by the next tick, and a run missed while no worker was up (a deploy) is made up once, both
within `CATCH_UP_MINUTES`.

A run lists the rule's tickets through the vendor's list API (`select:`), then for each ticket
builds a `ticket.scheduled` event and goes the way of a webhook's: the rule's condition and
actions, the loop guard, the vendor's planner (which drops what the ticket already has) and the
outbox. Event ids are `sched:<rule>:<minute>:<ticket>`, so a run repeated for the same minute
queues each ticket's write-backs once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arq.cron import cron
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticketwire.config import Settings
from ticketwire.engine import Router, Rule, plan, run_rule
from ticketwire.engine.guard import firing_print
from ticketwire.engine.limits import limits_of, rearmed_by
from ticketwire.engine.schedule import run_minute, show_minute
from ticketwire.engine.select import listed_event
from ticketwire.errors import HelpdeskError
from ticketwire.keys import Keys
from ticketwire.stored import StoredDelivery
from ticketwire.vendors import HelpdeskClient
from ticketwire.vendors.registry import active
from workers.loopguard import LoopGuard
from workers.outbox import Outbox

log = logging.getLogger("ticketwire.schedule")

#: A run missed or cut short this recently is still made up; older ones are left to the next.
CATCH_UP_MINUTES = 60
#: How long a run's state is kept (well past the catch-up window).
RUN_STATE_TTL_S = 24 * 3600
#: The run lock's lifetime; it is renewed every third of it while the run lasts.
LOCK_TTL_S = 60.0
#: The longest one tick may take before arq cancels it (its runs are then made up).
TICK_TIMEOUT_S = 3600.0
#: Longest the release of a run's lock may take (at a stop, Redis may be down).
FINISH_TIMEOUT_S = 5.0
#: Tickets of one run evaluated and queued at once.
TICKET_CONCURRENCY = 8
#: Stream entries read per partition when looking for a vendor's tenant id.
_TENANT_SCAN = 200
#: The tenant of a scheduled event when no webhook of the vendor has been stored yet.
UNKNOWN_TENANT = "-"

# KEYS: run state, lock. ARGV: lock value, lock TTL ms, state TTL s.
# {0}: the run is done or was skipped; {1}: claimed, run it; {2, holder}: another run holds the
# lock, this one is skipped; {3, holder}: this run is going on somewhere; {4}: claimed again
# after its previous attempt stopped before it finished.
_CLAIM_LUA = """
local state = redis.call('GET', KEYS[1])
if state == 'done' or state == 'skipped' then return {0} end
local holder = redis.call('GET', KEYS[2])
if holder then
  if state then return {3, holder} end
  redis.call('SET', KEYS[1], 'skipped', 'EX', ARGV[3])
  return {2, holder}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[1], 'running', 'EX', ARGV[3])
if state then return {4} end
return {1}
"""

# KEYS: lock. ARGV: lock value, TTL ms. 1 while we still hold it.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lock, run state. ARGV: lock value, final state ('' keeps it), state TTL s.
_FINISH_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


@dataclass
class RunReport:
    """What one run of a scheduled rule did: the one log line per run, and the tests' view."""

    rule: str
    minute: datetime
    listed: int = 0
    fired: int = 0
    calls: int = 0
    suppressed: int = 0
    errors: int = 0
    #: The listing stopped at TICKETWIRE_SCHEDULE_MAX_TICKETS with more tickets left.
    capped: bool = False
    #: Why the listing stopped early (the tickets listed until then were still acted on).
    list_error: str | None = None
    duration_s: float = 0.0

    def line(self) -> str:
        """`scheduled rule X run of 10:15: 12 tickets listed, 3 fired, 3 calls queued, 0.41s`."""
        text = (
            f"scheduled rule {self.rule} run of {show_minute(self.minute)}: "
            f"{self.listed} ticket{'s' if self.listed != 1 else ''} listed, {self.fired} fired, "
            f"{self.calls} call{'s' if self.calls != 1 else ''} queued, {self.duration_s:.2f}s"
        )
        if self.suppressed:
            text += f"; {self.suppressed} suppressed by the loop guard"
        if self.errors:
            text += f"; {self.errors} failed (see above)"
        if self.capped:
            text += (
                f"; stopped at the cap of {self.listed} tickets "
                "(TICKETWIRE_SCHEDULE_MAX_TICKETS): the rest wait for the next run"
            )
        if self.list_error:
            text += f"; listing stopped early: {self.list_error}"
        return text


class Tenants:
    """The tenant id scheduled events carry, so their ticket keys match the webhooks' ones.

    Configured where a vendor's settings name it (its bundle's `tenant`); otherwise read
    from the newest stored delivery of the vendor, and remembered once found.
    """

    def __init__(
        self, redis: Redis, keys: Keys, *, partitions: int, known: Mapping[str, str | None]
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._partitions = partitions
        self._found: dict[str, str] = {k: v for k, v in known.items() if v}
        self._warned: set[str] = set()

    async def get(self, vendor: str) -> str:
        """The tenant of `vendor`'s tickets, or `-` when no webhook of it was stored yet."""
        tenant = self._found.get(vendor)
        if tenant is None:
            tenant = await self._discover(vendor)
        if tenant is None:
            if vendor not in self._warned:
                self._warned.add(vendor)
                log.warning(
                    "scheduled rules for %s: no %s webhook stored yet, so its tenant id is "
                    "unknown; their write-backs queue apart from webhook-driven ones of the same "
                    "ticket until one arrives",
                    vendor,
                    vendor,
                )
            return UNKNOWN_TENANT
        self._found[vendor] = tenant
        return tenant

    async def _discover(self, vendor: str) -> str | None:
        prefix = f"{vendor}:"
        for partition in range(self._partitions):
            entries = await self._redis.xrevrange(self._keys.stream(partition), count=_TENANT_SCAN)
            for entry_id, fields in entries:
                try:
                    stored = StoredDelivery.from_fields(entry_id, fields)
                except (KeyError, ValueError, TypeError):
                    continue
                if stored.vendor != vendor or not stored.ticket_key.startswith(prefix):
                    continue
                # ticket_key is `vendor:tenant:ticket_id`; ticket ids carry no colon.
                tenant = stored.ticket_key[len(prefix) :].rpartition(":")[0]
                if tenant:
                    return tenant
        return None


class Scheduler:
    """Run the due scheduled rules of a router: claim, lock, list, evaluate, guard, plan, queue."""

    def __init__(
        self,
        router: Router,
        redis: Redis,
        keys: Keys,
        clients: Mapping[str, HelpdeskClient],
        outbox: Outbox,
        guard: LoopGuard,
        tenants: Tenants,
        *,
        owner: str,
        max_tickets: int,
        lock_ttl_s: float = LOCK_TTL_S,
        catch_up_minutes: int = CATCH_UP_MINUTES,
        concurrency: int = TICKET_CONCURRENCY,
    ) -> None:
        self.rules: list[Rule] = []
        #: Rules skipped with the reason `paused` (set by the rules follower, `workers.reload`).
        self.paused: frozenset[str] = frozenset()
        self.use_rules(router)
        self._redis = redis
        self._keys = keys
        self._clients = clients
        self._outbox = outbox
        self._guard = guard
        self._tenants = tenants
        self._owner = owner
        self._max_tickets = max_tickets
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._renew_every_s = lock_ttl_s / 3
        self._catch_up = catch_up_minutes
        self._concurrency = concurrency
        self._claim = redis.register_script(_CLAIM_LUA)
        self._renew = redis.register_script(_RENEW_LUA)
        self._finish = redis.register_script(_FINISH_LUA)

    def use_rules(self, router: Router) -> None:
        """Run `router`'s scheduled rules from the next tick on (a run going on finishes)."""
        self.rules = [r for r in router.rules if r.schedule is not None]

    async def tick(self, now: datetime) -> list[RunReport]:
        """Run every rule due at `now` (or missed shortly before), side by side; one report each."""
        minute = run_minute(now)
        runs = []
        for rule in self.rules:
            assert rule.schedule is not None
            due = rule.schedule.latest_due(minute, lookback_minutes=self._catch_up)
            if due is not None and rule.name in self.paused:
                await self._skip_paused(rule, due)
            elif due is not None:
                runs.append(self.run(rule, due, now=minute))
        reports: list[RunReport] = []
        for rule_result in await asyncio.gather(*runs, return_exceptions=True):
            if isinstance(rule_result, RunReport):
                reports.append(rule_result)
            elif isinstance(rule_result, BaseException):
                if isinstance(rule_result, asyncio.CancelledError):
                    raise rule_result
                log.error("scheduled run failed: %s: %s", type(rule_result).__name__, rule_result)
        return reports

    async def _skip_paused(self, rule: Rule, minute: datetime) -> None:
        """Mark a paused rule's run skipped, so resuming it does not make the run up."""
        state_key = self._keys.schedule_run(rule.name, run_minute(minute).strftime("%Y%m%dT%H%MZ"))
        try:
            first = await self._redis.set(state_key, "skipped", ex=RUN_STATE_TTL_S, nx=True)
        except (RedisError, OSError):
            return  # the next tick skips it again
        if first:
            log.info("scheduled rule %s: run of %s skipped: paused", rule.name, show_minute(minute))

    async def run(
        self, rule: Rule, minute: datetime, *, now: datetime | None = None
    ) -> RunReport | None:
        """Run `rule` for `minute` unless that run is done, skipped, or going on elsewhere.

        Returns None when it did not run here.
        """
        minute = run_minute(minute)
        stamp = minute.strftime("%Y%m%dT%H%MZ")
        lock_key, state_key = (
            self._keys.schedule_lock(rule.name),
            self._keys.schedule_run(rule.name, stamp),
        )
        value = json.dumps(
            {
                "token": uuid.uuid4().hex,
                "minute": minute.isoformat(),
                "worker": self._owner,
                "started_ms": int(time.time() * 1000),
            }
        )
        claimed = await self._claim(
            keys=[state_key, lock_key], args=[value, self._lock_ttl_ms, RUN_STATE_TTL_S]
        )
        outcome = int(claimed[0])
        if outcome == 0:
            return None
        if outcome in (2, 3):
            holder = _holder(claimed[1])
            if outcome == 2:
                log.info(
                    "scheduled rule %s: run of %s skipped; the run started %s is still going%s",
                    rule.name,
                    show_minute(minute, beside=minute),
                    show_minute(holder[0], beside=minute) if holder[0] else "earlier",
                    f" (worker {holder[1]})" if holder[1] else "",
                )
                await self._count("scheduled_skipped")
            return None
        if outcome == 4:
            log.warning(
                "scheduled rule %s: running the run of %s again; its previous attempt stopped "
                "before it finished (worker gone?)",
                rule.name,
                show_minute(minute),
            )
        elif now is not None and minute < run_minute(now):
            log.info(
                "scheduled rule %s: making up the run of %s, missed while no worker ran it",
                rule.name,
                show_minute(minute),
            )
        return await self._locked(rule, minute, lock_key, state_key, value)

    async def _locked(
        self, rule: Rule, minute: datetime, lock_key: str, state_key: str, value: str
    ) -> RunReport | None:
        task = asyncio.create_task(self.execute(rule, minute), name=f"schedule:{rule.name}")
        final = "done"
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._renew_every_s)
                if done:
                    break
                if not await self._still_ours(lock_key, value):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    log.error(
                        "scheduled rule %s: run of %s stopped: its lock expired (Redis "
                        "unreachable for %.0fs?); the next tick runs it again",
                        rule.name,
                        show_minute(minute),
                        self._lock_ttl_ms / 1000,
                    )
                    return None
            try:
                return task.result()
            except (RedisError, OSError):
                # Left `running`: the next tick runs it again once Redis answers.
                final = ""
                raise
            except Exception:
                log.exception("scheduled rule %s: run of %s failed", rule.name, show_minute(minute))
                return None
        except asyncio.CancelledError:
            # Shutting down: leave the run `running`, so another worker finishes it.
            final = ""
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise
        finally:
            # Shielded and bounded: a stop that cancels again must not leave the lock held,
            # and a Redis that is down must not hold the stop.
            finish = asyncio.ensure_future(
                self._finish(keys=[lock_key, state_key], args=[value, final, RUN_STATE_TTL_S])
            )
            with contextlib.suppress(RedisError, OSError, TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(FINISH_TIMEOUT_S):
                    await asyncio.shield(finish)

    async def _still_ours(self, lock_key: str, value: str) -> bool:
        try:
            return bool(await self._renew(keys=[lock_key], args=[value, self._lock_ttl_ms]))
        except (RedisError, OSError) as exc:
            # The lock may still be ours; the next renewal (before it expires) tells.
            log.warning("scheduled run: could not renew its lock (%s); retrying", exc)
            return True

    async def execute(self, rule: Rule, minute: datetime) -> RunReport:
        """One run of `rule` for `minute`, without the lock: list, then act on each ticket."""
        assert rule.vendor is not None
        started = time.monotonic()
        minute = run_minute(minute)
        report = RunReport(rule.name, minute)
        client = self._clients.get(rule.vendor)
        if client is None:
            report.list_error = f"no {rule.vendor} API configured in this worker"
        else:
            tickets = await self._list(rule, client, minute, report)
            tenant = await self._tenants.get(rule.vendor)
            # Explaining a skipped ticket costs more than deciding it; only when it is logged.
            explain = log.isEnabledFor(logging.DEBUG)
            gate = asyncio.Semaphore(self._concurrency)

            async def one(item: Mapping[str, Any]) -> None:
                async with gate:
                    await self._ticket(rule, minute, tenant, client, item, report, explain)

            await asyncio.gather(*(one(item) for item in tickets))
        report.duration_s = time.monotonic() - started
        level = logging.WARNING if report.list_error or report.errors else logging.INFO
        log.log(level, "%s", report.line())
        await self._count("scheduled_runs", fired=report.fired)
        return report

    async def _list(
        self, rule: Rule, client: HelpdeskClient, minute: datetime, report: RunReport
    ) -> list[Mapping[str, Any]]:
        filters = rule.select.filters(minute) if rule.select is not None else {}
        found: dict[str, Mapping[str, Any]] = {}
        try:
            async for item in client.list_tickets(**filters):
                ticket_id = item.get("id") if isinstance(item, Mapping) else None
                if ticket_id is None:
                    report.errors += 1
                    log.warning("scheduled rule %s: a listed ticket has no id; skipped", rule.name)
                    continue
                # Offset paging can show a ticket twice when others move between pages.
                if str(ticket_id) in found:
                    continue
                if len(found) >= self._max_tickets:
                    report.capped = True
                    break
                found[str(ticket_id)] = item
        except HelpdeskError as exc:
            report.list_error = f"{type(exc).__name__}: {exc}"
        except (ValueError, TypeError) as exc:
            report.list_error = f"the list filters were refused: {exc}"
        report.listed = len(found)
        return list(found.values())

    async def _ticket(
        self,
        rule: Rule,
        minute: datetime,
        tenant: str,
        client: HelpdeskClient,
        item: Mapping[str, Any],
        report: RunReport,
        explain: bool,
    ) -> None:
        assert rule.vendor is not None
        try:
            event = listed_event(rule.vendor, item, rule=rule.name, tenant=tenant, run_at=minute)
        except ValueError as exc:
            report.errors += 1
            log.warning("scheduled rule %s: %s; skipped", rule.name, exc)
            return
        # The rule's own log lines wait for the loop guard, as for a webhook's event.
        decision = await run_rule(
            rule, event, helpdesk=client, log=log, explain=explain, hold_log=True
        )
        if not (decision.fired and decision.actions):
            decision.emit_log()
        if decision.error is not None:
            report.errors += 1
            log.error(
                "scheduled rule %s failed on ticket=%s: %s",
                rule.name,
                event.ticket_id,
                decision.reason,
            )
            return
        if not decision.fired or not decision.actions:
            log.debug(
                "scheduled rule %s skipped ticket=%s: %s",
                rule.name,
                event.ticket_id,
                decision.reason,
            )
            return
        prints = [(rule.name, firing_print(decision.actions, event))]
        limits = limits_of([rule])
        rearm, _broken = rearmed_by([rule], event)
        verdict = await self._guard.check(
            event.ticket_key, prints, event_id=event.id, limits=limits, rearm=rearm
        )
        for name, why in verdict.suppressed:
            report.suppressed += 1
            log.info(
                "scheduled rule %s suppressed on ticket=%s: %s%s",
                name,
                event.ticket_id,
                why,
                decision.withheld(),
            )
        if rule.name not in verdict.allowed:
            return
        decision.emit_log()
        log.info(
            "scheduled rule %s fired on ticket=%s (%s): %s",
            rule.name,
            event.ticket_id,
            event.id,
            "; ".join(a.describe() for a in decision.actions),
        )
        planned = plan(event, [decision])
        for note in planned.notes:
            log.info("plan ticket=%s: %s", event.ticket_id, note)
        await self._guard.record(
            event.ticket_key, prints, event_id=event.id, limits=limits, rearmed=verdict.rearmed
        )
        report.fired += 1
        if planned.calls:
            await self._outbox.submit(event.ticket_key, event.id, planned.calls)
            report.calls += len(planned.calls)
        else:
            log.info("ticket=%s needs no API call: already in the target state", event.ticket_id)

    async def _count(self, name: str, *, fired: int = 0) -> None:
        with contextlib.suppress(RedisError, OSError):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(self._keys.stats, name, 1)
                if fired:
                    pipe.hincrby(self._keys.stats, "scheduled_fired", fired)
                await pipe.execute()


def _holder(raw: Any) -> tuple[datetime | None, str]:
    """(run minute, worker) of a lock value; (None, '') when it cannot be read."""
    try:
        data = json.loads(raw)
        return datetime.fromisoformat(data["minute"]), str(data.get("worker") or "")
    except (ValueError, TypeError, KeyError):
        return None, ""


def build_scheduler(
    settings: Settings,
    router: Router,
    redis: Redis,
    keys: Keys,
    clients: Mapping[str, HelpdeskClient],
    outbox: Outbox,
    guard: LoopGuard,
    *,
    owner: str,
) -> Scheduler:
    """The worker's scheduler, from its settings and services."""
    tenants = Tenants(
        redis,
        keys,
        partitions=settings.partitions,
        known={v.name: v.tenant(settings.vendor(v.name)) for v in active().vendors},
    )
    return Scheduler(
        router,
        redis,
        keys,
        clients,
        outbox,
        guard,
        tenants,
        owner=owner,
        max_tickets=settings.schedule_max_tickets,
    )


async def run_schedules(ctx: dict[str, Any], now: datetime | None = None) -> None:
    """arq cron job, every minute: run the scheduled rules due now (`now`: for tests).

    The minute is the one arq scheduled the job for, so a job that starts a little late still
    runs that minute's rules.
    """
    scheduler: Scheduler | None = ctx.get("scheduler")
    if scheduler is None or not scheduler.rules:
        return
    if now is None:
        score = ctx.get("score")
        now = (
            datetime.fromtimestamp(score / 1000, tz=UTC)
            if isinstance(score, int | float)
            else datetime.now(UTC)
        )
    await scheduler.tick(now)


def cron_jobs(router: Router | None) -> list[Any]:
    """arq's `cron_jobs`: `run_schedules` every minute, unless the rules have no schedule."""
    # A router known to hold no scheduled rule needs no per-minute job (None: loaded at start).
    if router is not None and not any(r.schedule is not None for r in router.rules):
        return []
    return [
        cron(
            run_schedules,
            name="run_schedules",
            second=0,
            unique=True,
            timeout=TICK_TIMEOUT_S,
            max_tries=1,
            keep_result=0,
        )
    ]
