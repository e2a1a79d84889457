"""The arq worker hosting a ticketwire worker process, made to ride out Redis outages of any length.

arq's own loop (poll the job queue, record health, queue the cron job) raises on a lost Redis
connection and the process exits; so does its start once `conn_retries` connection attempts
failed. This subclass waits instead, at start and at every turn of the loop: it logs once when
Redis goes away, retries with a bounded backoff (at most 5 s between tries), and logs the
outage's length when Redis answers again, then carries on where it was. The stream consumer and
the outbox flusher ride out outages on their own; events stay stored in Redis meanwhile.
`in_process_worker` runs the same worker inside another program's event loop (`ticketwire up`,
the rules test harness).

It overrides arq 0.28's loop turn (`_poll_iteration`) and reads some of its private state; arq
is pinned to 0.28 in pyproject.toml, and tests/test_redis_outage.py fails if that changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

from arq import worker as arq_worker
from arq.connections import ArqRedis

from ticketwire.config import Settings
from ticketwire.engine import Router
from ticketwire.stoptask import stop_task
from workers.app import stop_services, worker_options
from workers.arqredis import open_pool
from workers.outage import REDIS_DOWN, Outage
from workers.shutdown import MARGIN_S, WATCHDOG_S, start_watchdog, stop_worker

log = logging.getLogger("ticketwire.worker")

#: TICKETWIRE_SHUTDOWN_GRACE's default, for a worker built without our options.
DEFAULT_GRACE_S = 25.0
#: Bound on each of arq's own Redis calls at close.
CLOSE_CALL_S = 2.0
_AT_CLOSE: tuple[type[BaseException], ...] = (*REDIS_DOWN, TimeoutError)


class Worker(arq_worker.Worker):
    """`arq.Worker` that waits out Redis outages at start and in its loop instead of exiting.

    SIGTERM and SIGINT stop it gracefully (`workers.shutdown`) instead of arq's way, which
    cancels running jobs at once and waits for the services with no bound.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outage = Outage("worker", log)
        #: Loop time of the stop signal, and its name; None while running.
        self._stop_at: float | None = None
        self._stop_signal = ""
        self._ending: asyncio.Task[None] | None = None
        if self._handle_signals:
            # Replaces arq's handlers, which the base class has just installed.
            self._add_signal_handler(signal.SIGINT, self._on_stop_signal)
            self._add_signal_handler(signal.SIGTERM, self._on_stop_signal)

    def _on_stop_signal(self, signum: signal.Signals) -> None:
        sig = signal.Signals(signum)
        if self._stop_at is not None:
            log.info("worker: %s while stopping; the stop goes on (SIGKILL ends it now)", sig.name)
            return
        self._stop_at = self.loop.time()
        self._stop_signal = sig.name
        grace = float(self.ctx.get("shutdown_grace_s", DEFAULT_GRACE_S))
        start_watchdog(grace + MARGIN_S + WATCHDOG_S)
        # No new arq job; arq's loop ends and `run` calls `close`, where the stop happens.
        self.allow_pick_jobs = False
        if self.main_task is not None:
            # Cancelled again if a Redis call swallows it (see `ticketwire.stoptask`).
            self._ending = self.loop.create_task(stop_task(self.main_task, "the worker's loop"))

    async def main(self) -> None:
        """Connect (waiting for Redis as long as it takes), start, then run arq's loop."""
        while True:
            if self._pool is None:
                self._pool = await self._connect()
            try:
                await super().main()
                return
            except REDIS_DOWN as exc:
                # Lost while starting (arq's INFO call, the consumer's first calls): the
                # services started nothing that stays behind, so starting again is safe.
                await asyncio.sleep(self._outage.failed(exc))

    async def _connect(self) -> ArqRedis:
        assert self.redis_settings is not None
        # One attempt per call: the waiting, its backoff and its log lines are ours.
        settings = dataclasses.replace(self.redis_settings, conn_retries=0)
        while True:
            try:
                pool = await open_pool(
                    settings,
                    job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                )
            except REDIS_DOWN as exc:
                await asyncio.sleep(self._outage.failed(exc))
                continue
            self._outage.recovered()
            return pool

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_DOWN as exc:
            await asyncio.sleep(self._outage.failed(exc))
            return
        if self._outage.recovered() is not None:
            # The health key may have expired during the outage: write it again now.
            self._last_health_check = 0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's `start_jobs`, giving back the job slot it took when Redis fails mid-start."""
        try:
            await super().start_jobs(job_ids)
        except REDIS_DOWN:
            # arq counts the job it was starting as running before its Redis calls and does
            # not undo that when they raise: without this, every outage would leak a slot.
            self._release_sem_dec_counter_on_complete()
            raise

    async def close(self) -> None:
        """arq's `close`, except that a Redis still down does not skip the services' shutdown.

        After a stop signal: the graceful stop, bounded by the grace period (`workers.shutdown`).
        """
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        end: float | None = None
        if self._stop_at is not None:
            grace = float(self.ctx.get("shutdown_grace_s", DEFAULT_GRACE_S))
            end = self._stop_at + grace + MARGIN_S
            await stop_worker(
                self.ctx,
                [t for t in self.tasks.values() if not t.done()],
                grace_s=grace,
                started=self._stop_at,
                signal_name=self._stop_signal,
            )
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

        def bound() -> float:
            # Each of arq's own calls, and within what is left of the stop's margin.
            left = CLOSE_CALL_S if end is None else end - self.loop.time()
            return max(0.1, min(CLOSE_CALL_S, left))

        try:
            async with asyncio.timeout(bound()):
                await self.pool.delete(self.health_check_key)
        except _AT_CLOSE as exc:
            log.warning(
                "worker: redis unavailable at shutdown (%s); health key left to expire", exc
            )
        if self.on_shutdown and end is None:
            # After a stop signal, `stop_worker` has run it already.
            await self.on_shutdown(self.ctx)
        with contextlib.suppress(*_AT_CLOSE):
            async with asyncio.timeout(bound()):
                await self.pool.aclose(close_connection_pool=True)
        self._pool = None


def create_worker(settings_cls: Any, **kwargs: Any) -> Worker:
    """What `arq <settings>` builds: this worker, from the settings class's options."""
    return Worker(**{**arq_worker.get_kwargs(settings_cls), **kwargs})


def install() -> None:
    """Have arq's command line build this worker (it has no option to choose the class)."""
    arq_worker.create_worker = create_worker


@contextlib.asynccontextmanager
async def in_process_worker(
    settings: Settings,
    router: Router | None = None,
    *,
    started_within: float | None = None,
    **options: Any,
) -> AsyncIterator[Worker]:
    """This worker as a task of the running event loop (`ticketwire up`, tests), stopped on exit.

    `options` override `worker_options`. With `started_within`, wait that many seconds for the
    services to start and raise if they do not; without, return at once, as `up` does, so a
    Redis that is still down is waited for in the background.
    """
    worker = Worker(**{**worker_options(settings, router), **options}, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        if started_within is not None:
            await _started(worker, task, started_within)
        yield worker
    finally:
        # End the worker's start or poll loop first: a stop during its start would otherwise
        # find no services yet, and those it started after would run on, unstopped.
        with contextlib.suppress(Exception):
            await stop_task(task, "the worker's start or poll loop")
        # Then our services (arq's close() cancels running jobs before its on_shutdown).
        await stop_services(worker.ctx)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker.close()


async def _started(worker: Worker, task: asyncio.Task[None], within: float) -> None:
    """Return once the worker's services run (its consumer exists); raise if it stops or stalls."""
    deadline = time.monotonic() + within
    while "consumer" not in worker.ctx:
        if task.done():
            task.result()
            raise RuntimeError("the worker stopped while starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not start within {within:g} s")
        # The poll of a condition wait bounded by the deadline above.
        await asyncio.sleep(0.02)
