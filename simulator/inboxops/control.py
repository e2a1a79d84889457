"""The `/_sim` control routes (no auth, not part of the vendor API) for the CLI, scripts and tests."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from simulator.inboxops.app import SIM_KEY, ok
from simulator.inboxops.problems import ApiError, bad_request
from simulator.inboxops.store import INCLUDES

SETTINGS_TYPES: dict[str, tuple[type, ...]] = {
    "legacy_errors": (bool,),
    "rate_limit_per_minute": (int, type(None)),
    "rate_limit_window": (str,),
    "rate_limit_headers": (bool,),
    "bulk_unknown_ids": (str,),
    "webhook_signature_prefix": (bool,),
    "reminder_leaving_waiting": (str,),
    "message_updates_ticket": (bool,),
}
SETTINGS_CHOICES: dict[str, tuple[str, ...]] = {
    "rate_limit_window": ("fixed", "sliding"),
    "bulk_unknown_ids": ("skip", "404"),
    "reminder_leaving_waiting": ("clear", "keep"),
}


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise bad_request("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("body", "must be a JSON object")
    return body


def _value_error(exc: ValueError) -> ApiError:
    return ApiError(400, "bad_request", str(exc))


async def info(request: web.Request) -> web.Response:
    """Keys, ids and the list of control routes."""
    sim = request.app[SIM_KEY]
    return ok(
        {
            "data": {
                "url": sim.url,
                "api_base": sim.url + "/api/v1" if sim.url else "/api/v1",
                "seed": sim.seed,
                "workspace_id": sim.workspace_id,
                "api_key": sim.api_key,
                "read_only_key": sim.read_only_key,
                "other_workspace_key": sim.other_workspace_key,
                "no_entitlement_key": sim.no_entitlement_key,
                "inboxes": sim.inboxes,
                "statuses": sim.statuses,
                "priorities": sim.priorities,
                "tags": sim.tags,
                "agents": sim.agents,
                "custom_fields": sim.custom_fields,
                "routes": sorted(
                    f"{r.method} {r.resource.canonical}"
                    for r in request.app.router.routes()
                    if r.resource is not None
                    and r.resource.canonical.startswith("/_sim")
                    and r.method != "HEAD"
                ),
            }
        }
    )


async def reset(request: web.Request) -> web.Response:
    """Back to the seeded initial state; `{"keep_endpoints": false}` also drops endpoints."""
    body = await _body(request)
    request.app[SIM_KEY].reset(keep_endpoints=bool(body.get("keep_endpoints", True)))
    return ok({"data": {"reset": True}})


async def journal(request: web.Request) -> web.Response:
    """Every /api/v1 request so far."""
    return ok({"data": [e.to_json() for e in request.app[SIM_KEY].journal]})


async def deliveries(request: web.Request) -> web.Response:
    """The webhook delivery log, plus how many deliveries are still pending."""
    sim = request.app[SIM_KEY]
    return ok(
        {
            "data": [d.to_json() for d in sim.deliveries],
            "meta": {"pending": sim.emitter.pending},
        }
    )


async def wait_idle(request: web.Request) -> web.Response:
    """Wait until no delivery is pending (`{"timeout": seconds}`, default 10)."""
    body = await _body(request)
    sim = request.app[SIM_KEY]
    try:
        await sim.wait_deliveries_idle(float(body.get("timeout", 10.0)))
    except TimeoutError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return ok({"data": {"pending": 0}})


async def list_endpoints(request: web.Request) -> web.Response:
    """Registered webhook endpoints (secrets not shown)."""
    eps = request.app[SIM_KEY].emitter.endpoints.values()
    return ok({"data": [e.to_json() for e in eps]})


async def add_endpoint(request: web.Request) -> web.Response:
    """Register `{url, secret, events?}` for the default workspace."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    for name in ("url", "secret"):
        if not isinstance(body.get(name), str):
            raise bad_request(name, "is required and must be a string")
    events = body.get("events")
    if events is not None and not (
        isinstance(events, list) and all(isinstance(e, str) for e in events)
    ):
        raise bad_request("events", "must be an array of event names")
    try:
        endpoint_id = sim.add_endpoint(body["url"], body["secret"], events)
    except ValueError as exc:
        raise _value_error(exc) from None
    return ok({"data": sim.emitter.endpoints[endpoint_id].to_json()}, 201)


async def list_tickets(request: web.Request) -> web.Response:
    """All tickets of the default workspace, by number (`?include=` as on the API)."""
    sim = request.app[SIM_KEY]
    include = [i for i in request.query.get("include", "").split(",") if i in INCLUDES]
    return ok({"data": sim.tickets(include=include)})


async def create_ticket(request: web.Request) -> web.Response:
    """Create a ticket as an agent would (may also set status, tag_ids, contact_id, …)."""
    sim = request.app[SIM_KEY]
    return ok({"data": sim.create_ticket(**await _body(request))}, 201)


async def change_ticket(request: web.Request) -> web.Response:
    """An agent's edit with PATCH fields (plus tag_ids); emits webhooks; answers the ticket."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    return ok({"data": sim.change_ticket(request.match_info["id"], **body)})


async def add_message(request: web.Request) -> web.Response:
    """A message as the app adds it: `{type: email|internal_note, direction, is_draft, …}`."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    return ok({"data": sim.add_message(request.match_info["id"], **body)}, 201)


async def get_faults(request: web.Request) -> web.Response:
    """The current fault knobs."""
    return ok({"data": request.app[SIM_KEY].faults.to_json()})


async def set_faults(request: web.Request) -> web.Response:
    """Set knobs: `{clear?, webhooks?: {duplicate, …}, fail_next?: {method, path, status, …}}`."""
    sim = request.app[SIM_KEY]
    try:
        sim.faults.apply_json(await _body(request))
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    return ok({"data": sim.faults.to_json()})


async def get_settings(request: web.Request) -> web.Response:
    """The runtime switches."""
    return ok({"data": vars(request.app[SIM_KEY].settings)})


async def set_settings(request: web.Request) -> web.Response:
    """Flip runtime switches, e.g. `{"legacy_errors": true, "rate_limit_per_minute": 5}`."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    for name, value in body.items():
        types = SETTINGS_TYPES.get(name)
        if types is None:
            raise bad_request(name, f"unknown setting; known: {', '.join(SETTINGS_TYPES)}")
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise bad_request(name, f"has the wrong type (got {value!r})")
        choices = SETTINGS_CHOICES.get(name)
        if choices and value not in choices:
            raise bad_request(name, f"must be one of {', '.join(choices)}")
    for name, value in body.items():
        setattr(sim.settings, name, value)
    return ok({"data": vars(sim.settings)})


async def seed(request: web.Request) -> web.Response:
    """Create `{"tickets": N}` realistic tickets (`"emit": false` to skip their webhooks)."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    count = body.get("tickets", 10)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 100_000:
        raise bad_request("tickets", "must be an integer between 0 and 100000")
    created = sim.seed_tickets(count, emit=bool(body.get("emit", True)))
    return ok({"data": {"created": len(created), "ticket_ids": [t["id"] for t in created]}}, 201)


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
    r.add_get("/_sim/faults", get_faults)
    r.add_post("/_sim/faults", set_faults)
    r.add_get("/_sim/settings", get_settings)
    r.add_post("/_sim/settings", set_settings)
    r.add_post("/_sim/seed", seed)
