"""A local cStar (cstar.help): the team-scoped ticket API and its webhooks, with faults.

Use::

    sim = CStarSimulator(CStarSimulatorConfig(seed=1))
    await sim.start()                 # sim.url, sim.api_base, sim.team_id, sim.api_key
    sim.add_endpoint(receiver_url, "whsec_…")
    ...
    await sim.stop()

`create_app(sim | config | None)` gives the aiohttp app (for `aiohttp_server`); the simulator is
`app[SIM_KEY]`. `run_simulator(...)` runs one until cancelled. The `/_sim` routes (no auth;
`GET /_sim` lists them) drive it from outside: reset, journal, deliveries, endpoints, tickets,
agent edits, messages, faults, settings, seeding.

Choices made where the cStar documentation leaves the behaviour open
----------------------------------------------------------------------

Routing, auth and errors
- Every API path is `/api/v1/teams/{teamId}/…`. An unknown path is 404 `route_not_found`, a
  known one with the wrong method 405 `method_not_allowed`, both before auth.
- Check order: 401 (no header, not `Bearer sk_…`/`pk_…`, unknown key, expired key); then 403
  when the key's team is not the path's (including unknown teams); then 403 for a publishable
  key on anything but GET/HEAD, with code `insufficient_permissions` (as the bulk page's example)
  or `publishable_key_write` (setting `publishable_write_code`), message "Secret key required
  for this endpoint"; then the rate limit; then the Idempotency-Key.
- Codes of those: as the bulk page shows them by default (`auth_error_codes="page"`): every 401
  is `authentication_required` "Invalid or expired API key", a foreign team 403
  `insufficient_permissions`. With `"detailed"`, the error-code article's: 401
  `authentication_required` (no header), `invalid_key_format`, `invalid_api_key`, `key_expired`;
  403 `team_access_denied`.
- Error types: 400/405/409 `invalid_request_error`, 401 `authentication_error`, 403
  `authorization_error`, 404 `not_found_error`, 429 `rate_limit_error`, 5xx `api_error`.
  Unknown body fields are 400 `parameter_invalid` with `param`; a missing required one is
  `parameter_missing`. `legacy_errors` answers `{error: {code: "UNAUTHORIZED", message}}` with
  upper-case codes instead (plus a top-level `retryAfter` on 429). `doc_url` is the API
  reference's `#authentication` for 401 and 403 and `#rate-limiting` for 429 (as the bulk page
  shows), else `https://www.cstar.help/developers/errors#<code>`.
- Every response carries `X-Request-Id: req_…`, the same id as `meta.requestId` /
  `error.request_id`. Scripted faults (`sim.faults.fail_next`) come before routing and auth;
  their glob matches the full path, the path after `/api/v1`, or the path after the team root.

Rate limit
- Counted per key over a fixed window that starts at the first request after the previous
  window ended, on the simulated clock. Presets: `"120/minute"` (default; publishable keys 60)
  and `"1000/hour"` (publishable keys 100); `"N/second|minute|hour"` gives both key kinds N.
  Only authenticated requests count (replays included).
- Every counted response has `X-RateLimit-Limit`, `-Remaining`, `-Reset` (unix seconds of the
  simulated clock) and `-Window` (seconds). A 429 (`rate_limit_exceeded`) says when to retry in
  `Retry-After`, `error.retryAfter` and the message ("Try again in N seconds"); the setting
  `retry_after_in` picks which of the three are sent.

Idempotency
- Keys (1–255 characters) are per team and apply to POST and PATCH. Within `idempotency_ttl`
  simulated seconds (24 h) the same key with the same method, path and body replays the first
  2xx answer byte for byte (same `meta.requestId`), with `Idempotent-Replayed: true`, changing
  nothing and emitting nothing; with another request it is 409 `idempotency_conflict`. Failed
  requests are not stored.

Tickets
- Ids are `tkt_` + 24 hex, `prefixedId` is `<prefix>-<n>` from 1024; either finds a ticket.
  Customers are `cus_…`, messages `msg_…`, events `evt_…`, webhooks `whk_…`; all from seeded
  generators, one stream per purpose.
- REST bodies are camelCase: `{id, object, prefixedId, title, status, priority, channel,
  customerId, customerName, assignedTo, tags, notes, messageCount, responseDeadline,
  resolutionDeadline, firstResponseAt, responseTier, resolutionTier, slaPaused, metadata,
  createdAt, updatedAt, closedAt, resolvedAt}` (no SLA policy runs: the SLA fields stay null
  and `slaPaused` false); `GET /tickets/{id}` inlines `messages`.
- Create needs `title`; status defaults to `new`, priority to `normal`, channel to `api`.
  `customerName` (+ `customerEmail`) finds or creates a customer; `customerId` must exist.
- `assignedTo` takes any non-empty string (agents are not checked) or null. PATCH `tags` and
  `metadata` replace the whole list / object; tags are trimmed and deduplicated.
- Events per real change, all with the post-change ticket: `ticket.updated` with
  `data.changes = {field: {from, to}}` (snake_case names: `assigned_to`, `status`, …), then
  `ticket.closed` when the status became `closed`, then `ticket.assigned` when `assignedTo`
  changed to someone (unassigning emits only `ticket.updated`). A no-op PATCH emits nothing.
  Create emits `ticket.created`, a message `ticket.message_added` (with `data.message`), a
  delete `ticket.deleted`. No customer events are emitted.

Listing
- `status` and `priority` take comma lists; `assignedTo` and `customerId` match exactly;
  `search` is a case-insensitive substring of title or notes; `expand=customer` inlines it.
  Newest first. `page` from 1; `pageSize` defaults to 20, above 100 is 400. Pagination is
  `meta.pagination {page, pageSize, total, totalPages}`, or with `pagination="top"` a top-level
  `{total, page, pageSize, hasMore}`.

Bulk
- `POST /bulk {action: update|delete, resource: tickets|customers|articles, ids, data}`: the
  whole request is validated first (missing fields, more than `max_bulk_ids` ids → 400
  `parameter_invalid` on `ids`, bad `data` → 400). Repeated ids count once. Unknown ids (and ids
  in `faults.bulk_fail_ids`) become `errors[]` items `{id, code, message}` (`resource_missing`
  for unknown) and stay unchanged; the others are applied, tickets emitting their own per-ticket
  webhooks (`faults.webhooks.burst` repeats them). Customers take `name` and `email` and emit
  nothing; the simulator serves no article API, so every article id is unknown. The answer is
  `{success: true, data: bulk_result}` with no `meta`, as the bulk page shows it.

Webhooks
- Envelope `{id, type, created_at, team_id, data: {ticket, customer, changes?}}` in snake_case;
  the setting `flat_payload` adds `ticket_id, ticket_title, ticket_status, ticket_priority,
  customer_name, customer_email` at the root. The event id is fixed when the change happens and
  shared by all endpoints and every retry.
- Headers: `X-Signature: t=<unix>,v1=<hex>` (setting `webhook_signature="legacy"` sends
  `sha256=<hex>` over the body alone; `webhook_signature_header` may name it
  `x-cstar-signature`), `X-Event-Type`, `X-Event-ID`, `X-Webhook-ID`, `X-Timestamp` (ISO 8601
  of `t`), `X-Delivery-Attempt` from 1, `x-cstar-request-id` (the API request that caused the
  event, or a fresh id for an agent's edit), `User-Agent: cStar-Webhooks/1.0`. The secret is
  used as given (the full `whsec_…`). `t` is real unix time, not simulated, because receivers
  check it against their own clock.
- Retries after 30 s, 2 m, 10 m, 1 h, 6 h and 24 h of simulated time (six retries, seven
  attempts); a non-2xx answer, a timeout (`webhook_timeout`, 10 real seconds) or a network error
  fails an attempt. Redirects are not followed. The last failure is logged with `failed=True`.
  Endpoints are never disabled automatically.
- Ordering: one delivery in flight per (endpoint, ticket); different tickets go in parallel.
- Faults (`sim.faults.webhooks`): `duplicate` / `duplicate_next` (same event id and body twice),
  `reorder_window=N` (groups of N sent shuffled, never in the original order; a partial group
  goes after `reorder_flush_after` real seconds), `bad_signature_next=N`,
  `stale_timestamp_next=N` (signed with `t` shifted `stale_by` seconds into the past, or the
  future when negative), `burst=k` (bulk calls emit each per-ticket event k times).

Determinism and reset
- With a seed and a `ManualClock`, ids, keys, event ids, request ids, timestamps and fault
  choices are reproducible. `reset()` restores the seeded start; endpoints stay registered
  unless `keep_endpoints=False`.
"""

from typing import Any

from simulator.common.bundle import Example, SimulatorBundle, own_api
from simulator.cstar.app import SIM_KEY
from simulator.cstar.config import CStarSimulatorConfig, RateLimit
from simulator.cstar.sim import CStarSimulator, create_app, run_simulator
from simulator.cstar.webhooks import envelope

__all__ = [
    "SIMULATOR",
    "SIM_KEY",
    "CStarSimulator",
    "CStarSimulatorConfig",
    "RateLimit",
    "create_app",
    "run_simulator",
]


def _limited(seed: int, rate_limit: str) -> CStarSimulatorConfig:
    # "120/minute", "1000/hour", "N/unit" or N per minute; the config checks it.
    spec: str | int = int(rate_limit) if rate_limit.strip().isdigit() else rate_limit
    return CStarSimulatorConfig(seed=seed, rate_limit=spec)


def _api(sim: CStarSimulator) -> dict[str, Any]:
    return {**own_api(sim), "team_id": sim.team_id}


SIMULATOR = SimulatorBundle(
    simulator=CStarSimulator,
    config=CStarSimulatorConfig,
    run=run_simulator,
    port_offset=1,
    limited=_limited,
    envelope=lambda event, event_id, tenant, now, ticket: envelope(
        tenant, event, event_id, now, ticket, None
    ),
    tenant_key="team_id",
    tenant_word="team",
    api=_api,
    example=Example(
        "an urgent ticket gets the on-call tag",
        {"priority": "urgent"},
        lambda t: t["priority"] != "urgent",
        lambda sim, subject, priority: sim.create_ticket(title=subject, priority=priority),
    ),
    kept=("signature_tolerance_s",),
)
