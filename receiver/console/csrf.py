"""Cross-site request forgery checks for the console's actions: a form token and the origin."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from receiver.console.auth import Session, mac
from ticketwire.secret import Secret

#: The form field every console form carries.
FIELD = "csrf"


def csrf_token(token: Secret, session: Session) -> str:
    """The CSRF token of a session: every form carries it, every action checks it."""
    return mac(token, "csrf", session.sid)


def csrf_matches(token: Secret, session: Session, offered: str | None) -> bool:
    """Check a form's CSRF token against the session's, in constant time."""
    if not offered:
        return False
    return hmac.compare_digest(
        offered.encode("utf-8", "replace"), csrf_token(token, session).encode()
    )


def same_origin(host: str | None, origin: str | None, referer: str | None) -> bool:
    """True when the request's `Origin` (else `Referer`) names this host.

    Only the host and port are compared: behind a proxy that ends TLS the browser's origin is
    https while the request reached us over http. A request with neither header is refused:
    every browser sends `Origin` with a form POST.
    """
    if not host:
        return False
    source = origin if origin and origin != "null" else referer
    if not source:
        return False
    try:
        parts = urlsplit(source)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return hmac.compare_digest(parts.netloc.lower().encode(), host.lower().encode())
