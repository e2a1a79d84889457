"""`InboxOpsSimulator`: owns the store, clock, faults, rate limiter, webhook emitter and journal,
serves them over HTTP, and offers the Python API tests use."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from simulator.common.base import FromStore, IssuedKey, JsonFromStore, MinuteLimited, fan_out
from simulator.common.clock import Clock
from simulator.common.serving import app_factory, runner
from simulator.inboxops.app import API, API_ROUTES, SIM_KEY, middleware
from simulator.inboxops.config import Settings, SimulatorConfig
from simulator.inboxops.control import CONTROL_ROUTES
from simulator.inboxops.faults import Faults
from simulator.inboxops.messages import MESSAGE_TYPES
from simulator.inboxops.models import Workspace
from simulator.inboxops.reminders import ReminderTimer
from simulator.inboxops.seeds import realistic_ticket
from simulator.inboxops.store import Store, TicketChange
from simulator.inboxops.webhooks import WebhookEmitter

log = logging.getLogger("simulator.inboxops")


class InboxOpsSimulator(MinuteLimited[SimulatorConfig, Settings, Faults, WebhookEmitter, Store]):
    """A local InboxOps: the `/api/v1` ticket API, webhooks to registered endpoints, fault knobs."""

    api_path = API
    tenant_noun = "workspace"
    tenants_at = "workspaces"
    vendor_name = "InboxOps"

    def __init__(
        self, config: SimulatorConfig | None = None, *, clock: Clock | None = None
    ) -> None:
        super().__init__(config, clock=clock)
        self.reminders = ReminderTimer(
            self.clock, lambda: self.store.next_reminder(), self.fire_due_reminders
        )

    def _new_emitter(self) -> WebhookEmitter:
        return WebhookEmitter(
            **self._emitter_options(),
            max_attempts=self.config.webhook_max_attempts,
            retry_base=self.config.webhook_retry_base,
            signature_prefix=lambda: self.settings.webhook_signature_prefix,
        )

    def _build(self) -> None:
        self.store = Store(
            self.seed,
            self.clock,
            self.config,
            keep_reminder=lambda: self.settings.reminder_leaving_waiting == "keep",
        )

    def reset(self, *, keep_endpoints: bool = True) -> None:
        """Back to the seeded initial state, the reminder timer stopped first (see the base)."""
        self.reminders.cancel()
        super().reset(keep_endpoints=keep_endpoints)

    async def close_background(self) -> None:
        """Cancel the reminder timer and pending deliveries (the logs stay readable)."""
        await self.reminders.close()
        await super().close_background()

    # ----------------------------------------------------------------- identities

    api_key = IssuedKey(
        "Read and write key of the default workspace.", banner="API key (simulator only)"
    )
    read_only_key = IssuedKey(
        "Read-only key of the default workspace.", banner="read-only key (simulator only)"
    )
    revoked_key = IssuedKey("A revoked key of the default workspace (answers 401).")
    no_entitlement_key = IssuedKey(
        "Key of a workspace without the api_webhooks entitlement (answers 403 forbidden)."
    )
    other_workspace_key = IssuedKey("Read and write key of a second, entitled workspace.")

    workspace_id = FromStore(
        "default.id", "The default workspace's id: `tenant_id` in its webhook envelopes."
    )
    other_workspace_id = FromStore("other.id", "The second entitled workspace's id.")

    # ----------------------------------------------------------------- reference data

    @property
    def statuses(self) -> list[dict[str, Any]]:
        """Custom statuses of the default workspace, by position."""
        return [s.to_json() for s in sorted(self.store.default.statuses, key=lambda s: s.position)]

    priorities = JsonFromStore("default.priorities", "Custom priorities of the default workspace.")

    inboxes = JsonFromStore(
        "default.inboxes", "Inboxes of the default workspace (Support first, then Billing)."
    )

    tags = JsonFromStore("default.tags", "Tags of the default workspace.")

    agents = JsonFromStore(
        "default.agents", "Agents of the default workspace (valid assignee ids)."
    )

    custom_fields = JsonFromStore(
        "default.fields", "Custom-field definitions of the default workspace."
    )

    def create_tag(self, name: str, color: str | None = None) -> dict[str, Any]:
        """Create a tag in the default workspace (same rules as `POST /tags`)."""
        body: dict[str, Any] = {"name": name}
        if color is not None:
            body["color"] = color
        return self.store.create_tag(self.store.default, body).to_json()

    # ----------------------------------------------------------------- tickets

    def create_ticket(self, **fields: Any) -> dict[str, Any]:
        """Create a ticket as an agent would; emits `ticket.created`. Raises `ApiError` if invalid.

        Accepts the `POST /tickets` fields plus status, status_id, contact_id, remind_at,
        remind_transition_status_id and tag_ids.
        """
        self.fire_due_reminders()
        ws = self.store.default
        change = self.store.create_ticket(ws, fields, agent=True)
        self.publish(ws, [change])
        return change.ticket

    def change_ticket(self, ticket_id: str | int, /, **fields: Any) -> dict[str, Any]:
        """An agent's edit through the PATCH code path (plus `tag_ids`, replacing the tags)."""
        self.fire_due_reminders()
        ws = self.store.default
        rec = self.store.ticket(ws, ticket_id)
        change = self.store.update_ticket(ws, rec, fields, agent=True)
        self.publish(ws, [change])
        return change.ticket

    def add_message(self, ticket_id: str | int, /, **fields: Any) -> dict[str, Any]:
        """A message as the app adds it: an email (inbound, outbound, a draft) or a note.

        Fields: type (`email`, default, or `internal_note`), direction, body_text / body_html,
        from_address, to_addresses, cc_addresses, subject, is_draft, author_id. A message that
        is not a draft updates the ticket as the setting `message_updates_ticket` says.
        """
        ws = self.store.default
        rec = self.store.ticket(ws, ticket_id)
        message, change = self.store.add_message(
            rec, fields, touch=self.settings.message_updates_ticket
        )
        self.publish(ws, [change])
        return message

    def messages(self, ticket_id: str | int, types: Iterable[str] = MESSAGE_TYPES) -> list[Any]:
        """A ticket's timeline as `GET /tickets/{id}/messages` shows it (oldest first, no drafts)."""
        ws = self.store.default
        return self.store.messages(self.store.ticket(ws, ticket_id), types)

    def ticket(self, ticket_id: str | int, include: Iterable[str] = ()) -> dict[str, Any]:
        """A ticket of the default workspace by uuid or number, as `GET /tickets/{id}` shows it."""
        self.fire_due_reminders()
        ws = self.store.default
        return self.store.render(ws, self.store.ticket(ws, ticket_id), include)

    def tickets(self, include: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Every ticket of the default workspace, by ticket_number."""
        self.fire_due_reminders()
        ws = self.store.default
        names = list(include)
        return [self.store.render(ws, r, names) for r in ws.tickets.values()]

    def seed_tickets(self, count: int, *, emit: bool = True) -> list[dict[str, Any]]:
        """Create `count` realistic tickets (reproducible for a seed); `emit` sends their webhooks."""
        ws = self.store.default
        out = []
        for _ in range(count):
            fields = realistic_ticket(ws, self._ticket_rng, ws.next_number)
            change = self.store.create_ticket(ws, fields, agent=True)
            if emit:
                self.publish(ws, [change])
            out.append(change.ticket)
        self.reminders.arm()
        return out

    # ----------------------------------------------------------------- webhooks

    def publish(self, ws: Workspace, changes: Iterable[TicketChange], *, burst: int = 1) -> None:
        """Hand the changes' events to the emitter; each is sent `burst` times (fresh event ids)."""
        # A change may have set a reminder earlier than the one the timer waits for.
        self.reminders.arm()
        if not ws.entitled:
            # Webhooks sit behind the same entitlement as the API.
            return
        for change, event in fan_out(changes, burst):
            event_id = self._event_ids.uuid()
            self.emitter.emit(ws.id, event, event_id, self.clock.now(), change.ticket)

    def fire_due_reminders(self) -> int:
        """Apply every reminder due on the simulated clock, with its webhooks; how many fired."""
        fired = self.store.fire_reminders(self.clock.now())
        for ws, change in fired:
            ticket = change.ticket
            log.info(
                "reminder of ticket %s fell due at %s: moved to %s",
                ticket["ticket_number"],
                ticket["updated_at"],
                ticket["status_name"],
            )
            self.publish(ws, [change])
        self.reminders.arm()
        return len(fired)

    # ----------------------------------------------------------------- journal and limits

    def next_request_id(self) -> str:
        """A fresh X-Request-Id for a request that did not bring a valid one."""
        return self._request_ids.uuid()


create_app = app_factory(InboxOpsSimulator, SIM_KEY, middleware, API_ROUTES, CONTROL_ROUTES)
run_simulator = runner(InboxOpsSimulator, 8025, "secret")
