"""`ticketwire rules`: which rules are published, and which rules each live worker runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from redis.exceptions import RedisError

from cli.redisurl import Unconfigured, command_settings
from ticketwire.keys import Keys
from ticketwire.redisconn import connect
from workers.reload import rules_in_force


def run_rules(*, as_json: bool = False) -> int:
    """Print the rules in force; 0 when every live worker runs the published rules, else 1."""
    try:
        settings = command_settings("rules", os.environ, role="check")
    except Unconfigured as exc:
        print(f"ticketwire rules: {exc}", file=sys.stderr)
        return 2
    assert settings.redis_url
    url = settings.redis_url

    async def read() -> tuple[dict[str, str], list[dict[str, object]]]:
        redis = connect(url)
        try:
            published, workers = await rules_in_force(redis, Keys(settings.key_prefix))
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
        return dict(published), rows

    try:
        published, rows = asyncio.run(read())
    except (RedisError, OSError) as exc:
        print(f"ticketwire rules: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    wanted = published.get("fingerprint", "")
    agreed = bool(wanted) and bool(rows) and all(r["fingerprint"] == wanted for r in rows)
    if as_json:
        print(json.dumps({"published": published, "workers": rows, "agreed": agreed}, indent=2))
        return 0 if agreed else 1
    if wanted:
        print(f"published: rules {wanted} by {published.get('by', '?')}, {_ago(published)} ago")
    else:
        print("published: none (no worker has started on this Redis and key prefix)")
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
