"""The webhook routes: `/webhooks/<vendor>` (the default account) and `/webhooks/<vendor>/<account>`."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from receiver.answers import error
from receiver.intake import Intake
from receiver.logbudget import RefusalLogBudget
from receiver.metrics import Handler, observed
from receiver.webhook import Limits, WebhookHandler
from ticketwire.accountkey import DEFAULT
from ticketwire.metrics import UNKNOWN_ACCOUNT
from ticketwire.vendors import WebhookIntake

log = logging.getLogger("ticketwire.receiver")


def mount_webhooks(
    app: web.Application,
    intake: Intake,
    accounts: Mapping[str, Mapping[str, WebhookIntake]],
    limits: Limits,
) -> None:
    """Add each account's route, and a 404 for every other account of a receiving vendor."""
    for vendor, by_name in accounts.items():
        for account, seam in by_name.items():
            handler = WebhookHandler(seam, intake, limits, account)
            call = observed(vendor, handler.__call__, account)
            if account == DEFAULT:
                app.router.add_post(f"/webhooks/{vendor}", call)
            app.router.add_post(f"/webhooks/{vendor}/{account}", call)
        unknown = observed(vendor, _unknown_account(vendor, intake), UNKNOWN_ACCOUNT)
        if DEFAULT not in by_name:
            app.router.add_post(f"/webhooks/{vendor}", unknown)
        # Added last: aiohttp tries routes in order, so only the accounts above match first.
        app.router.add_post(f"/webhooks/{vendor}/{{account}}", unknown)


def _unknown_account(vendor: str, intake: Intake) -> Handler:
    """A handler refusing a delivery to an account of `vendor` that is not configured."""

    budget = RefusalLogBudget()

    async def refuse(request: web.Request) -> web.Response:
        account = request.match_info.get("account", DEFAULT)
        shown = account[:40]
        note = budget.admit(404)
        if note is not None:
            log.warning("rejected %s 404: unknown account %r%s", vendor, shown, note)
        intake.refusals.note(vendor, 404, "unknown_account")
        # The configured accounts are not listed: they name the deployment's customers.
        return error(
            404, "unknown_account", f"no {vendor} account {shown!r} receives webhooks here"
        )

    return refuse
