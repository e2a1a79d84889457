"""A local Acme Desk on `simulator.common`: tickets, `GET/PATCH /api/tickets/{id}`, signed webhooks.

Only what is Acme's own is here: the ticket store, the two API routes, the bearer key check, the
`{error}` answers, the webhook envelope and its signature. The life cycle, faults, journal, control
routes and delivery (ordering, retries, the log) are the shared ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from aiohttp import web

from simulator.common import gateway
from simulator.common.base import SimulatorBase
from simulator.common.bundle import Example, SimulatorBundle
from simulator.common.clock import IdSource, iso
from simulator.common.config import ClockConfig
from simulator.common.control import Controls, ControlStyle
from simulator.common.faults import Faults
from simulator.common.journal import Request, request_fields
from simulator.common.serving import app_factory, runner
from simulator.common.webhooks import (
    Delivery,
    EndpointBase,
    Signed,
    WebhookEmitterBase,
    check_endpoint,
    require_loop,
)
from tests.acmedesk.vocabulary import VOCABULARY
from tests.acmedesk.webhook import SIGNATURE_HEADER, sign
from ticketwire.errors import ConfigError
from ticketwire.secret import Secret

log = logging.getLogger("tests.acmedesk.simulator")
API = "/api"
SIM_KEY: web.AppKey[AcmeDeskSimulator] = web.AppKey("acmedesk_simulator")
BODY: web.RequestKey[object] = web.RequestKey("acmedesk_json")
STATUSES = tuple(sorted(set(VOCABULARY.status_to.values())))
PRIORITIES = tuple(sorted(set(VOCABULARY.priority_to.values())))


@dataclass(frozen=True)
class AcmeDeskSimulatorConfig(ClockConfig):
    """What the simulator is built with."""

    webhook_timeout: float = 10.0
    #: Simulated seconds to wait after each failed delivery attempt.
    webhook_retry_schedule: tuple[float, ...] = (5.0, 30.0)
    reorder_flush_after: float = 0.5
    journal_limit: int | None = 10_000
    delivery_log_limit: int | None = 10_000


@dataclass
class SimSettings:
    """Acme's simulator has no switches to flip while it runs."""

    @classmethod
    def from_config(cls, cfg: AcmeDeskSimulatorConfig) -> SimSettings:
        """No switches, whatever the config."""
        return cls()


class ApiError(Exception):
    """An answer `{"error": message}` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(400, f"{field}: {message}")


@dataclass
class Endpoint(EndpointBase):
    """A webhook endpoint: every event of the desk goes to `url`, signed with `secret`."""

    json_fields = ("id", "url")


class Emitter(WebhookEmitterBase[Delivery[Endpoint]]):
    """Sends each event, signed, to every endpoint; ordering and retries are the shared ones."""

    user_agent = "AcmeDesk-Webhooks/1.0"
    endpoints: dict[str, Endpoint]

    def emit(self, envelope: dict[str, Any]) -> None:
        """Queue the event for every endpoint; never sends inline."""
        if not self.endpoints:
            return
        require_loop()
        body = json.dumps(envelope, separators=(",", ":")).encode()
        ticket_id = envelope["ticket"]["id"]
        for ep in self.endpoints.values():
            self._queue(Delivery(ep, envelope["type"], envelope["id"], ticket_id, body))

    def _sign(self, d: Delivery[Endpoint], bad: bool) -> Signed:
        secret = d.endpoint.secret.reveal() + ("-wrong" if bad else "")
        return Signed({SIGNATURE_HEADER: sign(d.body, secret)})


class AcmeDeskSimulator(
    SimulatorBase[AcmeDeskSimulatorConfig, SimSettings, Faults, Emitter, dict[str, dict[str, Any]]]
):
    """A local Acme desk: one desk, its tickets, its API key, its webhooks, the shared faults."""

    def __init__(self, config: AcmeDeskSimulatorConfig | None = None) -> None:
        super().__init__(config)
        keys = IdSource(self.seed, "keys")
        self.api_key = "acme_" + keys.token()
        self.desk = "desk-" + keys.token(4)

    def _build(self) -> None:
        self.store = {}
        self._ticket_ids = IdSource(self.seed, "tickets")

    def _app(self) -> web.Application:
        return create_app(self)

    def _reset_limits(self) -> None:
        """No rate limits to forget."""

    # ----------------------------------------------------------------- tickets

    def create_ticket(self, **fields: Any) -> dict[str, Any]:
        """Create a ticket as an agent would; emits `ticket.created`."""
        return self._create(fields, emit=True)

    def _create(self, fields: dict[str, Any], *, emit: bool) -> dict[str, Any]:
        now = iso(self.clock.now())
        ticket = {
            "subject": "",
            "status": "todo",
            "priority": "P3",
            **fields,
            "id": "AC-" + self._ticket_ids.token(4),
            "desk": self.desk,
            "created_at": now,
            "updated_at": now,
        }
        _check_fields(ticket)
        self.store[ticket["id"]] = ticket
        if emit:
            self._publish("ticket.created", ticket)
        return dict(ticket)

    def change_ticket(self, ticket_id: str, /, **fields: Any) -> dict[str, Any]:
        """An edit through the PATCH code path; emits `ticket.updated` when something changed."""
        ticket = self._record(ticket_id)
        _check_fields(fields)
        if any(ticket.get(k) != v for k, v in fields.items()):
            ticket.update(fields, updated_at=iso(self.clock.now()))
            self._publish("ticket.updated", ticket)
        return dict(ticket)

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        """A ticket as `GET /api/tickets/{id}` shows it."""
        return dict(self._record(ticket_id))

    def tickets(self) -> list[dict[str, Any]]:
        """Every ticket, oldest first."""
        return [dict(t) for t in self.store.values()]

    def seed_tickets(self, count: int, *, emit: bool = True) -> list[dict[str, Any]]:
        """`count` plain tickets; `emit` sends their `ticket.created`."""
        return [self._create({"subject": f"Ticket {n + 1}"}, emit=emit) for n in range(count)]

    def _record(self, ticket_id: str) -> dict[str, Any]:
        try:
            return self.store[ticket_id]
        except KeyError:
            raise ApiError(404, f"no ticket {ticket_id!r}") from None

    # ----------------------------------------------------------------- webhooks

    def add_endpoint(self, url: str, secret: str, events: list[str] | None = None) -> str:
        """Register an endpoint for every event; returns its id."""
        check_endpoint(url, secret)
        ep = Endpoint(self._endpoint_ids.uuid(), url, Secret(secret))
        self.emitter.endpoints[ep.id] = ep
        return ep.id

    def _publish(self, event: str, ticket: dict[str, Any]) -> None:
        envelope = {
            "id": self._event_ids.uuid(),
            "type": event,
            "occurred_at": iso(self.clock.now()),
            "ticket": dict(ticket),
        }
        self.emitter.emit(envelope)


def _check_fields(fields: dict[str, Any]) -> None:
    for name, allowed in (("status", STATUSES), ("priority", PRIORITIES)):
        if name in fields and fields[name] not in allowed:
            raise ApiError(422, f"{name} must be one of {', '.join(allowed)}")


# --------------------------------------------------------------------- HTTP


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response({"data": data}, status=status)


def _render(err: ApiError) -> web.Response:
    return web.json_response({"error": err.message}, status=err.status)


def _routing_error(exc: web.HTTPException, request: web.Request) -> ApiError:
    return ApiError(exc.status, f"{request.method} {request.path}: {exc.reason}")


@web.middleware
async def middleware(request: web.Request, handler: gateway.Handler) -> web.StreamResponse:
    """Scripted faults, the key check and the journal for `/api`; errors as `{error}`."""
    sim = request.app[SIM_KEY]
    is_api = request.path.startswith(API + "/")
    body = await gateway.read_json(request, BODY) if is_api else None
    resp = await gateway.answer(
        request,
        handler,
        partial(_api, request, handler, sim) if is_api else None,
        ApiError,
        _render,
        _routing_error,
        lambda: ApiError(500, "the simulator failed; see its log"),
        log,
    )
    if is_api:
        sim.record(Request(**request_fields(request, body, resp.status, sim.clock.now())))
    return resp


async def _api(
    request: web.Request, handler: gateway.Handler, sim: AcmeDeskSimulator
) -> web.StreamResponse:
    await gateway.admit(
        request,
        sim.faults,
        lambda scripted: ApiError(scripted.status, f"simulated {scripted.status}"),
        _routing_error,
    )
    if request.headers.get("Authorization") != f"Bearer {sim.api_key}":
        raise ApiError(401, "missing or wrong API key")
    return await handler(request)


async def get_ticket(request: web.Request) -> web.Response:
    """`GET /api/tickets/{id}`."""
    return _ok(request.app[SIM_KEY].ticket(request.match_info["id"]))


async def patch_ticket(request: web.Request) -> web.Response:
    """`PATCH /api/tickets/{id}` of `status` and/or `priority`."""
    body = gateway.stored_object(request, BODY, _invalid)
    unknown = sorted(set(body) - {"status", "priority"})
    if unknown or not body:
        raise ApiError(400, "send status and/or priority, nothing else")
    return _ok(request.app[SIM_KEY].change_ticket(request.match_info["id"], **body))


def _deliveries(request: web.Request, records: list[dict[str, Any]], pending: int) -> web.Response:
    return _ok({"deliveries": records, "pending": pending})


CONTROLS = Controls(
    ControlStyle(
        key=SIM_KEY,
        answer=lambda request, data, status: _ok(data, status),
        invalid=_invalid,
        refused=lambda message: ApiError(400, message),
        pending=lambda message: ApiError(409, message),
        deliveries=_deliveries,
        info=("url", "desk", "api_key"),
    )
)


ROUTES = {API + "/tickets/{id}": {"GET": get_ticket, "PATCH": patch_ticket}}
create_app = app_factory(AcmeDeskSimulator, SIM_KEY, middleware, ROUTES, CONTROLS.routes())


def envelope(
    event: str, event_id: str, desk: str, at: datetime, ticket: dict[str, Any]
) -> dict[str, Any]:
    """A delivery's envelope `{id, type, occurred_at, ticket}`; the desk is the ticket's."""
    doc: dict[str, Any] = {"id": event_id, "type": event, "occurred_at": iso(at)}
    return {**doc, "ticket": {"desk": desk, **ticket}}


def _limited(seed: int, rate_limit: str) -> AcmeDeskSimulatorConfig:
    raise ConfigError("--rate-limit", "nothing: Acme Desk has no rate limit", rate_limit)


SIMULATOR = SimulatorBundle(
    simulator=AcmeDeskSimulator,
    config=AcmeDeskSimulatorConfig,
    run=runner(AcmeDeskSimulator, 8084),
    port_offset=3,
    limited=_limited,
    envelope=envelope,
    tenant_key="desk",
    tenant_word="desk",
    example=Example(
        "an urgent ticket is escalated",
        {"priority": "P1"},
        lambda t: t["priority"] != "P1",
        lambda sim, subject, _: sim.create_ticket(subject=subject),
    ),
)
