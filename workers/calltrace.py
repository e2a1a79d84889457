"""Trace records of write-backs: each call sent (`ca`), its retries (`rt`), its dead letters."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict
from urllib.parse import urlsplit

from ticketwire.calls import ApiCall
from ticketwire.errors import HelpdeskError, HelpdeskHTTPError
from ticketwire.trace import codes as tc
from ticketwire.trace.writer import TraceWriter
from ticketwire.vendors import HelpdeskClient
from ticketwire.writeback import Pending, _joined
from workers.outboxpolicy import OutboxPolicy
from workers.outboxqueue import now_ms
from workers.retrypolicy import next_try

#: Merged calls remembered with the events and planned calls they carry, for their traces.
MERGED_MEMORY = 10_000

#: The tickets a call covers, each with its own queued call the sent call carries.
Heads = Sequence[tuple[str, Pending]]


def api_root(client: HelpdeskClient | None) -> str:
    """The path a client's call paths are relative to (`/api/v1`, `/v1`, …); '' if none."""
    # Planned calls keep paths relative to the API root; the helpdesk's logs show full ones.
    base = getattr(client, "base_url", None)
    return urlsplit(base).path.rstrip("/") if isinstance(base, str) else ""


class Answer(TypedDict, total=False):
    """What is known of a sent call's answer, for its trace record (see `CallTrace.sent`)."""

    elapsed_ms: float | None
    request_id: str | None
    retry_at: int | None


class CallTrace:
    """Write the trace records of the calls a flusher sends, retries and gives up on."""

    def __init__(
        self,
        writer: TraceWriter,
        clients: Mapping[str, HelpdeskClient],
        policy: OutboxPolicy,
    ) -> None:
        self._writer = writer
        self._clients = clients
        self._policy = policy
        #: Merged call's event id → (event ids, planned call ids) it carries.
        self._merged: dict[str, tuple[list[str], list[str]]] = {}

    def remember_merges(self, items: Sequence[Pending]) -> None:
        """Note what each merge `coalesce` can make of these items carries (for `ca` records)."""
        # Merged ids are digests of the events merged; every run of queued calls a merge could
        # cover is noted, so the call sent can be traced back to the events and calls it carries.
        head = items[:20]
        carried = [self._carried(item.call) for item in head]
        for i, first in enumerate(head):
            acc = first.call.event_id
            events, ids = list(carried[i][0]), list(carried[i][1])
            for j in range(i + 1, len(head)):
                acc = _joined(acc, head[j].call.event_id)
                events += [e for e in carried[j][0] if e not in events]
                ids += carried[j][1]
                if acc.startswith("merged:") and acc not in self._merged:
                    self._merged[acc] = (list(events), list(ids))
        while len(self._merged) > MERGED_MEMORY:
            del self._merged[next(iter(self._merged))]

    def _carried(self, call: ApiCall) -> tuple[list[str], list[str]]:
        """The events and planned call ids one queued call carries."""
        found = self._merged.get(call.event_id)
        if found is not None:
            return found
        return [call.event_id], [call.fingerprint()]

    def sent(
        self,
        call: ApiCall,
        heads: Heads,
        status: int | str,
        started: int,
        *,
        elapsed_ms: float | None = None,
        request_id: str | None = None,
        retry_at: int | None = None,
    ) -> None:
        """Trace a call that went out (`ca`) to each covered ticket, and its retries (`rt`)."""
        writer = self._writer
        latency = round(elapsed_ms if elapsed_ms is not None else now_ms() - started)
        url = api_root(self._clients.get(call.account_key)) + call.path
        batched = len(heads)
        # Each ticket's record names only its own planned calls and events, and how many tickets
        # the call covered: a bulk call's records stay linear in its size, not quadratic.
        for key, head in heads:
            events, ids = self._carried(head.call)
            event_id = events[0] if len(events) == 1 else ""
            record = (
                tc.CALL,
                list(ids),
                call.method,
                url,
                status,
                latency,
                request_id or "",
                batched,
                list(events),
            )
            writer.record(key, event_id, record)
            if retry_at is not None:
                writer.record(
                    key,
                    event_id,
                    (tc.RETRY, head.call.fingerprint(), status, retry_at, len(head.attempts) + 1),
                )

    def retries(
        self, call: ApiCall, heads: Heads, exc: HelpdeskError, started: int, now: int
    ) -> None:
        """Trace a failed call and, per ticket, its retry (or nothing: its dead letter follows)."""
        status: int | str = exc.status if isinstance(exc, HelpdeskHTTPError) else str(exc)
        request_id = exc.request_id if isinstance(exc, HelpdeskHTTPError) else None
        self.sent(call, heads, status, started, request_id=request_id)
        for key, head in heads:
            tries = len(head.attempts) + 1
            at = next_try(self._policy, tries, now)
            if at is None:
                continue
            own = self._carried(head.call)[0]
            self._writer.record(
                key,
                own[0] if len(own) == 1 else "",
                (tc.RETRY, head.call.fingerprint(), status, at, tries),
            )

    def letter_to(self, key: str, call: ApiCall) -> Callable[[Sequence[Any]], None]:
        """Where a dead letter of this ticket's call is traced."""
        writer = self._writer
        events = self._carried(call)[0]
        event_id = events[0] if len(events) == 1 else ""
        return lambda record: writer.record(key, event_id, record)
