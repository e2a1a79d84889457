"""Thena (platform.thena.ai): platform-event intake, the `/v1` ticket client and rule actions."""

from __future__ import annotations

from ticketwire.vendors.bundle import Vendor, packaged
from ticketwire.vendors.thena.settings import ThenaSettings, read

VENDOR: Vendor[ThenaSettings] = Vendor(
    title="Thena",
    settings=ThenaSettings,
    read=read,
    webhook_hint="the webhook token(s) or secret(s) from Thena, comma-separated",
    **packaged(__name__),
)
