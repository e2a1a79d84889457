"""Configuration: read once from a mapping; every bad value names its variable and what it wants."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketwire.config import Settings
from ticketwire.errors import ConfigError

BASE = {
    "REDIS_URL": "redis://:pw@localhost:6379/0",
    "INBOXOPS_WEBHOOK_SECRETS": "whsec_a, whsec_b",
    "INBOXOPS_API_URL": "https://app.inboxops.app",
    "INBOXOPS_API_KEY": "ixk_live_abc",
}


def test_defaults_and_values():
    s = Settings.from_env(BASE, role="worker")
    assert s.port == 8000
    assert s.rules_dir == Path("rules")
    assert [x.reveal() for x in s.vendor("inboxops").webhook_secrets] == ["whsec_a", "whsec_b"]
    assert (
        s.vendor("inboxops").api_key is not None
        and s.vendor("inboxops").api_key.reveal() == "ixk_live_abc"
    )
    assert s.max_body_bytes == 256 * 1024
    assert s.dedupe_ttl_s == 72 * 3600
    assert s.state_ttl_s == 7 * 86400


def test_units():
    env = {
        **BASE,
        "PORT": "9000",
        "TICKETWIRE_MAX_BODY": "1MiB",
        "TICKETWIRE_DEDUPE_WINDOW": "3d",
        "TICKETWIRE_LEASE_TTL": "500ms",
        "TICKETWIRE_RULES": "/etc/rules",
        "TICKETWIRE_STATE_TTL": "30d",
    }
    s = Settings.from_env(env, role="web")
    assert (s.port, s.max_body_bytes, s.dedupe_ttl_s) == (9000, 1 << 20, 3 * 86400)
    assert s.state_ttl_s == 30 * 86400
    assert s.lease_ttl_s == pytest.approx(0.5)
    assert s.rules_dir == Path("/etc/rules")


@pytest.mark.parametrize(
    ("name", "value", "expects"),
    [
        ("PORT", "eighty", "an integer from 1 to 65535"),
        ("PORT", "70000", "an integer from 1 to 65535"),
        ("REDIS_URL", "localhost:6379", "a URL starting with redis://"),
        ("INBOXOPS_API_URL", "app.inboxops.app", "a URL starting with http://"),
        ("INBOXOPS_API_KEY", "sk_live_123", "starting with 'ixk_'"),
        ("INBOXOPS_WEBHOOK_SECRETS", "a,,b", "no empty entries"),
        ("TICKETWIRE_MAX_BODY", "big", "a positive size"),
        ("TICKETWIRE_DEDUPE_WINDOW", "forever", "a positive duration"),
        ("TICKETWIRE_STATE_TTL", "0s", "a positive duration"),
        ("TICKETWIRE_LOG_LEVEL", "chatty", "one of DEBUG, INFO"),
    ],
)
def test_malformed_values_name_the_variable(name, value, expects):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, name: value}, role="up")
    assert info.value.variable == name
    assert name in str(info.value) and expects in str(info.value)


@pytest.mark.parametrize(
    ("role", "missing"),
    [
        ("web", "REDIS_URL"),
        ("web", "INBOXOPS_WEBHOOK_SECRETS"),
        ("worker", "REDIS_URL"),
        ("worker", "INBOXOPS_API_URL"),
        ("worker", "INBOXOPS_API_KEY"),
    ],
)
def test_each_process_names_what_it_cannot_run_without(role, missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, role=role)
    assert info.value.variable == missing


def test_up_needs_nothing():
    s = Settings.from_env({}, role="up")
    assert s.redis_url is None and s.vendor("inboxops").api_url is None


def test_secrets_and_passwords_are_not_in_reprs_or_errors():
    s = Settings.from_env(BASE, role="web")
    assert "whsec_a" not in repr(s) and "ixk_live_abc" not in repr(s) and ":pw@" not in repr(s)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "REDIS_URL": "http://:hunter2@host"}, role="web")
    assert "hunter2" not in str(info.value)


def test_cstar_and_thena_variables():
    env = {
        "REDIS_URL": "redis://localhost",
        "CSTAR_WEBHOOK_SECRETS": "whsec_1,whsec_2",
        "CSTAR_TEAM_ID": "team-1",
        "CSTAR_API_KEY": "sk_test_abc",
        "CSTAR_SIGNATURE_TOLERANCE": "2m",
        "THENA_WEBHOOK_SECRETS": "tok",
        "THENA_WEBHOOK_MODE": "hmac",
        "THENA_AUTH": "bearer",
        "THENA_API_KEY": "jwt",
        "THENA_ORG_ID": "org_1",
    }
    s = Settings.from_env(env, role="worker")
    assert s.vendors_receiving() == ("cstar", "thena")
    assert s.vendor("cstar").api_configured and s.vendor("cstar").signature_tolerance_s == 120
    assert (
        s.vendor("thena").webhook_mode == "hmac"
        and s.vendor("thena").auth == "bearer"
        and s.vendor("thena").org_id == "org_1"
    )
    assert "sk_test_abc" not in repr(s) and "jwt" not in repr(s.vendor("thena"))


@pytest.mark.parametrize(
    ("extra", "variable", "expects"),
    [
        ({"CSTAR_API_KEY": "pk_live_x", "CSTAR_TEAM_ID": "t"}, "CSTAR_API_KEY", "publishable keys"),
        ({"CSTAR_API_KEY": "sk_live_x"}, "CSTAR_TEAM_ID", "UUID of your cStar team"),
        ({"THENA_API_KEY": "jwt", "THENA_AUTH": "bearer"}, "THENA_ORG_ID", "organisation id"),
        ({"THENA_WEBHOOK_MODE": "magic"}, "THENA_WEBHOOK_MODE", "one of TOKEN, HMAC"),
    ],
)
def test_vendor_variables_are_checked(extra, variable, expects):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"REDIS_URL": "redis://x", **extra}, role="up")
    assert info.value.variable == variable and expects in str(info.value)


def test_the_platform_process_name_is_read_here_and_names_the_worker():
    from workers.app import worker_id

    s = Settings.from_env({**BASE, "DYNO": "worker.3"}, role="worker")
    assert s.dyno == "worker.3"
    assert worker_id(s.dyno).startswith("worker.3-")
    assert Settings.from_env(BASE, role="worker").dyno is None


def test_the_stop_settings_default_to_a_paas_grace_period_and_no_drain_delay():
    s = Settings.from_env(BASE, role="web")
    assert (s.shutdown_grace_s, s.drain_delay_s) == (25.0, 0.0)
    s = Settings.from_env(
        {**BASE, "TICKETWIRE_SHUTDOWN_GRACE": "50s", "TICKETWIRE_DRAIN_DELAY": "5s"}, role="web"
    )
    assert (s.shutdown_grace_s, s.drain_delay_s) == (50.0, 5.0)


@pytest.mark.parametrize(
    ("env", "name", "expects"),
    [
        ({"TICKETWIRE_SHUTDOWN_GRACE": "0s"}, "TICKETWIRE_SHUTDOWN_GRACE", "a positive duration"),
        ({"TICKETWIRE_DRAIN_DELAY": "soon"}, "TICKETWIRE_DRAIN_DELAY", "a duration"),
        (
            {"TICKETWIRE_DRAIN_DELAY": "30s"},
            "TICKETWIRE_DRAIN_DELAY",
            "shorter than TICKETWIRE_SHUTDOWN_GRACE (25s)",
        ),
        (
            {"TICKETWIRE_SHUTDOWN_GRACE": "5s", "TICKETWIRE_DRAIN_DELAY": "5s"},
            "TICKETWIRE_DRAIN_DELAY",
            "shorter than TICKETWIRE_SHUTDOWN_GRACE (5s)",
        ),
    ],
)
def test_a_drain_delay_must_leave_time_within_the_grace_period(env, name, expects):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, **env}, role="web")
    assert info.value.variable == name and expects in str(info.value)
