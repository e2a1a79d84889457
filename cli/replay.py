"""`ticketwire replay`: send captured deliveries to a receiver again, byte for byte."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from cli.capture import read_captures, record_account
from cli.localup import LocalUp, find_local_up
from cli.progress import Tally, progress_bar
from ticketwire.accountkey import DEFAULT, account_key
from ticketwire.vendors.bundle import STALE_CAPTURES
from ticketwire.vendors.registry import bundle, names

#: Failed deliveries printed one by one; past that only counted (a run may have thousands).
SHOWN_FAILURES = 20
#: Headers a replay never copies: the connection's own, recomputed by the client.
_HOP = {"content-length", "host", "transfer-encoding", "connection"}


def resign(
    vendor: str, body: bytes, secret: str, mode: str = "token", header: str | None = None
) -> dict[str, str]:
    """The authentication headers `vendor` would send for `body` with `secret`, made now.

    `mode` and `header` say how a helpdesk with several ways to sign does it (Thena's token or
    hmac); the others have one way.
    """
    v = bundle(vendor)
    return v.sign()(v.signing_as(v.settings(), mode, header), body, secret)


def webhook_url(url: str, vendor: str | None, account: str = DEFAULT) -> str:
    """`url` itself, or the account's route under it when `url` is a receiver's `/webhooks` base.

    That is `<url>/<vendor>`, and `<url>/<vendor>/<account>` for a named account.
    """
    if vendor and url.rstrip("/").endswith("/webhooks"):
        route = f"{url.rstrip('/')}/{vendor}"
        return route if account == DEFAULT else f"{route}/{account}"
    return url


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def targets_local_up(url: str, up: LocalUp | None) -> bool:
    """True when `url` is on the receiver of the running local `up` (any loopback name)."""
    if up is None:
        return False
    given, local = urlsplit(url), urlsplit(up.receiver_url)
    same_host = given.hostname == local.hostname or {given.hostname, local.hostname} <= _LOOPBACK
    return (
        same_host
        and given.scheme == local.scheme
        and given.port == local.port
        and given.path.rstrip("/").startswith(local.path.rstrip("/"))
    )


def outcome(status: int, answer: str) -> str:
    """`accepted`, `duplicate`, `ignored` or `failed`, from the receiver's status and body."""
    if not 200 <= status < 300:
        return "failed"
    try:
        said = json.loads(answer).get("status")
    except (ValueError, AttributeError):
        said = None
    if said in ("duplicate", "ignored"):
        return str(said)
    return "accepted"


def refused_hint(vendor: str | None, resigned: bool) -> str:
    """What to do about a 401 on a replayed delivery."""
    if resigned:
        return (
            "the receiver refused the re-signed deliveries: check that --secret is one of its "
            "*_WEBHOOK_SECRETS (Thena: the token, and --thena-mode)"
        )
    why = bundle(vendor).replay_refused if vendor in names() else STALE_CAPTURES
    return (
        f"{why}: pass --secret with this receiver's webhook secret (Thena: its token), or "
        "replay to a running `ticketwire up`, which re-signs with its own secrets with no flags"
    )


async def _replay(
    files: list[Path],
    url: str,
    secret: str | None,
    timeout_s: float,
    mode: str = "token",
    *,
    local_secrets: Mapping[str, str] | None = None,
) -> int:
    records = [record for path in files for record in read_captures(path)]
    tally = Tally()
    hints: dict[str, str] = {}
    bar = progress_bar(len(records), "deliveries")
    # A capture that names no vendor is re-signed as the first one's (InboxOps).
    default = names()[0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        for record in records:
            vendor = record.get("vendor")
            label = record.get("event_id") or "(body)"
            tally.sent += 1
            try:
                account = record_account(record)
            except ValueError as exc:
                tally.failed += 1
                bar.write(f"{label}: not replayed: {exc}", file=sys.stdout)
                bar.update()
                continue
            body = record["body"].encode("utf-8")
            headers = {k: v for k, v in record.get("headers", {}).items() if k.lower() not in _HOP}
            headers.setdefault("Content-Type", "application/json")
            # Another environment's receiver (`--secret`) or the local `up`: re-sign.
            signer = vendor or default
            key = secret or (local_secrets or {}).get(account_key(signer, account))
            if key:
                headers.update(resign(signer, body, key, mode))
            target = webhook_url(url, vendor, account)
            try:
                async with http.post(target, data=body, headers=headers) as resp:
                    answer = (await resp.text())[:200]
                    result = outcome(resp.status, answer)
                    failure = f"{label}: {resp.status} {answer}"
                    if result == "failed" and resp.status == 401:
                        hints.setdefault(vendor or "", refused_hint(vendor, bool(key)))
            except (aiohttp.ClientError, TimeoutError) as exc:
                result, failure = "failed", f"{label}: failed: {exc or type(exc).__name__}"
            if result == "failed" and tally.failed < SHOWN_FAILURES:
                bar.write(failure, file=sys.stdout)
            setattr(tally, result, getattr(tally, result) + 1)
            bar.update()
    bar.close()
    if tally.failed > SHOWN_FAILURES:
        print(f"… and {tally.failed - SHOWN_FAILURES} more failures not shown", file=sys.stdout)
    print(f"replayed to {url}: {tally.summary()}", file=sys.stderr)
    for vendor, hint in hints.items():
        print(f"401 on {vendor or 'plain'} deliveries: {hint}", file=sys.stderr)
    return 1 if tally.failed else 0


def run_replay(files: list[Path], url: str | None, secret: str | None, mode: str = "token") -> int:
    """POST each captured body with its stored headers (or re-signed) to `url` or the local up.

    `mode` is `--thena-mode`: how a helpdesk with several ways to sign re-signs.
    """
    up = find_local_up()
    if url is None:
        if up is None:
            print(
                "ticketwire replay: give --to URL (e.g. https://host/webhooks), or start "
                "`ticketwire up` here to replay to it",
                file=sys.stderr,
            )
            return 2
        url = up.receiver_url
    local: dict[str, str] | None = None
    if secret is None and up is not None and targets_local_up(url, up):
        # Keyed by account key: `inboxops` for the default account, `inboxops@brand-a` for another.
        local = {**up.webhook_secrets, **up.account_secrets}
        print(
            f"replaying to the local `ticketwire up` (pid {up.pid}) at {url}: re-signing "
            f"{', '.join(sorted(up.webhook_secrets))} deliveries with its webhook secrets"
            + (f" (and {', '.join(sorted(up.account_secrets))})" if up.account_secrets else ""),
            file=sys.stderr,
        )
    return asyncio.run(_replay(files, url, secret, 10.0, mode, local_secrets=local))
