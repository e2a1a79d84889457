"""InboxOps error bodies (RFC 7807, legacy, non-JSON) become the right errors with useful text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ticketwire.errors import (
    ClientError,
    Forbidden,
    HelpdeskHTTPError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)
from ticketwire.vendors.inboxops.problems import error_from_response
from ticketwire.vendors.problems import DEFAULT_RETRY_AFTER, SNIPPET_CHARS, parse_retry_after

PROBLEM = {"Content-Type": "application/problem+json"}
TYPE = "https://docs.inboxops.app/api/problems/"
INSTANCE = "https://docs.inboxops.app/api/problems/instances/"


def problem(status: int, code: str, detail: str, **extra: Any) -> bytes:
    """An RFC 7807 body as InboxOps documents it."""
    doc = {
        "type": TYPE + code,
        "title": code.replace("_", " ").title(),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "bad_request", ClientError),
        (401, "unauthorized", Unauthorized),
        (403, "forbidden", Forbidden),
        (403, "insufficient_scope", Forbidden),
        (404, "not_found", NotFound),
        (405, "method_not_allowed", ClientError),
        (409, "conflict", ClientError),
        (500, "internal_error", ServerError),
        (503, "service_unavailable", ServerError),
    ],
)
def test_problem_status_maps_to_error_class(
    status: int, code: str, cls: type[HelpdeskHTTPError]
) -> None:
    err = error_from_response(status, PROBLEM, problem(status, code, "boom"))
    assert type(err) is cls
    assert (err.status, err.code) == (status, code)
    assert err.detail is not None and err.detail.startswith("boom")


def test_problem_fields_request_id_from_header_wins_over_instance() -> None:
    body = problem(404, "not_found", "Ticket not found", instance=INSTANCE + "from-instance")
    err = error_from_response(404, {**PROBLEM, "X-Request-Id": "from-header"}, body)
    assert err.request_id == "from-header"
    assert "Ticket not found" in str(err) and "(request from-header)" in str(err)


def test_problem_request_id_from_instance_then_from_the_request() -> None:
    body = problem(404, "not_found", "Ticket not found", instance=INSTANCE + "abc-123")
    assert error_from_response(404, PROBLEM, body, request_id="sent").request_id == "abc-123"
    bare = problem(404, "not_found", "Ticket not found")
    assert error_from_response(404, PROBLEM, bare, request_id="sent").request_id == "sent"


def test_header_lookup_is_case_insensitive_for_plain_dicts() -> None:
    err = error_from_response(404, {"x-request-id": "lower"}, problem(404, "not_found", "x"))
    assert err.request_id == "lower"


def test_code_falls_back_to_the_last_segment_of_type() -> None:
    body = json.dumps({"type": TYPE + "insufficient_scope", "title": "Forbidden", "status": 403})
    err = error_from_response(403, PROBLEM, body.encode())
    assert isinstance(err, Forbidden)
    assert err.code == "insufficient_scope"
    assert err.detail is not None and err.detail.startswith("Forbidden")


def test_about_blank_type_gives_no_code() -> None:
    body = json.dumps({"type": "about:blank", "title": "Gone", "status": 410}).encode()
    err = error_from_response(410, PROBLEM, body)
    assert type(err) is ClientError and err.code is None


def test_messages_say_what_to_do() -> None:
    e401 = error_from_response(401, PROBLEM, problem(401, "unauthorized", "Invalid API key"))
    assert "check INBOXOPS_API_KEY: the key is missing, malformed, expired or revoked" in str(e401)
    scope = error_from_response(403, PROBLEM, problem(403, "insufficient_scope", "Read only"))
    assert "the key is read-only; create a read-and-write key" in str(scope)
    forbidden = error_from_response(403, PROBLEM, problem(403, "forbidden", "No API access"))
    assert "api_webhooks" in str(forbidden) and "read-only" not in str(forbidden)
    server = error_from_response(500, PROBLEM, problem(500, "internal_error", "Oops"))
    assert "retry" in str(server)


def test_problem_validation_errors_name_the_field() -> None:
    body = problem(
        400,
        "bad_request",
        "Invalid body",
        errors=[{"field": "priority", "message": "must be one of low, normal, high, urgent"}],
    )
    err = error_from_response(400, PROBLEM, body)
    assert err.detail is not None
    assert "priority: must be one of low, normal, high, urgent" in err.detail


def test_legacy_shape_uses_error_as_title_and_message_as_detail() -> None:
    body = {
        "error": "Bad Request",
        "message": "The request contains invalid parameters or malformed data",
        "code": 400,
        "details": [{"field": "email", "message": "Invalid email format"}],
    }
    err = error_from_response(400, {"Content-Type": "application/json"}, json.dumps(body).encode())
    assert type(err) is ClientError
    assert err.code is None  # the legacy `code` is only the numeric status
    assert err.detail is not None
    assert err.detail.startswith("The request contains invalid parameters")
    assert "email: Invalid email format" in err.detail
    assert err.body is not None and '"details"' in err.body


@pytest.mark.parametrize(
    ("status", "cls"), [(401, Unauthorized), (403, Forbidden), (404, NotFound), (500, ServerError)]
)
def test_legacy_statuses(status: int, cls: type[HelpdeskHTTPError]) -> None:
    body = json.dumps({"error": "E", "message": "Something", "code": status}).encode()
    err = error_from_response(status, {}, body)
    assert type(err) is cls and err.status == status


def test_legacy_rate_limit_reads_retry_after_from_the_body() -> None:
    body = {
        "error": "Too Many Requests",
        "message": "Rate limit exceeded. Please try again later",
        "code": 429,
        "retryAfter": 3600,
    }
    err = error_from_response(429, {}, json.dumps(body).encode())
    assert isinstance(err, RateLimited)
    assert err.retry_after == 3600
    assert "retry after 3600s" in str(err)


def test_retry_after_header_seconds_beats_the_body() -> None:
    body = problem(429, "rate_limit_exceeded", "Slow down", retryAfter=3600)
    err = error_from_response(429, {**PROBLEM, "Retry-After": "17"}, body)
    assert isinstance(err, RateLimited)
    assert (err.retry_after, err.code) == (17, "rate_limit_exceeded")


def test_retry_after_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    headers = {"Retry-After": "Wed, 01 Jan 2025 12:01:30 GMT"}
    err = error_from_response(429, headers, b"", now=now)
    assert isinstance(err, RateLimited) and err.retry_after == 90


def test_retry_after_default_when_nothing_says() -> None:
    err = error_from_response(429, PROBLEM, problem(429, "rate_limit_exceeded", "Slow down"))
    assert isinstance(err, RateLimited) and err.retry_after == DEFAULT_RETRY_AFTER


def test_unparseable_retry_after_header_falls_back_to_the_body() -> None:
    body = json.dumps({"error": "Too Many Requests", "code": 429, "retryAfter": 5}).encode()
    err = error_from_response(429, {"Retry-After": "soon"}, body)
    assert isinstance(err, RateLimited) and err.retry_after == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("-1", None),
        ("later", None),
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),  # in the past: go now
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


def test_html_body_becomes_a_short_snippet() -> None:
    html = "<html><body>" + "<p>Bad gateway</p>\n" * 100 + "</body></html>"
    err = error_from_response(502, {"Content-Type": "text/html"}, html.encode())
    assert type(err) is ServerError and err.code is None
    assert err.detail is not None
    assert "unexpected text/html response: <html><body><p>Bad gateway</p>" in err.detail
    snippet = err.detail.split("response: ", 1)[1].split(";", 1)[0]
    assert len(snippet) <= SNIPPET_CHARS


def test_empty_and_non_object_bodies() -> None:
    empty = error_from_response(404, {"X-Request-Id": "r1"}, b"")
    assert type(empty) is NotFound and empty.request_id == "r1"
    assert empty.detail is not None and empty.detail.startswith("empty response body")
    listed = error_from_response(400, {}, b"[1, 2]")
    assert type(listed) is ClientError and listed.detail is not None
    assert "[1, 2]" in listed.detail
    binary = error_from_response(500, {}, b"\xff\xfe\x00garbage")
    assert type(binary) is ServerError


def test_redirect_is_reported_with_advice() -> None:
    err = error_from_response(301, {"Location": "https://elsewhere"}, b"")
    assert type(err) is HelpdeskHTTPError
    assert "base URL" in str(err)


def test_field_errors_that_repeat_the_detail_are_not_repeated() -> None:
    body = {
        "error": "Bad Request",
        "message": "priority: must be one of low, normal, high, urgent",
        "code": 400,
        "details": [
            {"field": "priority", "message": "priority: must be one of low, normal, high, urgent"}
        ],
    }
    err = error_from_response(400, {}, json.dumps(body).encode())
    assert err.detail is not None
    assert err.detail.count("must be one of") == 1
