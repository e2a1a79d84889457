"""`SimulatorBase`: the seed, clock, faults, journal and serve/stop/reset life cycle of a simulator."""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, ClassVar, Generic, Protocol, TypeVar, get_args, get_origin, overload

from aiohttp import web

from simulator.common.clock import Clock, IdSource, ScaledClock
from simulator.common.ratelimit import RateLimiter
from simulator.common.webhooks import EmitterOptions, SharedFaults, WebhookEmitterBase


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


class LimitedSettings(Protocol):
    """Settings with one per-minute limit for every tenant."""

    rate_limit_per_minute: int | None


ConfigT = TypeVar("ConfigT", bound=BaseConfig)
LimitedConfigT = TypeVar("LimitedConfigT", bound=LimitedConfig)
SettingsT = TypeVar("SettingsT")
LimitedSettingsT = TypeVar("LimitedSettingsT", bound=LimitedSettings)
FaultsT = TypeVar("FaultsT", bound=SeededFaults)
EmitterT = TypeVar("EmitterT", bound=WebhookEmitterBase[Any])
StoreT = TypeVar("StoreT")
V = TypeVar("V")


class StoreView(Generic[V]):
    """A read-only simulator attribute read from the store at a dotted path; one with a `banner`
    label is shown in the banner (in the order the class declares it)."""

    def __init__(self, path: str, doc: str, *, banner: str = "") -> None:
        self._get = attrgetter(path)
        self.__doc__ = doc
        self.banner = banner

    @overload
    def __get__(self, sim: None, owner: type[Any]) -> StoreView[V]: ...

    @overload
    def __get__(self, sim: SimulatorBase[Any, Any, Any, Any, Any], owner: type[Any]) -> V: ...

    def __get__(
        self, sim: SimulatorBase[Any, Any, Any, Any, Any] | None, owner: type[Any]
    ) -> StoreView[V] | V:
        if sim is None:
            return self
        return self._view(self._get(sim.store))

    @abstractmethod
    def _view(self, value: Any) -> V:
        """What the attribute gives for the store's `value`."""


class FromStore(StoreView[str]):
    """A key or id: the store's value at a dotted path."""

    def _view(self, value: Any) -> str:
        text: str = value
        return text


class IssuedKey(StoreView[str]):
    """The value of the key the store's key ring issued under the attribute's name."""

    def __init__(self, doc: str, *, banner: str = "") -> None:
        super().__init__("keys.named", doc, banner=banner)
        self.name = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    def _view(self, value: Any) -> str:
        named: dict[str, str] = value
        return named[self.name]


class JsonFromStore(StoreView[list[dict[str, Any]]]):
    """The JSON form of each record at a dotted path of the store (of a mapping, its values)."""

    def _view(self, value: Any) -> list[dict[str, Any]]:
        records = value.values() if isinstance(value, Mapping) else value
        return [record.to_json() for record in records]


class SimulatorBase(ABC, Generic[ConfigT, SettingsT, FaultsT, EmitterT, StoreT]):
    """Seed, clock, faults, journal and the serve/stop/reset life cycle of one simulator.

    A vendor's class names its config, settings, faults, emitter and store classes as the type
    arguments; the first four are built from them (the default config, `from_config`, a seeded
    rng, the emitter with the config's retry schedule unless the vendor builds its own).
    """

    config_type: ClassVar[type[Any]]
    settings_type: ClassVar[type[Any]]
    faults_type: ClassVar[type[Any]]
    emitter_type: ClassVar[type[Any]]
    #: What the vendor calls a tenant and a registered endpoint, as `announce` and errors say.
    tenant_noun: ClassVar[str]
    #: The store's mapping of tenant id to tenant, that endpoints are registered for.
    tenants_at: ClassVar[str]
    endpoint_noun: ClassVar[str] = "endpoint"
    #: Where the vendor API is served, below `url`.
    api_path: ClassVar[str] = ""
    #: The helpdesk's name, as the banner says it; unset, the banner names the class.
    vendor_name: ClassVar[str] = ""
    #: The `create_app` that `serving.app_factory` made for this class.
    create_app: ClassVar[Callable[[Any], web.Application]]
    config: ConfigT
    settings: SettingsT
    faults: FaultsT
    emitter: EmitterT
    store: StoreT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            args = get_args(base)
            if isinstance(get_origin(base), type) and args and isinstance(args[0], type):
                cls.config_type, cls.settings_type, cls.faults_type, cls.emitter_type = args[:4]

    def __init__(self, config: ConfigT | None = None, *, clock: Clock | None = None) -> None:
        config = config or self.config_type()
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
        self._limits()
        self.emitter = self._new_emitter()
        self._new_generation()

    def _limits(self) -> None:
        """Set up the rate limits (none by default)."""

    def _new_emitter(self) -> EmitterT:
        """The vendor's webhook emitter: `_emitter_options()` and the config's retry schedule."""
        # Only a vendor that builds its own emitter may have a config without a retry schedule.
        cfg: Any = self.config
        schedule = tuple(cfg.webhook_retry_schedule)
        emitter: EmitterT = self.emitter_type(**self._emitter_options(), retry_schedule=schedule)
        return emitter

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

    def _app(self) -> web.Application:
        """The aiohttp app serving this simulator."""
        # A function kept on the class: through `self` it is bound, so the app serves `self`.
        return self.create_app()

    def _banner(self) -> list[tuple[Any, ...]]:
        """The log lines (format and values) saying where the simulator serves, and its keys."""
        if not self.vendor_name:
            return [("%s at %s", type(self).__name__, self.url)]
        where = f"{self.vendor_name} simulator at %s (controls at %s/_sim)"
        attributes: dict[str, Any] = {}
        for cls in reversed(type(self).__mro__):
            attributes.update(vars(cls))
        shown = [
            (f"{view.banner}: %s", getattr(self, name))
            for name, view in attributes.items()
            if isinstance(view, StoreView) and view.banner
        ]
        return [(where, self.api_base, self.url), *shown]

    def announce(self, webhook_url: str | None, endpoint: str | None) -> None:
        """Log where the simulator serves, its keys, and the endpoint registered at start."""
        # The vendor's package logger: simulator.<vendor>.
        log = logging.getLogger(type(self).__module__.rpartition(".")[0])
        if endpoint is not None:
            log.info("webhooks go to %s (%s %s)", webhook_url, self.endpoint_noun, endpoint)
        for line in self._banner():
            log.info(*line)

    @property
    def api_base(self) -> str:
        """`<url><api_path>` (the path alone before the simulator serves)."""
        return self.url + self.api_path

    def add_endpoint(
        self,
        url: str,
        secret: str,
        events: list[str] | None = None,
        *,
        tenant: str | None = None,
        **options: Any,
    ) -> str:
        """Register a webhook endpoint signed with `secret` for `tenant` (else the default); its id.

        `options` are the vendor's own endpoint settings, checked by its emitter (Thena's `mode`,
        `header`, `scheme`, `nested`).
        """
        store: Any = self.store
        tenant_id: str = tenant or store.default.id
        if tenant_id not in getattr(store, self.tenants_at):
            raise ValueError(f"unknown {self.tenant_noun} {tenant_id!r}")
        endpoint = self.emitter.add_endpoint(
            self._new_endpoint_id, tenant_id, url, secret, events, **options
        )
        return str(endpoint.id)

    def _new_endpoint_id(self) -> str:
        """A fresh endpoint id (a seeded UUID unless the vendor's ids look otherwise)."""
        return self._endpoint_ids.uuid()

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


class MinuteLimited(
    SimulatorBase[LimitedConfigT, LimitedSettingsT, FaultsT, EmitterT, StoreT],
    Generic[LimitedConfigT, LimitedSettingsT, FaultsT, EmitterT, StoreT],
):
    """A simulator whose tenants share one per-minute limit, switched by a setting."""

    def _limits(self) -> None:
        self.limiter = RateLimiter(self.clock.monotonic, self.config.rate_limit_window_seconds)

    def _reset_limits(self) -> None:
        self.limiter.reset()

    def set_rate_limit(self, per_minute: int | None) -> None:
        """Change the per-tenant limit; 0 or None switches it off. Counts start over."""
        if per_minute is not None and per_minute < 0:
            raise ValueError("per_minute must be >= 0 or None")
        self.settings.rate_limit_per_minute = per_minute
        self.limiter.reset()
