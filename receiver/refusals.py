"""Refused deliveries into the deliveries list, written in the background, never in the answer's way.

A refusal is noted in a bounded buffer (no await, nothing that can fail), and a background task
writes what is buffered in one pipelined round trip. When Redis is away the batch is dropped:
a trace of a refusal is worth less than answering the next request, and a refused delivery's
answer never waits for, or fails because of, its trace. Bodies and headers are never noted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticketwire.accountkey import DEFAULT
from ticketwire.keys import Keys
from ticketwire.stoptask import stop_task
from ticketwire.trace import codes

log = logging.getLogger("ticketwire.receiver")

#: Refusals held while a write is in flight; beyond it the oldest are dropped.
BUFFER = 1000

Entry = dict[str, str]


class RefusalLog:
    """Note refused deliveries; a background task writes them to `Keys.trace_log`."""

    def __init__(self, redis: Redis, keys: Keys, *, retention_s: float, max_entries: int) -> None:
        self._redis = redis
        self._key = keys.trace_log
        self._retention_ms = int(retention_s * 1000)
        self._max = max_entries
        self._buffer: deque[Entry] = deque(maxlen=BUFFER)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Entries written, and dropped (buffer full or Redis away), since start.
        self.written = 0
        self.dropped = 0
        self._failing = False

    @property
    def enabled(self) -> bool:
        """False when traces are off (retention 0)."""
        return self._retention_ms > 0

    def start(self) -> None:
        """Start the background writer."""
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="ticketwire-refusals")

    async def close(self) -> None:
        """Stop writing; what is still buffered is lost, as any trace of a process that stops."""
        if self._task:
            # Cancelled until it ends: a cancel lost in a Redis call (Python 3.11) would leave it
            # waiting for the next refusal, holding up the receiver's shutdown for ever.
            await stop_task(self._task, "the refusal trace writer")

    def note(
        self,
        vendor: str,
        status: int,
        reason: str,
        *,
        event_id: str = "",
        event_type: str = "",
        ticket_key: str = "",
        account: str = DEFAULT,
    ) -> None:
        """Buffer one refused delivery's entry: what is known of it, never its body."""
        if not self.enabled:
            return
        if len(self._buffer) == BUFFER:
            self.dropped += 1
        entry = {
            codes.LOG_VENDOR: vendor,
            codes.LOG_TENANT: _tenant(vendor, ticket_key),
            codes.LOG_TYPE: event_type,
            codes.LOG_EVENT: event_id,
            codes.LOG_TICKET: ticket_key,
            codes.LOG_OUTCOME: codes.REFUSED,
            codes.LOG_STATUS: str(status),
            codes.LOG_FIRED: "",
            codes.LOG_REASON: reason,
            codes.LOG_RECEIVED: str(int(time.time() * 1000)),
        }
        if account != DEFAULT:
            entry[codes.LOG_ACCOUNT] = account
        self._buffer.append(entry)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                batch = list(self._buffer)
                self._buffer.clear()
                try:
                    await self._write(batch)
                except (RedisError, OSError, TimeoutError, ValueError) as exc:
                    # Redis away or refusing: the traces go, intake goes on. Said once per
                    # outage, not per refusal: a flood of refusals must not flood the log.
                    self.dropped += len(batch)
                    if not self._failing:
                        self._failing = True
                        log.warning(
                            "refusal traces dropped: cannot write them (%s); refusals are "
                            "answered as before",
                            exc,
                        )
                    continue
                self.written += len(batch)
                if self._failing:
                    self._failing = False
                    log.info("refusal traces written again (%d dropped meanwhile)", self.dropped)

    async def _write(self, batch: list[Entry]) -> None:
        oldest = int(time.time() * 1000) - self._retention_ms
        pipe = self._redis.pipeline(transaction=False)
        for entry in batch:
            # Values from the wire may hold lone surrogates; the trace keeps a readable stand-in.
            fields = {k: v.encode("utf-8", "replace") for k, v in entry.items()}
            pipe.xadd(self._key, fields, minid=oldest, approximate=True)  # type: ignore[arg-type]
        pipe.xtrim(self._key, maxlen=self._max, approximate=True)
        await pipe.execute()


def _tenant(vendor: str, ticket_key: str) -> str:
    """The tenant part of `vendor:tenant:ticket` ("" when unknown)."""
    if not ticket_key.startswith(vendor + ":"):
        return ""
    return ticket_key[len(vendor) + 1 :].rpartition(":")[0]
