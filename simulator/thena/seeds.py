"""Seed data: each organisation's teams, statuses, priorities, agents and types, and realistic
tickets for `POST /_sim/seed`."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from simulator.common.clock import IdSource
from simulator.common.seeds import SeedFields, plausible
from simulator.thena.models import Agent, Org, Priority, Status, Team, TicketType

#: (name, display name, is_default) of every team's statuses, in order.
STATUS_ROWS: tuple[tuple[str, str, bool], ...] = (
    ("Open", "Open", True),
    ("In progress", "In progress", False),
    ("On hold", "On hold", False),
    ("Resolved", "Resolved", False),
    ("Closed", "Closed", False),
)
PRIORITY_ROWS: tuple[tuple[str, bool], ...] = (
    ("Low", False),
    ("Medium", True),
    ("High", False),
    ("Urgent", False),
)
TYPE_NAMES = ("Question", "Incident", "Problem", "Task")
AGENT_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing")
#: Crockford's base-32 alphabet, which Thena's identifiers look like.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def uid(ids: IdSource, prefix: str = "", length: int = 26) -> str:
    """A reproducible upper-case identifier like Thena's, e.g. `CT4NVX0K10YJQ3X0185THN9R6H`."""
    return prefix + "".join(ids.rng.choice(_ALPHABET) for _ in range(length))


def named_uid(name: str, prefix: str = "", length: int = 26) -> str:
    """An identifier like `uid`'s that is always the same for `name` (no generator drawn from)."""
    digest = hashlib.sha256(name.encode()).digest()
    return prefix + "".join(_ALPHABET[b % 32] for b in digest[:length])


def build_org(ids: IdSource, name: str, domain: str, teams: tuple[tuple[str, str], ...]) -> Org:
    """An organisation with the standard seed rows; every id comes from `ids`, in a fixed order."""
    org_id = uid(ids, "E")
    built: list[Team] = []
    for team_name, identifier in teams:
        team_id = uid(ids, "T", 9)
        statuses = [
            Status(uid(ids), sname, display, default, team_id, org_id)
            for sname, display, default in STATUS_ROWS
        ]
        priorities = [
            Priority(uid(ids), pname, pname, default, team_id, org_id)
            for pname, default in PRIORITY_ROWS
        ]
        built.append(Team(team_id, team_name, identifier, statuses, priorities))
    agents = [
        Agent(uid(ids, "U"), email=f"{n.split()[0].lower()}@{domain}", name=n) for n in AGENT_NAMES
    ]
    types = [TicketType(uid(ids), n) for n in TYPE_NAMES]
    return Org(org_id, name, domain, built, agents, types)


TITLES = (
    "Cannot log in after password reset",
    "Invoice shows the wrong VAT number",
    "Refund request for order #{n}",
    "Export to CSV times out",
    "How do I add a second admin?",
    "Slack alerts stopped arriving",
    "Feature request: dark mode",
    "Charged twice this month",
    "Webhook deliveries failing since Monday",
    "Upgrade to Business plan",
)
CUSTOMER_DOMAINS = ("example.com", "example.org", "globex.test", "umbrella.test")
TAGS = ("vip", "bug", "billing", "feedback")
#: What Thena calls the fields every simulator seeds alike.
SEEDED = SeedFields(
    "title", "teamId", "priorityName", "requestorEmail", [r[0] for r in PRIORITY_ROWS]
)


def realistic_ticket(org: Org, rng: random.Random) -> dict[str, Any]:
    """Agent-create fields for one plausible ticket, drawn from `rng`."""
    name, fields = plausible(rng, SEEDED, TITLES, org.teams, CUSTOMER_DOMAINS)
    fields["description"] = f"Reported by {name}."
    if rng.random() < 0.6:
        fields["assignedAgentId"] = rng.choice(org.agents).id
    if rng.random() < 0.3:
        fields["statusName"] = rng.choice(("In progress", "On hold", "Resolved"))
    if rng.random() < 0.3:
        fields["tags"] = [rng.choice(TAGS)]
    return fields
