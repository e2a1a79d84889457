"""The example of the README's "Testing your rules", verbatim: the shipped rules, end to end."""

import pytest

ON_CALL = "6f1c2b7e-0d4a-4c1e-9a55-3b8e2f7d9c10"  # rules/urgent_unassigned.py


@pytest.mark.asyncio
@pytest.mark.ticketwire(vendors=["inboxops", "cstar"])
async def test_urgent_tickets_reach_on_call(ticketwire):
    ticket = ticketwire.create("inboxops", subject="Checkout is down", priority="normal")
    ticketwire.change("inboxops", ticket["id"], priority="urgent")
    await ticketwire.effect("inboxops", ticket["id"], {"assignee_id": ON_CALL})

    other = ticketwire.tickets("cstar")[0]
    ticketwire.change("cstar", other["id"], priority="urgent")
    await ticketwire.effect("cstar", other["id"], lambda t: "on-call" in t["tags"])
