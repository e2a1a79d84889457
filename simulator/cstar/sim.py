"""`CStarSimulator`: owns the store, clock, faults, rate limiter, webhook emitter and journal,
serves them over HTTP, and offers the Python API tests use."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from simulator.common.base import FromStore, IssuedKey, SimulatorBase, fan_out
from simulator.common.ratelimit import RateLimiter
from simulator.common.serving import app_factory, runner
from simulator.cstar.app import API_ROUTES, SIM_KEY, middleware
from simulator.cstar.config import CStarSimulatorConfig, RateLimit, Settings
from simulator.cstar.control import CONTROL_ROUTES
from simulator.cstar.faults import Faults
from simulator.cstar.store import Store, Team, TicketChange
from simulator.cstar.webhooks import Signing, WebhookEmitter, envelope

log = logging.getLogger("simulator.cstar")

_TITLES = (
    "Cannot log in after password reset",
    "Invoice shows the wrong VAT number",
    "Export to CSV times out",
    "Feature request: dark mode",
    "Refund for duplicate charge",
    "Widget not loading on Safari",
    "How do I add a team member?",
    "Order arrived damaged",
)
_CUSTOMERS = (
    ("Dana Whitfield", "dana@northwind.test"),
    ("Luis Ortega", "luis@contoso.test"),
    ("Mei Tanaka", "mei@fabrikam.test"),
    ("Sam Okafor", "sam@tailspin.test"),
)


class CStarSimulator(SimulatorBase[CStarSimulatorConfig, Settings, Faults, WebhookEmitter, Store]):
    """A local cStar: the team-scoped ticket API, webhooks to registered endpoints, fault knobs."""

    tenant_noun = "team"
    tenants_at = "teams"
    endpoint_noun = "webhook"
    vendor_name = "cStar"

    def _limits(self) -> None:
        self._limiter: tuple[float, RateLimiter] | None = None

    def _new_emitter(self) -> WebhookEmitter:
        return WebhookEmitter(
            **self._emitter_options(),
            retry_schedule=tuple(self.config.webhook_retry_schedule),
            signing=lambda: Signing(
                self.settings.webhook_signature, self.settings.webhook_signature_header
            ),
        )

    def _build(self) -> None:
        self.store = Store(self.seed, self.clock, self.config)

    def _reset_limits(self) -> None:
        self._limiter = None

    # ----------------------------------------------------------------- identities

    team_id = FromStore(
        "default.id", "The default team's UUID (the `{teamId}` of every path).", banner="team id"
    )
    other_team_id = FromStore(
        "other.id", "A second team; the default team's keys get 403 `team_access_denied` there."
    )

    @property
    def api_base(self) -> str:
        """`<url>/api/v1/teams/<team_id>`."""
        return f"{self.url}/api/v1/teams/{self.team_id}"

    api_key = IssuedKey(
        "Secret key (`sk_test_…`) of the default team: read and write.",
        banner="secret key (simulator only)",
    )
    publishable_key = IssuedKey(
        "Publishable key (`pk_test_…`) of the default team: read-only.",
        banner="publishable key (simulator only)",
    )
    expired_key = IssuedKey("An expired secret key of the default team (401 `key_expired`).")
    other_team_key = IssuedKey("Secret key of the second team.")

    @property
    def agents(self) -> list[str]:
        """Agent ids seeded tickets are assigned to (any string is accepted as `assignedTo`)."""
        return list(self.config.agents)

    # ----------------------------------------------------------------- tickets

    def create_ticket(self, **fields: Any) -> dict[str, Any]:
        """Create a ticket as an agent would (the `POST /tickets` fields); emits `ticket.created`."""
        team = self.store.default
        change = self.store.create_ticket(team, fields)
        self.publish(team, [change])
        return change.ticket

    def change_ticket(self, ticket_id: str, /, **fields: Any) -> dict[str, Any]:
        """An agent's edit through the PATCH code path; emits the webhooks a PATCH would."""
        team = self.store.default
        change = self.store.update_ticket(team, self.store.ticket(team, ticket_id), fields)
        self.publish(team, [change])
        return change.ticket

    def add_message(self, ticket_id: str, content: str, sender: str = "customer") -> dict[str, Any]:
        """A new message on a ticket; emits `ticket.message_added`."""
        team = self.store.default
        ticket = self.store.ticket(team, ticket_id)
        change = self.store.add_message(team, ticket, {"content": content, "sender": sender})
        self.publish(team, [change])
        return dict(change.message or {})

    def delete_ticket(self, ticket_id: str) -> None:
        """Delete a ticket; emits `ticket.deleted`."""
        team = self.store.default
        change = self.store.delete_ticket(team, self.store.ticket(team, ticket_id))
        self.publish(team, [change])

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        """A ticket of the default team as `GET /tickets/{id}` shows it (with messages)."""
        team = self.store.default
        return self.store.render(team, self.store.ticket(team, ticket_id), messages=True)

    def tickets(self) -> list[dict[str, Any]]:
        """Every ticket of the default team, oldest first."""
        team = self.store.default
        return [self.store.render(team, t) for t in team.tickets.values()]

    def customers(self) -> list[dict[str, Any]]:
        """Every customer of the default team."""
        return [c.to_json() for c in self.store.default.customers.values()]

    def seed_tickets(self, count: int, *, emit: bool = True) -> list[dict[str, Any]]:
        """Create `count` realistic tickets (reproducible for a seed); `emit` sends their webhooks."""
        team, rng = self.store.default, self._ticket_rng
        out = []
        for _ in range(count):
            name, email = rng.choice(_CUSTOMERS)
            fields: dict[str, Any] = {
                "title": rng.choice(_TITLES),
                "customerName": name,
                "customerEmail": email,
                "priority": rng.choice(("low", "normal", "normal", "high", "urgent")),
                "status": rng.choice(("new", "open", "open", "pending")),
                "channel": rng.choice(("email", "chat", "web")),
                "tags": rng.sample(["billing", "bug", "vip", "onboarding", "mobile"], k=2),
                "assignedTo": rng.choice([None, *self.config.agents]),
            }
            change = self.store.create_ticket(team, fields)
            if emit:
                self.publish(team, [change])
            out.append(change.ticket)
        return out

    # ----------------------------------------------------------------- webhooks

    def _new_endpoint_id(self) -> str:
        return f"whk_{self._endpoint_ids.token(12)}"

    def publish(
        self,
        team: Team,
        changes: Iterable[TicketChange],
        *,
        request_id: str | None = None,
        burst: int = 1,
    ) -> None:
        """Hand the changes' events to the emitter; each is sent `burst` times (fresh event ids).

        `request_id` is the API request that caused them (`x-cstar-request-id`); an agent's edit
        gets a request id of its own.
        """
        cause = request_id or self.next_request_id()
        for change, event in fan_out(changes, burst):
            event_id = f"evt_{self._event_ids.token(12)}"
            envelope = self._envelope(team, event, event_id, change)
            self.emitter.emit(
                team.id,
                event,
                event_id,
                envelope,
                ticket_id=str(change.ticket["id"]),
                request_id=cause,
            )

    def _envelope(
        self, team: Team, event: str, event_id: str, change: TicketChange
    ) -> dict[str, Any]:
        return envelope(
            team.id,
            event,
            event_id,
            self.clock.now(),
            self.store.webhook_ticket(change.ticket),
            change.customer,
            changes=change.changes,
            message=change.message,
            flat=self.settings.flat_payload,
        )

    # ----------------------------------------------------------------- journal and limits

    def next_request_id(self) -> str:
        """A fresh `req_…` id."""
        return f"req_{self._request_ids.token(12)}"

    def set_rate_limit(self, limit: str | int | None) -> None:
        """Change the per-key limit: `"120/minute"`, `"1000/hour"`, `"N/unit"`, an int per
        minute, or None / 0 (off). Counts start over."""
        self.settings.rate_limit = RateLimit.parse(limit)
        self._limiter = None

    def limiter_for(self, limit: RateLimit) -> RateLimiter:
        """The limiter for `limit`'s window (rebuilt, counts cleared, when the window changes)."""
        if self._limiter is None or self._limiter[0] != limit.window_s:
            self._limiter = (limit.window_s, RateLimiter(self.clock.monotonic, limit.window_s))
        return self._limiter[1]


create_app = app_factory(CStarSimulator, SIM_KEY, middleware, API_ROUTES, CONTROL_ROUTES)
run_simulator = runner(CStarSimulator, 8026, "secret")
