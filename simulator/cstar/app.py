"""The team-scoped `/api/v1/teams/{teamId}` routes and the middleware every request passes:
request id, scripted faults, routing errors, auth, team check, rate limit, idempotency, error
rendering and the journal."""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.common import gateway
from simulator.common.clock import iso
from simulator.common.faults import ScriptedFailure
from simulator.common.journal import masked, request_fields
from simulator.common.keys import ApiKey
from simulator.common.routes import below
from simulator.cstar.journal import JournalEntry
from simulator.cstar.problems import ROUTING_ERRORS, ApiError, invalid, not_found, render
from simulator.cstar.store import Team

if TYPE_CHECKING:
    from simulator.cstar.sim import CStarSimulator

log = logging.getLogger("simulator.cstar")
API = "/api/v1"
TEAM_ROOT = API + "/teams/{team}"
READ_METHODS = frozenset({"GET", "HEAD"})
IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})
SIM_KEY: web.AppKey[CStarSimulator] = web.AppKey("cstar_simulator")
TEAM: web.RequestKey[Team] = web.RequestKey("cstar_team")
BODY: web.RequestKey[object] = web.RequestKey("cstar_json")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("cstar_request_id")
FAILURES = gateway.Failures(
    ApiError,
    ROUTING_ERRORS,
    lambda: ApiError(500, "internal_error", "the simulator failed; see its log"),
    log,
)


def ok(
    request: web.Request, data: Any, status: int = 200, *, meta: bool = True, **extra: Any
) -> web.Response:
    """The success envelope `{success: true, data, meta: {requestId, timestamp}}` (no `meta`
    where the endpoint's page shows none)."""
    sim = request.app[SIM_KEY]
    payload: dict[str, Any] = {"success": True, "data": data}
    if meta:
        payload["meta"] = {"requestId": request[REQUEST_ID], "timestamp": iso(sim.clock.now())}
    for key, value in extra.items():
        if key == "pagination" and sim.settings.pagination == "meta":
            payload["meta"]["pagination"] = value
        else:
            payload[key] = value
    return web.json_response(payload, status=status, dumps=gateway.dumps)


def json_body(request: web.Request) -> dict[str, Any]:
    """The parsed JSON object body, or 400."""
    return gateway.stored_object(request, BODY, invalid)


@web.middleware
async def middleware(request: web.Request, handler: gateway.Handler) -> web.StreamResponse:
    """Give every request an `X-Request-Id`; `/api/v1` ones are checked, limited, replayed for a
    known Idempotency-Key and journaled."""
    sim = request.app[SIM_KEY]
    # The journal stamps a request when it arrived, as a helpdesk's rate limit counts it.
    arrived = sim.clock.now()
    request_id = sim.next_request_id()
    request[REQUEST_ID] = request_id
    is_api = request.path.startswith(API + "/")
    seen: dict[str, Any] = {"team": None, "replayed": False, "limit_headers": {}}
    body = await gateway.read_json(request, BODY) if is_api else None
    resp = await FAILURES.answer(
        request,
        handler,
        partial(_api, request, handler, sim, seen) if is_api else None,
        partial(_render, sim, request_id=request_id),
    )
    resp.headers["X-Request-Id"] = request_id
    resp.headers.update(seen["limit_headers"])
    if is_api:
        sim.record(
            JournalEntry(
                **request_fields(request, body, resp.status, arrived),
                request_id=request_id,
                team_id=seen["team"],
                headers=masked(dict(request.headers), 15),
                replayed=seen["replayed"],
            )
        )
    return resp


def _render(sim: CStarSimulator, err: ApiError, *, request_id: str) -> web.Response:
    return render(
        err,
        request_id,
        sim.clock.now(),
        legacy=sim.settings.legacy_errors,
        retry_after_in=sim.settings.retry_after_in,
    )


def _unauthenticated(sim: CStarSimulator, code: str, message: str) -> ApiError:
    """A 401 with the error-code article's code, or as the bulk page shows every 401:
    "401 Authentication failed — missing or invalid API key"."""
    if sim.settings.auth_error_codes == "detailed":
        return ApiError(401, code, message)
    return ApiError(401, "authentication_required", "Invalid or expired API key")


def _authenticate(request: web.Request, sim: CStarSimulator) -> ApiKey:
    header = request.headers.get("Authorization")
    if not header:
        raise _unauthenticated(
            sim,
            "authentication_required",
            "No API key provided; send 'Authorization: Bearer sk_live_…'",
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(("sk_", "pk_")):
        raise _unauthenticated(
            sim,
            "invalid_key_format",
            "Malformed API key; expected 'Bearer sk_live_…', 'sk_test_…', 'pk_live_…' or 'pk_test_…'",
        )
    key = sim.store.keys.get(token)
    if key is None:
        raise _unauthenticated(sim, "invalid_api_key", "Invalid API key provided")
    if key.retired:
        raise _unauthenticated(sim, "key_expired", "This API key has expired; create a new one")
    return key


def _scripted_error(scripted: ScriptedFailure) -> ApiError:
    return ApiError.for_status(scripted.status, retry_after=scripted.retry_after)


async def _api(
    request: web.Request, handler: gateway.Handler, sim: CStarSimulator, seen: dict[str, Any]
) -> web.StreamResponse:
    await FAILURES.admit(request, sim.faults, _scripted_error)
    key = _authenticate(request, sim)
    seen["team"] = key.tenant_id
    if request.match_info.get("team") != key.tenant_id:
        # The bulk page's 403 covers "wrong key type or team access" with one code.
        raise ApiError(
            403,
            "team_access_denied"
            if sim.settings.auth_error_codes == "detailed"
            else "insufficient_permissions",
            f"This API key cannot access team {request.match_info.get('team')!r}",
        )
    team = sim.store.teams[key.tenant_id]
    if key.scope == "publishable" and request.method not in READ_METHODS:
        raise ApiError(
            403, sim.settings.publishable_write_code, "Secret key required for this endpoint"
        )

    limit = sim.settings.rate_limit
    if limit:
        decision = sim.limiter_for(limit).check(key.key, limit.for_kind(key.scope), "fixed")
        reset_at = int(sim.clock.now().timestamp()) + decision.reset_after
        seen["limit_headers"] = {
            "X-RateLimit-Limit": str(decision.limit),
            "X-RateLimit-Remaining": str(decision.remaining),
            "X-RateLimit-Reset": str(reset_at),
            "X-RateLimit-Window": f"{limit.window_s:g}",
        }
        if not decision.allowed:
            raise ApiError(
                429, "rate_limit_exceeded", "Rate limit exceeded", retry_after=decision.reset_after
            )
    request[TEAM] = team

    idem_key = request.headers.get("Idempotency-Key")
    if idem_key is None or request.method not in IDEMPOTENT_METHODS:
        return await handler(request)
    body = request.get(BODY)
    entry = sim.store.replay(team, idem_key, request.method, request.path, body)
    if entry is not None:
        seen["replayed"] = True
        return web.json_response(
            entry.response,
            status=entry.status,
            dumps=gateway.dumps,
            headers={"Idempotent-Replayed": "true"},
        )
    resp = await handler(request)
    if isinstance(resp, web.Response) and 200 <= resp.status < 300 and resp.text:
        sim.store.remember(
            team, idem_key, request.method, request.path, body, resp.status, json.loads(resp.text)
        )
    return resp


# ----------------------------------------------------------------------- handlers


def _csv(value: str) -> set[str]:
    return {v.strip() for v in value.split(",") if v.strip()}


def _int_param(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise invalid(name, f"must be an integer from 1 to {high} (got {raw!r})")
    return int(raw)


async def list_tickets(request: web.Request) -> web.Response:
    """`GET /tickets`: filters status, priority, assignedTo, customerId, search; page, pageSize."""
    sim, team = request.app[SIM_KEY], request[TEAM]
    q = request.query
    page = _int_param(request, "page", 1, 1_000_000)
    size = _int_param(request, "pageSize", sim.config.default_page_size, sim.config.max_page_size)
    statuses, priorities = _csv(q.get("status", "")), _csv(q.get("priority", ""))
    assignee, customer = q.get("assignedTo", ""), q.get("customerId", "")
    search = q.get("search", "").strip().lower()
    rows = [
        t
        for t in team.tickets.values()
        if (not statuses or t["status"] in statuses)
        and (not priorities or t["priority"] in priorities)
        and (not assignee or t["assignedTo"] == assignee)
        and (not customer or t["customerId"] == customer)
        and (not search or search in t["title"].lower() or search in (t["notes"] or "").lower())
    ]
    rows.reverse()  # newest first
    total = len(rows)
    chunk = rows[(page - 1) * size : page * size]
    expand = "customer" in _csv(q.get("expand", ""))
    data = []
    for ticket in chunk:
        item = sim.store.render(team, ticket)
        if expand:
            found = team.customers.get(ticket["customerId"] or "")
            item["customer"] = found.to_json() if found else None
        data.append(item)
    pages = max(1, -(-total // size))
    if sim.settings.pagination == "meta":
        pagination: dict[str, Any] = {
            "page": page,
            "pageSize": size,
            "total": total,
            "totalPages": pages,
        }
    else:
        pagination = {"total": total, "page": page, "pageSize": size, "hasMore": page < pages}
    return ok(request, data, pagination=pagination)


async def create_ticket(request: web.Request) -> web.Response:
    """`POST /tickets`."""
    sim, team = request.app[SIM_KEY], request[TEAM]
    change = sim.store.create_ticket(team, json_body(request))
    sim.publish(team, [change], request_id=request[REQUEST_ID])
    return ok(request, change.ticket, 201)


async def get_ticket(request: web.Request) -> web.Response:
    """`GET /tickets/{id}`: messages inlined."""
    sim, team = request.app[SIM_KEY], request[TEAM]
    ticket = sim.store.ticket(team, request.match_info["id"])
    return ok(request, sim.store.render(team, ticket, messages=True))


async def patch_ticket(request: web.Request) -> web.Response:
    """`PATCH /tickets/{id}`: a no-op changes nothing and emits nothing."""
    sim, team = request.app[SIM_KEY], request[TEAM]
    body = json_body(request)
    ticket = sim.store.ticket(team, request.match_info["id"])
    change = sim.store.update_ticket(team, ticket, body)
    sim.publish(team, [change], request_id=request[REQUEST_ID])
    return ok(request, change.ticket)


async def delete_ticket(request: web.Request) -> web.Response:
    """`DELETE /tickets/{id}` → `{deleted: true, id}`."""
    sim, team = request.app[SIM_KEY], request[TEAM]
    ticket = sim.store.ticket(team, request.match_info["id"])
    change = sim.store.delete_ticket(team, ticket)
    sim.publish(team, [change], request_id=request[REQUEST_ID])
    return ok(request, {"deleted": True, "id": ticket["id"]})


async def list_messages(request: web.Request) -> web.Response:
    """`GET /tickets/{id}/messages`."""
    sim, team = request.app[SIM_KEY], request[TEAM]
    ticket = sim.store.ticket(team, request.match_info["id"])
    return ok(request, [dict(m) for m in team.messages.get(ticket["id"], [])])


async def add_message(request: web.Request) -> web.Response:
    """`POST /tickets/{id}/messages` `{content, sender}`."""
    sim, team = request.app[SIM_KEY], request[TEAM]
    ticket = sim.store.ticket(team, request.match_info["id"])
    change = sim.store.add_message(team, ticket, json_body(request))
    sim.publish(team, [change], request_id=request[REQUEST_ID])
    return ok(request, change.message, 201)


async def bulk(request: web.Request) -> web.Response:
    """`POST /bulk`: update or delete up to 100 tickets; per-ticket webhooks."""
    sim, team = request.app[SIM_KEY], request[TEAM]
    result, changes = sim.store.bulk(team, json_body(request), fail_ids=sim.faults.bulk_fail_ids)
    sim.publish(team, changes, request_id=request[REQUEST_ID], burst=sim.faults.webhooks.burst)
    # The bulk page's 200: `{"success": true, "data": {"object": "bulk_result", ...}}`, no meta.
    return ok(request, result, meta=False)


async def list_customers(request: web.Request) -> web.Response:
    """`GET /customers` (one page)."""
    customers = [c.to_json() for c in request[TEAM].customers.values()]
    pagination = {"page": 1, "pageSize": max(1, len(customers)), "total": len(customers)}
    if request.app[SIM_KEY].settings.pagination == "meta":
        pagination["totalPages"] = 1
    else:
        pagination["hasMore"] = False
    return ok(request, customers, pagination=pagination)


async def get_customer(request: web.Request) -> web.Response:
    """`GET /customers/{id}`."""
    customer = request[TEAM].customers.get(request.match_info["id"])
    if customer is None:
        raise not_found("customer", request.match_info["id"])
    return ok(request, customer.to_json())


#: The team-scoped API.
API_ROUTES = below(
    TEAM_ROOT,
    {
        "/tickets": {"GET": list_tickets, "POST": create_ticket},
        "/tickets/{id}": {"GET": get_ticket, "PATCH": patch_ticket, "DELETE": delete_ticket},
        "/tickets/{id}/messages": {"GET": list_messages, "POST": add_message},
        "/bulk": {"POST": bulk},
        "/customers": {"GET": list_customers},
        "/customers/{id}": {"GET": get_customer},
    },
)
