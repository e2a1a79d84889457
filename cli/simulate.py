"""`ticketwire simulate <vendor>`: one of the bundled helpdesk simulators on its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from ticketwire.logs import setup_logging

#: Default ports, so the three simulators can run side by side.
DEFAULT_PORTS = {"inboxops": 8081, "cstar": 8082, "thena": 8083}


def _runner(
    vendor: str, seed: int, rate_limit: int | None
) -> tuple[Any, Callable[..., Coroutine[Any, Any, None]]]:
    if vendor == "cstar":
        from simulator.cstar import CStarSimulatorConfig
        from simulator.cstar import run_simulator as run_cstar

        limit = f"{rate_limit}/minute" if rate_limit else None
        return CStarSimulatorConfig(seed=seed, rate_limit=limit), run_cstar
    if vendor == "thena":
        from simulator.thena import ThenaSimulatorConfig
        from simulator.thena import run_simulator as run_thena

        return ThenaSimulatorConfig(seed=seed, rate_limit_per_minute=rate_limit), run_thena
    from simulator.inboxops import SimulatorConfig
    from simulator.inboxops import run_simulator as run_inboxops

    return SimulatorConfig(seed=seed, rate_limit_per_minute=rate_limit), run_inboxops


def run_simulate(
    vendor: str,
    *,
    host: str,
    port: int | None,
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
    cfg, run = _runner(vendor, seed, rate_limit or None)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run(
                cfg,
                host,
                port or DEFAULT_PORTS[vendor],
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                seed_tickets=seed_tickets,
            )
        )
    return 0
