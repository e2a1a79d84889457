"""The three webhook parsers under hostile bodies: a `MalformedEvent` naming the field, or an event
whose ids can become Redis keys and log text; never another exception."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import recent
from ticketwire.errors import InvalidSignature, MalformedEvent
from ticketwire.event import Routing
from ticketwire.secret import Secret
from ticketwire.vendors.cstar.webhook import CStarWebhook
from ticketwire.vendors.cstar.webhook import sign as sign_cstar
from ticketwire.vendors.ids import MAX_ID_CHARS, id_problem
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook
from ticketwire.vendors.thena.webhook import ThenaWebhook

INBOXOPS = InboxOpsWebhook([Secret("s")])
CSTAR = CStarWebhook([Secret("s")])
THENA = ThenaWebhook("hmac", [Secret("s")])


def inboxops_doc() -> dict[str, Any]:
    return {
        "event": "ticket.updated",
        "event_id": "evt_1",
        "tenant_id": "ws_1",
        "created_at": recent(),
        "data": {"id": "t-1", "subject": "Printer", "status": "open", "custom_fields": {}},
    }


def cstar_doc() -> dict[str, Any]:
    return {
        "id": "evt_1",
        "type": "ticket.updated",
        "created_at": recent(),
        "team_id": "team-1",
        "data": {"ticket": {"id": "tkt_1", "title": "Printer", "tags": ["a"]}, "changes": {}},
    }


def thena_doc() -> dict[str, Any]:
    return {
        "eventId": "evt_1",
        "eventType": "ticket:updated",
        "timestamp": recent(),
        "orgId": "org_1",
        "payload": {"ticket": {"id": "CT1", "title": "Printer"}, "previous": {"title": "P"}},
    }


VENDORS: dict[str, tuple[Any, Callable[[], dict[str, Any]]]] = {
    "inboxops": (INBOXOPS, inboxops_doc),
    "cstar": (CSTAR, cstar_doc),
    "thena": (THENA, thena_doc),
}
#: Where each vendor keeps the ids that become Redis keys: (path, field name in the error).
ID_PATHS: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "inboxops": [
        (("event_id",), "event_id"),
        (("tenant_id",), "tenant_id"),
        (("data", "id"), "data.id"),
        (("event",), "event"),
    ],
    "cstar": [
        (("id",), "id"),
        (("team_id",), "team_id"),
        (("data", "ticket", "id"), "data.ticket.id"),
        (("type",), "type"),
    ],
    "thena": [
        (("eventId",), "eventId"),
        (("orgId",), "orgId"),
        (("payload", "ticket", "id"), "payload.ticket.id"),
        (("eventType",), "eventType"),
    ],
}


def put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def refused(vendor: str, body: bytes) -> MalformedEvent:
    """Both the receiver's `inspect` and the workers' `parse` refuse `body`, the same way."""
    hook = VENDORS[vendor][0]
    with pytest.raises(MalformedEvent) as inspected:
        hook.inspect(body)
    with pytest.raises(MalformedEvent) as parsed:
        hook.parse(body)
    assert (inspected.value.field, str(inspected.value)) == (parsed.value.field, str(parsed.value))
    return inspected.value


def with_literal(body: bytes, marker: str, literal: str) -> bytes:
    return body.replace(json.dumps(marker).encode(), literal.encode())


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_not_json(vendor: str, literal: str) -> None:
    # RFC 8259 §6: "Numeric values that cannot be represented in the grammar below (such as
    # Infinity and NaN) are not permitted."
    hook, doc = VENDORS[vendor]
    for path, _ in ID_PATHS[vendor][:1] + [(("zz_extra",), "")]:
        body = with_literal(raw(put(doc(), path, "@@")), "@@", literal)
        error = refused(vendor, body)
        assert "not valid JSON" in str(error) and error.field is None
    # The words inside a string are text, not literals.
    hook.inspect(raw(put(doc(), ("zz_extra",), "NaN and -Infinity")))


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xef\xbb\xbf", id="byte-order-mark"),
        pytest.param(b"\xff\xfe", id="utf-16-mark"),
        pytest.param(b"\xed\xa0\x80", id="encoded-surrogate"),
        pytest.param(b"\xc3", id="truncated-utf-8"),
        pytest.param(b"\x00", id="nul"),
    ],
)
def test_bytes_that_are_not_utf8_json_are_refused(vendor: str, body: bytes) -> None:
    doc = raw(VENDORS[vendor][1]())
    for bad in (body + doc, doc[:-1] + body + b"}"):
        assert "not valid JSON" in str(refused(vendor, bad))
    if body != b"\xef\xbb\xbf":  # U+FEFF inside a string is text like any other
        assert "not valid JSON" in str(refused(vendor, doc.replace(b"Printer", b"Pr" + body)))
    assert "not valid JSON" in str(refused(vendor, doc.decode().encode("utf-16")))


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\ud800", "\\ud800\\u0041"])
def test_lone_surrogates_are_refused_anywhere(vendor: str, escape: str) -> None:
    doc = VENDORS[vendor][1]
    for path, _ in ID_PATHS[vendor]:
        body = raw(put(doc(), path, "@@")).replace(b'"@@"', f'"{escape}"'.encode())
        assert "not valid JSON" in str(refused(vendor, body))
    body = raw(put(doc(), ("zz_extra",), {"note": "@@"})).replace(b'"@@"', f'"{escape}"'.encode())
    assert "not valid JSON" in str(refused(vendor, body))


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("depth", [250, 1_100, 100_000])
def test_deep_nesting_is_refused_not_a_recursion_error(vendor: str, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    body = raw(put(VENDORS[vendor][1](), ("zz_extra",), "@@")).replace(b'"@@"', nested.encode())
    assert "not valid JSON" in str(refused(vendor, body))


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "empty"),
        ("x" * (MAX_ID_CHARS + 1), f"at most {MAX_ID_CHARS}"),
        ("evt\n2026-01-01 forged log line", "control"),
        ("evt\u0000", "control"),
        ("evt\u2028", "control"),
    ],
)
def test_ids_that_cannot_be_keys_name_the_field(vendor: str, value: str, says: str) -> None:
    for path, field in ID_PATHS[vendor]:
        error = refused(vendor, raw(put(VENDORS[vendor][1](), path, value)))
        assert (error.field, says in str(error)) == (field, True), (path, str(error))


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_longest_id_is_accepted(vendor: str) -> None:
    hook, doc = VENDORS[vendor]
    longest = "é" * MAX_ID_CHARS
    for path, _ in ID_PATHS[vendor][:3]:
        routing = hook.inspect(raw(put(doc(), path, longest)))
        assert longest in (routing.id, routing.ticket_id, routing.ticket_key.split(":")[1])


@pytest.mark.parametrize(
    ("literal", "says"),
    [
        ("1e999999", "string or a whole number"),
        ("2e999999", "string or a whole number"),
        ("1.5", "string or a whole number"),
        ("1.0", "string or a whole number"),
        ("-0.0", "string or a whole number"),
        ("true", "string or a whole number"),
        ("null", "string or a whole number"),
        ("[1]", "string or a whole number"),
        ("9" * 320, f"at most {MAX_ID_CHARS}"),
        ("9" * 4_000, f"at most {MAX_ID_CHARS}"),
    ],
)
@pytest.mark.parametrize(
    ("path", "field"),
    [(("id",), "id"), (("team_id",), "team_id"), (("data", "ticket", "id"), "data.ticket.id")],
)
def test_cstar_ids_are_strings_or_exact_integers(
    literal: str, says: str, path: tuple[str, ...], field: str
) -> None:
    body = with_literal(raw(put(cstar_doc(), path, "@@")), "@@", literal)
    error = refused("cstar", body)
    assert error.field == field and says in str(error)


def test_cstar_distinct_huge_numbers_are_never_one_event() -> None:
    # Issue: `1e999999` and `2e999999` both read as "inf", so the second was a "duplicate".
    ids = []
    for literal in ("12", "-7", "9" * 200, "98" * 100):
        body = with_literal(raw(put(cstar_doc(), ("id",), "@@")), "@@", literal)
        ids.append(CSTAR.inspect(body).id)
    assert ids == ["12", "-7", "9" * 200, "98" * 100]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"ticket_id": 4.5}, "ticket_id"),
        ({"ticket_id": 1e300}, "ticket_id"),
        ({"ticket_id": ""}, "ticket_id"),
        ({"ticket_id": True}, "ticket_id"),
        ({"ticket_id": {"id": 1}}, "ticket_id"),
        ({"ticket_id": "t1", "ticket_title": {"x": 1}}, "ticket_title"),
        ({"ticket_id": "t1", "ticket_status": ["open"]}, "ticket_status"),
    ],
)
def test_cstar_flat_payload_ticket_of_wrong_type_names_the_root_key(
    extra: dict[str, Any], field: str
) -> None:
    doc = cstar_doc()
    doc["data"] = {}
    error = refused("cstar", raw({**doc, **extra}))
    assert error.field == field


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(int("9" * 320), id="320-digit-number"),
        pytest.param("9" * 320, id="320-digit-string"),
        pytest.param(int("9" * 4_000), id="4000-digit-number"),
        pytest.param(-int("1" * 400), id="negative-400-digits"),
        pytest.param("1" * 300 + ".5", id="decimal-string"),
        pytest.param(1e308, id="huge-float"),
    ],
)
@pytest.mark.parametrize("where", ["timestamp", "updatedAt"])
def test_thena_huge_timestamps_are_out_of_range_not_overflow(timestamp: Any, where: str) -> None:
    doc = thena_doc()
    if where == "timestamp":
        doc["timestamp"] = timestamp
        error = refused("thena", raw(doc))
        assert error.field == "timestamp" and "out of range" in str(error)
        assert len(str(error)) < 200
    else:
        # An unreadable ticket time is not an error: the envelope's time orders the event.
        doc["payload"]["ticket"]["updatedAt"] = timestamp
        event = THENA.parse(raw(doc))
        assert event.updated_at == event.created_at


def test_thena_nested_message_string_is_strict_json_too() -> None:
    message = json.dumps(thena_doc()).replace('"evt_1"', "NaN")
    error = refused("thena", raw({"message": message}))
    assert error.field == "message" and "not valid JSON" in str(error)
    error = refused("thena", raw({"message": json.dumps(thena_doc()) + "x" * 0 + '"'}))
    assert error.field == "message"


@pytest.mark.parametrize("vendor", VENDORS)
def test_duplicate_keys_take_the_last_value_in_every_parser(vendor: str) -> None:
    hook, doc = VENDORS[vendor]
    path, _ = ID_PATHS[vendor][0]
    body = raw(put(doc(), path, "first"))[:-1] + f', "{path[0]}": "last"}}'.encode()
    assert hook.inspect(body).id == hook.parse(body).id == "last"


# --- the whole class: randomised bodies ----------------------------------------------------


WEIRD: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    10**300,
    1.5,
    1e308,
    "",
    "x" * 300,
    "\u0000",
    "\n",
    "\ud7ff\ue000",
    "🎫",
    [],
    [None],
    {},
    {"id": None},
    {"from": 1, "to": 2},
    [[[[[]]]]],
]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


def mutate(rng: random.Random, doc: dict[str, Any]) -> bytes:
    """One hostile variant of `doc`: a value of the wrong type somewhere, or damaged bytes."""
    kind = rng.randrange(6)
    if kind <= 2:
        for _ in range(kind + 1):
            path = rng.choice([p for p in paths(doc) if p])
            node: Any = doc
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = copy.deepcopy(rng.choice(WEIRD))
        return raw(doc)
    body = bytearray(raw(doc))
    if kind == 3:  # flip bytes
        for _ in range(rng.randrange(1, 4)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        return bytes(body)
    if kind == 4:  # cut short
        return bytes(body[: rng.randrange(len(body))])
    literal = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999999", b"-0", b"1E400"])
    return raw(doc).replace(b'"Printer"', literal)


@pytest.mark.parametrize("vendor", VENDORS)
def test_randomised_hostile_bodies_are_events_or_malformed(vendor: str) -> None:
    hook, doc = VENDORS[vendor]
    rng = random.Random(f"hostile-{vendor}")
    accepted = 0
    for _ in range(1_500):
        body = mutate(rng, doc())
        try:
            routing = hook.inspect(body)
        except MalformedEvent as exc:
            assert str(exc) and len(str(exc)) < 1_000
            with pytest.raises(MalformedEvent):
                hook.parse(body)
            continue
        accepted += 1
        event = hook.parse(body)
        assert routing == Routing.of(event) or vendor != "thena"
        assert (routing.id, routing.type) == (event.id, event.type)
        for name in (routing.id, routing.type):
            assert id_problem(name) is None, name
        # Everything the receiver writes to Redis encodes.
        routing.ticket_key.encode()
    assert 0 < accepted < 1_500


# --- signature headers: aiohttp keeps bytes that are not UTF-8 as lone surrogates -----------


@pytest.mark.parametrize(
    ("hook", "header"),
    [
        (INBOXOPS, "X-InboxOps-Signature"),
        (CSTAR, "X-Signature"),
        (THENA, "X-Thena-Signature"),
        (ThenaWebhook("token", [Secret("s")]), "authorization"),
    ],
)
@pytest.mark.parametrize(
    "value",
    ["tok\udcff\udcfe", "é" * 64, "sha256=" + "²" * 64, "t=²,v1=" + "a" * 64, "\u0000"],
)
def test_signature_headers_of_any_text_are_invalid_signatures(
    hook: Any, header: str, value: str
) -> None:
    with pytest.raises(InvalidSignature):
        hook.verify({header: value}, raw(VENDORS[hook.vendor][1]()))


@pytest.mark.parametrize("t", ["²", "١٧٦٤٠٠٠٠٠٠", "9" * 5_000, "+1764000000", " 1764000000x"])
def test_cstar_signature_time_is_ascii_digits_of_a_time(t: str) -> None:
    with pytest.raises(InvalidSignature) as caught:
        CSTAR.verify({"X-Signature": f"t={t},v1={'a' * 64}"}, b"{}")
    assert "malformed" in caught.value.reason and t not in caught.value.reason


def test_cstar_event_id_header_of_any_text_is_only_noted() -> None:
    body = raw(cstar_doc())
    hook = CStarWebhook([Secret("s")], now=lambda: 1_764_000_000)
    headers = {"X-Signature": sign_cstar(body, "s", 1_764_000_000), "X-Event-ID": "evt\udcff"}
    hook.verify(headers, body)
