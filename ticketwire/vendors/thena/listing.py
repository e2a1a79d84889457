"""What scheduled rules see of Thena's list API: its `select:` keys and a listed ticket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ticketwire.engine.select import SelectKey, VendorSelect, select_keys
from ticketwire.vendors.thena.models import DATE_RANGES
from ticketwire.vendors.thena.webhook import common_view

VENDOR = "thena"

SELECT = VendorSelect(
    VENDOR,
    select_keys(
        SelectKey("teamId", "text"),
        SelectKey("team_id", "text", wire="teamId"),
        SelectKey("dateRange", "enum", values=DATE_RANGES),
        SelectKey("date_range", "enum", wire="dateRange", values=DATE_RANGES),
    ),
)


def view(item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A listed ticket as rules read it, and its common view."""
    ticket = dict(item)
    if "assignedAgentId" not in ticket and "assignedAgent" in ticket:
        agent = ticket["assignedAgent"]
        ticket["assignedAgentId"] = agent.get("id") if isinstance(agent, Mapping) else None
    return ticket, common_view(ticket)
