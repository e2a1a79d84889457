"""Rendering trace records as English and JSON: every record kind, unknown fingerprints, junk."""

from __future__ import annotations

import json
from typing import Any

from ticketwire.trace.read import Delivery, EventTrace, Record, Timeline
from ticketwire.trace.render import (
    Context,
    delivery_json,
    delivery_text,
    event_json,
    event_lines,
    record_json,
    record_text,
    timeline_json,
    timeline_lines,
)

T = 1_764_684_963_000  # 2025-12-02 14:16:03 UTC
LEAVES = {"fp1": {"escalate": ["priority == 'high'", "status != 'closed'"]}}


def rec(event: str, *values: Any, at: int = T) -> Record:
    return Record(f"{at}-0", event, values[0], list(values[1:]))


RX = rec("e1", "rx", "inboxops", "w1", "ticket.updated", "42", T - 20, "3/17-0", 1, "fp1")


def text(r: Record, *others: Record) -> str:
    return record_text(r, Context([RX, *others, r], LEAVES))


def test_received() -> None:
    assert text(RX) == (
        "received inboxops ticket.updated for ticket 42 (workspace w1) at 14:16:02.980, "
        "from partition 3 entry 17-0; dedupe: first delivery"
    )
    rerun = rec("e1", "rx", "inboxops", "", "ticket.updated", "42", T, "3/17-0", 3, "fp1")
    assert "handed to a worker 3 times (re-run)" in text(rerun)


def test_stale_check() -> None:
    assert text(rec("e1", "st", 0, "k2", "k1", "e0")) == (
        "stale check: order key k2, last applied k1 (event e0): not older, applied"
    )
    assert text(rec("e1", "st", 1, "k1", "k2", "e9")) == (
        "stale: order key k1 is older than last applied k2 (event e9); not acted on"
    )
    assert "first event applied" in text(rec("e1", "st", 0, "k1", "", ""))


def test_changes() -> None:
    line = text(rec("e1", "ch", [["status", "open", "pending"], ["priority", None, "high"]]))
    assert line == "changes: status: 'open' → 'pending'; priority: null → 'high'"
    assert text(rec("e1", "ch", [])) == "changes: none seen"


def test_rule_outcomes() -> None:
    false = rec("e1", "ru", "escalate", "C", [[0, 0, "low"], [1, 1, "open"]], None)
    assert (
        text(false)
        == "rule escalate: condition false — priority is 'low' (needs priority == 'high')"
    )
    fired = rec("e1", "ru", "escalate", "F", [[0, 1, "high"], [1, 1, "open"]], None)
    assert text(fired) == "rule escalate: fired — priority is 'high', status is 'open'"
    assert text(rec("e1", "ru", "escalate", "N", [], None)) == (
        "rule escalate: condition true, no actions to take"
    )
    assert (
        text(rec("e1", "ru", "tag", "E", [], "KeyError: 'x'")) == "rule tag: error — KeyError: 'x'"
    )
    assert text(rec("e1", "ru", "tag", "P", [], None)) == "rule tag: paused, skipped"


def test_unknown_fingerprint_shows_the_raw_values() -> None:
    other = rec("e2", "rx", "inboxops", "w1", "ticket.updated", "42", T, "3/18-0", 1, "fp9")
    r = rec("e2", "ru", "escalate", "C", [[0, 0, "low"]], None)
    assert text(r, other) == (
        "rule escalate: condition false — leaf 0 saw 'low' "
        "(leaf descriptions of rules fingerprint fp9 not stored; raw values shown)"
    )
    alone = rec("e3", "ru", "escalate", "C", [[0, 0, "low"]], None)
    assert "rules fingerprint unknown; raw values shown" in text(alone)


def test_suppressions() -> None:
    def sup(*detail: Any) -> str:
        return text(rec("e1", "ru", "escalate", "S", [], list(detail)))

    assert sup("echo", ["status"], 12_000, ["close"]) == (
        "rule escalate: suppressed: echo of our own write of status by rule close 12 s ago"
    )
    assert sup("same", 4000) == "rule escalate: suppressed: same actions as its own firing 4 s ago"
    assert sup("once", T - 3_600_000, "e0", 0) == (
        "rule escalate: suppressed: once per ticket: fired at 2025-12-02 13:16:03.000 UTC on "
        "event e0; the rule has no re-arm"
    )
    assert sup("cooldown", T - 60_000, 600, 1) == (
        "rule escalate: suppressed: cooldown of 10 min: fired at 2025-12-02 14:15:03.000 UTC; "
        "not re-armed since"
    )
    assert sup("fuse", 10, 3600, 10) == (
        "rule escalate: suppressed: loop fuse: 10 firings on this ticket within 60 min (limit 10)"
    )
    assert sup("novel", 1) == "rule escalate: suppressed: novel [1]"


def test_planned_and_sent_calls() -> None:
    planned = rec("e1", "pl", [["c1", "PATCH", "/tickets/42", {"status": "pending"}, ["escalate"]]])
    assert text(planned) == (
        'planned: PATCH /tickets/42 {"status": "pending"} (rule escalate) [call c1]'
    )
    call = rec(
        "",
        "ca",
        ["c1"],
        "PATCH",
        "/tickets/42",
        200,
        84,
        "r-1",
        ["42", "43", "44", "45"],
        ["e1", "e2"],
    )
    assert text(call, planned) == (
        'PATCH /tickets/42 {"status": "pending"} → 200 in 84 ms, request id r-1, '
        "batched with 3 other tickets, carried events e1, e2"
    )
    # Older records list the tickets; newer ones count them.
    batched = rec("e1", "ca", ["c1"], "POST", "/tickets/bulk", 200, 9, "", 2, ["e1"])
    assert text(batched) == (
        "POST /tickets/bulk → 200 in 9 ms, batched with 1 other ticket, carried event e1"
    )
    coalesced = rec("", "ca", ["c1", "c2"], "PATCH", "/tickets/42", 200, 5, "", 1, ["e1"])
    assert text(coalesced) == (
        "PATCH /tickets/42 → 200 in 5 ms, coalesced from 2 planned calls, carried event e1"
    )
    long_body = rec("e1", "pl", [["c3", "POST", "/x", {"note": "y" * 200}, []]])
    assert "…" in text(long_body) and len(text(long_body)) < 140


def test_retry_and_dead_letter() -> None:
    assert text(rec("e1", "rt", "c1", 429, T + 2000, 2)) == (
        "retry of call c1 after 429: attempt 2 at 14:16:05.000"
    )
    assert text(rec("e1", "dl", "call", "1-0", "HTTP 422: invalid status")) == (
        "dead letter 1-0 (call): HTTP 422: invalid status"
    )


def test_junk_records_render_raw() -> None:
    bad = Record(f"{T}-0", "e1", "?", ["not json"])
    assert text(bad) == "unreadable record: not json"
    short = rec("e1", "rx", "inboxops")
    assert text(short) == "record 'rx' (not understood): [\"inboxops\"]"
    novel = rec("e1", "zz", 1, 2)
    assert text(novel) == "record 'zz' (not understood): [1, 2]"


def test_json_forms_name_each_value() -> None:
    ctx = Context([RX], LEAVES)
    out = record_json(rec("e1", "ru", "escalate", "C", [[0, 0, "low"]], None), ctx)
    assert out["kind"] == "rule" and out["rule"] == "escalate" and out["outcome"] == "C"
    assert out["leaf_descriptions"] == LEAVES["fp1"]["escalate"]
    assert out["text"].startswith("rule escalate: condition false")
    rx = record_json(RX, ctx)
    assert (
        rx["kind"] == "received" and rx["rules_fingerprint"] == "fp1" and rx["origin"] == "3/17-0"
    )
    json.dumps(rx)


def test_deliveries_event_and_timeline() -> None:
    refused = Delivery(
        f"{T}-0", "cstar", "", "", "", "", "refused", 401, (), "invalid_signature", T
    )
    assert (
        delivery_text(refused)
        == "2025-12-02 14:16:03.000 UTC  refused 401 invalid_signature  cstar"
    )
    assert delivery_json(refused)["status"] == 401
    handled = Delivery(
        f"{T}-1",
        "inboxops",
        "w1",
        "ticket.updated",
        "e1",
        "inboxops:w1:42",
        "handled",
        None,
        ("escalate",),
        "",
        T,
    )
    ru = rec("e1", "ru", "escalate", "F", [[0, 1, "high"]], None)
    trace = EventTrace("e1", "inboxops", "inboxops:w1:42", [RX, ru], [handled], LEAVES)
    lines = event_lines(trace)
    assert lines[0] == "event e1 (inboxops), ticket inboxops:w1:42"
    assert any(
        "handled  inboxops ticket.updated e1 ticket inboxops:w1:42 fired escalate" in x
        for x in lines
    )
    assert lines[-1] == "  14:16:03.000  rule escalate: fired — priority is 'high'"
    assert json.loads(json.dumps(event_json(trace)))["records"][1]["text"].startswith(
        "rule escalate"
    )
    timeline = Timeline("inboxops:w1:42", [RX, ru], True, LEAVES)
    tl = timeline_lines(timeline)
    assert "(older ones not shown; raise --limit)" in tl[0]
    assert tl[2] == "  14:16:03.000  e1  rule escalate: fired — priority is 'high'"
    assert timeline_json(timeline)["truncated"] is True


def test_leaves_without_values_changes_and_negations() -> None:
    leaves = {
        "fp1": {
            "r": [
                "assignee == null",
                "status changed_to 'closed'",
                "not (tags contains 'vip')",
                "priority changed",
            ]
        }
    }
    ctx = Context([RX], leaves)
    r = rec(
        "e1", "ru", "r", "C", [[0, 0], [1, 0, ["open", "pending"]], [2, 0, ["vip"]], [3, 0]], None
    )
    assert record_text(r, ctx) == (
        "rule r: condition false — assignee is missing (needs assignee == null), "
        "status went 'open' → 'pending' (needs status changed_to 'closed'), "
        "tags is ['vip'] (needs not (tags contains 'vip')), "
        "priority: change unknown (no earlier state) (needs priority changed)"
    )


def test_a_timeline_puts_intake_answers_between_the_records() -> None:
    dup = Delivery(
        f"{T + 5}-0",
        "inboxops",
        "w1",
        "ticket.updated",
        "e1",
        "inboxops:w1:42",
        "duplicate",
        200,
        (),
        "",
        T + 5,
    )
    later = rec("e2", "st", 0, "k3", "k2", "e1", at=T + 10)
    lines = timeline_lines(Timeline("inboxops:w1:42", [RX, later], False, LEAVES, [dup]))
    assert lines[1].startswith("  14:16:03.000  e1  received")
    assert lines[2] == (
        "  14:16:03.005  e1  duplicate delivery of inboxops ticket.updated: answered 200, "
        "already stored within the dedupe window"
    )
    assert lines[3].startswith("  14:16:03.010  e2  stale check")
    assert timeline_json(Timeline("k", [RX], False, LEAVES, [dup]))["answered"][0]["status"] == 200
