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


# ARGV: records blob, entries blob, now ms, retention s, deliveries list cap, key prefix,
# timeline cap, rulestats TTL s. Keys are made here from the prefix: which tickets a flush
# touches is only known in the blob.
#
# The records blob is one JSON text `[[ticket key, event id, [record, ...], outcome, fired], ...]`,
# encoded in one call by the worker; each record's own text is cut out of it here (a small
# scanner of JSON nesting and strings), so the worker never encodes a record on its own. A group
# with an outcome also adds the event's deliveries list entry, made from its first record (`rx`).
# The entries blob is `[[[list values...], ...], [[hour, rule field, n], ...], [[fp, JSON], ...]]`.
_FLUSH_LUA = """
local s = ARGV[1]
local now, ttl, logmax, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local tmax, statttl = ARGV[7], ARGV[8]
local find, sub, byte = string.find, string.sub, string.byte
local function str_end(i)
  local j = i + 1
  while true do
    local k = find(s, '["\\\\]', j)
    if byte(s, k) == 34 then return k end
    j = k + 2
  end
end
local function val_end(i)
  local c = byte(s, i)
  if c == 34 then return str_end(i) end
  if c == 91 or c == 123 then
    local depth, j = 1, i + 1
    while true do
      local k = find(s, '[%[%]{}"]', j)
      local d = byte(s, k)
      if d == 34 then
        j = str_end(k) + 1
      elseif d == 91 or d == 123 then
        depth, j = depth + 1, k + 1
      else
        depth = depth - 1
        if depth == 0 then return k end
        j = k + 1
      end
    end
  end
  return find(s, '[,%]}]', i) - 1
end
local names = {'v', 'a', 'y', 'e', 'k', 'o', 's', 'f', 'x', 'r'}
local logkey = prefix .. 'trace:log'
local minid = now - ttl * 1000
local logged = 0
local touched, order, written = {}, {}, 0
local i = 2
if byte(s, i) == 91 then
  while true do
    local e1 = str_end(i + 1)
    local e2 = str_end(e1 + 2)
    local tk = cjson.decode(sub(s, i + 1, e1))
    local key = prefix .. 'trace:t:' .. tk
    local eid = cjson.decode(sub(s, e1 + 2, e2))
    local j = e2 + 3
    local first = nil
    while byte(s, j) ~= 93 do
      local r = val_end(j)
      local rec = sub(s, j, r)
      first = first or rec
      redis.call('XADD', key, 'MAXLEN', '~', tmax, '*', 'e', eid, 'c', rec)
      written = written + 1
      j = r + 1
      if byte(s, j) == 44 then j = j + 1 end
    end
    if not touched[key] then
      touched[key] = true
      order[#order + 1] = key
    end
    -- Then the outcome and the rules fired, and the group's closing bracket.
    local o1 = str_end(j + 2)
    local f1 = str_end(o1 + 2)
    local outcome = cjson.decode(sub(s, j + 2, o1))
    if outcome ~= '' and first then
      local rx = cjson.decode(first)
      redis.call('XADD', logkey, 'MINID', '~', minid, '*', 'v', rx[2], 'a', rx[3], 'y', rx[4],
        'e', eid, 'k', tk, 'o', outcome, 's', '', 'f', cjson.decode(sub(s, o1 + 2, f1)),
        'x', '', 'r', string.format('%.0f', rx[6]))
      logged = logged + 1
    end
    -- The group ends at f1 + 1; a comma after it starts the next.
    i = f1 + 2
    if byte(s, i) ~= 44 then break end
    i = i + 1
  end
end
for _, key in ipairs(order) do redis.call('EXPIRE', key, ttl) end
local d = cjson.decode(ARGV[2])
for _, v in ipairs(d[1]) do
  local args = {}
  for n = 1, #names do
    args[2 * n - 1] = names[n]
    args[2 * n] = v[n]
  end
  redis.call('XADD', logkey, 'MINID', '~', minid, '*', unpack(args))
end
if #d[1] + logged > 0 then redis.call('XTRIM', logkey, 'MAXLEN', '~', logmax) end
local hours = {}
for _, c in ipairs(d[2]) do
  local key = prefix .. 'trace:rulestats:' .. c[1]
  redis.call('HINCRBY', key, c[2], c[3])
  hours[key] = true
end
for key in pairs(hours) do redis.call('EXPIRE', key, statttl) end
for _, r in ipairs(d[3]) do redis.call('HSETNX', prefix .. 'trace:rules', r[1], r[2]) end
return written + logged + #d[1]
"""

#: The deliveries list's fields, in the order `TraceWriter.event` takes their values.
LOG_FIELDS = ("v", "a", "y", "e", "k", "o", "s", "f", "x", "r")

# Records are JSON arrays of plain values; anything else (a datetime a condition read) as text.
# ASCII only, so that the script's scanner meets nothing but JSON's own structure.
# No cycles can occur in records: the check for them is skipped (a third of the encoding time).
_encode = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode


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
        batch: int = 2000,
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
        # Per ticket and event, its records in order: `[ticket key, event id, [record, ...]]`.
        self._groups: deque[list[Any]] = deque()
        self._logs: deque[list[str]] = deque()
        self._size = 0
        self._counts: Counter[tuple[str, str]] = Counter()
        self._rules: dict[str, str] = {}
        self._rules_written: set[str] = set()
        #: Records and list entries dropped because the buffer was full (Redis away for long).
        self.dropped = 0
        self._warned = False
        self._script = redis.register_script(_FLUSH_LUA)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- the hot path: append only ----

    def record(self, ticket_key: str, event_id: str, record: Sequence[Any]) -> None:
        """Add one record to a ticket's timeline (`record[0]` is its kind code)."""
        if ticket_key:
            self._groups.append([ticket_key, event_id, (record,), "", ""])
            self._size += 1
            self._check()

    def log(self, fields: Mapping[str, str]) -> None:
        """Add one entry to the deliveries list (fields as in `ticketwire.trace.codes`)."""
        self._logs.append([fields.get(name, "") for name in LOG_FIELDS])
        self._size += 1
        self._check()

    def event(
        self,
        ticket_key: str,
        event_id: str,
        records: Sequence[Sequence[Any]],
        outcome: str,
        fired: str,
    ) -> None:
        """Add a received event's records (`rx` first) and its deliveries list entry.

        The entry's vendor, account, type and receive time are those of the `rx` record.
        """
        self._groups.append([ticket_key, event_id, records, outcome, fired])
        self._size += len(records) + 1
        self._check()

    def _check(self) -> None:
        if self._size > self._max:
            self._drop()
        elif self._size >= self._batch:
            self._wake.set()

    def rule_count(self, rule: str, kind: str) -> None:
        """Count a firing (`f`), suppression (`s`), error (`e`) or pause (`p`) of a rule."""
        self._counts[(rule, kind)] += 1

    def rules(self, fingerprint: str, descriptions: Mapping[str, Sequence[str]]) -> None:
        """Store the rules' leaf descriptions once for `fingerprint` (written with the next flush)."""
        if fingerprint not in self._rules_written:
            self._rules[fingerprint] = _encode(descriptions)

    def _drop(self) -> None:
        # The oldest go first: the newest records say most about what is happening now.
        while self._size > self._max and (self._groups or self._logs):
            if self._groups:
                group = self._groups.popleft()
                n = len(group[2]) + (1 if group[3] else 0)
            else:
                self._logs.popleft()
                n = 1
            self._size -= n
            self.dropped += n
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
        return self._size

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
        if not (self._size or self._counts or self._rules):
            return 0
        groups, self._groups = self._groups, deque()
        logs, self._logs = self._logs, deque()
        size, self._size = self._size, 0
        counts, self._counts = self._counts, Counter()
        rules, self._rules = self._rules, {}
        hour = time.strftime(codes.HOUR_FORMAT, time.gmtime())
        sep = codes.RULE_SEP
        try:
            # All records in one encoding call: the script cuts each record's text out of it.
            records = _encode(list(groups))
            entries = _encode(
                [
                    list(logs),
                    [[hour, f"{rule}{sep}{kind}", n] for (rule, kind), n in counts.items()],
                    list(rules.items()),
                ]
            )
            await self._script(
                args=[
                    records,
                    entries,
                    int(time.time() * 1000),
                    self._ttl_s,
                    self._log_max,
                    self.keys.prefix,
                    codes.TICKET_MAX,
                    codes.RULESTATS_TTL_S,
                ]
            )
        except BaseException:
            self._put_back(groups, logs, size, counts, rules)
            raise
        self._rules_written.update(rules)
        return size

    def _put_back(
        self,
        groups: deque[list[Any]],
        logs: deque[list[str]],
        size: int,
        counts: Counter[tuple[str, str]],
        rules: dict[str, str],
    ) -> None:
        groups.extend(self._groups)
        logs.extend(self._logs)
        self._groups, self._logs, self._size = groups, logs, size + self._size
        if self._size > self._max:
            self._drop()
        counts.update(self._counts)
        self._counts = counts
        self._rules = {**rules, **self._rules}


def short(value: Any, limit: int = 200) -> Any:
    """A value as a record keeps it: long text is cut (a trace is a summary, not a copy)."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value
