"""The one error tree of ticketwire.

TicketwireError
├── ConfigError(variable, expected)          start-up stops with the message
├── InvalidSignature(reason)                 receiver → 401
├── MalformedEvent(field, message)           receiver → 400
├── RuleConfigError(file, line, rule, ...)   worker start / `ticketwire check` → exit 1
└── HelpdeskError                            anything the helpdesk API answered or failed to
    ├── HelpdeskUnavailable                  timeout, connection refused: retry with backoff
    ├── BudgetSpent(retry_after)             not sent: the shared request budget is spent; wait
    ├── PartialFailure(failed ids)           a bulk call changed some ids only: per failed id,
    │                                        retry it alone (transient) or dead-letter it
    └── HelpdeskHTTPError(status, code, detail, request_id)
        ├── ClientError (4xx)                dead letter, no retry
        │   ├── Unauthorized (401)
        │   ├── Forbidden (403)              `forbidden` or `insufficient_scope`
        │   ├── NotFound (404)
        │   └── RateLimited (429, retry_after)   defer the work by retry_after
        └── ServerError (5xx)                retry with backoff, then dead letter
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass


class TicketwireError(Exception):
    """Base of every error ticketwire raises on purpose."""


class ConfigError(TicketwireError):
    """A configuration value is missing or malformed."""

    def __init__(self, variable: str, expected: str, got: str | None = None) -> None:
        self.variable = variable
        self.expected = expected
        shown = "" if got is None else f" (got {got!r})"
        super().__init__(f"{variable}: expected {expected}{shown}")


class InvalidSignature(TicketwireError):
    """The delivery's signature is missing, malformed, stale or matches no active secret."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class MalformedEvent(TicketwireError):
    """The delivery is not a valid envelope; `field` names the first offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(message if field is None else f"{field}: {message}")


class RuleConfigError(TicketwireError):
    """A rule file is wrong; the message says where, what, and what is accepted."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        rule: str | None = None,
        accepted: Sequence[str] | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.rule = rule
        self.message = message
        self.accepted = tuple(accepted) if accepted else ()
        super().__init__(self.render())

    def render(self) -> str:
        """Format as `file:line: rule 'name': message (accepted: a, b)`."""
        where = self.file or "<rules>"
        if self.line is not None:
            where += f":{self.line}"
        rule = f" rule {self.rule!r}:" if self.rule else ""
        accepted = f" (accepted: {', '.join(self.accepted)})" if self.accepted else ""
        return f"{where}:{rule} {self.message}{accepted}"


class HelpdeskError(TicketwireError):
    """The helpdesk API could not do what we asked."""


class HelpdeskUnavailable(HelpdeskError):
    """No answer: timeout, refused connection, reset. Safe to retry with backoff."""


class NotConnected(HelpdeskUnavailable):
    """No connection was made (refused, unreachable, no DNS answer): nothing reached the helpdesk."""


class PartialFailure(HelpdeskError):
    """A bulk call succeeded for some ids and failed (or was skipped) for others.

    `failed` maps each id that did not change to the helpdesk's reason; those ids must be
    retried or dead-lettered one by one, never counted as done. `transient` names the failed
    ids a retry may fix (the helpdesk's code for that id says rate limit or server trouble, or
    the answer did not say what became of it); each of the others is refused for good.
    """

    def __init__(
        self,
        failed: dict[str, str],
        succeeded: list[str] | None = None,
        *,
        transient: Iterable[str] = (),
    ) -> None:
        self.failed = failed
        self.succeeded = succeeded or []
        self.transient = frozenset(transient).intersection(failed)
        shown = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:5])
        more = f" (+{len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(f"{len(failed)} id(s) not updated: {shown}{more}")


# Compared, hashed and shown as any exception is: by identity, and by its message.
@dataclass(eq=False, repr=False)
class HelpdeskHTTPError(HelpdeskError):
    """The helpdesk answered with an error status."""

    status: int
    _: KW_ONLY
    code: str | None = None
    detail: str | None = None
    request_id: str | None = None
    body: str | None = None

    def __post_init__(self) -> None:
        text = f"HTTP {self.status}"
        if self.code:
            text += f" {self.code}"
        if self.detail:
            text += f": {self.detail}"
        if self.request_id:
            text += f" (request {self.request_id})"
        super().__init__(text)


class ClientError(HelpdeskHTTPError):
    """4xx: our request is wrong; retrying will not help."""


class Unauthorized(ClientError):
    """401: the API key is missing, malformed, expired or revoked."""


class Forbidden(ClientError):
    """403: the workspace lacks API access, or the key is read-only."""


class NotFound(ClientError):
    """404: no such resource (or it belongs to another workspace)."""


class RateLimited(ClientError):
    """429: over the helpdesk's rate limit; wait `retry_after` seconds."""

    def __init__(self, status: int = 429, *, retry_after: float, **kwargs: str | None) -> None:
        self.retry_after = retry_after
        super().__init__(status, **kwargs)


class BudgetSpent(HelpdeskError):
    """No request was sent: the account's shared request budget is spent for `retry_after` s."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ServerError(HelpdeskHTTPError):
    """5xx: the helpdesk failed; retry with backoff."""
