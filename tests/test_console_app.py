"""The console over HTTP: off without a token, login, redirects, CSRF, and hostile input."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from receiver.app import create_app
from ticketwire.config import Settings
from ticketwire.keys import Keys
from ticketwire.secret import Secret
from ticketwire.vendors.inboxops.settings import InboxOpsSettings
from ticketwire.vendors.inboxops.webhook import InboxOpsWebhook

TOKEN = "console-token-for-tests-0123456789"
BASE_MS = 1_790_000_000_000
TICKET = "inboxops:ws_1:T-1"
PAGES = ("/console/deliveries", "/console/rules", "/console/dead-letters", "/console/live")


def settings(keys: Keys, **overrides: Any) -> Settings:
    return Settings(
        key_prefix=keys.prefix,
        partitions=4,
        vendors={"inboxops": InboxOpsSettings(webhook_secrets=(Secret("whsec_console_tests"),))},
        **overrides,
    )


async def client_for(aiohttp_client: Any, s: Settings, redis: Redis) -> TestClient:
    app = create_app(s, redis, [InboxOpsWebhook(s.vendor("inboxops").webhook_secrets)])
    client: TestClient = await aiohttp_client(app)
    return client


@pytest.fixture
async def client(aiohttp_client: Any, redis: Redis, keys: Keys) -> TestClient:
    return await client_for(aiohttp_client, settings(keys, console_token=Secret(TOKEN)), redis)


def origin(client: TestClient) -> dict[str, str]:
    return {"Origin": str(client.make_url("")).rstrip("/")}


async def log_in(client: TestClient) -> str:
    """Log in; the CSRF token of the new session."""
    r = await client.post(
        "/console/login", data={"token": TOKEN}, headers=origin(client), allow_redirects=False
    )
    assert r.status == 303, await r.text()
    page = await (await client.get("/console/rules")).text()
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


async def seed(redis: Redis, keys: Keys) -> None:
    """Two deliveries in the log, one ticket timeline."""
    await redis.xadd(
        keys.trace_log,
        {
            "v": "inboxops",
            "a": "ws_1",
            "y": "ticket.updated",
            "e": "evt_a",
            "k": TICKET,
            "o": "handled",
            "s": "",
            "f": "escalate\x1ftag-vip",
            "x": "",
            "r": str(BASE_MS),
        },
        id=f"{BASE_MS}-0",
    )
    await redis.xadd(
        keys.trace_log,
        {
            "v": "inboxops",
            "a": "",
            "y": "",
            "e": "",
            "k": "",
            "o": "refused",
            "s": "401",
            "f": "",
            "x": "invalid_signature",
            "r": str(BASE_MS + 1),
        },
        id=f"{BASE_MS + 1}-0",
    )
    await redis.set(keys.seen("inboxops", "evt_a"), TICKET)
    for record in (
        ["rx", "inboxops", "ws_1", "ticket.updated", "T-1", BASE_MS, "2/1-0", 1, "fp1"],
        ["ch", [["priority", "low", "urgent"]]],
        ["ru", "escalate", "F", [[0, 1, "urgent"]], None],
        ["ru", "<script>alert(1)</script>", "C", [[0, 0, "low"]], None],
    ):
        await redis.xadd(keys.trace_ticket(TICKET), {"e": "evt_a", "c": json.dumps(record)})
    await redis.hset(keys.trace_rules, "fp1", json.dumps({"escalate": ["priority equals urgent"]}))


async def test_off_without_a_token(aiohttp_client: Any, redis: Redis, keys: Keys) -> None:
    client = await client_for(aiohttp_client, settings(keys), redis)
    for path in ("/console", "/console/login", *PAGES, "/console/static/console.css"):
        assert (await client.get(path, allow_redirects=False)).status == 404
    assert (await client.post("/console/login", data={"token": TOKEN})).status == 404


async def test_every_page_sends_a_stranger_to_the_login_page(client: TestClient) -> None:
    for path in (*PAGES, "/console", "/console/events/x", "/console/tickets/a:b:c"):
        r = await client.get(path, allow_redirects=False)
        assert r.status == 303, path
        assert r.headers["Location"].startswith("/console/login"), path
    r = await client.get("/console/rules?x=1", allow_redirects=False)
    assert r.headers["Location"] == "/console/login?next=/console/rules"
    login = await client.get("/console/login")
    assert login.status == 200
    body = await login.text()
    assert 'name="token"' in body and TOKEN not in body
    assert (await client.get("/console/static/console.css")).status == 200


async def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(
    client: TestClient,
) -> None:
    wrong = await client.post(
        "/console/login", data={"token": "nope"}, headers=origin(client), allow_redirects=False
    )
    assert wrong.status == 401
    assert "Wrong token" in await wrong.text()
    r = await client.post(
        "/console/login?next=/console/rules",
        data={"token": TOKEN},
        headers=origin(client),
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == "/console/rules"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get it
    assert TOKEN not in cookie
    stolen = r.cookies["tw_console"].value
    for path in PAGES:
        page = await client.get(path, allow_redirects=False)
        assert page.status == 200, path
        text = await page.text()
        assert TOKEN not in text
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', text)
    assert csrf
    out = await client.post(
        "/console/logout",
        data={"csrf": csrf.group(1)},
        headers=origin(client),
        allow_redirects=False,
    )
    assert out.status == 303
    client.session.cookie_jar.update_cookies({"tw_console": stolen})
    again = await client.get("/console/rules", allow_redirects=False)
    assert again.status == 303, "a logged-out cookie must be refused"


async def test_an_open_redirect_is_not_offered(client: TestClient) -> None:
    for target in ("//evil.example/x", "https://evil.example", "/console/../x\\y", "/other"):
        r = await client.post(
            "/console/login",
            params={"next": target},
            data={"token": TOKEN},
            headers=origin(client),
            allow_redirects=False,
        )
        assert r.headers["Location"] == "/console/deliveries", target


async def test_actions_need_the_csrf_token_and_the_same_origin(
    client: TestClient, redis: Redis, keys: Keys
) -> None:
    csrf = await log_in(client)
    url = "/console/rules/resume"
    cases = [
        ({"rule": "x"}, origin(client)),
        ({"rule": "x", "csrf": "forged"}, origin(client)),
        ({"rule": "x", "csrf": csrf}, {}),
        ({"rule": "x", "csrf": csrf}, {"Origin": "http://evil.example"}),
        ({"rule": "x", "csrf": csrf}, {"Referer": "http://evil.example/console/rules"}),
    ]
    for data, headers in cases:
        r = await client.post(url, data=data, headers=headers, allow_redirects=False)
        assert r.status == 403, (data, headers)
    await redis.hset(keys.rules_paused, "x", json.dumps({"by": "t", "at": 1}))
    ok = await client.post(
        url, data={"rule": "x", "csrf": csrf}, headers=origin(client), allow_redirects=False
    )
    assert ok.status == 303
    assert not await redis.hexists(keys.rules_paused, "x")


async def test_login_attempts_are_limited_per_client(client: TestClient) -> None:
    for _ in range(10):
        r = await client.post("/console/login", data={"token": "x"}, headers=origin(client))
        assert r.status == 401
    r = await client.post("/console/login", data={"token": TOKEN}, headers=origin(client))
    assert r.status == 429
    assert int(r.headers["Retry-After"]) > 0


async def test_pages_show_the_traces(client: TestClient, redis: Redis, keys: Keys) -> None:
    await seed(redis, keys)
    await log_in(client)
    page = await (await client.get("/console/deliveries")).text()
    assert "evt_a" in page and "invalid_signature" in page
    only = await (await client.get("/console/deliveries?outcome=refused")).text()
    assert "invalid_signature" in only and "evt_a" not in only
    by_rule = await (await client.get("/console/deliveries?rule=tag-vip")).text()
    assert "evt_a" in by_rule and "invalid_signature" not in by_rule
    trace = await client.get("/console/events/evt_a?vendor=inboxops")
    text = await trace.text()
    assert trace.status == 200
    assert "rule escalate: fired" in text, text
    assert "priority: &#39;low&#39; → &#39;urgent&#39;" in text
    # Everything from Redis is escaped.
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
    timeline = await client.get(f"/console/tickets/{TICKET}")
    assert timeline.status == 200 and "rule escalate: fired" in await timeline.text()
    short = await client.get("/console/tickets/inboxops:T-1")
    assert short.status == 200 and TICKET in await short.text()
    assert (await client.get("/console/events/nope")).status == 404
    assert (await client.get("/console/tickets/inboxops:nope")).status == 404


HOSTILE = [
    "?before=abc",
    "?before=(1-0",
    "?before=99999999999999999999999-0",
    "?since=yesterday",
    "?since=999999d",
    "?until=9999-12-31",
    "?since=2026-01-02&until=2025-01-01",
    "?vendor=nobody",
    "?outcome=%00",
    "?ticket=%ff%fe",
    "?rule=" + "x" * 5000,
    "?type=a&type=b",
    "?event=*",
    "?preview=1&kind=bogus",
    "?kind=call,event",
    "?reason=%0a",
    "?ticket=a:*:[",
    "?paused=%3Cb%3E",
    "?vendor[]=x",
    "?%zz",
]


async def test_hostile_query_strings_never_fail(
    client: TestClient, redis: Redis, keys: Keys
) -> None:
    await seed(redis, keys)
    await log_in(client)
    for path in (
        *PAGES,
        "/console/live.json",
        "/console/events/evt_a",
        f"/console/tickets/{TICKET}",
    ):
        for query in HOSTILE:
            r = await client.get(path + query, allow_redirects=False)
            assert r.status < 500, (path, query, r.status)
    for path in ("/console/events/%00", "/console/tickets/%ff", "/console/events/" + "x" * 3000):
        assert (await client.get(path)).status < 500, path


async def test_bad_cookies_and_bodies_never_fail(client: TestClient) -> None:
    for value in ("", "x", "a.b.c", "a.1.b", "\u00e9.1.x", "a" * 4000, "a.99999999999999999999.x"):
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({"tw_console": value})
        r = await client.get("/console/deliveries", allow_redirects=False)
        assert r.status == 303, value
    csrf = await log_in(client)
    for body, ctype in (
        (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        (b"{}", "application/json"),
    ):
        r = await client.post(
            "/console/rules/pause",
            data=body,
            headers={**origin(client), "Content-Type": ctype},
            allow_redirects=False,
        )
        assert r.status in (400, 403), (body, r.status)
    r = await client.post(
        "/console/dead-letters/redrive",
        data={"csrf": csrf},
        headers=origin(client),
        allow_redirects=False,
    )
    assert r.status == 400
    r = await client.post(
        "/console/rules/pause",
        data={"csrf": csrf, "rule": "nobody-runs-this"},
        headers=origin(client),
        allow_redirects=False,
    )
    assert r.status == 409


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {made.stderr.decode()[:200]}")
    return cert, key


async def test_over_https_the_cookie_is_secure(
    aiohttp_server: Any, redis: Redis, keys: Keys, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    s = settings(keys, console_token=Secret(TOKEN))
    app = create_app(s, redis, [InboxOpsWebhook(s.vendor("inboxops").webhook_secrets)])
    server = await aiohttp_server(app, ssl=ctx)
    url = f"https://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as http:
        r = await http.post(
            f"{url}/console/login",
            data={"token": TOKEN},
            headers={"Origin": url},
            ssl=False,
            allow_redirects=False,
        )
        assert r.status == 303
        assert "Secure" in r.headers["Set-Cookie"]
