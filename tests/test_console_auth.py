"""Console login, session cookies, CSRF tokens and origin checks: the pure functions."""

from __future__ import annotations

import pytest

from receiver.console import auth, csrf
from receiver.console.forms import cursor, parse_time, text_field
from ticketwire.config import Settings
from ticketwire.errors import ConfigError
from ticketwire.secret import Secret

TOKEN = Secret("console-token-0123456789")
OTHER = Secret("another-token-0123456789")
NOW = 1_800_000_000.0


def test_token_compare() -> None:
    assert auth.token_matches(TOKEN, "console-token-0123456789")
    assert not auth.token_matches(TOKEN, "console-token-012345678")
    assert not auth.token_matches(TOKEN, "")
    assert not auth.token_matches(TOKEN, "é" * 30)


def test_session_cookie_round_trip_and_expiry() -> None:
    session = auth.new_session(NOW, ttl_s=60)
    cookie = auth.sign_session(TOKEN, session)
    assert auth.read_session(TOKEN, cookie, NOW) == session
    assert auth.read_session(TOKEN, cookie, NOW + 59) == session
    assert auth.read_session(TOKEN, cookie, NOW + 60) is None
    assert TOKEN.reveal() not in cookie


def test_a_cookie_signed_with_another_token_or_altered_is_refused() -> None:
    session = auth.new_session(NOW)
    cookie = auth.sign_session(TOKEN, session)
    assert auth.read_session(OTHER, cookie, NOW) is None
    sid, expires, sig = cookie.split(".")
    # A later expiry under the same signature.
    assert auth.read_session(TOKEN, f"{sid}.{int(expires) + 1}.{sig}", NOW) is None
    assert auth.read_session(TOKEN, f"x{sid}.{expires}.{sig}", NOW) is None


@pytest.mark.parametrize(
    "cookie",
    ["", "a", "a.b", "a.b.c", "..", "a.1.", ".1.x", "a.-1.x", "a.1.x.y", "é.1.é", "a" * 500, None],
)
def test_malformed_cookies_are_no_session(cookie: str | None) -> None:
    assert auth.read_session(TOKEN, cookie, NOW) is None


def test_csrf_token_is_per_session_and_not_the_cookie() -> None:
    one, two = auth.new_session(NOW), auth.new_session(NOW)
    token = csrf.csrf_token(TOKEN, one)
    assert csrf.csrf_matches(TOKEN, one, token)
    assert not csrf.csrf_matches(TOKEN, two, token)
    assert not csrf.csrf_matches(OTHER, one, token)
    assert not csrf.csrf_matches(TOKEN, one, None)
    assert not csrf.csrf_matches(TOKEN, one, "")
    assert not csrf.csrf_matches(TOKEN, one, token[:-1] + "é")
    assert token not in auth.sign_session(TOKEN, one)


@pytest.mark.parametrize(
    ("origin", "referer", "ok"),
    [
        ("http://console.example:8000", None, True),
        ("https://console.example:8000", None, True),
        (None, "http://console.example:8000/console/rules", True),
        ("http://evil.example", "http://console.example:8000/console/rules", False),
        ("null", "http://console.example:8000/console/rules", True),
        ("null", None, False),
        (None, None, False),
        ("http://console.example:8000.evil.example", None, False),
        ("javascript:alert(1)", None, False),
        ("http://[::1", None, False),
        ("", "", False),
    ],
)
def test_same_origin(origin: str | None, referer: str | None, ok: bool) -> None:
    assert csrf.same_origin("console.example:8000", origin, referer) is ok


def test_attempt_limiter_blocks_then_frees_and_stays_bounded() -> None:
    limiter = auth.AttemptLimiter(limit=3, window_s=10, max_clients=100)
    assert [limiter.allow("a", now=t) for t in (0, 1, 2)] == [0, 0, 0]
    wait = limiter.allow("a", now=3)
    assert 6.9 < wait <= 7.0
    assert limiter.allow("b", now=3) == 0
    assert limiter.allow("a", now=10.5) == 0
    for i in range(1000):
        limiter.allow(f"client-{i}", now=11)
    assert len(limiter._seen) <= 100


def test_console_token_setting_is_a_secret() -> None:
    base = {"REDIS_URL": "redis://localhost:6379/0"}
    assert Settings.from_env(base, role="check").console_token is None
    settings = Settings.from_env(
        {**base, "TICKETWIRE_CONSOLE_TOKEN": "abcdefghijklmnop-secret"}, role="check"
    )
    assert settings.console_token == Secret("abcdefghijklmnop-secret")
    assert "abcdefghijklmnop-secret" not in repr(settings)
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({**base, "TICKETWIRE_CONSOLE_TOKEN": "short"}, role="check")
    assert "short" not in str(exc.value)


def test_form_readers() -> None:
    now = 1_800_000_000_000
    assert parse_time("15m", now) == now - 15 * 60_000
    assert parse_time("2026-01-31 14:00", now) == 1_769_868_000_000
    assert parse_time("2026-01-31T14:00:05", now) == 1_769_868_005_000
    assert parse_time("2026-01-31", now) == 1_769_817_600_000
    for bad in ("", "yesterday", "99999999d0", "2026-13-01", "1e9m"):
        assert parse_time(bad, now) is None
    assert cursor("1700000000000-3") == "1700000000000-3"
    assert cursor("1700000000000") is None
    assert cursor("(1-0") is None
    assert text_field({"a": " x "}, "a") == "x"
    assert text_field({"a": "x\x00"}, "a") == ""
    assert text_field({"a": 3}, "a") == ""
    assert text_field({"a": "x" * 501}, "a") == ""
