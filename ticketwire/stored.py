"""The stored form of an accepted delivery: one stream entry, written by the receiver, read by workers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


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
    #: The dead letter this entry was re-added from by `ticketwire dlq redrive` ("" otherwise).
    redriven_from: str = ""
    #: The helpdesk account whose route received it (`/webhooks/<vendor>/<account>`).
    account: str = "default"
    #: Stream key the entry was read from, set when read back (acknowledged there).
    stream: str = ""

    def meta(self) -> bytes:
        """The routing facts as one compact JSON array, stored beside the raw body."""
        facts = [
            self.vendor,
            self.event_id,
            self.event_type,
            self.ticket_key,
            self.received_ms,
            self.headers,
        ]
        if self.account != "default":
            # Only then: the default account's entries stay as earlier versions wrote them.
            facts.append(self.account)
        return json.dumps(facts, separators=(",", ":")).encode()

    def to_fields(self) -> dict[str, bytes]:
        """Encode as stream entry fields: `m` (routing facts) and `b` (the raw body).

        Two fields rather than one per fact keep the intake script's arguments and Redis memory
        per event small.
        """
        return {"m": self.meta(), "b": self.body}

    @classmethod
    def from_fields(
        cls,
        entry_id: bytes | str,
        fields: dict[bytes, bytes],
        *,
        partition: int = -1,
        stream: str = "",
    ) -> StoredDelivery:
        """Decode a stream entry read with redis-py (bytes keys and values)."""
        rest: list[str] = []
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        meta = fields.get(b"m")
        if meta is None:  # the one-field-per-fact layout of earlier versions
            vendor, event_id, event_type, ticket_key = (
                fields[k].decode() for k in (b"v", b"i", b"y", b"k")
            )
            received, headers = int(fields[b"t"]), json.loads(fields.get(b"h", b"{}"))
        else:
            vendor, event_id, event_type, ticket_key, received, headers, *rest = json.loads(meta)
        return cls(
            vendor=vendor,
            event_id=event_id,
            event_type=event_type,
            ticket_key=ticket_key,
            body=fields[b"b"],
            received_ms=int(received),
            headers=dict(headers),
            entry_id=eid,
            partition=partition,
            redriven_from=fields[b"r"].decode() if b"r" in fields else "",
            account=rest[0] if rest else "default",
            stream=stream,
        )
