"""The Thena ticket store: create, update, bulk update, bulk create and list (pure, no I/O).

Every single-ticket operation validates first and changes nothing when it raises `ApiError`, and
reports the platform events the change causes in a `TicketChange`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from simulator.common.clock import Clock, IdSource, iso, parse_iso
from simulator.common.store import SeededStore
from simulator.thena.config import ThenaSimulatorConfig
from simulator.thena.models import (
    Agent,
    Credential,
    Org,
    Priority,
    Status,
    Team,
    TeamValue,
    find_value,
)
from simulator.thena.problems import ApiError, bad_request, not_found
from simulator.thena.seeds import build_org, named_uid, uid
from ticketwire.vendors.thena.models import (
    BULK_CREATE_FIELDS,
    BULK_UPDATE_FIELDS,
    CREATE_FIELDS,
    DATE_RANGES,
    UPDATE_FIELDS,
)

#: Extra fields an agent may set in the app (`sim.create_ticket` / `sim.change_ticket`).
AGENT_FIELDS = frozenset({"tags"})
#: Days each `dateRange` reaches back, counting today (months are taken as 30 days).
RANGE_DAYS = {"1d": 1, "2d": 2, "1w": 7, "2w": 14, "3w": 21, "4w": 28, "1m": 30, "3m": 90}
_BULK_CREATE = frozenset(BULK_CREATE_FIELDS)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_STRING_FIELDS = (
    "description",
    "source",
    "submitterEmail",
    "aiGeneratedTitle",
    "aiGeneratedSummary",
    "accountId",
    "sentimentId",
    "formId",
    "closedById",
)


@dataclass(frozen=True)
class TicketChange:
    """A ticket after an operation (event shape), the shape before, and the events it causes."""

    org_id: str
    ticket_id: str
    ticket: dict[str, Any]
    previous: dict[str, Any] | None = None
    events: tuple[str, ...] = ()


@dataclass
class BulkCreate:
    """What `POST /v1/tickets/bulk` did: `data`, the changes to publish, and the error if any."""

    data: list[dict[str, str]] = field(default_factory=list)
    changes: list[TicketChange] = field(default_factory=list)
    error: ApiError | None = None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


class Store(SeededStore):
    """Organisations, their credentials, and every ticket operation of the API."""

    def __init__(self, seed: int, clock: Clock, config: ThenaSimulatorConfig) -> None:
        super().__init__(seed, clock)
        #: Page and bulk sizes come from here.
        self._config = config
        tokens = IdSource(seed, "keys")
        self.default = build_org(
            self.ids, "Acme Support", "acme.test", (("Support", "SUP"), ("Engineering", "ENG"))
        )
        self.other = build_org(self.ids, "Globex Helpdesk", "globex.test", (("Support", "GLX"),))
        self.orgs = {o.id: o for o in (self.default, self.other)}
        self.credentials: dict[tuple[str, str], Credential] = {}
        self.api_key = self._add("api-key", f"thena_sim_{tokens.token(16)}", self.default.id)
        self.bearer_token = self._add("bearer", _jwt_like(tokens), self.default.id)
        self.other_api_key = self._add("api-key", f"thena_sim_{tokens.token(16)}", self.other.id)
        self.other_bearer_token = self._add("bearer", _jwt_like(tokens), self.other.id)

    def _add(self, scheme: Any, value: str, org_id: str) -> str:
        self.credentials[(scheme, value)] = Credential(value, scheme, org_id)
        return value

    # ----------------------------------------------------------------- lookups

    def record(self, org: Org, ticket_id: str) -> dict[str, Any]:
        """A ticket's stored record; 404 when it is not one of this organisation's."""
        rec = org.tickets.get(ticket_id)
        if rec is None:
            raise not_found(f"ticket {ticket_id} not found in this organisation")
        return rec

    def render(self, org: Org, rec: Mapping[str, Any]) -> dict[str, Any]:
        """The ticket as `GET /v1/tickets/{id}` answers it."""
        team, status, priority, agent = self._refs(org, rec)
        kind = org.ticket_type(rec["typeId"]) if rec["typeId"] else None
        out = {
            "id": rec["id"],
            "ticketIdentifier": f"{team.identifier}-{rec['number']}",
            "title": rec["title"],
            "ticketId": rec["ticketId"],
            "description": rec["description"],
            "source": rec["source"],
            "accountId": rec["accountId"],
            "status": status.name if status else None,
            "statusId": rec["statusId"],
            "priority": priority.name if priority else None,
            "priorityId": rec["priorityId"],
            "teamId": team.id,
            "teamName": team.name,
            "teamIdentifier": team.identifier,
            "isPrivate": rec["isPrivate"],
            "typeId": rec["typeId"],
            "type": kind.name if kind else None,
            "assignedAgent": agent.name if agent else None,
            "assignedAgentId": rec["assignedAgentId"],
            "assignedAgentEmail": agent.email if agent else None,
            "assignedAgentAvatar": None,
            "requestorEmail": rec["requestorEmail"],
            **_contact(org, rec["requestorEmail"]),
            "submitterEmail": rec["submitterEmail"],
            "storyPoints": None,
            "account": None,
            "subTeamId": None,
            "subTeamName": None,
            "subTeamIdentifier": None,
            "formId": rec["formId"],
            "sentiment": None,
            "customFieldValues": copy.deepcopy(rec["customFieldValues"]),
            "metadata": copy.deepcopy(rec["metadata"]),
            "dueDate": rec["dueDate"],
            "tags": list(rec["tags"]),
            "deletedAt": None,
            "archivedAt": None,
            "createdAt": rec["createdAt"],
            "updatedAt": rec["updatedAt"],
            "aiGeneratedTitle": rec["aiGeneratedTitle"],
            "aiGeneratedSummary": rec["aiGeneratedSummary"],
            "sentimentId": rec["sentimentId"],
        }
        return out

    def event_ticket(self, org: Org, rec: Mapping[str, Any]) -> dict[str, Any]:
        """The ticket as platform events carry it (`payload.ticket`)."""
        team, status, priority, agent = self._refs(org, rec)
        email = rec["requestorEmail"]
        return {
            "id": rec["id"],
            "ticketId": str(rec["ticketId"]),
            "title": rec["title"],
            "description": rec["description"],
            **_contact(org, email),
            "priorityId": rec["priorityId"],
            "statusId": rec["statusId"],
            "statusName": status.name if status else None,
            "priorityName": priority.name if priority else None,
            "sentimentId": rec["sentimentId"],
            "source": rec["source"],
            "createdAt": rec["createdAt"],
            "teamId": team.id,
            "teamName": team.name,
            "teamIdentifier": team.identifier,
            "subTeamId": None,
            "subTeamName": None,
            "subTeamIdentifier": None,
            "isEscalated": False,
            "customer": {
                "id": _contact_id(org, email),
                "email": email,
                "name": email.split("@")[0] if email else None,
            },
            "assignedTo": agent.id if agent else None,
            "assignedAgent": agent.to_json() if agent else None,
            "tags": list(rec["tags"]),
            "isArchived": False,
            "metadata": copy.deepcopy(rec["metadata"]),
            "typeId": rec["typeId"],
            "isPrivate": rec["isPrivate"],
        }

    def _team_of(self, org: Org, rec: Mapping[str, Any]) -> Team:
        team = org.team(rec["teamId"])
        assert team is not None, "a stored ticket always has a team of its organisation"
        return team

    def _refs(
        self, org: Org, rec: Mapping[str, Any]
    ) -> tuple[Team, Status | None, Priority | None, Agent | None]:
        """The team, status, priority and assigned agent a stored ticket points at."""
        team = self._team_of(org, rec)
        agent = org.agent(agent_id=rec["assignedAgentId"]) if rec["assignedAgentId"] else None
        return (
            team,
            team.status(status_id=rec["statusId"]),
            team.priority(priority_id=rec["priorityId"]),
            agent,
        )

    # ----------------------------------------------------------------- create

    def create_ticket(
        self, org: Org, body: Any, *, agent: bool = False
    ) -> tuple[TicketChange | None, dict[str, Any]]:
        """Create one ticket; return (the change to publish, or None for a dedup hit; the record).

        A `deDuplicationKey` already used in this organisation returns its ticket, unchanged.
        """
        if not isinstance(body, Mapping):
            raise bad_request("body", "must be a JSON object")
        _only(body, frozenset(CREATE_FIELDS) | (AGENT_FIELDS if agent else frozenset()), "a ticket")
        key = body.get("deDuplicationKey")
        if key is not None:
            if not isinstance(key, str) or not 1 <= len(key) <= 255:
                raise bad_request("deDuplicationKey", "must be a string of 1 to 255 characters")
            existing = org.dedup.get(key)
            if existing is not None and existing in org.tickets:
                return None, org.tickets[existing]
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise bad_request("title", "is required and must be a non-empty string")
        team_id = body.get("teamId")
        if team_id is None:
            raise bad_request("teamId", "is required")
        team = org.team(team_id) if isinstance(team_id, str) else None
        if team is None:
            raise bad_request("teamId", f"{_show(team_id)} is not a team of this organisation")
        fields = self._validate(org, team, body)
        now = iso(self._now())
        rec: dict[str, Any] = {
            "id": _uid(self.ids),
            "ticketId": org.next_ticket_id,
            "number": team.next_number,
            "title": title.strip(),
            "teamId": team.id,
            "statusId": team.default_status.id,
            "priorityId": team.default_priority.id,
            "assignedAgentId": None,
            "requestorEmail": None,
            "isPrivate": False,
            "typeId": None,
            "metadata": {},
            "customFieldValues": [],
            "attachmentUrls": [],
            "dueDate": None,
            "tags": [],
            **dict.fromkeys(_STRING_FIELDS),
            "createdAt": now,
            "updatedAt": now,
        }
        rec.update(fields)
        org.next_ticket_id += 1
        team.next_number += 1
        org.tickets[rec["id"]] = rec
        if key is not None:
            org.dedup[key] = rec["id"]
        change = TicketChange(
            org.id, rec["id"], self.event_ticket(org, rec), events=("ticket:created",)
        )
        return change, rec

    def bulk_create(self, org: Org, body: Any, *, atomic: bool = False) -> BulkCreate:
        """`POST /v1/tickets/bulk`; with stopOnError (the default) stop at the first bad ticket.

        Tickets before the bad one stay created (and are published), or with `atomic` are
        removed again, unpublished; nothing after it is tried.
        A ticket takes only the fields the bulk page lists: no `deDuplicationKey`, so a bulk
        create sent twice creates its tickets twice.
        """
        if not isinstance(body, Mapping):
            raise bad_request("body", "must be a JSON object")
        _only(body, frozenset({"tickets", "options"}), "a bulk create")
        tickets = body.get("tickets")
        if not isinstance(tickets, list) or not tickets:
            raise bad_request("tickets", "is required and must be a non-empty array")
        max_tickets = self._config.max_bulk_tickets
        if len(tickets) > max_tickets:
            raise bad_request("tickets", f"at most {max_tickets} tickets per request")
        options = body.get("options", {})
        if not isinstance(options, Mapping):
            raise bad_request("options", "must be an object")
        _only(options, frozenset({"stopOnError"}), "options")
        stop = options.get("stopOnError", True)
        if not isinstance(stop, bool):
            raise bad_request("options.stopOnError", "must be true or false")
        result = BulkCreate()
        counters = (org.next_ticket_id, [t.next_number for t in org.teams])
        for index, item in enumerate(tickets):
            try:
                if isinstance(item, Mapping):
                    _only(item, _BULK_CREATE, "a ticket of a bulk create")
                change, rec = self.create_ticket(org, item)
            except ApiError as exc:
                if stop:
                    result.error = ApiError(
                        400, f"tickets[{index}]: {exc.message}", field=f"tickets[{index}]"
                    )
                    if atomic:
                        for made in result.data:
                            del org.tickets[made["id"]]
                        org.next_ticket_id = counters[0]
                        for team, number in zip(org.teams, counters[1], strict=True):
                            team.next_number = number
                        result.data, result.changes = [], []
                    return result
                continue
            result.data.append({"id": rec["id"], "title": rec["title"]})
            if change is not None:
                result.changes.append(change)
        return result

    # ----------------------------------------------------------------- update

    def update_ticket(
        self, org: Org, rec: dict[str, Any], body: Any, *, agent: bool = False
    ) -> TicketChange:
        """`PATCH /v1/tickets/{id}`: change the given fields; a no-op emits nothing."""
        if not isinstance(body, Mapping):
            raise bad_request("body", "must be a JSON object")
        _only(
            body, frozenset(UPDATE_FIELDS) | (AGENT_FIELDS if agent else frozenset()), "an update"
        )
        if not body:
            raise bad_request("body", "no fields to update")
        if "title" in body and (not isinstance(body["title"], str) or not body["title"].strip()):
            raise bad_request("title", "must be a non-empty string")
        fields = self._validate(org, self._team_of(org, rec), body)
        if "title" in body:
            fields["title"] = body["title"].strip()
        return self._apply(org, rec, fields)

    def bulk_update(self, org: Org, body: Any) -> tuple[dict[str, Any], list[TicketChange]]:
        """`PATCH /v1/tickets/bulk`: `{updated, skipped}` and the changes to publish.

        The shared change is validated before any ticket changes; unknown ids, other
        organisations' tickets, and tickets whose team has not the given status or priority
        are skipped with a reason.
        """
        if not isinstance(body, Mapping):
            raise bad_request("body", "must be a JSON object")
        _only(body, frozenset({"ticketIds", *BULK_UPDATE_FIELDS}), "a bulk update")
        ids = body.get("ticketIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise bad_request("ticketIds", "is required and must be a non-empty array of ids")
        max_ids = self._config.max_bulk_ids
        if len(ids) > max_ids:
            raise bad_request("ticketIds", f"at most {max_ids} ids per request")
        change = {k: v for k, v in body.items() if k != "ticketIds"}
        if not change:
            raise bad_request(
                "body", f"nothing to update; give one of {', '.join(BULK_UPDATE_FIELDS)}"
            )
        for name in ("statusId", "priorityId"):
            if name in change and not self._known_in_org(org, name, change[name]):
                raise bad_request(name, f"{_show(change[name])} is not one of this organisation's")
        # Team-independent fields are the same for every ticket: a bad one fails the request.
        common = {k: v for k, v in change.items() if k not in ("statusId", "priorityId")}
        shared = self._validate(org, org.teams[0], common)
        updated: list[dict[str, str]] = []
        skipped: list[dict[str, str]] = []
        changes: list[TicketChange] = []
        for ticket_id in dict.fromkeys(ids):
            rec = org.tickets.get(ticket_id)
            if rec is None:
                skipped.append({"id": ticket_id, "reason": "ticket not found"})
                continue
            team = self._team_of(org, rec)
            try:
                fields = {**shared, **self._team_fields(team, change)}
            except ApiError as exc:
                skipped.append({"id": ticket_id, "reason": exc.message})
                continue
            result = self._apply(org, rec, fields)
            updated.append({"id": rec["id"], "title": rec["title"]})
            if result.events:
                changes.append(result)
        return {"updated": updated, "skipped": skipped}, changes

    def _known_in_org(self, org: Org, name: str, value: Any) -> bool:
        for team in org.teams:
            if name == "statusId" and team.status(status_id=value) is not None:
                return True
            if name == "priorityId" and team.priority(priority_id=value) is not None:
                return True
        return False

    def _team_fields(self, team: Team, change: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "statusId" in change:
            if team.status(status_id=change["statusId"]) is None:
                raise ApiError(400, f"statusId is not a status of team {team.identifier}")
            out["statusId"] = change["statusId"]
        if "priorityId" in change:
            if team.priority(priority_id=change["priorityId"]) is None:
                raise ApiError(400, f"priorityId is not a priority of team {team.identifier}")
            out["priorityId"] = change["priorityId"]
        return out

    def _apply(self, org: Org, rec: dict[str, Any], fields: Mapping[str, Any]) -> TicketChange:
        before = self.event_ticket(org, rec)
        old = {k: rec.get(k) for k in fields}
        changed = {k for k, v in fields.items() if old[k] != v}
        if not changed:
            return TicketChange(org.id, rec["id"], before, before, ())
        rec.update({k: copy.deepcopy(fields[k]) for k in changed})
        rec["updatedAt"] = iso(self._now())
        events = ["ticket:updated"]
        for name, event in (
            ("statusId", "ticket:status:changed"),
            ("priorityId", "ticket:priority:changed"),
            ("assignedAgentId", "ticket:assigned"),
            ("typeId", "ticket:type:changed"),
            ("tags", "ticket:tag:updated"),
        ):
            if name in changed:
                events.append(event)
        return TicketChange(org.id, rec["id"], self.event_ticket(org, rec), before, tuple(events))

    # ----------------------------------------------------------------- validation

    def _validate(self, org: Org, team: Team, body: Mapping[str, Any]) -> dict[str, Any]:
        """Check the fields shared by create and update; return the record fields they set."""
        out: dict[str, Any] = {}
        for kind, values in (("status", team.statuses), ("priority", team.priorities)):
            found = _team_value(team, kind, values, body)
            if found is not None:
                out[f"{kind}Id"] = found.id
        if "assignedAgentId" in body:
            agent_id = body["assignedAgentId"]
            if agent_id is None:
                out["assignedAgentId"] = None
            elif org.agent(agent_id=_text(agent_id, "assignedAgentId")) is None:
                raise bad_request("assignedAgentId", f"{_show(agent_id)} is not an agent here")
            else:
                out["assignedAgentId"] = agent_id
        elif body.get("assignedAgentEmail") is not None:
            email = _text(body["assignedAgentEmail"], "assignedAgentEmail")
            agent = org.agent(email=email)
            if agent is None:
                raise bad_request("assignedAgentEmail", f"no agent with email {email!r}")
            out["assignedAgentId"] = agent.id
        if "typeId" in body:
            if body["typeId"] is not None and org.ticket_type(str(body["typeId"])) is None:
                raise bad_request("typeId", f"{_show(body['typeId'])} is not a ticket type")
            out["typeId"] = body["typeId"]
        if "isPrivate" in body:
            if not isinstance(body["isPrivate"], bool):
                raise bad_request("isPrivate", "must be true or false")
            out["isPrivate"] = body["isPrivate"]
        if "requestorEmail" in body:
            email = body["requestorEmail"]
            if email is not None and (not isinstance(email, str) or not _EMAIL.match(email)):
                raise bad_request(
                    "requestorEmail", f"must be an email address (got {_show(email)})"
                )
            out["requestorEmail"] = email
        if "metadata" in body:
            if not isinstance(body["metadata"], Mapping):
                raise bad_request("metadata", "must be an object")
            out["metadata"] = dict(body["metadata"])
        for name in ("customFieldValues", "attachmentUrls"):
            if name in body:
                if not isinstance(body[name], list):
                    raise bad_request(name, "must be an array")
                out[name] = list(body[name])
        if "tags" in body:
            tags = body["tags"]
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise bad_request("tags", "must be an array of tag names")
            out["tags"] = list(dict.fromkeys(tags))
        if body.get("dueDate") is not None:
            due = parse_iso(body["dueDate"]) if isinstance(body["dueDate"], str) else None
            if due is None:
                raise bad_request("dueDate", "must be an ISO 8601 date-time")
            out["dueDate"] = iso(due)
        elif "dueDate" in body:
            out["dueDate"] = None
        for name in _STRING_FIELDS:
            if name in body:
                if body[name] is not None and not isinstance(body[name], str):
                    raise bad_request(name, "must be a string")
                out[name] = body[name]
        return out

    # ----------------------------------------------------------------- list

    def list_tickets(
        self, org: Org, query: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], int, int, int]:
        """`GET /v1/tickets`: (page of tickets, total, page, limit), oldest ticket first."""
        page = _int_param(query, "page", 0, low=0)
        limit = _int_param(query, "limit", self._config.default_limit, low=1)
        if limit > self._config.max_limit:
            raise bad_request("limit", f"must be at most {self._config.max_limit}")
        rows = list(org.tickets.values())
        team_id = query.get("teamId")
        if team_id:
            if org.team(team_id) is None:
                raise bad_request("teamId", f"{team_id!r} is not a team of this organisation")
            rows = [r for r in rows if r["teamId"] == team_id]
        date_range = query.get("dateRange")
        if date_range:
            if date_range not in DATE_RANGES:
                raise bad_request("dateRange", f"must be one of {', '.join(DATE_RANGES)}")
            today = self._now().replace(hour=0, minute=0, second=0, microsecond=0)
            cutoff = today - timedelta(days=RANGE_DAYS[date_range] - 1)
            rows = [r for r in rows if (parse_iso(r["createdAt"]) or today) >= cutoff]
        rows.sort(key=lambda r: int(r["ticketId"]))
        chunk = rows[page * limit : (page + 1) * limit]
        return [self.render(org, r) for r in chunk], len(rows), page, limit


def _contact_id(org: Org, email: str | None) -> str | None:
    """The requestor's contact id: one per email (ignoring case) in an organisation."""
    return named_uid(f"{org.id}:{email.casefold()}", "K") if email else None


def _contact(org: Org, email: str | None) -> dict[str, Any]:
    """The `customerContact*` fields of a ticket whose requestor is `email`."""
    return {
        "customerContactId": _contact_id(org, email),
        "customerContactEmail": email,
        "customerContactFirstName": None,
        "customerContactLastName": None,
    }


def _only(body: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(unknown[0], f"is not accepted in {what}")


def _team_value(
    team: Team, kind: str, values: Sequence[TeamValue], body: Mapping[str, Any]
) -> TeamValue | None:
    """The status or priority `body` names by `<kind>Id` or `<kind>Name`, None when it names
    none; 400 when the team has no such one."""
    id_key, name_key = f"{kind}Id", f"{kind}Name"
    # An id wins over a name; the name is then not even looked at.
    if body.get(id_key) is not None:
        found = find_value(values, _text(body[id_key], id_key), None)
        if found is None:
            raise bad_request(id_key, f"not a {kind} of team {team.identifier}")
        return found
    if body.get(name_key) is not None:
        name = _text(body[name_key], name_key)
        found = find_value(values, None, name)
        if found is None:
            known = ", ".join(v.name for v in values)
            raise bad_request(
                name_key, f"{name!r} is not a {kind} of team {team.identifier} ({known})"
            )
        return found
    return None


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request(name, f"must be a non-empty string (got {_show(value)})")
    return value


def _int_param(query: Mapping[str, str], name: str, default: int, *, low: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(name, f"must be an integer (got {raw!r})") from None
    if value < low:
        raise bad_request(name, f"must be at least {low}")
    return value


def _uid(ids: IdSource) -> str:
    return uid(ids, "C", 29)


def _jwt_like(tokens: IdSource) -> str:
    return f"eyJhbGciOiJIUzI1NiJ9.{tokens.token(24)}.{tokens.token(16)}"
