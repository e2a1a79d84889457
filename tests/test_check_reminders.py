"""`ticketwire check` tells an InboxOps rule author what their `remind_at` will do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ticketwire.engine import load_rules
from ticketwire.vendors.inboxops.reminders import reminder_notes

ROOT = Path(__file__).resolve().parents[1]
#: inboxops-update-ticket, `remind_at`.
WITH_WAITING = "Applied when PATCH also sets status to waiting (status or status_id)"
#: inboxops-update-ticket, `remind_transition_status_id`.
TRANSITION = "Custom status to return to when reminder fires; tenant-scoped"

HEAD = "name: r\nvendor: inboxops\nevents: [ticket.updated]\nthen:\n"


def notes_for(tmp_path: Path, then: str) -> list[str]:
    (tmp_path / "r.yml").write_text(HEAD + then)
    return reminder_notes(load_rules(tmp_path).rules)


def test_remind_at_alone_says_the_waiting_status_goes_with_it(tmp_path: Path) -> None:
    # WITH_WAITING
    [note] = notes_for(tmp_path, "  - remind_at: +48h\n")
    assert note.startswith(f"{tmp_path}/r.yml:1: rule 'r': remind_at +48h: ")
    assert "applies a reminder only when the PATCH also sets status to waiting" in note
    assert "status 'waiting' for a ticket in another status, which moves that ticket" in note
    assert "the waiting status's reminder target (Open by default)" in note


def test_a_transition_status_is_named(tmp_path: Path) -> None:
    # TRANSITION
    [note] = notes_for(
        tmp_path, "  - remind_at: +1d\n  - update: {remind_transition_status_id: st-closed}\n"
    )
    assert "InboxOps moves the ticket to status 'st-closed'" in note


def test_another_status_in_the_same_rule_means_never_applied(tmp_path: Path) -> None:
    [note] = notes_for(tmp_path, "  - set_status: open\n  - remind_at: +1d\n")
    assert "remind_at +1d is never applied" in note
    assert "this rule sets status 'open'; ticketwire drops it" in note


def test_a_status_id_must_be_a_waiting_type(tmp_path: Path) -> None:
    [note] = notes_for(tmp_path, "  - update: {status_id: st-x, remind_at: +1d}\n")
    assert "status_id 'st-x', which must be a custom status of type waiting" in note


def test_clearing_is_explained(tmp_path: Path) -> None:
    [note] = notes_for(tmp_path, "  - remind_at: null\n")
    assert note.endswith(
        "remind_at null clears the reminder of a waiting ticket (InboxOps applies a reminder "
        "only when the PATCH also sets status to waiting, so the ticket's own waiting status "
        "goes with it); a ticket in another status has none, and nothing is sent"
    )


def test_rules_without_reminders_have_no_note(tmp_path: Path) -> None:
    assert notes_for(tmp_path, "  - set_priority: high\n") == []


def test_check_prints_the_shipped_reminders() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli", "check", "rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    reminders = out.split("\nReminders:\n", 1)[1].splitlines()
    assert [line.split(": rule ")[1].split(":")[0] for line in reminders if ": rule " in line] == [
        "'close_followup.schedule_follow_up'",
        "'remind-stale-waiting'",
        "'remind-waiting'",
    ]
    assert "its code sets remind_at" in reminders[0]
