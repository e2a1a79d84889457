"""Write-back planning: one ticket's calls coalesce, the same change across tickets batches."""

from __future__ import annotations

import math

import pytest

from ticketwire.calls import ApiCall
from ticketwire.vendors.cstar import batching as cstar
from ticketwire.vendors.cstar.client import MERGE_TAGS
from ticketwire.vendors.inboxops import batching as inboxops
from ticketwire.vendors.thena import batching as thena
from ticketwire.writeback import Pending, batch, coalesce, single

SPECS = {"inboxops": inboxops.spec(), "cstar": cstar.spec(), "thena": thena.spec()}
RANK = {"first": 0, "second": 1, "third": 2}


def rank(rule: str) -> int:
    return RANK.get(rule, 99)


def patch(
    ticket: str, body: dict, rule: str = "first", event: str = "e1", vendor: str = "inboxops"
):
    return ApiCall(vendor, "PATCH", f"/tickets/{ticket}", body, ticket, (rule,), event)


def tag(ticket: str, tag_id: str = "t-vip", op: str = "add_tags", event: str = "e1") -> ApiCall:
    body = {"operation": op, "ticket_ids": [ticket], "tag_ids": [tag_id]}
    return ApiCall("inboxops", "POST", "/tickets/bulk", body, ticket, ("first",), event)


class TestCoalesce:
    def test_patches_of_several_events_become_one(self):
        items = [
            Pending(patch("42", {"priority": "high"}, "first", "e1")),
            Pending(patch("42", {"status": "pending"}, "second", "e2")),
            Pending(patch("42", {"custom_fields": {"tier": "gold"}}, "third", "e3")),
        ]
        work = coalesce("k", items, rank=rank)
        assert [p.call.body for p in work.calls] == [
            {"priority": "high", "status": "pending", "custom_fields": {"tier": "gold"}}
        ]
        assert work.calls[0].call.rules == ("first", "second", "third")
        assert work.claimed == 3
        assert work.notes == []

    def test_a_field_written_twice_keeps_the_later_event_and_notes_the_loser(self):
        items = [
            Pending(patch("42", {"priority": "high"}, "second", "e1")),
            Pending(patch("42", {"priority": "low"}, "first", "e2")),
        ]
        work = coalesce("k", items, rank=rank)
        assert work.calls[0].call.body == {"priority": "low"}
        [note] = work.notes
        assert "priority" in note and '"low"' in note and '"high"' in note
        assert "'second'" in note and "e1" in note

    def test_nested_objects_merge_key_by_key(self):
        items = [
            Pending(patch("42", {"custom_fields": {"a": 1, "b": 2}}, event="e1")),
            Pending(patch("42", {"custom_fields": {"b": 3}}, event="e2")),
        ]
        [call] = coalesce("k", items, rank=rank).calls
        assert call.call.body == {"custom_fields": {"a": 1, "b": 3}}

    def test_a_call_in_between_keeps_the_order(self):
        items = [
            Pending(patch("42", {"status": "open"}, event="e1")),
            Pending(tag("42", event="e2")),
            Pending(patch("42", {"status": "pending"}, event="e3")),
        ]
        work = coalesce("k", items, rank=rank)
        assert [p.call.method for p in work.calls] == ["PATCH", "POST", "PATCH"]

    def test_a_repeat_in_a_row_is_sent_once_but_add_remove_add_is_kept(self):
        work = coalesce(
            "k", [Pending(tag("42", event="e1")), Pending(tag("42", event="e2"))], rank=rank
        )
        assert len(work.calls) == 1
        flip = [Pending(tag("42")), Pending(tag("42", op="remove_tags")), Pending(tag("42"))]
        assert len(coalesce("k", flip, rank=rank).calls) == 3

    def test_merged_identity_is_stable_so_retries_reuse_idempotency_keys(self):
        items = [
            Pending(patch("42", {"a": 1}, event="e1")),
            Pending(patch("42", {"b": 2}, event="e2")),
        ]
        one = coalesce("k", items, rank=rank).calls[0].call
        two = coalesce("k", items, rank=rank).calls[0].call
        assert one.event_id == two.event_id and one.event_id.startswith("merged:")

    def test_cstar_pending_tag_changes_accumulate(self):
        a = patch("t1", {MERGE_TAGS: {"add": ["vip"], "remove": []}}, vendor="cstar", event="e1")
        b = patch(
            "t1", {MERGE_TAGS: {"add": ["urgent"], "remove": ["vip"]}}, vendor="cstar", event="e2"
        )
        [call] = coalesce("k", [Pending(a), Pending(b)], rank=rank, spec=SPECS["cstar"]).calls
        assert call.call.body[MERGE_TAGS] == {"add": ["urgent"], "remove": ["vip"]}


class TestBatch:
    def test_one_tag_on_a_thousand_tickets_is_ten_bulk_calls(self):
        round_calls = [(f"k{i}", Pending(tag(f"id{i}", event=f"e{i}"))) for i in range(1000)]
        out = batch(round_calls, SPECS)
        assert len(out) == math.ceil(1000 / 100)
        assert all(len(o.call.body["ticket_ids"]) == 100 for o in out)
        assert sorted(k for o in out for k in o.covers) == sorted(k for k, _ in round_calls)
        assert all(o.call.body["tag_ids"] == ["t-vip"] for o in out)

    def test_chunks_follow_the_configured_maximum(self):
        specs = {**SPECS, "inboxops": inboxops.spec(max_ids=30)}
        round_calls = [(f"k{i}", Pending(tag(f"id{i}"))) for i in range(100)]
        sizes = [len(o.covers) for o in batch(round_calls, specs)]
        assert sizes == [30, 30, 30, 10]

    def test_different_changes_are_not_mixed(self):
        calls = [
            ("a", Pending(tag("1"))),
            ("b", Pending(tag("2", "t-other"))),
            ("c", Pending(tag("3"))),
        ]
        out = batch(calls, SPECS)
        by_tag = {o.call.body["tag_ids"][0]: set(o.covers) for o in out}
        assert by_tag == {"t-vip": {"a", "c"}, "t-other": {"b"}}

    def test_same_status_patch_on_many_tickets_becomes_bulk_but_a_lone_one_stays_a_patch(self):
        many = [(f"k{i}", Pending(patch(f"id{i}", {"status": "closed"}))) for i in range(3)]
        [o] = batch(many, SPECS)
        assert o.call.path == "/tickets/bulk"
        assert o.call.body == {
            "operation": "update_status",
            "status": "closed",
            "ticket_ids": ["id0", "id1", "id2"],
        }
        [lone] = batch([("k", Pending(patch("id9", {"status": "closed"})))], SPECS)
        assert lone.call.method == "PATCH"

    def test_patches_the_bulk_endpoint_cannot_express_stay_per_ticket(self):
        calls = [(f"k{i}", Pending(patch(f"id{i}", {"priority": "high"}))) for i in range(3)]
        out = batch(calls, SPECS)
        assert [o.call.method for o in out] == ["PATCH"] * 3

    def test_solo_items_are_never_batched(self):
        calls = [
            ("a", Pending(tag("1"), solo=True)),
            ("b", Pending(tag("2"))),
            ("c", Pending(tag("3"))),
        ]
        out = batch(calls, SPECS)
        assert sorted(len(o.covers) for o in out) == [1, 2]

    def test_cstar_patch_becomes_bulk_update_of_at_most_100(self):
        calls = [
            (f"k{i}", Pending(patch(f"tkt_{i}", {"status": "closed"}, vendor="cstar")))
            for i in range(150)
        ]
        out = batch(calls, SPECS)
        assert [len(o.call.body["ids"]) for o in out] == [100, 50]
        assert out[0].call.body["data"] == {"status": "closed"}
        tags = patch("tkt_1", {MERGE_TAGS: {"add": ["x"], "remove": []}}, vendor="cstar")
        tags2 = patch("tkt_2", {MERGE_TAGS: {"add": ["x"], "remove": []}}, vendor="cstar")
        assert [
            o.call.method for o in batch([("a", Pending(tags)), ("b", Pending(tags2))], SPECS)
        ] == [
            "PATCH",
            "PATCH",
        ]

    def test_thena_bulk_update(self):
        calls = [
            (f"k{i}", Pending(patch(f"th{i}", {"statusId": "s-closed"}, vendor="thena")))
            for i in range(2)
        ]
        [o] = batch(calls, SPECS)
        assert o.call.method == "PATCH" and o.call.path == "/tickets/bulk"
        assert o.call.body == {"ticketIds": ["th0", "th1"], "statusId": "s-closed"}

    def test_batched_identity_depends_only_on_its_members(self):
        calls = [(f"k{i}", Pending(tag(f"id{i}", event=f"e{i}"))) for i in range(5)]
        [forward] = batch(calls, SPECS)
        [backward] = batch(list(reversed(calls)), SPECS)
        assert forward.call.event_id == backward.call.event_id
        [other] = batch(calls[:4], SPECS)
        assert other.call.event_id != forward.call.event_id

    def test_single_extracts_one_tickets_part(self):
        [o] = batch([(f"k{i}", Pending(tag(f"id{i}"))) for i in range(3)], SPECS)
        one = single(o.call, "id1", SPECS["inboxops"])
        assert one.body["ticket_ids"] == ["id1"] and one.ticket_id == "id1"


@pytest.mark.parametrize("raw", ["x", '{"call": "{}"}'])
def test_pending_rejects_garbage(raw):
    with pytest.raises((ValueError, KeyError, TypeError)):
        Pending.from_json(raw)


def test_pending_round_trips():
    p = Pending(tag("1"), ({"status": 500},), solo=True)
    assert Pending.from_json(p.to_json()) == p
