"""`ticketwire fire`: a signed delivery in each helpdesk's envelope, sent to a real receiver."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cli.fire import FireError, FireRequest, apply_sets, build_body, fire, parse_set
from cli.localup import DataDirLock, LocalUp, find_local_up
from simulator.inboxops import InboxOpsSimulator, SimulatorConfig
from tests.localstack import (
    UP_SECRETS,
    LocalStack,
    cli_env,
    local_up,
    receiver_settings,
    run_cli,
    serve,
    stored,
)
from tests.test_receiver import stream_entries
from ticketwire.config import Settings
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.registry import parser
from ticketwire.vendors.thena.settings import ThenaSettings


@pytest.fixture
async def up(tmp_path, aiohttp_server, redis, redis_url, keys) -> AsyncIterator[LocalStack]:
    async for stack in local_up(tmp_path, aiohttp_server, redis, redis_url, keys):
        yield stack


def local(stack: LocalStack) -> LocalUp:
    info = find_local_up(stack.data_dir)
    assert info is not None
    return info


def test_set_values_are_json_when_they_parse_else_text():
    assert parse_set("priority=urgent") == (["priority"], "urgent")
    assert parse_set("seats=12") == (["seats"], 12)
    assert parse_set("assignee_id=null") == (["assignee_id"], None)
    assert parse_set('tags=["vip","bug"]') == (["tags"], ["vip", "bug"])
    assert parse_set("subject=a = b") == (["subject"], "a = b")
    assert parse_set("custom_fields.plan=enterprise") == (["custom_fields", "plan"], "enterprise")
    with pytest.raises(FireError, match="expected field=value"):
        parse_set("priority")
    with pytest.raises(FireError, match="expected field=value"):
        parse_set("=urgent")


def test_sets_nest_on_dots_and_apply_in_order():
    ticket = {"id": "1", "custom_fields": {"region": "eu"}}
    out = apply_sets(ticket, ["custom_fields.plan=enterprise", "priority=low", "priority=high"])
    assert out == {
        "id": "1",
        "custom_fields": {"region": "eu", "plan": "enterprise"},
        "priority": "high",
    }
    assert ticket == {"id": "1", "custom_fields": {"region": "eu"}}  # not changed in place


@pytest.mark.parametrize(
    ("vendor", "event", "ticket", "parsed_type"),
    [
        ("inboxops", "ticket.updated", {"id": "t1", "priority": "urgent"}, "ticket.updated"),
        ("cstar", "ticket.updated", {"id": "tkt_1", "priority": "urgent"}, "ticket.updated"),
        ("thena", "ticket.updated", {"id": "th1", "priorityName": "Urgent"}, "ticket.updated"),
        ("thena", "ticket.closed", {"id": "th1", "statusName": "Closed"}, "ticket.closed"),
        ("thena", "ticket:priority:changed", {"id": "th1"}, "ticket:priority:changed"),
    ],
)
def test_bodies_are_each_helpdesks_envelope(vendor, event, ticket, parsed_type):
    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    body = build_body(vendor, event, ticket, tenant="ten_1", event_id="e1", now=now)
    parsed = parser(vendor)(body)
    assert (parsed.type, parsed.id, parsed.tenant, parsed.ticket_id) == (
        parsed_type,
        "e1",
        "ten_1",
        ticket["id"],
    )
    assert parsed.created_at == now


async def test_fire_with_no_flags_signs_with_the_local_up_and_sends_to_it(up, redis, keys):
    code, out, err = await up.run(
        "fire",
        "inboxops",
        "--ticket",
        "42",
        "--event",
        "ticket.updated",
        "--tenant",
        "ws_1",
        "--set",
        "priority=urgent",
        "--set",
        "custom_fields.seats=12",
        "--set",
        "subject=Printer on fire",
    )
    assert code == 0, err
    assert out.startswith("202 ") and '"status":"stored"' in out
    assert f"→ {up.receiver_url}/inboxops (signed with the local `ticketwire up`'s" in err
    [fields] = await stored(redis, keys)
    doc = json.loads(fields[b"b"])
    assert (doc["event"], doc["tenant_id"]) == ("ticket.updated", "ws_1")
    ticket = doc["data"]
    assert ticket["id"] == "42" and ticket["priority"] == "urgent"
    assert ticket["custom_fields"] == {"seats": 12} and ticket["subject"] == "Printer on fire"
    assert datetime.fromisoformat(ticket["updated_at"]) <= datetime.now(UTC)


async def test_each_fire_is_a_new_event(up, redis, keys, capsys):
    req = FireRequest("cstar", "ticket.updated", "tkt_1", ("priority=urgent",), tenant="team_1")
    assert await fire(req, Settings(), local(up)) == 0
    assert await fire(req, Settings(), local(up)) == 0
    answers = [json.loads(line.split(" ", 1)[1]) for line in capsys.readouterr().out.splitlines()]
    assert [a["status"] for a in answers] == ["stored", "stored"]
    assert answers[0]["event_id"] != answers[1]["event_id"]
    assert len(await stored(redis, keys)) == 2


async def test_thena_fires_with_the_up_token_and_the_closed_status(up, redis, keys):
    req = FireRequest("thena", "ticket.closed", "th_9", tenant="org_1")
    assert await fire(req, Settings(), local(up)) == 0
    [fields] = await stored(redis, keys)
    event = parser("thena")(fields[b"b"])
    assert (event.type, event.raw_type, event.common["status"]) == (
        "ticket.closed",
        "ticket:status:changed",
        "closed",
    )


async def test_the_configured_secret_wins_and_a_401_says_what_to_check(up, capsys):
    configured = Settings(
        vendors={"inboxops": InboxOpsSettings(webhook_secrets=(Secret("whsec_prod"),))}
    )
    req = FireRequest("inboxops", "ticket.updated", "42", tenant="ws_1")
    assert await fire(req, configured, local(up)) == 1
    out, err = capsys.readouterr()
    assert out.startswith("401 ") and "invalid_signature" in out
    assert "signed with INBOXOPS_WEBHOOK_SECRETS" in err
    assert "Pass --secret with its secret" in err
    assert "whsec_prod" not in out + err


async def test_the_tenant_is_the_local_simulators(tmp_path, aiohttp_server, redis, redis_url, keys):
    sim = InboxOpsSimulator(SimulatorConfig(seed=5))
    await sim.start(host="127.0.0.1", port=0)
    try:
        async for stack in local_up(
            tmp_path, aiohttp_server, redis, redis_url, keys, simulators={"inboxops": sim.url}
        ):
            req = FireRequest("inboxops", "ticket.updated", "7", ("priority=high",))
            assert await fire(req, Settings(), local(stack)) == 0
    finally:
        await sim.stop()
    [fields] = await stored(redis, keys)
    assert json.loads(fields[b"b"])["tenant_id"] == sim.workspace_id


async def test_without_an_up_it_says_where_to_send(tmp_path):
    req = FireRequest("inboxops", "ticket.updated", "42", tenant="ws_1", secret="s")
    with pytest.raises(FireError, match="give --to URL"):
        await fire(req, Settings(), None)
    with pytest.raises(FireError, match="no cstar webhook secret"):
        await fire(FireRequest("cstar", "ticket.updated", "1", to="http://x"), Settings(), None)
    with pytest.raises(FireError, match="--ticket ID"):
        await fire(FireRequest("inboxops", "ticket.updated", secret="s"), Settings(), None)


async def test_fields_come_from_a_json_file_then_sets(up, redis, keys, tmp_path):
    path = tmp_path / "ticket.json"
    path.write_text(json.dumps({"id": "55", "priority": "low", "status": "waiting"}))
    req = FireRequest("inboxops", "ticket.updated", None, ("priority=urgent",), path, tenant="w")
    assert await fire(req, Settings(), local(up)) == 0
    [fields] = await stored(redis, keys)
    ticket = json.loads(fields[b"b"])["data"]
    assert (ticket["id"], ticket["priority"], ticket["status"]) == ("55", "urgent", "waiting")


async def test_a_receiver_that_answers_no_2xx_exits_non_zero(up):
    code, out, err = await up.run(
        "fire", "inboxops", "--ticket", "1", "--tenant", "w", "--to", up.receiver_url + "/nope"
    )
    assert code == 1 and out.startswith("404 "), err


async def test_thena_in_hmac_mode_is_signed_in_the_configured_header(
    aiohttp_server, redis, redis_url, keys
):
    hmac_keys = replace(keys, prefix=keys.prefix + "hmac:")
    thena = ThenaSettings(
        webhook_secrets=(Secret("th_hmac"),), webhook_mode="hmac", webhook_header="X-Sig"
    )
    receiver = receiver_settings(
        hmac_keys, {"inboxops": "a", "cstar": "b", "thena": "c"}, redis_url
    ).with_vendor("thena", thena)
    url = await serve(aiohttp_server, receiver, redis)
    req = FireRequest("thena", "ticket.updated", "th_1", ("priorityName=High",), to=url, tenant="o")
    # The same settings on both sides, as one deployment's environment would give them.
    assert await fire(req, Settings(vendors={"thena": thena}), None) == 0
    token_mode = Settings(
        vendors={"thena": replace(thena, webhook_mode="token", webhook_header=None)}
    )
    assert await fire(req, token_mode, None) == 1
    assert len(await stored(redis, hmac_keys)) == 1


async def test_an_account_is_fired_at_its_route_signed_with_its_secret_from_the_file(
    tmp_path, aiohttp_server, redis, redis_url, keys
):
    settings = dataclasses.replace(
        receiver_settings(keys, UP_SECRETS, redis_url),
        named_accounts={
            "inboxops": {"brand-a": InboxOpsSettings(webhook_secrets=(Secret("whsec_a"),))}
        },
    )
    url = await serve(aiohttp_server, settings, redis)
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[inboxops.brand-a]\nwebhook_secrets = {env = "BRAND_A_SECRET"}\n')
    env = cli_env(
        TICKETWIRE_ACCOUNTS=str(accounts),
        BRAND_A_SECRET="whsec_a",
        TICKETWIRE_DATA_DIR=str(tmp_path / "none"),
    )
    args = ("fire", "inboxops", "--ticket", "42", "--tenant", "ws_a", "--to", url)
    code, out, err = await run_cli(*args, "--account", "brand-a", env=env)
    assert code == 0, err
    assert out.startswith("202 ")
    assert f"→ {url}/inboxops/brand-a (signed with inboxops.brand-a.webhook_secrets" in err
    assert "whsec_a" not in out + err
    [entry] = await stream_entries(redis, keys)
    assert (entry.account, entry.vendor) == ("brand-a", "inboxops")

    code, out, err = await run_cli(*args, "--account", "brand-b", env=env)
    assert code == 2 and out == ""
    assert "--account brand-b: no such inboxops account; known: default, brand-a" in err
    assert len(await stream_entries(redis, keys)) == 1


async def test_an_account_of_the_local_up_is_signed_with_its_secret(up, redis, keys):
    info = local(up)
    # The local `up` names a secret per named account in up.json.
    lock = DataDirLock(up.data_dir)
    lock.publish(dataclasses.replace(info, account_secrets={"cstar@eu": UP_SECRETS["cstar"]}))
    code, out, err = await up.run(
        "fire", "cstar", "--account", "eu", "--ticket", "t1", "--tenant", "x"
    )
    signed = "signed with the local `ticketwire up`'s cstar account eu secret"
    assert f"→ {up.receiver_url}/cstar/eu ({signed})" in err
    # This receiver has no account eu: it answers 404, and fire exits 1.
    assert code == 1 and out.startswith("404 ") and "unknown_account" in out
