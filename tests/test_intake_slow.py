"""Slow and hostile clients: slow-loris bodies and headers, header floods, a flood of bad
signatures. Each is cut off or refused, good deliveries go on being stored, and the log stays
bounded."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from receiver.logbudget import RefusalLogBudget
from tests.conftest import wait_for
from tests.procs import BIN, free_port, spawn
from tests.test_intake_hostile import (
    Receiver,
    body_of,
    document,
    post,
    receiver_env,
    signature,
    stored,
)
from tests.test_intake_trace import log_entries
from tests.test_processes import _ready
from ticketwire.keys import Keys

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

BODY_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 2.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rx(redis_url: str) -> AsyncIterator[Receiver]:
    keys = Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")
    port = free_port()
    env = receiver_env(
        redis_url,
        keys,
        port,
        TICKETWIRE_BODY_TIMEOUT=f"{BODY_TIMEOUT_S:g}s",
        TICKETWIRE_IDLE_TIMEOUT=f"{IDLE_TIMEOUT_S:g}s",
    )
    proc = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    redis: Redis = Redis.from_url(redis_url)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        try:
            await wait_for(lambda: _ready(session, port), timeout=30, message="receiver ready")
            yield Receiver(proc, port, session, redis, keys)
        finally:
            await proc.stop()
            async for key in redis.scan_iter(match=f"{keys.prefix}*", count=1000):
                await redis.delete(key)
            await redis.aclose()
    assert "Traceback" not in proc.output, proc.output


async def good(rx: Receiver, n: int) -> int:
    return (await post(rx, "inboxops", body_of(document("inboxops", n)))).status


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the receiver sends until it closes the connection."""
    return await reader.read()


async def trickle(writer: asyncio.StreamWriter, byte: bytes, every_s: float) -> None:
    """Send one byte at a time, as a slow-loris sender does, until the connection is closed."""
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            writer.write(byte)
            await writer.drain()
            await asyncio.sleep(every_s)


# --- the budget of log lines ------------------------------------------------------------------


def test_the_budget_logs_a_burst_then_counts_and_says_how_many_it_held() -> None:
    now = [0.0]
    budget = RefusalLogBudget(burst=3, period_s=10.0, clock=lambda: now[0])
    assert [budget.admit(401) for _ in range(2)] == ["", ""]
    assert "3 such lines in 10s" in (budget.admit(401) or "")
    assert [budget.admit(401) for _ in range(5)] == [None] * 5
    # Another status has a budget of its own.
    assert budget.admit(400) == ""
    now[0] = 10.0
    assert budget.admit(401) == " (5 more like it were counted, not logged)"
    assert budget.admit(401) == ""


# --- slow senders -----------------------------------------------------------------------------


@MODULE_LOOP
async def test_a_slow_loris_body_is_cut_off_with_408_while_others_are_stored(rx: Receiver) -> None:
    body = body_of(document("inboxops", 1))
    head = (
        f"POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in signature("inboxops", body).items())
        + "\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", rx.port)
    writer.write(head + body[:10])
    await writer.drain()
    sender = asyncio.create_task(trickle(writer, b" ", 0.2))
    try:
        # While it trickles, everyone else is served.
        assert [await good(rx, n) for n in range(2, 7)] == [202] * 5
        answer = await asyncio.wait_for(closed(reader), timeout=BODY_TIMEOUT_S + 10)
    finally:
        sender.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"error": "body_timeout"' in answer and b"within 1s" in answer, answer
    ids = {eid for _, eid in await stored(rx)}
    assert "evt-inboxops-1" not in ids and {f"evt-inboxops-{n}" for n in range(2, 7)} <= ids


@MODULE_LOOP
async def test_headers_sent_slowly_are_cut_off(rx: Receiver) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rx.port)
    writer.write(b"POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await writer.drain()
    sender = asyncio.create_task(trickle(writer, b"a", 0.2))
    try:
        assert await good(rx, 8) == 202
        # No request ever completes: the connection is closed, with nothing to answer.
        assert await asyncio.wait_for(closed(reader), timeout=IDLE_TIMEOUT_S + 10) == b""
    finally:
        sender.cancel()
        writer.close()


@MODULE_LOOP
@pytest.mark.parametrize(
    ("n", "extra", "says"),
    [
        (10, "".join(f"X-Flood-{i}: x\r\n" for i in range(200)), b"Too many headers"),
        (11, "X-Huge: " + "x" * 10_000 + "\r\n", b"Got more than 8190 bytes"),
    ],
)
async def test_header_floods_are_400_and_the_receiver_goes_on(
    rx: Receiver, n: int, extra: str, says: bytes
) -> None:
    head = f"POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n{extra}\r\n{{}}"
    reader, writer = await asyncio.open_connection("127.0.0.1", rx.port)
    try:
        writer.write(head.encode())
        await writer.drain()
        answer = await asyncio.wait_for(closed(reader), timeout=10)
    finally:
        writer.close()
    assert answer.split(b" ", 2)[1] == b"400" and says in answer, answer[:300]
    assert await good(rx, n) == 202
    assert f"evt-inboxops-{n}" in {eid for _, eid in await stored(rx)}


# --- a flood of bad signatures ----------------------------------------------------------------


@MODULE_LOOP
async def test_a_flood_of_bad_signatures_leaves_good_deliveries_stored_and_the_log_bounded(
    rx: Receiver,
) -> None:
    before = len(re.findall(r"rejected inboxops 401", rx.proc.output))
    bad = [body_of(document("inboxops", 1000 + n)) for n in range(400)]

    async def forged(body: bytes) -> int:
        headers = {"X-InboxOps-Signature": "0" * 64}
        return (await post(rx, "inboxops", body, unsigned=True, headers=headers)).status

    flood = asyncio.gather(*(forged(b) for b in bad))
    goods = asyncio.gather(*(good(rx, 100 + n) for n in range(40)))
    bad_statuses, good_statuses = await asyncio.gather(flood, goods)
    assert set(bad_statuses) == {401} and set(good_statuses) == {202}
    ids = {eid for _, eid in await stored(rx)}
    assert {f"evt-inboxops-{100 + n}" for n in range(40)} <= ids
    assert not ids & {f"evt-inboxops-{1000 + n}" for n in range(400)}

    async def logged() -> int | None:
        n = len(re.findall(r"rejected inboxops 401", rx.proc.output)) - before
        return n if n >= 20 else None

    # 400 refusals, at most 20 lines per 10 s (the flood takes less than two such windows).
    lines = await wait_for(logged, timeout=10, message="the refusals logged")
    assert lines <= 40, lines
    assert "more are counted, not logged" in rx.proc.output

    # The deliveries list notes at most 100 such refusals per 10 s, so a flood cannot push the
    # entries of real deliveries out of it.
    async def listed() -> int | None:
        n = sum(e["s"] == "401" for e in await log_entries(rx.redis, rx.keys))
        return n if n >= 100 else None

    assert await wait_for(listed, timeout=10, message="the refusals listed") <= 200
