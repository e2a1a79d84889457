"""When time-based rules run: cron expressions and intervals, at minute resolution, in UTC (pure).

A cron expression has the five classic fields `minute hour day-of-month month day-of-week`
(`*`, `*/15`, `1-5`, `9-17/2`, `mon,wed`, `jan-mar`; `0` and `7` are Sunday) or is one of
`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`. As in cron, a
rule restricted by both day-of-month and day-of-week runs on days matching either.

An interval (`every: 15m`) is a whole number of minutes counted from Monday 2001-01-01 00:00
UTC, so `15m` runs at :00, :15, :30 and :45, `1h` on the hour, `1d` at midnight and `1w` on
Mondays at midnight, on every worker and after every restart alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ticketwire.engine.durations import MAX_DURATION_DAYS
from ticketwire.engine.nodes import Node, suggest
from ticketwire.engine.select import Selection, check_select
from ticketwire.errors import RuleConfigError
from ticketwire.vendors.registry import names, spoken_list

#: Rule keys (YAML) of time-based rules.
SCHEDULE_KEYS: tuple[str, ...] = ("schedule", "every", "select")
_EVENT_KEYS = ("events", "event", "on")
#: Intervals count from this instant (a Monday), so weekly intervals land on Mondays.
INTERVAL_ANCHOR = datetime(2001, 1, 1, tzinfo=UTC)
#: How far `next_after` looks ahead before calling a schedule impossible (covers leap days).
_HORIZON_DAYS = 366 * 8 + 2

CRON_HELP = (
    "five fields 'minute hour day-of-month month day-of-week', e.g. '*/15 * * * *' "
    "(every 15 minutes) or '0 9 * * mon-fri' (9:00 UTC on weekdays), or @hourly, @daily, "
    "@weekly, @monthly, @yearly"
)
EVERY_HELP = "a whole number of minutes with a unit, e.g. 15m, 1h, 1h30m, 1d, 1w"

MACROS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...], int], ...] = (
    # (name, low, high, names, value of the first name)
    ("minute", 0, 59, (), 0),
    ("hour", 0, 23, (), 0),
    ("day-of-month", 1, 31, (), 1),
    ("month", 1, 12, MONTH_NAMES, 1),
    ("day-of-week", 0, 7, DAY_NAMES, 0),
)
_INTERVAL = re.compile(r"^(?:\d+[smhdw])+$")
_INTERVAL_PART = re.compile(r"(\d+)([smhdw])")
_MAX_DIGITS = 12
_INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ScheduleError(ValueError):
    """A schedule or interval could not be understood; the message says what is accepted."""

    def __init__(self, message: str, accepted: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.accepted = tuple(accepted)


def run_minute(moment: datetime) -> datetime:
    """`moment` in UTC, cut to the start of its minute (a naive value is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(second=0, microsecond=0)


def show_minute(moment: datetime, *, beside: datetime | None = None) -> str:
    """`10:15`, or `2025-01-06 10:15` when `beside` is on another day (both UTC)."""
    moment = run_minute(moment)
    if beside is not None and run_minute(beside).date() == moment.date():
        return moment.strftime("%H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Schedule:
    """When a rule runs: a cron expression or an interval, checked minute by minute in UTC."""

    #: As written: `*/15 * * * *`, `@daily`, or `every 15m`.
    text: str
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    #: Days of the week, 0 = Sunday.
    weekdays: frozenset[int] = frozenset()
    #: True when the field was `*` (or `*/n`): cron's day-of-month/day-of-week rule needs it.
    any_day: bool = True
    any_weekday: bool = True
    #: Set for `every:` schedules: the interval in minutes.
    interval: int | None = None

    def due(self, moment: datetime) -> bool:
        """True when the rule runs in the minute that holds `moment`."""
        minute = run_minute(moment)
        if self.interval is not None:
            elapsed = int((minute - INTERVAL_ANCHOR).total_seconds()) // 60
            return elapsed % self.interval == 0
        return (
            minute.minute in self.minutes
            and minute.hour in self.hours
            and self._day_matches(minute.date())
        )

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        # date.weekday() counts from Monday = 0; cron counts from Sunday = 0.
        in_weekdays = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def next_after(self, moment: datetime) -> datetime | None:
        """The first minute strictly after `moment` when the rule runs (None: it never does)."""
        start = run_minute(moment) + timedelta(minutes=1)
        if self.interval is not None:
            elapsed = int((start - INTERVAL_ANCHOR).total_seconds()) // 60
            wait = (-elapsed) % self.interval
            return start + timedelta(minutes=wait)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for offset in range(_HORIZON_DAYS):
            day = start.date() + timedelta(days=offset)
            if not self._day_matches(day):
                continue
            for hour in hours:
                for minute in minutes:
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if candidate >= start:
                        return candidate
        return None

    def latest_due(self, moment: datetime, *, lookback_minutes: int) -> datetime | None:
        """The latest minute at or before `moment`, at most `lookback_minutes` back, that is due."""
        minute = run_minute(moment)
        for back in range(lookback_minutes + 1):
            candidate = minute - timedelta(minutes=back)
            if self.due(candidate):
                return candidate
        return None

    def describe(self) -> str:
        """For logs and the `check` table: `schedule */15 * * * *` or `every 15m`."""
        return self.text if self.interval is not None else f"schedule {self.text}"


def parse_cron(text: object) -> Schedule:
    """Parse a five-field cron expression or an @macro; raise `ScheduleError` saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError(f"expected a cron expression: {CRON_HELP}")
    written = " ".join(text.split())
    expression = written
    if expression.startswith("@"):
        macro = expression.lower()
        if macro not in MACROS:
            raise ScheduleError(
                f"unknown schedule {written!r}{suggest(macro, MACROS)}; a schedule is {CRON_HELP}",
                accepted=tuple(MACROS),
            )
        expression = MACROS[macro]
    fields = expression.split(" ")
    if len(fields) in (6, 7):
        raise ScheduleError(
            f"{written!r} has {len(fields)} fields, but schedules run at minute resolution: "
            "there is no seconds (or year) field; write five fields 'minute hour day-of-month "
            "month day-of-week', e.g. '*/15 * * * *'"
        )
    if len(fields) != 5:
        raise ScheduleError(f"{written!r} has {len(fields)} fields; expected {CRON_HELP}")
    try:
        values = [
            _cron_field(raw, name, low, high, names, first)
            for raw, (name, low, high, names, first) in zip(fields, _FIELDS, strict=True)
        ]
    except ScheduleError as exc:
        raise ScheduleError(f"{written!r}: {exc.message}", exc.accepted) from None
    # Both 0 and 7 name Sunday.
    weekdays = frozenset(0 if d == 7 else d for d in values[4])
    schedule = Schedule(
        text=written,
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        any_day=fields[2].startswith("*"),
        any_weekday=fields[4].startswith("*"),
    )
    if schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ScheduleError(f"{written!r} never runs: none of its months has that day of the month")
    return schedule


def _cron_field(
    raw: str, name: str, low: int, high: int, names: tuple[str, ...], first: int
) -> frozenset[int]:
    out: set[int] = set()
    for item in raw.split(","):
        if not item:
            raise ScheduleError(f"{name} field {raw!r} has an empty item between commas")
        body, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(
                    f"{name} field {raw!r}: the step after '/' must be a whole number above 0"
                )
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            left, _, right = body.partition("-")
            start = _cron_value(left, name, low, high, names, first)
            end = _cron_value(right, name, low, high, names, first)
            if end < start:
                raise ScheduleError(
                    f"{name} field {raw!r}: the range {body!r} runs backwards; write the "
                    "smaller value first"
                )
        else:
            start = _cron_value(body, name, low, high, names, first)
            # `5/10` means from 5 to the end in steps of 10, as in Vixie cron.
            end = high if slash else start
        out.update(range(start, end + 1, step))
    return frozenset(out)


def _cron_value(
    text: str, name: str, low: int, high: int, names: tuple[str, ...], first: int
) -> int:
    if text.isdigit():
        value = int(text)
        if not low <= value <= high:
            raise ScheduleError(f"{name} {value} is out of range {low}-{high}")
        return value
    lowered = text.lower()
    if names and lowered in names:
        return names.index(lowered) + first
    if names:
        raise ScheduleError(
            f"unknown {name} {text!r}{suggest(lowered, names)}",
            accepted=(f"{low}-{high}", *names),
        )
    raise ScheduleError(f"{name} {text!r} is not a number from {low} to {high}")


def parse_every(value: object) -> Schedule:
    """Parse an interval such as `15m`, `1h`, `1h30m`, `1d`; raise `ScheduleError` if invalid."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ScheduleError(f"expected {EVERY_HELP}")
    if isinstance(value, int):
        raise ScheduleError(f"{value!r} has no unit; write {value}m for minutes ({EVERY_HELP})")
    text = value.strip().replace(" ", "").lower()
    if text.isdigit():
        raise ScheduleError(f"{value!r} has no unit; write {text}m for minutes ({EVERY_HELP})")
    if not _INTERVAL.match(text):
        raise ScheduleError(f"{value!r} is not {EVERY_HELP}")
    parts = _INTERVAL_PART.findall(text)
    # Bounded before int() (which refuses over 4300 digits) and before the next run is computed
    # (a date-time moved by more overflows).
    too_long = any(len(n) > _MAX_DIGITS for n, _ in parts)
    seconds = 0 if too_long else sum(int(n) * _INTERVAL_UNITS[u] for n, u in parts)
    if too_long or seconds > MAX_DURATION_DAYS * 86400:
        raise ScheduleError(f"the interval is longer than {MAX_DURATION_DAYS} days ({EVERY_HELP})")
    if seconds < 60 or seconds % 60:
        raise ScheduleError(
            f"{value!r}: schedules run at minute resolution, so the interval must be a whole "
            "number of minutes (at least 1m)"
        )
    return Schedule(text=f"every {text}", interval=seconds // 60)


def yaml_schedule(
    node: Node, vendor: str | None, issues: list[RuleConfigError]
) -> tuple[Schedule | None, Selection | None]:
    """Read a YAML rule's `schedule:`/`every:` and `select:`, adding every mistake to `issues`."""
    present = [k for k in ("schedule", "every") if k in node.value]
    if not present:
        if "select" in node.value:
            issues.append(
                RuleConfigError(
                    "select: only applies to a scheduled rule; add schedule: or every: (an "
                    "event rule's conditions go in if:)",
                    line=node.key_line("select"),
                )
            )
        return None, None
    if len(present) > 1:
        issues.append(
            RuleConfigError(
                "use one of schedule: (a cron expression) or every: (an interval), not both",
                line=node.key_line(present[1]),
            )
        )
        return None, None
    key = present[0]
    value = node.value[key]
    schedule: Schedule | None = None
    try:
        schedule = parse_cron(value.value) if key == "schedule" else parse_every(value.value)
    except ScheduleError as exc:
        issues.append(
            RuleConfigError(f"{key}: {exc.message}", line=value.line, accepted=exc.accepted)
        )
    given = [k for k in _EVENT_KEYS if k in node.value]
    if given:
        issues.append(
            RuleConfigError(
                f"a scheduled rule runs on its {key}:, not on events; remove {given[0]}: "
                "(or write two rules)",
                line=node.key_line(given[0]),
            )
        )
    if vendor is None:
        if "vendor" not in node.value:
            issues.append(
                RuleConfigError(
                    f"a scheduled rule needs vendor: ({spoken_list(names())}): it lists "
                    "tickets through that helpdesk's API",
                    line=node.key_line(key),
                )
            )
        return schedule, None
    select, found = check_select(vendor, node.value.get("select"))
    issues.extend(found)
    return schedule, select
