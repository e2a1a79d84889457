"""What every console handler needs: settings, Redis, the token, templates; and how to answer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jinja2
from aiohttp import web
from redis.asyncio import Redis

from receiver.console import auth, csrf
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.secret import Secret


@dataclass(frozen=True)
class Console:
    """The console's shared state, one per receiver app."""

    settings: Settings
    redis: Redis
    keys: Keys
    token: Secret
    env: jinja2.Environment
    limiter: auth.AttemptLimiter

    def render(
        self, request: web.Request, template: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        """A page from `template`, with the session's CSRF token for its forms."""
        session = request.get(session_key)
        page = self.env.get_template(template).render(
            path=request.path,
            csrf=csrf.csrf_token(self.token, session) if session else "",
            logged_in=session is not None,
            **context,
        )
        return web.Response(text=page, status=status, content_type="text/html")

    def refuse(self, request: web.Request, status: int, message: str) -> web.Response:
        """An error page saying what went wrong, in the console's layout."""
        return self.render(request, "error.html", status=status, message=message)

    async def logged_out(self, session: auth.Session) -> bool:
        """True when this session was ended by a logout (its cookie may still be presented)."""
        return bool(await self.redis.exists(self.keys.console_logout(session.sid)))

    async def log_out(self, session: auth.Session) -> None:
        """Refuse this session's cookie from now until it would have expired anyway."""
        ttl_ms = max(int((session.expires - time.time()) * 1000), 1)
        await self.redis.set(self.keys.console_logout(session.sid), "1", px=ttl_ms)


console_key = web.AppKey("console", Console)
#: The logged-in session of a request, set by the console's gate.
session_key = web.RequestKey("console_session", auth.Session)
