"""One Acme Desk account: its webhook secrets and API key, read from `ACMEDESK_*`."""

from __future__ import annotations

from dataclasses import dataclass

from ticketwire.envread import Env
from ticketwire.secret import Secret


@dataclass(frozen=True)
class AcmeDeskSettings:
    """Everything ticketwire needs to talk to one Acme desk."""

    webhook_secrets: tuple[Secret, ...] = ()
    api_url: str = "https://api.acmedesk.example"
    api_key: Secret | None = None


def read(env: Env) -> AcmeDeskSettings:
    """The desk's settings from the environment."""
    key = env.text("ACMEDESK_API_KEY")
    return AcmeDeskSettings(
        webhook_secrets=env.secrets("ACMEDESK_WEBHOOK_SECRETS"),
        api_url=env.url("ACMEDESK_API_URL", schemes=("http", "https")) or AcmeDeskSettings.api_url,
        api_key=Secret(key) if key else None,
    )
