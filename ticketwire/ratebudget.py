"""One request budget per helpdesk account, shared through Redis by every process that calls it.

A budget is a set of limits (`100/min`, `write=1000/h`, ...) for one scope (vendor + account).
Each limit is a sliding log in a sorted set: a request may go when fewer than `limit` requests
went in the last `window` on every limit it counts against. Sliding, not fixed or token-bucket,
because the helpdesk's own window is not documented (fixed or sliding): a sliding log never lets
more than `limit` requests into any window of that length, so whichever the helpdesk uses, it
never sees more. A 429 pauses the whole scope for every process until its Retry-After.

Why a Lua script and not a library: the asyncio Redis limiters on PyPI either use a second Redis
client (coredis) or implement fixed windows/token buckets, and none can pause a budget until a
time the helpdesk names. The script is one round trip per request and uses the server's clock,
so workers with skewed clocks still share one timeline.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from ticketwire.errors import BudgetSpent
from ticketwire.keys import Keys

# KEYS: pause key, then one sorted set per limit. ARGV: request id, then (limit, window ms) pairs,
# then margin ms. Returns 0 when the request was admitted (and logged on every limit), else the
# milliseconds until it could be.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then return paused - now end
local margin = tonumber(ARGV[#ARGV])
local wait = 0
for i = 2, #KEYS do
  local limit = tonumber(ARGV[2 * i - 2])
  local window = tonumber(ARGV[2 * i - 1]) + margin
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    -- The oldest entry leaves the window when now - window reaches it (the trim above is
    -- inclusive), so that is the wait: never longer than the window itself.
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then return wait end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now, now .. '-' .. ARGV[1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 * i - 1]) + margin + 1000)
end
return 0
"""

# KEYS: pause key, paused-budgets index. ARGV: pause ms, scope. Pauses until now + ms unless
# already paused for longer; the index lets the backlog read every paused budget in one command.
_PAUSE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZADD', KEYS[2], until_ms, ARGV[2])
end
return math.max(until_ms, current) - now
"""

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}
_SPEC = re.compile(r"^(?:(?P<cls>[a-z]+)=)?(?P<n>\d+)/(?P<k>\d+)?(?P<unit>[a-z]+)$")
#: Which requests each class of limit counts.
CLASSES = ("all", "read", "write", "bulk")


@dataclass(frozen=True)
class Limit:
    """At most `limit` requests of class `cls` in any `window_s` seconds."""

    cls: str
    limit: int
    window_s: float

    def counts(self, method: str, path: str) -> bool:
        """True when a request `method path` counts against this limit."""
        if self.cls == "all":
            return True
        if self.cls == "read":
            return method.upper() in ("GET", "HEAD")
        if self.cls == "write":
            return method.upper() not in ("GET", "HEAD")
        return "bulk" in path

    def describe(self) -> str:
        """e.g. `100/60s` or `write=1000/3600s`."""
        prefix = "" if self.cls == "all" else f"{self.cls}="
        return f"{prefix}{self.limit}/{self.window_s:g}s"


def parse_limits(text: str) -> tuple[Limit, ...]:
    """Parse `100/min`, `write=1000/h,all=120/min`, `50/10s`; raise ValueError saying how."""
    out: list[Limit] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = _SPEC.match(part.replace(" ", "").lower())
        if m is None or m["unit"] not in _UNITS:
            raise ValueError(
                f"{part!r} is not a rate limit; write N/unit with unit s, min or h, optionally "
                f"with a class ({', '.join(CLASSES)}) and a count of units, e.g. 100/min, "
                "write=1000/h, 50/10s"
            )
        cls = m["cls"] or "all"
        if cls not in CLASSES:
            raise ValueError(f"{part!r}: unknown class {cls!r}; use one of {', '.join(CLASSES)}")
        limit = int(m["n"])
        if limit < 1:
            raise ValueError(f"{part!r}: the limit must be at least 1")
        out.append(Limit(cls, limit, int(m["k"] or 1) * _UNITS[m["unit"]]))
    return tuple(out)


class RateBudget:
    """The request budget of one helpdesk account, shared by every worker through Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        scope: str,
        limits: Sequence[Limit],
        *,
        max_wait_s: float = 2.0,
        margin_s: float = 0.25,
    ) -> None:
        self.scope = scope
        self.limits = tuple(limits)
        self._redis = redis
        self._pause_key = f"{prefix}budget:{scope}:paused"
        self._paused_index = Keys(prefix).budgets_paused
        self._keys = [f"{prefix}budget:{scope}:{lim.describe()}" for lim in self.limits]
        self._max_wait_s = max_wait_s
        # Requests admitted at the edge of a window reach the helpdesk a little later or
        # earlier than the server clock says; the margin keeps that jitter inside the limit.
        self._margin_ms = int(margin_s * 1000)
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._pause = redis.register_script(_PAUSE_LUA)
        self._seq = 0

    def __repr__(self) -> str:
        shown = ", ".join(lim.describe() for lim in self.limits) or "no limit"
        return f"RateBudget({self.scope}: {shown})"

    async def try_acquire(self, method: str, path: str) -> float:
        """Take one request from the budget now and return 0, or return seconds to wait."""
        idx = [i for i, lim in enumerate(self.limits) if lim.counts(method, path)]
        self._seq += 1
        args: list[int | str] = [f"{id(self):x}.{self._seq}"]
        for i in idx:
            args += [self.limits[i].limit, int(self.limits[i].window_s * 1000)]
        args.append(self._margin_ms)
        wait_ms = await self._acquire(
            keys=[self._pause_key, *(self._keys[i] for i in idx)], args=args
        )
        return int(wait_ms) / 1000

    async def acquire(self, method: str, path: str, *, label: str = "") -> None:
        """Wait for the budget (briefly) or raise `BudgetSpent` saying how long it is spent for.

        Short waits are slept here; a longer one is handed back so the caller can leave the
        work queued and free its slot instead of holding it.
        """
        while True:
            wait = await self.try_acquire(method, path)
            if wait <= 0:
                return
            if wait > self._max_wait_s:
                raise BudgetSpent(
                    f"{label or self.scope}: request budget spent "
                    f"({', '.join(lim.describe() for lim in self.limits) or 'paused'}); "
                    f"next request in {wait:.1f}s",
                    retry_after=wait,
                )
            await asyncio.sleep(wait)

    async def pause(self, seconds: float) -> float:
        """Stop every worker using this budget for `seconds` (a 429's Retry-After)."""
        left = await self._pause(
            keys=[self._pause_key, self._paused_index],
            args=[max(1, int(seconds * 1000)), self.scope],
        )
        return int(left) / 1000
