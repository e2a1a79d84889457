"""`ticketwire simulate <vendor>`: one of the bundled helpdesk simulators on its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from ticketwire.errors import ConfigError
from ticketwire.logs import setup_logging

#: Default ports, so the three simulators can run side by side.
DEFAULT_PORTS = {"inboxops": 8081, "cstar": 8082, "thena": 8083}


def _per_minute(rate_limit: str) -> int | None:
    """`--rate-limit` as InboxOps and Thena take it: requests per minute, 0 for none."""
    try:
        count = int(rate_limit)
    except ValueError:
        raise ConfigError("--rate-limit", "requests per minute (0 = off)", rate_limit) from None
    if count < 0:
        raise ConfigError("--rate-limit", "requests per minute (0 = off)", rate_limit)
    return count or None


def simulator_config(vendor: str, seed: int, rate_limit: str | None) -> Any:
    """The simulator's config: its own defaults (the ones `up` runs) unless `--rate-limit` says.

    Without `--rate-limit` each simulator keeps the limit it documents and `up` uses: InboxOps
    100/min per workspace, cStar 120/min per secret key and 60/min per publishable key.
    """
    if vendor == "cstar":
        from simulator.cstar import CStarSimulatorConfig

        if rate_limit is None:
            return CStarSimulatorConfig(seed=seed)
        # "120/minute", "1000/hour", "N/unit" or N per minute; the config checks it.
        spec: str | int = int(rate_limit) if rate_limit.strip().isdigit() else rate_limit
        return CStarSimulatorConfig(seed=seed, rate_limit=spec)
    if vendor == "thena":
        from simulator.thena import ThenaSimulatorConfig

        if rate_limit is None:
            return ThenaSimulatorConfig(seed=seed)
        return ThenaSimulatorConfig(seed=seed, rate_limit_per_minute=_per_minute(rate_limit))
    from simulator.inboxops import SimulatorConfig

    if rate_limit is None:
        return SimulatorConfig(seed=seed)
    return SimulatorConfig(seed=seed, rate_limit_per_minute=_per_minute(rate_limit))


def _run(vendor: str) -> Callable[..., Coroutine[Any, Any, None]]:
    if vendor == "cstar":
        from simulator.cstar import run_simulator as run_cstar

        return run_cstar
    if vendor == "thena":
        from simulator.thena import run_simulator as run_thena

        return run_thena
    from simulator.inboxops import run_simulator as run_inboxops

    return run_inboxops


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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _run(vendor)(
                cfg,
                host,
                port or DEFAULT_PORTS[vendor],
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                seed_tickets=seed_tickets,
            )
        )
    return 0
