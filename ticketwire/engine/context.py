"""`Context`: the one object a Python rule receives (event, ticket, reads, logger, action queue)."""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ticketwire.engine.actions import Action, ActionError, make_action
from ticketwire.engine.changes import ANY, field_changes
from ticketwire.engine.changes import changed as _changed
from ticketwire.engine.changes import not_changed as _not_changed
from ticketwire.engine.router import Rule, split_source
from ticketwire.errors import RuleConfigError
from ticketwire.event import Event

if TYPE_CHECKING:
    from ticketwire.vendors import HelpdeskClient

RULES_LOGGER = "ticketwire.rules"


class RuleLog(logging.LoggerAdapter[logging.Logger]):
    """A logger bound to one rule and one event: lines start with `rule <name> event <id>:`.

    With `hold=True` its lines are kept in `held` instead of emitted: the worker emits them once
    the loop guard has let the firing through, so a suppressed firing does not log as if it ran.
    """

    def __init__(
        self, logger: logging.Logger, extra: Mapping[str, object], *, hold: bool = False
    ) -> None:
        super().__init__(logger, extra)
        self.held: list[logging.LogRecord] | None = [] if hold else None

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Emit the line, or keep it in `held` when holding."""
        if self.held is None:
            super().log(level, msg, *args, **kwargs)
            return
        if not self.isEnabledFor(level):
            return
        msg, options = self.process(msg, kwargs)
        exc_info = options.get("exc_info")
        if exc_info and not isinstance(exc_info, tuple | BaseException):
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        # One frame more than a direct call: the line names the rule's code, not this method.
        path, line, func, stack = self.logger.findCaller(
            bool(options.get("stack_info")), int(options.get("stacklevel", 1)) + 1
        )
        self.held.append(
            self.logger.makeRecord(
                self.logger.name,
                level,
                path,
                line,
                msg,
                args,
                exc_info or None,
                func,
                options.get("extra"),
                stack,
            )
        )

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Prefix the message and merge the bound fields into `extra`."""
        bound = dict(self.extra or {})
        kwargs["extra"] = {**bound, **(kwargs.get("extra") or {})}
        return f"rule {bound.get('rule')} event {bound.get('event_id')}: {msg}", kwargs


class Context:
    """What a rule sees and does: read the event and ticket, queue validated actions.

    Actions are only queued here; the engine plans them into API calls after every rule has
    run, so a rule never writes to the helpdesk itself.
    """

    def __init__(
        self,
        event: Event,
        *,
        rule: Rule | str,
        helpdesk: HelpdeskClient | None = None,
        log: logging.Logger | None = None,
        hold_log: bool = False,
    ) -> None:
        self.event = event
        self.rule = rule if isinstance(rule, Rule) else None
        self.rule_name = rule.name if isinstance(rule, Rule) else rule
        #: The ticket as the event carried it; a copy, so a rule cannot change what others see.
        self.ticket: dict[str, Any] = copy.deepcopy(event.ticket)
        self.helpdesk = helpdesk
        self.log = RuleLog(
            log or logging.getLogger(RULES_LOGGER),
            {"rule": self.rule_name, "event_id": event.id, "ticket_id": event.ticket_id},
            hold=hold_log,
        )
        self._vendor = (self.rule.vendor if self.rule else None) or event.vendor
        self._actions: list[Action] = []

    def __repr__(self) -> str:
        return f"Context(rule={self.rule_name!r}, event={self.event.id!r}, actions={len(self)})"

    def __len__(self) -> int:
        return len(self._actions)

    def held_log(self) -> tuple[logging.LogRecord, ...]:
        """The lines `log` held back (`hold_log=True`); empty when it emits at once."""
        return tuple(self.log.held or ())

    @property
    def ticket_id(self) -> str:
        """The id of the event's ticket."""
        return self.event.ticket_id

    @property
    def actions(self) -> list[Action]:
        """The actions queued so far, in order (a copy)."""
        return list(self._actions)

    @property
    def changes(self) -> dict[str, tuple[Any, Any]] | None:
        """What this event changed, `{field: (old, new)}`; None when it cannot be told."""
        return field_changes(self.event)

    def changed(self, field: str, *, from_: Any = ANY, to: Any = ANY) -> bool:
        """True when `field` changed with this event (from `from_`, to `to`, when given).

        E.g. `ctx.changed("status", to="waiting")`, `ctx.changed("common.priority")`. False when
        the change cannot be told (the first event seen for the ticket). Declare the fields with
        `reads=` on `router.on()` so their earlier values are kept.
        """
        return _changed(self.event, field, from_=from_, to=to)

    def not_changed(self, field: str) -> bool:
        """True when `field` is known not to have changed with this event."""
        return _not_changed(self.event, field)

    def act(self, name: str, value: Any = True) -> Action:
        """Queue any action of the vendor's vocabulary by name, with its YAML-form value."""
        try:
            action = make_action(self._vendor, name, value, rule=self.rule_name)
        except ActionError as exc:
            file, line = self._caller()
            raise RuleConfigError(
                f"ctx.{name}(): {exc.message}",
                file=file,
                line=line,
                rule=self.rule_name,
                accepted=exc.accepted,
            ) from None
        self._actions.append(action)
        return action

    def _caller(self) -> tuple[str | None, int | None]:
        """Where the rule called us: the first frame outside this module."""
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == __file__:
            frame = frame.f_back  # type: ignore[assignment]
        if frame is not None:
            return frame.f_code.co_filename, frame.f_lineno
        return split_source(self.rule.source) if self.rule else (None, None)

    def update(self, **fields: Any) -> Action:
        """Change ticket fields with one PATCH, e.g. `update(priority="high", assignee_id=None)`."""
        return self.act("update", fields)

    def add_tags(self, tag_ids: Iterable[str]) -> Action:
        """Add tags by id (a bulk `add_tags`)."""
        return self.act("add_tags", _listed(tag_ids))

    def remove_tags(self, tag_ids: Iterable[str]) -> Action:
        """Remove tags by id (a bulk `remove_tags`)."""
        return self.act("remove_tags", _listed(tag_ids))

    def move_inbox(self, inbox_id: str) -> Action:
        """Move the ticket to another inbox (a bulk `move_inbox`)."""
        return self.act("move_inbox", inbox_id)

    def update_status(self, status: str | None = None, *, status_id: str | None = None) -> Action:
        """Change the status by name or custom status id (a bulk `update_status`)."""
        value: Any = status
        if status_id is not None:
            # Both given is passed on as written, so validation refuses it with its usual message.
            value = (
                {"status_id": status_id}
                if status is None
                else {"status": status, "status_id": status_id}
            )
        return self.act("update_status", value)

    def assign(self, assignee_id: str) -> Action:
        """Assign the ticket to an agent (a bulk `assign`)."""
        return self.act("assign", assignee_id)

    def unassign(self) -> Action:
        """Remove the assignee (PATCH `assignee_id: null`)."""
        return self.act("unassign", True)

    def set_status(self, status: str) -> Action:
        """Set the built-in status through the PATCH, e.g. `set_status("waiting")`."""
        return self.act("set_status", status)

    def set_priority(self, priority: str) -> Action:
        """Set the priority through the PATCH, e.g. `set_priority("high")`."""
        return self.act("set_priority", priority)

    def remind_at(self, when: str | datetime | timedelta | None) -> Action:
        """Set a reminder: `"+48h"` or a timedelta after the event, a datetime, or None to clear."""
        return self.act("remind_at", when)

    def add_note(self, text: str, **options: Any) -> Action:
        """Leave an internal note; `{{ticket.<field>}}` / `{{common.<field>}}` are filled in.

        E.g. `add_note("Escalated because priority is {{ticket.priority}}")`; options a helpdesk
        documents go as keywords (cStar: `sender="agent"`).
        """
        return self.act("add_note", {"text": text, **options} if options else text)

    def set_custom_fields(self, fields: Mapping[str, Any]) -> Action:
        """Set custom fields by key (merged per key with other rules' changes)."""
        return self.act("update", {"custom_fields": dict(fields)})


def _listed(values: Iterable[str]) -> Any:
    # A bare string is iterable too; pass it through so validation can name the mistake.
    if isinstance(values, str | bytes | Mapping):
        return values
    return list(values)
