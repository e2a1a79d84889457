"""Per-ticket outbox: write-backs are sent in order, once, and wait out 429s without a worker slot.

Every planned call of an event is pushed, in one atomic script, onto its ticket's outbox list,
together with a marker that the event was planned (so a re-run after a crash does not push its
calls twice). Whoever then holds the ticket's lock drains the list head first. After a 429 or a
failure the ticket gets a not-before time, the lock is released and an arq job is deferred to that
time: nothing sleeps while it waits, and later write-backs of the same ticket queue behind it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticketwire.calls import ApiCall
from ticketwire.errors import (
    ClientError,
    HelpdeskError,
    HelpdeskHTTPError,
    HelpdeskUnavailable,
    PartialFailure,
    RateLimited,
)
from ticketwire.keys import Keys
from ticketwire.vendors import HelpdeskClient
from workers.deadletter import dead_letter

log = logging.getLogger("ticketwire.worker")

# KEYS: outbox, planned marker, lock, not-before.
# ARGV: planned TTL s, owner, lock TTL ms, now ms, items...
# Returns {1} if the caller now holds the lock, {0} if nothing is queued, {2, ms} if another
# drainer holds the lock for up to ms more, and {3, epoch ms} if the ticket must wait until then.
_PUSH_LUA = """
if #ARGV > 4 and redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  for i = 5, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
end
if redis.call('LLEN', KEYS[1]) == 0 then return {0} end
local nb = tonumber(redis.call('GET', KEYS[4]) or '0')
if nb > tonumber(ARGV[4]) then return {3, nb} end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return {1} end
return {2, redis.call('PTTL', KEYS[3])}
"""

# KEYS: outbox, lock. ARGV: owner, lock TTL ms, finished head ('' = none).
# Removes the call just finished (if it is still the head), then renews the lock and returns the
# next head, or releases the lock when the list is empty (atomically, so a concurrent push is
# never stranded). One round trip per call sent.
_NEXT_LUA = """
if ARGV[3] ~= '' and redis.call('LINDEX', KEYS[1], 0) == ARGV[3] then
  redis.call('LPOP', KEYS[1])
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {0} end
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then
  redis.call('DEL', KEYS[2])
  return {1}
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {2, head}
"""

# KEYS: outbox, lock. ARGV: owner, expected head, replacement ('' = pop).
_DONE_LUA = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[2] then
  if ARGV[3] == '' then redis.call('LPOP', KEYS[1]) else redis.call('LSET', KEYS[1], 0, ARGV[3]) end
end
return 1
"""

# KEYS: lock, not-before. ARGV: owner, not-before ms. Defers the ticket and releases the lock.
_DEFER_LUA = """
redis.call('SET', KEYS[2], ARGV[2], 'PX', math.max(1000, tonumber(ARGV[2]) - tonumber(ARGV[3]) + 60000))
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

#: Schedules `drain_outbox(ticket_key)` at an epoch-ms time (an arq enqueue in production).
Scheduler = Callable[[str, int], Awaitable[None]]


@dataclass(frozen=True)
class OutboxPolicy:
    """Retry policy: attempts for 5xx/timeouts, backoff base and cap, lock and marker lifetimes."""

    max_attempts: int = 6
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 600.0
    lock_ttl_s: float = 60.0
    planned_ttl_s: float = 72 * 3600.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th failure (exponential, capped)."""
        return float(min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1)))


def _now_ms() -> int:
    return int(time.time() * 1000)


class Outbox:
    """Push planned calls for a ticket and drain them through a helpdesk client."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        clients: dict[str, HelpdeskClient],
        schedule: Scheduler,
        *,
        owner: str,
        policy: OutboxPolicy | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self._clients = clients
        self._schedule = schedule
        self._owner = owner
        self.policy = policy or OutboxPolicy()
        #: Calls sent, counted here and added to the shared stats hash periodically.
        self.counters: Counter[str] = Counter()
        self._push = redis.register_script(_PUSH_LUA)
        self._next = redis.register_script(_NEXT_LUA)
        self._done = redis.register_script(_DONE_LUA)
        self._defer = redis.register_script(_DEFER_LUA)

    async def submit(self, ticket_key: str, event_id: str, calls: Sequence[ApiCall]) -> None:
        """Queue an event's calls (once per event) and send what may be sent now."""
        items = [json.dumps({"call": c.to_json(), "attempts": []}) for c in calls]
        await self._kick(ticket_key, event_id, items)

    async def drain(self, ticket_key: str) -> None:
        """Send a ticket's queued calls if its wait is over and nobody else is sending them."""
        await self._kick(ticket_key, "", [])

    async def _kick(self, ticket_key: str, event_id: str, items: list[str]) -> None:
        k = self.keys
        res = await self._push(
            keys=[
                k.outbox(ticket_key),
                k.planned(event_id or "-"),
                k.outbox_lock(ticket_key),
                k.outbox_not_before(ticket_key),
            ],
            args=[
                int(self.policy.planned_ttl_s),
                self._owner,
                int(self.policy.lock_ttl_s * 1000),
                _now_ms(),
                *items,
            ],
        )
        state = int(res[0])
        if state == 1:
            await self._drain_locked(ticket_key)
        elif state == 2:
            # Another drainer holds the lock. If it is alive it will see our calls (its release is
            # atomic with an emptiness check); if it died, a wake-up at the lock's expiry resumes.
            await self._schedule(ticket_key, _now_ms() + max(int(res[1]), 0) + 50)
        elif state == 3:
            # Waiting out a 429 or a backoff: make sure a wake-up exists (arq dedupes by job id).
            await self._schedule(ticket_key, int(res[1]))

    async def _drain_locked(self, ticket_key: str) -> None:
        k = self.keys
        keys = [k.outbox(ticket_key), k.outbox_lock(ticket_key)]
        lock_ms = int(self.policy.lock_ttl_s * 1000)
        finished = b""
        while True:
            res = await self._next(keys=keys, args=[self._owner, lock_ms, finished])
            finished = b""
            if res[0] == 0:
                log.warning("outbox lock of ticket=%s lost; another worker continues", ticket_key)
                return
            if res[0] == 1:
                return
            head: bytes = res[1]
            item: dict[str, Any] = json.loads(head)
            call = ApiCall.from_json(item["call"])
            attempts: list[dict[str, Any]] = item["attempts"]
            try:
                result = await self._client(call).send(call)
            except RateLimited as exc:
                attempts.append(_attempt(exc))
                await self._replace(keys, head, item)
                log.warning(
                    "api %s → 429 rate limited; ticket=%s waits %.0fs (Retry-After)",
                    call.describe(),
                    ticket_key,
                    exc.retry_after,
                )
                await self._wait(ticket_key, _now_ms() + int(exc.retry_after * 1000))
                return
            except (HelpdeskUnavailable, HelpdeskHTTPError, PartialFailure) as exc:
                if isinstance(exc, ClientError) or (
                    isinstance(exc, PartialFailure) and not exc.retryable
                ):
                    attempts.append(_attempt(exc))
                    await self._dead(
                        ticket_key, call, attempts, f"{exc} (not retried: the helpdesk refused it)"
                    )
                    finished = head
                    continue
                attempts.append(_attempt(exc))
                if len(attempts) >= self.policy.max_attempts:
                    await self._dead(
                        ticket_key,
                        call,
                        attempts,
                        f"{exc} (gave up after {len(attempts)} attempts)",
                    )
                    finished = head
                    continue
                delay = self.policy.backoff(len(attempts))
                await self._replace(keys, head, item)
                log.warning(
                    "api %s → %s; attempt %d of %d, retry in %.0fs",
                    call.describe(),
                    exc,
                    len(attempts),
                    self.policy.max_attempts,
                    delay,
                )
                await self._wait(ticket_key, _now_ms() + int(delay * 1000))
                return
            except HelpdeskError as exc:
                attempts.append(_attempt(exc))
                await self._dead(ticket_key, call, attempts, str(exc))
                finished = head
                continue
            except (RedisError, OSError, asyncio.CancelledError):
                raise  # infrastructure or shutdown: the call stays queued for the next drain
            except Exception as exc:
                log.exception("internal error sending %s", call.describe())
                attempts.append({"at": _now_ms(), "error": repr(exc), "kind": "internal"})
                await self._dead(ticket_key, call, attempts, f"internal error: {exc!r}")
                finished = head
                continue
            finished = head
            self.counters["api_calls"] += 1
            log.info(
                "api %s → %d in %.0fms (rules: %s)",
                call.describe(),
                result.status,
                result.elapsed_ms,
                ", ".join(call.rules) or "-",
            )

    def _client(self, call: ApiCall) -> HelpdeskClient:
        try:
            return self._clients[call.vendor]
        except KeyError:
            raise HelpdeskError(f"no {call.vendor} API configured for this worker") from None

    async def _replace(self, keys: list[str], head: bytes, item: dict[str, Any]) -> None:
        await self._done(keys=keys, args=[self._owner, head, json.dumps(item)])

    async def _wait(self, ticket_key: str, not_before_ms: int) -> None:
        k = self.keys
        await self._defer(
            keys=[k.outbox_lock(ticket_key), k.outbox_not_before(ticket_key)],
            args=[self._owner, not_before_ms, _now_ms()],
        )
        await self._schedule(ticket_key, not_before_ms)

    async def _dead(
        self, ticket_key: str, call: ApiCall, attempts: list[dict[str, Any]], reason: str
    ) -> None:
        await dead_letter(
            self.redis,
            self.keys,
            reason=reason,
            ticket_key=ticket_key,
            call=call,
            attempts=attempts,
        )


def _attempt(exc: HelpdeskError) -> dict[str, Any]:
    out: dict[str, Any] = {"at": _now_ms(), "error": str(exc), "kind": type(exc).__name__}
    if isinstance(exc, HelpdeskHTTPError):
        out["status"] = exc.status
        out["request_id"] = exc.request_id
        if exc.body:
            out["body"] = exc.body[:500]
    if isinstance(exc, RateLimited):
        out["retry_after"] = exc.retry_after
    return out
