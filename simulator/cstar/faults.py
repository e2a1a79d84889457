"""Fault injection: scripted API answers, failing bulk ids, and the webhook fault knobs."""

from __future__ import annotations

import fnmatch
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

#: `/api/v1/teams/<team>` — globs may be written relative to it (`/tickets/*`, `/bulk`).
_TEAM_ROOT = re.compile(r"^/api/v1/teams/[^/]+")


@dataclass
class ScriptedFailure:
    """Answer the next `remaining` requests matching `method` and `path_glob` with `status`.

    The glob matches the full path, the path relative to `/api/v1`, or relative to the team root.
    A `status` below 400 means "no error": the request is served normally after `delay`.
    """

    method: str
    path_glob: str
    status: int
    remaining: int = 1
    retry_after: int | None = None
    #: Real seconds to wait before answering (for client-timeout tests).
    delay: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        """True when the method (or `*`) and the glob match."""
        if self.method != "*" and self.method != method.upper():
            return False
        candidates = [path]
        if path.startswith("/api/v1/"):
            candidates.append(path[len("/api/v1") :])
        root = _TEAM_ROOT.match(path)
        if root is not None:
            candidates.append(path[root.end() :] or "/")
        return any(fnmatch.fnmatchcase(c, self.path_glob) for c in candidates)


@dataclass
class WebhookFaults:
    """Webhook knobs; set attributes directly, e.g. `sim.faults.webhooks.duplicate_next = 2`."""

    #: Probability (0..1) that an event is delivered twice to an endpoint.
    duplicate: float = 0.0
    #: The next N events (per endpoint) are delivered twice.
    duplicate_next: int = 0
    #: With N >= 2, hold groups of N deliveries per endpoint and send each group shuffled.
    reorder_window: int = 0
    #: The next N delivery attempts carry a wrong signature.
    bad_signature_next: int = 0
    #: The next N delivery attempts are signed with a timestamp `stale_by` seconds off.
    stale_timestamp_next: int = 0
    #: Seconds the stale timestamp is off: positive is in the past, negative in the future.
    stale_by: float = 600.0
    #: With k >= 2, a bulk call emits every per-ticket event k times (k distinct event ids).
    burst: int = 0


@dataclass
class Faults:
    """All fault state of one simulator; choices come from a seeded generator."""

    rng: random.Random
    webhooks: WebhookFaults = field(default_factory=WebhookFaults)
    scripted: list[ScriptedFailure] = field(default_factory=list)
    #: Ticket id → error code: bulk calls report these ids as failed and leave them unchanged.
    bulk_fail_ids: dict[str, str] = field(default_factory=dict)

    def fail_next(
        self,
        method: str,
        path_glob: str,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Script the answer of the next `times` requests matching `method` and `path_glob`."""
        if times < 1:
            raise ValueError(f"times must be >= 1 (got {times})")
        if not 0 <= status <= 599:
            raise ValueError(f"status must be an HTTP status (got {status})")
        self.scripted.append(
            ScriptedFailure(method.upper(), path_glob, status, times, retry_after, delay)
        )

    def fail_bulk_ids(self, ids: list[str], code: str = "api_error") -> None:
        """Make bulk calls report `ids` as failed with `code` (until `clear()`)."""
        for ticket_id in ids:
            self.bulk_fail_ids[ticket_id] = code

    def take_scripted(self, method: str, path: str) -> ScriptedFailure | None:
        """The first scripted answer matching this request, counting it as used."""
        for i, rule in enumerate(self.scripted):
            if rule.matches(method, path):
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
        """Whether the next attempt gets a wrong signature."""
        if self.webhooks.bad_signature_next > 0:
            self.webhooks.bad_signature_next -= 1
            return True
        return False

    def take_stale(self) -> float:
        """Seconds to shift the next attempt's signed timestamp back (0 for none)."""
        if self.webhooks.stale_timestamp_next > 0:
            self.webhooks.stale_timestamp_next -= 1
            return self.webhooks.stale_by
        return 0.0

    def clear(self) -> None:
        """Switch every fault off."""
        self.webhooks = WebhookFaults()
        self.scripted.clear()
        self.bulk_fail_ids.clear()

    def to_json(self) -> dict[str, Any]:
        """The current knobs, as `GET /_sim/faults` shows them."""
        return {
            "webhooks": asdict(self.webhooks),
            "fail_next": [asdict(s) for s in self.scripted],
            "bulk_fail_ids": dict(self.bulk_fail_ids),
        }

    def apply_json(self, body: dict[str, Any]) -> None:
        """Apply `POST /_sim/faults`: `{clear?, webhooks?, fail_next?, bulk_fail_ids?}`."""
        unknown = set(body) - {"clear", "webhooks", "fail_next", "bulk_fail_ids"}
        if unknown:
            raise ValueError(
                f"unknown key(s) {sorted(unknown)}; use clear, webhooks, fail_next, bulk_fail_ids"
            )
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
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"webhooks.{name} must be a number")
            if value < 0 and name != "stale_by":
                raise ValueError(f"webhooks.{name} must be >= 0")
            is_float = name in ("duplicate", "stale_by")
            setattr(self.webhooks, name, float(value) if is_float else int(value))
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
            )
        failing = body.get("bulk_fail_ids") or {}
        if not isinstance(failing, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in failing.items()
        ):
            raise ValueError("bulk_fail_ids must be an object of ticket id → error code")
        self.bulk_fail_ids.update(failing)
