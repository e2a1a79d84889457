"""`GET /tickets` filtering, sorting and paging over one workspace's tickets (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.common.clock import iso, parse_iso
from simulator.inboxops import fulltext
from simulator.inboxops.models import FieldDef, TicketRecord, Workspace
from simulator.inboxops.problems import bad_request
from simulator.inboxops.store import PRIORITY_RANK, as_uuid, field_value, is_uuid
from ticketwire.vendors.inboxops.models import PRIORITIES, STATUSES

Predicate = Callable[[TicketRecord], bool]
CUSTOM_PREFIX = "custom_field_"
MAX_CUSTOM_KEYS = 10
EMPTY = "__empty__"
UNASSIGNED = "__unassigned__"
SORTS = ("created_at", "updated_at", "priority")


@dataclass
class TicketQuery:
    """A parsed list request."""

    predicates: list[Predicate] = field(default_factory=list)
    sort: str = "created_at"
    descending: bool = True
    page: int = 1
    per_page: int = 25


def parse_query(
    ws: Workspace,
    items: Sequence[tuple[str, str]],
    *,
    default_per_page: int = 25,
    max_per_page: int = 100,
) -> TicketQuery:
    """Turn query parameters into a `TicketQuery`; a bad value is 400 naming the parameter."""
    params: dict[str, str] = {}
    custom: dict[str, str] = {}
    for name, value in items:
        if name.startswith(CUSTOM_PREFIX):
            if name in custom:
                raise bad_request(name, "is given more than once")
            custom[name] = value
        else:
            params.setdefault(name, value)
    if len(custom) > MAX_CUSTOM_KEYS:
        raise bad_request(
            "custom_field_*",
            f"at most {MAX_CUSTOM_KEYS} distinct keys per request (got {len(custom)})",
        )
    q = TicketQuery(per_page=default_per_page)
    add = q.predicates.append

    # "If both query and q are sent, query wins."
    text = params["query"] if "query" in params else params.get("q", "")
    if text.strip():
        search = fulltext.parse(text)
        add(lambda r: search.matches(fulltext.ticket_texts(r)))
    if params.get("status"):
        wanted = set(_csv(params["status"]))
        for s in wanted:
            if s not in STATUSES:
                raise bad_request("status", f"{s!r} is not one of {', '.join(STATUSES)}")
        add(lambda r: r.data["status"] in wanted)
    if params.get("priority"):
        # One level: unlike status and tag_ids, the parameter is not documented as a list.
        level = params["priority"]
        if level not in PRIORITIES:
            raise bad_request("priority", f"must be one of {', '.join(PRIORITIES)} (got {level!r})")
        add(lambda r: r.data["priority"] == level)
    if params.get("inbox_id"):
        inbox_id = as_uuid(params["inbox_id"], "inbox_id")
        add(lambda r: r.data["inbox_id"] == inbox_id)
    if params.get("assignee_id"):
        raw = params["assignee_id"]
        if raw != UNASSIGNED and not is_uuid(raw):
            raise bad_request("assignee_id", f"must be a UUID or {UNASSIGNED} (got {raw!r})")
        assignee = None if raw == UNASSIGNED else raw.lower()
        add(lambda r: r.data["assignee_id"] == assignee)
    if params.get("tag_ids"):
        tags = [as_uuid(t, "tag_ids") for t in _csv(params["tag_ids"])]
        add(lambda r: all(t in r.tags for t in tags))
    for name in ("created_after", "created_before", "updated_after", "updated_before"):
        if params.get(name):
            add(_date_bound(name, params[name]))

    sort = params.get("sort") or "created_at"
    if sort not in SORTS:
        raise bad_request("sort", f"must be one of {', '.join(SORTS)} (got {sort!r})")
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise bad_request("order", f"must be asc or desc (got {order!r})")
    q.sort, q.descending = sort, order == "desc"
    q.page = _int(params, "page", 1, 1, None)
    q.per_page = _int(params, "per_page", default_per_page, 1, max_per_page)

    for name, value in custom.items():
        key = name[len(CUSTOM_PREFIX) :]
        definition = ws.fields.get(key)
        if definition is None:
            raise bad_request(
                name, f"unknown custom field key {key!r}; defined: {', '.join(ws.fields)}"
            )
        add(_custom_predicate(definition, name, value))
    return q


def run_query(ws: Workspace, q: TicketQuery) -> tuple[list[TicketRecord], int]:
    """The page of matching tickets, and how many match in total."""
    preds = q.predicates
    hits = [r for r in ws.tickets.values() if all(p(r) for p in preds)]
    if q.sort == "priority":
        hits.sort(key=lambda r: (PRIORITY_RANK[r.data["priority"]], r.number), reverse=q.descending)
    else:
        hits.sort(key=lambda r: (r.data[q.sort], r.number), reverse=q.descending)
    start = (q.page - 1) * q.per_page
    return hits[start : start + q.per_page], len(hits)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _int(params: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if not raw:
        return default
    if not raw.isdigit():
        raise bad_request(name, f"must be a positive integer (got {raw!r})")
    value = int(raw)
    if value < low or (high is not None and value > high):
        limits = f"between {low} and {high}" if high is not None else f">= {low}"
        raise bad_request(name, f"must be {limits} (got {value})")
    return value


def _date_bound(name: str, raw: str) -> Predicate:
    when = parse_iso(raw)
    if when is None:
        raise bad_request(name, f"must be an ISO 8601 date-time (got {raw!r})")
    bound = iso(when)
    column = "created_at" if name.startswith("created") else "updated_at"
    # Stored timestamps share one fixed-width format, so string order is time order.
    if name.endswith("_after"):
        return lambda r: bool(r.data[column] > bound)
    return lambda r: bool(r.data[column] < bound)


def _custom_predicate(definition: FieldDef, name: str, raw: str) -> Predicate:
    key = definition.key

    def applies(r: TicketRecord) -> bool:
        return definition.applies_to(r.data["inbox_id"])

    if raw == EMPTY:
        return lambda r: applies(r) and key not in r.data["custom_fields"]
    wanted: Any
    if definition.type == "number":
        try:
            wanted = float(raw)
        except ValueError:
            raise bad_request(name, f"must be a number (got {raw!r})") from None

        def match_number(r: TicketRecord) -> bool:
            v = r.data["custom_fields"].get(key)
            return applies(r) and isinstance(v, int | float) and float(v) == wanted

        return match_number
    if definition.type == "multi_select":
        if not is_uuid(raw):
            raise bad_request(name, f"must be an option UUID (got {raw!r})")
        wanted = field_value(definition, [raw], name)[0]
        return lambda r: applies(r) and wanted in (r.data["custom_fields"].get(key) or ())
    wanted = field_value(definition, raw, name)
    return lambda r: applies(r) and r.data["custom_fields"].get(key) == wanted
