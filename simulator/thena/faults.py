"""Fault injection: scripted API answers for matching requests, and the webhook fault knobs."""

from __future__ import annotations

import fnmatch
import random
from dataclasses import asdict, dataclass, field
from typing import Any

API_PREFIX = "/v1"


@dataclass
class ScriptedFailure:
    """Answer the next `remaining` requests matching `method` and `path_glob` with `status`.

    A `status` below 400 means "no error": the request is served normally after `delay`.
    """

    method: str
    path_glob: str
    status: int
    remaining: int = 1
    #: Send `Retry-After: <seconds>`.
    retry_after: int | None = None
    #: Send `X-RateLimit-Reset` this many simulated seconds ahead (a unix time).
    reset_after: int | None = None
    #: Real seconds to wait before answering (for client-timeout tests).
    delay: float = 0.0
    #: Matching requests served normally before this rule starts answering.
    after: int = 0

    def matches(self, method: str, path: str) -> bool:
        """True when the method (or `*`) and the glob (full path or relative to /v1) match."""
        if self.method != "*" and self.method != method.upper():
            return False
        if fnmatch.fnmatchcase(path, self.path_glob):
            return True
        relative = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else None
        return relative is not None and fnmatch.fnmatchcase(relative, self.path_glob)


@dataclass
class WebhookFaults:
    """Webhook knobs; set attributes directly, e.g. `sim.faults.webhooks.duplicate_next = 2`."""

    #: Probability (0..1) that an event is delivered twice to an endpoint.
    duplicate: float = 0.0
    #: The next N events (per endpoint) are delivered twice.
    duplicate_next: int = 0
    #: With N >= 2, hold groups of N deliveries per endpoint and send each group shuffled.
    reorder_window: int = 0
    #: The next N delivery attempts carry a wrong token (or, in hmac mode, a wrong signature).
    bad_signature_next: int = 0
    #: With k >= 2, a bulk update emits every per-ticket event k times (k distinct event ids).
    burst: int = 0


@dataclass
class Faults:
    """All fault state of one simulator; choices come from a seeded generator."""

    rng: random.Random
    webhooks: WebhookFaults = field(default_factory=WebhookFaults)
    scripted: list[ScriptedFailure] = field(default_factory=list)

    def fail_next(
        self,
        method: str,
        path_glob: str,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        delay: float = 0.0,
        *,
        reset_after: int | None = None,
        after: int = 0,
    ) -> None:
        """Script the answer of the next `times` requests matching `method` and `path_glob`,
        once `after` matching requests have been served normally."""
        if times < 1:
            raise ValueError(f"times must be >= 1 (got {times})")
        if after < 0:
            raise ValueError(f"after must be >= 0 (got {after})")
        if not 0 <= status <= 599:
            raise ValueError(f"status must be an HTTP status (got {status})")
        self.scripted.append(
            ScriptedFailure(
                method.upper(), path_glob, status, times, retry_after, reset_after, delay, after
            )
        )

    def take_scripted(self, method: str, path: str) -> ScriptedFailure | None:
        """The first scripted answer matching this request, counting it as used."""
        for i, rule in enumerate(self.scripted):
            if rule.matches(method, path):
                if rule.after > 0:
                    rule.after -= 1
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
        """Whether the next attempt gets a wrong token or signature."""
        if self.webhooks.bad_signature_next > 0:
            self.webhooks.bad_signature_next -= 1
            return True
        return False

    def clear(self) -> None:
        """Switch every fault off."""
        self.webhooks = WebhookFaults()
        self.scripted.clear()

    def to_json(self) -> dict[str, Any]:
        """The current knobs, as `GET /_sim/faults` shows them."""
        return {
            "webhooks": asdict(self.webhooks),
            "fail_next": [asdict(s) for s in self.scripted],
        }

    def apply_json(self, body: dict[str, Any]) -> None:
        """Apply `POST /_sim/faults`: `{clear?, webhooks?: {...}, fail_next?: {...} | [{...}]}`."""
        unknown = set(body) - {"clear", "webhooks", "fail_next"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)}; use clear, webhooks, fail_next")
        if body.get("clear"):
            self.clear()
        hooks = body.get("webhooks") or {}
        if not isinstance(hooks, dict):
            raise TypeError("webhooks must be an object")
        for name, value in hooks.items():
            if name not in WebhookFaults.__dataclass_fields__:
                raise ValueError(
                    f"unknown webhook fault {name!r}; use "
                    + ", ".join(WebhookFaults.__dataclass_fields__)
                )
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"webhooks.{name} must be a number >= 0")
            setattr(self.webhooks, name, float(value) if name == "duplicate" else int(value))
        scripted = body.get("fail_next") or []
        for item in scripted if isinstance(scripted, list) else [scripted]:
            if not isinstance(item, dict) or "status" not in item:
                raise ValueError("fail_next items need {method, path, status, times?, ...}")
            self.fail_next(
                str(item.get("method", "*")),
                str(item.get("path", item.get("path_glob", "*"))),
                int(item["status"]),
                times=int(item.get("times", 1)),
                retry_after=None if item.get("retry_after") is None else int(item["retry_after"]),
                delay=float(item.get("delay", 0.0)),
                reset_after=None if item.get("reset_after") is None else int(item["reset_after"]),
                after=int(item.get("after", 0)),
            )
