"""One cStar team: what ticketwire needs to talk to it, read from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from ticketwire.envread import Env
from ticketwire.errors import ConfigError
from ticketwire.ratebudget import Limit
from ticketwire.secret import Secret


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


def require(settings: CStarSettings) -> None:
    """Raise `ConfigError` when the settings cannot work together, whatever the process."""
    if settings.api_key and not settings.team_id:
        raise ConfigError("CSTAR_TEAM_ID", "the UUID of your cStar team (with CSTAR_API_KEY)")
