"""The worker's trace writer: records buffered in memory, written by one script call per flush.

Handling an event builds small tuples and encodes them once, as one text, into a buffer; a
background task writes what has gathered in one call every `flush_s` (sooner when `batch`
records wait). The
buffer is bounded: while Redis is away the oldest records are dropped and counted, and handling
never waits for, nor fails because of, a trace. Records still buffered when the process dies
are lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from pydantic_core import PydanticSerializationError, to_json
from redis.asyncio import Redis

from ticketwire.keys import Keys
from ticketwire.stoptask import stop_task
from ticketwire.trace import codes

log = logging.getLogger("ticketwire.trace")


# ARGV: records blob, entries blob, now ms, retention s, deliveries list cap, key prefix,
# timeline cap, rulestats TTL s. Keys are made here from the prefix: which tickets a flush
# touches is only known in the blob.
#
# The records blob is one line per timeline entry, lines joined by "\n": a JSON header
# `[ticket key, event id, outcome, fired, vendor, tenant, type, received ms, account]`, "\x1f",
# then the
# entry's record text (one record, or an event's records as one array); account is "" for the
# default account, whose entries carry no `n` field. JSON text never holds a
# raw control character, so the script finds both separators with a plain search and decodes only
# the small header. A header with an outcome also adds the event's deliveries list entry.
# The entries blob is `[[[list values...], ...], [[hour, rule field, n], ...], [[fp, JSON], ...]]`.
_FLUSH_LUA = """
local s = ARGV[1]
local now, ttl, logmax, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local tmax, statttl = ARGV[7], ARGV[8]
local find, sub = string.find, string.sub
local names = {'v', 'a', 'y', 'e', 'k', 'o', 's', 'f', 'x', 'r', 'n'}
local logkey = prefix .. 'trace:log'
local minid = now - ttl * 1000
local logged = 0
local touched, order, written = {}, {}, 0
local pos, n = 1, #s
while pos <= n do
  local nl = find(s, '\\n', pos, true) or (n + 1)
  local us = find(s, '\\31', pos, true)
  local h = cjson.decode(sub(s, pos, us - 1))
  local key = prefix .. 'trace:t:' .. h[1]
  redis.call('XADD', key, 'MAXLEN', '~', tmax, '*', 'e', h[2], 'c', sub(s, us + 1, nl - 1))
  written = written + 1
  if not touched[key] then
    touched[key] = true
    order[#order + 1] = key
  end
  if h[3] ~= '' then
    local f = {'v', h[5], 'a', h[6], 'y', h[7], 'e', h[2], 'k', h[1], 'o', h[3], 's', '',
      'f', h[4], 'x', '', 'r', string.format('%.0f', h[8])}
    if h[9] and h[9] ~= '' then
      f[#f + 1] = 'n'
      f[#f + 1] = h[9]
    end
    redis.call('XADD', logkey, 'MINID', '~', minid, '*', unpack(f))
    logged = logged + 1
  end
  pos = nl + 1
end
for _, key in ipairs(order) do redis.call('EXPIRE', key, ttl) end
local d = cjson.decode(ARGV[2])
for _, v in ipairs(d[1]) do
  local args = {}
  for k = 1, #names do
    -- An empty account name is the default account's: no field, as before accounts.
    if names[k] ~= 'n' or v[k] ~= '' then
      args[#args + 1] = names[k]
      args[#args + 1] = v[k]
    end
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
LOG_FIELDS = ("v", "a", "y", "e", "k", "o", "s", "f", "x", "r", "n")

# Records are JSON arrays of plain values; anything else (a datetime a condition read) as text.
# JSON escapes every control character, so no raw "\n" or "\x1f" is ever inside a record.
# No cycles can occur in records: the check for them is skipped (a third of the encoding time).
_encode = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode


_dumps = orjson.dumps
# Datetimes go to `_fragment` too: pydantic-core writes them as before (`Z` for UTC).
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def _fragment(value: Any) -> orjson.Fragment:
    # What orjson leaves to us (datetimes, sets, durations, ...) is written as pydantic-core
    # writes it, as records were before: the same text for the same value.
    return orjson.Fragment(to_json(value, fallback=str, inf_nan_mode="null"))


def _json(value: Any) -> bytes:
    """Compact UTF-8 JSON of a record or header, as the flush script reads it."""
    try:
        # orjson takes a third of pydantic-core's instructions per event, a tenth of the json
        # module's.
        return _dumps(value, default=_fragment, option=_OPTIONS)
    except (orjson.JSONEncodeError, PydanticSerializationError):
        # Text with a lone surrogate (kept as read), an integer past 64 bits, a key that is not
        # text: the json module writes them.
        return _encode(value).encode()


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
        # The size from which `_check` has something to do (the hot path skips it below).
        self._full = min(batch, buffer_max + 1)
        # Per ticket and event, its encoded group (see `_FLUSH_LUA`) and how many records it holds.
        self._groups: deque[tuple[bytes, int]] = deque()
        self._logs: deque[str] = deque()
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
            head = _json((ticket_key, event_id, "", "", "", "", "", 0))
            self._groups.append((head + b"\x1f" + _json(record), 1))
            self._size += 1
            self._check()

    def log(self, fields: Mapping[str, str]) -> None:
        """Add one entry to the deliveries list (fields as in `ticketwire.trace.codes`)."""
        self._logs.append(_encode([fields.get(name, "") for name in LOG_FIELDS]))
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

        The entry's vendor, tenant, type, receive time and account are those of the `rx` record.
        """
        # Encoded at once: buffered text costs the garbage collector nothing, where buffered
        # lists and tuples would be carried into its older generations and scanned again.
        rx = records[0]
        account = rx[9] if len(rx) > 9 else ""
        head = (ticket_key, event_id, outcome, fired, rx[1], rx[2], rx[3], rx[5], account)
        try:
            text = (
                _dumps(head, option=_OPTIONS)
                + b"\x1f"
                + _dumps(records, default=_fragment, option=_OPTIONS)
            )
        except (orjson.JSONEncodeError, PydanticSerializationError):
            text = _json(head) + b"\x1f" + _json(records)
        n = len(records) + 1
        self._groups.append((text, n))
        self._size += n
        if self._size >= self._full:
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
                n = self._groups.popleft()[1]
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
            await stop_task(task, "the trace writer")
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
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            # A timer that sets the wake-up event, not a task per turn: a drain flushes every
            # few dozen events, and asyncio.wait's task and callbacks cost more than that.
            timer = loop.call_later(self._flush_s, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
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
            # One text of all entries, a line each: the script splits it (see `_FLUSH_LUA`).
            records = b"\n".join([text for text, _ in groups])
            entries = _encode(
                [
                    [[hour, f"{rule}{sep}{kind}", n] for (rule, kind), n in counts.items()],
                    list(rules.items()),
                ]
            )
            entries = "[[" + ",".join(logs) + "]," + entries[1:]
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
        groups: deque[tuple[bytes, int]],
        logs: deque[str],
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
