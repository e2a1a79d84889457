"""The rules page: each rule's firings, suppressions and errors by hour and day; pause, resume."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

from aiohttp import web
from redis.asyncio import Redis

from receiver.console.context import console_key
from receiver.console.forms import text_field
from ticketwire.engine.ruleset import load_rule_set
from ticketwire.keys import Keys
from ticketwire.trace import codes
from workers.pause import UnknownRule, known_rules, pause_rule, paused_rules, resume_rule

#: Hour buckets summed for the day's figures: the hour still filling and the 23 before it.
DAY_HOURS = 24
_KINDS = {
    codes.STAT_FIRED: "fired",
    codes.STAT_SUPPRESSED: "suppressed",
    codes.STAT_ERROR: "errors",
    codes.STAT_PAUSED: "paused",
}


@dataclass
class Counts:
    """Firings, suppressions, errors and paused skips over some hours."""

    fired: int = 0
    suppressed: int = 0
    errors: int = 0
    paused: int = 0

    def add(self, kind: str, n: int) -> None:
        """Add `n` to the count named by a rulestats kind code."""
        name = _KINDS.get(kind)
        if name is not None:
            setattr(self, name, getattr(self, name) + n)


@dataclass
class RuleRow:
    """One line of the rules page."""

    name: str
    hour: Counts = field(default_factory=Counts)
    day: Counts = field(default_factory=Counts)
    paused_by: str | None = None
    paused_at: str = ""


def hour_buckets(now: datetime, hours: int = DAY_HOURS) -> list[str]:
    """The rulestats hour names from the current UTC hour back, newest first."""
    now = now.astimezone(UTC)
    return [(now - timedelta(hours=h)).strftime(codes.HOUR_FORMAT) for h in range(hours)]


def tally(
    names: Iterable[str],
    buckets: list[Mapping[bytes, bytes]],
    paused: Mapping[str, tuple[str, str]],
) -> list[RuleRow]:
    """Rows for `names` (and any rule seen in the figures or paused), from newest-first buckets."""
    rows = {n: RuleRow(n) for n in names}
    for i, bucket in enumerate(buckets):
        for raw_field, raw_count in bucket.items():
            rule, _, kind = raw_field.decode("utf-8", "replace").rpartition(codes.RULE_SEP)
            try:
                n = int(raw_count)
            except ValueError:
                continue
            row = rows.setdefault(rule, RuleRow(rule))
            row.day.add(kind, n)
            if i == 0:
                row.hour.add(kind, n)
    for name, (by, at) in paused.items():
        row = rows.setdefault(name, RuleRow(name))
        row.paused_by, row.paused_at = by, at
    return sorted(rows.values(), key=lambda r: r.name)


async def rule_names(redis: Redis, keys: Keys, rules_dir: str) -> list[str]:
    """The rules live workers run; before any worker recorded them, those of our rules files."""
    names = await known_rules(redis, keys)
    if names:
        return names
    loaded = await asyncio.to_thread(load_rule_set, rules_dir)
    return [r.name for r in loaded.router.rules] if loaded.router is not None else []


async def page(request: web.Request) -> web.Response:
    """Every rule with its figures and a pause or resume button."""
    console = request.app[console_key]
    redis, keys = console.redis, console.keys
    names = await rule_names(redis, keys, str(console.settings.rules_dir))
    async with redis.pipeline(transaction=False) as pipe:
        for hour in hour_buckets(datetime.now(UTC)):
            pipe.hgetall(keys.trace_rulestats(hour))
        buckets = await pipe.execute()
    paused = {
        name: (info.by, _when(info.at_ms))
        for name, info in (await paused_rules(redis, keys)).items()
    }
    return console.render(
        request,
        "rules.html",
        rows=tally(names, buckets, paused),
        flash=_flash(request.query),
    )


def _flash(query: Mapping[str, str]) -> str:
    for action in ("paused", "resumed"):
        name = text_field(query, action)
        if name:
            return f"{action.capitalize()} rule {name!r}: every worker follows within seconds."
    return ""


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def pause(request: web.Request) -> web.StreamResponse:
    """Pause one rule on every worker."""
    console = request.app[console_key]
    name = text_field(await request.post(), "rule")
    if not name:
        return console.refuse(request, 400, "Say which rule to pause.")
    try:
        await pause_rule(console.redis, console.keys, name, by=f"console {request.remote or ''}")
    except UnknownRule as exc:
        return console.refuse(request, 409, str(exc))
    raise web.HTTPSeeOther(f"/console/rules?paused={quote_plus(name)}")


async def resume(request: web.Request) -> web.StreamResponse:
    """Resume one paused rule."""
    console = request.app[console_key]
    name = text_field(await request.post(), "rule")
    if not name:
        return console.refuse(request, 400, "Say which rule to resume.")
    await resume_rule(console.redis, console.keys, name)
    raise web.HTTPSeeOther(f"/console/rules?resumed={quote_plus(name)}")
