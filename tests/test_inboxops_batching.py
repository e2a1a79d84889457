"""InboxOps write-back merging: a ticket's queued PATCHes coalesce without parting a reminder from
the waiting status InboxOps needs beside it, and a newer status always beats an older one."""

from __future__ import annotations

from typing import Any

from ticketwire.calls import ApiCall
from ticketwire.vendors.inboxops import batching
from ticketwire.writeback import Pending, batch, coalesce

SPEC = batching.spec()
#: inboxops-update-ticket, `remind_at`.
WITH_WAITING = "Applied when PATCH also sets status to waiting (status or status_id)"
#: inboxops-update-ticket, `status_id`.
PRECEDENCE = "Custom status ID (takes precedence over status)"


def patch(body: dict[str, Any], event: str, ticket: str = "t1") -> Pending:
    return Pending(ApiCall("inboxops", "PATCH", f"/tickets/{ticket}", body, ticket, ("r",), event))


def merged(*bodies: dict[str, Any]) -> dict[str, Any]:
    items = [patch(b, f"e{i}") for i, b in enumerate(bodies)]
    [work] = coalesce("k", items, rank=lambda _: 0, spec=SPEC).calls
    return dict(work.call.body)


def test_a_reminder_keeps_its_waiting_status_when_other_fields_merge_in() -> None:
    # WITH_WAITING
    assert merged(
        {"status_id": "st-waiting", "remind_at": "2030-01-01T00:00:00Z"},
        {"priority": "high"},
        {"custom_fields": {"plan": "gold"}},
    ) == {
        "status_id": "st-waiting",
        "remind_at": "2030-01-01T00:00:00Z",
        "priority": "high",
        "custom_fields": {"plan": "gold"},
    }


def test_a_newer_reminder_brings_its_own_status() -> None:
    assert merged(
        {"status": "waiting", "remind_at": "2030-01-01T00:00:00Z"},
        {"status_id": "st-waiting-customer", "remind_at": "2030-01-02T00:00:00Z"},
    ) == {"status_id": "st-waiting-customer", "remind_at": "2030-01-02T00:00:00Z"}


def test_a_newer_status_beats_an_older_status_id() -> None:
    # PRECEDENCE: left in the merged body, the older status_id would win over the newer status.
    assert merged({"status_id": "st-escalated"}, {"status": "open"}) == {"status": "open"}
    assert merged({"priority_id": "pr-x"}, {"priority": "low"}) == {"priority": "low"}


def test_a_newer_status_that_leaves_waiting_ends_the_older_reminder() -> None:
    # Sent in order, the second PATCH takes the ticket out of waiting and its reminder with it;
    # merged, the reminder must not ride along with a status InboxOps would ignore it for.
    assert merged(
        {"status_id": "st-waiting", "remind_at": "2030-01-01T00:00:00Z"}, {"status": "open"}
    ) == {"status": "open"}


def test_a_newer_waiting_status_keeps_the_older_reminder() -> None:
    assert merged(
        {"status_id": "st-waiting", "remind_at": "2030-01-01T00:00:00Z"}, {"status": "waiting"}
    ) == {"status": "waiting", "remind_at": "2030-01-01T00:00:00Z"}


def test_a_reminder_patch_is_never_rewritten_as_a_bulk_status_change() -> None:
    # Bulk update_status has no remind_at: the PATCH goes as it is, even beside bulk-able ones.
    reminder = patch({"status": "waiting", "remind_at": "2030-01-01T00:00:00Z"}, "e1", "t1")
    plain = [patch({"status": "waiting"}, "e2", ticket) for ticket in ("t2", "t3")]
    out = batch([("t1", reminder), ("t2", plain[0]), ("t3", plain[1])], {"inboxops": SPEC})
    sent = {(o.call.method, o.call.path): o.call.body for o in out}
    assert sent[("PATCH", "/tickets/t1")] == reminder.call.body
    assert sent[("POST", "/tickets/bulk")]["ticket_ids"] == ["t2", "t3"]
