"""cStar (cstar.help): webhook verification and parsing, API client, and the actions rules may take."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ticketwire.errors import ConfigError
from ticketwire.vendors.bundle import Vendor, key_digest, lazy
from ticketwire.vendors.cstar.settings import CStarSettings, read, require
from ticketwire.vendors.cstar.vocabulary import VOCABULARY

if TYPE_CHECKING:
    import aiohttp

    from ticketwire.config import Role
    from ticketwire.engine.select import VendorSelect
    from ticketwire.ratebudget import Limit
    from ticketwire.vendors import HelpdeskClient, WebhookIntake
    from ticketwire.writeback import BatchSpec

NAME = "cstar"


def _intake(account: CStarSettings) -> WebhookIntake | None:
    if not account.webhook_secrets:
        return None
    from ticketwire.vendors.cstar.webhook import CStarWebhook

    return CStarWebhook(account.webhook_secrets, tolerance_s=account.signature_tolerance_s)


def _client(
    account: CStarSettings, session: aiohttp.ClientSession, timeout: float
) -> HelpdeskClient | None:
    if not (account.team_id and account.api_key):
        return None
    from ticketwire.vendors.cstar.client import CStarClient

    return CStarClient(session, account.api_url, account.team_id, account.api_key, timeout=timeout)


def _batching(account: CStarSettings) -> BatchSpec:
    from ticketwire.vendors.cstar.batching import spec

    return spec()


def _budget(account: CStarSettings) -> tuple[str, tuple[Limit, ...]] | None:
    if not (account.api_key and account.team_id):
        return None
    return f"{NAME}:{account.team_id}:{key_digest(account.api_key)}", account.rate_limits


def _select() -> VendorSelect:
    from ticketwire.engine.select import SelectKey, VendorSelect, select_keys
    from ticketwire.vendors.cstar.models import PRIORITIES, STATUSES

    keys = select_keys(
        SelectKey("status", "enum", values=STATUSES),
        SelectKey("priority", "enum", values=PRIORITIES),
        SelectKey("assignedTo", "text"),
        SelectKey("customerId", "text"),
        SelectKey("search", "text"),
    )
    return VendorSelect(NAME, keys)


def _listed_view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from pydantic import ValidationError

    from ticketwire.vendors.cstar.models import Ticket
    from ticketwire.vendors.cstar.webhook import assignee_id, tag_names
    from ticketwire.vocabulary import neutral_priority, neutral_status

    try:
        model = Ticket.model_validate(dict(item))
    except ValidationError as exc:
        raise ValueError(f"a listed cStar ticket is unreadable: {exc.errors()[0]['msg']}") from None
    # The list answers camelCase; webhooks, and so rules, use the snake_case names.
    ticket = model.model_dump(mode="json", exclude_unset=True)
    return ticket, {
        "status": neutral_status(NAME, model.status),
        "priority": neutral_priority(NAME, model.priority),
        "assignee": assignee_id(model.assigned_to),
        "tags": tag_names(model.tags),
        "subject": model.title,
    }


def _require(account: CStarSettings, role: Role) -> None:
    require(account)


def _need_api(account: CStarSettings) -> None:
    if not account.api_key:
        raise ConfigError("CSTAR_API_KEY", "a secret key (sk_live_… or sk_test_…)")
    require(account)


VENDOR: Vendor[CStarSettings] = Vendor(
    name=NAME,
    title="cStar",
    settings=CStarSettings,
    read=read,
    webhook_variable="CSTAR_WEBHOOK_SECRETS",
    webhook_hint="the webhook signing secret(s) from cStar, comma-separated",
    require=_require,
    need_api=_need_api,
    intake=_intake,
    client=_client,
    parser=lazy("ticketwire.vendors.cstar.webhook", "parse"),
    actions=lazy("ticketwire.vendors.cstar.actions", "SPEC"),
    batching=_batching,
    budget=_budget,
    echo=lazy("ticketwire.vendors.cstar.echo", "ECHO"),
    select=_select,
    listed=lambda: _listed_view,
    common_view=lazy("ticketwire.vendors.cstar.webhook", "common_view"),
    vocabulary=VOCABULARY,
    # The team id is the tenant of cStar's webhooks.
    tenant=lambda account: account.team_id,
    variables=(
        "CSTAR_WEBHOOK_SECRETS",
        "CSTAR_SIGNATURE_TOLERANCE",
        "CSTAR_API_URL",
        "CSTAR_TEAM_ID",
        "CSTAR_API_KEY",
        "CSTAR_RATE_LIMIT",
    ),
    secret_variables=frozenset({"CSTAR_WEBHOOK_SECRETS", "CSTAR_API_KEY"}),
    sign=lazy("ticketwire.vendors.cstar.webhook", "signed_headers"),
    event_id_form="evt_{hex}",
    simulator=lazy("simulator.cstar", "SIMULATOR"),
)
