"""Fault injection: scripted API answers for matching requests, and the webhook fault knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from simulator.common.faults import PathRule, ScriptedFaults, WebhookFaults, scripted_json

API_PREFIX = "/v1"


@dataclass
class ScriptedFailure(PathRule):
    """Answer the next `remaining` requests matching `method` and `path_glob` with `status`.

    A `status` below 400 means "no error": the request is served normally after `delay`.
    """

    api_prefix: ClassVar[str] = API_PREFIX

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
    #: With a status below 400: apply the request first, then wait `delay` before answering.
    late: bool = False
    #: Matching requests served normally before this rule starts answering.
    after: int = 0

    def __post_init__(self) -> None:
        if self.after < 0:
            raise ValueError(f"after must be >= 0 (got {self.after})")


@dataclass
class Faults(ScriptedFaults[ScriptedFailure, WebhookFaults]):
    """All fault state of one simulator; choices come from a seeded generator.

    A bad signature fault sends a wrong token (or, in hmac mode, a wrong signature).
    """

    rule: ClassVar[type[Any]] = ScriptedFailure
    webhooks: WebhookFaults = field(default_factory=WebhookFaults)

    def _holds_back(self, rule: ScriptedFailure) -> bool:
        if rule.after > 0:
            rule.after -= 1
            return True
        return False

    def _fail_next_json(self, item: dict[str, Any]) -> None:
        self.fail_next(
            **scripted_json(item),
            reset_after=None if item.get("reset_after") is None else int(item["reset_after"]),
            after=int(item.get("after", 0)),
        )
