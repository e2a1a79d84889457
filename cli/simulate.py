"""`ticketwire simulate inboxops`: the bundled helpdesk simulator on its own."""

from __future__ import annotations

import asyncio
import contextlib

from simulator.inboxops import SimulatorConfig, run_simulator
from ticketwire.logs import setup_logging


def run_simulate(
    *,
    host: str,
    port: int,
    webhook_url: str | None,
    webhook_secret: str | None,
    seed: int,
    seed_tickets: int,
    rate_limit: int,
) -> int:
    """Serve the simulator until Ctrl-C; return the exit status."""
    if bool(webhook_url) != bool(webhook_secret):
        print("ticketwire simulate: --webhook-url and --webhook-secret go together")
        return 2
    setup_logging("INFO")
    cfg = SimulatorConfig(seed=seed, rate_limit_per_minute=rate_limit or None)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_simulator(
                cfg,
                host,
                port,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                seed_tickets=seed_tickets,
            )
        )
    return 0
