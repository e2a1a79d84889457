"""Thena (platform.thena.ai): platform-event intake, the `/v1` ticket client and rule actions."""

from __future__ import annotations

from ticketwire.vendors.bundle import Vendor, lazy, packaged
from ticketwire.vendors.thena.settings import ThenaSettings, read

VENDOR: Vendor[ThenaSettings] = Vendor(
    title="Thena",
    settings=ThenaSettings,
    read=read,
    webhook_hint="the webhook token(s) or secret(s) from Thena, comma-separated",
    **packaged(__name__),
    event_names=lazy("ticketwire.vendors.thena.webhook", "OWN_EVENT_NAMES"),
    # Thena has no close event: a status change to a closed status is one.
    event_fields={"ticket.closed": {"statusName": "Closed"}},
    updated_field="updatedAt",
    # Platform events' retries are not documented; the older webhooks retry for about 190 s.
    retry_horizon_s=10 + 20 + 30 + 50 + 80,
    replay_refused="captures never keep Thena's token header (it is the secret itself)",
    simulator=lazy("simulator.thena", "SIMULATOR"),
)
