"""Developer tools: capture stored deliveries, dry-run rules on them, replay them to a receiver."""

from __future__ import annotations

import io
import json

from cli.capture import _capture
from cli.dryrun import _dry_run
from cli.replay import _replay
from receiver.app import create_app
from tests.test_receiver import envelope, post, settings
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.inboxops.webhook import SIGNATURE_HEADER, InboxOpsWebhook

RULE = """
name: start-urgent
vendor: inboxops
events: [ticket.updated]
if: {field: priority, equals: urgent}
then:
  - update: {status: in_progress}
"""


async def store_two(aiohttp_client, redis, keys):
    s = settings(keys)
    app = create_app(s, redis, [InboxOpsWebhook(s.vendor("inboxops").webhook_secrets)])
    client = await aiohttp_client(app)
    await post(client, envelope("evt_a", priority="urgent"))
    await post(client, envelope("evt_b", priority="low"))
    return s


async def test_capture_keeps_bodies_and_headers_byte_for_byte(
    aiohttp_client, redis, redis_url, keys
):
    s = await store_two(aiohttp_client, redis, keys)
    out = io.StringIO()
    from dataclasses import replace

    assert await _capture(replace(s, redis_url=redis_url), out, limit=10, since_s=None) == (2, 0)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event_id"] for r in records] == ["evt_a", "evt_b"]
    assert records[0]["body"].encode() == envelope("evt_a", priority="urgent")
    assert SIGNATURE_HEADER in records[0]["headers"]


async def test_dry_run_prints_decisions_and_planned_calls(
    aiohttp_client, redis, redis_url, keys, tmp_path, capsys
):
    from dataclasses import replace

    s = await store_two(aiohttp_client, redis, keys)
    out = io.StringIO()
    await _capture(replace(s, redis_url=redis_url), out, limit=10, since_s=None)
    cap = tmp_path / "cap.jsonl"
    cap.write_text(out.getvalue())
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text(RULE)
    assert await _dry_run([cap], rules, None) == 0
    text = capsys.readouterr().out
    assert "#1 inboxops ticket.updated event=evt_a" in text
    assert "fired   start-urgent" in text
    assert (
        'would   PATCH /tickets/7b0d8e5e-0000-4000-8000-000000000001 {"status": "in_progress"}'
        in text
    )
    assert "skipped start-urgent: condition false: priority is 'low'" in text
    assert "would   send nothing" in text


async def test_dry_run_takes_a_plain_body_with_vendor(tmp_path, capsys):
    body = tmp_path / "body.json"
    body.write_bytes(envelope("evt_plain", priority="urgent"))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text(RULE)
    assert await _dry_run([body], rules, "inboxops") == 0
    assert "would   PATCH" in capsys.readouterr().out
    assert await _dry_run([body], rules, None) == 0
    assert "unknown vendor None" in capsys.readouterr().out


async def test_replay_resends_and_resigns(
    aiohttp_client, aiohttp_server, redis, redis_url, keys, tmp_path
):
    from dataclasses import replace

    s = await store_two(aiohttp_client, redis, keys)
    out = io.StringIO()
    await _capture(replace(s, redis_url=redis_url), out, limit=10, since_s=None)
    cap = tmp_path / "cap.jsonl"
    cap.write_text(out.getvalue())
    # Same deployment: the original signatures verify and the dedupe window answers 200.
    same = await aiohttp_server(
        create_app(s, redis, [InboxOpsWebhook(s.vendor("inboxops").webhook_secrets)])
    )
    assert await _replay([cap], str(same.make_url("/webhooks")), None, 5.0) == 0
    # Another environment with its own secret and key space: re-signed, stored anew.
    other_keys = replace(keys, prefix=keys.prefix + "other:")
    other = settings(other_keys).with_vendor(
        "inboxops", InboxOpsSettings(webhook_secrets=(Secret("whsec_dev"),))
    )
    server = await aiohttp_server(
        create_app(other, redis, [InboxOpsWebhook(other.vendor("inboxops").webhook_secrets)])
    )
    url = str(server.make_url("/webhooks/inboxops"))
    assert await _replay([cap], url, None, 5.0) == 1  # wrong secret: 401s
    assert await _replay([cap], url, "whsec_dev", 5.0) == 0
    assert await redis.hget(other_keys.stats, "accepted") == b"2"


def test_read_captures_reports_a_bad_line(tmp_path):
    from cli.capture import read_captures

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"vendor": "inboxops", "body": "{}"}\nnot json\n')
    try:
        list(read_captures(bad))
    except SystemExit as exc:
        assert "bad.jsonl:2" in str(exc)
    else:
        raise AssertionError("a bad line must stop the read")


def test_resign_produces_headers_each_vendor_accepts():
    from cli.replay import resign
    from ticketwire.vendors.cstar.webhook import CStarWebhook
    from ticketwire.vendors.thena.webhook import ThenaWebhook

    body = b'{"x": 1}'
    InboxOpsWebhook([Secret("s1")]).verify(resign("inboxops", body, "s1"), body)
    CStarWebhook([Secret("s2")]).verify(resign("cstar", body, "s2"), body)
    ThenaWebhook("token", [Secret("s3")]).verify(resign("thena", body, "s3"), body)
    ThenaWebhook("hmac", [Secret("s4")]).verify(resign("thena", body, "s4", "hmac"), body)
