"""The fault suite's counting, on records written by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.faults import measure

OURS = {"User-Agent": "ticketwire/0.1"}


def entry(method: str, path: str, body: object, status: int = 200, **extra: object) -> dict:
    return {
        "method": method,
        "path": path,
        "body": body,
        "status": status,
        "headers": OURS,
        **extra,
    }


def test_a_repeated_effect_counts_once_per_repeat_even_when_it_changes_nothing() -> None:
    journal = [
        entry("PATCH", "/api/v1/tickets/a", {"status": "in_progress"}),
        entry(
            "POST",
            "/api/v1/tickets/bulk",
            {"operation": "update_status", "ticket_ids": ["a", "b"], "status": "x"},
        ),
        entry(
            "POST",
            "/api/v1/tickets/bulk",
            {"operation": "update_status", "ticket_ids": ["b"], "status": "x"},
        ),
        entry("POST", "/api/v1/tickets/a/messages", {"body_text": "hi"}),
        entry("POST", "/api/v1/tickets/a/messages", {"body_text": "hi"}),
        entry("POST", "/api/v1/tickets/a/messages", {"body_text": "hi"}),
        entry("PATCH", "/api/v1/tickets/a", {"status": "in_progress"}, status=503),
    ]
    count, shown = measure.duplicated(journal)
    assert count == 3  # b's bulk status once again, a's note twice again; the 503 did nothing
    assert any("note" in s and "x3" in s for s in shown)


def test_writes_of_others_and_different_effects_are_not_duplicates() -> None:
    journal = [
        entry("PATCH", "/api/v1/tickets/a", {"status": "open"}),
        entry("PATCH", "/api/v1/tickets/a", {"status": "closed"}),
        entry("PATCH", "/api/v1/tickets/b", {"status": "open"}),
        {
            **entry("PATCH", "/api/v1/tickets/a", {"status": "open"}),
            "headers": {"User-Agent": "agent"},
        },
        entry("GET", "/api/v1/tickets/a", None),
    ]
    assert measure.duplicated(journal) == (0, [])


def test_the_busiest_window_counts_requests_within_its_length() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    times = [t0 + timedelta(seconds=s) for s in (0, 10, 59.9, 60, 61, 130)]
    assert measure.most_in_window(times, 60.0) == 4  # 10, 59.9, 60, 61
    assert measure.most_in_window([], 60.0) == 0


def test_lost_is_accepted_and_not_processed() -> None:
    deliveries = [
        {"event_id": "e1", "succeeded": False, "status": 503},
        {"event_id": "e1", "succeeded": True, "status": 200},
        {"event_id": "e2", "succeeded": False, "status": 503},
    ]
    assert measure.sent_ids(deliveries) == {"e1", "e2"}
    assert measure.accepted_ids(deliveries) == {"e1"}
    assert measure.answered(deliveries, 503) == 2


def test_first_write_after_a_moment() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    journal = [
        entry("PATCH", "/api/v1/tickets/a", {"x": 1}, at="2026-01-01T00:00:01.000Z"),
        entry("PATCH", "/api/v1/tickets/a", {"x": 2}, status=429, at="2026-01-01T00:00:02.000Z"),
        entry("PATCH", "/api/v1/tickets/a", {"x": 3}, at="2026-01-01T00:00:05.500Z"),
    ]
    assert measure.first_write_after(journal, t0 + timedelta(seconds=1.5)) == 4.0
    assert measure.first_write_after(journal, t0 + timedelta(seconds=6)) is None
