"""`ThenaSimulator`: owns the store, clock, faults, rate limiter, webhook emitter and journal,
serves them over HTTP, and offers the Python API tests use."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from simulator.common.base import FromStore, JsonFromStore, MinuteLimited, fan_out
from simulator.common.serving import app_factory, runner
from simulator.thena.app import API, API_ROUTES, SIM_KEY, middleware
from simulator.thena.config import Settings, ThenaSimulatorConfig
from simulator.thena.control import CONTROL_ROUTES
from simulator.thena.faults import Faults
from simulator.thena.models import Org, Team
from simulator.thena.seeds import realistic_ticket
from simulator.thena.store import Store, TicketChange
from simulator.thena.webhooks import WebhookEmitter, envelope

log = logging.getLogger("simulator.thena")


class ThenaSimulator(MinuteLimited[ThenaSimulatorConfig, Settings, Faults, WebhookEmitter, Store]):
    """A local Thena: the `/v1` ticket API, platform events to registered endpoints, faults.

    `run_simulator`'s endpoint gets its secret as a static token (`Authorization: Bearer`).
    """

    api_path = API
    tenant_noun = "organisation"
    tenants_at = "orgs"
    vendor_name = "Thena"

    def _new_emitter(self) -> WebhookEmitter:
        return WebhookEmitter(
            **self._emitter_options(),
            retry_schedule=self.config.webhook_retry_schedule,
            signature_prefix=lambda: self.settings.webhook_signature_prefix,
        )

    def _build(self) -> None:
        self.store = Store(self.seed, self.clock, self.config)

    # ----------------------------------------------------------------- identities

    api_key = FromStore(
        "api_key",
        "`x-api-key` of a user of the default organisation.",
        banner="API key (simulator only)",
    )
    bearer_token = FromStore(
        "bearer_token", "A bearer token of the default organisation (send it with `x-org-id`)."
    )

    org_id = FromStore(
        "default.id",
        "The default organisation's id: `orgId` of its events, `x-org-id` of its requests.",
        banner="organisation id",
    )
    other_org_api_key = FromStore("other_api_key", "`x-api-key` of a second organisation.")
    other_org_bearer_token = FromStore(
        "other_bearer_token", "A bearer token of the second organisation."
    )
    other_org_id = FromStore("other.id", "The second organisation's id.")

    @property
    def team_id(self) -> str:
        """The default organisation's first team (Support, `SUP`)."""
        return self.store.default.teams[0].id

    @property
    def other_team_id(self) -> str:
        """The default organisation's second team (Engineering, `ENG`)."""
        return self.store.default.teams[1].id

    @property
    def foreign_team_id(self) -> str:
        """The second organisation's team."""
        return self.store.other.teams[0].id

    # ----------------------------------------------------------------- reference data

    def _team(self, team_id: str | None) -> Team:
        team = self.store.default.team(team_id or self.team_id)
        if team is None:
            raise ValueError(f"{team_id!r} is not a team of the default organisation")
        return team

    def statuses(self, team_id: str | None = None) -> list[dict[str, Any]]:
        """A team's statuses (default: the first team), in order."""
        return [s.to_json() for s in self._team(team_id).statuses]

    def priorities(self, team_id: str | None = None) -> list[dict[str, Any]]:
        """A team's priorities (default: the first team), in order."""
        return [p.to_json() for p in self._team(team_id).priorities]

    def status_id(self, name: str, team_id: str | None = None) -> str:
        """The id of a team's status by name (ignoring case)."""
        status = self._team(team_id).status(name=name)
        if status is None:
            raise ValueError(f"no status named {name!r}")
        return status.id

    def priority_id(self, name: str, team_id: str | None = None) -> str:
        """The id of a team's priority by name (ignoring case)."""
        priority = self._team(team_id).priority(name=name)
        if priority is None:
            raise ValueError(f"no priority named {name!r}")
        return priority.id

    @property
    def teams(self) -> list[dict[str, Any]]:
        """Teams of the default organisation, each with its statuses and priorities in order."""
        return [
            {
                "id": t.id,
                "name": t.name,
                "identifier": t.identifier,
                "statuses": [s.to_json() for s in t.statuses],
                "priorities": [p.to_json() for p in t.priorities],
            }
            for t in self.store.default.teams
        ]

    agents = JsonFromStore(
        "default.agents", "Agents of the default organisation (valid `assignedAgentId`s)."
    )

    types = JsonFromStore(
        "default.types", "Ticket types of the default organisation (valid `typeId`s)."
    )

    # ----------------------------------------------------------------- tickets

    def create_ticket(self, **fields: Any) -> dict[str, Any]:
        """Create a ticket as an agent would (`teamId` defaults to the first team, `tags` too);
        emits `ticket:created`. Raises `ApiError` if invalid."""
        org = self.store.default
        fields.setdefault("teamId", self.team_id)
        change, rec = self.store.create_ticket(org, fields, agent=True)
        if change is not None:
            self.publish([change])
        return self.store.render(org, rec)

    def change_ticket(self, ticket_id: str, /, **fields: Any) -> dict[str, Any]:
        """An agent's edit through the PATCH code path (plus `tags`, replacing them)."""
        org = self.store.default
        rec = self.store.record(org, ticket_id)
        self.publish([self.store.update_ticket(org, rec, fields, agent=True)])
        return self.store.render(org, rec)

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        """A ticket of the default organisation, as `GET /v1/tickets/{id}` shows it."""
        org = self.store.default
        return self.store.render(org, self.store.record(org, ticket_id))

    def event_ticket(self, ticket_id: str) -> dict[str, Any]:
        """A ticket of the default organisation, as platform events carry it."""
        org = self.store.default
        return self.store.event_ticket(org, self.store.record(org, ticket_id))

    def tickets(self) -> list[dict[str, Any]]:
        """Every ticket of the default organisation, oldest first."""
        org = self.store.default
        return [self.store.render(org, r) for r in org.tickets.values()]

    def seed_tickets(self, count: int, *, emit: bool = True) -> list[dict[str, Any]]:
        """Create `count` realistic tickets (reproducible for a seed); `emit` sends their events."""
        org = self.store.default
        out = []
        for _ in range(count):
            change, rec = self.store.create_ticket(
                org, realistic_ticket(org, self._ticket_rng), agent=True
            )
            if emit and change is not None:
                self.publish([change])
            out.append(self.store.render(org, rec))
        return out

    # ----------------------------------------------------------------- webhooks

    def publish(self, changes: Iterable[TicketChange], *, burst: int = 1) -> None:
        """Hand the changes' events to the emitter; each is sent `burst` times (fresh event ids)."""
        for change, event in fan_out(changes, burst):
            payload: dict[str, Any] = {"ticket": change.ticket}
            if change.previous is not None:
                payload["previousTicket"] = change.previous
            org = self.store.orgs[change.org_id]
            self.emitter.emit(self._envelope(org, event, payload), change.ticket_id)

    def _envelope(self, org: Org, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        actor = org.agents[0]
        return envelope(
            org.id,
            event,
            self._event_ids.uuid(),
            self.clock.now(),
            payload,
            {"id": actor.id, "type": "AGENT", "email": actor.email},
        )


create_app = app_factory(ThenaSimulator, SIM_KEY, middleware, API_ROUTES, CONTROL_ROUTES)
run_simulator = runner(ThenaSimulator, 8026, "token")
