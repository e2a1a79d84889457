"""Read traces back: the deliveries list, one event's trace and one ticket's timeline.

The deliveries list (`trace:log`) is read newest first with XREVRANGE in chunks. A time range
maps onto stream ids directly; every other filter is applied while scanning, and one page never
reads more than `scan_budget` entries, so a filter that matches nothing costs a bounded read and
the page says how far it got (`scanned_to_ms`) and where the next one starts (`next`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from ticketwire.accountkey import DEFAULT
from ticketwire.keys import Keys
from ticketwire.trace import codes
from ticketwire.vendors import registry

#: Most log entries one page reads, whatever the filter matches.
SCAN_BUDGET = 5_000
#: Entries read per XREVRANGE round trip while scanning.
CHUNK = 500
#: A timeline keeps at most this many records (the writer trims to about this many).
TIMELINE_MAX = codes.TICKET_MAX


class AmbiguousTicket(LookupError):
    """A `vendor:ticket` key matches the timelines of several tenants."""

    def __init__(self, key: str, candidates: list[str]) -> None:
        super().__init__(f"{key} matches {len(candidates)} tickets: {', '.join(candidates)}")
        self.key = key
        self.candidates = candidates


class AmbiguousEvent(LookupError):
    """An event id is known for several vendors; the vendor must be named."""

    def __init__(self, event_id: str, vendors: list[str]) -> None:
        super().__init__(f"event {event_id} is known for several vendors: {', '.join(vendors)}")
        self.event_id = event_id
        self.vendors = vendors


@dataclass(frozen=True)
class DeliveryFilter:
    """What the deliveries list is narrowed to; None matches anything; times are epoch ms."""

    vendor: str | None = None
    event_type: str | None = None
    outcome: str | None = None
    #: `vendor:tenant:ticket`, or `vendor:ticket` for that ticket under any tenant.
    ticket: str | None = None
    rule: str | None = None
    event_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    #: A configured account's name (`default` matches entries that name none).
    account: str | None = None

    def matches(self, d: Delivery) -> bool:
        """True when `d` passes every filter but the time range (the scan bounds that)."""
        if self.vendor is not None and d.vendor != self.vendor:
            return False
        if self.event_type is not None and d.event_type != self.event_type:
            return False
        if self.outcome is not None and d.outcome != self.outcome:
            return False
        if self.event_id is not None and d.event_id != self.event_id:
            return False
        if self.rule is not None and self.rule not in d.rules:
            return False
        if self.account is not None and d.account != self.account:
            return False
        return self.ticket is None or ticket_matches(self.ticket, d.ticket)

    def raw_matcher(self) -> Callable[[dict[bytes, bytes]], bool]:
        """`matches` on an entry's raw fields, so a scan decodes only the rows it keeps."""
        exact = [
            (name.encode(), value.encode())
            for name, value in (
                (codes.LOG_VENDOR, self.vendor),
                (codes.LOG_TYPE, self.event_type),
                (codes.LOG_OUTCOME, self.outcome),
                (codes.LOG_EVENT, self.event_id),
            )
            if value is not None
        ]
        # The default account's entries have no account field: it matches as empty.
        account = (
            None
            if self.account is None
            else b""
            if self.account == DEFAULT
            else self.account.encode()
        )
        account_field = codes.LOG_ACCOUNT.encode()
        fired, sep = codes.LOG_FIRED.encode(), codes.RULE_SEP.encode()
        rule = self.rule.encode() if self.rule is not None else None
        ticket_field = codes.LOG_TICKET.encode()
        ticket = self.ticket.encode() if self.ticket is not None else None
        head, tail = b"", b""
        if self.ticket is not None:
            vendor, colon, rest = self.ticket.partition(":")
            if colon and ":" not in rest:  # the `vendor:ticket` short form
                head, tail = f"{vendor}:".encode(), f":{rest}".encode()

        def match(fields: dict[bytes, bytes]) -> bool:
            for name, value in exact:
                if fields.get(name) != value:
                    return False
            if rule is not None and rule not in fields.get(fired, b"").split(sep):
                return False
            if account is not None and fields.get(account_field, b"") != account:
                return False
            if ticket is None:
                return True
            raw = fields.get(ticket_field, b"")
            return raw == ticket or bool(head and raw.startswith(head) and raw.endswith(tail))

        return match


def ticket_matches(wanted: str, ticket_key: str) -> bool:
    """`wanted` is this ticket key, or its `vendor:ticket` short form."""
    if wanted == ticket_key:
        return True
    vendor, sep, ticket = wanted.partition(":")
    if not sep or ":" in ticket:
        return False
    return ticket_key.startswith(vendor + ":") and ticket_key.endswith(":" + ticket)


@dataclass(frozen=True)
class Delivery:
    """One row of the deliveries list."""

    #: Stream entry id, also the cursor a page continues from.
    id: str
    vendor: str
    #: The event's tenant (workspace, team or org id), "" when unknown.
    tenant: str
    event_type: str
    event_id: str
    ticket: str
    outcome: str
    #: HTTP status answered at intake (refused and duplicate deliveries), else None.
    status: int | None
    rules: tuple[str, ...]
    reason: str
    received_ms: int
    #: The configured account the delivery came to.
    account: str = DEFAULT

    @property
    def at_ms(self) -> int:
        """When the entry was written (its stream id's time)."""
        return id_ms(self.id)

    @classmethod
    def from_fields(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Delivery:
        """Decode one `trace:log` entry as redis-py returns it."""

        def get(name: str) -> str:
            raw = fields.get(name.encode())
            return raw.decode("utf-8", "replace") if raw is not None else ""

        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        status, received, fired = (
            get(codes.LOG_STATUS),
            get(codes.LOG_RECEIVED),
            get(codes.LOG_FIRED),
        )
        return cls(
            id=eid,
            vendor=get(codes.LOG_VENDOR),
            tenant=get(codes.LOG_TENANT),
            event_type=get(codes.LOG_TYPE),
            event_id=get(codes.LOG_EVENT),
            ticket=get(codes.LOG_TICKET),
            outcome=get(codes.LOG_OUTCOME),
            status=int(status) if status.isdigit() else None,
            rules=tuple(fired.split(codes.RULE_SEP)) if fired else (),
            reason=get(codes.LOG_REASON),
            received_ms=int(received) if received.isdigit() else id_ms(eid),
            account=get(codes.LOG_ACCOUNT) or DEFAULT,
        )


@dataclass(frozen=True)
class DeliveryPage:
    """One page of the deliveries list, newest first."""

    rows: list[Delivery]
    #: Pass as `before` for the next (older) page; None when the scan reached the end.
    next: str | None
    #: Log entries read for this page.
    scanned: int
    #: The oldest entry time the scan reached (epoch ms), None if it read nothing.
    scanned_to_ms: int | None
    #: True when the page stopped at the scan budget before filling up.
    budget_spent: bool


@dataclass(frozen=True)
class Record:
    """One timeline record: its kind code and the rest of its compact array."""

    id: str
    #: The event the record belongs to ("" for a call covering several events).
    event_id: str
    kind: str
    values: list[Any]

    @property
    def at_ms(self) -> int:
        """When the record was written (its stream id's time)."""
        return id_ms(self.id)

    @classmethod
    def from_fields(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> list[Record]:
        """Decode one timeline entry: one record, or an event's records written as one array.

        A record that is not a JSON array with its kind first is kept as kind `?`.
        """
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        event = fields.get(codes.TL_EVENT.encode(), b"").decode("utf-8", "replace")
        raw = fields.get(codes.TL_RECORD.encode(), b"").decode("utf-8", "replace")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not parsed:
            return [cls(eid, event, "?", [raw])]
        if isinstance(parsed[0], str):
            return [cls(eid, event, parsed[0], parsed[1:])]
        return [
            cls(eid, event, r[0], r[1:])
            if isinstance(r, list) and r and isinstance(r[0], str)
            else cls(eid, event, "?", [json.dumps(r)])
            for r in parsed
        ]

    def covers(self, event_id: str) -> bool:
        """True when the record is about `event_id` (its own, or a call that carried it)."""
        if self.event_id == event_id:
            return True
        return (
            self.kind == codes.CALL
            and len(self.values) >= 8
            and isinstance(self.values[7], list)
            and event_id in self.values[7]
        )


#: Rules fingerprint → rule → its condition's leaf descriptions, in leaf order.
RuleLeaves = dict[str, dict[str, list[str]]]


@dataclass(frozen=True)
class EventTrace:
    """Everything traced about one event, found by the helpdesk's event id."""

    event_id: str
    vendor: str
    #: The ticket key, "" when the event never reached a ticket (say, refused unparsed).
    ticket: str
    records: list[Record]
    #: Deliveries-list rows of the event (first handling, re-runs, duplicates, refusals).
    deliveries: list[Delivery]
    #: Leaf descriptions of each rules fingerprint the records name.
    leaves: RuleLeaves = field(default_factory=dict)
    #: The configured account the event was delivered to.
    account: str = DEFAULT


@dataclass(frozen=True)
class Timeline:
    """One ticket's records across events, oldest first."""

    ticket: str
    records: list[Record]
    #: True when older records exist than the ones returned (the limit cut them).
    truncated: bool = False
    leaves: RuleLeaves = field(default_factory=dict)
    #: Deliveries answered at intake without reaching a worker (duplicates, refusals after
    #: parsing), from the newest part of the deliveries list a page scan reaches.
    answered: list[Delivery] = field(default_factory=list)

    @property
    def found(self) -> bool:
        """True when the ticket has any trace stored."""
        return bool(self.records or self.answered)


def id_ms(entry_id: str) -> int:
    """The millisecond part of a stream id."""
    head = entry_id.partition("-")[0]
    return int(head) if head.isdigit() else 0


def as_id(entry_id: bytes | str) -> str:
    """A stream id as text."""
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


class TraceReader:
    """Read the traces under `keys.prefix` from `redis`."""

    def __init__(self, redis: Redis, keys: Keys, *, scan_budget: int = SCAN_BUDGET) -> None:
        self.redis = redis
        self.keys = keys
        self.scan_budget = scan_budget

    async def enabled(self) -> bool:
        """True when any trace is stored (the deliveries list exists)."""
        return bool(await self.redis.exists(self.keys.trace_log))

    async def deliveries(
        self, filter: DeliveryFilter, *, before: str | None = None, limit: int = 50
    ) -> DeliveryPage:
        """One page of the deliveries list matching `filter`, newest first, older than `before`."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        high = "+" if filter.until_ms is None else str(filter.until_ms)
        # `(` makes the bound exclusive: the row the cursor names was already shown.
        if before is not None and (
            filter.until_ms is None or _id_key(before) <= (filter.until_ms, 2**64 - 1)
        ):
            high = "(" + before
        low = "-" if filter.since_ms is None else str(filter.since_ms)
        plain = filter == DeliveryFilter(since_ms=filter.since_ms, until_ms=filter.until_ms)
        match = filter.raw_matcher()
        rows: list[Delivery] = []
        scanned = 0
        last: str | None = None
        more = True
        key = self.keys.trace_log
        while len(rows) < limit and scanned < self.scan_budget:
            # Unfiltered pages read exactly one more than they show, to know whether more exist.
            want = limit - len(rows) + 1 if plain else CHUNK
            want = min(want, self.scan_budget - scanned)
            chunk = await self.redis.xrevrange(key, high, low, count=want)
            more = len(chunk) == want
            for i, (eid, fields) in enumerate(chunk):
                scanned += 1
                if match(fields):
                    rows.append(Delivery.from_fields(eid, fields))
                    if len(rows) == limit:
                        more = more or i < len(chunk) - 1
                        break
            if chunk:
                # The cursor is the last row shown when the page filled, else the last read.
                last = rows[-1].id if len(rows) == limit else as_id(chunk[-1][0])
            if not more or last is None:
                break
            high = "(" + last
        budget_spent = more and len(rows) < limit and scanned >= self.scan_budget
        return DeliveryPage(
            rows=rows,
            next=last if more and last is not None else None,
            scanned=scanned,
            scanned_to_ms=id_ms(last) if last is not None else None,
            budget_spent=budget_spent,
        )

    async def event(
        self, event_id: str, vendor: str | None = None, account: str = DEFAULT
    ) -> EventTrace | None:
        """Everything traced about `event_id` delivered to `account`; None when nothing is stored.

        The dedupe key holds the ticket key, so the ticket's timeline is found in one read;
        raises `AmbiguousEvent` when `vendor` is None and several vendors know the id.
        """
        vendors = [vendor] if vendor else list(registry.names())
        values = await self.redis.mget([self.keys.seen(v, event_id, account) for v in vendors])
        known = [
            (v, raw.decode("utf-8", "replace"))
            for v, raw in zip(vendors, values, strict=True)
            if raw
        ]
        if len(known) > 1:
            raise AmbiguousEvent(event_id, [v for v, _ in known])
        ticket = ""
        if known:
            vendor, ticket = known[0]
            if ticket.count(":") < 2:
                ticket = ""  # a dedupe key written before it held the ticket key
        if not ticket:
            # Refused deliveries and expired dedupe keys: the deliveries list may know it.
            page = await self.deliveries(
                DeliveryFilter(vendor=vendor, event_id=event_id, account=account), limit=20
            )
            found = [d for d in page.rows if d.ticket]
            if not page.rows:
                if not known:
                    return None
                assert vendor is not None
                return EventTrace(event_id, vendor, "", [], [], account=account)
            vendor = vendor or page.rows[0].vendor
            ticket = found[0].ticket if found else ""
            if not ticket:
                return EventTrace(event_id, vendor, "", [], page.rows, account=account)
        assert vendor is not None
        entries = await self.redis.xrange(self.keys.trace_ticket(ticket))
        records = [r for i, f in entries for r in Record.from_fields(i, f) if r.covers(event_id)]
        deliveries = await self._event_deliveries(event_id, vendor, account, records)
        if not records and not deliveries and not known:
            return None
        leaves = await self.leaves(records)
        return EventTrace(event_id, vendor, ticket, records, deliveries, leaves, account)

    async def _event_deliveries(
        self, event_id: str, vendor: str, account: str, records: list[Record]
    ) -> list[Delivery]:
        """The event's rows of the deliveries list, read forward from its first record."""
        flt = DeliveryFilter(vendor=vendor, event_id=event_id, account=account)
        match = flt.raw_matcher()
        if not records:
            page = await self.deliveries(flt, limit=20)
            return list(reversed(page.rows))
        found: list[Delivery] = []
        read = 0
        # Every row of the event (the worker's, duplicates answered at intake) comes after it
        # was received: reading on from the receive time finds them.
        low = str(_first_ms(records))
        key = self.keys.trace_log
        while read < self.scan_budget:
            want = min(CHUNK, self.scan_budget - read)
            chunk = await self.redis.xrange(key, low, "+", count=want)
            found += [Delivery.from_fields(eid, f) for eid, f in chunk if match(f)]
            read += len(chunk)
            if len(chunk) < want:
                break
            low = "(" + as_id(chunk[-1][0])
        return found

    async def ticket(self, key: str, *, limit: int | None = None) -> Timeline:
        """The timeline of ticket `key` (`vendor:tenant:ticket`, or `vendor:ticket`).

        Raises `AmbiguousTicket` when a `vendor:ticket` key matches several tenants' tickets.
        """
        full = await self.resolve_ticket(key)
        tkey = self.keys.trace_ticket(full)
        count = limit if limit is not None else TIMELINE_MAX
        entries = await self.redis.xrevrange(tkey, count=count)
        truncated = len(entries) == count and await self.redis.xlen(tkey) > count
        records = [r for i, f in reversed(entries) for r in Record.from_fields(i, f)]
        if limit is not None and len(records) > limit:
            # An event's records share one entry: the limit counts records, the newest kept.
            records, truncated = records[-limit:], True
        answered: list[Delivery] = []
        if records:
            # Only intake's rows: the worker's own are the `rx` records already shown.
            page = await self.deliveries(
                DeliveryFilter(ticket=full, since_ms=_first_ms(records)), limit=200
            )
            answered = [
                d for d in reversed(page.rows) if d.outcome in (codes.DUPLICATE, codes.REFUSED)
            ]
        return Timeline(full, records, truncated, await self.leaves(records), answered)

    async def resolve_ticket(self, key: str) -> str:
        """The full ticket key `key` names; `key` itself when no stored timeline matches."""
        vendor, sep, rest = key.partition(":")
        if not sep or ":" in rest or await self.redis.exists(self.keys.trace_ticket(key)):
            return key
        pattern = self.keys.trace_ticket(f"{_glob(vendor)}:*:{_glob(rest)}")
        prefix = len(self.keys.trace_ticket(""))
        found: set[str] = set()
        async for raw in self.redis.scan_iter(match=pattern, count=1000):
            name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            candidate = name[prefix:]
            if ticket_matches(key, candidate) and candidate.count(":") == 2:
                found.add(candidate)
        if len(found) > 1:
            raise AmbiguousTicket(key, sorted(found))
        return found.pop() if found else key

    async def leaves(self, records: list[Record]) -> RuleLeaves:
        """Leaf descriptions of every rules fingerprint the `rx` records name."""
        prints = sorted(
            {
                r.values[7]
                for r in records
                if r.kind == codes.RECEIVED and len(r.values) >= 8 and isinstance(r.values[7], str)
            }
        )
        if not prints:
            return {}
        raw = await self.redis.hmget(self.keys.trace_rules, prints)  # type: ignore[misc]
        out: RuleLeaves = {}
        for fp, value in zip(prints, raw, strict=True):
            if value is None:
                continue
            try:
                decoded = json.loads(value)
            except ValueError:
                continue
            if isinstance(decoded, dict):
                out[fp] = {
                    str(rule): [str(x) for x in descs]
                    for rule, descs in decoded.items()
                    if isinstance(descs, list)
                }
        return out


def _first_ms(records: list[Record]) -> int:
    """When the earliest of `records`' events was received (or the first written)."""
    received = [
        int(r.values[4])
        for r in records
        if r.kind == codes.RECEIVED and len(r.values) > 4 and str(r.values[4]).isdigit()
    ]
    return min([records[0].at_ms, *received])


def _glob(text: str) -> str:
    """`text` with SCAN MATCH's special characters escaped."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
