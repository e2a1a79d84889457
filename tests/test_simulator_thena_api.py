"""The Thena simulator's `/v1` API over real HTTP on loopback: envelope, both auth schemes,
per-team statuses, id-beats-name, bulk update and create, dedup keys, rate limit, listing,
error formats, and the `/_sim` control routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from simulator.thena import ThenaSimulator, ThenaSimulatorConfig

Call = Callable[..., Awaitable[tuple[int, Any, dict[str, str]]]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def start_sim() -> AsyncIterator[Callable[..., Awaitable[ThenaSimulator]]]:
    started: list[ThenaSimulator] = []

    async def start(**config: Any) -> ThenaSimulator:
        settings: dict[str, Any] = {"seed": 3, "rate_limit_per_minute": None, **config}
        sim = ThenaSimulator(ThenaSimulatorConfig(**settings))
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(start_sim: Callable[..., Awaitable[ThenaSimulator]]) -> ThenaSimulator:
    return await start_sim()


def caller(sim: ThenaSimulator, session: aiohttp.ClientSession) -> Call:
    async def call(
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Any, dict[str, str]]:
        h = {"x-api-key": sim.api_key} if auth and headers is None else dict(headers or {})
        async with session.request(method, sim.url + path, json=body, headers=h) as r:
            return r.status, await r.json(content_type=None), dict(r.headers)

    return call


@pytest.fixture
def call(sim: ThenaSimulator, session: aiohttp.ClientSession) -> Call:
    return caller(sim, session)


# --- envelope and tickets --------------------------------------------------------------------


async def test_create_answers_the_success_envelope(sim: ThenaSimulator, call: Call) -> None:
    status, body, _ = await call(
        "POST",
        "/v1/tickets",
        {"title": "Printer", "teamId": sim.team_id, "requestorEmail": "m@x.io"},
    )
    assert status == 201
    assert set(body) == {"status", "message", "timestamp", "data"}
    assert (body["status"], body["message"]) == (True, "Success")
    ticket = body["data"]
    # Update/create pages' ticket: ids `id`, `ticketIdentifier`, `ticketId`; `title`,
    # `description`, `source`; `status`/`statusId`, `priority`/`priorityId`, `storyPoints`;
    # `accountId`, `account`; `teamId`/`teamName`/`teamIdentifier`, `subTeam*`; `isPrivate`,
    # `typeId`/`type`; `assignedAgent`/`assignedAgentId`/`assignedAgentEmail`/
    # `assignedAgentAvatar`; `requestorEmail`, `customerContact*`, `submitterEmail`;
    # `customFieldValues`; `deletedAt`, `archivedAt`, `createdAt`, `updatedAt`; `formId`,
    # `aiGenerated*`, `sentiment`/`sentimentId`.
    documented = {
        *("id", "ticketIdentifier", "ticketId", "title", "description", "source"),
        *("status", "statusId", "priority", "priorityId", "storyPoints", "accountId", "account"),
        *("teamId", "teamName", "teamIdentifier", "subTeamId", "subTeamName", "isPrivate"),
        *("typeId", "type", "assignedAgent", "assignedAgentId", "assignedAgentEmail"),
        *("assignedAgentAvatar", "requestorEmail", "customerContactEmail", "submitterEmail"),
        *("customFieldValues", "deletedAt", "archivedAt", "createdAt", "updatedAt", "formId"),
        *("aiGeneratedTitle", "aiGeneratedSummary", "sentiment", "sentimentId"),
    }
    assert documented <= set(ticket), documented - set(ticket)
    assert ticket["customerContactEmail"] == "m@x.io"
    assert ticket["ticketIdentifier"] == "SUP-1"
    assert (ticket["ticketId"], ticket["status"], ticket["priority"]) == (1, "Open", "Medium")
    assert ticket["statusId"] == sim.status_id("Open")
    assert ticket["requestorEmail"] == "m@x.io"
    status, got, _ = await call("GET", f"/v1/tickets/{ticket['id']}")
    assert (status, got["data"]) == (200, ticket)


async def test_create_requires_title_and_a_team_of_the_org(sim: ThenaSimulator, call: Call) -> None:
    for body, field in (
        ({"teamId": sim.team_id}, "title"),
        ({"title": "x"}, "teamId"),
        ({"title": "x", "teamId": sim.foreign_team_id}, "teamId"),
        ({"title": "x", "teamId": sim.team_id, "requestorEmail": "nope"}, "requestorEmail"),
        ({"title": "x", "teamId": sim.team_id, "colour": "red"}, "colour"),
    ):
        status, err, _ = await call("POST", "/v1/tickets", body)
        assert status == 400
        assert err["message"].startswith(f"{field}: ")
        assert (err["statusCode"], err["error"]) == (400, "Bad Request")
    assert sim.tickets() == []


async def test_statuses_and_priorities_are_per_team(sim: ThenaSimulator) -> None:
    support, engineering = sim.statuses(), sim.statuses(sim.other_team_id)
    assert [s["name"] for s in support] == ["Open", "In progress", "On hold", "Resolved", "Closed"]
    assert [s["isDefault"] for s in support] == [True, False, False, False, False]
    assert {s["teamId"] for s in support} == {sim.team_id}
    assert not {s["id"] for s in support} & {s["id"] for s in engineering}
    assert [p["name"] for p in sim.priorities()] == ["Low", "Medium", "High", "Urgent"]
    assert [p["isDefault"] for p in sim.priorities()] == [False, True, False, False]


async def test_patch_id_beats_name_and_names_ignore_case(sim: ThenaSimulator, call: Call) -> None:
    t = sim.create_ticket(title="Fire")
    both = {
        "statusId": sim.status_id("Resolved"),
        "statusName": "Closed",
        "priorityId": sim.priority_id("Low"),
        "priorityName": "nonsense is not even looked at",
    }
    status, body, _ = await call("PATCH", f"/v1/tickets/{t['id']}", both)
    assert status == 200
    assert (body["data"]["status"], body["data"]["priority"]) == ("Resolved", "Low")
    status, body, _ = await call(
        "PATCH", f"/v1/tickets/{t['id']}", {"statusName": "in PROGRESS", "priorityName": "urgent"}
    )
    assert (body["data"]["status"], body["data"]["priority"]) == ("In progress", "Urgent")
    agent = sim.agents[1]
    _, body, _ = await call(
        "PATCH",
        f"/v1/tickets/{t['id']}",
        {"assignedAgentEmail": agent["email"].upper(), "isPrivate": True},
    )
    assert body["data"]["assignedAgentId"] == agent["id"]
    assert body["data"]["assignedAgent"] == agent["name"]
    assert body["data"]["isPrivate"] is True
    _, body, _ = await call("PATCH", f"/v1/tickets/{t['id']}", {"assignedAgentId": None})
    assert body["data"]["assignedAgentId"] is None


async def test_patch_refuses_what_the_team_does_not_have(sim: ThenaSimulator, call: Call) -> None:
    t = sim.create_ticket(title="Fire")
    foreign_status = sim.status_id("Closed", sim.other_team_id)
    for body, field in (
        ({"statusName": "Archived"}, "statusName"),
        ({"statusId": foreign_status}, "statusId"),
        ({"priorityName": "Critical"}, "priorityName"),
        ({"assignedAgentId": "U-nobody"}, "assignedAgentId"),
        ({"typeId": "ty-none"}, "typeId"),
        ({"isPrivate": "yes"}, "isPrivate"),
        ({"title": ""}, "title"),
        ({"teamId": sim.other_team_id}, "teamId"),
        ({}, "body"),
    ):
        status, err, _ = await call("PATCH", f"/v1/tickets/{t['id']}", body)
        assert (status, err["message"].split(":")[0]) == (400, field), body
    assert sim.ticket(t["id"])["status"] == "Open"


# --- auth ------------------------------------------------------------------------------------


async def test_both_auth_schemes(sim: ThenaSimulator, call: Call) -> None:
    t = sim.create_ticket(title="Auth")
    path = f"/v1/tickets/{t['id']}"
    bearer = {"Authorization": f"Bearer {sim.bearer_token}", "x-org-id": sim.org_id}
    assert (await call("GET", path, headers=bearer))[0] == 200
    assert (await call("GET", path, headers={"x-api-key": sim.api_key}))[0] == 200
    key_and_org = {"x-api-key": sim.api_key, "x-org-id": sim.org_id}
    assert (await call("GET", path, headers=key_and_org))[0] == 200
    failures = [
        ({}, 401, "missing credentials"),
        ({"x-api-key": "thena_sim_wrong"}, 401, "Invalid API key"),
        ({"x-api-key": sim.api_key, "x-org-id": sim.other_org_id}, 401, "x-org-id"),
        ({"Authorization": "Bearer nope", "x-org-id": sim.org_id}, 401, "Invalid or expired"),
        ({"Authorization": f"Token {sim.bearer_token}"}, 401, "malformed Authorization"),
        ({"Authorization": f"Bearer {sim.bearer_token}"}, 401, "missing x-org-id"),
        (
            {"Authorization": f"Bearer {sim.bearer_token}", "x-org-id": sim.other_org_id},
            403,
            "not a member",
        ),
    ]
    for headers, status, text in failures:
        got, err, _ = await call("GET", path, headers=headers)
        assert got == status, headers
        assert text in err["message"]
    # Another organisation's credentials do not see the ticket at all.
    other = {"x-api-key": sim.other_org_api_key}
    assert (await call("GET", path, headers=other))[0] == 404


async def test_missing_org_id_can_answer_400(sim: ThenaSimulator, call: Call) -> None:
    sim.settings.missing_org_status = 400
    status, err, _ = await call(
        "GET", "/v1/tickets", headers={"Authorization": f"Bearer {sim.bearer_token}"}
    )
    assert status == 400
    assert "x-org-id" in err["message"]


async def test_the_api_can_accept_only_one_scheme(sim: ThenaSimulator, call: Call) -> None:
    bearer = {"Authorization": f"Bearer {sim.bearer_token}", "x-org-id": sim.org_id}
    key = {"x-api-key": sim.api_key}
    sim.settings.auth_schemes = "bearer"
    assert (await call("GET", "/v1/tickets", headers=bearer))[0] == 200
    status, err, _ = await call("GET", "/v1/tickets", headers=key)
    assert (status, err["message"]) == (
        401,
        "missing Authorization: Bearer <token> (with x-org-id)",
    )
    sim.settings.auth_schemes = "api-key"
    assert (await call("GET", "/v1/tickets", headers=key))[0] == 200
    status, err, _ = await call("GET", "/v1/tickets", headers=bearer)
    assert (status, err["message"]) == (401, "missing x-api-key header")


# --- bulk update -----------------------------------------------------------------------------


async def test_bulk_update_skips_unknown_foreign_and_other_team_tickets(
    sim: ThenaSimulator, call: Call, session: aiohttp.ClientSession
) -> None:
    mine = sim.create_ticket(title="Support ticket")
    eng = sim.create_ticket(title="Engineering ticket", teamId=sim.other_team_id)
    other = caller(sim, session)
    status, made, _ = await other(
        "POST",
        "/v1/tickets",
        {"title": "Globex", "teamId": sim.foreign_team_id},
        headers={"x-api-key": sim.other_org_api_key},
    )
    assert status == 201
    foreign = made["data"]["id"]
    agent = sim.agents[0]["id"]
    body = {
        "ticketIds": [mine["id"], "CNOPE", eng["id"], foreign, mine["id"]],
        "statusId": sim.status_id("Resolved"),
        "assignedAgentId": agent,
    }
    status, answer, _ = await call("PATCH", "/v1/tickets/bulk", body)
    assert status == 200
    assert answer["data"]["updated"] == [{"id": mine["id"], "title": "Support ticket"}]
    assert answer["data"]["skipped"] == [
        {"id": "CNOPE", "reason": "ticket not found"},
        {"id": eng["id"], "reason": "statusId is not a status of team ENG"},
        {"id": foreign, "reason": "ticket not found"},
    ]
    assert sim.ticket(mine["id"])["status"] == "Resolved"
    assert sim.ticket(mine["id"])["assignedAgentId"] == agent
    assert sim.ticket(eng["id"])["assignedAgentId"] is None
    # Team-independent fields alone apply to tickets of every team.
    status, answer, _ = await call(
        "PATCH", "/v1/tickets/bulk", {"ticketIds": [mine["id"], eng["id"]], "isPrivate": True}
    )
    assert [u["id"] for u in answer["data"]["updated"]] == [mine["id"], eng["id"]]
    assert answer["data"]["skipped"] == []


async def test_bulk_update_refuses_bad_requests_before_changing_anything(
    sim: ThenaSimulator, call: Call
) -> None:
    t = sim.create_ticket(title="x")
    for body, field in (
        ({"ticketIds": [t["id"]]}, "body"),
        ({"ticketIds": []}, "ticketIds"),
        ({"ticketIds": t["id"], "isPrivate": True}, "ticketIds"),
        ({"ticketIds": [t["id"]], "statusName": "Closed"}, "statusName"),
        ({"ticketIds": [t["id"]], "statusId": "nope"}, "statusId"),
        (
            {"ticketIds": [t["id"]], "assignedAgentId": "U-nobody", "isPrivate": True},
            "assignedAgentId",
        ),
    ):
        status, err, _ = await call("PATCH", "/v1/tickets/bulk", body)
        assert (status, err["message"].split(":")[0]) == (400, field), body
    assert sim.ticket(t["id"])["isPrivate"] is False


# --- bulk create and dedup -------------------------------------------------------------------


def new(title: str, sim: ThenaSimulator, **extra: Any) -> dict[str, Any]:
    return {"title": title, "teamId": sim.team_id, **extra}


async def test_bulk_create_takes_every_field_the_bulk_page_lists(
    sim: ThenaSimulator, call: Call
) -> None:
    # Bulk page body: "tickets": [{"assignedAgentId", "assignedAgentEmail", "description",
    # "dueDate", "submitterEmail", "statusId", "statusName", "priorityId", "priorityName",
    # "metadata", "typeId", "isPrivate", "source", "aiGeneratedTitle", "aiGeneratedSummary",
    # "attachmentUrls", "customFieldValues", "title", "requestorEmail", "accountId",
    # "performRouting", "teamId", "formId"}], "options": {"stopOnError": true}
    agent = sim.agents[0]
    ticket = new(
        "Every field",
        sim,
        assignedAgentId=agent["id"],
        assignedAgentEmail="grace@acme.test",
        description="d",
        dueDate="2023-11-07T05:31:56Z",
        submitterEmail="s@x.io",
        statusId=sim.status_id("On hold"),
        statusName="Closed",
        priorityId=sim.priority_id("High"),
        priorityName="Low",
        metadata={"k": "v"},
        typeId=sim.types[0]["id"],
        isPrivate=True,
        source="api",
        aiGeneratedTitle="t",
        aiGeneratedSummary="s",
        attachmentUrls=["https://x.io/a.png"],
        customFieldValues=[{}],
        requestorEmail="r@x.io",
        accountId="A1",
        performRouting=True,
        formId="F1",
    )
    status, body, _ = await call(
        "POST", "/v1/tickets/bulk", {"tickets": [ticket], "options": {"stopOnError": True}}
    )
    assert status == 201, body
    # "data": [{"id": "<string>", "title": "<string>"}]
    assert body["data"] == [{"id": sim.tickets()[0]["id"], "title": "Every field"}]
    made = sim.tickets()[0]
    # "status id if provided is used over status name"; the same for priority.
    assert (made["status"], made["priority"], made["assignedAgentId"]) == (
        "On hold",
        "High",
        agent["id"],
    )


async def test_bulk_create_refuses_fields_the_bulk_page_does_not_list(
    sim: ThenaSimulator, call: Call
) -> None:
    # The bulk page's ticket fields (above) hold no deDuplicationKey (the single create's
    # fields do), nor sentimentId or the comment fields: a bulk create cannot be deduplicated.
    for extra in ({"deDuplicationKey": "k-1"}, {"sentimentId": "S"}, {"commentContent": "hi"}):
        body = {"tickets": [new("x", sim, **extra)]}
        status, err, _ = await call("POST", "/v1/tickets/bulk", body)
        (name,) = extra
        assert (status, err["message"].split(": ")[:2]) == (400, ["tickets[0]", name]), extra
    body = {
        "tickets": [new("keyed", sim, deDuplicationKey="k-1"), new("plain", sim)],
        "options": {"stopOnError": False},
    }
    status, answer, _ = await call("POST", "/v1/tickets/bulk", body)
    assert status == 201
    assert [d["title"] for d in answer["data"]] == ["plain"]
    assert [t["title"] for t in sim.tickets()] == ["plain"]


async def test_bulk_create_stop_on_error_true_stops_at_the_first_bad_ticket(
    sim: ThenaSimulator, call: Call
) -> None:
    # Bulk page: "options": {"stopOnError": true}. What it does is not written; the simulator
    # stops at the first bad ticket, keeps the ones before it and tries none after it.
    tickets = [new("one", sim), new("two", sim, statusName="Nope"), new("three", sim)]
    status, err, _ = await call(
        "POST", "/v1/tickets/bulk", {"tickets": tickets, "options": {"stopOnError": True}}
    )
    assert status == 400
    assert err["message"].startswith("tickets[1]: statusName: 'Nope' is not a status")
    assert [t["title"] for t in sim.tickets()] == ["one"]
    # The page does not say whether the tickets before the bad one stay: with
    # bulk_create_atomic, none does.
    sim.settings.bulk_create_atomic = True
    status, err, _ = await call(
        "POST", "/v1/tickets/bulk", {"tickets": [new("four", sim), *tickets[1:]]}
    )
    assert (status, err["message"].split(":")[0]) == (400, "tickets[1]")
    assert [t["title"] for t in sim.tickets()] == ["one"]
    status, _, _ = await call("POST", "/v1/tickets/bulk", {"tickets": [new("five", sim)]})
    assert status == 201
    assert [(t["title"], t["ticketIdentifier"]) for t in sim.tickets()] == [
        ("one", "SUP-1"),
        ("five", "SUP-2"),
    ]
    sim.settings.bulk_create_atomic = False
    # stopOnError is true when not given.
    status, err, _ = await call("POST", "/v1/tickets/bulk", {"tickets": [{"title": "no team"}]})
    assert (status, err["message"]) == (400, "tickets[0]: teamId: is required")


async def test_bulk_create_stop_on_error_false_leaves_the_bad_ones_out(
    sim: ThenaSimulator, call: Call
) -> None:
    # Bulk page answer: {"status": true, "message": "Success", "timestamp": ..., "data":
    # [{"id", "title"}]}; with stopOnError false the tickets Thena refused are not in `data`.
    tickets = [new("one", sim), {"title": ""}, new("three", sim, priorityName="high")]
    status, body, _ = await call(
        "POST", "/v1/tickets/bulk", {"tickets": tickets, "options": {"stopOnError": False}}
    )
    assert status == 201
    assert [d["title"] for d in body["data"]] == ["one", "three"]
    assert [(t["title"], t["priority"]) for t in sim.tickets()] == [
        ("one", "Medium"),
        ("three", "High"),
    ]
    assert {d["id"] for d in body["data"]} == {t["id"] for t in sim.tickets()}


async def test_bulk_create_checks_its_shape(sim: ThenaSimulator, call: Call) -> None:
    for body, field in (
        ({}, "tickets"),
        ({"tickets": []}, "tickets"),
        ({"tickets": [new("x", sim)], "options": {"stopOnError": "no"}}, "options.stopOnError"),
        ({"tickets": [new("x", sim)], "options": {"atomic": True}}, "atomic"),
        ({"tickets": [new("x", sim)], "extra": 1}, "extra"),
        ({"tickets": [new("x", sim)] * 101}, "tickets"),
    ):
        status, err, _ = await call("POST", "/v1/tickets/bulk", body)
        assert (status, err["message"].split(":")[0]) == (400, field), body


async def test_dedup_key_returns_the_ticket_it_created(sim: ThenaSimulator, call: Call) -> None:
    # The create page (POST /v1/tickets) lists `deDuplicationKey`; what a repeat answers is not
    # written: the simulator answers 201 with the ticket the key created, unchanged.
    status, first, _ = await call("POST", "/v1/tickets", new("once", sim, deDuplicationKey="k-1"))
    assert status == 201
    status, again, _ = await call(
        "POST", "/v1/tickets", new("different title", sim, deDuplicationKey="k-1")
    )
    assert (status, again["data"]) == (201, first["data"])
    assert len(sim.tickets()) == 1
    sim.settings.dedup_conflict = True
    status, err, _ = await call("POST", "/v1/tickets", new("x", sim, deDuplicationKey="k-1"))
    assert (status, err["message"]) == (
        409,
        f"deDuplicationKey: ticket {first['data']['id']} was already created with this key",
    )
    assert len(sim.tickets()) == 1
    status, err, _ = await call("POST", "/v1/tickets", new("x", sim, deDuplicationKey=""))
    assert (status, err["message"].split(":")[0]) == (400, "deDuplicationKey")


# --- rate limit ------------------------------------------------------------------------------


async def test_rate_limit_headers_and_429(
    start_sim: Callable[..., Awaitable[ThenaSimulator]], session: aiohttp.ClientSession
) -> None:
    sim = await start_sim(rate_limit_per_minute=2)
    call = caller(sim, session)
    now = int(sim.clock.now().timestamp())
    status, _, headers = await call("GET", "/v1/tickets")
    assert status == 200
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"]) == ("2", "1")
    assert now + 59 <= int(headers["X-RateLimit-Reset"]) <= now + 61
    # Introduction: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, and
    # `X-RateLimit-IP`, `X-RateLimit-UserID`, `X-RateLimit-OrgID`, `X-RateLimit-Path`.
    assert headers["X-RateLimit-OrgID"] == sim.org_id
    assert headers["X-RateLimit-UserID"] == sim.agents[0]["id"]
    assert headers["X-RateLimit-IP"] == "127.0.0.1"
    assert headers["X-RateLimit-Path"] == "/v1/tickets"
    await call("GET", "/v1/tickets")
    status, err, headers = await call("GET", "/v1/tickets")
    assert status == 429
    assert "Too Many Requests" in err["message"]
    assert headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in headers
    # Limits are per organisation.
    other = await call("GET", "/v1/tickets", headers={"x-api-key": sim.other_org_api_key})
    assert other[0] == 200
    sim.settings.retry_after_header = True
    status, _, headers = await call("GET", "/v1/tickets")
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 60
    sim.set_rate_limit(None)
    status, _, headers = await call("GET", "/v1/tickets")
    assert status == 200
    assert "X-RateLimit-Limit" not in headers


# --- listing ---------------------------------------------------------------------------------


async def test_list_pages_from_zero_and_filters(sim: ThenaSimulator, call: Call) -> None:
    made = [sim.create_ticket(title=f"t{i}") for i in range(3)]
    eng = sim.create_ticket(title="eng", teamId=sim.other_team_id)
    _, body, _ = await call("GET", "/v1/tickets?limit=2")
    assert [t["title"] for t in body["data"]] == ["t0", "t1"]
    _, body, _ = await call("GET", "/v1/tickets?page=1&limit=2")
    assert [t["title"] for t in body["data"]] == ["t2", "eng"]
    _, body, _ = await call("GET", "/v1/tickets?page=2&limit=2")
    assert body["data"] == []
    _, body, _ = await call("GET", f"/v1/tickets?teamId={sim.other_team_id}")
    assert [t["id"] for t in body["data"]] == [eng["id"]]
    _, body, _ = await call("GET", "/v1/tickets?dateRange=1d")
    assert len(body["data"]) == len(made) + 1
    sim.settings.list_shape = "object"
    _, body, _ = await call("GET", "/v1/tickets?limit=3")
    assert (body["data"]["total"], body["data"]["page"], body["data"]["limit"]) == (4, 0, 3)
    assert len(body["data"]["tickets"]) == 3
    for query, field in (
        ("dateRange=5d", "dateRange"),
        ("page=-1", "page"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        (f"teamId={sim.foreign_team_id}", "teamId"),
    ):
        status, err, _ = await call("GET", f"/v1/tickets?{query}")
        assert (status, err["message"].split(":")[0]) == (400, field), query


# --- errors and routing ----------------------------------------------------------------------


async def test_error_formats_and_routing(sim: ThenaSimulator, call: Call) -> None:
    status, err, _ = await call("GET", "/v1/tickets/CNOPE")
    assert (status, err) == (
        404,
        {
            "statusCode": 404,
            "message": "ticket CNOPE not found in this organisation",
            "error": "Not Found",
        },
    )
    status, err, _ = await call("GET", "/v1/nothing")
    assert (status, err["message"]) == (404, "Cannot GET /v1/nothing")
    status, err, headers = await call("DELETE", "/v1/tickets")
    assert status == 405
    assert "GET" in headers["Allow"]
    sim.settings.error_format = "envelope"
    status, err, _ = await call("GET", "/v1/tickets/CNOPE")
    assert status == 404
    assert set(err) == {"status", "message", "timestamp", "code"}
    assert (err["status"], err["code"]) == (False, "not_found")
    status, err, _ = await call("PATCH", "/v1/tickets/CNOPE", None)
    assert (status, err["message"]) == (400, "body: a JSON body is required")


async def test_scripted_faults(sim: ThenaSimulator, call: Call) -> None:
    sim.faults.fail_next("GET", "/tickets", 503, times=2)
    sim.faults.fail_next("PATCH", "/v1/tickets/*", 429, retry_after=7, reset_after=30)
    assert (await call("GET", "/v1/tickets"))[0] == 503
    assert (await call("GET", "/v1/tickets"))[0] == 503
    assert (await call("GET", "/v1/tickets"))[0] == 200
    status, _, headers = await call("PATCH", "/v1/tickets/x", {"title": "y"})
    assert status == 429
    assert headers["Retry-After"] == "7"
    assert int(headers["X-RateLimit-Reset"]) >= int(sim.clock.now().timestamp()) + 29
    # `after`: the first N matching requests are served, the next one fails.
    sim.faults.apply_json(
        {"fail_next": {"method": "GET", "path": "/tickets", "status": 502, "after": 1}}
    )
    assert [(await call("GET", "/v1/tickets"))[0] for _ in range(3)] == [200, 502, 200]


async def test_journal_masks_credentials(sim: ThenaSimulator, call: Call) -> None:
    await call("GET", "/v1/tickets")
    [entry] = sim.journal
    assert (entry.method, entry.path, entry.status, entry.org_id) == (
        "GET",
        "/v1/tickets",
        200,
        sim.org_id,
    )
    assert sim.api_key not in str(entry.to_json())
    assert entry.headers["x-api-key"].endswith("…")


# --- control routes --------------------------------------------------------------------------


async def test_control_routes(sim: ThenaSimulator, session: aiohttp.ClientSession) -> None:
    call = caller(sim, session)
    status, info, _ = await call("GET", "/_sim", auth=False)
    assert status == 200
    data = info["data"]
    assert (data["org_id"], data["api_key"]) == (sim.org_id, sim.api_key)
    assert [t["identifier"] for t in data["teams"]] == ["SUP", "ENG"]
    assert "POST /_sim/tickets/{id}/change" in data["routes"]
    status, made, _ = await call("POST", "/_sim/tickets", {"title": "agent made"}, auth=False)
    assert status == 201
    tid = made["data"]["id"]
    status, changed, _ = await call(
        "POST",
        f"/_sim/tickets/{tid}/change",
        {"statusName": "On hold", "tags": ["vip"]},
        auth=False,
    )
    assert (changed["data"]["status"], changed["data"]["tags"]) == ("On hold", ["vip"])
    status, seeded, _ = await call("POST", "/_sim/seed", {"tickets": 3, "emit": False}, auth=False)
    assert (status, seeded["data"]["created"]) == (201, 3)
    status, _, _ = await call("POST", "/_sim/settings", {"error_format": "envelope"}, auth=False)
    assert sim.settings.error_format == "envelope"
    status, err, _ = await call("POST", "/_sim/settings", {"error_format": "xml"}, auth=False)
    assert (status, err["message"]) == (400, "error_format: must be one of nest, envelope")
    status, _, _ = await call(
        "POST",
        "/_sim/faults",
        {
            "webhooks": {"bad_signature_next": 2},
            "fail_next": {"method": "GET", "path": "*", "status": 500},
        },
        auth=False,
    )
    assert status == 200
    assert sim.faults.webhooks.bad_signature_next == 2
    status, ep, _ = await call(
        "POST",
        "/_sim/endpoints",
        {"url": "http://127.0.0.1:9/hook", "secret": "tok", "events": ["ticket:*"], "nested": True},
        auth=False,
    )
    assert status == 201
    assert ep["data"]["nested"] is True and "secret" not in ep["data"]
    status, _, _ = await call(
        "POST",
        "/_sim/endpoints",
        {"url": "http://x/h", "secret": "t", "events": ["nope"]},
        auth=False,
    )
    assert status == 400
    _, journal, _ = await call("GET", "/_sim/journal", auth=False)
    assert journal["data"] == []
    status, _, _ = await call("POST", "/_sim/reset", auth=False)
    assert status == 200
    assert sim.tickets() == []
    assert vars(sim.settings)["error_format"] == "nest"
    assert len(sim.emitter.endpoints) == 1


async def test_reset_restores_the_same_seeded_ids(sim: ThenaSimulator) -> None:
    first = sim.create_ticket(title="a")
    keys = (sim.api_key, sim.org_id, sim.team_id, sim.status_id("Closed"))
    sim.reset()
    again = sim.create_ticket(title="a")
    assert again["id"] == first["id"]
    assert (sim.api_key, sim.org_id, sim.team_id, sim.status_id("Closed")) == keys
    other = ThenaSimulator(ThenaSimulatorConfig(seed=3))
    assert (other.api_key, other.org_id) == (sim.api_key, sim.org_id)
