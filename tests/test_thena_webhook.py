"""Thena intake: token and HMAC verification, flat and `message`-nested envelopes, timestamps,
the event-type mapping, the ticket, the common view and the changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from multidict import CIMultiDict

from ticketwire.errors import ConfigError, InvalidSignature, MalformedEvent
from ticketwire.secret import Secret
from ticketwire.vendors.thena.webhook import ThenaWebhook, parse, sign

TOKEN = "thena-shared-token"
OLD_TOKEN = "thena-old-token"
BODY = b'{"eventId":"e1"}'

TICKET: dict[str, Any] = {
    "id": "CT1",
    "ticketId": "17",
    "title": "Printer on fire",
    "statusId": "st-open",
    "statusName": "Open",
    "priorityId": "pr-high",
    "priorityName": "High",
    "teamId": "T1",
    "assignedTo": "U1",
    "assignedAgent": {"id": "U1", "email": "ada@acme.test", "name": "Ada"},
    "tags": ["vip", "bug"],
    "customer": {"email": "maya@example.com"},
    "somethingNew": {"kept": True},
}


def envelope(event_type: str = "ticket:created", **over: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "eventId": "evt-1",
        "eventType": event_type,
        "timestamp": "2025-01-06T09:00:00.000Z",
        "orgId": "ORG1",
        "actor": {"id": "U1", "type": "AGENT", "email": "ada@acme.test"},
        "payload": {"ticket": dict(TICKET)},
    }
    env.update(over)
    return env


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# --- token mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [TOKEN, f"Bearer {TOKEN}", f"bearer  {TOKEN} ", f" {TOKEN} "])
def test_token_bare_or_bearer_is_accepted(value: str) -> None:
    ThenaWebhook("token", [Secret(TOKEN)]).verify({"authorization": value}, BODY)


def test_token_header_name_is_case_insensitive_in_plain_dicts_and_multidicts() -> None:
    hook = ThenaWebhook("token", [Secret(TOKEN)])
    hook.verify({"Authorization": f"Bearer {TOKEN}"}, BODY)
    hook.verify(CIMultiDict({"AUTHORIZATION": TOKEN}), BODY)


def test_wrong_token_is_refused_without_echoing_anything() -> None:
    hook = ThenaWebhook("token", [Secret(TOKEN)])
    with pytest.raises(InvalidSignature) as caught:
        hook.verify({"authorization": f"Bearer {TOKEN}x"}, BODY)
    assert "matches no active token" in caught.value.reason
    assert TOKEN not in caught.value.reason
    # A prefix of the token is not the token either.
    with pytest.raises(InvalidSignature, match="matches no active token"):
        hook.verify({"authorization": TOKEN[:-1]}, BODY)


def test_each_token_failure_has_its_own_reason() -> None:
    hook = ThenaWebhook("token", [Secret(TOKEN)])
    reasons = set()
    for headers in (
        {},
        {"authorization": ""},
        {"authorization": "Bearer"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": "nope"},
    ):
        with pytest.raises(InvalidSignature) as caught:
            hook.verify(headers, BODY)
        assert TOKEN not in caught.value.reason
        reasons.add(caught.value.reason)
    assert reasons == {
        "missing authorization header",
        "empty authorization header",
        "authorization says Bearer but carries no token",
        "unsupported scheme in authorization; send the token bare or as 'Bearer <token>'",
        (
            "authorization token matches no active token (check THENA_WEBHOOK_SECRETS against "
            "the webhook's configured token)"
        ),
    }


def test_rotated_tokens_are_all_active() -> None:
    hook = ThenaWebhook("token", [Secret(TOKEN), Secret(OLD_TOKEN)])
    hook.verify({"authorization": f"Bearer {OLD_TOKEN}"}, BODY)
    hook.verify({"authorization": TOKEN}, BODY)
    after_rotation = ThenaWebhook("token", [Secret(TOKEN)])
    with pytest.raises(InvalidSignature):
        after_rotation.verify({"authorization": OLD_TOKEN}, BODY)


def test_custom_token_header() -> None:
    hook = ThenaWebhook("token", [Secret(TOKEN)], header="X-Webhook-Token")
    hook.verify({"x-webhook-token": TOKEN}, BODY)
    with pytest.raises(InvalidSignature, match="missing X-Webhook-Token header"):
        hook.verify({"authorization": TOKEN}, BODY)


def test_token_mode_does_not_keep_the_token_for_replays() -> None:
    hook = ThenaWebhook("token", [Secret(TOKEN)])
    assert "authorization" not in [h.lower() for h in hook.replay_headers]
    assert TOKEN not in repr(hook)
    assert "2 hidden" in repr(ThenaWebhook("token", [Secret(TOKEN), Secret(OLD_TOKEN)]))


# --- hmac mode -------------------------------------------------------------------------------


def test_hmac_valid_with_and_without_prefix() -> None:
    hook = ThenaWebhook("hmac", [Secret(OLD_TOKEN), Secret(TOKEN)])
    hook.verify({"X-Thena-Signature": sign(BODY, TOKEN)}, BODY)
    hook.verify({"x-thena-signature": "sha256=" + sign(BODY, TOKEN)}, BODY)
    hook.verify({"X-Thena-Signature": "SHA256=" + sign(BODY, TOKEN).upper()}, BODY)
    assert "X-Thena-Signature" in hook.replay_headers


def test_hmac_failures_each_have_a_reason() -> None:
    hook = ThenaWebhook("hmac", [Secret(TOKEN)])
    with pytest.raises(InvalidSignature, match="missing X-Thena-Signature header"):
        hook.verify({}, BODY)
    with pytest.raises(InvalidSignature, match="malformed X-Thena-Signature"):
        hook.verify({"X-Thena-Signature": "sha256=zz"}, BODY)
    with pytest.raises(InvalidSignature, match="malformed X-Thena-Signature"):
        hook.verify({"X-Thena-Signature": "abcd"}, BODY)
    with pytest.raises(InvalidSignature, match="does not match any active secret") as caught:
        hook.verify({"X-Thena-Signature": sign(BODY, "other")}, BODY)
    assert TOKEN not in caught.value.reason
    with pytest.raises(InvalidSignature, match="does not match"):
        hook.verify({"X-Thena-Signature": sign(BODY + b" ", TOKEN)}, BODY)


def test_hmac_custom_header() -> None:
    hook = ThenaWebhook("hmac", [Secret(TOKEN)], header="X-Signature")
    hook.verify({"X-Signature": sign(BODY, TOKEN)}, BODY)
    with pytest.raises(InvalidSignature, match="missing X-Signature"):
        hook.verify({"X-Thena-Signature": sign(BODY, TOKEN)}, BODY)


def test_configuration_mistakes_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="THENA_WEBHOOK_MODE"):
        ThenaWebhook("jwt", [Secret(TOKEN)])
    with pytest.raises(ConfigError, match="THENA_WEBHOOK_SECRETS"):
        ThenaWebhook("token", [])
    with pytest.raises(ConfigError, match="THENA_WEBHOOK_SECRETS"):
        ThenaWebhook("token", [Secret("")])
    with pytest.raises(ConfigError, match="THENA_WEBHOOK_HEADER"):
        ThenaWebhook("token", [Secret(TOKEN)], header="bad header")


# --- envelopes -------------------------------------------------------------------------------


def test_flat_envelope() -> None:
    event = parse(raw(envelope()))
    assert (event.vendor, event.type, event.raw_type) == (
        "thena",
        "ticket.created",
        "ticket:created",
    )
    assert (event.id, event.tenant, event.ticket_id) == ("evt-1", "ORG1", "CT1")
    assert event.created_at == datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    assert event.ticket["somethingNew"] == {"kept": True}
    # The assignee is read from assignedAgent.id, and put where rules look for it.
    assert event.ticket["assignedAgentId"] == "U1"
    assert event.common == {
        "status": "open",
        "priority": "high",
        "assignee": "U1",
        "tags": ["vip", "bug"],
        "subject": "Printer on fire",
    }
    assert event.changes is None
    assert ThenaWebhook("token", [Secret(TOKEN)]).parse(raw(envelope())) == event


def test_message_nested_envelope_parses_the_same() -> None:
    flat = parse(raw(envelope()))
    assert parse(raw({"message": envelope()})) == flat
    # SNS sends the message as a JSON string.
    assert parse(raw({"message": json.dumps(envelope())})) == flat


def test_nested_message_falls_back_to_message_attributes() -> None:
    env = envelope()
    del env["eventId"], env["eventType"], env["orgId"]
    doc = {
        "message": env,
        "messageAttributes": {
            "event_id": {"DataType": "String", "StringValue": "evt-9"},
            "event_name": "ticket:updated",
            "context_organization_id": {"Value": "ORG9"},
        },
    }
    event = parse(raw(doc))
    assert (event.id, event.type, event.tenant) == ("evt-9", "ticket.updated", "ORG9")


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2025-01-06T09:00:00Z", datetime(2025, 1, 6, 9, 0, tzinfo=UTC)),
        ("2025-01-06T10:00:00+01:00", datetime(2025, 1, 6, 9, 0, tzinfo=UTC)),
        ("2025-01-06T09:00:00", datetime(2025, 1, 6, 9, 0, tzinfo=UTC)),
        (1736154000, datetime(2025, 1, 6, 9, 0, tzinfo=UTC)),
        (1736154000.5, datetime(2025, 1, 6, 9, 0, 0, 500000, tzinfo=UTC)),
        (1736154000000, datetime(2025, 1, 6, 9, 0, tzinfo=UTC)),
        ("1736154000", datetime(2025, 1, 6, 9, 0, tzinfo=UTC)),
        ("1736154000123", datetime(2025, 1, 6, 9, 0, 0, 123000, tzinfo=UTC)),
    ],
)
def test_timestamps_iso_and_unix(timestamp: Any, expected: datetime) -> None:
    assert parse(raw(envelope(timestamp=timestamp))).created_at == expected


@pytest.mark.parametrize("timestamp", ["yesterday", True, 1e30, None])
def test_bad_timestamps_name_the_field(timestamp: Any) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse(raw(envelope(timestamp=timestamp)))
    assert caught.value.field == "timestamp"


def test_malformed_bodies_name_the_field() -> None:
    cases: list[tuple[bytes, str | None]] = [
        (b"not json", None),
        (b"[1]", None),
        (raw({k: v for k, v in envelope().items() if k != "eventId"}), "eventId"),
        (raw({k: v for k, v in envelope().items() if k != "orgId"}), "orgId"),
        (raw(envelope(payload=[])), "payload"),
        (raw({"message": 5}), "message"),
        (raw({"message": "{not json"}), "message"),
        (raw({"message": {**envelope(), "eventId": None}}), "message.eventId"),
        (raw(envelope(payload={})), "payload.ticket"),
        (raw(envelope(payload={"ticket": "CT1"})), "payload.ticket"),
        (raw(envelope(payload={"ticket": {"title": "no id"}})), "payload.ticket.id"),
        (raw({"message": envelope(payload={"ticket": {}})}), "message.payload.ticket.id"),
    ]
    for body, field in cases:
        with pytest.raises(MalformedEvent) as caught:
            parse(body)
        assert caught.value.field == field, body


# --- event types -----------------------------------------------------------------------------


def with_status(name: str, previous: str | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"ticket": {**TICKET, "statusName": name, **extra}}
    if previous is not None:
        payload["previousTicket"] = {**TICKET, "statusName": previous}
    return envelope("ticket:status:changed", payload=payload)


@pytest.mark.parametrize(
    ("thena", "canonical"),
    [
        ("ticket:created", "ticket.created"),
        ("ticket:updated", "ticket.updated"),
        ("ticket:assigned", "ticket.assigned"),
        ("ticket:status:changed", "ticket.status_changed"),
        ("ticket:priority:changed", "ticket:priority:changed"),
        ("ticket:escalated", "ticket:escalated"),
        ("ticket:tag:updated", "ticket:tag:updated"),
        ("ticket:custom_field_value:changed", "ticket:custom_field_value:changed"),
        ("ticket:comment:added", "ticket:comment:added"),
    ],
)
def test_event_type_mapping(thena: str, canonical: str) -> None:
    event = parse(raw(envelope(thena)))
    assert (event.type, event.raw_type) == (canonical, thena)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (with_status("Closed"), "ticket.closed"),
        (with_status("closed", previous="Open"), "ticket.closed"),
        (with_status("Done", statusType="closed"), "ticket.closed"),
        (with_status("Resolved"), "ticket.status_changed"),
        # Already closed before: a change between closed statuses is not a closing.
        (with_status("Closed", previous="closed"), "ticket.status_changed"),
    ],
)
def test_a_status_change_into_closed_is_ticket_closed(env: dict[str, Any], expected: str) -> None:
    event = parse(raw(env))
    assert event.type == expected
    assert event.raw_type == "ticket:status:changed"


def test_a_closed_ticket_updated_stays_updated() -> None:
    env = envelope("ticket:updated", payload={"ticket": {**TICKET, "statusName": "Closed"}})
    assert parse(raw(env)).type == "ticket.updated"


def test_non_ticket_events_parse_with_their_own_name() -> None:
    event = parse(raw(envelope("account:created", payload={"account": {"id": "A1"}})))
    assert (event.type, event.ticket_id, event.ticket) == ("account:created", "", {})
    assert event.common["status"] is None


def test_ticket_events_may_name_the_ticket_or_carry_the_previous_one() -> None:
    comment = envelope("ticket:comment:added", payload={"comment": {"id": "c", "ticketId": "CT9"}})
    assert parse(raw(comment)).ticket_id == "CT9"
    deleted = envelope("ticket:deleted", payload={"previousTicket": dict(TICKET)})
    event = parse(raw(deleted))
    assert (event.ticket_id, event.changes) == ("CT1", None)


# --- ticket and common view ------------------------------------------------------------------


def test_common_view_reads_names_ids_and_objects() -> None:
    ticket = {
        "id": "CT2",
        "title": "API shape",
        "status": "In Progress",
        "priority": {"name": "Medium"},
        "assignedAgentId": "U7",
        "assignedAgent": "Grace Hopper",
        "tags": [{"name": "vip"}, "bug", 3],
    }
    event = parse(raw(envelope(payload={"ticket": ticket})))
    assert event.common == {
        "status": "in_progress",
        "priority": "normal",
        "assignee": "U7",
        "tags": ["vip", "bug"],
        "subject": "API shape",
    }


def test_unassigned_and_untagged_ticket() -> None:
    ticket = {"id": "CT3", "title": "t", "statusName": "On hold", "assignedAgent": None}
    event = parse(raw(envelope(payload={"ticket": ticket})))
    assert event.ticket["assignedAgentId"] is None
    assert event.common == {
        "status": "waiting",
        "priority": None,
        "assignee": None,
        "tags": None,
        "subject": "t",
    }
    # Without any assignee key, nothing is made up.
    bare = parse(raw(envelope(payload={"ticket": {"id": "CT4"}})))
    assert "assignedAgentId" not in bare.ticket


# --- changes ---------------------------------------------------------------------------------


def test_changes_from_previous_ticket() -> None:
    before = {**TICKET, "statusName": "Open", "statusId": "st-open"}
    after = {**TICKET, "statusName": "Resolved", "statusId": "st-res", "isEscalated": True}
    env = envelope("ticket:updated", payload={"ticket": after, "previousTicket": before})
    assert parse(raw(env)).changes == {
        "statusName": {"from": "Open", "to": "Resolved"},
        "statusId": {"from": "st-open", "to": "st-res"},
        "isEscalated": {"from": None, "to": True},
    }


def test_changes_from_previous_values_and_explicit_changes() -> None:
    payload = {
        "ticket": dict(TICKET),
        "previous": {"priorityName": "Low", "title": "Printer on fire"},
        "changes": {
            "statusName": {"from": "Open", "to": "Closed"},
            "teamId": {"old": "T0", "new": "T1"},
            "typeId": ["ty-1", "ty-2"],
            "title": "Printer on fire",
        },
    }
    assert parse(raw(envelope("ticket:updated", payload=payload))).changes == {
        "priorityName": {"from": "Low", "to": "High"},
        "statusName": {"from": "Open", "to": "Closed"},
        "teamId": {"from": "T0", "to": "T1"},
        "typeId": {"from": "ty-1", "to": "ty-2"},
        "title": {"from": None, "to": "Printer on fire"},
    }
    listed = {"ticket": dict(TICKET), "changes": [{"field": "tags", "from": [], "to": ["vip"]}]}
    assert parse(raw(envelope("ticket:updated", payload=listed))).changes == {
        "tags": {"from": [], "to": ["vip"]}
    }
    empty = {"ticket": dict(TICKET), "previousTicket": dict(TICKET)}
    assert parse(raw(envelope("ticket:updated", payload=empty))).changes == {}
