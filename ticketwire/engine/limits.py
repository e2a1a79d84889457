"""Per-rule firing limits on a ticket: `once_per_ticket`, `cooldown` and `rearm`, checked at load.

- `once_per_ticket: true`: after the rule fires on a ticket it is disarmed there; it fires again
  only after an event on which its `rearm` condition holds (without `rearm`, never again).
- `cooldown: 30m`: the rule does not fire again on the same ticket within that time. With
  `rearm` alone (no `once_per_ticket`), an event on which `rearm` holds ends the cooldown early;
  with both, firing again needs the rearm event and the cooldown to have passed.
- `rearm: <condition>`: written like `if:`; it is checked on every event of the ticket from the
  rule's helpdesk, whether or not the rule's own events or condition match.

The loop guard enforces the limits per ticket in Redis; this module only describes and validates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from ticketwire.engine.conditions import Condition, FieldSchema, compile_condition
from ticketwire.engine.durations import DurationTooLong, TimeSpecError, parse_duration
from ticketwire.engine.nodes import Node, kind_of
from ticketwire.errors import RuleConfigError
from ticketwire.event import Event

if TYPE_CHECKING:
    from ticketwire.engine.router import Rule

#: Rule keys (YAML) and keyword arguments (Python) this module reads.
LIMIT_KEYS: tuple[str, ...] = ("once_per_ticket", "cooldown", "rearm")
COOLDOWN_HELP = "a positive duration such as 30m, 24h or 1d12h (units s, m, h, d, w)"


@dataclass(frozen=True)
class FiringLimits:
    """How often a rule may fire on one ticket."""

    once_per_ticket: bool = False
    #: Seconds, or None for no cooldown.
    cooldown_s: float | None = None
    rearm: Condition | None = None

    @property
    def active(self) -> bool:
        """True when the loop guard must remember this rule's firings per ticket."""
        return self.once_per_ticket or self.cooldown_s is not None

    def rearm_text(self) -> str:
        """The rearm condition in words, or an empty string."""
        return self.rearm.describe() if self.rearm is not None else ""

    def describe(self) -> str:
        """E.g. `once per ticket, re-armed when status not_equals 'waiting'; cooldown 30m`."""
        parts = []
        if self.once_per_ticket:
            parts.append("once per ticket")
        if self.cooldown_s is not None:
            parts.append(f"cooldown {human_duration(self.cooldown_s)}")
        text = ", ".join(parts)
        if self.rearm is not None:
            text += f"; re-armed when {self.rearm_text()}"
        return text


NO_LIMITS = FiringLimits()


def human_duration(seconds: float) -> str:
    """`45s`, `12m`, `2h5m`, `3d4h`: the two largest non-zero units, rounded down."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts[:2])


def parse_cooldown(value: object) -> float:
    """Read a cooldown (`30m`, `24h`, `1d12h` or a `timedelta`) as seconds; explain a bad one."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds <= 0:
            raise RuleConfigError(f"cooldown: must be longer than zero, got {value}")
        return seconds
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RuleConfigError(f"cooldown: expects {COOLDOWN_HELP}, got {kind_of(value)}")
    if isinstance(value, int | float):
        raise RuleConfigError(
            f"cooldown: {value} has no unit; write e.g. {value}m or {value}s ({COOLDOWN_HELP})"
        )
    text = value.strip()
    if text[:1] in "+-" and text[1:2].isdigit():
        raise RuleConfigError(
            f"cooldown: {text!r} has a sign; a cooldown is a length of time, write "
            f"{text[1:]!r} ({COOLDOWN_HELP})"
        )
    try:
        delta, _ = parse_duration(text)
    except DurationTooLong as exc:
        raise RuleConfigError(f"cooldown: {exc}") from None
    except TimeSpecError:
        raise RuleConfigError(f"cooldown: {text!r} is not {COOLDOWN_HELP}") from None
    if delta <= timedelta(0):
        raise RuleConfigError(f"cooldown: {text!r} must be longer than zero ({COOLDOWN_HELP})")
    return delta.total_seconds()


def firing_limits(
    *, once_per_ticket: object = False, cooldown: object = None, rearm: Condition | None = None
) -> FiringLimits:
    """Build and validate limits from already-compiled parts; raise `RuleConfigError` if unsound."""
    if not isinstance(once_per_ticket, bool):
        raise RuleConfigError(
            f"once_per_ticket: expects true or false, got {kind_of(once_per_ticket)}"
        )
    cooldown_s = None if cooldown is None else parse_cooldown(cooldown)
    if rearm is not None and not once_per_ticket and cooldown_s is None:
        raise RuleConfigError(
            "rearm: only has an effect with once_per_ticket: true or a cooldown: (it says when "
            "a rule that fired may fire again on the ticket); add one of them, or remove rearm:"
        )
    if once_per_ticket and cooldown_s is not None and rearm is None:
        raise RuleConfigError(
            "cooldown: has no effect here: with once_per_ticket: true and no rearm:, the rule "
            "never fires again on the ticket; add rearm: <condition>, or remove cooldown:"
        )
    return FiringLimits(once_per_ticket=once_per_ticket, cooldown_s=cooldown_s, rearm=rearm)


def limits_from_yaml(
    node: Node, schema: FieldSchema, issues: list[RuleConfigError]
) -> FiringLimits | None:
    """Read `once_per_ticket`, `cooldown` and `rearm` of a YAML rule; errors go to `issues`."""
    values = node.value
    if not any(key in values for key in LIMIT_KEYS):
        return NO_LIMITS
    before = len(issues)
    once: object = False
    if "once_per_ticket" in values:
        once = values["once_per_ticket"].value
        if not isinstance(once, bool):
            got = f"{kind_of(once)} {once!r}" if isinstance(once, str) else kind_of(once)
            hint = " (yes, no, on and off are text in rule files)" if isinstance(once, str) else ""
            issues.append(
                RuleConfigError(
                    f"once_per_ticket: expects true or false, got {got}{hint}",
                    line=values["once_per_ticket"].line,
                )
            )
            once = False
    cooldown: object = None
    if "cooldown" in values:
        cooldown = values["cooldown"].value
        try:
            parse_cooldown(cooldown)
        except RuleConfigError as exc:
            issues.append(RuleConfigError(exc.message, line=values["cooldown"].line))
            cooldown = None
    rearm = None
    if "rearm" in values:
        found: list[RuleConfigError] = []
        rearm = compile_condition(values["rearm"], schema, found)
        issues.extend(
            RuleConfigError(f"rearm: {e.message}", line=e.line, accepted=e.accepted) for e in found
        )
    if len(issues) != before:
        return None
    try:
        return firing_limits(once_per_ticket=once, cooldown=cooldown, rearm=rearm)
    except RuleConfigError as exc:
        key = "rearm" if exc.message.startswith("rearm") else "cooldown"
        issues.append(RuleConfigError(exc.message, line=node.key_line(key)))
        return None


def rearmed_by(rules: Iterable[Rule], event: Event) -> tuple[list[str], list[tuple[str, str]]]:
    """Names of the rules whose `rearm` condition holds on `event`, and (rule, error) failures.

    Only rules of the event's helpdesk (or of every helpdesk) are asked. A rearm condition that
    raises (a Python function) counts as not holding; the error is returned to be logged.
    """
    held: list[str] = []
    errors: list[tuple[str, str]] = []
    for rule in rules:
        rearm = rule.limits.rearm
        if rearm is None or (rule.vendor is not None and rule.vendor != event.vendor):
            continue
        try:
            if rearm.holds(event):
                held.append(rule.name)
        # A rule's broken rearm function must not stop the event's other rules.
        except Exception as exc:  # noqa: BLE001
            errors.append((rule.name, f"{type(exc).__name__}: {exc}"))
    return held, errors


def limits_of(rules: Iterable[Rule]) -> Mapping[str, FiringLimits]:
    """Rule name → limits, for the rules that have any."""
    return {rule.name: rule.limits for rule in rules if rule.limits.active}
