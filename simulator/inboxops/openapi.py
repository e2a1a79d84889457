"""The OpenAPI 3 document of the endpoints the simulator serves, and the tiny `/docs` page."""

from __future__ import annotations

from typing import Any

from ticketwire.vendors.inboxops.models import BULK_OPERATIONS, PRIORITIES, STATUSES

UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
DATE_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _data(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": schema}}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "meta"],
        "properties": {"data": {"type": "array", "items": _ref(item)}, "meta": _ref("Meta")},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": _ref("Problem")}}
    text = {
        400: "Invalid parameters or body (bad_request)",
        401: "Missing, malformed, unknown or revoked API key (unauthorized)",
        403: "No API entitlement (forbidden) or read-only key (insufficient_scope)",
        404: "Not found",
        409: "Conflict",
        429: "Rate limit exceeded; see Retry-After",
    }
    return {str(s): {"description": text[s], "content": problem} for s in statuses}


_TICKET_PROPS: dict[str, Any] = {
    "id": UUID,
    "ticket_number": {"type": "integer"},
    "subject": {"type": "string"},
    "inbox_id": UUID,
    "status": {"type": "string", "enum": list(STATUSES)},
    "status_id": UUID,
    "status_name": {"type": "string"},
    "status_color": {"type": "string"},
    "priority": {"type": "string", "enum": list(PRIORITIES)},
    "priority_id": UUID,
    "priority_name": {"type": "string"},
    "priority_color": {"type": "string"},
    "assignee_id": _nullable(UUID),
    "contact_id": _nullable(UUID),
    "remind_at": _nullable(DATE_TIME),
    "remind_transition_status_id": _nullable(UUID),
    "created_at": DATE_TIME,
    "updated_at": DATE_TIME,
    "custom_fields": {"type": "object", "additionalProperties": True},
}

_LISTED_PROPS = {k: v for k, v in _TICKET_PROPS.items() if k != "custom_fields"}

_SCHEMAS: dict[str, Any] = {
    "Ticket": {
        "type": "object",
        "description": "Ticket with custom_fields (GET by id, POST create 201, PATCH 200)",
        "required": list(_TICKET_PROPS),
        "properties": _TICKET_PROPS,
    },
    "ListedTicket": {
        "type": "object",
        "description": "A ticket of GET /tickets (no custom_fields)",
        "required": list(_LISTED_PROPS),
        "properties": _LISTED_PROPS,
    },
    "TicketCreate": {
        "type": "object",
        "required": ["subject"],
        "additionalProperties": False,
        "properties": {
            "subject": {"type": "string"},
            "inbox_id": UUID,
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "priority_id": UUID,
            "assignee_id": _nullable(UUID),
            "reporter_email": {"type": "string", "format": "email"},
            "initial_internal_note": {
                "type": "object",
                "properties": {"body_html": {"type": "string"}, "body_text": {"type": "string"}},
            },
            "custom_fields": {"type": "object"},
        },
    },
    "TicketUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "subject": {"type": "string"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "status_id": {**UUID, "description": "Custom status ID (takes precedence over status)"},
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "priority_id": {
                **UUID,
                "description": "Custom priority ID (takes precedence over priority)",
            },
            "assignee_id": _nullable(UUID),
            "inbox_id": UUID,
            "contact_id": _nullable(UUID),
            "remind_at": {
                **_nullable(DATE_TIME),
                "description": "Applied when PATCH also sets status to waiting (status or status_id)",
            },
            "remind_transition_status_id": {
                **_nullable(UUID),
                "description": "Custom status to return to when reminder fires; tenant-scoped",
            },
            "custom_fields": {
                "type": "object",
                "description": "Merged into the stored values; null removes a key",
            },
        },
    },
    "BulkRequest": {
        "type": "object",
        "required": ["operation", "ticket_ids"],
        "properties": {
            "operation": {"type": "string", "enum": list(BULK_OPERATIONS)},
            "ticket_ids": {"type": "array", "items": UUID, "minItems": 1},
            "status": {"type": "string", "enum": list(STATUSES)},
            "status_id": UUID,
            "assignee_id": _nullable(UUID),
            "tag_ids": {"type": "array", "items": UUID},
            "inbox_id": UUID,
        },
    },
    "BulkResult": {
        "type": "object",
        "properties": {
            "operation": {"type": "string"},
            "updated": {"type": "integer"},
            "tags_added": {"type": "integer", "description": "Present for add_tags"},
            "tags_removed": {"type": "integer", "description": "Present for remove_tags"},
        },
        "required": ["operation", "updated"],
    },
    "Tag": {
        "type": "object",
        "properties": {"id": UUID, "name": {"type": "string"}, "color": {"type": "string"}},
    },
    "TagCreate": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "color": {"type": "string"}},
    },
    "TicketStatus": {
        "type": "object",
        "properties": {
            "id": UUID,
            "status_type": {"type": "string", "enum": list(STATUSES)},
            "name": {"type": "string"},
            "color": {"type": "string"},
            "position": {"type": "integer"},
            "is_default": {"type": "boolean"},
            "reminder_enabled": {"type": "boolean"},
            "remind_transition_status_id": _nullable(UUID),
        },
    },
    "TicketPriority": {
        "type": "object",
        "properties": {
            "id": UUID,
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "name": {"type": "string"},
            "color": {"type": "string"},
            "position": {"type": "integer"},
            "is_default": {"type": "boolean"},
        },
    },
    "Inbox": {
        "type": "object",
        "properties": {"id": UUID, "name": {"type": "string"}, "email": {"type": "string"}},
    },
    "Message": {
        "type": "object",
        "properties": {
            "id": UUID,
            "ticket_id": UUID,
            "type": {"type": "string", "enum": ["email", "internal_note"]},
            "direction": _nullable({"type": "string", "enum": ["inbound", "outbound"]}),
            "from_address": _nullable({"type": "string"}),
            "to_addresses": {"type": "array", "items": {"type": "string"}},
            "cc_addresses": {"type": "array", "items": {"type": "string"}},
            "subject": _nullable({"type": "string"}),
            "body_html": {"type": "string"},
            "body_text": {"type": "string"},
            "is_draft": {"type": "boolean"},
            "author_id": _nullable(UUID),
            "created_at": DATE_TIME,
        },
    },
    "NoteCreate": {
        "type": "object",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "enum": ["internal_note"]},
            "body_html": {"type": "string"},
            "body_text": {"type": "string"},
        },
    },
    "Meta": {
        "type": "object",
        "properties": {
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
        },
    },
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "instance": {"type": "string", "format": "uri"},
        },
    },
}


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_LIST_PARAMS = [
    _param(
        "query",
        "Full-text search (PostgreSQL websearch). Matches ticket subject/body vectors and message "
        "bodies; combined with all other filters with AND. If both query and q are sent, query "
        "wins.",
    ),
    _param("q", "Alias for query (ignored when query is present)"),
    _param("status", "Comma-separated statuses"),
    _param("inbox_id", "Inbox UUID", UUID),
    _param("assignee_id", "UUID or __unassigned__"),
    _param("priority", "Priority level", {"type": "string", "enum": list(PRIORITIES)}),
    _param("tag_ids", "Comma-separated tag UUIDs (ticket must have all)"),
    _param("created_after", "Exclusive ISO 8601 lower bound on created_at", DATE_TIME),
    _param("created_before", "Exclusive ISO 8601 upper bound on created_at", DATE_TIME),
    _param("updated_after", "Exclusive ISO 8601 lower bound on updated_at", DATE_TIME),
    _param("updated_before", "Exclusive ISO 8601 upper bound on updated_at", DATE_TIME),
    _param(
        "sort", "Sort key", {"type": "string", "enum": ["created_at", "updated_at", "priority"]}
    ),
    _param("order", "Sort order (default desc)", {"type": "string", "enum": ["asc", "desc"]}),
    _param("page", "1-based page", {"type": "integer", "minimum": 1}),
    _param("per_page", "Page size", {"type": "integer", "minimum": 1, "maximum": 100}),
]
_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "Ticket UUID or ticket_number",
    "schema": {"type": "string"},
}
_INCLUDE = _param("include", "Comma-separated: tags, contact, company, inbox, sla, participants")


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document; paths are relative to the `/api/v1` server."""
    paths: dict[str, Any] = {
        "/tickets": {
            "get": {
                "operationId": "listTickets",
                "summary": "List and search tickets",
                "description": "Also custom_field_<field_key> filters (exact match, __empty__ = no "
                "stored value, at most 10 distinct keys).",
                "parameters": _LIST_PARAMS,
                "responses": {"200": _json(_page("ListedTicket"), "A page of tickets")}
                | _errors(400, 401, 403, 429),
            },
            "post": {
                "operationId": "createTicket",
                "summary": "Create a ticket",
                "parameters": [
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}
                ],
                "requestBody": {"content": {"application/json": {"schema": _ref("TicketCreate")}}},
                "responses": {"201": _json(_data(_ref("Ticket")), "Created")}
                | _errors(400, 401, 403, 409, 429),
            },
        },
        "/tickets/bulk": {
            "post": {
                "operationId": "bulkTickets",
                "summary": "Bulk ticket actions",
                "requestBody": {"content": {"application/json": {"schema": _ref("BulkRequest")}}},
                "responses": {"200": _json(_data(_ref("BulkResult")), "Counts")}
                | _errors(400, 401, 403, 404, 429),
            }
        },
        "/tickets/{id}": {
            "parameters": [_ID_PARAM],
            "get": {
                "operationId": "getTicket",
                "summary": "Get a ticket",
                "parameters": [_INCLUDE],
                "responses": {"200": _json(_data(_ref("Ticket")), "The ticket")}
                | _errors(400, 401, 403, 404, 429),
            },
            "patch": {
                "operationId": "updateTicket",
                "summary": "Update a ticket",
                "requestBody": {"content": {"application/json": {"schema": _ref("TicketUpdate")}}},
                "responses": {"200": _json(_data(_ref("Ticket")), "The updated ticket")}
                | _errors(400, 401, 403, 404, 429),
            },
        },
        "/tickets/{id}/messages": {
            "parameters": [_ID_PARAM],
            "get": {
                "operationId": "listTicketMessages",
                "summary": "Emails and internal notes, oldest first; drafts left out",
                "parameters": [_param("types", "Comma-separated: email, internal_note (both)")],
                "responses": {"200": _json(_page("Message"), "The ticket's timeline")}
                | _errors(400, 401, 403, 404, 429),
            },
            "post": {
                "operationId": "addTicketNote",
                "summary": "Add an internal note (outbound replies are not supported)",
                "requestBody": {"content": {"application/json": {"schema": _ref("NoteCreate")}}},
                "responses": {"201": _json(_data(_ref("Message")), "The note")}
                | _errors(400, 401, 403, 404, 429),
            },
        },
        "/tags": {
            "get": {
                "operationId": "listTags",
                "summary": "List tags",
                "responses": {"200": _json(_page("Tag"), "Tags")} | _errors(401, 403, 429),
            },
            "post": {
                "operationId": "createTag",
                "summary": "Create a tag",
                "requestBody": {"content": {"application/json": {"schema": _ref("TagCreate")}}},
                "responses": {"201": _json(_data(_ref("Tag")), "Created")}
                | _errors(400, 401, 403, 409, 429),
            },
        },
        "/ticket_statuses": {
            "get": {
                "operationId": "listTicketStatuses",
                "summary": "Custom statuses ordered by position",
                "responses": {"200": _json(_page("TicketStatus"), "Statuses")}
                | _errors(401, 403, 429),
            }
        },
        "/ticket_priorities": {
            "get": {
                "operationId": "listTicketPriorities",
                "summary": "Custom priorities ordered by position",
                "responses": {"200": _json(_page("TicketPriority"), "Priorities")}
                | _errors(401, 403, 429),
            }
        },
        "/inboxes": {
            "get": {
                "operationId": "listInboxes",
                "summary": "Inboxes of the workspace",
                "responses": {"200": _json(_page("Inbox"), "Inboxes")} | _errors(401, 403, 429),
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "InboxOps public API (simulator)",
            "version": "1.0.0",
            "description": "The subset of the InboxOps /api/v1 served by the ticketwire simulator.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "ixk_…"}
            },
            "schemas": _SCHEMAS,
        },
    }


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>InboxOps API (simulator)</title></head>
<body>
<h1>InboxOps API (simulator)</h1>
<p>The OpenAPI 3 document is at <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.
Send <code>Authorization: Bearer ixk_…</code> on every other route.</p>
<ul>
<li><code>GET|POST /api/v1/tickets</code></li>
<li><code>GET|PATCH /api/v1/tickets/{id}</code></li>
<li><code>POST /api/v1/tickets/bulk</code></li>
<li><code>GET|POST /api/v1/tickets/{id}/messages</code></li>
<li><code>GET|POST /api/v1/tags</code></li>
<li><code>GET /api/v1/ticket_statuses</code>, <code>/ticket_priorities</code>, <code>/inboxes</code></li>
</ul>
<p>Simulator controls (no auth) live under <code>/_sim</code>; <code>GET /_sim</code> lists them.</p>
</body></html>
"""
