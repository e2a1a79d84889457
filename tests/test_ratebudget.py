"""The shared request budget: limits across processes, pauses after a 429, clear config errors."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from ticketwire.config import Settings
from ticketwire.errors import BudgetSpent, ConfigError
from ticketwire.keys import Keys
from ticketwire.ratebudget import Limit, RateBudget, parse_limits


def test_parse_limits():
    assert parse_limits("100/min") == (Limit("all", 100, 60.0),)
    assert parse_limits("write=1000/h, read=50/10s") == (
        Limit("write", 1000, 3600.0),
        Limit("read", 50, 10.0),
    )
    with pytest.raises(ValueError, match="N/unit"):
        parse_limits("100 per minute")
    with pytest.raises(ValueError, match="unknown class"):
        parse_limits("writes=10/s")


def test_settings_read_limits_and_explain_mistakes():
    s = Settings.from_env(
        {"INBOXOPS_RATE_LIMIT": "20/10s", "THENA_RATE_LIMIT": "5/s"}, role="check"
    )
    assert s.vendor("inboxops").rate_limits == (Limit("all", 20, 10.0),)
    assert s.vendor("thena").rate_limits == (Limit("all", 5, 1.0),)
    assert Settings.from_env({}, role="check").vendor("inboxops").rate_limits == (
        Limit("all", 100, 60.0),
    )
    assert (
        Settings.from_env({"CSTAR_RATE_LIMIT": "off"}, role="check").vendor("cstar").rate_limits
        == ()
    )
    with pytest.raises(ConfigError, match="CSTAR_RATE_LIMIT"):
        Settings.from_env({"CSTAR_RATE_LIMIT": "lots"}, role="check")


def test_limit_classes():
    assert Limit("read", 1, 1).counts("GET", "/tickets")
    assert not Limit("read", 1, 1).counts("PATCH", "/tickets/1")
    assert Limit("write", 1, 1).counts("POST", "/tickets/bulk")
    assert Limit("bulk", 1, 1).counts("POST", "/tickets/bulk")
    assert not Limit("bulk", 1, 1).counts("PATCH", "/tickets/1")


async def test_two_budgets_on_one_scope_share_the_limit(redis: Redis, keys: Keys):
    limits = parse_limits("5/2s")
    a = RateBudget(redis, keys.prefix, "inboxops:ws1", limits, margin_s=0)
    b = RateBudget(redis, keys.prefix, "inboxops:ws1", limits, margin_s=0)
    waits = [await (a if i % 2 else b).try_acquire("PATCH", "/tickets/1") for i in range(7)]
    assert waits[:5] == [0, 0, 0, 0, 0]
    assert 1.5 < waits[5] <= 2.0 and 1.5 < waits[6] <= 2.0
    # Another account is not affected.
    other = RateBudget(redis, keys.prefix, "inboxops:ws2", limits, margin_s=0)
    assert await other.try_acquire("PATCH", "/tickets/1") == 0


async def test_only_requests_of_a_class_count_against_it(redis: Redis, keys: Keys):
    budget = RateBudget(redis, keys.prefix, "v:a", parse_limits("write=1/min"), margin_s=0)
    assert await budget.try_acquire("PATCH", "/x") == 0
    assert await budget.try_acquire("GET", "/x") == 0
    assert await budget.try_acquire("PATCH", "/x") > 0


async def test_acquire_hands_back_long_waits(redis: Redis, keys: Keys):
    budget = RateBudget(redis, keys.prefix, "v:a", parse_limits("1/min"), max_wait_s=0.5)
    await budget.acquire("PATCH", "/x")
    with pytest.raises(BudgetSpent) as caught:
        await budget.acquire("PATCH", "/x", label="InboxOps PATCH /x")
    assert 55 < caught.value.retry_after <= 61
    assert "InboxOps PATCH /x" in str(caught.value) and "1/60s" in str(caught.value)


async def test_a_pause_stops_every_budget_of_the_scope(redis: Redis, keys: Keys):
    a = RateBudget(redis, keys.prefix, "v:a", (), max_wait_s=0)
    b = RateBudget(redis, keys.prefix, "v:a", (), max_wait_s=0)
    assert await a.try_acquire("GET", "/") == 0
    left = await a.pause(3)
    assert 2.9 <= left <= 3.0
    assert 2.5 < await b.try_acquire("GET", "/") <= 3.0
    # A shorter pause never shortens a longer one.
    assert await b.pause(1) >= 2.5


async def test_short_waits_are_slept_through(redis: Redis, keys: Keys):
    budget = RateBudget(redis, keys.prefix, "v:a", parse_limits("2/s"), margin_s=0)
    started = time.monotonic()
    for _ in range(4):
        await budget.acquire("GET", "/")
    # Four requests at 2 per second need at least one second between the first and the last.
    assert time.monotonic() - started >= 0.9


def test_repr_shows_limits_not_secrets(redis: Redis):
    budget = RateBudget(redis, "tw:", "inboxops:abc123", parse_limits("100/min"))
    assert repr(budget) == "RateBudget(inboxops:abc123: 100/60s)"
