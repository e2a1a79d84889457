"""The ticket store: create, update and bulk-change tickets, tags and idempotency (pure, no I/O).

Every operation validates first and changes nothing when it raises `ApiError`, and reports the
webhook events the change causes in a `TicketChange`.
"""

from __future__ import annotations

import heapq
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from simulator.common.clock import Clock, IdSource, iso, parse_iso
from simulator.common.idempotency import fingerprint
from simulator.common.keys import KeyRing, KeySpec
from simulator.common.store import IdempotentStore
from simulator.inboxops.config import SimulatorConfig
from simulator.inboxops.messages import (
    AGENT_FIELDS,
    DIRECTIONS,
    MESSAGE_TYPES,
    Message,
    addresses,
    bodies,
    note_bodies,
    timeline,
)
from simulator.inboxops.models import (
    Company,
    Contact,
    FieldDef,
    IdempotencyEntry,
    Inbox,
    Priority,
    Status,
    Tag,
    TicketRecord,
    Workspace,
)
from simulator.inboxops.problems import ApiError, bad_request, not_found
from simulator.inboxops.seeds import build_workspace
from ticketwire.vendors.inboxops.models import BULK_OPERATIONS, PATCH_FIELDS, PRIORITIES, STATUSES

CREATE_FIELDS: frozenset[str] = frozenset(
    {
        "subject",
        "inbox_id",
        "priority",
        "priority_id",
        "assignee_id",
        "reporter_email",
        "initial_internal_note",
        "custom_fields",
    }
)
#: Extra fields an agent may set in the app (`sim.create_ticket` / `sim.change_ticket`).
AGENT_CREATE_FIELDS = CREATE_FIELDS | {
    "status",
    "status_id",
    "contact_id",
    "remind_at",
    "remind_transition_status_id",
    "tag_ids",
}
UPDATE_FIELDS: frozenset[str] = frozenset(PATCH_FIELDS)
AGENT_UPDATE_FIELDS = UPDATE_FIELDS | {"tag_ids"}
INCLUDES: tuple[str, ...] = ("tags", "contact", "company", "inbox", "sla", "participants")
BULK_FIELDS: dict[str, frozenset[str]] = {
    "update_status": frozenset({"status", "status_id"}),
    "assign": frozenset({"assignee_id"}),
    "add_tags": frozenset({"tag_ids"}),
    "remove_tags": frozenset({"tag_ids"}),
    "move_inbox": frozenset({"inbox_id"}),
}
#: (first response, resolution) targets in hours per priority, for `include=sla`.
SLA_HOURS = {"urgent": (1, 4), "high": (4, 24), "normal": (8, 48), "low": (24, 96)}
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")


@dataclass(frozen=True)
class TicketChange:
    """The ticket after an operation, and the webhook events it causes (empty for a no-op)."""

    ticket: dict[str, Any]
    events: tuple[str, ...] = ()
    tags_added: int = 0
    tags_removed: int = 0
    #: Why fields of the request were not applied (shown in the journal).
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class BulkResult:
    """The `{data: ...}` of a bulk answer, and the per-ticket changes to publish."""

    data: dict[str, Any]
    changes: list[TicketChange]


def is_uuid(value: object) -> bool:
    """True for a canonical 36-character UUID string (any case)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def as_uuid(value: object, name: str) -> str:
    """`value` as a lowercase UUID, or 400 naming `name`."""
    if not is_uuid(value):
        raise bad_request(name, f"must be a UUID (got {_show(value)})")
    return str(value).lower()


def _chosen(field: str, level: str, choice: Status | Priority) -> dict[str, Any]:
    """A ticket's fields for a custom status or priority: `field` (the level) and its id, name
    and color."""
    return {
        field: level,
        f"{field}_id": choice.id,
        f"{field}_name": choice.name,
        f"{field}_color": choice.color,
    }


def snapshot(rec: TicketRecord) -> dict[str, Any]:
    """A copy of the ticket's API shape that later changes will not touch."""
    out = dict(rec.data)
    out["custom_fields"] = {
        k: list(v) if isinstance(v, list) else v for k, v in rec.data["custom_fields"].items()
    }
    return out


#: The keys a store issues, in the order their tokens are drawn.
KEYS = (
    KeySpec("api_key", "ixk_sim_rw_", "default", "read_write"),
    KeySpec("read_only_key", "ixk_sim_ro_", "default", "read_only"),
    KeySpec("revoked_key", "ixk_sim_rw_", "default", "read_write", retired=True),
    KeySpec("other_workspace_key", "ixk_sim_rw_", "other", "read_write"),
    KeySpec("no_entitlement_key", "ixk_sim_rw_", "unentitled", "read_write"),
    KeySpec("no_entitlement_read_only_key", "ixk_sim_ro_", "unentitled", "read_only"),
)


class Store(IdempotentStore):
    """Workspaces, their API keys, and every ticket operation of the API."""

    def __init__(
        self, seed: int, clock: Clock, config: SimulatorConfig, keep_reminder: Callable[[], bool]
    ) -> None:
        super().__init__(seed, clock, config.idempotency_ttl)
        self._max_bulk_ids = config.max_bulk_ids
        #: Whether a ticket leaving waiting keeps its (then dormant) reminder.
        self._keep_reminder = keep_reminder
        #: (remind_at, workspace id, ticket id) of every reminder set; stale rows are skipped.
        self._reminders: list[tuple[str, str, str]] = []
        self.message_ids = IdSource(seed, "messages")
        keys = IdSource(seed, "keys")
        self.default = build_workspace(self.ids, "Acme Support", "acme.test", entitled=True)
        self.other = build_workspace(self.ids, "Globex Helpdesk", "globex.test", entitled=True)
        self.unentitled = build_workspace(self.ids, "Initech Care", "initech.test", entitled=False)
        self.workspaces = {w.id: w for w in (self.default, self.other, self.unentitled)}
        self.keys = KeyRing()
        tenants = {
            "default": self.default.id,
            "other": self.other.id,
            "unentitled": self.unentitled.id,
        }
        self.keys.issue(KEYS, keys.token, tenants)

    # ----------------------------------------------------------------- lookups

    def ticket(self, ws: Workspace, ref: str | int) -> TicketRecord:
        """A ticket by uuid or ticket_number; 404 when it is not in this workspace."""
        rec: TicketRecord | None = None
        if isinstance(ref, int) and not isinstance(ref, bool):
            rec = ws.by_number.get(ref)
        elif isinstance(ref, str):
            if ref.isdigit() and len(ref) < 16:
                rec = ws.by_number.get(int(ref))
            elif is_uuid(ref):
                rec = ws.tickets.get(ref.lower())
        if rec is None:
            raise not_found(f"ticket {ref!s} not found in this workspace")
        return rec

    def render(
        self, ws: Workspace, rec: TicketRecord, include: Iterable[str] = ()
    ) -> dict[str, Any]:
        """The ticket's API shape plus the `include=` keys asked for."""
        out = snapshot(rec)
        for name in include:
            out[name] = self._included(ws, rec, name)
        return out

    def list_item(self, rec: TicketRecord) -> dict[str, Any]:
        """The ticket as `GET /tickets` lists it: only "Ticket with custom_fields (GET by id,
        POST create 201, PATCH 200)" carries `custom_fields`, the list answer does not."""
        out = snapshot(rec)
        del out["custom_fields"]
        return out

    def _included(self, ws: Workspace, rec: TicketRecord, name: str) -> Any:
        d = rec.data
        contact = ws.contacts.get(d["contact_id"]) if d["contact_id"] else None
        if name == "tags":
            return [ws.tags[t].to_json() for t in rec.tags]
        if name == "contact":
            if d["contact_id"] is None:
                return None
            if contact is None:
                return {"id": d["contact_id"], "email": None, "name": None, "company_id": None}
            return contact.to_json()
        if name == "company":
            company = ws.companies.get(contact.company_id or "") if contact else None
            return company.to_json() if company else None
        if name == "inbox":
            inbox = ws.inbox_by_id.get(d["inbox_id"])
            return inbox.to_json() if inbox else None
        if name == "sla":
            return self._sla(rec)
        # participants
        people: list[dict[str, Any]] = []
        if contact is not None:
            people.append({"type": "contact", **contact.to_json()})
        agent = ws.agent_by_id.get(d["assignee_id"] or "")
        if agent is not None:
            people.append({"type": "agent", **agent.to_json()})
        return people

    def _sla(self, rec: TicketRecord) -> dict[str, Any]:
        first, resolve = SLA_HOURS.get(rec.data["priority"], SLA_HOURS["normal"])
        created = parse_iso(rec.data["created_at"])
        assert created is not None
        due = created + timedelta(hours=resolve)
        done = rec.data["status"] in ("resolved", "closed")
        return {
            "policy": "Standard",
            "first_response_due_at": iso(created + timedelta(hours=first)),
            "resolution_due_at": iso(due),
            "breached": not done and self._now() > due,
        }

    # ----------------------------------------------------------------- tickets

    def create_ticket(
        self, ws: Workspace, body: Mapping[str, Any], *, agent: bool = False
    ) -> TicketChange:
        """Create a ticket from `POST /tickets` fields (or the wider agent set); emits created."""
        _only(body, AGENT_CREATE_FIELDS if agent else CREATE_FIELDS, "ticket create")
        if "subject" not in body:
            raise bad_request("subject", "is required")
        inbox_id = body.get("inbox_id", ws.inboxes[0].id)
        base: dict[str, Any] = {"inbox_id": _inbox(ws, inbox_id, "inbox_id").id}
        if "status" not in body and "status_id" not in body:
            base["status"] = "open"
        if "priority" not in body and "priority_id" not in body:
            base["priority"] = "normal"
        ignored: list[str] = []
        plan = self._plan(ws, None, {**base, **body}, inbox_id=base["inbox_id"], ignored=ignored)
        contact_id = plan.get("contact_id")
        note = body.get("initial_internal_note")
        if note is not None and not (
            isinstance(note, dict)
            and set(note) <= {"body_html", "body_text"}
            and all(isinstance(v, str) for v in note.values())
        ):
            raise bad_request(
                "initial_internal_note", "must be an object {body_html?, body_text?} of strings"
            )
        email = body.get("reporter_email")
        if email is not None:
            if not isinstance(email, str) or not _EMAIL.match(email):
                raise bad_request(
                    "reporter_email", f"must be an email address (got {_show(email)})"
                )
            if contact_id is None:
                contact_id = self._contact_for(ws, email).id
        now = iso(self._now())
        data: dict[str, Any] = {
            "id": self.ids.uuid(),
            "ticket_number": ws.next_number,
            "subject": plan["subject"],
            "inbox_id": plan["inbox_id"],
        }
        for key in ("status", "status_id", "status_name", "status_color"):
            data[key] = plan[key]
        for key in ("priority", "priority_id", "priority_name", "priority_color"):
            data[key] = plan[key]
        data["assignee_id"] = plan.get("assignee_id")
        data["contact_id"] = contact_id
        data["remind_at"] = plan.get("remind_at")
        data["remind_transition_status_id"] = plan.get("remind_transition_status_id")
        data["created_at"] = now
        data["updated_at"] = now
        data["custom_fields"] = plan.get("custom_fields", {})
        rec = TicketRecord(data)
        for tag_id in plan.get("tag_ids", ()):
            rec.tags[tag_id] = None
        if isinstance(note, dict) and (note.get("body_text") or note.get("body_html")):
            markup, text = bodies(note)
            self._append(rec, "internal_note", None, markup, text, touch=False)
        ws.next_number += 1
        ws.tickets[rec.id] = rec
        ws.by_number[rec.number] = rec
        self._remember_reminder(ws, rec)
        return TicketChange(snapshot(rec), ("ticket.created",), ignored=tuple(ignored))

    def create_idempotent(
        self, ws: Workspace, body: Mapping[str, Any], key: str
    ) -> tuple[TicketChange | None, dict[str, Any]]:
        """Create with an Idempotency-Key: a replay gives the stored ticket and no change."""
        if not 1 <= len(key) <= 255:
            raise bad_request("Idempotency-Key", "must be 1 to 255 characters")
        digest = fingerprint(body)
        now = self._monotonic()
        entry = ws.idempotency.get(key)
        if entry is not None and entry.expires_at > now:
            if entry.body_hash != digest:
                raise ApiError(
                    409,
                    "idempotency_conflict",
                    f"Idempotency-Key {key!r} was already used with a different request body; "
                    "send a new key to create another ticket",
                )
            return None, entry.response
        change = self.create_ticket(ws, body)
        ws.idempotency[key] = IdempotencyEntry(digest, change.ticket, now + self.idempotency_ttl)
        return change, change.ticket

    def update_ticket(
        self, ws: Workspace, rec: TicketRecord, body: Mapping[str, Any], *, agent: bool = False
    ) -> TicketChange:
        """Apply a PATCH body (or an agent's edit, which may also set `tag_ids`)."""
        _only(body, AGENT_UPDATE_FIELDS if agent else UPDATE_FIELDS, "ticket update")
        inbox_id = rec.data["inbox_id"]
        if "inbox_id" in body:
            inbox_id = _inbox(ws, body["inbox_id"], "inbox_id").id
        ignored: list[str] = []
        plan = self._plan(ws, rec, body, inbox_id=inbox_id, ignored=ignored)
        tag_ids = plan.pop("tag_ids", None)
        add = [t for t in tag_ids if t not in rec.tags] if tag_ids is not None else []
        remove = [t for t in rec.tags if t not in tag_ids] if tag_ids is not None else []
        return self._commit(ws, rec, plan, add, remove, ignored=tuple(ignored))

    def _commit(
        self,
        ws: Workspace,
        rec: TicketRecord,
        plan: Mapping[str, Any],
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        *,
        ignored: tuple[str, ...] = (),
        at: str | None = None,
    ) -> TicketChange:
        data = rec.data
        changed = {k: v for k, v in plan.items() if data[k] != v}
        added = [t for t in add_tags if t not in rec.tags]
        removed = [t for t in remove_tags if t in rec.tags]
        if not changed and not added and not removed:
            return TicketChange(snapshot(rec), ignored=ignored)
        old_status = data["status"]
        data.update(changed)
        for t in added:
            rec.tags[t] = None
        for t in removed:
            del rec.tags[t]
        data["updated_at"] = max(at, data["updated_at"]) if at else iso(self._now())
        if "remind_at" in changed or ("status_id" in changed and data["status"] == "waiting"):
            # Back in waiting, a kept reminder counts again.
            self._remember_reminder(ws, rec)
        events = ["ticket.updated"]
        if "status_id" in changed:
            events.append("ticket.status_changed")
            if data["status"] == "closed" and old_status != "closed":
                events.append("ticket.closed")
        if "assignee_id" in changed:
            events.append("ticket.assigned")
        return TicketChange(snapshot(rec), tuple(events), len(added), len(removed), ignored)

    # ----------------------------------------------------------------- reminders

    def _remember_reminder(self, ws: Workspace, rec: TicketRecord) -> None:
        due = rec.data["remind_at"]
        if due is not None:
            heapq.heappush(self._reminders, (due, ws.id, rec.id))

    def _live_reminder(self) -> tuple[str, Workspace, TicketRecord] | None:
        """The earliest reminder still set on a waiting ticket; stale heap rows are dropped."""
        while self._reminders:
            due, ws_id, ticket_id = self._reminders[0]
            ws = self.workspaces[ws_id]
            rec = ws.tickets.get(ticket_id)
            if rec is not None and rec.data["remind_at"] == due and rec.data["status"] == "waiting":
                return due, ws, rec
            heapq.heappop(self._reminders)
        return None

    def next_reminder(self) -> datetime | None:
        """When the earliest pending reminder falls due, or None when none is set."""
        live = self._live_reminder()
        return parse_iso(live[0]) if live is not None else None

    def fire_reminders(self, now: datetime) -> list[tuple[Workspace, TicketChange]]:
        """Move every waiting ticket whose reminder is due by `now` to its reminder's status.

        The status is the ticket's `remind_transition_status_id`, else the waiting status's own
        `remind_transition_status_id`, else the default open status. The reminder is cleared.
        """
        fired: list[tuple[Workspace, TicketChange]] = []
        cutoff = iso(now)
        while (live := self._live_reminder()) is not None and live[0] <= cutoff:
            due, ws, rec = live
            heapq.heappop(self._reminders)
            current = ws.status_by_id[rec.data["status_id"]]
            target_id = (
                rec.data["remind_transition_status_id"]
                or current.remind_transition_status_id
                or ws.default_status["open"].id
            )
            target = ws.status_by_id[target_id]
            plan = {
                **_chosen("status", target.status_type, target),
                "remind_at": None,
                "remind_transition_status_id": None,
            }
            fired.append((ws, self._commit(ws, rec, plan, at=due)))
        return fired

    def _plan(
        self,
        ws: Workspace,
        rec: TicketRecord | None,
        body: Mapping[str, Any],
        *,
        inbox_id: str,
        ignored: list[str] | None = None,
    ) -> dict[str, Any]:
        """Validate `body` and return the field values it sets (status and priority expanded).

        Reminder fields not sent with a waiting status are left out and explained in `ignored`.
        """
        cur = rec.data if rec is not None else None
        plan: dict[str, Any] = {}
        if "subject" in body:
            subject = body["subject"]
            if not isinstance(subject, str) or not subject.strip():
                raise bad_request("subject", "must be a non-empty string")
            if len(subject) > 998:
                raise bad_request("subject", "must be at most 998 characters")
            plan["subject"] = subject
        status = self._status(ws, cur, body)
        if status is not None:
            plan.update(_chosen("status", status.status_type, status))
        if "priority_id" in body:
            pid = as_uuid(body["priority_id"], "priority_id")
            prio = ws.priority_by_id.get(pid)
            if prio is None:
                raise bad_request("priority_id", f"unknown custom priority {pid}")
        elif "priority" in body:
            level = body["priority"]
            if level not in PRIORITIES:
                raise bad_request(
                    "priority", f"must be one of {', '.join(PRIORITIES)} (got {_show(level)})"
                )
            prio = ws.default_priority[level]
            if cur is not None and cur["priority"] == level:
                prio = ws.priority_by_id[cur["priority_id"]]
        else:
            prio = None
        if prio is not None:
            plan.update(_chosen("priority", prio.priority, prio))
        if "inbox_id" in body:
            plan["inbox_id"] = inbox_id
        for name in ("assignee_id", "contact_id"):
            if name in body:
                value = body[name]
                plan[name] = None if value is None else as_uuid(value, name)
        reminder = _reminder(ws, body)
        waiting = status is not None and status.status_type == "waiting"
        if waiting:
            plan.update(reminder)
        elif status is not None and not self._keep_reminder():
            # A ticket that leaves waiting has no reminder left to fire.
            plan.update(remind_at=None, remind_transition_status_id=None)
        if reminder and not waiting and ignored is not None:
            sets = f"sets status {status.status_type!r}" if status else "sets no status"
            ignored.append(
                f"{' and '.join(reminder)} ignored: InboxOps applies it only when the PATCH "
                f"also sets status to waiting (status or status_id); this one {sets}"
            )
        if "custom_fields" in body:
            current = cur["custom_fields"] if cur is not None else {}
            plan["custom_fields"] = _merge_custom(ws, current, body["custom_fields"], inbox_id)
        if "tag_ids" in body:
            plan["tag_ids"] = self._tag_ids(ws, body["tag_ids"], allow_empty=True)
        return plan

    def _status(
        self, ws: Workspace, cur: Mapping[str, Any] | None, body: Mapping[str, Any]
    ) -> Status | None:
        if "status_id" in body:
            sid = as_uuid(body["status_id"], "status_id")
            status = ws.status_by_id.get(sid)
            if status is None:
                raise bad_request(
                    "status_id",
                    f"unknown custom status {sid}; GET /api/v1/ticket_statuses lists them",
                )
            return status
        if "status" in body:
            stype = body["status"]
            if stype not in STATUSES:
                raise bad_request(
                    "status", f"must be one of {', '.join(STATUSES)} (got {_show(stype)})"
                )
            # Keep a non-default custom status of the same type: asking for the type it already
            # has is not a change.
            if cur is not None and cur["status"] == stype:
                return ws.status_by_id[cur["status_id"]]
            return ws.default_status[stype]
        return None

    def _tag_ids(self, ws: Workspace, value: object, *, allow_empty: bool = False) -> list[str]:
        if not isinstance(value, list) or (not value and not allow_empty):
            raise bad_request("tag_ids", "must be a non-empty array of tag UUIDs")
        out: list[str] = []
        for item in value:
            tag_id = as_uuid(item, "tag_ids")
            if tag_id not in ws.tags:
                raise bad_request("tag_ids", f"unknown tag {tag_id}; GET /api/v1/tags lists them")
            if tag_id not in out:
                out.append(tag_id)
        return out

    def _contact_for(self, ws: Workspace, email: str) -> Contact:
        email = email.lower()
        known = ws.contact_by_email.get(email)
        if known is not None:
            return ws.contacts[known]
        domain = email.rsplit("@", 1)[1]
        company_id = ws.company_by_domain.get(domain)
        if company_id is None:
            company = Company(self.ids.uuid(), domain.split(".")[0].title(), domain)
            ws.companies[company.id] = company
            ws.company_by_domain[domain] = company_id = company.id
        local = email.split("@", 1)[0]
        name = " ".join(p.title() for p in re.split(r"[._+-]", local) if p) or local
        contact = Contact(self.ids.uuid(), email, name, company_id)
        ws.contacts[contact.id] = contact
        ws.contact_by_email[email] = contact.id
        return contact

    # ----------------------------------------------------------------- bulk

    def bulk(self, ws: Workspace, body: Mapping[str, Any], *, unknown_ids: str) -> BulkResult:
        """`POST /tickets/bulk`: validate everything, then change each ticket as PATCH would."""
        op = body.get("operation")
        if op is None:
            raise bad_request("operation", f"is required; one of {', '.join(BULK_OPERATIONS)}")
        if op == "delete":
            raise bad_request("operation", "bulk delete is not available on the public API")
        if op not in BULK_OPERATIONS:
            raise bad_request(
                "operation", f"must be one of {', '.join(BULK_OPERATIONS)} (got {_show(op)})"
            )
        allowed = {"operation", "ticket_ids"} | BULK_FIELDS[op]
        _only(body, allowed, f"bulk {op}")
        refs = body.get("ticket_ids")
        if not isinstance(refs, list) or not refs:
            raise bad_request("ticket_ids", "must be a non-empty array of ticket ids")
        max_ids = self._max_bulk_ids
        if len(refs) > max_ids:
            raise bad_request("ticket_ids", f"at most {max_ids} ids per call (got {len(refs)})")
        for ref in refs:
            if isinstance(ref, bool) or not isinstance(ref, str | int):
                raise bad_request(
                    "ticket_ids", f"items must be UUIDs or numbers (got {_show(ref)})"
                )

        patch: dict[str, Any] = {}
        tag_ids: list[str] = []
        if op == "update_status":
            if "status_id" in body:
                sid = as_uuid(body["status_id"], "status_id")
                if sid not in ws.status_by_id:
                    raise not_found(f"status_id: unknown custom status {sid}", field="status_id")
                patch["status_id"] = sid
            elif "status" in body:
                patch["status"] = body["status"]
            else:
                raise bad_request("status", "update_status needs status or status_id")
        elif op == "assign":
            if "assignee_id" not in body:
                raise bad_request("assignee_id", "is required for assign (null unassigns)")
            patch["assignee_id"] = body["assignee_id"]
        elif op == "move_inbox":
            if "inbox_id" not in body:
                raise bad_request("inbox_id", "is required for move_inbox")
            inbox_id = as_uuid(body["inbox_id"], "inbox_id")
            if inbox_id not in ws.inbox_by_id:
                raise not_found(f"inbox_id: unknown inbox {inbox_id}", field="inbox_id")
            patch["inbox_id"] = inbox_id
        else:
            if "tag_ids" not in body:
                raise bad_request("tag_ids", f"is required for {op}")
            raw = body["tag_ids"]
            if not isinstance(raw, list) or not raw:
                raise bad_request("tag_ids", "must be a non-empty array of tag UUIDs")
            for item in raw:
                tag_id = as_uuid(item, "tag_ids")
                if tag_id not in ws.tags:
                    raise not_found(f"tag_ids: unknown tag {tag_id}", field="tag_ids")
                if tag_id not in tag_ids:
                    tag_ids.append(tag_id)

        # Validate the shared change up front: a bad value fails the whole call, even when every
        # id turns out to be unknown, and before any ticket changes.
        self._plan(ws, None, patch, inbox_id=ws.inboxes[0].id)
        records: list[TicketRecord] = []
        seen: set[str] = set()
        unknown: list[str] = []
        for ref in refs:
            try:
                rec = self.ticket(ws, ref)
            except ApiError:
                unknown.append(str(ref))
                continue
            if rec.id not in seen:
                seen.add(rec.id)
                records.append(rec)
        if unknown and unknown_ids == "404":
            raise not_found(
                f"ticket_ids: {len(unknown)} unknown ticket id(s): {', '.join(unknown[:5])}",
                field="ticket_ids",
            )
        changes: list[TicketChange] = []
        for rec in records:
            if op in ("add_tags", "remove_tags"):
                add = tag_ids if op == "add_tags" else ()
                remove = tag_ids if op == "remove_tags" else ()
                change = self._commit(ws, rec, {}, add, remove)
            else:
                change = self.update_ticket(ws, rec, patch)
            if change.events:
                changes.append(change)
        # "Present for add_tags" / "Present for remove_tags": each count only for its operation.
        data: dict[str, Any] = {"operation": op, "updated": len(changes)}
        if op == "add_tags":
            data["tags_added"] = sum(c.tags_added for c in changes)
        elif op == "remove_tags":
            data["tags_removed"] = sum(c.tags_removed for c in changes)
        return BulkResult(data, changes)

    # ----------------------------------------------------------------- messages

    def messages(self, rec: TicketRecord, types: Iterable[str]) -> list[dict[str, Any]]:
        """`GET /tickets/{id}/messages`: oldest first, drafts left out, only `types`."""
        return timeline(rec.messages, types)

    def add_note(
        self, rec: TicketRecord, body: Mapping[str, Any], *, touch: bool
    ) -> tuple[dict[str, Any], TicketChange]:
        """`POST /tickets/{id}/messages`: an internal note; `touch` bumps and emits the ticket."""
        markup, text = note_bodies(body)
        return self._append(rec, "internal_note", None, markup, text, touch=touch)

    def add_message(
        self, rec: TicketRecord, body: Mapping[str, Any], *, touch: bool
    ) -> tuple[dict[str, Any], TicketChange]:
        """A message as the app adds it: an email (inbound, outbound or a draft) or a note."""
        _only(body, AGENT_FIELDS, "message")
        kind = body.get("type", "email")
        if kind not in MESSAGE_TYPES:
            raise bad_request("type", f"must be one of {', '.join(MESSAGE_TYPES)}")
        direction = body.get("direction", "inbound" if kind == "email" else None)
        if kind == "email" and direction not in DIRECTIONS:
            raise bad_request("direction", f"must be one of {', '.join(DIRECTIONS)}")
        if kind == "internal_note" and direction is not None:
            raise bad_request("direction", "a note has no direction")
        draft = body.get("is_draft", False)
        if not isinstance(draft, bool) or (draft and direction != "outbound"):
            raise bad_request("is_draft", "only an outbound email may be a draft (true/false)")
        for name in ("from_address", "subject", "author_id"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise bad_request(name, "must be a string")
        markup, text = bodies(body)
        return self._append(
            rec,
            kind,
            direction,
            markup,
            text,
            touch=touch and not draft,
            from_address=body.get("from_address"),
            to_addresses=addresses(body.get("to_addresses"), "to_addresses"),
            cc_addresses=addresses(body.get("cc_addresses"), "cc_addresses"),
            subject=body.get("subject"),
            is_draft=draft,
            author_id=body.get("author_id"),
        )

    def _append(
        self,
        rec: TicketRecord,
        kind: str,
        direction: str | None,
        markup: str,
        text: str,
        *,
        touch: bool,
        **extra: Any,
    ) -> tuple[dict[str, Any], TicketChange]:
        now = iso(self._now())
        message = Message(
            id=self.message_ids.uuid(),
            ticket_id=rec.id,
            type=kind,
            direction=direction,
            body_html=markup,
            body_text=text,
            created_at=now,
            seq=len(rec.messages),
            **extra,
        )
        rec.messages.append(message)
        if not touch:
            return message.to_json(), TicketChange(snapshot(rec))
        rec.data["updated_at"] = now
        return message.to_json(), TicketChange(snapshot(rec), ("ticket.updated",))

    # ----------------------------------------------------------------- tags

    def create_tag(self, ws: Workspace, body: Mapping[str, Any]) -> Tag:
        """`POST /tags`: a new tag; a name already used (ignoring case) is 409 `conflict`."""
        _only(body, {"name", "color"}, "tag create")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("name", "is required and must be a non-empty string")
        name = name.strip()
        if len(name) > 100:
            raise bad_request("name", "must be at most 100 characters")
        color = body.get("color", "#6B7280")
        if not isinstance(color, str) or not _COLOR.match(color):
            raise bad_request("color", f"must be a hex color like #3B82F6 (got {_show(color)})")
        if name.casefold() in ws.tag_names:
            raise ApiError(409, "conflict", f"a tag named {name!r} already exists", field="name")
        tag = Tag(self.ids.uuid(), name, color)
        ws.tags[tag.id] = tag
        ws.tag_names[name.casefold()] = tag.id
        return tag


# --------------------------------------------------------------------- helpers


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _only(body: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    allowed = frozenset(allowed)
    for key in body:
        if key not in allowed:
            raise bad_request(
                key, f"unknown field for {what}; accepted fields: {', '.join(sorted(allowed))}"
            )


def _reminder(ws: Workspace, body: Mapping[str, Any]) -> dict[str, Any]:
    """The validated `remind_at` / `remind_transition_status_id` of `body` (only those sent)."""
    out: dict[str, Any] = {}
    if "remind_at" in body:
        value = body["remind_at"]
        when = None if value is None else parse_iso(value)
        if value is not None and when is None:
            raise bad_request("remind_at", f"must be an ISO 8601 date-time (got {_show(value)})")
        out["remind_at"] = None if when is None else iso(when)
    if "remind_transition_status_id" in body:
        value = body["remind_transition_status_id"]
        if value is not None:
            value = as_uuid(value, "remind_transition_status_id")
            if value not in ws.status_by_id:
                raise bad_request("remind_transition_status_id", f"unknown custom status {value}")
        out["remind_transition_status_id"] = value
    return out


def _inbox(ws: Workspace, value: object, name: str) -> Inbox:
    inbox_id = as_uuid(value, name)
    inbox = ws.inbox_by_id.get(inbox_id)
    if inbox is None:
        raise bad_request(name, f"unknown inbox {inbox_id}")
    return inbox


def _merge_custom(
    ws: Workspace, current: Mapping[str, Any], value: object, inbox_id: str
) -> dict[str, Any]:
    """Merge a `custom_fields` object into `current`; null (or an empty list) removes a key."""
    if not isinstance(value, dict):
        raise bad_request("custom_fields", "must be an object keyed by field_key")
    merged = dict(current)
    for key, raw in value.items():
        name = f"custom_fields.{key}"
        definition = ws.fields.get(key)
        if definition is None:
            raise bad_request(name, f"unknown field_key; defined: {', '.join(ws.fields)}")
        if raw is None or raw == []:
            merged.pop(key, None)
            continue
        if not definition.applies_to(inbox_id):
            raise bad_request(name, "this field is scoped to other inboxes than the ticket's")
        merged[key] = field_value(definition, raw, name)
    return merged


def field_value(definition: FieldDef, raw: object, name: str) -> Any:
    """Validate a custom-field value for its definition type; return the stored form."""
    kind = definition.type
    if kind == "text":
        if not isinstance(raw, str):
            raise bad_request(name, f"must be a string (got {_show(raw)})")
        return raw
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise bad_request(name, f"must be a number (got {_show(raw)})")
        return raw
    if kind == "date":
        if not isinstance(raw, str) or not _DATE.match(raw):
            raise bad_request(name, f"must be a date YYYY-MM-DD (got {_show(raw)})")
        try:
            date.fromisoformat(raw)
        except ValueError:
            raise bad_request(name, f"is not a real date (got {_show(raw)})") from None
        return raw
    if kind == "date_time":
        when = parse_iso(raw) if isinstance(raw, str) else None
        if when is None or not isinstance(raw, str) or "T" not in raw.upper():
            raise bad_request(name, f"must be an ISO 8601 date-time (got {_show(raw)})")
        return iso(when)
    options = definition.option_ids()
    if kind == "select":
        option = as_uuid(raw, name)
        if option not in options:
            raise bad_request(name, f"{option} is not an option of {definition.key}")
        return option
    if not isinstance(raw, list):
        raise bad_request(name, "must be an array of option UUIDs")
    chosen: list[str] = []
    for item in raw:
        option = as_uuid(item, name)
        if option not in options:
            raise bad_request(name, f"{option} is not an option of {definition.key}")
        if option not in chosen:
            chosen.append(option)
    return chosen
