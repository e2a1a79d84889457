"""Settings read once from the environment, at the edge; the only reader of `os.environ`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from ticketwire.errors import ConfigError
from ticketwire.ratebudget import Limit, parse_limits
from ticketwire.secret import Secret

Role = Literal["web", "worker", "up", "check"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|k|mb|mib|m)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class InboxOpsSettings:
    """Everything ticketwire needs to talk to one InboxOps workspace."""

    webhook_secrets: tuple[Secret, ...] = ()
    api_url: str | None = None
    api_key: Secret | None = None
    #: Documented: 100 requests per minute per workspace.
    rate_limits: tuple[Limit, ...] = (Limit("all", 100, 60.0),)
    #: Most ticket ids per `POST /tickets/bulk` (not documented; the simulator's default).
    bulk_max: int = 100


@dataclass(frozen=True)
class CStarSettings:
    """Everything ticketwire needs to talk to one cStar team."""

    webhook_secrets: tuple[Secret, ...] = ()
    signature_tolerance_s: float = 300.0
    api_url: str = "https://www.cstar.help"
    team_id: str | None = None
    api_key: Secret | None = None
    #: Documented (support articles) for secret keys: 1,000 requests per hour.
    rate_limits: tuple[Limit, ...] = (Limit("all", 1000, 3600.0),)

    @property
    def api_configured(self) -> bool:
        """True when the worker can call the API."""
        return bool(self.team_id and self.api_key)


@dataclass(frozen=True)
class ThenaSettings:
    """Everything ticketwire needs to talk to one Thena organisation."""

    webhook_secrets: tuple[Secret, ...] = ()
    #: `token`: a shared static token in a header; `hmac`: hex HMAC-SHA256 of the body.
    webhook_mode: str = "token"
    webhook_header: str | None = None
    api_url: str = "https://platform.thena.ai"
    auth: str = "api-key"
    api_key: Secret | None = None
    org_id: str | None = None
    #: Thena's numbers are not documented: none by default, its 429s still pause the budget.
    rate_limits: tuple[Limit, ...] = ()
    bulk_max: int = 100

    @property
    def api_configured(self) -> bool:
        """True when the worker can call the API."""
        return self.api_key is not None


@dataclass(frozen=True)
class Settings:
    """Typed configuration of every process; see the README's configuration table."""

    # May carry a password: kept out of the repr.
    redis_url: str | None = field(default=None, repr=False)
    port: int = 8000
    rules_dir: Path = Path("rules")
    inboxops: InboxOpsSettings = field(default_factory=InboxOpsSettings)
    cstar: CStarSettings = field(default_factory=CStarSettings)
    thena: ThenaSettings = field(default_factory=ThenaSettings)
    max_body_bytes: int = 256 * 1024
    dedupe_ttl_s: float = 72 * 3600.0
    retention_s: float = 72 * 3600.0
    key_prefix: str = "tw:"
    #: Whether TICKETWIRE_KEY_PREFIX was set (else a command using a local `up`'s Redis takes its).
    key_prefix_configured: bool = False
    partitions: int = 16
    worker_concurrency: int = 200
    lease_ttl_s: float = 15.0
    http_timeout_s: float = 10.0
    max_attempts: int = 6
    backoff_s: float = 2.0
    echo_window_s: float = 600.0
    fuse_per_hour: int = 10
    #: The loop fuse counts rule firings per ticket over this window.
    fuse_window_s: float = 3600.0
    #: How long a ticket remembers a once_per_ticket/cooldown rule's firing.
    rule_memory_s: float = 90 * 86400.0
    #: How long a ticket's last-seen state is kept after its last applied event.
    state_ttl_s: float = 7 * 86400.0
    #: How long a ticket's first queued write-back waits for more to coalesce and batch with.
    coalesce_window_s: float = 0.3
    #: Most tickets one run of a scheduled rule lists; the rest wait for its next run.
    schedule_max_tickets: int = 10_000
    log_level: str = "INFO"
    #: How long traces are kept (0: traces off, nothing recorded).
    trace_retention_s: float = 72 * 3600.0
    #: Most entries the deliveries list (`Keys.trace_log`) keeps, roughly.
    trace_max: int = 1_000_000
    data_dir: Path = Path(".ticketwire")
    #: `text` (readable, the default) or `json` (one object per line) on stderr.
    log_format: str = "text"
    #: Turns the web console on at `/console`; signs its session cookies. None: no console.
    console_token: Secret | None = field(default=None, repr=False)
    #: Port of a worker's own /metrics (None: the worker serves none).
    metrics_port: int | None = None
    #: /readyz answers 503 once the oldest unhandled event has waited longer than this (0: never).
    ready_max_lag_s: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, role: Role) -> Settings:
        """Build settings from `environ`; raise `ConfigError` naming the first bad variable.

        `role` says which process reads them: `web` needs webhook secrets and REDIS_URL, `worker`
        needs REDIS_URL and the helpdesk API; `up` fills every gap with embedded defaults.
        """
        env = _Env(environ)
        redis_url = env.url("REDIS_URL", schemes=("redis", "rediss", "unix"))
        secrets = env.secrets("INBOXOPS_WEBHOOK_SECRETS")
        api_url = env.url("INBOXOPS_API_URL", schemes=("http", "https"))
        api_key = env.text("INBOXOPS_API_KEY")
        if api_key is not None and not api_key.startswith("ixk_"):
            raise ConfigError("INBOXOPS_API_KEY", "an InboxOps API key starting with 'ixk_'")
        cstar_key = env.text("CSTAR_API_KEY")
        if cstar_key is not None and not cstar_key.startswith(("sk_", "pk_")):
            raise ConfigError("CSTAR_API_KEY", "a cStar secret key starting with 'sk_'")
        if cstar_key is not None and cstar_key.startswith("pk_"):
            raise ConfigError(
                "CSTAR_API_KEY",
                "a secret key (sk_live_… or sk_test_…); publishable keys (pk_…) are read-only",
            )
        thena_auth = env.choice("THENA_AUTH", ("API-KEY", "BEARER"), "API-KEY").lower()
        thena_org = env.text("THENA_ORG_ID")
        thena_key = env.text("THENA_API_KEY")
        if thena_key and thena_auth == "bearer" and not thena_org:
            raise ConfigError(
                "THENA_ORG_ID", "your Thena organisation id (required with THENA_AUTH=bearer)"
            )
        settings = cls(
            redis_url=redis_url,
            port=env.integer("PORT", 8000, low=1, high=65535),
            rules_dir=Path(env.text("TICKETWIRE_RULES") or "rules"),
            inboxops=InboxOpsSettings(
                webhook_secrets=secrets,
                api_url=api_url,
                api_key=Secret(api_key) if api_key else None,
                rate_limits=env.limits("INBOXOPS_RATE_LIMIT", InboxOpsSettings.rate_limits),
                bulk_max=env.integer("INBOXOPS_BULK_MAX", 100, low=1, high=10_000),
            ),
            cstar=CStarSettings(
                webhook_secrets=env.secrets("CSTAR_WEBHOOK_SECRETS"),
                signature_tolerance_s=env.duration("CSTAR_SIGNATURE_TOLERANCE", 300.0),
                api_url=env.url("CSTAR_API_URL", schemes=("http", "https"))
                or CStarSettings.api_url,
                team_id=env.text("CSTAR_TEAM_ID"),
                api_key=Secret(cstar_key) if cstar_key else None,
                rate_limits=env.limits("CSTAR_RATE_LIMIT", CStarSettings.rate_limits),
            ),
            thena=ThenaSettings(
                webhook_secrets=env.secrets("THENA_WEBHOOK_SECRETS"),
                webhook_mode=env.choice("THENA_WEBHOOK_MODE", ("TOKEN", "HMAC"), "TOKEN").lower(),
                webhook_header=env.text("THENA_WEBHOOK_HEADER"),
                api_url=env.url("THENA_API_URL", schemes=("http", "https"))
                or ThenaSettings.api_url,
                auth=thena_auth,
                api_key=Secret(thena_key) if thena_key else None,
                org_id=thena_org,
                rate_limits=env.limits("THENA_RATE_LIMIT", ()),
                bulk_max=env.integer("THENA_BULK_MAX", 100, low=1, high=10_000),
            ),
            max_body_bytes=env.size("TICKETWIRE_MAX_BODY", 256 * 1024),
            dedupe_ttl_s=env.duration("TICKETWIRE_DEDUPE_WINDOW", 72 * 3600.0),
            retention_s=env.duration("TICKETWIRE_RETENTION", 72 * 3600.0),
            key_prefix=env.text("TICKETWIRE_KEY_PREFIX") or "tw:",
            key_prefix_configured=bool(env.text("TICKETWIRE_KEY_PREFIX")),
            partitions=env.integer("TICKETWIRE_PARTITIONS", 16, low=1, high=1024),
            worker_concurrency=env.integer("TICKETWIRE_CONCURRENCY", 200, low=1, high=10_000),
            lease_ttl_s=env.duration("TICKETWIRE_LEASE_TTL", 15.0),
            http_timeout_s=env.duration("TICKETWIRE_HTTP_TIMEOUT", 10.0),
            max_attempts=env.integer("TICKETWIRE_MAX_ATTEMPTS", 6, low=1, high=100),
            backoff_s=env.duration("TICKETWIRE_BACKOFF", 2.0),
            echo_window_s=env.duration("TICKETWIRE_ECHO_WINDOW", 600.0),
            fuse_per_hour=env.integer("TICKETWIRE_FUSE_PER_HOUR", 10, low=1, high=100_000),
            fuse_window_s=env.duration("TICKETWIRE_FUSE_WINDOW", 3600.0),
            rule_memory_s=env.duration("TICKETWIRE_RULE_MEMORY", 90 * 86400.0),
            state_ttl_s=env.duration("TICKETWIRE_STATE_TTL", 7 * 86400.0),
            coalesce_window_s=env.duration("TICKETWIRE_COALESCE_WINDOW", 0.3, zero=True),
            schedule_max_tickets=env.integer(
                "TICKETWIRE_SCHEDULE_MAX_TICKETS", 10_000, low=1, high=10_000_000
            ),
            log_level=env.choice("TICKETWIRE_LOG_LEVEL", _LEVELS, "INFO"),
            trace_retention_s=env.duration("TICKETWIRE_TRACE_RETENTION", 72 * 3600.0, zero=True),
            trace_max=env.integer("TICKETWIRE_TRACE_MAX", 1_000_000, low=1, high=1_000_000_000),
            data_dir=Path(env.text("TICKETWIRE_DATA_DIR") or ".ticketwire"),
            log_format=log_format_of(environ),
            console_token=env.console_token("TICKETWIRE_CONSOLE_TOKEN"),
            metrics_port=(
                env.integer("METRICS_PORT", 0, low=1, high=65535)
                if env.text("METRICS_PORT")
                else None
            ),
            ready_max_lag_s=env.duration("TICKETWIRE_READY_MAX_LAG", 300.0, zero=True),
        )
        settings.require(role)
        return settings

    def require(self, role: Role) -> None:
        """Raise `ConfigError` if a variable this role cannot run without is unset."""
        if role in ("web", "worker") and not self.redis_url:
            raise ConfigError(
                "REDIS_URL",
                "the redis:// URL of the Redis shared by web and worker "
                "(for a local all-in-one run, use `ticketwire up`)",
            )
        if role == "web" and not self.vendors_receiving():
            raise ConfigError(
                "INBOXOPS_WEBHOOK_SECRETS",
                "the webhook signing secret(s) from InboxOps Settings → Webhooks, comma-separated "
                "(or CSTAR_WEBHOOK_SECRETS / THENA_WEBHOOK_SECRETS for the other helpdesks)",
            )
        if self.cstar.api_key and not self.cstar.team_id:
            raise ConfigError("CSTAR_TEAM_ID", "the UUID of your cStar team (with CSTAR_API_KEY)")
        if role == "worker" and not (self.cstar.api_configured or self.thena.api_configured):
            if not self.inboxops.api_url:
                raise ConfigError(
                    "INBOXOPS_API_URL",
                    "the origin of your InboxOps app, e.g. https://app.inboxops.app",
                )
            if not self.inboxops.api_key:
                raise ConfigError("INBOXOPS_API_KEY", "a read-and-write API key (ixk_…)")

    def vendors_receiving(self) -> tuple[str, ...]:
        """Vendors whose webhooks the receiver accepts (those with secrets configured)."""
        out = []
        if self.inboxops.webhook_secrets:
            out.append("inboxops")
        if self.cstar.webhook_secrets:
            out.append("cstar")
        if self.thena.webhook_secrets:
            out.append("thena")
        return tuple(out)


def log_format_of(environ: Mapping[str, str], *, strict: bool = True) -> str:
    """TICKETWIRE_LOG_FORMAT, `text` or `json`; `strict=False` reads a bad value as `text`.

    Read on its own too, so a process whose settings fail still writes its one error line in
    the format asked for.
    """
    raw = environ.get("TICKETWIRE_LOG_FORMAT", "").strip().lower()
    if raw == "json":
        return "json"
    if raw in ("", "text") or not strict:
        return "text"
    raise ConfigError("TICKETWIRE_LOG_FORMAT", "text or json", raw)


class _Env:
    """Typed accessors over an environment mapping; empty values count as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ

    def text(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"an integer from {low} to {high}", raw) from None
        if not low <= value <= high:
            raise ConfigError(name, f"an integer from {low} to {high}", raw)
        return value

    def duration(self, name: str, default: float, *, zero: bool = False) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        m = _DURATION.match(raw.lower())
        if not m or float(m.group(1)) < 0 or (float(m.group(1)) == 0 and not zero):
            what = "a duration (0 turns it off)" if zero else "a positive duration"
            raise ConfigError(name, f"{what} such as 300ms, 30s, 15m, 72h or 3d", raw)
        return float(m.group(1)) * _UNITS[m.group(2)]

    def limits(self, name: str, default: tuple[Limit, ...]) -> tuple[Limit, ...]:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("none", "off"):
            return ()
        try:
            return parse_limits(raw)
        except ValueError as exc:
            raise ConfigError(
                name, f"rate limits like 100/min or write=1000/h ({exc})", raw
            ) from None

    def size(self, name: str, default: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        m = _SIZE.match(raw)
        if not m or int(m.group(1)) <= 0:
            raise ConfigError(name, "a positive size in bytes, or with a unit: 256KiB, 1MiB", raw)
        unit = (m.group(2) or "b").lower()
        return int(m.group(1)) * _SIZE_UNITS[unit]

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.upper() not in choices:
            raise ConfigError(name, f"one of {', '.join(choices)}", raw)
        return raw.upper()

    def url(self, name: str, *, schemes: tuple[str, ...]) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        parsed = urlparse(raw)
        if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
            shown = " or ".join(f"{s}://…" for s in schemes)
            # Never echo a URL back: it may carry a password.
            raise ConfigError(name, f"a URL starting with {shown}")
        return raw

    def console_token(self, name: str) -> Secret | None:
        raw = self.text(name)
        if raw is None:
            return None
        # It is the only password of the console: a short one would be guessed.
        if len(raw) < 16:
            raise ConfigError(name, "a random token of at least 16 characters")
        return Secret(raw)

    def secrets(self, name: str) -> tuple[Secret, ...]:
        raw = self.text(name)
        if raw is None:
            return ()
        parts = [p.strip() for p in raw.split(",")]
        if any(not p for p in parts):
            raise ConfigError(name, "comma-separated secrets with no empty entries")
        return tuple(Secret(p) for p in parts)
