"""A local InboxOps: the `/api/v1` ticket API and its webhooks, with faults, for tests and demos.

Use::

    sim = InboxOpsSimulator(SimulatorConfig(seed=1))
    await sim.start()                       # sim.url, sim.api_key, sim.workspace_id
    sim.add_endpoint(receiver_url, "whsec")  # webhooks for the default workspace
    ...
    await sim.stop()

`create_app(sim | config | None)` gives the aiohttp app (for `aiohttp_server`); the simulator is
`app[SIM_KEY]`. `run_simulator(...)` backs `ticketwire simulate inboxops`. The `/_sim` routes
(no auth; `GET /_sim` lists them) drive it from outside: reset, journal, deliveries, endpoints,
tickets, agent edits, messages, faults, settings, seeding.

Choices made where the InboxOps documentation leaves the behaviour open
-------------------------------------------------------------------------

Routing and errors
- Routing comes first: an unknown path is 404 `not_found` and a known path with the wrong method
  is 405 `method_not_allowed` (with `Allow`), before any auth check. `/api/v1/openapi.json`
  (OpenAPI 3.0 of exactly what is served) and `/api/v1/docs` need no key and are not limited.
- Besides the documented routes the simulator serves `GET /ticket_priorities` and `GET /inboxes`
  (both `{data, meta}`).
- Problem bodies carry exactly `type, title, status, detail, code, instance`; a detail about a
  field or parameter starts with its name (`status_id: unknown custom status …`).
- `X-Request-Id` is on every response, `/_sim` included. A client value of 1–128 characters from
  `[A-Za-z0-9._-]` is echoed; anything else is replaced by a seeded UUID.
- Legacy mode (`legacy_errors`) answers `application/json` `{error: <HTTP phrase>, message:
  <detail>, code: <HTTP status>}`, plus `details: [{field, message}]` (the message without the
  field's name) when a field is known and `retryAfter` on 429, as on the generated reference
  pages.
- Scripted faults (`sim.faults.fail_next`) are checked before routing and auth; the glob matches
  the full path or the path relative to `/api/v1`; `delay` is real seconds; a status below 400
  only delays, then serves normally (with `late`, serves first and delays the answer: the change
  is made before the pause). Unexpected exceptions answer 500 `internal_error`.

Auth and rate limit
- Check order: route, 401 `unauthorized` (no header; not `Bearer ixk_…`; unknown key; revoked
  key), 403 `forbidden` (workspace without `api_webhooks`), 403 `insufficient_scope` (read-only
  key on anything but GET/HEAD), then the rate limit. Only requests that pass auth are counted.
- The limit counts per workspace over 60 simulated seconds (`time_scale` compresses it too).
  Fixed windows start at the first request after the previous window ended; sliding windows keep
  a log. `Retry-After` is whole simulated seconds (at least 1) until a request would pass.
  `X-RateLimit-Reset` (when enabled) is seconds until the window resets, not an epoch time.
- Another workspace's ticket answers 404, exactly like a missing one.

Tickets
- Ids and tokens come from per-purpose seeded generators (ids, keys, events, request ids,
  endpoints, seed tickets, fault choices), so one stream never shifts another.
- Timestamps are UTC ISO 8601 with milliseconds and `Z` (`2025-01-06T09:00:00.000Z`), on the
  simulated clock. Date-times sent in are stored in that form (so `remind_at` and `date_time`
  custom fields come back normalised).
- Create requires `subject`; `inbox_id` defaults to the first inbox ("Support"), priority to
  `normal`, status to the default `open` status. `reporter_email` finds or creates a contact
  (and a company per email domain), whose id becomes `contact_id`. `initial_internal_note`
  becomes the ticket's first message. Unknown fields (`status` included) are 400.
- Idempotency entries are per workspace, keyed by `Idempotency-Key` (1–255 characters), compare
  the canonical JSON (sorted keys, compact) of the body, expire after `idempotency_ttl` simulated
  seconds, and replay the original 201 body as it was then. Failed creates are not stored.
- `status_id` wins over `status`, which is then not validated; likewise `priority_id`. Sending a
  `status` (or `priority`) the ticket already has keeps its current custom status (a no-op, so
  "Waiting on customer" is not reset to "Waiting"); another type takes that type's default row.
- `assignee_id` and `contact_id` are checked for UUID form only (agents are seeded, see
  `sim.agents`); `inbox_id`, `status_id`, `priority_id`, `remind_transition_status_id`, tag ids
  and select options must exist.
- Reminders: `remind_at` and `remind_transition_status_id` are "Applied when PATCH also sets
  status to waiting (status or status_id)", a custom status of type waiting included; otherwise
  they are left out (still validated) and the journal entry's `notes` says why. A status of
  another type ends the reminder (`reminder_leaving_waiting="keep"` keeps it, dormant until the
  ticket waits again). When `remind_at` falls due on the simulated clock, the ticket moves to
  `remind_transition_status_id`, else its waiting status's own target, else the default open
  status; the reminder is cleared, `updated_at` is the due time, and the usual events go out. A
  timer fires due reminders without a request; every request fires the due ones first.
- `custom_fields` merges; null or an empty list removes a key. Values are checked per type
  (text: string; number: JSON number; date: `YYYY-MM-DD`; date_time: ISO 8601 with a time;
  select: an option UUID; multi_select: an array of option UUIDs, deduplicated). Writing a field
  scoped to other inboxes than the ticket's (after any `inbox_id` change in the same PATCH) is 400.
- Events per real change, in this order and all with the same post-change ticket:
  `ticket.updated`; `ticket.status_changed` when `status_id` changed (also between two custom
  statuses of one type); `ticket.closed` when the type became `closed` from another type;
  `ticket.assigned` when `assignee_id` changed (unassigning too). Create emits only
  `ticket.created`. Tag changes emit `ticket.updated` and bump `updated_at`.
- `include=`: `tags` [{id, name, color}] in link order; `contact` {id, email, name, company_id}
  or null; `company` {id, name, domain} or null; `inbox` {id, name, email}; `sla` {policy,
  first_response_due_at, resolution_due_at, breached} from per-priority targets; `participants`
  [{type: contact|agent, …}]. Unknown include names are 400.

Listing
- Empty parameters are ignored, unknown ones too. `query` wins over `q` whenever it is present.
  It is PostgreSQL websearch (`simulator.inboxops.fulltext`): words ANDed, `"phrases"`, `-word`,
  `or`, case-insensitive, no stemming or stop words (the `simple` configuration), over the
  subject, the initial note and the ticket's messages. `status` takes a comma list (any of),
  `tag_ids` a comma list (all of), `priority` one level; `assignee_id` a UUID or `__unassigned__`.
- Listed tickets carry no `custom_fields`: only "Ticket with custom_fields (GET by id, POST
  create 201, PATCH 200)" has them.
  `*_after` / `*_before` bounds are exclusive. `sort` defaults to `created_at`, `order` to
  `desc`; ties go by ticket_number. `page` starts at 1; `per_page` defaults to 25 and above 100
  is 400.
- `custom_field_<key>`: the number of distinct keys is checked first (> 10 is 400), then a
  repeated key, then unknown keys. Numbers compare numerically; a multi_select filter takes one
  option UUID and matches tickets whose list contains it. Tickets in inboxes a scoped definition
  does not cover match neither a value nor `__empty__`.
- `GET /tags`, `/ticket_statuses`, `/ticket_priorities`, `/inboxes` return everything on one
  page with `meta: {page: 1, per_page, total}`.

Bulk
- The answer has `tags_added` only for add_tags and `tags_removed` only for remove_tags.
- Unknown body fields, or fields another operation uses, are 400. `ticket_ids` takes UUIDs or
  ticket numbers; repeats are processed once. The shared change is validated before any ticket
  changes. An unknown `status_id`, tag id or `inbox_id` is 404 `not_found` (as the bulk
  reference page says), unlike PATCH where it is 400.
- Unknown or foreign ticket ids are skipped (`bulk_unknown_ids="skip"`) or fail the whole call
  with 404 before anything changes (`"404"`).

Messages (`simulator.inboxops.messages`)
- `GET /tickets/{id}/messages` answers `{data, meta}` on one page: `email` and `internal_note`
  rows oldest first (ties in arrival order), drafts left out; `types` takes a comma list of
  `email` / `internal_note` (empty or absent: both; anything else 400). Rows carry `id,
  ticket_id, type, direction (inbound|outbound; null for a note), from_address, to_addresses,
  cc_addresses, subject, body_html, body_text, is_draft, author_id, created_at`.
- `POST /tickets/{id}/messages` takes only `{type: "internal_note", body_html?, body_text?}`
  (another type is 400: outbound replies are not supported through the API; unknown fields are
  400). A missing body is derived from the other (text escaped into `<p>…</p>` with `<br>`,
  HTML stripped to text); both empty is 400. Answers 201 `{data: Message}`.
- A note or a non-draft email bumps `updated_at` and emits `ticket.updated` (the ticket as
  after the change), or changes nothing on the ticket with the setting
  `message_updates_ticket=false`: InboxOps documents neither. The plan's `message.received` /
  `message.sent` events are not emitted (their payload is not described anywhere). Emails and
  drafts come in through `POST /_sim/tickets/{id}/messages` (`sim.add_message`).

Tags
- Names are trimmed and unique ignoring case (409 `conflict`); `color` is `#rgb`/`#rrggbb`,
  default `#6B7280`.

Webhooks
- Only entitled workspaces emit. The envelope is compact JSON in the order event, event_id,
  tenant_id, created_at, data (the ticket as the API shows it, without includes). The event id is
  fixed when the change happens and shared by all endpoints and every retry of it.
- Retries wait `webhook_retry_base × 2^(n-1)` simulated seconds after failed attempt n (1, 2, 4 …
  minutes by default) up to `webhook_max_attempts`; the last failure is logged with
  `failed=True`. The timeout is real seconds. Redirects are not followed. `delivered_at` is the
  simulated time an attempt was sent.
- Ordering: one delivery in flight per (endpoint, ticket); a failing delivery holds back that
  ticket's later events until it succeeds or gives up. Different tickets go in parallel.
- Faults: `duplicate`/`duplicate_next` enqueue the same delivery twice (same event id and body);
  `reorder_window=N` holds N deliveries per endpoint, sends their first attempts one by one in a
  seeded shuffle that is never the original order (a partial group goes after
  `reorder_flush_after` real seconds), with no per-ticket ordering; `bad_signature_next=N` signs
  the next N attempts with a wrong secret (retries are signed correctly again); `burst=k` (bulk
  calls only) emits every per-ticket event k times with distinct event ids.

Determinism and reset
- With a seed and a `ManualClock`, ids, keys, event ids, request ids, timestamps and fault
  choices are reproducible. `reset()` restores the seeded start (same keys and ids, no tickets,
  journal, deliveries, faults and settings cleared, clock restarted); endpoints stay registered
  unless `keep_endpoints=False`.
"""

from simulator.common.bundle import Example, SimulatorBundle, per_minute
from simulator.inboxops.app import SIM_KEY
from simulator.inboxops.config import SimulatorConfig
from simulator.inboxops.sim import InboxOpsSimulator, create_app, run_simulator
from simulator.inboxops.webhooks import envelope

__all__ = [
    "SIMULATOR",
    "SIM_KEY",
    "InboxOpsSimulator",
    "SimulatorConfig",
    "create_app",
    "run_simulator",
]


SIMULATOR = SimulatorBundle(
    simulator=InboxOpsSimulator,
    config=SimulatorConfig,
    run=run_simulator,
    port_offset=0,
    limited=lambda seed, limit: SimulatorConfig(seed=seed, rate_limit_per_minute=per_minute(limit)),
    envelope=lambda event, event_id, tenant, now, ticket: envelope(
        event, event_id, tenant, now, ticket
    ),
    tenant_key="workspace_id",
    tenant_word="workspace",
    example=Example(
        "an urgent, unassigned ticket is routed to the on-call agent",
        {"priority": "urgent", "assignee_id": None},
        lambda t: t["priority"] != "urgent" and t["assignee_id"] is None,
        lambda sim, subject, priority: sim.create_ticket(subject=subject, priority=priority),
        key="ticket_number",
    ),
    # A kept store may hold reminders: those that fell due while `up` was stopped fire now that
    # their webhooks have somewhere to go (not at the next request), and the timer is armed for
    # the next one.
    connected=lambda sim: sim.fire_due_reminders(),
    # A configured API URL is a real InboxOps, even before its key is set.
    real_api=lambda account: bool(account.api_url),
)
