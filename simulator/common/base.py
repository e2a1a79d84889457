"""`SimulatorBase`: the seed, clock, faults, journal and serve/stop/reset life cycle of a simulator."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol, TypeVar

from aiohttp import web

from simulator.common.clock import Clock, IdSource, ScaledClock
from simulator.common.delivery import OrderedDelivery
from simulator.common.ratelimit import RateLimiter
from simulator.common.webhooks import EmitterOptions, SharedFaults


class BaseConfig(Protocol):
    """The config fields every simulator reads the same way."""

    @property
    def seed(self) -> int | None: ...

    @property
    def event_seed(self) -> int | None: ...

    @property
    def epoch(self) -> datetime | None: ...

    @property
    def time_scale(self) -> float: ...

    @property
    def journal_limit(self) -> int | None: ...

    @property
    def webhook_timeout(self) -> float: ...

    @property
    def reorder_flush_after(self) -> float: ...

    @property
    def delivery_log_limit(self) -> int | None: ...


class LimitedConfig(BaseConfig, Protocol):
    """A config with one rate limit window for every tenant."""

    @property
    def rate_limit_window_seconds(self) -> float: ...


class Change(Protocol):
    """A store change: the events it emits."""

    @property
    def events(self) -> Sequence[str]: ...


C = TypeVar("C", bound=Change)


class SeededFaults(SharedFaults, Protocol):
    """What the base and the emitter do with a simulator's faults (clear, reseed, draw)."""

    rng: random.Random

    def clear(self) -> None:
        """Drop every scripted answer and webhook fault."""
        ...


def fan_out(changes: Iterable[C], burst: int) -> Iterator[tuple[C, str]]:
    """Every event of every change, each `burst` times (at least once) for fresh event ids."""
    for change in changes:
        for event in change.events:
            for _ in range(max(1, burst)):
                yield change, event


class SimulatorBase(ABC):
    """Seed, clock, faults, journal and the serve/stop/reset life cycle of one simulator."""

    #: The vendor's settings class (built `from_config`) and faults class (built from a seeded rng).
    settings_type: ClassVar[type[Any]]
    faults_type: ClassVar[type[Any]]
    config: BaseConfig
    settings: Any
    faults: SeededFaults
    emitter: OrderedDelivery[Any]
    store: Any

    def __init__(self, config: BaseConfig, clock: Clock | None = None) -> None:
        self.config = config
        #: The seed in use (picked at random when the config has none; reset keeps it).
        self.seed: int = (
            config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
        )
        self.clock: Clock = clock or ScaledClock(config.time_scale, config.epoch)
        self.settings = self._new_settings()
        self.faults = self.faults_type(random.Random(f"{self.seed}:faults"))
        self._journal: deque[Any] = deque(maxlen=config.journal_limit)
        self._endpoint_ids = IdSource(self.seed, "endpoints")
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _new_settings(self) -> Any:
        """The runtime settings as the config gives them."""
        return self.settings_type.from_config(self.config)

    def _emitter_options(self) -> EmitterOptions:
        """What every vendor's webhook emitter is built with."""
        cfg = self.config
        return EmitterOptions(
            clock=self.clock,
            faults=self.faults,
            timeout=cfg.webhook_timeout,
            reorder_flush_after=cfg.reorder_flush_after,
            log_limit=cfg.delivery_log_limit,
        )

    @abstractmethod
    def _build(self) -> None:
        """The seeded store of a fresh generation."""

    @abstractmethod
    def _app(self) -> web.Application:
        """The aiohttp app serving this simulator."""

    @abstractmethod
    def announce(self, webhook_url: str | None, endpoint: str | None) -> None:
        """Log where the simulator serves, its keys, and the endpoint registered at start."""

    @abstractmethod
    def _reset_limits(self) -> None:
        """Forget every rate limit count."""

    def _new_generation(self) -> None:
        """Fresh seeded id sources and ticket generator, then the vendor's store."""
        event_seed = self.config.event_seed
        self._event_ids = IdSource(self.seed if event_seed is None else event_seed, "events")
        self._request_ids = IdSource(self.seed, "requests")
        self._ticket_rng = random.Random(f"{self.seed}:tickets")
        self._build()

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on `host:port` (0 picks a free port); `self.url` tells where."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running; call stop() first")
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound_port}"

    async def close_background(self) -> None:
        """Cancel what runs in the background: pending deliveries (the logs stay readable)."""
        await self.emitter.close()

    async def stop(self) -> None:
        """Stop serving and cancel pending deliveries (the logs stay readable)."""
        await self.close_background()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reset(self, *, keep_endpoints: bool = True) -> None:
        """Back to the seeded initial state: same keys and ids, no tickets, logs and faults cleared.

        Endpoints stay registered (with their ids) unless `keep_endpoints` is False.
        """
        self.emitter.reset(keep_endpoints=keep_endpoints)
        if not keep_endpoints:
            self._endpoint_ids = IdSource(self.seed, "endpoints")
        self.clock.reset()
        self._reset_limits()
        self.faults.clear()
        self.faults.rng.seed(f"{self.seed}:faults")
        self.settings = self._new_settings()
        self._journal.clear()
        self._new_generation()

    # ----------------------------------------------------------------- deliveries and journal

    @property
    def deliveries(self) -> list[Any]:
        """Every delivery attempt so far, oldest first."""
        return list(self.emitter.log)

    async def wait_deliveries_idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until no delivery is queued, in flight, held or waiting to retry."""
        await self.emitter.wait_idle(timeout)

    @property
    def journal(self) -> list[Any]:
        """Every API request so far, oldest first."""
        return list(self._journal)

    def record(self, entry: Any) -> None:
        """Append a journal entry (the middleware calls this)."""
        self._journal.append(entry)


class MinuteLimited(SimulatorBase):
    """A simulator whose tenants share one per-minute limit, switched by a setting."""

    def __init__(self, config: LimitedConfig, clock: Clock | None = None) -> None:
        super().__init__(config, clock)
        self.limiter = RateLimiter(self.clock.monotonic, config.rate_limit_window_seconds)

    def _reset_limits(self) -> None:
        self.limiter.reset()

    def set_rate_limit(self, per_minute: int | None) -> None:
        """Change the per-tenant limit; 0 or None switches it off. Counts start over."""
        if per_minute is not None and per_minute < 0:
            raise ValueError("per_minute must be >= 0 or None")
        self.settings.rate_limit_per_minute = per_minute
        self.limiter.reset()
