"""Thena (platform.thena.ai): platform-event intake, the `/v1` ticket client and rule actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ticketwire.errors import ConfigError
from ticketwire.vendors.bundle import Vendor, key_digest, lazy
from ticketwire.vendors.thena.settings import ThenaSettings, read
from ticketwire.vendors.thena.vocabulary import VOCABULARY

if TYPE_CHECKING:
    import aiohttp

    from ticketwire.engine.select import VendorSelect
    from ticketwire.ratebudget import Limit
    from ticketwire.vendors import HelpdeskClient, WebhookIntake
    from ticketwire.writeback import BatchSpec

NAME = "thena"


def _intake(account: ThenaSettings) -> WebhookIntake | None:
    if not account.webhook_secrets:
        return None
    from ticketwire.vendors.thena.webhook import ThenaWebhook

    return ThenaWebhook(
        account.webhook_mode, account.webhook_secrets, header=account.webhook_header
    )


def _client(
    account: ThenaSettings, session: aiohttp.ClientSession, timeout: float
) -> HelpdeskClient | None:
    if not account.api_key:
        return None
    from ticketwire.vendors.thena.client import ThenaClient

    return ThenaClient(
        session,
        account.api_url,
        auth=account.auth,
        api_key=account.api_key,
        org_id=account.org_id,
        timeout=timeout,
    )


def _batching(account: ThenaSettings) -> BatchSpec:
    from ticketwire.vendors.thena.batching import spec

    return spec(account.bulk_max)


def _budget(account: ThenaSettings) -> tuple[str, tuple[Limit, ...]] | None:
    if not account.api_key:
        return None
    return f"{NAME}:{account.org_id or key_digest(account.api_key)}", account.rate_limits


def _select() -> VendorSelect:
    from ticketwire.engine.select import SelectKey, VendorSelect, select_keys
    from ticketwire.vendors.thena.models import DATE_RANGES

    keys = select_keys(
        SelectKey("teamId", "text"),
        SelectKey("team_id", "text", wire="teamId"),
        SelectKey("dateRange", "enum", values=DATE_RANGES),
        SelectKey("date_range", "enum", wire="dateRange", values=DATE_RANGES),
    )
    return VendorSelect(NAME, keys)


def _listed_view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from ticketwire.vendors.thena.webhook import common_view

    ticket = dict(item)
    if "assignedAgentId" not in ticket and "assignedAgent" in ticket:
        agent = ticket["assignedAgent"]
        ticket["assignedAgentId"] = agent.get("id") if isinstance(agent, Mapping) else None
    return ticket, common_view(ticket)


def _need_api(account: ThenaSettings) -> None:
    if not account.api_key:
        raise ConfigError("THENA_API_KEY", "an API key of your Thena organisation")


VENDOR: Vendor[ThenaSettings] = Vendor(
    name=NAME,
    title="Thena",
    settings=ThenaSettings,
    read=read,
    webhook_variable="THENA_WEBHOOK_SECRETS",
    webhook_hint="the webhook token(s) or secret(s) from Thena, comma-separated",
    need_api=_need_api,
    intake=_intake,
    client=_client,
    parser=lazy("ticketwire.vendors.thena.webhook", "parse"),
    actions=lazy("ticketwire.vendors.thena.actions", "SPEC"),
    batching=_batching,
    budget=_budget,
    echo=lazy("ticketwire.vendors.thena.echo", "ECHO"),
    select=_select,
    listed=lambda: _listed_view,
    common_view=lazy("ticketwire.vendors.thena.webhook", "common_view"),
    vocabulary=VOCABULARY,
    # The organisation id is the tenant of Thena's events.
    tenant=lambda account: account.org_id,
    variables=(
        "THENA_WEBHOOK_SECRETS",
        "THENA_WEBHOOK_MODE",
        "THENA_WEBHOOK_HEADER",
        "THENA_API_URL",
        "THENA_AUTH",
        "THENA_API_KEY",
        "THENA_ORG_ID",
        "THENA_RATE_LIMIT",
        "THENA_BULK_MAX",
    ),
    secret_variables=frozenset({"THENA_WEBHOOK_SECRETS", "THENA_API_KEY"}),
    sign=lazy("ticketwire.vendors.thena.webhook", "signed_headers"),
    event_names=lambda: {
        **{v: k for k, v in lazy("ticketwire.vendors.thena.webhook", "CANONICAL_TYPES")().items()},
        "ticket.closed": "ticket:status:changed",
    },
    # Thena has no close event: a status change to a closed status is one.
    event_fields={"ticket.closed": {"statusName": "Closed"}},
    updated_field="updatedAt",
    replay_refused="captures never keep Thena's token header (it is the secret itself)",
    simulator=lazy("simulator.thena", "SIMULATOR"),
)
