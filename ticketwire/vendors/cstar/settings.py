"""One cStar team: what ticketwire needs to talk to it, read from the environment."""

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

    from ticketwire.config import Role
    from ticketwire.vendors import HelpdeskClient, WebhookIntake


@dataclass(frozen=True)
class CStarSettings:
    """Everything ticketwire needs to talk to one cStar team."""

    webhook_secrets: tuple[Secret, ...] = ()
    signature_tolerance_s: float = field(default=300.0, metadata=variable("signature_tolerance"))
    api_url: str = "https://www.cstar.help"
    team_id: str | None = None
    api_key: Secret | None = None
    #: Documented (support articles) for secret keys: 1,000 requests per hour.
    rate_limits: tuple[Limit, ...] = field(
        default=(Limit("all", 1000, 3600.0),), metadata=variable("rate_limit")
    )

    @property
    def api_configured(self) -> bool:
        """True when the worker can call the API."""
        return bool(self.team_id and self.api_key)

    def tenant(self) -> str | None:
        """The team id: the tenant of cStar's webhooks."""
        return self.team_id

    def require(self, role: Role = "worker") -> None:
        """Raise `ConfigError` when the settings cannot work together, whatever the process."""
        if self.api_key and not self.team_id:
            raise ConfigError("CSTAR_TEAM_ID", "the UUID of your cStar team (with CSTAR_API_KEY)")

    def need_api(self) -> None:
        """Raise `ConfigError` for the first variable a worker calling cStar still lacks."""
        if not self.api_key:
            raise ConfigError("CSTAR_API_KEY", "a secret key (sk_live_… or sk_test_…)")
        self.require()

    def intake(self) -> WebhookIntake | None:
        """The team's webhook verifier/parser, or None without secrets."""
        if not self.webhook_secrets:
            return None
        from ticketwire.vendors.cstar.webhook import CStarWebhook

        return CStarWebhook(self.webhook_secrets, tolerance_s=self.signature_tolerance_s)

    def client(self, session: aiohttp.ClientSession, timeout: float) -> HelpdeskClient | None:
        """The team's API client, or None without a team and key."""
        if not (self.team_id and self.api_key):
            return None
        from ticketwire.vendors.cstar.client import CStarClient

        return CStarClient(session, self.api_url, self.team_id, self.api_key, timeout=timeout)

    def budget(self) -> tuple[str, tuple[Limit, ...]] | None:
        """The team's key's budget scope and limits."""
        if not (self.api_key and self.team_id):
            return None
        return f"cstar:{self.team_id}:{key_digest(self.api_key)}", self.rate_limits


def read(env: Env) -> CStarSettings:
    """The team's settings from `CSTAR_*`; raise `ConfigError` naming a bad variable."""
    api_key = env.text("CSTAR_API_KEY")
    if api_key is not None and not api_key.startswith(("sk_", "pk_")):
        raise ConfigError("CSTAR_API_KEY", "a cStar secret key starting with 'sk_'")
    if api_key is not None and api_key.startswith("pk_"):
        raise ConfigError(
            "CSTAR_API_KEY",
            "a secret key (sk_live_… or sk_test_…); publishable keys (pk_…) are read-only",
        )
    return CStarSettings(
        webhook_secrets=env.secrets("CSTAR_WEBHOOK_SECRETS"),
        signature_tolerance_s=env.duration("CSTAR_SIGNATURE_TOLERANCE", 300.0),
        api_url=env.url("CSTAR_API_URL", schemes=("http", "https")) or CStarSettings.api_url,
        team_id=env.text("CSTAR_TEAM_ID"),
        api_key=Secret(api_key) if api_key else None,
        rate_limits=env.limits("CSTAR_RATE_LIMIT", CStarSettings.rate_limits),
    )
