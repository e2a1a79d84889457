"""Settings read once from the environment, at the edge; the only reader of `os.environ`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ticketwire.accountkey import DEFAULT
from ticketwire.accounts import load, names
from ticketwire.envread import Env
from ticketwire.errors import ConfigError
from ticketwire.eventage import default_max_age
from ticketwire.secret import Secret
from ticketwire.sentinelurl import SENTINEL_FORM, SENTINEL_SCHEME, parse_sentinel_url

Role = Literal["web", "worker", "up", "check"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: What the receiver waits for after a batch's write before it answers 2xx.
DURABILITY_MODES = ("none", "fsync", "replica")
#: Every Redis client's read timeout (ticketwire/redisconn.py): a WAIT must end well before it.
MAX_DURABILITY_TIMEOUT_S = 4.0


@dataclass(frozen=True)
class Settings:
    """Typed configuration of every process; see the README's configuration table."""

    # May carry a password: kept out of the repr.
    redis_url: str | None = field(default=None, repr=False)
    port: int = 8000
    rules_dir: Path = Path("rules")
    #: Each helpdesk's account settings by vendor name; a vendor missing here has its defaults.
    vendors: Mapping[str, object] = field(default_factory=dict)
    #: The accounts file's accounts by vendor, then by name (a `default` one replaces `vendors`').
    named_accounts: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    max_body_bytes: int = 256 * 1024
    #: A body still arriving this long after the handler asked for it is refused (408).
    body_timeout_s: float = 20.0
    #: A connection with no complete request for this long is closed (slow headers, idle).
    idle_timeout_s: float = 75.0
    dedupe_ttl_s: float = 72 * 3600.0
    #: Deliveries of events older than this are refused as possible replays (0: none refused).
    max_event_age_s: float = default_max_age(72 * 3600.0)
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
    #: DYNO, the platform's name for this process (None when unset): part of a worker's id.
    dyno: str | None = None
    #: After SIGTERM, how long a process may finish what it holds before it hands the rest back.
    shutdown_grace_s: float = 25.0
    #: After SIGTERM, how long a receiver keeps its listener open answering 503 (0: closes once
    #: the requests in flight are answered).
    drain_delay_s: float = 0.0
    #: `none`, `fsync` (WAITAOF on the primary) or `replica` (WAIT for replicas) before a 2xx.
    durability: str = "none"
    #: Replicas that must acknowledge a batch in `replica` mode.
    durability_replicas: int = 1
    #: Longest wait for that acknowledgement; past it the deliveries are answered 503.
    durability_timeout_s: float = 1.0
    #: The Sentinels' own password (a `redis+sentinel://` URL's password is the master's).
    sentinel_password: Secret | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, role: Role) -> Settings:
        """Build settings from `environ`; raise `ConfigError` naming the first bad variable.

        `role` says which process reads them: `web` needs webhook secrets and REDIS_URL, `worker`
        needs REDIS_URL and the helpdesk API; `up` fills every gap with embedded defaults.
        """
        from ticketwire.vendors.registry import active

        env = Env(environ)
        redis_url = env.url("REDIS_URL", schemes=("redis", "rediss", "unix", SENTINEL_SCHEME))
        if redis_url is not None:
            check_sentinel_url(redis_url)
        vendors: dict[str, object] = {v.name: v.read(env) for v in active().vendors}
        named = accounts_of(environ)
        for name, accounts in named.items():
            if DEFAULT in accounts:
                vendors[name] = accounts.pop(DEFAULT)
        dedupe_ttl_s = env.duration("TICKETWIRE_DEDUPE_WINDOW", 72 * 3600.0)
        settings = cls(
            redis_url=redis_url,
            port=env.integer("PORT", 8000, low=1, high=65535),
            rules_dir=rules_dir_of(environ),
            vendors=vendors,
            named_accounts=named,
            max_body_bytes=env.size("TICKETWIRE_MAX_BODY", 256 * 1024),
            body_timeout_s=env.duration("TICKETWIRE_BODY_TIMEOUT", 20.0),
            idle_timeout_s=env.duration("TICKETWIRE_IDLE_TIMEOUT", 75.0),
            dedupe_ttl_s=dedupe_ttl_s,
            max_event_age_s=max_event_age_of(env, dedupe_ttl_s, role),
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
            dyno=dyno_of(environ),
            shutdown_grace_s=env.duration("TICKETWIRE_SHUTDOWN_GRACE", 25.0),
            drain_delay_s=env.duration("TICKETWIRE_DRAIN_DELAY", 0.0, zero=True),
            durability=durability_of(env),
            durability_replicas=env.integer("TICKETWIRE_DURABILITY_REPLICAS", 1, low=1, high=100),
            durability_timeout_s=durability_timeout_of(env),
            sentinel_password=sentinel_password_of(env),
        )
        if settings.drain_delay_s >= settings.shutdown_grace_s:
            raise ConfigError(
                "TICKETWIRE_DRAIN_DELAY",
                "a duration shorter than TICKETWIRE_SHUTDOWN_GRACE "
                f"({settings.shutdown_grace_s:g}s): the requests in flight need time to finish "
                "after it",
                environ["TICKETWIRE_DRAIN_DELAY"],
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
        from ticketwire.vendors.registry import active

        bundles = active().vendors
        if role == "web" and not self.vendors_receiving():
            first, *others = bundles
            rest = " / ".join(v.webhook_variable for v in others)
            raise ConfigError(
                first.webhook_variable,
                f"{first.webhook_hint} (or {rest} for the other helpdesks)"
                if rest
                else first.webhook_hint,
            )
        for v in bundles:
            v.require(self.vendor(v.name), role)
        calling = (v.calls_api(a) for v in bundles for a in self.accounts(v.name).values())
        if role == "worker" and not any(calling):
            # With no API configured, the first helpdesk of the registry is the one asked for.
            bundles[0].need_api(self.vendor(bundles[0].name))

    def vendor(self, name: str) -> object:
        """The account settings of vendor `name` (its defaults when none were given)."""
        found = self.vendors.get(name)
        if found is None:
            from ticketwire.vendors.registry import bundle

            found = bundle(name).settings()
        return found

    def accounts(self, name: str) -> Mapping[str, object]:
        """Every account's settings of vendor `name` by account name, `default` first."""
        return {DEFAULT: self.vendor(name), **self.named_accounts.get(name, {})}

    def with_vendor(self, name: str, account: object) -> Settings:
        """These settings with vendor `name`'s account settings replaced by `account`."""
        return dataclasses.replace(self, vendors={**self.vendors, name: account})

    def vendors_receiving(self) -> tuple[str, ...]:
        """Vendors whose webhooks the receiver accepts (those with secrets configured)."""
        from ticketwire.vendors.registry import active

        return tuple(
            v.name
            for v in active().vendors
            if any(v.webhook_secrets(a) for a in self.accounts(v.name).values())
        )


def accounts_of(environ: Mapping[str, str]) -> dict[str, dict[str, object]]:
    """The accounts of the file TICKETWIRE_ACCOUNTS names, by vendor and name (none if unset)."""
    from ticketwire.vendors.registry import active

    path = Env(environ).text("TICKETWIRE_ACCOUNTS")
    if path is None:
        return {}
    return load(Path(path), environ, active().vendors)


def account_names_of(environ: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """Every vendor's account names: `default`, and those TICKETWIRE_ACCOUNTS' file gives it."""
    from ticketwire.vendors.registry import active

    vendors = active().vendors
    out = {v.name: frozenset({DEFAULT}) for v in vendors}
    path = Env(environ).text("TICKETWIRE_ACCOUNTS")
    if path is not None:
        for vendor, found in names(Path(path), vendors).items():
            out[vendor] |= found
    return out


def rules_dir_of(environ: Mapping[str, str]) -> Path:
    """TICKETWIRE_RULES, the rules directory (`rules` when unset)."""
    return Path(Env(environ).text("TICKETWIRE_RULES") or "rules")


def dyno_of(environ: Mapping[str, str]) -> str | None:
    """DYNO, the platform's name for this process (None when unset)."""
    return Env(environ).text("DYNO")


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


def durability_of(env: Env) -> str:
    """TICKETWIRE_DURABILITY: `none` (the default), `fsync` or `replica`."""
    raw = (env.text("TICKETWIRE_DURABILITY") or "none").lower()
    if raw not in DURABILITY_MODES:
        raise ConfigError(
            "TICKETWIRE_DURABILITY",
            "none, fsync (wait for the primary's append-only file fsync, WAITAOF) or replica "
            "(wait for TICKETWIRE_DURABILITY_REPLICAS replicas, WAIT)",
            raw,
        )
    return raw


def durability_timeout_of(env: Env) -> float:
    """TICKETWIRE_DURABILITY_TIMEOUT: positive, and under every Redis client's read timeout."""
    name = "TICKETWIRE_DURABILITY_TIMEOUT"
    timeout = env.duration(name, 1.0)
    if timeout < 0.001 or timeout > MAX_DURABILITY_TIMEOUT_S:
        raise ConfigError(
            name,
            f"a duration from 1ms to {MAX_DURABILITY_TIMEOUT_S:g}s (a delivery waits this long "
            "at most; Redis calls time out after 5s)",
            env.text(name),
        )
    return timeout


def sentinel_password_of(env: Env) -> Secret | None:
    """TICKETWIRE_SENTINEL_PASSWORD: the Sentinels' password, when they require one."""
    raw = env.text("TICKETWIRE_SENTINEL_PASSWORD")
    return Secret(raw) if raw else None


def check_sentinel_url(url: str) -> None:
    """Raise `ConfigError` naming REDIS_URL when a `redis+sentinel://` URL is malformed."""
    if not url.startswith(SENTINEL_SCHEME + "://"):
        return
    try:
        parse_sentinel_url(url)
    except ValueError as exc:
        raise ConfigError("REDIS_URL", f"{SENTINEL_FORM} ({exc})") from None


def max_event_age_of(env: Env, dedupe_ttl_s: float, role: Role) -> float:
    """TICKETWIRE_MAX_EVENT_AGE: at most the dedupe window; by default just under it.

    A local `up` refuses no event for its age by default: developers replay captures of any age
    to it, re-signed with its own secrets.
    """
    name = "TICKETWIRE_MAX_EVENT_AGE"
    default = 0.0 if role == "up" else default_max_age(dedupe_ttl_s)
    age = env.duration(name, default, zero=True)
    if age > dedupe_ttl_s:
        raise ConfigError(
            name,
            f"at most TICKETWIRE_DEDUPE_WINDOW ({dedupe_ttl_s:g}s): an older event's id may have "
            "left the dedupe window, so a replay of it would be stored as new (0 turns the "
            "check off)",
            env.text(name),
        )
    return age
