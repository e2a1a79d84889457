"""Loop safety: echo by change, echo by actions, once_per_ticket/cooldown/rearm and the fuse.

The guard runs against a real Redis; its clock is a fake the tests move, never a sleep.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from ticketwire.calls import ApiCall
from ticketwire.config import Settings
from ticketwire.engine import Router, compile_yaml
from ticketwire.engine.conditions import FieldSchema, compile_condition
from ticketwire.engine.echo import ANY, Write, match_echo, members, same_value
from ticketwire.engine.guard import GuardPolicy, MemoryGuard, fingerprint
from ticketwire.engine.limits import FiringLimits, human_duration, rearmed_by
from ticketwire.engine.nodes import Node
from ticketwire.errors import ConfigError, RuleConfigError
from ticketwire.event import Event
from ticketwire.keys import Keys
from ticketwire.vendors.cstar.echo import written_fields as cstar_fields
from ticketwire.vendors.inboxops.echo import written_fields as inboxops_fields
from ticketwire.vendors.thena.echo import written_fields as thena_fields
from workers.loopguard import LoopGuard

T0 = 1_700_000_000.0
TICKET = "inboxops:acme:t1"


class Clock:
    """A settable clock for the guard (seconds since the epoch)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_guard(redis: Redis, keys: Keys, clock: Clock, **kw: Any) -> LoopGuard:
    opts: dict[str, Any] = {"echo_window_s": 600.0, "fuse_per_hour": 10, **kw}
    return LoopGuard(redis, keys, clock=clock, **opts)


def patch(body: dict[str, Any], *rules: str, ticket: str = "t1") -> ApiCall:
    return ApiCall("inboxops", "PATCH", f"/tickets/{ticket}", body, ticket, rules=rules)


def cond(plain: Any) -> Any:
    return compile_condition(Node.from_plain(plain), FieldSchema())


# ---------------------------------------------------------------- written_fields (pure)


def test_inboxops_patch_sets_its_fields_and_their_followers() -> None:
    fields = inboxops_fields(patch({"priority": "high", "custom_fields": {"score": 3}}))
    assert fields["priority"] == "high"
    assert fields["common.priority"] == "high"
    assert fields["priority_id"] == ANY and fields["priority_name"] == ANY
    assert fields["custom_fields.score"] == 3
    assert "custom_fields" not in fields


def test_inboxops_bulk_operations() -> None:
    def bulk(op: str, **body: Any) -> dict[str, Any]:
        call = ApiCall(
            "inboxops",
            "POST",
            "/tickets/bulk",
            {"operation": op, "ticket_ids": ["t1"], **body},
            "t1",
        )
        return inboxops_fields(call)

    assert bulk("add_tags", tag_ids=["a"])["tags"] == members(has=["a"])
    assert bulk("remove_tags", tag_ids=["a"])["tags"] == members(lacks=["a"])
    assert bulk("update_status", status="waiting")["common.status"] == "waiting"
    assert bulk("assign", assignee_id="ag1")["assignee_id"] == "ag1"
    assert bulk("move_inbox", inbox_id="i2") == {"inbox_id": "i2"}


def test_cstar_fields_use_webhook_names_and_pending_merges() -> None:
    call = ApiCall(
        "cstar",
        "PATCH",
        "/tickets/t1",
        {"assignedTo": "ag1", "__merge_tags__": {"add": ["vip"], "remove": ["old"]}},
        "t1",
    )
    fields = cstar_fields(call)
    assert fields["assigned_to"] == "ag1" and "assignedTo" not in fields
    assert fields["tags"] == members(has=["vip"], lacks=["old"])
    bulk = ApiCall(
        "cstar",
        "POST",
        "/bulk",
        {"action": "update", "resource": "tickets", "ids": ["t1"], "data": {"status": "pending"}},
        "t1",
    )
    assert cstar_fields(bulk)["common.status"] == "waiting"


def test_thena_fields_and_creates() -> None:
    fields = thena_fields(ApiCall("thena", "PATCH", "/tickets/t1", {"statusName": "On hold"}, "t1"))
    assert fields["statusName"] == "On hold" and fields["statusId"] == ANY
    assert fields["common.status"] == "waiting"
    bulk = thena_fields(
        ApiCall("thena", "PATCH", "/tickets/bulk", {"ticketIds": ["t1"], "typeId": "x"}, "t1")
    )
    assert bulk == {"typeId": "x"}
    create = ApiCall("thena", "POST", "/tickets/bulk", {"tickets": [{"title": "t"}]}, "t1")
    assert thena_fields(create) == {}


# ---------------------------------------------------------------- matching (pure)


def test_same_value_is_lenient_where_helpdesks_are() -> None:
    assert same_value("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000+00:00")
    assert same_value("On hold", "on hold")
    assert same_value("ag1", {"id": "ag1", "email": "a@x"})
    assert same_value(["b", "a"], ["a", "b"])
    assert same_value(members(has=["a"]), [{"id": "a", "name": "A"}, {"id": "b"}])
    assert not same_value(members(lacks=["a"]), ["a"])
    assert not same_value(True, 1)
    assert not same_value("high", "low")


def writes(fields: dict[str, Any], rule: str = "r1", at_ms: int = 0) -> list[Write]:
    return [Write(p, v, (rule,), at_ms) for p, v in fields.items()]


def test_a_change_of_a_written_mapping_key_is_explained_key_by_key() -> None:
    ours = writes(inboxops_fields(patch({"custom_fields": {"score": 2}})))
    echo = match_echo(
        {"custom_fields": ({"score": 1, "plan": "x"}, {"score": 2, "plan": "x"})},
        ours,
        now_ms=1000,
        window_ms=600_000,
    )
    assert echo is not None and echo.fields == ("custom_fields",)
    other = match_echo(
        {"custom_fields": ({"score": 1, "plan": "x"}, {"score": 2, "plan": "y"})},
        ours,
        now_ms=1000,
        window_ms=600_000,
    )
    assert other is None


def test_followers_alone_are_no_echo() -> None:
    ours = writes(inboxops_fields(patch({"status": "waiting"})))
    assert match_echo({"status_id": ("a", "b")}, ours, now_ms=1, window_ms=10) is None
    both = match_echo(
        {"status": ("open", "waiting"), "status_id": ("a", "b"), "updated_at": ("x", "y")},
        ours,
        ignore=frozenset({"updated_at"}),
        now_ms=1,
        window_ms=10,
    )
    assert both is not None and both.fields == ("status",)


# ---------------------------------------------------------------- echo by change (Redis)


async def test_echo_by_change_suppresses_only_the_writer(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock)
    await guard.wrote([(TICKET, patch({"priority": "high"}, "raise"))])
    clock.advance(12)
    verdict = await guard.check(
        TICKET,
        [("raise", "fp-a"), ("notify", "fp-b")],
        event_id="e2",
        changes={"priority": ("low", "high"), "updated_at": ("t0", "t1")},
        vendor="inboxops",
    )
    assert verdict.allowed == ("notify",)
    [(name, why)] = verdict.suppressed
    assert name == "raise"
    assert why == (
        "echo: this delivery only reflects our own write of priority 12.0s ago (rule raise)"
    )


async def test_echo_by_change_needs_every_changed_field_to_be_ours(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock)
    await guard.wrote([(TICKET, patch({"priority": "high"}, "raise"))])
    verdict = await guard.check(
        TICKET,
        [("raise", "fp-a")],
        event_id="e2",
        changes={"priority": ("low", "high"), "subject": ("Help", "Help!")},
        vendor="inboxops",
    )
    assert verdict.allowed == ("raise",)
    # A different value than the one we wrote is somebody else's change.
    verdict = await guard.check(
        TICKET,
        [("raise", "fp-a")],
        event_id="e3",
        changes={"priority": ("high", "urgent")},
        vendor="inboxops",
    )
    assert verdict.allowed == ("raise",)


async def test_echo_by_change_ends_with_the_echo_window(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock, echo_window_s=60.0)
    await guard.wrote([(TICKET, patch({"priority": "high"}, "raise"))])
    changes = {"priority": ("low", "high")}
    clock.advance(59.9)
    early = await guard.check(TICKET, [("raise", "x")], event_id="e2", changes=changes)
    assert early.allowed == ()
    clock.advance(0.1)
    late = await guard.check(TICKET, [("raise", "x")], event_id="e3", changes=changes)
    assert late.allowed == ("raise",)
    assert 0 < await redis.pttl(keys.written(TICKET)) <= 60_000


async def test_wrote_is_one_bounded_hash_per_ticket(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock, echo_window_s=60.0)
    other = "inboxops:acme:t2"
    for n in range(20):
        await guard.wrote(
            [
                (TICKET, patch({"custom_fields": {"score": n}}, "count")),
                (other, patch({"subject": f"s{n}"}, "title", ticket="t2")),
            ]
        )
        clock.advance(1)
    raw = await redis.hget(keys.written(TICKET), "custom_fields.score")
    assert raw is not None and raw.count(b"\x1e") == 7  # the newest 8 writes
    # The latest write still explains its echo; the oldest kept ones too.
    guard_check = await guard.check(
        TICKET,
        [("count", "x")],
        event_id="e",
        changes={"custom_fields": ({"score": 18}, {"score": 19})},
    )
    assert guard_check.allowed == ()
    assert await redis.hexists(keys.written(other), "subject")
    clock.advance(61)
    await guard.wrote([(TICKET, patch({"custom_fields": {"score": 99}}, "count"))])
    raw = await redis.hget(keys.written(TICKET), "custom_fields.score")
    assert raw is not None and raw.count(b"\x1e") == 0  # expired writes were dropped


async def test_creates_and_unknown_vendors_write_nothing(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock)
    create = ApiCall("thena", "POST", "/tickets/bulk", {"tickets": [{"title": "x"}]}, "t1")
    unknown = ApiCall("zendesk", "PUT", "/tickets/1", {"a": 1}, "1")
    await guard.wrote([("thena:o:t1", create), ("zendesk:o:1", unknown)])
    assert await redis.exists(keys.written("thena:o:t1"), keys.written("zendesk:o:1")) == 0


async def test_cstar_echo_of_merged_tags(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock)
    ticket = "cstar:team:t1"
    body = {"__merge_tags__": {"add": ["vip"], "remove": []}}
    call = ApiCall("cstar", "PATCH", "/tickets/t1", body, "t1", rules=("tag-vip",))
    await guard.wrote([(ticket, call)])
    verdict = await guard.check(
        ticket,
        [("tag-vip", "fp")],
        event_id="e2",
        changes={
            "tags": (["a"], ["a", "vip"]),
            "common.tags": (["a"], ["a", "vip"]),
            "updated_at": ("x", "y"),
        },
        vendor="cstar",
    )
    assert verdict.allowed == ()
    assert "our own write of common.tags, tags" in verdict.suppressed[0][1]


# ---------------------------------------------------------------- echo by actions, fuse (Redis)


async def test_same_actions_echo_is_kept_as_second_line(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock)
    fp = fingerprint([("add_tags", {"tag_ids": ["x"]})])
    assert (await guard.check(TICKET, [("tag", fp)], event_id="e1")).allowed == ("tag",)
    await guard.record(TICKET, [("tag", fp)], event_id="e1")
    clock.advance(3)
    verdict = await guard.check(TICKET, [("tag", fp)], event_id="e2", changes=None)
    assert verdict.suppressed == (
        ("tag", "echo: same actions as its own firing 3.0s ago on this ticket"),
    )


async def test_fuse_with_a_small_limit(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock, fuse_per_hour=3, fuse_window_s=600.0)
    outcomes = []
    for n in range(5):
        fired = [("loop", f"fp{n}")]
        verdict = await guard.check(TICKET, fired, event_id=f"e{n}")
        await guard.record(TICKET, [p for p in fired if p[0] in verdict.allowed], event_id=f"e{n}")
        outcomes.append(verdict)
        clock.advance(60)
    assert [v.allowed for v in outcomes] == [("loop",)] * 3 + [()] * 2
    assert outcomes[3].suppressed[0][1] == (
        "loop fuse: 3 rule firings on this ticket in the last 10m (limit 3, "
        "TICKETWIRE_FUSE_PER_HOUR per TICKETWIRE_FUSE_WINDOW)"
    )
    # The first firing leaves the window 10 minutes after it: room for one more.
    clock.now = T0 + 600
    assert (await guard.check(TICKET, [("loop", "fpx")], event_id="e9")).allowed == ("loop",)
    assert 0 < await redis.pttl(keys.firings(TICKET)) <= 600_000


async def test_fuse_counts_each_rule_firing_within_one_event(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock, fuse_per_hour=2)
    verdict = await guard.check(TICKET, [("a", "1"), ("b", "2"), ("c", "3")], event_id="e1")
    assert verdict.allowed == ("a", "b")
    assert verdict.suppressed[0][0] == "c"


async def test_rerun_of_the_same_event_is_not_counted_twice(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock, fuse_per_hour=2)
    limits = {"once": FiringLimits(once_per_ticket=True)}
    fired = [("once", "fp1"), ("other", "fp2")]
    first = await guard.check(TICKET, fired, event_id="e1", limits=limits)
    assert first.allowed == ("once", "other")
    await guard.record(TICKET, fired, event_id="e1", limits=limits)
    clock.advance(1)
    # The worker died after recording; the event is handled again.
    again = await guard.check(TICKET, fired, event_id="e1", limits=limits)
    assert again.allowed == ("once", "other")
    await guard.record(TICKET, fired, event_id="e1", limits=limits)
    assert await redis.zcard(keys.firings(TICKET)) == 2
    # A new event sees the two firings once, not four, and once_per_ticket still holds.
    later = await guard.check(TICKET, [("once", "fp9"), ("x", "fp3")], event_id="e2", limits=limits)
    assert [name for name, _ in later.suppressed] == ["once", "x"]
    assert later.suppressed[1][1].startswith("loop fuse: 2 rule firings")


# ---------------------------------------------------------------- once_per_ticket, cooldown


async def test_once_per_ticket_until_rearmed(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock)
    rearm = cond({"field": "status", "not_equals": "waiting"})
    limits = {"nudge": FiringLimits(once_per_ticket=True, rearm=rearm)}
    fired = [("nudge", "fp")]
    assert (await guard.check(TICKET, fired, event_id="e1", limits=limits)).allowed == ("nudge",)
    await guard.record(TICKET, fired, event_id="e1", limits=limits)
    for n in range(2, 5):
        clock.advance(3600)  # past the echo window: only once_per_ticket stops it
        verdict = await guard.check(TICKET, fired, event_id=f"e{n}", limits=limits)
        assert verdict.allowed == ()
    assert verdict.suppressed[0][1] == (
        "once_per_ticket: fired at 2023-11-14T22:13:20Z (event e1); "
        "re-arms when status not_equals 'waiting'"
    )
    # The rearm condition holds on an event where the rule itself does not fire.
    rearming = await guard.check(TICKET, [], event_id="e5", limits=limits, rearm=["nudge"])
    assert rearming.rearmed == ("nudge",)
    await guard.record(TICKET, [], event_id="e5", limits=limits, rearmed=rearming.rearmed)
    clock.advance(60)
    verdict = await guard.check(TICKET, fired, event_id="e6", limits=limits)
    assert verdict.allowed == ("nudge",)
    await guard.record(TICKET, fired, event_id="e6", limits=limits)
    clock.advance(3600)
    verdict = await guard.check(TICKET, fired, event_id="e7", limits=limits)
    assert verdict.allowed == ()  # disarmed again by its new firing
    ttl = await redis.pttl(keys.limits(TICKET))
    assert 89 * 86400_000 < ttl <= 90 * 86400_000


async def test_once_per_ticket_without_rearm_stays_disarmed(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock)
    limits = {"welcome": FiringLimits(once_per_ticket=True)}
    await guard.record(TICKET, [("welcome", "fp")], event_id="e1", limits=limits)
    clock.advance(30 * 86400)
    verdict = await guard.check(TICKET, [("welcome", "fp2")], event_id="e2", limits=limits)
    assert "it has no rearm: condition, so it stays disarmed" in verdict.suppressed[0][1]
    # A rearm for a rule that has not fired on the ticket changes nothing.
    fresh = await guard.check("inboxops:acme:t9", [], event_id="e3", rearm=["welcome"])
    assert fresh.rearmed == ()


async def test_cooldown_boundary(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock, echo_window_s=1.0)
    limits = {"ping": FiringLimits(cooldown_s=1800.0)}
    await guard.record(TICKET, [("ping", "fp")], event_id="e1", limits=limits)
    clock.advance(12 * 60)
    verdict = await guard.check(TICKET, [("ping", "fp")], event_id="e2", limits=limits)
    assert verdict.suppressed == (("ping", "cooldown: fired 12m ago, cooldown 30m"),)
    clock.now = T0 + 1800 - 0.001
    just_before = await guard.check(TICKET, [("ping", "fp")], event_id="e3", limits=limits)
    assert just_before.allowed == ()
    clock.now = T0 + 1800
    at_the_end = await guard.check(TICKET, [("ping", "fp")], event_id="e4", limits=limits)
    assert at_the_end.allowed == ("ping",)


async def test_rearm_ends_a_cooldown_early_but_not_once_per_ticket_plus_cooldown(
    redis, keys, clock
) -> None:
    guard = make_guard(redis, keys, clock, echo_window_s=1.0)
    rearm = cond({"field": "priority", "equals": "low"})
    limits = {
        "cool": FiringLimits(cooldown_s=3600.0, rearm=rearm),
        "both": FiringLimits(once_per_ticket=True, cooldown_s=3600.0, rearm=rearm),
    }
    fired = [("cool", "a"), ("both", "b")]
    await guard.record(TICKET, fired, event_id="e1", limits=limits)
    clock.advance(60)
    verdict = await guard.check(TICKET, fired, event_id="e2", limits=limits)
    assert dict(verdict.suppressed)["cool"] == (
        "cooldown: fired 1m ago, cooldown 1h (or until priority equals 'low')"
    )
    rearming = await guard.check(TICKET, [], event_id="e3", limits=limits, rearm=["cool", "both"])
    await guard.record(TICKET, [], event_id="e3", limits=limits, rearmed=rearming.rearmed)
    verdict = await guard.check(TICKET, fired, event_id="e4", limits=limits)
    assert verdict.allowed == ("cool",)
    assert dict(verdict.suppressed)["both"] == "cooldown: fired 1m ago, cooldown 1h"
    clock.advance(3600)
    assert (await guard.check(TICKET, fired, event_id="e5", limits=limits)).allowed == (
        "cool",
        "both",
    )


async def test_check_and_record_do_nothing_without_work(redis, keys, clock) -> None:
    guard = make_guard(redis, keys, clock)
    verdict = await guard.check(TICKET, [], event_id="e1", rearm=[])
    assert verdict.allowed == () and verdict.suppressed == ()
    await guard.record(TICKET, [], event_id="e1")
    assert [k async for k in redis.scan_iter(match=f"{keys.prefix}*")] == []


# ---------------------------------------------------------------- rearm evaluation (pure)


def event(**ticket: Any) -> Event:
    return Event(
        vendor="inboxops",
        type="ticket.updated",
        id="e1",
        tenant="acme",
        created_at=datetime(2024, 5, 1, tzinfo=UTC),
        ticket_id="t1",
        ticket={"id": "t1", **ticket},
    )


def test_rearm_conditions_are_asked_on_every_event_of_their_vendor() -> None:
    router = Router()

    @router.on(
        "ticket.created",
        vendor="inboxops",
        once_per_ticket=True,
        rearm={"field": "status", "equals": "open"},
    )
    async def welcome(ctx: Any) -> None:
        ctx.set_status("open")

    @router.on("ticket.created", vendor="cstar", once_per_ticket=True, rearm=lambda ev: True)
    async def other(ctx: Any) -> None:
        ctx.act("set_status", "open")

    def broken(ev: Event) -> bool:
        raise RuntimeError("boom")

    @router.on("ticket.created", cooldown=timedelta(hours=1), rearm=broken, name="fragile")
    async def fragile(ctx: Any) -> None:
        ctx.act("set_status", "open")

    held, errors = rearmed_by(router, event(status="open"))
    assert held == ["test_loopguard.welcome"]  # a ticket.updated event re-arms it too
    assert errors == [("fragile", "RuntimeError: boom")]
    assert rearmed_by(router, event(status="waiting"))[0] == []


# ---------------------------------------------------------------- rule options: YAML


def rule_errors(text: str) -> list[str]:
    _, errors = compile_yaml(text, file="r.yml")
    return [str(e) for e in errors]


BASE = """
name: nudge
vendor: inboxops
events: [ticket.updated]
if: {field: status, equals: waiting}
then:
  - add_tags: [t1]
"""


def test_yaml_limits_compile() -> None:
    rules, errors = compile_yaml(
        BASE
        + "once_per_ticket: true\ncooldown: 1d12h\nrearm: {field: status, not_equals: waiting}\n",
        file="r.yml",
    )
    assert errors == []
    limits = rules[0].limits
    assert limits.once_per_ticket and limits.cooldown_s == 36 * 3600
    assert limits.describe() == (
        "once per ticket, cooldown 1d12h; re-armed when status not_equals 'waiting'"
    )
    plain, _ = compile_yaml(BASE, file="r.yml")
    assert not plain[0].limits.active


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "once_per_tiket: true\n",
            "r.yml:8: rule 'nudge': unknown key 'once_per_tiket'; did you mean 'once_per_ticket'?",
        ),
        ("cooldwn: 30m\n", "unknown key 'cooldwn'; did you mean 'cooldown'?"),
        (
            "once_per_ticket: yes\n",
            "r.yml:8: rule 'nudge': once_per_ticket: expects true or false, got a string 'yes' (yes, no, on and off are text in rule files)",
        ),
        ("cooldown: 30\n", "cooldown: 30 has no unit; write e.g. 30m or 30s"),
        (
            "cooldown: 30 minutes\n",
            "cooldown: '30 minutes' is not a positive duration such as 30m, 24h or 1d12h",
        ),
        (
            "cooldown: -30m\n",
            "cooldown: '-30m' has a sign; a cooldown is a length of time, write '30m'",
        ),
        ("cooldown: 0s\n", "cooldown: '0s' must be longer than zero"),
        (
            "rearm: {field: status, equals: open}\n",
            "r.yml:8: rule 'nudge': rearm: only has an effect with once_per_ticket: true or a cooldown:",
        ),
        (
            "once_per_ticket: false\nrearm: {field: status, equals: open}\n",
            "rearm: only has an effect with once_per_ticket: true or a cooldown:",
        ),
        (
            "once_per_ticket: true\ncooldown: 1h\n",
            "r.yml:9: rule 'nudge': cooldown: has no effect here: with once_per_ticket: true and no rearm:",
        ),
        (
            "once_per_ticket: true\nrearm: {field: staus, equals: open}\n",
            "r.yml:9: rule 'nudge': rearm: unknown ticket field 'staus'; did you mean 'status'?",
        ),
        (
            "once_per_ticket: true\nrearm: {field: status, equal: open}\n",
            "rearm: unknown operator 'equal'; did you mean 'equals'?",
        ),
        (
            "once_per_ticket: true\nrearm: {field: status, equals: opne}\n",
            "rearm: unknown status 'opne'; did you mean 'open'?",
        ),
    ],
)
def test_yaml_limit_errors(extra: str, message: str) -> None:
    errors = rule_errors(BASE + extra)
    assert len(errors) == 1, errors
    assert message in errors[0]


# ---------------------------------------------------------------- rule options: Python


def test_python_limits() -> None:
    router = Router()

    @router.on(
        "ticket.updated",
        once_per_ticket=True,
        cooldown="30m",
        rearm={"field": "common.status", "equals": "open"},
        name="py",
    )
    async def py(ctx: Any) -> None:
        ctx.set_status("waiting")

    limits = router.get("py").limits
    assert limits.once_per_ticket and limits.cooldown_s == 1800
    assert limits.rearm is not None and limits.rearm.holds(event()) is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rearm": {"field": "status", "equals": "open"}}, "rearm: only has an effect"),
        ({"cooldown": "soon"}, "cooldown: 'soon' is not a positive duration"),
        ({"cooldown": timedelta(0)}, "cooldown: must be longer than zero"),
        ({"once_per_ticket": "yes"}, "once_per_ticket: expects true or false, got a string"),
        (
            {"once_per_ticket": True, "rearm": {"field": "status", "equal": 1}},
            "rearm=: unknown operator 'equal'",
        ),
    ],
)
def test_python_limit_errors(kwargs: dict[str, Any], message: str) -> None:
    router = Router()
    with pytest.raises(RuleConfigError) as info:

        @router.on("ticket.updated", name="bad", **kwargs)
        async def bad(ctx: Any) -> None:
            ctx.set_status("open")

    assert message in str(info.value)
    assert "test_loopguard.py" in str(info.value) and "rule 'bad'" in str(info.value)


# ---------------------------------------------------------------- dry-run guard, settings


def test_memory_guard_decides_like_the_worker() -> None:
    guard = MemoryGuard(GuardPolicy(echo_window_ms=1000, fuse_limit=10, fuse_window_ms=3_600_000))
    limits = {"once": FiringLimits(once_per_ticket=True)}
    ms = int(T0 * 1000)
    first = guard.check(TICKET, [("once", "a")], event_id="e1", now_ms=ms, limits=limits)
    second = guard.check(TICKET, [("once", "b")], event_id="e2", now_ms=ms + 5000, limits=limits)
    assert first.allowed == ("once",) and second.allowed == ()
    assert second.suppressed[0][1].startswith("once_per_ticket: fired at")


def test_fuse_window_and_rule_memory_settings() -> None:
    settings = Settings.from_env(
        {"TICKETWIRE_FUSE_WINDOW": "10m", "TICKETWIRE_RULE_MEMORY": "30d"}, role="check"
    )
    assert settings.fuse_window_s == 600 and settings.rule_memory_s == 30 * 86400
    defaults = Settings.from_env({}, role="check")
    assert defaults.fuse_window_s == 3600 and defaults.rule_memory_s == 90 * 86400
    with pytest.raises(ConfigError, match="TICKETWIRE_FUSE_WINDOW"):
        Settings.from_env({"TICKETWIRE_FUSE_WINDOW": "soon"}, role="check")


def test_human_durations() -> None:
    assert [human_duration(s) for s in (5, 720, 3600, 7500, 36 * 3600)] == [
        "5s",
        "12m",
        "1h",
        "2h5m",
        "1d12h",
    ]


async def test_dry_run_shows_suppressions_and_rearms(tmp_path, capsys, monkeypatch) -> None:
    from cli.dryrun import _dry_run
    from tests.test_receiver import envelope

    monkeypatch.setenv("TICKETWIRE_FUSE_PER_HOUR", "3")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text(
        """
name: escalate-once
vendor: inboxops
events: [ticket.updated]
if: {field: priority, equals: urgent}
once_per_ticket: true
rearm: {field: priority, not_equals: urgent}
then:
  - update: {status: in_progress}
"""
    )
    base = int(T0 * 1000)
    records = []
    for n, priority in enumerate(["urgent", "urgent", "low", "urgent"]):
        body = envelope(f"evt_{n}", priority=priority, updated_at=f"2026-11-23T10:0{n}:00Z")
        received = base + n * 20 * 60_000  # 20 minutes apart: past the echo window
        records.append(
            {
                "vendor": "inboxops",
                "event_id": f"evt_{n}",
                "received_ms": received,
                "body": body.decode(),
            }
        )
    cap = tmp_path / "cap.jsonl"
    cap.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert await _dry_run([cap], rules, None) == 0
    text = capsys.readouterr().out
    blocks = text.split("#")[1:]
    assert "fired   escalate-once" in blocks[0]
    assert (
        "suppressed escalate-once: once_per_ticket: fired at 2023-11-14T22:13:20Z (event evt_0); "
        "re-arms when priority not_equals 'urgent'"
    ) in blocks[1]
    assert "would   send nothing" in blocks[1]
    assert "re-armed escalate-once: priority not_equals 'urgent'" in blocks[2]
    assert "fired   escalate-once" in blocks[3] and "would   PATCH" in blocks[3]


# ---------------------------------------------------------------- real deliveries, real changes


async def test_cstar_delivery_of_our_own_write_is_an_echo(redis, keys, clock) -> None:
    from ticketwire.engine.changes import field_changes
    from ticketwire.vendors.cstar.webhook import parse as parse_cstar

    guard = make_guard(redis, keys, clock)
    body = {"status": "pending", "assignedTo": "ag_1"}
    call = ApiCall("cstar", "PATCH", "/tickets/tkt_42", body, "tkt_42", rules=("park",))
    ticket = {"id": "tkt_42", "title": "Cannot log in", "status": "pending", "priority": "high"}
    delivery = {
        "id": "evt_2",
        "type": "ticket.updated",
        "created_at": "2025-11-24T15:00:00Z",
        "team_id": "team-1",
        "data": {
            "ticket": {**ticket, "assigned_to": "ag_1", "updated_at": "2025-11-24T15:00:00Z"},
            "changes": {
                "status": {"from": "open", "to": "pending"},
                "assigned_to": {"from": None, "to": "ag_1"},
            },
        },
    }
    event = parse_cstar(json.dumps(delivery).encode())
    await guard.wrote([(event.ticket_key, call)])
    verdict = await guard.check(
        event.ticket_key,
        [("park", "fp"), ("other", "fp2")],
        event_id=event.id,
        changes=field_changes(event),
        vendor="cstar",
    )
    assert verdict.allowed == ("other",)
    assert (
        "our own write of assigned_to, common.assignee, common.status, status"
        in (verdict.suppressed[0][1])
    )
    # Somebody else also changed the priority in the same edit: not an echo.
    delivery["data"]["changes"]["priority"] = {"from": "low", "to": "high"}  # type: ignore[index]
    mixed = parse_cstar(json.dumps(delivery).encode())
    verdict = await guard.check(
        mixed.ticket_key, [("park", "fp")], event_id="evt_3", changes=field_changes(mixed)
    )
    assert verdict.allowed == ("park",)


async def test_thena_delivery_of_our_own_write_is_an_echo(redis, keys, clock) -> None:
    from ticketwire.engine.changes import field_changes
    from ticketwire.vendors.thena.webhook import parse as parse_thena

    guard = make_guard(redis, keys, clock)
    before = {
        "id": "CT1",
        "title": "Printer on fire",
        "statusId": "st-open",
        "statusName": "Open",
        "teamId": "T1",
        "updatedAt": "2025-01-06T09:00:00.000Z",
    }
    after = {
        **before,
        "statusId": "st-hold",
        "statusName": "On Hold",
        "updatedAt": "2025-01-06T09:00:01.000Z",
    }
    delivery = {
        "eventId": "evt-2",
        "eventType": "ticket:updated",
        "timestamp": "2025-01-06T09:00:01.000Z",
        "orgId": "ORG1",
        "payload": {"ticket": after, "previousTicket": before},
    }
    event = parse_thena(json.dumps(delivery).encode())
    call = ApiCall(
        "thena", "PATCH", "/tickets/CT1", {"statusName": "On hold"}, "CT1", rules=("hold",)
    )
    await guard.wrote([(event.ticket_key, call)])
    verdict = await guard.check(
        event.ticket_key,
        [("hold", "fp")],
        event_id=event.id,
        changes=field_changes(event),
        vendor="thena",
    )
    assert verdict.allowed == ()
    assert "our own write of common.status, statusName" in verdict.suppressed[0][1]


async def test_state_read_with_the_ticket_state_decides_like_a_check_of_its_own(
    redis, keys, clock
) -> None:
    from workers.ticketstate import TicketState

    guard = make_guard(redis, keys, clock, fuse_per_hour=2)
    limits = {"once": FiringLimits(once_per_ticket=True)}
    await guard.record(TICKET, [("once", "fp1"), ("x", "fp2")], event_id="e1", limits=limits)
    await guard.wrote([(TICKET, patch({"priority": "high"}, "x"))])
    clock.advance(1)
    event = Event(
        vendor="inboxops",
        type="ticket.updated",
        id="e2",
        tenant="acme",
        created_at=datetime.fromtimestamp(T0, tz=UTC),
        ticket_id="t1",
        ticket={"id": "t1", "priority": "high"},
    )
    seen = await TicketState(redis, keys, ttl_s=60).observe(
        event,
        {"priority"},
        guard_keys=guard.prefetch_keys(TICKET),
        guard_since_ms=guard.fuse_since_ms(),
    )
    assert seen.prefetched is not None
    fired = [("once", "fp9"), ("x", "fp3"), ("y", "fp4")]
    changes = {"priority": ("normal", "high")}
    kw: dict[str, Any] = {"event_id": "e2", "limits": limits, "changes": changes}
    own = await guard.check(TICKET, fired, vendor="inboxops", **kw)
    ridden = await guard.check(TICKET, fired, vendor="inboxops", prefetched=seen.prefetched, **kw)
    assert ridden == own
    # Not vacuous: once_per_ticket, the echo of our write and the fuse all decided something.
    assert {name for name, _ in own.suppressed} == {"once", "x", "y"}
