"""Simulated time and seeded identifiers: a compressible clock, a hand-driven clock, an id source."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Simulated time: wall time for timestamps, seconds for windows and retry delays."""

    def now(self) -> datetime:
        """Current simulated wall time (timezone-aware, UTC)."""
        ...

    def monotonic(self) -> float:
        """Simulated seconds since the clock started; never goes backwards except on reset."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of simulated time."""
        ...

    def reset(self) -> None:
        """Go back to the start time."""
        ...


class ScaledClock:
    """Real time multiplied by `1 / time_scale`: with 0.001 one simulated minute lasts 60 ms."""

    def __init__(self, time_scale: float = 1.0, epoch: datetime | None = None) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0 (got {time_scale!r})")
        self.time_scale = time_scale
        self._fixed_epoch = epoch
        self.reset()

    def reset(self) -> None:
        """Restart at the configured epoch (or the real current time when none was given)."""
        self._epoch = self._fixed_epoch or datetime.now(UTC)
        self._t0 = time.monotonic()

    def monotonic(self) -> float:
        """Simulated seconds since the start."""
        return (time.monotonic() - self._t0) / self.time_scale

    def now(self) -> datetime:
        """Simulated wall time."""
        return self._epoch + timedelta(seconds=self.monotonic())

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds * time_scale` real seconds."""
        await asyncio.sleep(max(0.0, seconds) * self.time_scale)


class ManualClock:
    """A clock that moves only when `advance()` is called, for exact retry schedules in tests."""

    def __init__(self, epoch: datetime | None = None) -> None:
        self._epoch = epoch or datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    @property
    def sleepers(self) -> int:
        """How many `sleep()` calls are waiting; lets a test advance only once a sleep began."""
        self._sleepers = [(t, f) for t, f in self._sleepers if not f.done()]
        return len(self._sleepers)

    def reset(self) -> None:
        """Back to the epoch; pending sleeps are released."""
        self._elapsed = 0.0
        for _, fut in self._sleepers:
            if not fut.done():
                fut.set_result(None)
        self._sleepers.clear()

    def monotonic(self) -> float:
        """Seconds advanced so far."""
        return self._elapsed

    def now(self) -> datetime:
        """Epoch plus the seconds advanced so far."""
        return self._epoch + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleep whose deadline has passed."""
        self._elapsed += seconds
        keep: list[tuple[float, asyncio.Future[None]]] = []
        for target, fut in self._sleepers:
            if fut.done():
                continue
            if target <= self._elapsed:
                fut.set_result(None)
            else:
                keep.append((target, fut))
        self._sleepers = keep

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced by `seconds`."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._elapsed + seconds, fut))
        await fut


class IdSource:
    """Version-4 UUIDs and hex tokens from a seeded generator, one stream per purpose."""

    def __init__(self, seed: int, stream: str) -> None:
        # A string seed is hashed with SHA-512 by `random`, so streams are independent and stable
        # across runs and interpreters (unlike hash() of a str).
        self._rng = random.Random(f"{seed}:{stream}")

    def uuid(self) -> str:
        """A random-looking, reproducible version-4 UUID string."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def token(self, nbytes: int = 12) -> str:
        """A reproducible lowercase hex token."""
        return self._rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()

    @property
    def rng(self) -> random.Random:
        """The underlying generator, for seeded choices."""
        return self._rng


def iso(dt: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, like JavaScript's `toISOString()`."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime | None:
    """Parse an ISO 8601 date-time (a date alone means midnight); naive means UTC. None if bad."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
