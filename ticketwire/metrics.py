"""Every Prometheus metric ticketwire exports, and the one-line calls that move them.

Labels are bounded: vendor, outcome, HTTP status, rule name (from the rules files), endpoint
class, reason code. Never a ticket or event id. What moves once per delivery or per event is a
`FastCounter` / `FastHistogram` (a plain cell per label set, looked up once and cached, turned
into metric families at scrape time); the rest are prometheus-client's own metrics.

Counters and histograms are per process (a worker's, or the web process's; `ticketwire up` runs
both in one). The backlog gauges are read from Redis when /metrics is scraped
(`BacklogCollector`), so every process shows the deployment's backlog.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from ticketwire.accountkey import DEFAULT
from ticketwire.backlog import Backlog, read_backlog
from ticketwire.keys import Keys
from ticketwire.trace import codes as trace_codes

# `_created` series double the output and no alert or panel reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The text format /metrics answers in.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds: from a few ms of intake to minutes of queueing.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_INTAKE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_API_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class FastCounter(Collector):
    """A labelled counter for the hot path: a plain list cell per label set, read at scrape time.

    prometheus-client's own children take a lock per increment (about a microsecond each);
    these are only ever touched from the event loop's thread, so a list cell is enough.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self._cells: dict[tuple[str, ...], list[float]] = {}
        REGISTRY.register(self)

    def child(self, *labels: str) -> list[float]:
        """The cell of one label set: add to `cell[0]`."""
        cell = self._cells.get(labels)
        if cell is None:
            cell = self._cells[labels] = [0.0]
        return cell

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self._doc, labels=self._labelnames)
        for labels, cell in list(self._cells.items()):
            family.add_metric(list(labels), cell[0])
        yield family


class FastHistogram(Collector):
    """A labelled histogram for the hot path, like `FastCounter`: counts per bucket, summed late."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self.bounds = tuple(buckets)
        # As Prometheus writes `le`: 0.005, 1.0, +Inf (the bounds here are all small numbers).
        self._edges = [*(repr(float(b)) for b in self.bounds), "+Inf"]
        self._cells: dict[tuple[str, ...], list[float]] = {}
        REGISTRY.register(self)

    def child(self, *labels: str) -> list[float]:
        """Per bucket (the last one +Inf) its own count, then the sum: see `observe`."""
        cell = self._cells.get(labels)
        if cell is None:
            cell = self._cells[labels] = [0.0] * (len(self.bounds) + 2)
        return cell

    def observe(self, cell: list[float], value: float) -> None:
        """Count `value` in a child's cell."""
        cell[bisect_left(self.bounds, value)] += 1
        cell[-1] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self._doc, labels=self._labelnames)
        edges = self._edges
        for labels, cell in list(self._cells.items()):
            running, buckets = 0.0, []
            for edge, n in zip(edges, cell[:-1], strict=True):
                running += n
                buckets.append((edge, running))
            family.add_metric(list(labels), buckets, cell[-1])
        yield family


#: The `account` label of answers to a route naming no configured account: one value, whatever
#: a sender put in the path (no account name has parentheses).
UNKNOWN_ACCOUNT = "(unknown)"

# --- intake (web process)
DELIVERIES = FastCounter(
    "ticketwire_deliveries",
    "Webhook deliveries answered at intake, by vendor, account, outcome and HTTP status.",
    ["vendor", "account", "outcome", "status"],
)
REFUSALS = Counter(
    "ticketwire_intake_refusals",
    "Deliveries refused at intake, by vendor and reason code.",
    ["vendor", "reason"],
)
INTAKE_SECONDS = FastHistogram(
    "ticketwire_intake_seconds",
    "Time from a delivery's request to its answer, by vendor.",
    ["vendor"],
    _INTAKE_BUCKETS,
)
# --- events (workers)
EVENTS = FastCounter(
    "ticketwire_events",
    "Events a worker finished with, by vendor and outcome (handled, stale, error, ...).",
    ["vendor", "outcome"],
)
STALE = FastCounter(
    "ticketwire_stale_events",
    "Events not acted on because a newer event of their ticket was applied.",
    ["vendor"],
)
EVENT_SECONDS = FastHistogram(
    "ticketwire_event_latency_seconds",
    "Time from an event's receipt at intake to a worker having handled it.",
    ["vendor"],
    _LATENCY_BUCKETS,
)
RULE_EVALUATIONS = FastCounter(
    "ticketwire_rule_evaluations", "Times a rule was considered for an event.", ["rule"]
)
RULE_FIRINGS = FastCounter(
    "ticketwire_rule_firings", "Rule firings that went ahead (after the loop guard).", ["rule"]
)
RULE_SUPPRESSIONS = Counter(
    "ticketwire_rule_suppressions",
    "Firings withheld, by rule and reason (echo, same, once, cooldown, fuse, paused, other).",
    ["rule", "reason"],
)
RULE_ERRORS = Counter("ticketwire_rule_errors", "Rules that raised on an event.", ["rule"])
# --- helpdesk API
API_CALLS = Counter(
    "ticketwire_api_calls",
    "Helpdesk API requests by vendor, account, endpoint class and HTTP status ('error': no "
    "answer).",
    ["vendor", "account", "endpoint", "status"],
)
API_SECONDS = Histogram(
    "ticketwire_api_call_seconds",
    "Helpdesk API request latency by vendor and endpoint class.",
    ["vendor", "endpoint"],
    buckets=_API_BUCKETS,
)
API_RETRIES = Counter(
    "ticketwire_api_retries",
    "Write-backs scheduled again, by vendor and reason (rate_limited, unavailable, budget).",
    ["vendor", "reason"],
)
BUDGET_WAITS = Counter(
    "ticketwire_budget_waits",
    "Requests that waited briefly for their rate budget, by vendor.",
    ["vendor"],
)
BUDGET_WAIT_SECONDS = Counter(
    "ticketwire_budget_wait_seconds",
    "Seconds requests waited for their rate budget, by vendor.",
    ["vendor"],
)
BUDGET_PAUSES = Counter(
    "ticketwire_budget_pauses",
    "Rate budgets paused for every worker by a 429 answer, by vendor.",
    ["vendor"],
)
# --- failures and ownership
DEAD_LETTERS = Counter(
    "ticketwire_dead_letters", "Dead letters written, by kind (event or call).", ["kind"]
)
LEASE_MOVES = Counter(
    "ticketwire_lease_moves",
    "Partition leases this process acquired, released or lost.",
    ["move"],
)

# Label values the intake may report; anything else is counted as `other`.
_REFUSAL_CODES = frozenset({*trace_codes.REFUSALS, "internal_error"})
_SUPPRESSION_CODES = ("echo", "same", "once", "cooldown", "fuse", "paused")


# --- hot-path calls: each looks its children up once per label set.

_delivery: dict[tuple[str, str, int, bool], tuple[list[float], list[float]]] = {}


def delivery_answered(
    vendor: str, status: int, body: bytes | None, seconds: float, account: str = DEFAULT
) -> None:
    """Count one intake answer and its latency; the outcome follows from the status and body."""
    # A look at the answer's start tells stored from ignored (both 202) without decoding it.
    ignored = status == 202 and body is not None and b'"ignored"' in body[:24]
    key = (vendor, account, status, ignored)
    cells = _delivery.get(key)
    if cells is None:
        outcome = _intake_outcome(status, ignored)
        cells = _delivery[key] = (
            DELIVERIES.child(vendor, account, outcome, str(status)),
            INTAKE_SECONDS.child(vendor),
        )
    cells[0][0] += 1
    INTAKE_SECONDS.observe(cells[1], seconds)
    if status >= 300:
        REFUSALS.labels(vendor, _refusal_code(body)).inc()


def _intake_outcome(status: int, ignored: bool) -> str:
    if status == 202:
        return "ignored" if ignored else "stored"
    if status == 200:
        return "duplicate"
    if status == 503:
        return "unavailable"
    return "error" if status >= 500 else "refused"


def _refusal_code(body: bytes | None) -> str:
    try:
        code = json.loads(body or b"").get("error")
    except (ValueError, AttributeError):
        return "other"
    return code if code in _REFUSAL_CODES else "other"


_events: dict[tuple[str, str], tuple[list[float], list[float], list[float]]] = {}
_NOWHERE = [0.0]


def event_done(vendor: str, outcome: str, received_ms: int) -> None:
    """A worker finished with an event (`handled`, `stale`, `malformed`, `unconfigured`, `error`)."""
    cells = _events.get((vendor, outcome))
    if cells is None:
        cells = _events[(vendor, outcome)] = (
            EVENTS.child(vendor, outcome),
            EVENT_SECONDS.child(vendor),
            STALE.child(vendor) if outcome == "stale" else _NOWHERE,
        )
    cells[0][0] += 1
    cells[2][0] += 1
    if received_ms:
        EVENT_SECONDS.observe(cells[1], max(0.0, time.time() - received_ms / 1000))


def event_stale(vendor: str, received_ms: int) -> None:
    """An event not acted on because its ticket has moved on."""
    event_done(vendor, "stale", received_ms)


def event_handled(vendor: str, received_ms: int) -> None:
    """An event handled: its rules ran and their write-backs are queued."""
    event_done(vendor, "handled", received_ms)


_rules: dict[str, tuple[list[float], list[float]]] = {}


def decided(
    decisions: Sequence[Any], kept: Sequence[Any], suppressed: Iterable[tuple[str, Any]]
) -> None:
    """Count the rules considered for one event, those that fired, and those withheld."""
    for d in decisions:
        name = d.rule.name
        cells = _rules.get(name)
        if cells is None:
            cells = _rules[name] = (RULE_EVALUATIONS.child(name), RULE_FIRINGS.child(name))
        cells[0][0] += 1
        if d.error is not None:
            RULE_ERRORS.labels(name).inc()
        elif d.reason == "paused" and not d.fired:
            RULE_SUPPRESSIONS.labels(name, "paused").inc()
    for d in kept:
        _rules[d.rule.name][1][0] += 1
    for name, why in suppressed:
        RULE_SUPPRESSIONS.labels(name, suppression_code(why)).inc()


def suppression_code(why: Any) -> str:
    """The reason code of a withheld firing, from its text or its `[code, ...]` detail."""
    if isinstance(why, list | tuple) and why:
        why = why[0]
    text = str(why)
    if text.startswith("echo: same actions"):
        return "same"
    if text.startswith("loop fuse"):
        return "fuse"
    if text.startswith("once_per_ticket"):
        return "once"
    head = text.split(":", 1)[0].split(" ", 1)[0]
    return head if head in _SUPPRESSION_CODES else "other"


def api_call(
    label: str, method: str, url: str, status: int | str, seconds: float, account: str = DEFAULT
) -> None:
    """One helpdesk request of `account` answered (`status`) or not (`"error"`)."""
    vendor = label.split(" ", 1)[0].lower()
    endpoint = endpoint_class(method, url)
    API_CALLS.labels(vendor, account, endpoint, str(status)).inc()
    API_SECONDS.labels(vendor, endpoint).observe(seconds)


_ID_LIKE = re.compile(r"\d|^[0-9a-f-]{16,}$|^[A-Z]+-\d+$", re.IGNORECASE)


def endpoint_class(method: str, url: str) -> str:
    """`bulk`, `search`, `list`, `get`, `update`, `create`, `delete` or `other`: never a path."""
    path = url.split("?", 1)[0].rstrip("/").lower()
    if "bulk" in path:
        return "bulk"
    if "search" in path:
        return "search"
    last = path.rsplit("/", 1)[-1]
    method = method.upper()
    if method in ("GET", "HEAD"):
        return "get" if _ID_LIKE.search(last) else "list"
    if method in ("PATCH", "PUT"):
        return "update"
    if method == "POST":
        return "create"
    if method == "DELETE":
        return "delete"
    return "other"


def api_retry(vendor: str, reason: str) -> None:
    """A write-back put back to be sent later (`rate_limited`, `unavailable`, `budget`)."""
    API_RETRIES.labels(vendor, reason).inc()


def budget_waited(scope: str, seconds: float) -> None:
    """A request waited `seconds` for its rate budget."""
    vendor = scope.split(":", 1)[0]
    BUDGET_WAITS.labels(vendor).inc()
    BUDGET_WAIT_SECONDS.labels(vendor).inc(seconds)


def budget_paused(scope: str) -> None:
    """A 429 answer paused a budget for every worker."""
    BUDGET_PAUSES.labels(scope.split(":", 1)[0]).inc()


def dead_lettered(kind: str) -> None:
    """A dead letter was written."""
    DEAD_LETTERS.labels(kind if kind in ("event", "call") else "other").inc()


def lease_moved(move: str, count: int = 1) -> None:
    """Partitions `acquired`, `released` or `lost` by this process."""
    LEASE_MOVES.labels(move).inc(count)


# --- scrape time


class PartitionOwner(Protocol):
    """What the worker gauges read from a running consumer."""

    @property
    def owned(self) -> frozenset[int]: ...

    @property
    def stats(self) -> dict[str, int]: ...


_owners: list[PartitionOwner] = []


def track_consumer(consumer: PartitionOwner) -> None:
    """Report this consumer's partitions on /metrics (until `untrack_consumer`)."""
    _owners.append(consumer)


def untrack_consumer(consumer: PartitionOwner) -> None:
    """Stop reporting a consumer that stopped."""
    if consumer in _owners:
        _owners.remove(consumer)


def _backlog_families(backlog: Backlog | None, read_s: float) -> list[Metric]:
    up = GaugeMetricFamily(
        "ticketwire_redis_up", "1 when the backlog could be read from Redis at this scrape."
    )
    up.add_metric([], 0 if backlog is None else 1)
    took = GaugeMetricFamily(
        "ticketwire_backlog_read_seconds", "How long reading the backlog took at this scrape."
    )
    took.add_metric([], read_s)
    out: list[Metric] = [up, took]
    if backlog is None:
        return out
    for name, doc, value in (
        ("queue_depth", "Events stored and not yet handled, all partitions.", backlog.queue_depth),
        (
            "queue_pending",
            "Of those, delivered to a worker and not yet acknowledged.",
            backlog.queue_pending,
        ),
        (
            "queue_lag_seconds",
            "Age of the oldest event not yet handled (0 when none waits).",
            backlog.oldest_unhandled_s,
        ),
        ("outbox_tickets", "Tickets with write-backs queued.", backlog.outbox_tickets),
        ("outbox_due", "Tickets whose queued write-backs may be sent now.", backlog.outbox_due),
        (
            "outbox_oldest_due_seconds",
            "How long the longest-waiting due write-back has been due.",
            backlog.oldest_due_s,
        ),
        ("dlq_depth", "Dead letters stored.", backlog.dead_letters),
    ):
        g = GaugeMetricFamily(f"ticketwire_{name}", doc)
        g.add_metric([], value)
        out.append(g)
    paused = GaugeMetricFamily(
        "ticketwire_budget_paused_seconds",
        "Seconds a 429 pause of a vendor's rate budget has left (0: not paused).",
        labels=["vendor"],
    )
    left: dict[str, float] = {}
    for scope, seconds in backlog.paused_budgets.items():
        vendor = scope.split(":", 1)[0]
        left[vendor] = max(left.get(vendor, 0.0), seconds)
    for vendor, seconds in sorted(left.items()):
        paused.add_metric([vendor], seconds)
    out.append(paused)
    return out


def _worker_families(partitions: int) -> list[Metric]:
    if not _owners:
        return []
    owned = GaugeMetricFamily(
        "ticketwire_worker_partitions", "Partitions this worker process owns right now."
    )
    owned.add_metric([], sum(len(c.owned) for c in _owners))
    live = GaugeMetricFamily("ticketwire_workers_live", "Live workers this worker sees.")
    live.add_metric([], max(c.stats.get("workers_live", 0) for c in _owners))
    total = GaugeMetricFamily("ticketwire_partitions", "Partitions of the deployment.")
    total.add_metric([], partitions)
    return [owned, live, total]


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


@dataclass(eq=False)
class Exposition:
    """Renders /metrics: this process's counters, then the backlog read from Redis now."""

    redis: Redis
    keys: Keys
    partitions: int
    _: KW_ONLY
    timeout: float = 2.0
    registry: CollectorRegistry | None = None
    clock: Callable[[], float] = time.monotonic

    async def backlog(self) -> tuple[Backlog | None, float]:
        """The backlog, or None when Redis did not answer in time; and how long it took."""
        start = self.clock()
        try:
            async with asyncio.timeout(self.timeout):
                backlog: Backlog | None = await read_backlog(self.redis, self.keys, self.partitions)
        except Exception:  # noqa: BLE001 - a scrape must answer whatever Redis does
            backlog = None
        return backlog, self.clock() - start

    async def render(self) -> bytes:
        """The whole exposition, in Prometheus text format."""
        backlog, took = await self.backlog()
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(_Snapshot(_backlog_families(backlog, took)))
        scrape.register(_Snapshot(_worker_families(self.partitions)))
        return generate_latest(self.registry or REGISTRY) + generate_latest(scrape)
