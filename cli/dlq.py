"""`ticketwire dlq`: list, show, redrive and drop dead letters (work that could not succeed)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from cli.redisrun import run_on_redis
from cli.redisurl import redis_settings
from ticketwire.accountkey import DEFAULT
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.stored import StoredDelivery
from workers.deadletter import (
    KIND_CALL,
    DeadLetter,
    DeadLetterError,
    Redriven,
    RedriveReport,
    count_letters,
    drop,
    get_letter,
    list_letters,
    origin_delivery,
    redrive,
    redrive_all,
)
from workers.dlqfilter import (
    FilterError,
    FilterRedrive,
    LetterFilter,
    drop_matching,
    matching,
    redrive_matching,
)

#: Widest a column of the list table gets before it is cut with "…".
WHAT_WIDTH = 80
REASON_WIDTH = 70

Command = Callable[[Redis, Keys, Settings], Awaitable[int]]


def run_dlq(
    action: str,
    *,
    letter_id: str | None = None,
    every: bool = False,
    filter_text: str | None = None,
    dry_run: bool = False,
    limit: int = 20,
    as_json: bool = False,
) -> int:
    """Run `ticketwire dlq ACTION`; return the exit status (0 ok, 1 failed, 2 misconfigured)."""
    flt: LetterFilter | None = None
    if filter_text is not None:
        try:
            flt = LetterFilter.parse(filter_text, now_ms=_now_ms())
        except FilterError as exc:
            return _fail(f"--filter: {exc}", 2)
    if dry_run and flt is None:
        return _fail("--dry-run goes with --filter", 2)
    settings = redis_settings("dlq", os.environ, role="check")
    if settings is None:
        return 2
    if flt is not None:
        chosen = flt
        if action == "drop":
            return _run(settings, lambda r, k, s: _drop_matching(r, k, chosen, dry_run, as_json))
        return _run(settings, lambda r, k, s: _redrive_matching(r, k, s, chosen, dry_run, as_json))
    if action == "list":
        if limit < 1:
            return _fail(f"--limit must be at least 1 (got {limit})", 2)
        return _run(settings, lambda r, k, s: _list(r, k, limit=limit, as_json=as_json))
    if action == "redrive" and every:
        return _run(settings, lambda r, k, s: _redrive_all(r, k, s, as_json=as_json))
    if not letter_id:
        return _fail(f"dlq {action} needs a dead-letter id; `ticketwire dlq list` shows them", 2)
    lid = letter_id
    commands: dict[str, Command] = {
        "show": lambda r, k, s: _show(r, k, lid, as_json=as_json),
        "redrive": lambda r, k, s: _redrive(r, k, s, lid, as_json=as_json),
        "drop": lambda r, k, s: _drop(r, k, lid, as_json=as_json),
    }
    return _run(settings, commands[action])


def _run(settings: Settings, command: Command) -> int:
    assert settings.redis_url

    async def work(redis: Redis) -> int:
        try:
            return await command(redis, Keys(settings.key_prefix), settings)
        except DeadLetterError as exc:
            return _fail(str(exc), 1)

    return run_on_redis(
        settings.redis_url,
        work,
        lambda message: _fail(message, 1),
        sentinel_password=settings.sentinel_password,
    )


def _fail(message: str, status: int) -> int:
    print(f"ticketwire dlq: {message}", file=sys.stderr)
    return status


async def _list(redis: Redis, keys: Keys, *, limit: int, as_json: bool) -> int:
    letters = await list_letters(redis, keys, limit=limit)
    total = await count_letters(redis, keys)
    now = _now_ms()
    if as_json:
        print(json.dumps([summary_json(x, now) for x in letters], indent=2))
        return 0
    if not letters:
        print(f"no dead letters under key prefix {keys.prefix!r}")
        return 0
    print(render_table(letters, now))
    shown = f"{len(letters)} of {total}" if total > len(letters) else str(total)
    more = f"; --limit {total} shows all" if total > len(letters) else ""
    print(
        f"\n{shown} dead letter(s), newest first{more}. "
        "`ticketwire dlq show ID` prints everything about one."
    )
    return 0


def summary_json(letter: DeadLetter, now_ms: int) -> dict[str, Any]:
    """The fields `dlq list --json` prints for one letter (`account` only when not default)."""
    named = {} if letter.account == DEFAULT else {"account": letter.account}
    return {
        "id": letter.id,
        "kind": letter.kind,
        "at_ms": letter.at_ms,
        "age_s": max(0, (now_ms - letter.at_ms) // 1000),
        "ticket": letter.ticket_key,
        "event_id": letter.event_id,
        "rules": list(letter.rules),
        "what": letter.what(),
        "reason": letter.reason,
        "attempts": len(letter.attempts),
        "redrivable": letter.redrivable,
        **named,
    }


def render_table(letters: list[DeadLetter], now_ms: int) -> str:
    """The human table of `dlq list`: id, age, ticket, rules, call or event, reason.

    An ACCOUNT column follows TICKET when some letter belongs to a named account.
    """
    named = any(x.account != DEFAULT for x in letters)
    rows: list[tuple[str, ...]] = [
        ("ID", "AGE", "TICKET", *(("ACCOUNT",) if named else ()), "RULES", "CALL / EVENT", "REASON")
    ]
    for x in letters:
        rules = ", ".join(x.rules) or ("-" if x.kind == KIND_CALL else "(internal error)")
        rows.append(
            (
                x.id,
                age(now_ms - x.at_ms),
                x.ticket_key,
                *((x.account,) if named else ()),
                rules,
                _cut(x.what(), WHAT_WIDTH),
                _cut(x.reason, REASON_WIDTH),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in rows
    )


def age(ms: int) -> str:
    """A short age: `42s`, `7m`, `3h`, `2d`."""
    s = max(0, ms // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------------------------ show


async def _show(redis: Redis, keys: Keys, letter_id: str, *, as_json: bool) -> int:
    letter = await get_letter(redis, keys, letter_id)
    delivery = await origin_delivery(redis, keys, letter)
    if as_json:
        print(json.dumps(letter_json(letter, delivery, _now_ms()), indent=2))
    else:
        print(render_letter(letter, delivery, _now_ms()))
    return 0


def letter_json(letter: DeadLetter, delivery: StoredDelivery | None, now_ms: int) -> dict[str, Any]:
    """Everything about one letter, as `dlq show --json` prints it (header values left out)."""
    out = summary_json(letter, now_ms)
    out["origin"] = letter.origin
    out["call"] = json.loads(letter.call.to_json()) if letter.call else None
    out["attempts"] = list(letter.attempts)
    out["event"] = None
    if delivery is not None:
        out["event"] = {
            "vendor": delivery.vendor,
            "event_id": delivery.event_id,
            "type": delivery.event_type,
            "received_ms": delivery.received_ms,
            # Header values may carry a webhook token: only their names are shown.
            "header_names": sorted(delivery.headers),
            "body": delivery.body.decode("utf-8", "replace"),
        }
    return out


def render_letter(letter: DeadLetter, delivery: StoredDelivery | None, now_ms: int) -> str:
    """The human view of `dlq show`: the failure, every attempt, the call and the event body."""
    lines = [
        (
            f"dead letter {letter.id}: {letter.kind}, {age(now_ms - letter.at_ms)} ago "
            f"({_when(letter.at_ms)})"
        ),
        f"  ticket    {letter.ticket_key}",
        *([f"  account   {letter.account}"] if letter.account != DEFAULT else []),
        f"  event     {letter.event_id or '-'}"
        + (f"  (stream entry {letter.origin})" if letter.origin else ""),
    ]
    if letter.kind == KIND_CALL:
        lines.append(f"  rules     {', '.join(letter.rules) or '-'}")
    else:
        failed = letter.rules[0] if letter.rules else None
        lines.append(f"  failed    {'rule ' + failed if failed else 'internal error'}")
    lines.append(f"  reason    {letter.reason}")
    if letter.call is not None:
        call = letter.call
        lines.append(f"  call      {call.vendor} {call.method} {call.path}")
        lines.extend(_indented(json.dumps(call.body, indent=2, sort_keys=True), 12))
    if letter.attempts:
        lines.append(f"  attempts  {len(letter.attempts)}")
        for n, a in enumerate(letter.attempts, 1):
            lines.extend(_attempt_lines(n, a))
    elif letter.kind == KIND_CALL:
        lines.append("  attempts  none recorded")
    lines.append("")
    lines.extend(_event_lines(letter, delivery))
    lines.append("")
    if letter.redrivable:
        lines.append(
            f"redrive: ticketwire dlq redrive {letter.id}    drop: ticketwire dlq drop {letter.id}"
        )
    else:
        lines.append(
            "cannot be redriven: it does not carry its event (written by an earlier version); "
            f"drop it with `ticketwire dlq drop {letter.id}` once handled"
        )
    return "\n".join(lines)


def _attempt_lines(n: int, a: dict[str, Any]) -> list[str]:
    at = a.get("at")
    when = _when(int(at)) if isinstance(at, int | float) else "time unknown"
    status = f"HTTP {a['status']}" if a.get("status") is not None else a.get("kind", "failed")
    rid = f"  request {a['request_id']}" if a.get("request_id") else ""
    out = [f"    #{n} {when}  {status}{rid}"]
    if a.get("error"):
        out.append(f"       error: {a['error']}")
    if a.get("retry_after") is not None:
        out.append(f"       retry after: {a['retry_after']}s")
    if a.get("body"):
        out.append(f"       body: {_cut(str(a['body']), 500)}")
    return out


def _event_lines(letter: DeadLetter, delivery: StoredDelivery | None) -> list[str]:
    if delivery is None:
        if not letter.origin:
            return ["event body: unknown (the letter does not record the event's stream entry)"]
        return [
            (
                f"event body: no longer in the stream (entry {letter.origin}); handled events "
                "are kept for TICKETWIRE_RETENTION"
            )
        ]
    head = (
        f"event body: {delivery.vendor} {delivery.event_type}, received "
        f"{_when(delivery.received_ms)}"
    )
    if delivery.headers:
        head += f"; headers kept for replay: {', '.join(sorted(delivery.headers))}"
    text = delivery.body.decode("utf-8", "replace")
    with contextlib.suppress(ValueError):  # not JSON: shown as it is
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return [head, *_indented(text, 2)]


def _indented(text: str, by: int) -> list[str]:
    return [" " * by + line for line in text.splitlines()]


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------------- redrive


async def _redrive(
    redis: Redis, keys: Keys, settings: Settings, letter_id: str, *, as_json: bool
) -> int:
    done = await redrive(redis, keys, letter_id, partitions=settings.partitions)
    if as_json:
        print(json.dumps(_redriven_json(done), indent=2))
    else:
        print(describe_redriven(done))
    return 0


async def _redrive_all(redis: Redis, keys: Keys, settings: Settings, *, as_json: bool) -> int:
    report = await redrive_all(redis, keys, partitions=settings.partitions)
    status = 1 if report.failed else 0
    if as_json:
        doc = {
            "redriven": [_redriven_json(r) for r in report.redriven],
            "skipped": [{"id": i, "why": w} for i, w in report.skipped],
            "failed": [{"id": i, "why": w} for i, w in report.failed],
        }
        print(json.dumps(doc, indent=2))
        return status
    _print_outcomes(report)
    events = sum(1 for r in report.redriven if r.letter.kind != KIND_CALL)
    calls = len(report.redriven) - events
    merged = sum(len(r.also_removed) for r in report.redriven)
    print(
        f"redrove {len(report.redriven)} dead letter(s): {events} event(s), {calls} call(s)"
        + (f"; {merged} more letter(s) of the same events removed with them" if merged else "")
        + f"; skipped {len(report.skipped)}; failed {len(report.failed)}"
    )
    return status


def describe_redriven(r: Redriven) -> str:
    """One line (two with merged letters) saying what was redriven and where it went."""
    x = r.letter
    through = x.through()
    if x.kind == KIND_CALL:
        line = (
            f"redrove {x.id}: {x.what()} requeued in the {r.target}; a running worker sends it"
            + through
        )
    else:
        line = (
            f"redrove {x.id}: {x.what()} event={x.event_id} re-added to {r.target}; "
            f"a running worker handles it again{through}"
        )
    if r.also_removed:
        line += (
            f"\n  also removed {', '.join(r.also_removed)}: letters of the same event, "
            "covered by this re-run"
        )
    return line


def _redriven_json(r: Redriven) -> dict[str, Any]:
    return {
        "id": r.letter.id,
        "kind": r.letter.kind,
        "ticket": r.letter.ticket_key,
        "event_id": r.letter.event_id,
        "to": r.target,
        "also_removed": list(r.also_removed),
        **({} if r.letter.account == DEFAULT else {"account": r.letter.account}),
    }


async def _redrive_matching(
    redis: Redis, keys: Keys, settings: Settings, flt: LetterFilter, dry_run: bool, as_json: bool
) -> int:
    report = await redrive_matching(
        redis, keys, flt, partitions=settings.partitions, dry_run=dry_run
    )
    status = 1 if report.failed else 0
    if as_json:
        doc: dict[str, Any] = {
            "filter": flt.describe(),
            "dry_run": dry_run,
            "matched": len(report.matched),
            "plan": [
                {
                    "id": p.letter.id,
                    "kind": p.letter.kind,
                    "ticket": p.letter.ticket_key,
                    "event_id": p.letter.event_id,
                    "action": p.action,
                    "partition": p.partition,
                    "also_removed": list(p.also),
                    "says": p.text,
                }
                for p in report.previews
            ],
        }
        if not dry_run:
            doc["redriven"] = [_redriven_json(r) for r in report.redriven]
            doc["skipped"] = [{"id": i, "why": w} for i, w in report.skipped]
            doc["failed"] = [{"id": i, "why": w} for i, w in report.failed]
        print(json.dumps(doc, indent=2))
        return status
    if not report.matched:
        print(f"no dead letter matches {flt.describe()}")
        return 0
    if dry_run:
        for p in report.previews:
            print(f"{p.letter.id}: {p.text}")
        n = sum(1 for p in report.previews if p.action in ("event", "call"))
        print(
            f"dry run: {len(report.matched)} letter(s) match {flt.describe()}; a redrive would "
            f"put {n} back to work; nothing was changed"
        )
        return 0
    _print_outcomes(report)
    print(
        f"redrove {len(report.redriven)} of {len(report.matched)} matching dead letter(s) "
        f"({flt.describe()}); skipped {len(report.skipped)}; failed {len(report.failed)}"
    )
    return status


async def _drop_matching(
    redis: Redis, keys: Keys, flt: LetterFilter, dry_run: bool, as_json: bool
) -> int:
    if dry_run:
        letters = await matching(redis, keys, flt)
        if as_json:
            now = _now_ms()
            print(
                json.dumps(
                    {"dry_run": True, "would_drop": [summary_json(x, now) for x in letters]},
                    indent=2,
                )
            )
        else:
            for x in letters:
                print(
                    f"would drop {x.id}: {x.what()} ticket {x.ticket_key}{x.of_account()} "
                    f"({x.reason})"
                )
            print(f"dry run: {len(letters)} letter(s) match {flt.describe()}; none dropped")
        return 0
    dropped = await drop_matching(redis, keys, flt)
    if as_json:
        now = _now_ms()
        each = [summary_json(x, now) for x in dropped]
        print(json.dumps({"dropped": len(dropped), "filter": flt.describe(), "letters": each}))
        return 0
    for x in dropped:
        print(describe_dropped(x))
    print(f"dropped {len(dropped)} dead letter(s) matching {flt.describe()}")
    return 0


# ------------------------------------------------------------------------------------ drop


async def _drop(redis: Redis, keys: Keys, letter_id: str, *, as_json: bool) -> int:
    letter = await drop(redis, keys, letter_id)
    if as_json:
        print(json.dumps(summary_json(letter, _now_ms()), indent=2))
        return 0
    print(describe_dropped(letter))
    return 0


def describe_dropped(x: DeadLetter) -> str:
    """One line saying what a dropped letter was, with its account when a named one."""
    rules = f" rules {', '.join(x.rules)}" if x.rules else ""
    return (
        f"dropped {x.id}: {x.what()} ticket {x.ticket_key}{x.of_account()} event "
        f"{x.event_id or '-'}{rules} (reason: {x.reason})"
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _print_outcomes(report: RedriveReport | FilterRedrive) -> None:
    """One line per letter redriven, skipped or not redriven (those on stderr)."""
    for r in report.redriven:
        print(describe_redriven(r))
    for i, why in report.skipped:
        print(f"skipped {i}: {why}")
    for i, why in report.failed:
        print(f"not redriven {i}: {why}", file=sys.stderr)
