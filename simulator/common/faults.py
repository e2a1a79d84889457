"""Fault injection every simulator shares: scripted API answers and the webhook fault knobs."""

from __future__ import annotations

import dataclasses
import fnmatch
import random
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar


class PathRule:
    """Matching of a scripted answer: a method (or `*`) and a glob over the request path."""

    method: str
    path_glob: str
    #: The glob may also be written relative to this prefix.
    api_prefix: ClassVar[str] = ""

    def _candidates(self, path: str) -> list[str]:
        prefix = self.api_prefix
        relative = path[len(prefix) :] if prefix and path.startswith(prefix + "/") else None
        return [path] if relative is None else [path, relative]

    def matches(self, method: str, path: str) -> bool:
        """True when the method (or `*`) and the glob (full path or a relative one) match."""
        if self.method != "*" and self.method != method.upper():
            return False
        return any(fnmatch.fnmatchcase(c, self.path_glob) for c in self._candidates(path))


@dataclass
class ScriptedFailure(PathRule):
    """Answer the next `remaining` requests matching `method` and `path_glob` with `status`.

    A `status` below 400 means "no error": the request is served normally after `delay`, or
    with `late` served at once and answered after `delay` (its change is applied before the
    pause, as when a helpdesk commits and then stalls).
    """

    method: str
    path_glob: str
    status: int
    remaining: int = 1
    retry_after: int | None = None
    #: Real seconds to wait before answering (for client-timeout tests).
    delay: float = 0.0
    #: With a status below 400: apply the request first, then wait `delay` before answering.
    late: bool = False


@dataclass
class DeliveryKnobs:
    """The delivery knobs every simulator has, first in every vendor's knobs."""

    #: Probability (0..1) that an event is delivered twice to an endpoint.
    duplicate: float = 0.0
    #: The next N events (per endpoint) are delivered twice.
    duplicate_next: int = 0
    #: With N >= 2, hold groups of N deliveries per endpoint and send each group shuffled.
    reorder_window: int = 0
    #: The next N delivery attempts carry a wrong signature.
    bad_signature_next: int = 0


@dataclass
class WebhookFaults(DeliveryKnobs):
    """Webhook knobs; set attributes directly, e.g. `sim.faults.webhooks.duplicate_next = 2`."""

    #: With k >= 2, a bulk call emits every per-ticket event k times (k distinct event ids).
    burst: int = 0


class Rule(Protocol):
    """What the faults do with a scripted answer (a dataclass)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        """True when the rule applies to this request."""
        ...


class Knobs(Protocol):
    """The webhook knobs every simulator has (a dataclass)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]
    duplicate: float
    duplicate_next: int
    bad_signature_next: int


S = TypeVar("S", bound=Rule)
W = TypeVar("W", bound=Knobs)
_KEYS = ("clear", "webhooks", "fail_next", "storm")


@dataclass
class Storm(Generic[S]):
    """Every request matching `rule` is answered as it says until `until` (real monotonic time)."""

    rule: S
    until: float

    def to_json(self) -> dict[str, Any]:
        """The storm as `GET /_sim/faults` shows it: the rule's fields and the seconds left."""
        fields = {k: v for k, v in asdict(self.rule).items() if k not in ("remaining", "after")}
        return {**fields, "seconds_left": round(max(0.0, self.until - time.monotonic()), 3)}


def storm_json(item: dict[str, Any]) -> dict[str, Any]:
    """The arguments of one `storm` item: `{status, seconds, retry_after?, delay?, method?, path?}`."""
    if not isinstance(item, dict) or "status" not in item or "seconds" not in item:
        raise ValueError("storm items need {status, seconds, retry_after?, delay?, method?, path?}")
    seconds = float(item["seconds"])
    if not seconds > 0:
        raise ValueError(f"storm seconds must be > 0 (got {seconds})")
    delay = float(item.get("delay", 0.0))
    if delay < 0:
        raise ValueError(f"storm delay must be >= 0 (got {delay})")
    args = scripted_json({**item, "times": 1})
    del args["times"]
    return {**args, "seconds": seconds}


def check_scripted(times: int, status: int) -> None:
    """Refuse a scripted answer for no requests or with a status that is not HTTP's."""
    if times < 1:
        raise ValueError(f"times must be >= 1 (got {times})")
    if not 0 <= status <= 599:
        raise ValueError(f"status must be an HTTP status (got {status})")


@dataclass
class FaultsBase(ABC, Generic[S, W]):
    """All fault state of one simulator; choices come from a seeded generator."""

    rng: random.Random
    webhooks: W
    scripted: list[S] = dataclasses.field(default_factory=list)
    storms: list[Storm[S]] = dataclasses.field(default_factory=list)
    #: Keys `POST /_sim/faults` takes besides clear, webhooks and fail_next.
    extra_keys: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def _fail_next_json(self, item: dict[str, Any]) -> None:
        """Script one `fail_next` item of `POST /_sim/faults`."""

    def _holds_back(self, rule: S) -> bool:
        """True when a matching rule lets this request through untouched (and counts it)."""
        return False

    @abstractmethod
    def _storm_rule(self, args: dict[str, Any]) -> S:
        """The rule a storm answers with, from `storm_json`'s arguments (without `seconds`)."""

    def storm(self, seconds: float, **args: Any) -> None:
        """Answer every matching request as `args` say (`status`, `retry_after`, `delay`,
        `method`, `path_glob`) for the next `seconds` real seconds, however many there are."""
        self.storms.append(Storm(self._storm_rule(args), time.monotonic() + seconds))

    def take_scripted(self, method: str, path: str) -> S | None:
        """The storm or first scripted answer matching this request, counting the latter as used."""
        now = time.monotonic()
        self.storms = [s for s in self.storms if s.until > now]
        for storm in self.storms:
            if storm.rule.matches(method, path):
                return storm.rule
        for i, rule in enumerate(self.scripted):
            if rule.matches(method, path):
                if self._holds_back(rule):
                    return None
                rule.remaining -= 1
                if rule.remaining <= 0:
                    del self.scripted[i]
                return rule
        return None

    def take_duplicate(self) -> bool:
        """Whether to deliver the next event twice."""
        if self.webhooks.duplicate_next > 0:
            self.webhooks.duplicate_next -= 1
            return True
        return self.webhooks.duplicate > 0 and self.rng.random() < self.webhooks.duplicate

    def take_bad_signature(self) -> bool:
        """Whether the next attempt gets a wrong signature (or token)."""
        if self.webhooks.bad_signature_next > 0:
            self.webhooks.bad_signature_next -= 1
            return True
        return False

    def clear(self) -> None:
        """Switch every fault off."""
        # The knobs' defaults are all off.
        self.webhooks = type(self.webhooks)()
        self.scripted.clear()
        self.storms.clear()

    def to_json(self) -> dict[str, Any]:
        """The current knobs, as `GET /_sim/faults` shows them."""
        return {
            "webhooks": asdict(self.webhooks),
            "fail_next": [asdict(s) for s in self.scripted],
            "storm": [s.to_json() for s in self.storms if s.until > time.monotonic()],
        }

    def _set_knob(self, name: str, value: Any) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"webhooks.{name} must be a number >= 0")
        setattr(self.webhooks, name, float(value) if name == "duplicate" else int(value))

    def _apply_extra(self, body: dict[str, Any]) -> None:
        """Apply the vendor's own keys of `POST /_sim/faults`."""
        return

    def apply_json(self, body: dict[str, Any]) -> None:
        """Apply `POST /_sim/faults`: `{clear?, webhooks?: {...}, fail_next?: {...} | [{...}]}`
        and the vendor's own keys."""
        keys = _KEYS + self.extra_keys
        unknown = set(body) - set(keys)
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)}; use {', '.join(keys)}")
        if body.get("clear"):
            self.clear()
        hooks = body.get("webhooks") or {}
        if not isinstance(hooks, dict):
            raise TypeError("webhooks must be an object")
        names = [f.name for f in dataclasses.fields(self.webhooks)]
        for name, value in hooks.items():
            if name not in names:
                raise ValueError(f"unknown webhook fault {name!r}; use " + ", ".join(names))
            self._set_knob(name, value)
        scripted = body.get("fail_next") or []
        for item in scripted if isinstance(scripted, list) else [scripted]:
            if not isinstance(item, dict) or "status" not in item:
                raise ValueError("fail_next items need {method, path, status, times?, ...}")
            self._fail_next_json(item)
        storms = body.get("storm") or []
        for item in storms if isinstance(storms, list) else [storms]:
            args = storm_json(item)
            self.storm(args.pop("seconds"), **args)
        self._apply_extra(body)


def scripted_json(item: dict[str, Any]) -> dict[str, Any]:
    """The arguments of `fail_next` every simulator reads from a `fail_next` item."""
    return {
        "method": str(item.get("method", "*")),
        "path_glob": str(item.get("path", item.get("path_glob", "*"))),
        "status": int(item["status"]),
        "times": int(item.get("times", 1)),
        "retry_after": None if item.get("retry_after") is None else int(item["retry_after"]),
        "delay": float(item.get("delay", 0.0)),
        "late": bool(item.get("late", False)),
    }


@dataclass
class ScriptedFaults(FaultsBase[S, W]):
    """Faults with scripted answers of class `rule`, which says where globs are relative to."""

    #: The scripted answer class, whose `api_prefix` globs may be written relative to.
    rule: ClassVar[type[Any]] = ScriptedFailure

    def fail_next(
        self,
        method: str,
        path_glob: str,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        delay: float = 0.0,
        late: bool = False,
        **extra: Any,
    ) -> None:
        """Script the answer of the next `times` requests matching `method` and `path_glob`;
        `extra` are the fields of the vendor's own `rule` (Thena's `reset_after` and `after`)."""
        check_scripted(times, status)
        if late and status >= 400:
            raise ValueError(
                f"late needs a status below 400: it answers the request (got {status})"
            )
        # `delay` by name: a vendor's rule may put its own fields before it.
        rule = self.rule(
            method.upper(), path_glob, status, times, retry_after, delay=delay, late=late, **extra
        )
        self.scripted.append(rule)

    def _fail_next_json(self, item: dict[str, Any]) -> None:
        self.fail_next(**scripted_json(item))

    def _storm_rule(self, args: dict[str, Any]) -> S:
        check_scripted(1, int(args["status"]))
        rule: S = self.rule(
            str(args.get("method", "*")).upper(),
            str(args.get("path_glob", "*")),
            int(args["status"]),
            1,
            args.get("retry_after"),
            delay=float(args.get("delay", 0.0)),
        )
        return rule


@dataclass
class Faults(ScriptedFaults[ScriptedFailure, WebhookFaults]):
    """Faults with the common knobs and scripted answers."""

    webhooks: WebhookFaults = dataclasses.field(default_factory=WebhookFaults)
