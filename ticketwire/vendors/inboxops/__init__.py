"""InboxOps: webhook verification and parsing, API client, and the actions rules may take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ticketwire.vendors.bundle import Vendor, key_digest, lazy
from ticketwire.vendors.inboxops.settings import InboxOpsSettings, need_api, read
from ticketwire.vendors.inboxops.vocabulary import VOCABULARY

if TYPE_CHECKING:
    import aiohttp

    from ticketwire.engine.router import Rule
    from ticketwire.engine.select import VendorSelect
    from ticketwire.ratebudget import Limit
    from ticketwire.vendors import HelpdeskClient, WebhookIntake
    from ticketwire.writeback import BatchSpec

NAME = "inboxops"


def _intake(account: InboxOpsSettings) -> WebhookIntake | None:
    if not account.webhook_secrets:
        return None
    from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook

    return InboxOpsWebhook(account.webhook_secrets)


def _client(
    account: InboxOpsSettings, session: aiohttp.ClientSession, timeout: float
) -> HelpdeskClient | None:
    if not (account.api_url and account.api_key):
        return None
    from ticketwire.vendors.inboxops.client import InboxOpsClient

    return InboxOpsClient(session, account.api_url, account.api_key, timeout=timeout)


def _batching(account: InboxOpsSettings) -> BatchSpec:
    from ticketwire.vendors.inboxops.batching import spec

    return spec(account.bulk_max)


def _budget(account: InboxOpsSettings) -> tuple[str, tuple[Limit, ...]] | None:
    if not account.api_key:
        return None
    # Only the key identifies the workspace: a digest of it stands in (never the key itself).
    return f"{NAME}:{key_digest(account.api_key)}", account.rate_limits


def _select() -> VendorSelect:
    from ticketwire.engine.select import SelectKey, VendorSelect, select_keys
    from ticketwire.vendors.inboxops.models import PRIORITIES, STATUSES

    keys = select_keys(
        SelectKey("status", "enum", values=STATUSES, many=True),
        SelectKey("priority", "enum", values=PRIORITIES),
        SelectKey("inbox_id", "text"),
        SelectKey("assignee_id", "text"),
        SelectKey("tag_ids", "text", many=True),
        SelectKey("query", "text"),
        SelectKey("q", "text"),
        SelectKey("created_after", "instant"),
        SelectKey("created_before", "instant"),
        SelectKey("updated_after", "instant"),
        SelectKey("updated_before", "instant"),
    )
    # Oldest first: a ticket created while the run pages cannot shift the pages still to come.
    # Only "Ticket with custom_fields (GET by id, POST create 201, PATCH 200)": the list
    # answer's tickets carry no custom_fields.
    return VendorSelect(
        NAME,
        keys,
        custom_fields=True,
        listing={"sort": "created_at", "order": "asc"},
        unlisted=frozenset({"custom_fields"}),
        title="InboxOps",
    )


def _listed_view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from ticketwire.vocabulary import neutral_priority, neutral_status

    ticket = dict(item)
    return ticket, {
        "status": neutral_status(NAME, ticket.get("status")),
        "priority": neutral_priority(NAME, ticket.get("priority")),
        "assignee": ticket.get("assignee_id"),
        # InboxOps tickets carry no tags, in webhooks and lists alike.
        "tags": None,
        "subject": ticket.get("subject"),
    }


def _rule_notes(rules: Iterable[Rule]) -> list[str]:
    from ticketwire.vendors.inboxops.reminders import reminder_notes

    return reminder_notes(rules)


VENDOR: Vendor[InboxOpsSettings] = Vendor(
    name=NAME,
    title="InboxOps",
    settings=InboxOpsSettings,
    read=read,
    webhook_variable="INBOXOPS_WEBHOOK_SECRETS",
    webhook_hint="the webhook signing secret(s) from InboxOps Settings → Webhooks, comma-separated",
    need_api=need_api,
    intake=_intake,
    client=_client,
    parser=lazy("ticketwire.vendors.inboxops.webhook", "parse_stored"),
    actions=lazy("ticketwire.vendors.inboxops.actions", "SPEC"),
    batching=_batching,
    budget=_budget,
    echo=lazy("ticketwire.vendors.inboxops.echo", "ECHO"),
    select=_select,
    listed=lambda: _listed_view,
    common_view=lazy("ticketwire.vendors.inboxops.webhook", "common_view"),
    vocabulary=VOCABULARY,
    tenant=lambda account: None,
    rule_notes=_rule_notes,
    variables=(
        "INBOXOPS_WEBHOOK_SECRETS",
        "INBOXOPS_API_URL",
        "INBOXOPS_API_KEY",
        "INBOXOPS_RATE_LIMIT",
        "INBOXOPS_BULK_MAX",
    ),
    secret_variables=frozenset({"INBOXOPS_WEBHOOK_SECRETS", "INBOXOPS_API_KEY"}),
    sign=lazy("ticketwire.vendors.inboxops.webhook", "signed_headers"),
    simulator=lazy("simulator.inboxops", "SIMULATOR"),
)
