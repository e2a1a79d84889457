"""The `/_sim` control routes every simulator has, answering in each vendor's style."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args, get_origin, get_type_hints

from aiohttp import web

from simulator.common.routes import Routes

Answer = Callable[[web.Request, Any, int], web.Response]


@dataclass(frozen=True)
class ControlStyle:
    """How one simulator's control routes find it and shape their answers and errors."""

    #: Where the app keeps the simulator.
    key: web.AppKey[Any]
    #: A success answer of `data` with a status.
    answer: Answer
    #: A 400 naming the offending field.
    invalid: Callable[[str, str], Exception]
    #: A 400 for a value the simulator refused (the message says why).
    refused: Callable[[str], Exception]
    #: A 409 for deliveries still pending after the wait.
    pending: Callable[[str], Exception]
    #: The answer of `GET /_sim/deliveries`: the records and how many are pending.
    deliveries: Callable[[web.Request, list[dict[str, Any]], int], web.Response]
    #: The simulator's attributes `GET /_sim` shows, in order, before the control routes.
    info: tuple[str, ...] = ()


def control_routes(app: web.Application) -> list[str]:
    """Every `/_sim` route as `METHOD path`, sorted."""
    return sorted(
        f"{r.method} {r.resource.canonical}"
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/_sim")
        and r.method != "HEAD"
    )


def settings_rules(
    settings: type,
) -> tuple[dict[str, tuple[type, ...]], dict[str, tuple[Any, ...]]]:
    """Each runtime switch's accepted types, and the choices of one typed as a `Literal`, read
    from the settings class's annotations (in field order)."""
    types: dict[str, tuple[type, ...]] = {}
    choices: dict[str, tuple[Any, ...]] = {}
    for name, hint in get_type_hints(settings).items():
        args = get_args(hint)
        if get_origin(hint) is Literal:
            types[name] = tuple(dict.fromkeys(type(a) for a in args))
            choices[name] = args
        else:
            # `int | None` accepts either; a plain class accepts itself.
            types[name] = args or (hint,)
    return types, choices


def check_settings(
    body: Mapping[str, Any],
    types: Mapping[str, tuple[type, ...]],
    choices: Mapping[str, tuple[Any, ...]],
    invalid: Callable[[str, str], Exception],
) -> None:
    """Refuse an unknown setting, a value of the wrong type or one outside its choices."""
    for name, value in body.items():
        allowed = types.get(name)
        if allowed is None:
            raise invalid(name, f"unknown setting; known: {', '.join(types)}")
        if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
            raise invalid(name, f"has the wrong type (got {value!r})")
        options = choices.get(name)
        if options and value not in options:
            raise invalid(name, f"must be one of {', '.join(map(str, options))}")


class Controls:
    """The shared `/_sim` handlers of one simulator, answering in its style."""

    #: The runtime switches `POST /_sim/settings` may flip, with their types and choices.
    settings_types: ClassVar[Mapping[str, tuple[type, ...]]] = {}
    settings_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {}

    def __init__(self, style: ControlStyle) -> None:
        self.style = style

    async def body(self, request: web.Request) -> dict[str, Any]:
        """The request's JSON object body ({} when empty), or a 400."""
        raw = await request.read()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise self.style.invalid("body", "is not valid JSON") from None
        if not isinstance(body, dict):
            raise self.style.invalid("body", "must be a JSON object")
        return body

    def answer(self, request: web.Request, data: Any, status: int = 200) -> web.Response:
        """A success answer in the simulator's style."""
        return self.style.answer(request, data, status)

    async def info(self, request: web.Request) -> web.Response:
        """Keys, ids, reference data and the list of control routes."""
        sim = request.app[self.style.key]
        data = {name: getattr(sim, name) for name in self.style.info}
        return self.answer(request, {**data, "routes": control_routes(request.app)})

    async def reset(self, request: web.Request) -> web.Response:
        """Back to the seeded initial state; `{"keep_endpoints": false}` also drops endpoints."""
        body = await self.body(request)
        request.app[self.style.key].reset(keep_endpoints=bool(body.get("keep_endpoints", True)))
        return self.answer(request, {"reset": True})

    async def journal(self, request: web.Request) -> web.Response:
        """Every API request so far."""
        return self.answer(request, [e.to_json() for e in request.app[self.style.key].journal])

    async def deliveries(self, request: web.Request) -> web.Response:
        """The webhook delivery log, plus how many deliveries are still pending."""
        sim = request.app[self.style.key]
        records = [d.to_json() for d in sim.deliveries]
        return self.style.deliveries(request, records, sim.emitter.pending)

    async def wait_idle(self, request: web.Request) -> web.Response:
        """Wait until no delivery is pending (`{"timeout": seconds}`, default 10)."""
        body = await self.body(request)
        try:
            await request.app[self.style.key].wait_deliveries_idle(float(body.get("timeout", 10.0)))
        except TimeoutError as exc:
            raise self.style.pending(str(exc)) from None
        return self.answer(request, {"pending": 0})

    async def list_endpoints(self, request: web.Request) -> web.Response:
        """Registered webhook endpoints (secrets not shown)."""
        endpoints = request.app[self.style.key].emitter.endpoints.values()
        return self.answer(request, [e.to_json() for e in endpoints])

    def endpoint_options(self, body: dict[str, Any]) -> dict[str, Any]:
        """The vendor's own options of `POST /_sim/endpoints`, checked (none by default)."""
        return {}

    async def add_endpoint(self, request: web.Request) -> web.Response:
        """Register `{url, secret, events?}` (and the vendor's options) for the default tenant."""
        sim = request.app[self.style.key]
        body = await self.body(request)
        options = self.endpoint_options(body)
        for name in ("url", "secret"):
            if not isinstance(body.get(name), str):
                raise self.style.invalid(name, "is required and must be a string")
        events = body.get("events")
        if events is not None and not (
            isinstance(events, list) and all(isinstance(e, str) for e in events)
        ):
            raise self.style.invalid("events", "must be an array of event names")
        try:
            endpoint_id = sim.add_endpoint(body["url"], body["secret"], events, **options)
        except ValueError as exc:
            raise self.style.refused(str(exc)) from None
        return self.answer(request, sim.emitter.endpoints[endpoint_id].to_json(), 201)

    async def list_tickets(self, request: web.Request) -> web.Response:
        """All tickets of the default tenant."""
        return self.answer(request, request.app[self.style.key].tickets())

    async def create_ticket(self, request: web.Request) -> web.Response:
        """Create a ticket as an agent would; emits its webhooks."""
        sim = request.app[self.style.key]
        return self.answer(request, sim.create_ticket(**await self.body(request)), 201)

    async def change_ticket(self, request: web.Request) -> web.Response:
        """An agent's edit with PATCH fields; emits webhooks; answers the ticket."""
        sim = request.app[self.style.key]
        body = await self.body(request)
        return self.answer(request, sim.change_ticket(request.match_info["id"], **body))

    async def add_message(self, request: web.Request) -> web.Response:
        """A message on a ticket, with the fields the simulator's `add_message` takes; answers it
        (a route only for a vendor whose tickets have messages)."""
        sim = request.app[self.style.key]
        body = await self.body(request)
        return self.answer(request, sim.add_message(request.match_info["id"], **body), 201)

    async def get_faults(self, request: web.Request) -> web.Response:
        """The current fault knobs."""
        return self.answer(request, request.app[self.style.key].faults.to_json())

    async def set_faults(self, request: web.Request) -> web.Response:
        """Set knobs: `{clear?, webhooks?: {duplicate, …}, fail_next?: {method, path, status, …}}`
        and the vendor's own."""
        sim = request.app[self.style.key]
        try:
            sim.faults.apply_json(await self.body(request))
        except (ValueError, TypeError) as exc:
            raise self.style.refused(str(exc)) from None
        return self.answer(request, sim.faults.to_json())

    async def seed(self, request: web.Request) -> web.Response:
        """Create `{"tickets": N}` realistic tickets (`"emit": false` to skip their webhooks)."""
        sim = request.app[self.style.key]
        body = await self.body(request)
        count = body.get("tickets", 10)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 100_000:
            raise self.style.invalid("tickets", "must be an integer between 0 and 100000")
        created = sim.seed_tickets(count, emit=bool(body.get("emit", True)))
        ids = [t["id"] for t in created]
        return self.answer(request, {"created": len(created), "ticket_ids": ids}, 201)

    async def get_settings(self, request: web.Request) -> web.Response:
        """The runtime switches."""
        return self.answer(request, vars(request.app[self.style.key].settings))

    async def set_settings(self, request: web.Request) -> web.Response:
        """Flip runtime switches, each checked against `settings_types` and `settings_choices`."""
        sim = request.app[self.style.key]
        body = await self.body(request)
        check_settings(body, self.settings_types, self.settings_choices, self.style.invalid)
        for name, value in body.items():
            setattr(sim.settings, name, value)
        self.settings_set(sim, body)
        return self.answer(request, vars(sim.settings))

    def settings_set(self, sim: Any, body: dict[str, Any]) -> None:
        """What the vendor does once `body`'s switches are set (nothing by default)."""
        return

    def routes(self, own: Routes | None = None) -> Routes:
        """The shared /_sim routes, then the vendor's `own` (a path in both is the vendor's)."""
        shared: Routes = {
            "/_sim": {"GET": self.info},
            "/_sim/reset": {"POST": self.reset},
            "/_sim/journal": {"GET": self.journal},
            "/_sim/deliveries": {"GET": self.deliveries},
            "/_sim/deliveries/wait": {"POST": self.wait_idle},
            "/_sim/endpoints": {"GET": self.list_endpoints, "POST": self.add_endpoint},
            "/_sim/tickets": {"GET": self.list_tickets, "POST": self.create_ticket},
            "/_sim/tickets/{id}/change": {"POST": self.change_ticket},
            "/_sim/faults": {"GET": self.get_faults, "POST": self.set_faults},
            "/_sim/settings": {"GET": self.get_settings, "POST": self.set_settings},
            "/_sim/seed": {"POST": self.seed},
        }
        return {**shared, **(own or {})}
