"""Dead letters chosen by a filter: list, preview a redrive, redrive, or drop them in bulk.

A filter reads `vendor=inboxops,account=brand-a,kind=call,rule=escalate,ticket=…,reason=…,
since=2h,until=…`: every key given must match (`account=default` takes the letters of the
single-account configuration; `reason` is a case-insensitive substring; `ticket` is a full ticket
key `vendor:tenant:ticket`, `vendor:ticket`, or a bare ticket id; `since`/`until` take a
duration meaning that long ago, or an ISO time, UTC unless it says otherwise). Parsing is pure;
the redrive itself is `workers.deadletter`'s, letter by letter, oldest first.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from redis.asyncio import Redis

from ticketwire.accountkey import ACCOUNT_NAME
from ticketwire.errors import TicketwireError
from ticketwire.keys import Keys, partition_of
from ticketwire.vendors import registry
from workers.deadletter import (
    KIND_CALL,
    KIND_EVENT,
    DeadLetter,
    LetterBusy,
    LetterNotFound,
    Redriven,
    current_letters,
    delivery_groups,
    drop,
    not_redrivable,
    partition_count,
    redrive_letters,
    siblings_of,
)

# In the order a refused filter lists them: the keys most filters use first.
KEYS = ("vendor", "kind", "rule", "ticket", "reason", "since", "until", "account")
_AGO = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_AGO_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class FilterError(TicketwireError):
    """A filter that cannot be read; the message says which part and what is expected."""


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters an operation takes; an unset key matches every letter."""

    vendor: str | None = None
    account: str | None = None
    kind: str | None = None
    rule: str | None = None
    ticket: str | None = None
    reason: str | None = None
    #: Letters written at or after this time (epoch ms).
    since_ms: int | None = None
    #: Letters written at or before this time (epoch ms).
    until_ms: int | None = None

    @classmethod
    def parse(cls, text: str, *, now_ms: int) -> LetterFilter:
        """Read `key=value,…`; `now_ms` anchors durations. Raises `FilterError`."""
        found: dict[str, str] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, eq, value = part.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not eq:
                raise FilterError(f"{part!r} is not key=value; keys: {', '.join(KEYS)}")
            if key not in KEYS:
                raise FilterError(f"unknown filter key {key!r}; keys: {', '.join(KEYS)}")
            if key in found:
                raise FilterError(f"{key} is given twice; give each key once")
            if not value:
                raise FilterError(f"{key}= needs a value")
            found[key] = value
        if not found:
            raise FilterError(
                f"an empty filter; give at least one of {', '.join(KEYS)} (e.g. kind=call,since=2h)"
            )
        vendor = found.get("vendor")
        known = registry.names()
        if vendor is not None and vendor.lower() not in known:
            raise FilterError(f"vendor={vendor}: expected one of {', '.join(known)}")
        account = found.get("account")
        if account is not None and not ACCOUNT_NAME.match(account.lower()):
            raise FilterError(
                f"account={account}: expected an account name (a-z, 0-9 and -, up to 32 long)"
            )
        kind = found.get("kind")
        if kind is not None and kind.lower() not in (KIND_EVENT, KIND_CALL):
            raise FilterError(f"kind={kind}: expected {KIND_EVENT} or {KIND_CALL}")
        since = _instant("since", found["since"], now_ms) if "since" in found else None
        until = _instant("until", found["until"], now_ms) if "until" in found else None
        if since is not None and until is not None and since > until:
            raise FilterError("since is later than until: no letter can match")
        return cls(
            vendor=vendor.lower() if vendor else None,
            account=account.lower() if account else None,
            kind=kind.lower() if kind else None,
            rule=found.get("rule"),
            ticket=found.get("ticket"),
            reason=found.get("reason"),
            since_ms=since,
            until_ms=until,
        )

    def matches(self, letter: DeadLetter) -> bool:
        """True when `letter` meets every key of the filter."""
        if self.vendor is not None and _vendor_of(letter) != self.vendor:
            return False
        if self.account is not None and letter.account != self.account:
            return False
        if self.kind is not None and letter.kind != self.kind:
            return False
        if self.rule is not None and self.rule not in letter.rules:
            return False
        if self.ticket is not None and not _same_ticket(self.ticket, letter.ticket_key):
            return False
        if self.reason is not None and self.reason.lower() not in letter.reason.lower():
            return False
        if self.since_ms is not None and letter.at_ms < self.since_ms:
            return False
        return self.until_ms is None or letter.at_ms <= self.until_ms

    def describe(self) -> str:
        """The filter as it was understood, e.g. `kind=call, since 2026-12-02 12:00:00 UTC`."""
        parts = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in ("since_ms", "until_ms") and getattr(self, f.name) is not None
        ]
        if self.since_ms is not None:
            parts.append(f"since {_show(self.since_ms)}")
        if self.until_ms is not None:
            parts.append(f"until {_show(self.until_ms)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Preview:
    """What a redrive would do with one letter, or why it cannot."""

    letter: DeadLetter
    #: `event` re-added to a partition, `call` re-queued, `covered` by another letter's re-run,
    #: `busy` (another process is redriving it), or `no` (not redrivable).
    action: str
    #: One English line: `re-add event X to partition P …`, `re-queue call … on ticket T`, ….
    text: str
    partition: int | None = None
    #: Other letters of the same delivery that the re-run removes with this one.
    also: tuple[str, ...] = ()


@dataclass
class FilterRedrive:
    """A redrive by filter: the letters matched, what it does with each, and what it did."""

    dry_run: bool
    #: The matching letters, oldest first.
    matched: list[DeadLetter] = field(default_factory=list)
    #: Per matching letter, what the redrive does (a dry run stops here).
    previews: list[Preview] = field(default_factory=list)
    redriven: list[Redriven] = field(default_factory=list)
    #: (letter id, why) for letters redriven or dropped by another process meanwhile.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: (letter id, why) for letters that cannot be redriven.
    failed: list[tuple[str, str]] = field(default_factory=list)


async def matching(redis: Redis, keys: Keys, flt: LetterFilter) -> list[DeadLetter]:
    """The letters present now that `flt` matches, oldest first."""
    return [x for x in await current_letters(redis, keys) if flt.matches(x)]


async def redrive_matching(
    redis: Redis, keys: Keys, flt: LetterFilter, *, partitions: int, dry_run: bool
) -> FilterRedrive:
    """Redrive the matching letters oldest first, or with `dry_run` only say what that would do.

    Letters of the same delivery that the filter left out go with the re-run that covers them
    (one re-run of an event covers every rule that failed on it).
    """
    every = await current_letters(redis, keys)
    chosen = [x for x in every if flt.matches(x)]
    count = await partition_count(redis, keys, partitions)
    busy: set[str] = set()
    if chosen:
        async with redis.pipeline(transaction=False) as pipe:
            for x in chosen:
                pipe.exists(keys.dlq_claim(x.id))
            claimed = await pipe.execute()
        busy = {x.id for x, held in zip(chosen, claimed, strict=True) if held}
    out = FilterRedrive(dry_run, chosen, preview(chosen, every, partitions=count, busy=busy))
    if not dry_run:
        done = await redrive_letters(redis, keys, chosen, partitions=partitions, every=every)
        out.redriven, out.skipped, out.failed = done.redriven, done.skipped, done.failed
    return out


def preview(
    chosen: Sequence[DeadLetter],
    every: Sequence[DeadLetter],
    *,
    partitions: int,
    busy: Collection[str] = (),
) -> list[Preview]:
    """What redriving `chosen` (in order) would do, letter by letter; changes nothing.

    `busy` names letters another process is redriving right now (a redrive leaves them).
    """
    groups: Mapping[tuple[str, str, str], Sequence[str]] = delivery_groups(every)
    covered: dict[str, str] = {}
    out: list[Preview] = []
    for x in chosen:
        why = not_redrivable(x)
        if x.id in covered:
            out.append(
                Preview(x, "covered", f"removed with {covered[x.id]}: the same event's re-run")
            )
        elif why:
            out.append(Preview(x, "no", f"not redrivable: {why}"))
        elif x.id in busy:
            out.append(Preview(x, "busy", "left: another process is redriving it right now"))
        elif x.kind == KIND_CALL:
            assert x.call is not None
            text = f"re-queue call {x.call.describe()} on ticket {x.ticket_key}"
            out.append(Preview(x, "call", text + x.through()))
        else:
            p = partition_of(x.ticket_key, partitions)
            also = tuple(siblings_of(x, groups))
            covered.update(dict.fromkeys(also, x.id))
            text = f"re-add event {x.event_id} to partition {p} for ticket {x.ticket_key}"
            text += x.through()
            if also:
                text += f", removing letters {', '.join(also)} of the same event"
            out.append(Preview(x, "event", text, p, also))
    return out


async def drop_matching(redis: Redis, keys: Keys, flt: LetterFilter) -> list[DeadLetter]:
    """Delete the matching letters; those deleted, oldest first (one being redriven is left)."""
    dropped = []
    for x in await matching(redis, keys, flt):
        with contextlib.suppress(LetterNotFound, LetterBusy):
            dropped.append(await drop(redis, keys, x.id))
    return dropped


def _vendor_of(letter: DeadLetter) -> str:
    if letter.call is not None:
        return letter.call.vendor
    if letter.delivery is not None:
        return letter.delivery.vendor
    return letter.ticket_key.partition(":")[0]


def _same_ticket(wanted: str, key: str) -> bool:
    """`wanted` names ticket `key` (`vendor:tenant:ticket`) fully, as `vendor:ticket`, or by id."""
    if wanted == key:
        return True
    vendor, _, ticket = key.partition(":")
    ticket = ticket.rpartition(":")[2]
    if ":" in wanted:
        want_vendor, _, want_ticket = wanted.partition(":")
        return want_vendor == vendor and want_ticket == ticket
    return wanted == ticket


def _instant(key: str, value: str, now_ms: int) -> int:
    m = _AGO.match(value.lower())
    if m:
        ago_ms = float(m.group(1)) * _AGO_S[m.group(2)] * 1000
        # Further back than the epoch (or too many digits for a float) means from the start.
        return 0 if not ago_ms < now_ms else now_ms - int(ago_ms)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(
            f"{key}={value}: expected a duration meaning that long ago (30m, 2h, 3d) or an ISO "
            "time (2026-12-02T09:30, UTC unless it names a zone)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _show(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
