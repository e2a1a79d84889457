"""A receiver process stopped with SIGTERM while a batch is in flight: the requests in flight are
answered 2xx and stored, new ones 503 with Retry-After, no 2xx for what is not stored, exit 0."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.conftest import wait_for
from tests.procs import BIN, free_port, spawn
from tests.test_intake_hostile import Answer, Receiver, body_of, document, receiver_env, signature
from tests.test_processes import _ready
from ticketwire.keys import Keys


@pytest.fixture
async def held(redis_url: str) -> AsyncIterator[Redis]:
    """A connection that pauses the server's writes; unpaused whatever the test does."""
    client: Redis = Redis.from_url(redis_url)
    yield client
    await client.execute_command("CLIENT", "UNPAUSE")
    await client.aclose()


async def start(redis_url: str, **env: str) -> Receiver:
    keys = Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")
    port = free_port()
    proc = await spawn(
        [str(BIN / "python"), "-m", "receiver"], receiver_env(redis_url, keys, port, **env)
    )
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    await wait_for(lambda: _ready(session, port), timeout=30, message="receiver ready")
    return Receiver(proc, port, session, Redis.from_url(redis_url), keys)


async def send(rx: Receiver, n: int, session: aiohttp.ClientSession | None = None) -> Answer:
    body = body_of(document("inboxops", n))
    headers = {"Content-Type": "application/json", **signature("inboxops", body)}
    async with (session or rx.session).post(rx.url("inboxops"), data=body, headers=headers) as r:
        return Answer(r.status, dict(r.headers), await r.text())


async def stored_ids(rx: Receiver) -> set[str]:
    found = set()
    for p in range(4):
        for _, fields in await rx.redis.xrange(rx.keys.stream(p)):
            found.add(fields[b"m"].decode())
    return {
        eid for eid in (f"evt-inboxops-{n}" for n in range(100)) if any(eid in m for m in found)
    }


async def close(rx: Receiver) -> None:
    await rx.session.close()
    async for key in rx.redis.scan_iter(match=f"{rx.keys.prefix}*", count=1000):
        await rx.redis.delete(key)
    await rx.redis.aclose()


@pytest.mark.slow
async def test_sigterm_answers_what_is_in_flight_and_refuses_the_rest(
    redis_url: str, held: Redis
) -> None:
    rx = await start(redis_url, TICKETWIRE_SHUTDOWN_GRACE="10s", TICKETWIRE_DRAIN_DELAY="1s")
    # A keep-alive connection opened before the signal, used again after it.
    kept = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    try:
        assert (await send(rx, 90, kept)).status == 202
        # Every write waits: the next batch stays in flight until the pause ends.
        await held.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
        in_flight = [asyncio.create_task(send(rx, n)) for n in range(10)]
        await wait_for(
            lambda: rx.proc.output.count("received inboxops") >= 11,
            message="the deliveries to wait for their store",
        )
        signalled = time.monotonic()
        rx.proc.proc.send_signal(signal.SIGTERM)
        await rx.proc.wait_output("receiver stopping on SIGTERM")

        late = [await send(rx, n) for n in range(20, 25)]
        again = await send(rx, 91, kept)
        for answer in [*late, again]:
            assert answer.status == 503, answer
            assert answer.json()["error"] == "shutting_down"
            assert answer.headers["Retry-After"] == "5"
            assert answer.headers["Connection"] == "close"
        async with rx.session.get(f"http://127.0.0.1:{rx.port}/readyz") as r:
            assert r.status == 503 and (await r.json())["status"] == "stopping"
        async with rx.session.get(f"http://127.0.0.1:{rx.port}/healthz") as r:
            assert r.status == 200
        assert not any(t.done() for t in in_flight), "answered before their store completed"

        await held.execute_command("CLIENT", "UNPAUSE")
        answers = await asyncio.gather(*in_flight)
        assert [a.status for a in answers] == [202] * 10, answers
        assert await rx.proc.finish(timeout=15) == 0
        assert time.monotonic() - signalled < 10
        ids = await stored_ids(rx)
        assert ids == {f"evt-inboxops-{n}" for n in [*range(10), 90]}
        assert "receiver stopped after" in rx.proc.output
    finally:
        await kept.close()
        await rx.proc.stop(signal.SIGKILL, timeout=5)
        await close(rx)


@pytest.mark.slow
async def test_a_store_still_waiting_when_the_grace_period_ends_is_answered_503_not_dropped(
    redis_url: str, held: Redis
) -> None:
    rx = await start(redis_url, TICKETWIRE_SHUTDOWN_GRACE="2s")
    try:
        await held.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
        in_flight = [asyncio.create_task(send(rx, n)) for n in range(5)]
        await wait_for(
            lambda: rx.proc.output.count("received inboxops") >= 5,
            message="the deliveries to wait for their store",
        )
        signalled = time.monotonic()
        rx.proc.proc.send_signal(signal.SIGTERM)
        # Each request gets a complete answer, never a 2xx: its store was not known to complete
        # (a batch that reaches Redis after all is answered `duplicate` when the sender retries).
        answers = await asyncio.gather(*in_flight)
        assert [a.status for a in answers] == [503] * 5, answers
        assert {a.json()["error"] for a in answers} == {"shutting_down"}
        assert await rx.proc.finish(timeout=10) == 0
        assert time.monotonic() - signalled < 2.5
    finally:
        await held.execute_command("CLIENT", "UNPAUSE")
        await rx.proc.stop(signal.SIGKILL, timeout=5)
        await close(rx)


@pytest.mark.slow
async def test_the_drain_delay_keeps_answering_503_before_the_listener_closes(
    redis_url: str,
) -> None:
    rx = await start(redis_url, TICKETWIRE_SHUTDOWN_GRACE="10s", TICKETWIRE_DRAIN_DELAY="2s")
    try:
        signalled = time.monotonic()
        rx.proc.proc.send_signal(signal.SIGTERM)
        await rx.proc.wait_output("receiver stopping on SIGTERM")
        # Nothing in flight, and still the listener stays: a platform routing here for a moment
        # gets answers, not refused connections.
        statuses = []
        while time.monotonic() - signalled < 1.5:
            statuses.append((await send(rx, len(statuses))).status)
        assert statuses and set(statuses) == {503}, statuses
        assert await rx.proc.finish(timeout=10) == 0
        assert 2 <= time.monotonic() - signalled < 10
        assert sum([await rx.redis.xlen(rx.keys.stream(p)) for p in range(4)]) == 0
        assert f"{len(statuses)} webhook requests refused with 503" in rx.proc.output
    finally:
        await rx.proc.stop(signal.SIGKILL, timeout=5)
        await close(rx)
