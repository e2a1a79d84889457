"""cStar (cstar.help): webhook verification and parsing, API client, and the actions rules may take."""

from __future__ import annotations

from ticketwire.vendors.bundle import Vendor, lazy, packaged
from ticketwire.vendors.cstar.settings import CStarSettings, read

VENDOR: Vendor[CStarSettings] = Vendor(
    title="cStar",
    settings=CStarSettings,
    read=read,
    webhook_hint="the webhook signing secret(s) from cStar, comma-separated",
    require=CStarSettings.require,
    # The bulk size is cStar's own (documented), not a setting.
    **packaged(__name__, sized=False),
    event_id_form="evt_{hex}",
    # Six retries, 30 s, 2 m, 10 m, 1 h, 6 h and 24 h apart (documented).
    retry_horizon_s=30 + 120 + 600 + 3600 + 21600 + 86400,
    simulator=lazy("simulator.cstar", "SIMULATOR"),
)
