"""`ticketwire capture`: copy stored deliveries (raw body, headers, receive time) to a JSONL file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ticketwire.config import Settings
from ticketwire.errors import ConfigError
from ticketwire.keys import Keys
from ticketwire.redisconn import connect
from ticketwire.stored import StoredDelivery


def capture_record(d: StoredDelivery) -> dict[str, Any]:
    """One JSONL record: everything a replay or a dry run needs, body kept byte for byte."""
    return {
        "vendor": d.vendor,
        "event_id": d.event_id,
        "type": d.event_type,
        "ticket": d.ticket_key,
        "received_ms": d.received_ms,
        "headers": d.headers,
        "body": d.body.decode("utf-8"),
    }


def read_captures(path: Path) -> Iterator[dict[str, Any]]:
    """Yield records from a capture file; a plain JSON body file counts as one record."""
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        if "body" in doc and "vendor" in doc:
            yield doc
        else:  # a bare webhook body, e.g. saved from a helpdesk's delivery log
            yield {"vendor": None, "headers": {}, "body": text.strip(), "event_id": None}
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{n}: not a capture record: {exc}") from None


async def _capture(settings: Settings, out: TextIO, *, limit: int, since_s: float | None) -> int:
    assert settings.redis_url
    redis = connect(settings.redis_url)
    keys = Keys(settings.key_prefix)
    start = "-" if since_s is None else str(int((time.time() - since_s) * 1000))
    found: list[StoredDelivery] = []
    try:
        for p in range(settings.partitions):
            for eid, fields in await redis.xrange(keys.stream(p), min=start, count=limit):
                found.append(StoredDelivery.from_fields(eid, fields, partition=p))
    finally:
        await redis.aclose()
    found.sort(key=lambda d: (d.received_ms, d.entry_id))
    out.writelines(json.dumps(capture_record(d)) + "\n" for d in found[-limit:])
    return len(found[-limit:])


def run_capture(out: Path | None, *, limit: int, since_s: float | None) -> int:
    """Write up to `limit` stored deliveries (newest last) to `out` or stdout."""
    try:
        settings = Settings.from_env(os.environ, role="up")
    except ConfigError as exc:
        print(f"ticketwire capture: configuration error: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        print(
            "ticketwire capture: set REDIS_URL to the Redis the receiver stores into",
            file=sys.stderr,
        )
        return 2
    with open(out, "w", encoding="utf-8") if out else sys.stdout as fh:
        n = asyncio.run(_capture(settings, fh, limit=limit, since_s=since_s))
    print(f"captured {n} deliveries{f' to {out}' if out else ''}", file=sys.stderr)
    return 0
