"""Property-based tests of the helpdesks' pure intake code: `inspect`, `parse` and `parse_stored`
raise only `MalformedEvent` on any body, and `verify` accepts exactly the validly signed deliveries.

Budgets: see tests/fuzzing.py (`TICKETWIRE_FUZZ_EXAMPLES` for a long run).
"""

from __future__ import annotations

import hashlib
import hmac
import random
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.fuzzbodies import TEXT, bodies, valid_doc
from tests.fuzzing import budget, examples, tried
from tests.test_webhook_parsers_hostile import VENDORS, mutate, raw
from ticketwire.errors import InvalidSignature, MalformedEvent
from ticketwire.event import Event, Routing
from ticketwire.secret import Secret
from ticketwire.vendors.cstar import webhook as cstar
from ticketwire.vendors.ids import id_problem
from ticketwire.vendors.inboxops import webhook as inboxops
from ticketwire.vendors.thena import webhook as thena

NOW = 1_764_000_000
TOLERANCE = 300


def outcome(hook: Any, body: bytes) -> tuple[Routing | None, Event | None, str | None]:
    """What `inspect` and `parse` make of `body`: both accept it, or both refuse it alike."""
    try:
        routing = hook.inspect(body)
    except MalformedEvent as exc:
        with pytest.raises(MalformedEvent) as parsed:
            hook.parse(body)
        assert (parsed.value.field, str(parsed.value)) == (exc.field, str(exc))
        assert str(exc) and len(str(exc)) < 1_000
        return None, None, str(exc)
    event = hook.parse(body)
    return routing, event, None


def check_body(vendor: str, body: bytes) -> None:
    """The property every body must have on `vendor`'s parsers."""
    hook = VENDORS[vendor][0]
    routing, event, _ = outcome(hook, body)
    if vendor == "inboxops":
        stored = _stored(body)
        if event is not None:
            # Intake accepted it: the workers' one-decode path reads the same event.
            assert stored is not None and stored.model_dump() == event.model_dump()
    if routing is None or event is None:
        return
    assert (routing.id, routing.type) == (event.id, event.type)
    for name in (routing.id, routing.type, event.tenant):
        assert id_problem(name) is None, name
    if routing.ticket_id or event.type.startswith("ticket."):
        assert id_problem(routing.ticket_id) is None
    # Everything intake writes to Redis and to logs encodes.
    routing.ticket_key.encode()
    event.model_dump_json()


def _stored(body: bytes) -> Event | None:
    try:
        return inboxops.parse_stored(body)
    except MalformedEvent:
        return None


@pytest.mark.parametrize("vendor", VENDORS)
@examples(250, 0.12)
@given(data=st.data())
def test_any_body_is_an_event_or_malformed(vendor: str, data: st.DataObject) -> None:
    body = data.draw(bodies(vendor))
    tried(f"parsers[{vendor}]")
    check_body(vendor, body)


@pytest.mark.parametrize("vendor", VENDORS)
def test_seeded_mutations_are_events_or_malformed(vendor: str) -> None:
    # Cheap volume beside the shrinking search above: the hostile-body mutator, seeded.
    rng = random.Random(f"fuzz-{vendor}")
    count = budget(1_000, 0.1)
    accepted = 0
    for n in range(count):
        body = mutate(rng, valid_doc(vendor, f"evt-{n}"))
        check_body(vendor, body)
        accepted += _ok(vendor, body)
    tried(f"seeded mutations[{vendor}]", count)
    assert 0 < accepted < count


def _ok(vendor: str, body: bytes) -> bool:
    try:
        VENDORS[vendor][0].inspect(body)
    except MalformedEvent:
        return False
    return True


def test_a_valid_envelope_is_always_accepted() -> None:
    # The generators' starting point is valid on every route: what they find is the damage.
    for vendor in VENDORS:
        routing, _, error = outcome(VENDORS[vendor][0], raw(valid_doc(vendor, "evt-1")))
        assert error is None and routing is not None and routing.id == "evt-1"


def test_parse_stored_refuses_what_intake_refuses() -> None:
    # json.loads read NaN, lone surrogates and nesting until a RecursionError; the stored-body
    # path now reads JSON as strictly as intake does.
    doc = raw(valid_doc("inboxops", "evt-1"))
    for bad in (
        doc.replace(b'"Printer"', b"NaN"),
        doc.replace(b'"Printer"', b'"\\ud800"'),
        doc.replace(b'"Printer"', b"[" * 100_000 + b"]" * 100_000),
    ):
        with pytest.raises(MalformedEvent, match="not valid JSON"):
            inboxops.parse_stored(bad)


# --- signatures -----------------------------------------------------------------------------

SECRETS = st.lists(st.text(min_size=1, max_size=24), min_size=1, max_size=3, unique=True)


def verdict(hook: Any, headers: dict[str, str], body: bytes) -> bool:
    """True when `verify` accepts; `InvalidSignature` is the only way to refuse."""
    try:
        hook.verify(headers, body)
    except InvalidSignature as exc:
        assert exc.reason
        return False
    return True


def other_hex(rng: st.DataObject, digest: str) -> str:
    """`digest` with one hex digit changed to a different value (not just a different case)."""
    at = rng.draw(st.integers(0, len(digest) - 1))
    now = int(digest[at], 16)
    new = rng.draw(st.integers(0, 15).filter(lambda d: d != now))
    return digest[:at] + format(new, "x") + digest[at + 1 :]


@st.composite
def other_body(draw: st.DrawFn, body: bytes) -> bytes:
    """A body that differs from `body`: one byte changed, cut, or extended."""
    how = draw(st.sampled_from(["flip", "cut", "extend"]))
    if how == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        return body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
    if how == "cut" and body:
        return body[: draw(st.integers(0, len(body) - 1))]
    return body + draw(st.binary(min_size=1, max_size=4))


SIGNED_BODIES = st.binary(max_size=300) | st.builds(
    lambda n: raw(valid_doc("cstar", f"evt-{n}")), st.integers(0, 10**6)
)
FORGERIES = ["valid", "other-secret", "mutated-signature", "mutated-body", "none", "any-text"]


@examples(400, 0.1)
@given(secrets=SECRETS, body=SIGNED_BODIES, data=st.data())
def test_inboxops_accepts_exactly_the_validly_signed(
    secrets: list[str], body: bytes, data: st.DataObject
) -> None:
    hook = inboxops.InboxOpsWebhook([Secret(s) for s in secrets])
    how = data.draw(st.sampled_from(FORGERIES))
    secret = data.draw(st.sampled_from(secrets))
    digest = inboxops.sign(body, secret)
    signed_body = body
    if how == "other-secret":
        wrong = data.draw(st.text(min_size=1, max_size=24).filter(lambda s: s not in secrets))
        digest = inboxops.sign(body, wrong)
    elif how == "mutated-signature":
        digest = other_hex(data, digest)
    elif how == "mutated-body":
        signed_body = data.draw(other_body(body))
    # Equivalent spellings of the same digest: any letter case, the `sha256=` prefix.
    spelt = data.draw(st.sampled_from([digest, digest.upper(), "sha256=" + digest, " " + digest]))
    headers = {inboxops.SIGNATURE_HEADER: spelt}
    if how == "none":
        headers = {}
    elif how == "any-text":
        headers = {inboxops.SIGNATURE_HEADER: data.draw(TEXT)}
    tried("signatures[inboxops]")
    assert verdict(hook, headers, signed_body) == (how == "valid")


@examples(400, 0.1)
@given(secrets=SECRETS, body=SIGNED_BODIES, data=st.data())
def test_cstar_accepts_exactly_the_validly_signed_and_fresh(
    secrets: list[str], body: bytes, data: st.DataObject
) -> None:
    legacy = data.draw(st.booleans())
    hook = cstar.CStarWebhook(
        [Secret(s) for s in secrets], tolerance_s=TOLERANCE, now=lambda: NOW, accept_legacy=legacy
    )
    how = data.draw(st.sampled_from([*FORGERIES, "stale", "mutated-time", "legacy"]))
    secret = data.draw(st.sampled_from(secrets))
    skew = data.draw(st.integers(-TOLERANCE, TOLERANCE))
    if how == "stale":
        skew = data.draw(st.integers(TOLERANCE + 1, 10**8) | st.integers(-(10**8), -TOLERANCE - 1))
    t = NOW + skew
    key = secret
    if how == "other-secret":
        key = data.draw(st.text(min_size=1, max_size=24).filter(lambda s: s not in secrets))
    digest = hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    signed_body = body
    if how == "mutated-signature":
        digest = other_hex(data, digest)
    elif how == "mutated-body":
        signed_body = data.draw(other_body(body))
    elif how == "mutated-time":
        t += data.draw(st.integers(1, TOLERANCE) | st.integers(-TOLERANCE, -1))
        t = max(t, 0)
        assume(t != NOW + skew)
    spelt = data.draw(
        st.sampled_from(
            [
                f"t={t},v1={digest}",
                f"t={t}, v1={digest}",
                f"v1={digest},t={t}",
                f"t={t},v0=x,v1={'0' * 64},v1={digest}",
            ]
        )
    )
    if how == "legacy":
        spelt = cstar.sign_legacy(body, secret)
    headers = {data.draw(st.sampled_from([cstar.SIGNATURE_HEADER, "x-cstar-signature"])): spelt}
    if how == "none":
        headers = {}
    elif how == "any-text":
        headers = {cstar.SIGNATURE_HEADER: data.draw(TEXT)}
    tried("signatures[cstar]")
    accepted = verdict(hook, headers, signed_body)
    assert accepted == (how == "valid" or (how == "legacy" and legacy)), (how, spelt)


@examples(400, 0.1)
@given(secrets=SECRETS, body=SIGNED_BODIES, mode=st.sampled_from(thena.MODES), data=st.data())
def test_thena_accepts_exactly_the_validly_signed(
    secrets: list[str], body: bytes, mode: str, data: st.DataObject
) -> None:
    # A token is one word as configured (headers are stripped, and a space starts the token
    # after a scheme); `bearer` itself is the scheme.
    assume(
        mode == "hmac"
        or all(s == s.strip() and " " not in s and s.lower() != "bearer" for s in secrets)
    )
    hook = thena.ThenaWebhook(mode, [Secret(s) for s in secrets])
    how = data.draw(st.sampled_from(FORGERIES))
    secret = data.draw(st.sampled_from(secrets))
    signed_body = body
    if how == "other-secret":
        secret = data.draw(st.text(min_size=1, max_size=24).filter(lambda s: s not in secrets))
        assume(mode == "hmac" or not any(s in secret for s in secrets))
    if mode == "hmac":
        value = thena.sign(body, secret)
        if how == "mutated-signature":
            value = other_hex(data, value)
        elif how == "mutated-body":
            signed_body = data.draw(other_body(body))
        value = data.draw(st.sampled_from([value, value.upper(), "sha256=" + value]))
    else:
        value = secret
        if how == "mutated-signature":
            value = secret + data.draw(st.text(min_size=1, max_size=3).filter(str.strip))
            assume(value.strip() not in secrets)
        elif how == "mutated-body":
            # A token does not sign the body: any body with the token is accepted.
            signed_body = data.draw(other_body(body))
        value = data.draw(st.sampled_from([value, f"Bearer {value}", f"bearer  {value} "]))
    headers = {hook.header: value}
    if how == "none":
        headers = {}
    elif how == "any-text":
        text = data.draw(TEXT)
        assume(mode == "hmac" or not any(s in text for s in secrets))
        headers = {hook.header: text}
    tried(f"signatures[thena-{mode}]")
    valid = how == "valid" or (how == "mutated-body" and mode == "token")
    assert verdict(hook, headers, signed_body) == valid, (how, value)


@pytest.mark.parametrize("value", ["\ud800", "Bearer \udfff", "x\ud800y", "Bearer s\ud800"])
def test_thena_token_of_a_lone_surrogate_is_refused_not_an_encode_error(value: str) -> None:
    # Found by the property above: only \udc80-\udcff stand for bytes (aiohttp's escapes).
    hook = thena.ThenaWebhook("token", [Secret("s")])
    with pytest.raises(InvalidSignature, match="matches no active token"):
        hook.verify({"authorization": value}, b"{}")
    hook.verify({"authorization": "Bearer s"}, b"{}")


def test_thena_timestamp_text_is_shown_shortened() -> None:
    # Found by the parser property: the whole value was echoed into the answer and the log.
    doc = valid_doc("thena", "evt-1")
    doc["timestamp"] = "2" + "[" * 10_000 + "26-12-03T16:31:38Z"
    with pytest.raises(MalformedEvent) as caught:
        VENDORS["thena"][0].parse(raw(doc))
    assert caught.value.field == "timestamp" and len(str(caught.value)) < 200
    assert "neither ISO 8601" in str(caught.value)
