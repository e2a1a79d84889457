"""The console's URLs: login and logout here, each page's handler in `pages`."""

from __future__ import annotations

import math
import time

from aiohttp import web

from receiver.console import auth
from receiver.console.app import HERE, PREFIX
from receiver.console.context import console_key, session_key
from receiver.console.pages import deadletters, deliveries, live, rules, traces


def add_routes(app: web.Application) -> None:
    """Register every console URL on the console's sub-application."""
    app.router.add_get("", index)
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/deliveries", deliveries.page)
    app.router.add_get("/events/{event_id}", traces.event_page)
    app.router.add_get("/tickets/{key}", traces.ticket_page)
    app.router.add_get("/rules", rules.page)
    app.router.add_post("/rules/pause", rules.pause)
    app.router.add_post("/rules/resume", rules.resume)
    app.router.add_get("/dead-letters", deadletters.page)
    app.router.add_post("/dead-letters/redrive", deadletters.redrive)
    app.router.add_post("/dead-letters/drop", deadletters.drop)
    app.router.add_get("/live", live.page)
    app.router.add_get("/live.json", live.counters)
    app.router.add_static("/static", HERE / "static", show_index=False, follow_symlinks=False)


async def index(request: web.Request) -> web.StreamResponse:
    """The console opens on the deliveries list."""
    raise web.HTTPSeeOther(f"{PREFIX}/deliveries")


def _next(request: web.Request) -> str:
    """Where to go after logging in: a console page named by `next`, else the deliveries."""
    target = request.query.get("next", "")
    if (
        target.startswith(f"{PREFIX}/")
        and not target.startswith(("//", f"{PREFIX}/login"))
        and "\\" not in target
        and all(ch.isprintable() for ch in target)
    ):
        return target
    return f"{PREFIX}/deliveries"


async def login_page(request: web.Request) -> web.Response:
    """The login form: one field, the token."""
    return request.app[console_key].render(request, "login.html", next=_next(request))


async def login(request: web.Request) -> web.StreamResponse:
    """Check the token; on success set the signed session cookie and go on."""
    console = request.app[console_key]
    wait = console.limiter.allow(request.remote or "unknown")
    if wait:
        response = console.render(
            request,
            "login.html",
            status=429,
            next=_next(request),
            error="Too many attempts from this address; wait a few minutes.",
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    form = await request.post()
    offered = form.get("token")
    if not isinstance(offered, str) or not auth.token_matches(console.token, offered):
        return console.render(
            request, "login.html", status=401, next=_next(request), error="Wrong token."
        )
    session = auth.new_session(time.time())
    response = web.HTTPSeeOther(_next(request))
    response.set_cookie(
        auth.COOKIE,
        auth.sign_session(console.token, session),
        max_age=auth.SESSION_TTL_S,
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session: its cookie is removed here and refused from now on."""
    console = request.app[console_key]
    session: auth.Session = request[session_key]
    await console.log_out(session)
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(auth.COOKIE, path=PREFIX)
    raise response
