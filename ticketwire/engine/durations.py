"""Instants in rules: ISO 8601, or a duration such as `+48h` or `-2d` relative to the event's time.

Relative values are anchored on the event's `created_at`, never on the clock, so replaying an
event decides the same way as the first delivery did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^([+-])?((?:\d+[smhdw])+)$")
_PART = re.compile(r"(\d+)([smhdw])")

#: The longest duration a rule may name (about 100 years): far past any ticket's life, and far
#: inside what a date-time can be moved by.
MAX_DURATION_DAYS = 36_500
_MAX_DIGITS = 12
DURATION_HELP = "a duration such as +30m, -48h, +2d, +1w (units s, m, h, d, w; e.g. -1d12h)"


class TimeSpecError(ValueError):
    """A duration or instant in a rule could not be understood."""


class DurationTooLong(TimeSpecError):
    """A duration longer than `MAX_DURATION_DAYS`."""


def parse_duration(text: str) -> tuple[timedelta, bool]:
    """Parse `+48h`, `-2d`, `1d12h`; return the signed delta and whether a sign was written."""
    match = _DURATION.match(text.strip().replace(" ", ""))
    if not match:
        raise TimeSpecError(f"{text!r} is not {DURATION_HELP}")
    sign, body = match.groups()
    parts = _PART.findall(body)
    # Digits are bounded before int(): Python refuses to read integers of over 4300 digits.
    if any(len(n) > _MAX_DIGITS for n, _ in parts):
        raise DurationTooLong(f"{_shown(text)} is longer than {MAX_DURATION_DAYS} days")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if seconds > MAX_DURATION_DAYS * 86400:
        # Any date-time plus a longer one would overflow when the rule runs.
        raise DurationTooLong(f"{_shown(text)} is longer than {MAX_DURATION_DAYS} days")
    delta = timedelta(seconds=-seconds if sign == "-" else seconds)
    return delta, sign is not None


def _shown(text: str) -> str:
    shown = repr(text.strip())
    return shown if len(shown) <= 40 else f"{shown[:30]}… ({len(text.strip())} characters)"


def to_utc(moment: datetime) -> datetime:
    """Return `moment` in UTC; a naive value is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    """Format as ISO 8601 UTC with a `Z` suffix, e.g. `2024-05-01T10:00:00Z`."""
    return to_utc(moment).isoformat().replace("+00:00", "Z")


def parse_datetime(value: object) -> datetime | None:
    """Read a ticket or event value as a UTC datetime; None when it is not one."""
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return to_utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Instant:
    """A point in time written in a rule: absolute, or an offset from the event's time."""

    text: str
    absolute: datetime | None = None
    offset: timedelta | None = None

    @property
    def relative(self) -> bool:
        """True when the instant depends on the event's time."""
        return self.offset is not None

    def resolve(self, anchor: datetime) -> datetime:
        """Return the UTC datetime this instant names for an event created at `anchor`."""
        if self.absolute is not None:
            return self.absolute
        assert self.offset is not None
        return to_utc(anchor) + self.offset

    def describe(self, anchor: datetime | None = None) -> str:
        """Human form: `2024-05-01T10:00:00Z`, or `2024-05-01T10:00:00Z (event time -48h)`."""
        if self.absolute is not None:
            return format_utc(self.absolute)
        if anchor is None:
            return f"event time {self.text}"
        return f"{format_utc(self.resolve(anchor))} (event time {self.text})"


def parse_instant(value: object, *, sign: str = "required") -> Instant:
    """Parse a rule's instant: ISO 8601 text, a YAML date/datetime, or a duration.

    `sign` says how a duration's sign is treated: `required` (conditions, where `48h` could
    mean either side of the event), or `future` (reminders: `48h` and `+48h` mean after the
    event, a negative duration is refused).
    """
    if isinstance(value, datetime | date):
        moment = parse_datetime(value)
        assert moment is not None
        return Instant(text=format_utc(moment), absolute=moment)
    if isinstance(value, timedelta):
        value = f"{'-' if value < timedelta(0) else '+'}{abs(int(value.total_seconds()))}s"
    if not isinstance(value, str) or not value.strip():
        raise TimeSpecError(f"expected an ISO 8601 date-time or {DURATION_HELP}, got {value!r}")
    text = value.strip()
    if _DURATION.match(text):
        delta, signed = parse_duration(text)
        if sign == "required" and not signed:
            raise TimeSpecError(
                f"{text!r} needs a sign: write -{text} for before the event or +{text} for after it"
            )
        if sign == "future" and delta < timedelta(0):
            raise TimeSpecError(f"{text!r} is before the event; a reminder must be after it")
        return Instant(text=text if signed else f"+{text}", offset=delta)
    moment = parse_datetime(text)
    if moment is None:
        raise TimeSpecError(
            f"{text!r} is neither an ISO 8601 date-time (e.g. 2024-05-01T10:00:00Z) "
            f"nor {DURATION_HELP}"
        )
    return Instant(text=format_utc(moment), absolute=moment)
