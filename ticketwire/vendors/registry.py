"""Every helpdesk ticketwire speaks, built from settings: the one place processes look vendors up."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable

import aiohttp

from ticketwire.config import Settings
from ticketwire.event import Event
from ticketwire.ratebudget import Limit
from ticketwire.vendors import HelpdeskClient, WebhookIntake
from ticketwire.writeback import BatchSpec

VENDORS: tuple[str, ...] = ("inboxops", "cstar", "thena")


def parser(vendor: str) -> Callable[[bytes], Event]:
    """The pure parser workers use on stored bodies (`parse_stored` where a vendor has one)."""
    if vendor not in VENDORS:
        raise KeyError(f"unknown vendor {vendor!r} (known: {', '.join(VENDORS)})")
    module = importlib.import_module(f"ticketwire.vendors.{vendor}.webhook")
    parse: Callable[[bytes], Event] = getattr(module, "parse_stored", module.parse)
    return parse


def intakes(settings: Settings) -> list[WebhookIntake]:
    """The webhook verifier/parser of every vendor whose secrets are configured."""
    out: list[WebhookIntake] = []
    if settings.inboxops.webhook_secrets:
        from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook

        out.append(InboxOpsWebhook(settings.inboxops.webhook_secrets))
    if settings.cstar.webhook_secrets:
        from ticketwire.vendors.cstar.webhook import CStarWebhook

        out.append(
            CStarWebhook(
                settings.cstar.webhook_secrets,
                tolerance_s=settings.cstar.signature_tolerance_s,
            )
        )
    if settings.thena.webhook_secrets:
        from ticketwire.vendors.thena.webhook import ThenaWebhook

        out.append(
            ThenaWebhook(
                settings.thena.webhook_mode,
                settings.thena.webhook_secrets,
                header=settings.thena.webhook_header,
            )
        )
    return out


def clients(settings: Settings, session: aiohttp.ClientSession) -> dict[str, HelpdeskClient]:
    """An API client for every vendor whose API is configured."""
    out: dict[str, HelpdeskClient] = {}
    timeout = settings.http_timeout_s
    io = settings.inboxops
    if io.api_url and io.api_key:
        from ticketwire.vendors.inboxops.client import InboxOpsClient

        out["inboxops"] = InboxOpsClient(session, io.api_url, io.api_key, timeout=timeout)
    cs = settings.cstar
    if cs.team_id and cs.api_key:
        from ticketwire.vendors.cstar.client import CStarClient

        out["cstar"] = CStarClient(session, cs.api_url, cs.team_id, cs.api_key, timeout=timeout)
    th = settings.thena
    if th.api_key:
        from ticketwire.vendors.thena.client import ThenaClient

        out["thena"] = ThenaClient(
            session,
            th.api_url,
            auth=th.auth,
            api_key=th.api_key,
            org_id=th.org_id,
            timeout=timeout,
        )
    return out


def batch_specs(settings: Settings) -> dict[str, BatchSpec]:
    """How each vendor's write-backs combine into bulk calls, with the configured sizes."""
    from ticketwire.vendors.cstar import batching as cstar
    from ticketwire.vendors.inboxops import batching as inboxops
    from ticketwire.vendors.thena import batching as thena

    return {
        "inboxops": inboxops.spec(settings.inboxops.bulk_max),
        "cstar": cstar.spec(),
        "thena": thena.spec(settings.thena.bulk_max),
    }


def budget_scopes(settings: Settings) -> dict[str, tuple[str, tuple[Limit, ...]]]:
    """Each configured API's budget scope (vendor and account) and limits.

    The account is the workspace, team or organisation the API key acts for; where only the key
    identifies it, a digest of the key stands in (never the key itself).
    """
    out: dict[str, tuple[str, tuple[Limit, ...]]] = {}
    io, cs, th = settings.inboxops, settings.cstar, settings.thena
    if io.api_key:
        out["inboxops"] = (f"inboxops:{_digest(io.api_key.reveal())}", io.rate_limits)
    if cs.api_key and cs.team_id:
        out["cstar"] = (f"cstar:{cs.team_id}:{_digest(cs.api_key.reveal())}", cs.rate_limits)
    if th.api_key:
        account = th.org_id or _digest(th.api_key.reveal())
        out["thena"] = (f"thena:{account}", th.rate_limits)
    return out


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]
