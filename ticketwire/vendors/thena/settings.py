"""One Thena organisation: what ticketwire needs to talk to it, read from the environment."""

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
    rate_limits: tuple[Limit, ...] = field(default=(), metadata=variable("rate_limit"))
    bulk_max: int = 100

    @property
    def api_configured(self) -> bool:
        """True when the worker can call the API."""
        return self.api_key is not None

    def tenant(self) -> str | None:
        """The organisation id: the tenant of Thena's events."""
        return self.org_id

    def need_api(self) -> None:
        """Raise `ConfigError` when a worker calling Thena lacks its key."""
        if not self.api_key:
            raise ConfigError("THENA_API_KEY", "an API key of your Thena organisation")

    def intake(self) -> WebhookIntake | None:
        """The organisation's event verifier/parser, or None without secrets."""
        if not self.webhook_secrets:
            return None
        from ticketwire.vendors.thena.webhook import ThenaWebhook

        return ThenaWebhook(self.webhook_mode, self.webhook_secrets, header=self.webhook_header)

    def client(self, session: aiohttp.ClientSession, timeout: float) -> HelpdeskClient | None:
        """The organisation's API client, or None without a key."""
        if not self.api_key:
            return None
        from ticketwire.vendors.thena.client import ThenaClient

        return ThenaClient(
            session,
            self.api_url,
            auth=self.auth,
            api_key=self.api_key,
            org_id=self.org_id,
            timeout=timeout,
        )

    def budget(self) -> tuple[str, tuple[Limit, ...]] | None:
        """The organisation's (or, without one, the key's) budget scope and limits."""
        if not self.api_key:
            return None
        return f"thena:{self.org_id or key_digest(self.api_key)}", self.rate_limits


def read(env: Env) -> ThenaSettings:
    """The organisation's settings from `THENA_*`; raise `ConfigError` naming a bad variable."""
    auth = env.choice("THENA_AUTH", ("API-KEY", "BEARER"), "API-KEY").lower()
    org_id = env.text("THENA_ORG_ID")
    api_key = env.text("THENA_API_KEY")
    if api_key and auth == "bearer" and not org_id:
        raise ConfigError(
            "THENA_ORG_ID", "your Thena organisation id (required with THENA_AUTH=bearer)"
        )
    return ThenaSettings(
        webhook_secrets=env.secrets("THENA_WEBHOOK_SECRETS"),
        webhook_mode=env.choice("THENA_WEBHOOK_MODE", ("TOKEN", "HMAC"), "TOKEN").lower(),
        webhook_header=env.text("THENA_WEBHOOK_HEADER"),
        api_url=env.url("THENA_API_URL", schemes=("http", "https")) or ThenaSettings.api_url,
        auth=auth,
        api_key=Secret(api_key) if api_key else None,
        org_id=org_id,
        rate_limits=env.limits("THENA_RATE_LIMIT", ()),
        bulk_max=env.integer("THENA_BULK_MAX", 100, low=1, high=10_000),
    )
