"""The `ticketwire` pytest plugin and its harness: what a user's test sees, and when it fails."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from ticketwire.testing import Harness, RulesError

RULE = """
name: waiting-is-high
vendor: inboxops
events: [ticket.updated]
if: {field: status, equals: waiting}
then:
  - update: {priority: high}
"""


def rules_dir(tmp_path: Path, text: str = RULE, name: str = "rules") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "rule.yml").write_text(text)
    return d


async def test_a_change_reaches_the_rules_and_the_effect_is_awaited(tmp_path, redis_url):
    async with Harness(rules_dir(tmp_path), redis_url, vendors=["inboxops"], seed_tickets=2) as tw:
        assert len(tw.tickets("inboxops")) == 2
        ticket = tw.tickets("inboxops")[0]
        tw.change("inboxops", ticket["id"], status="waiting", priority="low")
        done = await tw.effect("inboxops", ticket["id"], {"priority": "high", "status": "waiting"})
        assert done["priority"] == "high"
        # A predicate works as well as field values.
        await tw.effect("inboxops", ticket["id"], lambda t: t["priority_name"] == "High")


async def test_a_missing_effect_fails_with_the_ticket_the_calls_and_the_log(tmp_path, redis_url):
    async with Harness(rules_dir(tmp_path), redis_url, vendors=["inboxops"], seed_tickets=1) as tw:
        ticket = tw.tickets("inboxops")[0]
        tw.change("inboxops", ticket["id"], status="waiting", priority="low")
        await tw.effect("inboxops", ticket["id"], {"priority": "high"})  # the rule has run
        with pytest.raises(AssertionError) as failed:
            await tw.effect("inboxops", ticket["id"], {"priority": "urgent"}, timeout=0.3)
    report = str(failed.value)
    assert (
        f'inboxops ticket {ticket["id"]} did not match {{"priority": "urgent"}} within 0.3s'
        in report
    )
    assert '"priority": "high"' in report  # the ticket as it is
    assert "last API calls the inboxops simulator received:" in report
    assert f"/tickets/{ticket['id']}" in report or "tickets/bulk" in report
    assert "ticket.updated" in report  # its webhooks
    assert "ticketwire's log:" in report and "waiting-is-high" in report


async def test_the_seeded_tickets_are_the_same_in_every_run(tmp_path, redis_url):
    # A fresh seed each run once made the first ticket already waiting with low priority in
    # about one run in fifty: the test's change then changed nothing and its effect never came.
    rules = rules_dir(tmp_path)
    runs = []
    for _ in range(2):
        async with Harness(rules, redis_url, vendors=["inboxops", "cstar", "thena"]) as tw:
            # Everything but the times the tickets were made.
            runs.append(
                {
                    v: [{k: x for k, x in t.items() if not k.endswith(("_at", "At"))} for t in ts]
                    for v, ts in ((v, tw.tickets(v)) for v in tw.vendors)
                }
            )
    assert runs[0] == runs[1]


async def test_a_change_that_changes_nothing_says_so_when_the_effect_does_not_come(
    tmp_path, redis_url
):
    # Seed 171 makes the first InboxOps ticket waiting with low priority already.
    async with Harness(rules_dir(tmp_path), redis_url, vendors=["inboxops"], seed=171) as tw:
        ticket = tw.tickets("inboxops")[0]
        assert (ticket["status"], ticket["priority"]) == ("waiting", "low")
        tw.change("inboxops", ticket["id"], status="waiting", priority="low")
        with pytest.raises(AssertionError) as failed:
            await tw.effect("inboxops", ticket["id"], {"priority": "high"}, timeout=0.3)
        assert "ticket.updated" not in str(failed.value)
        assert (
            "(none for the last change(status='waiting', priority='low'): the ticket had those"
            " values already, so the helpdesk sent no webhook)" in str(failed.value)
        )
        # A change that does change the ticket sends its webhook, and the rule runs.
        tw.change("inboxops", ticket["id"], priority="normal")
        await tw.effect("inboxops", ticket["id"], {"priority": "high"})
        with pytest.raises(AssertionError) as again:
            await tw.effect("inboxops", ticket["id"], {"priority": "urgent"}, timeout=0.3)
        assert "none for the last change" not in str(again.value)


async def test_broken_rules_say_what_is_wrong(tmp_path, redis_url):
    broken = rules_dir(tmp_path, RULE.replace("equals", "equal"))
    with pytest.raises(RulesError, match="unknown operator 'equal'"):
        async with Harness(broken, redis_url, vendors=["inboxops"]):
            pass
    with pytest.raises(ValueError, match="unknown helpdesk 'zendesk'"):
        Harness(broken, redis_url, vendors=["zendesk"])


USER_TEST = """
import sys

import pytest


def test_without_the_fixture_nothing_starts():
    assert "ticketwire.testing.harness" not in sys.modules


@pytest.mark.asyncio
async def test_my_rule(ticketwire):
    ticket = ticketwire.tickets("inboxops")[0]
    ticketwire.change("inboxops", ticket["id"], status="waiting", priority="low")
    await ticketwire.effect("inboxops", ticket["id"], {"priority": "high"})


@pytest.mark.asyncio
@pytest.mark.ticketwire(rules="broken", vendors=["inboxops"])
async def test_with_broken_rules(ticketwire):
    pass
"""


async def test_a_user_project_enables_it_by_installing_ticketwire(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    rules_dir(project, name="my_rules")
    rules_dir(project, RULE.replace("equals", "equal"), name="broken")
    (project / "pytest.ini").write_text(
        "[pytest]\nticketwire_rules = my_rules\nasyncio_mode = strict\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    (project / "test_rules.py").write_text(USER_TEST)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--strict-markers",
        "test_rules.py",
        cwd=project,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)},
    )
    out = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
    # The fixture-free test runs first: nothing of the harness was imported for it.
    assert "2 passed, 1 error" in out, out
    assert "warnings summary" not in out
    assert "error(s) in" in out and "broken" in out and "unknown operator 'equal'" in out


def test_the_readme_example_is_the_one_in_the_suite():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Testing your rules", 1)[1].split("\n## ", 1)[0]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert example in (Path(__file__).parent / "test_plugin_example.py").read_text()
