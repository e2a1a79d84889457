"""The `/api/v1` routes and the middleware that every request passes: request id, scripted
faults, routing errors, auth, rate limit, error rendering and the journal."""

from __future__ import annotations

import logging
import re
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.common import gateway
from simulator.common.faults import ScriptedFailure
from simulator.common.journal import masked, request_fields
from simulator.common.routes import below
from simulator.inboxops import openapi
from simulator.inboxops.journal import JournalEntry
from simulator.inboxops.messages import parse_types
from simulator.inboxops.models import Workspace
from simulator.inboxops.problems import ROUTING_ERRORS, ApiError, bad_request, render
from simulator.inboxops.search import parse_query, run_query
from simulator.inboxops.store import INCLUDES

if TYPE_CHECKING:
    from simulator.inboxops.sim import InboxOpsSimulator

log = logging.getLogger("simulator.inboxops")
API = "/api/v1"
PUBLIC = frozenset({API + "/openapi.json", API + "/docs"})
READ_METHODS = frozenset({"GET", "HEAD"})
SIM_KEY: web.AppKey[InboxOpsSimulator] = web.AppKey("inboxops_simulator")
WORKSPACE: web.RequestKey[Workspace] = web.RequestKey("inboxops_workspace")
BODY: web.RequestKey[object] = web.RequestKey("inboxops_json")
NOTES: web.RequestKey[tuple[str, ...]] = web.RequestKey("inboxops_notes")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
FAILURES = gateway.Failures(
    ApiError,
    ROUTING_ERRORS,
    lambda: ApiError(500, "internal_error", "the simulator failed; see its log"),
    log,
)


def ok(payload: Any, status: int = 200) -> web.Response:
    """A JSON answer."""
    return web.json_response(payload, status=status, dumps=gateway.dumps)


def json_body(request: web.Request) -> dict[str, Any]:
    """The parsed JSON object body, or 400."""
    return gateway.stored_object(request, BODY, bad_request)


@web.middleware
async def middleware(request: web.Request, handler: gateway.Handler) -> web.StreamResponse:
    """Fire due reminders, then serve the request with its `X-Request-Id` (the caller's when it is
    valid); `/api/v1` ones are checked, limited and journaled."""
    sim = request.app[SIM_KEY]
    # The journal stamps a request when it arrived, as a helpdesk's rate limit counts it.
    arrived = sim.clock.now()
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.match(given) else sim.next_request_id()
    is_api = request.path == API or request.path.startswith(API + "/")
    workspace_id: list[str | None] = [None]
    # Reminders due by now fire before the request sees the tickets.
    sim.fire_due_reminders()
    body = await gateway.read_json(request, BODY) if is_api else None

    def _render(err: ApiError) -> web.StreamResponse:
        return render(err, request_id, legacy=sim.settings.legacy_errors)

    resp = await FAILURES.answer(
        request,
        handler,
        partial(_api, request, handler, sim, workspace_id) if is_api else None,
        _render,
    )
    resp.headers["X-Request-Id"] = request_id
    if is_api:
        sim.record(
            JournalEntry(
                **request_fields(request, body, resp.status, arrived),
                request_id=request_id,
                workspace_id=workspace_id[0],
                headers=masked(dict(request.headers), 11),
                notes=request.get(NOTES, ()),
            )
        )
    return resp


def _scripted_error(scripted: ScriptedFailure) -> ApiError:
    return ApiError.for_status(scripted.status, retry_after=scripted.retry_after)


async def _api(
    request: web.Request,
    handler: gateway.Handler,
    sim: InboxOpsSimulator,
    workspace_id: list[str | None],
) -> web.StreamResponse:
    await FAILURES.admit(request, sim.faults, _scripted_error)
    if request.path in PUBLIC:
        return await handler(request)

    header = request.headers.get("Authorization")
    if not header:
        raise ApiError(
            401, "unauthorized", "missing Authorization header; send 'Authorization: Bearer ixk_…'"
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith("ixk_"):
        raise ApiError(
            401, "unauthorized", "malformed Authorization header; expected 'Bearer ixk_…'"
        )
    key = sim.store.keys.get(token)
    if key is None:
        raise ApiError(401, "unauthorized", "unknown API key; create one under Settings → API")
    if key.retired:
        raise ApiError(401, "unauthorized", "this API key was revoked; create a new one")
    workspace_id[0] = key.tenant_id
    ws = sim.store.workspaces[key.tenant_id]
    if not ws.entitled:
        raise ApiError(
            403, "forbidden", "this workspace's plan has no API access (entitlement api_webhooks)"
        )
    if key.scope == "read_only" and request.method not in READ_METHODS:
        raise ApiError(
            403,
            "insufficient_scope",
            f"this key is read-only; {request.method} needs a read and write key",
        )

    limit_headers: dict[str, str] = {}
    limit = sim.settings.rate_limit_per_minute
    if limit:
        decision = sim.limiter.check(ws.id, limit, sim.settings.rate_limit_window)
        if sim.settings.rate_limit_headers:
            limit_headers = {
                "X-RateLimit-Limit": str(decision.limit),
                "X-RateLimit-Remaining": str(decision.remaining),
                "X-RateLimit-Reset": str(decision.reset_after),
            }
        if not decision.allowed:
            raise ApiError(
                429,
                "rate_limit_exceeded",
                f"rate limit of {limit} requests per minute exceeded for this workspace; "
                f"retry after {decision.reset_after} s",
                headers=limit_headers,
                retry_after=decision.reset_after,
            )
    request[WORKSPACE] = ws
    resp = await handler(request)
    resp.headers.update(limit_headers)
    return resp


# ----------------------------------------------------------------------- handlers


async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 document (no auth)."""
    return ok(openapi.document())


async def get_docs(request: web.Request) -> web.Response:
    """A small HTML page pointing at the OpenAPI document (no auth)."""
    return web.Response(text=openapi.DOCS_HTML, content_type="text/html")


async def list_tickets(request: web.Request) -> web.Response:
    """`GET /tickets`: filters, sort and paging."""
    sim, ws = request.app[SIM_KEY], request[WORKSPACE]
    q = parse_query(
        ws,
        list(request.query.items()),
        default_per_page=sim.config.default_per_page,
        max_per_page=sim.config.max_per_page,
    )
    page, total = run_query(ws, q)
    data = [sim.store.list_item(r) for r in page]
    return ok({"data": data, "meta": {"page": q.page, "per_page": q.per_page, "total": total}})


async def create_ticket(request: web.Request) -> web.Response:
    """`POST /tickets`, with optional Idempotency-Key."""
    sim, ws = request.app[SIM_KEY], request[WORKSPACE]
    body = json_body(request)
    key = request.headers.get("Idempotency-Key")
    if key is None:
        change = sim.store.create_ticket(ws, body)
        sim.publish(ws, [change])
        return ok({"data": change.ticket}, 201)
    created, ticket = sim.store.create_idempotent(ws, body, key)
    if created is not None:
        sim.publish(ws, [created])
    return ok({"data": ticket}, 201)


async def get_ticket(request: web.Request) -> web.Response:
    """`GET /tickets/{id}` by uuid or ticket_number, with `include=`."""
    sim, ws = request.app[SIM_KEY], request[WORKSPACE]
    include: list[str] = []
    for name in request.query.get("include", "").split(","):
        name = name.strip()
        if not name:
            continue
        if name not in INCLUDES:
            raise bad_request("include", f"{name!r} is not one of {', '.join(INCLUDES)}")
        if name not in include:
            include.append(name)
    rec = sim.store.ticket(ws, request.match_info["id"])
    return ok({"data": sim.store.render(ws, rec, include)})


async def patch_ticket(request: web.Request) -> web.Response:
    """`PATCH /tickets/{id}`: partial update; a no-op changes nothing and emits nothing."""
    sim, ws = request.app[SIM_KEY], request[WORKSPACE]
    body = json_body(request)
    rec = sim.store.ticket(ws, request.match_info["id"])
    change = sim.store.update_ticket(ws, rec, body)
    request[NOTES] = change.ignored
    sim.publish(ws, [change])
    return ok({"data": change.ticket})


async def bulk_tickets(request: web.Request) -> web.Response:
    """`POST /tickets/bulk`: one operation over many tickets; per-ticket webhooks."""
    sim, ws = request.app[SIM_KEY], request[WORKSPACE]
    result = sim.store.bulk(ws, json_body(request), unknown_ids=sim.settings.bulk_unknown_ids)
    sim.publish(ws, result.changes, burst=sim.faults.webhooks.burst)
    return ok({"data": result.data})


async def list_messages(request: web.Request) -> web.Response:
    """`GET /tickets/{id}/messages`: emails and internal notes, oldest first, no drafts."""
    sim, ws = request.app[SIM_KEY], request[WORKSPACE]
    rec = sim.store.ticket(ws, request.match_info["id"])
    types = parse_types(request.query.get("types"))
    return ok(_listing(sim.store.messages(rec, types)))


async def add_note(request: web.Request) -> web.Response:
    """`POST /tickets/{id}/messages`: internal notes only."""
    sim, ws = request.app[SIM_KEY], request[WORKSPACE]
    rec = sim.store.ticket(ws, request.match_info["id"])
    message, change = sim.store.add_note(
        rec, json_body(request), touch=sim.settings.message_updates_ticket
    )
    sim.publish(ws, [change])
    return ok({"data": message}, 201)


def _listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": items, "meta": {"page": 1, "per_page": max(len(items), 1), "total": len(items)}}


async def list_tags(request: web.Request) -> web.Response:
    """`GET /tags`."""
    return ok(_listing([t.to_json() for t in request[WORKSPACE].tags.values()]))


async def create_tag(request: web.Request) -> web.Response:
    """`POST /tags`: 201, or 409 `conflict` for a duplicate name."""
    sim, ws = request.app[SIM_KEY], request[WORKSPACE]
    return ok({"data": sim.store.create_tag(ws, json_body(request)).to_json()}, 201)


async def list_statuses(request: web.Request) -> web.Response:
    """`GET /ticket_statuses`, ordered by position."""
    rows = sorted(request[WORKSPACE].statuses, key=lambda s: s.position)
    return ok(_listing([s.to_json() for s in rows]))


async def list_priorities(request: web.Request) -> web.Response:
    """`GET /ticket_priorities`, ordered by position."""
    rows = sorted(request[WORKSPACE].priorities, key=lambda p: p.position)
    return ok(_listing([p.to_json() for p in rows]))


async def list_inboxes(request: web.Request) -> web.Response:
    """`GET /inboxes`."""
    return ok(_listing([i.to_json() for i in request[WORKSPACE].inboxes]))


#: The vendor API under /api/v1.
API_ROUTES = below(
    API,
    {
        "/openapi.json": {"GET": get_openapi},
        "/docs": {"GET": get_docs},
        "/tickets": {"GET": list_tickets, "POST": create_ticket},
        "/tickets/bulk": {"POST": bulk_tickets},
        "/tickets/{id}": {"GET": get_ticket, "PATCH": patch_ticket},
        "/tickets/{id}/messages": {"GET": list_messages, "POST": add_note},
        "/tags": {"GET": list_tags, "POST": create_tag},
        "/ticket_statuses": {"GET": list_statuses},
        "/ticket_priorities": {"GET": list_priorities},
        "/inboxes": {"GET": list_inboxes},
    },
)
