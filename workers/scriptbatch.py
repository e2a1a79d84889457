"""Send the Lua script calls that concurrent events make in one loop turn as one pipelined write."""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

Arg = str | int | float | bytes

#: One client's batcher, shared by everything that registers scripts on it, so that the ticket
#: state of one event and the outbox push of another ride in the same write.
_BATCHERS: weakref.WeakKeyDictionary[Redis, ScriptBatch] = weakref.WeakKeyDictionary()


def batched(redis: Redis) -> ScriptBatch:
    """The script batcher of `redis` (one per client)."""
    batch = _BATCHERS.get(redis)
    if batch is None:
        batch = _BATCHERS[redis] = ScriptBatch(redis)
    return batch


@dataclass(slots=True)
class _Call:
    script: BatchedScript
    keys: Sequence[Arg]
    args: Sequence[Arg]
    future: asyncio.Future[Any] = field(repr=False)


class BatchedScript:
    """A Lua script called like redis-py's `AsyncScript` (`await s(keys=…, args=…)`), batched."""

    __slots__ = ("_batch", "sha", "text")

    def __init__(self, batch: ScriptBatch, text: str) -> None:
        self._batch = batch
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> asyncio.Future[Any]:
        """Queue one call; the future resolves to the script's reply or its error."""
        return self._batch.call(self, keys, args)


class ScriptBatch:
    """Collect script calls made while the loop is busy; send each turn's calls as one pipeline.

    A worker with many events in flight otherwise pays, per call, a connection checkout with its
    health probe, a packed command and a socket write. Batching by loop turn adds no delay:
    calls are sent on the next turn, before any reply could have arrived anyway. A script the
    server does not know (restarted, or flushed) is loaded and its calls re-sent.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queued: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.calls = 0

    def register(self, text: str) -> BatchedScript:
        """A batched handle on the script `text`."""
        return BatchedScript(self, text)

    def call(
        self, script: BatchedScript, keys: Sequence[Arg], args: Sequence[Arg]
    ) -> asyncio.Future[Any]:
        """Queue `script(keys, args)` for this turn's batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append(_Call(script, keys, args, future))
        return future

    def _flush(self) -> None:
        calls, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Call]) -> None:
        self.batches += 1
        self.calls += len(calls)
        try:
            replies = await self._execute(calls)
            missing = [
                c for c, r in zip(calls, replies, strict=True) if isinstance(r, NoScriptError)
            ]
            if missing:
                for text in {c.script.text for c in missing}:
                    await self._redis.script_load(text)
                again = iter(await self._execute(missing))
                replies = [next(again) if isinstance(r, NoScriptError) else r for r in replies]
        except asyncio.CancelledError:
            for c in calls:
                c.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every caller, not swallowed
            # Every caller learns of the failure (a Redis outage is retried by the caller).
            for c in calls:
                if not c.future.done():
                    c.future.set_exception(exc)
            return
        for c, reply in zip(calls, replies, strict=True):
            if c.future.done():  # the caller was cancelled
                continue
            if isinstance(reply, Exception):
                c.future.set_exception(reply)
            else:
                c.future.set_result(reply)

    async def _execute(self, calls: Sequence[_Call]) -> list[Any]:
        if len(calls) == 1:
            c = calls[0]
            try:
                return [await self._evalsha(c)]
            except NoScriptError as exc:
                return [exc]
        pipe = self._redis.pipeline(transaction=False)
        for c in calls:
            pipe.execute_command("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
        return list(await pipe.execute(raise_on_error=False))

    async def _evalsha(self, c: _Call) -> Any:
        # redis-py leaves execute_command untyped; the reply is the script's, as for any call.
        execute: Callable[..., Awaitable[Any]] = self._redis.execute_command
        return await execute("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
