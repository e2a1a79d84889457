"""Run the rules for one event and record, for each, whether it fired and why."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ticketwire.engine.actions import Action
from ticketwire.engine.context import Context
from ticketwire.engine.router import Router, Rule
from ticketwire.event import Event

if TYPE_CHECKING:
    from ticketwire.vendors import HelpdeskClient


@dataclass(frozen=True)
class Decision:
    """What one rule decided for one event: fired or not, why, and the actions it took."""

    rule: Rule
    fired: bool
    reason: str
    actions: tuple[Action, ...] = ()
    #: The exception when the rule failed (reason starts with `error:`).
    error: Exception | None = None
    #: What the rule logged through `ctx.log`, held back until its firing is decided.
    log_lines: tuple[logging.LogRecord, ...] = ()
    #: With `trace=True`: the condition's leaves as `Condition.trace` lists them (None: no trace).
    leaves: list[list[Any]] | None = None

    def describe(self) -> str:
        """One log line, e.g. `escalate: condition false: priority is 'low', ...`."""
        return f"{self.rule.name}: {self.reason}"

    def withheld(self) -> str:
        """How a suppression line mentions the held lines, e.g. `; the line it logged is …`."""
        n = len(self.log_lines)
        if n == 0:
            return ""
        return (
            "; the line it logged is not shown"
            if n == 1
            else f"; the {n} lines it logged are not shown"
        )

    def emit_log(self) -> None:
        """Emit the lines the rule logged and held back (see `run_rule(hold_log=True)`)."""
        for record in self.log_lines:
            logging.getLogger(record.name).handle(record)


def _error_text(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def run_rule(
    rule: Rule,
    event: Event,
    *,
    helpdesk: HelpdeskClient | None = None,
    log: logging.Logger | None = None,
    explain: bool = True,
    hold_log: bool = False,
    trace: bool = False,
    paused: bool = False,
) -> Decision:
    """Decide one rule for one event; a rule that raises yields an `error:` decision.

    With `explain=False` a skipped rule's reason is only `condition false`: conditions are then
    evaluated without formatting the values they read, which is most of their cost. With
    `hold_log=True` what a Python rule logs is kept on the decision (`log_lines`) for the caller
    to emit (`Decision.emit_log`) once the loop guard has decided, instead of at once. With
    `trace=True` the decision keeps the condition's leaf results (`leaves`) for the trace.
    A `paused` rule (`ticketwire rules pause`) is skipped with the reason `paused`.
    """
    if paused:
        return Decision(rule, False, "paused")
    verdict = None
    leaves: list[list[Any]] | None = None
    if rule.condition is not None:
        try:
            if trace:
                # `trace_at`, not `trace`: one call and one tuple fewer per rule and event.
                seen: list[list[Any]] = []
                ok = rule.condition.trace_at(event, seen, 0)
                leaves = seen
                if not (explain or ok):
                    return Decision(rule, False, "condition false", leaves=leaves)
            if not explain and not trace and not rule.condition.holds(event):
                return Decision(rule, False, "condition false")
            verdict = rule.condition.check(event)
        # A rule's failure is recorded on its decision and must not stop the other rules.
        except Exception as exc:  # noqa: BLE001
            return Decision(
                rule, False, f"error: in condition: {_error_text(exc)}", error=exc, leaves=leaves
            )
        if not verdict.ok:
            return Decision(rule, False, f"condition false: {verdict.why}", leaves=leaves)
    log_lines: tuple[logging.LogRecord, ...] = ()
    if rule.handler is None:
        actions = rule.actions
    else:
        ctx = Context(event, rule=rule, helpdesk=helpdesk, log=log, hold_log=hold_log)
        try:
            await rule.handler(ctx)
        except Exception as exc:  # noqa: BLE001
            # Actions queued before the failure are discarded: half a rule is not applied.
            return Decision(
                rule,
                False,
                f"error: {_error_text(exc)}",
                error=exc,
                log_lines=ctx.held_log(),
                leaves=leaves,
            )
        actions = tuple(ctx.actions)
        log_lines = ctx.held_log()
    if not actions:
        return Decision(rule, False, "no actions", log_lines=log_lines, leaves=leaves)
    # A rule without vendor: carries each vendor's reading of its actions; keep this event's.
    actions = tuple(a.for_vendor(event.vendor) for a in actions)
    count = f"{len(actions)} action{'s' if len(actions) != 1 else ''}"
    names = ", ".join(dict.fromkeys(a.name for a in actions))
    reason = f"fired: {count} ({names})"
    if verdict is not None:
        reason += f"; condition true: {verdict.why}"
    return Decision(rule, True, reason, actions, log_lines=log_lines, leaves=leaves)


async def evaluate(
    router: Router,
    event: Event,
    *,
    helpdesk: HelpdeskClient | None = None,
    log: logging.Logger | None = None,
    explain: bool = True,
    hold_log: bool = False,
    trace: bool = False,
    paused: Collection[str] = (),
) -> list[Decision]:
    """Decide every rule registered for the event's type and vendor, in order.

    One rule failing never stops the others; its decision records the error. Rules named in
    `paused` are skipped with the reason `paused`.
    """
    return [
        await run_rule(
            rule,
            event,
            helpdesk=helpdesk,
            log=log,
            explain=explain,
            hold_log=hold_log,
            trace=trace,
            paused=rule.name in paused,
        )
        for rule in router.rules_for(event.type, event.vendor, event.account)
    ]
