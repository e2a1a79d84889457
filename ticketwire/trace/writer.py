"""The worker's trace writer: records buffered in memory, written by one script call per flush.

Handling an event only appends small tuples to a buffer; a background task encodes what has
gathered and writes it all in one call every `flush_s` (sooner when `batch` records wait). The
buffer is bounded: while Redis is away the oldest records are dropped and counted, and handling
never waits for, nor fails because of, a trace. Records still buffered when the process dies
are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from ticketwire.keys import Keys
from ticketwire.trace import codes

log = logging.getLogger("ticketwire.trace")

#: One record: (ticket key, event id, the record as a tuple whose first element is its kind).
Record = tuple[str, str, Sequence[Any]]

# ARGV: blob (JSON `[timeline records, log entries, rule counts, rule descriptions]`), now ms,
# retention s, deliveries list cap, key prefix, timeline cap, rulestats TTL s.
# Keys are made here from the prefix: which tickets a flush touches is only known in the blob.
_FLUSH_LUA = """
local d = cjson.decode(ARGV[1])
local now, ttl, logmax, prefix = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local tmax, statttl = ARGV[6], ARGV[7]
local touched, order = {}, {}
for _, r in ipairs(d[1]) do
  local key = prefix .. 'trace:t:' .. r[1]
  redis.call('XADD', key, 'MAXLEN', '~', tmax, '*', 'e', r[2], 'c', r[3])
  if not touched[key] then
    touched[key] = true
    order[#order + 1] = key
  end
end
for _, key in ipairs(order) do redis.call('EXPIRE', key, ttl) end
local logkey = prefix .. 'trace:log'
local minid = now - ttl * 1000
for _, f in ipairs(d[2]) do redis.call('XADD', logkey, 'MINID', '~', minid, '*', unpack(f)) end
if #d[2] > 0 then redis.call('XTRIM', logkey, 'MAXLEN', '~', logmax) end
local hours = {}
for _, s in ipairs(d[3]) do
  local key = prefix .. 'trace:rulestats:' .. s[1]
  redis.call('HINCRBY', key, s[2], s[3])
  hours[key] = true
end
for key in pairs(hours) do redis.call('EXPIRE', key, statttl) end
for _, r in ipairs(d[4]) do redis.call('HSETNX', prefix .. 'trace:rules', r[1], r[2]) end
return #d[1] + #d[2]
"""

# Records are JSON arrays of plain values; anything else (a datetime a condition read) as text.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_encode_blob = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class TraceWriter:
    """Buffer trace records and write them in the background, one script call per flush."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        retention_s: float,
        log_max: int = 1_000_000,
        flush_s: float = 0.075,
        batch: int = 500,
        buffer_max: int = 200_000,
    ) -> None:
        self.redis = redis
        self.keys = keys
        #: False when traces are off (retention 0): callers skip building records at all.
        self.enabled = retention_s > 0
        self._ttl_s = max(1, int(retention_s))
        self._log_max = log_max
        self._flush_s = flush_s
        self._batch = batch
        self._max = buffer_max
        self._records: deque[Record] = deque()
        self._logs: deque[list[str]] = deque()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._rules: dict[str, str] = {}
        self._rules_written: set[str] = set()
        #: Records dropped because the buffer was full (Redis away for long).
        self.dropped = 0
        self._warned = False
        self._script = redis.register_script(_FLUSH_LUA)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- the hot path: append only ----

    def record(self, ticket_key: str, event_id: str, record: Sequence[Any]) -> None:
        """Add one record to a ticket's timeline (`record[0]` is its kind code)."""
        if len(self._records) + len(self._logs) >= self._max:
            self._drop()
        self._records.append((ticket_key, event_id, record))
        if len(self._records) >= self._batch:
            self._wake.set()

    def log(self, fields: Mapping[str, str]) -> None:
        """Add one entry to the deliveries list (fields as in `ticketwire.trace.codes`)."""
        if len(self._records) + len(self._logs) >= self._max:
            self._drop()
        flat: list[str] = []
        for k, v in fields.items():
            flat += (k, v)
        self._logs.append(flat)

    def rule_count(self, rule: str, kind: str) -> None:
        """Count a firing (`f`), suppression (`s`), error (`e`) or pause (`p`) of a rule."""
        self._counts[(rule, kind)] += 1

    def rules(self, fingerprint: str, descriptions: Mapping[str, Sequence[str]]) -> None:
        """Store the rules' leaf descriptions once for `fingerprint` (written with the next flush)."""
        if fingerprint not in self._rules_written:
            self._rules[fingerprint] = _encode(descriptions)

    def _drop(self) -> None:
        # The oldest go first: the newest records say most about what is happening now.
        if self._records:
            self._records.popleft()
        else:
            self._logs.popleft()
        self.dropped += 1
        if not self._warned:
            self._warned = True
            log.warning(
                "trace buffer full (%d records, Redis unreachable?): dropping the oldest "
                "trace records until it drains; event handling is not affected",
                self._max,
            )

    # ---- the background flusher ----

    def start(self) -> None:
        """Flush in the background until `stop()`."""
        if self._task is None and self.enabled:
            self._task = asyncio.create_task(self._run(), name="trace-writer")

    async def stop(self) -> None:
        """Stop the flusher and write what is still buffered (if Redis answers)."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            # Cancelled again if a cancellation is lost in a Redis call (CPython gh-86296).
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - traces are diagnostic; stopping goes on
            log.warning("could not write %d buffered trace records: %s", self.pending, exc)

    @property
    def pending(self) -> int:
        """Records and list entries waiting to be written."""
        return len(self._records) + len(self._logs)

    async def _run(self) -> None:
        failures = 0
        since: float | None = None
        while not self._stopping:
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait([waiter], timeout=self._flush_s)
            finally:
                waiter.cancel()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - traces must never stop the worker
                failures += 1
                if since is None:
                    since = time.monotonic()
                    log.warning("trace writer: cannot write traces (%s); retrying", exc)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
                continue
            if since is not None:
                log.warning(
                    "trace writer: writing again after %.1fs (%d records dropped meanwhile)",
                    time.monotonic() - since,
                    self.dropped,
                )
                since, failures, self._warned = None, 0, False

    async def flush(self) -> int:
        """Write everything buffered in one script call; return records and entries written.

        On failure what was taken is put back (oldest first), within the buffer's bound.
        """
        if not (self._records or self._logs or self._counts or self._rules):
            return 0
        records, self._records = self._records, deque()
        logs, self._logs = self._logs, deque()
        counts, self._counts = self._counts, Counter()
        rules, self._rules = self._rules, {}
        hour = time.strftime(codes.HOUR_FORMAT, time.gmtime())
        sep = codes.RULE_SEP
        blob = _encode_blob(
            [
                [[t, e, _encode(r)] for t, e, r in records],
                list(logs),
                [[hour, f"{rule}{sep}{kind}", n] for (rule, kind), n in counts.items()],
                list(rules.items()),
            ]
        )
        try:
            await self._script(
                args=[
                    blob,
                    int(time.time() * 1000),
                    self._ttl_s,
                    self._log_max,
                    self.keys.prefix,
                    codes.TICKET_MAX,
                    codes.RULESTATS_TTL_S,
                ]
            )
        except BaseException:
            self._put_back(records, logs, counts, rules)
            raise
        self._rules_written.update(rules)
        return len(records) + len(logs)

    def _put_back(
        self,
        records: deque[Record],
        logs: deque[list[str]],
        counts: Counter[tuple[str, str]],
        rules: dict[str, str],
    ) -> None:
        records.extend(self._records)
        logs.extend(self._logs)
        self._records, self._logs = records, logs
        while self.pending > self._max:
            self._drop()
        counts.update(self._counts)
        self._counts = counts
        self._rules = {**rules, **self._rules}


def short(value: Any, limit: int = 200) -> Any:
    """A value as a record keeps it: long text is cut (a trace is a summary, not a copy)."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value
