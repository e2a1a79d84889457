"""Route tables: a simulator's routes as data, `{path: {method: handler}}`."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from simulator.common.gateway import Handler

Routes = Mapping[str, Mapping[str, Handler]]


def below(root: str, routes: Routes) -> Routes:
    """`routes` with every path under `root`."""
    return {root + path: methods for path, methods in routes.items()}


def add_routes(app: web.Application, routes: Routes) -> None:
    """Register every route of the table, in its order; a GET answers HEAD too."""
    app.router.add_routes(
        web.route(method, path, handler)
        for path, methods in routes.items()
        for method, handler in methods.items()
    )
