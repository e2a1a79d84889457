"""The metric calls' pure parts: outcomes, endpoint classes, suppression codes, scrape contents."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from ticketwire import metrics
from ticketwire.keys import Keys
from ticketwire.metrics import Exposition, endpoint_class, suppression_code


@pytest.mark.parametrize(
    ("method", "url", "want"),
    [
        ("PATCH", "https://app.inboxops.app/api/v1/tickets/42", "update"),
        ("PUT", "http://127.0.0.1:9/v1/tickets/0c940c31-f96c-45ad-b85c-1b42f4846288", "update"),
        ("POST", "https://x/api/v1/tickets/bulk", "bulk"),
        ("PATCH", "https://x/v1/tickets/bulk-update", "bulk"),
        ("GET", "https://x/api/v1/tickets?status=open&page=2", "list"),
        ("GET", "https://x/api/v1/tickets/42", "get"),
        ("GET", "https://x/api/v1/tickets/42/messages", "list"),
        ("GET", "https://x/v1/tickets/search?q=4711", "search"),
        ("POST", "https://x/v1/tickets", "create"),
        ("POST", "https://x/v1/tickets/42/notes", "create"),
        ("DELETE", "https://x/v1/tickets/42/tags/7", "delete"),
        ("OPTIONS", "https://x/v1/tickets", "other"),
    ],
)
def test_endpoint_classes_never_carry_an_id(method: str, url: str, want: str) -> None:
    assert endpoint_class(method, url) == want


@pytest.mark.parametrize(
    ("why", "want"),
    [
        ("echo: same actions as its own firing 3.0s ago on this ticket", "same"),
        ("echo: this delivery only reflects our own write of status 2.1s ago (rule a)", "echo"),
        ("loop fuse: 10 rule firings on this ticket in the last 1h", "fuse"),
        ("once_per_ticket: fired at 2026-11-23T10:00:00Z (event e1); it has no rearm", "once"),
        ("cooldown: fired 5m ago, cooldown 1h", "cooldown"),
        (["cooldown", 1, 3600, 0], "cooldown"),
        (("fuse", 10, 3600, 10), "fuse"),
        ("something new for ticket 4711", "other"),
    ],
)
def test_suppression_reasons_are_codes(why: Any, want: str) -> None:
    assert suppression_code(why) == want


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _count(name: str, **labels: str) -> float:
    return _samples(REGISTRY).get((name, frozenset(labels.items())), 0.0)


def test_intake_answers_are_told_apart_by_status_and_body() -> None:
    vendor = "unit-intake"
    answers = [
        (202, b'{"status":"stored","event_id":"e1","entry":"1-0"}'),
        (202, b'{"status": "ignored", "event_id": "e2", "event": "user.created"}'),
        (200, b'{"status":"duplicate","event_id":"e1","entry":""}'),
        (401, b'{"error": "invalid_signature", "detail": "no valid signature"}'),
        (413, b'{"error": "payload_too_large", "detail": "body exceeds 10 bytes"}'),
        (400, b'{"error": "made_up_by_a_sender_e3", "detail": "x"}'),
        (400, b"not json"),
        (503, b'{"error": "storage_unavailable", "detail": "retry later"}'),
        (500, None),
    ]
    for status, body in answers:
        metrics.delivery_answered(vendor, status, body, 0.001)
    want = {
        ("stored", "202"): 1,
        ("ignored", "202"): 1,
        ("duplicate", "200"): 1,
        ("refused", "401"): 1,
        ("refused", "413"): 1,
        ("refused", "400"): 2,
        ("unavailable", "503"): 1,
        ("error", "500"): 1,
    }
    for (outcome, status), n in want.items():
        got = _count(
            "ticketwire_deliveries_total",
            vendor=vendor,
            account="default",
            outcome=outcome,
            status=status,
        )
        assert got == n, (outcome, status)
    reasons = {"invalid_signature": 1, "payload_too_large": 1, "storage_unavailable": 1}
    for reason, n in reasons.items():
        assert _count("ticketwire_intake_refusals_total", vendor=vendor, reason=reason) == n
    # A reason a sender made up is not a label value: it is counted as `other`.
    assert _count("ticketwire_intake_refusals_total", vendor=vendor, reason="other") == 3
    assert _count("ticketwire_intake_seconds_count", vendor=vendor) == len(answers)


async def test_a_scrape_without_redis_still_renders(keys: Keys) -> None:
    # Nothing listens on port 1: the read fails at once, the scrape carries on.
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        text = (await Exposition(dead, keys, 4, timeout=1.0).render()).decode()
    finally:
        await dead.aclose()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "ticketwire_redis_up" in names and "ticketwire_queue_depth" not in names
    assert "ticketwire_redis_up 0.0" in text


async def test_a_scrape_reads_the_backlog(redis: Redis, keys: Keys) -> None:
    await redis.xadd(keys.stream(1), {"m": "x"})
    await redis.xadd(keys.dlq, {"kind": "call"})
    text = (await Exposition(redis, keys, 4).render()).decode()
    assert "ticketwire_redis_up 1.0" in text
    assert "ticketwire_queue_depth 1.0" in text
    assert "ticketwire_dlq_depth 1.0" in text


def test_a_fast_histogram_counts_each_value_in_the_bucket_prometheus_would() -> None:
    hist = metrics.EVENT_SECONDS
    cell = hist.child("unit-hist")
    for v in (0.005, 0.0051, 0.3, 900, 901):
        hist.observe(cell, v)
    got = _samples(REGISTRY)
    bucket = "ticketwire_event_latency_seconds_bucket"

    def le(edge: str) -> float:
        return got[(bucket, frozenset({("vendor", "unit-hist"), ("le", edge)}))]

    # `le` is inclusive: 0.005 falls in the 0.005 bucket, 900 in the 900 one.
    assert (le("0.005"), le("0.01"), le("0.5"), le("900.0"), le("+Inf")) == (1, 2, 3, 4, 5)
    count = ("ticketwire_event_latency_seconds_count", frozenset({("vendor", "unit-hist")}))
    total = ("ticketwire_event_latency_seconds_sum", frozenset({("vendor", "unit-hist")}))
    assert got[count] == 5 and got[total] == pytest.approx(1801.3101)
