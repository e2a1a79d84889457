"""Property-based tests of the real receiver (`python -m receiver`, real HTTP, the suite's Valkey):
no generated request gets a 5xx, and a delivery is accepted exactly when it was validly signed.

Budgets: see tests/fuzzing.py (`TICKETWIRE_FUZZ_EXAMPLES` for a long run).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from redis import Redis

from tests.fuzzbodies import TEXT, bodies, valid_doc
from tests.fuzzing import examples, tried
from tests.procs import BIN, ROOT, free_port
from tests.test_intake_hostile import MAX_BODY, SECRETS, receiver_env
from ticketwire.keys import Keys
from ticketwire.stored import StoredDelivery
from ticketwire.vendors.cstar import webhook as cstar
from ticketwire.vendors.inboxops import webhook as inboxops
from ticketwire.vendors.thena import webhook as thena

VENDOR_NAMES = ("inboxops", "cstar", "thena")
SIGNINGS = ["valid"] * 4 + ["other-secret", "mutated-signature", "mutated-body", "none", "any"]
CODINGS = ["identity"] * 5 + ["gzip", "deflate", "gzip-plain", "gzip-cut", "gzip, gzip", "x-zz"]
CONTENT_TYPES = ["application/json"] * 5 + [
    "application/json; charset=utf-16",
    "application/problem+json",
    "text/plain",
    "",
]


@dataclass
class Receiver:
    port: int
    redis: Redis
    keys: Keys
    log: Path
    conn: http.client.HTTPConnection | None = None

    def post(self, vendor: str, body: bytes, headers: list[tuple[str, bytes]]) -> Answer:
        """POST over a kept-alive connection, opened again when the receiver closed it."""
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.putrequest("POST", f"/webhooks/{vendor}", skip_accept_encoding=True)
                for name, value in headers:
                    self.conn.putheader(name, value)
                self.conn.putheader("Content-Length", str(len(body)))
                self.conn.endheaders(body)
                resp = self.conn.getresponse()
                answer = Answer(resp.status, resp.getheader("Content-Type") or "", resp.read())
            except (ConnectionError, http.client.HTTPException):
                # The receiver closed a kept-alive connection (after a refusal it does not
                # drain); only a fresh connection's failure is a failure.
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if resp.will_close:
                self.conn.close()
                self.conn = None
            return answer
        raise AssertionError("unreachable")

    def entry(self, entry_id: str) -> StoredDelivery | None:
        """The stream entry the receiver named in its answer, in whichever partition."""
        for p in range(4):
            for eid, fields in self.redis.xrange(self.keys.stream(p), entry_id, entry_id):
                return StoredDelivery.from_fields(eid, fields, partition=p)
        return None


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@pytest.fixture(scope="module")
def rx(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    keys = Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TICKETWIRE_", "INBOXOPS_"))}
    base.pop("REDIS_URL", None)
    env = {**base, "PYTHONUNBUFFERED": "1", **receiver_env(redis_url, keys, port)}
    log = tmp_path_factory.mktemp("fuzz-receiver") / "receiver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "python"), "-m", "receiver"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    redis = Redis.from_url(redis_url)
    receiver = Receiver(port, redis, keys, log)
    try:
        deadline = time.monotonic() + 30
        while not _ready(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"receiver not ready:\n{log.read_text()}"
            # The poll interval of the readiness wait; the deadline above bounds it.
            time.sleep(0.05)
        yield receiver
    finally:
        if receiver.conn is not None:
            receiver.conn.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for key in redis.scan_iter(match=f"{keys.prefix}*", count=1000):
            redis.delete(key)
        redis.close()
    output = log.read_text(errors="replace")
    # Hostile input is answered, not crashed on: nothing unexpected was logged.
    assert "internal error" not in output and "Traceback" not in output, output[-5_000:]


def signature(vendor: str, body: bytes, secret: str, *, skew: int = 0) -> tuple[str, str]:
    """The signature header `vendor` sends with `body` signed with `secret`."""
    if vendor == "inboxops":
        return inboxops.SIGNATURE_HEADER, inboxops.sign(body, secret)
    if vendor == "cstar":
        return cstar.SIGNATURE_HEADER, cstar.sign(body, secret, int(time.time()) + skew)
    return thena.SIGNATURE_HEADER, thena.sign(body, secret)


def header_bytes(text: str) -> bytes:
    """Any text as header bytes, less what would end the header (CR, LF) or cannot be sent."""
    raw = text.encode("utf-8", "surrogatepass")
    return raw.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")


@dataclass
class Request:
    vendor: str
    body: bytes
    headers: list[tuple[str, bytes]]
    #: What the receiver should find after decoding, and whether it carries a valid signature.
    decoded: bytes
    signed: bool
    #: A valid envelope, validly signed, sent as a vendor sends it: it must be stored.
    must_store: bool
    #: Larger than TICKETWIRE_MAX_BODY once decoded: never stored.
    too_big: bool


@st.composite
def requests(draw: st.DrawFn) -> Request:
    vendor = draw(st.sampled_from(VENDOR_NAMES))
    event_id = f"evt-{uuid.uuid4().hex}"
    size = draw(st.sampled_from(["plain", "plain", "damaged", "damaged", "over-the-limit"]))
    plain = size == "plain"
    if size == "damaged":
        decoded = draw(bodies(vendor, event_id))
    else:
        pad = "x" * (MAX_BODY + draw(st.integers(1, 4096))) if size == "over-the-limit" else ""
        decoded = json.dumps({**valid_doc(vendor, event_id), "pad": pad}).encode()
    how = draw(st.sampled_from(SIGNINGS + (["stale"] if vendor == "cstar" else [])))
    secret = SECRETS[vendor]
    headers: list[tuple[str, bytes]] = []
    if how in ("valid", "mutated-signature", "mutated-body", "other-secret", "stale"):
        over = decoded + b" " if how == "mutated-body" else decoded
        key = secret + "x" if how == "other-secret" else secret
        skew = draw(st.sampled_from([-400, 400, -(10**6)])) if how == "stale" else 0
        name, value = signature(vendor, over, key, skew=skew)
        if how == "mutated-signature":
            at = draw(st.integers(len(value) - 64, len(value) - 1))
            value = value[:at] + format((int(value[at], 16) + 1) % 16, "x") + value[at + 1 :]
        headers.append((name, value.encode()))
    elif how == "any":
        name = draw(
            st.sampled_from(
                [inboxops.SIGNATURE_HEADER, cstar.SIGNATURE_HEADER, thena.SIGNATURE_HEADER]
            )
        )
        headers.append((name, header_bytes(draw(TEXT))))
    coding = draw(st.sampled_from(CODINGS))
    body = decoded
    if coding == "gzip":
        body = gzip.compress(decoded)
    elif coding == "deflate":
        body = zlib.compress(decoded)
    elif coding == "gzip-cut":
        body = gzip.compress(decoded)[: draw(st.integers(0, 20))]
    if coding != "identity":
        sent = coding.removesuffix("-plain").removesuffix("-cut")
        headers.append(("Content-Encoding", sent.encode()))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers.append(("Content-Type", content_type.encode()))
    for _ in range(draw(st.integers(0, 2))):
        headers.append((f"X-Fuzz-{draw(st.integers(0, 9))}", header_bytes(draw(TEXT))))
    # aiohttp refuses control characters in header values as bad HTTP, before any route.
    readable = all(all(b >= 0x20 or b == 0x09 for b in v) and 0x7F not in v for _, v in headers)
    must_store = (
        readable
        and plain
        and how == "valid"
        and coding in ("identity", "gzip", "deflate")
        and content_type.startswith("application/json")
    )
    too_big = size == "over-the-limit"
    return Request(vendor, body, headers, decoded, how == "valid", must_store, too_big)


@examples(150, 0.08)
@given(request=requests())
def test_generated_requests_never_5xx_and_only_valid_signatures_are_accepted(
    rx: Receiver, request: Request
) -> None:
    answer = rx.post(request.vendor, request.body, request.headers)
    tried("receiver[http]")
    event(f"answered {answer.status}")
    what = (request, answer)
    assert answer.status < 500, what
    if 200 <= answer.status < 300:
        # Accepted: only ever a delivery signed with the configured secret, within the limit.
        assert request.signed and not request.too_big, what
        doc = answer.json()
        if doc["status"] == "stored":
            stored = rx.entry(doc["entry"])
            assert stored is not None, what
            # What is kept is exactly what the sender signed, decoded.
            assert (stored.vendor, stored.body) == (request.vendor, request.decoded), what
            assert stored.event_id == doc["event_id"]
    elif answer.content_type.startswith("application/json"):
        doc = answer.json()
        assert 400 <= answer.status < 500 and doc["error"] and doc["detail"], what
    else:
        # aiohttp's own refusals of HTTP it cannot read (a coding it does not decode).
        assert answer.status in (400, 413, 415, 431), what
    if request.must_store:
        assert answer.status == 202 and answer.json()["status"] == "stored", what
