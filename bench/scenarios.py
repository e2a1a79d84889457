"""The measurements: each scenario runs both stacks on a fresh Redis and records raw runs.

Every run starts the processes it needs, measures one bounded window and stops them again, so
one run cannot leave work behind for the next. Stacks alternate which goes first per repetition.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import math
import statistics
import string
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from bench.helpdesk import (
    Helpdesk,
    create_tag,
    journal,
    set_rate_limit,
    start_helpdesk,
    tickets_with_tags,
)
from bench.isolation import A, accounts_env, b_bodies, burst_beside_trickle, percentile
from bench.load import LoadGen, LoadResult
from bench.payload import Bodies, CStarBodies
from bench.procs import (
    ROOT,
    BenchError,
    Proc,
    Procs,
    cpu_seconds,
    free_port,
    rss_bytes,
    tcp_open,
    wait_until,
)
from bench.redisserver import embedded_binary, server_version, start_redis
from bench.stacks import FSYNC, OUR_PREFIX, STACKS, TRACES_OFF, Ours, Setup, Stack
from ticketwire.accountkey import lane_of

Run = dict[str, Any]
#: The header each vendor's signature travels in (the first token of a bodies-file line).
SIG_HEADERS = {"inboxops": "X-InboxOps-Signature", "cstar": "X-Signature"}
#: Scenario 6's rule template (`${TAG_ID}` is filled in per run).
TAG_RULES = ROOT / "bench" / "rules_ratelimit"
#: The simulator's journal keeps this many entries (SimulatorConfig.journal_limit).
JOURNAL_LIMIT = 100_000


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one benchmark mode (seconds unless said otherwise)."""

    mode: str
    reps: int
    calibration_s: int
    intake_warm_s: int
    intake_s: int
    latency_rate: int
    latency_warm_s: int
    latency_s: int
    box_warm_s: int
    box_s: int
    burst_warm_s: int
    burst_s: int
    burst_tickets: int
    #: Offered deliveries/s of the paced whole-box variant (3p): below what one worker handles.
    box_paced_rate: int
    drain_events: int
    drain_bound_s: int
    memory_events: int
    memory_bound_s: int
    #: Scenario 6: tickets (one delivery each), offered evenly at this rate, and how long a
    #: stack may take before its drain time is projected from its achieved rate.
    ratelimit_tickets: int
    ratelimit_rate: int
    ratelimit_bound_s: int
    #: The helpdesk's limit in scenario 6 (requests per minute, fixed window) and its bulk size.
    ratelimit_per_min: int = 100
    ratelimit_bulk_max: int = 100
    #: Worker processes each stack runs in scenario 6 (`--workers`).
    ratelimit_workers: int = 1
    #: Scenario 7: account A's burst, account B's trickle (Poisson, per s) during it, and how
    #: long A's burst may take to be handled.
    isolation_burst: int = 10_000
    isolation_rate: float = 20.0
    isolation_bound_s: int = 60
    #: Scenario 8: good deliveries per second paced beside the flood, and forged bodies made.
    flood_good_rate: float = 200.0
    flood_forged: int = 20_000
    conns: int = 64


QUICK = Plan(
    mode="quick",
    reps=1,
    calibration_s=3,
    intake_warm_s=1,
    intake_s=4,
    latency_rate=1000,
    latency_warm_s=1,
    latency_s=4,
    box_warm_s=2,
    box_s=10,
    burst_warm_s=1,
    burst_s=3,
    burst_tickets=10,
    box_paced_rate=1500,
    drain_events=5_000,
    drain_bound_s=8,
    memory_events=600,
    memory_bound_s=15,
    ratelimit_tickets=2_000,
    ratelimit_rate=1000,
    ratelimit_bound_s=30,
)
FULL = Plan(
    mode="full",
    reps=3,
    calibration_s=5,
    intake_warm_s=2,
    intake_s=10,
    latency_rate=1000,
    latency_warm_s=2,
    latency_s=10,
    box_warm_s=3,
    box_s=30,
    burst_warm_s=2,
    burst_s=10,
    burst_tickets=10,
    box_paced_rate=1500,
    drain_events=50_000,
    drain_bound_s=60,
    memory_events=2_000,
    memory_bound_s=40,
    ratelimit_tickets=10_000,
    ratelimit_rate=1000,
    ratelimit_bound_s=90,
)

#: Key families for the memory breakdown, first match wins.
KEY_FAMILIES = (
    f"{OUR_PREFIX}events:*",
    f"{OUR_PREFIX}seen:*",
    f"{OUR_PREFIX}*",
    "arq:result:*",
    "arq:job:*",
    "arq:*",
    "bench:*",
    "*",
)


def writeback_floor(
    tickets: int, rate: float, *, bulk_max: int, per_window: int, window_s: float = 60.0
) -> float:
    """Earliest the last change can land: all deliveries offered, and the last call's window open.

    `tickets` changes in bulk calls of `bulk_max` ids, at most `per_window` calls per fixed
    window of `window_s`: the last call is call ⌈tickets / bulk_max⌉ and cannot go before the
    start of its window, nor before the last delivery was offered (`tickets / rate`).
    """
    calls = math.ceil(tickets / bulk_max)
    return max(tickets / rate, (calls - 1) // per_window * window_s)


@dataclass
class TagWatch:
    """Reads the simulator's journal as it grows: calls, 429s, and when each ticket got the tag."""

    url: str
    tag: str
    #: Journal entries before the run (the tag's creation): not the stack's calls.
    skip: int
    calls: int = 0
    limited: int = 0
    ok: int = 0
    tagged: dict[str, float] = field(default_factory=dict)
    #: (landing time, tickets it tagged first) of every successful call that tagged any.
    landed: list[tuple[float, int]] = field(default_factory=list)
    seen: int = 0
    truncated: bool = False

    def poll(self) -> float:
        """Fetch the journal and account for its new entries; return how long the fetch took."""
        began = time.monotonic()
        entries = journal(self.url)
        took = time.monotonic() - began
        if len(entries) >= JOURNAL_LIMIT:
            self.truncated = True
        self.add(entries[max(self.seen, self.skip) :])
        self.seen = len(entries)
        return took

    def add(self, entries: Sequence[dict[str, Any]]) -> None:
        """Count calls; note the landing time of the first successful add of the tag per ticket."""
        for entry in entries:
            self.calls += 1
            status = int(entry["status"])
            if status == 429:
                self.limited += 1
            if not 200 <= status < 300:
                continue
            self.ok += 1
            body = entry.get("body")
            if (
                entry["path"].endswith("/tickets/bulk")
                and isinstance(body, dict)
                and body.get("operation") == "add_tags"
                and self.tag in (body.get("tag_ids") or ())
            ):
                at = datetime.fromisoformat(entry["at"]).timestamp()
                before = len(self.tagged)
                for ticket_id in body.get("ticket_ids") or ():
                    self.tagged.setdefault(str(ticket_id), at)
                if len(self.tagged) > before:
                    self.landed.append((at, len(self.tagged) - before))


def redis_cpu(r: redis.Redis) -> float:
    """CPU seconds the Redis server has used (INFO cpu: user + sys)."""
    info: dict[str, Any] = r.info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_calls(r: redis.Redis) -> int:
    """Commands Redis has run (INFO commandstats), not counting the benchmark's INFO calls."""
    stats: dict[str, Any] = r.info("commandstats")  # type: ignore[assignment]
    return sum(
        int(v["calls"])
        for k, v in stats.items()
        if k not in ("cmdstat_info", "cmdstat_xinfo|groups", "cmdstat_xlen", "cmdstat_ping")
    )


def used_memory(r: redis.Redis) -> int:
    """INFO memory `used_memory` in bytes."""
    info: dict[str, Any] = r.info("memory")  # type: ignore[assignment]
    return int(info["used_memory"])


def key_memory(r: redis.Redis) -> dict[str, dict[str, int]]:
    """Keys and bytes (MEMORY USAGE) per key family."""
    out: dict[str, dict[str, int]] = {}
    keys = [k.decode() for k in r.scan_iter(count=1000)]
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    for key, size in zip(keys, pipe.execute(), strict=True):
        family = next(f for f in KEY_FAMILIES if fnmatch.fnmatchcase(key, f))
        slot = out.setdefault(family, {"keys": 0, "bytes": 0})
        slot["keys"] += 1
        slot["bytes"] += int(size or 0)
    return out


class Bench:
    """Runs scenarios; raw runs collect in `runs[scenario]`, one list entry per run."""

    def __init__(
        self,
        plan: Plan,
        procs: Procs,
        load: LoadGen,
        workdir: Path,
        *,
        redis_binary: str,
        api_url: str,
        api_key: str,
        secret: str,
        rules: Path,
        bodies: Bodies,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.procs = procs
        self.load = load
        self.workdir = workdir
        self.redis_binary = redis_binary
        self.api_url = api_url
        self.api_key = api_key
        self.secret = secret
        self.rules = rules
        self.bodies = bodies
        self.cstar_bodies = CStarBodies(secret)
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.runs: dict[str, list[Run]] = {}
        self.warnings: list[str] = []
        # Expected accepted/s per (stack, kind), to size body files; raised as runs come in.
        self._guess: dict[tuple[str, str], float] = {}
        self._files = 0

    # ----------------------------------------------------------------- helpers

    def _record(self, scenario: str, run: Run) -> None:
        self.runs.setdefault(scenario, []).append(run)

    def _order(self, rep: int, *, traces_off: bool = False) -> tuple[Stack, ...]:
        # With `traces_off`, ours also runs with traces off, between ours and the baseline, so
        # the two configurations of ours alternate which goes first from one rep to the next.
        stacks = (STACKS[0], TRACES_OFF, *STACKS[1:]) if traces_off else STACKS
        return stacks if rep % 2 == 0 else tuple(reversed(stacks))

    @contextlib.contextmanager
    def _redis(
        self,
        helpdesk: Helpdesk | None = None,
        rules: Path | None = None,
        *,
        aof: bool = False,
        binary: str | None = None,
    ) -> Iterator[Setup]:
        server = start_redis(self.procs, binary or self.redis_binary, aof=aof)
        try:
            yield Setup(
                redis_url=server.url,
                redis_port=server.port,
                api_url=helpdesk.url if helpdesk else self.api_url,
                api_key=helpdesk.api_key if helpdesk else self.api_key,
                secret=self.secret,
                rules=rules or self.rules,
            )
        finally:
            server.stop(self.procs)

    def _body_file(
        self, count: int, *, tickets: int | None = None, vendor: str = "inboxops"
    ) -> Path:
        self._files += 1
        path = self.workdir / f"bodies-{self._files}.txt"
        if vendor == "cstar":
            self.cstar_bodies.write(path, count)
        else:
            self.bodies.write(path, count, tickets=tickets)
        return path

    def _load(
        self,
        url: str,
        seconds: int,
        *,
        key: tuple[str, str],
        rate: float = 0.0,
        tickets: int | None = None,
        vendor: str = "inboxops",
    ) -> LoadResult:
        """One load run with enough fresh bodies that none repeats (sized from past rates)."""
        expected = rate or self._guess.get(key) or self._guess.get((key[0], "intake"), 6000.0)
        count = math.ceil(expected * seconds * 1.3) + 1000
        path = self._body_file(count, tickets=tickets, vendor=vendor)
        header = SIG_HEADERS[vendor]
        try:
            result = self.load.run(
                url, path, seconds, conns=self.plan.conns, rate=rate, sig_header=header
            )
        finally:
            path.unlink(missing_ok=True)
        if not rate:
            self._guess[key] = max(self._guess.get(key, 0.0), result.answered_per_s * 1.5, 500.0)
        if result.wraps:
            self.warnings.append(
                f"{key[0]} {key[1]}: the body file ran out {result.wraps}x; ours answers a "
                "repeated event id 200 (not counted as accepted), the baseline accepts it again"
            )
        if result.other or result.errors:
            self.warnings.append(
                f"{key[0]} {key[1]}: {result.other} non-2xx answers, {result.errors} transport errors"
            )
        return result

    # ----------------------------------------------------------------- 0: calibration

    def calibration(self) -> None:
        """The load generator against a trivial 202 server: what it can offer at most."""
        port = free_port()
        proc = self.procs.start(
            "trivial", [sys.executable, "-m", "bench.trivial", "--port", str(port)]
        )
        try:
            wait_until(
                lambda: tcp_open(port), timeout=20.0, what="the trivial server", watch=[proc]
            )
            url = f"http://127.0.0.1:{port}/webhooks/inboxops"
            # Repeats do not matter here: the trivial server does not dedupe.
            path = self._body_file(20_000)
            try:
                self.load.run(url, path, 1, conns=self.plan.conns)
                flat = self.load.run(url, path, self.plan.calibration_s, conns=self.plan.conns)
                paced = self.load.run(
                    url,
                    path,
                    self.plan.calibration_s,
                    conns=self.plan.conns,
                    rate=self.plan.latency_rate,
                )
            finally:
                path.unlink(missing_ok=True)
        finally:
            self.procs.stop(proc)
        self._record(
            "0",
            {"flat": flat.to_json(), "paced": paced.to_json(), "rate": self.plan.latency_rate},
        )
        self.say(
            f"[0 calibration] {self.load.tool}: {flat.answered_per_s:,.0f} req/s flat out; "
            f"p99 {paced.p99_ms:.2f} ms at {paced.answered_per_s:,.0f} req/s paced"
        )

    # ----------------------------------------------------------------- 1: intake flat out

    def intake(self) -> None:
        """Receivers alone, flat out: accepted/s and CPU per accepted delivery."""
        self._intake("1", "inboxops")

    def intake_cstar(self) -> None:
        """Scenario 1 with signed cStar deliveries (`X-Signature: t=…,v1=…`)."""
        self._intake("1c", "cstar")

    def _intake(self, scenario: str, vendor: str) -> None:
        for rep in range(self.plan.reps):
            for stack in self._order(rep):
                with self._redis() as setup:
                    run = self._intake_run(stack, setup, vendor)
                run.update(stack=stack.name, rep=rep, vendor=vendor)
                self._record(scenario, run)
                self.say(
                    f"[{scenario} intake {vendor}] {stack.name} rep {rep + 1}/{self.plan.reps}: "
                    f"{run['accepted_per_s']:,.0f} accepted/s, "
                    f"{run['receiver_cpu_us']:,.0f} us receiver CPU, "
                    f"{run['redis_cpu_us']:,.1f} us Redis CPU per delivery"
                )

    def _intake_run(self, stack: Stack, setup: Setup, vendor: str) -> Run:
        receiver = stack.start_receiver(self.procs, setup, vendor=vendor)
        r = setup.client()
        key = (stack.name, "intake" if vendor == "inboxops" else f"intake-{vendor}")
        try:
            self._load(receiver.url, self.plan.intake_warm_s, key=key, vendor=vendor)
            cpu0, rcpu0, calls0 = cpu_seconds(receiver.proc.pid), redis_cpu(r), redis_calls(r)
            result = self._load(receiver.url, self.plan.intake_s, key=key, vendor=vendor)
            cpu1, rcpu1, calls1 = cpu_seconds(receiver.proc.pid), redis_cpu(r), redis_calls(r)
        finally:
            r.close()
            self.procs.stop(receiver.proc)
        accepted = max(result.accepted, 1)
        return {
            "accepted_per_s": result.accepted_per_s,
            "receiver_cpu_us": (cpu1 - cpu0) / accepted * 1e6,
            "redis_cpu_us": (rcpu1 - rcpu0) / accepted * 1e6,
            "redis_calls": (calls1 - calls0) / accepted,
            "load": result.to_json(),
        }

    def intake_durable(self) -> None:
        """Scenario 1 with TICKETWIRE_DURABILITY=fsync beside none, both on AOF everysec.

        Both on the embedded Valkey: WAITAOF needs Redis 7.2+, and the system's may be older.
        """
        binary = embedded_binary()
        self.say(f"[1d intake durability] server: {server_version(binary)}")
        for rep in range(self.plan.reps):
            stacks = (STACKS[0], FSYNC) if rep % 2 == 0 else (FSYNC, STACKS[0])
            for stack in stacks:
                with self._redis(aof=True, binary=binary) as setup:
                    run = self._intake_run(stack, setup, "inboxops")
                run.update(stack=stack.name, rep=rep, vendor="inboxops")
                self._record("1d", run)
                load = run["load"]
                self.say(
                    f"[1d intake durability] {stack.name} rep {rep + 1}/{self.plan.reps}: "
                    f"{run['accepted_per_s']:,.0f} accepted/s, p50 {load['p50_ms']:.1f} ms, "
                    f"p99 {load['p99_ms']:.1f} ms, "
                    f"{run['receiver_cpu_us']:,.0f} us receiver CPU per delivery"
                )
        fsync = [r["accepted_per_s"] for r in self.runs["1d"] if r["stack"] == FSYNC.name]
        none = [r["accepted_per_s"] for r in self.runs["1d"] if r["stack"] != FSYNC.name]
        if fsync and none:
            ratio = statistics.median(fsync) / max(statistics.median(none), 1e-9)
            self.say(f"[1d intake durability] fsync / none accepted/s: {ratio:.2f}")

    # ----------------------------------------------------------------- 2: intake latency

    def latency(self) -> None:
        """Receivers alone, paced below saturation with Poisson-like arrivals: p50 and p99."""
        rate = self.plan.latency_rate
        for rep in range(self.plan.reps):
            for stack in self._order(rep):
                with self._redis() as setup:
                    receiver = stack.start_receiver(self.procs, setup)
                    try:
                        key = (stack.name, "latency")
                        self._load(receiver.url, self.plan.latency_warm_s, key=key, rate=rate)
                        result = self._load(receiver.url, self.plan.latency_s, key=key, rate=rate)
                    finally:
                        self.procs.stop(receiver.proc)
                run: Run = {
                    "stack": stack.name,
                    "rep": rep,
                    "offered_per_s": rate,
                    "achieved_per_s": result.answered_per_s,
                    "p50_ms": result.p50_ms,
                    "p99_ms": result.p99_ms,
                    "load": result.to_json(),
                }
                self._record("2", run)
                self.say(
                    f"[2 latency] {stack.name} rep {rep + 1}/{self.plan.reps}: at "
                    f"{result.answered_per_s:,.0f}/s p50 {result.p50_ms:.2f} ms, "
                    f"p99 {result.p99_ms:.2f} ms"
                )

    # ----------------------------------------------------------------- 3: whole box

    def whole_box(self) -> None:
        """Receiver + one worker + Redis + simulator + load on the same cores, flat out."""
        plan = self.plan
        variants = (
            ("3", plan.box_warm_s, plan.box_s, None, 0.0),
            ("3b", plan.burst_warm_s, plan.burst_s, plan.burst_tickets, 0.0),
            # The same box with intake paced below saturation: does processing keep up?
            ("3p", plan.box_warm_s, plan.box_s, None, float(plan.box_paced_rate)),
        )
        for scenario, warm, seconds, tickets, rate in variants:
            for rep in range(plan.reps):
                for stack in self._order(rep, traces_off=scenario == "3"):
                    with self._redis() as setup:
                        run = self._box_run(stack, setup, warm, seconds, tickets, rate)
                    run.update(
                        stack=stack.name,
                        rep=rep,
                        tickets=tickets or self.bodies.tickets,
                        offered_per_s=rate or None,
                    )
                    self._record(scenario, run)
                    self.say(
                        f"[{scenario} whole box{' burst' if tickets else ''}] {stack.name} rep "
                        f"{rep + 1}/{self.plan.reps}: {run['accepted_per_s']:,.0f} accepted/s, "
                        f"{run['processed_per_s']:,.0f} processed/s, backlog "
                        f"{run['backlog_growth_per_s']:+,.0f}/s, "
                        f"{run['writebacks_per_s']:,.0f} write-backs/s"
                    )

    def _box_run(
        self,
        stack: Stack,
        setup: Setup,
        warm: int,
        seconds: int,
        tickets: int | None,
        rate: float = 0.0,
    ) -> Run:
        key = (stack.name, "box-burst" if tickets else "box-paced" if rate else "box")
        worker = stack.start_worker(self.procs, setup)
        receiver = stack.start_receiver(self.procs, setup)
        r = setup.client()
        try:
            rss_idle = rss_bytes(worker.pid)
            self._load(receiver.url, warm, key=key, tickets=tickets, rate=rate)
            snap0 = self._snapshot(stack, r, worker)
            result = self._load(receiver.url, seconds, key=key, tickets=tickets, rate=rate)
            snap1 = self._snapshot(stack, r, worker)
            self._check_alive(worker, receiver.proc)
        finally:
            r.close()
            self.procs.stop(receiver.proc)
            self.procs.stop(worker)
        elapsed = snap1["t"] - snap0["t"]
        processed = snap1["processed"] - snap0["processed"]
        return {
            "accepted_per_s": result.accepted_per_s,
            "processed_per_s": processed / elapsed,
            "backlog_start": snap0["backlog"],
            "backlog_end": snap1["backlog"],
            "backlog_growth_per_s": (snap1["backlog"] - snap0["backlog"]) / elapsed,
            "writebacks_per_s": (snap1["writebacks"] - snap0["writebacks"]) / elapsed,
            "worker_cpu_us": (snap1["cpu"] - snap0["cpu"]) / max(processed, 1) * 1e6,
            "redis_cpu_us": (snap1["redis_cpu"] - snap0["redis_cpu"]) / max(processed, 1) * 1e6,
            "redis_calls": (snap1["redis_calls"] - snap0["redis_calls"]) / max(processed, 1),
            "worker_rss_idle": rss_idle,
            "worker_rss_start": snap0["rss"],
            "worker_rss_end": snap1["rss"],
            "window_s": elapsed,
            "load": result.to_json(),
        }

    def _snapshot(self, stack: Stack, r: redis.Redis, worker: Proc) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "processed": stack.processed(r),
            "backlog": stack.backlog(r),
            "writebacks": stack.writebacks(r),
            "cpu": cpu_seconds(worker.pid),
            "rss": rss_bytes(worker.pid),
            "redis_cpu": redis_cpu(r),
            "redis_calls": redis_calls(r),
        }

    def _check_alive(self, *procs: Proc) -> None:
        for proc in procs:
            if not proc.alive:
                raise BenchError(f"during the measurement: {proc.describe_exit()}")

    # ----------------------------------------------------------------- 4: backlog drain

    def drain(self) -> None:
        """A stored backlog, then one worker started cold: events/s until the backlog is empty."""
        n, bound = self.plan.drain_events, self.plan.drain_bound_s
        for rep in range(self.plan.reps):
            for stack in self._order(rep, traces_off=True):
                with self._redis() as setup:
                    run = self._drain_run(stack, setup, n, bound)
                run.update(stack=stack.name, rep=rep)
                self._record("4", run)
                state = "drained" if run["finished"] else f"NOT drained within {bound}s"
                self.say(
                    f"[4 drain] {stack.name} rep {rep + 1}/{self.plan.reps}: {n:,} events, "
                    f"{run['events_per_s']:,.0f} events/s, {state} "
                    f"({run['processed']:,} processed in {run['window_s']:.1f}s)"
                )

    def _drain_run(self, stack: Stack, setup: Setup, n: int, bound: float) -> Run:
        deliveries = list(self.bodies.make(n))
        r = setup.client()
        try:
            t = time.monotonic()
            asyncio.run(stack.store(setup, deliveries))
            stored_s = time.monotonic() - t
            del deliveries
            stored = stack.backlog(r)
            run = self._drain_until_empty(stack, setup, r, n, bound)
        finally:
            r.close()
        run.update(events=n, stored=stored, store_s=stored_s)
        return run

    def _drain_until_empty(
        self, stack: Stack, setup: Setup, r: redis.Redis, n: int, bound: float
    ) -> Run:
        spawned = time.monotonic()
        worker = stack.start_worker(self.procs, setup, wait=False)
        first: tuple[float, int] | None = None
        first_cpu, first_calls = 0.0, 0
        finished = False
        now, done = spawned, 0
        try:
            while True:
                self._check_alive(worker)
                now = time.monotonic()
                done = stack.processed(r)
                if first is None and done > 0:
                    first = (now, done)
                    first_cpu, first_calls = cpu_seconds(worker.pid), redis_calls(r)
                if done >= n and stack.backlog(r) == 0:
                    finished = True
                    break
                if now - spawned >= bound:
                    break
                time.sleep(0.025)
            cpu, calls = cpu_seconds(worker.pid), redis_calls(r)
        finally:
            self.procs.stop(worker)
        end = time.monotonic()
        if first is None:
            rate, window = 0.0, now - spawned
        else:
            window = max(now - first[0], 1e-3)
            rate = (done - first[1]) / window
        return {
            "finished": finished,
            "processed": done,
            "events_per_s": rate,
            "window_s": window,
            "first_event_s": (first[0] - spawned) if first else None,
            "wall_s": now - spawned,
            "stop_s": end - now,
            # From the first processed event on: start-up (imports, connections) left out.
            "worker_cpu_us": (cpu - first_cpu) / max(done - (first[1] if first else 0), 1) * 1e6,
            "redis_calls": (calls - first_calls) / max(done - (first[1] if first else 0), 1),
        }

    # ----------------------------------------------------------------- 5: memory

    def _wait_processed(
        self, stack: Stack, r: redis.Redis, worker: Proc, n: int, bound: float
    ) -> bool:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            self._check_alive(worker)
            if stack.processed(r) >= n and stack.backlog(r) == 0:
                return True
            time.sleep(0.05)
        return False

    def memory(self) -> None:
        """Redis bytes per event that stay after processing, and what they are.

        The worker is started (and has set up its groups, leases and health key) before the
        first measurement, so only what the events leave behind is counted, not fixed set-up.
        """
        n, bound = self.plan.memory_events, self.plan.memory_bound_s
        for rep in range(self.plan.reps):
            for stack in self._order(rep):
                with self._redis() as setup:
                    r = setup.client()
                    worker = stack.start_worker(self.procs, setup)
                    try:
                        before = used_memory(r)
                        asyncio.run(stack.store(setup, list(self.bodies.make(n))))
                        finished = self._wait_processed(stack, r, worker, n, bound)
                        after = used_memory(r)
                        families = key_memory(r)
                        copies = stack.result_copies(r)
                    finally:
                        r.close()
                        self.procs.stop(worker)
                run: Run = {
                    "stack": stack.name,
                    "rep": rep,
                    "events": n,
                    "finished": finished,
                    "used_memory_before": before,
                    "used_memory_after": after,
                    "bytes_per_event": (after - before) / n,
                    "result_copies_per_event": copies / n,
                    "key_families": families,
                }
                self._record("5", run)
                self.say(
                    f"[5 memory] {stack.name} rep {rep + 1}/{self.plan.reps}: "
                    f"{run['bytes_per_event']:,.0f} B/event kept after processing, "
                    f"{copies:,} result keys"
                    + ("" if finished else f" (NOT drained within {bound}s)")
                )

    # ----------------------------------------------------------------- 6: write-back, rate limit

    def ratelimit(self) -> None:
        """Write-back of one change per ticket under the helpdesk's 100/min: calls and drain time."""
        plan = self.plan
        n, rate = plan.ratelimit_tickets, plan.ratelimit_rate
        floor = writeback_floor(
            n, rate, bulk_max=plan.ratelimit_bulk_max, per_window=plan.ratelimit_per_min
        )
        for rep in range(plan.reps):
            for stack in self._order(rep):
                run = self._ratelimit_run(stack, n, rate, float(plan.ratelimit_bound_s))
                run.update(
                    stack=stack.name,
                    rep=rep,
                    floor_s=floor,
                    per_min=plan.ratelimit_per_min,
                    bulk_max=plan.ratelimit_bulk_max,
                )
                run["drain_over_floor"] = run["drain_s"] / floor if run["drain_s"] else None
                self._record("6", run)
                head = (
                    f"[6 write-back under {plan.ratelimit_per_min}/min] {stack.name} rep "
                    f"{rep + 1}/{plan.reps}: {n:,} tickets, {run['calls']:,} calls "
                    f"({run['limited']:,} answered 429), {run['tagged_end']:,} tagged"
                )
                if run["finished"]:
                    tail = f", all in {run['drain_s']:.2f} s (floor {floor:.1f} s)"
                elif run["drain_s"]:
                    tail = (
                        f" within {run['bound_s']:.0f} s; drain projected "
                        f"{run['drain_s']:,.0f} s (floor {floor:.1f} s)"
                    )
                else:
                    tail = f" within {run['bound_s']:.0f} s; no drain projectable"
                self.say(head + tail)

    # ----------------------------------------------------------------- 7: burst isolation

    def isolation(self) -> None:
        """A burst on account A, a trickle on account B: B's received → handled, lanes or not."""
        plan = self.plan
        for rep in range(plan.reps):
            # Ours, then ours with B in A's lane (the baseline column); alternating per rep.
            for shared in (False, True) if rep % 2 == 0 else (True, False):
                name = "ours-shared-lane" if shared else "ours"
                with self._redis() as setup:
                    run = self._isolation_run(setup, shared=shared)
                run.update(stack=name, rep=rep)
                self._record("7", run)
                lat = run["b_latency_ms"]
                p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
                self.say(
                    f"[7 burst isolation] {name} rep {rep + 1}/{plan.reps}: A's "
                    f"{run['burst']:,} handled in {run['burst_drain_s']:.1f} s; B's "
                    f"{run['trickle_traced']}/{run['trickle_sent']} events p50 "
                    f"{p50 or 0:,.0f} ms, p99 {p99 or 0:,.0f} ms"
                )

    def _isolation_run(self, setup: Setup, *, shared: bool) -> Run:
        plan = self.plan
        stack = STACKS[0]
        assert isinstance(stack, Ours)
        burst = list(self.bodies.make(plan.isolation_burst))
        trickle = b_bodies(
            list(self.bodies.make(math.ceil(plan.isolation_rate * plan.isolation_bound_s) + 100))
        )
        worker = stack.start_worker(self.procs, setup, env=accounts_env(self.workdir, setup))
        r = setup.client()
        a_lane = [lane_of("inboxops", A)]
        try:
            run = asyncio.run(
                burst_beside_trickle(
                    setup,
                    burst,
                    trickle,
                    rate=plan.isolation_rate,
                    shared=shared,
                    bound_s=plan.isolation_bound_s,
                    a_backlog=lambda: stack.backlog(r, a_lane),
                    backlog=lambda: stack.backlog(r),
                    worker_cpu=lambda: cpu_seconds(worker.pid),
                )
            )
            self._check_alive(worker)
        finally:
            r.close()
            self.procs.stop(worker)
        lat = run["b_latency_ms"]
        run.update(
            b_p50_ms=percentile(lat, 0.5),
            b_p99_ms=percentile(lat, 0.99),
            # Both columns handle B's events within the window: ours at once, shared in turn.
            worker_cpu_us=run["worker_cpu_s"] / (run["burst"] + run["trickle_sent"]) * 1e6,
        )
        return run

    # ----------------------------------------------------------------- 8: refusal flood

    def flood(self) -> None:
        """Receivers flooded flat out with forged signatures while good deliveries are paced
        beside the flood: the good ones' p50 and p99, and how much of the flood was refused."""
        plan = self.plan
        for rep in range(plan.reps):
            for stack in self._order(rep):
                with self._redis() as setup:
                    receiver = stack.start_receiver(self.procs, setup)
                    forged = self._forged_file(plan.flood_forged)
                    try:
                        run = self._flood_run(receiver.url, stack.name, forged)
                        log = receiver.proc.log.read_text(errors="replace")
                    finally:
                        self.procs.stop(receiver.proc)
                        forged.unlink(missing_ok=True)
                run.update(stack=stack.name, rep=rep, log_lines=log.count("\n"))
                self._record("8", run)
                self.say(
                    f"[8 refusal flood] {stack.name} rep {rep + 1}/{plan.reps}: "
                    f"{run['forged_refused_per_s']:,.0f} forged/s refused; good at "
                    f"{run['good_per_s']:,.0f}/s p50 {run['good_p50_ms']:.2f} ms, p99 "
                    f"{run['good_p99_ms']:.2f} ms; {run['log_lines']:,} log lines"
                )

    def _flood_run(self, url: str, name: str, forged: Path) -> Run:
        plan = self.plan
        rate = plan.flood_good_rate
        # The flood outlasts the paced load on both sides, so every good delivery meets it.
        flood = self.load.start(
            url, forged, plan.latency_warm_s + plan.latency_s + 2, conns=plan.conns
        )
        try:
            key = (name, "flood")
            self._load(url, plan.latency_warm_s, key=key, rate=rate)
            good = self._load(url, plan.latency_s, key=key, rate=rate)
        finally:
            bad = self.load.finish(flood)
        return {
            "good_offered_per_s": rate,
            "good_per_s": good.accepted_per_s,
            "good_p50_ms": good.p50_ms,
            "good_p99_ms": good.p99_ms,
            "good_not_stored": good.requests - good.accepted,
            "forged_refused_per_s": bad.other / bad.duration_s if bad.duration_s else 0.0,
            "forged_accepted": bad.accepted + bad.duplicates,
            "good": good.to_json(),
            "forged": bad.to_json(),
        }

    def _forged_file(self, count: int) -> Path:
        """A body file like `_body_file`'s whose every signature is forged (the flood wraps it)."""
        path = self._body_file(count)
        forged = b"0" * 64
        lines = [forged + line[line.index(b" ") :] for line in path.read_bytes().splitlines()]
        path.write_bytes(b"\n".join(lines) + b"\n")
        return path

    def _tag_rules(self, tag: str) -> Path:
        """Scenario 6's rules with the run's tag id filled in, in a directory of their own."""
        self._files += 1
        out = self.workdir / f"rules-6-{self._files}"
        out.mkdir()
        for template in sorted(TAG_RULES.glob("*.yml")):
            text = string.Template(template.read_text()).substitute(TAG_ID=tag)
            (out / template.name).write_text(text)
        return out

    def _ratelimit_env(self, stack: Stack) -> dict[str, str]:
        """Ours gets the helpdesk's limit as its request budget; the baseline has no such setting."""
        if stack.name == "ours":
            return {"INBOXOPS_RATE_LIMIT": f"{self.plan.ratelimit_per_min}/min"}
        return {}

    def _ratelimit_run(self, stack: Stack, n: int, rate: float, bound: float) -> Run:
        """A fresh simulator (N tickets, limit on), Redis and stack; every ticket updated once."""
        helpdesk = start_helpdesk(self.procs, n)
        path = self.workdir / f"bodies-6-{stack.name}.txt"
        try:
            # Created while the limit is still off: it costs none of the measured budget, and
            # the fixed window starts at the stack's own first request.
            tag = create_tag(helpdesk, "bench-rate-limited")
            rules = self._tag_rules(tag)
            set_rate_limit(helpdesk, self.plan.ratelimit_per_min, "fixed")
            count = Bodies(helpdesk.workspace, self.secret).write_each_ticket(path)
            if count != n:
                raise BenchError(f"scenario 6: the simulator has {count} tickets, not {n}")
            watch = TagWatch(helpdesk.url, tag, skip=len(journal(helpdesk.url)))
            with self._redis(helpdesk, rules) as setup:
                run = self._ratelimit_measure(stack, setup, helpdesk, watch, path, n, rate, bound)
            tickets = tickets_with_tags(helpdesk.url)
        finally:
            path.unlink(missing_ok=True)
            self.procs.stop(helpdesk.proc)
        run["tagged_end"] = sum(
            1 for t in tickets if any(g.get("id") == tag for g in t.get("tags") or ())
        )
        if run["tagged_end"] != len(watch.tagged):
            self.warnings.append(
                f"6 {stack.name}: {run['tagged_end']:,} tickets carry the tag but the journal "
                f"shows {len(watch.tagged):,} tagged by successful calls"
            )
        if watch.truncated:
            self.warnings.append(
                f"6 {stack.name}: the simulator's journal hit its {JOURNAL_LIMIT:,} entry limit; "
                "calls are undercounted"
            )
        return run

    def _ratelimit_measure(
        self,
        stack: Stack,
        setup: Setup,
        helpdesk: Helpdesk,
        watch: TagWatch,
        bodies: Path,
        n: int,
        rate: float,
        bound: float,
    ) -> Run:
        worker = stack.start_worker(self.procs, setup, env=self._ratelimit_env(stack))
        # More worker processes, the way a deployment scales (`--workers`); each stack gets the same.
        extra = [
            stack.start_worker(self.procs, setup, env=self._ratelimit_env(stack))
            for _ in range(self.plan.ratelimit_workers - 1)
        ]
        receiver = stack.start_receiver(self.procs, setup)
        procs = (worker, *extra, receiver.proc, helpdesk.proc)
        r = setup.client()
        # (wall time, events the stack has processed) at each change: does processing keep up
        # with arrivals, or does a backlog build before anything reaches the outbox?
        progress: list[tuple[float, int]] = []
        all_processed: float | None = None
        try:
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            started = time.monotonic()
            sending = self.load.start_once(receiver.url, bodies, n, rate)
            finished = False
            next_read = started
            while True:
                self._check_alive(worker, receiver.proc, helpdesk.proc)
                if all_processed is None:
                    done = stack.processed(r)
                    if not progress or progress[-1][1] != done:
                        progress.append((time.time(), done))
                    if done >= n:
                        all_processed = progress[-1][0]
                now = time.monotonic()
                if now >= next_read:
                    took = watch.poll()
                    if len(watch.tagged) >= n:
                        finished = True
                        break
                    # The journal grows with every call (and every 429): reading it must not
                    # cost the simulator more than about a tenth of its time.
                    next_read = time.monotonic() + max(0.2, min(5.0, 10 * took))
                left = started + bound - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.1, max(0.0, next_read - time.monotonic())) or 0.01)
            stopped_at = time.time()
            sent = self.load.finish_once(sending)
            cpu1 = [cpu_seconds(p.pid) for p in procs]
            self._check_alive(worker, receiver.proc)
        finally:
            r.close()
            self.procs.stop(receiver.proc)
            for proc in (worker, *extra):
                self.procs.stop(proc)
        watch.poll()  # calls that landed while the bound was reached and the stack stopped
        first = sent.first_sent_at
        offer_s = sent.last_sent_at - first
        nominal = n / rate
        if sent.result.accepted != n:
            self.warnings.append(
                f"6 {stack.name}: {sent.result.accepted:,} of {n:,} deliveries accepted (202); "
                f"{sent.result.other} other answers, {sent.result.errors} transport errors"
            )
        if offer_s > nominal * 1.05 + 0.05:
            self.warnings.append(
                f"6 {stack.name}: the generator needed {offer_s:.2f} s to offer {n:,} deliveries "
                f"(nominal {nominal:.2f} s at {rate:,.0f}/s)"
            )
        wall = max(stopped_at - first, 1e-3)
        if finished:
            done = n
            drain: float | None = max(watch.tagged.values()) - first
            rate_done = n / drain if drain and drain > 0 else None
        else:
            # Counted up to the bound only: tags that landed while stopping are not its work.
            done = sum(1 for at in watch.tagged.values() if at <= stopped_at)
            rate_done = done / wall if done else None
            drain = n / rate_done if rate_done else None
        return {
            "tickets": n,
            "offered_per_s": rate,
            "workers": self.plan.ratelimit_workers,
            "finished": finished,
            "bound_s": bound,
            "calls": watch.calls,
            "limited": watch.limited,
            "ok_calls": watch.ok,
            # Successful calls it takes to tag every ticket: scaled up for a stack that did not.
            "calls_needed": watch.ok * n / done if done else None,
            "tagged_journal": len(watch.tagged),
            "tagged_by_bound": done,
            "drain_s": drain,
            "drain_projected": not finished,
            "tickets_per_s": rate_done,
            "window_s": wall,
            "offer_s": offer_s,
            "cpu_s": {p.name: b - a for p, a, b in zip(procs, cpu0, cpu1, strict=True)},
            # Seconds after the first delivery was sent (the first 500 of each).
            "landed": [[round(at - first, 3), k] for at, k in watch.landed[:500]],
            "processed": [[round(t - first, 3), k] for t, k in progress[:500]],
            # When the stack had every event through its rules (None: not within the run;
            # the baseline counts an event only once its call succeeded).
            "all_processed_s": None if all_processed is None else all_processed - first,
            "load": sent.result.to_json(),
        }


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "0": Bench.calibration,
    "1": Bench.intake,
    "1c": Bench.intake_cstar,
    "1d": Bench.intake_durable,
    "2": Bench.latency,
    "3": Bench.whole_box,
    "4": Bench.drain,
    "5": Bench.memory,
    "6": Bench.ratelimit,
    "7": Bench.isolation,
    "8": Bench.flood,
}


#: Run only when asked for by name (`--scenario 1d`): a mode that is not the default, and a
#: minute and a half more of the full run.
OPT_IN = frozenset({"1d"})


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data."""
    return asdict(plan)
