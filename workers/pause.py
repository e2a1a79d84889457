"""Pause and resume rules on every worker, with no restart.

A paused rule is named in `tw:rules:paused` (HASH rule → JSON `{"by": …, "at": ms}`). Every
worker reads that hash each second with the published rules (`workers.reload`) and skips a
paused rule with the reason `paused` until it is resumed. Only a rule some live worker runs can
be paused, so a typo is refused instead of pausing nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from ticketwire.errors import TicketwireError
from ticketwire.keys import Keys
from workers.reload import rules_in_force


class UnknownRule(TicketwireError):
    """No live worker runs a rule of that name; the message lists the ones that do."""


@dataclass(frozen=True)
class PauseInfo:
    """Who paused a rule, and when (epoch ms)."""

    by: str
    at_ms: int

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({"by": self.by, "at": self.at_ms})

    @classmethod
    def from_json(cls, raw: str | bytes) -> PauseInfo:
        """Read a stored entry; an unreadable one still reads as paused, by an unknown hand."""
        try:
            data = json.loads(raw)
            return cls(str(data["by"]), int(data["at"]))
        except (ValueError, KeyError, TypeError):
            return cls("?", 0)


async def known_rules(redis: Redis, keys: Keys) -> list[str]:
    """The names of the rules live workers run, in rule order, each once."""
    _, workers = await rules_in_force(redis, keys)
    return list(dict.fromkeys(name for w in workers for name in w.names))


async def pause_rule(redis: Redis, keys: Keys, name: str, *, by: str) -> bool:
    """Pause `name` on every worker; False when it was paused already (its first pause is kept).

    Raises `UnknownRule` when no live worker runs a rule of that name.
    """
    known = await known_rules(redis, keys)
    if name not in known:
        if not known:
            raise UnknownRule(
                f"cannot pause {name!r}: no live worker has recorded its rules under key prefix "
                f"{keys.prefix!r}; start a worker, then pause the rule"
            )
        raise UnknownRule(
            f"no live worker runs a rule named {name!r}; the rules they run are: {', '.join(known)}"
        )
    info = PauseInfo(by, int(time.time() * 1000))
    return bool(await cast("Awaitable[int]", redis.hsetnx(keys.rules_paused, name, info.to_json())))


async def resume_rule(redis: Redis, keys: Keys, name: str) -> bool:
    """Let every worker run `name` again; False when it was not paused."""
    return bool(await cast("Awaitable[int]", redis.hdel(keys.rules_paused, name)))


async def paused_rules(redis: Redis, keys: Keys) -> dict[str, PauseInfo]:
    """Every paused rule with who paused it and when, by name."""
    raw = await cast("Awaitable[dict[bytes, bytes]]", redis.hgetall(keys.rules_paused))
    return {
        _text(name): PauseInfo.from_json(value)
        for name, value in sorted(raw.items(), key=lambda kv: kv[0])
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
