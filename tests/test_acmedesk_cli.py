"""A helpdesk beside the built-in ones (Acme Desk) is fired at and replayed through the CLI's code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.fire import FireError, FireRequest, build_body, fire
from cli.main import build_parser
from cli.replay import _replay
from tests.acmedesk import VENDOR
from tests.acmedesk.settings import AcmeDeskSettings
from tests.extra_vendor import extra_vendor
from tests.localstack import serve
from tests.test_receiver import stream_entries
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors.registry import Registry, parser

SECRET = "whsec_acme"


@pytest.fixture
def with_acmedesk() -> Iterator[Registry]:
    with extra_vendor(VENDOR) as extended:
        yield extended


def acme_settings(keys: Keys, redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix=keys.prefix,
        partitions=4,
        vendors={"acmedesk": AcmeDeskSettings((Secret(SECRET),))},
    )


def test_the_cli_offers_every_registered_helpdesk(with_acmedesk: Registry) -> None:
    parser_ = build_parser()
    assert parser_.parse_args(["fire", "acmedesk", "--ticket", "AC-1"]).vendor == "acmedesk"
    assert parser_.parse_args(["simulate", "acmedesk"]).vendor == "acmedesk"


def test_a_body_is_the_helpdesks_own_envelope(with_acmedesk: Registry) -> None:
    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    ticket = {"id": "AC-1", "status": "todo", "priority": "P1", "updated_at": "2026-12-01T09:30Z"}
    body = build_body("acmedesk", "ticket.updated", ticket, tenant="d1", event_id="e1", now=now)
    event = parser("acmedesk")(body)
    assert (event.type, event.id, event.ticket_key) == ("ticket.updated", "e1", "acmedesk:d1:AC-1")
    assert event.common["priority"] == "urgent"


async def test_acme_desk_is_fired_at_and_replayed_to_a_receiver(
    with_acmedesk: Registry, aiohttp_server, redis, redis_url, keys, tmp_path: Path, capsys
) -> None:
    settings = acme_settings(keys, redis_url)
    url = await serve(aiohttp_server, settings, redis)
    sets = ("status=todo", "priority=P1")
    req = FireRequest("acmedesk", "ticket.updated", "AC-1", sets, to=url, tenant="d1")
    assert await fire(req, settings, None) == 0
    err = capsys.readouterr().err
    assert f"ticket=AC-1 → {url}/acmedesk (signed with ACMEDESK_WEBHOOK_SECRETS)" in err
    [entry] = await stream_entries(redis, keys)
    assert entry.vendor == "acmedesk"

    with pytest.raises(FireError, match="give the desk id: --tenant ID"):
        await fire(FireRequest("acmedesk", "ticket.updated", "AC-1", sets, to=url), settings, None)

    # A capture without its signature: refused as it is, accepted re-signed with the secret.
    now = datetime.now(UTC)
    ticket = {"id": "AC-2", "status": "todo", "priority": "P2", "updated_at": now.isoformat()}
    body = build_body("acmedesk", "ticket.updated", ticket, tenant="d1", event_id="e2", now=now)
    capture = tmp_path / "cap.jsonl"
    record = {"vendor": "acmedesk", "event_id": "e2", "headers": {}, "body": body.decode()}
    capture.write_text(json.dumps(record) + "\n")
    assert await _replay([capture], url, None, 10.0) == 1
    assert "401 on acmedesk deliveries: the captured signatures are not valid" in (
        capsys.readouterr().err
    )
    assert await _replay([capture], url, SECRET, 10.0) == 0
    assert [e.vendor for e in await stream_entries(redis, keys)] == ["acmedesk", "acmedesk"]
