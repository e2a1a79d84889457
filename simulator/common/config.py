"""Config reading every simulator shares: the seed and clock fields, and checks of common values."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ticketwire.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

S = TypeVar("S", bound="DataclassInstance")
Window = Literal["fixed", "sliding"]


@dataclass(frozen=True)
class ClockConfig:
    """The fields every simulator's config starts with: its seeds and its clock."""

    #: Seed for ids, keys, event ids and fault choices; None picks one at random (kept on reset).
    seed: int | None = None
    #: Seed of the webhook event ids alone (None: `seed`). A store kept across runs gets a new
    #: one each run, so no event id of an earlier run comes again (receivers drop repeats).
    event_seed: int | None = None
    #: Simulated start time; None means the real current time.
    epoch: datetime | None = None
    #: Real seconds per simulated second: 0.001 makes a one-minute retry wait last 60 ms.
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ConfigError("time_scale", "a number > 0", repr(self.time_scale))


@dataclass(frozen=True)
class MinuteLimitConfig(ClockConfig):
    """The clock fields, then one per-minute request limit for every tenant."""

    #: Requests per tenant per window; 0 or None switches the limit off.
    rate_limit_per_minute: int | None = 100
    rate_limit_window: Window = "fixed"
    #: Length of the rate-limit window in simulated seconds.
    rate_limit_window_seconds: float = 60.0

    def __post_init__(self) -> None:
        super().__post_init__()
        per_minute("rate_limit_per_minute", self.rate_limit_per_minute)
        one_of("rate_limit_window", self.rate_limit_window, ("fixed", "sliding"))


def one_of(name: str, value: Any, options: Sequence[Any]) -> None:
    """Refuse `value` unless it is one of `options` (the error lists them, `'a', 'b' or 'c'`)."""
    if value in options:
        return
    shown = [repr(o) for o in options]
    expected = " or ".join([", ".join(shown[:-1]), shown[-1]] if len(shown) > 1 else shown)
    raise ConfigError(name, expected, value if isinstance(value, str) else repr(value))


def per_minute(name: str, value: int | None) -> None:
    """Refuse a negative per-minute limit (0 and None switch it off)."""
    if value is not None and value < 0:
        raise ConfigError(name, "an integer >= 0 or None")


def positive_timeout(name: str, value: float) -> None:
    """Refuse a timeout that is not a number of seconds > 0."""
    if value <= 0:
        raise ConfigError(name, "a number of seconds > 0")


def switches(settings: type[S], cfg: object, **converted: Any) -> S:
    """Runtime settings whose fields start at the config's fields of the same names, or at the
    `converted` values given for them."""
    names = [f.name for f in dataclasses.fields(settings) if f.name not in converted]
    return settings(**{name: getattr(cfg, name) for name in names}, **converted)
