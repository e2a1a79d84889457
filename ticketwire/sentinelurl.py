"""`redis+sentinel://` URLs: the Sentinels to ask, the service whose master to use, its database."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_FORM = (
    "redis+sentinel://[user:password@]host:port[,host:port...]/<service name>[/<db>], "
    "the password being the master's"
)
#: The port Sentinels listen on unless told otherwise.
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """Where a `redis+sentinel://` URL points: Sentinels, service name, db, master credentials."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    # The master's and replicas' password: kept out of the repr.
    password: str | None = field(default=None, repr=False)


def is_sentinel_url(url: str) -> bool:
    """Whether `url` names its Redis through Sentinels."""
    return url.startswith(SENTINEL_SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The target of a `redis+sentinel://` URL; `ValueError` (never echoing it) if malformed."""
    if not is_sentinel_url(url):
        raise ValueError(f"it does not start with {SENTINEL_SCHEME}://")
    rest = url[len(SENTINEL_SCHEME) + 3 :]
    if "?" in rest or "#" in rest:
        raise ValueError("it has a query or fragment; the database goes in the path")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(h) for h in hosts.split(","))
    parts = path.split("/") if path else []
    if not parts or not parts[0]:
        raise ValueError("no service name after the Sentinels' addresses")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("after the service name only a database number may follow")
    db = int(parts[1]) if len(parts) == 2 else 0
    return SentinelTarget(sentinels, unquote(parts[0]), db, username, password)


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # an IPv6 address: [::1]:26379
        host, _, after = text[1:].partition("]")
        port = after.removeprefix(":") if after else str(DEFAULT_SENTINEL_PORT)
    elif ":" in text:
        host, _, port = text.rpartition(":")
    else:
        host, port = text, str(DEFAULT_SENTINEL_PORT)
    if not host:
        raise ValueError("a Sentinel address with no host")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a Sentinel port that is not a number from 1 to 65535")
    return host, int(port)
