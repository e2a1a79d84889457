"""One InboxOps workspace: what ticketwire needs to talk to it, read from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from ticketwire.envread import Env
from ticketwire.errors import ConfigError
from ticketwire.ratebudget import Limit
from ticketwire.secret import Secret


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

    @property
    def api_configured(self) -> bool:
        """True when the worker can call the API."""
        return bool(self.api_url and self.api_key)


def read(env: Env) -> InboxOpsSettings:
    """The workspace's settings from `INBOXOPS_*`; raise `ConfigError` naming a bad variable."""
    secrets = env.secrets("INBOXOPS_WEBHOOK_SECRETS")
    api_url = env.url("INBOXOPS_API_URL", schemes=("http", "https"))
    api_key = env.text("INBOXOPS_API_KEY")
    if api_key is not None and not api_key.startswith("ixk_"):
        raise ConfigError("INBOXOPS_API_KEY", "an InboxOps API key starting with 'ixk_'")
    return InboxOpsSettings(
        webhook_secrets=secrets,
        api_url=api_url,
        api_key=Secret(api_key) if api_key else None,
        rate_limits=env.limits("INBOXOPS_RATE_LIMIT", InboxOpsSettings.rate_limits),
        bulk_max=env.integer("INBOXOPS_BULK_MAX", 100, low=1, high=10_000),
    )


def need_api(settings: InboxOpsSettings) -> None:
    """Raise `ConfigError` for the first variable a worker calling InboxOps still lacks."""
    if not settings.api_url:
        raise ConfigError(
            "INBOXOPS_API_URL",
            "the origin of your InboxOps app, e.g. https://app.inboxops.app",
        )
    if not settings.api_key:
        raise ConfigError("INBOXOPS_API_KEY", "a read-and-write API key (ixk_…)")
