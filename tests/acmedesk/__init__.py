"""Acme Desk: a small helpdesk plugged in as one package and one registry line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.acmedesk.settings import AcmeDeskSettings, read
from tests.acmedesk.vocabulary import VOCABULARY
from ticketwire.calls import ApiCall
from ticketwire.errors import ConfigError
from ticketwire.vendors.bundle import Echo, Vendor, key_digest, lazy, no_notes
from ticketwire.writeback import BatchSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    import aiohttp

    from ticketwire.engine.select import VendorSelect
    from ticketwire.ratebudget import Limit
    from ticketwire.vendors import HelpdeskClient, WebhookIntake

NAME = "acmedesk"
#: Acme answers every write with a new `updated_at`.
BOOKKEEPING = frozenset({"updated_at"})


def _intake(account: AcmeDeskSettings) -> WebhookIntake | None:
    if not account.webhook_secrets:
        return None
    from tests.acmedesk.webhook import AcmeDeskWebhook

    return AcmeDeskWebhook(account.webhook_secrets)


def _client(
    account: AcmeDeskSettings, session: aiohttp.ClientSession, timeout: float
) -> HelpdeskClient | None:
    if account.api_key is None:
        return None
    from tests.acmedesk.client import AcmeDeskClient

    return AcmeDeskClient(
        session, account.api_url, account.api_key, timeout=timeout, user_agent="ticketwire/0.1"
    )


def _budget(account: AcmeDeskSettings) -> tuple[str, tuple[Limit, ...]] | None:
    if account.api_key is None:
        return None
    return f"{NAME}:{key_digest(account.api_key)}", ()


def _need_api(account: AcmeDeskSettings) -> None:
    if account.api_key is None:
        raise ConfigError("ACMEDESK_API_KEY", "an API key of your Acme desk")


def _written_fields(call: ApiCall) -> dict[str, Any]:
    """A ticket PATCH sets its body's fields; nothing else is written."""
    if call.method != "PATCH":
        return {}
    from tests.acmedesk.webhook import common_view

    common = common_view(call.body)
    return {**call.body, **{f"common.{k}": common[k] for k in call.body}}


def _select() -> VendorSelect:
    from ticketwire.engine.select import VendorSelect

    # No list API: scheduled rules have nothing to select.
    return VendorSelect(NAME, {})


def _listed_view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from tests.acmedesk.webhook import common_view

    return dict(item), common_view(item)


VENDOR: Vendor[AcmeDeskSettings] = Vendor(
    name=NAME,
    title="Acme Desk",
    settings=AcmeDeskSettings,
    read=read,
    webhook_variable="ACMEDESK_WEBHOOK_SECRETS",
    webhook_hint="the signing secret(s) of your Acme Desk webhooks, comma-separated",
    webhook_secrets=lambda account: account.webhook_secrets,
    calls_api=lambda account: account.api_key is not None,
    require=lambda account, role: None,
    need_api=_need_api,
    intake=_intake,
    client=_client,
    parser=lazy("tests.acmedesk.webhook", "parse"),
    actions=lazy("tests.acmedesk.actions", "SPEC"),
    # One ticket per call: Acme has no bulk endpoint.
    batching=lambda account: BatchSpec(lambda c: None, lambda c: None, lambda c, ids: c),
    budget=_budget,
    echo=lambda: Echo(_written_fields, BOOKKEEPING),
    select=_select,
    listed=lambda: _listed_view,
    common_view=lazy("tests.acmedesk.webhook", "common_view"),
    vocabulary=VOCABULARY,
    tenant=lambda account: None,
    rule_notes=no_notes,
    sign=lazy("tests.acmedesk.webhook", "signed_headers"),
    simulator=lazy("tests.acmedesk.simulator", "SIMULATOR"),
)
