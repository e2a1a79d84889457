"""Thena (platform.thena.ai): platform-event intake, the `/v1` ticket client and rule actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ticketwire.vendors.bundle import Vendor, packaged
from ticketwire.vendors.thena.settings import ThenaSettings, read
from ticketwire.vendors.thena.vocabulary import VOCABULARY

if TYPE_CHECKING:
    from ticketwire.engine.select import VendorSelect

NAME = "thena"


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


VENDOR: Vendor[ThenaSettings] = Vendor(
    name=NAME,
    title="Thena",
    settings=ThenaSettings,
    read=read,
    webhook_hint="the webhook token(s) or secret(s) from Thena, comma-separated",
    select=_select,
    listed=lambda: _listed_view,
    vocabulary=VOCABULARY,
    **packaged(__name__),
)
