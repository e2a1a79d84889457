"""The stored form of an accepted delivery: one stream entry, written by the receiver, read by workers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredDelivery:
    """A verified delivery as kept in Redis: raw body, replay headers, receive time, routing facts."""

    vendor: str
    event_id: str
    event_type: str
    ticket_key: str
    body: bytes
    received_ms: int
    headers: dict[str, str] = field(default_factory=dict)
    #: Stream entry id, set when read back from Redis (e.g. `1700000000000-0`).
    entry_id: str = ""
    #: Partition the entry was read from, set when read back.
    partition: int = -1
    #: How many times the entry has been handed to a worker (1 on first delivery).
    deliveries: int = 1

    def to_fields(self) -> dict[str, bytes | str | int]:
        """Encode as stream entry fields (short names keep Redis memory per event small)."""
        return {
            "v": self.vendor,
            "i": self.event_id,
            "y": self.event_type,
            "k": self.ticket_key,
            "t": self.received_ms,
            "h": json.dumps(self.headers, separators=(",", ":")),
            "b": self.body,
        }

    @classmethod
    def from_fields(
        cls, entry_id: bytes | str, fields: dict[bytes, bytes], *, partition: int = -1
    ) -> StoredDelivery:
        """Decode a stream entry read with redis-py (bytes keys and values)."""
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        headers: Any = json.loads(fields.get(b"h", b"{}"))
        return cls(
            vendor=fields[b"v"].decode(),
            event_id=fields[b"i"].decode(),
            event_type=fields[b"y"].decode(),
            ticket_key=fields[b"k"].decode(),
            body=fields[b"b"],
            received_ms=int(fields[b"t"]),
            headers=dict(headers),
            entry_id=eid,
            partition=partition,
        )
