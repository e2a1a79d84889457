"""Thena simulator configuration: the frozen start-up config and the runtime-switchable settings."""

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

AuthSchemes = Literal["both", "api-key", "bearer"]
ErrorFormat = Literal["nest", "envelope"]
ListShape = Literal["list", "object"]

#: Waits in simulated seconds after failed attempts 1..5 (Thena's webhooks retry like this).
RETRY_SCHEDULE: tuple[float, ...] = (10.0, 20.0, 30.0, 50.0, 80.0)


@dataclass(frozen=True)
class ThenaSimulatorConfig(MinuteLimitConfig):
    """Everything fixed when the simulator is built; `Settings` holds what may change later."""

    #: Also send `Retry-After` on a 429 (Thena documents only `X-RateLimit-Reset`).
    retry_after_header: bool = False
    #: Which auth schemes the API accepts: `x-api-key`, `Authorization: Bearer` + `x-org-id`.
    auth_schemes: AuthSchemes = "both"
    #: Status for a bearer token sent without `x-org-id`: 401 or 400.
    missing_org_status: int = 401
    #: Error bodies: `nest` `{statusCode, message, error}` or `envelope` `{status: false, ...}`.
    error_format: ErrorFormat = "nest"
    #: `GET /v1/tickets` answers `data: [...]` (`list`) or `data: {tickets, total, page, limit}`.
    list_shape: ListShape = "list"
    default_limit: int = 10
    max_limit: int = 100
    #: Most tickets one `POST /v1/tickets/bulk` may create.
    max_bulk_tickets: int = 100
    #: A bulk create stopped by `stopOnError` keeps the tickets made before the bad one (False)
    #: or creates none (True); the bulk page does not say which.
    bulk_create_atomic: bool = False
    #: A `deDuplicationKey` used before answers 201 with its ticket (False) or 409 (True); the
    #: create page does not say which.
    dedup_conflict: bool = False
    #: Most ids one `PATCH /v1/tickets/bulk` may name.
    max_bulk_ids: int = 100
    #: Per-attempt timeout of a webhook delivery, in real seconds.
    webhook_timeout: float = 10.0
    #: Simulated seconds to wait after each failed attempt; one attempt more than entries.
    webhook_retry_schedule: tuple[float, ...] = RETRY_SCHEDULE
    #: Prefix HMAC signatures with `sha256=`.
    webhook_signature_prefix: bool = False
    #: A partly filled reorder group is sent anyway after this many real seconds.
    reorder_flush_after: float = 0.5
    #: Most recent entries kept in the request journal and the delivery log (None = all).
    journal_limit: int | None = 100_000
    delivery_log_limit: int | None = 100_000

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("auth_schemes", self.auth_schemes, ("both", "api-key", "bearer"))
        one_of("missing_org_status", self.missing_org_status, (400, 401))
        one_of("error_format", self.error_format, ("nest", "envelope"))
        one_of("list_shape", self.list_shape, ("list", "object"))
        if not 1 <= self.default_limit <= self.max_limit:
            raise ConfigError("default_limit", "1 <= default_limit <= max_limit")
        if self.max_bulk_tickets < 1 or self.max_bulk_ids < 1:
            raise ConfigError("max_bulk_tickets", "max_bulk_tickets and max_bulk_ids >= 1")
        positive_timeout("webhook_timeout", self.webhook_timeout)
        if any(wait < 0 for wait in self.webhook_retry_schedule):
            raise ConfigError("webhook_retry_schedule", "waits >= 0 simulated seconds")


@dataclass
class Settings:
    """Switches that may be flipped while the simulator runs (`sim.settings`, `/_sim/settings`)."""

    rate_limit_per_minute: int | None
    rate_limit_window: Window
    retry_after_header: bool
    auth_schemes: AuthSchemes
    missing_org_status: Literal[400, 401]
    error_format: ErrorFormat
    list_shape: ListShape
    webhook_signature_prefix: bool
    bulk_create_atomic: bool
    dedup_conflict: bool

    @classmethod
    def from_config(cls, cfg: ThenaSimulatorConfig) -> Settings:
        """The start-up values of the switches: the config's fields of the same names."""
        return switches(cls, cfg)
