"""One InboxOps workspace: what ticketwire needs to talk to it, read from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ticketwire.envread import Env
from ticketwire.errors import ConfigError
from ticketwire.ratebudget import Limit
from ticketwire.secret import Secret
from ticketwire.vendors.bundle import key_digest, variable

if TYPE_CHECKING:
    import aiohttp

    from ticketwire.vendors import HelpdeskClient, WebhookIntake


@dataclass(frozen=True)
class InboxOpsSettings:
    """Everything ticketwire needs to talk to one InboxOps workspace."""

    webhook_secrets: tuple[Secret, ...] = ()
    api_url: str | None = None
    api_key: Secret | None = None
    #: Documented: 100 requests per minute per workspace.
    rate_limits: tuple[Limit, ...] = field(
        default=(Limit("all", 100, 60.0),), metadata=variable("rate_limit")
    )
    #: Most ticket ids per `POST /tickets/bulk` (not documented; the simulator's default).
    bulk_max: int = 100

    @property
    def api_configured(self) -> bool:
        """True when the worker can call the API."""
        return bool(self.api_url and self.api_key)

    def need_api(self) -> None:
        """Raise `ConfigError` for the first variable a worker calling InboxOps still lacks."""
        if not self.api_url:
            raise ConfigError(
                "INBOXOPS_API_URL",
                "the origin of your InboxOps app, e.g. https://app.inboxops.app",
            )
        if not self.api_key:
            raise ConfigError("INBOXOPS_API_KEY", "a read-and-write API key (ixk_…)")

    def tenant(self) -> str | None:
        """None: webhooks name their workspace, the settings do not."""
        return None

    def intake(self) -> WebhookIntake | None:
        """The workspace's webhook verifier/parser, or None without secrets."""
        if not self.webhook_secrets:
            return None
        from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook

        return InboxOpsWebhook(self.webhook_secrets)

    def client(self, session: aiohttp.ClientSession, timeout: float) -> HelpdeskClient | None:
        """The workspace's API client, or None without a URL and key."""
        if not (self.api_url and self.api_key):
            return None
        from ticketwire.vendors.inboxops.client import InboxOpsClient

        return InboxOpsClient(session, self.api_url, self.api_key, timeout=timeout)

    def budget(self) -> tuple[str, tuple[Limit, ...]] | None:
        """The key's budget scope and limits."""
        if not self.api_key:
            return None
        # Only the key identifies the workspace: a digest of it stands in (never the key itself).
        return f"inboxops:{key_digest(self.api_key)}", self.rate_limits


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
