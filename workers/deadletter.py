"""Dead letters: work that cannot succeed, kept with its full context until redriven or dropped.

Two kinds share the dead-letter stream (`Keys.dlq`):

- an *event* letter (a rule raised, or handling the event failed) carries the stored delivery
  itself (its stream fields `m` and `b`), so a redrive re-adds it to its partition stream (with
  `r`, the letter's id, beside them) and the workers run it again;
- a *call* letter (the helpdesk refused a write-back, or its attempts ran out) carries the call,
  the rules behind it, every attempt with its answer, and `origin`, the stream entry of the event
  (`<partition>/<entry id>`), whose body can be shown while the stream retains it.

A redrive is decided by Redis, not by the caller: an event letter is deleted and its delivery
re-added in one script, so it is never lost nor re-added twice. A call letter is first claimed
(`SET NX` with a lifetime), then requeued in the ticket's outbox, then deleted; a crash after the
requeue and before the delete leaves the letter in place, and redriving it again once the claim
expired would send the call a second time (at least once, never lost).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from ticketwire import metrics
from ticketwire.accountkey import DEFAULT, lane_of
from ticketwire.calls import ApiCall
from ticketwire.errors import TicketwireError
from ticketwire.keys import Keys, partition_of
from ticketwire.stored import StoredDelivery
from workers.consumer import META_PARTITIONS
from workers.outboxqueue import requeue
from workers.retrypolicy import may_have_applied

log = logging.getLogger("ticketwire.worker")

KIND_EVENT = "event"
KIND_CALL = "call"

#: How long a call letter's redrive claim lasts; a redrive that died holding it frees it then.
CLAIM_TTL_MS = 60_000
#: Letters read per round trip when walking the whole stream.
PAGE = 200

#: Extra field of a re-added delivery: the dead letter it came back from. Readers of the
#: stream that do not know it ignore it; the worker can tell a deliberate re-run by it.
REDRIVEN_FIELD = "r"

_ID = re.compile(r"^\d+-\d+$")

# KEYS: dlq, claim of the letter, partition stream, planned marker of the event, SET of lanes.
# ARGV: letter id, clear planned marker ('1'/'0'), n sibling ids, lane ("": the default lane),
# sibling ids..., field/value pairs.
# Deleting the letter decides who redrives: only the caller whose XDEL removed it re-adds the
# delivery, in the same script, so the delivery is never lost nor added twice. Letters of the same
# delivery (other rules that failed on it) go with it: one re-run covers them all.
_REDRIVE_EVENT_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {2} end
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return {0} end
local n = tonumber(ARGV[3])
local gone = {}
for i = 5, 4 + n do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then gone[#gone + 1] = ARGV[i] end
end
if ARGV[2] == '1' then redis.call('DEL', KEYS[4]) end
-- Listed, so workers read the lane even if nothing else was ever stored in it.
if ARGV[4] ~= '' then redis.call('SADD', KEYS[5], ARGV[4]) end
local id = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 5 + n))
return {1, id, gone}
"""

# KEYS: dlq, claim. ARGV: letter id, owner, lifetime ms.
# Returns 1 when claimed, 0 when the letter is gone, 2 when someone else holds the claim.
_CLAIM_LUA = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 2
"""

# KEYS: dlq, claim. ARGV: letter id, owner. Deletes the letter and our claim.
_FINISH_LUA = """
local n = redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return n
"""

_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"

# KEYS: dlq, claim. ARGV: letter id. Returns 1 dropped, 0 gone, 2 being redriven.
_DROP_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
return redis.call('XDEL', KEYS[1], ARGV[1])
"""


class DeadLetterError(TicketwireError):
    """A dead letter cannot be found, read or redriven; the message says what to do."""


class LetterNotFound(DeadLetterError):
    """No letter with this id (never existed, or already redriven or dropped)."""


class LetterBusy(DeadLetterError):
    """Another process is redriving this letter right now."""


class NotRedrivable(DeadLetterError):
    """The letter does not carry what a redrive needs."""


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as read back from the stream."""

    id: str
    kind: str
    reason: str
    ticket_key: str
    event_id: str
    #: Rules behind the call; for an event letter, the rule that failed (none: internal error).
    rules: tuple[str, ...]
    at_ms: int
    #: Stream entry of the event, `<partition>/<entry id>`; "" when unknown.
    origin: str = ""
    call: ApiCall | None = None
    attempts: tuple[dict[str, Any], ...] = ()
    #: The stored delivery (event letters), as it can be re-added to its partition stream.
    delivery: StoredDelivery | None = None
    #: The delivery's stream fields exactly as kept in the letter.
    delivery_fields: Mapping[bytes, bytes] = field(default_factory=dict)
    #: The helpdesk account of the call or event: a redrive goes through its client again.
    account: str = DEFAULT

    @property
    def redrivable(self) -> bool:
        """True when a redrive has what it needs: the call, or the stored delivery."""
        return self.call is not None if self.kind == KIND_CALL else self.delivery is not None

    def through(self) -> str:
        """` through account NAME` for a named account's letter; "" for the default account's."""
        return "" if self.account == DEFAULT else f" through account {self.account}"

    def of_account(self) -> str:
        """` account NAME` for a named account's letter; "" for the default account's."""
        return "" if self.account == DEFAULT else f" account {self.account}"

    def what(self) -> str:
        """What failed, in one line: the call, or the event and its type."""
        if self.call is not None:
            return self.call.describe()
        if self.delivery is not None:
            return f"event {self.delivery.vendor} {self.delivery.event_type}"
        return "call (unreadable)" if self.kind == KIND_CALL else "event"

    @classmethod
    def from_fields(cls, entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> DeadLetter:
        """Decode a letter read with redis-py; letters of earlier versions decode too."""
        lid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id

        def text(name: bytes) -> str:
            return fields.get(name, b"").decode("utf-8", "replace")

        raw_call = fields.get(b"call", b"")
        kind = text(b"kind") or (KIND_CALL if raw_call else KIND_EVENT)
        call: ApiCall | None = None
        # A damaged letter still lists (as not redrivable) rather than breaking the listing.
        with contextlib.suppress(ValueError, KeyError, TypeError):
            call = ApiCall.from_json(raw_call) if raw_call else None
        delivery: StoredDelivery | None = None
        delivery_fields = {k: v for k, v in fields.items() if k in (b"m", b"b")}
        if b"m" in delivery_fields and b"b" in delivery_fields:
            partition, entry = _split_origin(text(b"origin"))
            with contextlib.suppress(ValueError, KeyError, TypeError):
                delivery = StoredDelivery.from_fields(
                    entry, dict(delivery_fields), partition=partition
                )
        if call is not None and call.rules:
            rules = call.rules
        else:
            names = text(b"rules")
            rules = tuple(names.split(",")) if names and kind == KIND_CALL else (names,)
            rules = tuple(r for r in rules if r)
        try:
            attempts = tuple(json.loads(fields.get(b"attempts", b"[]")))
        except ValueError:
            attempts = ()
        at = text(b"at")
        return cls(
            id=lid,
            kind=kind,
            reason=text(b"reason"),
            ticket_key=text(b"ticket"),
            event_id=text(b"event_id") or (call.event_id if call else ""),
            rules=rules,
            at_ms=int(at) if at.isdigit() else int(lid.split("-")[0]),
            origin=text(b"origin") or (call.origin if call else ""),
            call=call,
            attempts=attempts,
            delivery=delivery,
            delivery_fields=delivery_fields,
            account=text(b"account") or _account_of(call, delivery),
        )


@dataclass(frozen=True)
class Redriven:
    """A letter put back to work: where it went and which letters of the same event went too."""

    letter: DeadLetter
    #: Human description of where the work went, e.g. `stream tw:events:3 as 1700000000000-0`.
    target: str
    also_removed: tuple[str, ...] = ()


@dataclass
class RedriveReport:
    """What `redrive_all` did: letters put back to work, and those it left, with why."""

    redriven: list[Redriven] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def letter_fields(
    *,
    reason: str,
    ticket_key: str,
    call: ApiCall | None,
    event_id: str,
    attempts: list[dict[str, Any]] | None,
    delivery: StoredDelivery | None,
    rule: str,
    now_ms: int,
) -> dict[str, str | bytes]:
    """The stream fields of a letter: what failed, why, every attempt, and the event itself."""
    fields: dict[str, str | bytes] = {
        "kind": KIND_CALL if call is not None else KIND_EVENT,
        "reason": reason,
        "ticket": ticket_key,
        "event_id": event_id
        or (call.event_id if call else "")
        or (delivery.event_id if delivery else ""),
        "rules": ",".join(call.rules) if call is not None else rule,
        "call": call.to_json() if call is not None else "",
        "attempts": json.dumps(attempts or []),
        "at": str(now_ms),
        "origin": call.origin if call is not None else _origin_of(delivery),
    }
    account = _account_of(call, delivery)
    if account != DEFAULT:
        # Only then: letters of the default account keep the fields earlier versions wrote.
        fields["account"] = account
    if call is None and delivery is not None:
        fields.update(delivery.to_fields())
    return fields


def _account_of(call: ApiCall | None, delivery: StoredDelivery | None) -> str:
    """The account a letter belongs to: its call's, else its delivery's."""
    if call is not None:
        return call.account
    return delivery.account if delivery is not None else DEFAULT


async def dead_letter(
    redis: Redis,
    keys: Keys,
    *,
    reason: str,
    ticket_key: str,
    call: ApiCall | None = None,
    event_id: str = "",
    attempts: list[dict[str, Any]] | None = None,
    delivery: StoredDelivery | None = None,
    rule: str = "",
    trace: Callable[[Sequence[Any]], None] | None = None,
) -> str:
    """Append a dead letter to the DLQ stream and return its id.

    Pass `call` (with its `attempts`) for a write-back that failed, or `delivery` (and the failed
    `rule`, if a rule raised) for an event that could not be handled. `trace` is given the
    letter's trace record (`dl`).
    """
    fields = letter_fields(
        reason=reason,
        ticket_key=ticket_key,
        call=call,
        event_id=event_id,
        attempts=attempts,
        delivery=delivery,
        rule=rule,
        now_ms=int(time.time() * 1000),
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(keys.dlq, fields)  # type: ignore[arg-type]
        pipe.hincrby(keys.stats, "dead_letters", 1)
        entry, _ = await pipe.execute()
    metrics.dead_lettered("call" if call is not None else "event")
    dlq_id = entry.decode() if isinstance(entry, bytes) else str(entry)
    if trace is not None:
        trace(("dl", fields["kind"], dlq_id, reason))
    account = fields.get("account")
    log.error(
        "dead-lettered %s ticket=%s event=%s%s%s: %s (dlq id %s)",
        call.describe() if call else "event",
        ticket_key,
        fields["event_id"],
        f" rule={rule}" if rule and call is None else "",
        f" account={_text(account)}" if account else "",
        reason,
        dlq_id,
    )
    return dlq_id


def _origin_of(delivery: StoredDelivery | None) -> str:
    if delivery is None or not delivery.entry_id or delivery.partition < 0:
        return ""
    return f"{delivery.partition}/{delivery.entry_id}"


def _split_origin(origin: str) -> tuple[int, str]:
    partition, _, entry = origin.partition("/")
    if partition.isdigit() and _ID.match(entry):
        return int(partition), entry
    return -1, ""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_id(letter_id: str) -> str:
    """Return `letter_id` if it has the form of a stream id, else raise `LetterNotFound`."""
    if not _ID.match(letter_id):
        raise LetterNotFound(
            f"{letter_id!r} is not a dead-letter id (ids look like 1700000000000-0); "
            "`ticketwire dlq list` shows them"
        )
    return letter_id


async def count_letters(redis: Redis, keys: Keys) -> int:
    """How many dead letters are kept."""
    return int(await redis.xlen(keys.dlq))


async def list_letters(redis: Redis, keys: Keys, *, limit: int) -> list[DeadLetter]:
    """The newest `limit` letters, newest first."""
    rows = await redis.xrevrange(keys.dlq, count=limit)
    return [DeadLetter.from_fields(eid, fields) for eid, fields in rows]


async def get_letter(redis: Redis, keys: Keys, letter_id: str) -> DeadLetter:
    """One letter by id; `LetterNotFound` says how to list them when there is none."""
    rows = await redis.xrange(keys.dlq, check_id(letter_id), letter_id)
    if not rows:
        raise LetterNotFound(
            f"no dead letter {letter_id} under key prefix {keys.prefix!r} (redriven or dropped "
            "already, or a typo); `ticketwire dlq list` shows the ids"
        )
    eid, fields = rows[0]
    return DeadLetter.from_fields(eid, fields)


async def origin_delivery(redis: Redis, keys: Keys, letter: DeadLetter) -> StoredDelivery | None:
    """The stored delivery behind a letter: its own copy, else the stream entry while retained."""
    if letter.delivery is not None:
        return letter.delivery
    partition, entry = _split_origin(letter.origin)
    if partition < 0:
        return None
    # Its account's lane; the shared lane too, where named accounts' events were kept before
    # they had lanes of their own.
    vendor = letter.ticket_key.partition(":")[0]
    for lane in dict.fromkeys((lane_of(vendor, letter.account), "")):
        stream = keys.stream(partition, lane)
        rows = await redis.xrange(stream, entry, entry)
        if rows:
            eid, fields = rows[0]
            return StoredDelivery.from_fields(eid, fields, partition=partition, stream=stream)
    return None


async def partition_count(redis: Redis, keys: Keys, default: int) -> int:
    """The partition count the workers recorded in Redis, or `default` if none did yet."""
    stored = await redis.hget(keys.meta, META_PARTITIONS)  # type: ignore[misc]
    return int(stored) if stored is not None else default


async def redrive(
    redis: Redis,
    keys: Keys,
    letter_id: str,
    *,
    partitions: int,
    siblings: Sequence[str] | None = None,
) -> Redriven:
    """Put one letter back to work and delete it; raise `DeadLetterError` saying why not.

    `partitions` is used only when no worker has recorded the partition count in Redis yet.
    `siblings` are the other event letters of the same delivery, when the caller knows them
    (otherwise the stream is searched for them).
    """
    letter = await get_letter(redis, keys, letter_id)
    why = not_redrivable(letter)
    if why:
        raise NotRedrivable(why)
    if letter.kind == KIND_CALL:
        return await _redrive_call(redis, keys, letter)
    return await _redrive_event(redis, keys, letter, partitions=partitions, siblings=siblings)


def not_redrivable(letter: DeadLetter) -> str:
    """Why a redrive of `letter` cannot work, with what to do instead; "" when it can."""
    if letter.kind == KIND_CALL and letter.call is None:
        return (
            f"dead letter {letter.id} holds a call that cannot be read back (damaged); "
            f"drop it with `ticketwire dlq drop {letter.id}`"
        )
    if letter.kind != KIND_CALL and letter.delivery is None:
        return (
            f"dead letter {letter.id} does not carry its event (written by an earlier version); "
            f"capture event {letter.event_id} with `ticketwire capture` and send it again with "
            f"`ticketwire replay`, then `ticketwire dlq drop {letter.id}`"
        )
    return ""


async def _redrive_event(
    redis: Redis,
    keys: Keys,
    letter: DeadLetter,
    *,
    partitions: int,
    siblings: Sequence[str] | None,
) -> Redriven:
    if letter.delivery is None:
        raise NotRedrivable(not_redrivable(letter))
    count = await partition_count(redis, keys, partitions)
    delivery = letter.delivery
    lane = lane_of(delivery.vendor, delivery.account)
    stream = keys.stream(partition_of(letter.ticket_key, count), lane)
    if siblings is None:
        siblings = [s.id async for s in iter_letters(redis, keys) if _same_delivery(s, letter)]
    siblings = [s for s in siblings if s != letter.id]
    # A rule that raised never had its actions planned, while the other rules of the event did,
    # which marks the event as planned: without clearing the mark the fixed rule's calls would
    # never be queued. An internal error keeps the mark: what was planned is already queued.
    clear_planned = "1" if letter.rules else "0"
    args: list[str | bytes] = [letter.id, clear_planned, str(len(siblings)), lane, *siblings]
    for name, value in letter.delivery_fields.items():
        args += [name, value]
    args += [REDRIVEN_FIELD, letter.id]
    res = await redis.eval(  # type: ignore[misc]
        _REDRIVE_EVENT_LUA,
        5,
        keys.dlq,
        _claim_key(keys, letter.id),
        stream,
        keys.planned(letter.event_id or "-"),
        keys.lanes,
        *args,  # type: ignore[arg-type]
    )
    state = int(res[0])
    if state == 2:
        raise _busy(letter.id)
    if state == 0:
        raise _gone(letter.id)
    new_id = _text(res[1])
    also = tuple(_text(x) for x in res[2])
    log.info(
        "redrove dead letter %s: event=%s re-added to %s as %s%s",
        letter.id,
        letter.event_id,
        stream,
        new_id,
        f" (with letters {', '.join(also)} of the same event)" if also else "",
    )
    return Redriven(letter, f"stream {stream} as {new_id}", also)


def _delivery_key(letter: DeadLetter) -> tuple[str, str, str] | None:
    """What identifies the delivery of an event letter (None for call letters)."""
    if letter.kind != KIND_EVENT or letter.delivery is None:
        return None
    return (letter.ticket_key, letter.event_id, letter.origin)


def _same_delivery(a: DeadLetter, b: DeadLetter) -> bool:
    key = _delivery_key(a)
    return key is not None and key == _delivery_key(b)


async def _redrive_call(redis: Redis, keys: Keys, letter: DeadLetter) -> Redriven:
    assert letter.call is not None
    owner = uuid.uuid4().hex
    claim = _claim_key(keys, letter.id)
    state = int(
        await redis.eval(  # type: ignore[misc]
            _CLAIM_LUA, 2, keys.dlq, claim, letter.id, owner, str(CLAIM_TTL_MS)
        )
    )
    if state == 0:
        raise _gone(letter.id)
    if state == 2:
        raise _busy(letter.id)
    try:
        # A call given up on after timeouts or 5xx may have been applied meanwhile.
        doubt = bool(letter.attempts) and may_have_applied(letter.attempts[-1])
        await requeue(redis, keys, letter.ticket_key, [letter.call], uncertain=doubt)
    except BaseException:
        # Nothing was requeued as far as we know: free the letter for the next attempt (if
        # Redis is gone, the claim simply expires).
        with contextlib.suppress(Exception):
            await redis.eval(_RELEASE_LUA, 1, claim, owner)  # type: ignore[misc]
        raise
    await redis.eval(_FINISH_LUA, 2, keys.dlq, claim, letter.id, owner)  # type: ignore[misc]
    log.info(
        "redrove dead letter %s: %s requeued for ticket=%s",
        letter.id,
        letter.call.describe(),
        letter.ticket_key,
    )
    return Redriven(letter, f"outbox of ticket {letter.ticket_key}")


async def iter_letters(redis: Redis, keys: Keys, *, until: str = "+") -> AsyncIterator[DeadLetter]:
    """Every letter, oldest first, up to and including id `until`, read in pages."""
    start = "-"
    while True:
        rows = await redis.xrange(keys.dlq, start, until, count=PAGE)
        for eid, fields in rows:
            yield DeadLetter.from_fields(eid, fields)
        if len(rows) < PAGE:
            return
        start = "(" + _text(rows[-1][0])


async def redrive_all(redis: Redis, keys: Keys, *, partitions: int) -> RedriveReport:
    """Redrive every letter present when called, oldest first, so a ticket's work keeps its order.

    Letters written meanwhile (work that fails again) are left for the next run.
    """
    return await redrive_letters(
        redis, keys, await current_letters(redis, keys), partitions=partitions
    )


async def current_letters(redis: Redis, keys: Keys) -> list[DeadLetter]:
    """Every letter present now, oldest first (letters written meanwhile are left out)."""
    newest = await redis.xrevrange(keys.dlq, count=1)
    if not newest:
        return []
    until = _text(newest[0][0])
    return [letter async for letter in iter_letters(redis, keys, until=until)]


def delivery_groups(letters: Sequence[DeadLetter]) -> dict[tuple[str, str, str], list[str]]:
    """The ids of the event letters of each delivery: one re-run of it covers them all."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for letter in letters:
        key = _delivery_key(letter)
        if key is not None:
            groups.setdefault(key, []).append(letter.id)
    return groups


def siblings_of(
    letter: DeadLetter, groups: Mapping[tuple[str, str, str], Sequence[str]]
) -> list[str]:
    """The other letters of `letter`'s delivery in `groups` (none for a call letter)."""
    key = _delivery_key(letter)
    return [i for i in groups.get(key, ()) if i != letter.id] if key is not None else []


async def redrive_letters(
    redis: Redis,
    keys: Keys,
    letters: Sequence[DeadLetter],
    *,
    partitions: int,
    every: Sequence[DeadLetter] | None = None,
) -> RedriveReport:
    """Redrive `letters` in the order given (oldest first keeps a ticket's work in order).

    `every` holds the letters where those of the same delivery are looked up (default:
    `letters`); they are removed with the one re-run that covers them.
    """
    report = RedriveReport()
    groups = delivery_groups(every if every is not None else letters)
    done: set[str] = set()
    for letter in letters:
        if letter.id in done:
            continue
        key = _delivery_key(letter)
        try:
            result = await redrive(
                redis,
                keys,
                letter.id,
                partitions=partitions,
                siblings=siblings_of(letter, groups) if key is not None else None,
            )
        except (LetterNotFound, LetterBusy) as exc:
            report.skipped.append((letter.id, str(exc)))
            continue
        except NotRedrivable as exc:
            report.failed.append((letter.id, str(exc)))
            continue
        done.update(result.also_removed)
        report.redriven.append(result)
    return report


async def drop(redis: Redis, keys: Keys, letter_id: str) -> DeadLetter:
    """Delete one letter and return what it was."""
    letter = await get_letter(redis, keys, letter_id)
    state = int(
        await redis.eval(  # type: ignore[misc]
            _DROP_LUA, 2, keys.dlq, _claim_key(keys, letter.id), letter.id
        )
    )
    if state == 2:
        raise _busy(letter.id)
    if state == 0:
        raise _gone(letter.id)
    log.info("dropped dead letter %s: %s ticket=%s", letter.id, letter.what(), letter.ticket_key)
    return letter


def _claim_key(keys: Keys, letter_id: str) -> str:
    return keys.dlq_claim(letter_id)


def _busy(letter_id: str) -> LetterBusy:
    return LetterBusy(
        f"dead letter {letter_id} is being redriven by another process right now; "
        f"check again with `ticketwire dlq show {letter_id}` in a minute"
    )


def _gone(letter_id: str) -> LetterNotFound:
    return LetterNotFound(
        f"dead letter {letter_id} was just redriven or dropped by another process; "
        "`ticketwire dlq list` shows what is left"
    )
