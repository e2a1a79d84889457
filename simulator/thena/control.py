"""The `/_sim` control routes (no auth, not part of the vendor API) for scripts and tests."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.common.control import Controls, ControlStyle, settings_rules
from simulator.thena.app import SIM_KEY, ok
from simulator.thena.config import Settings
from simulator.thena.problems import ApiError, bad_request

ENDPOINT_KEYS = frozenset({"url", "secret", "events", "mode", "header", "scheme", "nested"})


class _Controls(Controls):
    settings_types, settings_choices = settings_rules(Settings)

    def settings_set(self, sim: Any, body: dict[str, Any]) -> None:
        if "rate_limit_per_minute" in body:
            sim.limiter.reset()

    def endpoint_options(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - ENDPOINT_KEYS)
        if unknown:
            known = ", ".join(sorted(ENDPOINT_KEYS))
            raise bad_request(unknown[0], f"unknown key; known: {known}")
        return {
            "mode": str(body.get("mode", "token")),
            "header": body.get("header"),
            "scheme": str(body.get("scheme", "bearer")),
            "nested": bool(body.get("nested", False)),
        }


def _deliveries(request: web.Request, records: list[dict[str, Any]], pending: int) -> web.Response:
    return ok(request.app[SIM_KEY], {"deliveries": records, "pending": pending})


CONTROLS = _Controls(
    ControlStyle(
        key=SIM_KEY,
        answer=lambda request, data, status: ok(request.app[SIM_KEY], data, status),
        invalid=bad_request,
        refused=lambda message: ApiError(400, message),
        pending=lambda message: ApiError(409, message),
        deliveries=_deliveries,
        info=(
            "url",
            "api_base",
            "seed",
            "org_id",
            "api_key",
            "bearer_token",
            "other_org_id",
            "other_org_api_key",
            "teams",
            "agents",
            "types",
        ),
    )
)


#: The shared /_sim routes.
CONTROL_ROUTES = CONTROLS.routes()
