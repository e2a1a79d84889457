"""The `/v1` routes and the middleware every request passes: scripted faults, routing errors,
auth, rate limit, error rendering and the journal."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.common import gateway
from simulator.common.clock import iso
from simulator.common.journal import masked, request_fields
from simulator.common.routes import below
from simulator.thena.faults import ScriptedFailure
from simulator.thena.journal import MASKED, JournalEntry
from simulator.thena.models import Org
from simulator.thena.problems import ROUTING_ERRORS, ApiError, bad_request, render

if TYPE_CHECKING:
    from simulator.thena.sim import ThenaSimulator

log = logging.getLogger("simulator.thena")
API = "/v1"
SIM_KEY: web.AppKey[ThenaSimulator] = web.AppKey("thena_simulator")
ORG: web.RequestKey[Org] = web.RequestKey("thena_org")
BODY: web.RequestKey[object] = web.RequestKey("thena_json")
FAILURES = gateway.Failures(
    ApiError, ROUTING_ERRORS, lambda: ApiError(500, "the simulator failed; see its log"), log
)


def ok(sim: ThenaSimulator, data: Any, status: int = 200) -> web.Response:
    """The success envelope `{status: true, message, timestamp, data}`."""
    body = {"status": True, "message": "Success", "timestamp": iso(sim.clock.now()), "data": data}
    return web.json_response(body, status=status, dumps=gateway.dumps)


def json_body(request: web.Request) -> Any:
    """The parsed JSON body, or 400."""
    return gateway.stored_json(request, BODY, bad_request, "a JSON body is required")


@web.middleware
async def middleware(request: web.Request, handler: gateway.Handler) -> web.StreamResponse:
    """Wrap every request; `/v1` ones are checked, limited and journaled."""
    sim = request.app[SIM_KEY]
    # The journal stamps a request when it arrived, as a helpdesk's rate limit counts it.
    arrived = sim.clock.now()
    is_api = request.path == API or request.path.startswith(API + "/")
    org_id: list[str | None] = [None]
    body = await gateway.read_json(request, BODY) if is_api else None

    def _render(err: ApiError) -> web.StreamResponse:
        return render(err, error_format=sim.settings.error_format, timestamp=iso(sim.clock.now()))

    resp = await FAILURES.answer(
        request, handler, partial(_api, request, handler, sim, org_id) if is_api else None, _render
    )
    if is_api:
        sim.record(
            JournalEntry(
                **request_fields(request, body, resp.status, arrived),
                org_id=org_id[0],
                headers=masked(dict(request.headers), 10, MASKED),
            )
        )
    return resp


def _scripted_error(sim: ThenaSimulator, scripted: ScriptedFailure) -> ApiError:
    headers: dict[str, str] = {}
    if scripted.retry_after is not None:
        headers["Retry-After"] = str(scripted.retry_after)
    if scripted.reset_after is not None:
        reset = int(sim.clock.now().timestamp()) + scripted.reset_after
        headers["X-RateLimit-Reset"] = str(reset)
    err = ApiError.for_status(scripted.status)
    err.headers.update(headers)
    return err


async def _api(
    request: web.Request, handler: gateway.Handler, sim: ThenaSimulator, org_id: list[str | None]
) -> web.StreamResponse:
    await FAILURES.admit(request, sim.faults, partial(_scripted_error, sim))
    org = authenticate(sim, request)
    org_id[0] = org.id
    limit_headers: dict[str, str] = {}
    limit = sim.settings.rate_limit_per_minute
    if limit:
        decision = sim.limiter.check(org.id, limit, sim.settings.rate_limit_window)
        reset_at = int(sim.clock.now().timestamp()) + decision.reset_after
        limit_headers = {
            "X-RateLimit-Limit": str(decision.limit),
            "X-RateLimit-Remaining": str(decision.remaining),
            "X-RateLimit-Reset": str(reset_at),
            "X-RateLimit-IP": request.remote or "",
            # Every credential belongs to the organisation's first agent.
            "X-RateLimit-UserID": org.agents[0].id,
            "X-RateLimit-OrgID": org.id,
            "X-RateLimit-Path": request.path,
        }
        if not decision.allowed:
            headers = dict(limit_headers)
            if sim.settings.retry_after_header:
                headers["Retry-After"] = str(decision.reset_after)
            raise ApiError(
                429,
                f"ThrottlerException: Too Many Requests (limit {limit} per minute for this "
                f"organisation; resets at {reset_at})",
                headers=headers,
            )
    request[ORG] = org
    resp = await handler(request)
    resp.headers.update(limit_headers)
    return resp


def authenticate(sim: ThenaSimulator, request: web.Request) -> Org:
    """The organisation the request's credentials belong to, or 401/400/403."""
    schemes = sim.settings.auth_schemes
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("Authorization")
    org_header = request.headers.get("x-org-id")
    if key is not None and schemes != "bearer":
        cred = sim.store.credentials.get(("api-key", key.strip()))
        if cred is None:
            raise ApiError(401, "Invalid API key")
        if org_header and org_header != cred.org_id:
            raise ApiError(401, "x-org-id does not match the API key's organisation")
        return sim.store.orgs[cred.org_id]
    if authorization is not None and schemes != "api-key":
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "malformed Authorization header; expected 'Bearer <token>'")
        cred = sim.store.credentials.get(("bearer", token.strip()))
        if cred is None:
            raise ApiError(401, "Invalid or expired token")
        if not org_header:
            raise ApiError(
                sim.settings.missing_org_status,
                "missing x-org-id header: a bearer token needs the organisation id",
            )
        if org_header != cred.org_id:
            raise ApiError(403, "the token's user is not a member of this organisation")
        return sim.store.orgs[cred.org_id]
    if schemes == "api-key":
        raise ApiError(401, "missing x-api-key header")
    if schemes == "bearer":
        raise ApiError(401, "missing Authorization: Bearer <token> (with x-org-id)")
    raise ApiError(
        401, "missing credentials: send x-api-key, or Authorization: Bearer <token> with x-org-id"
    )


# ----------------------------------------------------------------------- handlers


async def list_tickets(request: web.Request) -> web.Response:
    """`GET /v1/tickets`: teamId, dateRange, zero-based page, limit."""
    sim, org = request.app[SIM_KEY], request[ORG]
    items, total, page, limit = sim.store.list_tickets(org, request.query)
    if sim.settings.list_shape == "object":
        return ok(sim, {"tickets": items, "total": total, "page": page, "limit": limit})
    return ok(sim, items)


async def create_ticket(request: web.Request) -> web.Response:
    """`POST /v1/tickets`: 201 with the ticket; a known dedup key answers the existing ticket,
    or 409 with `dedup_conflict`."""
    sim, org = request.app[SIM_KEY], request[ORG]
    change, rec = sim.store.create_ticket(org, json_body(request))
    if change is not None:
        sim.publish([change])
    elif sim.settings.dedup_conflict:
        raise ApiError(
            409,
            f"deDuplicationKey: ticket {rec['id']} was already created with this key",
            field="deDuplicationKey",
        )
    return ok(sim, sim.store.render(org, rec), 201)


async def bulk_create(request: web.Request) -> web.Response:
    """`POST /v1/tickets/bulk`: 201 `[{id, title}]`; 400 naming the index with stopOnError."""
    sim, org = request.app[SIM_KEY], request[ORG]
    result = sim.store.bulk_create(org, json_body(request), atomic=sim.settings.bulk_create_atomic)
    sim.publish(result.changes)
    if result.error is not None:
        raise result.error
    return ok(sim, result.data, 201)


async def bulk_update(request: web.Request) -> web.Response:
    """`PATCH /v1/tickets/bulk`: `{updated, skipped}`; per-ticket webhooks."""
    sim, org = request.app[SIM_KEY], request[ORG]
    data, changes = sim.store.bulk_update(org, json_body(request))
    sim.publish(changes, burst=sim.faults.webhooks.burst)
    return ok(sim, data)


async def get_ticket(request: web.Request) -> web.Response:
    """`GET /v1/tickets/{id}`."""
    sim, org = request.app[SIM_KEY], request[ORG]
    rec = sim.store.record(org, request.match_info["id"])
    return ok(sim, sim.store.render(org, rec))


async def patch_ticket(request: web.Request) -> web.Response:
    """`PATCH /v1/tickets/{id}`: partial update; a no-op changes nothing and emits nothing."""
    sim, org = request.app[SIM_KEY], request[ORG]
    body = json_body(request)
    rec = sim.store.record(org, request.match_info["id"])
    sim.publish([sim.store.update_ticket(org, rec, body)])
    return ok(sim, sim.store.render(org, rec))


#: The vendor API under /v1.
API_ROUTES = below(
    API,
    {
        "/tickets": {"GET": list_tickets, "POST": create_ticket},
        "/tickets/bulk": {"POST": bulk_create, "PATCH": bulk_update},
        "/tickets/{id}": {"GET": get_ticket, "PATCH": patch_ticket},
    },
)
