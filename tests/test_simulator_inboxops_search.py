"""`GET /tickets?query=` on the InboxOps simulator: PostgreSQL websearch over subject, body and
message bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from simulator.common.clock import ManualClock
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from simulator.inboxops.fulltext import Operand, TextQuery, parse

#: inboxops-list-tickets, `query`.
WEBSEARCH = (
    "Full-text search (PostgreSQL websearch). Matches ticket subject/body vectors and message "
    "bodies; combined with all other filters with AND. If both query and q are sent, query wins."
)


def ops(*clauses: tuple[str | tuple[str, bool], ...]) -> TextQuery:
    def one(item: str | tuple[str, bool]) -> Operand:
        text, negated = (item, False) if isinstance(item, str) else item
        return Operand(tuple(text.split()), negated)

    return TextQuery(tuple(tuple(one(i) for i in clause) for clause in clauses))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("refund invoice", ops(("refund",), ("invoice",))),
        ('"wrong VAT" number', ops(("wrong vat",), ("number",))),
        ('supernovae -"crab nebula"', ops(("supernovae",), (("crab nebula", True),))),
        ("sad cat or fat rat", ops(("sad",), ("cat", "fat"), ("rat",))),
        ("or cat or", ops(("cat",))),
        ("cat OR -dog", ops(("cat", ("dog", True)))),
        ("e-mail", ops(("e mail",))),
        ('"unclosed phrase', ops(("unclosed phrase",))),
        ("Ünïcode, WORDS!", ops(("ünïcode",), ("words",))),
        ("!!! -", ops()),
    ],
)
def test_websearch_syntax(text: str, expected: TextQuery) -> None:
    # WEBSEARCH: words ANDed, "quoted phrases", -word, or.
    assert parse(text) == expected


def test_phrases_must_be_adjacent_within_one_field() -> None:
    q = parse('"export csv"')
    assert q.matches(["Export to CSV", "we tried: export csv again"])
    assert not q.matches(["Export", "CSV times out"])
    assert not q.matches(["export to csv"])


def test_a_query_without_words_matches_nothing() -> None:
    assert not parse("!!!").matches(["anything"])


@pytest.fixture
async def sim() -> AsyncIterator[InboxOpsSimulator]:
    s = InboxOpsSimulator(SimulatorConfig(seed=3, rate_limit_per_minute=None), clock=ManualClock())
    await s.start()
    yield s
    await s.stop()


async def search(sim: InboxOpsSimulator, **params: str) -> list[int]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            sim.url + "/api/v1/tickets",
            params={**params, "sort": "created_at", "order": "asc"},
            headers={"Authorization": f"Bearer {sim.api_key}"},
        ) as r,
    ):
        body = await r.json()
        assert r.status == 200, body
        return [t["ticket_number"] for t in body["data"]]


async def test_search_covers_subject_body_and_messages(sim: InboxOpsSimulator) -> None:
    # WEBSEARCH: "Matches ticket subject/body vectors and message bodies".
    sim.create_ticket(subject="Invoice shows the wrong VAT number")
    sim.create_ticket(
        subject="Billing question",
        initial_internal_note={"body_html": "<p>Customer says the <b>VAT</b> id is wrong</p>"},
    )
    third = sim.create_ticket(subject="Follow-up")
    sim.add_message(third["id"], body_text="The invoice VAT number was fixed, thanks")

    assert await search(sim, query="vat") == [1, 2, 3]
    assert await search(sim, query="VAT invoice") == [1, 3]
    assert await search(sim, query='"wrong VAT"') == [1]
    assert await search(sim, query="vat -invoice") == [2]
    assert await search(sim, query="billing or follow") == [2, 3]
    assert await search(sim, q="customer") == [2]
    # "If both query and q are sent, query wins."
    assert await search(sim, query="fixed", q="customer") == [3]
    # "combined with all other filters with AND"
    sim.change_ticket(1, status="closed")
    assert await search(sim, query="vat", status="open") == [2, 3]
