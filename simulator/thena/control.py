"""The `/_sim` control routes (no auth, not part of the vendor API) for scripts and tests."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from simulator.thena.app import SIM_KEY, ok
from simulator.thena.problems import ApiError, bad_request

SETTINGS_TYPES: dict[str, tuple[type, ...]] = {
    "rate_limit_per_minute": (int, type(None)),
    "rate_limit_window": (str,),
    "retry_after_header": (bool,),
    "auth_schemes": (str,),
    "missing_org_status": (int,),
    "error_format": (str,),
    "list_shape": (str,),
    "webhook_signature_prefix": (bool,),
    "bulk_create_atomic": (bool,),
    "dedup_conflict": (bool,),
}
SETTINGS_CHOICES: dict[str, tuple[Any, ...]] = {
    "rate_limit_window": ("fixed", "sliding"),
    "auth_schemes": ("both", "api-key", "bearer"),
    "missing_org_status": (400, 401),
    "error_format": ("nest", "envelope"),
    "list_shape": ("list", "object"),
}
ENDPOINT_KEYS = frozenset({"url", "secret", "events", "mode", "header", "scheme", "nested"})


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


async def info(request: web.Request) -> web.Response:
    """Keys, ids, reference data and the list of control routes."""
    sim = request.app[SIM_KEY]
    return ok(
        sim,
        {
            "url": sim.url,
            "api_base": sim.url + "/v1" if sim.url else "/v1",
            "seed": sim.seed,
            "org_id": sim.org_id,
            "api_key": sim.api_key,
            "bearer_token": sim.bearer_token,
            "other_org_id": sim.other_org_id,
            "other_org_api_key": sim.other_org_api_key,
            "teams": [
                {
                    "id": t.id,
                    "name": t.name,
                    "identifier": t.identifier,
                    "statuses": [s.to_json() for s in t.statuses],
                    "priorities": [p.to_json() for p in t.priorities],
                }
                for t in sim.store.default.teams
            ],
            "agents": sim.agents,
            "types": sim.types,
            "routes": sorted(
                f"{r.method} {r.resource.canonical}"
                for r in request.app.router.routes()
                if r.resource is not None
                and r.resource.canonical.startswith("/_sim")
                and r.method != "HEAD"
            ),
        },
    )


async def reset(request: web.Request) -> web.Response:
    """Back to the seeded initial state; `{"keep_endpoints": false}` also drops endpoints."""
    body = await _body(request)
    sim = request.app[SIM_KEY]
    sim.reset(keep_endpoints=bool(body.get("keep_endpoints", True)))
    return ok(sim, {"reset": True})


async def journal(request: web.Request) -> web.Response:
    """Every /v1 request so far."""
    sim = request.app[SIM_KEY]
    return ok(sim, [e.to_json() for e in sim.journal])


async def deliveries(request: web.Request) -> web.Response:
    """The webhook delivery log, plus how many deliveries are still pending."""
    sim = request.app[SIM_KEY]
    return ok(
        sim, {"deliveries": [d.to_json() for d in sim.deliveries], "pending": sim.emitter.pending}
    )


async def wait_idle(request: web.Request) -> web.Response:
    """Wait until no delivery is pending (`{"timeout": seconds}`, default 10)."""
    body = await _body(request)
    sim = request.app[SIM_KEY]
    try:
        await sim.wait_deliveries_idle(float(body.get("timeout", 10.0)))
    except TimeoutError as exc:
        raise ApiError(409, str(exc)) from None
    return ok(sim, {"pending": 0})


async def list_endpoints(request: web.Request) -> web.Response:
    """Registered webhook endpoints (secrets not shown)."""
    sim = request.app[SIM_KEY]
    return ok(sim, [e.to_json() for e in sim.emitter.endpoints.values()])


async def add_endpoint(request: web.Request) -> web.Response:
    """Register `{url, secret, events?, mode?, header?, scheme?, nested?}` (default org)."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    unknown = sorted(set(body) - ENDPOINT_KEYS)
    if unknown:
        raise bad_request(unknown[0], f"unknown key; known: {', '.join(sorted(ENDPOINT_KEYS))}")
    for name in ("url", "secret"):
        if not isinstance(body.get(name), str):
            raise bad_request(name, "is required and must be a string")
    events = body.get("events")
    if events is not None and not (
        isinstance(events, list) and all(isinstance(e, str) for e in events)
    ):
        raise bad_request("events", "must be an array of event names")
    try:
        endpoint_id = sim.add_endpoint(
            body["url"],
            body["secret"],
            events,
            mode=str(body.get("mode", "token")),
            header=body.get("header"),
            scheme=str(body.get("scheme", "bearer")),
            nested=bool(body.get("nested", False)),
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return ok(sim, sim.emitter.endpoints[endpoint_id].to_json(), 201)


async def list_tickets(request: web.Request) -> web.Response:
    """All tickets of the default organisation, oldest first."""
    sim = request.app[SIM_KEY]
    return ok(sim, sim.tickets())


async def create_ticket(request: web.Request) -> web.Response:
    """Create a ticket as an agent would (may also set tags); emits `ticket:created`."""
    sim = request.app[SIM_KEY]
    return ok(sim, sim.create_ticket(**await _body(request)), 201)


async def change_ticket(request: web.Request) -> web.Response:
    """An agent's edit with PATCH fields (plus tags); emits webhooks; answers the ticket."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    return ok(sim, sim.change_ticket(request.match_info["id"], **body))


async def get_faults(request: web.Request) -> web.Response:
    """The current fault knobs."""
    sim = request.app[SIM_KEY]
    return ok(sim, sim.faults.to_json())


async def set_faults(request: web.Request) -> web.Response:
    """Set knobs: `{clear?, webhooks?: {duplicate, …}, fail_next?: {method, path, status, …}}`."""
    sim = request.app[SIM_KEY]
    try:
        sim.faults.apply_json(await _body(request))
    except (ValueError, TypeError) as exc:
        raise ApiError(400, str(exc)) from None
    return ok(sim, sim.faults.to_json())


async def get_settings(request: web.Request) -> web.Response:
    """The runtime switches."""
    sim = request.app[SIM_KEY]
    return ok(sim, vars(sim.settings))


async def set_settings(request: web.Request) -> web.Response:
    """Flip runtime switches, e.g. `{"auth_schemes": "bearer", "rate_limit_per_minute": 5}`."""
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
            raise bad_request(name, f"must be one of {', '.join(map(str, choices))}")
    for name, value in body.items():
        setattr(sim.settings, name, value)
    if "rate_limit_per_minute" in body:
        sim.limiter.reset()
    return ok(sim, vars(sim.settings))


async def seed(request: web.Request) -> web.Response:
    """Create `{"tickets": N}` realistic tickets (`"emit": false` to skip their webhooks)."""
    sim = request.app[SIM_KEY]
    body = await _body(request)
    count = body.get("tickets", 10)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 100_000:
        raise bad_request("tickets", "must be an integer between 0 and 100000")
    created = sim.seed_tickets(count, emit=bool(body.get("emit", True)))
    return ok(sim, {"created": len(created), "ticket_ids": [t["id"] for t in created]}, 201)


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
    r.add_get("/_sim/faults", get_faults)
    r.add_post("/_sim/faults", set_faults)
    r.add_get("/_sim/settings", get_settings)
    r.add_post("/_sim/settings", set_settings)
    r.add_post("/_sim/seed", seed)
