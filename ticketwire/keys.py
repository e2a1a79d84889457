"""Every Redis key ticketwire uses, in one place, under one configurable prefix."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

#: Consumer group that all workers share on every partition stream.
GROUP = "workers"


def partition_of(ticket_key: str, partitions: int) -> int:
    """Map a ticket to its partition; all events of one ticket share one partition."""
    return zlib.crc32(ticket_key.encode()) % partitions


@dataclass(frozen=True)
class Keys:
    """Key names under `prefix` (default `tw:`), so several deployments can share one Redis."""

    prefix: str = "tw:"

    def seen(self, vendor: str, event_id: str) -> str:
        """Dedupe marker of one delivery, kept for the dedupe window."""
        return f"{self.prefix}seen:{vendor}:{event_id}"

    def stream(self, partition: int) -> str:
        """The durable log of one partition: raw deliveries in arrival order."""
        return f"{self.prefix}events:{partition}"

    def lease(self, partition: int) -> str:
        """Which worker owns a partition right now."""
        return f"{self.prefix}lease:{partition}"

    @property
    def workers(self) -> str:
        """ZSET of live workers, scored by heartbeat expiry (ms)."""
        return f"{self.prefix}workers"

    @property
    def meta(self) -> str:
        """Deployment facts every process must agree on (partition count)."""
        return f"{self.prefix}meta"

    @property
    def stats(self) -> str:
        """Counters: accepted, duplicate, ignored:<type>, processed, ..."""
        return f"{self.prefix}stats"

    def outbox(self, ticket_key: str) -> str:
        """Ordered write-backs still to send for one ticket."""
        return f"{self.prefix}outbox:{ticket_key}"

    def outbox_lock(self, ticket_key: str) -> str:
        """Held by whoever is sending a ticket's write-backs."""
        return f"{self.prefix}outbox-lock:{ticket_key}"

    def outbox_not_before(self, ticket_key: str) -> str:
        """Epoch ms before which a ticket's write-backs must wait (429, backoff)."""
        return f"{self.prefix}outbox-nb:{ticket_key}"

    def planned(self, event_id: str) -> str:
        """Set once an event's write-backs are in the outbox, so a re-run does not add them twice."""
        return f"{self.prefix}planned:{event_id}"

    def fired(self, ticket_key: str) -> str:
        """Hash rule → fingerprint of its last firing on this ticket (echo suppression)."""
        return f"{self.prefix}fired:{ticket_key}"

    def fuse(self, ticket_key: str) -> str:
        """Rule firings on this ticket in the current window (loop fuse)."""
        return f"{self.prefix}fuse:{ticket_key}"

    @property
    def dlq(self) -> str:
        """Stream of dead letters: work that cannot succeed, with every attempt."""
        return f"{self.prefix}dlq"

    @property
    def arq_queue(self) -> str:
        """arq's queue for deferred work (retries after 429 and backoff)."""
        return f"{self.prefix}arq:queue"
