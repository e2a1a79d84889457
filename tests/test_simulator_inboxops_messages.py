"""InboxOps messages over real HTTP: the simulator's `GET/POST /tickets/{id}/messages`, the
webhook a note causes (both documented-unknown branches), the journal, and our client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulator.common.clock import ManualClock
from simulator.inboxops import SimulatorConfig
from tests.test_simulator_inboxops_api import Api, assert_problem, running
from tests.test_simulator_inboxops_webhooks import Receiver, receiver  # noqa: F401 (fixture)
from tests.test_simulator_inboxops_webhooks import running as running_with_hooks
from ticketwire.errors import HelpdeskHTTPError
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.client import InboxOpsClient

NOTE = {
    "type": "internal_note",
    "body_html": "<p>Called the customer</p>",
    "body_text": "Called the customer",
}


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as client:
        yield client


def timeline(api: Api, ticket_id: str) -> list[dict[str, Any]]:
    return api.sim.messages(ticket_id)


async def seeded(api: Api, clock: ManualClock) -> str:
    """A ticket with an initial note, an inbound email, a draft reply and a sent reply."""
    ticket = api.sim.create_ticket(
        subject="Printer on fire", initial_internal_note={"body_text": "VIP customer"}
    )
    tid = ticket["id"]
    clock.advance(60)
    api.sim.add_message(
        tid,
        direction="inbound",
        from_address="ana@example.com",
        to_addresses=["support@acme.test"],
        subject="Printer on fire",
        body_text="It is smoking.",
    )
    clock.advance(60)
    api.sim.add_message(tid, direction="outbound", is_draft=True, body_text="Draft: unplug it")
    clock.advance(60)
    api.sim.add_message(
        tid,
        direction="outbound",
        from_address="support@acme.test",
        to_addresses=["ana@example.com"],
        cc_addresses=["boss@example.com"],
        body_html="<p>Please unplug it.<br>Thanks</p>",
    )
    return str(tid)


async def test_list_is_oldest_first_without_drafts_and_filters_by_type() -> None:
    clock = ManualClock()
    async with running(clock=clock) as api:
        tid = await seeded(api, clock)
        r = await api.get(f"/tickets/{tid}/messages")
        assert r.status == 200
        # docs: Returns email and internal_note rows, oldest first (the in-app timeline).
        # Draft outbound messages are left out.
        rows = r.data
        assert [(m["type"], m["direction"], m["body_text"]) for m in rows] == [
            ("internal_note", None, "VIP customer"),
            ("email", "inbound", "It is smoking."),
            ("email", "outbound", "Please unplug it.\nThanks"),
        ]
        assert [m["created_at"] for m in rows] == sorted(m["created_at"] for m in rows)
        assert r.body["meta"] == {"page": 1, "per_page": 3, "total": 3}
        # docs: Item fields seen: id, direction (e.g. inbound), type, from_address,
        # to_addresses, cc_addresses, …
        sent = rows[2]
        assert sent["from_address"] == "support@acme.test"
        assert sent["to_addresses"] == ["ana@example.com"]
        assert sent["cc_addresses"] == ["boss@example.com"]
        assert {"id", "direction", "type", "from_address", "to_addresses", "cc_addresses"} <= set(
            sent
        )
        # docs: Optional types filter: comma-separated email and/or internal_note; the default
        # is both.
        notes = await api.get(f"/tickets/{tid}/messages", params={"types": "internal_note"})
        assert [m["type"] for m in notes.data] == ["internal_note"]
        emails = await api.get(f"/tickets/{tid}/messages", params={"types": "email"})
        assert [m["type"] for m in emails.data] == ["email", "email"]
        both = await api.get(f"/tickets/{tid}/messages", params={"types": "email,internal_note"})
        assert both.data == rows
        # By ticket number too, as every /tickets/{id} route.
        by_number = await api.get(f"/tickets/{api.sim.ticket(tid)['ticket_number']}/messages")
        assert by_number.data == rows


async def test_list_refuses_an_unknown_type_and_a_missing_ticket(api: Api) -> None:
    tid = api.sim.create_ticket(subject="x")["id"]
    r = await api.get(f"/tickets/{tid}/messages", params={"types": "email,sms"})
    assert_problem(r, 400, "bad_request", "types")
    assert_problem(await api.get("/tickets/999/messages"), 404, "not_found")
    assert_problem(await api.get(f"/tickets/{tid}/messages", key=None), 401, "unauthorized")


async def test_post_adds_an_internal_note(api: Api) -> None:
    tid = api.sim.create_ticket(subject="x")["id"]
    r = await api.post(f"/tickets/{tid}/messages", NOTE)
    assert r.status == 201
    note = r.data
    assert note["type"] == "internal_note" and note["ticket_id"] == tid
    assert (note["body_html"], note["body_text"]) == (NOTE["body_html"], NOTE["body_text"])
    assert timeline(api, tid) == [note]
    # A text-only note gets its HTML derived, and the other way round.
    text_only = await api.post(
        f"/tickets/{tid}/messages", {"type": "internal_note", "body_text": "a < b\nc"}
    )
    assert text_only.data["body_html"] == "<p>a &lt; b<br>c</p>"
    html_only = await api.post(
        f"/tickets/{tid}/messages", {"type": "internal_note", "body_html": "<p>x &amp; y</p>"}
    )
    assert html_only.data["body_text"] == "x & y"
    [entry] = [e for e in api.sim.journal if e.method == "POST" and e.path.endswith("/messages")][
        :1
    ]
    assert entry.body == NOTE and entry.status == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # docs: Only {"type":"internal_note","body_html","body_text"} is allowed. Outbound
        # replies are not supported through the API.
        ({"type": "email", "body_text": "Hello"}, "type"),
        ({"body_text": "Hello"}, "type"),
        ({"type": "internal_note", "body_text": "x", "to_addresses": ["a@b.c"]}, "to_addresses"),
        ({"type": "internal_note"}, "body_text"),
        ({"type": "internal_note", "body_text": "  ", "body_html": "<p> </p>"}, "body_text"),
        ({"type": "internal_note", "body_text": 5}, "body_text"),
    ],
)
async def test_post_refuses_anything_but_an_internal_note(
    api: Api, body: dict[str, Any], field: str
) -> None:
    tid = api.sim.create_ticket(subject="x")["id"]
    r = await api.post(f"/tickets/{tid}/messages", body)
    assert_problem(r, 400, "bad_request", field)
    assert timeline(api, tid) == []


async def test_post_needs_a_write_key(api: Api) -> None:
    tid = api.sim.create_ticket(subject="x")["id"]
    r = await api.post(f"/tickets/{tid}/messages", NOTE, key=api.sim.read_only_key)
    assert_problem(r, 403, "insufficient_scope")


async def test_a_note_bumps_the_ticket_and_emits_ticket_updated(receiver: Receiver) -> None:  # noqa: F811
    clock = ManualClock()
    async with running_with_hooks(receiver, clock=clock) as api:
        _, created = await api.call("POST", "/tickets", {"subject": "Noted"})
        ticket = created["data"]
        clock.advance(30)
        status, _ = await api.call("POST", f"/tickets/{ticket['id']}/messages", NOTE)
        assert status == 201
        await api.sim.wait_deliveries_idle()
    assert receiver.events_for(ticket["id"]) == ["ticket.created", "ticket.updated"]
    after = receiver.accepted[-1].env["data"]
    assert {k for k in after if after[k] != ticket[k]} == {"updated_at"}


async def test_with_message_updates_ticket_off_a_note_changes_nothing(receiver: Receiver) -> None:  # noqa: F811
    async with running_with_hooks(receiver, message_updates_ticket=False) as api:
        _, created = await api.call("POST", "/tickets", {"subject": "Quiet"})
        ticket = created["data"]
        status, _ = await api.call("POST", f"/tickets/{ticket['id']}/messages", NOTE)
        assert status == 201
        await api.sim.wait_deliveries_idle()
        assert api.sim.ticket(ticket["id"]) == ticket
    assert receiver.events_for(ticket["id"]) == ["ticket.created"]


async def test_the_setting_switches_at_runtime(api: Api) -> None:
    r = await api.post("/_sim/settings", {"message_updates_ticket": False})
    assert r.status == 200 and r.data["message_updates_ticket"] is False
    assert_problem(
        await api.post("/_sim/settings", {"message_updates_ticket": "no"}),
        400,
        "bad_request",
        "message_updates_ticket",
    )


async def test_sim_control_adds_emails_and_refuses_bad_ones(api: Api) -> None:
    tid = api.sim.create_ticket(subject="x")["id"]
    r = await api.post(
        f"/_sim/tickets/{tid}/messages",
        {"type": "email", "direction": "inbound", "body_text": "Hi", "from_address": "a@b.co"},
    )
    assert r.status == 201 and r.data["direction"] == "inbound"
    bad = await api.post(
        f"/_sim/tickets/{tid}/messages",
        {"direction": "inbound", "is_draft": True, "body_text": "x"},
    )
    assert_problem(bad, 400, "bad_request", "is_draft")


# ---- our client on it


async def test_client_lists_and_adds_notes() -> None:
    async with running(SimulatorConfig(seed=7, rate_limit_per_minute=None)) as api:
        tid = api.sim.create_ticket(subject="x", initial_internal_note={"body_text": "first"})["id"]
        api.sim.add_message(tid, direction="inbound", body_text="hello")
        async with aiohttp.ClientSession() as session:
            client = InboxOpsClient(session, api.sim.url, Secret(api.sim.api_key))
            note = await client.add_note(tid, "Escalated because priority is urgent")
            assert note["body_text"] == "Escalated because priority is urgent"
            every = await client.list_messages(tid)
            assert [m["body_text"] for m in every] == [
                "first",
                "hello",
                "Escalated because priority is urgent",
            ]
            notes = await client.list_messages(tid, types=["internal_note"])
            assert [m["body_text"] for m in notes] == [
                "first",
                "Escalated because priority is urgent",
            ]
            with pytest.raises(ValueError, match="unknown message type sms"):
                await client.list_messages(tid, types=["sms"])
            with pytest.raises(HelpdeskHTTPError) as caught:
                await client.list_messages("999")
            assert caught.value.status == 404
        [get] = [e for e in api.sim.journal if e.method == "GET" and e.query]
        assert get.query == {"types": "internal_note"}
