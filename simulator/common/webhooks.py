"""The webhook emitter base: queueing, posting and recording attempts, retries, the delivery log."""

from __future__ import annotations

import asyncio
import json
import logging
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypedDict, TypeVar, Unpack

import aiohttp

from simulator.common.clock import Clock
from simulator.common.delivery import DeliveryRun, OrderedDelivery
from simulator.common.records import Record
from ticketwire.secret import Secret


class Target(Protocol):
    """What the emitter reads of an endpoint."""

    @property
    def id(self) -> str: ...

    @property
    def url(self) -> str: ...

    def wants(self, event: str) -> bool:
        """True when this endpoint receives `event`."""
        ...


@dataclass
class EndpointBase(Record):
    """What every vendor's webhook endpoint holds; each adds the tenant it belongs to."""

    #: The JSON form: never the secret.
    json_fields: ClassVar[tuple[str, ...] | None] = ("id", "url", "events", "enabled")

    id: str
    url: str
    secret: Secret
    #: Events it subscribes to; none means every event.
    events: tuple[str, ...] = ()
    enabled: bool = True

    def wants(self, event: str) -> bool:
        """True when this endpoint receives `event`."""
        return self.enabled and (not self.events or event in self.events)


E = TypeVar("E", bound=Target)
T = TypeVar("T", bound=Target)


@dataclass
class Delivery(Generic[E]):
    """One event on its way to one endpoint; `event_id` and `body` never change across retries."""

    endpoint: E
    event: str
    event_id: str
    ticket_id: str
    body: bytes
    attempts: int = 0
    duplicate: bool = False


@dataclass(frozen=True)
class DeliveryRecord(Record):
    """One delivery attempt as the log keeps it; its JSON form is `GET /_sim/deliveries`'s."""

    endpoint_id: str
    event: str
    event_id: str
    ticket_id: str
    attempt: int
    #: HTTP status of the answer, or None when there was none (see `error`).
    status: int | None
    error: str | None
    succeeded: bool
    #: Simulated time the attempt was sent.
    delivered_at: datetime
    #: True on the last attempt of a delivery that never succeeded.
    failed: bool = False
    duplicate: bool = False
    bad_signature: bool = False
    response_snippet: str = ""


@dataclass(frozen=True)
class Signed:
    """The headers an attempt is signed with, and the signed timestamp where the vendor has one."""

    headers: dict[str, str]
    #: The `t` signed (unix seconds), for vendors whose signatures carry one.
    signed_at: int | None = None
    #: True when the signed timestamp was shifted by a fault.
    stale: bool = False


@dataclass(frozen=True)
class Answer:
    """What an attempt got back: a status and the start of the body, or why there was none."""

    status: int | None = None
    error: str | None = None
    snippet: str = ""

    @property
    def ok(self) -> bool:
        """True on a 2xx."""
        return self.status is not None and 200 <= self.status < 300


class SharedFaults(Protocol):
    """The webhook fault knobs the emitter draws on for every attempt."""

    def take_duplicate(self) -> bool:
        """Whether the next delivery is queued twice."""
        ...

    def take_bad_signature(self) -> bool:
        """Whether the next attempt gets a wrong signature."""
        ...


D = TypeVar("D", bound=Delivery[Any])


class EmitterOptions(TypedDict):
    """What every emitter is built with besides its retry schedule and its signing."""

    clock: Clock
    faults: SharedFaults
    #: Per-attempt timeout, in real seconds.
    timeout: float
    #: A partly filled reorder group is sent anyway after this many real seconds.
    reorder_flush_after: float
    #: Most recent attempts kept in the log (None = all).
    log_limit: int | None


def check_endpoint(url: str, secret: str, what: str = "webhook secret") -> None:
    """Refuse an endpoint without an http(s) url or without a secret."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook url must start with http:// or https:// (got {url!r})")
    if not secret:
        raise ValueError(f"{what} must not be empty")


def check_events(
    events: Iterable[str] | None,
    known: Sequence[str],
    pattern: Callable[[str], bool] = lambda event: False,
    also: str = "",
) -> None:
    """Refuse an event name that is neither `known` nor a `pattern` the vendor takes (`also`
    names those patterns in the error)."""
    for event in events or ():
        if not pattern(event) and event not in known:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(known)}{also}")


def compact(doc: dict[str, Any]) -> bytes:
    """A webhook body as every vendor sends it: compact JSON, UTF-8."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def require_loop() -> None:
    """Raise unless an event loop runs: deliveries are tasks of it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "webhook deliveries need a running event loop; change tickets from async code "
            "while endpoints are registered"
        ) from None


class WebhookEmitterBase(OrderedDelivery[D]):
    """Queues deliveries per (endpoint, ticket), posts and records each attempt, retries."""

    user_agent: str
    #: The vendor's endpoint class and the field it names the endpoint's tenant in.
    endpoint_type: ClassVar[type[Any]]
    tenant_field: ClassVar[str]
    #: The event names an endpoint may subscribe to, and how errors name the secret.
    known_events: ClassVar[Sequence[str]]
    secret_word: ClassVar[str] = "webhook secret"
    #: The subscription patterns the vendor takes besides event names, as its errors list them.
    patterns_named: ClassVar[str] = ""
    _faults: SharedFaults

    def __init__(
        self, *, retry_schedule: tuple[float, ...], **options: Unpack[EmitterOptions]
    ) -> None:
        self._clock = options["clock"]
        self._faults = options["faults"]
        self._timeout = aiohttp.ClientTimeout(total=options["timeout"])
        self._schedule = retry_schedule
        self._flush_after = options["reorder_flush_after"]
        self.endpoints: dict[str, Any] = {}
        self.log: deque[Any] = deque(maxlen=options["log_limit"])
        self._session: aiohttp.ClientSession | None = None
        self._run = DeliveryRun()
        self._idle: asyncio.Event | None = None
        self._log = logging.getLogger(type(self).__module__)

    @property
    def max_attempts(self) -> int:
        """The first attempt plus one retry per entry of the schedule."""
        return len(self._schedule) + 1

    def _retry_delay(self, attempts: int) -> float:
        return float(self._schedule[attempts - 1])

    def _targets(self, event: str, owned: Callable[[Any], bool]) -> list[Any]:
        """The `owned` endpoints that receive `event`; a loop must run when there are any."""
        targets = [ep for ep in self.endpoints.values() if owned(ep) and ep.wants(event)]
        if targets:
            require_loop()
        return targets

    def add_endpoint(
        self,
        new_id: Callable[[], str],
        tenant_id: str,
        url: str,
        secret: str,
        events: Sequence[str] | None = None,
        **options: Any,
    ) -> Any:
        """Register an endpoint of `tenant_id` (its id from `new_id`); unknown events are refused.

        `options` are the vendor's own endpoint settings (`_endpoint_fields` checks them).
        """
        check_endpoint(url, secret, self.secret_word)
        fields = self._endpoint_fields(**options)
        check_events(events, self.known_events, self._is_pattern, self.patterns_named)
        fields[self.tenant_field] = tenant_id
        return self._register(
            self.endpoint_type(new_id(), url, Secret(secret), tuple(events or ()), **fields)
        )

    def _endpoint_fields(self) -> dict[str, Any]:
        """The endpoint fields the vendor's options give (none unless the vendor takes options)."""
        return {}

    def _is_pattern(self, event: str) -> bool:
        """True for a subscription pattern the vendor takes besides event names (none here)."""
        return False

    def _register(self, endpoint: T) -> T:
        """Keep `endpoint` under its id and give it back."""
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    def _queue(self, delivery: D) -> None:
        """Queue a delivery, twice when the duplicate fault says so."""
        self._enqueue(delivery)
        if self._faults.take_duplicate():
            self._enqueue(replace(delivery, duplicate=True))

    @abstractmethod
    def _sign(self, d: D, bad: bool) -> Signed:
        """The signature headers of the next attempt of `d` (`bad`: deliberately wrong)."""

    def _timeout_error(self) -> str:
        return f"timeout after {self._timeout.total}s"

    def _record(
        self, d: D, answer: Answer, sent_at: datetime, last: bool, bad: bool, signed: Signed
    ) -> Any:
        """The log's record of one attempt."""
        return DeliveryRecord(
            endpoint_id=d.endpoint.id,
            event=d.event,
            event_id=d.event_id,
            ticket_id=d.ticket_id,
            attempt=d.attempts,
            status=answer.status,
            error=answer.error,
            succeeded=answer.ok,
            delivered_at=sent_at,
            failed=last,
            duplicate=d.duplicate,
            bad_signature=bad,
            response_snippet=answer.snippet,
        )

    async def _attempt(self, d: D) -> bool:
        d.attempts += 1
        bad = self._faults.take_bad_signature()
        signed = self._sign(d, bad)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            **signed.headers,
        }
        sent_at = self._clock.now()
        answer = await self._post(d, headers)
        last = not answer.ok and d.attempts >= self.max_attempts
        self.log.append(self._record(d, answer, sent_at, last, bad, signed))
        if last:
            self._log.warning(
                "webhook %s %s to %s failed after %d attempts",
                d.event,
                d.event_id,
                d.endpoint.url,
                d.attempts,
            )
        return answer.ok

    async def _post(self, d: D, headers: dict[str, str]) -> Answer:
        # A status read before the body failed still counts, as the error beside it says.
        status: int | None = None
        error: str | None = None
        snippet = ""
        try:
            session = self._client()
            async with session.post(
                d.endpoint.url, data=d.body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                snippet = (await resp.content.read(200)).decode("utf-8", "replace")
        except TimeoutError:
            error = self._timeout_error()
        except Exception as exc:  # noqa: BLE001 - any failure to get an answer is a failed attempt
            error = f"{type(exc).__name__}: {exc}"
        return Answer(status, error, snippet)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session
