"""`replay` and `capture` on real receivers: the local up, its secrets and Redis, progress and
the end-of-run summary."""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.capture import _capture
from cli.dryrun import parse_capture
from cli.fire import build_body
from cli.progress import Tally, progress_bar
from cli.replay import _replay, outcome, resign, targets_local_up
from tests.localstack import LocalStack, local_up, receiver_settings, serve
from ticketwire.errors import MalformedEvent
from ticketwire.keys import Keys
from ticketwire.stored import StoredDelivery

PROD = {"inboxops": "whsec_prod_io", "cstar": "whsec_prod_cs", "thena": "tok_prod_th"}


@pytest.fixture
async def up(tmp_path, aiohttp_server, redis, redis_url, keys) -> AsyncIterator[LocalStack]:
    async for stack in local_up(tmp_path, aiohttp_server, redis, redis_url, keys):
        yield stack


def delivery(vendor: str, n: int, *, token: bool = False) -> dict[str, object]:
    """A captured delivery signed in production (Thena's token is never kept by capture)."""
    now = datetime.now(UTC)
    ticket = {"inboxops": {"id": f"t{n}"}, "cstar": {"id": f"tkt_{n}"}, "thena": {"id": f"h{n}"}}
    event_id = f"{vendor}-{n}-{time.monotonic_ns()}"
    body = build_body(
        vendor, "ticket.updated", ticket[vendor], tenant="ten", event_id=event_id, now=now
    )
    headers = {"Content-Type": "application/json"}
    if vendor != "thena" or token:
        headers.update(resign(vendor, body, PROD[vendor]))
    return {"vendor": vendor, "event_id": event_id, "headers": headers, "body": body.decode()}


def capture_file(tmp_path: Path, records: list[dict[str, object]]) -> Path:
    path = tmp_path / "cap.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


async def test_replay_to_the_local_up_needs_no_flags_and_says_it_resigns(up, tmp_path):
    cap = capture_file(
        tmp_path, [delivery("inboxops", 1), delivery("cstar", 2), delivery("thena", 3)]
    )
    code, out, err = await up.run("replay", str(cap))
    assert code == 0, out + err
    assert (
        f"replaying to the local `ticketwire up` (pid {up_pid(up)}) at {up.receiver_url}: "
        "re-signing cstar, inboxops, thena deliveries with its webhook secrets"
    ) in err
    assert "sent 3, accepted 3, duplicate 0, failed 0" in err
    # `--to` the same up: re-signed too; the dedupe window answers.
    code, out, err = await up.run("replay", str(cap), "--to", up.receiver_url)
    assert code == 0, out + err
    assert "re-signing" in err and "sent 3, accepted 0, duplicate 3, failed 0" in err


def up_pid(up: LocalStack) -> int:
    return int(json.loads((up.data_dir / "up.json").read_text())["pid"])


async def test_a_refused_thena_replay_says_what_to_do(
    aiohttp_server, redis, redis_url, keys, tmp_path, capsys
):
    other = replace(keys, prefix=keys.prefix + "prod:")
    url = await serve(aiohttp_server, receiver_settings(other, PROD, redis_url), redis)
    cap = capture_file(tmp_path, [delivery("inboxops", 1), delivery("thena", 2)])
    assert await _replay([cap], url, None, 5.0) == 1
    out, err = capsys.readouterr()
    assert "401" in out and "invalid_signature" in out
    assert "sent 2, accepted 1, duplicate 0, failed 1" in err
    assert "401 on thena deliveries: captures never keep Thena's token header" in err
    assert "pass --secret" in err and "replay to a running `ticketwire up`" in err
    # The hint's first remedy works.
    assert await _replay([cap], url, PROD["thena"], 5.0) == 1  # inboxops now fails instead
    cap = capture_file(tmp_path, [delivery("thena", 3)])
    assert await _replay([cap], url, PROD["thena"], 5.0) == 0
    assert "sent 1, accepted 1" in capsys.readouterr().err


async def test_replay_without_to_and_without_an_up_says_how(tmp_path, up):
    cap = capture_file(tmp_path, [delivery("inboxops", 1)])
    env = up.env(TICKETWIRE_DATA_DIR=str(tmp_path / "elsewhere"))
    code, _, err = await up.run("replay", str(cap), env=env)
    assert code == 2 and "give --to URL" in err and "`ticketwire up`" in err


async def test_unreachable_receiver_counts_as_failed_and_long_runs_stay_readable(tmp_path, capsys):
    cap = capture_file(tmp_path, [delivery("inboxops", n) for n in range(25)])
    assert await _replay([cap], "http://127.0.0.1:9/webhooks", None, 2.0) == 1
    out, err = capsys.readouterr()
    assert "sent 25, accepted 0, duplicate 0, failed 25" in err
    lines = out.splitlines()
    assert len(lines) == 21 and "failed: Cannot connect" in lines[0]
    assert lines[-1] == "… and 5 more failures not shown"


def test_outcomes_follow_the_receivers_answer():
    assert outcome(202, '{"status":"stored"}') == "accepted"
    assert outcome(200, '{"status":"duplicate"}') == "duplicate"
    assert outcome(202, '{"status":"ignored"}') == "ignored"
    assert outcome(401, '{"error":"invalid_signature"}') == "failed"
    assert outcome(204, "") == "accepted"
    assert Tally(3, 1, 1, 1, 0).summary() == "sent 3, accepted 1, duplicate 1, ignored 1, failed 0"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_rate_and_eta_on_a_terminal_only():
    term = Terminal()
    bar = progress_bar(1000, "deliveries", stream=term)
    bar.update(500)
    bar.refresh()
    bar.close()
    shown = term.getvalue()
    assert "500/1000" in shown and "deliveries/s" in shown and "<" in shown  # elapsed<ETA
    pipe = io.StringIO()
    bar = progress_bar(1000, "deliveries", stream=pipe)
    bar.update(500)
    bar.close()
    assert pipe.getvalue() == ""


async def fire_some(up: LocalStack, n: int) -> None:
    for i in range(n):
        code, _, err = await up.run(
            "fire", "inboxops", "--ticket", f"t{i}", "--tenant", "ws", "--set", f"seq={i}"
        )
        assert code == 0, err


async def test_capture_reads_the_local_ups_redis_with_no_redis_url(up, tmp_path):
    await fire_some(up, 2)
    out = tmp_path / "out.jsonl"
    code, _, err = await up.run("capture", "-o", str(out))
    assert code == 0, err
    assert "using the Redis of the `ticketwire up` running in" in err
    assert f"captured 2 deliveries to {out}, failed 0" in err
    assert [json.loads(line)["vendor"] for line in out.read_text().splitlines()] == [
        "inboxops",
        "inboxops",
    ]


async def test_capture_without_redis_or_up_gives_an_example_url(up, tmp_path):
    env = up.env(TICKETWIRE_DATA_DIR=str(tmp_path / "elsewhere"))
    code, _, err = await up.run("capture", env=env)
    assert code == 2 and "redis://host:6379/0" in err and "`ticketwire up`" in err


async def test_capture_keeps_the_newest_and_counts_unreadable_entries(up, redis, redis_url):
    from cli.fire import FireRequest, fire
    from cli.localup import find_local_up
    from ticketwire.config import Settings

    info = find_local_up(up.data_dir)
    for i in range(5):
        req = FireRequest("inboxops", "ticket.updated", "t1", (f"seq={i}",), tenant="ws")
        assert await fire(req, Settings(), info) == 0
    keys = Keys(up.keys.prefix)
    # All five are of one ticket, so in one partition; a newer entry there is unreadable.
    sizes = [await redis.xlen(keys.stream(p)) for p in range(4)]
    partition = sizes.index(5)
    await redis.xadd(keys.stream(partition), {"junk": "1"})
    out = io.StringIO()
    s = replace(Settings(key_prefix=keys.prefix, partitions=4), redis_url=redis_url)
    assert await _capture(s, out, limit=3, since_s=None) == (3, 1)
    seqs = [
        json.loads(json.loads(line)["body"])["data"]["seq"] for line in out.getvalue().splitlines()
    ]
    assert seqs == [2, 3, 4]


def test_the_local_up_is_recognised_under_any_loopback_name():
    from cli.localup import LocalUp

    up = LocalUp("d", 1, "http://127.0.0.1:8000/webhooks", "redis://x")
    assert targets_local_up("http://localhost:8000/webhooks/thena", up)
    assert targets_local_up("http://127.0.0.1:8000/webhooks/", up)
    assert not targets_local_up("http://127.0.0.1:8001/webhooks", up)
    assert not targets_local_up("https://127.0.0.1:8000/webhooks", up)
    assert not targets_local_up("http://example.com:8000/webhooks", up)
    assert not targets_local_up("http://127.0.0.1:8000/elsewhere", up)
    assert not targets_local_up("http://127.0.0.1:8000/webhooks", None)


@pytest.fixture
async def up_with_brand(
    tmp_path, aiohttp_server, redis, redis_url, keys
) -> AsyncIterator[LocalStack]:
    accounts = {"brand-a": "whsec_up_brand_a"}
    async for stack in local_up(
        tmp_path, aiohttp_server, redis, redis_url, keys, accounts=accounts
    ):
        yield stack


async def test_a_named_accounts_delivery_is_captured_replayed_and_dry_run_as_that_accounts(
    up_with_brand, tmp_path, redis, keys
):
    up = up_with_brand
    for args in (("--account", "brand-a", "--ticket", "t1"), ("--ticket", "t2")):
        code, _, err = await up.run("fire", "inboxops", "--tenant", "ws", *args)
        assert code == 0, err
    cap = tmp_path / "cap.jsonl"
    code, _, err = await up.run("capture", "-o", str(cap))
    assert code == 0, err
    brand, default = sorted(
        map(json.loads, cap.read_text().splitlines()), key=lambda r: r["ticket"]
    )
    assert brand["account"] == "brand-a" and "account" not in default

    # A dry run plays each as its own account's, so rules pinned to accounts match as live.
    assert parse_capture(brand, None).account == "brand-a"
    assert parse_capture(default, None).account == "default"
    with pytest.raises(MalformedEvent, match="not an account name"):
        parse_capture({**brand, "account": "Brand A"}, None)

    # Replayed, each goes to its own account's route: both are that account's duplicates (sent
    # to the default account, brand-a's event id would be new there and stored again).
    code, _, err = await up.run("replay", str(cap))
    assert code == 0, err
    assert "(and inboxops@brand-a)" in err
    assert "sent 2, accepted 0, duplicate 2, failed 0" in err

    # A new event of brand-a's is stored in brand-a's lane, as brand-a's.
    doc = json.loads(default["body"])
    doc["event_id"] = "evt-brand-a-new"
    fresh = {
        **default,
        "account": "brand-a",
        "event_id": "evt-brand-a-new",
        "body": json.dumps(doc),
    }
    bad = {**fresh, "account": "../x", "event_id": "evt-bad"}
    code, out, err = await up.run("replay", str(capture_file(tmp_path, [fresh, bad])))
    assert code == 1
    assert "evt-bad: not replayed: not an account name: '../x'" in out
    assert "sent 2, accepted 1, duplicate 0, failed 1" in err
    lane = [
        StoredDelivery.from_fields(eid, fields)
        for p in range(4)
        for eid, fields in await redis.xrange(keys.stream(p, "inboxops@brand-a"))
    ]
    assert [(d.event_id, d.account) for d in lane if d.event_id == "evt-brand-a-new"] == [
        ("evt-brand-a-new", "brand-a")
    ]
