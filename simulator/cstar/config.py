"""Simulator configuration: the frozen start-up `CStarSimulatorConfig`, the runtime `Settings`,
and rate-limit specs (`"120/minute"`, `"1000/hour"`, or `"N/second|minute|hour"`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from simulator.common.config import ClockConfig, one_of, positive_timeout, switches
from ticketwire.errors import ConfigError

Pagination = Literal["meta", "top"]
WriteCode = Literal["insufficient_permissions", "publishable_key_write"]
AuthCodes = Literal["page", "detailed"]
AUTH_CODES: tuple[str, ...] = ("page", "detailed")
SignatureMode = Literal["v1", "legacy"]
RetryAfterPlace = Literal["header", "body", "message"]
RETRY_AFTER_PLACES: tuple[str, ...] = ("header", "body", "message")
SIGNATURE_HEADERS: tuple[str, ...] = ("X-Signature", "x-cstar-signature")
#: Waits before retry 1..6 of a failed delivery, in simulated seconds (30 s, 2 m, 10 m, 1 h, 6 h,
#: 24 h), as cStar documents.
RETRY_SCHEDULE: tuple[float, ...] = (30.0, 120.0, 600.0, 3600.0, 21600.0, 86400.0)

_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)s?\s*$")


@dataclass(frozen=True)
class RateLimit:
    """Requests per key per window: secret keys and publishable keys count separately."""

    secret: int
    publishable: int
    window_s: float
    label: str

    @classmethod
    def parse(cls, spec: str | int | RateLimit | None) -> RateLimit | None:
        """A limit from a preset or `"N/unit"` (both key types get N), an int (per minute), or
        None / 0 (no limit)."""
        if spec is None or isinstance(spec, RateLimit):
            return spec
        if isinstance(spec, bool):
            raise ConfigError(
                "rate_limit", "a spec such as '120/minute' or '1000/hour'", repr(spec)
            )
        if isinstance(spec, int):
            if spec < 0:
                raise ConfigError("rate_limit", "a number of requests >= 0", repr(spec))
            return None if spec == 0 else cls(spec, spec, 60.0, f"{spec}/minute")
        preset = PRESETS.get(spec.strip().lower())
        if preset is not None:
            return preset
        m = _SPEC.match(spec.lower())
        if m is None:
            raise ConfigError(
                "rate_limit", "'120/minute', '1000/hour' or 'N/second|minute|hour'", spec
            )
        count = int(m.group(1))
        if count == 0:
            return None
        return cls(count, count, _UNITS[m.group(2)], f"{count}/{m.group(2)}")

    def for_kind(self, kind: str) -> int:
        """The limit of a `secret` or `publishable` key."""
        return self.secret if kind == "secret" else self.publishable


#: The two sets of numbers cStar's pages give: the API reference (secret 120/min, publishable
#: 60/min) and the library articles (secret 1,000/h, publishable 100/h).
PRESETS: dict[str, RateLimit] = {
    "120/minute": RateLimit(120, 60, 60.0, "120/minute"),
    "1000/hour": RateLimit(1000, 100, 3600.0, "1000/hour"),
}


@dataclass(frozen=True)
class CStarSimulatorConfig(ClockConfig):
    """Everything fixed when the simulator is built; `Settings` holds what may change later."""

    #: `"120/minute"` (default), `"1000/hour"`, `"N/unit"`, an int per minute, or None (off).
    rate_limit: str | int | None = "120/minute"
    #: Errors as the older `{error: {code: "UNAUTHORIZED", message}}` instead of the envelope.
    legacy_errors: bool = False
    #: Lists carry `meta.pagination {page, pageSize, total, totalPages}` or a top-level
    #: `pagination {total, page, pageSize, hasMore}`.
    pagination: Pagination = "meta"
    #: The 403 code a publishable key gets on a write.
    publishable_write_code: WriteCode = "insufficient_permissions"
    #: `page`: every 401 is `authentication_required` "Invalid or expired API key" and a foreign
    #: team 403 `insufficient_permissions`, as the bulk page shows; `detailed`: the codes of the
    #: error-code article (`invalid_key_format`, `invalid_api_key`, `key_expired`,
    #: `team_access_denied`).
    auth_error_codes: AuthCodes = "page"
    #: Where a 429 says when to come back: `Retry-After`, `error.retryAfter`, the message.
    retry_after_in: tuple[str, ...] = RETRY_AFTER_PLACES
    #: Lifetime of an Idempotency-Key, in simulated seconds.
    idempotency_ttl: float = 24 * 3600.0
    max_bulk_ids: int = 100
    default_page_size: int = 20
    max_page_size: int = 100
    #: Per-attempt response budget of a webhook delivery, in real seconds.
    webhook_timeout: float = 10.0
    #: Waits before each retry, in simulated seconds; one attempt plus one per entry.
    webhook_retry_schedule: tuple[float, ...] = RETRY_SCHEDULE
    #: `v1` sends `t=<unix>,v1=<hex>`; `legacy` sends `sha256=<hex>` over the body alone.
    webhook_signature: SignatureMode = "v1"
    #: `X-Signature`, or `x-cstar-signature` as an older page names it.
    webhook_signature_header: str = "X-Signature"
    #: Copy key ticket fields to the envelope's root ("Flat Payload").
    flat_payload: bool = False
    #: A partly filled reorder group is sent anyway after this many real seconds.
    reorder_flush_after: float = 0.5
    journal_limit: int | None = 100_000
    delivery_log_limit: int | None = 100_000
    #: Team prefix of `prefixed_id` (`CST-1024`) and the first number.
    ticket_prefix: str = "CST"
    first_ticket_number: int = 1024
    agents: tuple[str, ...] = field(default=("agt_ava", "agt_ben", "agt_cho"))

    def __post_init__(self) -> None:
        super().__post_init__()
        RateLimit.parse(self.rate_limit)
        one_of("pagination", self.pagination, ("meta", "top"))
        if self.publishable_write_code not in ("insufficient_permissions", "publishable_key_write"):
            raise ConfigError(
                "publishable_write_code",
                "'insufficient_permissions' or 'publishable_key_write'",
                self.publishable_write_code,
            )
        if self.auth_error_codes not in AUTH_CODES:
            raise ConfigError("auth_error_codes", "'page' or 'detailed'", self.auth_error_codes)
        bad = [p for p in self.retry_after_in if p not in RETRY_AFTER_PLACES]
        if bad:
            raise ConfigError("retry_after_in", "some of header, body, message", repr(bad))
        if self.max_bulk_ids < 1:
            raise ConfigError("max_bulk_ids", "an integer >= 1", repr(self.max_bulk_ids))
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise ConfigError("default_page_size", "1 <= default_page_size <= max_page_size")
        positive_timeout("webhook_timeout", self.webhook_timeout)
        if any(d < 0 for d in self.webhook_retry_schedule):
            raise ConfigError("webhook_retry_schedule", "waits of >= 0 seconds")
        one_of("webhook_signature", self.webhook_signature, ("v1", "legacy"))
        if self.webhook_signature_header not in SIGNATURE_HEADERS:
            raise ConfigError(
                "webhook_signature_header",
                " or ".join(SIGNATURE_HEADERS),
                self.webhook_signature_header,
            )


@dataclass
class Settings:
    """Switches that may be flipped while the simulator runs (`sim.settings`, `POST /_sim/settings`)."""

    legacy_errors: bool
    rate_limit: RateLimit | None
    pagination: Pagination
    publishable_write_code: WriteCode
    auth_error_codes: AuthCodes
    retry_after_in: tuple[str, ...]
    webhook_signature: SignatureMode
    webhook_signature_header: str
    flat_payload: bool

    @classmethod
    def from_config(cls, cfg: CStarSimulatorConfig) -> Settings:
        """The start-up values of the switches: the config's fields of the same names."""
        return switches(
            cls,
            cfg,
            rate_limit=RateLimit.parse(cfg.rate_limit),
            retry_after_in=tuple(cfg.retry_after_in),
        )

    def to_json(self) -> dict[str, object]:
        """The switches as `GET /_sim/settings` shows them."""
        out = dict(vars(self))
        out["rate_limit"] = self.rate_limit.label if self.rate_limit else None
        out["retry_after_in"] = list(self.retry_after_in)
        return out
