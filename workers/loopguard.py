"""Loop safety in Redis: our own write-back makes the helpdesk send new webhooks; they must not re-fire us.

The decisions themselves are pure (`ticketwire.engine.guard.decide`); this module keeps, per
ticket and shared by every worker, what they need:

- `written:<ticket>`  the fields our write-backs set within the echo window (and the notes they
  left), and which rules set them (`wrote`, called by the write-back sender after each accepted
  call): echo by change;
- `fired:<ticket>`    each rule's last firing and its actions' fingerprint: echo by actions;
- `firings:<ticket>`  one entry per rule firing within the fuse window: the loop fuse;
- `limits:<ticket>`   when each `once_per_ticket` / `cooldown` rule last fired, and whether its
  rearm condition held since.

`check` reads all of it in one round trip, `record` writes in one. Actions whose target state the
ticket already has are dropped earlier, by the planner.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from ticketwire.calls import ApiCall
from ticketwire.engine.echo import Write
from ticketwire.engine.guard import (
    Clearance,
    GuardPolicy,
    GuardState,
    LastFiring,
    Memory,
    decide,
    fingerprint,
)
from ticketwire.engine.limits import FiringLimits
from ticketwire.keys import Keys
from ticketwire.vendors.bundle import Echo
from ticketwire.vendors.registry import derived_or_none

__all__ = ["Clearance", "LoopGuard", "echo_of", "fingerprint"]

_ECHOES: dict[str, Echo] = {}


def echo_of(vendor: str) -> Echo | None:
    """Which ticket fields `vendor`'s calls set, and the bookkeeping a change ignores."""
    found = _ECHOES.get(vendor)
    if found is None:
        found = derived_or_none(_ECHOES, vendor, lambda v: v.echo())
    return found


#: Writes of one field kept per ticket (older ones are dropped, as are those past the window).
WRITES_PER_FIELD = 8
_REARMED = "\x1frearmed"
_SEP = "\x1f"
_ENTRY_SEP = "\x1e"

# Appends each field's write to the ones still inside the echo window (at most ARGV[3] of them),
# so a ticket written again and again keeps a bounded hash. Entries are `<at ms>\x1f<json>`,
# joined by \x1e; the JSON is never decoded here (cjson would turn [] into {}).
# KEYS: fired, firings, written, limits. ARGV: fuse window start (exclusive), want writes (0/1),
# number of fired names, the names, then the limits fields.
# Everything `check` reads, in one script: one command to encode instead of a pipeline of four.
_CHECK = """
local n = tonumber(ARGV[3])
local out = {{}, {}, {}, {}}
if n > 0 then
  local names = {}
  for i = 1, n do names[i] = ARGV[3 + i] end
  out[1] = redis.call('HMGET', KEYS[1], unpack(names))
  out[2] = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
end
if ARGV[2] == '1' then out[3] = redis.call('HGETALL', KEYS[3]) end
if #ARGV > 3 + n then
  local fields = {}
  for i = 4 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
  out[4] = redis.call('HMGET', KEYS[4], unpack(fields))
end
return out
"""

# KEYS: fired, firings, limits. ARGV: now ms, echo window ms, fuse window ms, limits TTL ms,
# number of firings, then per firing (rule, last-firing value, fuse member), then the number of
# limits fields to set, the (field, value) pairs, and the fields to delete.
# Everything `record` writes, in one script.
_RECORD = """
local now, echo, window, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local n = tonumber(ARGV[5])
local i = 6
for _ = 1, n do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], 'NX', now, ARGV[i + 2])
  i = i + 3
end
if n > 0 then
  redis.call('PEXPIRE', KEYS[1], echo)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[2], window)
end
local m = tonumber(ARGV[i])
i = i + 1
for _ = 1, m do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for j = i, #ARGV do redis.call('HDEL', KEYS[3], ARGV[j]) end
if m > 0 then
  if redis.call('PTTL', KEYS[3]) < tonumber(ttl) then redis.call('PEXPIRE', KEYS[3], ttl) end
end
return 1
"""

# KEYS: the written hash of each ticket. ARGV: now ms, window ms, entries kept per field, then per
# ticket (in KEYS order) the number of (field, entry) pairs and the pairs.
# One call for every ticket of a flush: keeps each field's recent writes inside the window.
_WROTE = """
local now, window, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local i = 4
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n do
    local field, entry = ARGV[i], ARGV[i + 1]
    i = i + 2
    local kept = {}
    local raw = redis.call('HGET', KEYS[k], field)
    if raw then
      for item in string.gmatch(raw, '[^\\30]+') do
        local at = tonumber(string.match(item, '^(%d+)'))
        if at and now - at < window then kept[#kept + 1] = item end
      end
    end
    kept[#kept + 1] = entry
    while #kept > cap do table.remove(kept, 1) end
    redis.call('HSET', KEYS[k], field, table.concat(kept, '\\30'))
  end
  redis.call('PEXPIRE', KEYS[k], window)
end
return 1
"""


#: A script's text with its keys and arguments, for running inside another call.
ScriptPart = tuple[str, list[str], list[str | int]]


def _text(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else raw


class LoopGuard:
    """Decide which firing rules are echoes, limited or over the fuse; remember firings and writes."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        echo_window_s: float,
        fuse_per_hour: int,
        fuse_window_s: float = 3600.0,
        memory_ttl_s: float = 90 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.policy = GuardPolicy(
            echo_window_ms=int(echo_window_s * 1000),
            fuse_limit=fuse_per_hour,
            fuse_window_ms=int(fuse_window_s * 1000),
        )
        self._memory_ms = int(memory_ttl_s * 1000)
        self._clock = clock
        self._check = redis.register_script(_CHECK)
        self._record = redis.register_script(_RECORD)
        self._wrote = redis.register_script(_WROTE)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def prefetch_keys(self, ticket_key: str) -> list[str]:
        """The keys `check` reads, in the order a prefetching script must read them."""
        k = self._keys
        return [
            k.fired(ticket_key),
            k.firings(ticket_key),
            k.written(ticket_key),
            k.limits(ticket_key),
        ]

    def fuse_since_ms(self) -> int:
        """Start (exclusive) of the fuse window now, for a prefetching script."""
        return self._now_ms() - self.policy.fuse_window_ms

    async def check(
        self,
        ticket_key: str,
        fired: Sequence[tuple[str, str]],
        *,
        event_id: str,
        limits: Mapping[str, FiringLimits] | None = None,
        rearm: Sequence[str] = (),
        changes: Mapping[str, tuple[Any, Any]] | None = None,
        vendor: str | None = None,
        prefetched: Sequence[Any] | None = None,
    ) -> Clearance:
        """Split `(rule, fingerprint)` pairs into allowed and suppressed-with-reason.

        `limits` gives the rules' once_per_ticket/cooldown, `rearm` the rules whose rearm
        condition holds on this event, `changes` what the delivery changed (None: unknown) and
        `vendor` whose bookkeeping fields to ignore. One Redis round trip, none when there is
        nothing to decide.
        """
        limits = limits or {}
        names = [name for name, _ in fired]
        limited = list(dict.fromkeys([n for n in names if n in limits] + list(rearm)))
        # Known changes, even none (a note's echo changes nothing), are compared with our writes.
        want_writes = bool(fired) and changes is not None
        if not fired and not limited:
            return Clearance((), ())
        now = self._now_ms()
        fields = [f for n in limited for f in (n, n + _REARMED)]
        if prefetched is not None:
            # Read with the ticket state a moment ago (`prefetch_keys`): no round trip here.
            fired_all, raw_fuse, raw_writes, limits_all = prefetched
            last_map = _pairs(fired_all)
            mem_map = _pairs(limits_all)
            raw_last = [last_map.get(n.encode()) for n in names]
            raw_mem = [mem_map.get(f.encode()) for f in fields]
        else:
            raw_last, raw_fuse, raw_writes, raw_mem = await self._check(
                keys=self.prefetch_keys(ticket_key),
                args=[
                    now - self.policy.fuse_window_ms,
                    1 if want_writes else 0,
                    len(names),
                    *names,
                    *fields,
                ],
            )
        last: dict[str, LastFiring] = {}
        fuse_events: list[str] = []
        if fired:
            for name, raw in zip(names, raw_last, strict=True):
                text = _text(raw)
                parsed = LastFiring.decode(text) if text else None
                if parsed is not None:
                    last[name] = parsed
            fuse_events = [(_text(m) or "").partition(_SEP)[0] for m in raw_fuse]
        # HGETALL inside a script comes back as a flat list of field, value.
        flat = list(raw_writes)
        writes = (
            _decode_writes(dict(zip(flat[::2], flat[1::2], strict=True))) if want_writes else []
        )
        memory: dict[str, Memory] = {}
        if limited:
            for i, name in enumerate(limited):
                text, flag = _text(raw_mem[2 * i]), raw_mem[2 * i + 1]
                mem = Memory.decode(text, rearmed=flag is not None) if text else None
                if mem is not None:
                    memory[name] = mem
        echo = echo_of(vendor) if vendor is not None else None
        ignore = echo.bookkeeping if echo is not None else frozenset()
        return decide(
            fired,
            GuardState(last=last, fuse_events=fuse_events, memory=memory, writes=writes),
            policy=self.policy,
            now_ms=now,
            event_id=event_id,
            limits=limits,
            rearm=rearm,
            changes=changes,
            ignore=ignore,
        )

    async def record(
        self,
        ticket_key: str,
        fired: Sequence[tuple[str, str]],
        *,
        event_id: str,
        limits: Mapping[str, FiringLimits] | None = None,
        rearmed: Sequence[str] = (),
    ) -> None:
        """Remember that these rules fired now (and which limited rules this event re-armed).

        A re-run of the same event keeps its fuse entries: they are counted once.
        """
        part = self.record_part(
            ticket_key, fired, event_id=event_id, limits=limits, rearmed=rearmed
        )
        if part is not None:
            await self.run(part)

    async def run(self, part: ScriptPart) -> None:
        """Run what `record_part` returned, on its own."""
        _, keys, args = part
        await self._record(keys=keys, args=args)

    def record_part(
        self,
        ticket_key: str,
        fired: Sequence[tuple[str, str]],
        *,
        event_id: str,
        limits: Mapping[str, FiringLimits] | None = None,
        rearmed: Sequence[str] = (),
    ) -> ScriptPart | None:
        """What `record` runs, as (script, keys, args), for a caller that runs it in its own call.

        None when there is nothing to record.
        """
        limits = limits or {}
        memory = [n for n, _ in fired if n in limits and limits[n].active]
        rearmed = [n for n in rearmed if n not in memory]
        if not fired and not rearmed:
            return None
        now = self._now_ms()
        keys = self._keys
        args: list[str | int] = [
            now,
            self.policy.echo_window_ms,
            self.policy.fuse_window_ms,
            0,
            len(fired),
        ]
        for n, fp in fired:
            args += [n, LastFiring(fp, now, event_id).encode(), f"{event_id}{_SEP}{n}"]
        mapping = {n: Memory(now, event_id).encode() for n in memory}
        mapping.update({n + _REARMED: str(now) for n in rearmed})
        args.append(len(mapping))
        for field, value in mapping.items():
            args += [field, value]
        if memory:
            args += [n + _REARMED for n in memory]
            cooldowns = [limits[n].cooldown_s or 0.0 for n in memory]
            # The memory of a ticket lives as long as the longest of its cooldowns, at least.
            args[3] = max([self._memory_ms, *(int(c * 1000) for c in cooldowns)])
        elif mapping:
            args[3] = self._memory_ms
        ticket_keys = [keys.fired(ticket_key), keys.firings(ticket_key), keys.limits(ticket_key)]
        return _RECORD, ticket_keys, args

    async def wrote(self, writes: Sequence[tuple[str, ApiCall]]) -> None:
        """Remember the fields accepted calls set, per ticket, for the echo window (one round trip).

        Each pair is `(ticket key, call)` with the call in single-ticket form. Calls of a vendor
        without an echo description, and calls that set no field (creates), are skipped.
        """
        now = self._now_ms()
        per_ticket: dict[str, list[str]] = {}
        for ticket_key, call in writes:
            echo = echo_of(call.vendor)
            if echo is None:
                continue
            args = per_ticket.setdefault(ticket_key, [])
            for path, value in echo.written_fields(call).items():
                body = json.dumps(
                    {"v": value, "r": list(call.rules)},
                    sort_keys=True,
                    separators=(",", ":"),
                    default=str,
                )
                args.extend((path, f"{now}{_SEP}{body}"))
        per_ticket = {k: v for k, v in per_ticket.items() if v}
        if not per_ticket:
            return
        flat: list[str | int] = [now, self.policy.echo_window_ms, WRITES_PER_FIELD]
        for args in per_ticket.values():
            flat += [len(args) // 2, *args]
        await self._wrote(keys=[self._keys.written(t) for t in per_ticket], args=flat)


def _pairs(flat: Sequence[Any]) -> dict[bytes, Any]:
    """A flat HGETALL answer (field, value, ...) read inside a script, as a dict."""
    items = list(flat)
    return {
        (k if isinstance(k, bytes) else str(k).encode()): v
        for k, v in zip(items[::2], items[1::2], strict=True)
    }


def _decode_writes(raw: Mapping[bytes | str, bytes | str]) -> list[Write]:
    writes: list[Write] = []
    for field, value in raw.items():
        path = _text(field) or ""
        for entry in (_text(value) or "").split(_ENTRY_SEP):
            at, _, body = entry.partition(_SEP)
            if not at.isdigit():
                continue
            try:
                doc = json.loads(body)
            except ValueError:
                continue
            writes.append(Write(path, doc.get("v"), tuple(doc.get("r") or ()), int(at)))
    return writes
