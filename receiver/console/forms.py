"""Read form fields and query strings defensively: wrong types and odd text read as absent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

#: Longest value any console field accepts.
MAX_FIELD = 500


def text_field(form: Mapping[str, Any], name: str) -> str:
    """A text field, stripped; "" when missing, not text, too long or holding control characters."""
    value = form.get(name)
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        return ""
    value = value.strip()
    return value if value.isprintable() else ""


_AGO = re.compile(r"^(\d{1,6})\s*(m|h|d)$")
_AGO_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
_STAMP_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")
_CURSOR = re.compile(r"^\d{1,20}-\d{1,20}$")


def parse_time(text: str, now_ms: int) -> int | None:
    """Epoch ms from `15m`/`2h`/`3d` (that long ago), a UTC date-time, or a date; else None."""
    text = text.strip().lower()
    m = _AGO.match(text)
    if m:
        return max(0, now_ms - int(m.group(1)) * _AGO_MS[m.group(2)])
    for fmt in (*_STAMP_FORMATS, "%Y-%m-%d"):
        try:
            stamp = datetime.strptime(text.upper(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return max(0, int(stamp.timestamp() * 1000))
    return None


def cursor(text: str) -> str | None:
    """A stream id used as a page cursor, or None when `text` is not one."""
    return text if _CURSOR.match(text) else None


def stamp(ms: int) -> str:
    """Epoch ms as a UTC date and time to the millisecond."""
    try:
        when = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
