"""The `/_sim` control routes (no auth, not part of the vendor API) for the CLI, scripts and tests."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

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


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    return body


async def info(request: web.Request) -> web.Response:
    """Keys, ids and the list of control routes."""
    sim = request.app[SIM_KEY]
    routes = sorted(
        f"{r.method} {r.resource.canonical}"
        for r in request.app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/_sim")
        and r.method != "HEAD"
    )
    return ok(
        request,
        {
            "url": sim.url,
            "api_base": sim.api_base,
            "seed": sim.seed,
            "team_id": sim.team_id,
            "other_team_id": sim.other_team_id,
            "api_key": sim.api_key,
            "publishable_key": sim.publishable_key,
            "expired_key": sim.expired_key,
            "other_team_key": sim.other_team_key,
            "agents": sim.agents,
            "routes": routes,
        },
    )


async def reset(request: web.Request) -> web.Response:
    """Back to the seeded start (`{"keep_endpoints": false}` forgets the endpoints too)."""
    body = await _body(request)
    request.app[SIM_KEY].reset(keep_endpoints=bool(body.get("keep_endpoints", True)))
    return ok(request, {"reset": True})


async def journal(request: web.Request) -> web.Response:
    """Every /api/v1 request so far."""
    return ok(request, [e.to_json() for e in request.app[SIM_KEY].journal])


async def deliveries(request: web.Request) -> web.Response:
    """The webhook delivery log, plus how many deliveries are still pending."""
    sim = request.app[SIM_KEY]
    return ok(
        request,
        [d.to_json() for d in sim.deliveries],
        pending=sim.emitter.pending,
    )


async def wait_idle(request: web.Request) -> web.Response:
    """Wait until no delivery is pending (`{"timeout": seconds}`, default 10)."""
    body = await _body(request)
    try:
        await request.app[SIM_KEY].wait_deliveries_idle(float(body.get("timeout", 10.0)))
    except TimeoutError as exc:
        raise ApiError(409, "deliveries_pending", str(exc)) from None
    return ok(request, {"pending": 0})


async def list_endpoints(request: web.Request) -> web.Response:
    """Registered webhooks (secrets not shown)."""
    return ok(request, [e.to_json() for e in request.app[SIM_KEY].emitter.endpoints.values()])


async def add_endpoint(request: web.Request) -> web.Response:
    """Register `{url, secret, events?}` for the default team."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    for name in ("url", "secret"):
        if not isinstance(body.get(name), str):
            raise invalid(name, "is required and must be a string")
    events = body.get("events")
    if events is not None and not (
        isinstance(events, list) and all(isinstance(e, str) for e in events)
    ):
        raise invalid("events", "must be an array of event names")
    try:
        endpoint_id = sim.add_endpoint(body["url"], body["secret"], events)
    except ValueError as exc:
        raise ApiError(400, "parameter_invalid", str(exc)) from None
    return ok(request, sim.emitter.endpoints[endpoint_id].to_json(), 201)


async def list_tickets(request: web.Request) -> web.Response:
    """All tickets of the default team, oldest first."""
    return ok(request, request.app[SIM_KEY].tickets())


async def create_ticket(request: web.Request) -> web.Response:
    """Create a ticket as an agent would (the `POST /tickets` fields)."""
    sim = request.app[SIM_KEY]
    return ok(request, sim.create_ticket(**await _body(request)), 201)


async def change_ticket(request: web.Request) -> web.Response:
    """An agent's edit with PATCH fields; emits webhooks; answers the ticket."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    return ok(request, sim.change_ticket(request.match_info["id"], **body))


async def add_message(request: web.Request) -> web.Response:
    """A message on a ticket `{content, sender?}`; emits `ticket.message_added`."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
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


async def get_faults(request: web.Request) -> web.Response:
    """The current fault knobs."""
    return ok(request, request.app[SIM_KEY].faults.to_json())


async def set_faults(request: web.Request) -> web.Response:
    """Set knobs: `{clear?, webhooks?: {...}, fail_next?: {...}, bulk_fail_ids?: {id: code}}`."""
    sim = request.app[SIM_KEY]
    try:
        sim.faults.apply_json(await _body(request))
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "parameter_invalid", str(exc)) from None
    return ok(request, sim.faults.to_json())


async def get_settings(request: web.Request) -> web.Response:
    """The runtime switches."""
    return ok(request, request.app[SIM_KEY].settings.to_json())


async def set_settings(request: web.Request) -> web.Response:
    """Flip switches, e.g. `{"legacy_errors": true, "rate_limit": "1000/hour"}`."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
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


async def seed(request: web.Request) -> web.Response:
    """Create `{"tickets": N}` realistic tickets (`"emit": false` to skip their webhooks)."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    count = body.get("tickets", 10)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 100_000:
        raise invalid("tickets", "must be an integer between 0 and 100000")
    created = sim.seed_tickets(count, emit=bool(body.get("emit", True)))
    return ok(request, {"created": len(created), "ticket_ids": [t["id"] for t in created]}, 201)


def add_control_routes(app: web.Application) -> None:
    """Register the /_sim routes."""
    r = app.router
    r.add_get("/_sim", info)
    r.add_post("/_sim/reset", reset)
    r.add_get("/_sim/journal", journal)
    r.add_get("/_sim/deliveries", deliveries)
    r.add_post("/_sim/deliveries/wait", wait_idle)
    r.add_get("/_sim/endpoints", list_endpoints)
    r.add_post("/_sim/endpoints", add_endpoint)
    r.add_get("/_sim/tickets", list_tickets)
    r.add_post("/_sim/tickets", create_ticket)
    r.add_post("/_sim/tickets/{id}/change", change_ticket)
    r.add_post("/_sim/tickets/{id}/messages", add_message)
    r.add_delete("/_sim/tickets/{id}", delete_ticket)
    r.add_get("/_sim/faults", get_faults)
    r.add_post("/_sim/faults", set_faults)
    r.add_get("/_sim/settings", get_settings)
    r.add_post("/_sim/settings", set_settings)
    r.add_post("/_sim/seed", seed)
