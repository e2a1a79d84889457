"""Dead letters by filter: parsing, matching, a dry run that changes nothing, redrive and drop."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from tests.conftest import wait_for
from tests.stack import running_worker, stack_settings
from tests.test_dlq import (
    START_URGENT,
    TICKET,
    cli,  # noqa: F401 (fixture)
    delivery,
    patch,
    sim,  # noqa: F401 (fixture)
    store,
    stream_entries,
)
from tests.test_end_to_end import calls, start_receiver, write_rules
from ticketwire.keys import Keys, partition_of
from workers.deadletter import dead_letter
from workers.dlqfilter import (
    FilterError,
    LetterFilter,
    drop_matching,
    matching,
    redrive_matching,
)

NOW = int(datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour=red", "unknown filter key 'colour'; keys: vendor, kind, rule, ticket"),
        ("kind", "'kind' is not key=value"),
        ("kind=call,kind=event", "kind is given twice"),
        ("kind=letter", "kind=letter: expected event or call"),
        ("vendor=zendesk", "vendor=zendesk: expected one of inboxops, cstar, thena"),
        ("since=yesterday", "since=yesterday: expected a duration meaning that long ago"),
        ("until=2h5", "until=2h5: expected a duration"),
        ("rule=", "rule= needs a value"),
        ("", "an empty filter"),
        (" , ", "an empty filter"),
        ("since=1h,until=2h", "since is later than until"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=None) as raised:
        LetterFilter.parse(text, now_ms=NOW)
    assert message in str(raised.value)


def test_filters_read_durations_iso_times_and_every_key() -> None:
    flt = LetterFilter.parse(
        " Vendor=InboxOps , kind=CALL,rule=escalate,ticket=inboxops:42,reason=422,"
        "since=2h,until=2026-12-02T11:30",
        now_ms=NOW,
    )
    assert flt == LetterFilter(
        vendor="inboxops",
        kind="call",
        rule="escalate",
        ticket="inboxops:42",
        reason="422",
        since_ms=NOW - 2 * 3600 * 1000,
        until_ms=NOW - 30 * 60 * 1000,
    )
    assert flt.describe() == (
        "vendor=inboxops, kind=call, rule=escalate, ticket=inboxops:42, reason=422, "
        "since 2026-12-02 10:00:00 UTC, until 2026-12-02 11:30:00 UTC"
    )
    assert LetterFilter.parse("since=90m", now_ms=NOW).since_ms == NOW - 90 * 60 * 1000
    zoned = LetterFilter.parse("since=2026-12-02T13:00+02:00", now_ms=NOW)
    assert zoned.since_ms == NOW - 3600 * 1000


async def test_matching_takes_every_key_into_account(redis: Redis, keys: Keys) -> None:
    other = "inboxops:ws:99"
    d = await store(redis, keys, delivery(), 1)
    ev = await dead_letter(
        redis, keys, reason="rule a failed: boom", ticket_key=TICKET, delivery=d, rule="a"
    )
    call = await dead_letter(
        redis, keys, reason="HTTP 422 invalid", ticket_key=other, call=patch("99")
    )

    async def ids(text: str) -> list[str]:
        return [x.id for x in await matching(redis, keys, LetterFilter.parse(text, now_ms=NOW))]

    assert await ids("kind=event") == [ev]
    assert await ids("kind=call") == [call]
    assert await ids("vendor=inboxops") == [ev, call]
    assert await ids("vendor=cstar") == []
    assert await ids("rule=escalate") == [call]
    assert await ids("rule=a") == [ev]
    assert await ids("reason=http 422") == [call]
    assert await ids("ticket=99") == [call]
    assert await ids("ticket=inboxops:99") == [call]
    assert await ids(f"ticket={other}") == [call]
    assert await ids("ticket=cstar:99") == []
    # Letters are stamped now: `since` an hour ago takes them; `until` a year ago does not.
    now = int(datetime.now(UTC).timestamp() * 1000)
    assert len(await matching(redis, keys, LetterFilter.parse("since=1h", now_ms=now))) == 2
    assert await matching(redis, keys, LetterFilter.parse("until=365d", now_ms=now)) == []


async def test_dry_run_says_what_a_redrive_would_do_and_changes_nothing(
    redis: Redis,
    keys: Keys,
    cli,  # noqa: F811
) -> None:
    await redis.hset(keys.meta, "partitions", "4")
    d = await store(redis, keys, delivery(), 3)
    a = await dead_letter(
        redis, keys, reason="rule a failed", ticket_key=TICKET, delivery=d, rule="a"
    )
    b = await dead_letter(
        redis, keys, reason="rule b failed", ticket_key=TICKET, delivery=d, rule="b"
    )
    c = await dead_letter(redis, keys, reason="gave up", ticket_key=TICKET, call=patch())
    legacy = (await redis.xadd(keys.dlq, {"reason": "old", "ticket": TICKET, "call": ""})).decode()
    before = await redis.xrange(keys.dlq)
    streams = await stream_entries(redis, keys)

    code, out, err = await cli("redrive", "--filter", "vendor=inboxops", "--dry-run")
    assert code == 0, err
    p = partition_of(TICKET, 4)
    assert out.splitlines() == [
        (
            f"{a}: re-add event evt_1 to partition {p} for ticket {TICKET}, removing letters "
            f"{b} of the same event"
        ),
        f"{b}: removed with {a}: the same event's re-run",
        f'{c}: re-queue call PATCH /tickets/42 {{"priority": "high"}} on ticket {TICKET}',
        (
            f"{legacy}: not redrivable: dead letter {legacy} does not carry its event (written "
            "by an earlier version); capture event  with `ticketwire capture` and send it again "
            f"with `ticketwire replay`, then `ticketwire dlq drop {legacy}`"
        ),
        (
            "dry run: 4 letter(s) match vendor=inboxops; a redrive would put 2 back to work; "
            "nothing was changed"
        ),
    ]
    code, out, _ = await cli("redrive", "--filter", "rule=b", "--dry-run", "--json")
    doc = json.loads(out)
    assert doc["dry_run"] is True and doc["matched"] == 1
    # Letter a of the same delivery goes with b's re-run, though the filter left it out.
    assert [(x["id"], x["action"], x["partition"], x["also_removed"]) for x in doc["plan"]] == [
        (b, "event", p, [a])
    ]
    # A letter another process is redriving right now is left, and the dry run says so.
    await redis.set(keys.dlq_claim(c), "someone", px=60_000)
    code, out, _ = await cli("redrive", "--filter", "kind=call", "--dry-run")
    assert out.splitlines()[0] == f"{c}: left: another process is redriving it right now"
    await redis.delete(keys.dlq_claim(c))
    code, out, _ = await cli("drop", "--filter", "kind=call", "--dry-run")
    assert f"would drop {c}" in out and "none dropped" in out
    # Nothing moved: letters, partition streams and the outbox are as they were.
    assert await redis.xrange(keys.dlq) == before
    assert await stream_entries(redis, keys) == streams
    assert await redis.llen(keys.outbox(TICKET)) == 0


async def test_redrive_by_filter_takes_only_the_matching_letters(redis: Redis, keys: Keys) -> None:
    await redis.hset(keys.meta, "partitions", "4")
    d1 = await store(redis, keys, delivery("evt_1"), 0)
    d2 = await store(redis, keys, delivery("evt_2", ticket="inboxops:ws:2"), 1)
    a = await dead_letter(
        redis, keys, reason="rule a failed", ticket_key=TICKET, delivery=d1, rule="a"
    )
    b = await dead_letter(
        redis, keys, reason="rule b failed", ticket_key=TICKET, delivery=d1, rule="b"
    )
    other = await dead_letter(
        redis, keys, reason="rule a failed", ticket_key="inboxops:ws:2", delivery=d2, rule="a"
    )
    call = await dead_letter(redis, keys, reason="gave up", ticket_key=TICKET, call=patch())
    flt = LetterFilter.parse(f"rule=b,ticket={TICKET}", now_ms=NOW)
    report = await redrive_matching(redis, keys, flt, partitions=4, dry_run=False)
    assert [r.letter.id for r in report.redriven] == [b]
    assert report.redriven[0].also_removed == (a,)
    assert report.failed == [] and report.skipped == []
    # The delivery was re-added once, with the letter it came back from.
    readded = [e for e in await stream_entries(redis, keys) if e.redriven_from]
    assert [(e.event_id, e.redriven_from) for e in readded] == [("evt_1", b)]
    assert [i.decode() for i, _ in await redis.xrange(keys.dlq)] == [other, call]
    dropped = await drop_matching(redis, keys, LetterFilter.parse("kind=call", now_ms=NOW))
    assert [x.id for x in dropped] == [call]
    assert [i.decode() for i, _ in await redis.xrange(keys.dlq)] == [other]


async def test_redrive_by_filter_through_the_cli_is_sent_to_the_helpdesk(
    aiohttp_server,
    redis,
    redis_url,
    keys,
    sim,  # noqa: F811
    tmp_path,
    cli,  # noqa: F811
) -> None:
    settings = stack_settings(redis_url, keys, sim, write_rules(tmp_path, START_URGENT))
    await start_receiver(aiohttp_server, settings, redis, sim)
    first = sim.create_ticket(subject="Refused first", priority="low")
    second = sim.create_ticket(subject="Refused second", priority="low")
    sim.faults.fail_next("PATCH", "/api/v1/tickets/*", 422, times=2)
    async with running_worker(settings):
        # One after the other: changed together, the two tickets' calls would go as one bulk call.
        for n, ticket in enumerate((first, second), 1):
            sim.change_ticket(ticket["id"], priority="urgent")

            async def letters(n: int = n) -> bool:
                return await redis.xlen(keys.dlq) == n

            await wait_for(letters, message=f"refused call {n} dead-lettered")
        code, out, err = await cli("redrive", "--filter", f"kind=call,ticket={first['id']}")
        assert code == 0, err
        assert "redrove 1 of 1 matching dead letter(s)" in out
        await wait_for(
            lambda: [c.status for c in calls(sim, "PATCH", first["id"])] == [422, 200],
            message="the matching call is sent again and accepted",
        )
        assert sim.ticket(first["id"])["status"] == "in_progress"
        # The other letter stays, and its call was not sent again.
        [(_, left)] = await redis.xrange(keys.dlq)
        assert second["id"] in left[b"ticket"].decode()
        assert [c.status for c in calls(sim, "PATCH", second["id"])] == [422]
        code, out, _ = await cli("drop", "--filter", f"ticket={second['id']}", "--json")
        assert json.loads(out)["dropped"] == 1
        assert await redis.xlen(keys.dlq) == 0


async def test_filter_errors_exit_2_before_touching_redis(cli) -> None:  # noqa: F811
    code, out, err = await cli("redrive", "--filter", "colour=red")
    assert code == 2 and out == ""
    assert "--filter: unknown filter key 'colour'" in err
    code, _, err = await cli("redrive", "--all", "--dry-run")
    assert code == 2 and "--dry-run goes with --filter" in err


@pytest.mark.parametrize("ago", ["999999d", "9" * 400 + "w", "1" * 30 + "s"])
def test_a_duration_further_back_than_the_epoch_means_from_the_start(ago: str) -> None:
    flt = LetterFilter.parse(f"since={ago}", now_ms=NOW)
    assert flt.since_ms == 0
    assert flt.describe() == "since 1970-01-01 00:00:00 UTC"
