"""InboxOps reminders on the simulator: `remind_at` applies only with a waiting status, the journal
says when it was ignored, and a due reminder moves the ticket (with its webhooks) on the clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from simulator.common.clock import ManualClock, iso
from tests.conftest import wait_for
from tests.test_simulator_inboxops_webhooks import Client, Receiver, receiver, running

__all__ = ["receiver"]  # the fixture, imported for the tests below

#: inboxops-update-ticket, `remind_at`.
APPLIED_ONLY_WITH_WAITING = "Applied when PATCH also sets status to waiting (status or status_id)"
#: inboxops-update-ticket, `remind_transition_status_id`.
TRANSITION = "Custom status to return to when reminder fires; tenant-scoped"


def status_id(api: Client, name: str) -> str:
    return str(next(s["id"] for s in api.sim.statuses if s["name"] == name))


def later(clock: ManualClock, hours: float) -> str:
    return iso(clock.now() + timedelta(hours=hours))


async def patch(api: Client, ticket: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await api.call("PATCH", f"/tickets/{ticket['id']}", body)
    assert status == 200, answer
    return dict(answer["data"])


async def remind(api: Client, ticket: dict[str, Any], when: str, **fields: Any) -> None:
    """Set a reminder the way the doc says it applies: with status waiting."""
    await patch(api, ticket, {"status": "waiting", "remind_at": when, **fields})


async def test_remind_at_alone_is_ignored_and_the_journal_says_so(receiver: Receiver) -> None:
    # APPLIED_ONLY_WITH_WAITING
    clock = ManualClock()
    async with running(receiver, clock=clock) as api:
        t = api.sim.create_ticket(subject="no status sent", status="waiting")
        d = await patch(api, t, {"remind_at": later(clock, 2)})
        assert d["remind_at"] is None
        assert d == t
        [entry] = [e for e in api.sim.journal if e.method == "PATCH"]
        assert entry.status == 200
        assert entry.notes == (
            (
                "remind_at ignored: InboxOps applies it only when the PATCH also sets status to "
                "waiting (status or status_id); this one sets no status"
            ),
        )
        assert entry.to_json()["notes"] == list(entry.notes)

        other = api.sim.create_ticket(subject="set to open")
        d = await patch(
            api,
            other,
            {
                "status": "in_progress",
                "remind_at": later(clock, 2),
                "remind_transition_status_id": None,
            },
        )
        assert (d["status"], d["remind_at"]) == ("in_progress", None)
        assert api.sim.journal[-1].notes == (
            (
                "remind_at and remind_transition_status_id ignored: InboxOps applies it only "
                "when the PATCH also sets status to waiting (status or status_id); this one sets "
                "status 'in_progress'"
            ),
        )


async def test_remind_at_applies_with_status_or_a_waiting_custom_status_id(
    receiver: Receiver,
) -> None:
    # APPLIED_ONLY_WITH_WAITING: `status` or `status_id`; "Custom status ID (takes precedence
    # over status)".
    clock = ManualClock()
    async with running(receiver, clock=clock) as api:
        a, b, c = (api.sim.create_ticket(subject=f"t{i}") for i in range(3))
        when = later(clock, 3)
        d = await patch(api, a, {"status": "waiting", "remind_at": when})
        assert (d["status"], d["status_name"], d["remind_at"]) == ("waiting", "Waiting", when)
        assert api.sim.journal[-1].notes == ()

        custom = status_id(api, "Waiting on customer")
        d = await patch(api, b, {"status_id": custom, "remind_at": when})
        assert (d["status_id"], d["remind_at"]) == (custom, when)

        # status_id wins: an open-type status_id makes the PATCH not a waiting one.
        d = await patch(
            api, c, {"status": "waiting", "status_id": status_id(api, "Open"), "remind_at": when}
        )
        assert (d["status"], d["remind_at"]) == ("open", None)
        assert "this one sets status 'open'" in "".join(api.sim.journal[-1].notes)

        # A ticket already waiting: sending waiting again (same custom status kept) updates it.
        again = later(clock, 5)
        d = await patch(api, b, {"status": "waiting", "remind_at": again})
        assert (d["status_id"], d["remind_at"]) == (custom, again)


async def test_transition_status_is_tenant_scoped(receiver: Receiver) -> None:
    # TRANSITION: "tenant-scoped"
    async with running(receiver, clock=ManualClock()) as api:
        t = api.sim.create_ticket(subject="x")
        foreign = api.sim.store.other.statuses[0].id
        status, body = await api.call(
            "PATCH",
            f"/tickets/{t['id']}",
            {
                "status": "waiting",
                "remind_at": "2030-01-01T00:00:00Z",
                "remind_transition_status_id": foreign,
            },
        )
        assert status == 400
        assert body["detail"].startswith("remind_transition_status_id")


async def test_a_due_reminder_moves_the_ticket_with_webhooks_on_the_clock(
    receiver: Receiver,
) -> None:
    # TRANSITION: "Custom status to return to when reminder fires". No request is made after
    # the clock moves: the simulator's timer fires the reminder and sends the webhooks.
    clock = ManualClock()
    async with running(receiver, clock=clock) as api:
        t = api.sim.create_ticket(subject="chase the customer")
        escalated = status_id(api, "Escalated")
        due = later(clock, 2)
        await remind(api, t, due, remind_transition_status_id=escalated)
        await api.sim.wait_deliveries_idle()
        assert receiver.events_for(t["id"]) == [
            "ticket.created",
            "ticket.updated",
            "ticket.status_changed",
        ]
        clock.advance(2 * 3600 - 1)
        await api.sim.wait_deliveries_idle()
        assert len(receiver.accepted) == 3
        clock.advance(1)
        await wait_for(lambda: len(receiver.accepted) == 5, message="the reminder's webhooks")
        after = receiver.accepted[-1].env["data"]
        assert [h.event for h in receiver.accepted[3:]] == [
            "ticket.updated",
            "ticket.status_changed",
        ]
        assert (after["status"], after["status_id"]) == ("in_progress", escalated)
        assert (after["remind_at"], after["remind_transition_status_id"]) == (None, None)
        assert after["updated_at"] == due
        assert api.sim.ticket(t["id"]) == after


async def test_without_a_transition_the_status_default_then_open_applies(
    receiver: Receiver,
) -> None:
    # "or the vendor's default": the waiting status's own remind_transition_status_id (the
    # seeded "Waiting on customer" returns to Open), else the default open status.
    clock = ManualClock()
    async with running(receiver, clock=clock) as api:
        a = api.sim.create_ticket(subject="plain waiting")
        b = api.sim.create_ticket(subject="waiting on customer")
        await remind(api, a, later(clock, 1))
        await patch(
            api,
            b,
            {"status_id": status_id(api, "Waiting on customer"), "remind_at": later(clock, 1)},
        )
        clock.advance(3600)
        # A request fires due reminders before it runs, whether or not the timer woke yet.
        status, body = await api.call("GET", "/tickets?status=open")
        assert status == 200
        assert sorted(x["id"] for x in body["data"]) == sorted([a["id"], b["id"]])
        assert {x["status_name"] for x in body["data"]} == {"Open"}


async def test_a_reminder_that_closes_sends_ticket_closed(receiver: Receiver) -> None:
    clock = ManualClock()
    async with running(receiver, clock=clock) as api:
        t = api.sim.create_ticket(subject="close me later")
        await remind(api, t, later(clock, 1), remind_transition_status_id=status_id(api, "Closed"))
        clock.advance(3600)
        await wait_for(
            lambda: receiver.events_for(t["id"])[-1:] == ["ticket.closed"], message="closed"
        )
        assert receiver.events_for(t["id"])[-3:] == [
            "ticket.updated",
            "ticket.status_changed",
            "ticket.closed",
        ]


async def test_leaving_waiting_drops_the_reminder(receiver: Receiver) -> None:
    # A reminder exists only on a waiting ticket ("Set when transitioning to waiting").
    clock = ManualClock()
    async with running(receiver, clock=clock) as api:
        t = api.sim.create_ticket(subject="customer answered")
        await remind(api, t, later(clock, 1))
        moved = await patch(api, t, {"status_id": status_id(api, "Waiting on customer")})
        assert moved["remind_at"] is not None  # still waiting: the reminder stays
        d = await patch(api, t, {"status": "in_progress"})
        assert (d["remind_at"], d["remind_transition_status_id"]) == (None, None)
        clock.advance(7200)
        await api.sim.wait_deliveries_idle()
        assert api.sim.ticket(t["id"]) == d
        assert api.sim.store.next_reminder() is None


async def test_a_kept_reminder_sleeps_while_the_ticket_is_not_waiting(receiver: Receiver) -> None:
    # Undocumented, so switchable: reminder_leaving_waiting="keep" leaves it on the ticket.
    clock = ManualClock()
    async with running(receiver, clock=clock, reminder_leaving_waiting="keep") as api:
        t = api.sim.create_ticket(subject="kept")
        due = later(clock, 1)
        await remind(api, t, due)
        d = await patch(api, t, {"status": "in_progress"})
        assert (d["status"], d["remind_at"]) == ("in_progress", due)
        clock.advance(7200)
        await api.sim.wait_deliveries_idle()
        assert api.sim.ticket(t["id"]) == d
        # Back in waiting, the past-due reminder fires at once.
        await patch(api, t, {"status": "waiting"})
        assert api.sim.ticket(t["id"])["status_name"] == "Open"
        url = api.sim.url + "/_sim/settings"
        async with api.session.post(url, json={"reminder_leaving_waiting": "x"}) as r:
            assert r.status == 400
