"""The two stacks under test, behind one interface: how to start them and how to read progress.

`Ours` runs the product exactly as the Procfile does (`python -m receiver`, `arq
workers.settings.WorkerSettings`), configured through the environment. `Baseline` runs the
textbook stack in `bench/baseline/`. Progress is read from Redis:

- ours: an event counts as processed once its consumer group acknowledged it (per partition
  stream of every account lane, `entries-read - pending` from XINFO GROUPS); the backlog is
  `lag + pending`;
- baseline: the `processed` counter its job INCRs; the backlog is `ZCARD arq:queue`.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.procs import Proc, Procs, command, free_port, http_ok, tcp_open, wait_until
from ticketwire.keys import Keys
from ticketwire.stored import StoredDelivery
from ticketwire.streams import lane_names

Delivery = tuple[str, bytes]  # (signature, body)

#: Every key of our stack lives under this prefix (TICKETWIRE_KEY_PREFIX).
OUR_PREFIX = "bench:tw:"
#: Partitions of our stack (the product's default; TICKETWIRE_PARTITIONS is not set).
OUR_PARTITIONS = 16
OUR_KEYS = Keys(OUR_PREFIX)


@dataclass(frozen=True)
class Setup:
    """What both stacks are pointed at: one Redis, the simulator, the secret, the rules."""

    redis_url: str
    redis_port: int
    api_url: str
    api_key: str
    secret: str
    rules: Path

    def client(self) -> redis.Redis:
        """A synchronous client for the benchmark's own reads."""
        return redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=10.0)


@dataclass
class Receiver:
    """A running receiver process and the URL deliveries go to."""

    proc: Proc
    url: str


def as_int(value: Any) -> int:
    """A reply of the synchronous client as an int (None counts as 0)."""
    return int(value or 0)


def count_keys(r: redis.Redis, pattern: str) -> int:
    """How many keys match `pattern` (SCAN; for the small memory runs)."""
    return sum(1 for _ in r.scan_iter(match=pattern, count=1000))


class Stack(ABC):
    """A receiver + worker pair and how to observe it."""

    name: str
    description: str

    @abstractmethod
    def receiver_argv(self) -> list[str]:
        """The receiver's command line."""

    @abstractmethod
    def receiver_env(self, setup: Setup, port: int) -> dict[str, str]:
        """The receiver's environment."""

    @abstractmethod
    def receiver_ready(self, port: int) -> bool:
        """True once the receiver takes deliveries."""

    @abstractmethod
    def worker_argv(self) -> list[str]:
        """The worker's command line."""

    @abstractmethod
    def worker_env(self, setup: Setup) -> dict[str, str]:
        """The worker's environment."""

    @abstractmethod
    def worker_ready(self, r: redis.Redis) -> bool:
        """True once the worker takes events."""

    @abstractmethod
    def processed(self, r: redis.Redis) -> int:
        """Events fully processed so far."""

    @abstractmethod
    def backlog(self, r: redis.Redis) -> int:
        """Events stored but not yet processed."""

    @abstractmethod
    def writebacks(self, r: redis.Redis) -> int:
        """Helpdesk API calls that succeeded so far."""

    @abstractmethod
    def result_copies(self, r: redis.Redis) -> int:
        """Per-event result keys kept after processing."""

    @abstractmethod
    async def store(self, setup: Setup, deliveries: Sequence[Delivery]) -> None:
        """Store deliveries the way this stack's receiver does, without HTTP (for backlogs)."""

    def start_receiver(self, procs: Procs, setup: Setup, *, vendor: str = "inboxops") -> Receiver:
        """Start the receiver on a free port and wait until it takes `vendor`'s deliveries."""
        port = free_port()
        proc = procs.start(
            f"{self.name}-receiver", self.receiver_argv(), self.receiver_env(setup, port)
        )
        wait_until(
            lambda: self.receiver_ready(port),
            timeout=30.0,
            what=f"the {self.name} receiver",
            watch=[proc],
        )
        return Receiver(proc, f"http://127.0.0.1:{port}/webhooks/{vendor}")

    def start_worker(
        self,
        procs: Procs,
        setup: Setup,
        *,
        wait: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        """Start one worker process (and by default wait until it takes events).

        `env` adds to (or overrides) the stack's own worker environment.
        """
        proc = procs.start(
            f"{self.name}-worker", self.worker_argv(), {**self.worker_env(setup), **(env or {})}
        )
        if wait:
            r = setup.client()
            try:
                wait_until(
                    lambda: self.worker_ready(r),
                    timeout=30.0,
                    what=f"the {self.name} worker",
                    watch=[proc],
                )
            finally:
                r.close()
        return proc


class Ours(Stack):
    """The product, as the Procfile runs it."""

    name = "ours"
    description = "python -m receiver + arq workers.settings.WorkerSettings"

    def receiver_argv(self) -> list[str]:
        """`python -m receiver` (the Procfile's web)."""
        return [sys.executable, "-m", "receiver"]

    def receiver_env(self, setup: Setup, port: int) -> dict[str, str]:
        """Redis, port, the webhook secrets, WARNING logs, the benchmark's key prefix."""
        return {
            "REDIS_URL": setup.redis_url,
            "PORT": str(port),
            "INBOXOPS_WEBHOOK_SECRETS": setup.secret,
            "CSTAR_WEBHOOK_SECRETS": setup.secret,
            "TICKETWIRE_LOG_LEVEL": "WARNING",
            "TICKETWIRE_KEY_PREFIX": OUR_PREFIX,
        }

    def receiver_ready(self, port: int) -> bool:
        """`GET /readyz` answers 200 (Redis reachable)."""
        return http_ok(f"http://127.0.0.1:{port}/readyz")

    def worker_argv(self) -> list[str]:
        """`arq workers.settings.WorkerSettings` (the Procfile's worker)."""
        return [*command("arq"), "workers.settings.WorkerSettings"]

    def worker_env(self, setup: Setup) -> dict[str, str]:
        """Redis, the simulator's API, the benchmark rules, WARNING logs.

        The loop guard's echo window and fuse are opened up so that, like the baseline, every
        urgent open delivery is written back (the load repeats such events for one ticket more
        often than real echoes would); the guard's Redis round trips still run on each of them.
        """
        return {
            "REDIS_URL": setup.redis_url,
            "INBOXOPS_API_URL": setup.api_url,
            "INBOXOPS_API_KEY": setup.api_key,
            "TICKETWIRE_RULES": str(setup.rules),
            "TICKETWIRE_LOG_LEVEL": "WARNING",
            "TICKETWIRE_KEY_PREFIX": OUR_PREFIX,
            "TICKETWIRE_ECHO_WINDOW": "1ms",
            "TICKETWIRE_FUSE_PER_HOUR": "100000",
            # The simulator's limit is off in these scenarios, so ours is too; scenario 6
            # switches both on at 100/min.
            "INBOXOPS_RATE_LIMIT": "off",
        }

    def worker_ready(self, r: redis.Redis) -> bool:
        """Every partition is leased (the consumer reads them all)."""
        keys = [f"{OUR_PREFIX}lease:{p}" for p in range(OUR_PARTITIONS)]
        return as_int(r.exists(*keys)) == OUR_PARTITIONS

    def _groups(
        self, r: redis.Redis, lanes: Sequence[str] | None = None
    ) -> list[tuple[int, dict[str, Any] | None]]:
        # (XLEN, the `workers` group or None) per partition stream of `lanes` (default: all).
        if lanes is None:
            lanes = lane_names(r.smembers(OUR_KEYS.lanes))  # type: ignore[arg-type]
        pipe = r.pipeline(transaction=False)
        for stream in (OUR_KEYS.stream(p, lane) for lane in lanes for p in range(OUR_PARTITIONS)):
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        replies = pipe.execute(raise_on_error=False)
        out: list[tuple[int, dict[str, Any] | None]] = []
        for length, groups in zip(replies[::2], replies[1::2], strict=True):
            group = None
            if isinstance(groups, list):
                group = next((g for g in groups if g.get("name") in (b"workers", "workers")), None)
            out.append((int(length) if isinstance(length, int) else 0, group))
        return out

    def processed(self, r: redis.Redis) -> int:
        """Acknowledged entries over all partitions (`entries-read - pending`)."""
        total = 0
        for _, group in self._groups(r):
            if group is not None:
                total += int(group.get("entries-read") or 0) - int(group["pending"])
        return total

    def backlog(self, r: redis.Redis, lanes: Sequence[str] | None = None) -> int:
        """Entries not yet read plus entries read but not acknowledged (of `lanes`: default all)."""
        total = 0
        for length, group in self._groups(r, lanes):
            if group is None:
                total += length
                continue
            lag = group.get("lag")
            if lag is None:  # not computable (Redis could not tell): count what is unread
                lag = length - int(group.get("entries-read") or 0)
            total += int(lag) + int(group["pending"])
        return total

    def writebacks(self, r: redis.Redis) -> int:
        """The `api_calls` counter the outbox bumps after each accepted call."""
        return as_int(r.hget(f"{OUR_PREFIX}stats", "api_calls"))

    def result_copies(self, r: redis.Redis) -> int:
        """arq result keys (ours sets keep_result=0, so there should be none)."""
        return count_keys(r, "arq:result:*")

    async def store(self, setup: Setup, deliveries: Sequence[Delivery]) -> None:
        """Through the product's own intake (`receiver.intake.Intake`): the group-committed Lua store."""
        from redis.asyncio import Redis as AsyncRedis

        from receiver.intake import Intake

        client = AsyncRedis.from_url(setup.redis_url, socket_timeout=30.0)
        intake = Intake(client, OUR_KEYS, partitions=OUR_PARTITIONS, dedupe_ttl_s=72 * 3600.0)
        await intake.start()
        try:
            for start in range(0, len(deliveries), 1000):
                chunk = deliveries[start : start + 1000]
                await asyncio.gather(*(intake.store(stored(s, b)) for s, b in chunk))
        finally:
            await intake.close()
            await client.aclose()


def stored(sig: str, body: bytes, account: str = "default") -> StoredDelivery:
    """An InboxOps delivery as our receiver stores it, received now."""
    from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, parse

    event = parse(body)
    return StoredDelivery(
        vendor="inboxops",
        event_id=event.id,
        event_type=event.type,
        ticket_key=event.ticket_key,
        body=body,
        received_ms=int(time.time() * 1000),
        headers={SIGNATURE_HEADER: sig, "Content-Type": "application/json"},
        account=account,
    )


class Baseline(Stack):
    """The textbook aiohttp + pydantic + arq stack in `bench/baseline/`."""

    name = "baseline"
    description = "python -m bench.baseline.receiver + arq bench.baseline.worker.WorkerSettings"

    def receiver_argv(self) -> list[str]:
        """`python -m bench.baseline.receiver`."""
        return [sys.executable, "-m", "bench.baseline.receiver"]

    def receiver_env(self, setup: Setup, port: int) -> dict[str, str]:
        """Redis, port and the webhook secrets."""
        return {
            "REDIS_URL": setup.redis_url,
            "PORT": str(port),
            "INBOXOPS_WEBHOOK_SECRET": setup.secret,
            "CSTAR_WEBHOOK_SECRET": setup.secret,
        }

    def receiver_ready(self, port: int) -> bool:
        """The port accepts connections (aiohttp listens after on_startup made the pool)."""
        return tcp_open(port)

    def worker_argv(self) -> list[str]:
        """`arq bench.baseline.worker.WorkerSettings`."""
        return [*command("arq"), "bench.baseline.worker.WorkerSettings"]

    def worker_env(self, setup: Setup) -> dict[str, str]:
        """Redis, the simulator's API, the benchmark rules."""
        return {
            "REDIS_URL": setup.redis_url,
            "INBOXOPS_API_URL": setup.api_url,
            "INBOXOPS_API_KEY": setup.api_key,
            "BENCH_RULES": str(setup.rules),
        }

    def worker_ready(self, r: redis.Redis) -> bool:
        """arq wrote its health-check key (it does so on its first poll)."""
        return bool(r.exists("arq:queue:health-check"))

    def processed(self, r: redis.Redis) -> int:
        """The counter the job INCRs last."""
        from bench.baseline.worker import PROCESSED_KEY

        return as_int(r.get(PROCESSED_KEY))

    def backlog(self, r: redis.Redis) -> int:
        """Jobs still in arq's queue (waiting or running)."""
        return as_int(r.zcard("arq:queue"))

    def writebacks(self, r: redis.Redis) -> int:
        """The counter the job INCRs after each accepted PATCH."""
        from bench.baseline.worker import WRITEBACKS_KEY

        return as_int(r.get(WRITEBACKS_KEY))

    def result_copies(self, r: redis.Redis) -> int:
        """arq result keys (`keep_result` defaults to an hour)."""
        return count_keys(r, "arq:result:*")

    async def store(self, setup: Setup, deliveries: Sequence[Delivery]) -> None:
        """The keys and pickle `enqueue_job('process', event)` writes, in pipelines of 1000."""
        import json

        from arq import create_pool
        from arq.connections import RedisSettings
        from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix
        from arq.jobs import serialize_job

        from bench.baseline.models import Envelope

        pool = await create_pool(RedisSettings.from_dsn(setup.redis_url))
        try:
            for start in range(0, len(deliveries), 1000):
                pipe = pool.pipeline(transaction=False)
                for _, body in deliveries[start : start + 1000]:
                    event = Envelope.model_validate(json.loads(body))
                    now = int(time.time() * 1000)
                    job_id = uuid.uuid4().hex
                    blob = serialize_job("process", (event,), {}, None, now)
                    pipe.psetex(job_key_prefix + job_id, expires_extra_ms, blob)
                    pipe.zadd(default_queue_name, {job_id: now})
                await pipe.execute()
        finally:
            await pool.aclose()


class OursTracesOff(Ours):
    """The product with traces off (`TICKETWIRE_TRACE_RETENTION=0`): what traces cost the worker."""

    name = "ours-traces-off"
    description = "as ours, with TICKETWIRE_TRACE_RETENTION=0"

    def worker_env(self, setup: Setup) -> dict[str, str]:
        """Ours' worker environment with traces off."""
        return {**super().worker_env(setup), "TICKETWIRE_TRACE_RETENTION": "0"}


class OursFsync(Ours):
    """The product with `TICKETWIRE_DURABILITY=fsync`: a 2xx only once the AOF has the batch."""

    name = "ours-fsync"
    description = "as ours, with TICKETWIRE_DURABILITY=fsync (WAITAOF once per batch)"

    def receiver_env(self, setup: Setup, port: int) -> dict[str, str]:
        """Ours' receiver environment in fsync durability mode."""
        return {**super().receiver_env(setup, port), "TICKETWIRE_DURABILITY": "fsync"}


STACKS: tuple[Stack, ...] = (Ours(), Baseline())
#: Run beside STACKS in scenarios 3 and 4: worker CPU per event with traces off and on.
TRACES_OFF = OursTracesOff()
#: Run beside ours in scenario 1d, both on a Redis with AOF on: what fsync durability costs.
FSYNC = OursFsync()
