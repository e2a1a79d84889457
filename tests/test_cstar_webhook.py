"""cStar webhook intake: every signature scheme and failure reason, and every envelope shape."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from ticketwire.errors import InvalidSignature, MalformedEvent
from ticketwire.event import PROCESSED_EVENTS
from ticketwire.secret import Secret
from ticketwire.vendors import WebhookIntake
from ticketwire.vendors.cstar.webhook import CStarWebhook, parse, sign, sign_legacy

SECRET = "whsec_current_5f2a"
OLD_SECRET = "whsec_previous_91bc"
NOW = 1_764_000_000


def intake(*secrets: str, **kw: Any) -> CStarWebhook:
    return CStarWebhook([Secret(s) for s in secrets or (SECRET,)], now=lambda: NOW, **kw)


def envelope(**over: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": "evt_8f3a",
        "type": "ticket.created",
        "created_at": "2025-11-24T15:00:00Z",
        "team_id": "team-1",
        "data": {
            "ticket": {
                "id": "tkt_42",
                "prefixed_id": "CST-1024",
                "title": "Cannot log in",
                "status": "open",
                "priority": "high",
                "channel": "email",
                "customer_id": "cus_7",
                "created_at": "2025-11-24T14:59:00Z",
                "dashboard_url": "https://www.cstar.help/dashboard/tickets/tkt_42",
            },
            "customer": {"id": "cus_7", "name": "Dana"},
        },
    }
    env.update(over)
    return env


def body_of(env: dict[str, Any]) -> bytes:
    return json.dumps(env, separators=(",", ":")).encode()


BODY = body_of(envelope())


def reason(hook: CStarWebhook, headers: dict[str, str], body: bytes = BODY) -> str:
    with pytest.raises(InvalidSignature) as caught:
        hook.verify(headers, body)
    text = caught.value.reason
    for secret in (SECRET, OLD_SECRET):
        assert secret not in text
    return text


# ---- signatures ----------------------------------------------------------------------------


def test_intake_satisfies_the_protocol_and_hides_secrets() -> None:
    hook: WebhookIntake = intake()
    assert hook.vendor == "cstar"
    assert SECRET not in repr(hook)
    assert set(hook.replay_headers) >= {
        "X-Signature",
        "X-Event-ID",
        "X-Event-Type",
        "X-Webhook-ID",
        "X-Timestamp",
        "X-Delivery-Attempt",
        "x-cstar-request-id",
        "Content-Type",
        "User-Agent",
    }


def test_sign_is_hmac_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, NOW) == f"t={NOW},v1={expected}"
    legacy = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign_legacy(BODY, SECRET) == f"sha256={legacy}"


def test_valid_v1_signature_passes() -> None:
    intake().verify({"X-Signature": sign(BODY, SECRET, NOW)}, BODY)


def test_header_lookup_ignores_case_on_plain_dicts() -> None:
    intake().verify({"x-signature": sign(BODY, SECRET, NOW)}, BODY)


def test_wrong_secret_is_a_mismatch() -> None:
    text = reason(intake(), {"X-Signature": sign(BODY, "whsec_someone_else", NOW)})
    assert "does not match any active secret" in text
    assert "CSTAR_WEBHOOK_SECRETS" in text


def test_a_changed_body_is_a_mismatch() -> None:
    text = reason(intake(), {"X-Signature": sign(BODY, SECRET, NOW)}, BODY + b" ")
    assert "does not match" in text


def test_signature_over_another_timestamp_is_a_mismatch() -> None:
    value = sign(BODY, SECRET, NOW).replace(f"t={NOW}", f"t={NOW - 1}")
    assert "does not match" in reason(intake(), {"X-Signature": value})


@pytest.mark.parametrize(("offset", "says"), [(-301, "301s old"), (301, "301s in the future")])
def test_stale_in_either_direction_names_both_times(offset: int, says: str) -> None:
    t = NOW + offset
    text = reason(intake(), {"X-Signature": sign(BODY, SECRET, t)})
    assert text.startswith("stale X-Signature timestamp")
    assert f"t={t}" in text and f"now={NOW}" in text and says in text
    assert "300s tolerance" in text


@pytest.mark.parametrize("offset", [-300, 300])
def test_the_tolerance_edge_still_passes(offset: int) -> None:
    intake().verify({"X-Signature": sign(BODY, SECRET, NOW + offset)}, BODY)


def test_tolerance_is_configurable() -> None:
    hook = intake(tolerance_s=10)
    assert "10s tolerance" in reason(hook, {"X-Signature": sign(BODY, SECRET, NOW - 11)})
    hook.verify({"X-Signature": sign(BODY, SECRET, NOW - 10)}, BODY)


def test_a_stale_signature_with_the_wrong_secret_is_reported_as_a_mismatch() -> None:
    text = reason(intake(), {"X-Signature": sign(BODY, "whsec_other", NOW - 3600)})
    assert "does not match" in text


def test_legacy_sha256_over_the_body_alone_passes_without_a_timestamp() -> None:
    intake().verify({"X-Signature": sign_legacy(BODY, SECRET)}, BODY)
    intake().verify(
        {"X-Signature": sign_legacy(BODY, SECRET).upper().replace("SHA256", "sha256")}, BODY
    )


def test_legacy_with_the_wrong_secret_is_a_mismatch() -> None:
    assert "does not match" in reason(intake(), {"X-Signature": sign_legacy(BODY, "whsec_x")})


def test_legacy_can_be_refused() -> None:
    hook = intake(accept_legacy=False)
    text = reason(hook, {"X-Signature": sign_legacy(BODY, SECRET)})
    assert "legacy" in text and "t=<unix seconds>,v1=<hex>" in text
    hook.verify({"X-Signature": sign(BODY, SECRET, NOW)}, BODY)


@pytest.mark.parametrize(
    "value_of", [lambda: sign(BODY, SECRET, NOW), lambda: sign_legacy(BODY, SECRET)]
)
def test_the_old_header_name_is_accepted(value_of: Any) -> None:
    intake().verify({"x-cstar-signature": value_of()}, BODY)
    intake().verify({"X-Cstar-Signature": value_of()}, BODY)


def test_mismatch_under_the_old_header_name_names_it() -> None:
    text = reason(intake(), {"x-cstar-signature": sign(BODY, "whsec_x", NOW)})
    assert text.startswith("x-cstar-signature does not match")


def test_rotated_secrets_both_verify() -> None:
    hook = intake(SECRET, OLD_SECRET)
    hook.verify({"X-Signature": sign(BODY, SECRET, NOW)}, BODY)
    hook.verify({"X-Signature": sign(BODY, OLD_SECRET, NOW)}, BODY)
    hook.verify({"X-Signature": sign_legacy(BODY, OLD_SECRET)}, BODY)
    only_new = intake(SECRET)
    assert "does not match" in reason(only_new, {"X-Signature": sign(BODY, OLD_SECRET, NOW)})


def test_any_of_several_v1_values_may_match() -> None:
    good = sign(BODY, SECRET, NOW).split("v1=")[1]
    value = f"t={NOW},v1={'0' * 64},v0=ignored,v1={good}"
    intake().verify({"X-Signature": value}, BODY)


def test_missing_header() -> None:
    text = reason(intake(), {"Content-Type": "application/json"})
    assert text.startswith("missing X-Signature header")
    assert "x-cstar-signature" in text
    assert reason(intake(), {"X-Signature": ""}).startswith("missing")


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        f"t={NOW}",
        "v1=" + "a" * 64,
        f"t=soon,v1={'a' * 64}",
        f"t={NOW},t={NOW},v1={'a' * 64}",
        f"t={NOW},v1=nothex",
        f"t={NOW},v1={'a' * 63}",
        "sha256=zz",
        "sha256=",
    ],
)
def test_malformed_headers_say_what_is_expected(value: str) -> None:
    text = reason(intake(), {"X-Signature": value})
    assert text.startswith("malformed X-Signature")
    assert "t=<unix seconds>,v1=<hex>" in text


def test_needs_a_secret_and_a_positive_tolerance() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CStarWebhook([])
    with pytest.raises(ValueError, match="tolerance_s"):
        CStarWebhook([Secret(SECRET)], tolerance_s=0)


def test_event_id_header_differing_from_the_envelope_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = {"X-Signature": sign(BODY, SECRET, NOW), "X-Event-ID": "evt_other"}
    with caplog.at_level(logging.WARNING, logger="ticketwire.receiver"):
        intake().verify(headers, BODY)
    assert "evt_other" in caplog.text and "envelope's id is used" in caplog.text
    assert parse(BODY).id == "evt_8f3a"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ticketwire.receiver"):
        intake().verify({**headers, "X-Event-ID": "evt_8f3a"}, BODY)
    assert caplog.text == ""


# ---- envelopes -----------------------------------------------------------------------------


def test_created_event_with_the_common_view() -> None:
    event = parse(BODY)
    assert event.vendor == "cstar"
    assert (event.type, event.id, event.tenant, event.ticket_id) == (
        "ticket.created",
        "evt_8f3a",
        "team-1",
        "tkt_42",
    )
    assert event.raw_type is None
    assert event.created_at == datetime(2025, 11, 24, 15, 0, tzinfo=UTC)
    assert event.ticket["prefixed_id"] == "CST-1024"
    assert event.ticket["dashboard_url"].endswith("/tkt_42")
    assert event.common == {
        "status": "open",
        "priority": "high",
        "assignee": None,
        "tags": None,
        "subject": "Cannot log in",
    }
    assert event.changes is None
    # Keys the payload did not carry stay absent: "unknown", not "empty".
    assert "tags" not in event.ticket and "assigned_to" not in event.ticket


def test_lenient_ticket_fields_and_unknown_keys() -> None:
    env = envelope()
    env["data"]["ticket"].update(
        id=42,
        assignedTo={"id": "agt_ava", "name": "Ava"},
        tags=["vip", {"name": "billing"}, ""],
        metadata={"plan": "pro"},
        status="pending",
        priority="critical",
        sla_paused=True,
    )
    event = parse(body_of(env))
    assert event.ticket_id == "42"
    assert event.ticket["assigned_to"] == {"id": "agt_ava", "name": "Ava"}
    assert event.ticket["sla_paused"] is True and event.ticket["metadata"] == {"plan": "pro"}
    assert event.common == {
        "status": "waiting",
        "priority": "urgent",
        "assignee": "agt_ava",
        "tags": ["vip", "billing"],
        "subject": "Cannot log in",
    }


def test_snake_case_assigned_to_and_camel_envelope_keys() -> None:
    env = envelope(type="ticket.assigned")
    env["createdAt"] = env.pop("created_at")
    env["teamId"] = env.pop("team_id")
    env["data"]["ticket"]["assigned_to"] = "agt_ben"
    event = parse(body_of(env))
    assert event.type == "ticket.assigned" and event.tenant == "team-1"
    assert event.common["assignee"] == "agt_ben"


def test_updated_with_changes_stays_updated() -> None:
    env = envelope(type="ticket.updated")
    env["data"]["changes"] = {
        "status": {"from": "open", "to": "pending"},
        "priority": {"old": "normal", "new": "high"},
        "title": "New title",
    }
    event = parse(body_of(env))
    assert event.type == "ticket.updated"
    assert event.changes == {
        "status": {"from": "open", "to": "pending"},
        "priority": {"from": "normal", "to": "high"},
        "title": {"from": None, "to": "New title"},
    }


def test_updated_without_changes() -> None:
    event = parse(body_of(envelope(type="ticket.updated")))
    assert event.type == "ticket.updated" and event.changes is None
    env = envelope(type="ticket.updated")
    env["data"]["changes"] = {}
    assert parse(body_of(env)).changes is None


@pytest.mark.parametrize("kind", ["ticket.closed", "ticket.assigned", "ticket.created"])
def test_canonical_types_are_kept(kind: str) -> None:
    event = parse(body_of(envelope(type=kind)))
    assert event.type == kind and event.type in PROCESSED_EVENTS


@pytest.mark.parametrize("kind", ["ticket.message_added", "ticket.deleted"])
def test_other_ticket_events_keep_their_name(kind: str) -> None:
    event = parse(body_of(envelope(type=kind)))
    assert event.type == kind and event.type not in PROCESSED_EVENTS
    assert event.ticket_id == "tkt_42"


def test_non_ticket_events_parse_without_a_ticket() -> None:
    env = envelope(type="customer.created", data={"customer": {"id": "cus_9"}})
    event = parse(body_of(env))
    assert event.type == "customer.created" and event.ticket_id == "" and event.ticket == {}
    assert event.common == dict.fromkeys(("status", "priority", "assignee", "tags", "subject"))


def test_flat_payload_copies_do_not_break_parsing() -> None:
    env = envelope(
        ticket_id="tkt_42",
        ticket_title="Cannot log in",
        ticket_priority="high",
        customer_name="Dana",
        customer_email="dana@example.test",
    )
    event = parse(body_of(env))
    assert event.ticket_id == "tkt_42" and event.common["subject"] == "Cannot log in"


def test_flat_payload_stands_in_for_a_missing_ticket() -> None:
    env = envelope(ticket_id="tkt_9", ticket_title="Flat only", ticket_priority="urgent", data={})
    event = parse(body_of(env))
    assert event.ticket_id == "tkt_9"
    assert event.common["subject"] == "Flat only" and event.common["priority"] == "urgent"


def test_ticket_event_without_a_ticket_is_malformed() -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse(body_of(envelope(data={"customer": {}})))
    assert caught.value.field == "data.ticket"


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (b"{not json", None, "not valid JSON"),
        (body_of({k: v for k, v in envelope().items() if k != "id"}), "id", "missing"),
        (body_of(envelope(created_at="yesterday")), "created_at", ""),
        (body_of(envelope(data={"ticket": {"title": "no id"}})), "data.ticket.id", "missing"),
    ],
)
def test_malformed_envelopes_name_the_field(body: bytes, field: str | None, says: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse(body)
    assert caught.value.field == field
    assert says in str(caught.value)


def test_intake_parse_is_the_module_parse() -> None:
    assert intake().parse(BODY) == parse(BODY)


@pytest.mark.parametrize(
    "body",
    [
        (
            b'{"id":"evt_1","type":"ticket.updated","created_at":"2026-11-23T10:00:00Z",'
            b'"team_id":"tm","data":{"ticket":{"id":"tkt_1","title":"x","status":"open"}}}'
        ),
        (
            b'{"id":"evt_2","type":"customer.created","created_at":"2026-11-23T10:00:00Z",'
            b'"team_id":"tm","data":{"customer":{"id":"cus_1"}}}'
        ),
    ],
)
def test_inspect_routes_exactly_as_parse(body: bytes) -> None:
    from ticketwire.event import Routing
    from ticketwire.secret import Secret
    from ticketwire.vendors.cstar.webhook import CStarWebhook, parse

    assert CStarWebhook([Secret("s")]).inspect(body) == Routing.of(parse(body))
