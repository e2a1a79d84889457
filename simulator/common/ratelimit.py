"""Per-tenant request limits on simulated time: a fixed or a sliding window (pure, no I/O)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """The outcome of one check: allowed or not, plus what the `X-RateLimit-*` headers report."""

    allowed: bool
    limit: int
    remaining: int
    #: Whole seconds until the window frees a slot (for Retry-After) or fully resets.
    reset_after: int


class RateLimiter:
    """Counts requests per workspace; `check()` both decides and records an allowed request."""

    def __init__(self, now: Callable[[], float], window_seconds: float = 60.0) -> None:
        self._now = now
        self._window = window_seconds
        self._fixed: dict[str, tuple[float, int]] = {}
        self._sliding: dict[str, deque[float]] = {}

    def reset(self) -> None:
        """Forget every count."""
        self._fixed.clear()
        self._sliding.clear()

    def check(self, workspace_id: str, limit: int, window: str) -> Decision:
        """Decide whether `workspace_id` may make one more request now."""
        if window == "sliding":
            return self._check_sliding(workspace_id, limit)
        return self._check_fixed(workspace_id, limit)

    def _check_fixed(self, key: str, limit: int) -> Decision:
        now = self._now()
        start, count = self._fixed.get(key, (now, 0))
        # The window starts at the first request after the previous one ended, like a counter
        # that expires `window` seconds after it was created.
        if now >= start + self._window:
            start, count = now, 0
        reset_after = _ceil(start + self._window - now)
        if count >= limit:
            self._fixed[key] = (start, count)
            return Decision(False, limit, 0, reset_after)
        count += 1
        self._fixed[key] = (start, count)
        return Decision(True, limit, limit - count, reset_after)

    def _check_sliding(self, key: str, limit: int) -> Decision:
        now = self._now()
        log = self._sliding.setdefault(key, deque())
        while log and log[0] <= now - self._window:
            log.popleft()
        if len(log) >= limit:
            # A slot frees when the oldest request inside the window leaves it.
            return Decision(False, limit, 0, _ceil(log[-limit] + self._window - now))
        log.append(now)
        return Decision(True, limit, limit - len(log), _ceil(log[0] + self._window - now))


def _ceil(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9))
