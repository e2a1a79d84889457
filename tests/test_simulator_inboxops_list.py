"""`GET /api/v1/tickets` on the InboxOps simulator: every filter, custom fields, sorting, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulator.common.clock import ManualClock
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig

PROBLEMS = "https://docs.inboxops.app/api/problems/"


class Lister:
    """Runs list queries against a started simulator."""

    def __init__(self, sim: InboxOpsSimulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session

    async def raw(self, params: Any) -> tuple[int, Any]:
        async with self.session.get(
            self.sim.url + "/api/v1/tickets",
            params=params,
            headers={"Authorization": f"Bearer {self.sim.api_key}"},
        ) as r:
            return r.status, await r.json(content_type=None)

    async def numbers(self, params: Any = ()) -> list[int]:
        status, body = await self.raw(params)
        assert status == 200, body
        return [t["ticket_number"] for t in body["data"]]

    async def bad(self, params: Any, name: str) -> None:
        status, body = await self.raw(params)
        assert status == 400, body
        assert body["code"] == "bad_request"
        assert body["type"] == PROBLEMS + "bad_request"
        assert body["detail"].startswith(name), body["detail"]


@pytest.fixture
async def lister() -> AsyncIterator[Lister]:
    sim = InboxOpsSimulator(
        SimulatorConfig(seed=11, rate_limit_per_minute=None), clock=ManualClock()
    )
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Lister(sim, session)
    finally:
        await sim.stop()


def option(sim: InboxOpsSimulator, key: str, label: str) -> str:
    f = next(f for f in sim.custom_fields if f["field_key"] == key)
    return str(next(o["id"] for o in f["options"] if o["label"] == label))


def populate(sim: InboxOpsSimulator) -> dict[str, Any]:
    """Five tickets, one simulated minute apart, with varied fields."""
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    support, billing = (i["id"] for i in sim.inboxes)
    ada, grace = sim.agents[0]["id"], sim.agents[1]["id"]
    vip, bug = sim.tags[0]["id"], sim.tags[1]["id"]
    growth, free = option(sim, "plan", "Growth"), option(sim, "plan", "Free")
    chat = option(sim, "products", "Chat")
    specs: list[dict[str, Any]] = [
        {"subject": "Printer on FIRE", "priority": "urgent", "assignee_id": ada,
         "tag_ids": [vip, bug], "custom_fields": {"plan": growth, "score": 4, "region": "eu"}},
        {"subject": "Refund for order", "priority": "low", "inbox_id": billing, "status": "waiting",
         "tag_ids": [vip], "custom_fields": {"plan": free, "billing_account": "ACC-1",
                                             "due_date": "2025-02-01"}},
        {"subject": "printer jam", "priority": "normal", "assignee_id": grace, "status": "closed",
         "custom_fields": {"products": [chat], "follow_up_at": "2025-01-06T12:00:00Z"}},
        {"subject": "Login broken", "priority": "high", "inbox_id": billing,
         "custom_fields": {"score": 4.5}},
        {"subject": "Other", "priority": "normal", "tag_ids": [bug]},
    ]  # fmt: skip
    for spec in specs:
        clock.advance(60)
        sim.create_ticket(**spec)
    return {
        "support": support, "billing": billing, "ada": ada, "grace": grace, "vip": vip,
        "bug": bug, "growth": growth, "free": free, "chat": chat,
    }  # fmt: skip


async def test_default_order_is_newest_first_with_meta(lister: Lister) -> None:
    populate(lister.sim)
    status, body = await lister.raw({})
    assert status == 200
    assert [t["ticket_number"] for t in body["data"]] == [5, 4, 3, 2, 1]
    assert body["meta"] == {"page": 1, "per_page": 25, "total": 5}
    assert set(body["data"][0]) >= {"id", "status_id", "updated_at"}


async def test_listed_tickets_carry_no_custom_fields(lister: Lister) -> None:
    # inboxops-update-ticket: "Ticket with custom_fields (GET by id, POST create 201, PATCH
    # 200)"; the list answer's ticket (inboxops-list-tickets) has every other field.
    populate(lister.sim)
    status, body = await lister.raw({"sort": "created_at", "order": "asc"})
    assert status == 200
    first = body["data"][0]
    full = lister.sim.ticket(first["id"])
    assert full["custom_fields"]
    assert first == {k: v for k, v in full.items() if k != "custom_fields"}


async def test_text_search_is_case_insensitive_and_query_wins(lister: Lister) -> None:
    populate(lister.sim)
    assert await lister.numbers({"query": "PRINTER"}) == [3, 1]
    assert await lister.numbers({"q": "refund"}) == [2]
    assert await lister.numbers({"query": "login", "q": "printer"}) == [4]
    assert await lister.numbers({"query": "nothing like it"}) == []


async def test_status_priority_inbox_assignee_and_tag_filters(lister: Lister) -> None:
    ids = populate(lister.sim)
    assert await lister.numbers({"status": "open"}) == [5, 4, 1]
    assert await lister.numbers({"status": "waiting,closed"}) == [3, 2]
    assert await lister.numbers({"priority": "normal"}) == [5, 3]
    assert await lister.numbers({"inbox_id": ids["billing"]}) == [4, 2]
    assert await lister.numbers({"assignee_id": ids["ada"]}) == [1]
    assert await lister.numbers({"assignee_id": "__unassigned__"}) == [5, 4, 2]
    assert await lister.numbers({"tag_ids": ids["vip"]}) == [2, 1]
    assert await lister.numbers({"tag_ids": f"{ids['vip']},{ids['bug']}"}) == [1]
    query = "printer or other"
    assert await lister.numbers({"status": "open", "tag_ids": ids["bug"], "query": query}) == [5, 1]


async def test_date_bounds_are_exclusive(lister: Lister) -> None:
    populate(lister.sim)
    created = {t["ticket_number"]: t["created_at"] for t in lister.sim.tickets()}
    assert await lister.numbers({"created_after": created[3]}) == [5, 4]
    assert await lister.numbers({"created_before": created[3]}) == [2, 1]
    assert await lister.numbers({"created_after": created[1], "created_before": created[4]}) == [
        3,
        2,
    ]
    clock = lister.sim.clock
    assert isinstance(clock, ManualClock)
    clock.advance(60)
    lister.sim.change_ticket(2, subject="Refund for order, urgent")
    touched = lister.sim.ticket(2)["updated_at"]
    assert await lister.numbers({"updated_after": created[5]}) == [2]
    assert await lister.numbers({"updated_before": touched, "updated_after": created[3]}) == [5, 4]
    # Offsets and a bare date are accepted.
    assert await lister.numbers({"created_after": "2000-01-01"}) == [5, 4, 3, 2, 1]
    assert await lister.numbers({"created_before": "2000-01-01T00:00:00+02:00"}) == []


async def test_sorting_and_paging(lister: Lister) -> None:
    populate(lister.sim)
    clock = lister.sim.clock
    assert isinstance(clock, ManualClock)
    clock.advance(1)
    lister.sim.change_ticket(1, subject="Printer on FIRE again")
    assert await lister.numbers({"order": "asc"}) == [1, 2, 3, 4, 5]
    assert await lister.numbers({"sort": "updated_at"}) == [1, 5, 4, 3, 2]
    assert await lister.numbers({"sort": "priority", "order": "desc"}) == [1, 4, 5, 3, 2]
    assert await lister.numbers({"sort": "priority", "order": "asc"}) == [2, 3, 5, 4, 1]
    status, body = await lister.raw({"order": "asc", "per_page": "2", "page": "2"})
    assert status == 200
    assert [t["ticket_number"] for t in body["data"]] == [3, 4]
    assert body["meta"] == {"page": 2, "per_page": 2, "total": 5}
    assert await lister.numbers({"per_page": "2", "page": "4"}) == []
    assert await lister.numbers({"per_page": "100"}) == [5, 4, 3, 2, 1]


async def test_default_page_size_is_25(lister: Lister) -> None:
    lister.sim.seed_tickets(30, emit=False)
    status, body = await lister.raw({})
    assert len(body["data"]) == 25
    assert body["meta"] == {"page": 1, "per_page": 25, "total": 30}
    status, body = await lister.raw({"page": "2"})
    assert status == 200
    assert len(body["data"]) == 5


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"status": "open,done"}, "status"),
        ({"priority": "medium"}, "priority"),
        # `priority` is one of "low normal high urgent"; only statuses and tag_ids are
        # documented as comma-separated lists.
        ({"priority": "urgent,low"}, "priority"),
        ({"inbox_id": "support"}, "inbox_id"),
        ({"assignee_id": "nobody"}, "assignee_id"),
        # `assignee_id`: "UUID or __unassigned__".
        ({"assignee_id": "unassigned"}, "assignee_id"),
        ({"tag_ids": "vip"}, "tag_ids"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2025-13-01"}, "created_before"),
        ({"updated_after": "1 Jan"}, "updated_after"),
        ({"updated_before": "x"}, "updated_before"),
        ({"sort": "subject"}, "sort"),
        ({"order": "up"}, "order"),
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"per_page": "101"}, "per_page"),
        ({"per_page": "-1"}, "per_page"),
    ],
)
async def test_bad_filter_values_are_400_naming_the_parameter(
    lister: Lister, params: dict[str, str], name: str
) -> None:
    await lister.bad(params, name)


async def test_custom_field_filters_match_exactly_per_type(lister: Lister) -> None:
    ids = populate(lister.sim)
    assert await lister.numbers({"custom_field_plan": ids["growth"]}) == [1]
    assert await lister.numbers({"custom_field_plan": ids["growth"].upper()}) == [1]
    assert await lister.numbers({"custom_field_region": "eu"}) == [1]
    assert await lister.numbers({"custom_field_region": "EU"}) == []
    assert await lister.numbers({"custom_field_score": "4"}) == [1]
    assert await lister.numbers({"custom_field_score": "4.5"}) == [4]
    assert await lister.numbers({"custom_field_products": ids["chat"]}) == [3]
    assert await lister.numbers({"custom_field_due_date": "2025-02-01"}) == [2]
    assert await lister.numbers({"custom_field_follow_up_at": "2025-01-06T13:00:00+01:00"}) == [3]
    assert await lister.numbers({"custom_field_billing_account": "ACC-1"}) == [2]
    # ANDed with each other and with the other filters.
    both = {"custom_field_plan": ids["growth"], "custom_field_score": "4"}
    assert await lister.numbers(both) == [1]
    assert await lister.numbers({**both, "status": "closed"}) == []
    assert await lister.numbers({"custom_field_plan": ids["free"], "custom_field_score": "4"}) == []


async def test_empty_matches_tickets_without_a_stored_value(lister: Lister) -> None:
    populate(lister.sim)
    assert await lister.numbers({"custom_field_plan": "__empty__"}) == [5, 4, 3]
    assert await lister.numbers({"custom_field_score": "__empty__", "status": "open"}) == [5]


async def test_inbox_scoped_definitions_apply_only_in_linked_inboxes(lister: Lister) -> None:
    ids = populate(lister.sim)
    # Only Billing tickets have billing_account; Support tickets match neither value nor empty.
    assert await lister.numbers({"custom_field_billing_account": "__empty__"}) == [4]
    # A ticket moved out of Billing keeps its stored value, but the definition no longer applies.
    lister.sim.change_ticket(2, inbox_id=ids["support"])
    assert await lister.numbers({"custom_field_billing_account": "ACC-1"}) == []
    assert await lister.numbers({"custom_field_billing_account": "__empty__"}) == [4]
    assert lister.sim.ticket(2)["custom_fields"]["billing_account"] == "ACC-1"


async def test_custom_field_limits_and_validation(lister: Lister) -> None:
    eleven = [(f"custom_field_k{i}", "x") for i in range(11)]
    await lister.bad(eleven, "custom_field_*")
    status, _ = await lister.raw([("custom_field_region", "x")] * 1)
    assert status == 200
    await lister.bad(
        [("custom_field_region", "a"), ("custom_field_region", "b")], "custom_field_region"
    )
    await lister.bad({"custom_field_nope": "x"}, "custom_field_nope")
    await lister.bad({"custom_field_plan": "Growth"}, "custom_field_plan")
    await lister.bad(
        {"custom_field_plan": "00000000-0000-4000-8000-000000000000"}, "custom_field_plan"
    )
    await lister.bad({"custom_field_products": "Chat"}, "custom_field_products")
    await lister.bad({"custom_field_due_date": "2025-1-5"}, "custom_field_due_date")
    await lister.bad({"custom_field_due_date": "2025-02-30"}, "custom_field_due_date")
    await lister.bad({"custom_field_follow_up_at": "soon"}, "custom_field_follow_up_at")
    await lister.bad({"custom_field_score": "many"}, "custom_field_score")
    # Exactly ten distinct known-or-unknown keys passes the count check and fails on the key.
    ten = [(f"custom_field_k{i}", "x") for i in range(10)]
    await lister.bad(ten, "custom_field_k0")
