"""Build the receiver's aiohttp application from settings and a Redis client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence

from aiohttp import web
from redis.asyncio import Redis

from receiver.console.app import mount as mount_console
from receiver.drain import Drain, drain_key, draining
from receiver.guard import guard, sender_errors
from receiver.health import healthz, readyz
from receiver.intake import Intake
from receiver.metrics import metrics_view
from receiver.routes import mount_webhooks
from receiver.webhook import Limits
from ticketwire.config import Settings
from ticketwire.durability import Durability
from ticketwire.eventage import late_retries
from ticketwire.keys import Keys
from ticketwire.metrics import Exposition
from ticketwire.vendors import WebhookIntake
from ticketwire.vendors.registry import account_intakes, bundle, intakes, names

log = logging.getLogger("ticketwire.receiver")

intake_key = web.AppKey("intake", Intake)


def create_app(
    settings: Settings,
    redis: Redis,
    vendors: Sequence[WebhookIntake],
    accounts: Mapping[str, Mapping[str, WebhookIntake]] | None = None,
) -> web.Application:
    """Return the app with the webhook routes, `/healthz`, `/readyz` and `/metrics`.

    `vendors` receive as their default account, `/webhooks/<vendor>`; `accounts` are the other
    accounts by vendor and name (None: those configured in `settings`).
    """
    # One byte over the limit is enough for aiohttp to refuse a chunked body that is too large.
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[guard, draining])
    drain = app[drain_key] = Drain()
    logging.getLogger("aiohttp.server").addFilter(sender_errors)
    intake = Intake(
        redis,
        Keys(settings.key_prefix),
        partitions=settings.partitions,
        dedupe_ttl_s=settings.dedupe_ttl_s,
        trace_retention_s=settings.trace_retention_s,
        trace_max=settings.trace_max,
        durability=Durability.of(settings),
    )
    app[intake_key] = intake

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await intake.start()
        yield
        await intake.close()

    app.cleanup_ctx.append(lifecycle)
    named = account_intakes(settings, default=False) if accounts is None else accounts
    routes: dict[str, dict[str, WebhookIntake]] = {v.vendor: {"default": v} for v in vendors}
    for vendor, by_name in named.items():
        routes.setdefault(vendor, {}).update(by_name)
    horizons = [(bundle(v).title, bundle(v).retry_horizon_s) for v in routes if v in names()]
    for warning in late_retries(horizons, settings.max_event_age_s):
        log.warning(warning)
    mount_webhooks(app, intake, routes, Limits.of(settings))
    app.router.add_get("/healthz", healthz)
    keys, parts = Keys(settings.key_prefix), settings.partitions
    app.router.add_get(
        "/readyz",
        readyz(
            redis,
            keys=keys,
            partitions=parts,
            max_lag_s=settings.ready_max_lag_s,
            stopping=lambda: drain.stopping,
        ),
    )
    app.router.add_get("/metrics", metrics_view(Exposition(redis, keys, parts)))
    mount_console(app, settings, redis)
    return app


def vendor_intakes(settings: Settings) -> list[WebhookIntake]:
    """The webhook seams of every vendor configured in `settings`."""
    return intakes(settings)
