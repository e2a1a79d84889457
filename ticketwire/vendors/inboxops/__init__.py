"""InboxOps: webhook verification and parsing, API client, and the actions rules may take."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ticketwire.vendors.bundle import Vendor, lazy, packaged
from ticketwire.vendors.inboxops.settings import InboxOpsSettings, read

if TYPE_CHECKING:
    from ticketwire.engine.router import Rule


def _rule_notes(rules: Iterable[Rule]) -> list[str]:
    from ticketwire.vendors.inboxops.reminders import reminder_notes

    return reminder_notes(rules)


VENDOR: Vendor[InboxOpsSettings] = Vendor(
    title="InboxOps",
    settings=InboxOpsSettings,
    read=read,
    webhook_hint="the webhook signing secret(s) from InboxOps Settings → Webhooks, comma-separated",
    rule_notes=_rule_notes,
    # Ten attempts, 1, 2, 4 … 256 minutes apart (InboxOps' plan; not yet published).
    retry_horizon_s=60 * (2**9 - 1),
    **packaged(__name__, parser="parse_stored"),
    simulator=lazy("simulator.inboxops", "SIMULATOR"),
)
