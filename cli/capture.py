"""`ticketwire capture`: copy stored deliveries (raw body, headers, receive time) to a JSONL file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from redis.exceptions import RedisError

from cli.progress import progress_bar
from cli.redisurl import redis_settings, safe_url
from ticketwire.accountkey import ACCOUNT_NAME, ACCOUNT_PATTERN, DEFAULT
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.redisconn import connect
from ticketwire.stored import StoredDelivery
from ticketwire.streams import every_stream


def capture_record(d: StoredDelivery) -> dict[str, Any]:
    """One JSONL record: everything a replay or a dry run needs, body kept byte for byte."""
    record = {
        "vendor": d.vendor,
        "event_id": d.event_id,
        "type": d.event_type,
        "ticket": d.ticket_key,
        "received_ms": d.received_ms,
        "headers": d.headers,
        "body": d.body.decode("utf-8"),
    }
    if d.account != DEFAULT:
        # Only a named account's: records of the default account read as they always did.
        record["account"] = d.account
    return record


def record_account(record: Mapping[str, Any]) -> str:
    """The account a capture record was received on; `default` when it names none."""
    account = record.get("account") or DEFAULT
    if not isinstance(account, str) or not ACCOUNT_NAME.match(account):
        raise ValueError(f"not an account name: {account!r} (expected {ACCOUNT_PATTERN})")
    return account


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


#: Entries read per XREVRANGE call: one round trip per page, and a progress step.
PAGE = 500


async def _capture(
    settings: Settings, out: TextIO, *, limit: int, since_s: float | None
) -> tuple[int, int]:
    """Write the newest `limit` deliveries, oldest first; return (written, unreadable)."""
    assert settings.redis_url
    redis = connect(settings.redis_url, sentinel_password=settings.sentinel_password)
    keys = Keys(settings.key_prefix)
    oldest = "-" if since_s is None else str(int((time.time() - since_s) * 1000))
    found: list[StoredDelivery] = []
    failed = 0
    try:
        streams = await every_stream(redis, keys, settings.partitions)
        sizes = [await redis.xlen(stream) for _, stream in streams]
        bar = progress_bar(sum(min(n, limit) for n in sizes), "deliveries")
        for p, stream in streams:
            # Newest first, page by page, so `--limit` keeps the newest of a long stream.
            upper, taken = "+", 0
            while taken < limit:
                want = min(PAGE, limit - taken)
                page = await redis.xrevrange(stream, max=upper, min=oldest, count=want)
                for eid, fields in page:
                    try:
                        found.append(StoredDelivery.from_fields(eid, fields, partition=p))
                        taken += 1
                    except (KeyError, ValueError, TypeError) as exc:
                        failed += 1
                        bar.write(
                            f"{stream} entry {eid.decode()}: unreadable ({exc!r}); skipped",
                            file=sys.stderr,
                        )
                bar.update(len(page))
                if len(page) < want:
                    break
                upper = "(" + page[-1][0].decode()
        bar.close()
    finally:
        await redis.aclose()
    found.sort(key=lambda d: (d.received_ms, d.entry_id))
    kept = found[-limit:]
    out.writelines(json.dumps(capture_record(d)) + "\n" for d in kept)
    return len(kept), failed


def run_capture(out: Path | None, *, limit: int, since_s: float | None) -> int:
    """Write up to `limit` stored deliveries (newest last) to `out` or stdout."""
    settings = redis_settings("capture", os.environ, role="up")
    if settings is None:
        return 2
    assert settings.redis_url
    url = settings.redis_url
    try:
        with open(out, "w", encoding="utf-8") if out else sys.stdout as fh:
            written, failed = asyncio.run(_capture(settings, fh, limit=limit, since_s=since_s))
    except (RedisError, OSError) as exc:
        print(f"ticketwire capture: {safe_url(url)}: {exc}", file=sys.stderr)
        return 1
    print(
        f"captured {written} deliveries{f' to {out}' if out else ''}, failed {failed}",
        file=sys.stderr,
    )
    return 1 if failed else 0
