"""Build the console's aiohttp sub-application and mount it on the receiver."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from redis.asyncio import Redis
from redis.exceptions import RedisError

from receiver.console import auth, csrf
from receiver.console.context import Console, console_key, session_key
from receiver.console.forms import stamp
from ticketwire.config import Settings
from ticketwire.keys import Keys

log = logging.getLogger("ticketwire.console")

HERE = Path(__file__).resolve().parent
PREFIX = "/console"
#: Paths served without a session.
OPEN = (f"{PREFIX}/login", f"{PREFIX}/static/")

_HEADERS = {
    # Nothing inline, nothing from elsewhere: a page can only run our own script file.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def templates() -> jinja2.Environment:
    """The page templates, HTML-escaped by default."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["stamp"] = stamp
    env.globals["link"] = link
    return env


def link(path: str, params: Mapping[str, str], **changes: str | None) -> str:
    """`path` with the query `params` and `changes` (None removes a parameter)."""
    merged = {k: v for k, v in {**params, **changes}.items() if v}
    return f"{path}?{urlencode(merged)}" if merged else path


def login_url(path: str) -> str:
    """The login page, sending the browser back to `path` (a console page only) after."""
    if not path.startswith(PREFIX) or path.startswith((OPEN[0], "//")):
        return OPEN[0]
    return f"{OPEN[0]}?next={quote(path, safe='/')}"


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Send a request without a valid session to the login page; check every action's origin."""
    console = request.app[console_key]
    path = request.path
    if request.method == "POST" and not csrf.same_origin(
        request.host, request.headers.get("Origin"), request.headers.get("Referer")
    ):
        return console.refuse(request, 403, "This form was not sent from this console's pages.")
    if request.method == "POST":
        # Our forms are urlencoded; reading anything else is only a way to fail.
        if request.content_type != "application/x-www-form-urlencoded":
            return console.refuse(request, 400, "This form could not be read.")
        try:
            await request.post()
        except (ValueError, UnicodeDecodeError, HttpProcessingError, web.HTTPException):
            return console.refuse(request, 400, "This form could not be read.")
    if not path.startswith(OPEN):
        session = auth.read_session(console.token, request.cookies.get(auth.COOKIE), time.time())
        if session is not None and await console.logged_out(session):
            session = None
        if session is None:
            raise web.HTTPSeeOther(login_url(path))
        if request.method == "POST":
            form = await request.post()
            offered = form.get(csrf.FIELD)
            if not csrf.csrf_matches(
                console.token, session, offered if isinstance(offered, str) else None
            ):
                return console.refuse(
                    request, 403, "This form is out of date or was not sent from the console."
                )
        request[session_key] = session
    response = await handler(request)
    response.headers.update(_HEADERS)
    return response


@web.middleware
async def redis_down(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer 503 with a readable page when Redis cannot be reached."""
    try:
        return await handler(request)
    except (RedisError, OSError) as exc:
        log.warning("console: Redis unavailable on %s: %s", request.path, type(exc).__name__)
        return request.app[console_key].refuse(
            request, 503, "Redis cannot be reached right now; try again in a moment."
        )


def console_app(settings: Settings, redis: Redis) -> web.Application | None:
    """The console, or None when `TICKETWIRE_CONSOLE_TOKEN` is not set."""
    if settings.console_token is None:
        return None
    from receiver.console import routes
    from receiver.console.pages.live import Rates, rates_key

    app = web.Application(middlewares=[redis_down, gate])
    app[console_key] = Console(
        settings=settings,
        redis=redis,
        keys=Keys(settings.key_prefix),
        token=settings.console_token,
        env=templates(),
        limiter=auth.AttemptLimiter(),
    )
    app[rates_key] = Rates()
    routes.add_routes(app)
    return app


def mount(app: web.Application, settings: Settings, redis: Redis) -> None:
    """Serve the console under `/console` when it is turned on; else those paths are 404."""
    console = console_app(settings, redis)
    if console is not None:
        app.add_subapp(PREFIX, console)
