"""Generated webhook bodies: valid envelopes of each helpdesk, then damaged in every way a sender
(or an attacker) can: wrong types at any field, odd JSON, other encodings, cut or flipped bytes."""

from __future__ import annotations

import codecs
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from tests.test_webhook_parsers_hostile import VENDORS, paths

#: Text with lone surrogates: `json.dumps` writes them as `\ud800` escapes, which are not JSON.
SURROGATES = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
ODD_TEXT = st.sampled_from(
    ["", " ", "x" * 300, "é" * 257, "\u0000", "\n", "\u2028", "\ufeff", "🎫", "NaN", "1e999"]
)
TEXT = st.text(max_size=20) | SURROGATES | ODD_TEXT
NUMBERS = (
    st.integers()
    | st.integers(min_value=-(10**1000), max_value=10**1000)
    | st.floats()  # NaN and ±Infinity included: `json.dumps` writes them as bare words
    | st.sampled_from([0, -1, 2**63, 2**64 + 1, 1e308, -0.0, 1.5])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
#: Raw JSON text that `json.dumps` never writes: not JSON, or JSON at its edges.
LITERALS = st.sampled_from(
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e999999",
        b"-1e999999",
        b"-0",
        b"1E400",
        b"9" * 400,
        b"[" * 300 + b"]" * 300,
        b"[" * 5_000 + b"]" * 5_000,
        b'{"a":' * 300 + b"1" + b"}" * 300,
        b'"\\ud800"',
        b'"\\udfff\\ud800"',
        b'"\x00"',
        b'"\xff"',
        b"tru",
        b'"a" "b"',
        b"{}{}",
    ]
)
CHARSETS = ["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "utf-8-sig"]


def recent() -> str:
    """An envelope time of now: deliveries older than the dedupe window are refused."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def valid_doc(vendor: str, event_id: str, ticket_id: str = "t-1") -> dict[str, Any]:
    """A valid delivery of `vendor` with its own event id, made now."""
    doc = VENDORS[vendor][1]()
    if vendor == "inboxops":
        doc["event_id"], doc["data"]["id"], doc["created_at"] = event_id, ticket_id, recent()
    elif vendor == "cstar":
        doc["id"], doc["data"]["ticket"]["id"], doc["created_at"] = event_id, ticket_id, recent()
    else:
        doc["eventId"], doc["payload"]["ticket"]["id"], doc["timestamp"] = (
            event_id,
            ticket_id,
            recent(),
        )
    return doc


def event_id_of(vendor: str, doc: dict[str, Any]) -> Any:
    """The envelope's event id, where `vendor` keeps it."""
    return doc[{"inboxops": "event_id", "cstar": "id", "thena": "eventId"}[vendor]]


@st.composite
def damaged_docs(draw: st.DrawFn, vendor: str, event_id: str) -> dict[str, Any]:
    """A valid document with up to four fields set to any JSON value, removed, or added."""
    doc = valid_doc(vendor, event_id)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from([p for p in paths(doc) if p]))
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        action = draw(st.sampled_from(["set", "set", "set", "delete", "add", "wrap"]))
        if action == "set":
            node[path[-1]] = draw(JSON)
        elif action == "delete":
            del node[path[-1]]
        elif action == "add" and isinstance(node, dict):
            node[draw(TEXT)] = draw(JSON)
        elif action == "wrap":
            node[path[-1]] = draw(st.sampled_from([[node[path[-1]]], {"id": node[path[-1]]}]))
    if vendor == "thena" and draw(st.booleans()):
        # The app-framework shape: the event nested under `message`, maybe as a JSON string.
        nested: Any = json.dumps(doc) if draw(st.booleans()) else doc
        doc = {"message": nested, "messageAttributes": draw(JSON)}
    return doc


@st.composite
def serialised(draw: st.DrawFn, doc: Any) -> bytes:
    """`doc` as bytes, mostly as a sender would write it, sometimes damaged on the way."""
    text = json.dumps(
        doc,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, None, 2])),
    )
    body = text.encode("utf-8", "surrogatepass")
    damage = draw(
        st.sampled_from(
            ["none"] * 6 + ["literal", "duplicate", "charset", "bom", "cut", "flip", "splice"]
        )
    )
    if damage == "literal":
        # A value somewhere replaced by raw text json.dumps never writes.
        marker = b"null" if b"null" in body else b"true" if b"true" in body else b"0"
        body = body.replace(marker, draw(LITERALS), 1)
    elif damage == "duplicate" and body.endswith(b"}"):
        key = draw(st.sampled_from([b"id", b"event_id", b"eventId", b"type", b"data", b"zz"]))
        body = body[:-1] + b', "' + key + b'": ' + json.dumps(draw(JSON)).encode() + b"}"
    elif damage == "charset":
        body = text.encode(draw(st.sampled_from(CHARSETS)), "replace")
    elif damage == "bom":
        body = draw(st.sampled_from([codecs.BOM_UTF8, codecs.BOM_UTF16_LE, b"\xfe\xff"])) + body
    elif damage == "cut" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif damage == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    elif damage == "splice":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(max_size=12)) + body[at:]
    return body


@st.composite
def bodies(draw: st.DrawFn, vendor: str, event_id: str = "evt-fuzz") -> bytes:
    """Any body a route of `vendor` may receive: mostly damaged envelopes, some raw bytes."""
    kind = draw(st.sampled_from(["doc"] * 8 + ["json", "bytes"]))
    if kind == "doc":
        return draw(serialised(draw(damaged_docs(vendor, event_id))))
    if kind == "json":
        return draw(serialised(draw(JSON)))
    return draw(st.binary(max_size=200))
