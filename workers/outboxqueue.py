"""The Redis-backed queue of write-backs: per-ticket lists, the due set, and leased claims."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from redis.asyncio import Redis

from ticketwire.calls import ApiCall
from ticketwire.durability import Durability, NotDurable
from ticketwire.keys import Keys
from ticketwire.writeback import Pending
from workers.outboxpolicy import OutboxPolicy
from workers.scriptbatch import BatchedScript, batched

# KEYS: outbox, planned marker, due set.
# ARGV: planned TTL s ('' = no marker), ticket key, due score ms, items...
# Pushes the items (once per marker) and makes the ticket due at the score unless it already is
# due earlier (or claimed). Returns the number of items pushed.
_PUSH_LUA = """
if ARGV[1] ~= '' and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[2])
return #ARGV - 3
"""

# KEYS: due set, owners hash. ARGV: now ms, horizon ms, limit, owner, lease end ms, outbox key
# prefix, max items per ticket.
# Claims up to `limit` tickets scored at or before the horizon (when the earliest is due by now),
# returning {ticket, score, items} triples. A ticket that still has an owner was claimed before
# and never settled (its claimer died or was stopped mid-flush): its first call may have been in
# flight. Those tickets are listed once more, in one last element, only when there are any.
_CLAIM_LUA = """
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 or tonumber(first[2]) > tonumber(ARGV[1]) then return {} end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
local out = {}
local stale = {}
for i = 1, #due, 2 do
  local t = due[i]
  redis.call('ZADD', KEYS[1], ARGV[5], t)
  if redis.call('HSET', KEYS[2], t, ARGV[4]) == 0 then stale[#stale + 1] = t end
  out[#out + 1] = t
  out[#out + 1] = due[i + 1]
  out[#out + 1] = redis.call('LRANGE', ARGV[6] .. t, 0, tonumber(ARGV[7]) - 1)
end
if #stale > 0 then out[#out + 1] = stale end
return out
"""

# KEYS: due set, owners hash, then each claimed ticket's outbox. ARGV: owner, then per ticket (in
# KEYS order): ticket key, items done, score if more, number of items to put back, those items.
# Settles a claim in one call: for each ticket, drops the items it consumed, puts back what must be
# retried and releases it (due again at the score if anything is left). A ticket whose claim was
# lost (it expired and another worker took the ticket) is left alone.
_SETTLE_LUA = """
local i = 2
for k = 3, #KEYS do
  local ticket, n, score, m = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], tonumber(ARGV[i + 3])
  local first = i + 4
  i = first + m
  if redis.call('HGET', KEYS[2], ticket) == ARGV[1] then
    if n > 0 then redis.call('LTRIM', KEYS[k], n, -1) end
    for j = first + m - 1, first, -1 do redis.call('LPUSH', KEYS[k], ARGV[j]) end
    redis.call('HDEL', KEYS[2], ticket)
    if redis.call('LLEN', KEYS[k]) > 0 then
      redis.call('ZADD', KEYS[1], score, ticket)
    else
      redis.call('ZREM', KEYS[1], ticket)
    end
  end
end
return 1
"""

# KEYS: due set, owners hash. ARGV: owner, lease end ms, tickets... Extends a claim still held.
_RENEW_LUA = """
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
  end
end
return 1
"""

# KEYS: outbox, owners hash. ARGV: ticket key, owner, items done, items left...
# Records progress inside a claim (some of a ticket's calls went out, more follow) so a crash
# now does not send the finished calls again.
_CHECKPOINT_LUA = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[3]), -1)
for i = #ARGV, 4, -1 do redis.call('LPUSH', KEYS[1], ARGV[i]) end
return 1
"""

# Runs another script's writes (`also`) and then the push, in one call: KEYS and ARGV are the
# other script's followed by the push's; ARGV starts with the number of the other's keys and args.
_ALSO_LUA = """
local function other(KEYS, ARGV)
%s
end
local function push(KEYS, ARGV)
%s
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local k1, a1, k2, a2 = {}, {}, {}, {}
for i = 1, #KEYS do
  if i <= nk then k1[#k1 + 1] = KEYS[i] else k2[#k2 + 1] = KEYS[i] end
end
for i = 3, #ARGV do
  if i - 2 <= na then a1[#a1 + 1] = ARGV[i] else a2[#a2 + 1] = ARGV[i] end
end
other(k1, a1)
return push(k2, a2)
"""

#: A script's text with its keys and arguments (e.g. `LoopGuard.record_part`).
ScriptPart = tuple[str, list[str], list[str | int]]
#: A claimed ticket as read: its key, its score in the due set (ms) and its queued calls.
Claimed = tuple[str, int, list[Pending]]


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of the due set's scores (shared by every worker)."""
    return int(time.time() * 1000)


async def requeue(
    redis: Redis, keys: Keys, ticket_key: str, calls: Sequence[ApiCall], *, uncertain: bool = False
) -> None:
    """Queue calls for a ticket with fresh attempts, due now (a running worker sends them).

    `uncertain`: they may have been applied already, so the ticket is read before they go.
    """
    push = redis.register_script(_PUSH_LUA)
    items = (Pending(c, uncertain=uncertain).to_json() for c in calls)
    await push(
        keys=[keys.outbox(ticket_key), keys.planned("-"), keys.wb_due],
        args=["", ticket_key, now_ms(), *items],
    )


class OutboxQueue:
    """Push calls per ticket, and claim, renew, checkpoint and settle the tickets that fall due."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        policy: OutboxPolicy,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.policy = policy
        #: What a claim and a checkpoint wait for before a call goes (None: nothing).
        self.durability = durability
        # Events in flight push in one write per loop turn (see `scriptbatch`).
        self._push = batched(redis).register(_PUSH_LUA)
        self._claim = redis.register_script(_CLAIM_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)
        self._renew = redis.register_script(_RENEW_LUA)
        self._checkpoint = redis.register_script(_CHECKPOINT_LUA)
        self._combined: dict[str, BatchedScript] = {}

    async def push(
        self,
        ticket_key: str,
        event_id: str,
        calls: Sequence[ApiCall],
        *,
        also: ScriptPart | None = None,
    ) -> None:
        """Queue an event's calls (once per event), due after the coalescing window.

        `also` is another script's writes to run first in the same call: one round trip.
        """
        k = self.keys
        due = now_ms() + int(self.policy.window_s * 1000)
        keys = [k.outbox(ticket_key), k.planned(event_id or "-"), k.wb_due]
        args: list[str | int] = [
            int(self.policy.planned_ttl_s) if event_id else "",
            ticket_key,
            due,
            *(Pending(c).to_json() for c in calls),
        ]
        if also is None:
            await self._push(keys=keys, args=args)
            return
        text, other_keys, other_args = also
        script = self._combined.get(text)
        if script is None:
            script = self._combined[text] = batched(self.redis).register(
                _ALSO_LUA % (text, _PUSH_LUA)
            )
        await script(
            keys=[*other_keys, *keys],
            args=[len(other_keys), len(other_args), *other_args, *args],
        )

    async def due_now(self, ticket_key: str) -> None:
        """Make a ticket's queued calls due now, if they are queued and due later."""
        await self.redis.zadd(self.keys.wb_due, {ticket_key: now_ms()}, xx=True, lt=True)

    async def next_due(self) -> float | None:
        """The earliest score in the due set (ms), or None when nothing is queued."""
        first = await self.redis.zrange(self.keys.wb_due, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def claim(self, owner: str, now: int) -> list[Claimed]:
        """Claim what is due by `now` and what may join it within the coalescing window.

        With a durability mode the claim is acknowledged durable before it is returned: one lost
        in a failover would make a call in flight look never sent. One that is not is given back
        and `NotDurable` raised.
        """
        k = self.keys
        keys = [k.wb_due, k.wb_owner]
        args: list[str | int] = [
            now,
            now + int(self.policy.window_s * 1000),
            self.policy.claim_limit,
            owner,
            now + int(self.policy.lease_s * 1000),
            k.outbox(""),
            self.policy.max_items,
        ]
        if self.durability is None:
            return _claimed(await self._claim(keys=keys, args=args))
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._claim(keys=keys, args=args, client=pipe)
            try:
                (raw,) = await self.durability.execute(pipe)
            except NotDurable as exc:
                # Held on the primary only: give it back as it was. Should the give-back be lost
                # and the claim kept, the next claimer reads the tickets back first.
                await self.settle(owner, _unsent(_claimed(exc.replies[0])))
                raise
        return _claimed(raw)

    async def renew(
        self, owner: str, tickets: Sequence[str], *, lease_end: int | None = None
    ) -> None:
        """Extend a claim's lease on the tickets it still holds (to `lease_end` ms: end it then)."""
        if not tickets:
            return
        if lease_end is None:
            lease_end = now_ms() + int(self.policy.lease_s * 1000)
        await self._renew(
            keys=[self.keys.wb_due, self.keys.wb_owner], args=[owner, lease_end, *tickets]
        )

    async def checkpoint(
        self, owner: str, progress: Sequence[tuple[str, int, Sequence[Pending]]]
    ) -> None:
        """Record, per (ticket, items done, items left), the progress made inside a claim.

        With a durability mode it returns once durable (else `NotDurable`): the next round's
        calls go only then.
        """
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, done, left in progress:
                await self._checkpoint(
                    keys=[k.outbox(key), k.wb_owner],
                    args=[key, owner, done, *(p.to_json() for p in left)],
                    client=pipe,
                )
            if self.durability is None:
                await pipe.execute()
            else:
                await self.durability.execute(pipe)

    async def settle(
        self, owner: str, outcomes: Sequence[tuple[str, int, int, Sequence[Pending]]]
    ) -> None:
        """Settle a claim: per (ticket, items done, score if more, items put back), in one call."""
        k = self.keys
        args: list[str | int] = [owner]
        for key, done, score, rest in outcomes:
            args += [key, done, score, len(rest), *(p.to_json() for p in rest)]
        await self._settle(
            keys=[k.wb_due, k.wb_owner, *(k.outbox(key) for key, *_ in outcomes)], args=args
        )


def _claimed(raw: list[Any]) -> list[Claimed]:
    """The claim script's reply as claimed tickets; a stale claim's first call is uncertain."""
    if not raw:
        return []
    stale = {t.decode() for t in raw.pop()} if len(raw) % 3 else set()
    out: list[Claimed] = []
    for i in range(0, len(raw), 3):
        key = raw[i].decode()
        items = [Pending.from_json(x) for x in raw[i + 2]]
        if key in stale and items and not items[0].uncertain:
            # The dead claim checkpointed before each round: only its first call left
            # may have gone out.
            items[0] = replace(items[0], uncertain=True)
        out.append((key, int(float(raw[i + 1])), items))
    return out


def _unsent(claimed: list[Claimed]) -> list[tuple[str, int, int, Sequence[Pending]]]:
    """Settle outcomes that give claimed tickets back unsent (a stale claim's mark kept)."""
    return [
        (key, 1, score, items[:1]) if items else (key, 0, score, [])
        for key, score, items in claimed
    ]
