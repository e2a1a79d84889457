"""Notes end to end: simulator → receiver → Redis → worker → note → the helpdesk's echo → worker.

Each test lets everything settle (the deliveries our notes caused were received and handled) and
then counts the notes the simulators received.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from simulator.cstar import CStarSimulator
from simulator.inboxops import InboxOpsSimulator
from tests.conftest import wait_for
from tests.stack import outbox_empty, running_worker, settled
from tests.test_vendors_end_to_end import Three, three  # noqa: F401 (fixture)
from ticketwire.config import Settings
from ticketwire.engine import Context, Router
from ticketwire.keys import Keys

ESCALATE = """
- name: escalate-note-inboxops
  vendor: inboxops
  events: [ticket.updated]
  if: {field: priority, equals: urgent}
  then:
    - add_note: "Escalated because priority is {{ticket.priority}}"
- name: escalate-note-cstar
  vendor: cstar
  # The note makes cStar send ticket.message_added: the rule sees its own note's echo.
  events: [ticket.updated, ticket.message_added]
  if: {field: priority, equals: urgent}
  then:
    - add_note: "Escalated because priority is {{ticket.priority}}"
"""

STATUS_NOTES = """
name: status-note
vendor: inboxops
events: [ticket.status_changed]
then:
  - add_note: "Status is now {{common.status}} ({{ticket.status_name}})"
"""


@dataclass
class Stack:
    """The three simulators behind one receiver, and settings with this test's rules."""

    three: Three
    settings: Settings
    redis: Redis
    keys: Keys

    @property
    def io(self) -> InboxOpsSimulator:
        return self.three.io

    @property
    def cs(self) -> CStarSimulator:
        return self.three.cs

    def delivered(self) -> int:
        return sum(len(s.deliveries) for s in (self.io, self.cs, self.three.th))

    async def quiet(self) -> None:
        """Wait until every delivery (those our notes caused too) is handled."""
        for _ in range(50):
            before = self.delivered()
            for sim in (self.io, self.cs, self.three.th):
                await sim.wait_deliveries_idle()
            await wait_for(lambda: settled(self.redis, self.keys), message="deliveries handled")
            await wait_for(lambda: outbox_empty(self.redis, self.keys), message="notes sent")
            if self.delivered() == before:
                return
        raise AssertionError("deliveries never stopped: a loop")


@pytest.fixture
def start(request: pytest.FixtureRequest, redis: Redis, keys: Keys, tmp_path: Path) -> Any:
    helpdesks: Three = request.getfixturevalue("three")

    def go(rules: str = "[]\n") -> Stack:
        d = tmp_path / "rules"
        d.mkdir(exist_ok=True)
        (d / "notes.yml").write_text(rules)
        return Stack(helpdesks, replace(helpdesks.settings, rules_dir=d), redis, keys)

    return go


def posts(sim: Any, ticket_id: str) -> list[Any]:
    return [
        e for e in sim.journal if e.method == "POST" and e.path.endswith(f"{ticket_id}/messages")
    ]


def notes(io: InboxOpsSimulator, ticket_id: str) -> list[str]:
    return [m["body_text"] for m in io.messages(ticket_id, ["internal_note"])]


async def test_a_yaml_note_rule_on_inboxops_and_cstar_writes_one_note_each(start, caplog):
    stack = start(ESCALATE)
    caplog.set_level("INFO", logger="ticketwire")
    io_t = stack.io.create_ticket(subject="Printer on fire", priority="normal")
    cs_t = stack.cs.create_ticket(title="Printer on fire", priority="normal")
    async with running_worker(stack.settings):
        await stack.quiet()
        stack.io.change_ticket(io_t["id"], priority="urgent")
        stack.cs.change_ticket(cs_t["id"], priority="urgent")
        await stack.quiet()
        # InboxOps: one internal note through POST /tickets/{id}/messages.
        assert notes(stack.io, io_t["id"]) == ["Escalated because priority is urgent"]
        [post] = posts(stack.io, io_t["id"])
        assert post.body["type"] == "internal_note" and post.status == 201
        # cStar: one message {content, sender}.
        [post] = posts(stack.cs, cs_t["id"])
        assert post.body == {"content": "Escalated because priority is urgent", "sender": "agent"}
        messages = stack.cs.ticket(cs_t["id"])["messages"]
        assert [(m["content"], m["sender"]) for m in messages] == [
            ("Escalated because priority is urgent", "agent")
        ]
        # Each note made its helpdesk send a delivery the rule handled and did not act on again.
        io_events = [d.event for d in stack.io.deliveries if d.ticket_id == io_t["id"]]
        assert io_events.count("ticket.updated") == 2
        assert any(d.event == "ticket.message_added" for d in stack.cs.deliveries)
        for rule, tid in (
            ("escalate-note-inboxops", io_t["id"]),
            ("escalate-note-cstar", cs_t["id"]),
        ):
            assert (
                f"rule {rule} suppressed on ticket={tid}: echo: this delivery only reflects our "
                "own write of a note"
            ) in caplog.text


async def test_notes_of_two_events_are_two_calls_in_order(start):
    stack = start(STATUS_NOTES)
    ticket = stack.io.create_ticket(subject="Two changes", priority="normal")
    tid = ticket["id"]
    async with running_worker(stack.settings):
        await stack.quiet()
        # Both events are queued within one coalescing window: neither note is merged away.
        stack.io.change_ticket(tid, status="waiting")
        stack.io.change_ticket(tid, status="open")
        await stack.quiet()
        assert notes(stack.io, tid) == [
            "Status is now waiting (Waiting)",
            "Status is now open (Open)",
        ]
        assert len(posts(stack.io, tid)) == 2


def stamping_router() -> Router:
    """A rule whose note says something new on every event: only its echo can stop it."""
    router = Router()

    @router.on(
        "ticket.updated",
        vendor="inboxops",
        when={"field": "priority", "equals": "urgent"},
        name="stamp-note",
    )
    async def stamp_note(ctx: Context) -> None:
        ctx.add_note(f"Seen urgent at {ctx.ticket['updated_at']}")

    return router


@pytest.mark.parametrize("message_updates_ticket", [True, False])
async def test_a_note_that_changes_every_time_does_not_loop(start, caplog, message_updates_ticket):
    # InboxOps documents no webhook for a new note: both ways are covered. When the note bumps
    # the ticket, the delivery it causes changes nothing rules read, and is our note's echo.
    stack = start()
    stack.io.settings.message_updates_ticket = message_updates_ticket
    caplog.set_level("INFO", logger="ticketwire")
    ticket = stack.io.create_ticket(subject="Loop?", priority="normal")
    tid = ticket["id"]
    async with running_worker(stack.settings, stamping_router()):
        await stack.quiet()
        stack.io.change_ticket(tid, priority="urgent")
        await stack.quiet()
        assert len(posts(stack.io, tid)) == 1
        [text] = notes(stack.io, tid)
        assert text.startswith("Seen urgent at ")
        echoed = (
            "rule stamp-note suppressed on ticket="
            f"{tid}: echo: this delivery only reflects our own write of a note"
        )
        assert (echoed in caplog.text) is message_updates_ticket
        # A person's real change afterwards is no echo: the rule writes a second note.
        stack.io.change_ticket(tid, priority="high")
        stack.io.change_ticket(tid, priority="urgent")
        await stack.quiet()
        assert len(notes(stack.io, tid)) == 2
