"""Simulator configuration: the frozen start-up `SimulatorConfig` and the runtime-switchable `Settings`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from simulator.common.config import (
    MinuteLimitConfig,
    Window,
    one_of,
    positive_timeout,
    switches,
)
from ticketwire.errors import ConfigError

UnknownIds = Literal["skip", "404"]
LeftReminder = Literal["clear", "keep"]


@dataclass(frozen=True)
class SimulatorConfig(MinuteLimitConfig):
    """Everything fixed when the simulator is built; `Settings` holds what may change later."""

    #: Send `X-RateLimit-Limit/Remaining/Reset` on rate-limited routes.
    rate_limit_headers: bool = False
    #: Errors as `{error, message, code, details}` application/json instead of problem+json.
    legacy_errors: bool = False
    max_bulk_ids: int = 100
    #: Unknown or foreign ids in a bulk call: skipped, or the whole call answers 404.
    bulk_unknown_ids: UnknownIds = "skip"
    #: What a ticket that leaves waiting does with its reminder (undocumented): drop it, or keep
    #: it on the ticket, where it never fires while the ticket is not waiting.
    reminder_leaving_waiting: LeftReminder = "clear"
    #: Lifetime of an Idempotency-Key entry, in simulated seconds.
    idempotency_ttl: float = 24 * 3600.0
    default_per_page: int = 25
    max_per_page: int = 100
    #: Per-attempt timeout of a webhook delivery, in real seconds.
    webhook_timeout: float = 10.0
    webhook_max_attempts: int = 10
    #: First retry delay in simulated seconds; it doubles after every failed attempt.
    webhook_retry_base: float = 60.0
    #: Prefix the signature header value with `sha256=`.
    webhook_signature_prefix: bool = False
    #: A partly filled reorder group is sent anyway after this many real seconds.
    reorder_flush_after: float = 0.5
    #: Most recent entries kept in the request journal and the delivery log (None = all).
    journal_limit: int | None = 100_000
    delivery_log_limit: int | None = 100_000
    #: A new message (a note, a sent or received email) bumps the ticket's `updated_at` and
    #: emits `ticket.updated`; InboxOps does not document either way.
    message_updates_ticket: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("bulk_unknown_ids", self.bulk_unknown_ids, ("skip", "404"))
        one_of("reminder_leaving_waiting", self.reminder_leaving_waiting, ("clear", "keep"))
        if self.max_bulk_ids < 1:
            raise ConfigError("max_bulk_ids", "an integer >= 1", repr(self.max_bulk_ids))
        if not 1 <= self.default_per_page <= self.max_per_page:
            raise ConfigError("default_per_page", "1 <= default_per_page <= max_per_page")
        positive_timeout("webhook_timeout", self.webhook_timeout)
        if self.webhook_max_attempts < 1:
            raise ConfigError("webhook_max_attempts", "an integer >= 1")


@dataclass
class Settings:
    """Switches that may be flipped while the simulator runs (`sim.settings`, `POST /_sim/settings`)."""

    legacy_errors: bool
    rate_limit_per_minute: int | None
    rate_limit_window: Window
    rate_limit_headers: bool
    bulk_unknown_ids: UnknownIds
    webhook_signature_prefix: bool
    reminder_leaving_waiting: LeftReminder
    message_updates_ticket: bool = True

    @classmethod
    def from_config(cls, cfg: SimulatorConfig) -> Settings:
        """The start-up values of the switches: the config's fields of the same names."""
        return switches(cls, cfg)
