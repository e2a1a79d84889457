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

    def seen(self, vendor: str, event_id: str, account: str = "default") -> str:
        """Dedupe marker of one delivery, kept for the dedupe window; per vendor and account."""
        if account != "default":
            # `@` is in no vendor name: no default account's marker can equal this one.
            return f"{self.prefix}seen:{vendor}@{account}:{event_id}"
        return f"{self.prefix}seen:{vendor}:{event_id}"

    def stream(self, partition: int, lane: str = "") -> str:
        """The durable log of one partition of a lane: raw deliveries in arrival order.

        The default lane ("", every helpdesk's default account) keeps the unlaned name.
        """
        if lane:
            return f"{self.prefix}events:{lane}:{partition}"
        return f"{self.prefix}events:{partition}"

    @property
    def lanes(self) -> str:
        """SET of the named lanes (`vendor@account`) that have partition streams."""
        return f"{self.prefix}lanes"

    def lease(self, partition: int) -> str:
        """Which worker owns a partition right now."""
        return f"{self.prefix}lease:{partition}"

    @property
    def workers(self) -> str:
        """ZSET of live workers, scored by heartbeat expiry (ms)."""
        return f"{self.prefix}workers"

    @property
    def rules(self) -> str:
        """HASH: the rules every worker should run (`fingerprint`, `by`, `at`)."""
        return f"{self.prefix}rules"

    @property
    def rules_workers(self) -> str:
        """HASH: worker id → the rules it runs, as JSON (fingerprint, rule count, refusal)."""
        return f"{self.prefix}rules:workers"

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

    @property
    def wb_due(self) -> str:
        """ZSET of tickets with queued write-backs, scored by when they may be sent (epoch ms)."""
        return f"{self.prefix}wb:due"

    @property
    def wb_owner(self) -> str:
        """Hash ticket → the claim that is sending its write-backs right now."""
        return f"{self.prefix}wb:owner"

    def planned(self, event_id: str) -> str:
        """Set once an event's write-backs are in the outbox, so a re-run does not add them twice."""
        return f"{self.prefix}planned:{event_id}"

    def fired(self, ticket_key: str) -> str:
        """Hash rule → fingerprint of its last firing on this ticket (echo suppression)."""
        return f"{self.prefix}fired:{ticket_key}"

    def firings(self, ticket_key: str) -> str:
        """ZSET `<event id>\\x1f<rule>` → when it fired, within the fuse window (loop fuse)."""
        return f"{self.prefix}firings:{ticket_key}"

    def written(self, ticket_key: str) -> str:
        """Hash field → our recent writes of it on this ticket, within the echo window."""
        return f"{self.prefix}written:{ticket_key}"

    def limits(self, ticket_key: str) -> str:
        """Hash rule → its last firing on this ticket (once_per_ticket, cooldown) and re-arms."""
        return f"{self.prefix}limits:{ticket_key}"

    def state(self, ticket_key: str) -> str:
        """Hash of a ticket's last applied event: order key, event id, read-field snapshots."""
        return f"{self.prefix}state:{ticket_key}"

    @property
    def stale(self) -> str:
        """Stream of deliveries not acted on because a newer one of the ticket was applied."""
        return f"{self.prefix}stale"

    @property
    def dlq(self) -> str:
        """Stream of dead letters: work that cannot succeed, with every attempt."""
        return f"{self.prefix}dlq"

    def dlq_claim(self, letter_id: str) -> str:
        """Held by whoever is redriving one dead letter, so no two redrives send it twice."""
        return f"{self.prefix}dlq-claim:{letter_id}"

    def schedule_lock(self, rule: str) -> str:
        """Held while a scheduled rule runs, so no two runs of it overlap on any worker."""
        return f"{self.prefix}sched-lock:{rule}"

    def schedule_run(self, rule: str, minute: str) -> str:
        """State of one scheduled run (`running`, `done`, `skipped`), for its minute."""
        return f"{self.prefix}sched-run:{rule}:{minute}"

    @property
    def arq_queue(self) -> str:
        """arq's queue for deferred work (retries after 429 and backoff)."""
        return f"{self.prefix}arq:queue"

    # Traces (ticketwire/trace/codes.py describes the records).
    @property
    def trace_log(self) -> str:
        """STREAM: one entry per delivery outcome, the searchable deliveries list."""
        return f"{self.prefix}trace:log"

    def trace_ticket(self, ticket_key: str) -> str:
        """STREAM: one ticket's timeline, every trace record of its events in order."""
        return f"{self.prefix}trace:t:{ticket_key}"

    @property
    def trace_rules(self) -> str:
        """HASH rules fingerprint → JSON `{rule: [leaf description, ...]}`."""
        return f"{self.prefix}trace:rules"

    def trace_rulestats(self, hour: str) -> str:
        """HASH `<rule>\\x1f<f|s|e|p>` → count in one UTC hour (`YYYYMMDDHH`)."""
        return f"{self.prefix}trace:rulestats:{hour}"

    # Rule pause (operations)

    @property
    def rules_paused(self) -> str:
        """HASH rule name → JSON `{"by": …, "at": ms}`: rules every worker skips until resumed."""
        return f"{self.prefix}rules:paused"

    # Metrics and backlog.

    @property
    def budgets_paused(self) -> str:
        """ZSET budget scope → until when (epoch ms) a 429 paused it: paused budgets in one read."""
        return f"{self.prefix}budgets:paused"

    # Console
    def console_logout(self, session_id: str) -> str:
        """Set at logout until the session's cookie would expire: the cookie is refused."""
        return f"{self.prefix}console:logout:{session_id}"
