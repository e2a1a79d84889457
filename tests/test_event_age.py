"""Replays past the dedupe window: events older than it are refused, on every vendor."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from receiver.app import create_app
from tests.conftest import wait_for
from tests.procs import BIN, free_port, spawn
from tests.test_intake_hostile import (
    Receiver,
    assert_refused,
    body_of,
    document,
    post,
    receiver_env,
    stored,
)
from tests.test_intake_trace import log_entries
from tests.test_processes import _ready
from ticketwire.config import Settings
from ticketwire.errors import ConfigError
from ticketwire.eventage import (
    CLOCK_MARGIN_S,
    age_over,
    default_max_age,
    late_retries,
    too_old_reason,
)
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook
from ticketwire.vendors.registry import bundle

VENDORS = ("inboxops", "cstar", "thena")
#: Where each vendor's envelope says when the event happened.
TIME_FIELD = {"inboxops": "created_at", "cstar": "created_at", "thena": "timestamp"}
HOUR = 3600.0


def at(vendor: str, n: int, ago_s: float) -> bytes:
    """A valid delivery of `vendor` whose event happened `ago_s` seconds ago."""
    doc = document(vendor, n)
    doc[TIME_FIELD[vendor]] = (datetime.now(UTC) - timedelta(seconds=ago_s)).isoformat()
    return body_of(doc)


# --- the pure rule ----------------------------------------------------------------------------


def test_an_event_is_too_old_only_past_the_limit() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    hour_ago = now - timedelta(hours=1)
    assert age_over(hour_ago, now.timestamp(), 3601) is None
    assert age_over(hour_ago, now.timestamp(), 3599) == 3600
    # A time without a zone is UTC, as the parsers read it.
    assert age_over(hour_ago.replace(tzinfo=None), now.timestamp(), 3599) == 3600
    # No limit, or no time to judge by: never too old.
    assert age_over(hour_ago, now.timestamp(), 0) is None
    assert age_over(None, now.timestamp(), 1) is None
    # An event from the future is not old.
    assert age_over(now + timedelta(hours=1), now.timestamp(), 1) is None


def test_the_default_limit_is_the_window_less_a_clock_margin() -> None:
    assert default_max_age(72 * HOUR) == 72 * HOUR - CLOCK_MARGIN_S
    # A short window keeps most of itself.
    assert default_max_age(60) == 54
    assert Settings().max_event_age_s == 72 * HOUR - CLOCK_MARGIN_S


def test_the_reason_names_the_age_the_limit_the_window_and_the_settings() -> None:
    reason = too_old_reason(73 * HOUR, 72 * HOUR - 300, 72 * HOUR)
    assert "3d1h ago" in reason and "2d23h" in reason and "3d dedupe window" in reason
    assert "TICKETWIRE_MAX_EVENT_AGE" in reason and "TICKETWIRE_DEDUPE_WINDOW" in reason


def test_helpdesks_that_retry_past_the_limit_are_named() -> None:
    horizons = [(bundle(v).title, bundle(v).retry_horizon_s) for v in VENDORS]
    assert late_retries(horizons, 72 * HOUR) == []
    warned = late_retries(horizons, HOUR)
    assert [w.split()[0] for w in warned] == ["InboxOps", "cStar"]
    assert "8h31m" in warned[0] and "1d7h" in warned[1]
    assert late_retries(horizons, 0) == []
    assert late_retries([("Acme", None)], 1) == []


# --- configuration ----------------------------------------------------------------------------


def environ(**more: str) -> dict[str, str]:
    return {"REDIS_URL": "redis://127.0.0.1:1", "INBOXOPS_WEBHOOK_SECRETS": "s", **more}


def test_the_limit_follows_the_dedupe_window_and_may_be_set_or_turned_off() -> None:
    assert Settings.from_env(environ(), role="web").max_event_age_s == 72 * HOUR - 300
    s = Settings.from_env(environ(TICKETWIRE_DEDUPE_WINDOW="24h"), role="web")
    assert s.max_event_age_s == 24 * HOUR - 300
    s = Settings.from_env(environ(TICKETWIRE_MAX_EVENT_AGE="48h"), role="web")
    assert s.max_event_age_s == 48 * HOUR
    assert Settings.from_env(environ(TICKETWIRE_MAX_EVENT_AGE="0"), role="web").max_event_age_s == 0


def test_a_limit_past_the_dedupe_window_is_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(environ(TICKETWIRE_MAX_EVENT_AGE="73h"), role="web")
    assert exc.value.variable == "TICKETWIRE_MAX_EVENT_AGE"
    assert "TICKETWIRE_DEDUPE_WINDOW" in str(exc.value) and "73h" in str(exc.value)


def test_a_local_up_refuses_no_event_for_its_age_unless_told() -> None:
    # Developers replay captures of any age to it, re-signed with its own secrets.
    assert Settings.from_env({}, role="up").max_event_age_s == 0
    s = Settings.from_env({"TICKETWIRE_MAX_EVENT_AGE": "1h"}, role="up")
    assert s.max_event_age_s == HOUR


async def test_the_receiver_warns_of_helpdesks_whose_retries_outlast_the_limit(
    redis: Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(key_prefix=keys.prefix, dedupe_ttl_s=2 * HOUR, max_event_age_s=HOUR)
    intake = InboxOpsWebhook([Secret("s")])
    with caplog.at_level(logging.WARNING, logger="ticketwire.receiver"):
        create_app(settings, redis, [intake])
    assert [r.getMessage().split()[0] for r in caplog.records] == ["InboxOps"]
    with caplog.at_level(logging.WARNING, logger="ticketwire.receiver"):
        caplog.clear()
        create_app(Settings(key_prefix=keys.prefix), redis, [intake])
    assert caplog.records == []


# --- through a real receiver ------------------------------------------------------------------


async def start(redis_url: str, **env: str) -> tuple[Receiver, Any]:
    keys = Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")
    port = free_port()
    proc = await spawn(
        [str(BIN / "python"), "-m", "receiver"], receiver_env(redis_url, keys, port, **env)
    )
    session = aiohttp.ClientSession()
    redis: Redis = Redis.from_url(redis_url)
    rx = Receiver(proc, port, session, redis, keys)
    try:
        await wait_for(lambda: _ready(session, port), timeout=30, message="receiver ready")
    except BaseException:
        await stop(rx)
        raise
    return rx, proc


async def stop(rx: Receiver) -> None:
    await rx.proc.stop()
    await rx.session.close()
    async for key in rx.redis.scan_iter(match=f"{rx.keys.prefix}*", count=1000):
        await rx.redis.delete(key)
    await rx.redis.aclose()
    assert "Traceback" not in rx.proc.output, rx.proc.output


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rx(redis_url: str) -> AsyncIterator[Receiver]:
    """A receiver with the product's defaults: a 72 h window, events up to 71h55m old."""
    receiver, _ = await start(redis_url)
    try:
        yield receiver
    finally:
        await stop(receiver)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("vendor", VENDORS)
async def test_an_event_older_than_the_window_is_refused_with_a_reason_and_listed(
    rx: Receiver, vendor: str
) -> None:
    answer = await post(rx, vendor, at(vendor, 1, 72 * HOUR))
    doc = assert_refused(answer, 400, "event_too_old")
    assert "3d ago" in doc["detail"] and "dedupe window" in doc["detail"], doc
    assert not any(v == vendor for v, _ in await stored(rx))

    async def listed() -> dict[str, str] | None:
        for entry in await log_entries(rx.redis, rx.keys):
            if entry["v"] == vendor and entry["e"] == f"evt-{vendor}-1":
                return entry
        return None

    entry = await wait_for(listed, timeout=10, message="the refusal listed")
    assert entry["o"] == "refused" and entry["s"] == "400" and entry["x"] == "event_too_old"
    assert (
        f"rejected {vendor} 400: event=evt-{vendor}-1: the event happened 3d ago" in rx.proc.output
    )
    async with rx.session.get(f"http://127.0.0.1:{rx.port}/metrics") as resp:
        exposition = await resp.text()
    counted = f'ticketwire_intake_refusals_total{{reason="event_too_old",vendor="{vendor}"}} 1.0'
    assert counted in exposition, exposition


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("vendor", VENDORS)
async def test_an_event_just_inside_the_limit_is_stored(rx: Receiver, vendor: str) -> None:
    answer = await post(rx, vendor, at(vendor, 2, 72 * HOUR - CLOCK_MARGIN_S - 60))
    assert answer.status == 202, answer
    assert (vendor, f"evt-{vendor}-2") in await stored(rx)


async def test_a_replay_after_its_id_left_the_window_is_refused_not_stored_again(
    redis_url: str,
) -> None:
    # A 2 s window makes "after the window" a matter of seconds; the rule is the same at 72 h.
    rx, _ = await start(redis_url, TICKETWIRE_DEDUPE_WINDOW="2s")
    try:
        bodies = {vendor: at(vendor, 3, 0.1) for vendor in VENDORS}
        for vendor, body in bodies.items():
            assert (await post(rx, vendor, body)).status == 202
            # A retry within the window is a duplicate, as before.
            again = await post(rx, vendor, body)
            assert again.status == 200 and again.json()["status"] == "duplicate", again
        seen = [rx.keys.seen(v, f"evt-{v}-3") for v in VENDORS]

        async def forgotten() -> bool:
            return not await rx.redis.exists(*seen)

        await wait_for(forgotten, timeout=10, message="the dedupe keys expired")
        for vendor, body in bodies.items():
            # The very delivery sent before, as a capture of it would be replayed.
            replay = await post(rx, vendor, body)
            assert_refused(replay, 400, "event_too_old")
        stored_ids = [eid for _, eid in await stored(rx)]
        assert sorted(stored_ids) == sorted(f"evt-{v}-3" for v in VENDORS)
    finally:
        await stop(rx)
