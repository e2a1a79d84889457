"""The outbox's settings: retries, coalescing window, claim sizes and lifetimes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutboxPolicy:
    """Retry policy, coalescing window, claim sizes and lifetimes."""

    max_attempts: int = 6
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 600.0
    #: How long a claim holds its tickets before another worker may take them over.
    lease_s: float = 60.0
    planned_ttl_s: float = 72 * 3600.0
    #: How long a ticket's first queued call waits for more (of other rules, events, tickets).
    window_s: float = 0.3
    #: Most tickets one claim takes, and most queued calls read per ticket.
    claim_limit: int = 2000
    max_items: int = 100
    #: Requests in flight at once per flusher.
    concurrency: int = 16
    #: Longest a flusher idles between looks at the due set (other workers' pushes).
    poll_s: float = 0.1

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th failure (exponential, capped)."""
        return float(min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1)))
