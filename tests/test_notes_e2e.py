"""Notes end to end: simulator → receiver → Redis → worker → note → the helpdesk's echo → worker.

Each test lets everything settle (the deliveries our notes caused were received and handled) and
then counts the notes the simulators received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from receiver.app import create_app
from simulator.cstar import CStarSimulator, CStarSimulatorConfig
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.conftest import wait_for
from tests.stack import outbox_empty, running_worker, settled
from ticketwire.config import CStarSettings, InboxOpsSettings, Settings
from ticketwire.engine import Context, Router
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors import registry

IO_SECRET, CS_SECRET = "whsec_io_notes", "whsec_cs_notes"

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
class Two:
    io: InboxOpsSimulator
    cs: CStarSimulator
    settings: Settings
    redis: Redis
    keys: Keys

    async def quiet(self) -> None:
        """Wait until every delivery (those our notes caused too) is handled."""
        for _ in range(50):
            before = len(self.io.deliveries) + len(self.cs.deliveries)
            for sim in (self.io, self.cs):
                await sim.wait_deliveries_idle()
            await wait_for(lambda: settled(self.redis, self.keys), message="deliveries handled")
            await wait_for(lambda: outbox_empty(self.redis, self.keys), message="notes sent")
            for sim in (self.io, self.cs):
                await sim.wait_deliveries_idle()
            if len(self.io.deliveries) + len(self.cs.deliveries) == before:
                return
        raise AssertionError("deliveries never stopped: a loop")


def rules_dir(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "notes.yml").write_text(text)
    return d


@pytest.fixture
async def start(
    aiohttp_server: Any, redis: Redis, redis_url: str, keys: Keys, tmp_path: Path
) -> AsyncIterator[Any]:
    started: list[Any] = []

    async def go(rules: str = "", **io_config: Any) -> Two:
        io = InboxOpsSimulator(
            SimulatorConfig(seed=21, rate_limit_per_minute=None, time_scale=0.001, **io_config)
        )
        cs = CStarSimulator(CStarSimulatorConfig(seed=21))
        for sim in (io, cs):
            await sim.start()
            started.append(sim)
        cs.set_rate_limit(None)
        settings = Settings(
            redis_url=redis_url,
            key_prefix=keys.prefix,
            rules_dir=rules_dir(tmp_path, rules or "[]\n"),
            partitions=4,
            lease_ttl_s=2.0,
            http_timeout_s=3.0,
            backoff_s=0.05,
            max_attempts=3,
            inboxops=InboxOpsSettings((Secret(IO_SECRET),), io.url, Secret(io.api_key)),
            cstar=CStarSettings(
                webhook_secrets=(Secret(CS_SECRET),),
                api_url=cs.url,
                team_id=cs.team_id,
                api_key=Secret(cs.api_key),
            ),
        )
        server = await aiohttp_server(create_app(settings, redis, registry.intakes(settings)))
        io.add_endpoint(str(server.make_url("/webhooks/inboxops")), IO_SECRET)
        cs.add_endpoint(str(server.make_url("/webhooks/cstar")), CS_SECRET)
        return Two(io, cs, settings, redis, keys)

    yield go
    for sim in started:
        await sim.stop()


def posts(sim: Any, ticket_id: str) -> list[Any]:
    return [
        e for e in sim.journal if e.method == "POST" and e.path.endswith(f"{ticket_id}/messages")
    ]


def notes(io: InboxOpsSimulator, ticket_id: str) -> list[str]:
    return [m["body_text"] for m in io.messages(ticket_id, ["internal_note"])]


async def test_a_yaml_note_rule_on_inboxops_and_cstar_writes_one_note_each(start, caplog):
    two = await start(ESCALATE)
    caplog.set_level("INFO", logger="ticketwire")
    io_t = two.io.create_ticket(subject="Printer on fire", priority="normal")
    cs_t = two.cs.create_ticket(title="Printer on fire", priority="normal")
    async with running_worker(two.settings):
        await two.quiet()
        two.io.change_ticket(io_t["id"], priority="urgent")
        two.cs.change_ticket(cs_t["id"], priority="urgent")
        await two.quiet()
        # InboxOps: one internal note through POST /tickets/{id}/messages.
        assert notes(two.io, io_t["id"]) == ["Escalated because priority is urgent"]
        [post] = posts(two.io, io_t["id"])
        assert post.body["type"] == "internal_note" and post.status == 201
        # cStar: one message {content, sender}.
        [post] = posts(two.cs, cs_t["id"])
        assert post.body == {"content": "Escalated because priority is urgent", "sender": "agent"}
        messages = two.cs.ticket(cs_t["id"])["messages"]
        assert [(m["content"], m["sender"]) for m in messages] == [
            ("Escalated because priority is urgent", "agent")
        ]
        # Each note made its helpdesk send a delivery the rule handled and did not act on again.
        io_events = [d.event for d in two.io.deliveries if d.ticket_id == io_t["id"]]
        assert io_events.count("ticket.updated") == 2
        assert any(d.event == "ticket.message_added" for d in two.cs.deliveries)
        for rule, tid in (
            ("escalate-note-inboxops", io_t["id"]),
            ("escalate-note-cstar", cs_t["id"]),
        ):
            assert (
                f"rule {rule} suppressed on ticket={tid}: echo: this delivery only reflects our "
                "own write of a note"
            ) in caplog.text


async def test_notes_of_two_events_are_two_calls_in_order(start):
    two = await start(STATUS_NOTES)
    ticket = two.io.create_ticket(subject="Two changes", priority="normal")
    tid = ticket["id"]
    async with running_worker(two.settings):
        await two.quiet()
        # Both events are queued within one coalescing window: neither note is merged away.
        two.io.change_ticket(tid, status="waiting")
        two.io.change_ticket(tid, status="open")
        await two.quiet()
        assert notes(two.io, tid) == [
            "Status is now waiting (Waiting)",
            "Status is now open (Open)",
        ]
        assert len(posts(two.io, tid)) == 2


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
    two = await start(message_updates_ticket=message_updates_ticket)
    caplog.set_level("INFO", logger="ticketwire")
    ticket = two.io.create_ticket(subject="Loop?", priority="normal")
    tid = ticket["id"]
    async with running_worker(two.settings, stamping_router()):
        await two.quiet()
        two.io.change_ticket(tid, priority="urgent")
        await two.quiet()
        assert len(posts(two.io, tid)) == 1
        [text] = notes(two.io, tid)
        assert text.startswith("Seen urgent at ")
        echoed = (
            "rule stamp-note suppressed on ticket="
            f"{tid}: echo: this delivery only reflects our own write of a note"
        )
        assert (echoed in caplog.text) is message_updates_ticket
        # A person's real change afterwards is no echo: the rule writes a second note.
        two.io.change_ticket(tid, priority="high")
        two.io.change_ticket(tid, priority="urgent")
        await two.quiet()
        assert len(notes(two.io, tid)) == 2
