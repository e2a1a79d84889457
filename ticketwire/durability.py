"""What a write waits for before it counts (TICKETWIRE_DURABILITY): WAITAOF or WAIT.

`fsync`: `WAITAOF 1 0`, the primary's append-only file fsynced. `replica`: `WAIT n`, n replicas
hold the write (in memory: a failover promotes one of them; their own AOF is their business, and
WAIT works whatever it is). The wait goes right after the write, in the same pipeline, so on the
same connection: it waits for that connection's last write.

Intake waits after each batch before it answers 2xx. When the wait times out the batch IS stored
on the primary. Its deliveries are answered 503 all the same: the sender keeps the event and
retries; the retry finds the dedupe key and is answered 200 `duplicate` (its own batch waits too,
for a later offset, so that answer also means the first write reached the replicas), or, if the
primary was lost meanwhile with the write, it is stored anew. A 2xx only ever says the configured
durability was reached.

The outbox flusher waits after each claim and each checkpoint before it sends: a claim lost in a
failover would make a call in flight look never sent, and it would go again without a read-back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from ticketwire.config import Settings
from ticketwire.errors import ConfigError

log = logging.getLogger("ticketwire.durability")


class NotDurable(RedisError):
    """A write was made, but not acknowledged as durable within the timeout."""

    def __init__(self, message: str, replies: list[Any] | None = None) -> None:
        super().__init__(message)
        #: The replies of the commands before the wait (`Durability.execute`): what was written.
        self.replies = replies or []


@dataclass(frozen=True)
class Durability:
    """The wait after each batch: `WAITAOF 1 0 ms` (fsync) or `WAIT n ms` (replica)."""

    mode: str
    replicas: int = 1
    timeout_s: float = 1.0

    @classmethod
    def of(cls, settings: Settings) -> Durability | None:
        """The durability `settings` ask for; None for `none` (answer once the script ran)."""
        if settings.durability == "none":
            return None
        return cls(settings.durability, settings.durability_replicas, settings.durability_timeout_s)

    @property
    def command(self) -> tuple[Any, ...]:
        """The command that follows each batch's script on its connection."""
        ms = max(1, round(self.timeout_s * 1000))
        if self.mode == "fsync":
            return ("WAITAOF", 1, 0, ms)
        return ("WAIT", self.replicas, ms)

    def describe(self, done: str) -> str:
        """The mode in force, as a start-up log line says it: `done` happens once durable."""
        if self.mode == "fsync":
            what = "the primary's append-only file fsynced (WAITAOF 1 0)"
        else:
            what = f"{self.replicas} replica(s) acknowledged (WAIT {self.replicas})"
        return f"{self.mode}: {done} once {what}, within {self.timeout_s:g}s"

    def check(self, reply: Any) -> None:
        """Raise `NotDurable` unless `reply` (to `command`) says the write before it is durable."""
        if isinstance(reply, Exception):
            # Say why: AOF turned off since start, WAIT refused by a replica, a script error.
            raise NotDurable(f"written on the primary, but {self.mode} durability failed: {reply}")
        if self.mode == "fsync":
            if int(reply[0]) < 1:
                raise NotDurable(
                    "written on the primary, but its append-only file was not fsynced within "
                    f"{self.timeout_s:g}s"
                )
            return
        acked = int(reply)
        if acked < self.replicas:
            raise NotDurable(
                f"written on the primary, but {acked} of {self.replicas} replica(s) acknowledged "
                f"it within {self.timeout_s:g}s"
            )

    async def execute(self, pipe: Pipeline) -> list[Any]:
        """Run `pipe` with the wait after its commands; their replies, once they are durable."""
        pipe.execute_command(*self.command)
        *replies, waited = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        try:
            self.check(waited)
        except NotDurable as exc:
            raise NotDurable(str(exc), replies) from None
        return replies

    async def probe(self, redis: Redis) -> None:
        """Refuse to start (`ConfigError`) when the server cannot give this durability."""
        try:
            reply = await redis.execute_command(*self.command[:-1], 1)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            raise ConfigError("TICKETWIRE_DURABILITY", self._needs(str(exc)), self.mode) from None
        if self.mode == "replica" and int(reply) < self.replicas:
            # Not refused: a replica may be restarting; deliveries get 503 until it is back.
            info = await redis.info("replication")
            log.warning(
                "durability replica: %d of %d replica(s) needed acknowledged at start "
                "(%s connected); deliveries are answered 503 until enough do",
                int(reply),
                self.replicas,
                info.get("connected_slaves", 0),
            )

    def _needs(self, refusal: str) -> str:
        if self.mode == "fsync" and "appendonly" in refusal.lower():
            return (
                "a Redis with its append-only file on (appendonly yes) for fsync durability; "
                f"this one has it off (WAITAOF: {refusal}). Turn AOF on, or choose replica or none"
            )
        if "unknown command" in refusal.lower():
            return (
                f"a Redis that has {self.command[0]} (Redis 7.2+ or Valkey 7.2+ for WAITAOF); "
                f"this one does not ({refusal})"
            )
        return f"a Redis that accepts {self.command[0]} ({refusal})"
