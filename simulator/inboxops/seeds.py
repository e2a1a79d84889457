"""Seed data: each workspace's statuses, priorities, inboxes, agents, tags and custom fields, and
realistic tickets for `POST /_sim/seed`."""

from __future__ import annotations

import random
from typing import Any

from simulator.common.clock import IdSource
from simulator.common.seeds import SeedFields, plausible
from simulator.inboxops.models import (
    Agent,
    FieldDef,
    Inbox,
    Option,
    Priority,
    Status,
    Tag,
    Workspace,
)

#: (status_type, name, color, is_default); the extra non-default rows show that several custom
#: statuses can share a type.
STATUS_ROWS: tuple[tuple[str, str, str, bool], ...] = (
    ("open", "Open", "#3B82F6", True),
    ("in_progress", "In progress", "#8B5CF6", True),
    ("in_progress", "Escalated", "#EC4899", False),
    ("waiting", "Waiting", "#F59E0B", True),
    ("waiting", "Waiting on customer", "#F97316", False),
    ("resolved", "Resolved", "#10B981", True),
    ("closed", "Closed", "#6B7280", True),
)
PRIORITY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("low", "Low", "#9CA3AF"),
    ("normal", "Normal", "#3B82F6"),
    ("high", "High", "#F59E0B"),
    ("urgent", "Urgent", "#EF4444"),
)
TAG_ROWS: tuple[tuple[str, str], ...] = (
    ("vip", "#EF4444"),
    ("bug", "#F97316"),
    ("feedback", "#10B981"),
)
AGENT_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing")


def build_workspace(ids: IdSource, name: str, domain: str, *, entitled: bool) -> Workspace:
    """A workspace with the standard seed rows; every id comes from `ids`, in a fixed order."""
    ws_id = ids.uuid()
    statuses: list[Status] = []
    for pos, (stype, sname, color, default) in enumerate(STATUS_ROWS, start=1):
        statuses.append(Status(ids.uuid(), stype, sname, color, pos, default))
    # "Waiting on customer" reminds, then returns the ticket to Open.
    open_id = statuses[0].id
    statuses = [
        Status(
            s.id,
            s.status_type,
            s.name,
            s.color,
            s.position,
            s.is_default,
            reminder_enabled=True,
            remind_transition_status_id=open_id,
        )
        if s.name == "Waiting on customer"
        else s
        for s in statuses
    ]
    priorities = [
        Priority(ids.uuid(), level, pname, color, pos)
        for pos, (level, pname, color) in enumerate(PRIORITY_ROWS, start=1)
    ]
    support = Inbox(ids.uuid(), "Support", f"support@{domain}")
    billing = Inbox(ids.uuid(), "Billing", f"billing@{domain}")
    agents = [Agent(ids.uuid(), n, f"{n.split()[0].lower()}@{domain}") for n in AGENT_NAMES]
    fields = [
        FieldDef(
            ids.uuid(),
            "plan",
            "Plan",
            "select",
            options=tuple(Option(ids.uuid(), lbl) for lbl in ("Free", "Growth", "Business")),
        ),
        FieldDef(
            ids.uuid(),
            "products",
            "Products",
            "multi_select",
            options=tuple(Option(ids.uuid(), lbl) for lbl in ("Email", "Chat", "Voice")),
        ),
        FieldDef(ids.uuid(), "region", "Region", "text"),
        FieldDef(ids.uuid(), "due_date", "Due date", "date"),
        FieldDef(ids.uuid(), "follow_up_at", "Follow up at", "date_time"),
        FieldDef(ids.uuid(), "score", "Score", "number"),
        FieldDef(ids.uuid(), "billing_account", "Billing account", "text", inbox_ids=(billing.id,)),
    ]
    ws = Workspace(
        id=ws_id,
        name=name,
        domain=domain,
        entitled=entitled,
        statuses=statuses,
        priorities=priorities,
        inboxes=[support, billing],
        fields={f.key: f for f in fields},
        agents=agents,
    )
    for tname, color in TAG_ROWS:
        tag = Tag(ids.uuid(), tname, color)
        ws.tags[tag.id] = tag
        ws.tag_names[tname.casefold()] = tag.id
    return ws


SUBJECTS = (
    "Cannot log in after password reset",
    "Invoice shows the wrong VAT number",
    "Refund request for order #{n}",
    "Export to CSV times out",
    "How do I add a second admin?",
    "Emails from our domain land in spam",
    "Feature request: dark mode",
    "Charged twice this month",
    "Webhook deliveries failing since Monday",
    "Upgrade to Business plan",
    "Chat widget not loading on Safari",
    "Please delete my account",
    "API returns 429 too often",
    "Wrong time zone in reports",
    "Cannot attach files larger than 10 MB",
)
CUSTOMER_DOMAINS = ("example.com", "example.org", "globex.test", "initech.test", "umbrella.test")
REGIONS = ("eu-west", "us-east", "ap-south")
#: What InboxOps calls the fields every simulator seeds alike.
SEEDED = SeedFields(
    "subject", "inbox_id", "priority", "reporter_email", [r[0] for r in PRIORITY_ROWS]
)


def realistic_ticket(ws: Workspace, rng: random.Random, n: int) -> dict[str, Any]:
    """Agent-create fields for one plausible ticket, drawn from `rng`."""
    name, fields = plausible(rng, SEEDED, SUBJECTS, ws.inboxes, CUSTOMER_DOMAINS)
    fields["initial_internal_note"] = {"body_text": f"Ticket {n} opened by {name}."}
    if rng.random() < 0.6:
        fields["assignee_id"] = rng.choice(ws.agents).id
    if rng.random() < 0.3:
        fields["status"] = rng.choice(("in_progress", "waiting", "resolved"))
    custom: dict[str, Any] = {}
    if rng.random() < 0.7:
        custom["plan"] = rng.choice(ws.fields["plan"].options).id
    if rng.random() < 0.5:
        custom["region"] = rng.choice(REGIONS)
    if rng.random() < 0.3:
        custom["score"] = rng.randint(1, 10)
    if custom:
        fields["custom_fields"] = custom
    if rng.random() < 0.25:
        fields["tag_ids"] = [rng.choice(list(ws.tags))]
    return fields
