"""Dead letters: work that cannot succeed, kept with every attempt and the reason."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from redis.asyncio import Redis

from ticketwire.calls import ApiCall
from ticketwire.keys import Keys

log = logging.getLogger("ticketwire.worker")


async def dead_letter(
    redis: Redis,
    keys: Keys,
    *,
    reason: str,
    ticket_key: str,
    call: ApiCall | None = None,
    event_id: str = "",
    attempts: list[dict[str, Any]] | None = None,
) -> str:
    """Append a dead letter to the DLQ stream and return its id."""
    fields: dict[str, str] = {
        "reason": reason,
        "ticket": ticket_key,
        "event_id": event_id or (call.event_id if call else ""),
        "rules": ",".join(call.rules) if call else "",
        "call": call.to_json() if call else "",
        "attempts": json.dumps(attempts or []),
        "at": str(int(time.time() * 1000)),
    }
    entry = await redis.xadd(keys.dlq, fields)  # type: ignore[arg-type]
    await redis.hincrby(keys.stats, "dead_letters", 1)  # type: ignore[misc]
    dlq_id = entry.decode() if isinstance(entry, bytes) else str(entry)
    log.error(
        "dead-lettered %s ticket=%s event=%s: %s (dlq id %s)",
        call.describe() if call else "event",
        ticket_key,
        fields["event_id"],
        reason,
        dlq_id,
    )
    return dlq_id
