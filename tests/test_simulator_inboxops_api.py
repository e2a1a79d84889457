"""The InboxOps simulator's API over real HTTP: routing, auth, errors, limits, tickets, bulk, controls."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from simulator.common.clock import ManualClock
from simulator.inboxops import (
    SIM_KEY,
    InboxOpsSimulator,
    SimulatorConfig,
    create_app,
    run_simulator,
)
from tests.conftest import wait_for
from ticketwire.vendors.inboxops.models import PATCH_FIELDS, Ticket

DEFAULT: Any = object()
PROBLEMS = "https://docs.inboxops.app/api/problems/"


@dataclass
class Reply:
    """One answer: status, parsed body, headers."""

    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def data(self) -> Any:
        return self.body["data"]


class Api:
    """A thin client for the simulator: the default key unless `key=` says otherwise."""

    def __init__(self, sim: InboxOpsSimulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = DEFAULT,
        body: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        h = dict(headers or {})
        key = self.sim.api_key if key is DEFAULT else key
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        base = self.sim.url if path.startswith("/_sim") else self.sim.url + "/api/v1"
        kwargs: dict[str, Any] = {"params": params, "headers": h}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, base + path, **kwargs) as r:
            text = await r.text()
            parsed: Any = json.loads(text) if "json" in r.content_type and text else text
            return Reply(r.status, parsed, r.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, body=body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("PATCH", path, body=body, **kw)


def assert_problem(r: Reply, status: int, code: str, field: str | None = None) -> None:
    """`r` is an RFC 7807 problem with this status and code; the detail names `field`."""
    assert r.status == status, r.body
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body = r.body
    assert set(body) == {"type", "title", "status", "detail", "code", "instance"}
    assert body["type"] == PROBLEMS + code
    assert body["code"] == code
    assert body["status"] == status
    assert body["title"]
    assert body["instance"] == PROBLEMS + "instances/" + r.headers["X-Request-Id"]
    if field is not None:
        assert body["detail"].startswith(field), body["detail"]


@asynccontextmanager
async def running(
    config: SimulatorConfig | None = None, clock: ManualClock | None = None
) -> AsyncIterator[Api]:
    """A started simulator (ManualClock, no rate limit unless configured) and a client for it."""
    sim = InboxOpsSimulator(
        config or SimulatorConfig(seed=7, rate_limit_per_minute=None), clock=clock or ManualClock()
    )
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(sim, session)
    finally:
        await sim.stop()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as client:
        yield client


def status_id(api: Api, name: str) -> str:
    return str(next(s["id"] for s in api.sim.statuses if s["name"] == name))


def field_def(api: Api, key: str) -> dict[str, Any]:
    return next(f for f in api.sim.custom_fields if f["field_key"] == key)


# --------------------------------------------------------------------------- routing


async def test_unknown_path_is_404_and_wrong_method_is_405(api: Api) -> None:
    assert_problem(await api.get("/nope"), 404, "not_found")
    r = await api.call("DELETE", "/tickets")
    assert_problem(r, 405, "method_not_allowed")
    assert set(r.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert_problem(await api.call("PUT", "/tickets/1"), 405, "method_not_allowed")


async def test_openapi_and_docs_need_no_key_and_describe_every_route(api: Api) -> None:
    r = await api.get("/openapi.json", key=None)
    assert r.status == 200
    doc = r.body
    assert doc["openapi"].startswith("3.")
    assert doc["servers"] == [{"url": "/api/v1"}]
    served: set[tuple[str, str]] = set()
    app = create_app(api.sim)
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/v1/") and route.method != "HEAD":
            served.add((path.removeprefix("/api/v1"), route.method.lower()))
    served -= {("/openapi.json", "get"), ("/docs", "get")}
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    assert documented == served
    assert "Ticket" in doc["components"]["schemas"]
    docs = await api.get("/docs", key=None)
    assert docs.status == 200
    assert docs.headers["Content-Type"].startswith("text/html")
    assert "/api/v1/openapi.json" in docs.body


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "header",
    [None, "ixk_sim_rw_x", "Basic dXNlcjpwYXNz", "Bearer notakey", "Bearer ixk_unknown", "Bearer "],
)
async def test_missing_malformed_or_unknown_key_is_401(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    assert_problem(await api.get("/tickets", key=None, headers=headers), 401, "unauthorized")


async def test_revoked_key_is_401(api: Api) -> None:
    assert_problem(await api.get("/tickets", key=api.sim.revoked_key), 401, "unauthorized")


async def test_workspace_without_entitlement_is_403_forbidden(api: Api) -> None:
    assert_problem(await api.get("/tickets", key=api.sim.no_entitlement_key), 403, "forbidden")


async def test_read_only_key_reads_but_may_not_write(api: Api) -> None:
    key = api.sim.read_only_key
    assert (await api.get("/tickets", key=key)).status == 200
    assert (await api.call("HEAD", "/tickets", key=key)).status == 200
    assert_problem(await api.post("/tickets", {"subject": "x"}, key=key), 403, "insufficient_scope")
    t = api.sim.create_ticket(subject="read me")
    r = await api.patch(f"/tickets/{t['id']}", {"subject": "y"}, key=key)
    assert_problem(r, 403, "insufficient_scope")
    assert_problem(await api.post("/tags", {"name": "n"}, key=key), 403, "insufficient_scope")


async def test_check_order_is_unauthorized_then_forbidden_then_scope(api: Api) -> None:
    # A read-only key of an unentitled workspace writing: forbidden wins over insufficient_scope.
    key = api.sim.store.keys.named["no_entitlement_read_only_key"]
    assert_problem(await api.post("/tickets", {"subject": "x"}, key=key), 403, "forbidden")
    # A revoked key on an unknown route: routing answers first, then 401 before anything else.
    assert_problem(await api.get("/nope", key=api.sim.revoked_key), 404, "not_found")
    assert_problem(
        await api.post("/tickets", {"subject": "x"}, key=api.sim.revoked_key), 401, "unauthorized"
    )


async def test_another_workspaces_ticket_is_404(api: Api) -> None:
    t = api.sim.create_ticket(subject="mine")
    other = api.sim.other_workspace_key
    assert_problem(await api.get(f"/tickets/{t['id']}", key=other), 404, "not_found")
    assert_problem(await api.get(f"/tickets/{t['ticket_number']}", key=other), 404, "not_found")
    r = await api.patch(f"/tickets/{t['id']}", {"subject": "theirs"}, key=other)
    assert_problem(r, 404, "not_found")
    assert api.sim.ticket(t["id"])["subject"] == "mine"
    assert (await api.get("/tickets", key=other)).body["meta"]["total"] == 0


# --------------------------------------------------------------------------- errors


async def test_request_id_is_on_every_response_and_echoed_when_valid(api: Api) -> None:
    ok = await api.get("/tickets")
    assert uuid.UUID(ok.headers["X-Request-Id"])
    echoed = await api.get("/nope", headers={"X-Request-Id": "client.req-42_A"})
    assert echoed.headers["X-Request-Id"] == "client.req-42_A"
    assert echoed.body["instance"].endswith("/instances/client.req-42_A")
    for bad in ("has space", "x" * 129, "semi;colon"):
        r = await api.get("/tickets", headers={"X-Request-Id": bad})
        assert r.headers["X-Request-Id"] != bad
        assert uuid.UUID(r.headers["X-Request-Id"])
    control = await api.get("/_sim")
    assert control.headers["X-Request-Id"]
    assert api.sim.journal[-1].request_id == r.headers["X-Request-Id"]


async def test_invalid_json_body_is_400(api: Api) -> None:
    r = await api.call(
        "POST", "/tickets", raw=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 400, "bad_request", "body")
    assert_problem(await api.post("/tickets", [1, 2]), 400, "bad_request", "body")
    assert_problem(await api.call("POST", "/tickets"), 400, "bad_request", "body")


async def test_legacy_error_shape() -> None:
    cfg = SimulatorConfig(seed=7, legacy_errors=True, rate_limit_per_minute=1)
    async with running(cfg) as api:
        r = await api.post("/tickets", {"subject": ""})
        assert r.status == 400
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.body["error"] == "Bad Request"
        assert r.body["code"] == 400
        assert r.body["message"].startswith("subject")
        # As inboxops-update-ticket shows it: "details": [{"field": "email", "message":
        # "Invalid email format"}], the message without the field's name.
        assert r.body["details"] == [
            {"field": "subject", "message": r.body["message"].removeprefix("subject: ")}
        ]
        assert r.body["details"][0]["message"] == "must be a non-empty string"
        assert "X-Request-Id" in r.headers
        limited = await api.get("/tickets")
        assert limited.status == 429
        assert limited.body["error"] == "Too Many Requests"
        assert limited.body["code"] == 429
        assert limited.body["retryAfter"] == int(limited.headers["Retry-After"]) > 0
        unauth = await api.get("/tickets", key=None)
        assert set(unauth.body) == {"error", "message", "code"}
        assert unauth.body["code"] == 401
        # The switch can be flipped at run time.
        await api.post("/_sim/settings", {"legacy_errors": False})
        assert_problem(await api.get("/tickets", key=None), 401, "unauthorized")


# --------------------------------------------------------------------------- rate limit


async def test_default_limit_is_100_per_minute_per_workspace() -> None:
    async with running(SimulatorConfig(seed=7)) as api:
        for _ in range(100):
            assert (await api.get("/ticket_statuses")).status == 200
        r = await api.get("/ticket_statuses")
        assert_problem(r, 429, "rate_limit_exceeded")
        assert r.headers["Retry-After"] == "60"
        assert "X-RateLimit-Limit" not in r.headers
        # Another workspace has its own budget; docs, openapi and controls are not limited.
        assert (await api.get("/tags", key=api.sim.other_workspace_key)).status == 200
        assert (await api.get("/openapi.json", key=None)).status == 200
        assert (await api.get("/docs", key=None)).status == 200
        assert (await api.get("/_sim/journal")).status == 200


async def test_fixed_window_frees_after_the_window() -> None:
    clock = ManualClock()
    cfg = SimulatorConfig(seed=7, rate_limit_per_minute=2, rate_limit_headers=True)
    async with running(cfg, clock) as api:
        first = await api.get("/tags")
        assert first.headers["X-RateLimit-Limit"] == "2"
        assert first.headers["X-RateLimit-Remaining"] == "1"
        assert first.headers["X-RateLimit-Reset"] == "60"
        clock.advance(20)
        assert (await api.get("/tags")).headers["X-RateLimit-Remaining"] == "0"
        clock.advance(30)
        r = await api.get("/tags")
        assert_problem(r, 429, "rate_limit_exceeded")
        assert r.headers["Retry-After"] == "10"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        clock.advance(10)
        assert (await api.get("/tags")).status == 200


async def test_sliding_window_frees_one_slot_at_a_time() -> None:
    clock = ManualClock()
    cfg = SimulatorConfig(seed=7, rate_limit_per_minute=3, rate_limit_window="sliding")
    async with running(cfg, clock) as api:
        for at in (0, 30, 10):
            clock.advance(at)
            assert (await api.get("/tags")).status == 200
        clock.advance(20)  # t=60: the request of t=0 has left the window
        assert (await api.get("/tags")).status == 200
        clock.advance(2)  # t=62: the oldest in the window is t=30
        r = await api.get("/tags")
        assert_problem(r, 429, "rate_limit_exceeded")
        assert r.headers["Retry-After"] == "28"


async def test_rate_limit_can_be_changed_and_switched_off() -> None:
    async with running(SimulatorConfig(seed=7, rate_limit_per_minute=0)) as api:
        for _ in range(120):
            assert (await api.get("/tags")).status == 200
        api.sim.set_rate_limit(1)
        assert (await api.get("/tags")).status == 200
        assert (await api.get("/tags")).status == 429
        api.sim.set_rate_limit(None)
        assert (await api.get("/tags")).status == 200


# --------------------------------------------------------------------------- reference data


async def test_statuses_are_seeded_per_type_and_ordered_by_position(api: Api) -> None:
    r = await api.get("/ticket_statuses")
    rows = r.data
    assert [s["position"] for s in rows] == sorted(s["position"] for s in rows)
    assert r.body["meta"] == {"page": 1, "per_page": len(rows), "total": len(rows)}
    types = ("open", "in_progress", "waiting", "resolved", "closed")
    for t in types:
        assert sum(1 for s in rows if s["status_type"] == t and s["is_default"]) == 1
    extra = [s for s in rows if not s["is_default"]]
    assert any(s["name"] == "Waiting on customer" and s["status_type"] == "waiting" for s in extra)
    for s in rows:
        uuid.UUID(s["id"])
        assert set(s) >= {"name", "color", "reminder_enabled", "remind_transition_status_id"}


async def test_priorities_inboxes_and_custom_fields_are_seeded(api: Api) -> None:
    prios = (await api.get("/ticket_priorities")).data
    assert [p["priority"] for p in prios] == ["low", "normal", "high", "urgent"]
    assert all(p["name"] and p["color"] and uuid.UUID(p["id"]) for p in prios)
    inboxes = (await api.get("/inboxes")).data
    assert len(inboxes) >= 2
    assert all(uuid.UUID(i["id"]) for i in inboxes)
    kinds = {f["field_key"]: f["type"] for f in api.sim.custom_fields}
    assert {"select", "text", "date", "date_time", "number"} <= set(kinds.values())
    assert any(f["inbox_ids"] for f in api.sim.custom_fields)


async def test_tags_create_list_and_case_insensitive_conflict(api: Api) -> None:
    r = await api.post("/tags", {"name": "Refund", "color": "#123456"})
    assert r.status == 201
    tag = r.data
    assert set(tag) == {"id", "name", "color"}
    assert tag["name"] == "Refund"
    uuid.UUID(tag["id"])
    assert_problem(await api.post("/tags", {"name": "rEFUND"}), 409, "conflict")
    assert_problem(await api.post("/tags", {"name": ""}), 400, "bad_request", "name")
    assert_problem(
        await api.post("/tags", {"name": "x", "color": "red"}), 400, "bad_request", "color"
    )
    listed = await api.get("/tags")
    assert tag in listed.data
    assert listed.body["meta"]["total"] == len(listed.data)
    assert api.sim.create_tag("second")["name"] == "second"


# --------------------------------------------------------------------------- create


async def test_create_returns_201_with_every_ticket_field(api: Api) -> None:
    sim = api.sim
    plan = field_def(api, "plan")["options"][1]["id"]
    agent = sim.agents[0]["id"]
    body = {
        "subject": "Printer on fire",
        "inbox_id": sim.inboxes[1]["id"],
        "priority": "high",
        "assignee_id": agent,
        "reporter_email": "maya@example.com",
        "initial_internal_note": {"body_text": "call back", "body_html": "<p>call back</p>"},
        "custom_fields": {"plan": plan, "region": "eu-west"},
    }
    r = await api.post("/tickets", body)
    assert r.status == 201
    t = r.data
    Ticket.model_validate(t)
    expected = {
        "id", "ticket_number", "subject", "inbox_id", "status", "status_id", "status_name",
        "status_color", "priority", "priority_id", "priority_name", "priority_color",
        "assignee_id", "contact_id", "remind_at", "remind_transition_status_id", "created_at",
        "updated_at", "custom_fields",
    }  # fmt: skip
    assert set(t) == expected
    uuid.UUID(t["id"])
    assert t["ticket_number"] == 1
    assert (t["status"], t["status_name"]) == ("open", "Open")
    assert t["status_id"] == status_id(api, "Open")
    assert (t["priority"], t["priority_name"]) == ("high", "High")
    assert t["assignee_id"] == agent
    assert t["inbox_id"] == sim.inboxes[1]["id"]
    assert t["custom_fields"] == {"plan": plan, "region": "eu-west"}
    assert t["created_at"] == t["updated_at"]
    assert t["created_at"].endswith("Z")
    contact = (await api.get(f"/tickets/{t['id']}", params={"include": "contact"})).data["contact"]
    assert contact["email"] == "maya@example.com"
    assert contact["id"] == t["contact_id"]
    second = await api.post("/tickets", {"subject": "again"})
    assert second.data["ticket_number"] == 2
    assert second.data["inbox_id"] == sim.inboxes[0]["id"]
    assert second.data["priority"] == "normal"
    other = await api.post("/tickets", {"subject": "theirs"}, key=sim.other_workspace_key)
    assert other.data["ticket_number"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "subject"),
        ({"subject": "  "}, "subject"),
        ({"subject": "x", "status": "open"}, "status"),
        ({"subject": "x", "bogus": 1}, "bogus"),
        ({"subject": "x", "priority": "medium"}, "priority"),
        ({"subject": "x", "priority_id": str(uuid.uuid4())}, "priority_id"),
        ({"subject": "x", "inbox_id": "nope"}, "inbox_id"),
        ({"subject": "x", "inbox_id": str(uuid.uuid4())}, "inbox_id"),
        ({"subject": "x", "assignee_id": "bob"}, "assignee_id"),
        ({"subject": "x", "reporter_email": "not-an-email"}, "reporter_email"),
        ({"subject": "x", "initial_internal_note": "hi"}, "initial_internal_note"),
        ({"subject": "x", "custom_fields": {"nope": 1}}, "custom_fields.nope"),
    ],
)
async def test_create_rejects_bad_fields_naming_them(
    api: Api, body: dict[str, Any], field: str
) -> None:
    assert_problem(await api.post("/tickets", body), 400, "bad_request", field)
    assert api.sim.tickets() == []


async def test_idempotency_key_replays_or_conflicts() -> None:
    clock = ManualClock()
    cfg = SimulatorConfig(seed=7, rate_limit_per_minute=None, idempotency_ttl=3600)
    async with running(cfg, clock) as api:
        key = {"Idempotency-Key": "create-1"}
        body = {"subject": "Once", "priority": "low", "custom_fields": {"region": "eu"}}
        first = await api.post("/tickets", body, headers=key)
        assert first.status == 201
        clock.advance(10)
        # The same body with keys in another order is the same canonical JSON.
        same = {"custom_fields": {"region": "eu"}, "priority": "low", "subject": "Once"}
        replay = await api.post("/tickets", same, headers=key)
        assert replay.status == 201
        assert replay.data == first.data
        assert len(api.sim.tickets()) == 1
        conflict = await api.post("/tickets", {**body, "subject": "Twice"}, headers=key)
        assert_problem(conflict, 409, "idempotency_conflict")
        assert len(api.sim.tickets()) == 1
        # Keys are per workspace.
        other = await api.post("/tickets", body, headers=key, key=api.sim.other_workspace_key)
        assert other.status == 201
        clock.advance(3600)
        fresh = await api.post("/tickets", {**body, "subject": "After TTL"}, headers=key)
        assert fresh.status == 201
        assert fresh.data["id"] != first.data["id"]
        assert len(api.sim.tickets()) == 2


# --------------------------------------------------------------------------- get


async def test_get_by_uuid_or_number_with_includes(api: Api) -> None:
    sim = api.sim
    vip = sim.tags[0]
    t = sim.create_ticket(
        subject="Include me",
        reporter_email="liam.smith@globex.test",
        assignee_id=sim.agents[1]["id"],
        priority="urgent",
        tag_ids=[vip["id"]],
    )
    by_id = await api.get(f"/tickets/{t['id']}")
    by_number = await api.get(f"/tickets/{t['ticket_number']}")
    assert by_id.data == by_number.data == t
    assert "tags" not in by_id.data
    full = (
        await api.get(
            f"/tickets/{t['id'].upper()}",
            params={"include": "tags,contact,company,inbox,sla,participants"},
        )
    ).data
    assert full["tags"] == [vip]
    assert full["contact"]["email"] == "liam.smith@globex.test"
    assert full["contact"]["name"] == "Liam Smith"
    assert full["company"]["domain"] == "globex.test"
    assert full["company"]["id"] == full["contact"]["company_id"]
    assert full["inbox"] == sim.inboxes[0]
    assert full["sla"]["breached"] is False
    assert full["sla"]["resolution_due_at"] > full["created_at"]
    assert [p["type"] for p in full["participants"]] == ["contact", "agent"]
    assert full["participants"][1]["id"] == sim.agents[1]["id"]
    only = (await api.get(f"/tickets/{t['id']}", params={"include": "inbox"})).data
    assert set(only) - set(t) == {"inbox"}
    assert_problem(
        await api.get(f"/tickets/{t['id']}", params={"include": "messages"}),
        400,
        "bad_request",
        "include",
    )
    assert_problem(await api.get(f"/tickets/{uuid.uuid4()}"), 404, "not_found")
    assert_problem(await api.get("/tickets/999"), 404, "not_found")
    assert_problem(await api.get("/tickets/not-an-id"), 404, "not_found")


# --------------------------------------------------------------------------- patch


async def test_status_id_wins_and_sets_name_and_color(api: Api) -> None:
    t = api.sim.create_ticket(subject="s")
    waiting_on = status_id(api, "Waiting on customer")
    r = await api.patch(f"/tickets/{t['id']}", {"status": "closed", "status_id": waiting_on})
    assert r.status == 200
    d = r.data
    assert (d["status"], d["status_id"], d["status_name"]) == (
        "waiting",
        waiting_on,
        "Waiting on customer",
    )
    assert d["status_color"] == "#F97316"
    # Asking for the type it already has keeps the custom status.
    same = (await api.patch(f"/tickets/{t['id']}", {"status": "waiting"})).data
    assert same["status_id"] == waiting_on
    assert same["updated_at"] == d["updated_at"]
    # Another type picks that type's default custom status.
    d = (await api.patch(f"/tickets/{t['id']}", {"status": "in_progress"})).data
    assert (d["status"], d["status_name"]) == ("in_progress", "In progress")
    assert d["status_id"] == status_id(api, "In progress")


async def test_priority_id_wins_over_priority(api: Api) -> None:
    t = api.sim.create_ticket(subject="p")
    urgent = next(p for p in api.sim.priorities if p["priority"] == "urgent")
    d = (
        await api.patch(f"/tickets/{t['id']}", {"priority": "low", "priority_id": urgent["id"]})
    ).data
    assert (d["priority"], d["priority_id"], d["priority_name"], d["priority_color"]) == (
        "urgent",
        urgent["id"],
        "Urgent",
        urgent["color"],
    )
    d = (await api.patch(f"/tickets/{t['id']}", {"priority": "low"})).data
    assert (d["priority"], d["priority_name"]) == ("low", "Low")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status_id": "nope"}, "status_id"),
        ({"status_id": "00000000-0000-4000-8000-000000000000"}, "status_id"),
        ({"priority": "medium"}, "priority"),
        ({"priority_id": "00000000-0000-4000-8000-000000000000"}, "priority_id"),
        ({"inbox_id": "00000000-0000-4000-8000-000000000000"}, "inbox_id"),
        ({"remind_at": "tomorrow"}, "remind_at"),
        ({"remind_transition_status_id": "00000000-0000-4000-8000-000000000000"},
         "remind_transition_status_id"),
        ({"tags": ["x"]}, "tags"),
        ({"reporter_email": "a@b.c"}, "reporter_email"),
        ({"tag_ids": []}, "tag_ids"),
        ({"custom_fields": []}, "custom_fields"),
        ({"custom_fields": {"score": "ten"}}, "custom_fields.score"),
        ({"custom_fields": {"due_date": "2025-13-01"}}, "custom_fields.due_date"),
        ({"custom_fields": {"due_date": "05/01/2025"}}, "custom_fields.due_date"),
        ({"custom_fields": {"follow_up_at": "2025-01-01"}}, "custom_fields.follow_up_at"),
        ({"custom_fields": {"plan": "Growth"}}, "custom_fields.plan"),
        ({"custom_fields": {"plan": "00000000-0000-4000-8000-000000000000"}}, "custom_fields.plan"),
        ({"custom_fields": {"products": "x"}}, "custom_fields.products"),
        ({"custom_fields": {"region": 5}}, "custom_fields.region"),
        ({"custom_fields": {"billing_account": "A-1"}}, "custom_fields.billing_account"),
    ],
)  # fmt: skip
async def test_patch_rejects_bad_values_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    t = api.sim.create_ticket(subject="bad")
    assert_problem(await api.patch(f"/tickets/{t['id']}", body), 400, "bad_request", field)
    assert api.sim.ticket(t["id"]) == t


async def test_patch_updates_only_what_it_names(api: Api) -> None:
    sim = api.sim
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    t = sim.create_ticket(subject="orig", assignee_id=sim.agents[0]["id"])
    clock.advance(5)
    contact = str(uuid.uuid4())
    billing = sim.inboxes[1]["id"]
    body = {
        "subject": "changed",
        "assignee_id": None,
        "contact_id": contact,
        "inbox_id": billing,
        # "Applied when PATCH also sets status to waiting (status or status_id)"
        "status": "waiting",
        "remind_at": "2025-02-01T10:00:00+01:00",
        "remind_transition_status_id": status_id(api, "Open"),
        "custom_fields": {"billing_account": "ACC-9", "score": 4.5},
    }
    assert set(body) <= set(PATCH_FIELDS)
    d = (await api.patch(f"/tickets/{t['id']}", body)).data
    assert d["subject"] == "changed"
    assert d["assignee_id"] is None
    assert d["contact_id"] == contact
    assert d["inbox_id"] == billing
    assert d["remind_at"] == "2025-02-01T09:00:00.000Z"
    assert d["custom_fields"] == {"billing_account": "ACC-9", "score": 4.5}
    assert d["updated_at"] > t["updated_at"]
    assert d["created_at"] == t["created_at"]
    assert d["status_id"] == status_id(api, "Waiting")
    assert d["priority_id"] == t["priority_id"]


async def test_custom_fields_merge_and_null_removes(api: Api) -> None:
    products = [o["id"] for o in field_def(api, "products")["options"]]
    t = api.sim.create_ticket(subject="cf", custom_fields={"region": "eu", "score": 1})
    d = (
        await api.patch(
            f"/tickets/{t['id']}",
            {
                "custom_fields": {
                    "score": None,
                    "due_date": "2025-03-01",
                    "follow_up_at": "2025-03-01T08:30:00Z",
                    "products": [products[0], products[1], products[0]],
                }
            },
        )
    ).data
    assert d["custom_fields"] == {
        "region": "eu",
        "due_date": "2025-03-01",
        "follow_up_at": "2025-03-01T08:30:00.000Z",
        "products": products[:2],
    }
    d = (await api.patch(f"/tickets/{t['id']}", {"custom_fields": {"products": []}})).data
    assert "products" not in d["custom_fields"]


async def test_noop_patch_changes_nothing(api: Api) -> None:
    sim = api.sim
    assert isinstance(sim.clock, ManualClock)
    t = sim.create_ticket(subject="same", custom_fields={"region": "eu"})
    sim.clock.advance(30)
    body = {
        "subject": "same",
        "status": "open",
        "priority": "normal",
        "assignee_id": None,
        "custom_fields": {"region": "eu", "score": None},
    }
    r = await api.patch(f"/tickets/{t['ticket_number']}", body)
    assert r.status == 200
    assert r.data == t
    assert sim.ticket(t["id"])["updated_at"] == t["updated_at"]


# --------------------------------------------------------------------------- bulk


async def test_bulk_operations_and_counts(api: Api) -> None:
    sim = api.sim
    a, b, c = (sim.create_ticket(subject=f"bulk {i}") for i in range(3))
    vip, bug = sim.tags[0]["id"], sim.tags[1]["id"]
    sim.change_ticket(a["id"], tag_ids=[vip])
    ids = [a["id"], b["id"], c["id"]]

    # inboxops-bulk-ticket-actions: tags_added is "Present for add_tags", tags_removed
    # "Present for remove_tags"; neither is sent for another operation.
    r = await api.post(
        "/tickets/bulk", {"operation": "add_tags", "ticket_ids": ids, "tag_ids": [vip, bug]}
    )
    assert r.status == 200
    assert r.data == {"operation": "add_tags", "updated": 3, "tags_added": 5}
    r = await api.post(
        "/tickets/bulk", {"operation": "add_tags", "ticket_ids": ids, "tag_ids": [vip]}
    )
    assert r.data == {"operation": "add_tags", "updated": 0, "tags_added": 0}
    r = await api.post(
        "/tickets/bulk",
        {"operation": "remove_tags", "ticket_ids": [a["id"], b["id"]], "tag_ids": [bug]},
    )
    assert r.data == {"operation": "remove_tags", "updated": 2, "tags_removed": 2}
    assert [x["id"] for x in sim.ticket(a["id"], include=["tags"])["tags"]] == [vip]

    sim.change_ticket(c["id"], status="closed")
    r = await api.post(
        "/tickets/bulk", {"operation": "update_status", "ticket_ids": ids, "status": "closed"}
    )
    assert r.data["updated"] == 2
    r = await api.post(
        "/tickets/bulk",
        {"operation": "update_status", "ticket_ids": ids, "status_id": status_id(api, "Escalated")},
    )
    assert r.data == {"operation": "update_status", "updated": 3}
    assert {sim.ticket(i)["status_name"] for i in ids} == {"Escalated"}

    agent = sim.agents[2]["id"]
    r = await api.post(
        "/tickets/bulk", {"operation": "assign", "ticket_ids": ids + ids, "assignee_id": agent}
    )
    assert r.data == {"operation": "assign", "updated": 3}
    r = await api.post(
        "/tickets/bulk",
        {"operation": "assign", "ticket_ids": [a["ticket_number"]], "assignee_id": None},
    )
    assert r.data["updated"] == 1
    assert sim.ticket(a["id"])["assignee_id"] is None

    billing = sim.inboxes[1]["id"]
    r = await api.post(
        "/tickets/bulk", {"operation": "move_inbox", "ticket_ids": ids, "inbox_id": billing}
    )
    assert r.data == {"operation": "move_inbox", "updated": 3}
    assert {sim.ticket(i)["inbox_id"] for i in ids} == {billing}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ticket_ids": ["1"]}, "operation"),
        ({"operation": "delete", "ticket_ids": ["1"]}, "operation"),
        ({"operation": "merge", "ticket_ids": ["1"]}, "operation"),
        ({"operation": "assign", "ticket_ids": [], "assignee_id": None}, "ticket_ids"),
        ({"operation": "assign", "ticket_ids": "1", "assignee_id": None}, "ticket_ids"),
        ({"operation": "assign", "ticket_ids": [{"id": 1}], "assignee_id": None}, "ticket_ids"),
        ({"operation": "assign", "ticket_ids": ["1"]}, "assignee_id"),
        ({"operation": "assign", "ticket_ids": ["1"], "assignee_id": "bob"}, "assignee_id"),
        ({"operation": "assign", "ticket_ids": ["1"], "assignee_id": None, "tag_ids": []}, "tag_ids"),
        ({"operation": "update_status", "ticket_ids": ["1"]}, "status"),
        ({"operation": "update_status", "ticket_ids": ["1"], "status": "done"}, "status"),
        ({"operation": "add_tags", "ticket_ids": ["1"], "tag_ids": []}, "tag_ids"),
        ({"operation": "add_tags", "ticket_ids": ["1"], "tag_ids": ["x"]}, "tag_ids"),
        ({"operation": "move_inbox", "ticket_ids": ["1"]}, "inbox_id"),
    ],
)  # fmt: skip
async def test_bulk_rejects_bad_requests(api: Api, body: dict[str, Any], field: str) -> None:
    t = api.sim.create_ticket(subject="untouched")
    assert_problem(await api.post("/tickets/bulk", body), 400, "bad_request", field)
    assert api.sim.ticket(t["id"]) == t


async def test_bulk_unknown_references_are_404(api: Api) -> None:
    t = api.sim.create_ticket(subject="x")
    missing = "00000000-0000-4000-8000-000000000000"
    for body, field in (
        ({"operation": "update_status", "status_id": missing}, "status_id"),
        ({"operation": "add_tags", "tag_ids": [missing]}, "tag_ids"),
        ({"operation": "move_inbox", "inbox_id": missing}, "inbox_id"),
    ):
        r = await api.post("/tickets/bulk", {**body, "ticket_ids": [t["id"]]})
        assert_problem(r, 404, "not_found", field)


async def test_bulk_id_limit_is_configurable() -> None:
    cfg = SimulatorConfig(seed=7, rate_limit_per_minute=None, max_bulk_ids=2)
    async with running(cfg) as api:
        body = {"operation": "assign", "ticket_ids": ["1", "2", "3"], "assignee_id": None}
        assert_problem(await api.post("/tickets/bulk", body), 400, "bad_request", "ticket_ids")
        body["ticket_ids"] = ["1", "2"]
        assert (await api.post("/tickets/bulk", body)).status == 200
    async with running() as api:
        body = {"operation": "assign", "ticket_ids": ["1"] * 101, "assignee_id": None}
        assert_problem(await api.post("/tickets/bulk", body), 400, "bad_request", "ticket_ids")


async def test_bulk_unknown_or_foreign_ids_are_skipped_or_404() -> None:
    async with running() as api:
        mine = api.sim.create_ticket(subject="mine")
        foreign = (
            await api.post("/tickets", {"subject": "f"}, key=api.sim.other_workspace_key)
        ).data
        ids = [mine["id"], foreign["id"], str(uuid.uuid4()), "9999"]
        body = {"operation": "update_status", "ticket_ids": ids, "status": "resolved"}
        r = await api.post("/tickets/bulk", body)
        assert r.data["updated"] == 1
        assert api.sim.ticket(mine["id"])["status"] == "resolved"
        # Switch at run time: now the whole call fails before changing anything.
        await api.post("/_sim/settings", {"bulk_unknown_ids": "404"})
        body["status"] = "closed"
        assert_problem(await api.post("/tickets/bulk", body), 404, "not_found", "ticket_ids")
        assert api.sim.ticket(mine["id"])["status"] == "resolved"
    cfg = SimulatorConfig(seed=7, rate_limit_per_minute=None, bulk_unknown_ids="404")
    async with running(cfg) as api:
        unknown = {"operation": "assign", "ticket_ids": [str(uuid.uuid4())], "assignee_id": None}
        assert_problem(await api.post("/tickets/bulk", unknown), 404, "not_found", "ticket_ids")


# --------------------------------------------------------------------------- faults


async def test_scripted_failures_answer_the_next_matching_requests(api: Api) -> None:
    t = api.sim.create_ticket(subject="flaky")
    api.sim.faults.fail_next("PATCH", "/tickets/*", 503, times=2)
    api.sim.faults.fail_next("*", "/api/v1/tags", 429, retry_after=7)
    for _ in range(2):
        assert_problem(
            await api.patch(f"/tickets/{t['id']}", {"subject": "x"}), 503, "service_unavailable"
        )
    assert api.sim.ticket(t["id"])["subject"] == "flaky"
    assert (await api.get(f"/tickets/{t['id']}")).status == 200
    assert (await api.patch(f"/tickets/{t['id']}", {"subject": "x"})).status == 200
    r = await api.get("/tags")
    assert_problem(r, 429, "rate_limit_exceeded")
    assert r.headers["Retry-After"] == "7"
    assert (await api.get("/tags")).status == 200
    await api.post(
        "/_sim/faults", {"fail_next": {"method": "GET", "path": "/tickets", "status": 500}}
    )
    assert_problem(await api.get("/tickets"), 500, "internal_error")
    assert (await api.get("/tickets")).status == 200
    assert [e.status for e in api.sim.journal[-3:]] == [200, 500, 200]


async def test_scripted_delay_makes_a_client_time_out(api: Api) -> None:
    api.sim.faults.fail_next("GET", "/ticket_statuses", 200, delay=0.3)
    timeout = aiohttp.ClientTimeout(total=0.05)
    with pytest.raises(TimeoutError):
        async with api.session.get(
            api.sim.url + "/api/v1/ticket_statuses",
            headers={"Authorization": f"Bearer {api.sim.api_key}"},
            timeout=timeout,
        ) as r:
            await r.read()
    assert (await api.get("/ticket_statuses")).status == 200


# --------------------------------------------------------------------------- journal, determinism, controls


async def test_journal_records_every_api_request(api: Api) -> None:
    t = api.sim.create_ticket(subject="j")
    await api.patch(f"/tickets/{t['id']}", {"subject": "k"}, headers={"Idempotency-Key": "n/a"})
    await api.get("/tickets", params={"status": "open", "page": "1"})
    await api.get("/tickets", key=None)
    await api.get("/_sim/journal")
    entries = api.sim.journal
    assert [(e.method, e.path, e.status) for e in entries] == [
        ("PATCH", f"/api/v1/tickets/{t['id']}", 200),
        ("GET", "/api/v1/tickets", 200),
        ("GET", "/api/v1/tickets", 401),
    ]
    assert entries[0].body == {"subject": "k"}
    assert entries[0].headers["Idempotency-Key"] == "n/a"
    assert api.sim.api_key not in entries[0].headers["Authorization"]
    assert entries[1].query == {"status": "open", "page": "1"}
    assert entries[1].body is None
    assert entries[0].workspace_id == api.sim.workspace_id
    assert entries[2].workspace_id is None
    assert entries[0].at == api.sim.clock.now()
    listed = (await api.get("/_sim/journal")).data
    assert [e["request_id"] for e in listed] == [e.request_id for e in entries]


async def test_same_seed_gives_the_same_ids_and_reset_restores_the_start() -> None:
    snapshots = []
    for _ in range(2):
        async with running() as api:
            t = (await api.post("/tickets", {"subject": "det"})).data
            r = await api.get("/tickets")
            snapshots.append((api.sim.api_key, api.sim.workspace_id, t, r.headers["X-Request-Id"]))
    assert snapshots[0] == snapshots[1]
    async with running(SimulatorConfig(seed=8, rate_limit_per_minute=None)) as api:
        assert api.sim.api_key != snapshots[0][0]
        first = (await api.post("/tickets", {"subject": "det"})).data
        api.sim.set_rate_limit(5)
        api.sim.faults.fail_next("GET", "*", 500)
        await api.post("/_sim/reset")
        assert api.sim.tickets() == []
        assert api.sim.journal == []
        assert api.sim.faults.scripted == []
        assert api.sim.settings.rate_limit_per_minute is None
        again = (await api.post("/tickets", {"subject": "det"})).data
        assert again == first
        api.sim.reset()
        assert (await api.get("/tickets")).body["meta"]["total"] == 0


async def test_control_routes(api: Api) -> None:
    info = (await api.get("/_sim")).data
    assert info["api_key"] == api.sim.api_key
    assert "POST /_sim/seed" in info["routes"]
    created = await api.post("/_sim/tickets", {"subject": "agent made", "status": "waiting"})
    assert created.status == 201
    assert created.data["status"] == "waiting"
    changed = await api.post(
        f"/_sim/tickets/{created.data['ticket_number']}/change", {"priority": "high"}
    )
    assert changed.data["priority"] == "high"
    bad = await api.post(f"/_sim/tickets/{created.data['id']}/change", {"priority": "max"})
    assert_problem(bad, 400, "bad_request", "priority")
    assert_problem(await api.post("/_sim/tickets/404/change", {}), 404, "not_found")
    seeded = await api.post("/_sim/seed", {"tickets": 5})
    assert seeded.data["created"] == 5
    listed = (await api.get("/_sim/tickets", params={"include": "tags"})).data
    assert len(listed) == 6
    assert all("tags" in t for t in listed)
    assert [t["ticket_number"] for t in listed] == list(range(1, 7))
    ep = await api.post("/_sim/endpoints", {"url": "http://127.0.0.1:9/hook", "secret": "s"})
    assert ep.status == 201
    assert "secret" not in ep.data
    assert (await api.get("/_sim/endpoints")).data == [ep.data]
    assert_problem(
        await api.post("/_sim/endpoints", {"url": "ftp://x", "secret": "s"}), 400, "bad_request"
    )
    faults = await api.post("/_sim/faults", {"webhooks": {"duplicate_next": 2, "burst": 3}})
    assert faults.data["webhooks"]["duplicate_next"] == 2
    assert api.sim.faults.webhooks.burst == 3
    assert_problem(await api.post("/_sim/faults", {"webhooks": {"nope": 1}}), 400, "bad_request")
    assert (await api.post("/_sim/faults", {"clear": True})).data["webhooks"]["burst"] == 0
    settings = await api.post("/_sim/settings", {"rate_limit_headers": True})
    assert settings.data["rate_limit_headers"] is True
    assert_problem(await api.post("/_sim/settings", {"rate_limit_window": "x"}), 400, "bad_request")
    assert (await api.get("/_sim/deliveries")).body["meta"] == {"pending": 0}
    await api.post("/_sim/reset", {"keep_endpoints": False})
    assert (await api.get("/_sim/endpoints")).data == []


async def test_seeded_tickets_are_realistic_and_reproducible() -> None:
    results = []
    for _ in range(2):
        async with running() as api:
            results.append(api.sim.seed_tickets(20, emit=False))
    assert results[0] == results[1]
    tickets = results[0]
    assert len({t["subject"] for t in tickets}) > 5
    assert {t["status"] for t in tickets} > {"open"}
    assert any(t["custom_fields"] for t in tickets)


async def test_create_app_serves_through_aiohttp_server(aiohttp_client: Any) -> None:
    app = create_app(SimulatorConfig(seed=3, rate_limit_per_minute=None))
    client = await aiohttp_client(app)
    sim = app[SIM_KEY]
    r = await client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {sim.api_key}"})
    assert r.status == 200
    assert (await r.json())["meta"]["total"] == 0
    assert isinstance(app, web.Application)


async def test_run_simulator_serves_until_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="simulator.inboxops")
    cfg = SimulatorConfig(seed=9, rate_limit_per_minute=None)
    task = asyncio.create_task(
        run_simulator(
            cfg,
            port=0,
            webhook_url="http://127.0.0.1:9/hook",
            webhook_secret="s",
            seed_tickets=3,
        )
    )
    try:
        started = await wait_for(
            lambda: [r.getMessage() for r in caplog.records if "simulator at" in r.getMessage()],
            message="the start-up log line",
        )
        url = started[0].split(" at ", 1)[1].split("/api/v1", 1)[0]
        assert any("ixk_sim_rw_" in r.getMessage() for r in caplog.records)
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/_sim/tickets") as r:
                assert len((await r.json())["data"]) == 3
            async with session.get(url + "/_sim/endpoints") as r:
                assert [e["url"] for e in (await r.json())["data"]] == ["http://127.0.0.1:9/hook"]
            async with session.get(url + "/_sim/deliveries") as r:
                assert (await r.json())["data"] == []
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelled()
