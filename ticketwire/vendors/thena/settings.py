"""One Thena organisation: what ticketwire needs to talk to it, read from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from ticketwire.envread import Env
from ticketwire.errors import ConfigError
from ticketwire.ratebudget import Limit
from ticketwire.secret import Secret


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
