"""A simulator's aiohttp app and its `run_simulator`, made once for every vendor."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, TypeVar

from aiohttp import web

from simulator.common.base import SimulatorBase
from simulator.common.routes import Routes, add_routes

S = TypeVar("S", bound=SimulatorBase[Any, Any, Any, Any, Any])


class AppFactory(Protocol):
    """`create_app(sim | config | None)`."""

    def __call__(self, sim: Any = None) -> web.Application:
        """The app serving `sim`, or a new simulator built from a config."""
        ...


class Runner(Protocol):
    """`run_simulator(cfg, host, port, webhook_url, webhook_secret, seed_tickets)`."""

    async def __call__(
        self,
        cfg: Any,
        host: str = "127.0.0.1",
        port: int = ...,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        seed_tickets: int = 0,
    ) -> None:
        """Serve until cancelled."""
        ...


def app_factory(
    cls: type[S],
    key: web.AppKey[Any],
    middleware: Any,
    *routes: Routes,
) -> AppFactory:
    """The `create_app` of simulator class `cls` (kept on it too, for `start`): its app keeps the
    simulator as `app[key]`, passes every request through `middleware`, and serves the route
    tables `routes`."""

    def create_app(sim: Any = None) -> web.Application:
        """An aiohttp app serving `sim` (or a new simulator built from a config); usable with
        `aiohttp_server`. The simulator is `app[SIM_KEY]`; cleanup cancels pending deliveries."""
        served = sim if isinstance(sim, cls) else cls(sim)
        app = web.Application(middlewares=[middleware])
        app[key] = served
        for table in routes:
            add_routes(app, table)

        async def _close(_: web.Application) -> None:
            await served.close_background()

        app.on_cleanup.append(_close)
        return app

    cls.create_app = create_app
    return create_app


def runner(
    cls: type[SimulatorBase[Any, Any, Any, Any, Any]], default_port: int, secret: str = "secret"
) -> Runner:
    """The `run_simulator` of simulator class `cls`; a webhook url needs its `secret`."""

    async def run_simulator(
        cfg: Any,
        host: str = "127.0.0.1",
        port: int = default_port,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        seed_tickets: int = 0,
    ) -> None:
        """Run a simulator until cancelled: seed tickets quietly, then register the endpoint if
        given."""
        if webhook_url and not webhook_secret:
            raise ValueError(f"a webhook {secret} is required with a webhook url")
        sim: Any = cls(cfg)
        await sim.start(host=host, port=port)
        try:
            if seed_tickets:
                sim.seed_tickets(seed_tickets, emit=False)
            endpoint = None
            if webhook_url and webhook_secret:
                endpoint = sim.add_endpoint(webhook_url, webhook_secret)
            sim.announce(webhook_url, endpoint)
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    return run_simulator
