"""An API call planned by the rules: what the worker sends, stores in the outbox and dead-letters."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ticketwire.accountkey import DEFAULT, account_key


@dataclass(frozen=True)
class ApiCall:
    """One request to a helpdesk API, relative to the client's base URL (e.g. `/tickets/{id}`)."""

    vendor: str
    method: str
    path: str
    body: dict[str, Any]
    ticket_id: str
    #: Names of the rules whose actions this call carries, in rule order.
    rules: tuple[str, ...] = ()
    #: Event that planned the call; with the fingerprint it makes the call's identity.
    event_id: str = ""
    #: Stream entry the event was read from, `<partition>/<entry id>`; "" when unknown.
    origin: str = ""
    #: The helpdesk account of the event that planned the call: whose client sends it.
    account: str = DEFAULT

    @property
    def account_key(self) -> str:
        """The worker's name of the call's account: its client, budget and bulk spec."""
        return account_key(self.vendor, self.account)

    def fingerprint(self) -> str:
        """Stable digest of method, path and body: the same change hashes the same."""
        canon = json.dumps(
            [self.method, self.path, self.body], sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One-line human description, e.g. `PATCH /tickets/42 {"priority": "high"}`."""
        return f"{self.method} {self.path} {json.dumps(self.body, sort_keys=True)}"

    def to_json(self) -> str:
        """Serialise for the outbox and the dead-letter list."""
        # The default account is left out: such calls keep the form earlier versions wrote.
        extra = {} if self.account == DEFAULT else {"account": self.account}
        return json.dumps(
            {
                "vendor": self.vendor,
                "method": self.method,
                "path": self.path,
                "body": self.body,
                "ticket_id": self.ticket_id,
                "rules": list(self.rules),
                "event_id": self.event_id,
                "origin": self.origin,
                **extra,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> ApiCall:
        """Inverse of `to_json`."""
        d = json.loads(raw)
        return cls(
            vendor=d["vendor"],
            method=d["method"],
            path=d["path"],
            body=d["body"],
            ticket_id=d["ticket_id"],
            rules=tuple(d.get("rules", ())),
            event_id=d.get("event_id", ""),
            origin=d.get("origin", ""),
            account=d.get("account", DEFAULT),
        )


@dataclass(frozen=True)
class ApiResult:
    """A successful answer: status, parsed JSON body, the helpdesk's request id, time taken."""

    status: int
    body: Any
    request_id: str | None = None
    elapsed_ms: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
