"""The worker-side consumer: owned partition streams in, per-ticket ordered handler calls out.

One process reads every partition it owns, in every account lane (`ticketwire.streams`), with a
single blocking XREADGROUP on a connection of its own, runs deliveries through per-ticket lanes
(`workers.lanes`) and acknowledges them in batches.
Ownership comes from `workers.ownership`. A worker that takes a partition first takes over the
entries its previous owner left pending (XAUTOCLAIM) and runs them before anything new, so a crash
costs a re-run, never a loss, and never reorders a ticket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import ResponseError

from ticketwire.errors import ConfigError
from ticketwire.keys import GROUP, Keys
from ticketwire.stoptask import stop_task
from ticketwire.stored import StoredDelivery
from workers.lanes import Lanes
from workers.outage import TRANSIENT, Outage, backoff
from workers.ownership import Ownership, Part, PartState, ranges

Handler = Callable[[StoredDelivery], Awaitable[None]]

#: Upper bound on every Redis call outside the blocking read.
CALL_TIMEOUT_S = 5.0
#: Longest a stop takes, after its drain, to acknowledge and give its leases back.
HAND_BACK_S = 3.0
#: Field of `Keys.meta` that records the deployment's partition count.
META_PARTITIONS = "partitions"

_log = logging.getLogger(__name__)


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    """Split a stream entry id `ms-seq` into integers, for ordering."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def trim_cutoff(
    now_ms: int,
    retention_ms: int,
    oldest_pending: bytes | str | None,
    last_delivered: bytes | str,
) -> str | None:
    """MINID for XTRIM: past retention, but never at or beyond an entry pending or not yet read.

    Entries older than the cutoff have been handled and acknowledged, so removing them only ends
    their availability for replay. None means there is nothing that may be trimmed.
    """
    cut = (max(0, now_ms - retention_ms), 0)
    if oldest_pending is not None:
        cut = min(cut, parse_id(oldest_pending))
    ms, seq = parse_id(last_delivered)
    cut = min(cut, (ms, seq + 1))
    if cut <= (0, 1):
        return None
    return f"{cut[0]}-{cut[1]}"


class Consumer:
    """Hands every stored delivery of the owned partitions to `handler`, at least once, in order.

    Deliveries of one ticket run one at a time in stream order; different tickets run concurrently
    up to `concurrency`. An entry is acknowledged once its handler has returned or raised (a raise
    is logged and counted: the handler owns dead-lettering). `batch` bounds the entries read per
    stream per round trip; each stream (a partition in one account lane) gets the same share of a
    read, so a lane with a long backlog gets no more per round than a lane with one entry. At most
    2 x `concurrency` entries are held in memory, however hot one ticket runs, plus one per stream
    read when room is short: with many lanes (owned partitions x lanes streams) that overshoot can
    exceed the bound itself. `lanes` are the named lanes this worker's configuration lists; lanes
    found in Redis are read too.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        handler: Handler,
        *,
        worker_id: str,
        partitions: int = 16,
        concurrency: int = 200,
        batch: int = 100,
        lease_ttl: float = 15.0,
        block_ms: int = 1000,
        retention_ms: int = 72 * 3600 * 1000,
        trim_interval: float = 5.0,
        lanes: Iterable[str] = (),
        log: logging.Logger | None = None,
    ) -> None:
        for name, value in (
            ("partitions", partitions),
            ("concurrency", concurrency),
            ("batch", batch),
            ("block_ms", block_ms),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if lease_ttl <= 0 or trim_interval <= 0 or retention_ms < 0:
            raise ValueError("lease_ttl and trim_interval must be positive, retention_ms >= 0")
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the consumer needs a Redis client with decode_responses=False")
        if not worker_id:
            raise ValueError("worker_id must not be empty")
        self._redis = redis
        self._keys = keys
        self._handler = handler
        self._id = worker_id
        self._id_bytes = worker_id.encode()
        self._partitions = partitions
        self._batch = batch
        self._cap = 2 * concurrency
        # Read again once this much room is free, not at every single slot: reads stay large
        # while enough work is buffered to keep every handler slot busy meanwhile.
        self._refill = max(1, min(batch, concurrency // 2))
        self._ttl = lease_ttl
        self._ttl_ms = max(1, int(lease_ttl * 1000))
        self._block_ms = block_ms
        self._retention_ms = retention_ms
        self._trim_interval = trim_interval
        self._tick_s = min(lease_ttl / 3, trim_interval)
        self._log = log or _log
        self._lanes: Lanes[StoredDelivery] = Lanes(self._handle, concurrency=concurrency)
        #: Stream key → its partition, for the streams read so far.
        self._index: dict[bytes, int] = {}

        #: (stream, entry id) buffered or running, per partition, in read order. Per stream:
        #: the same entry id can occur in several lanes.
        self._known: dict[int, dict[tuple[str, str], None]] = {p: {} for p in range(partitions)}
        self._buffered = 0
        #: Entry ids to acknowledge, per stream.
        self._acks: dict[str, list[str]] = {}
        self._flushing: dict[str, list[str]] = {}
        self._ack_lock = asyncio.Lock()
        #: Partitions the reader has a command in flight for; never released under it.
        self._inflight: frozenset[int] = frozenset()
        self._reader: Redis | None = None
        self._reader_id: int | None = None

        self._capacity = asyncio.Event()
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._ack_ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopped = asyncio.Event()
        self._own = Ownership(
            redis,
            keys,
            worker_id,
            partitions=partitions,
            ttl=lease_ttl,
            call_timeout_s=CALL_TIMEOUT_S,
            log=self._log,
            lost=self._lost,
            drained=self._drained,
            before_release=self._flush_acks,
            # The group normally exists since start; this covers a stream deleted since.
            acquired=self._create_groups,
            changed=self._changed.set,
            lanes=lanes,
        )
        #: Stop reading: set when a stop begins. `_stopping`: end every loop, after the drain.
        self._leaving = False
        self._stopping = False
        #: Partitions given back while stopping.
        self.released: list[int] = []
        #: False when a stop had to cancel handlers that outlived its drain.
        self.drained = True
        self._tasks: list[asyncio.Task[None]] = []
        self._counts = dict.fromkeys(
            (
                "read",
                "claimed",
                "reclaimed",
                "handled",
                "failed",
                "acked",
                "dropped",
                "lost",
                "trimmed",
                "cancelled",
            ),
            0,
        )
        self._errors = 0
        self._outage = Outage("consumer", self._log)

    # ----------------------------------------------------------------- public surface

    @property
    def round_s(self) -> float:
        """Seconds between ownership rounds: how soon a partition let go of is taken."""
        return self._tick_s

    @property
    def worker_id(self) -> str:
        """This worker's consumer name and lease value."""
        return self._id

    @property
    def owned(self) -> frozenset[int]:
        """Partitions whose lease this worker holds right now."""
        return frozenset(self._own.parts)

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start, plus the current partitions, buffer and in-flight handlers."""
        busy = self._lanes.busy
        return {
            **self._counts,
            "partitions_owned": len(self._own.parts),
            "buffered": self._buffered - busy,
            "in_flight": busy,
            "unacked": sum(map(len, self._acks.values())) + sum(map(len, self._flushing.values())),
            "workers_live": self._own.live,
            "redis_errors": self._errors,
        }

    async def start(self) -> None:
        """Check the partition count, create the consumer groups, take partitions, start reading.

        Raises ConfigError when Redis records a different partition count than ours.
        """
        if self._tasks:
            raise RuntimeError("consumer already started")
        await self._check_partition_count()
        named = self._own.lanes[1:]
        await self._create_groups(
            [
                self._keys.stream(p, lane)
                for lane in self._own.lanes
                for p in range(self._partitions)
            ],
            lanes=named,
        )
        self._reader = self._dedicated_client()
        try:
            await self._tick()
        except TRANSIENT as exc:
            self._errors += 1
            self._log.warning("first ownership round failed (%s); retrying in the background", exc)
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"consumer-read:{self._id}"),
            asyncio.create_task(self._control_loop(), name=f"consumer-control:{self._id}"),
            asyncio.create_task(self._ack_loop(), name=f"consumer-ack:{self._id}"),
        ]
        self._log.info(
            "consumer %s started: %d partitions, concurrency %d, lease %.1fs",
            self._id,
            self._partitions,
            self._cap // 2,
            self._ttl,
        )

    async def stop(self, drain_timeout: float = 10.0, *, hand_back_s: float = HAND_BACK_S) -> None:
        """Stop reading, finish running handlers, acknowledge, give the leases back, deregister.

        Reading stops at once and what is buffered but not started stays pending for the next
        owner. While the running handlers finish, their leases are renewed and each partition is
        given back as soon as nothing of it runs, so other workers take it over at their next
        tick. Handlers still running after `drain_timeout` are cancelled: their entries stay
        pending and are delivered again. Acknowledging and giving back take at most `hand_back_s`
        more, however Redis answers.
        """
        if self._leaving or not self._tasks:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        self._leaving = True
        given = len(self._own.given_back)
        for event in (self._stopped, self._capacity, self._changed):
            event.set()
        reader, control, acker = self._tasks
        # At most a blocked read's length: then the read in flight is cut short, and what it
        # carried stays pending under this consumer for the next owner.
        wait_s = min(self._block_ms / 1000, drain_timeout)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._unblock_reader()
        await asyncio.wait({reader}, timeout=wait_s)
        await stop_task(reader, "the consumer's reader")

        # Buffered entries stay pending: whoever takes the partition next runs them, in order.
        for delivery in self._lanes.purge(lambda _d: True):
            self._forget(delivery)
            self._counts["dropped"] += 1
        # An ownership round now: partitions with nothing running are given back at once.
        self._wake.set()
        self.drained = True
        try:
            async with asyncio.timeout_at(deadline):
                await self._lanes.wait()
        except TimeoutError:
            self.drained = False
            self._log.warning(
                "stop: %d handlers still running after %.1fs; cancelling them, "
                "their entries stay pending and will be delivered again",
                self._lanes.busy,
                drain_timeout,
            )
            self._counts["cancelled"] += self._lanes.busy
            await self._lanes.cancel()
        end = loop.time() + hand_back_s
        self._stopping = True
        self._ack_ready.set()
        self._wake.set()
        # A round or an acknowledgement under way may end; one stuck on Redis is cut short (its
        # acknowledgements are kept and sent below).
        _, late = await asyncio.wait({control, acker}, timeout=min(1.0, hand_back_s))
        for task in late:
            await stop_task(task, "the consumer's control loop")
        try:
            async with asyncio.timeout_at(end):
                await self._flush_acks()
        except TRANSIENT as exc:
            self._log.error(
                "stop: could not acknowledge %s (%s); they will run again",
                self.stats["unacked"],
                exc,
            )
        await self._own.leave(within=max(0.1, end - loop.time()))
        self.released = sorted(self._own.given_back[given:])
        if self._reader is not None:
            with contextlib.suppress(*TRANSIENT):
                async with asyncio.timeout(max(0.1, end - loop.time())):
                    await self._reader.aclose()
        self._log.info(
            "consumer %s stopped: released partitions %s; %s",
            self._id,
            ranges(self.released) or "none",
            _show(self._counts),
        )

    async def wait_idle(self) -> None:
        """Wait until nothing is being claimed, buffered, run or waiting for acknowledgement."""
        while not self._is_idle():
            self._idle.clear()
            await self._idle.wait()

    # ----------------------------------------------------------------- set-up

    async def _check_partition_count(self) -> None:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hsetnx(self._keys.meta, META_PARTITIONS, str(self._partitions))
            pipe.hget(self._keys.meta, META_PARTITIONS)
            _, stored = await pipe.execute()
        if stored is not None and int(stored) != self._partitions:
            raise ConfigError(
                "TICKETWIRE_PARTITIONS",
                f"{int(stored)}, the partition count this Redis was set up with (under prefix "
                f"{self._keys.prefix!r}); every event of a ticket must stay in one partition, so "
                "the count cannot change while events are stored: set it back",
                str(self._partitions),
            )

    async def _create_groups(self, streams: Iterable[str], lanes: Sequence[str] = ()) -> None:
        # From id 0: deliveries stored before any worker ran are handled too. `lanes` are listed
        # for the other workers, which may not be configured with them.
        async with asyncio.timeout(CALL_TIMEOUT_S):
            pipe = self._redis.pipeline(transaction=False)
            for stream in streams:
                pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
            if lanes:
                pipe.sadd(self._keys.lanes, *lanes)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply

    def _dedicated_client(self) -> Redis:
        # The blocking read needs a connection nobody else waits on, and a socket timeout longer
        # than the block; everything else about the connection is copied from the caller's.
        pool = self._redis.connection_pool
        kwargs = dict(pool.connection_kwargs)
        kwargs["socket_timeout"] = self._block_ms / 1000 + CALL_TIMEOUT_S
        kwargs["decode_responses"] = False
        kwargs.pop("protocol", None)  # replies parsed below are RESP2-shaped
        own = ConnectionPool(connection_class=pool.connection_class, max_connections=1, **kwargs)
        return Redis.from_pool(own)

    # ----------------------------------------------------------------- reading

    async def _read_loop(self) -> None:
        failures = 0
        while not self._leaving:
            try:
                await self._read_step()
                failures = 0
                self._outage.recovered()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                failures += 1
                self._reader_id = None
                delay = self._failure("reading partitions", exc, backoff(failures))
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    with contextlib.suppress(*TRANSIENT):
                        await self._create_groups(
                            s for part in self._own.parts.values() for s in part.streams.values()
                        )
                await self._pause(delay)

    async def _read_step(self) -> None:
        free = self._cap - self._buffered
        if free < self._refill:
            self._capacity.clear()
            await self._capacity.wait()
            return
        # Never claim or read on a lease that may have passed to someone else.
        self._own.expire(time.monotonic())
        parts = list(self._own.parts.values())
        claiming = next((p for p in parts if p.state is PartState.CLAIMING), None)
        if claiming is not None:
            await self._claim_page(claiming, min(free, self._batch))
            return
        reading = [p for p in parts if p.state is PartState.READING]
        if not reading:
            self._changed.clear()
            await self._changed.wait()
            return
        streams = {s: part.number for part in reading for s in part.streams.values()}
        # COUNT applies per stream, which is what keeps lanes fair. Splitting the free room keeps
        # the total within it; with less room than streams it is one each (a stream's worth of
        # overshoot at most), since reading a subset could block on empty streams while another
        # has a backlog.
        count = max(1, min(self._batch, free // len(streams)))
        reader = self._reader
        assert reader is not None
        if self._reader_id is None:
            self._reader_id = int(await reader.client_id())
        self._inflight = frozenset(p.number for p in reading)
        for s, p in streams.items():
            self._index.setdefault(s.encode(), p)
        try:
            reply = await reader.xreadgroup(
                GROUP, self._id, dict.fromkeys(streams, ">"), count=count, block=self._block_ms
            )
        except TRANSIENT:
            # The reply may have carried entries that are now ours but unseen: read the pending
            # list again before anything new, which keeps each ticket in order.
            for part in reading:
                if self._own.holds(part) and part.state is PartState.READING:
                    part.state, part.reread = PartState.CLAIMING, True
                    part.claim_all()
            raise
        finally:
            self._inflight = frozenset()
            if any(p.state is PartState.RELEASING for p in reading):
                self._wake.set()
        if reply:
            self._dispatch(reply)

    def _dispatch(self, reply: list[Any]) -> None:
        now = time.monotonic()
        debug = self._log.isEnabledFor(logging.DEBUG)
        for stream, entries in reply:
            p = self._index[stream]
            part = self._own.parts.get(p)
            if part is None or now >= part.valid_until:
                self._stranded(p, len(entries))
                continue
            self._counts["read"] += len(entries)
            name = stream.decode()
            for entry_id, fields in entries:
                self._accept(p, name, entry_id, fields, 1, debug)

    def _stranded(self, p: int, n: int) -> None:
        # Read after the lease may have run out: whoever holds it now finds them pending.
        self._log.warning(
            "partition %d: %d entries arrived after its lease ran out; left pending for its owner",
            p,
            n,
        )
        part = self._own.parts.get(p)
        if part is not None:
            self._own.drop(part, "its lease ran out during a read")

    async def _claim_page(self, part: Part, count: int) -> None:
        reader = self._reader
        assert reader is not None and part.cursors
        stream, cursor = next(iter(part.cursors.items()))
        self._inflight = frozenset((part.number,))
        try:
            pipe = reader.pipeline(transaction=False)
            # Delivery counts as they were, then the same page of the pending list moved to us.
            pipe.xpending_range(stream, GROUP, cursor, "+", count)
            pipe.xautoclaim(stream, GROUP, self._id, 0, cursor, count=count)
            pending, claim = await pipe.execute()
        finally:
            self._inflight = frozenset()
        if not self._own.holds(part) or time.monotonic() >= part.valid_until:
            return
        delivered = {row["message_id"]: int(row["times_delivered"]) for row in pending}
        # Entries already buffered, running or awaiting acknowledgement here are not taken twice.
        here = {eid for s, eid in self._known[part.number] if s == stream}
        here.update(self._acks.get(stream, ()), self._flushing.get(stream, ()))
        debug = self._log.isEnabledFor(logging.DEBUG)
        taken = 0
        for entry_id, fields in claim[1]:
            if entry_id is None or fields is None or entry_id.decode() in here:
                continue  # None: trimmed away while pending (older servers report it this way)
            deliveries = delivered.get(entry_id, 0) + 1
            self._accept(part.number, stream, entry_id, fields, deliveries, debug)
            taken += 1
        part.claimed += taken
        self._counts["claimed"] += taken
        cursor = claim[0].decode()
        if cursor != "0-0":
            part.cursors[stream] = cursor
            return
        part.cursors.pop(stream, None)
        if part.cursors:
            return
        if part.state is PartState.CLAIMING:
            part.state = PartState.READING
        if part.reread:
            if part.claimed:
                self._log.info(
                    "partition %d: recovered %d entries from a failed read",
                    part.number,
                    part.claimed,
                )
        elif part.claimed:
            self._log.info(
                "partition %d: took over %d pending entries from its previous owner",
                part.number,
                part.claimed,
            )
        part.reread, part.claimed = False, 0
        self._idle.set()

    def _accept(
        self,
        p: int,
        stream: str,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        deliveries: int,
        debug: bool,
    ) -> None:
        try:
            delivery = StoredDelivery.from_fields(entry_id, fields, partition=p, stream=stream)
        except (KeyError, ValueError, TypeError) as exc:
            self._counts["failed"] += 1
            self._log.error(
                "%s entry %s: cannot decode the stored delivery (%r); acknowledged and "
                "skipped, the raw entry stays in the stream until trimmed",
                stream,
                entry_id.decode(),
                exc,
            )
            self._ack(stream, entry_id.decode())
            return
        if deliveries != 1:
            delivery = dataclasses.replace(delivery, deliveries=deliveries)
        self._known[p][stream, delivery.entry_id] = None
        self._buffered += 1
        if debug:
            self._log.debug(
                "partition %d entry %s: event=%s ticket=%s delivery %d",
                p,
                delivery.entry_id,
                delivery.event_id,
                delivery.ticket_key,
                deliveries,
            )
        self._lanes.push(delivery.ticket_key, delivery)

    # ----------------------------------------------------------------- handling

    async def _handle(self, delivery: StoredDelivery) -> None:
        try:
            await self._handler(delivery)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                self._forget(delivery)  # stays pending: delivered again to the next owner
                raise
            self._failed(delivery, "the handler was cancelled from inside")
        except Exception:  # noqa: BLE001 - one failing delivery must never stop the others
            self._failed(delivery, "the handler raised")
        else:
            self._counts["handled"] += 1
        self._forget(delivery)
        self._ack(delivery.stream, delivery.entry_id)

    def _failed(self, delivery: StoredDelivery, what: str) -> None:
        self._counts["failed"] += 1
        self._log.error(
            "%s on partition %d entry %s event=%s ticket=%s (delivery %d); acknowledged",
            what,
            delivery.partition,
            delivery.entry_id,
            delivery.event_id,
            delivery.ticket_key,
            delivery.deliveries,
            exc_info=True,
        )

    def _forget(self, delivery: StoredDelivery) -> None:
        known = self._known[delivery.partition]
        known.pop((delivery.stream, delivery.entry_id), None)
        self._buffered -= 1
        if self._cap - self._buffered >= self._refill:
            self._capacity.set()
        if not known:
            part = self._own.parts.get(delivery.partition)
            if part is not None and part.state is PartState.RELEASING:
                self._wake.set()
        if not self._buffered:
            self._idle.set()

    def _ack(self, stream: str, entry_id: str) -> None:
        ids = self._acks.get(stream)
        if ids is None:
            self._acks[stream] = [entry_id]
        else:
            ids.append(entry_id)
        self._ack_ready.set()

    async def _ack_loop(self) -> None:
        failures = 0
        # Ends when stop() sets `_stopping` and wakes it, not by cancellation: a cancel that
        # coincides with an expiring asyncio.timeout() is swallowed on Python 3.11.
        while not self._stopping:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            if self._stopping:
                return
            try:
                await self._flush_acks()
                failures = 0
                self._outage.recovered()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                failures += 1
                delay = self._failure("acknowledging", exc, backoff(failures))
                self._ack_ready.set()
                await asyncio.sleep(delay)

    async def _flush_acks(self) -> None:
        # One pipeline for everything finished since the last flush. The lock lets a release
        # wait for a flush in progress, so a lease is never handed over before its acks land.
        async with self._ack_lock:
            if not self._acks:
                return
            batch, self._acks = self._acks, {}
            self._flushing = batch
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    pipe = self._redis.pipeline(transaction=False)
                    for stream, ids in batch.items():
                        pipe.xack(stream, GROUP, *ids)
                    await pipe.execute()
            except BaseException:
                for stream, ids in batch.items():
                    self._acks[stream] = ids + self._acks.get(stream, [])
                raise
            finally:
                self._flushing = {}
            self._counts["acked"] += sum(map(len, batch.values()))
        if self._is_idle():
            self._idle.set()

    def _is_idle(self) -> bool:
        return (
            not self._buffered
            and not self._acks
            and not self._flushing
            and not any(p.cursors for p in self._own.parts.values())
        )

    # ----------------------------------------------------------------- ownership

    async def _control_loop(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            delay = self._tick_s
            try:
                await self._tick()
                failures = 0
                self._outage.recovered()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                failures += 1
                # Never slower than a tick: leases must be renewed as soon as Redis is back.
                delay = self._failure("ownership round", exc, min(delay, backoff(failures)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _tick(self) -> None:
        if self._leaving:
            # Stopping: renew what still runs, give back what is done, take nothing.
            await self._own.tick(acquire=False, leaving=True)
            return
        if await self._own.tick(acquire=True):
            await self._unblock_reader()
        await self._maintain_due()

    def _lost(self, p: int, why: str) -> None:
        # The lease is no longer surely ours: running handlers finish, nothing buffered starts,
        # and what was read stays pending for whoever holds the partition next.
        self._counts["lost"] += 1
        dropped = self._lanes.purge(lambda d: d.partition == p)
        for delivery in dropped:
            self._forget(delivery)
        self._counts["dropped"] += len(dropped)
        self._log.warning(
            "partition %d lost: %s; %d buffered entries left pending for its new owner",
            p,
            why,
            len(dropped),
        )

    def _drained(self, p: int) -> bool:
        return not self._known[p] and p not in self._inflight

    async def _unblock_reader(self) -> None:
        # Wake the blocked read so it picks up the new set of partitions now, not after block_ms.
        if not self._inflight or self._reader_id is None:
            return
        with contextlib.suppress(*TRANSIENT):
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await self._redis.client_unblock(self._reader_id)

    def _failure(self, what: str, exc: Exception, delay: float) -> float:
        if isinstance(exc, TRANSIENT):
            self._errors += 1
            # Once per outage, however long it lasts; each retry only at debug level.
            self._outage.failed(exc)
            self._log.debug("%s failed (%s); retrying in %.1fs", what, exc, delay)
        else:
            self._log.error("%s failed unexpectedly; retrying in %.1fs", what, delay, exc_info=exc)
        return delay

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopped.wait()

    # ----------------------------------------------------------------- trimming and strays

    async def _maintain_due(self) -> None:
        now = time.monotonic()
        due = [
            p
            for p in self._own.parts.values()
            if p.state is PartState.READING and now - p.trimmed_at >= self._trim_interval
        ]
        if not due:
            return
        for part in due:
            part.trimmed_at = now
        streams = [(part, s) for part in due for s in part.streams.values()]
        strays: list[tuple[Part, str, list[bytes]]] = []
        async with asyncio.timeout(CALL_TIMEOUT_S):
            pipe = self._redis.pipeline(transaction=False)
            pipe.time()
            for _, stream in streams:
                pipe.xpending(stream, GROUP)
                pipe.xinfo_groups(stream)
            (sec, usec), *replies = await pipe.execute()
            now_ms = sec * 1000 + usec // 1000
            trims: list[tuple[str, str]] = []
            for (part, stream), summary, groups in zip(
                streams, replies[::2], replies[1::2], strict=True
            ):
                last = next(
                    (g["last-delivered-id"] for g in groups if g["name"] == GROUP.encode()), None
                )
                oldest = summary["min"] if summary["pending"] else None
                cutoff = (
                    None if last is None else trim_cutoff(now_ms, self._retention_ms, oldest, last)
                )
                if cutoff is not None:
                    trims.append((stream, cutoff))
                others = [
                    c["name"]
                    for c in summary["consumers"]
                    if c["name"] != self._id_bytes and c["pending"]
                ]
                if others:
                    strays.append((part, stream, others))
            if trims:
                pipe = self._redis.pipeline(transaction=False)
                for stream, cutoff in trims:
                    pipe.xtrim(stream, minid=cutoff, approximate=True)
                self._counts["trimmed"] += sum(await pipe.execute())
        for part, stream, others in strays:
            await self._take_strays(part, stream, others)

    async def _take_strays(self, part: Part, stream: str, consumers: list[bytes]) -> None:
        # Entries pending with another consumer while this worker holds the lease were read by a
        # worker after it had lost the partition (a stalled event loop, a lost renewal). Nobody
        # else will ever run them; they run here, late.
        for name in consumers:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                rows = await self._redis.xpending_range(
                    stream, GROUP, "-", "+", self._batch, consumername=name, idle=self._ttl_ms
                )
                if not rows:
                    continue
                delivered = {row["message_id"]: int(row["times_delivered"]) for row in rows}
                entries = await self._redis.xclaim(
                    stream, GROUP, self._id, self._ttl_ms, list(delivered)
                )
            if not self._own.holds(part):
                return
            debug = self._log.isEnabledFor(logging.DEBUG)
            taken = 0
            for entry_id, fields in entries:
                if entry_id is not None and fields is not None:
                    deliveries = delivered[entry_id] + 1
                    self._accept(part.number, stream, entry_id, fields, deliveries, debug)
                    taken += 1
            self._counts["reclaimed"] += taken
            self._log.warning(
                "%s: took over %d entries left pending by %s after it lost the "
                "partition; they run after newer events of their tickets",
                stream,
                taken,
                name.decode(errors="replace"),
            )


def _show(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
