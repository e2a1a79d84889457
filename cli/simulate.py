"""`ticketwire simulate <vendor>`: one of the bundled helpdesk simulators on its own."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from ticketwire.errors import ConfigError
from ticketwire.logs import setup_logging
from ticketwire.vendors.registry import bundle

if TYPE_CHECKING:
    from simulator.common.bundle import SimulatorBundle

#: The first simulator's port; each other one's is its offset above, so they run side by side.
BASE_PORT = 8081


def simulator_of(vendor: str) -> SimulatorBundle:
    """The simulator of `vendor`; `KeyError` when it has none."""
    sim = bundle(vendor).simulator
    if sim is None:
        raise KeyError(f"{vendor} has no simulator")
    return sim()


def simulator_config(vendor: str, seed: int, rate_limit: str | None) -> Any:
    """The simulator's config: its own defaults (the ones `up` runs) unless `--rate-limit` says.

    Without `--rate-limit` each simulator keeps the limit it documents and `up` uses: InboxOps
    100/min per workspace, cStar 120/min per secret key and 60/min per publishable key.
    """
    sim = simulator_of(vendor)
    if rate_limit is None:
        return sim.config(seed=seed)
    return sim.limited(seed, rate_limit)


def run_simulate(
    vendor: str,
    *,
    host: str,
    port: int | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    seed: int,
    seed_tickets: int,
    rate_limit: str | None,
) -> int:
    """Serve the simulator until Ctrl-C; return the exit status."""
    if bool(webhook_url) != bool(webhook_secret):
        print("ticketwire simulate: --webhook-url and --webhook-secret go together")
        return 2
    try:
        cfg = simulator_config(vendor, seed, rate_limit)
    except ConfigError as exc:
        print(f"ticketwire simulate: {exc}")
        return 2
    setup_logging("INFO")
    sim = simulator_of(vendor)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            sim.run(
                cfg,
                host,
                port or BASE_PORT + sim.port_offset,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                seed_tickets=seed_tickets,
            )
        )
    return 0
