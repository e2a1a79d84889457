"""The load: signed InboxOps and cStar deliveries of realistic ~1.5 KB tickets, ids unique.

InboxOps bodies are built from tickets that exist in the simulator (so write-backs succeed), with
every custom field filled and a realistic subject. Exactly one body in `WRITEBACK_EVERY` is an
urgent, open `ticket.updated`: the one case the benchmark rule set answers with a PATCH. cStar
bodies (intake only, nothing processes them) are `ticket.updated` deliveries of made-up tickets.
"""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ticketwire.vendors.cstar.webhook import sign as cstar_sign
from ticketwire.vendors.inboxops.webhook import sign

#: One body in this many leads to a write-back (an urgent, open ticket.updated).
WRITEBACK_EVERY = 10
#: Event types of the other bodies, with their weights.
OTHER_EVENTS = (("ticket.updated", 85), ("ticket.status_changed", 10), ("ticket.assigned", 5))

SUBJECTS = (
    "Invoices exported to PDF are blank since this morning's update (month-end close blocked)",
    "SSO login loops back to the sign-in page for everyone in our Azure AD tenant",
    "Customer portal shows another company's tickets after the latest release",
    "Webhook deliveries to our CRM fail with a timeout since Monday 09:00 UTC",
    "Charged twice for the annual Business plan; please refund the duplicate payment",
    "CSV export of last quarter's conversations stops at 10,000 rows without an error",
    "Chat widget does not load on Safari 17 when third-party cookies are blocked",
    "Emails from our support address land in Gmail spam after the DNS change",
    "Agents cannot attach files larger than 10 MB to replies (413 from the upload API)",
    "Reports show times in UTC although the workspace time zone is Europe/Berlin",
)
BROWSERS = ("Chrome 124 on macOS 14.4", "Firefox 125 on Windows 11", "Safari 17.4 on iOS 17.4")
ERRORS = (
    "PDF renderer returned 502 Bad Gateway after 30.0 s (request id 7c1e9f0a-3b52-4d8e-a1f4)",
    "SAML assertion rejected: audience mismatch (expected urn:inboxops:sp, got urn:acme:sp)",
    "upstream connect error or disconnect/reset before headers, reset reason: overflow",
)

STEPS = (
    "1. Open Billing > Invoices 2. Select last month 3. Click Export PDF: spinner, then a blank file",
    "1. Sign in with SSO 2. Approve the MFA prompt 3. Redirected to /login again, no error shown",
    "1. Open the portal as a customer 2. Go to My tickets 3. Tickets of another account are listed",
)


@dataclass(frozen=True)
class Workspace:
    """What the bodies need from the simulator: tenant, tickets, status/priority/field rows."""

    tenant_id: str
    tickets: Sequence[Mapping[str, Any]]
    statuses: Sequence[Mapping[str, Any]]
    priorities: Sequence[Mapping[str, Any]]
    custom_fields: Sequence[Mapping[str, Any]]

    @classmethod
    def from_simulator(
        cls, info: Mapping[str, Any], tickets: Sequence[Mapping[str, Any]]
    ) -> Workspace:
        """Build from `GET /_sim` (`data`) and `GET /_sim/tickets` (`data`)."""
        return cls(
            tenant_id=str(info["workspace_id"]),
            tickets=tickets,
            statuses=info["statuses"],
            priorities=info["priorities"],
            custom_fields=info["custom_fields"],
        )


def _row(rows: Sequence[Mapping[str, Any]], key: str, value: str) -> Mapping[str, Any]:
    for row in rows:
        if row.get(key) == value and row.get("is_default", True):
            return row
    raise ValueError(f"the simulator has no default {key} {value!r}")


class Bodies:
    """Make signed bodies; event ids are unique across every body this object ever makes."""

    def __init__(self, ws: Workspace, secret: str, *, seed: int = 7) -> None:
        if not ws.tickets:
            raise ValueError("the simulator has no tickets to build deliveries from")
        self._secret = secret
        self._tenant = ws.tenant_id
        self._rng = random.Random(seed)
        self._nonce = f"{random.Random().getrandbits(32):08x}"
        self._made = 0
        self._open = _row(ws.statuses, "status_type", "open")
        self._urgent = _row(ws.priorities, "priority", "urgent")
        self._high = _row(ws.priorities, "priority", "high")
        fields = {f["field_key"]: f for f in ws.custom_fields}
        # Per ticket: (plain data JSON, urgent-and-open data JSON), serialised once.
        self._data = [self._variants(t, fields, i) for i, t in enumerate(ws.tickets)]
        self._events = [e for e, _ in OTHER_EVENTS]
        self._cum = list(itertools.accumulate(w for _, w in OTHER_EVENTS))
        self._epoch = datetime.now(UTC).replace(microsecond=0)

    @property
    def tickets(self) -> int:
        """How many distinct tickets bodies can be about."""
        return len(self._data)

    @property
    def made(self) -> int:
        """Bodies made so far (event ids used)."""
        return self._made

    def _variants(
        self, ticket: Mapping[str, Any], fields: Mapping[str, Mapping[str, Any]], n: int
    ) -> tuple[str, str]:
        rng = random.Random(n)
        data = dict(ticket)
        data["subject"] = f"{SUBJECTS[n % len(SUBJECTS)]} [#{ticket.get('ticket_number', n)}]"
        custom = dict(data.get("custom_fields") or {})
        plan = fields.get("plan")
        if plan and plan.get("options"):
            custom.setdefault("plan", rng.choice(plan["options"])["id"])
        products = fields.get("products")
        if products and products.get("options"):
            custom["products"] = [o["id"] for o in products["options"][:2]]
        custom.setdefault("region", rng.choice(("eu-west", "us-east")))
        custom["due_date"] = f"2026-12-{rng.randint(10, 28):02d}"
        custom["follow_up_at"] = f"2026-12-{rng.randint(1, 9):02d}T09:30:00.000Z"
        # 1..8: the benchmark rule that looks at the score needs 9 or more.
        custom["score"] = rng.randint(1, 8)
        custom["order_reference"] = f"SO-2026-{rng.randint(100000, 999999)}"
        custom["app_version"] = f"8.{rng.randint(10, 19)}.{rng.randint(0, 9)}"
        custom["browser"] = rng.choice(BROWSERS)
        custom["last_error"] = rng.choice(ERRORS)
        custom["environment"] = rng.choice(("production", "staging"))
        custom["affected_users"] = rng.randint(1, 400)
        custom["account_url"] = (
            f"https://admin.customer-{rng.randint(1000, 9999)}.example/accounts/{n}"
        )
        custom["steps_to_reproduce"] = rng.choice(STEPS)
        data["custom_fields"] = custom
        plain = dict(data)
        if plain.get("priority") == "urgent" and plain.get("status") == "open":
            plain.update(
                priority="high",
                priority_id=self._high["id"],
                priority_name=self._high["name"],
                priority_color=self._high["color"],
            )
        urgent = dict(data)
        urgent.update(
            status="open",
            status_id=self._open["id"],
            status_name=self._open["name"],
            status_color=self._open["color"],
            priority="urgent",
            priority_id=self._urgent["id"],
            priority_name=self._urgent["name"],
            priority_color=self._urgent["color"],
        )
        dump = json.dumps
        return dump(plain, separators=(",", ":")), dump(urgent, separators=(",", ":"))

    def make(self, count: int, *, tickets: int | None = None) -> Iterator[tuple[str, bytes]]:
        """Yield `count` (signature, body) pairs about the first `tickets` tickets (default all)."""
        pool = min(tickets or len(self._data), len(self._data))
        rng = self._rng
        secret = self._secret
        second, stamp = -1, ""
        for _ in range(count):
            n = self._made
            self._made += 1
            plain, urgent = self._data[rng.randrange(pool)]
            if n % WRITEBACK_EVERY == 0:
                event, data = "ticket.updated", urgent
            else:
                event, data = rng.choices(self._events, cum_weights=self._cum)[0], plain
            if n // 1000 != second:
                second = n // 1000
                stamp = (self._epoch + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S")
            created = f"{stamp}.{n % 1000:03d}Z"
            body = (
                f'{{"event":"{event}","event_id":"evt_{self._nonce}_{n:09d}",'
                f'"tenant_id":"{self._tenant}","created_at":"{created}","data":{data}}}'
            ).encode()
            yield sign(body, secret), body

    def write(self, path: Path, count: int, *, tickets: int | None = None) -> int:
        """Write `count` bodies to `path`, one `<signature> <body>` line each; return mean size."""
        total = 0
        with path.open("wb") as f:
            for sig, body in self.make(count, tickets=tickets):
                total += len(body)
                f.write(sig.encode() + b" " + body + b"\n")
        return total // max(count, 1)

    def each_ticket(self, event: str = "ticket.updated") -> Iterator[tuple[str, bytes]]:
        """Yield one signed `event` delivery per ticket, every ticket exactly once, in order."""
        secret = self._secret
        epoch = self._epoch
        for plain, _ in self._data:
            n = self._made
            self._made += 1
            created = (epoch + timedelta(milliseconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            body = (
                f'{{"event":"{event}","event_id":"evt_{self._nonce}_{n:09d}",'
                f'"tenant_id":"{self._tenant}","created_at":"{created}Z","data":{plain}}}'
            ).encode()
            yield sign(body, secret), body

    def write_each_ticket(self, path: Path, event: str = "ticket.updated") -> int:
        """Write one `each_ticket` line per ticket to `path`; return how many."""
        count = 0
        with path.open("wb") as f:
            for sig, body in self.each_ticket(event):
                count += 1
                f.write(sig.encode() + b" " + body + b"\n")
        return count


class CStarBodies:
    """Make signed cStar `ticket.updated` bodies (~1.5 KB); ids are unique across every body."""

    def __init__(self, secret: str, *, tickets: int = 5_000, seed: int = 11) -> None:
        self._secret = secret
        self._rng = random.Random(seed)
        self._nonce = f"{random.Random().getrandbits(32):08x}"
        self._made = 0
        self._team = str(uuid.UUID(int=random.Random(seed).getrandbits(128), version=4))
        self._epoch = datetime.now(UTC).replace(microsecond=0)
        # Per ticket: the `ticket` and `customer` JSON, serialised once.
        self._data = [self._ticket(n) for n in range(tickets)]

    @property
    def made(self) -> int:
        """Bodies made so far (event ids used)."""
        return self._made

    def _ticket(self, n: int) -> tuple[str, str]:
        rng = random.Random(n)
        created = self._epoch - timedelta(days=rng.randint(1, 60), minutes=rng.randint(0, 1439))
        customer_id = f"cus_{rng.getrandbits(64):016x}"
        ticket = {
            "id": f"tkt_{rng.getrandbits(64):016x}",
            "prefixed_id": f"TKT-{10000 + n}",
            "title": f"{SUBJECTS[n % len(SUBJECTS)]} [#{10000 + n}]",
            "status": "open",
            "priority": "normal",
            "channel": rng.choice(("email", "chat", "portal")),
            "customer_id": customer_id,
            "assigned_to": f"agt_{rng.getrandbits(32):08x}",
            "tags": rng.sample(["billing", "sso", "export", "portal", "vip", "bug", "eu"], 3),
            "metadata": {
                "plan": rng.choice(("starter", "business", "enterprise")),
                "region": rng.choice(("eu-west", "us-east")),
                "app_version": f"8.{rng.randint(10, 19)}.{rng.randint(0, 9)}",
                "browser": rng.choice(BROWSERS),
                "last_error": rng.choice(ERRORS),
                "order_reference": f"SO-2026-{rng.randint(100000, 999999)}",
                "steps_to_reproduce": rng.choice(STEPS),
                "environment": rng.choice(("production", "staging")),
                "affected_users": rng.randint(1, 400),
                "account_url": f"https://admin.customer-{rng.randint(1000, 9999)}.example/a/{n}",
            },
            "message_count": rng.randint(1, 12),
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updated_at": self._epoch.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dashboard_url": f"https://app.cstar.help/tickets/TKT-{10000 + n}",
        }
        customer = {
            "id": customer_id,
            "name": f"Customer {n}",
            "email": f"customer.{n}@customer-{rng.randint(1000, 9999)}.example",
            "company": f"Customer {rng.randint(1000, 9999)} GmbH",
            "phone": f"+49 30 {rng.randint(1000000, 9999999)}",
            "locale": rng.choice(("de-DE", "en-GB", "en-US")),
            "timezone": rng.choice(("Europe/Berlin", "Europe/London", "America/New_York")),
            "created_at": (created - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        dump = json.dumps
        return dump(ticket, separators=(",", ":")), dump(customer, separators=(",", ":"))

    def make(self, count: int) -> Iterator[tuple[str, bytes]]:
        """Yield `count` (`X-Signature` value, body) pairs, all signed with one timestamp."""
        # One `t` for the whole batch, taken now: the receiver refuses |now - t| > 300 s, and
        # bodies are made just before the load run that sends them, which lasts well under that.
        timestamp = int(time.time())
        created = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        changes = '{"priority":{"from":"normal","to":"high"}}'
        rng = self._rng
        for _ in range(count):
            n = self._made
            self._made += 1
            ticket, customer = self._data[rng.randrange(len(self._data))]
            body = (
                f'{{"id":"evt_{self._nonce}_{n:09d}","type":"ticket.updated",'
                f'"created_at":"{created}","team_id":"{self._team}","data":{{"ticket":{ticket},'
                f'"customer":{customer},"changes":{changes}}}}}'
            ).encode()
            yield cstar_sign(body, self._secret, timestamp), body

    def write(self, path: Path, count: int) -> int:
        """Write `count` bodies to `path`, one `<X-Signature value> <body>` line each; mean size."""
        total = 0
        with path.open("wb") as f:
            for sig, body in self.make(count):
                total += len(body)
                f.write(sig.encode() + b" " + body + b"\n")
        return total // max(count, 1)
