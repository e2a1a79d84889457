"""Refusal lines within a budget: a flood of bad requests is counted, not logged line by line.

Every refused request logs a line. From the internet a flood of bad signatures is everyday
input, and a line per request would turn it into a flood of logs. Per route and status, the
first `burst` refusals of each `period_s` are logged; the rest are only counted (as every
refusal is, in `ticketwire_intake_refusals_total` and the deliveries list), and the next line
logged for that route and status says how many were not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Window:
    start: float
    logged: int = 0
    held: int = 0


class RefusalLogBudget:
    """Let at most `burst` refusal lines per key (a status, say) through every `period_s`."""

    def __init__(
        self,
        burst: int = 20,
        period_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.period_s = period_s
        self._clock = clock
        # Keys are statuses of one route, or aiohttp's own refusal codes: a bounded set.
        self._windows: dict[object, _Window] = {}

    def admit(self, key: object) -> str | None:
        """What to add to the line for `key` ("" for nothing), or None to count it unlogged."""
        now = self._clock()
        window = self._windows.get(key)
        note = ""
        if window is None or now - window.start >= self.period_s:
            if window is not None and window.held:
                note = f" ({window.held} more like it were counted, not logged)"
            window = self._windows[key] = _Window(now)
        window.logged += 1
        if window.logged < self.burst:
            return note
        if window.logged == self.burst:
            return (
                f"{note} ({self.burst} such lines in {self.period_s:g}s: more are counted, "
                "not logged, until that time is up)"
            )
        window.held += 1
        return None
