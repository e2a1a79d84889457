"""The `/_sim` control routes (no auth, not part of the vendor API) for the CLI, scripts and tests."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.common.control import Controls, ControlStyle, settings_rules
from simulator.inboxops.app import SIM_KEY, ok
from simulator.inboxops.config import Settings
from simulator.inboxops.problems import ApiError, bad_request
from simulator.inboxops.store import INCLUDES


class _Controls(Controls):
    settings_types, settings_choices = settings_rules(Settings)

    async def list_tickets(self, request: web.Request) -> web.Response:
        """All tickets of the default workspace, by number (`?include=` as on the API)."""
        sim = request.app[SIM_KEY]
        include = [i for i in request.query.get("include", "").split(",") if i in INCLUDES]
        return ok({"data": sim.tickets(include=include)})


def _deliveries(request: web.Request, records: list[dict[str, Any]], pending: int) -> web.Response:
    return ok({"data": records, "meta": {"pending": pending}})


CONTROLS = _Controls(
    ControlStyle(
        key=SIM_KEY,
        answer=lambda request, data, status: ok({"data": data}, status),
        invalid=bad_request,
        refused=lambda message: ApiError(400, "bad_request", message),
        pending=lambda message: ApiError(409, "conflict", message),
        deliveries=_deliveries,
        info=(
            "url",
            "api_base",
            "seed",
            "workspace_id",
            "api_key",
            "read_only_key",
            "other_workspace_key",
            "no_entitlement_key",
            "inboxes",
            "statuses",
            "priorities",
            "tags",
            "agents",
            "custom_fields",
        ),
    )
)


#: The shared /_sim routes and messages as the app adds them: `{type: email|internal_note,
#: direction, is_draft, …}`.
CONTROL_ROUTES = CONTROLS.routes({"/_sim/tickets/{id}/messages": {"POST": CONTROLS.add_message}})
