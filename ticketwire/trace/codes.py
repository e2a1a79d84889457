"""The trace record format: key layout, record kinds and the codes inside records.

Traces are stored as codes and values and rendered as English only when read.

`Keys.trace_log` — STREAM, one entry per delivery outcome (the deliveries list). Bounded by
`MINID ~ now-retention` on each write and `MAXLEN ~ TICKETWIRE_TRACE_MAX`. Its fields, all strings:

- `v` vendor, `a` the event's tenant (its workspace, team or org id; "" if none), `y` event
  type, `e` event id,
- `n` the configured account's name (`ticketwire/accounts.py`); absent for the `default`
  account, so its entries read as before accounts were named,
- `k` ticket key (`vendor:tenant:ticket`, "" when unknown),
- `o` outcome (`OUTCOMES`), `s` HTTP status answered at intake (refusals, duplicates) else "",
- `f` names of the rules that fired joined by `RULE_SEP` ("" if none),
- `x` reason code (refusals: `REFUSALS`), `r` receive time in epoch ms.

`Keys.trace_ticket(key)` — STREAM, one ticket's timeline, `MAXLEN ~ TICKET_MAX` and `EXPIRE`
retention after each write. Fields: `e` the event id the record belongs to ("" for a call
covering several), `c` the record: a compact JSON array whose first element is its kind. An
event's own records, written when it has been handled, share one entry: its `c` is the array of
them, in order (one entry per event keeps Redis's work per event small). The records:

- `["rx", vendor, tenant, type, ticket_id, received_ms, origin, deliveries, rules_fingerprint,
  account]` received by the worker; `tenant` is the event's workspace, team or org id,
  `account` the configured account's name, absent for the `default` account;
  `origin` is `<partition>/<entry id>`, `deliveries` > 1 is a re-run.
  Every event that reaches a worker passed dedupe as its first delivery. `rules_fingerprint`
  is a digest of the rules' leaf descriptions, the field of `Keys.trace_rules` to read them from.
- `["st", stale 0|1, this order key, last applied order key, last applied event id]` stale check.
  Order keys are decimal text: the helpdesk's sequence where it sends one, else `updated_at` in
  µs since the epoch; "" when unknown (no event applied before).
- `["ch", [[field, from, to], ...]]` the changes seen (a new ticket: only the fields rules read).
- `["ru", rule, outcome, leaves, detail]` one rule considered; `outcome` is a `RULE_*` code,
  `leaves` is `[[leaf index, ok 0|1, value seen], ...]` in the condition's order (leaves a short
  circuit skipped are absent; a field that is missing has no value; a change leaf's value is
  `[from, to]`; text longer than 200 characters is cut and ends in `…`); `detail` is
  the error text for `E`, `[reason code, *args]` (`SUPPRESS_*`) for `S`, else null. The leaves'
  descriptions are stored once per rules fingerprint in `Keys.trace_rules` (HASH fingerprint →
  JSON `{rule: [leaf description, ...]}`).
- `["pl", [[call id, method, path, body, rules], ...]]` planned calls (id = `ApiCall.fingerprint()`,
  path relative to the API root, e.g. `/tickets/42`).
- `["ca", call ids, method, path, status, latency ms, request id, tickets, event ids]` a sent
  call, written to each covered ticket's timeline with that ticket's own planned call ids and
  the events they came from (after coalescing); `tickets` is how many tickets the call covered
  (batching; older records hold the list of ticket keys instead); path as sent
  (`/api/v1/tickets/42`); status is the HTTP status, or the error's text when there was none (a
  timeout), or `partial: …`, or `reconciled: already applied, not sent` (a call whose earlier
  send may have been applied, which the ticket read back already showed: no request went).
- `["rt", call id, status or error text, retry at ms, attempt]` a retry scheduled (429, 5xx,
  timeout; a bulk call refused is retried ticket by ticket at once).
- `["dl", kind, letter id, reason]` a dead letter (`kind`: `call` or `event`).

Records of a call (`ca`, `rt`, `dl` of a call) carry `e` = "" when the call carried several events.

`Keys.trace_rulestats(hour)` — HASH `<rule>\\x1f<f|s|e|p>` → count per UTC hour `YYYYMMDDHH`,
`EXPIRE` `RULESTATS_TTL_S`.
"""

from __future__ import annotations

from typing import Final

# Record kinds: the first element of a timeline record.
RECEIVED: Final = "rx"
STALE_CHECK: Final = "st"
CHANGES: Final = "ch"
RULE: Final = "ru"
PLANNED: Final = "pl"
CALL: Final = "ca"
RETRY: Final = "rt"
DEAD_LETTER: Final = "dl"
KINDS: Final = (RECEIVED, STALE_CHECK, CHANGES, RULE, PLANNED, CALL, RETRY, DEAD_LETTER)

# Rule outcomes in a `ru` record.
RULE_FIRED: Final = "F"
RULE_CONDITION_FALSE: Final = "C"
RULE_NO_ACTIONS: Final = "N"
RULE_ERROR: Final = "E"
RULE_PAUSED: Final = "P"
RULE_SUPPRESSED: Final = "S"
RULE_OUTCOMES: Final = (
    RULE_FIRED,
    RULE_CONDITION_FALSE,
    RULE_NO_ACTIONS,
    RULE_ERROR,
    RULE_PAUSED,
    RULE_SUPPRESSED,
)

# Suppression reasons: the first element of a suppressed rule's detail, then its arguments.
#: Echo of our own write: `["echo", [field, ...], age ms, [rule, ...]]`.
SUPPRESS_ECHO: Final = "echo"
#: Same actions as the rule's own firing within the echo window: `["same", age ms]`.
SUPPRESS_SAME: Final = "same"
#: once_per_ticket, not re-armed: `["once", fired at ms, event id, has rearm 0|1]`.
SUPPRESS_ONCE: Final = "once"
#: Within the cooldown: `["cooldown", fired at ms, cooldown s, has rearm 0|1]`.
SUPPRESS_COOLDOWN: Final = "cooldown"
#: Loop fuse: `["fuse", firings in window, window s, limit]`.
SUPPRESS_FUSE: Final = "fuse"
SUPPRESS_REASONS: Final = (
    SUPPRESS_ECHO,
    SUPPRESS_SAME,
    SUPPRESS_ONCE,
    SUPPRESS_COOLDOWN,
    SUPPRESS_FUSE,
)

# Delivery outcomes: field `o` of a deliveries list entry.
HANDLED: Final = "handled"
STALE: Final = "stale"
DUPLICATE: Final = "duplicate"
REFUSED: Final = "refused"
UNCONFIGURED: Final = "unconfigured"
MALFORMED: Final = "malformed"
ERROR: Final = "error"
OUTCOMES: Final = (HANDLED, STALE, DUPLICATE, REFUSED, UNCONFIGURED, MALFORMED, ERROR)

# Refusal reason codes: field `x` of a `refused` entry.
REFUSALS: Final = (
    "invalid_signature",
    "malformed_event",
    "payload_too_large",
    "unsupported_media_type",
    "unsupported_content_encoding",
    "storage_unavailable",
    "malformed_body",
    "event_too_old",
    "body_timeout",
)

# Per-rule hourly counters: the field is `<rule>\x1f<kind>`.
STAT_FIRED: Final = "f"
STAT_SUPPRESSED: Final = "s"
STAT_ERROR: Final = "e"
STAT_PAUSED: Final = "p"

#: Joins rule names in field `f` and rule/kind in a rulestats field.
RULE_SEP: Final = "\x1f"
#: Timeline cap per ticket (`XADD ... MAXLEN ~`).
TICKET_MAX: Final = 1000
#: Rulestats hours live 49 h: a day's figures plus the hour still filling.
RULESTATS_TTL_S: Final = 49 * 3600
#: Hour bucket format of `Keys.trace_rulestats`, UTC.
HOUR_FORMAT: Final = "%Y%m%d%H"

# Field names of a deliveries list entry and a timeline entry.
LOG_VENDOR: Final = "v"
LOG_TENANT: Final = "a"
LOG_ACCOUNT: Final = "n"
LOG_TYPE: Final = "y"
LOG_EVENT: Final = "e"
LOG_TICKET: Final = "k"
LOG_OUTCOME: Final = "o"
LOG_STATUS: Final = "s"
LOG_FIRED: Final = "f"
LOG_REASON: Final = "x"
LOG_RECEIVED: Final = "r"
TL_EVENT: Final = "e"
TL_RECORD: Final = "c"
