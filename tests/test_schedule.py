"""Time-based rules, the pure parts: cron and interval matching, `select:` checks, YAML and Python
declarations and their errors, the events built from listed tickets; plus tenant discovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from ticketwire.config import Settings
from ticketwire.engine import Context, Router, check_rules, render_table
from ticketwire.engine.schedule import (
    INTERVAL_ANCHOR,
    ScheduleError,
    parse_cron,
    parse_every,
    run_minute,
    show_minute,
)
from ticketwire.engine.select import (
    SCHEDULED_EVENT,
    compile_select,
    listed_event,
    scheduled_event_id,
)
from ticketwire.errors import ConfigError, RuleConfigError
from ticketwire.keys import Keys
from ticketwire.stored import StoredDelivery
from workers.app import worker_options
from workers.schedule import UNKNOWN_TENANT, RunReport, Tenants, cron_jobs

MON = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)  # a Monday


def due_minutes(expression: str, start: datetime, minutes: int) -> list[datetime]:
    schedule = parse_cron(expression)
    return [
        start + timedelta(minutes=m)
        for m in range(minutes)
        if schedule.due(start + timedelta(minutes=m))
    ]


# ---------------------------------------------------------------- cron


def test_every_quarter_hour() -> None:
    hits = due_minutes("*/15 * * * *", MON, 60)
    assert [h.minute for h in hits] == [0, 15, 30, 45]


@pytest.mark.parametrize(
    ("expression", "moment", "due"),
    [
        ("0 9 * * mon-fri", datetime(2025, 1, 6, 9, 0, tzinfo=UTC), True),
        ("0 9 * * mon-fri", datetime(2025, 1, 11, 9, 0, tzinfo=UTC), False),  # Saturday
        ("0 9 * * mon-fri", datetime(2025, 1, 6, 9, 1, tzinfo=UTC), False),
        ("30 8-17/3 * * *", datetime(2025, 1, 6, 14, 30, tzinfo=UTC), True),
        ("30 8-17/3 * * *", datetime(2025, 1, 6, 15, 30, tzinfo=UTC), False),
        ("0 0 1 jan,jul *", datetime(2025, 7, 1, 0, 0, tzinfo=UTC), True),
        ("0 0 * * 7", datetime(2025, 1, 5, 0, 0, tzinfo=UTC), True),  # 7 is Sunday too
        ("0 0 * * SUN", datetime(2025, 1, 5, 0, 0, tzinfo=UTC), True),
        ("5/20 * * * *", datetime(2025, 1, 6, 3, 45, tzinfo=UTC), True),
        ("5/20 * * * *", datetime(2025, 1, 6, 3, 5, 59, tzinfo=UTC), True),
        ("@hourly", datetime(2025, 1, 6, 3, 0, tzinfo=UTC), True),
        ("@daily", datetime(2025, 1, 6, 3, 0, tzinfo=UTC), False),
        ("@weekly", datetime(2025, 1, 5, 0, 0, tzinfo=UTC), True),
    ],
)
def test_cron_matching(expression: str, moment: datetime, due: bool) -> None:
    assert parse_cron(expression).due(moment) is due


def test_day_of_month_or_day_of_week_when_both_are_given() -> None:
    # As in cron: the 13th of the month, or any Friday.
    schedule = parse_cron("0 12 13 * fri")
    assert schedule.due(datetime(2025, 1, 13, 12, 0, tzinfo=UTC))  # a Monday the 13th
    assert schedule.due(datetime(2025, 1, 10, 12, 0, tzinfo=UTC))  # a Friday the 10th
    assert not schedule.due(datetime(2025, 1, 14, 12, 0, tzinfo=UTC))
    # With one of them `*`, both must hold.
    assert not parse_cron("0 12 13 * *").due(datetime(2025, 1, 10, 12, 0, tzinfo=UTC))


def test_next_after_and_latest_due() -> None:
    schedule = parse_cron("0 9 * * mon")
    assert schedule.next_after(MON + timedelta(hours=9)) == MON + timedelta(days=7, hours=9)
    assert schedule.next_after(MON) == MON + timedelta(hours=9)
    leap = parse_cron("0 0 29 2 *")
    assert leap.next_after(MON) == datetime(2028, 2, 29, tzinfo=UTC)
    quarter = parse_cron("*/15 * * * *")
    assert quarter.latest_due(MON + timedelta(minutes=44), lookback_minutes=60) == MON + timedelta(
        minutes=30
    )
    assert schedule.latest_due(MON + timedelta(hours=11), lookback_minutes=60) is None
    assert schedule.latest_due(MON + timedelta(hours=9, minutes=59), lookback_minutes=60) == (
        MON + timedelta(hours=9)
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/15 * * * * *", "6 fields, but schedules run at minute resolution"),
        ("0 */15 * * * * 2025", "7 fields, but schedules run at minute resolution"),
        ("* * *", "has 3 fields; expected five fields"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * febr *", "unknown month 'febr'; did you mean 'feb'?"),
        ("0 0 * * mnday", "unknown day-of-week 'mnday'"),
        ("0 17-9 * * *", "the range '17-9' runs backwards"),
        ("*/0 * * * *", "the step after '/' must be a whole number above 0"),
        ("0 0 30 2 *", "never runs"),
        ("@reboot", "unknown schedule '@reboot'"),
        ("1,,2 * * * *", "empty item"),
        ("", "expected a cron expression"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_cron(expression)
    assert message in err.value.message


# ---------------------------------------------------------------- intervals


@pytest.mark.parametrize(
    ("text", "minutes"), [("15m", 15), ("1h", 60), ("1h30m", 90), ("1d", 1440), ("1w", 10080)]
)
def test_intervals(text: str, minutes: int) -> None:
    assert parse_every(text).interval == minutes


def test_intervals_count_from_a_fixed_monday() -> None:
    hourly, weekly, quarter = parse_every("1h"), parse_every("1w"), parse_every("15m")
    assert INTERVAL_ANCHOR.weekday() == 0
    assert weekly.due(MON) and not weekly.due(MON + timedelta(days=1))
    assert hourly.due(MON + timedelta(hours=5)) and not hourly.due(MON + timedelta(minutes=5))
    assert [m for m in range(60) if quarter.due(MON + timedelta(minutes=m))] == [0, 15, 30, 45]
    assert quarter.next_after(MON + timedelta(minutes=1)) == MON + timedelta(minutes=15)
    assert quarter.next_after(MON) == MON + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30s", "minute resolution"),
        ("90s", "minute resolution"),
        ("1m30s", "minute resolution"),
        (15, "has no unit; write 15m"),
        ("15", "has no unit; write 15m"),
        ("every 5m", "is not a whole number of minutes"),
        ("5 minutes", "is not a whole number of minutes"),
        (True, "expected a whole number of minutes"),
    ],
)
def test_bad_intervals(value: Any, message: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_every(value)
    assert message in err.value.message


def test_minutes_are_utc() -> None:
    from zoneinfo import ZoneInfo

    berlin = datetime(2025, 1, 6, 10, 15, 42, tzinfo=ZoneInfo("Europe/Berlin"))
    assert run_minute(berlin) == datetime(2025, 1, 6, 9, 15, tzinfo=UTC)
    assert show_minute(berlin) == "2025-01-06 09:15"
    assert show_minute(berlin, beside=berlin) == "09:15"


# ---------------------------------------------------------------- select


def test_inboxops_select_becomes_list_filters_resolved_at_the_run() -> None:
    selection = compile_select(
        "inboxops",
        {
            "status": ["waiting", "open"],
            "updated_before": "-96h",
            "created_after": "2025-01-01T00:00:00Z",
            "custom_field_tier": "gold",
            "custom_fields": {"plan": None, "score": 4},
            "tag_ids": "t1",
        },
    )
    run = datetime(2025, 1, 10, 13, 0, tzinfo=UTC)
    assert selection.filters(run) == {
        "sort": "created_at",
        "order": "asc",
        "status": ["waiting", "open"],
        "updated_before": run - timedelta(hours=96),
        "created_after": datetime(2025, 1, 1, tzinfo=UTC),
        "tag_ids": "t1",
        "custom_fields": {"tier": "gold", "plan": None, "score": 4},
    }
    later = run + timedelta(hours=1)
    assert selection.filters(later)["updated_before"] == later - timedelta(hours=96)


def test_select_for_cstar_and_thena() -> None:
    cstar = compile_select("cstar", {"status": "pending", "assignedTo": "agent_1"})
    assert cstar.filters(MON) == {"status": "pending", "assignedTo": "agent_1"}
    thena = compile_select("thena", {"team_id": "T1", "dateRange": "1w"})
    assert thena.filters(MON) == {"teamId": "T1", "dateRange": "1w"}
    assert compile_select("thena", None).filters(MON) == {}


@pytest.mark.parametrize(
    ("vendor", "select", "message"),
    [
        ("inboxops", {"stauts": "open"}, "unknown inboxops list filter 'stauts'; did you mean"),
        ("inboxops", {"status": "wating"}, "unknown status value 'wating'; did you mean 'waiting'"),
        ("inboxops", {"updated_before": "48h"}, "'48h' needs a sign: -48h means 48h before"),
        ("inboxops", {"updated_before": "yesterday"}, "neither an ISO 8601 date-time"),
        ("inboxops", {"page": 2}, "ticketwire pages through every matching ticket itself"),
        ("inboxops", {"per_page": 50}, "is not a filter"),
        ("inboxops", {"q": "a", "query": "b", "priority": 3}, "priority expects text"),
        # inboxops-list-tickets documents status and tag_ids as comma-separated, not priority.
        ("inboxops", {"priority": ["low", "high"]}, "priority takes one value on inboxops"),
        ("inboxops", {"custom_field_x": [1, 2]}, "custom field 'x' takes one value"),
        ("inboxops", {f"custom_field_k{i}": i for i in range(11)}, "at most 10 custom field"),
        ("inboxops", ["status"], "expects a mapping"),
        ("cstar", {"status": "waiting"}, "unknown status value 'waiting'"),
        ("cstar", {"status": ["new", "open"]}, "status takes one value on cstar"),
        ("cstar", {"updated_before": "-48h"}, "other conditions go in if:"),
        ("thena", {"status": "Open"}, "unknown thena list filter 'status'"),
        ("thena", {"teamId": "a", "team_id": "b"}, "repeats the filter 'teamId'"),
        ("thena", {"dateRange": "5d"}, "unknown dateRange value '5d'"),
    ],
)
def test_bad_select_says_what_is_wrong(vendor: str, select: Any, message: str) -> None:
    with pytest.raises(RuleConfigError) as err:
        compile_select(vendor, select)
    assert message in err.value.message


# ---------------------------------------------------------------- events from listed tickets


RUN = datetime(2025, 1, 10, 13, 15, tzinfo=UTC)


def test_inboxops_listed_ticket_is_an_event_like_a_webhook() -> None:
    ticket = {"id": "t1", "status": "waiting", "priority": "high", "assignee_id": "a1"}
    event = listed_event("inboxops", ticket, rule="remind", tenant="ws1", run_at=RUN)
    assert event.type == SCHEDULED_EVENT == "ticket.scheduled"
    assert event.id == "sched:remind:20250110T1315Z:t1" == scheduled_event_id("remind", RUN, "t1")
    assert event.created_at == RUN
    assert event.ticket_key == "inboxops:ws1:t1"
    assert event.ticket == ticket
    assert event.common == {
        "status": "waiting",
        "priority": "high",
        "assignee": "a1",
        "tags": None,
        "subject": None,
    }


def test_cstar_listed_ticket_uses_the_webhook_field_names() -> None:
    item = {
        "id": "tkt_1",
        "title": "Refund",
        "status": "pending",
        "priority": "urgent",
        "assignedTo": "agent_9",
        "tags": ["vip"],
        "updatedAt": "2025-01-01T00:00:00Z",
        "messageCount": 3,
    }
    event = listed_event("cstar", item, rule="r", tenant="team", run_at=RUN)
    assert event.ticket["updated_at"] == "2025-01-01T00:00:00Z"
    assert event.ticket["assigned_to"] == "agent_9"
    assert event.ticket["messageCount"] == 3
    assert event.common["status"] == "waiting"
    assert event.common["tags"] == ["vip"]


def test_thena_listed_ticket_gets_its_assignee_id() -> None:
    item = {"id": "T9", "status": "On hold", "assignedAgent": {"id": "ag1"}, "title": "x"}
    event = listed_event("thena", item, rule="r", tenant="org", run_at=RUN)
    assert event.ticket["assignedAgentId"] == "ag1"
    assert event.common["status"] == "waiting"
    assert event.common["assignee"] == "ag1"


def test_a_listed_ticket_without_id_is_refused() -> None:
    with pytest.raises(ValueError, match="no id"):
        listed_event("inboxops", {"status": "open"}, rule="r", tenant="t", run_at=RUN)


# ---------------------------------------------------------------- YAML and Python declarations


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_yaml_scheduled_rule_loads_and_shows_in_the_table(tmp_path: Path) -> None:
    write(
        tmp_path / "rules",
        "close.yml",
        """
- name: close_stale_waiting
  vendor: inboxops
  schedule: "*/15 * * * *"
  select: {status: waiting, updated_before: -96h, custom_field_tier: gold}
  if: {field: priority, in: [low, normal]}
  then: [{set_status: closed}]
- name: hourly
  vendor: cstar
  every: 1h
  then: [{set_status: open}]
""",
    )
    router, errors = check_rules(tmp_path / "rules")
    assert errors == []
    assert router is not None
    close = router.get("close_stale_waiting")
    assert close.events == frozenset()
    assert close.schedule is not None and close.schedule.text == "*/15 * * * *"
    assert close.select is not None and close.select.custom_fields == {"tier": "gold"}
    assert router.rules_for(SCHEDULED_EVENT, "inboxops") == []
    table = render_table(router)
    assert "schedule */15 * * * *  close_stale_waiting  inboxops" in table
    assert "every 1h" in table


def errors_of(tmp_path: Path, text: str) -> list[str]:
    write(tmp_path / "rules", "rules.yml", text)
    _, errors = check_rules(tmp_path / "rules")
    return [str(e) for e in errors]


def test_yaml_errors_name_file_line_and_what_to_do(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
- name: seconds
  vendor: inboxops
  schedule: "*/15 * * * * *"
  then: [{set_status: closed}]
- name: typo
  schedul: "*/15 * * * *"
  vendor: inboxops
  then: [{set_status: closed}]
- name: both
  vendor: inboxops
  every: 30s
  events: [ticket.created]
  then: [{set_status: closed}]
- name: unpinned
  every: 1h
  then: [{set_status: closed}]
- name: filters
  vendor: inboxops
  every: 1h
  select: {status: wating, updated_before: 48h}
  then: [{set_status: closed}]
- name: event-rule
  events: [ticket.created]
  select: {status: open}
  then: [{set_status: closed}]
- name: two-schedules
  vendor: inboxops
  every: 1h
  schedule: "@daily"
  then: [{set_status: closed}]
""",
    )
    path = str(tmp_path / "rules" / "rules.yml")
    assert errors == [
        (
            f"{path}:3: rule 'seconds': schedule: '*/15 * * * * *' has 6 fields, but schedules run "
            "at minute resolution: there is no seconds (or year) field; write five fields 'minute "
            "hour day-of-month month day-of-week', e.g. '*/15 * * * *'"
        ),
        f"{path}:6: rule 'typo': unknown key 'schedul'; did you mean 'schedule'? (accepted: "
        + errors[1].split("(accepted: ")[1],
        (
            f"{path}:11: rule 'both': every: '30s': schedules run at minute resolution, so the "
            "interval must be a whole number of minutes (at least 1m)"
        ),
        (
            f"{path}:12: rule 'both': a scheduled rule runs on its every:, not on events; remove "
            "events: (or write two rules)"
        ),
        (
            f"{path}:15: rule 'unpinned': a scheduled rule needs vendor: (inboxops, cstar or thena): "
            "it lists tickets through that helpdesk's API"
        ),
        (
            f"{path}:20: rule 'filters': select: unknown status value 'wating'; did you mean "
            "'waiting'? (accepted: open, in_progress, waiting, resolved, closed)"
        ),
        (
            f"{path}:20: rule 'filters': select: updated_before: '48h' needs a sign: -48h means 48h "
            "before the run's time"
        ),
        (
            f"{path}:24: rule 'event-rule': select: only applies to a scheduled rule; add schedule: "
            "or every: (an event rule's conditions go in if:)"
        ),
        (
            f"{path}:28: rule 'two-schedules': use one of schedule: (a cron expression) or every: "
            "(an interval), not both"
        ),
    ]


def test_an_unquoted_cron_expression_gets_a_hint(tmp_path: Path) -> None:
    [error] = errors_of(
        tmp_path, "name: x\nvendor: inboxops\nschedule: */15 * * * *\nthen: [{set_status: open}]\n"
    )
    assert ":3: invalid YAML" in error
    assert 'quote the cron expression, e.g. schedule: "*/15 * * * *"' in error


def test_python_scheduled_rules() -> None:
    router = Router()

    @router.every(
        "1h",
        vendor="inboxops",
        select={"status": "waiting"},
        when={"field": "priority", "equals": "low"},
    )
    async def nudge(ctx: Context) -> None:
        """Nudge low-priority waiting tickets."""
        ctx.add_tags(["t"])

    @router.cron("0 9 * * mon-fri", vendor="cstar", name="morning")
    async def morning(ctx: Context) -> None:
        ctx.set_status("open")

    @router.every(
        "1d",
        vendor="thena",
        once_per_ticket=True,
        rearm={"field": "common.status", "not_equals": "waiting"},
        name="limited",
    )
    async def limited(ctx: Context) -> None:
        ctx.set_status("open")

    limits = router.get("limited").limits
    assert limits.once_per_ticket and limits.rearm is not None
    hourly = router.get("test_schedule.nudge")
    assert hourly.schedule is not None and hourly.schedule.interval == 60
    assert hourly.description == "Nudge low-priority waiting tickets."
    assert router.get("morning").schedule == parse_cron("0 9 * * mon-fri")
    assert router.rules_for("ticket.updated", "inboxops") == []


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (lambda r: r.every("30s", vendor="inboxops"), "router.every(): '30s': schedules run"),
        (lambda r: r.cron("* * * * * *", vendor="inboxops"), "router.cron(): '* * * * * *' has 6"),
        (lambda r: r.every("1h", vendor="zendesk"), "unknown vendor for a scheduled rule"),
        (lambda r: r.every("1h", vendor="cstar", select={"priorty": "high"}), "did you mean"),
        (lambda r: r.every("1h", vendor="inboxops", when={"field": "x", "equal": 1}), "when=:"),
    ],
)
def test_python_errors_point_at_the_function(register: Any, message: str) -> None:
    router = Router()
    with pytest.raises(RuleConfigError) as err:

        @register(router)
        async def rule(ctx: Context) -> None:
            pass

    assert message in err.value.message
    assert err.value.file is not None and err.value.file.endswith("test_schedule.py")


# ---------------------------------------------------------------- worker wiring


def test_the_per_minute_job_is_registered_only_with_scheduled_rules() -> None:
    settings = Settings(redis_url="redis://localhost:6379/0")
    plain = Router()

    @plain.on("ticket.created", vendor="inboxops")
    async def on_created(ctx: Context) -> None:
        pass

    assert worker_options(settings, plain)["cron_jobs"] == []
    timed = Router()

    @timed.every("15m", vendor="inboxops")
    async def tick(ctx: Context) -> None:
        pass

    [job] = worker_options(settings, timed)["cron_jobs"]
    assert job.name == "run_schedules" and job.unique and job.second == 0
    assert job.minute is None and job.hour is None
    # Without a router, rules are loaded at start: the job is there to find out.
    assert len(cron_jobs(None)) == 1


def test_schedule_max_tickets_setting() -> None:
    env = {"REDIS_URL": "redis://x", "INBOXOPS_API_URL": "http://x", "INBOXOPS_API_KEY": "ixk_1"}
    assert Settings.from_env(env, role="worker").schedule_max_tickets == 10_000
    settings = Settings.from_env({**env, "TICKETWIRE_SCHEDULE_MAX_TICKETS": "500"}, role="worker")
    assert settings.schedule_max_tickets == 500
    with pytest.raises(ConfigError, match="TICKETWIRE_SCHEDULE_MAX_TICKETS"):
        Settings.from_env({**env, "TICKETWIRE_SCHEDULE_MAX_TICKETS": "0"}, role="worker")


def test_run_report_line() -> None:
    report = RunReport("close", RUN, listed=10_000, fired=3, calls=3, duration_s=1.5, capped=True)
    assert report.line() == (
        "scheduled rule close run of 2025-01-10 13:15: 10000 tickets listed, 3 fired, 3 calls "
        "queued, 1.50s; stopped at the cap of 10000 tickets (TICKETWIRE_SCHEDULE_MAX_TICKETS): "
        "the rest wait for the next run"
    )


async def test_tenant_comes_from_settings_or_the_newest_stored_webhook(
    redis: Redis, keys: Keys
) -> None:
    tenants = Tenants(redis, keys, partitions=2, known={"cstar": "team-1", "thena": None})
    assert await tenants.get("cstar") == "team-1"
    assert await tenants.get("inboxops") == UNKNOWN_TENANT
    delivery = StoredDelivery(
        vendor="inboxops",
        event_id="e1",
        event_type="ticket.updated",
        ticket_key="inboxops:ws-42:t9",
        body=b"{}",
        received_ms=1,
    )
    await redis.xadd(keys.stream(1), delivery.to_fields())  # type: ignore[arg-type]
    assert await tenants.get("inboxops") == "ws-42"
    assert await tenants.get("thena") == UNKNOWN_TENANT
