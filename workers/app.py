"""Assemble a worker: rules, vendor clients, outbox, loop guard, consumer, and arq's job table."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import uuid
from typing import Any

import aiohttp
from arq import func
from redis.exceptions import RedisError

from ticketwire import logs, metrics
from ticketwire.accountkey import DEFAULT, account_key, lane_of
from ticketwire.config import Settings
from ticketwire.durability import Durability
from ticketwire.engine import Router, load_rules, plan
from ticketwire.keys import Keys
from ticketwire.ratebudget import RateBudget
from ticketwire.redisconn import connect
from ticketwire.stoptask import stop_task
from ticketwire.trace.writer import TraceWriter
from ticketwire.vendors import registry
from workers.arqredis import redis_settings
from workers.consumer import Consumer
from workers.loopguard import LoopGuard
from workers.metricsserver import start_metrics_server
from workers.outage import REDIS_DOWN, Outage
from workers.outbox import Outbox, OutboxPolicy
from workers.pipeline import Pipeline, VendorRuntime
from workers.reload import RulesReloader, start_reloader
from workers.schedule import build_scheduler, cron_jobs
from workers.ticketstate import TicketState

log = logging.getLogger("ticketwire.worker")

#: How often in-process counters are added to the shared stats hash.
STATS_FLUSH_S = 1.0


def worker_id(dyno: str | None = None) -> str:
    """A readable, unique id: the PaaS dyno name or host, the pid, and a random suffix."""
    base = dyno or socket.gethostname()
    return f"{base}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def claim_lease_s(settings: Settings) -> float:
    """How long an outbox claim lasts unrenewed: a dead worker's write-backs wait that long."""
    # Renewed while a flush runs; short, so a dead worker's claims are soon taken over.
    return max(5.0, settings.http_timeout_s * 1.5 + 2)


def vendor_runtimes(settings: Settings, session: aiohttp.ClientSession) -> dict[str, VendorRuntime]:
    """Each vendor's parser and planner, with its API client where one is configured."""
    configured = registry.clients(settings, session)
    return {
        v.name: VendorRuntime(
            parse=registry.parser(v.name),
            plan=plan,
            client=configured.get(v.name),
            accounts={
                name: configured[key]
                for name in settings.accounts(v.name)
                if name != DEFAULT and (key := account_key(v.name, name)) in configured
            },
        )
        for v in registry.active().vendors
    }


async def ping(ctx: dict[str, Any]) -> str:
    """arq job: answer "pong"."""
    # arq refuses to run a worker with no job, and without scheduled rules this worker has none
    # of its own: its work runs in the services started with it, not in jobs.
    return "pong"


def _dumps(obj: Any) -> bytes:
    # JSON, not pickle: jobs stay readable, survive deploys and cost a fraction to encode.
    return json.dumps(obj, separators=(",", ":")).encode()


def _loads(raw: bytes) -> Any:
    return json.loads(raw)


def worker_options(
    settings: Settings, router: Router | None = None, *, configure_logging: bool = False
) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` (also what `WorkerSettings` exposes)."""
    assert settings.redis_url, "REDIS_URL is required"
    keys = Keys(settings.key_prefix)

    async def startup(ctx: dict[str, Any]) -> None:
        if configure_logging:
            logs.configure_logging(settings)
        await start_services(ctx, settings, router)

    async def shutdown(ctx: dict[str, Any]) -> None:
        await stop_services(ctx)

    return {
        "functions": [func(ping, name="ping")],
        "cron_jobs": cron_jobs(router),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings),
        "queue_name": keys.arq_queue,
        "job_serializer": _dumps,
        "job_deserializer": _loads,
        # No result copies: the outbox and the dead-letter stream keep what matters.
        "keep_result": 0,
        "max_jobs": 50,
        "job_timeout": max(60.0, settings.http_timeout_s * 6),
        "health_check_interval": 60,
        # Read by `workers.arqhost` when SIGTERM comes (arq passes its ctx to our hooks too).
        "ctx": {"shutdown_grace_s": settings.shutdown_grace_s},
    }


async def start_services(ctx: dict[str, Any], settings: Settings, router: Router | None) -> None:
    """arq on_startup: open connections, load rules, start the stream consumer."""
    assert settings.redis_url
    keys = Keys(settings.key_prefix)
    if settings.metrics_port and "metrics_server" not in ctx:
        # Up before everything else and kept across a start retried after a Redis outage.
        ctx["metrics_server"] = await start_metrics_server(
            settings.redis_url,
            keys,
            settings.partitions,
            settings.metrics_port,
            sentinel_password=settings.sentinel_password,
        )
    wid = worker_id(settings.dyno)
    redis = connect(settings.redis_url, sentinel_password=settings.sentinel_password)
    session = aiohttp.ClientSession()
    # arq's per-minute job exists only if the rules had time-based ones when the worker started.
    scheduled_job = bool(cron_jobs(router))
    if router is None:
        router = load_rules(settings.rules_dir)
    vendors = vendor_runtimes(settings, session)
    # Every account's client by account key (`vendor`, `vendor@account`): each write-back goes
    # through its event's account, under that account's own budget.
    clients = {name: v.client for name, v in vendors.items() if v.client is not None}
    for name, v in vendors.items():
        clients.update({account_key(name, a): c for a, c in v.accounts.items()})
    for key, (scope, limits) in registry.budget_scopes(settings).items():
        if key in clients:
            clients[key].budget = RateBudget(redis, keys.prefix, scope, limits)
    # Scheduled rules list tickets of each vendor's default account only.
    defaults = {name: v.client for name, v in vendors.items() if v.client is not None}
    # Traces are written in the background; with retention 0 nothing is recorded.
    trace = TraceWriter(
        redis, keys, retention_s=settings.trace_retention_s, log_max=settings.trace_max
    )
    guard = LoopGuard(
        redis,
        keys,
        echo_window_s=settings.echo_window_s,
        fuse_per_hour=settings.fuse_per_hour,
        fuse_window_s=settings.fuse_window_s,
        memory_ttl_s=settings.rule_memory_s,
    )
    order = {rule.name: i for i, rule in enumerate(router.rules)}
    durability = Durability.of(settings)
    if durability is not None:
        await durability.probe(redis)
        log.info(
            "write-back durability %s (else it waits)",
            durability.describe("a call goes after its claim or checkpoint"),
        )
    outbox = Outbox(
        redis,
        keys,
        clients,
        owner=wid,
        specs=registry.batch_specs(settings),
        rank=lambda rule: order.get(rule, len(order)),
        policy=OutboxPolicy(
            max_attempts=settings.max_attempts,
            backoff_base_s=settings.backoff_s,
            lease_s=claim_lease_s(settings),
            planned_ttl_s=settings.dedupe_ttl_s,
            window_s=settings.coalesce_window_s,
        ),
        # What we wrote, so the webhook it causes is recognised as our own echo.
        on_written=guard.wrote,
        trace=trace,
        durability=durability,
    )
    state = TicketState(redis, keys, ttl_s=settings.state_ttl_s)
    pipeline = Pipeline(router, vendors, outbox, guard, state=state, trace=trace)
    consumer = Consumer(
        redis,
        keys,
        pipeline.handle,
        worker_id=wid,
        partitions=settings.partitions,
        concurrency=settings.worker_concurrency,
        lease_ttl=settings.lease_ttl_s,
        retention_ms=int(settings.retention_s * 1000),
        lanes=[
            lane_of(v.name, name)
            for v in registry.active().vendors
            for name in settings.accounts(v.name)
            if name != DEFAULT
        ],
    )
    try:
        await consumer.start()
    except BaseException:
        # Nothing else started yet: close what was opened, so a start retried after a Redis
        # outage (see `workers.arqhost`) leaves nothing behind.
        await session.close()
        await redis.aclose()
        raise
    outbox.start()
    trace.start()
    metrics.track_consumer(consumer)
    ctx.update(
        trace=trace,
        tw_redis=redis,
        tw_keys=keys,
        session=session,
        outbox=outbox,
        pipeline=pipeline,
        consumer=consumer,
        stats_task=asyncio.create_task(_flush_stats(redis, keys, pipeline)),
        scheduler=build_scheduler(
            settings, router, redis, keys, defaults, outbox, guard, owner=wid
        ),
    )
    log.info(
        "worker %s started: %d rules, %d partitions, concurrency %d",
        wid,
        len(router.rules),
        settings.partitions,
        settings.worker_concurrency,
    )
    ctx["reloader"] = await start_reloader(
        ctx, settings, router, redis, keys, wid, order, scheduled_job=scheduled_job
    )
    # What start-up made (modules, rules, clients) lives as long as the process: kept out of
    # the collector's full passes, which otherwise scan it again and again while events are
    # handled (bench scenario 4, worker CPU per event: 197 → 171 µs, traces on 248 → 189 µs).
    gc.freeze()


async def stop_services(ctx: dict[str, Any]) -> None:
    """arq on_shutdown: finish in-flight events, hand partitions over, close connections."""
    reloader: RulesReloader | None = ctx.pop("reloader", None)
    if reloader is not None:
        await reloader.stop()
    consumer: Consumer | None = ctx.get("consumer")
    if consumer is not None:
        metrics.untrack_consumer(consumer)
        await consumer.stop()
    outbox: Outbox | None = ctx.get("outbox")
    if outbox is not None:
        await outbox.stop()
    trace: TraceWriter | None = ctx.get("trace")
    if trace is not None:
        # What the stopped consumer and flusher recorded last is written now.
        await trace.stop()
    task: asyncio.Task[None] | None = ctx.get("stats_task")
    if task is not None:
        await stop_task(task, "the stats flusher")
        try:
            await _flush_once(ctx["tw_redis"], ctx["tw_keys"], ctx["pipeline"])
        except (RedisError, OSError) as exc:
            # Stopping while Redis is away: the counters since it left are lost, nothing else.
            log.warning("could not flush stats at shutdown: %s", exc)
    if "session" in ctx:
        await ctx["session"].close()
    if "tw_redis" in ctx:
        await ctx["tw_redis"].aclose()
    if "metrics_server" in ctx:
        await ctx.pop("metrics_server").cleanup()


async def _flush_stats(redis: Any, keys: Keys, pipeline: Pipeline) -> None:
    outage = Outage("stats", log)
    while True:
        await asyncio.sleep(STATS_FLUSH_S)
        try:
            await _flush_once(redis, keys, pipeline)
            outage.recovered()
        except REDIS_DOWN as exc:
            outage.failed(exc)
        except Exception as exc:  # noqa: BLE001 - counters must never stop the worker
            log.warning("could not flush stats: %s", exc)


async def _flush_once(redis: Any, keys: Keys, pipeline: Pipeline) -> None:
    counts, pipeline.counters = pipeline.counters, type(pipeline.counters)()
    counts.update(pipeline.outbox.counters)
    pipeline.outbox.counters.clear()
    if counts:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for name, n in counts.items():
                    pipe.hincrby(keys.stats, name, n)
                await pipe.execute()
        except BaseException:
            # Kept for the next flush: an outage delays the counters, it does not lose them.
            pipeline.counters.update(counts)
            raise
