"""Last-seen ticket state in Redis: one atomic script per event decides stale or applied.

Per ticket a small hash keeps the order key of the last applied event (the vendor's sequence and
the ticket's `updated_at`), that event's id, the values of the fields rules read (a JSON
snapshot) and the snapshot before it. An event older than the applied one is stale: the state is
left as it is and a record goes to a capped stream. Otherwise the event is applied and rules see
the snapshot before it as `Event.previous`. Another notice of the same change (same order key,
same snapshot: one edit announced as several event types) gets the snapshot from before that
change, never its own; so does a re-run of any of the last `RERUN_MEMORY` applied events (after
a crash, or a dead letter redriven), which is never stale and changes nothing. The hash expires
`ttl` after the last applied event. The rules are those of `ticketwire.engine.changes`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from redis.asyncio import Redis

from ticketwire.engine.changes import (
    RERUN_MEMORY,
    Observation,
    encode_snapshot,
    from_micros,
    micros,
    snapshot,
)
from ticketwire.event import Event
from ticketwire.keys import Keys
from workers.scriptbatch import batched

#: Roughly how many stale records the stream keeps (older ones are trimmed).
STALE_MAXLEN = 10_000

# Hash fields: id (applied event), q (sequence), u (updated_at, µs since the epoch), t (the same
# as ISO 8601, for stale records), s (snapshot), p (snapshot before s; "" when none), and for the
# last RERUN_MEMORY applied events `h:<event id>` (the snapshot each was compared with) listed
# oldest first in `ids` (JSON). Order keys are decimal integers compared as text by length, so
# no precision is lost to Lua's floating-point numbers.
_OBSERVE_LUA = """
local key, stale_key = KEYS[1], KEYS[2]
-- With KEYS 3-6 (the loop guard's keys of the ticket), what the guard will need is read in the
-- same call, so a firing event costs the worker one round trip less.
local function guard()
  if #KEYS < 6 then return {} end
  return {
    redis.call('HGETALL', KEYS[3]),
    redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[13], '+inf'),
    redis.call('HGETALL', KEYS[5]),
    redis.call('HGETALL', KEYS[6]),
  }
end
local id, seq, us, iso, snap = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl, maxlen, keep, record = tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]), ARGV[12]
local cur = redis.call('HMGET', key, 'id', 'q', 'u', 't', 's', 'p', 'h:' .. id, 'ids')
local cid, cq, cu, ct, cs, cp, seen = cur[1], cur[2], cur[3], cur[4], cur[5], cur[6], cur[7]
if seen then
  -- Applied before (a re-run or a redrive): what it was compared with then; nothing changes.
  return {'applied', seen, cu, cid, cq, guard()}
end
local function cmp(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then
    if na then return -1 end
    return 1
  end
  local sign = 1
  if na then
    sign = -1
    a, b = string.sub(a, 2), string.sub(b, 2)
  end
  if #a ~= #b then
    if #a < #b then return -sign end
    return sign
  end
  if a == b then return 0 end
  if a < b then return -sign end
  return sign
end
-- Every field this event writes goes out in one HSET at the end.
local ids, set = {}, nil
if not cid then
  cp, cu, cq = '', us, seq
  set = {'id', id, 'q', seq, 'u', us, 't', iso, 's', snap, 'p', ''}
else
  local order = 1
  if seq ~= '' and cq ~= '' then
    order = cmp(seq, cq)
  elseif us ~= '' and cu ~= '' then
    order = cmp(us, cu)
  end
  if order < 0 then
    if record == '1' then
      redis.call('XADD', stale_key, 'MAXLEN', '~', maxlen, '*',
        'event_id', id, 'ticket', ARGV[9], 'vendor', ARGV[10], 'type', ARGV[11],
        'updated_at', iso, 'sequence', seq,
        'applied_event_id', cid, 'applied_updated_at', ct, 'applied_sequence', cq)
    end
    return {'stale', '', cu, cid, cq}
  end
  if order == 0 and snap == cs then
    -- Another notice of the same change: compared with what came before that change.
    set = {'id', id}
  else
    set = {'id', id, 'q', seq, 'u', us, 't', iso, 's', snap, 'p', cs}
    cp, cu, cq = cs, us, seq
  end
  if cur[8] then ids = cjson.decode(cur[8]) end
end
table.insert(ids, id)
local forget = {}
while #ids > keep do
  table.insert(forget, 'h:' .. table.remove(ids, 1))
end
if #forget > 0 then redis.call('HDEL', key, unpack(forget)) end
table.insert(set, 'h:' .. id)
table.insert(set, cp)
table.insert(set, 'ids')
table.insert(set, cjson.encode(ids))
redis.call('HSET', key, unpack(set))
redis.call('PEXPIRE', key, ttl)
-- The state before this event, for its trace (the values above are the ones just applied).
return {'applied', cp, cu, id, cq, guard(), {cur[1] or '', cur[2] or '', cur[3] or ''}}
"""


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _number(value: bytes | str | None) -> int | None:
    text = _text(value)
    return int(text) if text else None


class TicketState:
    """Per-ticket last applied event and read-field snapshots, decided by one script call."""

    def __init__(
        self, redis: Redis, keys: Keys, *, ttl_s: float, stale_maxlen: int = STALE_MAXLEN
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s}")
        self._keys = keys
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._maxlen = stale_maxlen
        # Events in flight observe in one write per loop turn (see `scriptbatch`).
        self._observe = batched(redis).register(_OBSERVE_LUA)

    async def observe(
        self,
        event: Event,
        fields: Iterable[str],
        *,
        record_stale: bool = True,
        guard_keys: Sequence[str] = (),
        guard_since_ms: int = 0,
        trace: Callable[[Sequence[Any]], None] | None = None,
    ) -> Observation:
        """Apply `event` to its ticket's state unless it is stale; say what was kept before it.

        `fields` are what `Router.read_fields()` returns; only their values are kept. A stale
        event is added to the stale stream unless `record_stale` is false (it is acted on anyway).
        With `guard_keys` (`LoopGuard.prefetch_keys`), the loop guard's state of the ticket is
        read in the same call and returned as `Observation.prefetched`. `trace` is given the
        stale check's trace record (`st`: both order keys and the last applied event).
        """
        us = micros(event.updated_at)
        seq = event.sequence
        res = await self._observe(
            keys=[self._keys.state(event.ticket_key), self._keys.stale, *guard_keys],
            args=[
                event.id,
                "" if seq is None else str(seq),
                "" if us is None else str(us),
                "" if event.updated_at is None else event.updated_at.isoformat(),
                encode_snapshot(snapshot(event, fields)),
                self._ttl_ms,
                self._maxlen,
                RERUN_MEMORY,
                event.ticket_key,
                event.vendor,
                event.type,
                "1" if record_stale else "0",
                guard_since_ms,
            ],
        )
        status, before, applied_us, applied_id, applied_seq, guard, was = (res + [None] * 7)[:7]
        stale = _text(status) == "stale"
        if trace is not None:
            # Order keys as compared: the sequence where the helpdesk sends one, else updated_at
            # in µs since the epoch (decimal text).
            last_id, last_q, last_u = was or (applied_id, applied_seq, applied_us)
            order = str(seq) if seq is not None else ("" if us is None else str(us))
            trace(("st", 1 if stale else 0, order, _text(last_q or last_u), _text(last_id)))
        before_text = _text(before)
        previous = json.loads(before_text) if before_text else None
        return Observation(
            previous=previous,
            stale=stale,
            applied_updated_at=from_micros(_number(applied_us)),
            applied_event_id=_text(applied_id) or None,
            first_seen=not stale and previous is None,
            applied_sequence=_number(applied_seq),
            prefetched=tuple(guard) if guard_keys and guard else None,
        )
