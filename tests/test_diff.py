"""`ticketwire diff`: the calls a rules change adds, removes and changes, per ticket."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.diff import CallChange, DeliveryPlan, diff_delivery, diff_plans, render
from cli.fire import build_body
from tests.localstack import cli_env, run_cli
from tests.test_devtools import RULE
from ticketwire.calls import ApiCall


def call(path: str, body: dict[str, object], rules: tuple[str, ...] = ("r",)) -> ApiCall:
    return ApiCall("inboxops", "PATCH", path, body, path.rsplit("/", 1)[-1], rules)


def plan_of(ticket: str, event_id: str, *calls: ApiCall) -> DeliveryPlan:
    return DeliveryPlan(ticket, event_id, "ticket.updated", calls)


def test_calls_pair_by_method_and_path_then_compare_bodies():
    same = call("/tickets/1", {"status": "open"})
    old = plan_of("t1", "e1", same, call("/tickets/1/x", {"a": 1}), call("/tickets/2", {"p": 1}))
    new = plan_of("t1", "e1", call("/tickets/1/x", {"a": 2}), same, call("/tickets/3", {"q": 1}))
    kinds = [(c.kind, (c.old or c.new).path) for c in diff_delivery(old, new)]
    assert kinds == [
        ("changed", "/tickets/1/x"),
        ("added", "/tickets/3"),
        ("removed", "/tickets/2"),
    ]


def test_identical_plans_differ_in_nothing():
    a = plan_of("t1", "e1", call("/tickets/1", {"status": "open"}, ("old-name",)))
    b = plan_of("t1", "e1", call("/tickets/1", {"status": "open"}, ("new-name",)))
    assert diff_plans([a], [b]) == []
    assert render([], 1).endswith(
        "0 ticket(s) planned differently over 1 deliveries: 0 call(s) added, 0 removed, 0 changed"
    )


def test_changes_group_per_ticket_in_first_seen_order():
    old = [
        plan_of("t2", "e1"),
        plan_of("t1", "e2", call("/tickets/1", {"s": 1})),
        plan_of("t2", "e3"),
    ]
    new = [
        plan_of("t2", "e1", call("/tickets/2", {"s": 1})),
        plan_of("t1", "e2"),
        plan_of("t2", "e3", call("/tickets/2", {"s": 2})),
    ]
    diffs = diff_plans(old, new)
    assert [(d.ticket, [(c.kind, c.event_id) for c in d.changes]) for d in diffs] == [
        ("t2", [("added", "e1"), ("added", "e3")]),
        ("t1", [("removed", "e2")]),
    ]
    with pytest.raises(ValueError, match="cannot be compared"):
        diff_plans(old, new[:2])


def test_a_changed_call_shows_both_bodies():
    ch = CallChange(
        "changed", "e1", "ticket.updated", call("/t/1", {"a": 1}), call("/t/1", {"a": 2})
    )
    text = render([diff_plans([plan_of("t", "e1", ch.old)], [plan_of("t", "e1", ch.new)])[0]], 1)
    assert '~ PATCH /t/1 {"a": 1} → {"a": 2}  (rules: r)' in text


OLD = (
    RULE
    + """
---
name: park-low
vendor: inboxops
events: [ticket.updated]
if: {field: priority, equals: low}
then:
  - update: {status: waiting}
"""
)
NEW = """
name: start-urgent
vendor: inboxops
events: [ticket.updated]
if: {field: priority, equals: urgent}
then:
  - update: {status: waiting}
---
name: raise-normal
vendor: inboxops
events: [ticket.updated]
if: {field: priority, equals: normal}
then:
  - update: {priority: high}
"""


def rules(tmp_path: Path, name: str, text: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    for i, doc in enumerate(text.split("---")):
        (d / f"r{i}.yml").write_text(doc)
    return d


def captured(tmp_path: Path) -> Path:
    now = datetime.now(UTC)
    lines = []
    for n, priority in enumerate(["urgent", "low", "normal", "high"], 1):
        ticket = {"id": f"t{n}", "priority": priority, "status": "open"}
        body = build_body(
            "inboxops", "ticket.updated", ticket, tenant="ws", event_id=f"e{n}", now=now
        )
        lines.append(
            json.dumps(
                {"vendor": "inboxops", "event_id": f"e{n}", "headers": {}, "body": body.decode()}
            )
        )
    path = tmp_path / "cap.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


async def run(*args: str, tmp_path: Path) -> tuple[int, str, str]:
    return await run_cli(*args, env=cli_env(TICKETWIRE_DATA_DIR=str(tmp_path / "data")))


async def test_diff_of_two_rule_sets_on_captured_traffic(tmp_path):
    cap, old, new = captured(tmp_path), rules(tmp_path, "old", OLD), rules(tmp_path, "new", NEW)
    code, out, err = await run(
        "diff", "--rules", str(old), "--rules", str(new), str(cap), tmp_path=tmp_path
    )
    assert code == 0, err
    assert out.splitlines() == [
        "ticket inboxops:ws:t1",
        "  event e1 (ticket.updated)",
        '    ~ PATCH /tickets/t1 {"status": "in_progress"} → {"status": "waiting"}  (rules: start-urgent)',
        "ticket inboxops:ws:t2",
        "  event e2 (ticket.updated)",
        '    - PATCH /tickets/t2 {"status": "waiting"}  (rules: park-low)',
        "ticket inboxops:ws:t3",
        "  event e3 (ticket.updated)",
        '    + PATCH /tickets/t3 {"priority": "high"}  (rules: raise-normal)',
        "3 ticket(s) planned differently over 4 deliveries: 1 call(s) added, 1 removed, 1 changed",
    ]
    code, out, err = await run(
        "diff", "--json", "--rules", str(old), "--rules", str(new), str(cap), tmp_path=tmp_path
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["deliveries"] == 4
    [t1, t2, t3] = doc["tickets"]
    assert t1["changes"] == [
        {
            "kind": "changed",
            "event_id": "e1",
            "event_type": "ticket.updated",
            "old": {
                "method": "PATCH",
                "path": "/tickets/t1",
                "body": {"status": "in_progress"},
                "rules": ["start-urgent"],
            },
            "new": {
                "method": "PATCH",
                "path": "/tickets/t1",
                "body": {"status": "waiting"},
                "rules": ["start-urgent"],
            },
        }
    ]
    assert t2["changes"][0]["kind"] == "removed" and t2["changes"][0]["new"] is None
    assert t3["changes"][0]["kind"] == "added" and t3["changes"][0]["old"] is None


async def test_diff_needs_two_rule_dirs_and_refuses_broken_rules(tmp_path):
    cap, old = captured(tmp_path), rules(tmp_path, "old", OLD)
    code, _, err = await run("diff", "--rules", str(old), str(cap), tmp_path=tmp_path)
    assert code == 2 and "give --rules twice" in err
    broken = rules(tmp_path, "broken", OLD.replace("equals", "equal"))
    code, _, err = await run(
        "diff", "--rules", str(old), "--rules", str(broken), str(cap), tmp_path=tmp_path
    )
    assert code == 1 and "unknown operator 'equal'" in err
