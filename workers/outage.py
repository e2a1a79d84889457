"""A Redis outage as one long-running loop sees it: said once when it starts, once when it ends."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Longest pause between retries while Redis is unreachable.
MAX_BACKOFF_S = 5.0
#: What a lost or unreachable Redis raises: refused or reset connections, timeouts (OSError
#: covers the builtin ones), a server still loading its data after a restart
#: (`BusyLoadingError` is a redis `ConnectionError`), and what a failover raises: a master that
#: was demoted answers READONLY until the client finds the new one (`ReadOnlyError`; through
#: Sentinel, redis-py turns it into a `ConnectionError`), no master known (`MasterNotFoundError`,
#: a `ConnectionError`).
REDIS_DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OSError,
)
#: What a Redis call may raise that a later try can outlive: any Redis error (a script or
#: server error included), a lost connection, a timeout.
TRANSIENT: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` consecutive Redis errors: exponential, capped, jittered."""
    base = min(MAX_BACKOFF_S, 0.1 * 2.0 ** max(0, failures - 1))
    return base * random.uniform(0.8, 1.0)


class Outage:
    """Track one loop's Redis outages: a warning when one starts, one line with its length after.

    Between the two the loop retries quietly, waiting `backoff(failures)` (0.1 s doubling to at
    most 5 s) between tries, however long the outage lasts.
    """

    def __init__(
        self, what: str, log: logging.Logger, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._what = what
        self._log = log
        self._clock = clock
        self._since: float | None = None
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        """True from the first failed call until one succeeds."""
        return self._since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failed Redis call; return the seconds to wait before the next try."""
        if self._since is None:
            self._since = self._clock()
            self._log.warning(
                "%s: redis unavailable (%s: %s); waiting for it, retrying every few seconds",
                self._what,
                type(exc).__name__,
                exc,
            )
        self._failures += 1
        return backoff(self._failures)

    def recovered(self) -> float | None:
        """Note a Redis call that worked; return the outage's length in seconds if one just ended."""
        if self._since is None:
            return None
        length = self._clock() - self._since
        self._since, self._failures = None, 0
        self._log.warning("%s: redis is back after %.1fs; resumed", self._what, length)
        return length
