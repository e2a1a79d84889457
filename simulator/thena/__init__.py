"""A local Thena: the `/v1` ticket API and its platform-event webhooks, with faults, for tests and
demos.

Use::

    sim = ThenaSimulator(ThenaSimulatorConfig(seed=1))
    await sim.start()                        # sim.url, sim.api_key, sim.bearer_token, sim.org_id
    sim.add_endpoint(receiver_url, "token")  # platform events of the default organisation
    ...
    await sim.stop()

`create_app(sim | config | None)` gives the aiohttp app (for `aiohttp_server`); the simulator is
`app[SIM_KEY]`. `run_simulator(...)` runs one until cancelled. The `/_sim` routes (no auth;
`GET /_sim` lists them) drive it from outside: reset, journal, deliveries, endpoints, tickets,
agent edits, faults, settings, seeding.

Choices made where the Thena documentation leaves the behaviour open
----------------------------------------------------------------------

Routing, envelope and errors
- Served: `GET/POST /v1/tickets`, `POST/PATCH /v1/tickets/bulk`, `GET/PATCH /v1/tickets/{id}`.
  Routing comes first: an unknown path is 404 and a known path with the wrong method 405 (with
  `Allow`), before auth. Scripted faults (`sim.faults.fail_next`, glob on the full path or the
  path relative to `/v1`) come before routing; `retry_after` adds `Retry-After`, `reset_after`
  adds `X-RateLimit-Reset`; `delay` is real seconds; a status below 400 only delays (with
  `late`, after serving: the change is made before the pause); `after=N`
  lets N matching requests through first (to fail the third ticket of a sequence).
- Success: `{status: true, message: "Success", timestamp, data}`. Errors (undocumented): `nest`
  `{statusCode, message, error}` (default) or `envelope` `{status: false, message, timestamp,
  code}` (`error_format`). A message about a field starts with its name (`teamId: ...`).

Auth
- `x-api-key: <key>` (checked first when present) or `Authorization: Bearer <token>` plus
  `x-org-id`; `auth_schemes` may allow only one of them. Unknown key or token: 401. A bearer
  token without `x-org-id`: `missing_org_status` (401 by default, or 400). An `x-org-id` of
  another organisation: 401 with a key, 403 with a token. Another organisation's ticket: 404.
- Each credential belongs to the first agent of its organisation, who is the `actor` of every
  event (API calls and agent edits alike).

Rate limit
- Per organisation over 60 simulated seconds (`time_scale` compresses it too), fixed or sliding
  window. While the limit is on, every authenticated answer carries `X-RateLimit-Limit`,
  `-Remaining`, `-Reset` (unix seconds on the simulated clock), `-IP`, `-UserID`, `-OrgID` and
  `-Path`. Over the limit: 429, plus `Retry-After` only with `retry_after_header`.

Organisations, teams and tickets
- Two organisations; the default one has teams Support (`SUP`) and Engineering (`ENG`), the other
  one team. Every team has its own statuses Open (default), In progress, On hold, Resolved,
  Closed and priorities Low, Medium (default), High, Urgent, each with its own id. Names match
  ignoring case, by name or display name. Ids look like Thena's (upper-case base 32).
- Create requires `title` and `teamId` (the MCP reference marks `requestorEmail` required too; it
  is optional here but must look like an email). Unknown fields are 400; routing, proactive and
  comment fields are accepted and not acted on. `ticketId` counts per organisation, the number
  in `ticketIdentifier` (`SUP-1`) per team.
- An id wins over a name (`statusId` over `statusName`, `priorityId` over `priorityName`,
  `assignedAgentId` over `assignedAgentEmail`); the name is then not validated. Ids and names
  must belong to the ticket's team, else 400.
- `deDuplicationKey` (1–255 characters, per organisation, forever) on `POST /v1/tickets`: the
  same key answers 201 with the ticket it created, unchanged, with no event (or, with
  `dedup_conflict`, 409 `deDuplicationKey: ticket <id> was already created with this key`). The bulk page lists
  no such field, so a bulk create takes none.
- API answers show `status`/`priority` (names) and `assignedAgent` (a name), as the reference
  pages; events carry `statusName`/`priorityName`, `assignedAgent: {id, email, name}` and
  `assignedTo`, no `assignedAgentId`, plus `typeId` and `isPrivate` (not in the docs).
- An agent may also set `tags` (a list of names); the API has no tag write.

Bulk
- Update: `ticketIds` (1–`max_bulk_ids`, repeats once) and at least one of `statusId`,
  `priorityId`, `assignedAgentId`, `typeId`, `isPrivate`; anything else is 400. Agent, type,
  status and priority ids unknown to the organisation are 400 before anything changes. Skipped,
  with a reason: unknown ids and other organisations' tickets ("ticket not found"), and tickets
  whose team has not the given status or priority. Tickets already in the wanted state count as
  updated (without events). Events per ticket as PATCH; `burst=k` sends each k times.
- Create: `{tickets (1–max_bulk_tickets), options?: {stopOnError}}`, `stopOnError` defaulting to
  true; a ticket takes only the fields the bulk page lists (no `deDuplicationKey`, no
  `sentimentId`, no proactive or comment fields), anything else makes it invalid. True: stop at
  the first invalid ticket with 400 `tickets[<i>]: <reason>`; the tickets before it stay created
  (and emit), or with `bulk_create_atomic` none is (the page does not say which); none after it
  is tried. False: the valid ones are created and listed in `data`
  (201), the invalid ones left out.

Listing
- `GET /v1/tickets`: `teamId` (a team of the organisation, else 400), `dateRange` (1d 2d 1w 2w
  3w 4w 1m 3m: tickets created since midnight UTC of the first of the last N days, a month being
  30 days), `page` from 0, `limit` default 10, at most 100 (else 400). Oldest ticket first.
  `data` is the list, or with `list_shape="object"` `{tickets, total, page, limit}`.

Webhooks
- Events per real change, all of one change sharing the post-change ticket: `ticket:updated`
  first, then `ticket:status:changed`, `ticket:priority:changed`, `ticket:assigned`,
  `ticket:type:changed`, `ticket:tag:updated` for what changed. Payload `{ticket,
  previousTicket}` (`{ticket}` for `ticket:created`). A no-op emits nothing.
- Envelope `{eventId, eventType, timestamp (ISO 8601), orgId, actor: {id, type, email}, payload}`
  in compact JSON; per endpoint optionally nested as `{"message": {...}}`. The event id is fixed
  when the change happens and shared by every endpoint and every retry.
- Auth per endpoint: a static token in a header (default `authorization`, `Bearer <token>` or
  bare), or an HMAC-SHA256 hex signature of the body (default `X-Thena-Signature`, optional
  `sha256=` prefix via `webhook_signature_prefix`). Endpoints subscribe to event names or
  wildcards (`ticket:*`).
- Retries after failed attempts 1..5 wait 10, 20, 30, 50, 80 simulated seconds (the legacy
  schedule; `webhook_retry_schedule`), then the delivery is logged `failed=True`. The timeout is
  real seconds. Redirects are not followed. One delivery in flight per (endpoint, ticket).
- Faults: `duplicate`/`duplicate_next` (same event id and body twice), `reorder_window=N`
  (groups of N sent in a seeded shuffle that is never the original order), `bad_signature_next=N`
  (the next N attempts carry a wrong token or signature; retries are right again), `burst=k`.

Determinism and reset
- With a seed and a `ManualClock`, ids, keys, event ids, timestamps and fault choices are
  reproducible. `reset()` restores the seeded start (same keys and ids, no tickets, journal,
  deliveries, faults and settings cleared, clock restarted); endpoints stay unless
  `keep_endpoints=False`.
"""

from simulator.common.bundle import Example, SimulatorBundle, per_minute
from simulator.thena.app import SIM_KEY
from simulator.thena.config import ThenaSimulatorConfig
from simulator.thena.sim import ThenaSimulator, create_app, run_simulator
from simulator.thena.webhooks import envelope

__all__ = [
    "SIMULATOR",
    "SIM_KEY",
    "ThenaSimulator",
    "ThenaSimulatorConfig",
    "create_app",
    "run_simulator",
]


SIMULATOR = SimulatorBundle(
    simulator=ThenaSimulator,
    config=ThenaSimulatorConfig,
    run=run_simulator,
    port_offset=2,
    limited=lambda seed, limit: ThenaSimulatorConfig(
        seed=seed, rate_limit_per_minute=per_minute(limit)
    ),
    envelope=lambda event, event_id, tenant, now, ticket: envelope(
        tenant, event, event_id, now, {"ticket": ticket}
    ),
    tenant_key="org_id",
    tenant_word="organisation",
    example=Example(
        "closing a ticket opens a follow-up ticket",
        {"statusName": "Closed"},
        lambda t: t["status"] != "Closed",
        lambda sim, subject, _: sim.create_ticket(title=subject, requestorEmail="ana@example.com"),
    ),
)
