"""Durable intake: concurrent deliveries share one atomic Redis write (group commit).

Each request waits for its own outcome, but while one batch is in flight to Redis the next
requests queue up and go together in the next call. One Lua script per batch dedupes every
event id (SET ... EX within the script), appends new deliveries to their partition streams (in
their account's lane) and bumps the counters: one round trip and one command for many events
(two Redis operations per event inside it: SET NX for the dedupe window, XADD; a named account's
lane adds one SADD per batch), with no pickling.

One delivery never fails the others of its batch. Its keys and arguments are encoded when it is
submitted, so one that cannot be encoded fails alone, before any batch is formed. Inside the
script an XADD that fails releases its dedupe key and fails that delivery alone. If a batch call
still fails, and Redis is not down, each of its deliveries is written again on its own.

With a durability mode (ticketwire/durability.py) the batch's script and the wait for its
durability (WAITAOF or WAIT) go in one pipeline, one round trip on one connection: the wait is
paid once per batch, and a batch not made durable in time fails whole, as an outage does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from receiver.refusals import RefusalLog
from ticketwire.accountkey import lane_of
from ticketwire.durability import Durability, NotDurable
from ticketwire.keys import Keys, partition_of
from ticketwire.stored import StoredDelivery

log = logging.getLogger("ticketwire.receiver")

Outcome = Literal["stored", "duplicate"]

# KEYS[1] = stats hash, KEYS[2] = the deliveries list (trace log), KEYS[3] = the SET of named
# lanes, then (seen key, stream key) per delivery. ARGV[1] = dedupe TTL seconds, ARGV[2] = oldest
# trace id kept (epoch ms; 0: traces off), ARGV[3] = most trace entries kept, ARGV[4] = number of
# ignored-event counters that follow, then the counter names, then 4 values per delivery: meta,
# body (see StoredDelivery.to_fields), the ticket key, which the dedupe key holds so a trace
# lookup by event id finds the ticket, and the lane ("" for a default account).
_STORE_LUA = """
local ttl = tonumber(ARGV[1])
local minid = ARGV[2]
local n_ignored = tonumber(ARGV[4])
local a = 5
for _ = 1, n_ignored do
  redis.call('HINCRBY', KEYS[1], ARGV[a], 1)
  a = a + 1
end
local out = {}
local accepted, duplicate = 0, 0
local laned = {}
for i = 1, (#KEYS - 3) / 2 do
  local seen, stream = KEYS[2 * i + 2], KEYS[2 * i + 3]
  if redis.call('SET', seen, ARGV[a + 2], 'NX', 'EX', ttl) then
    -- pcall: a failing XADD (say, a stream key of the wrong type) fails this delivery alone,
    -- and its dedupe key goes, so a retry is stored rather than answered as a duplicate.
    local id = redis.pcall('XADD', stream, '*', 'm', ARGV[a], 'b', ARGV[a + 1])
    if type(id) == 'table' and id.err then
      redis.call('DEL', seen)
      out[i] = 'err:' .. id.err
    else
      out[i] = id
      accepted = accepted + 1
      -- Named lanes only, once a batch: workers find new lanes in this SET.
      local lane = ARGV[a + 3]
      if lane ~= '' and not laned[lane] then
        redis.call('SADD', KEYS[3], lane)
        laned[lane] = true
      end
    end
  else
    out[i] = 'dup'
    duplicate = duplicate + 1
    if minid ~= '0' then
      -- The duplicate's deliveries-list entry; only duplicates pay for decoding the facts.
      local m = cjson.decode(ARGV[a])
      local vendor, key = m[1], m[4]
      local tenant = ''
      if string.sub(key, 1, #vendor + 1) == vendor .. ':' then
        tenant = string.match(string.sub(key, #vendor + 2), '^(.*):[^:]*$') or ''
      end
      local f = {'v', vendor, 'a', tenant, 'y', m[3], 'e', m[2], 'k', key, 'o', 'duplicate',
        's', '200', 'f', '', 'x', '', 'r', string.format('%.0f', m[5])}
      -- A named account's name follows the facts; the default account has none.
      if type(m[7]) == 'string' then
        f[#f + 1] = 'n'
        f[#f + 1] = m[7]
      end
      redis.pcall('XADD', KEYS[2], 'MINID', '~', minid, '*', unpack(f))
    end
  end
  a = a + 4
end
if accepted > 0 then redis.call('HINCRBY', KEYS[1], 'accepted', accepted) end
if duplicate > 0 then
  redis.call('HINCRBY', KEYS[1], 'duplicate', duplicate)
  if minid ~= '0' then redis.pcall('XTRIM', KEYS[2], 'MAXLEN', '~', ARGV[3]) end
end
return out
"""


#: Failures that mean Redis cannot take writes now: retrying deliveries one by one cannot help
#: (nor, once a batch is written but not durable, would it: each would come back `duplicate`).
_OUTAGES = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,  # a demoted master, until the client finds the new one
    OSError,
    TimeoutError,
    NotDurable,
)


class ShuttingDown(ConnectionError):
    """The receiver stopped taking deliveries: this one is not known to be stored."""


class UnstorableDelivery(ValueError):
    """The delivery's routing facts cannot be written to Redis (they are not valid UTF-8)."""


@dataclass
class _Pending:
    #: (dedupe key, stream key) and (meta, body, ticket key, lane), encoded; empty for an
    #: ignored-event count.
    keys: tuple[bytes, ...]
    args: tuple[bytes, ...]
    ignored: bytes | None
    future: asyncio.Future[str]


class Intake:
    """Store deliveries durably; `store()` returns only after Redis acknowledged the write."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        partitions: int,
        dedupe_ttl_s: float,
        max_batch: int = 256,
        max_in_flight: int = 2,
        trace_retention_s: float = 72 * 3600.0,
        trace_max: int = 1_000_000,
        durability: Durability | None = None,
    ) -> None:
        self._redis = redis
        self._durability = durability
        self._keys = keys
        self._partitions = partitions
        self._ttl = max(1, int(dedupe_ttl_s))
        self._trace_ms = int(trace_retention_s * 1000)
        self._trace_max = trace_max
        #: Refused deliveries' entries in the deliveries list, written in the background.
        self.refusals = RefusalLog(
            redis, keys, retention_s=trace_retention_s, max_entries=trace_max
        )
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sha: str | None = None
        self.batches = 0
        self.items = 0
        #: Every delivery whose caller still waits for its outcome.
        self._waiting: set[asyncio.Future[str]] = set()
        self._shut = False

    async def start(self) -> None:
        """Check the durability asked for, load the script and start the batching task."""
        if self._durability is not None:
            await self._durability.probe(self._redis)
            log.info(
                "intake durability %s (else 503)",
                self._durability.describe("a delivery is answered 2xx"),
            )
        else:
            log.info("intake durability none: a delivery is answered 2xx once Redis ran its write")
        self._sha = await self._redis.script_load(_STORE_LUA)
        self._task = asyncio.create_task(self._run(), name="ticketwire-intake")
        self.refusals.start()

    async def close(self) -> None:
        """Stop batching; requests still waiting get an error rather than a false 2xx."""
        await self.refusals.close()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for p in self._pending:
            if not p.future.done():
                p.future.set_exception(ConnectionError("receiver is shutting down"))
        self._pending.clear()

    async def store(self, delivery: StoredDelivery) -> tuple[Outcome, str]:
        """Store one delivery; return ("stored", entry id) or ("duplicate", "").

        Raises `UnstorableDelivery` when its routing facts cannot be encoded, a `RedisError` or
        `OSError` when it was not stored.
        """
        try:
            part = partition_of(delivery.ticket_key, self._partitions)
            lane = lane_of(delivery.vendor, delivery.account)
            keys = (
                self._keys.seen(delivery.vendor, delivery.event_id, delivery.account).encode(),
                self._keys.stream(part, lane).encode(),
            )
            ticket = delivery.ticket_key.encode()
        except UnicodeEncodeError:
            raise UnstorableDelivery(
                "the event id, tenant or ticket id is not valid Unicode text"
            ) from None
        entry = await self._submit(
            _Pending(keys, (delivery.meta(), delivery.body, ticket, lane.encode()), None, _future())
        )
        if entry == "dup":
            return "duplicate", ""
        return "stored", entry

    async def count_ignored(self, vendor: str, event_type: str) -> None:
        """Count a validly signed delivery of a type no rule engine step handles."""
        try:
            name = f"ignored:{vendor}:{event_type}".encode()
        except UnicodeEncodeError:
            raise UnstorableDelivery("the event type is not valid Unicode text") from None
        await self._submit(_Pending((), (), name, _future()))

    def shut(self) -> int:
        """Stop taking deliveries; fail every one still waiting (stored or not). Return how many.

        The end of a stop's grace period: each waiting request gets an error answer rather than
        a dropped connection; one whose batch does reach Redis is answered `duplicate` when
        its sender retries.
        """
        self._shut = True
        waiting = [f for f in self._waiting if not f.done()]
        for future in waiting:
            future.set_exception(ShuttingDown("the receiver stopped before the store completed"))
        return len(waiting)

    async def _submit(self, pending: _Pending) -> str:
        if self._shut:
            raise ShuttingDown("the receiver is stopping")
        self._pending.append(pending)
        self._waiting.add(pending.future)
        pending.future.add_done_callback(self._waiting.discard)
        self._wake.set()
        return await pending.future

    async def _run(self) -> None:
        # Up to `max_in_flight` batches travel to Redis at once, so requests arriving during a
        # round trip need not wait for it to finish before their own write starts. Ordering is
        # unaffected where it matters: a sender's next delivery of a ticket only arrives after
        # this one was answered, i.e. after its batch was committed.
        slots = asyncio.Semaphore(self._max_in_flight)
        writes: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    await slots.acquire()
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                    task = asyncio.create_task(self._commit(batch, slots))
                    writes.add(task)
                    task.add_done_callback(writes.discard)
        finally:
            for task in writes:
                task.cancel()

    async def _commit(self, batch: list[_Pending], slots: asyncio.Semaphore) -> None:
        try:
            try:
                results = await self._write(batch)
            except _OUTAGES:
                raise
            except Exception:
                if len(batch) == 1:
                    raise
                # Not an outage, so something in one delivery may be to blame: each goes alone,
                # and only the one Redis refuses fails.
                log.warning(
                    "intake batch of %d failed; writing each alone", len(batch), exc_info=True
                )
                await asyncio.gather(*(self._commit_alone(p) for p in batch))
                return
        except BaseException as exc:  # every waiter must learn it was not stored
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            slots.release()
        self._settle(batch, results)

    async def _commit_alone(self, p: _Pending) -> None:
        try:
            results = await self._write([p])
        except BaseException as exc:
            _fail([p], exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._settle([p], results)

    def _settle(self, batch: list[_Pending], results: list[str]) -> None:
        self.batches += 1
        self.items += len(batch)
        for p, r in zip(batch, results, strict=True):
            if p.future.done():
                continue
            if r.startswith("err:"):
                p.future.set_exception(ResponseError(r[4:]))
            else:
                p.future.set_result(r)

    async def _write(self, batch: list[_Pending]) -> list[str]:
        keys: list[Any] = [self._keys.stats, self._keys.trace_log, self._keys.lanes]
        ignored = [p.ignored for p in batch if p.ignored is not None]
        # The oldest id a duplicate's trace entry keeps in the list; 0 turns those entries off.
        minid = int(time.time() * 1000) - self._trace_ms if self._trace_ms > 0 else 0
        args: list[Any] = [self._ttl, minid, self._trace_max, len(ignored), *ignored]
        for p in batch:
            keys += p.keys
            args += p.args
        try:
            raw = await self._call(len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted (or flushed scripts) since start: load it again once.
            self._sha = await self._redis.script_load(_STORE_LUA)
            raw = await self._call(len(keys), *keys, *args)
        ids = iter([r.decode() if isinstance(r, bytes) else str(r) for r in raw])
        return [next(ids) if p.keys else "" for p in batch]

    async def _call(self, *keys_and_args: Any) -> Any:
        """The script's reply; with a durability mode, only once the batch is durable."""
        if self._durability is None:
            return await self._redis.evalsha(self._sha or "", *keys_and_args)  # type: ignore[misc]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._sha or "", *keys_and_args)
            (raw,) = await self._durability.execute(pipe)
        return raw


def _future() -> asyncio.Future[str]:
    return asyncio.get_running_loop().create_future()


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else ConnectionError("intake stopped")
    for p in batch:
        if not p.future.done():
            p.future.set_exception(error)
