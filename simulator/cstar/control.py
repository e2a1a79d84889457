"""The `/_sim` control routes (no auth, not part of the vendor API) for the CLI, scripts and tests."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.common.control import Controls, ControlStyle
from simulator.cstar.app import SIM_KEY, ok
from simulator.cstar.config import AUTH_CODES, RETRY_AFTER_PLACES, SIGNATURE_HEADERS, RateLimit
from simulator.cstar.problems import ApiError, invalid
from ticketwire.errors import ConfigError

_CHOICES: dict[str, tuple[str, ...]] = {
    "pagination": ("meta", "top"),
    "publishable_write_code": ("insufficient_permissions", "publishable_key_write"),
    "auth_error_codes": AUTH_CODES,
    "webhook_signature": ("v1", "legacy"),
    "webhook_signature_header": SIGNATURE_HEADERS,
}
_FLAGS = ("legacy_errors", "flat_payload")


CONTROLS = Controls(
    ControlStyle(
        key=SIM_KEY,
        answer=lambda request, data, status: ok(request, data, status),
        invalid=invalid,
        refused=lambda message: ApiError(400, "parameter_invalid", message),
        pending=lambda message: ApiError(409, "deliveries_pending", message),
        deliveries=lambda request, records, pending: ok(request, records, pending=pending),
        info=(
            "url",
            "api_base",
            "seed",
            "team_id",
            "other_team_id",
            "api_key",
            "publishable_key",
            "expired_key",
            "other_team_key",
            "agents",
        ),
    )
)


async def add_message(request: web.Request) -> web.Response:
    """A message on a ticket `{content, sender?}`; emits `ticket.message_added`."""
    sim = request.app[SIM_KEY]
    body = await CONTROLS.body(request)
    content = body.get("content")
    if not isinstance(content, str):
        raise invalid("content", "is required and must be a string")
    message = sim.add_message(
        request.match_info["id"], content, str(body.get("sender", "customer"))
    )
    return ok(request, message, 201)


async def delete_ticket(request: web.Request) -> web.Response:
    """Delete a ticket; emits `ticket.deleted`."""
    request.app[SIM_KEY].delete_ticket(request.match_info["id"])
    return ok(request, {"deleted": True, "id": request.match_info["id"]})


async def get_settings(request: web.Request) -> web.Response:
    """The runtime switches."""
    return ok(request, request.app[SIM_KEY].settings.to_json())


async def set_settings(request: web.Request) -> web.Response:
    """Flip switches, e.g. `{"legacy_errors": true, "rate_limit": "1000/hour"}`."""
    sim = request.app[SIM_KEY]
    body = await CONTROLS.body(request)
    updates: dict[str, Any] = {}
    for name, value in body.items():
        if name in _FLAGS:
            if not isinstance(value, bool):
                raise invalid(name, f"must be true or false (got {value!r})")
        elif name in _CHOICES:
            if value not in _CHOICES[name]:
                raise invalid(name, f"must be one of {', '.join(_CHOICES[name])}")
        elif name == "retry_after_in":
            if not isinstance(value, list) or any(v not in RETRY_AFTER_PLACES for v in value):
                raise invalid(name, f"must be a list of {', '.join(RETRY_AFTER_PLACES)}")
            value = tuple(value)
        elif name == "rate_limit":
            try:
                value = RateLimit.parse(value)
            except (ConfigError, AttributeError) as exc:
                raise invalid(name, str(exc)) from None
        else:
            known = [*_FLAGS, *_CHOICES, "retry_after_in", "rate_limit"]
            raise invalid(name, f"unknown setting; known: {', '.join(known)}")
        updates[name] = value
    for name, value in updates.items():
        if name == "rate_limit":
            sim.set_rate_limit(value)
        else:
            setattr(sim.settings, name, value)
    return ok(request, sim.settings.to_json())


#: The shared /_sim routes with cStar's settings, messages and deletes.
CONTROL_ROUTES = CONTROLS.routes(
    {
        "/_sim/settings": {"GET": get_settings, "POST": set_settings},
        "/_sim/tickets/{id}/messages": {"POST": add_message},
        "/_sim/tickets/{id}": {"DELETE": delete_ticket},
    }
)
