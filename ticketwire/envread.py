"""Typed, validated reads of environment variables; a bad value raises `ConfigError` naming it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlparse

from ticketwire.errors import ConfigError
from ticketwire.ratebudget import Limit, parse_limits
from ticketwire.secret import Secret

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|k|mb|mib|m)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
}


class Env:
    """Typed accessors over an environment mapping; empty values count as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ

    def text(self, name: str) -> str | None:
        """The stripped value of `name`, or None when unset or blank."""
        value = self._env.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        """`name` as an integer within [low, high], or `default` when unset."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"an integer from {low} to {high}", raw) from None
        if not low <= value <= high:
            raise ConfigError(name, f"an integer from {low} to {high}", raw)
        return value

    def duration(self, name: str, default: float, *, zero: bool = False) -> float:
        """`name` as seconds, written like 300ms, 30s, 15m, 72h or 3d; 0 only when `zero`."""
        raw = self.text(name)
        if raw is None:
            return default
        m = _DURATION.match(raw.lower())
        if not m or float(m.group(1)) < 0 or (float(m.group(1)) == 0 and not zero):
            what = "a duration (0 turns it off)" if zero else "a positive duration"
            raise ConfigError(name, f"{what} such as 300ms, 30s, 15m, 72h or 3d", raw)
        return float(m.group(1)) * _UNITS[m.group(2)]

    def limits(self, name: str, default: tuple[Limit, ...]) -> tuple[Limit, ...]:
        """`name` as rate limits (`100/min`, `write=1000/h`); `none` or `off`: no limits."""
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("none", "off"):
            return ()
        try:
            return parse_limits(raw)
        except ValueError as exc:
            raise ConfigError(
                name, f"rate limits like 100/min or write=1000/h ({exc})", raw
            ) from None

    def size(self, name: str, default: int) -> int:
        """`name` as bytes, bare or with a unit (256KiB, 1MiB)."""
        raw = self.text(name)
        if raw is None:
            return default
        m = _SIZE.match(raw)
        if not m or int(m.group(1)) <= 0:
            raise ConfigError(name, "a positive size in bytes, or with a unit: 256KiB, 1MiB", raw)
        unit = (m.group(2) or "b").lower()
        return int(m.group(1)) * _SIZE_UNITS[unit]

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        """`name` upper-cased, one of `choices`, or `default` when unset."""
        raw = self.text(name)
        if raw is None:
            return default
        if raw.upper() not in choices:
            raise ConfigError(name, f"one of {', '.join(choices)}", raw)
        return raw.upper()

    def url(self, name: str, *, schemes: tuple[str, ...]) -> str | None:
        """`name` as a URL with one of `schemes`, or None when unset."""
        raw = self.text(name)
        if raw is None:
            return None
        parsed = urlparse(raw)
        if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
            shown = " or ".join(f"{s}://…" for s in schemes)
            # Never echo a URL back: it may carry a password.
            raise ConfigError(name, f"a URL starting with {shown}")
        return raw

    def console_token(self, name: str) -> Secret | None:
        """`name` as the console token (at least 16 characters), or None when unset."""
        raw = self.text(name)
        if raw is None:
            return None
        # It is the only password of the console: a short one would be guessed.
        if len(raw) < 16:
            raise ConfigError(name, "a random token of at least 16 characters")
        return Secret(raw)

    def secrets(self, name: str) -> tuple[Secret, ...]:
        """`name` as comma-separated secrets, or none when unset."""
        raw = self.text(name)
        if raw is None:
            return ()
        parts = [p.strip() for p in raw.split(",")]
        if any(not p for p in parts):
            raise ConfigError(name, "comma-separated secrets with no empty entries")
        return tuple(Secret(p) for p in parts)
