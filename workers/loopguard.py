"""Loop safety: our own write-back makes the helpdesk send new webhooks; they must not re-fire us.

Two guards, both per ticket and kept in Redis so every worker sees them:
- echo suppression: a rule that would take exactly the actions it took on this ticket within the
  echo window (default 10 min) is skipped as an echo of its own write;
- a fuse: at most N rule firings per ticket per hour (default 10), whatever the rules do.
Actions whose target state the ticket already has are dropped earlier, by the planner.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from ticketwire.keys import Keys

FUSE_WINDOW_S = 3600


def fingerprint(actions: Iterable[tuple[str, object]]) -> str:
    """Digest of a rule's actions (name and parameters), independent of dict ordering."""
    canon = json.dumps([[n, p] for n, p in actions], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Verdict:
    """Which fired rules may act, and why the others may not."""

    allowed: tuple[str, ...]
    suppressed: tuple[tuple[str, str], ...]


class LoopGuard:
    """Decide which firing rules are echoes or over the fuse, and remember firings."""

    def __init__(
        self, redis: Redis, keys: Keys, *, echo_window_s: float, fuse_per_hour: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._echo_ms = int(echo_window_s * 1000)
        self._fuse = fuse_per_hour

    async def check(
        self, ticket_key: str, fired: Sequence[tuple[str, str]], *, event_id: str
    ) -> Verdict:
        """Split `(rule, fingerprint)` pairs into allowed and suppressed-with-reason.

        A firing recorded by this same event is not an echo: it is a re-run after a crash.
        """
        if not fired:
            return Verdict((), ())
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self._keys.fired(ticket_key), [name for name, _ in fired])
            pipe.get(self._keys.fuse(ticket_key))
            last, fuse_raw = await pipe.execute()
        now = int(time.time() * 1000)
        used = int(fuse_raw or 0)
        allowed: list[str] = []
        suppressed: list[tuple[str, str]] = []
        for (name, fp), prev in zip(fired, last, strict=True):
            if prev:
                prev_fp, prev_at, prev_event = (prev.decode().split("|") + ["", ""])[:3]
                if prev_fp == fp and prev_event != event_id and now - int(prev_at) < self._echo_ms:
                    ago = (now - int(prev_at)) / 1000
                    suppressed.append(
                        (
                            name,
                            f"echo: same actions as its own firing {ago:.1f}s ago on this ticket",
                        )
                    )
                    continue
            if used >= self._fuse:
                suppressed.append(
                    (
                        name,
                        (
                            f"loop fuse: {used} rule firings on this ticket in the last hour "
                            f"(limit {self._fuse}, TICKETWIRE_FUSE_PER_HOUR)"
                        ),
                    )
                )
                continue
            used += 1
            allowed.append(name)
        return Verdict(tuple(allowed), tuple(suppressed))

    async def record(
        self, ticket_key: str, fired: Sequence[tuple[str, str]], *, event_id: str
    ) -> None:
        """Remember that these rules fired now with these fingerprints."""
        if not fired:
            return
        now = int(time.time() * 1000)
        fired_key, fuse_key = self._keys.fired(ticket_key), self._keys.fuse(ticket_key)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(fired_key, mapping={name: f"{fp}|{now}|{event_id}" for name, fp in fired})
            pipe.pexpire(fired_key, self._echo_ms)
            pipe.incrby(fuse_key, len(fired))
            pipe.expire(fuse_key, FUSE_WINDOW_S, nx=True)
            await pipe.execute()
