"""`ticketwire rules`: which rules are published, which each live worker runs, which are paused;
`ticketwire rules pause|resume NAME`."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import sys
import time

from redis.exceptions import RedisError

from cli.redisurl import redis_settings
from ticketwire.keys import Keys
from ticketwire.redisconn import connect
from workers.pause import PauseInfo, UnknownRule, pause_rule, paused_rules, resume_rule
from workers.reload import rules_in_force


def run_rules(*, as_json: bool = False) -> int:
    """Print the rules in force; 0 when every live worker runs the published rules, else 1."""
    settings = redis_settings("rules", os.environ, role="check")
    if settings is None:
        return 2
    assert settings.redis_url
    url = settings.redis_url

    async def read() -> tuple[dict[str, str], list[dict[str, object]], dict[str, PauseInfo]]:
        redis = connect(url, sentinel_password=settings.sentinel_password)
        try:
            published, workers = await rules_in_force(redis, Keys(settings.key_prefix))
            paused = await paused_rules(redis, Keys(settings.key_prefix))
        finally:
            await redis.aclose()
        rows: list[dict[str, object]] = [
            {
                "worker": w.worker,
                "fingerprint": w.fingerprint,
                "rules": w.rules,
                "at": w.at_ms,
                "refused": w.refused,
            }
            for w in workers
        ]
        return dict(published), rows, paused

    try:
        published, rows, paused = asyncio.run(read())
    except (RedisError, OSError) as exc:
        print(f"ticketwire rules: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    wanted = published.get("fingerprint", "")
    agreed = bool(wanted) and bool(rows) and all(r["fingerprint"] == wanted for r in rows)
    if as_json:
        doc = {
            "published": published,
            "workers": rows,
            "agreed": agreed,
            "paused": {n: {"by": p.by, "at": p.at_ms} for n, p in paused.items()},
        }
        print(json.dumps(doc, indent=2))
        return 0 if agreed else 1
    if wanted:
        print(f"published: rules {wanted} by {published.get('by', '?')}, {_ago(published)} ago")
    else:
        print("published: none (no worker has started on this Redis and key prefix)")
    for name, info in paused.items():
        print(f"paused: {name} by {info.by}, {_ago({'at': str(info.at_ms)})} ago")
    if not rows:
        print("no live worker")
        return 1
    width = max(len(str(r["worker"])) for r in rows)
    print(f"{'WORKER':<{width}}  RULES         COUNT  NOTE")
    for r in rows:
        note = f"refused: {r['refused']}" if r["refused"] else ""
        if not note and r["fingerprint"] != wanted:
            note = "not the published rules"
        print(f"{r['worker']!s:<{width}}  {r['fingerprint']!s:<12}  {r['rules']!s:>5}  {note}")
    print(
        "every live worker runs the published rules"
        if agreed
        else "workers disagree: deploy the same rule files to every worker, then send SIGHUP "
        "to one of them"
    )
    return 0 if agreed else 1


def _ago(published: dict[str, str]) -> str:
    try:
        seconds = max(0.0, time.time() - int(published["at"]) / 1000)
    except (KeyError, ValueError):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def run_pause(action: str, name: str, *, as_json: bool = False) -> int:
    """`rules pause NAME` / `rules resume NAME`: 0 done (or already so), 1 refused, 2 unconfigured."""
    settings = redis_settings("rules", os.environ, role="check")
    if settings is None:
        return 2
    assert settings.redis_url
    url, keys = settings.redis_url, Keys(settings.key_prefix)

    async def act() -> bool:
        redis = connect(url, sentinel_password=settings.sentinel_password)
        try:
            if action == "pause":
                return await pause_rule(redis, keys, name, by=_who())
            return await resume_rule(redis, keys, name)
        finally:
            await redis.aclose()

    try:
        changed = asyncio.run(act())
    except UnknownRule as exc:
        print(f"ticketwire rules {action}: {exc}", file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"ticketwire rules {action}: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    paused = action == "pause"
    if as_json:
        print(json.dumps({"rule": name, "paused": paused, "changed": changed}))
    elif paused:
        print(
            f"rule {name} paused: every worker skips it (reason `paused`) within seconds"
            if changed
            else f"rule {name} was paused already"
        )
    else:
        print(
            f"rule {name} resumed: every worker runs it again within seconds"
            if changed
            else f"rule {name} was not paused"
        )
    return 0


def _who() -> str:
    """Who pauses, as recorded beside the pause: the user and host of this command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{socket.gethostname()} (cli)"
