"""Hostile requests against the real receiver process (`python -m receiver`) and a real Valkey:
every answer is a 4xx with a reason or a 2xx for a stored event, never a 5xx from bad input."""

from __future__ import annotations

import asyncio
import copy
import functools
import gzip
import json
import random
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tests.conftest import wait_for
from tests.procs import BIN, Proc, free_port, spawn
from tests.test_processes import _ready
from tests.test_webhook_parsers_hostile import VENDORS, mutate
from ticketwire.keys import Keys
from ticketwire.stored import StoredDelivery
from ticketwire.vendors.cstar import webhook as cstar
from ticketwire.vendors.inboxops import webhook as inboxops
from ticketwire.vendors.thena import webhook as thena

SECRETS = {"inboxops": "whsec_in_hostile", "cstar": "whsec_cs_hostile", "thena": "th_hostile"}
MAX_BODY = 64 * 1024


@dataclass
class Receiver:
    proc: Proc
    port: int
    session: aiohttp.ClientSession
    redis: Redis
    keys: Keys

    def url(self, vendor: str) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/{vendor}"


# One receiver process for the module (starting one takes seconds); each test's keys are
# deleted after it, so every test starts from an empty store.
pytestmark = pytest.mark.asyncio(loop_scope="module")


def receiver_env(redis_url: str, keys: Keys, port: int, **more: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "TICKETWIRE_KEY_PREFIX": keys.prefix,
        "TICKETWIRE_PARTITIONS": "4",
        "TICKETWIRE_MAX_BODY": str(MAX_BODY),
        "INBOXOPS_WEBHOOK_SECRETS": SECRETS["inboxops"],
        "CSTAR_WEBHOOK_SECRETS": SECRETS["cstar"],
        "THENA_WEBHOOK_SECRETS": SECRETS["thena"],
        "THENA_WEBHOOK_MODE": "hmac",
        **more,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def receiver(redis_url: str) -> AsyncIterator[Receiver]:
    keys = Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")
    port = free_port()
    env = receiver_env(redis_url, keys, port)
    proc = await spawn([str(BIN / "python"), "-m", "receiver"], env)
    redis: Redis = Redis.from_url(redis_url)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            await wait_for(lambda: _ready(session, port), timeout=30, message="receiver ready")
            yield Receiver(proc, port, session, redis, keys)
        finally:
            await proc.stop()
            await redis.aclose()
    # Hostile input is answered, not crashed on: nothing unexpected was logged.
    assert "internal error" not in proc.output and "Traceback" not in proc.output, proc.output


@pytest_asyncio.fixture(loop_scope="module")
async def rx(receiver: Receiver) -> AsyncIterator[Receiver]:
    """The module's receiver, with an empty store before and after the test."""
    yield receiver
    async for key in receiver.redis.scan_iter(match=f"{receiver.keys.prefix}*", count=1000):
        await receiver.redis.delete(key)


def signature(vendor: str, body: bytes) -> dict[str, str]:
    """Headers that validly sign `body` for `vendor`."""
    secret = SECRETS[vendor]
    if vendor == "inboxops":
        return {inboxops.SIGNATURE_HEADER: inboxops.sign(body, secret)}
    if vendor == "cstar":
        return {cstar.SIGNATURE_HEADER: cstar.sign(body, secret, int(time.time()))}
    return {thena.SIGNATURE_HEADER: thena.sign(body, secret)}


def document(vendor: str, n: int) -> dict[str, Any]:
    """A valid delivery of `vendor` with its own event id and ticket."""
    doc = VENDORS[vendor][1]()
    event_id, ticket = f"evt-{vendor}-{n}", f"tkt-{n % 13}"
    if vendor == "inboxops":
        doc["event_id"], doc["data"]["id"] = event_id, ticket
    elif vendor == "cstar":
        doc["id"], doc["data"]["ticket"]["id"] = event_id, ticket
    else:
        doc["eventId"], doc["payload"]["ticket"]["id"] = event_id, ticket
    return doc


def body_of(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


async def post(
    rx: Receiver,
    vendor: str,
    body: bytes,
    *,
    signed_over: bytes | None = None,
    unsigned: bool = False,
    headers: dict[str, str] | None = None,
    skip: tuple[str, ...] = (),
) -> Answer:
    """POST `body`, signed over `signed_over` (default: the body itself) unless `unsigned`."""
    h = {"Content-Type": "application/json"}
    if not unsigned:
        h.update(signature(vendor, body if signed_over is None else signed_over))
    h.update(headers or {})
    async with rx.session.post(
        rx.url(vendor), data=body, headers=h, skip_auto_headers=skip
    ) as resp:
        return Answer(resp.status, dict(resp.headers), await resp.text())


async def stored(rx: Receiver) -> dict[tuple[str, str], StoredDelivery]:
    out = {}
    for p in range(4):
        for eid, fields in await rx.redis.xrange(rx.keys.stream(p)):
            d = StoredDelivery.from_fields(eid, fields, partition=p)
            out[(d.vendor, d.event_id)] = d
    return out


def assert_refused(answer: Answer, status: int, error: str) -> dict[str, Any]:
    assert answer.status == status, answer
    doc: dict[str, Any] = answer.json()
    assert doc["error"] == error and doc["detail"], doc
    return doc


# --- compressed deliveries ----------------------------------------------------------------


@pytest.mark.parametrize("vendor", VENDORS)
async def test_gzip_header_on_a_plain_body_is_400_not_500(rx, vendor):
    # Issue: "A request with Content-Encoding: gzip (or deflate) and a body that is not
    # compressed gets 500 on every vendor route, before the signature is checked."
    body = body_of(document(vendor, 1))
    for unsigned in (True, False):
        answer = await post(
            rx, vendor, body, unsigned=unsigned, headers={"Content-Encoding": "gzip"}
        )
        doc = assert_refused(answer, 400, "malformed_body")
        assert "gzip" in doc["detail"]
        # aiohttp refuses a plain body declared `deflate` itself once it has it all: still 400.
        answer = await post(
            rx, vendor, body, unsigned=unsigned, headers={"Content-Encoding": "deflate"}
        )
        assert answer.status == 400, answer
    assert await stored(rx) == {}


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("coding", ["gzip", "deflate", "GZIP"])
async def test_compressed_deliveries_are_verified_and_stored_decoded(rx, vendor, coding):
    doc = document(vendor, 2)
    body = body_of(doc)
    compressed = zlib.compress(body) if coding == "deflate" else gzip.compress(body)
    answer = await post(
        rx, vendor, compressed, signed_over=body, headers={"Content-Encoding": coding}
    )
    assert answer.status == 202 and answer.json()["status"] == "stored", answer
    [delivery] = (await stored(rx)).values()
    # The vendor signs the JSON it sends; that is what is kept, so a replay verifies again.
    assert delivery.body == body
    assert "Content-Encoding" not in delivery.headers
    # A signature over the compressed bytes is not the vendor's signature.
    again = body_of(document(vendor, 3))
    answer = await post(
        rx,
        vendor,
        gzip.compress(again),
        signed_over=gzip.compress(again),
        headers={"Content-Encoding": "gzip"},
    )
    assert_refused(answer, 401, "invalid_signature")


@pytest.mark.parametrize("sent", ["whole", "chunked", "declared-over-the-limit"])
async def test_a_compression_bomb_is_refused_after_at_most_the_limit(rx, sent):
    # 60 MiB of zeros compress to some 60 KiB, under the limit; decoded, they are far over it.
    # Ten such gzip members in a row are over it: refused by Content-Length, never decoded.
    bomb = _bomb() * (10 if sent == "declared-over-the-limit" else 1)
    assert (len(bomb) > MAX_BODY) == (sent == "declared-over-the-limit")
    before = _peak_memory(rx.proc)
    started = time.monotonic()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(bomb), 8192):
            yield bomb[i : i + 8192]

    async with rx.session.post(
        rx.url("inboxops"),
        data=chunks() if sent == "chunked" else bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    ) as resp:
        assert resp.status == 413, await resp.text()
        assert "TICKETWIRE_MAX_BODY" in (await resp.json())["detail"]
    # Decoding stopped at the limit: the process never held the decoded body, nor spent the
    # seconds decoding all of it takes.
    assert _peak_memory(rx.proc) - before < 32 * 1024 * 1024
    assert time.monotonic() - started < 5
    assert await stored(rx) == {}
    assert (await post(rx, "inboxops", body_of(document("inboxops", 11)))).status == 202


@functools.cache
def _bomb() -> bytes:
    return gzip.compress(b"\0" * (60 * 1024 * 1024), compresslevel=9)


def _peak_memory(proc: Proc) -> int:
    with open(f"/proc/{proc.proc.pid}/status") as f:
        status = f.read()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) * 1024


@pytest.mark.parametrize(
    "coding",
    ["identity, gzip", "gzip, gzip", "x-gzip", "compress", "gzip;q=1", "zstd", "br"],
)
async def test_codings_not_decoded_are_415_with_the_accepted_ones(rx, coding):
    body = body_of(document("cstar", 4))
    answer = await post(
        rx,
        "cstar",
        gzip.compress(body),
        signed_over=body,
        headers={"Content-Encoding": coding},
    )
    if coding in ("zstd", "br") and answer.status == 400:
        # Without the brotli / zstd modules installed, aiohttp refuses these itself, before
        # the receiver sees the request; with them, the receiver answers 415 like the rest.
        assert "content-encoding" in answer.text.lower()
    else:
        assert_refused(answer, 415, "unsupported_content_encoding")
        assert answer.headers["Accept-Encoding"] == "gzip, deflate"
    assert await stored(rx) == {}


async def test_two_content_encoding_headers_are_415(rx):
    body = body_of(document("inboxops", 5))
    r, w = await asyncio.open_connection("127.0.0.1", rx.port)
    payload = gzip.compress(gzip.compress(body))
    head = (
        "POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\n"
        f"{inboxops.SIGNATURE_HEADER}: {inboxops.sign(body, SECRETS['inboxops'])}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    w.write(head.encode() + payload)
    answer = (await r.read()).decode()
    w.close()
    assert answer.startswith("HTTP/1.1 415"), answer


# --- one bad delivery, one bad answer -----------------------------------------------------


async def test_a_lone_surrogate_fails_alone_among_concurrent_deliveries(rx):
    # Issue: a validly signed Thena delivery whose `eventId` holds "x\ud800" failed every
    # delivery batched with it (about 9 % of valid concurrent deliveries got 500).
    bad = body_of(document("thena", 0)).replace(b'"evt-thena-0"', b'"x\\ud800"')
    valid = [(v, body_of(document(v, n))) for n in range(1, 40) for v in VENDORS]
    answers = await asyncio.gather(
        *(post(rx, "thena", bad) for _ in range(5)),
        *(post(rx, v, b) for v, b in valid),
    )
    for answer in answers[:5]:
        doc = assert_refused(answer, 400, "malformed_event")
        assert "not valid JSON" in doc["detail"]
    assert [a.status for a in answers[5:]] == [202] * len(valid)
    assert len(await stored(rx)) == len(valid)


@pytest.mark.parametrize(
    ("vendor", "key", "value", "field", "says"),
    [
        ("thena", "timestamp", b"9" * 320, "timestamp", "out of range"),
        ("thena", "timestamp", b'"' + b"9" * 320 + b'"', "timestamp", "out of range"),
        ("thena", "deep", b"[" * 1_100 + b"]" * 1_100, None, "not valid JSON"),
        ("cstar", "id", b"1.5", "id", "string or a whole number"),
        ("cstar", "team_id", b'"' + b"x" * 300 + b'"', "team_id", "at most 256"),
        ("inboxops", "event_id", b'"evt\\nforged"', "event_id", "control"),
    ],
    ids=["320-digit-number", "320-digit-string", "deep", "float-id", "long-id", "newline"],
)
async def test_bodies_that_used_to_500_are_400_naming_the_field(
    rx, vendor, key, value, field, says
):
    body = body_of({**document(vendor, 6), key: "@@"}).replace(b'"@@"', value)
    answer = await post(rx, vendor, body)
    error = assert_refused(answer, 400, "malformed_event")
    assert error["field"] == field and says in error["detail"], error
    assert await stored(rx) == {}


async def test_cstar_inf_ids_are_refused_not_answered_duplicate(rx):
    # Issue: `1e999999` and `2e999999` both became "inf": the second was dropped as a duplicate.
    for literal in (b"1e999999", b"2e999999", b"NaN", b"-Infinity"):
        body = body_of(document("cstar", 7)).replace(b'"evt-cstar-7"', literal)
        answer = await post(rx, "cstar", body)
        assert answer.status == 400, answer
        assert answer.json()["error"] == "malformed_event"
    for literal in (b"1000000000000000000001", b"1000000000000000000002"):
        body = body_of(document("cstar", 7)).replace(b'"evt-cstar-7"', literal)
        answer = await post(rx, "cstar", body)
        assert answer.status == 202 and answer.json()["status"] == "stored", answer
    assert {e for _, e in await stored(rx)} == {
        "1000000000000000000001",
        "1000000000000000000002",
    }


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
async def test_nan_and_infinity_are_malformed_json_on_every_route(rx, vendor, literal):
    body = body_of({**document(vendor, 8), "score": "@@"}).replace(b'"@@"', literal)
    error = assert_refused(await post(rx, vendor, body), 400, "malformed_event")
    assert "not valid JSON" in error["detail"]


# --- framing --------------------------------------------------------------------------------


async def _raw(port: int, head: bytes, body: bytes, *, half_close: bool = False) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(head + body)
    await w.drain()
    if half_close:
        w.write_eof()
    try:
        async with asyncio.timeout(10):
            return await r.read()
    finally:
        w.close()


async def test_a_lying_content_length_stores_nothing_and_harms_nothing(rx):
    body = body_of(document("inboxops", 9))
    sig = inboxops.sign(body, SECRETS["inboxops"])
    head = (
        "POST /webhooks/inboxops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"{inboxops.SIGNATURE_HEADER}: {sig}\r\nContent-Length: {{}}\r\n\r\n"
    )
    # Longer than sent: the sender gives up; the request ends without an answer or a store.
    answer = await _raw(rx.port, head.format(len(body) + 100).encode(), body, half_close=True)
    assert answer == b"" or answer.split(b" ")[1].startswith(b"4"), answer
    # Shorter than sent: the signature covers the whole body, so the cut body is refused, and
    # the rest is a malformed next request (aiohttp may answer that one first, and close).
    answer = await _raw(rx.port, head.format(len(body) - 10).encode(), body)
    assert answer.split(b" ")[1] in (b"400", b"401"), answer
    assert await stored(rx) == {}
    # The receiver still serves.
    assert (await post(rx, "inboxops", body)).status == 202


async def test_a_chunked_body_over_the_limit_is_413(rx):
    body = body_of({**document("cstar", 10), "pad": "x" * MAX_BODY})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    async with rx.session.post(
        rx.url("cstar"),
        data=chunks(),
        headers={"Content-Type": "application/json", **signature("cstar", body)},
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"] == "payload_too_large"
    assert await stored(rx) == {}


@pytest.mark.parametrize(
    ("vendor", "header", "value"),
    [
        ("inboxops", inboxops.SIGNATURE_HEADER, b"\xff\xfe" * 32),
        ("cstar", cstar.SIGNATURE_HEADER, b"t=\xc2\xb2,v1=" + b"a" * 64),
        ("cstar", cstar.SIGNATURE_HEADER, b"t=" + b"9" * 5_000 + b",v1=" + b"a" * 64),
        ("thena", thena.SIGNATURE_HEADER, b"sha256=\xff" + b"a" * 63),
    ],
    ids=["inboxops-not-utf8", "cstar-superscript-t", "cstar-5000-digit-t", "thena-not-utf8"],
)
async def test_signature_headers_of_any_bytes_are_401(rx, vendor, header, value):
    body = body_of(document(vendor, 12))
    head = (
        f"POST /webhooks/{vendor} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    ).encode()
    answer = await _raw(rx.port, head + header.encode() + b": " + value + b"\r\n\r\n", body)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
    assert b'"invalid_signature"' in answer


# --- the whole class: randomised hostile requests, concurrent with valid ones -------------


@dataclass
class Case:
    vendor: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: The delivery is valid and must be stored.
    valid: bool = False
    #: aiohttp itself may refuse it (HTTP framing, codings) with a plain-text 400.
    framing: bool = False
    skip: tuple[str, ...] = ()


def hostile_case(rng: random.Random, vendor: str, n: int) -> Case:
    """One hostile request: bad body, bad coding, bad type or bad signature, in any mix."""
    doc = document(vendor, n)
    kind = rng.randrange(12)
    decoded = body = mutate(rng, copy.deepcopy(doc)) if kind < 6 else body_of(doc)
    headers: dict[str, str] = {"Content-Type": "application/json"}
    framing = False
    if kind == 6:
        body = rng.choice(
            [
                b"",
                b"\xef\xbb\xbf" + body,
                body.replace(b"{", b"{\x00", 1),
                b"\xff" * 9,
                body[:-1] + b', "zz": 1, "zz": {"zz": [1, 2]}}',  # a key given twice
                body.decode().encode("utf-16"),
            ]
        )
        decoded = body
    elif kind == 7:
        body = gzip.compress(body)
    elif kind == 8:
        coding = rng.choice(["gzip", "deflate", "br", "zstd", "identity, gzip", "x-gzip", ""])
        headers["Content-Encoding"] = coding
        framing = coding in ("deflate", "br", "zstd")
    elif kind == 9:
        headers["Content-Type"] = rng.choice(
            [
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/json; charset=utf-16",
                "multipart/form-data; boundary=x",
                "application/problem+json",
                "*/*",
                "json",
            ]
        )
    elif kind == 10:
        headers["X-Pad"] = "p" * rng.choice([100, 8_000, 9_000])
        framing = True
    if kind == 7:
        headers["Content-Encoding"] = "gzip"
    sign = rng.random()
    if sign < 0.7:
        headers.update(signature(vendor, decoded))
    elif sign < 0.85:
        headers.update(signature(vendor, decoded + b" "))
    skip = ("Content-Type",) if rng.random() < 0.05 else ()
    if skip:
        headers.pop("Content-Type")
    return Case(vendor, body, headers, framing=framing, skip=skip)


async def send(rx: Receiver, case: Case) -> Answer:
    async with rx.session.post(
        rx.url(case.vendor), data=case.body, headers=case.headers, skip_auto_headers=case.skip
    ) as resp:
        return Answer(resp.status, dict(resp.headers), await resp.text())


async def test_randomised_hostile_requests_never_5xx_and_valid_ones_are_all_stored(rx):
    rng = random.Random(20261202)
    cases = [
        Case(v, body, {"Content-Type": "application/json", **signature(v, body)}, valid=True)
        for n in range(30)
        for v in VENDORS
        if (body := body_of(document(v, n)))
    ]
    cases += [hostile_case(rng, v, n) for n in range(1_000, 1_110) for v in VENDORS]
    rng.shuffle(cases)
    answers = await asyncio.gather(*(send(rx, c) for c in cases))

    entries = await stored(rx)
    stats = await rx.redis.hgetall(rx.keys.stats)
    for case, answer in zip(cases, answers, strict=True):
        what = (case.vendor, case.headers, case.body[:200], answer)
        assert answer.status < 500, what
        if case.valid:
            assert answer.status == 202 and answer.json()["status"] == "stored", what
        if 200 <= answer.status < 300:
            doc = answer.json()
            if doc["status"] == "ignored":
                assert stats[f"ignored:{case.vendor}:{doc['event']}".encode()], what
            else:
                # Stored now, or within the dedupe window before.
                assert (case.vendor, doc["event_id"]) in entries, what
                assert await rx.redis.exists(rx.keys.seen(case.vendor, doc["event_id"])), what
        elif not case.framing or answer.headers["Content-Type"].startswith("application/json"):
            doc = answer.json()
            assert 400 <= answer.status < 500 and doc["error"] and doc["detail"], what
        else:
            assert answer.status in (400, 413, 415, 431), what
    valid = {
        (
            c.vendor,
            json.loads(c.body).get("eventId")
            or json.loads(c.body).get("event_id")
            or json.loads(c.body)["id"],
        )
        for c in cases
        if c.valid
    }
    assert valid <= set(entries)
    assert sum(1 for a in answers if a.status >= 400) > len(cases) // 3
