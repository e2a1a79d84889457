"""What every simulator's store starts from: seeded ids and the simulated clock."""

from __future__ import annotations

from simulator.common.clock import Clock, IdSource


class SeededStore:
    """A store's seeded id source (`ids`) and the simulated clock's time (`_now`)."""

    def __init__(self, seed: int, clock: Clock) -> None:
        self._now = clock.now
        self.ids = IdSource(seed, "ids")


class IdempotentStore(SeededStore):
    """A seeded store that keeps idempotent answers for `idempotency_ttl` simulated seconds."""

    def __init__(self, seed: int, clock: Clock, idempotency_ttl: float) -> None:
        super().__init__(seed, clock)
        self._monotonic = clock.monotonic
        self.idempotency_ttl = idempotency_ttl
