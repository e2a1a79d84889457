"""How far behind the deployment is: queue, outbox, dead letters and paused budgets, in two reads.

`read_backlog` costs two pipelined round trips whatever the backlog (one more when named account
lanes exist, and one more when a stream's lag cannot be computed by the server), so `/metrics`,
`/readyz` and the console can call it at will. The queue counts every lane's streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ticketwire.keys import GROUP, Keys
from ticketwire.streams import lane_names

#: Most undelivered entries counted one by one where the server cannot say a stream's lag.
LAG_COUNT_CAP = 1000


@dataclass(frozen=True)
class Backlog:
    """A snapshot of what is waiting, read from Redis at `at_ms` (the server's clock)."""

    at_ms: int
    #: Entries not yet handled (delivered but unacknowledged, plus never delivered), all partitions
    #: of all lanes.
    queue_depth: int
    #: Of those, delivered to a worker and not yet acknowledged.
    queue_pending: int
    #: Age of the oldest entry not yet handled; 0 when the queue is empty.
    oldest_unhandled_s: float
    #: Tickets with write-backs queued, and how many of those may be sent now.
    outbox_tickets: int
    outbox_due: int
    #: How long the longest-waiting due write-back has been due; 0 when none is.
    oldest_due_s: float
    #: Letters in the dead-letter stream.
    dead_letters: int
    #: Budget scope (vendor:account) → seconds its 429 pause has left.
    paused_budgets: dict[str, float]
    #: Unhandled entries per partition, over all lanes.
    partition_depths: tuple[int, ...]
    #: True when some stream's depth is a lower bound (its lag was unknown and past the cap).
    approximate: bool = False


@dataclass
class _Stream:
    depth: int = 0
    pending: int = 0
    #: The oldest unhandled entry's id, when known without another read.
    oldest: str | None = None
    #: Read entries after this id: for the first undelivered one, and to count them (lag unknown).
    after: str | None = None
    count_after: bool = False
    approximate: bool = False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def _stream_state(groups: Any, pending: Any, length: Any) -> _Stream:
    """What one partition holds, from XINFO GROUPS, XPENDING (summary) and XLEN."""
    out = _Stream()
    if isinstance(length, Exception) or not length:
        return out
    group = None
    if not isinstance(groups, Exception):
        for g in groups:
            if _text(g.get("name", g.get(b"name", b""))) == GROUP:
                group = g
                break
    if group is None:
        # No worker has started on this stream yet: everything in it is waiting.
        return _Stream(depth=int(length), after="0-0")
    out.pending = int(group.get("pending") or 0)
    if out.pending and not isinstance(pending, Exception) and pending.get("min"):
        out.oldest = _text(pending["min"])
    last = _text(group.get("last-delivered-id") or "0-0")
    lag = group.get("lag")
    if lag is None:
        # The server cannot tell after deletions inside the undelivered range: count them.
        out.after, out.count_after = last, True
    else:
        out.depth = out.pending + int(lag)
        if int(lag) and out.oldest is None:
            out.after = last
    return out


def _read_streams(pipe: Any, streams: list[str]) -> None:
    for s in streams:
        pipe.xinfo_groups(s)
        pipe.xpending(s, GROUP)
        pipe.xlen(s)


def _states(replies: list[Any], n: int) -> list[_Stream]:
    return [_stream_state(*replies[3 * i : 3 * i + 3]) for i in range(n)]


async def read_backlog(redis: Redis, keys: Keys, partitions: int) -> Backlog:
    """Read the backlog of `partitions` partitions in every lane, the outbox, dead letters, budgets."""
    streams = [keys.stream(p) for p in range(partitions)]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.smembers(keys.lanes)
        _read_streams(pipe, streams)
        pipe.zcard(keys.wb_due)
        pipe.zrange(keys.wb_due, 0, 0, withscores=True)
        pipe.xlen(keys.dlq)
        pipe.zrange(keys.budgets_paused, 0, -1, withscores=True)
        # Missing streams and groups answer with errors; those mean "nothing there".
        replies = await pipe.execute(raise_on_error=False)
    for reply in (*replies[:2], *replies[-4:]):
        if isinstance(reply, Exception):
            raise reply
    secs, micros = replies[0]
    now_ms = int(secs) * 1000 + int(micros) // 1000
    states = _states(replies[2:-4], partitions)
    wb_count, wb_first, dlq_len, paused = replies[-4:]
    named = lane_names(replies[1])[1:]
    if named:
        lanes = [keys.stream(p, lane) for lane in named for p in range(partitions)]
        async with redis.pipeline(transaction=False) as pipe:
            _read_streams(pipe, lanes)
            states += _states(await pipe.execute(raise_on_error=False), len(lanes))
        streams += lanes

    follow = [(i, st) for i, st in enumerate(states) if st.after is not None]
    async with redis.pipeline(transaction=False) as pipe:
        for i, st in follow:
            count = LAG_COUNT_CAP + 1 if st.count_after else 1
            pipe.xrange(streams[i], min=f"({st.after}", count=count)
        pipe.zcount(keys.wb_due, "-inf", now_ms)
        more = await pipe.execute()
    outbox_due = int(more[-1])
    for (_, st), entries in zip(follow, more, strict=False):
        if entries:
            st.oldest = st.oldest or _text(entries[0][0])
        if st.count_after:
            undelivered = min(len(entries), LAG_COUNT_CAP)
            st.approximate = len(entries) > LAG_COUNT_CAP
            st.depth = st.pending + undelivered

    oldest_ids = [_ms(st.oldest) for st in states if st.oldest is not None and st.depth]
    oldest_due_s = 0.0
    if wb_first:
        oldest_due_s = max(0.0, (now_ms - float(wb_first[0][1])) / 1000)
    return Backlog(
        at_ms=now_ms,
        queue_depth=sum(st.depth for st in states),
        queue_pending=sum(st.pending for st in states),
        oldest_unhandled_s=max(0.0, (now_ms - min(oldest_ids)) / 1000) if oldest_ids else 0.0,
        outbox_tickets=int(wb_count),
        outbox_due=outbox_due,
        oldest_due_s=oldest_due_s,
        dead_letters=int(dlq_len),
        paused_budgets={
            _text(scope): (float(until) - now_ms) / 1000
            for scope, until in paused
            if float(until) > now_ms
        },
        partition_depths=tuple(
            sum(st.depth for st in states[p::partitions]) for p in range(partitions)
        ),
        approximate=any(st.approximate for st in states),
    )


def over(backlog: Backlog, max_lag_s: float) -> bool:
    """True when the oldest unhandled event has waited longer than `max_lag_s`."""
    return backlog.oldest_unhandled_s > max_lag_s
