"""The request middleware's shared steps: JSON body, scripted faults, routing and error answers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.common.faults import FaultsBase

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RoutingError = Callable[[web.HTTPException, web.Request], Exception]
#: What the body key holds when the body was not JSON.
INVALID = object()
_NO_BODY = object()
#: Seconds a scripted `late` answer waits after its request was served.
LATE: web.RequestKey[float] = web.RequestKey("sim_late")


def dumps(value: Any) -> str:
    """JSON as the vendor APIs answer it: compact, with non-ASCII characters kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def read_json(request: web.Request, key: web.RequestKey[object]) -> Any:
    """The request's JSON body (None when it has none or it is not JSON), kept under `key`."""
    body: Any = None
    if request.can_read_body:
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
                request[key] = body
            except ValueError:
                request[key] = INVALID
    return body


def stored_json(
    request: web.Request,
    key: web.RequestKey[object],
    invalid: Callable[[str, str], Exception],
    required: str,
) -> Any:
    """The body `read_json` kept, or the vendor's 400 saying it is `required` or not JSON."""
    body = request.get(key, _NO_BODY)
    if body is _NO_BODY:
        raise invalid("body", required)
    if body is INVALID:
        raise invalid("body", "is not valid JSON")
    return body


async def admit(
    request: web.Request,
    faults: FaultsBase[Any, Any],
    scripted_error: Callable[[Any], Exception],
    routing_error: RoutingError,
) -> None:
    """Play the scripted answer matching this API request (waiting its delay, raising its error
    when it answers with one), then raise the routing error of a request no route serves."""
    scripted = faults.take_scripted(request.method, request.path)
    if scripted is not None:
        if getattr(scripted, "late", False):
            request[LATE] = scripted.delay
        elif scripted.delay > 0:
            await asyncio.sleep(scripted.delay)
        if scripted.status >= 400:
            raise scripted_error(scripted)
    _check_route(request, routing_error)


def _check_route(request: web.Request, routing_error: RoutingError) -> None:
    match_error = request.match_info.http_exception
    if match_error is not None:
        raise routing_error(match_error, request)


async def answer(
    request: web.Request,
    handler: Handler,
    api: Callable[[], Awaitable[web.StreamResponse]] | None,
    error: type[Exception],
    render: Callable[[Any], web.StreamResponse],
    routing_error: RoutingError,
    internal: Callable[[], Exception],
    log: logging.Logger,
) -> web.StreamResponse:
    """Serve one request: through `api` when it is an API request, else the plain handler; an
    `error` (or a routing error, or a crash as `internal`) is answered as `render` says."""
    try:
        if api is not None:
            resp = await api()
            # A late answer: the change is made, the caller waits (and may be gone meanwhile).
            late = request.get(LATE, 0.0)
            if late > 0:
                await asyncio.sleep(late)
            return resp
        _check_route(request, routing_error)
        return await handler(request)
    except error as err:
        return render(err)
    except web.HTTPException as exc:
        return render(routing_error(exc, request))
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return render(internal())


@dataclass(frozen=True)
class Failures:
    """How a vendor's API fails: its error class, the errors of a request no route serves, the
    error a crash is answered with, and the log a crash goes to."""

    error: type[Exception]
    routing: RoutingError
    internal: Callable[[], Exception]
    log: logging.Logger

    async def admit(
        self,
        request: web.Request,
        faults: FaultsBase[Any, Any],
        scripted_error: Callable[[Any], Exception],
    ) -> None:
        """`admit` with this vendor's routing errors."""
        await admit(request, faults, scripted_error, self.routing)

    async def answer(
        self,
        request: web.Request,
        handler: Handler,
        api: Callable[[], Awaitable[web.StreamResponse]] | None,
        render: Callable[[Any], web.StreamResponse],
    ) -> web.StreamResponse:
        """`answer` with this vendor's errors, each answered as `render` says."""
        return await answer(
            request, handler, api, self.error, render, self.routing, self.internal, self.log
        )


def stored_object(
    request: web.Request, key: web.RequestKey[object], invalid: Callable[[str, str], Exception]
) -> dict[str, Any]:
    """The JSON object body `read_json` kept, or the vendor's 400."""
    body = stored_json(request, key, invalid, "a JSON object body is required")
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    return body


@dataclass(frozen=True)
class RoutingErrors:
    """A vendor's errors for a request no route serves, by what aiohttp found wrong."""

    #: A known path with a wrong method: the message and the `Allow` header (None when aiohttp
    #: names no method).
    not_allowed: Callable[[str, dict[str, str] | None], Exception]
    #: An unknown path.
    not_found: Callable[[web.Request], Exception]
    #: Any other status aiohttp raises, with its text (None when it has none).
    other: Callable[[int, str | None], Exception]

    def __call__(self, exc: web.HTTPException, request: web.Request) -> Exception:
        """The vendor's error for `exc`, raised while routing `request`."""
        if exc.status == 405:
            allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
            message = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
            return self.not_allowed(message, {"Allow": allowed} if allowed else None)
        if exc.status == 404:
            return self.not_found(request)
        return self.other(exc.status, exc.text or None)
