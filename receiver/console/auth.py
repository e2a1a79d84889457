"""The console's login: token check, signed session cookies, and a bound on login attempts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from ticketwire.secret import Secret

COOKIE = "tw_console"
#: How long a login lasts.
SESSION_TTL_S = 12 * 3600
#: Login attempts allowed per client within `ATTEMPT_WINDOW_S`.
MAX_ATTEMPTS = 10
ATTEMPT_WINDOW_S = 300.0
#: Clients remembered by the attempt limiter; the oldest is forgotten beyond this.
MAX_CLIENTS = 10_000


@dataclass(frozen=True)
class Session:
    """A logged-in browser: its random id and when its cookie stops being accepted."""

    sid: str
    expires: int


def token_matches(token: Secret, offered: str) -> bool:
    """Compare an offered token with the configured one in constant time."""
    return hmac.compare_digest(token.reveal().encode(), offered.encode("utf-8", "replace"))


def mac(token: Secret, purpose: str, message: str) -> str:
    """URL-safe HMAC-SHA256 of `message` under a key derived from the token for `purpose`."""
    # A key of its own per purpose, so a cookie signature can never serve as a CSRF token.
    key = hmac.new(token.reveal().encode(), purpose.encode(), hashlib.sha256).digest()
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new_session(now: float, ttl_s: int = SESSION_TTL_S) -> Session:
    """A fresh session with a random id."""
    return Session(secrets.token_urlsafe(18), int(now) + ttl_s)


def sign_session(token: Secret, session: Session) -> str:
    """The cookie value: `<id>.<expiry>.<HMAC of both>`."""
    body = f"{session.sid}.{session.expires}"
    return f"{body}.{mac(token, 'session', body)}"


def read_session(token: Secret, cookie: str | None, now: float) -> Session | None:
    """The session a cookie carries, or None if it is missing, forged, malformed or expired."""
    if not cookie or len(cookie) > 200:
        return None
    parts = cookie.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[0]:
        return None
    sid, expires, signature = parts
    if not hmac.compare_digest(
        signature.encode(), mac(token, "session", f"{sid}.{expires}").encode()
    ):
        return None
    if int(expires) <= now:
        return None
    return Session(sid, int(expires))


class AttemptLimiter:
    """At most `limit` login attempts per client in a sliding window; memory bounded."""

    def __init__(
        self,
        limit: int = MAX_ATTEMPTS,
        window_s: float = ATTEMPT_WINDOW_S,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._limit = limit
        self._window = window_s
        self._max = max_clients
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, client: str, now: float | None = None) -> float:
        """Record an attempt: 0 when allowed, else the seconds until the next one is."""
        now = time.monotonic() if now is None else now
        times = [t for t in self._seen.pop(client, []) if t > now - self._window]
        if len(times) >= self._limit:
            self._seen[client] = times
            return max(times[0] + self._window - now, 0.001)
        times.append(now)
        self._seen[client] = times
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return 0.0
