"""Turn trace records into English lines and JSON (pure: no I/O).

Records are codes and values; the words are made here, when read. A record that does not have
the shape its kind promises is shown raw rather than failing the whole trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ticketwire.accountkey import DEFAULT
from ticketwire.engine.operators import show
from ticketwire.trace import codes
from ticketwire.trace.read import Delivery, EventTrace, Record, RuleLeaves, Timeline

#: Longest a request body is shown in a line before it is cut with "…".
BODY_WIDTH = 80

#: Each helpdesk's own word for the tenant of its events; others show "tenant".
_TENANT_WORDS = {"inboxops": "workspace", "cstar": "team", "thena": "org"}

#: Names of each record kind's values, in order: the JSON form's keys.
FIELDS: dict[str, tuple[str, ...]] = {
    codes.RECEIVED: (
        "vendor",
        "tenant",
        "event_type",
        "ticket_id",
        "received_ms",
        "origin",
        "deliveries",
        "rules_fingerprint",
        "account",
    ),
    codes.STALE_CHECK: ("stale", "order_key", "last_order_key", "last_event_id"),
    codes.CHANGES: ("changes",),
    codes.RULE: ("rule", "outcome", "leaves", "detail"),
    codes.PLANNED: ("calls",),
    codes.CALL: (
        "call_ids",
        "method",
        "path",
        "status",
        "latency_ms",
        "request_id",
        "tickets",
        "event_ids",
    ),
    codes.RETRY: ("call_id", "status", "retry_at_ms", "attempt"),
    codes.DEAD_LETTER: ("kind", "letter_id", "reason"),
}

_KIND_NAMES = {
    codes.RECEIVED: "received",
    codes.STALE_CHECK: "stale_check",
    codes.CHANGES: "changes",
    codes.RULE: "rule",
    codes.PLANNED: "planned",
    codes.CALL: "call",
    codes.RETRY: "retry",
    codes.DEAD_LETTER: "dead_letter",
}

_OUTCOMES = {
    codes.RULE_FIRED: "fired",
    codes.RULE_CONDITION_FALSE: "condition false",
    codes.RULE_NO_ACTIONS: "condition true, no actions to take",
    codes.RULE_ERROR: "error",
    codes.RULE_PAUSED: "paused, skipped",
    codes.RULE_SUPPRESSED: "suppressed",
}


def clock(ms: int) -> str:
    """`14:03:07.120` UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def stamp(ms: int) -> str:
    """`2026-12-02 14:03:07.120 UTC`."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def seconds(ms: Any) -> str:
    """A duration in ms as `12 s`, `4 min`, `3 h`."""
    s = float(ms) / 1000
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


class Context:
    """What rendering one record needs from the others: fingerprints and planned bodies."""

    def __init__(self, records: Iterable[Record], leaves: RuleLeaves) -> None:
        self.leaves = leaves
        #: Event id → the rules fingerprint its `rx` record names.
        self.fingerprints: dict[str, str] = {}
        #: Call id → the body planned for it.
        self.bodies: dict[str, Any] = {}
        for r in records:
            if r.kind == codes.RECEIVED and len(r.values) >= 8:
                self.fingerprints[r.event_id] = str(r.values[7])
            elif r.kind == codes.PLANNED and r.values and isinstance(r.values[0], list):
                for call in r.values[0]:
                    if isinstance(call, list) and len(call) >= 4:
                        self.bodies[str(call[0])] = call[3]

    def descriptions(self, event_id: str, rule: str) -> list[str] | None:
        """The leaf descriptions of `rule` as the event's rules had it; None if unknown."""
        fp = self.fingerprints.get(event_id)
        if fp is None or fp not in self.leaves:
            return None
        return self.leaves[fp].get(rule)


def record_text(rec: Record, ctx: Context) -> str:
    """One record as an English line (without its time)."""
    try:
        return _TEXT[rec.kind](rec, ctx)
    except (KeyError, IndexError, TypeError, ValueError):
        return f"record {rec.kind!r} (not understood): {_raw(rec.values)}"


def _raw(values: Any) -> str:
    return json.dumps(values, ensure_ascii=False, default=str)


def _body(body: Any) -> str:
    if body is None or body == "":
        return ""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return " " + (text if len(text) <= BODY_WIDTH else text[: BODY_WIDTH - 1] + "…")


def _received(rec: Record, ctx: Context) -> str:
    vendor, tenant, etype, ticket, received, origin, deliveries, _fp = rec.values[:8]
    partition, _, entry = str(origin).partition("/")
    where = f"partition {partition} entry {entry}" if entry else str(origin)
    n = int(deliveries)
    dedupe = (
        "first delivery" if n <= 1 else f"first delivery, handed to a worker {n} times (re-run)"
    )
    named = [f"{tenant_word(str(vendor))} {tenant}"] if tenant else []
    if len(rec.values) > 8 and rec.values[8]:
        named.append(f"account {rec.values[8]}")
    of = f" ({', '.join(named)})" if named else ""
    return (
        f"received {vendor} {etype} for ticket {ticket}{of} at {clock(int(received))}, "
        f"from {where}; dedupe: {dedupe}"
    )


def tenant_word(vendor: str) -> str:
    """What `vendor` calls the tenant its events come from."""
    return _TENANT_WORDS.get(vendor, "tenant")


def _stale(rec: Record, ctx: Context) -> str:
    stale, mine, last, last_event = rec.values[:4]
    if not last:
        return f"stale check: order key {mine}; first event applied for this ticket"
    against = f"last applied {last}" + (f" (event {last_event})" if last_event else "")
    if int(stale):
        return f"stale: order key {mine} is older than {against}; not acted on"
    return f"stale check: order key {mine}, {against}: not older, applied"


def _changes(rec: Record, ctx: Context) -> str:
    changes = rec.values[0]
    if not changes:
        return "changes: none seen"
    return "changes: " + "; ".join(f"{f}: {show(a)} → {show(b)}" for f, a, b in changes)


def _leaf(leaf: list[Any], descs: list[str] | None) -> str:
    """One leaf as `[index, ok, value seen]` shows it; a leaf that read nothing has no value."""
    index, ok = int(leaf[0]), bool(leaf[1])
    has_value = len(leaf) > 2
    value: Any = leaf[2] if has_value else None
    if descs is None or not 0 <= index < len(descs):
        return f"leaf {index} saw {show(value)}" if has_value else f"leaf {index} read nothing"
    desc = descs[index]
    field, op = _field_and_op(desc)
    if op in ("changed", "not_changed", "changed_to", "changed_from"):
        if not has_value:
            seen = f"{field}: change unknown (no earlier state)"
        else:
            old, new = value
            seen = f"{field} went {show(old)} → {show(new)}"
    else:
        seen = f"{field} is {show(value)}" if has_value else f"{field} is missing"
    return seen if ok else f"{seen} (needs {desc})"


def _field_and_op(desc: str) -> tuple[str, str]:
    # `not (status == 'x')` reads the same field as `status == 'x'`.
    inner = desc
    while inner.startswith("not (") and inner.endswith(")"):
        inner = inner[5:-1]
    parts = inner.split(" ", 2)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _rule(rec: Record, ctx: Context) -> str:
    rule, outcome, leaves, detail = rec.values[:4]
    head = f"rule {rule}: {_OUTCOMES.get(outcome, f'outcome {outcome!r}')}"
    descs = ctx.descriptions(rec.event_id, rule)
    unknown = ""
    if descs is None and leaves:
        fp = ctx.fingerprints.get(rec.event_id)
        unknown = (
            f" (leaf descriptions of rules fingerprint {fp} not stored; raw values shown)"
            if fp
            else " (rules fingerprint unknown; raw values shown)"
        )
    if outcome == codes.RULE_ERROR:
        return f"{head} — {detail}"
    if outcome == codes.RULE_SUPPRESSED:
        return f"rule {rule}: suppressed: {suppression(detail)}"
    if outcome == codes.RULE_CONDITION_FALSE:
        shown = [x for x in leaves or () if not x[1]] or list(leaves or ())
    else:
        shown = list(leaves or ())
    if not shown:
        return head
    parts = [_leaf(x, descs) for x in shown]
    return f"{head} — " + ", ".join(parts) + unknown


def suppression(detail: Any) -> str:
    """Why a firing was suppressed, from `[reason code, *args]`."""
    if not isinstance(detail, list) or not detail:
        return f"reason {_raw(detail)}"
    code, args = detail[0], detail[1:]
    try:
        if code == codes.SUPPRESS_ECHO:
            fields, age, rules = args[:3]
            by = f" by rule {', '.join(rules)}" if rules else ""
            return f"echo of our own write of {', '.join(fields)}{by} {seconds(age)} ago"
        if code == codes.SUPPRESS_SAME:
            return f"same actions as its own firing {seconds(args[0])} ago"
        if code == codes.SUPPRESS_ONCE:
            at, event, rearm = args[:3]
            again = _rearm(rearm)
            return f"once per ticket: fired at {stamp(int(at))} on event {event}{again}"
        if code == codes.SUPPRESS_COOLDOWN:
            at, cooldown, rearm = args[:3]
            again = _rearm(rearm)
            return (
                f"cooldown of {seconds(float(cooldown) * 1000)}: fired at {stamp(int(at))}{again}"
            )
        if code == codes.SUPPRESS_FUSE:
            n, window, limit = args[:3]
            return (
                f"loop fuse: {n} firings on this ticket within {seconds(float(window) * 1000)} "
                f"(limit {limit})"
            )
    except (IndexError, TypeError, ValueError):
        pass
    return f"{code} {_raw(args)}"


def _rearm(rearm: Any) -> str:
    return "; not re-armed since" if int(rearm) else "; the rule has no re-arm"


def _planned(rec: Record, ctx: Context) -> str:
    calls = rec.values[0]
    if not calls:
        return "planned: no calls"
    parts = []
    for call_id, method, path, body, rules in calls:
        by = f" (rule {', '.join(rules)})" if rules else ""
        parts.append(f"{method} {path}{_body(body)}{by} [call {call_id}]")
    return "planned: " + "; ".join(parts)


def _call(rec: Record, ctx: Context) -> str:
    call_ids, method, path, status, latency, request_id, tickets, events = rec.values[:8]
    body = next((ctx.bodies[c] for c in call_ids if c in ctx.bodies), None)
    text = f"{method} {path}{_body(body)} → {status} in {latency} ms"
    if request_id:
        text += f", request id {request_id}"
    # Records hold the number of tickets the call covered; older ones held the ticket keys.
    covered = tickets if isinstance(tickets, int) else len(tickets)
    if covered > 1:
        text += f", batched with {covered - 1} other ticket{'s' * (covered > 2)}"
    if len(call_ids) > 1:
        text += f", coalesced from {len(call_ids)} planned calls"
    if events:
        text += f", carried event{'s' * (len(events) > 1)} {', '.join(map(str, events))}"
    return text


def _retry(rec: Record, ctx: Context) -> str:
    call_id, status, at, attempt = rec.values[:4]
    return f"retry of call {call_id} after {status}: attempt {attempt} at {clock(int(at))}"


def _dead(rec: Record, ctx: Context) -> str:
    kind, letter, reason = rec.values[:3]
    return f"dead letter {letter} ({kind}): {reason}"


def _unreadable(rec: Record, ctx: Context) -> str:
    return f"unreadable record: {rec.values[0]}"


_TEXT = {
    codes.RECEIVED: _received,
    codes.STALE_CHECK: _stale,
    codes.CHANGES: _changes,
    codes.RULE: _rule,
    codes.PLANNED: _planned,
    codes.CALL: _call,
    codes.RETRY: _retry,
    codes.DEAD_LETTER: _dead,
    "?": _unreadable,
}


def record_json(rec: Record, ctx: Context) -> dict[str, Any]:
    """One record as JSON: its kind, named values and the English line."""
    names = FIELDS.get(rec.kind, ())
    values: dict[str, Any] = dict(zip(names, rec.values, strict=False))
    if len(rec.values) > len(names):
        values["more"] = rec.values[len(names) :]
    out: dict[str, Any] = {
        "id": rec.id,
        "at_ms": rec.at_ms,
        "event_id": rec.event_id,
        "kind": _KIND_NAMES.get(rec.kind, rec.kind),
        **values,
        "text": record_text(rec, ctx),
    }
    if rec.kind == codes.RULE:
        descs = ctx.descriptions(rec.event_id, str(rec.values[0]) if rec.values else "")
        out["leaf_descriptions"] = descs
    return out


def delivery_text(d: Delivery) -> str:
    """One deliveries-list row as a line."""
    status = f" {d.status}" if d.status is not None else ""
    reason = f" {d.reason}" if d.reason else ""
    fired = f" fired {', '.join(d.rules)}" if d.rules else ""
    what = " ".join(x for x in (d.vendor, d.event_type, d.event_id) if x)
    ticket = f" ticket {d.ticket}" if d.ticket else ""
    account = f" account {d.account}" if d.account != DEFAULT else ""
    return f"{stamp(d.at_ms)}  {d.outcome}{status}{reason}  {what}{ticket}{account}{fired}"


def delivery_json(d: Delivery) -> dict[str, Any]:
    """One deliveries-list row as JSON."""
    return {
        "id": d.id,
        "at_ms": d.at_ms,
        "vendor": d.vendor,
        "tenant": d.tenant,
        "account": d.account,
        "event_type": d.event_type,
        "event_id": d.event_id,
        "ticket": d.ticket,
        "outcome": d.outcome,
        "status": d.status,
        "rules_fired": list(d.rules),
        "reason": d.reason,
        "received_ms": d.received_ms,
    }


def record_lines(records: list[Record], leaves: RuleLeaves, *, with_event: bool) -> list[str]:
    """Each record as `time  [event]  text`, in order."""
    ctx = Context(records, leaves)
    lines = []
    for r in records:
        event = f"{r.event_id or '(several)'}  " if with_event else ""
        lines.append(f"{clock(r.at_ms)}  {event}{record_text(r, ctx)}")
    return lines


def event_lines(trace: EventTrace) -> list[str]:
    """An event's trace as English: its deliveries, then its records in order."""
    ticket = trace.ticket or "(unknown: the delivery was not read that far)"
    account = f", account {trace.account}" if trace.account != DEFAULT else ""
    lines = [f"event {trace.event_id} ({trace.vendor}{account}), ticket {ticket}"]
    if trace.deliveries:
        lines.append("deliveries:")
        lines += [f"  {delivery_text(d)}" for d in trace.deliveries]
    if trace.records:
        first = trace.records[0].at_ms
        lines.append(f"trace ({stamp(first)[:10]}, times UTC):")
        lines += [f"  {x}" for x in record_lines(trace.records, trace.leaves, with_event=False)]
    elif trace.ticket:
        lines.append("no worker records for it on the ticket's timeline (not handled yet?)")
    return lines


def event_json(trace: EventTrace) -> dict[str, Any]:
    """An event's trace as JSON."""
    ctx = Context(trace.records, trace.leaves)
    return {
        "event_id": trace.event_id,
        "vendor": trace.vendor,
        "account": trace.account,
        "ticket": trace.ticket,
        "deliveries": [delivery_json(d) for d in trace.deliveries],
        "records": [record_json(r, ctx) for r in trace.records],
    }


def timeline_lines(timeline: Timeline) -> list[str]:
    """A ticket's timeline as English, one line per record, with the event each belongs to."""
    lines = [f"ticket {timeline.ticket}: {len(timeline.records)} records, oldest first"]
    if timeline.truncated:
        lines[0] += " (older ones not shown; raise --limit)"
    if timeline.records:
        lines[0] += f", from {stamp(timeline.records[0].at_ms)[:10]}, times UTC"
    recorded = record_lines(timeline.records, timeline.leaves, with_event=True)
    # Intake's answers (duplicates, refusals) between the records, by time.
    timed = [(r.at_ms, 0, line) for r, line in zip(timeline.records, recorded, strict=True)]
    timed += [
        (d.at_ms, 1, f"{clock(d.at_ms)}  {d.event_id}  {answered_text(d)}")
        for d in timeline.answered
    ]
    lines += [f"  {line}" for _, _, line in sorted(timed, key=lambda t: (t[0], t[1]))]
    return lines


def answered_text(d: Delivery) -> str:
    """A delivery intake answered without passing it on: a duplicate or a refusal."""
    if d.outcome == codes.DUPLICATE:
        return (
            f"duplicate delivery of {d.vendor} {d.event_type}: answered {d.status}, already "
            "stored within the dedupe window"
        )
    return f"delivery of {d.vendor} {d.event_type} refused: answered {d.status} {d.reason}"


def timeline_json(timeline: Timeline) -> dict[str, Any]:
    """A ticket's timeline as JSON."""
    ctx = Context(timeline.records, timeline.leaves)
    return {
        "ticket": timeline.ticket,
        "truncated": timeline.truncated,
        "records": [record_json(r, ctx) for r in timeline.records],
        "answered": [delivery_json(d) for d in timeline.answered],
    }
