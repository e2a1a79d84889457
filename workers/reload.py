"""Reload rules in running workers, and keep every worker on the same rules.

The rules in force are named by their fingerprint (a digest of the rule files, see
`ticketwire.engine.ruleset`). Redis holds the fingerprint every worker should run (`tw:rules`);
a worker sets it when it starts and when it reloads on SIGHUP. Every worker polls it each
second: when it names other rules than the worker runs, the worker reads its own rule files and
switches only if they have exactly that fingerprint and load without an error. A worker whose
files differ, or do not load, keeps the rules it runs and says so in its log. Each worker records
what it runs (and any refusal) in `tw:rules:workers`, which `ticketwire rules` prints.

Switching hands the new router to the pipeline, which reads it once per event: an event being
handled finishes with the rules it started with, the next one runs the new rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticketwire.config import Settings
from ticketwire.engine import Router
from ticketwire.engine.ruleset import RuleSet, load_rule_set, rules_fingerprint
from ticketwire.keys import Keys
from ticketwire.stoptask import stop_task

log = logging.getLogger("ticketwire.worker")

#: How often a worker looks for newly published rules.
POLL_S = 1.0
#: How often a worker re-records what it runs, so `ticketwire rules` can tell it is current.
STATUS_EVERY_S = 10.0
#: A worker's record not renewed for this long belongs to a worker that died; it is removed.
FORGET_AFTER_S = 3600.0
#: How often `ticketwire up` looks at the rules directory.
WATCH_S = 0.25


@dataclass(frozen=True)
class WorkerRules:
    """What one worker runs, as recorded in `tw:rules:workers`."""

    worker: str
    fingerprint: str
    rules: int
    at_ms: int
    #: Why the worker does not run the published rules ('' when it does).
    refused: str = ""
    #: The names of the rules it runs, in order (what `ticketwire rules pause` accepts).
    names: tuple[str, ...] = ()

    def to_json(self) -> str:
        """The recorded form."""
        return json.dumps(
            {"fingerprint": self.fingerprint, "rules": self.rules, "at": self.at_ms}
            | ({"refused": self.refused} if self.refused else {})
            | {"names": list(self.names)}
        )

    @classmethod
    def from_json(cls, worker: str, raw: str | bytes) -> WorkerRules:
        """Read a recorded entry; an unreadable one reads as unknown rules."""
        try:
            data = json.loads(raw)
            return cls(
                worker,
                str(data["fingerprint"]),
                int(data["rules"]),
                int(data["at"]),
                str(data.get("refused", "")),
                tuple(str(n) for n in data.get("names", ())),
            )
        except (ValueError, KeyError, TypeError):
            return cls(worker, "?", 0, 0, "unreadable record")


class RulesReloader:
    """One worker's side of rule reloading: SIGHUP, the published fingerprint, its status."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        rules_dir: Path,
        *,
        worker_id: str,
        running: RuleSet,
        apply: Callable[[Router], None],
        scheduled_job: bool = True,
        pause: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        assert running.router is not None, "a worker starts only with rules that load"
        self.rules_dir = rules_dir
        self.running = running
        self._redis = redis
        self._keys = keys
        self._id = worker_id
        self._apply = apply
        self._pause = pause
        #: The rules paused in `tw:rules:paused` as last read (see `workers.pause`).
        self.paused: frozenset[str] = frozenset()
        # A worker started with no time-based rule has no per-minute job to run new ones.
        self._scheduled_job = scheduled_job
        self._lock = asyncio.Lock()
        self._refused = ""
        # (published, files) last refused, so a refusal is logged once, not every second.
        self._refused_for: tuple[str, str] = ("", "")
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[bool]] = set()
        self._sighup = False

    async def start(self) -> None:
        """Publish the rules this worker starts with, then follow what is published."""
        # The handler goes in first: once the line below is logged, a SIGHUP must reload, not
        # end the process with the signal's default action.
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
                self._sighup = True
        log.info("worker %s runs %s from %s", self._id, self.running.describe(), self.rules_dir)
        with contextlib.suppress(RedisError, OSError):
            await self._publish()
        # Paused rules are skipped from the first event on, not from the first poll.
        with contextlib.suppress(RedisError, OSError):
            await self._published()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Stop following and remove this worker's record."""
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._task is not None:
            await stop_task(self._task, "the rules follower")
            self._task = None
        with contextlib.suppress(RedisError, OSError):
            await cast("Awaitable[int]", self._redis.hdel(self._keys.rules_workers, self._id))

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        # The loop keeps only a weak reference to a task; hold it until it is done.
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def reload(self, why: str) -> bool:
        """Check this worker's rule files; if they load, run them and publish them to every worker.

        Returns False, keeping the rules it runs, when a file has an error.
        """
        async with self._lock:
            loaded = load_rule_set(self.rules_dir)
            if not loaded.ok:
                self._refuse_errors(loaded, why)
                return False
            if loaded.fingerprint == self.running.fingerprint:
                log.info("rules reload (%s): %s unchanged", why, loaded.describe())
            else:
                self._switch(loaded, why)
            self._refused = ""
            try:
                await self._publish()
            except (RedisError, OSError) as exc:
                log.warning(
                    "rules reload (%s): could not publish %s to the other workers (%s); "
                    "send SIGHUP again once Redis answers",
                    why,
                    loaded.describe(),
                    exc,
                )
            return True

    async def _follow(self) -> None:
        last_status = 0.0
        while True:
            await asyncio.sleep(POLL_S)
            try:
                wanted = await self._published()
                if wanted and wanted != self.running.fingerprint:
                    await self._catch_up()
                if time.monotonic() - last_status >= STATUS_EVERY_S:
                    await self._record()
                    await self._prune()
                    last_status = time.monotonic()
            except (RedisError, OSError) as exc:
                log.debug("rules: Redis unavailable (%s); the worker keeps its rules", exc)
            except Exception:  # following the published rules must not stop on one failure
                log.exception("rules: could not follow the published rules; trying again")

    async def _published(self) -> str:
        """The published fingerprint; the paused rules, read in the same round trip, are applied."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._keys.rules, "fingerprint")
            pipe.hkeys(self._keys.rules_paused)
            raw, paused = await pipe.execute()
        self._follow_pauses(frozenset(_text(n) for n in paused))
        return _text(raw) if raw is not None else ""

    def _follow_pauses(self, paused: frozenset[str]) -> None:
        if paused == self.paused:
            return
        for name in sorted(paused - self.paused):
            log.info("rule %s paused: skipped from the next event on until resumed", name)
        for name in sorted(self.paused - paused):
            log.info("rule %s resumed: runs again from the next event on", name)
        self.paused = paused
        if self._pause is not None:
            self._pause(paused)

    async def _catch_up(self) -> None:
        """Other rules were published: switch to them if this worker's files are those."""
        async with self._lock:
            # Read again under the lock: a reload of this worker may have published meanwhile.
            wanted = await self._published()
            if not wanted or wanted == self.running.fingerprint:
                return
            files = rules_fingerprint(self.rules_dir)
            if (wanted, files) == self._refused_for:
                return
            self._refused_for = (wanted, files)
            if files != wanted:
                self._refused = f"its rule files are {files}, not the published {wanted}"
                log.warning(
                    "rules %s were published, but this worker's files in %s are %s: keeping "
                    "%s. Deploy the same rule files to every worker, then send SIGHUP to one",
                    wanted,
                    self.rules_dir,
                    files,
                    self.running.describe(),
                )
                await self._record()
                return
            loaded = load_rule_set(self.rules_dir)
            if not loaded.ok:
                self._refuse_errors(loaded, f"published {wanted}")
                await self._record()
                return
            self._switch(loaded, "published by another worker")
            self._refused = ""
            await self._record()

    def _switch(self, loaded: RuleSet, why: str) -> None:
        assert loaded.router is not None
        self._apply(loaded.router)
        log.info(
            "rules reloaded (%s): %s, was %s; events from now on run the new rules",
            why,
            loaded.describe(),
            self.running.fingerprint,
        )
        if not self._scheduled_job and any(r.schedule for r in loaded.router.rules):
            log.warning(
                "rules reloaded: this worker started without time-based rules and has no "
                "per-minute job; the new time-based rules run after a restart"
            )
        self.running = loaded

    def _refuse_errors(self, loaded: RuleSet, why: str) -> None:
        self._refused = f"{len(loaded.errors)} error(s) in rules {loaded.fingerprint}"
        lines = "".join(f"\n  {err}" for err in loaded.errors)
        log.error(
            "rules reload (%s) refused: %d error(s) in %s; keeping %s:%s",
            why,
            len(loaded.errors),
            self.rules_dir,
            self.running.describe(),
            lines,
        )

    async def _publish(self) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._keys.rules,
                mapping={
                    "fingerprint": self.running.fingerprint,
                    "by": self._id,
                    "at": str(_now_ms()),
                },
            )
            pipe.hset(self._keys.rules_workers, self._id, self._status().to_json())
            await pipe.execute()

    async def _record(self) -> None:
        status = self._status().to_json()
        await cast("Awaitable[int]", self._redis.hset(self._keys.rules_workers, self._id, status))

    async def _prune(self) -> None:
        """Forget the records of workers that died without removing theirs."""
        recorded = await cast(
            "Awaitable[dict[bytes, bytes]]", self._redis.hgetall(self._keys.rules_workers)
        )
        gone = [
            _text(w)
            for w, raw in recorded.items()
            if WorkerRules.from_json(_text(w), raw).at_ms < _now_ms() - FORGET_AFTER_S * 1000
        ]
        if gone:
            await cast("Awaitable[int]", self._redis.hdel(self._keys.rules_workers, *gone))

    def _status(self) -> WorkerRules:
        router = self.running.router
        return WorkerRules(
            self._id,
            self.running.fingerprint,
            len(router.rules) if router is not None else 0,
            _now_ms(),
            self._refused,
            tuple(r.name for r in router.rules) if router is not None else (),
        )


async def start_reloader(
    ctx: Mapping[str, Any],
    settings: Settings,
    router: Router,
    redis: Redis,
    keys: Keys,
    worker_id: str,
    order: dict[str, int],
    *,
    scheduled_job: bool,
) -> RulesReloader:
    """Start following the published rules for a worker whose services are in `ctx`."""

    def apply(new: Router) -> None:
        # The outbox ranks conflicting writes by rule order; no await between these lines.
        order.clear()
        order.update({rule.name: i for i, rule in enumerate(new.rules)})
        ctx["pipeline"].use_rules(new)
        ctx["scheduler"].use_rules(new)

    def pause(paused: frozenset[str]) -> None:
        ctx["pipeline"].paused = paused
        ctx["scheduler"].paused = paused

    reloader = RulesReloader(
        redis,
        keys,
        settings.rules_dir,
        worker_id=worker_id,
        running=RuleSet(router, (), rules_fingerprint(settings.rules_dir)),
        apply=apply,
        scheduled_job=scheduled_job,
        pause=pause,
    )
    await reloader.start()
    return reloader


async def rules_in_force(redis: Redis, keys: Keys) -> tuple[Mapping[str, str], list[WorkerRules]]:
    """The published rules, and what each live worker runs (workers that stopped left out)."""
    now = _now_ms()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.rules)
        pipe.hgetall(keys.rules_workers)
        pipe.zrangebyscore(keys.workers, now, "+inf")
        published, recorded, live = await pipe.execute()
    alive = {_text(w) for w in live}
    workers = [
        WorkerRules.from_json(_text(w), raw)
        for w, raw in recorded.items()
        # A worker that heartbeats, or one that recorded recently (it may be between beats).
        if _text(w) in alive
        or WorkerRules.from_json(_text(w), raw).at_ms > now - 3 * STATUS_EVERY_S * 1000
    ]
    return {_text(k): _text(v) for k, v in published.items()}, sorted(
        workers, key=lambda w: w.worker
    )


@contextlib.asynccontextmanager
async def watch_rules(ctx: Mapping[str, Any]) -> AsyncIterator[None]:
    """While open, reload the worker's rules (`ctx["reloader"]`) when a rule file changes."""
    task = asyncio.create_task(_watch(ctx))
    try:
        yield
    finally:
        await stop_task(task, "the rules directory watcher")


async def _watch(ctx: Mapping[str, Any]) -> None:
    seen, tried = "", ""
    while True:
        await asyncio.sleep(WATCH_S)
        reloader: RulesReloader | None = ctx.get("reloader")
        if reloader is None:
            continue  # the worker is still starting, and loads the files as they are then
        files = rules_fingerprint(reloader.rules_dir)
        # The same files on two looks in a row: an editor or a copy has finished writing.
        settled, seen = files == seen, files
        if files == reloader.running.fingerprint:
            tried = ""
        elif settled and files != tried:
            tried = files
            try:
                await reloader.reload("a file in the rules directory changed")
            except Exception:  # the watcher must outlive one failed reload
                log.exception("rules: reloading %s failed", reloader.rules_dir)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
