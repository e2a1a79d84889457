"""Fault injection: scripted API answers, failing bulk ids, and the webhook fault knobs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from simulator.common import faults

#: `/api/v1/teams/<team>` — globs may be written relative to it (`/tickets/*`, `/bulk`).
_TEAM_ROOT = re.compile(r"^/api/v1/teams/[^/]+")


@dataclass
class ScriptedFailure(faults.ScriptedFailure):
    """A scripted answer whose glob may be written relative to `/api/v1` or to the team root."""

    api_prefix: ClassVar[str] = "/api/v1"

    def _candidates(self, path: str) -> list[str]:
        candidates = super()._candidates(path)
        root = _TEAM_ROOT.match(path)
        if root is not None:
            candidates.append(path[root.end() :] or "/")
        return candidates


@dataclass
class WebhookFaults(faults.DeliveryKnobs):
    """Webhook knobs; set attributes directly, e.g. `sim.faults.webhooks.duplicate_next = 2`."""

    #: The next N delivery attempts are signed with a timestamp `stale_by` seconds off.
    stale_timestamp_next: int = 0
    #: Seconds the stale timestamp is off: positive is in the past, negative in the future.
    stale_by: float = 600.0
    #: With k >= 2, a bulk call emits every per-ticket event k times (k distinct event ids).
    burst: int = 0


@dataclass
class Faults(faults.ScriptedFaults[ScriptedFailure, WebhookFaults]):
    """All fault state of one simulator; choices come from a seeded generator."""

    webhooks: WebhookFaults = field(default_factory=WebhookFaults)
    #: Ticket id → error code: bulk calls report these ids as failed and leave them unchanged.
    bulk_fail_ids: dict[str, str] = field(default_factory=dict)
    extra_keys: ClassVar[tuple[str, ...]] = ("bulk_fail_ids",)
    rule: ClassVar[type[faults.ScriptedFailure]] = ScriptedFailure

    def fail_bulk_ids(self, ids: list[str], code: str = "api_error") -> None:
        """Make bulk calls report `ids` as failed with `code` (until `clear()`)."""
        for ticket_id in ids:
            self.bulk_fail_ids[ticket_id] = code

    def take_stale(self) -> float:
        """Seconds to shift the next attempt's signed timestamp back (0 for none)."""
        if self.webhooks.stale_timestamp_next > 0:
            self.webhooks.stale_timestamp_next -= 1
            return self.webhooks.stale_by
        return 0.0

    def clear(self) -> None:
        """Switch every fault off, failing bulk ids too."""
        super().clear()
        self.bulk_fail_ids.clear()

    def to_json(self) -> dict[str, Any]:
        """The current knobs, as `GET /_sim/faults` shows them."""
        return {**super().to_json(), "bulk_fail_ids": dict(self.bulk_fail_ids)}

    def _set_knob(self, name: str, value: Any) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"webhooks.{name} must be a number")
        if value < 0 and name != "stale_by":
            raise ValueError(f"webhooks.{name} must be >= 0")
        is_float = name in ("duplicate", "stale_by")
        setattr(self.webhooks, name, float(value) if is_float else int(value))

    def _apply_extra(self, body: dict[str, Any]) -> None:
        failing = body.get("bulk_fail_ids") or {}
        if not isinstance(failing, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in failing.items()
        ):
            raise ValueError("bulk_fail_ids must be an object of ticket id → error code")
        self.bulk_fail_ids.update(failing)
