"""The simulator's organisation data: teams with their statuses and priorities, agents, types."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from simulator.common.records import Named, Record

Scheme = Literal["api-key", "bearer"]


@dataclass(frozen=True)
class TeamValue:
    """A value a team defines for its tickets: a status or a priority."""

    #: Status objects carry a `description` (always null here); priority objects do not.
    described: ClassVar[bool] = False

    id: str
    name: str
    display_name: str
    is_default: bool
    team_id: str
    organization_id: str

    def to_json(self) -> dict[str, Any]:
        """The shape of Thena's status and priority objects."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "displayName": self.display_name}
        if self.described:
            out["description"] = None
        out.update(
            isDefault=self.is_default, teamId=self.team_id, organizationId=self.organization_id
        )
        return out


V = TypeVar("V", bound=TeamValue)


def find_value(values: Iterable[V], value_id: str | None, name: str | None) -> V | None:
    """The value with this id, or whose name or display name matches (ignoring case)."""
    for value in values:
        if value_id is not None and value.id == value_id:
            return value
        if name is not None and name.strip().casefold() in (
            value.name.casefold(),
            value.display_name.casefold(),
        ):
            return value
    return None


@dataclass(frozen=True)
class Status(TeamValue):
    """A team's custom status."""

    described: ClassVar[bool] = True


@dataclass(frozen=True)
class Priority(TeamValue):
    """A team's priority."""


@dataclass(frozen=True)
class Agent(Record):
    """An agent of the organisation (a valid `assignedAgentId`); events show it as `assignedAgent`."""

    id: str
    email: str
    name: str


@dataclass(frozen=True)
class TicketType(Named):
    """A ticket type of the organisation (a valid `typeId`)."""


@dataclass
class Team:
    """A team: tickets live in one, and its statuses and priorities are its own."""

    id: str
    name: str
    identifier: str
    statuses: list[Status]
    priorities: list[Priority]
    next_number: int = 1

    def status(self, *, status_id: str | None = None, name: str | None = None) -> Status | None:
        """The status with this id, or whose name or display name matches (ignoring case)."""
        return find_value(self.statuses, status_id, name)

    def priority(
        self, *, priority_id: str | None = None, name: str | None = None
    ) -> Priority | None:
        """The priority with this id, or whose name or display name matches (ignoring case)."""
        return find_value(self.priorities, priority_id, name)

    @property
    def default_status(self) -> Status:
        """The status new tickets get."""
        return next(s for s in self.statuses if s.is_default)

    @property
    def default_priority(self) -> Priority:
        """The priority new tickets get."""
        return next(p for p in self.priorities if p.is_default)


@dataclass
class Org:
    """An organisation: teams, agents, types, tickets and dedup keys."""

    id: str
    name: str
    domain: str
    teams: list[Team]
    agents: list[Agent]
    types: list[TicketType]
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: `deDuplicationKey` → id of the ticket it created.
    dedup: dict[str, str] = field(default_factory=dict)
    next_ticket_id: int = 1

    def team(self, team_id: str) -> Team | None:
        """The team with this id, if it is one of this organisation's."""
        return next((t for t in self.teams if t.id == team_id), None)

    def agent(self, *, agent_id: str | None = None, email: str | None = None) -> Agent | None:
        """The agent with this id, or this email (ignoring case)."""
        for a in self.agents:
            if agent_id is not None and a.id == agent_id:
                return a
            if email is not None and a.email.casefold() == email.strip().casefold():
                return a
        return None

    def ticket_type(self, type_id: str) -> TicketType | None:
        """The ticket type with this id."""
        return next((t for t in self.types if t.id == type_id), None)


@dataclass(frozen=True)
class Credential:
    """An API key (`x-api-key`) or a bearer token, and the organisation it belongs to."""

    value: str
    scheme: Scheme
    org_id: str
